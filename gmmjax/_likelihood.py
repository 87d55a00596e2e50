"""The one log-likelihood kernel: component log-densities, log p(x), and the total log-likelihood.

log N(x | μ_k, Σ_k) = −½ D log 2π + Σ_d log U_kdd − ½ ‖(x − μ_k)ᵀ U_k‖²,  U_k U_kᵀ = Σ_k⁻¹.

Matrix products run at full precision (`Precision.HIGHEST`): on GPUs float32 products otherwise
default to TF32, which silently costs about three decimal digits in the quadratic form. A caller
who wants that trade makes it with JAX's own switch, `jax.default_matmul_precision(...)` (context
manager or config flag); see `matmul_precision`.
"""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp
from jaxtyping import Array, Float

from ._covariance import layout
from ._missing import marginal_component_log_prob
from ._params import GMM, log_det_precision_cholesky, whitened_square_norms
from ._solver import all_restarts


def matmul_precision() -> jax.lax.Precision | None:
    """The precision of every gmmjax matrix product: HIGHEST, unless the caller set JAX's
    `jax_default_matmul_precision` (e.g. `with jax.default_matmul_precision("tensorfloat32")`),
    in which case products use that. Read at trace time; the setting is part of jit's cache key,
    so changing it retraces rather than reusing a program built for the other precision."""
    if jax.config.jax_default_matmul_precision is not None:
        return None  # DEFAULT: resolved from the config
    return jax.lax.Precision.HIGHEST


def _expand_quadratic(dtype) -> bool:
    """Whether ‖x − μ‖² is always expanded as ‖x‖² − 2 xᵀμ + ‖μ‖² (matrix products, fast).

    The expansion carries an absolute error of about ε·d² in the metric at hand, d the
    Mahalanobis distance of the expansion's centre from a component (`expansion_error`). In
    float64 that is harmless at any distance data reach. In float32 it is not (two clusters 3000
    standard deviations apart made float32 fits fail, benchmarks/README.md): float32 expands
    only where `expansion_is_accurate` says so and forms the differences explicitly otherwise.
    """
    return jnp.dtype(dtype) == jnp.float64


# The largest ε·d² (see `expansion_error`) at which float32 takes the expansion: d up to about
# 29 standard deviations. Measured in benchmarks/README.md against the explicit differences.
EXPANSION_TOLERANCE = 1e-4


def expansion_error(gmm: GMM) -> Float[Array, ""]:
    """ε · max_k ‖|U_k|ᵀ |μ_k|‖²: a bound on the expansion's rounding error relative to Σ_k.

    Expanding about the origin rounds each product x_a x_b (and its weighted sums) with a
    relative error ε; for the points of component k, |x| ≈ |μ_k|, so the error of the quadratic
    form (and of the second moments, whitened by U_k) is about ε·‖|U_k|ᵀ|μ_k|‖², the squared
    Mahalanobis distance of the origin from μ_k with every term taken positive. The explicit
    differences do not have it. Components of weight 0 (masked by `select`'s padded programs)
    explain no point and do not count. NaN parameters (a failed restart) give NaN.
    """
    eps = jnp.finfo(gmm.means.dtype).eps
    mu = jnp.abs(jax.lax.stop_gradient(gmm.means))
    U = jnp.abs(jax.lax.stop_gradient(gmm.precisions_cholesky))
    d2 = whitened_square_norms(mu, U, gmm.cov_type)
    return eps * jnp.max(jnp.where(jax.lax.stop_gradient(gmm.weights) == 0, 0.0, d2))


def expansion_is_accurate(gmm: GMM) -> Array:
    """Whether the expansion may be used for `gmm` (a boolean scalar): always in float64;
    otherwise when `expansion_error` ≤ `EXPANSION_TOLERANCE` for every restart whose bound is
    finite (non-finite parameters come from an extrapolation or an iterate that will be
    rejected, and do not force the slow path).

    Under `_solver.map_restarts`' vmap the answer is reduced over all restarts, so it stays one
    value and `lax.cond` on it runs one branch for all of them, rather than both branches with a
    select, which is what a per-restart predicate becomes under vmap. Restarts that have stopped
    still vote with their last iterate (the vmapped loop steps them until the last one stops).
    """
    if _expand_quadratic(gmm.means.dtype):
        return jnp.asarray(True)
    bound = expansion_error(gmm)
    return all_restarts(~jnp.isfinite(bound) | (bound <= EXPANSION_TOLERANCE))


def quadratic_features(X: Float[Array, "n d"]) -> Float[Array, "n f"]:
    """φ(x) = (x_i x_j)_{i≤j}, F = D(D+1)/2 columns: xᵀAx = φ(x)·pack(A) for symmetric A.

    Shared by every component and restart, it turns the quadratic form of the log-density and
    the second moments of the M-step into plain matrix products (the expanded paths).
    """
    # Row i of the upper triangle is x_i · x[i:]: slices and one concatenation, which XLA
    # fuses into plain loops. Indexing with triu_indices instead is a gather, which XLA's CPU
    # backend also fused into the products' operands: W2 (N=100k, D=16, K=16) with one
    # restart ran 1.4-3x slower per iteration that way.
    d = X.shape[-1]
    return jnp.concatenate([X[:, i : i + 1] * X[:, i:] for i in range(d)], axis=-1)


def pack_symmetric(A: Float[Array, "... d d"]) -> Float[Array, "... f"]:
    """pack(A) with φ(x)·pack(A) = xᵀAx: upper triangle, off-diagonal entries doubled."""
    d = A.shape[-1]
    i, j = np.triu_indices(d)
    return A[..., i, j] * np.where(i == j, 1.0, 2.0).astype(A.dtype)


def unpack_symmetric(v: Float[Array, "... f"], d: int) -> Float[Array, "... d d"]:
    """The symmetric matrix whose upper triangle is v (the layout of `quadratic_features`)."""
    i, j = np.triu_indices(d)
    out = jnp.zeros(v.shape[:-1] + (d, d), v.dtype)
    return out.at[..., i, j].set(v).at[..., j, i].set(v)


def squared_mahalanobis(
    gmm: GMM, X: Float[Array, "n d"], *, expand: bool | None = None
) -> Float[Array, "n k"]:
    """‖(x_i − μ_k)ᵀ U_k‖² for every sample and component, shape (N, K).

    expand=True: expanded as xᵀPx − 2 (Pμ)ᵀx + μᵀPμ with P = U Uᵀ (the precision, formed from
    its Cholesky factor): matrix products with X, shared by every component and restart.
    expand=False: X and the means are first shifted by the centroid of the means (the quadratic
    form is unchanged, but float32 keeps its digits on data far from the origin), then the
    differences are formed explicitly, so nothing cancels. The default (None) expands in
    float64 only; the fitting code expands in float32 where `expansion_is_accurate`.
    """
    prec = gmm.precisions_cholesky
    if _expand_quadratic(X.dtype) if expand is None else expand:
        if layout(gmm.cov_type) == "spherical":
            return squared_distances(X, gmm.means, expand=True) * jnp.square(prec)
        d = X.shape[-1]
        coef = distance_coefficients(gmm)
        square, linear, const = coef[:, : -d - 1], coef[:, -d - 1 : -1], coef[:, -1]
        if layout(gmm.cov_type) == "diag":
            quad = jnp.dot(jnp.square(X), square.T, precision=matmul_precision())
        elif layout(gmm.cov_type) == "tied":  # one precision: one quadratic form per row
            quad = jnp.dot(quadratic_features(X), square[0], precision=matmul_precision())[:, None]
        else:
            quad = jnp.dot(quadratic_features(X), square.T, precision=matmul_precision())
        lin = jnp.dot(X, linear.T, precision=matmul_precision())
        return jnp.maximum(quad + lin + const, 0.0)

    centre = jax.lax.stop_gradient(jnp.mean(gmm.means, axis=0))
    x = X - centre
    mu = gmm.means - centre
    if layout(gmm.cov_type) == "full":
        y = jnp.einsum("nd,kde->nke", x, prec, precision=matmul_precision())
        y = y - jnp.einsum("kd,kde->ke", mu, prec, precision=matmul_precision())
        return jnp.sum(jnp.square(y), axis=-1)
    if layout(gmm.cov_type) == "tied":
        y = jnp.dot(x, prec, precision=matmul_precision())
        m = jnp.dot(mu, prec, precision=matmul_precision())
        return squared_distances(y, m, expand=False)
    if layout(gmm.cov_type) == "diag":
        return jnp.sum(jnp.square((x[:, None, :] - mu[None]) * prec[None]), axis=-1)
    return squared_distances(x, mu, expand=False) * jnp.square(prec)


def distance_coefficients(gmm: GMM) -> Float[Array, "k f2"]:
    """Rows c_k = (pack(P_k), −2 P_k μ_k, μ_kᵀ P_k μ_k), P_k = U_k U_kᵀ, so that
    (x − μ_k)ᵀ P_k (x − μ_k) = ψ(x) · c_k with ψ(x) = (φ(x), x, 1): F' = D(D+1)/2 + D + 1
    columns for full and tied covariances; for diagonal and spherical ones ψ(x) = (x², x, 1)
    and pack(P_k) = the precisions p_k (spherical: p_k in every coordinate), F' = 2D + 1."""
    prec = gmm.precisions_cholesky
    mu = gmm.means
    if layout(gmm.cov_type) in ("full", "tied"):
        precision = jnp.matmul(prec, jnp.swapaxes(prec, -1, -2), precision=matmul_precision())
        spec = "kde,ke->kd" if layout(gmm.cov_type) == "full" else "de,ke->kd"
        p_mu = jnp.einsum(spec, precision, mu, precision=matmul_precision())
        square = pack_symmetric(precision)  # tied: one row, shared
        square = jnp.broadcast_to(square, mu.shape[:-1] + square.shape[-1:])
    else:
        p = jnp.square(prec)  # diag (K, D); spherical (K,)
        square = jnp.broadcast_to(p if p.ndim == 2 else p[:, None], mu.shape)
        p_mu = square * mu
    const = jnp.sum(p_mu * mu, axis=-1, keepdims=True)
    return jnp.concatenate([square, -2.0 * p_mu, const], axis=-1)


def squared_distances(
    x: Float[Array, "n d"], m: Float[Array, "k d"], *, expand: bool | None = None
) -> Float[Array, "n k"]:
    """‖x_i − m_k‖², shape (N, K): expanded into matrix products (default: float64 only) or
    formed from explicit differences."""
    if _expand_quadratic(x.dtype) if expand is None else expand:
        sq = (
            jnp.sum(jnp.square(x), axis=-1)[:, None]
            - 2.0 * jnp.dot(x, m.T, precision=matmul_precision())
            + jnp.sum(jnp.square(m), axis=-1)[None, :]
        )
        return jnp.maximum(sq, 0.0)
    return jnp.sum(jnp.square(x[:, None, :] - m[None]), axis=-1)


def log_gaussian(
    gmm: GMM, X: Float[Array, "n d"], *, expand: bool | None = None
) -> Float[Array, "n k"]:
    """log N(x_i | μ_k, Σ_k), shape (N, K). Where `squared_mahalanobis` expands (see `expand`
    there) it does so about the origin, so X should lie near it: the fitting code passes
    centred data, the public functions below centre first."""
    d = gmm.n_features
    _check_features(gmm, X)
    log_det = log_det_precision_cholesky(gmm.precisions_cholesky, gmm.cov_type, d)
    return (
        -0.5 * d * math.log(2 * math.pi)
        + log_det
        - 0.5 * squared_mahalanobis(gmm, X, expand=expand)
    )


def _check_features(gmm: GMM, X) -> None:
    # Shapes are known under tracing too, so this check costs nothing inside jit.
    d = gmm.n_features
    if getattr(X, "ndim", None) != 2 or X.shape[-1] != d:
        raise ValueError(
            f"X must have shape (n_samples, {d}) for this {d}-feature mixture, got "
            f"{getattr(X, 'shape', type(X).__name__)}."
        )


def kernel_component_log_prob(
    gmm: GMM, X: Float[Array, "n d"], *, expand: bool | None = None
) -> Float[Array, "n k"]:
    """`component_log_prob` without the centring: for data already centred (fitting code),
    where every restart shares X and its quadratic features. `expand`: see
    `squared_mahalanobis`."""
    return jnp.log(gmm.weights) + log_gaussian(gmm, X, expand=expand)


def weighted_sum(log_p: Float[Array, " n"], sample_weight: Float[Array, " n"]) -> Array:
    """Σ_i w_i log p(x_i), rows of weight 0 left out: a zero-weight (padding) row far outside
    every component must not give 0·(−inf)."""
    return jnp.sum(jnp.where(sample_weight > 0, sample_weight * log_p, 0.0))


def kernel_log_likelihood(
    gmm: GMM, X: Float[Array, "n d"], sample_weight: Float[Array, " n"] | None = None
) -> Float[Array, ""]:
    """`log_likelihood` without the centring (see `kernel_component_log_prob`)."""
    lp = logsumexp(kernel_component_log_prob(gmm, X), axis=-1)
    if sample_weight is None:
        return jnp.sum(lp)
    return weighted_sum(lp, sample_weight)


def _centred_on_means(gmm: GMM, X: Float[Array, "n d"]) -> tuple[GMM, Float[Array, "n d"]]:
    """(gmm, X) both shifted by the centroid of the means: the densities are unchanged, and
    float64's expansion in `squared_mahalanobis` does not cancel on data far from the origin
    (float32's differences are taken about the same centroid). The shift is a constant for
    differentiation (x − μ is unchanged)."""
    _check_features(gmm, X)
    centre = jax.lax.stop_gradient(jnp.mean(gmm.means, axis=-2))
    X = jnp.asarray(X)
    return eqx.tree_at(lambda g: g.means, gmm, gmm.means - centre), X - centre.astype(X.dtype)


# The public scoring functions below are jitted: called on concrete arrays they run as one
# compiled program (cached on disk, see `_compilation_cache`) instead of dozens of separately
# dispatched operations, each a compilation in a fresh process. Inside a traced program the
# jit is inlined.


SCORING_MISSING = ("propagate", "marginal")

# The fitting options' scoring counterparts, named when one is passed to a scoring function.
_FIT_OPTION_HINTS = {
    "em": ' "em" is the fitting option; its scoring counterpart is missing="marginal".',
    "raise": ' "raise" is the fitting option; its scoring counterpart is the default, '
    'missing="propagate", which gives a row with NaN the score NaN rather than an error.',
}


def check_scoring_missing(missing) -> None:
    if not isinstance(missing, str) or missing not in SCORING_MISSING:
        hint = _FIT_OPTION_HINTS.get(missing, "") if isinstance(missing, str) else ""
        raise ValueError(
            f'missing must be "propagate" (a row with NaN scores NaN) or "marginal" (the '
            f"density of the row's observed values), got {missing!r}.{hint}"
        )


@functools.partial(jax.jit, static_argnames="missing")
def component_log_prob(
    gmm: GMM, X: Float[Array, "n d"], *, missing: str = "propagate"
) -> Float[Array, "n k"]:
    """log π_k + log N(x_i | μ_k, Σ_k), shape (N, K). Zero weights give −inf.

    missing="marginal": NaN marks a missing value and each row is scored by the density of
    its observed values, log π_k + log N(x_io | μ_ko, Σ_koo) (`_missing.py`); with the
    default "propagate" a row with NaN scores NaN.
    """
    check_scoring_missing(missing)
    gmm, X = _centred_on_means(gmm, X)
    if missing == "marginal":
        return marginal_component_log_prob(gmm, X)
    return kernel_component_log_prob(gmm, X)


@functools.partial(jax.jit, static_argnames="missing")
def log_prob(gmm: GMM, X: Float[Array, "n d"], *, missing: str = "propagate") -> Float[Array, " n"]:
    """log p(x_i | θ) = logsumexp_k [log π_k + log N(x_i | μ_k, Σ_k)], shape (N,); see
    `component_log_prob` for `missing`. With missing="marginal" a row with every value missing
    has no observed value to score: its log-density is 0 and its responsibilities (`e_step`)
    are the weights."""
    return logsumexp(component_log_prob(gmm, X, missing=missing), axis=-1)


@functools.partial(jax.jit, static_argnames="missing")
def log_likelihood(
    gmm: GMM,
    X: Float[Array, "n d"],
    sample_weight: Float[Array, " n"] | None = None,
    *,
    missing: str = "propagate",
) -> Float[Array, ""]:
    """ℓ(θ) = Σ_i w_i log p(x_i | θ) (w_i = 1 without `sample_weight`), a scalar; see
    `component_log_prob` for `missing`."""
    if missing == "propagate":
        return kernel_log_likelihood(*_centred_on_means(gmm, X), sample_weight)
    lp = log_prob(gmm, X, missing=missing)
    if sample_weight is None:
        return jnp.sum(lp)
    return weighted_sum(lp, sample_weight)
