"""Data parallelism on JAX's own machinery: rows sharded over a device mesh, across hosts.

A fit given `mesh=` places its chunked rows (C, B, D) with the B axis split over the mesh's
"data" axis (`NamedSharding(mesh, P(None, "data", None))`) and, if the mesh has one, the
restarts split over its "restarts" axis. The fitting program is the same jitted function as on
one device: XLA's SPMD partitioner keeps every chunk's E-step local to its shard and turns the
sums over rows (the sufficient statistics, the log-likelihood and its gradient) into
all-reduces of K·D² numbers per chunk. Nothing else is communicated, and every device then runs
the same M-step on the same totals, so all devices agree.

Several processes (`jax.distributed.initialize`, one per host) each pass their own rows; the
global array is assembled with `jax.make_array_from_process_local_data`, and the few host-side
quantities that need every row (the row count, the centring mean) are summed with
`multihost_utils.process_allgather`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ._stats import Chunked

DATA_AXIS = "data"
RESTART_AXIS = "restarts"


def check_mesh(mesh, n_restarts: int) -> None:
    """A `Mesh` with a "data" axis and optionally a "restarts" axis dividing `n_restarts`."""
    if not isinstance(mesh, Mesh):
        raise ValueError(
            f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}; e.g. "
            'jax.make_mesh((jax.device_count(),), ("data",)).'
        )
    names = set(mesh.axis_names)
    if DATA_AXIS not in names or not names <= {DATA_AXIS, RESTART_AXIS}:
        raise ValueError(
            f"mesh axes must be ('data',) or ('restarts', 'data') in some order, got "
            f"{mesh.axis_names}."
        )
    n_split = mesh.shape.get(RESTART_AXIS, 1)
    if n_restarts % n_split:
        raise ValueError(
            f"n_restarts={n_restarts} must be a multiple of the mesh's 'restarts' axis "
            f"({n_split}) so that every device holds the same number of restarts."
        )


def as_auto(mesh: Mesh) -> Mesh:
    """The same devices and axis names with automatic (GSPMD) axis types.

    `jax.make_mesh` builds explicit axes by default, under which every contraction over the
    sharded row axis would need an output sharding spelled out; the partitioner's own choice
    (reduce, then replicate the small result) is the one wanted here.
    """
    auto = (jax.sharding.AxisType.Auto,) * len(mesh.axis_names)
    return Mesh(mesh.devices, mesh.axis_names, axis_types=auto)


def global_sum(value) -> np.ndarray:
    """Σ over processes of a host value (the value itself with one process)."""
    value = np.asarray(value)
    if jax.process_count() == 1:
        return value
    return np.sum(multihost_utils.process_allgather(value), axis=0)


def global_max(value) -> np.ndarray:
    value = np.asarray(value)
    if jax.process_count() == 1:
        return value
    return np.max(multihost_utils.process_allgather(value), axis=0)


def _local_data_shards(mesh: Mesh) -> int:
    """How many positions of the "data" axis this process's devices cover."""
    axis = mesh.axis_names.index(DATA_AXIS)
    mine = {d.id for d in mesh.local_devices}
    held = {idx[axis] for idx in np.ndindex(mesh.devices.shape) if mesh.devices[idx].id in mine}
    return len(held)


def rows_per_chunk(rows: int, mesh: Mesh | None) -> int:
    """Chunk rows rounded up to a multiple of the data axis, so every shard gets equal rows."""
    if mesh is None:
        return rows
    n = mesh.shape[DATA_AXIS]
    return -(-rows // n) * n


def shard_rows(
    X: jax.Array, weight: jax.Array, rows: int, mesh: Mesh, *, missing: bool = False
) -> Chunked:
    """This process's rows (N_p, D) as its share of a global (C, rows, D) chunked array.

    Every process pads its rows with zero-weight rows to the same chunk count C, so hosts may
    hold different numbers of rows. With one process the layout equals `chunk_rows(X, w, rows)`.
    """
    local_rows = rows * _local_data_shards(mesh) // mesh.shape[DATA_AXIS]
    n, d = X.shape
    n_chunks = int(global_max(-(-n // local_rows)))
    pad = n_chunks * local_rows - n
    X = jnp.pad(X, ((0, pad), (0, 0))).reshape(n_chunks, local_rows, d)
    weight = jnp.pad(weight, (0, pad)).reshape(n_chunks, local_rows)
    x_sharding = NamedSharding(mesh, P(None, DATA_AXIS, None))
    w_sharding = NamedSharding(mesh, P(None, DATA_AXIS))
    return Chunked(
        jax.make_array_from_process_local_data(x_sharding, np.asarray(X), (n_chunks, rows, d)),
        jax.make_array_from_process_local_data(w_sharding, np.asarray(weight), (n_chunks, rows)),
        missing,
    )


def place_restarts(tree, mesh: Mesh):
    """Arrays with a leading restart axis, split over "restarts" (replicated without one).

    Every process holds the whole value (keys and initial parameters are the same everywhere).
    """
    spec = P(RESTART_AXIS) if RESTART_AXIS in mesh.axis_names else P()

    def place(a):
        typed = jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key)
        raw = np.asarray(jax.random.key_data(a) if typed else a)
        sharding = NamedSharding(mesh, spec)
        if jax.process_count() == 1:
            out = jax.device_put(raw, sharding)
        else:
            out = _global_from_replicated(raw, sharding)
        return jax.random.wrap_key_data(out, impl=jax.random.key_impl(a)) if typed else out

    return jax.tree.map(place, tree)


def replicate(tree, mesh: Mesh):
    """Scalars and other small inputs, replicated on every device of the mesh."""
    sharding = NamedSharding(mesh, P())

    def place(a):
        raw = np.asarray(a)
        if jax.process_count() == 1:
            return jax.device_put(raw, sharding)
        return _global_from_replicated(raw, sharding)

    return jax.tree.map(place, tree)


def _global_from_replicated(value: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array from a value every process holds whole."""
    shards = [
        jax.device_put(value[index], device)
        for device, index in sharding.addressable_devices_indices_map(value.shape).items()
    ]
    return jax.make_array_from_single_device_arrays(value.shape, sharding, shards)


def to_host(tree):
    """Outputs as NumPy arrays on every process (gathered where they are split)."""
    if jax.process_count() == 1:
        return tree

    def gather(a):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            raw = multihost_utils.process_allgather(jax.random.key_data(a), tiled=True)
            return jax.random.wrap_key_data(jnp.asarray(raw), impl=jax.random.key_impl(a))
        return jnp.asarray(multihost_utils.process_allgather(a, tiled=True))

    return jax.tree.map(gather, tree)
