"""Sufficient statistics of the M-step, taken about the current means, and their chunked sums.

With responsibilities γ_ik (sample weights already folded in) and a shift c_k per component:
    s0_k = Σ_i γ_ik,   s1_k = Σ_i γ_ik (x_i − c_k),   s2_k = Σ_i γ_ik (x_i − c_k)(x_i − c_k)ᵀ.
The M-step needs only these: μ_k = c_k + s1_k/s0_k and Σ_k = s2_k/s0_k − δ_k δ_kᵀ with
δ_k = s1_k/s0_k. Choosing c_k close to μ_k (EM uses the previous means) keeps δ small, so the
subtraction does not cancel. For a fixed shift the statistics are plain sums over rows, so
chunks of rows, devices and hosts combine them by addition.

`s2` is stored in the shape its covariance type needs: full (K, D, D); diag and spherical
(K, D) (only the diagonal); tied (D, D) (already summed over components).
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._covariance import layout
from ._likelihood import matmul_precision, quadratic_features, unpack_symmetric


class SufficientStatistics(eqx.Module):
    """Shifted zeroth, first and second moments of the responsibilities (see module docstring).

    Attributes:
        s0: (K,) effective counts N_k.
        s1: (K, D) first moments about `shift`.
        s2: full (K, D, D); diag/spherical (K, D); tied (D, D).
        shift: (K, D) the point c_k each component's moments are taken about.
    """

    s0: Float[Array, " k"]
    s1: Float[Array, "k d"]
    s2: Array
    shift: Float[Array, "k d"]


def sufficient_statistics(
    X: Float[Array, "n d"],
    resp: Float[Array, "n k"],
    *,
    cov_type: str,
    sample_weight: Float[Array, " n"] | None = None,
    shift: Float[Array, "k d"] | None = None,
) -> SufficientStatistics:
    """Shifted sufficient statistics of one block of rows.

    Args:
        X: (N, D) data.
        resp: (N, K) responsibilities γ_ik.
        cov_type: decides the shape of `s2`.
        sample_weight: optional (N,) weights w_i, multiplied into γ.
        shift: (K, D) points c_k; defaults to the column means of X for every component.

    Returns:
        SufficientStatistics.
    """
    n, d = X.shape
    k = resp.shape[1]
    if shift is None:
        shift = jnp.broadcast_to(jnp.mean(X, axis=0), (k, d))
    # The explicit differences x − c_k: accurate wherever X lies (no expansion about an origin).
    return kernel_statistics(X, resp, cov_type=cov_type, sample_weight=sample_weight, shift=shift)


def kernel_statistics(
    X: Float[Array, "n d"],
    resp: Float[Array, "n k"],
    *,
    cov_type: str,
    sample_weight: Float[Array, " n"] | None,
    shift: Float[Array, "k d"],
    expand: bool = False,
) -> SufficientStatistics:
    """`sufficient_statistics` of one block, with the choice of kernel.

    expand: take s2 from the products with φ(x) (`_second_moment`), for data centred about
    the origin (the fitting code, where every restart shares X and its quadratic features, and
    only where `_likelihood.expansion_is_accurate`), rather than from the explicit differences
    x − c_k (the default)."""
    if sample_weight is not None:
        resp = resp * sample_weight[:, None]
    s0 = jnp.sum(resp, axis=0)
    raw1 = jnp.dot(resp.T, X, precision=matmul_precision())  # Σ γ x, (K, D)
    s1 = raw1 - s0[:, None] * shift
    if expand:
        s2 = _second_moment(X, resp, s0, raw1, shift, cov_type)
    else:
        s2 = _second_moment_direct(X, resp, shift, cov_type)
    return SufficientStatistics(s0, s1, s2, shift)


def _second_moment(X, resp, s0, raw1, shift, cov_type):
    """Σ γ (x−c)(x−c)ᵀ by matrix products with φ(x) shared by every component and restart (see
    `_likelihood.expansion_error` for its rounding)."""
    d = X.shape[-1]
    if layout(cov_type) == "tied":
        w = jnp.sum(resp, axis=1)
        xx = unpack_symmetric(jnp.dot(w, quadratic_features(X), precision=matmul_precision()), d)
        cr = jnp.dot(shift.T, raw1, precision=matmul_precision())
        return (
            xx - cr - cr.T + jnp.dot((shift * s0[:, None]).T, shift, precision=matmul_precision())
        )
    features = quadratic_features(X) if layout(cov_type) == "full" else jnp.square(X)
    raw2 = jnp.dot(resp.T, features, precision=matmul_precision())
    return shifted_second_moment(raw2, s0, raw1, shift, cov_type)


def shifted_second_moment(raw2, s0, raw1, shift, cov_type):
    """Σ γ (x−c)(x−c)ᵀ = Σ γ xxᵀ − c rᵀ − r cᵀ + s0 ccᵀ from the raw sums about the origin:
    raw2 = Σ γ φ(x) (K, F) for full covariances (unpacked here), Σ γ x² (K, D) for diag and
    spherical (whose s2 is that diagonal); s0 = Σ γ (K,), r = raw1 = Σ γ x (K, D), c = shift."""
    if layout(cov_type) == "full":
        xx = unpack_symmetric(raw2, shift.shape[-1])
        cr = jnp.einsum("kd,ke->kde", shift, raw1)
        return (
            xx
            - cr
            - jnp.swapaxes(cr, -1, -2)
            + s0[:, None, None] * jnp.einsum("kd,ke->kde", shift, shift)
        )
    return raw2 - 2.0 * shift * raw1 + s0[:, None] * jnp.square(shift)


def _second_moment_direct(X, resp, shift, cov_type):
    """The same sums from explicit (N, K, D) differences: no cancellation."""
    diff = X[:, None, :] - shift[None]
    weighted = resp[:, :, None] * diff
    if layout(cov_type) == "full":
        return jnp.einsum("nkd,nke->kde", weighted, diff, precision=matmul_precision())
    if layout(cov_type) == "tied":
        return jnp.einsum("nkd,nke->de", weighted, diff, precision=matmul_precision())
    return jnp.sum(weighted * diff, axis=0)


def reshift(stats: SufficientStatistics, shift: Float[Array, "k d"]) -> SufficientStatistics:
    """The same statistics taken about a new `shift` c' (exact algebra, no data pass).

    With Δ_k = c'_k − c_k:  s1' = s1 − s0 Δ,  s2' = s2 − Δ s1ᵀ − s1 Δᵀ + s0 Δ Δᵀ
    (diag/spherical keep the diagonal, tied sums over k). Online and incremental EM keep
    statistics gathered under earlier means; moving them to the current means before the
    M-step keeps δ = s1/s0 small, as the module docstring asks for float32.
    """
    delta = shift - stats.shift
    s0, s1 = stats.s0, stats.s1
    if stats.s2.ndim == 3:  # full
        cross = jnp.einsum("kd,ke->kde", delta, s1)
        outer = s0[:, None, None] * jnp.einsum("kd,ke->kde", delta, delta)
        s2 = stats.s2 - cross - jnp.swapaxes(cross, -1, -2) + outer
    elif stats.s2.shape == s1.shape:  # diag / spherical: diagonals only
        s2 = stats.s2 - 2.0 * delta * s1 + s0[:, None] * jnp.square(delta)
    else:  # tied: (D, D), summed over components
        cross = jnp.einsum("kd,ke->de", delta, s1)
        s2 = stats.s2 - cross - cross.T + jnp.einsum("k,kd,ke->de", s0, delta, delta)
    return SufficientStatistics(s0, s1 - s0[:, None] * delta, s2, shift)


def zero_statistics(shift: Float[Array, "k d"], cov_type: str) -> SufficientStatistics:
    """Statistics of no rows (all zeros) about `shift`, s2 in the shape `cov_type` needs."""
    k, d = shift.shape
    s2_shape = {"full": (k, d, d), "tied": (d, d)}.get(layout(cov_type), (k, d))
    zeros = jnp.zeros_like(shift)
    return SufficientStatistics(zeros[:, 0], zeros, jnp.zeros(s2_shape, shift.dtype), shift)


def scaled(stats: SufficientStatistics, factor) -> SufficientStatistics:
    """The statistics of `factor` times the weights: s0, s1, s2 multiplied, shift kept."""
    return SufficientStatistics(
        stats.s0 * factor, stats.s1 * factor, stats.s2 * factor, stats.shift
    )


class Chunked(eqx.Module):
    """Rows of X split into equal chunks, padded with zero-weight rows: the in-memory data
    source (possibly sharded over a mesh). A data source has `n_chunks`, `sum_chunks(fn,
    *args)`, `total_weight` and `mean_weight`, and for the methods that visit it in pieces
    `chunk(c)`, `batch_order(key)` and `batch(order, j)`; `_stream.Streamed` is the
    host-resident one.

    Attributes:
        X: (C, B, D) chunks of rows.
        weight: (C, B) sample weights; padding rows have weight 0.
        missing: (static) X holds NaN for values missing at random (`_missing.py`); the
            fitting code then takes marginal densities and expected statistics.
    """

    X: Float[Array, "c b d"]
    weight: Float[Array, "c b"]
    missing: bool = eqx.field(static=True, default=False)

    @property
    def total_weight(self) -> Array:
        return jnp.sum(self.weight)

    @property
    def mean_weight(self) -> Array:
        """The mean weight of the rows that have one (padding excluded)."""
        return self.total_weight / jnp.sum(self.weight > 0)

    @property
    def n_chunks(self) -> int:
        return self.X.shape[0]

    @property
    def rows(self) -> int:
        """Rows per chunk (padding included), as `_stream.Streamed.rows`."""
        return self.X.shape[1]

    def sum_chunks(self, fn: Callable, *args):
        """Σ_c fn(X_c, w_c, c, *args) with `lax.scan` over the chunk arrays."""
        if self.n_chunks == 1:
            return fn(self.X[0], self.weight[0], 0, *args)
        shapes = jax.eval_shape(fn, self.X[0], self.weight[0], 0, *args)
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

        def body(total, inputs):
            x, w, c = inputs
            return jax.tree.map(jnp.add, total, fn(x, w, c, *args)), None

        chunks = (self.X, self.weight, jnp.arange(self.n_chunks))
        total, _ = jax.lax.scan(body, zeros, chunks)
        return total

    def chunk(self, c) -> tuple[Array, Array]:
        """Chunk c (traced index) as (B, D) rows and (B,) weights."""
        return self.X[c], self.weight[c]

    def batch_order(self, key) -> Array:
        """A random visiting order for one pass in minibatches of B rows: (C, B) row indices,
        a permutation of all rows (padding included), so each minibatch is a uniform draw
        without replacement whatever order the rows were given in."""
        n_rows = self.X.shape[0] * self.X.shape[1]
        return jax.random.permutation(key, n_rows).reshape(self.X.shape[:2])

    def batch(self, order: Array, j) -> tuple[Array, Array]:
        """Minibatch j of the pass `order` (from `batch_order`): (B, D) rows, (B,) weights."""
        idx = order[j]
        return self.flat_X[idx], self.flat_weight[idx]

    @property
    def flat_X(self) -> Float[Array, "n d"]:
        return self.X.reshape(-1, self.X.shape[-1])

    @property
    def flat_weight(self) -> Float[Array, " n"]:
        return self.weight.reshape(-1)


def chunk_rows(X: Array, weight: Array, chunk_size: int, *, missing: bool = False) -> Chunked:
    """Pad (N, D) rows to a multiple of `chunk_size` with zero-weight rows and split them.

    Host (NumPy) input is padded on the host and transferred once: JAX operations outside a
    program each cost a compilation in a fresh process."""
    n, d = X.shape
    n_chunks = -(-n // chunk_size)
    pad = n_chunks * chunk_size - n
    xp = np if isinstance(X, np.ndarray) and isinstance(weight, np.ndarray) else jnp
    X = xp.pad(X, ((0, pad), (0, 0)))
    weight = xp.pad(weight, (0, pad))
    chunked = Chunked(
        X.reshape(n_chunks, chunk_size, d), weight.reshape(n_chunks, chunk_size), missing
    )
    return jax.device_put(chunked) if xp is np else chunked


def sum_over_chunks(fn: Callable, data, *args):
    """Σ_c fn(X_c, w_c, c, *args) over the chunks of a data source (`Chunked` in memory or
    `_stream.Streamed` on the host): memory bounded by one chunk.

    `fn` returns a pytree of arrays; the pytrees are summed leaf by leaf. Every data source
    implements `sum_chunks(fn, *args)`; this is the one place the fitting code calls it.
    """
    return data.sum_chunks(fn, *args)


def streamed_statistics(
    responsibilities: Callable, data, *, cov_type: str, shift: Array, expand: bool = False
) -> tuple[SufficientStatistics, object]:
    """Sufficient statistics about `shift`, accumulated chunk by chunk.

    `responsibilities(X_c, w_c, c)` gives the chunk's (B, K) responsibilities and any extra
    pytree to sum alongside (e.g. the log-likelihood); sample weights are folded in here. The
    shift is the same for every chunk, so only s0, s1, s2 are summed. `expand`: see
    `kernel_statistics`.

    Returns:
        (SufficientStatistics, the summed extra).
    """

    def chunk(X, w, c):
        resp, extra = responsibilities(X, w, c)
        st = kernel_statistics(
            X, resp, cov_type=cov_type, sample_weight=w, shift=shift, expand=expand
        )
        return (st.s0, st.s1, st.s2), extra

    (s0, s1, s2), extra = sum_over_chunks(chunk, data)
    return SufficientStatistics(s0, s1, s2, shift), extra
