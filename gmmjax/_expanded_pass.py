"""The expanded E-step pass: each chunk's densities and moments as two matrix products with the
augmented features ψ(x), laid out component by component (docs/math.md §3, "The products").

For full covariances ψ(x) = (φ(x), x, 1) with φ(x) = (x_a x_b)_{a≤b}; for diagonal and
spherical ones ψ(x) = (x², x, 1) (squares taken entrywise). Every squared Mahalanobis distance
is then one dot product with ψ(x), and every moment the M-step needs one product of the
responsibilities with ψ:

    (x − μ_k)ᵀ P_k (x − μ_k) = ψ(x) · (pack(P_k), −2 P_k μ_k, μ_kᵀ P_k μ_k)     (P_k = U_k U_kᵀ)
    Σ_i γ_ik ψ(x_i) = (Σ γ φ(x), Σ γ x, Σ γ)      raw second moments, first moments, counts

(diagonal: pack(P_k) = the precisions p_k, spherical: p_k in every coordinate). ψ(x) is
shared by every component and restart.

The layout is component-major: a chunk's features are formed as ψ(X)ᵀ (F', B) and its log
densities as coef (K, F') · ψᵀ → (K, B). Under `vmap` over restarts that is one product
giving (R·K, B) with no transpose, the log-sum-exp over components reduces across rows (vector
operations along the chunk's B rows rather than a reduction within each short row of K), and
the moments (R·K, F') contract both operands along B. Against a row-major pass (four products
and two transposes of (B, R·K) per chunk), per chunk of a 16-chunk scan with 8 restarts
vmapped (`benchmarks/bench_float32_kernels.py --passes`, 2026-12-01), a W4-sized chunk
(4096 x 8, K = 8) took 0.90 ms instead of 1.23 in float32 and 1.85 instead of 2.25 in float64;
a W2-sized one (2048 x 16, K = 16) 1.40 instead of 2.02 and 3.07 instead of 3.67.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from ._covariance import layout
from ._likelihood import distance_coefficients, matmul_precision, weighted_sum
from ._params import GMM, log_det_precision_cholesky
from ._stats import SufficientStatistics, shifted_second_moment, sum_over_chunks


def handles_layout(cov_type: str) -> bool:
    """Whether the pass takes this covariance layout: all but tied (whose single quadratic form
    per row and single second moment are cheaper as the row-major products of `_stats`)."""
    return layout(cov_type) != "tied"


def augmented_features(Xt: jax.Array, cov_type: str) -> jax.Array:
    """ψ(X)ᵀ, shape (F', B), from the chunk's transpose Xt (D, B): full F' = D(D+1)/2 + D + 1
    rows (φ, x, 1), diagonal and spherical 2D + 1 rows (x², x, 1).

    Every row is a product of two rows of (Xt; 1), so ψᵀ is one gather of whole rows and one
    multiplication, which XLA fuses into a single loop along B. Built from row slices and a
    concatenation instead, XLA's CPU backend wrote each slice's product out and copied it
    again: one restart of a W2-sized chunk (2048 x 16, K = 16) took 1.07 ms instead of 0.66
    in float64 (`benchmarks/bench_float32_kernels.py --passes`)."""
    d = Xt.shape[0]
    left, right = _feature_pairs(d, layout(cov_type) == "full")
    with_one = jnp.concatenate([Xt, jnp.ones((1, Xt.shape[1]), Xt.dtype)], axis=0)
    return with_one[left] * with_one[right]


def _feature_pairs(d: int, full: bool) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (a, b) into (Xt; 1) whose products are ψ's rows: (a ≤ b < d) for full
    covariances, in `_likelihood.quadratic_features`' order, or (a = b < d) otherwise; then
    (a, d) for x_a and (d, d) for 1."""
    left, right = np.triu_indices(d) if full else (np.arange(d), np.arange(d))
    return (
        np.concatenate([left, np.arange(d), [d]]),
        np.concatenate([right, np.full(d, d), [d]]),
    )


def expanded_e_statistics(gmm: GMM, data) -> tuple[SufficientStatistics, jax.Array]:
    """The E-step fused with the statistics about the current means over the chunks of `data`
    (complete, centred rows), by the expanded products: (statistics, Σ_i w_i log p(x_i)).

    The rounding of the products is ε · d̃² (`_likelihood.expansion_error`); float32 takes this
    pass only where that is small (`_em.streamed_e_statistics`)."""
    d = gmm.means.shape[-1]
    chunk = functools.partial(_chunk_statistics, cov_type=gmm.cov_type)
    moments, log_lik = sum_over_chunks(chunk, data, *_log_density_terms(gmm))
    counts, raw1 = moments[:, -1], moments[:, -1 - d : -1]
    s2 = shifted_second_moment(moments[:, : -1 - d], counts, raw1, gmm.means, gmm.cov_type)
    s1 = raw1 - counts[:, None] * gmm.means
    return SufficientStatistics(counts, s1, s2, gmm.means), log_lik


def expanded_log_likelihood(gmm: GMM, data) -> jax.Array:
    """Σ_i w_i log p(x_i) over the chunks of `data` (complete, centred rows) by the expanded
    products: the pass of `expanded_e_statistics` without its moments (one product per chunk)."""
    chunk = functools.partial(_chunk_log_likelihood, cov_type=gmm.cov_type)
    return sum_over_chunks(chunk, data, *_log_density_terms(gmm))


def _log_density_terms(gmm: GMM) -> tuple[jax.Array, jax.Array]:
    """(coef (K, F'), log_norm (K,)): log π_k N(x | μ_k, Σ_k) = log_norm_k − ½ ψ(x) · coef_k."""
    d = gmm.means.shape[-1]
    log_norm = (
        jnp.log(gmm.weights)
        + log_det_precision_cholesky(gmm.precisions_cholesky, gmm.cov_type, d)
        - 0.5 * d * math.log(2 * math.pi)
    )
    return distance_coefficients(gmm), log_norm


def _log_densities(X, coef, log_norm, cov_type):
    """One chunk's (ψᵀ (F', B), log π_k N(x_i | θ_k) (K, B), log p(x_i) (B,))."""
    psi = augmented_features(X.T, cov_type)
    # The clamp keeps a rounded distance from going negative (the products are not exact).
    distance = jnp.maximum(jnp.dot(coef, psi, precision=matmul_precision()), 0.0)
    comp = log_norm[:, None] - 0.5 * distance
    return psi, comp, logsumexp(comp, axis=0)


def _chunk_statistics(X, w, _chunk_index, coef, log_norm, *, cov_type):
    """One chunk: (Σ_i w_i γ_ik ψ(x_i) (K, F'), Σ_i w_i log p(x_i))."""
    psi, comp, log_p = _log_densities(X, coef, log_norm, cov_type)
    resp = jnp.exp(comp - log_p) * w  # sample weights folded in
    moments = jax.lax.dot_general(resp, psi, (((1,), (1,)), ((), ())), precision=matmul_precision())
    return moments, weighted_sum(log_p, w)


def _chunk_log_likelihood(X, w, _chunk_index, coef, log_norm, *, cov_type):
    """One chunk: Σ_i w_i log p(x_i)."""
    return weighted_sum(_log_densities(X, coef, log_norm, cov_type)[2], w)
