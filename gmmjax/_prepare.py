"""From user input to what a fitting program reads: validated, centred, chunked, on devices.

Two sources, one result (`PreparedFit`): in-memory arrays (optionally placed on a device mesh)
and host-streamed data (a memmap or an iterator of chunks, read inside the compiled loop).
"""

from __future__ import annotations

import contextlib
import functools
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import Array, Float, PRNGKeyArray

from ._config import FitConfig
from ._covariance import layout
from ._em import may_expand
from ._params import GMM
from ._prior import Prior, resolve_prior
from ._sharding import (
    as_auto,
    check_mesh,
    global_max,
    global_sum,
    place_restarts,
    replicate,
    rows_per_chunk,
    shard_rows,
    to_host,
)
from ._stats import Chunked, chunk_rows
from ._stream import Streamed, is_host_stream, open_host_data
from ._validate import (
    cast_host,
    check_data_host,
    check_init_params,
    check_key,
    check_magnitude,
    check_range,
    check_sample_weight,
    host_sample_weight,
    normalised_weights,
)

# Rows per chunk x restarts x components: the (chunk, K) responsibilities of all restarts
# together stay cache-sized. Measured on W2 and W4 (benchmarks/README.md): 2^17-2^18 is best.
_CHUNK_ELEMENTS = 2**18
# Rows per chunk x feature columns: the chunk's quadratic features φ(x) (D(D+1)/2 columns for
# full and tied covariances, D for diag and spherical), read by both of the pass's products,
# stay cache-sized too. With one restart the rule above alone gave W2 (D=16, K=16) 16,384-row
# chunks whose φ (18 MB in float64) ran 1.8x slower per iteration than 2048-row ones; at 2^20
# W2 gets 4096 rows, 5-15% faster than 2048 in seven in-process runs (benchmarks/README.md).
_FEATURE_ELEMENTS = 2**20
# ...and not more rows than this where the pass can take the expanded products: with one
# restart float64 ran 38-44% slower per iteration at 16,384 rows than at 8192 on W4 (D=8, K=8)
# and 20-29% slower at 65,536 on N=1M, D=2, K=3. Passes that keep to the explicit differences
# are not capped: that small float32 fit ran 30% faster at 65,536 rows than at 8192.
_MAX_EXPANDED_CHUNK_ROWS = 8192
# ...but not fewer rows than this: with 64 restarts of W2 (K=16) 1024-row chunks ran 15% faster
# than 256-row ones (the products' contraction over rows gets too short).
_MIN_CHUNK_ROWS = 1024


# With values missing, each row and component holds its own D x D factor (`_missing.py`):
# rows x restarts x components x D² stays below this many elements (32 MiB in float64).
_MISSING_CHUNK_ELEMENTS = 2**22

# On a GPU (any backend but the CPU) the rules above do not apply: they size a chunk to a CPU
# core's cache, and would cut a 1M-row pass into hundreds of loop steps, each a round of kernel
# launches, on a device that reaches its product rate from a few thousand rows on. There the
# chunk only bounds memory: the largest array one chunk makes (the features ψ, the
# responsibilities of all restarts, or float32's explicit (rows, R, K, D) differences) holds at
# most this many elements, 512 MiB in float32. A bound from memory, not a measured optimum:
# benchmarks/gpu.py times it against the CPU rule.
_ACCELERATOR_CHUNK_ELEMENTS = 2**27


def default_chunk_size(
    n_samples: int,
    n_restarts: int,
    n_components: int,
    *,
    n_features: int,
    cov_type: str,
    dtype,
    missing=False,
    platform: str = "cpu",
) -> int:
    """Rows per chunk when `chunk_size` is None, rounded down to a power of two and at most N.

    On the CPU: min(2^18 / (R·K), 2^20 / F), at least 1024, F the columns of the quadratic
    features (D(D+1)/2 for full and tied, D otherwise), and at most 8192 where the pass can
    take the expanded products (`_em.may_expand`: float64, or large passes). On another
    `platform` (a GPU): 2^27 / max(F + D + 1, R·K·D). With values missing,
    on any platform: 2^22 / (R·K·D²), at least 16."""
    full = layout(cov_type) in ("full", "tied")
    features = n_features * (n_features + 1) // 2 if full else n_features
    if missing:
        per_row = n_restarts * n_components * n_features**2
        rows = max(16, _MISSING_CHUNK_ELEMENTS // per_row)
    elif platform != "cpu":
        # ψ's columns, and the explicit differences (R·K·D per row), which the pass takes
        # wherever the expansion is not accurate, in either dtype (`_em._by_expansion_rule`):
        # a compiled branch holds its buffers whether or not it runs.
        per_row = max(features + n_features + 1, n_restarts * n_components * n_features)
        rows = max(1, _ACCELERATOR_CHUNK_ELEMENTS // per_row)
    else:
        rows = min(_CHUNK_ELEMENTS // (n_restarts * n_components), _FEATURE_ELEMENTS // features)
        if may_expand(dtype, n_samples, n_components, n_features):
            rows = min(_MAX_EXPANDED_CHUNK_ROWS, rows)
        rows = max(_MIN_CHUNK_ROWS, rows)
    return min(n_samples, 1 << (rows.bit_length() - 1))


def chunk_rows_for(
    config: FitConfig,
    n_samples: int,
    *,
    n_features: int,
    dtype,
    missing: bool = False,
    platform: str = "cpu",
) -> int:
    """Rows per chunk: the user's chunk_size, else the method's rule, else the default for
    the `platform` the fit runs on."""
    if config.chunk_size is not None:
        rows = config.chunk_size
    elif config.chunk_rule is not None:
        rows = config.chunk_rule(n_samples)
    else:
        rows = default_chunk_size(
            n_samples,
            config.n_restarts,
            config.n_components,
            n_features=n_features,
            cov_type=config.cov_type,
            dtype=dtype,
            missing=missing,
            platform=platform,
        )
    return min(n_samples, rows)


class PreparedFit(eqx.Module):
    """Validated, centred and chunked input, the same for every method."""

    data: Chunked | Streamed
    keys: PRNGKeyArray
    init_params: GMM | None  # centred, with a leading restart axis
    offset: Float[Array, " d"]
    prior: Prior | None  # centred, in the data's dtype
    n_samples: int = eqx.field(static=True)  # rows of all processes, before padding
    mesh: Mesh | None = eqx.field(static=True, default=None)
    init_data: Chunked | None = None  # what the initialisation reads, if not `data`

    @property
    def dtype(self):
        return self.offset.dtype

    def scalar(self, value) -> Array:
        """A traced option (tol, reg_covar, learning rate; a mask) in the data's dtype,
        replicated over the mesh if there is one."""
        # Built in NumPy and placed once: a JAX cast here would be one more compilation in a
        # fresh process.
        value = np.asarray(value)
        if value.dtype != bool:
            value = value.astype(self.dtype)
        return jax.device_put(value) if self.mesh is None else replicate(value, self.mesh)

    def count(self, value: int) -> Array:
        """A traced int32, replicated over the mesh if there is one."""
        value = np.asarray(value, np.int32)
        return jax.device_put(value) if self.mesh is None else replicate(value, self.mesh)

    def traced(self, tree):
        """`scalar` on every leaf of a pytree (None stays None)."""
        return jax.tree.map(self.scalar, tree)

    def run(self, program, *args, **static):
        """Call a fitting program; with a mesh, bring the outputs back to every process."""
        out = program(*args, **static)
        if isinstance(self.data, Streamed):
            # Dispatch is asynchronous: the host reader must outlive the last chunk read.
            out = jax.block_until_ready(out)
        return out if self.mesh is None else to_host(out)


def _centred_prior(prior: Prior | None, offset, mesh) -> Prior | None:
    if prior is None:
        return None
    # Shift in the prior's own (float64) precision, then cast: float32 keeps the difference.
    prior = prior.shifted(offset.astype(prior.mean.dtype)).astype(offset.dtype)
    return prior if mesh is None else replicate(prior, mesh)


def prepare_fit(
    X,
    config: FitConfig,
    *,
    key,
    sample_weight=None,
    init_params=None,
    prior=None,
    mesh=None,
    relative_weights: bool = False,
) -> PreparedFit:
    """Validate everything (ValueError before tracing), centre X on its weighted mean, split
    its rows into chunks, split the key per restart, centre / batch `init_params` and the
    prior; with a mesh, place all of it on the mesh's devices. With `relative_weights` (what
    `fit` passes without a prior) the sample weights are normalised to mean 1 first
    (`_host_weights`); otherwise they keep the caller's scale."""
    check_concrete(X=X, key=key, sample_weight=sample_weight, init_params=init_params, prior=prior)
    check_key(key)
    X, dtype = check_data_host(X, missing=config.missing)
    n_local, d = X.shape
    n = n_local if mesh is None else int(global_sum(n_local))
    config.check(n)
    if mesh is not None:
        check_mesh(mesh, config.n_restarts)
        mesh = as_auto(mesh)
    weight64 = _host_weights(sample_weight, n_local, relative=relative_weights, mesh=mesh)
    weight = check_sample_weight(weight64, n_local, dtype)
    X = _zero_weight_rows_filled(X, weight)
    if init_params is not None:
        check_init_params(
            init_params,
            n_components=config.n_components,
            n_features=d,
            cov_type=config.cov_type,
            n_restarts=config.n_restarts,
        )
    if isinstance(prior, str) and mesh is not None and jax.process_count() > 1:
        raise ValueError(
            'prior="mclust" needs all rows in one process; build gmmjax.Prior.mclust(X, K, '
            "cov_type) from the full data and pass it."
        )
    prior = resolve_prior(
        prior, X, config.n_components, config.cov_type, n_features=d, sample_weight=weight
    )
    X, offset = _centred(
        X, weight64, weight, dtype, global_mean=mesh is not None, counts=not relative_weights
    )
    # missing="em" on complete data is the complete-data fit, program for program.
    missing = config.missing == "em" and _has_nan(X, mesh)
    n_restarts = config.n_restarts
    rows = chunk_rows_for(
        config, n, n_features=d, dtype=dtype, missing=missing, platform=_platform(X, mesh)
    )
    init_data = None
    if mesh is None:
        data = chunk_rows(X, weight, rows, missing=missing)
        if missing:
            # The initialisation reads mean-imputed rows (zeros: X is centred on the observed
            # means), so k-means++ and the first M-step see complete rows.
            init_data = chunk_rows(_zero_filled(X), weight, rows)
    else:
        data = shard_rows(X, weight, rows_per_chunk(rows, mesh), mesh, missing=missing)
        if missing:
            init_data = shard_rows(_zero_filled(X), weight, rows_per_chunk(rows, mesh), mesh)
    start = _centred_start(init_params, offset, n_restarts)
    keys = jax.random.split(key, n_restarts)
    if mesh is not None:
        keys, start = place_restarts((keys, start), mesh)
    prior = _centred_prior(prior, offset, mesh)
    return PreparedFit(data, keys, start, offset, prior, n, mesh, init_data)


def check_concrete(**inputs) -> None:
    """A fit validates its data and compiles its own program, so it takes concrete arrays,
    not the tracers of a caller's jax.jit / vmap / grad."""
    for name, value in inputs.items():
        # Parameters and priors are pytrees; data may be an iterator, which is no pytree.
        leaves = jax.tree.leaves(value) if isinstance(value, eqx.Module) else [value]
        if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
            raise ValueError(
                f"{name} holds a traced value: the fit was called inside jax.jit, vmap or grad. "
                "A fit compiles its own program and needs concrete arrays, so call it outside "
                "the transformation (restarts already run vmapped: use n_restarts); to "
                "differentiate a fitted mixture with respect to the data, use "
                "gmmjax.fit_differentiable."
            )


def _platform(X, mesh) -> str:
    """The platform the fit runs on: the mesh's, else that of the device holding X, else the
    one host arrays go to (`_default_platform`)."""
    if mesh is not None:
        return mesh.devices.flat[0].platform
    if isinstance(X, jax.Array):
        return next(iter(X.devices())).platform
    return _default_platform()


def _default_platform() -> str:
    """The platform of the device host arrays go to: `jax.default_device`'s (a device or a
    platform name) where one is set, else the default backend's."""
    device = jax.config.jax_default_device
    if device is None:
        return jax.default_backend()
    return device if isinstance(device, str) else device.platform


def _has_nan(X, mesh) -> bool:
    local = bool(jnp.any(jnp.isnan(X))) if isinstance(X, jax.Array) else bool(np.isnan(X).any())
    return local if mesh is None else bool(global_sum(int(local)))


def _zero_filled(X):
    return jnp.nan_to_num(X, nan=0.0) if isinstance(X, jax.Array) else np.nan_to_num(X, nan=0.0)


def _host_weights(sample_weight, n_samples: int, *, relative: bool, mesh) -> np.ndarray | None:
    """`sample_weight` checked, as float64 host weights (None: all ones), before any cast.

    Without a prior (`relative`) only the weights' ratios define the fit: they are normalised
    to mean 1 here (`normalised_weights`), so any positive rescaling gives the same fit,
    objective and log-likelihood, and 1e-300 or 1e300 weights fit as ones do. With a prior
    the weights are counts (weight 2 is the row twice: the prior weighs half as much against
    it) and keep their scale; their total is checked when X's magnitude is (`_centred`)."""
    if sample_weight is None:
        return None
    w = host_sample_weight(sample_weight, n_samples)
    if not relative:
        return w
    if mesh is None:
        return normalised_weights(w)
    return normalised_weights(w, reduce_max=global_max, reduce_sum=global_sum)


def _zero_weight_rows_filled(X, weight):
    """X with every row of weight 0 (in the compute dtype) replaced by the weighted column
    mean of the others, so that what such a row holds has no effect at all: a value of 1e200
    would otherwise square to inf in the sums, and 0·inf is NaN; it would also enter the range
    and resolution checks, and the spread of the centred data. The mean keeps the row within
    the data (0 once centred) and fills any missing value. No copy without such rows."""
    zero = weight == 0
    if not np.any(zero):
        return X
    keep = ~zero
    if isinstance(X, jax.Array):
        seen = jnp.asarray(keep)[:, None] & ~jnp.isnan(X)
        mean = jnp.sum(jnp.where(seen, X, 0.0), axis=0) / jnp.maximum(jnp.sum(seen, axis=0), 1)
        return jnp.where(jnp.asarray(keep)[:, None], X, mean.astype(X.dtype))
    seen = keep[:, None] & ~np.isnan(X)
    with np.errstate(over="ignore", invalid="ignore"):
        # Scaled by the largest value first: a sum of rows near 1e308 stays finite.
        scale = np.maximum(np.max(np.abs(np.where(seen, X, 0.0)), axis=0), np.finfo(X.dtype).tiny)
        mean = scale * np.sum(np.where(seen, X / scale, 0.0), axis=0)
        mean = mean / np.maximum(np.sum(seen, axis=0), 1)
    return np.where(keep[:, None], X, mean.astype(X.dtype))


def _centred(X, sample_weight, weight, dtype, *, global_mean: bool, counts: bool = True):
    """(X − offset in `dtype`, offset (D,) in `dtype`), offset the weighted column mean (host
    input gives a host array of X, a JAX one stays where it is).

    Host data are centred in their own precision (float64 for float64 input) before the cast,
    with the offset first rounded to `dtype` so that centring and un-centring agree exactly:
    a float32 fit of data offset by 1e8 with unit spread sees the spread, not the rounding of
    the offset. Float32 cannot return such means exactly; a warning says so. JAX arrays are
    centred where they are, in their dtype.
    """
    if isinstance(X, jax.Array):
        # Column means of the observed values (NaN marks a missing one, see `_missing.py`).
        seen = weight[:, None] * ~jnp.isnan(X)
        sums, total = jnp.sum(jnp.where(seen > 0, X * seen, 0.0), axis=0), jnp.sum(seen, axis=0)
        if global_mean:
            offset = jnp.asarray(global_sum(sums) / global_sum(total), dtype)
        else:
            offset = sums / total
        centred = X - offset
        total_weight = float(jnp.sum(weight))
        if global_mean:
            total_weight = float(global_sum(total_weight))
        largest = float(jnp.nanmax(jnp.abs(centred)))
        check_magnitude(largest, total_weight, dtype, counts=counts and sample_weight is not None)
        return centred, offset
    check_range(X, dtype)
    w = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    holes = np.isnan(X)
    # Sums of X / s, s a power of two near the largest |x|: X near 1e308 (or its weighted
    # sum) stays finite, and the scaling is exact.
    scale = _power_of_two_scale(X)
    if holes.any():
        # Column means of the observed values (NaN marks a missing one, see `_missing.py`).
        seen = w[:, None] * ~holes
        sums = np.sum(np.where(holes, 0.0, X / scale) * seen, axis=0)
        total = np.sum(seen, axis=0)
    else:
        sums, total = w @ (X / scale), np.sum(w, dtype=np.float64)
    if global_mean:
        sums, total = global_sum(sums), global_sum(total)
    offset = np.asarray(sums / total * scale, dtype)
    centred = X - offset.astype(X.dtype)
    total_weight = float(np.sum(w)) if not global_mean else float(global_sum(np.sum(w)))
    # Max and min rather than max |x|: no second (N, D) array.
    largest = max(-float(np.nanmin(centred)), float(np.nanmax(centred)))
    check_magnitude(largest, total_weight, dtype, counts=counts and sample_weight is not None)
    centred = cast_host(centred, dtype, centred=True)
    _warn_if_offset_unrepresentable(offset, X, w, dtype)
    # Host arrays: `chunk_rows` pads them on the host and transfers them once.
    return centred, jax.device_put(offset)


def _power_of_two_scale(X: np.ndarray) -> float:
    """A power of two near max |x| over the observed values (1 for all-zero data)."""
    largest = float(np.nanmax(np.abs(X))) if X.size else 0.0
    if not np.isfinite(largest) or largest == 0.0:
        return 1.0
    return float(np.ldexp(1.0, int(np.frexp(largest)[1])))


# Beyond this |mean| / spread, float32's rounding of the mean (|mean|·6e-8) exceeds 6e-3 of a
# column's spread: worth saying, as returned means and raw-data scores carry that error.
_OFFSET_TO_SPREAD = 1e5


def _warn_if_offset_unrepresentable(offset, X, w, dtype) -> None:
    if np.finfo(dtype).eps < 1e-10:  # float64: resolution 2e-16 of the mean, never a concern
        return
    seen = w[:, None] * ~np.isnan(X)
    sq = np.where(seen > 0, np.square(X - offset.astype(X.dtype)), 0.0)
    spread = np.sqrt(np.maximum(np.sum(seen * sq, axis=0) / np.sum(seen, axis=0), 0.0))
    ratio = np.abs(offset.astype(np.float64)) / np.where(spread > 0, spread, np.inf)
    if np.max(ratio) > _OFFSET_TO_SPREAD:
        j = int(np.argmax(ratio))
        rounding = float(np.abs(offset[j])) * float(np.finfo(dtype).eps)
        warnings.warn(
            f"column {j} of X has mean {float(offset[j]):.6g} and spread {spread[j]:.3g}: the "
            f"fit runs on centred data and stays accurate, but {np.dtype(dtype).name} rounds "
            f"the returned means (and any uncentred data you score) to about {rounding:.2g}. "
            "For exact means switch on float64 (jax.config.update('jax_enable_x64', True)) "
            "or subtract the column means from X yourself.",
            UserWarning,
            stacklevel=5,
        )


def _centred_start(init_params: GMM | None, offset, n_restarts: int) -> GMM | None:
    """`init_params` in the data's dtype, centred, with a leading (R,) axis."""
    if init_params is None:
        return None
    start = jax.tree.map(lambda a: jnp.asarray(a, offset.dtype), init_params)
    start = eqx.tree_at(lambda g: g.means, start, start.means - offset)
    if not start.batch_shape:
        start = jax.tree.map(lambda a: jnp.broadcast_to(a, (n_restarts,) + a.shape), start)
    return start


@contextlib.contextmanager
def fit_input(
    X, config: FitConfig, *, key, sample_weight=None, init_params=None, prior=None, mesh=None
):
    """`prepare_fit` for in-memory data; for host-streamed data (memmap, iterator) the same
    checks and centring, with the host reader registered for the duration of the block."""
    check_concrete(X=X, key=key, sample_weight=sample_weight, init_params=init_params, prior=prior)
    check_key(key)
    if not is_host_stream(X):
        yield prepare_fit(
            X,
            config,
            key=key,
            sample_weight=sample_weight,
            init_params=init_params,
            prior=prior,
            mesh=mesh,
            relative_weights=prior is None,
        )
        return
    if mesh is not None:
        raise ValueError(
            "streamed data (a memmap or an iterator) cannot be combined with mesh=; give each "
            "process its rows as an array instead."
        )
    if config.missing != "raise":
        raise ValueError(
            'missing="em" needs the data in memory; pass an array (np.asarray(X)), not a '
            "memmap or an iterator."
        )
    if isinstance(prior, str) and not hasattr(X, "shape"):
        raise ValueError(
            'prior="mclust" needs the whole data set; with an iterator of chunks build '
            "gmmjax.Prior.mclust(X, K, cov_type) yourself (e.g. from a memmap) and pass it."
        )
    # An iterator's length is known only after the validation pass: K <= N is checked then.
    config.check(X.shape[0] if hasattr(X, "shape") else config.n_components)
    n_restarts, k = config.n_restarts, config.n_components

    if sample_weight is not None and prior is None:
        # As `prepare_fit`: without a prior only relative weights matter (`_host_weights`).
        rows = X.shape[0] if hasattr(X, "shape") else (np.shape(sample_weight) or (0,))[0]
        sample_weight = _host_weights(sample_weight, rows, relative=True, mesh=None)
    seed = int(jax.random.randint(jax.random.fold_in(key, 2**20), (), 0, 2**31 - 1))
    with open_host_data(
        X,
        sample_weight=sample_weight,
        rows_for=functools.partial(chunk_rows_for, config, platform=_default_platform()),
        seed=seed,
    ) as host:
        config.check(host.n_samples)
        d = host.stream.n_features
        if init_params is not None:
            check_init_params(
                init_params,
                n_components=k,
                n_features=d,
                cov_type=config.cov_type,
                n_restarts=n_restarts,
            )
        # prior="mclust" reads a memmap into host memory (float64) for its moments.
        prior = resolve_prior(
            prior, X, k, config.cov_type, n_features=d, sample_weight=sample_weight
        )
        offset = jnp.asarray(host.offset, host.stream.dtype)
        sample = jnp.asarray(host.sample) - offset
        init_data = chunk_rows(sample, jnp.asarray(host.sample_weight), min(sample.shape[0], 8192))
        yield PreparedFit(
            host.stream,
            jax.random.split(key, n_restarts),
            _centred_start(init_params, offset, n_restarts),
            offset,
            _centred_prior(prior, offset, None),
            host.n_samples,
            None,
            init_data,
        )
