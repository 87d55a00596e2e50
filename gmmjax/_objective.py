"""The objective every method maximises (docs/math.md §2):

    f(θ) = (Σ_i w_i log p(x_i | θ) + log p(θ)) / Σ_i w_i

the mean per-sample log-likelihood plus the log-prior spread over the total weight; without a
prior, f is the mean log-likelihood. EM's history and tol test, the gradient methods' loss and
the choice of the best restart all read this one function, so methods differ only in how they
climb it.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Float

from ._likelihood import log_likelihood
from ._params import GMM
from ._prior import Prior, log_prior


def objective(
    gmm: GMM,
    X: Float[Array, "n d"],
    *,
    prior: Prior | None = None,
    sample_weight: Float[Array, " n"] | None = None,
) -> Float[Array, ""]:
    """f(θ) of the module docstring for one GMM and in-memory data X (N, D)."""
    X = jnp.asarray(X)
    w = jnp.ones(X.shape[:1], X.dtype) if sample_weight is None else jnp.asarray(sample_weight)
    return penalised(log_likelihood(gmm, X, w), gmm, prior, jnp.sum(w))


def penalised(total_log_likelihood, gmm: GMM, prior: Prior | None, total_weight, active=None):
    """(Σ_i w_i log p(x_i) + log p(θ)) / Σ_i w_i from an already summed log-likelihood."""
    if prior is None:
        return total_log_likelihood / total_weight
    return (total_log_likelihood + log_prior(gmm, prior, active)) / total_weight
