"""Every check of user input, run in Python before tracing, with the messages users see."""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

from ._params import COV_TYPES, GMM, covariance_shape

INIT_METHODS = ("kmeans++", "random_from_data", "random")


def float_dtype_for(X) -> np.dtype:
    """The compute dtype: X's own float32/float64; integers and bools take JAX's default float."""
    dtype = np.dtype(getattr(X, "dtype", np.float64))
    if dtype in (np.float32, np.float64):
        return jnp.dtype(jnp.zeros((), dtype).dtype)  # float64 becomes float32 without x64
    return jnp.dtype(jnp.zeros((), float).dtype)


def check_data(X) -> jax.Array:
    """X as a 2-D floating JAX array, or a ValueError that names the fix."""
    if not hasattr(X, "dtype"):
        try:
            X = np.asarray(X)
        except (ValueError, TypeError) as err:
            raise ValueError(f"X must be a numeric 2-D array-like: {err}") from None
    dtype = np.dtype(X.dtype)
    if dtype.kind == "c":
        raise ValueError(
            "Complex data not supported: X is complex; pass real-valued data (e.g. X.real)."
        )
    if dtype.kind == "O":
        # Numbers stored as objects are numbers; anything else fails here with NumPy's
        # TypeError/ValueError, which names the offending type.
        X = np.asarray(X).astype(np.float64)
        dtype = X.dtype
    if dtype.kind not in "biuf":
        raise ValueError(f"X must be numeric, got dtype {dtype}; convert it with X.astype(float).")
    if X.ndim != 2:
        hint = (
            " Reshape your data with X.reshape(-1, 1) if it has a single feature."
            if X.ndim == 1
            else ""
        )
        raise ValueError(f"X must be 2-D with shape (n_samples, n_features), got {X.shape}.{hint}")
    if X.shape[0] == 0:
        raise ValueError(
            f"X is empty: 0 sample(s) (shape={X.shape}) while a minimum of 1 is required."
        )
    if X.shape[1] == 0:
        raise ValueError(
            f"X is empty: 0 feature(s) (shape={X.shape}) while a minimum of 1 is required."
        )
    X = jnp.asarray(X, dtype=float_dtype_for(X))
    if not bool(jnp.all(jnp.isfinite(X))):
        raise ValueError(
            "X contains NaN or inf; remove or impute those rows (e.g. X[np.isfinite(X).all(1)])."
        )
    return X


def check_sample_weight(sample_weight, n_samples: int, dtype) -> jax.Array:
    """(N,) non-negative finite weights, not all zero; None means all ones."""
    if sample_weight is None:
        return jnp.ones((n_samples,), dtype)
    w = np.asarray(sample_weight)
    if w.dtype.kind not in "biuf":
        raise ValueError(f"sample_weight must be numeric, got dtype {w.dtype}.")
    if w.shape != (n_samples,):
        raise ValueError(
            f"sample_weight must have shape (n_samples,) = ({n_samples},), got {w.shape}."
        )
    if not np.all(np.isfinite(w)):
        raise ValueError("sample_weight contains NaN or inf; pass finite weights.")
    if np.any(w < 0):
        raise ValueError("sample_weight must be non-negative.")
    if not np.any(w > 0):
        raise ValueError("sample_weight is all zero; at least one sample needs positive weight.")
    return jnp.asarray(w, dtype)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_fit_options(
    *, n_samples, n_components, cov_type, init, n_restarts, max_iter, tol, reg_covar, chunk_size
):
    """Scalar options of `fit` (via `FitConfig`); see its docstring."""
    if not _is_int(n_components) or n_components < 1:
        raise ValueError(f"n_components must be an integer >= 1, got {n_components!r}.")
    if n_components > n_samples:
        raise ValueError(
            f"n_components={n_components} exceeds the number of samples ({n_samples}); "
            "lower n_components or pass more data."
        )
    if cov_type not in COV_TYPES:
        raise ValueError(f"cov_type must be one of {COV_TYPES}, got {cov_type!r}.")
    if init not in INIT_METHODS:
        raise ValueError(f"init must be one of {INIT_METHODS}, got {init!r}.")
    if not _is_int(n_restarts) or n_restarts < 1:
        raise ValueError(f"n_restarts must be an integer >= 1, got {n_restarts!r}.")
    if not _is_int(max_iter) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}.")
    check_non_negative("tol", tol)
    check_non_negative("reg_covar", reg_covar)
    check_positive_int("chunk_size", chunk_size, allow_none=True)


def check_positive_int(name: str, value, *, allow_none: bool = False) -> None:
    """ValueError unless `value` is an integer >= 1 (or None when `allow_none`)."""
    if allow_none and value is None:
        return
    if not _is_int(value) or value < 1:
        suffix = " or None" if allow_none else ""
        raise ValueError(f"{name} must be a positive integer{suffix}, got {value!r}.")


def check_non_negative(name, value):
    v = np.asarray(value)
    if v.shape != () or v.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a real scalar, got {value!r}.")
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}.")


def check_init_params(
    init_params, *, n_components: int, n_features: int, cov_type: str, n_restarts: int
) -> None:
    """`init_params` must be a GMM of this cov_type, unbatched or with a leading restart axis."""
    if not isinstance(init_params, GMM):
        raise ValueError(f"init_params must be a gmmjax.GMM, got {type(init_params).__name__}.")
    if init_params.cov_type != cov_type:
        raise ValueError(
            f"init_params has cov_type={init_params.cov_type!r} but the fit asks for "
            f"cov_type={cov_type!r}; build init_params with the same cov_type."
        )
    expected_means = (n_components, n_features)
    batch = init_params.batch_shape
    if init_params.means.shape[len(batch) :] != expected_means or batch not in ((), (n_restarts,)):
        raise ValueError(
            f"init_params.means must have shape {expected_means} (shared by all restarts) or "
            f"({n_restarts}, {n_components}, {n_features}) (one per restart), got "
            f"{init_params.means.shape}; covariances accordingly "
            f"{covariance_shape(cov_type, n_components, n_features)}."
        )


def check_key(key) -> None:
    """`key` must be a JAX PRNG key: a typed key (`jax.random.key(seed)`) or a legacy uint32
    `jax.random.PRNGKey(seed)`, one key or a batch of them."""
    if isinstance(key, jax.Array):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            return
        if key.dtype == jnp.uint32 and key.ndim >= 1 and key.shape[-1] == 2:
            return
    raise ValueError(
        f"key must be a JAX PRNG key such as jax.random.key(0), got {_describe(key)}; "
        "make one with jax.random.key(seed)."
    )


def _describe(value) -> str:
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        return f"{type(value).__name__} of dtype {dtype} and shape {tuple(shape)}"
    plain = isinstance(value, int | float | str | type(None))
    return repr(value) if plain else type(value).__name__
