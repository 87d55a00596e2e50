"""Values missing at random: marginal densities, conditional moments and expected statistics.

NaN marks a missing value. For row i with observed coordinates o and missing ones m, and
component k (docs/math.md §10):

    log p(x_o | k) = log N(x_o; μ_o, Σ_oo)
    x̂_ik = E[x | x_o, k]:    x_o on o,   μ_m + Σ_mo Σ_oo⁻¹ (x_o − μ_o) on m
    C_ik = Cov[x | x_o, k]:  Σ_mm − Σ_mo Σ_oo⁻¹ Σ_om on the (m, m) block, 0 elsewhere.

EM's expected statistics then replace x by x̂ and add C: s1 = Σ γ (x̂ − c), s2 = Σ γ [(x̂ − c)
(x̂ − c)ᵀ + C], and the M-step is unchanged; its objective is the observed-data
log-likelihood Σ_i log Σ_k π_k N(x_io; μ_ko, Σ_koo), which EM never decreases.

Fixed shapes, no gathers: with P = diag(o) and x̃ = x with zeros in the missing slots,
A = P Σ P + (I − P) is Σ_oo on the observed block and the identity elsewhere, so one Cholesky
factor L of A (per row and component) gives log det Σ_oo = 2 Σ log L_dd, the quadratic form
‖L⁻¹ P (x̃ − μ)‖², x̂ = μ + Σ A⁻¹ P (x̃ − μ) and C = Σ − (L⁻¹ P Σ)ᵀ (L⁻¹ P Σ). Diagonal and
spherical covariances need no factorisation: each coordinate is its own Gaussian. The cost
is a D×D Cholesky per row and component (full, tied), so the fitting code uses smaller
chunks when values are missing (`_prepare.default_chunk_size`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from . import _small_linalg as small_linalg
from ._covariance import layout
from ._params import GMM, check_one_mixture


def observed_mask(X: Float[Array, "n d"]) -> Bool[Array, "n d"]:
    """True where a value was observed (not NaN)."""
    return ~jnp.isnan(X)


def _filled(X):
    """(x̃: X with 0 in the missing slots, the observed mask)."""
    obs = observed_mask(X)
    return jnp.where(obs, X, 0.0), obs


def _full_covariances(gmm: GMM) -> Float[Array, "k d d"]:
    if layout(gmm.cov_type) == "tied":
        return jnp.broadcast_to(gmm.covariances, (gmm.n_components,) + gmm.covariances.shape)
    return gmm.covariances


def _observed_block_cholesky(cov, obs):
    """L with L Lᵀ = P Σ P + (I − P) for every row and component: (n, k, d, d) from cov
    (k, d, d) and obs (n, d)."""
    both = (obs[:, :, None] & obs[:, None, :])[:, None]
    eye = jnp.eye(cov.shape[-1], dtype=cov.dtype)
    return small_linalg.cholesky(jnp.where(both, cov[None], 0.0) + jnp.where(both, 0.0, eye))


def _diagonal_variances(gmm: GMM) -> Float[Array, "k d"]:
    var = gmm.covariances
    if layout(gmm.cov_type) == "spherical":
        var = jnp.broadcast_to(var[:, None], (gmm.n_components, gmm.n_features))
    return var


class _Rows(NamedTuple):
    """What every formula reads: x̃ (N, D), the observed mask (N, D), and A's Cholesky factor
    L (N, K, D, D) for full and tied covariances (None for diag and spherical).

    Each program factors A once (`_small_linalg`, not LAPACK: see there why) and shares L
    between the density and the moments.
    """

    x: Array
    obs: Array
    L: Array | None


def _rows(gmm: GMM, X: Float[Array, "n d"]) -> _Rows:
    x, obs = _filled(X)
    if layout(gmm.cov_type) in ("diag", "spherical"):
        return _Rows(x, obs, None)
    return _Rows(x, obs, _observed_block_cholesky(_full_covariances(gmm), obs))


def _log_gaussian(gmm: GMM, rows: _Rows) -> Float[Array, "n k"]:
    x, obs, L = rows
    log_2pi = math.log(2 * math.pi)
    n_obs = jnp.sum(obs, axis=-1, dtype=x.dtype)[:, None]
    if L is None:
        prec = gmm.precisions_cholesky
        if layout(gmm.cov_type) == "spherical":
            prec = jnp.broadcast_to(prec[:, None], gmm.means.shape)
        y = (x[:, None, :] - gmm.means[None]) * prec[None]
        terms = jnp.log(prec)[None] - 0.5 * jnp.square(y)
        return jnp.sum(jnp.where(obs[:, None, :], terms, 0.0), axis=-1) - 0.5 * log_2pi * n_obs
    z = jnp.where(obs[:, None, :], x[:, None, :] - gmm.means[None], 0.0)
    v = small_linalg.solve_lower(L, z[..., None])[..., 0]
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(L, axis1=-2, axis2=-1)), axis=-1)
    return -0.5 * (jnp.sum(jnp.square(v), axis=-1) + log_det + log_2pi * n_obs)


def _component_log_prob(gmm: GMM, rows: _Rows) -> Float[Array, "n k"]:
    return jnp.log(gmm.weights) + _log_gaussian(gmm, rows)


def _moments(gmm: GMM, rows: _Rows) -> tuple[Array, Array]:
    x, obs, L = rows
    miss = ~obs[:, None, :]
    if L is None:
        mean = jnp.where(miss, gmm.means[None], x[:, None, :])
        return mean, jnp.where(miss, _diagonal_variances(gmm)[None], 0.0)
    cov = _full_covariances(gmm)
    z = jnp.where(obs[:, None, :], x[:, None, :] - gmm.means[None], 0.0)
    # A⁻¹ z is zero on the missing slots (A is the identity there and z is zero), so
    # Σ A⁻¹ z = Σ P A⁻¹ P (x̃ − μ).
    w = small_linalg.cho_solve(L, z[..., None])[..., 0]
    mean = gmm.means[None] + jnp.einsum("kde,nke->nkd", cov, w)
    mean = jnp.where(miss, mean, x[:, None, :])
    G = small_linalg.solve_lower(L, jnp.where(obs[:, None, :, None], cov[None], 0.0))
    C = cov[None] - jnp.einsum("nkji,nkjl->nkil", G, G)
    return mean, jnp.where(miss[..., :, None] & miss[..., None, :], C, 0.0)


def marginal_log_gaussian(gmm: GMM, X: Float[Array, "n d"]) -> Float[Array, "n k"]:
    """log N(x_io; μ_ko, Σ_koo), shape (N, K): the density of each row's observed values."""
    return _log_gaussian(gmm, _rows(gmm, X))


def marginal_component_log_prob(gmm: GMM, X: Float[Array, "n d"]) -> Float[Array, "n k"]:
    """log π_k + log N(x_io; μ_ko, Σ_koo), shape (N, K)."""
    return _component_log_prob(gmm, _rows(gmm, X))


def conditional_moments(gmm: GMM, X: Float[Array, "n d"]) -> tuple[Array, Array]:
    """(x̂, C) of the module docstring for every row and component.

    Returns:
        x̂ (N, K, D), exactly x on the observed coordinates; C (N, K, D, D) for full and tied
        covariances, its diagonal (N, K, D) for diag and spherical; exactly 0 outside the
        (m, m) block.
    """
    return _moments(gmm, _rows(gmm, X))


def expected_moments(
    gmm: GMM,
    X: Float[Array, "n d"],
    resp: Float[Array, "n k"],
    *,
    sample_weight: Float[Array, " n"] | None,
    shift: Float[Array, "k d"],
) -> tuple[Array, Array, Array]:
    """Expected sufficient statistics (s0, s1, s2) about `shift` (module docstring), s2 in the
    shape of `gmm.cov_type` (as in `_stats.SufficientStatistics`)."""
    return _sums(gmm.cov_type, conditional_moments(gmm, X), resp, sample_weight, shift)


def e_statistics(
    gmm: GMM,
    X: Float[Array, "n d"],
    *,
    sample_weight: Float[Array, " n"] | None,
    shift: Float[Array, "k d"],
) -> tuple[tuple[Array, Array, Array], Array]:
    """One E-step from one factorisation: ((s0, s1, s2) as `expected_moments` with the
    responsibilities p(k | x_o), log p(x_io) per row (N,))."""
    rows = _rows(gmm, X)
    comp = _component_log_prob(gmm, rows)
    lp = jax.nn.logsumexp(comp, axis=-1, keepdims=True)
    moments = _sums(gmm.cov_type, _moments(gmm, rows), jnp.exp(comp - lp), sample_weight, shift)
    return moments, lp[:, 0]


def _sums(cov_type, moments, resp, sample_weight, shift):
    if sample_weight is not None:
        resp = resp * sample_weight[:, None]
    mean, C = moments
    e = mean - shift[None]
    s0 = jnp.sum(resp, axis=0)
    s1 = jnp.einsum("nk,nkd->kd", resp, e)
    if layout(cov_type) in ("diag", "spherical"):
        s2 = jnp.einsum("nk,nkd->kd", resp, jnp.square(e) + C)
    else:
        s2 = jnp.einsum("nk,nkd,nke->kde", resp, e, e) + jnp.einsum("nk,nkde->kde", resp, C)
        if layout(cov_type) == "tied":
            s2 = jnp.sum(s2, axis=0)
    return s0, s1, s2


def posterior_mean(gmm: GMM, X: Float[Array, "n d"]) -> Float[Array, "n d"]:
    """E[x | x_o] under the mixture: Σ_k p(k | x_o) x̂_k, x_o itself where observed."""
    rows = _rows(gmm, X)
    comp = _component_log_prob(gmm, rows)
    resp = jnp.exp(comp - jax.nn.logsumexp(comp, axis=-1, keepdims=True))
    mean, _ = _moments(gmm, rows)
    return jnp.where(rows.obs, rows.x, jnp.einsum("nk,nkd->nd", resp, mean))


def conditional_draw(gmm: GMM, X: Float[Array, "n d"], key) -> Float[Array, "n d"]:
    """One draw of the missing values from p(x_m | x_o) under the mixture.

    A component is drawn from p(k | x_o), then x_m by conditioning a joint draw
    y ~ N(μ_k, Σ_k) on the observed values (Matheron's rule):
    x = y + Σ P A⁻¹ P (x̃ − y) has the law N(x̂_k, C_k), needing only A's Cholesky factor
    (C itself is singular on the observed block). The conditioned draw is formed for every
    component from one ε and the drawn one kept (no per-row gather of covariances).
    """
    k_key, y_key = jax.random.split(key)
    rows = _rows(gmm, X)
    x, obs, L = rows
    comp = _component_log_prob(gmm, rows)
    label = jax.random.categorical(k_key, comp, axis=-1)  # (N,)
    pick = jax.nn.one_hot(label, gmm.n_components, dtype=X.dtype)  # (N, K)
    eps = jax.random.normal(y_key, x.shape, x.dtype)
    if layout(gmm.cov_type) in ("diag", "spherical"):
        draws = gmm.means[None] + jnp.sqrt(_diagonal_variances(gmm))[None] * eps[:, None, :]
    else:
        cov = _full_covariances(gmm)
        y = gmm.means[None] + jnp.einsum("kde,ne->nkd", small_linalg.cholesky(cov), eps)
        r = jnp.where(obs[:, None, :], x[:, None, :] - y, 0.0)
        w = small_linalg.cho_solve(L, r[..., None])[..., 0]
        draws = y + jnp.einsum("kde,nke->nkd", cov, w)
    return jnp.where(obs, x, jnp.einsum("nk,nkd->nd", pick, draws))


@jax.jit
def _impute_mean(gmm: GMM, X):
    centre = jnp.mean(gmm.means, axis=-2)
    shifted = eqx.tree_at(lambda g: g.means, gmm, gmm.means - centre)
    # Observed values come back bit for bit, not through the shift and back.
    return jnp.where(observed_mask(X), X, posterior_mean(shifted, X - centre) + centre)


@jax.jit
def _impute_draw(gmm: GMM, X, key):
    centre = jnp.mean(gmm.means, axis=-2)
    shifted = eqx.tree_at(lambda g: g.means, gmm, gmm.means - centre)
    return jnp.where(observed_mask(X), X, conditional_draw(shifted, X - centre, key) + centre)


def impute(gmm: GMM, X, *, key=None) -> Float[Array, "n d"]:
    """Fill the missing values (NaN) of X (N, D) under a fitted mixture.

    Without `key`: the conditional mean E[x_m | x_o] = Σ_k p(k | x_o) x̂_k (the best
    imputation in squared error). With `key`: one draw from p(x_m | x_o), a component drawn
    from p(k | x_o) and then the Gaussian conditional N(x̂_k, C_k), so that imputations from
    several keys are multiple imputations (between-imputation spread included). Observed
    values are returned unchanged; a row with every value missing gets the mixture's mean
    (or a draw from the mixture).

    Raises:
        TypeError: `gmm` is not a `gmmjax.GMM`.
        ValueError: `gmm` is a batch of mixtures (e.g. `result.params`), X not 2-D with
            `gmm.n_features` columns, or containing ±inf.
    """
    check_one_mixture(gmm, "impute")
    X = np.asarray(X) if not isinstance(X, jax.Array) else X
    if X.ndim != 2 or X.shape[-1] != gmm.n_features:
        raise ValueError(
            f"X must have shape (n_samples, {gmm.n_features}) for this mixture, got {X.shape}."
        )
    if bool(np.any(np.isinf(np.asarray(X)))):
        raise ValueError("X contains inf; only NaN marks a missing value.")
    X = jnp.asarray(X, gmm.means.dtype)
    if key is None:
        return _impute_mean(gmm, X)
    return _impute_draw(gmm, X, key)
