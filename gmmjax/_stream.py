"""Exact EM over rows that stay on the host: NumPy memmaps and iterators of chunks.

Every sum over rows in gmmjax goes through `_stats.sum_over_chunks`. For host-resident data it
scans over chunk indices and fetches each (B, D) chunk with `jax.pure_callback` inside the
compiled program, so the EM loop stays one `lax.while_loop` and device memory holds one chunk
(plus the model), whatever N is. The fetch depends only on the chunk index, never on a restart,
so under `vmap` all restarts share one read per chunk.

The host reader is looked up by a traced integer id, not captured in the program: a second fit
on data of the same shape reuses the compiled program.

A one-shot iterator cannot be read once per EM iteration, so its chunks are first written to a
temporary file (each chunk's shape and dtype checked on the way, finiteness afterwards) and
streamed from there; the file is deleted when the fit ends.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
from collections.abc import Iterator

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ._validate import check_sample_weight, float_dtype_for

# Rows read to initialise a streamed fit (k-means++ and Lloyd run on this uniform subsample).
INIT_SAMPLE_ROWS = 2**16
# Rows per host read in the validation pass.
_SCAN_ROWS = 2**20


def is_host_stream(X) -> bool:
    """Data that `fit` streams from the host instead of copying to the device."""
    return isinstance(X, np.memmap | Iterator)


class _HostRows:
    """Reads chunk c of a host array: centred, cast, padded to `rows` with zero weights."""

    def __init__(self, array: np.ndarray, weight, offset: np.ndarray, rows: int, dtype):
        self.array, self.weight, self.offset = array, weight, offset
        self.rows, self.dtype = rows, dtype

    def read(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        start = c * self.rows
        stop = min(start + self.rows, self.array.shape[0])
        X = np.zeros((self.rows, self.array.shape[1]), self.dtype)
        w = np.zeros((self.rows,), self.dtype)
        with np.errstate(over="ignore"):  # a zero-weight row may hold what the cast cannot
            np.subtract(
                self.array[start:stop], self.offset, out=X[: stop - start], casting="unsafe"
            )
        w[: stop - start] = 1.0 if self.weight is None else self.weight[start:stop]
        # A row of weight 0 has no effect whatever it holds: it becomes the centre (0), so
        # that 0·inf cannot reach the sums.
        X[w == 0] = 0.0
        return X, w


_READERS: dict[int, _HostRows] = {}
_next_id = itertools.count()


def _read_chunk(reader_id, chunk_index):
    return _READERS[int(reader_id)].read(int(chunk_index))


class Streamed(eqx.Module):
    """Host-resident rows seen by the fitting programs as C chunks of B rows: the data source
    (see `_stats.Chunked`) whose chunks are read from the host inside the compiled loop.

    Attributes:
        reader_id: () int32, which registered host reader serves the chunks.
        total_weight: () Σ_i w_i.
        mean_weight: () the mean weight of rows with w_i > 0.
    """

    reader_id: Array
    total_weight: Array
    mean_weight: Array
    n_chunks: int = eqx.field(static=True)
    rows: int = eqx.field(static=True)
    n_features: int = eqx.field(static=True)
    dtype: np.dtype = eqx.field(static=True)
    # Host streams are complete: missing="em" needs in-memory data (`_prepare.fit_input`).
    missing = False

    def sum_chunks(self, fn, *args):
        """Σ_c fn(X_c, w_c, c, *args), reading chunk c from the host inside a `lax.scan`."""
        x0, w0 = jax.eval_shape(self.chunk, 0)
        shapes = jax.eval_shape(fn, x0, w0, 0, *args)
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

        def body(total, c):
            X, w = self.chunk(c)
            return jax.tree.map(jnp.add, total, fn(X, w, c, *args)), None

        total, _ = jax.lax.scan(body, zeros, jnp.arange(self.n_chunks))
        return total

    def batch_order(self, key) -> Array:
        """A random visiting order of the chunks for one pass in minibatches: (C,). Rows keep
        their order on disk inside a chunk, so store them shuffled for online EM."""
        return jax.random.permutation(key, self.n_chunks)

    def batch(self, order: Array, j) -> tuple[Array, Array]:
        """Minibatch j of the pass `order`: chunk order[j], read from the host."""
        return self.chunk(order[j])

    def chunk(self, c) -> tuple[Array, Array]:
        """Chunk c as (B, D) rows and (B,) weights, read from the host."""
        shapes = (
            jax.ShapeDtypeStruct((self.rows, self.n_features), self.dtype),
            jax.ShapeDtypeStruct((self.rows,), self.dtype),
        )
        return jax.pure_callback(_read_chunk, shapes, self.reader_id, c, vmap_method="sequential")


class HostData(eqx.Module):
    """What `prepare_fit` needs from host data: the stream, a subsample to initialise on, and
    the statistics of the validation pass."""

    stream: Streamed
    sample: np.ndarray  # (M, D) uncentred rows drawn uniformly, M = min(N, INIT_SAMPLE_ROWS)
    sample_weight: np.ndarray  # (M,)
    offset: np.ndarray  # (D,) weighted mean of all rows
    n_samples: int = eqx.field(static=True)


@contextlib.contextmanager
def open_host_data(X, *, sample_weight, rows_for, seed: int):
    """Validate host data (one read for the finite check, one for the weighted mean), register
    a reader, and yield a `HostData`.

    `rows_for(n_samples, n_features=D, dtype=dtype)` gives the chunk size. The reader (and any
    spooled file) is released when the block ends.

    Raises:
        ValueError: wrong shape or dtype, NaN or inf, a bad `sample_weight`.
    """
    with contextlib.ExitStack() as stack:
        if isinstance(X, Iterator):
            X = stack.enter_context(_spooled(X))
        array = _check_host_array(X)
        n, d = array.shape
        dtype = float_dtype_for(array)
        weight = None if sample_weight is None else _check_weight(sample_weight, n)
        offset = _weighted_mean(array, weight)
        rows = rows_for(n, n_features=d, dtype=dtype)
        reader_id = next(_next_id)
        _READERS[reader_id] = _HostRows(array, weight, offset, rows, dtype)
        stack.callback(_READERS.pop, reader_id)
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(n, size=min(n, INIT_SAMPLE_ROWS), replace=False))
        total = n if weight is None else float(np.sum(weight, dtype=np.float64))
        positive = n if weight is None else int(np.count_nonzero(weight))
        stream = Streamed(
            jnp.asarray(reader_id, jnp.int32),
            jnp.asarray(total, dtype),
            jnp.asarray(total / positive, dtype),
            -(-n // rows),
            rows,
            d,
            np.dtype(dtype),
        )
        yield HostData(
            stream,
            np.asarray(array[idx], dtype),
            np.ones(len(idx), dtype) if weight is None else weight[idx].astype(dtype),
            offset,
            n,
        )


def _check_host_array(X) -> np.ndarray:
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X must be 2-D with shape (n_samples, n_features), got {X.shape}.")
    if np.dtype(X.dtype).kind not in "biuf":
        raise ValueError(f"X must be numeric, got dtype {X.dtype}.")
    for start in range(0, X.shape[0], _SCAN_ROWS):
        if not np.all(np.isfinite(X[start : start + _SCAN_ROWS])):
            raise ValueError(
                f"X contains NaN or inf (rows {start}..{start + _SCAN_ROWS}); remove or impute "
                "those rows before fitting."
            )
    return X


def _check_weight(sample_weight, n: int) -> np.ndarray:
    return np.asarray(check_sample_weight(sample_weight, n, np.float64))


def _weighted_mean(array: np.ndarray, weight) -> np.ndarray:
    """Column means in float64, one block of rows at a time."""
    total = np.zeros(array.shape[1])
    for start in range(0, array.shape[0], _SCAN_ROWS):
        block = np.asarray(array[start : start + _SCAN_ROWS], np.float64)
        if weight is None:
            total += block.sum(axis=0)
        else:
            total += weight[start : start + _SCAN_ROWS] @ block
    return total / (array.shape[0] if weight is None else np.sum(weight))


@contextlib.contextmanager
def _spooled(chunks: Iterator):
    """The chunks of a one-shot iterator written to a temporary file, opened as a memmap.

    The file's dtype is the first chunk's compute dtype (float32 stays float32; integers take
    the default float); later chunks are cast to it.
    """
    with tempfile.TemporaryDirectory(prefix="gmmjax-") as folder:
        path = os.path.join(folder, "rows.bin")
        n, d, dtype = 0, None, None
        with open(path, "wb") as f:
            for i, chunk in enumerate(chunks):
                chunk = np.asarray(chunk)
                width = chunk.shape[1] if chunk.ndim == 2 else 0
                if width == 0 or (d is not None and width != d):
                    raise ValueError(
                        f"chunk {i} has shape {chunk.shape}; every chunk must be 2-D with the "
                        f"same number of features{'' if d is None else f' ({d})'}."
                    )
                if chunk.dtype.kind not in "biuf":
                    raise ValueError(f"chunk {i} has dtype {chunk.dtype}; chunks must be numeric.")
                d = chunk.shape[1]
                dtype = dtype or float_dtype_for(chunk)
                f.write(np.ascontiguousarray(chunk, dtype).tobytes())
                n += chunk.shape[0]
        if n == 0:
            raise ValueError("the iterator of chunks was empty; pass at least one row.")
        yield np.memmap(path, dtype, "r", shape=(n, d))
