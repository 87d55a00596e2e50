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
    """Whether the expanded products may be compiled for a pass in `dtype` whatever its size
    (float64); below float64 only large passes compile them (`_em.may_expand`). Where they are
    compiled, a pass takes them only while `expansion_is_accurate` says so, in every dtype."""
    return jnp.dtype(dtype) == jnp.float64


# The largest ε·d̃² (see `expansion_error`) at which a pass takes the expansion, per dtype.
# float32: d̃ up to about 29 standard deviations, measured in benchmarks/README.md against the
# explicit differences. float64: the error of a squared distance near a component is a few
# times ε·d̃² (measured: 0.8x on W2-spread, 5x on W2), so 1e-10 keeps a log-density's absolute
# error below about 3e-10 (1e-10 relative wherever |log p| ≥ 3); d̃ up to about 670 standard
# deviations. Ordinary clustered data stay well inside it: W2's components reach d̃ ≈ 20-80,
# the spread ones of W2-spread (means N(0, 16 I), full covariances A Aᵀ) about 400.
EXPANSION_TOLERANCE = 1e-4
EXPANSION_TOLERANCE_FLOAT64 = 1e-10


def expansion_tolerance(dtype) -> float:
    """The bound on `expansion_error` below which a pass in `dtype` takes the expansion."""
    if jnp.dtype(dtype) == jnp.float64:
        return EXPANSION_TOLERANCE_FLOAT64
    return EXPANSION_TOLERANCE


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
    """Whether the expansion may be used for `gmm` (a boolean scalar), in either dtype: when
    `expansion_error` ≤ `expansion_tolerance` for every restart whose bound is finite
    (non-finite parameters come from an extrapolation or an iterate that will be rejected, and
    do not force the slow path).

    A far, tight component fails it in float64 too: with means (0, 0) and (1e7, 1e7) and
    covariances I and 1e-6·I, the expansion scored (1e7 + 1e-3, 1e7) 0.5 too high.

    Under `_solver.map_restarts`' vmap the answer is reduced over all restarts, so it stays one
    value and `lax.cond` on it runs one branch for all of them, rather than both branches with a
    select, which is what a per-restart predicate becomes under vmap. Restarts that have stopped
    still vote with their last iterate (the vmapped loop steps them until the last one stops).
    """
    bound = expansion_error(gmm)
    tolerance = expansion_tolerance(gmm.means.dtype)
    return all_restarts(~jnp.isfinite(bound) | (bound <= tolerance))


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
    gmm: GMM, X: Float[Array, "n d"], *, expand: bool = False
) -> Float[Array, "n k"]:
    """‖(x_i − μ_k)ᵀ U_k‖² for every sample and component, shape (N, K).

    expand=False (the default): the differences x_i − μ_k are formed explicitly and then
    whitened, as scipy does: one rounding of x − μ_k (exact where x is within a factor 2 of
    μ_k), so the result is accurate at any distance from the origin and any scale.
    expand=True: expanded as xᵀPx − 2 (Pμ)ᵀx + μᵀPμ with P = U Uᵀ (the precision, formed from
    its Cholesky factor): matrix products with X, shared by every component and restart, with
    an absolute error of about ε·d̃² (`expansion_error`). Only the fitting passes expand, on
    centred data and where `expansion_is_accurate`.
    """
    prec = gmm.precisions_cholesky
    if expand:
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

    diff = X[:, None, :] - gmm.means[None]  # (N, K, D)
    if layout(gmm.cov_type) == "full":
        y = jnp.einsum("nkd,kde->nke", diff, prec, precision=matmul_precision())
        return jnp.sum(jnp.square(y), axis=-1)
    if layout(gmm.cov_type) == "tied":
        y = jnp.einsum("nkd,de->nke", diff, prec, precision=matmul_precision())
        return jnp.sum(jnp.square(y), axis=-1)
    if layout(gmm.cov_type) == "diag":
        return jnp.sum(jnp.square(diff * prec[None]), axis=-1)
    return jnp.sum(jnp.square(diff), axis=-1) * jnp.square(prec)


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


def log_gaussian(gmm: GMM, X: Float[Array, "n d"], *, expand: bool = False) -> Float[Array, "n k"]:
    """log N(x_i | μ_k, Σ_k), shape (N, K). With `expand` (see `squared_mahalanobis`) the
    quadratic form is expanded about the origin, so X must lie near it (the fitting code passes
    centred data, and expands only where `expansion_is_accurate`)."""
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
    gmm: GMM, X: Float[Array, "n d"], *, expand: bool = False
) -> Float[Array, "n k"]:
    """log π_k + log N(x_i | μ_k, Σ_k), shape (N, K), unjitted (the fitting code's kernel).
    `expand`: see `squared_mahalanobis`."""
    return jnp.log(gmm.weights) + log_gaussian(gmm, X, expand=expand)


def weighted_sum(log_p: Float[Array, " n"], sample_weight: Float[Array, " n"]) -> Array:
    """Σ_i w_i log p(x_i), rows of weight 0 left out: a zero-weight (padding) row far outside
    every component must not give 0·(−inf).

    Summed as m · Σ_i (w_i / m) log p(x_i), m = max_i w_i (a constant for differentiation):
    weights near the dtype's smallest normal number keep their digits (XLA flushes subnormal
    products to zero: float32 weights of 1e-36 lost 0.4% of the sum), and huge ones do not
    overflow a product that the total would not."""
    scale = jax.lax.stop_gradient(jnp.max(sample_weight))
    scale = jnp.where(scale > 0, scale, 1.0)
    return scale * jnp.sum(jnp.where(sample_weight > 0, (sample_weight / scale) * log_p, 0.0))


def kernel_log_likelihood(
    gmm: GMM,
    X: Float[Array, "n d"],
    sample_weight: Float[Array, " n"] | None = None,
    *,
    expand: bool = False,
) -> Float[Array, ""]:
    """Σ_i w_i log p(x_i), unjitted (see `kernel_component_log_prob`)."""
    lp = logsumexp(kernel_component_log_prob(gmm, X, expand=expand), axis=-1)
    if sample_weight is None:
        return jnp.sum(lp)
    return weighted_sum(lp, sample_weight)


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
    _check_features(gmm, X)
    X = jnp.asarray(X)
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
        _check_features(gmm, X)
        return kernel_log_likelihood(gmm, jnp.asarray(X), sample_weight)
    lp = log_prob(gmm, X, missing=missing)
    if sample_weight is None:
        return jnp.sum(lp)
    return weighted_sum(lp, sample_weight)
