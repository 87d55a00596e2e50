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
The fit's `Status` says what it can detect: MAX_ITER_REACHED (not a fixed point: a warning),
NON_FINITE or DEGENERATE (a collapsed covariance or an empty component: an error), or, with
`return_status=True`, the code itself, which is also how to read it under jax.jit. Two
identical components or a saddle point are not detected.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ._covariance import ITERATIVE, model_name
from ._em_loop import EMPTY_ROWS, em_map, em_until, fit_status
from ._exceptions import ConvergenceWarning, FitFailedError
from ._objective import objective
from ._params import GMM
from ._prior import Prior, check_matches
from ._solver import Status
from ._validate import (
    check_data_host,
    check_non_negative,
    check_positive_int,
    host_sample_weight,
)

GRADIENTS = ("implicit", "unrolled")

_NAN_MESSAGE = (
    "X contains NaN; fit_differentiable fits complete data only: remove those rows "
    '(X[~np.isnan(X).any(1)]) or fit with gmmjax.fit(..., missing="em").'
)


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
    return_status: bool = False,
):
    """EM (MAP-EM with a `prior`) from `init_params` to convergence, as a function that
    reverse mode (`jax.grad`, `jax.vjp`, `jax.jacrev`) differentiates with respect to X
    (N, D), `sample_weight` (N,), the prior's arrays and `reg_covar` (module docstring).
    Forward mode (`jax.jvp`, `jax.jacfwd`) works with gradient="unrolled" only.

    Inputs are checked as `fit` checks them, before anything is traced, wherever they are
    concrete (a traced argument, under the caller's jax.jit / vmap / grad, is checked for its
    shape only): a ValueError names the input and the fix.

    Args:
        X: (N, D) data, finite (no missing values).
        init_params: one GMM (no restart axis) with every weight positive, e.g.
            `fit_em(...).best`.
        sample_weight: (N,) finite non-negative weights, not all zero, or None.
        prior: a `gmmjax.Prior` or None.
        reg_covar: ≥ 0, added to the scatter as in `fit_em` (0: the objective's own fixed
            point).
        max_iter: EM's step limit, ≥ 1 ("unrolled": exactly max_iter steps).
        tol: ≥ 0; EM stops when the objective changes by less than tol (an array: changing it
            does not recompile).
        gradient: "implicit" (the fixed point's derivative) or "unrolled".
        return_status: also return the `Status` code (an int32 scalar, traced under jit):
            CONVERGED; MAX_ITER_REACHED (the last step still changed the objective by tol or
            more: the result is not a fixed point, and its derivative is that of the point
            EM would reach, approximately); NON_FINITE or DEGENERATE (a covariance not
            positive definite or, without a prior, an empty component: π_k · #{w_i > 0}
            below 1e-3), where the derivative does not exist.

    Returns:
        The fitted GMM, or (GMM, status) with `return_status`. Differentiating it assumes a
        strict local maximum (module docstring). mclust's models whose M-step iterates (VEI,
        VEE, VEV, EVE, VVE) are refused: reverse mode cannot pass their inner loops.

    Raises:
        ValueError: invalid input (see above), before tracing.
        FitFailedError: without `return_status`, when the status is concrete (not under the
            caller's jax.jit) and NON_FINITE or DEGENERATE. A `ConvergenceWarning` says when
            it is MAX_ITER_REACHED. Under jit, ask for the status with `return_status=True`.
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
        if prior.n_features != init_params.n_features:
            raise ValueError(
                f"the prior is for {prior.n_features} features, init_params has "
                f"{init_params.n_features}."
            )
    check_positive_int("max_iter", max_iter)
    if not isinstance(return_status, bool):
        raise ValueError(f"return_status must be True or False, got {return_status!r}.")
    for name, value in (("reg_covar", reg_covar), ("tol", tol)):
        if not isinstance(value, jax.core.Tracer):
            check_non_negative(name, value)
    dtype = init_params.means.dtype
    X = _checked_data(X, init_params)
    w = _checked_weight(sample_weight, X.shape[0], dtype)
    _check_start(init_params, w)
    reg_covar = jnp.asarray(reg_covar, dtype)
    tol = jnp.asarray(tol, dtype)
    if gradient == "unrolled":
        fitted, status = _unrolled(init_params, X, w, prior, reg_covar, tol, max_iter)
    else:
        fitted, status = _jitted_fixed_point(
            init_params, X, w, prior, reg_covar, tol, jnp.asarray(max_iter)
        )
    if return_status:
        return fitted, status
    _report(status)
    return fitted


def _checked_data(X, init_params: GMM):
    """X as a JAX array of the parameters' dtype: concrete X checked as `fit` checks it."""
    d = init_params.n_features
    if not isinstance(X, jax.core.Tracer):
        X, _ = check_data_host(X, nan_message=_NAN_MESSAGE)
    if X.ndim != 2 or X.shape[1] != d:
        raise ValueError(f"X must have shape (n_samples, {d}) to match init_params, got {X.shape}.")
    if X.shape[0] == 0:
        raise ValueError(f"X is empty: 0 sample(s) (shape={X.shape}); pass at least one row.")
    return jnp.asarray(X, init_params.means.dtype)


def _checked_weight(sample_weight, n_samples: int, dtype):
    """(N,) weights of `dtype` (None: ones); concrete weights checked as `fit` checks them."""
    if sample_weight is None:
        return jnp.ones((n_samples,), dtype)
    if isinstance(sample_weight, jax.core.Tracer):
        if sample_weight.shape != (n_samples,):
            raise ValueError(
                f"sample_weight must have shape (n_samples,) = ({n_samples},), got "
                f"{sample_weight.shape}."
            )
        return sample_weight.astype(dtype)
    w = host_sample_weight(sample_weight, n_samples)
    if np.max(w) > float(np.finfo(dtype).max):
        raise ValueError(
            f"sample_weight has values beyond {np.dtype(dtype).name}'s range; divide the "
            "weights by their maximum."
        )
    # As given (a JAX array stays on its device): the derivative is taken at these values.
    return jnp.asarray(sample_weight, dtype)


def _check_start(init_params: GMM, w) -> None:
    """ValueError for a start with an empty component (weight 0): EM never revives it, and
    the fixed point's derivative does not exist there."""
    weights = init_params.weights
    if isinstance(weights, jax.core.Tracer):
        return
    weights = np.asarray(weights)
    rows = None if isinstance(w, jax.core.Tracer) else int(np.count_nonzero(np.asarray(w)))
    floor = 0.0 if rows is None else EMPTY_ROWS / rows
    empty = np.flatnonzero(weights <= floor)
    if empty.size:
        raise ValueError(
            f"init_params has an empty component (component {int(empty[0])}, weight "
            f"{float(weights[empty[0]]):.3g}): EM never brings it back, and the fixed point's "
            "derivative does not exist there; drop it (fit with fewer components) or start "
            "from a fit whose components all hold data (e.g. fit_em(...).best)."
        )


def _report(status) -> None:
    """Raise or warn for a concrete status (module docstring); nothing under tracing."""
    try:
        code = Status(int(status))
    except (jax.errors.ConcretizationTypeError, TypeError):
        return
    if code.failed:
        cause = (
            "the iterates became non-finite; use float64, rescale X or raise reg_covar"
            if code == Status.NON_FINITE
            else "a component emptied (less than a thousandth of a row's weight) or collapsed "
            "(a covariance that is not positive definite); start from a fit whose components "
            "all hold data, lower the number of components, raise reg_covar or pass a prior"
        )
        raise FitFailedError(
            f"fit_differentiable stopped where the fixed point's derivative does not exist "
            f"({code.name}): {cause}. Pass return_status=True to read the status instead of "
            "raising.",
            int(code),
        )
    if code == Status.MAX_ITER_REACHED:
        warnings.warn(
            "fit_differentiable stopped at max_iter before meeting tol: the result is not a "
            "fixed point of EM, and its implicit derivative is only that of the point EM "
            "would reach. Raise max_iter or tol (return_status=True reads the status).",
            ConvergenceWarning,
            stacklevel=3,
        )


@functools.partial(jax.jit, static_argnums=6)
def _unrolled(gmm, X, w, prior, reg_covar, tol, n_steps):
    def step(g, _):
        return em_map(g, X, w, prior, reg_covar), None

    before = jax.lax.scan(step, gmm, None, length=n_steps - 1)[0]
    fitted = em_map(before, X, w, prior, reg_covar)
    f_old, f_new = (_value(g, X, w, prior) for g in (before, fitted))
    status = fit_status(fitted, f_old, f_new, tol, jnp.sum(w > 0), empty_check=prior is None)
    return fitted, jax.lax.stop_gradient(status)


def _value(gmm, X, w, prior):
    return objective(gmm, X, prior=prior, sample_weight=w)


@jax.custom_vjp
def _fixed_point(gmm, X, w, prior, reg_covar, tol, max_iter):
    """(θ*, its `Status` code): the status is an integer output, with no cotangent."""
    return em_until(gmm, X, w, prior, reg_covar, tol, max_iter)


def _fixed_point_fwd(gmm, X, w, prior, reg_covar, tol, max_iter):
    star, status = _fixed_point(gmm, X, w, prior, reg_covar, tol, max_iter)
    return (star, status), (gmm, star, X, w, prior, reg_covar, tol, max_iter)


def _fixed_point_bwd(residuals, cotangents):
    gmm, star, X, w, prior, reg_covar, tol, max_iter = residuals
    cotangent, _ = cotangents  # the status's (float0) cotangent carries nothing
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
