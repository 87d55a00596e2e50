"""The objective every method maximises (docs/math.md §2):

    f(θ) = (Σ_i w_i log p(x_i | θ) + log p(θ)) / Σ_i w_i

the mean per-sample log-likelihood plus the log-prior spread over the total weight; without a
prior, f is the mean log-likelihood. EM's history and tol test, the gradient methods' loss and
the choice of the best restart all read this one function, so methods differ only in how they
climb it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._likelihood import log_likelihood
from ._params import GMM
from ._prior import Prior, log_prior, resolve_prior


def objective(
    gmm: GMM,
    X: Float[Array, "n d"],
    *,
    prior: Prior | str | None = None,
    sample_weight: Float[Array, " n"] | None = None,
) -> Float[Array, ""]:
    """f(θ) of the module docstring for one GMM and in-memory data X (N, D).

    `prior` takes what `fit` takes: None, a `Prior`, or "mclust", which builds
    `Prior.mclust(X, K, gmm.cov_type, sample_weight=sample_weight)` from this X as `fit` does
    from its X, so that f here equals a fit's `objective` on the same data. "mclust" reads X
    on the host: it needs concrete X and weights (outside jax.jit / grad; inside, build the
    prior first and pass it).
    """
    if prior is not None and not isinstance(prior, Prior):
        prior = _resolve_prior(prior, gmm, X, sample_weight)
    X = jnp.asarray(X)
    w = jnp.ones(X.shape[:1], X.dtype) if sample_weight is None else jnp.asarray(sample_weight)
    return penalised(log_likelihood(gmm, X, w), gmm, prior, jnp.sum(w))


def _resolve_prior(prior, gmm, X, sample_weight) -> Prior:
    """`prior=` given by name: the `Prior` that `fit` builds for it (ValueError otherwise)."""
    if not isinstance(prior, str):
        raise TypeError(
            f'prior must be None, "mclust" or a gmmjax.Prior, got {type(prior).__name__}.'
        )
    if not isinstance(gmm, GMM) or gmm.batch_shape:
        raise ValueError(
            f"prior={prior!r} builds one prior for one GMM; pass one mixture (e.g. result.best "
            "or result.params[i]), not a batch of them."
        )
    if any(isinstance(v, jax.core.Tracer) for v in (X, sample_weight)):
        raise ValueError(
            f"prior={prior!r} builds the prior from X on the host, and X is traced (inside "
            "jax.jit, vmap or grad); build it outside, prior = gmmjax.Prior.mclust(X, K, "
            "cov_type), and pass the Prior."
        )
    return resolve_prior(
        prior,
        np.asarray(X),
        gmm.n_components,
        gmm.cov_type,
        n_features=gmm.n_features,
        sample_weight=None if sample_weight is None else np.asarray(sample_weight),
    )


def penalised(total_log_likelihood, gmm: GMM, prior: Prior | None, total_weight, active=None):
    """(Σ_i w_i log p(x_i) + log p(θ)) / Σ_i w_i from an already summed log-likelihood."""
    if prior is None:
        return total_log_likelihood / total_weight
    return (total_log_likelihood + log_prior(gmm, prior, active)) / total_weight
