"""E-step, M-step, Q-function and one EM step (MATH.md §3).

E-step:  γ_ik = π_k N(x_i | μ_k, Σ_k) / Σ_j π_j N(x_i | μ_j, Σ_j)        (log space)
M-step:  π_k = N_k / N,  μ_k = Σ_i γ_ik x_i / N_k,
         Σ_k = Σ_i γ_ik (x_i − μ_k)(x_i − μ_k)ᵀ / N_k + ε I              (ε = reg_covar)
computed from the shifted sufficient statistics of `_stats.py`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jaxtyping import Array, Float

from ._likelihood import component_log_prob, log_likelihood
from ._params import GMM
from ._stats import (
    Chunked,
    SufficientStatistics,
    streamed_statistics,
    sufficient_statistics,
    sum_over_chunks,
)


def e_step(gmm: GMM, X: Float[Array, "n d"]) -> tuple[Float[Array, "n k"], Float[Array, ""]]:
    """Responsibilities γ (N, K) under `gmm` and the mean log-likelihood ℓ(θ)/N."""
    comp = component_log_prob(gmm, X)
    lp = logsumexp(comp, axis=-1, keepdims=True)
    return jnp.exp(comp - lp), jnp.mean(lp)


def m_step_from_statistics(
    stats: SufficientStatistics,
    *,
    cov_type: str,
    reg_covar: float | Array,
    active: Array | None = None,
) -> GMM:
    """The closed-form maximiser of Q given the sufficient statistics.

    N_k gets 10·eps added, as in scikit-learn, so that an empty component keeps a finite mean
    (its shift) and a covariance of reg_covar·I instead of 0/0. Components masked out by
    `active` (K,) get weight exactly 0 (log π = −∞, so they never take responsibility).
    """
    dtype = stats.s1.dtype
    nk = stats.s0 + 10 * jnp.finfo(dtype).eps
    if active is not None:
        nk = jnp.where(active, nk, 0.0)
    weights = nk / jnp.sum(nk)
    safe_nk = jnp.where(nk > 0, nk, 1.0)  # masked components: s1 = s2 = 0, so δ = 0
    delta = stats.s1 / safe_nk[:, None]
    means = stats.shift + delta
    d = stats.s1.shape[-1]
    if cov_type == "full":
        cov = stats.s2 / safe_nk[:, None, None] - delta[:, :, None] * delta[:, None, :]
        cov = cov + reg_covar * jnp.eye(d, dtype=dtype)
    elif cov_type == "tied":
        cov = (stats.s2 - jnp.einsum("k,kd,ke->de", nk, delta, delta)) / jnp.sum(nk)
        cov = cov + reg_covar * jnp.eye(d, dtype=dtype)
    else:
        var = stats.s2 / safe_nk[:, None] - jnp.square(delta) + reg_covar
        cov = var if cov_type == "diag" else jnp.mean(var, axis=-1)
    if cov_type in ("full", "tied"):
        # Symmetrise: the products above are symmetric only up to rounding.
        cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
    return GMM(weights, means, cov, cov_type)


def m_step(
    X: Float[Array, "n d"],
    resp: Float[Array, "n k"],
    *,
    cov_type: str,
    reg_covar: float | Array = 1e-6,
    sample_weight: Float[Array, " n"] | None = None,
) -> GMM:
    """argmax_θ Q(θ, θ^t) for responsibilities `resp` (N, K); weights w_i multiply γ_ik."""
    stats = sufficient_statistics(X, resp, cov_type=cov_type, sample_weight=sample_weight)
    return m_step_from_statistics(stats, cov_type=cov_type, reg_covar=reg_covar)


def q_function(gmm: GMM, X: Float[Array, "n d"], resp: Float[Array, "n k"]) -> Float[Array, ""]:
    """Q(θ, θ^t) = Σ_i Σ_k γ_ik [log π_k + log N(x_i | μ_k, Σ_k)], γ computed under θ^t.

    Terms with γ_ik = 0 contribute 0 even where log π_k = −∞.
    """
    comp = component_log_prob(gmm, X)
    return jnp.sum(jnp.where(resp > 0, resp * comp, 0.0))


def em_step(
    gmm: GMM, X: Float[Array, "n d"], *, reg_covar: float | Array = 1e-6
) -> tuple[GMM, Float[Array, ""]]:
    """One EM iteration: (θ^{t+1}, ℓ(θ^t)/N). Unchunked; `fit_em` streams rows instead."""
    resp, mean_ll = e_step(gmm, X)
    stats = sufficient_statistics(X, resp, cov_type=gmm.cov_type, shift=gmm.means)
    return m_step_from_statistics(stats, cov_type=gmm.cov_type, reg_covar=reg_covar), mean_ll


def streamed_e_statistics(gmm: GMM, data: Chunked) -> tuple[SufficientStatistics, Array]:
    """E-step fused with the statistics, chunk by chunk: (statistics about the current means,
    total weighted log-likelihood Σ_i w_i log p(x_i)). No (N, K) array is ever kept."""

    def responsibilities(X, w, _chunk_index):
        comp = component_log_prob(gmm, X)
        lp = logsumexp(comp, axis=-1, keepdims=True)
        return jnp.exp(comp - lp), jnp.sum(jnp.where(w > 0, w * lp[:, 0], 0.0))

    return streamed_statistics(responsibilities, data, cov_type=gmm.cov_type, shift=gmm.means)


def _chunk_log_likelihood(X, w, _chunk_index, gmm):
    return log_likelihood(gmm, X, w)


def streamed_log_likelihood(gmm: GMM, data: Chunked, *, checkpoint: bool = False) -> Array:
    """Σ_i w_i log p(x_i), chunk by chunk.

    With `checkpoint`, each chunk's forward pass is recomputed in the backward pass instead of
    stored, so a gradient needs memory for one chunk, not for all N rows.
    """
    fn = jax.checkpoint(_chunk_log_likelihood) if checkpoint else _chunk_log_likelihood
    return sum_over_chunks(fn, data, gmm)
