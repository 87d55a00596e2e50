"""Drawing samples from a mixture by its generative view: z ~ Cat(π), x | z ~ N(μ_z, Σ_z)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from . import _small_linalg as small_linalg
from ._covariance import layout
from ._params import GMM
from ._validate import check_key, is_int

_MIN_ROWS = 1024


def sample(gmm: GMM, n: int, *, key: PRNGKeyArray) -> tuple[Float[Array, "n d"], Int[Array, " n"]]:
    """Draw n samples: (X (n, D), z (n,) component labels).

    The draw is compiled for n rounded up to a power of two (at least 1024) and cut to n (rows
    are independent, so any n of them are a sample): drawing many different sizes compiles a
    handful of programs, not one per size. With JAX's partitionable threefry (the default
    since JAX 0.5) the rows are exactly those of a draw of n rows, so data sets made from a
    key do not depend on this rounding.
    """
    if not isinstance(gmm, GMM):
        raise TypeError(f"sample needs a gmmjax.GMM, got {type(gmm).__name__}.")
    if gmm.batch_shape:
        raise ValueError(f"sample needs a single GMM, got batch shape {gmm.batch_shape}.")
    if not is_int(n) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}.")
    check_key(key)
    if n == 0:
        d = gmm.n_features
        return jnp.zeros((0, d), gmm.means.dtype), jnp.zeros((0,), int)  # categorical's dtype
    rows = max(_MIN_ROWS, 1 << (int(n) - 1).bit_length())
    X, z = jax.device_get(_draw(gmm, key, rows=rows))
    # Cut on the host: an eager slice would compile one program per n.
    return jnp.asarray(X[:n]), jnp.asarray(z[:n])


@functools.partial(jax.jit, static_argnames="rows")
def _draw(gmm: GMM, key: PRNGKeyArray, *, rows: int):
    key_z, key_x = jax.random.split(key)
    z = jax.random.categorical(key_z, jnp.log(gmm.weights), shape=(rows,))
    noise = jax.random.normal(key_x, (rows, gmm.n_features), gmm.means.dtype)
    cov = gmm.covariances
    if layout(gmm.cov_type) in ("full", "tied"):
        chol = small_linalg.cholesky(cov)
        if layout(gmm.cov_type) == "full":
            offset = jnp.einsum("nde,ne->nd", chol[z], noise)
        else:
            offset = noise @ chol.T
    elif layout(gmm.cov_type) == "diag":
        offset = jnp.sqrt(cov[z]) * noise
    else:
        offset = jnp.sqrt(cov[z])[:, None] * noise
    return gmm.means[z] + offset, z
