"""The one log-likelihood kernel: component log-densities, log p(x), and the total log-likelihood.

log N(x | μ_k, Σ_k) = −½ D log 2π + Σ_d log U_kdd − ½ ‖(x − μ_k)ᵀ U_k‖²,  U_k U_kᵀ = Σ_k⁻¹.

Matrix products run at full precision (`Precision.HIGHEST`): on GPUs float32 products otherwise
default to TF32, which silently costs about three decimal digits in the quadratic form.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jaxtyping import Array, Float

from ._params import GMM, log_det_precision_cholesky

HIGHEST = jax.lax.Precision.HIGHEST


def _expand_quadratic(dtype) -> bool:
    """Whether ‖x − μ‖² may be expanded as ‖x‖² − 2 xᵀμ + ‖μ‖² (matrix products, fast).

    The expansion cancels when ‖x‖ ≫ ‖x − μ‖; in float64 the loss is harmless, in float32 it
    is not, so float32 takes the direct (N, K, D) differences.
    """
    return jnp.dtype(dtype) == jnp.float64


def squared_mahalanobis(gmm: GMM, X: Float[Array, "n d"]) -> Float[Array, "n k"]:
    """‖(x_i − μ_k)ᵀ U_k‖² for every sample and component, shape (N, K).

    Both X and the means are shifted by the centroid of the means first: the quadratic form is
    unchanged, but float32 keeps its digits on data far from the origin.
    """
    prec = gmm.precisions_cholesky
    centre = jax.lax.stop_gradient(jnp.mean(gmm.means, axis=0))
    x = X - centre
    mu = gmm.means - centre
    if gmm.cov_type == "full":
        # One (N, D) x (D, K·D) product; then subtract μ_kᵀU_k and square.
        y = jnp.einsum("nd,kde->nke", x, prec, precision=HIGHEST)
        y = y - jnp.einsum("kd,kde->ke", mu, prec, precision=HIGHEST)
        return jnp.sum(jnp.square(y), axis=-1)
    if gmm.cov_type == "tied":
        y = jnp.dot(x, prec, precision=HIGHEST)
        m = jnp.dot(mu, prec, precision=HIGHEST)
        return _squared_distances(y, m)
    if gmm.cov_type == "diag":
        p2 = jnp.square(prec)  # (K, D) precisions
        if _expand_quadratic(x.dtype):
            return (
                jnp.dot(jnp.square(x), p2.T, precision=HIGHEST)
                - 2.0 * jnp.dot(x, (mu * p2).T, precision=HIGHEST)
                + jnp.sum(jnp.square(mu) * p2, axis=-1)
            )
        return jnp.sum(jnp.square(x[:, None, :] - mu[None]) * p2[None], axis=-1)
    # spherical: one precision per component
    return _squared_distances(x, mu) * jnp.square(prec)


def _squared_distances(x: Float[Array, "n d"], m: Float[Array, "k d"]) -> Float[Array, "n k"]:
    if _expand_quadratic(x.dtype):
        sq = (
            jnp.sum(jnp.square(x), axis=-1)[:, None]
            - 2.0 * jnp.dot(x, m.T, precision=HIGHEST)
            + jnp.sum(jnp.square(m), axis=-1)[None, :]
        )
        return jnp.maximum(sq, 0.0)
    return jnp.sum(jnp.square(x[:, None, :] - m[None]), axis=-1)


def log_gaussian(gmm: GMM, X: Float[Array, "n d"]) -> Float[Array, "n k"]:
    """log N(x_i | μ_k, Σ_k), shape (N, K)."""
    d = gmm.n_features
    log_det = log_det_precision_cholesky(gmm.precisions_cholesky, gmm.cov_type, d)
    return -0.5 * d * math.log(2 * math.pi) + log_det - 0.5 * squared_mahalanobis(gmm, X)


def component_log_prob(gmm: GMM, X: Float[Array, "n d"]) -> Float[Array, "n k"]:
    """log π_k + log N(x_i | μ_k, Σ_k), shape (N, K). Zero weights give −inf."""
    return jnp.log(gmm.weights) + log_gaussian(gmm, X)


def log_prob(gmm: GMM, X: Float[Array, "n d"]) -> Float[Array, " n"]:
    """log p(x_i | θ) = logsumexp_k [log π_k + log N(x_i | μ_k, Σ_k)], shape (N,)."""
    return logsumexp(component_log_prob(gmm, X), axis=-1)


def log_likelihood(
    gmm: GMM, X: Float[Array, "n d"], sample_weight: Float[Array, " n"] | None = None
) -> Float[Array, ""]:
    """ℓ(θ) = Σ_i w_i log p(x_i | θ) (w_i = 1 without `sample_weight`), a scalar."""
    lp = log_prob(gmm, X)
    if sample_weight is None:
        return jnp.sum(lp)
    # where(): a zero-weight row that is far outside every component must not give 0·(−inf).
    return jnp.sum(jnp.where(sample_weight > 0, sample_weight * lp, 0.0))
