"""Every check of user input, run in Python before tracing, with the messages users see."""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

from ._covariance import check_cov_type, model_name
from ._params import GMM, covariance_shape

INIT_METHODS = ("kmeans++", "random_from_data", "random")


def float_dtype_for(X) -> np.dtype:
    """The compute dtype: X's own float32/float64; integers and bools take JAX's default float."""
    dtype = np.dtype(getattr(X, "dtype", np.float64))
    # canonicalize_dtype: float64 becomes float32 without x64 (and, unlike building an array
    # of that dtype, without a warning).
    if dtype in (np.float32, np.float64):
        return np.dtype(jax.dtypes.canonicalize_dtype(dtype))
    return np.dtype(jax.dtypes.canonicalize_dtype(np.float64))


MISSING_OPTIONS = ("raise", "em")


def check_missing_option(missing) -> None:
    if not isinstance(missing, str) or missing not in MISSING_OPTIONS:
        raise ValueError(
            f'missing must be "raise" (NaN is an error) or "em" (NaN marks a value missing at '
            f"random), got {missing!r}."
        )


def check_data(
    X, *, missing: str = "raise", nan_message: str | None = None, scoring: bool = False
) -> jax.Array:
    """X as a 2-D floating JAX array, or a ValueError that names the fix (see
    `check_data_host` for the options)."""
    X, dtype = check_data_host(X, missing=missing, nan_message=nan_message, scoring=scoring)
    return X.astype(dtype) if isinstance(X, jax.Array) else to_compute_dtype(X, dtype)


def check_data_host(
    X, *, missing: str = "raise", nan_message: str | None = None, scoring: bool = False
) -> tuple[np.ndarray | jax.Array, np.dtype]:
    """(X checked but not yet cast, the dtype it is computed in).

    X stays where and in what precision it was given: a JAX array as it is, anything else as
    a NumPy array (float64 for integer data). Callers that centre X do so on the host in that
    precision before `cast_host`, so a float32 fit never sees the offset rounded away.
    With missing="em", NaN is allowed (a missing value) but not ±inf, nor a row or (unless
    `scoring`: rows scored by a fitted mixture, which supplies the column) a column with every
    value missing. `nan_message` replaces the message for NaN under missing="raise", which
    names the fit's missing="em", for callers that offer no such option.
    """
    check_missing_option(missing)
    check_dense(X)
    if isinstance(X, np.ma.MaskedArray):
        X = _unmasked(X, missing)
    if not hasattr(X, "dtype"):
        try:
            X = np.asarray(X)
        except (ValueError, TypeError) as err:
            raise ValueError(f"X must be a numeric 2-D array-like: {err}") from None
        if X.dtype.kind == "O":
            # A table with pandas' nullable columns (Int64, Float64) holds pd.NA: a missing
            # value, NaN for the checks below.
            X = _objects_as_float(X)
    dtype = np.dtype(X.dtype)
    if dtype.kind == "c":
        raise ValueError(
            "Complex data not supported: X is complex; pass real-valued data (e.g. X.real)."
        )
    if dtype.kind == "O":
        X = _objects_as_float(np.asarray(X))
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
    compute = float_dtype_for(X)
    if isinstance(X, jax.Array):
        finite = bool(jnp.all(jnp.isfinite(X)))
        if not finite:
            # Rare: read the flags on the host to say what is wrong.
            nan, inf = (np.asarray(jax.device_get(f(X))) for f in (jnp.isnan, jnp.isinf))
    else:
        X = np.asarray(X)
        if X.dtype.kind != "f":
            X = X.astype(np.float64)
        finite = bool(np.all(np.isfinite(X)))
        if not finite:
            nan, inf = np.isnan(X), np.isinf(X)
    if not finite:
        _check_holes(nan, inf, missing, nan_message=nan_message, scoring=scoring)
    return X, compute


def check_dense(X) -> None:
    """TypeError for a SciPy sparse matrix or array, with scikit-learn's message and fix: a
    mixture's covariances are dense, so densify (only where the data fit in memory)."""
    if hasattr(X, "toarray") and (hasattr(X, "tocsr") or hasattr(X, "nnz")):
        raise TypeError(
            "Sparse data was passed for X, but dense data is required. Use '.toarray()' to "
            "convert to a dense numpy array."
        )


def _unmasked(X: np.ma.MaskedArray, missing: str) -> np.ndarray:
    """A NumPy masked array as a plain array: masked entries are missing values (NaN), as
    NaN is everywhere else, never their hidden `X.data` values. With missing="raise" they are
    refused like NaN, naming the fixes."""
    mask = np.ma.getmaskarray(X)
    if not mask.any():
        return np.asarray(X.data)
    if missing == "raise":
        raise ValueError(
            f"X is a masked array with {int(mask.sum())} masked value(s): a masked value is a "
            'missing one; fit with missing="em" to treat them as values missing at random, '
            "fill them (X.filled(value)), or drop those rows (X[~X.mask.any(1)])."
        )
    dtype = X.dtype if X.dtype.kind == "f" else np.float64
    return np.ma.MaskedArray(X, dtype=dtype).filled(np.nan)


def _objects_as_float(X: np.ndarray) -> np.ndarray:
    """An object array as float64: numbers stay numbers, None and pandas' NA become NaN (a
    missing value); anything else fails with NumPy's TypeError/ValueError, which names the
    offending type."""
    try:
        return X.astype(np.float64)
    except (TypeError, ValueError):
        flat = [np.nan if _is_na(v) else v for v in X.ravel()]
        return np.asarray(flat, dtype=object).astype(np.float64).reshape(X.shape)


def _is_na(value) -> bool:
    # pandas' NA (pandas is not a dependency: recognised by its type's name) and None.
    return value is None or type(value).__name__ in ("NAType", "NaTType")


def _check_holes(
    nan: np.ndarray,
    inf: np.ndarray,
    missing: str,
    *,
    nan_message: str | None = None,
    scoring: bool = False,
) -> None:
    """ValueError for the non-finite values `missing` does not allow (see `check_data_host`)."""
    if inf.any():
        # NaN in place of inf is a fix only for callers that take missing="em".
        as_missing = (
            ""
            if nan_message
            else ' or mark the values as missing with NaN and fit with missing="em"'
        )
        raise ValueError(
            f"X contains inf; remove those rows (e.g. X[~np.isinf(X).any(1)]){as_missing}."
        )
    if missing == "raise":
        raise ValueError(
            nan_message
            or 'X contains NaN; fit with missing="em" to treat NaN as values missing at random '
            "(EM on the observed values), or remove those rows (X[~np.isnan(X).any(1)])."
        )
    empty_rows = np.flatnonzero(nan.all(axis=1))
    if empty_rows.size:
        raise ValueError(
            f"{empty_rows.size} row(s) of X have every value missing (first: row "
            f"{int(empty_rows[0])}); they carry no information: drop them "
            "(X[~np.isnan(X).all(1)])."
        )
    empty_columns = np.flatnonzero(nan.all(axis=0))
    if empty_columns.size and not scoring:
        raise ValueError(f"column {int(empty_columns[0])} of X has every value missing; drop it.")


def nan_ptp(X: np.ndarray) -> np.ndarray:
    """Per-column max − min of the observed (non-NaN) values."""
    if not np.isnan(X).any():
        return np.ptp(X, axis=0)
    return np.nanmax(X, axis=0) - np.nanmin(X, axis=0)


_NARROWING_FIX = (
    "switch on float64 (jax.config.update('jax_enable_x64', True)) or rescale X "
    "(e.g. X / X.std(axis=0))"
)


def check_range(X: np.ndarray, dtype) -> None:
    """ValueError when host X has values beyond `dtype`'s range (float32: |x| > 3.4e38)."""
    if np.dtype(dtype).itemsize < X.dtype.itemsize:
        largest = float(np.nanmax(np.abs(X)))
        if largest > float(np.finfo(dtype).max):
            raise ValueError(
                f"X has values beyond {np.dtype(dtype).name}'s range (max |x| = {largest:.3g}); "
                f"{_NARROWING_FIX}."
            )


def check_magnitude(largest: float, total_weight: float, dtype, *, counts: bool) -> None:
    """ValueError, before any work, when a fit's sums of squares would overflow `dtype`.

    For centred X the fit forms x xᵀ (the quadratic features, the scatter) and their weighted
    sums, Σ_i w_i x_i x_iᵀ, up to Σw · max|x|² per entry; with 4x headroom for the sums over
    components and features that follow, that must stay below `dtype`'s largest number.
    `largest` is max |x − offset|, `total_weight` Σ_i w_i; `counts` says the weights keep the
    caller's scale (a fit with a prior) rather than being normalised to mean 1 (Σw = N)."""
    if not largest > 0:
        return
    limit = float(np.log(np.finfo(dtype).max / 4))
    square = 2 * float(np.log(largest))
    name = np.dtype(dtype).name
    wider = "" if np.dtype(dtype).itemsize >= 8 else ", or fit in float64"
    if square > limit:
        raise ValueError(
            f"X's values are too large for {name}: their squares overflow (max |x − mean| = "
            f"{largest:.3g}, and {name} holds numbers up to {float(np.finfo(dtype).max):.3g}); "
            f"rescale X (e.g. X / X.std(axis=0)){wider}: the fitted means and covariances "
            "rescale with it."
        )
    if square + float(np.log(total_weight)) > limit:
        if counts:
            raise ValueError(
                f"sample_weight totals {total_weight:.3g}: the weighted sums of squares of X "
                f"(max |x − mean| = {largest:.3g}) overflow {name}; divide the weights by a "
                "constant (with a prior they are counts: it then weighs more, as against "
                "fewer rows) or rescale X (e.g. X / X.std(axis=0))."
            )
        raise ValueError(
            f"X's values are too large for {name}: the sums of squares of its "
            f"{total_weight:.0f} rows overflow (max |x − mean| = {largest:.3g}); rescale X "
            f"(e.g. X / X.std(axis=0)){wider}: the fitted means and covariances rescale with it."
        )


def to_compute_dtype(X: np.ndarray, dtype) -> jax.Array:
    """Host X as a JAX array of `dtype` (see `cast_host`)."""
    return jax.device_put(cast_host(X, dtype))


def cast_host(X: np.ndarray, dtype, *, centred: bool = False) -> np.ndarray:
    """Host X as a NumPy array of `dtype`, or a ValueError when that dtype cannot hold its values:
    beyond its range (float32: |x| > 3.4e38) or, for `centred` data (what a fit reads), a
    column whose spread vanishes in it (float32: values below ~1e-38 become 0, so a fit would
    "converge" on a constant). Uncentred data are not held to the second test: a spread lost
    to a large offset there is the offset's doing, and scoring such rows is what the fit's
    offset warning is about."""
    check_range(X, dtype)
    # Cast in NumPy: a JAX cast would be one more compilation in a fresh process.
    out = np.asarray(X, dtype)
    if not centred or np.dtype(dtype).itemsize >= X.dtype.itemsize:
        return out
    spread = nan_ptp(X)
    lost = (spread > 0) & (nan_ptp(out) == 0)
    bad = lost | ((spread > 0) & (spread < np.finfo(dtype).tiny * 2**10))
    if np.any(bad):
        column = int(np.argmax(bad))
        raise ValueError(
            f"column {column} of X varies by {spread[column]:.3g}, below what "
            f"{np.dtype(dtype).name} resolves (its smallest normal number is "
            f"{np.finfo(dtype).tiny:.3g}); {_NARROWING_FIX}."
        )
    return out


def check_sample_weight(sample_weight, n_samples: int, dtype) -> np.ndarray:
    """(N,) non-negative finite weights, not all zero; None means all ones (a host array of
    `dtype`; ValueError where `dtype` cannot hold a weight, e.g. 1e39 in float32)."""
    if sample_weight is None:
        return np.ones((n_samples,), dtype)
    w = host_sample_weight(sample_weight, n_samples)
    largest = float(np.max(w))
    if largest > float(np.finfo(dtype).max):
        raise ValueError(
            f"sample_weight has values beyond {np.dtype(dtype).name}'s range (max "
            f"{largest:.3g}); divide the weights by their maximum (sample_weight / "
            "sample_weight.max())."
        )
    return np.asarray(w, dtype)


def host_sample_weight(sample_weight, n_samples: int) -> np.ndarray:
    """`sample_weight` checked (shape (N,), numeric, finite, non-negative, not all zero) as a
    float64 host array, not yet normalised or cast."""
    if isinstance(sample_weight, jax.core.Tracer):
        raise ValueError(
            "sample_weight holds a traced value; pass a concrete array (to differentiate with "
            "respect to the weights use gmmjax.fit_differentiable)."
        )
    check_dense(sample_weight)
    w = np.asarray(sample_weight)
    if w.dtype.kind == "O":
        w = _objects_as_float(w)
    if w.dtype.kind not in "biuf":
        raise ValueError(f"sample_weight must be numeric, got dtype {w.dtype}.")
    if w.shape != (n_samples,):
        raise ValueError(
            f"sample_weight must have shape (n_samples,) = ({n_samples},), got {w.shape}."
        )
    w = w.astype(np.float64)
    if not np.all(np.isfinite(w)):
        raise ValueError("sample_weight contains NaN or inf; pass finite weights.")
    if np.any(w < 0):
        raise ValueError("sample_weight must be non-negative.")
    if not np.any(w > 0):
        raise ValueError("sample_weight is all zero; at least one sample needs positive weight.")
    return w


def normalised_weights(w: np.ndarray, *, reduce_max=None, reduce_sum=None) -> np.ndarray:
    """Float64 weights w (N,) rescaled to mean 1 over the rows of positive weight:
    r · n₊ / Σ r, r = w / max(w), n₊ = #{w_i > 0}.

    Dividing by the largest weight first keeps every step in range: the quotients lie in
    (0, 1], so 1e300 weights do not overflow the sum and 1e-300 ones are not lost to a
    subnormal mean. Only relative weights matter to a fit without a prior, so this makes it
    independent of their scale; all-equal weights become exactly 1 (the unweighted fit), rows
    of weight 0 count for nothing (Σ w is the same as with them dropped), and a weight below
    2^-1074 of the largest, negligible next to it, becomes 0. With rows spread over processes,
    `reduce_max` and `reduce_sum` take the maximum and sums over all of them."""
    largest = np.max(w) if reduce_max is None else reduce_max(np.max(w))
    r = w / float(largest)
    total, n = np.sum(r), float(np.count_nonzero(r))
    if reduce_sum is not None:
        total, n = float(reduce_sum(total)), float(reduce_sum(n))
    return r * (n / float(total))


def is_int(value) -> bool:
    """An integer of any integer type (NumPy's included), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_fit_options(
    *, n_samples, n_components, cov_type, init, n_restarts, max_iter, tol, reg_covar, chunk_size
):
    """Scalar options of `fit` (via `FitConfig`); see its docstring."""
    if not is_int(n_components) or n_components < 1:
        raise ValueError(f"n_components must be an integer >= 1, got {n_components!r}.")
    if n_components > n_samples:
        raise ValueError(
            f"n_components={n_components} exceeds the number of samples ({n_samples}); "
            "lower n_components or pass more data."
        )
    check_cov_type(cov_type)
    if init not in INIT_METHODS:
        raise ValueError(f"init must be one of {INIT_METHODS}, got {init!r}.")
    if not is_int(n_restarts) or n_restarts < 1:
        raise ValueError(f"n_restarts must be an integer >= 1, got {n_restarts!r}.")
    if not is_int(max_iter) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}.")
    check_non_negative("tol", tol)
    check_non_negative("reg_covar", reg_covar)
    check_positive_int("chunk_size", chunk_size, allow_none=True)


def check_positive_int(name: str, value, *, allow_none: bool = False) -> None:
    """ValueError unless `value` is an integer >= 1 (or None when `allow_none`)."""
    if allow_none and value is None:
        return
    if not is_int(value) or value < 1:
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
    if model_name(init_params.cov_type) != model_name(cov_type):
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


def check_key(key, *, batch: bool = False) -> None:
    """`key` must be one JAX PRNG key (with `batch`, also an array of them): a typed key
    (`jax.random.key(seed)`) or a legacy raw uint32 key (`jax.random.PRNGKey(seed)`, also as
    a NumPy array)."""
    dtype = getattr(key, "dtype", None)
    ndim = getattr(key, "ndim", None)
    if isinstance(key, jax.Array) and jnp.issubdtype(dtype, jax.dtypes.prng_key):
        if ndim == 0 or batch:
            return
    elif isinstance(key, jax.Array | np.ndarray) and dtype == np.uint32 and ndim:
        if ndim == 1 or batch:
            return
    else:
        raise ValueError(
            f"key must be a JAX PRNG key such as jax.random.key(0), got {_describe(key)}; "
            "make one with jax.random.key(seed)."
        )
    raise ValueError(
        f"key must be a single PRNG key, got a batch of shape {_key_shape(key)}; pass one key "
        "(the restarts' keys are split from it)."
    )


def _key_shape(key) -> tuple:
    shape = tuple(key.shape)
    return shape if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else shape[:-1]


def _describe(value) -> str:
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None and dtype is not None:
        return f"{type(value).__name__} of dtype {dtype} and shape {tuple(shape)}"
    plain = isinstance(value, int | float | str | type(None))
    return repr(value) if plain else type(value).__name__
