"""Information criteria (docs/math.md §6): free-parameter counts, BIC, AIC, ICL."""

from __future__ import annotations

import jax.numpy as jnp

from ._covariance import n_covariance_parameters
from ._em import e_step
from ._likelihood import log_likelihood
from ._params import GMM, check_one_mixture


def n_parameters(gmm: GMM) -> int:
    """Free parameters: weights K−1, means K·D, and the covariances' count (full K·D(D+1)/2,
    diag K·D, spherical K, tied D(D+1)/2; mclust's models as its `nMclustParams`)."""
    k, d = gmm.n_components, gmm.n_features
    return (k - 1) + k * d + n_covariance_parameters(gmm.cov_type, k, d)


def _check_rows(gmm: GMM, X, criterion: str):
    """X (N, D) as an array of the mixture's dtype, or a ValueError naming the fix: a
    criterion needs at least one row (with none, ℓ = 0 and log N = −inf)."""
    check_one_mixture(gmm, criterion)
    X = jnp.asarray(X, gmm.means.dtype)
    if X.ndim != 2 or X.shape[1] != gmm.n_features:
        raise ValueError(
            f"{criterion}: X must have shape (n_samples, {gmm.n_features}) for this mixture, "
            f"got {X.shape}."
        )
    if X.shape[0] == 0:
        raise ValueError(
            f"{criterion}: X has no rows; an information criterion scores the data the model "
            "was fitted to, so pass those rows."
        )
    return X


def bic(gmm: GMM, X, *, missing: str = "propagate") -> jnp.ndarray:
    """−2ℓ + p log N (lower is better); missing="marginal" scores rows with NaN by their
    observed values (see `gmmjax.component_log_prob`).

    Raises:
        TypeError: `gmm` is not a `gmmjax.GMM`.
        ValueError: `gmm` is a batch of mixtures, or X is not (N, D) with N >= 1 rows and
            the mixture's D columns.
    """
    X = _check_rows(gmm, X, "bic")
    ll = log_likelihood(gmm, X, missing=missing)
    return -2 * ll + n_parameters(gmm) * jnp.log(X.shape[0])


def aic(gmm: GMM, X, *, missing: str = "propagate") -> jnp.ndarray:
    """−2ℓ + 2p (lower is better); see `bic` for `missing` and the errors."""
    X = _check_rows(gmm, X, "aic")
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
    see `bic` for `missing` and the errors."""
    X = _check_rows(gmm, X, "icl")
    return bic(gmm, X, missing=missing) + 2 * classification_loss(gmm, X, missing=missing)
