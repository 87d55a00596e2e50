"""A fit that JAX can differentiate: derivatives of the EM fixed point by the implicit
function theorem (docs/math.md §12).

EM converges to θ* = T(θ*, x), T the EM map (`_em_loop.em_map`) and x everything the fit
depends on: the data X, the sample weights w, the prior's hyperparameters, reg_covar. If θ* is
a strict local maximum of the objective, EM's Jacobian J = ∂T/∂θ there has spectral radius
below 1 (Dempster, Laird & Rubin 1977), so I − J is invertible and

    dθ*/dx = (I − J)⁻¹ ∂T/∂x.

A vector-Jacobian product v ↦ vᵀ dθ*/dx therefore needs one linear solve,
(I − J)ᵀ u = v, and one VJP of a single EM step, uᵀ ∂T/∂x: `fit_differentiable` attaches that
rule (a custom VJP) to the EM loop, so `jax.grad` never differentiates through the iterations.
The solve is GMRES on u ↦ u − Jᵀu, each product one VJP of a single EM step (J is never
formed), so a gradient costs a few dozen EM steps' worth of work and the memory of one.
`gradient="unrolled"` instead differentiates through `max_iter` EM steps (`lax.scan`), for
comparison: it converges to the same derivative as the steps converge, at a memory cost
proportional to their number.

When the assumption fails (EM stopped before converging, a saddle point or a flat direction,
e.g. an empty component or two identical ones), I − J is singular or the derivative is that of
a point that is not a fixed point: the result is then meaningless (typically huge or NaN).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ._covariance import ITERATIVE, model_name
from ._em_loop import em_map, em_until
from ._params import GMM
from ._prior import Prior, check_matches

GRADIENTS = ("implicit", "unrolled")


def fit_differentiable(
    X,
    init_params: GMM,
    *,
    sample_weight=None,
    prior: Prior | None = None,
    reg_covar=0.0,
    max_iter: int = 1000,
    tol=1e-10,
    gradient: str = "implicit",
) -> GMM:
    """EM (MAP-EM with a `prior`) from `init_params` to convergence, as a function that
    reverse mode (`jax.grad`, `jax.vjp`, `jax.jacrev`) differentiates with respect to X
    (N, D), `sample_weight` (N,), the prior's arrays and `reg_covar` (module docstring).
    Forward mode (`jax.jvp`, `jax.jacfwd`) works with gradient="unrolled" only.

    Args:
        X: (N, D) data.
        init_params: one GMM (no restart axis), e.g. `fit_em(...).best`.
        sample_weight: (N,) or None.
        prior: a `gmmjax.Prior` or None.
        reg_covar: added to the scatter as in `fit_em` (0: the objective's own fixed point).
        max_iter: EM's step limit ("unrolled": exactly max_iter steps).
        tol: EM stops when the objective changes by less than tol (an array: changing it
            does not recompile).
        gradient: "implicit" (the fixed point's derivative) or "unrolled".

    Returns:
        The fitted GMM. Differentiating it assumes a strict local maximum (module docstring).
        mclust's models whose M-step iterates (VEI, VEE, VEV, EVE, VVE) are refused: reverse
        mode cannot pass their inner loops.
    """
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient must be one of {GRADIENTS}, got {gradient!r}.")
    if not isinstance(init_params, GMM) or init_params.weights.ndim != 1:
        raise ValueError("init_params must be one GMM (no restart axis), e.g. fit_em(...).best.")
    if model_name(init_params.cov_type) in ITERATIVE:
        raise ValueError(
            f"fit_differentiable needs a closed-form M-step; {init_params.cov_type!r} iterates "
            f"inside its M-step. Use one of the other models (not {ITERATIVE})."
        )
    if prior is not None:
        if not isinstance(prior, Prior):
            raise ValueError("prior must be a gmmjax.Prior (build one, e.g. Prior.mclust(...)).")
        check_matches(prior, init_params.cov_type)
    dtype = init_params.means.dtype
    X = jnp.asarray(X, dtype)
    if X.ndim != 2 or X.shape[1] != init_params.n_features:
        raise ValueError(f"X must be (N, {init_params.n_features}), got shape {X.shape}.")
    w = jnp.ones(X.shape[:1], dtype) if sample_weight is None else jnp.asarray(sample_weight)
    reg_covar = jnp.asarray(reg_covar, dtype)
    tol = jnp.asarray(tol, dtype)
    if gradient == "unrolled":
        return _unrolled(init_params, X, w, prior, reg_covar, max_iter)
    return _jitted_fixed_point(init_params, X, w, prior, reg_covar, tol, jnp.asarray(max_iter))


@functools.partial(jax.jit, static_argnums=5)
def _unrolled(gmm, X, w, prior, reg_covar, n_steps):
    def step(g, _):
        return em_map(g, X, w, prior, reg_covar), None

    return jax.lax.scan(step, gmm, None, length=n_steps)[0]


@jax.custom_vjp
def _fixed_point(gmm, X, w, prior, reg_covar, tol, max_iter):
    return em_until(gmm, X, w, prior, reg_covar, tol, max_iter)[0]


def _fixed_point_fwd(gmm, X, w, prior, reg_covar, tol, max_iter):
    star = _fixed_point(gmm, X, w, prior, reg_covar, tol, max_iter)
    return star, (gmm, star, X, w, prior, reg_covar, tol, max_iter)


def _fixed_point_bwd(residuals, cotangent):
    gmm, star, X, w, prior, reg_covar, tol, max_iter = residuals
    u_args = _adjoint(star, X, w, prior, reg_covar, cotangent)
    zero = jax.tree_util.tree_map(jnp.zeros_like, gmm)  # θ* does not move with the start
    return (zero, *u_args, jnp.zeros_like(tol), None)


@jax.jit
def _adjoint(star, X, w, prior, reg_covar, cotangent):
    """(∂T/∂(X, w, prior, reg_covar))ᵀ u with (I − ∂T/∂θ)ᵀ u = v, at the fixed point, over
    θ = (weights, means, covariances): the precision factors a GMM also carries are functions
    of the covariances, so their cotangent is first moved onto the covariances."""
    cov_type = star.cov_type
    fields = (star.weights, star.means, star.covariances)
    _, build_vjp = jax.vjp(lambda *f: GMM(*f, cov_type), *fields)
    v, _ = ravel_pytree(build_vjp(cotangent))
    z, unravel = ravel_pytree(fields)

    def step(z, X, w, prior, reg_covar):
        new = em_map(GMM(*unravel(z), cov_type), X, w, prior, reg_covar)
        return ravel_pytree((new.weights, new.means, new.covariances))[0]

    # (I − J)ᵀ u = v by GMRES on u ↦ u − Jᵀ u: each product is one VJP of a single EM step
    # (residuals stored once), so neither the m x m matrix J nor m passes over the data are
    # ever formed; the Krylov space holds at most m vectors, so with restart ≥ m it is exact.
    _, step_vjp = jax.vjp(lambda z: step(z, X, w, prior, reg_covar), z)
    m = z.shape[0]
    u, _ = jax.scipy.sparse.linalg.gmres(
        lambda u: u - step_vjp(u)[0],
        v,
        tol=jnp.finfo(z.dtype).eps ** 0.75,
        atol=0.0,
        restart=min(m, 64),
        maxiter=50,
    )
    _, vjp = jax.vjp(lambda *args: step(z, *args), X, w, prior, reg_covar)
    return vjp(u)


_fixed_point.defvjp(_fixed_point_fwd, _fixed_point_bwd)
_jitted_fixed_point = jax.jit(_fixed_point)
