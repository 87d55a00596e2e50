"""The unconstrained parameterisation used by gradient-based fitting (docs/math.md §5).

A bijection between a `GMM` and a pytree of unconstrained arrays:
    weights      <-> centred logits a (Σ_k a_k = 0 fixes softmax's gauge), π = softmax(a)
    means        <-> means
    full / tied  <-> lower-triangular Cholesky factor L of Σ with log L_dd on the diagonal
                     (the strictly upper triangle is ignored, so gradients there are zero)
    diag / sph.  <-> log-variances
Every unconstrained value maps to a valid GMM, so every optimiser iterate is feasible.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from . import _small_linalg as small_linalg
from ._covariance import layout
from ._likelihood import matmul_precision
from ._params import GMM


class Unconstrained(eqx.Module):
    """Unconstrained coordinates of a GMM (see module docstring).

    Attributes:
        logits: (..., K) centred logits.
        means: (..., K, D).
        scale: full (..., K, D, D) / tied (..., D, D): Cholesky factor with log-diagonal;
            diag (..., K, D) / spherical (..., K): log-variances.
        cov_type: static.
    """

    logits: Float[Array, "... k"]
    means: Float[Array, "... k d"]
    scale: Array
    cov_type: str = eqx.field(static=True)


def to_unconstrained(gmm: GMM) -> Unconstrained:
    """GMM -> unconstrained coordinates."""
    log_w = jnp.log(gmm.weights)
    logits = log_w - jnp.mean(log_w, axis=-1, keepdims=True)
    if layout(gmm.cov_type) in ("full", "tied"):
        chol = small_linalg.cholesky(gmm.covariances)
        diag = jnp.diagonal(chol, axis1=-2, axis2=-1)
        scale = _set_diagonal(chol, jnp.log(diag))
    else:
        scale = jnp.log(gmm.covariances)
    return Unconstrained(logits, gmm.means, scale, gmm.cov_type)


def from_unconstrained(u: Unconstrained) -> GMM:
    """Unconstrained coordinates -> GMM (weights on the simplex, covariances positive definite)."""
    weights = jax.nn.softmax(u.logits, axis=-1)
    if layout(u.cov_type) in ("full", "tied"):
        lower = jnp.tril(u.scale, k=-1)
        chol = _set_diagonal(lower, jnp.exp(jnp.diagonal(u.scale, axis1=-2, axis2=-1)))
        cov = jnp.matmul(chol, jnp.swapaxes(chol, -1, -2), precision=matmul_precision())
    else:
        cov = jnp.exp(u.scale)
    return GMM(weights, u.means, cov, u.cov_type)


def _set_diagonal(m: Array, diag: Array) -> Array:
    d = m.shape[-1]
    eye = jnp.eye(d, dtype=m.dtype)
    return m * (1 - eye) + diag[..., :, None] * eye
