"""The `GMM` parameter pytree and everything that depends on the covariance type.

Covariances are stored in scikit-learn's shapes; the Cholesky factor of each *precision*
(U with Σ⁻¹ = U Uᵀ) is derived once at construction, because the log-density then is a
matrix product, ‖(x − μ)ᵀ U‖², and log|Σ| = −2 Σ_d log U_dd. U is obtained from the
Cholesky factor L of Σ by a triangular solve (U = L⁻ᵀ); no general inverse or determinant
is ever formed.

All arrays may carry leading batch axes (e.g. a restart axis), shared by every field.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from . import _small_linalg as small_linalg
from ._covariance import check_cov_type, layout


def covariance_shape(cov_type: str, n_components: int, n_features: int) -> tuple[int, ...]:
    """The unbatched shape of `covariances` for a covariance type (scikit-learn's shapes; an
    mclust model takes the shape of its layout, `_covariance.layout`)."""
    return {
        "full": (n_components, n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
        "tied": (n_features, n_features),
    }[layout(cov_type)]


def precision_cholesky(covariances: Array, cov_type: str) -> Array:
    """Cholesky factor of the precision, same shape as `covariances`.

    full/tied: U = L⁻ᵀ with Σ = L Lᵀ (upper triangular, Σ⁻¹ = U Uᵀ), by a triangular solve.
    diag/spherical: 1/√σ².
    A covariance that is not positive definite gives NaN (checked by callers).
    """
    if layout(cov_type) in ("full", "tied"):
        # `_small_linalg`, not LAPACK: jaxlib's batched CPU Cholesky can deadlock.
        chol = small_linalg.cholesky(covariances)
        eye = jnp.broadcast_to(jnp.eye(chol.shape[-1], dtype=chol.dtype), chol.shape)
        # Solve L Y = I for Y = L⁻¹; U = Yᵀ. Triangular, O(D³) once per component.
        inv_chol = small_linalg.solve_lower(chol, eye)
        return jnp.swapaxes(inv_chol, -1, -2)
    return jax.lax.rsqrt(covariances)


def log_det_precision_cholesky(prec_chol: Array, cov_type: str, n_features: int) -> Array:
    """Σ_d log U_dd = −½ log|Σ_k|, shape (..., K) (tied: (...,))."""
    if layout(cov_type) in ("full", "tied"):
        return jnp.sum(jnp.log(jnp.diagonal(prec_chol, axis1=-2, axis2=-1)), axis=-1)
    if layout(cov_type) == "diag":
        return jnp.sum(jnp.log(prec_chol), axis=-1)
    return n_features * jnp.log(prec_chol)


def whitened_square_norms(v: Array, prec_chol: Array, cov_type: str) -> Array:
    """‖U_kᵀ v_k‖² for K vectors v (K, D) and the precisions' Cholesky factors U in
    `cov_type`'s layout: (K,). With v_k = μ_k − m it is the Mahalanobis distance² of m from μ_k."""
    if layout(cov_type) == "full":
        return jnp.sum(jnp.square(jnp.einsum("kd,kde->ke", v, prec_chol)), axis=-1)
    if layout(cov_type) == "tied":
        return jnp.sum(jnp.square(v @ prec_chol), axis=-1)
    if layout(cov_type) == "diag":
        return jnp.sum(jnp.square(v * prec_chol), axis=-1)
    return jnp.sum(jnp.square(v), axis=-1) * jnp.square(prec_chol)


def _is_concrete(*arrays) -> bool:
    return not any(isinstance(a, jax.core.Tracer) for a in arrays)


class GMM(eqx.Module):
    """Parameters of a Gaussian mixture, an immutable pytree.

    Attributes:
        weights: (..., K) mixing proportions on the simplex.
        means: (..., K, D).
        covariances: scikit-learn's shapes: full (..., K, D, D), diag (..., K, D),
            spherical (..., K), tied (..., D, D).
        precisions_cholesky: derived at construction; same shape as `covariances`.
        cov_type: (static) "full", "diag", "spherical", "tied" (scikit-learn's names) or one
            of mclust's fourteen models ("EII", ..., "VVV"), stored in the layout of
            `_covariance.layout` (e.g. "VEI" as diag). The structure of an mclust model is
            imposed by its M-step, not checked here.

    Shapes are checked at construction. When the arrays are concrete (outside jit) the values
    are checked too: finite, weights on the simplex, covariances positive definite. Under jit
    these checks are skipped and the fitting code reports failures as status codes.

    Raises:
        ValueError: on an unknown `cov_type`, inconsistent shapes or invalid values.
    """

    weights: Float[Array, "... k"]
    means: Float[Array, "... k d"]
    covariances: Array
    precisions_cholesky: Array
    cov_type: str = eqx.field(static=True)

    def __init__(self, weights, means, covariances, cov_type: str = "full"):
        check_cov_type(cov_type)
        weights, means, covariances = (
            jnp.asarray(weights),
            jnp.asarray(means),
            jnp.asarray(covariances),
        )
        dtype = jnp.result_type(weights, means, covariances, jnp.float32)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(f"GMM parameters must be real floating point, got dtype {dtype}.")
        weights, means, covariances = (a.astype(dtype) for a in (weights, means, covariances))
        _check_shapes(weights, means, covariances, cov_type)
        if _is_concrete(weights, means, covariances):
            _check_values(weights, means, covariances, cov_type)
        self.weights = weights
        self.means = means
        self.covariances = covariances
        self.cov_type = cov_type
        self.precisions_cholesky = precision_cholesky(covariances, cov_type)

    @property
    def n_components(self) -> int:
        return self.means.shape[-2]

    @property
    def n_features(self) -> int:
        return self.means.shape[-1]

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Leading axes shared by all fields (e.g. (R,) for the restarts of a fit)."""
        return self.weights.shape[:-1]

    def __getitem__(self, index) -> GMM:
        """Index the leading batch axes: `result.params[3]` is restart 3."""
        if not self.batch_shape:
            raise IndexError("this GMM has no batch axis to index")
        return jax.tree.map(lambda a: a[index], self)


def _check_shapes(weights, means, covariances, cov_type):
    if means.ndim < 2:
        raise ValueError(f"means must have shape (K, D), got {means.shape}.")
    *batch, k, d = means.shape
    batch = tuple(batch)
    expected = {
        "weights": batch + (k,),
        "covariances": batch + covariance_shape(cov_type, k, d),
    }
    for name, arr in (("weights", weights), ("covariances", covariances)):
        if arr.shape != expected[name]:
            raise ValueError(
                f"{name} must have shape {expected[name]} for cov_type={cov_type!r} with "
                f"means of shape {means.shape}, got {arr.shape}."
            )


def _check_values(weights, means, covariances, cov_type):
    w, m, c = (np.asarray(a) for a in (weights, means, covariances))
    for name, arr in (("weights", w), ("means", m), ("covariances", c)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contain NaN or inf; pass finite parameters.")
    tol = 1e-5 if w.dtype == np.float32 else 1e-8
    if np.any(w < 0) or not np.allclose(w.sum(-1), 1.0, atol=tol * max(1, w.shape[-1])):
        raise ValueError("weights must be non-negative and sum to 1 along the last axis.")
    if layout(cov_type) in ("full", "tied"):
        if not np.allclose(c, np.swapaxes(c, -1, -2), rtol=1e-5, atol=1e-8):
            raise ValueError(f"{cov_type} covariances must be symmetric.")
        try:
            np.linalg.cholesky(c)
        except np.linalg.LinAlgError:
            raise ValueError(
                f"{cov_type} covariances must be positive definite; add reg_covar to the diagonal."
            ) from None
    elif np.any(c <= 0):
        raise ValueError(f"{cov_type} variances must be strictly positive.")


def check_one_mixture(gmm, what: str) -> None:
    """TypeError unless `gmm` is a `GMM`; ValueError naming the fix when it holds a batch
    (e.g. a fit's `result.params`, one mixture per restart) where `what` takes one."""
    if not isinstance(gmm, GMM):
        raise TypeError(f"{what} takes a gmmjax.GMM, got {type(gmm).__name__}.")
    if gmm.batch_shape:
        raise ValueError(
            f"{what} takes one mixture; this GMM holds a batch of shape {gmm.batch_shape} "
            "(e.g. a fit's result.params, one per restart): pass result.best or "
            "result.params[i]."
        )
