"""Drawing samples from a mixture by its generative view: z ~ Cat(π), x | z ~ N(μ_z, Σ_z)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._params import GMM


def sample(gmm: GMM, n: int, *, key: PRNGKeyArray) -> tuple[Float[Array, "n d"], Int[Array, " n"]]:
    """Draw n samples: (X (n, D), z (n,) component labels)."""
    if gmm.batch_shape:
        raise ValueError(f"sample needs a single GMM, got batch shape {gmm.batch_shape}.")
    key_z, key_x = jax.random.split(key)
    z = jax.random.categorical(key_z, jnp.log(gmm.weights), shape=(n,))
    noise = jax.random.normal(key_x, (n, gmm.n_features), gmm.means.dtype)
    cov = gmm.covariances
    if gmm.cov_type in ("full", "tied"):
        chol = jnp.linalg.cholesky(cov)
        if gmm.cov_type == "full":
            offset = jnp.einsum("nde,ne->nd", chol[z], noise)
        else:
            offset = noise @ chol.T
    elif gmm.cov_type == "diag":
        offset = jnp.sqrt(cov[z]) * noise
    else:
        offset = jnp.sqrt(cov[z])[:, None] * noise
    return gmm.means[z] + offset, z
