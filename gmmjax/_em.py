"""E-step, M-step, Q-function and one EM step (docs/math.md §3).

E-step:  γ_ik = π_k N(x_i | μ_k, Σ_k) / Σ_j π_j N(x_i | μ_j, Σ_j)        (log space)
M-step:  π_k = N_k / N,  μ_k = Σ_i γ_ik x_i / N_k,
         Σ_k = Σ_i γ_ik (x_i − μ_k)(x_i − μ_k)ᵀ / N_k + ε I              (ε = reg_covar)
computed from the shifted sufficient statistics of `_stats.py`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jaxtyping import Array, Float

from ._covariance import constrained_covariances, layout
from ._expanded_pass import expanded_e_statistics, expanded_log_likelihood, handles_layout
from ._likelihood import (
    _expand_quadratic,
    component_log_prob,
    expansion_is_accurate,
    kernel_component_log_prob,
    kernel_log_likelihood,
    weighted_sum,
)
from ._missing import e_statistics as missing_e_statistics
from ._missing import marginal_component_log_prob
from ._params import GMM
from ._prior import Prior, check_matches, pseudo_observations
from ._solver import map_restarts
from ._stats import (
    Chunked,
    SufficientStatistics,
    streamed_statistics,
    sufficient_statistics,
    sum_over_chunks,
)


@functools.partial(jax.jit, static_argnames="missing")
def e_step(
    gmm: GMM, X: Float[Array, "n d"], *, missing: str = "propagate"
) -> tuple[Float[Array, "n k"], Float[Array, ""]]:
    """Responsibilities γ (N, K) under `gmm` and the mean log-likelihood ℓ(θ)/N; with
    missing="marginal" from the observed values of rows with NaN (`component_log_prob`)."""
    comp = component_log_prob(gmm, X, missing=missing)
    lp = logsumexp(comp, axis=-1, keepdims=True)
    return jnp.exp(comp - lp), jnp.mean(lp)


def m_step_from_statistics(
    stats: SufficientStatistics,
    *,
    cov_type: str,
    reg_covar: float | Array,
    active: Array | None = None,
    prior: Prior | None = None,
) -> GMM:
    """The maximiser of Q (plus log p(θ) when a `prior` is given: the MAP M-step,
    docs/math.md §3) from the sufficient statistics.

    With n_k = s0_k, x̄_k = c_k + s1_k/n_k, scatter W_k = s2_k − s1_k s1_kᵀ/n_k and, with a prior,
    B_k = κ n_k/(κ + n_k) (x̄_k − m)(x̄_k − m)ᵀ and b = [κ > 0]:

        π_k = (n_k + α − 1) / Σ_j (n_j + α − 1)
        μ_k = (n_k x̄_k + κ m) / (n_k + κ)
        full       Σ_k  = (Λ + W_k + B_k) / (ν + n_k + D + 1 + b)
        tied       Σ    = (Λ + Σ_k (W_k + B_k)) / (ν + N + D + 1 + b·K)
        diag       σ²_kj = (ς²_j + W_kjj + B_kjj) / (ν + n_k + 2 + b)
        spherical  σ²_k  = (ς² + tr W_k + tr B_k) / (ν + (n_k + b) D + 2)

    for the four scikit-learn models, and for every model the maximiser of
    `_covariance.constrained_covariances` on counts n_k + e_k and scatter
    W_k + B_k + s_k Λ (`_prior.pseudo_observations`: mclust's MAP M-steps; e = s = 0, B = 0
    without a prior). `reg_covar` enters as reg_covar·(count)·I added to that scatter, which
    for the four scikit-learn models is reg_covar·I added to Σ_k (scikit-learn's regulariser;
    with no prior and reg_covar = 0 this is the maximum-likelihood M-step) and for the
    others keeps the structure exact. The iterative mclust models start their inner loop
    from the pooled scatter here, from the previous covariances in `em_step` and the
    fitting methods. N_k gets 10·eps added, as in scikit-learn, so that an empty component
    keeps a finite mean (its shift) and a covariance of reg_covar·I instead of 0/0.
    Components masked out by `active` (K,) get weight exactly 0 (log π = −∞, so they never
    take responsibility) and the identity as covariance (so their density stays finite).
    """
    gmm, _ = m_step_with_status(
        stats, cov_type=cov_type, reg_covar=reg_covar, active=active, prior=prior
    )
    return gmm


def m_step_with_status(
    stats: SufficientStatistics,
    *,
    cov_type: str,
    reg_covar: float | Array,
    active: Array | None = None,
    prior: Prior | None = None,
    start: Array | None = None,
) -> tuple[GMM, Array]:
    """`m_step_from_statistics`, with the previous covariances `start` where the iterative
    models' inner loop begins, and whether that loop met its tolerance (a scalar bool)."""
    dtype = stats.s1.dtype
    k, d = stats.s1.shape
    if active is None:
        active = jnp.ones((k,), bool)
    nk = jnp.where(active, stats.s0 + 10 * jnp.finfo(dtype).eps, 0.0)
    safe_nk = jnp.where(nk > 0, nk, 1.0)  # masked components: s1 = s2 = 0, so δ = 0
    delta = stats.s1 / safe_nk[:, None]  # x̄_k − c_k
    kind = layout(cov_type)
    # Scatter about x̄_k: full (K, D, D), tied (D, D) summed over components, else the (K, D)
    # diagonals.
    if kind == "full":
        scatter = stats.s2 - nk[:, None, None] * delta[:, :, None] * delta[:, None, :]
    elif kind == "tied":
        scatter = stats.s2 - jnp.einsum("k,kd,ke->de", nk, delta, delta)
    else:
        scatter = stats.s2 - nk[:, None] * jnp.square(delta)
    means = stats.shift + delta
    counts = nk
    if prior is None:
        weights = nk / jnp.sum(nk)
    else:
        check_matches(prior, cov_type)
        alpha, kappa = prior.concentration, prior.shrinkage
        weight_counts = jnp.where(active, nk + alpha - 1, 0.0)
        weights = weight_counts / jnp.sum(weight_counts)
        gap = means - prior.mean  # x̄_k − m
        # κ / (n_k + κ): 0 without a mean prior, 1 for a masked component (its mean is m).
        shrink = jnp.where(nk + kappa > 0, kappa / jnp.where(nk + kappa > 0, nk + kappa, 1.0), 0.0)
        means = means - shrink[:, None] * gap
        pull = nk * shrink  # κ n_k / (κ + n_k): the weight of B_k = (x̄_k − m)(x̄_k − m)ᵀ
        extra_counts, shares = pseudo_observations(prior, cov_type, active)
        counts = nk + extra_counts
        if kind == "full":
            scatter = scatter + pull[:, None, None] * jnp.einsum("kd,ke->kde", gap, gap)
            scatter = scatter + shares[:, None, None] * prior.scale
        elif kind == "tied":
            scatter = scatter + jnp.einsum("k,kd,ke->de", pull, gap, gap)
            scatter = scatter + jnp.sum(shares) * prior.scale
        else:
            scale = jnp.broadcast_to(prior.scale, (d,))  # ς² I for the scalar scale
            scatter = scatter + pull[:, None] * jnp.square(gap) + shares[:, None] * scale
    eye = jnp.eye(d, dtype=dtype)
    if kind == "full":
        scatter = scatter + reg_covar * counts[:, None, None] * eye
    elif kind == "tied":
        scatter = scatter + reg_covar * jnp.sum(counts) * eye
    else:
        scatter = scatter + reg_covar * counts[:, None]
    if kind in ("full", "tied"):
        # Symmetrise: the products above are symmetric only up to rounding.
        scatter = 0.5 * (scatter + jnp.swapaxes(scatter, -1, -2))
    cov, inner_ok = constrained_covariances(cov_type, scatter, counts, start=start)
    if kind != "tied":
        # A masked component has no data (its covariance would be reg_covar·I, singular when
        # reg_covar = 0): give it the identity, so its density stays finite under weight 0.
        unit = eye if kind == "full" else jnp.ones(cov.shape[1:], dtype)
        mask = active.reshape((-1,) + (1,) * (cov.ndim - 1))
        cov = jnp.where(mask, cov, unit)
    return GMM(weights, means, cov, cov_type), inner_ok


def m_step(
    X: Float[Array, "n d"],
    resp: Float[Array, "n k"],
    *,
    cov_type: str,
    reg_covar: float | Array = 1e-6,
    sample_weight: Float[Array, " n"] | None = None,
    prior: Prior | None = None,
) -> GMM:
    """argmax_θ Q(θ, θ^t) (+ log p(θ) with a `prior`) for responsibilities `resp` (N, K);
    weights w_i multiply γ_ik."""
    stats = sufficient_statistics(X, resp, cov_type=cov_type, sample_weight=sample_weight)
    return m_step_from_statistics(stats, cov_type=cov_type, reg_covar=reg_covar, prior=prior)


def q_function(gmm: GMM, X: Float[Array, "n d"], resp: Float[Array, "n k"]) -> Float[Array, ""]:
    """Q(θ, θ^t) = Σ_i Σ_k γ_ik [log π_k + log N(x_i | μ_k, Σ_k)], γ computed under θ^t.

    Terms with γ_ik = 0 contribute 0 even where log π_k = −∞.
    """
    comp = component_log_prob(gmm, X)
    return jnp.sum(jnp.where(resp > 0, resp * comp, 0.0))


def em_step(
    gmm: GMM,
    X: Float[Array, "n d"],
    *,
    reg_covar: float | Array = 1e-6,
    prior: Prior | None = None,
) -> tuple[GMM, Float[Array, ""]]:
    """One EM iteration: (θ^{t+1}, ℓ(θ^t)/N), MAP-EM with a `prior`. Unchunked; `fit` streams
    rows instead."""
    resp, mean_ll = e_step(gmm, X)
    stats = sufficient_statistics(X, resp, cov_type=gmm.cov_type, shift=gmm.means)
    new, _ = m_step_with_status(
        stats, cov_type=gmm.cov_type, reg_covar=reg_covar, prior=prior, start=gmm.covariances
    )
    return new, mean_ll


# Rows x components x features² of one pass below which float32 keeps to the explicit
# differences alone: such a pass takes milliseconds either way, and compiling the expanded
# kernel beside them made small float32 fits (3000 x 6, K = 3-5, 4 restarts) take 1.7-2.2 s
# instead of 1.5-1.7 s to their first answer. (Online and incremental EM pass one minibatch
# or block at a time, so in float32 they keep to the differences at any data size.)
_SMALL_PASS = 2**24


def streamed_e_statistics(gmm: GMM, data: Chunked) -> tuple[SufficientStatistics, Array]:
    """E-step fused with the statistics, chunk by chunk: (statistics about the current means,
    total weighted log-likelihood Σ_i w_i log p(x_i)). No (N, K) array is ever kept. With
    values missing (`data.missing`) the densities are of the observed values and the
    statistics expected ones (`_missing.py`).

    The products with the shared quadratic features are taken by `_by_expansion_rule`.
    """
    if data.missing:
        (s0, s1, s2), ll = sum_over_chunks(_chunk_missing_e_statistics, data, gmm)
        return SufficientStatistics(s0, s1, s2, gmm.means), ll
    return _by_expansion_rule(
        gmm,
        data,
        functools.partial(_fused_e_statistics, data=data, expand=True),
        functools.partial(_fused_e_statistics, data=data, expand=False),
    )


def pass_log_likelihood(gmm: GMM, data: Chunked) -> Array:
    """Σ_i w_i log p(x_i) of the fitting data by `streamed_e_statistics`' own kernel and rule
    (the expanded pass without its moments where that pass expands): the value of a fit's
    final parameters and of the accelerated methods' proposals. Not differentiated (gradient
    methods take `streamed_log_likelihood`); tied covariances and missing values keep to
    `streamed_log_likelihood`."""
    if data.missing or not handles_layout(gmm.cov_type):
        return streamed_log_likelihood(gmm, data)
    return _by_expansion_rule(
        gmm,
        data,
        functools.partial(expanded_log_likelihood, data=data),
        functools.partial(_summed_log_likelihood, data=data, expand=False, checkpoint=False),
    )


def _by_expansion_rule(gmm: GMM, data: Chunked, expanded: Callable, explicit: Callable):
    """`expanded(gmm)` or `explicit(gmm)`, the pass's rule, in every dtype: the products are
    taken where accurate for every restart (`_likelihood.expansion_is_accurate`, one decision
    per pass) and the explicit differences otherwise; below float64, small passes keep to the
    differences alone (`_SMALL_PASS`). On well-centred data the decision is the same every
    pass and costs a (K, D, D) reduction."""
    k, d = gmm.means.shape
    if not may_expand(gmm.means.dtype, data.n_chunks * data.rows, k, d):
        return explicit(gmm)
    return jax.lax.cond(expansion_is_accurate(gmm), expanded, explicit, gmm)


def may_expand(dtype, n_rows: int, n_components: int, n_features: int) -> bool:
    """Whether a pass over `n_rows` rows can take the expanded products at all, a fact known
    before tracing: always in float64; below it unless the pass is small (`_SMALL_PASS`)."""
    return _expand_quadratic(dtype) or n_rows * n_components * n_features**2 >= _SMALL_PASS


def pass_expands(gmm: GMM, n_rows: int) -> bool:
    """Whether `streamed_e_statistics` over `n_rows` centred rows takes the expanded products
    for `gmm` (restarts on a leading axis, means centred as the fit centres the data): the
    pass's own rule, evaluated outside a fit for reports (the benchmarks' path columns)."""
    k, d = gmm.means.shape[-2:]
    if not may_expand(gmm.means.dtype, n_rows, k, d):
        return False
    return bool(jnp.all(map_restarts(expansion_is_accurate, gmm)))


def _fused_e_statistics(gmm: GMM, data: Chunked, *, expand: bool):
    """`streamed_e_statistics` on complete data with the quadratic forms and second moments
    expanded (`expand`: `_expanded_pass`, or row-major products for tied covariances) or from
    explicit differences: (statistics, Σ_i w_i log p(x_i))."""
    if expand and handles_layout(gmm.cov_type):
        return expanded_e_statistics(gmm, data)

    def responsibilities(X, w, _chunk_index):
        comp = kernel_component_log_prob(gmm, X, expand=expand)  # X is centred (`_prepare`)
        lp = logsumexp(comp, axis=-1, keepdims=True)
        return jnp.exp(comp - lp), weighted_sum(lp[:, 0], w)

    return streamed_statistics(
        responsibilities, data, cov_type=gmm.cov_type, shift=gmm.means, expand=expand
    )


def _chunk_missing_e_statistics(X, w, _chunk_index, gmm):
    moments, lp = missing_e_statistics(gmm, X, sample_weight=w, shift=gmm.means)
    return moments, weighted_sum(lp, w)


def block_e_statistics(
    gmm: GMM, X: Float[Array, "b d"], w: Float[Array, " b"], *, missing: bool = False
):
    """`streamed_e_statistics` of one block of rows (a minibatch, an incremental-EM block)."""
    return streamed_e_statistics(gmm, Chunked(X[None], w[None], missing))


def _chunk_log_likelihood(X, w, _chunk_index, gmm, *, expand):
    return kernel_log_likelihood(gmm, X, w, expand=expand)  # X is centred (see `_prepare`)


def _chunk_observed_log_likelihood(X, w, _chunk_index, gmm):
    lp = logsumexp(marginal_component_log_prob(gmm, X), axis=-1)
    return weighted_sum(lp, w)


def streamed_log_likelihood(gmm: GMM, data: Chunked, *, checkpoint: bool = False) -> Array:
    """Σ_i w_i log p(x_i), chunk by chunk (of the observed values, where `data.missing`), by the
    passes' expansion rule (`_by_expansion_rule`); differentiable.

    With `checkpoint`, each chunk's forward pass is recomputed in the backward pass instead of
    stored, so a gradient needs memory for one chunk, not for all N rows.
    """
    if data.missing:
        fn = (
            jax.checkpoint(_chunk_observed_log_likelihood)
            if checkpoint
            else _chunk_observed_log_likelihood
        )
        return sum_over_chunks(fn, data, gmm)
    return _by_expansion_rule(
        gmm,
        data,
        functools.partial(_summed_log_likelihood, data=data, expand=True, checkpoint=checkpoint),
        functools.partial(_summed_log_likelihood, data=data, expand=False, checkpoint=checkpoint),
    )


def _summed_log_likelihood(gmm: GMM, *, data: Chunked, expand: bool, checkpoint: bool) -> Array:
    fn = functools.partial(_chunk_log_likelihood, expand=expand)
    return sum_over_chunks(jax.checkpoint(fn) if checkpoint else fn, data, gmm)
