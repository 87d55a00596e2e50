"""Information criteria (docs/math.md §6): free-parameter counts, BIC, AIC, ICL."""

from __future__ import annotations

import jax.numpy as jnp

from ._covariance import n_covariance_parameters
from ._em import e_step
from ._likelihood import log_likelihood
from ._params import GMM


def n_parameters(gmm: GMM) -> int:
    """Free parameters: weights K−1, means K·D, and the covariances' count (full K·D(D+1)/2,
    diag K·D, spherical K, tied D(D+1)/2; mclust's models as its `nMclustParams`)."""
    k, d = gmm.n_components, gmm.n_features
    return (k - 1) + k * d + n_covariance_parameters(gmm.cov_type, k, d)


def bic(gmm: GMM, X, *, missing: str = "propagate") -> jnp.ndarray:
    """−2ℓ + p log N (lower is better); missing="marginal" scores rows with NaN by their
    observed values (see `gmmjax.component_log_prob`)."""
    X = jnp.asarray(X, gmm.means.dtype)
    ll = log_likelihood(gmm, X, missing=missing)
    return -2 * ll + n_parameters(gmm) * jnp.log(X.shape[0])


def aic(gmm: GMM, X, *, missing: str = "propagate") -> jnp.ndarray:
    """−2ℓ + 2p (lower is better); see `bic` for `missing`."""
    X = jnp.asarray(X, gmm.means.dtype)
    return -2 * log_likelihood(gmm, X, missing=missing) + 2 * n_parameters(gmm)


def classification_loss(
    gmm: GMM, X, sample_weight=None, *, missing: str = "propagate"
) -> jnp.ndarray:
    """−Σ_i w_i log max_k γ_ik (w_i = 1 without `sample_weight`): what the log-likelihood of
    the mixture loses against the classification likelihood when each row is assigned to its
    most responsible component; ≥ 0, and 0 for a clean partition."""
    resp, _ = e_step(gmm, jnp.asarray(X, gmm.means.dtype), missing=missing)
    per_row = -jnp.log(jnp.max(resp, axis=1))
    return jnp.sum(per_row if sample_weight is None else sample_weight * per_row)


def icl(gmm: GMM, X, *, missing: str = "propagate") -> jnp.ndarray:
    """BIC − 2 Σ_i log max_k γ_ik: BIC penalised for overlapping components (Biernacki,
    Celeux & Govaert 2000, with the MAP assignment, as R mclust's `icl`; lower is better);
    see `bic` for `missing`."""
    return bic(gmm, X, missing=missing) + 2 * classification_loss(gmm, X, missing=missing)
