"""`fit_em`: many EM restarts as one compiled program, and the `FitResult` every fit returns."""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections import Counter

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._em import m_step_from_statistics, streamed_e_statistics, streamed_log_likelihood
from ._halving import _halving_program, halving_schedule
from ._init import init_from_data
from ._params import GMM
from ._sharding import (
    as_auto,
    check_mesh,
    global_sum,
    place_restarts,
    replicate,
    rows_per_chunk,
    shard_rows,
    to_host,
)
from ._solver import OK, LoopResult, Status, StepOutput, iterate, map_restarts, select_best
from ._stats import Chunked, chunk_rows
from ._stream import Streamed, is_host_stream, open_host_data
from ._validate import check_data, check_fit_options, check_init_params, check_sample_weight

# Incremented each time a fitting program is traced; the compile-count tests read it.
trace_counts: Counter[str] = Counter()

# Rows per chunk x restarts x components: the (chunk, K) responsibilities of all restarts
# together stay cache-sized. Measured on W2 and W4 (benchmarks/README.md): 2^17-2^18 is best.
_CHUNK_ELEMENTS = 2**18


def default_chunk_size(n_samples: int, n_restarts: int, n_components: int) -> int:
    """Rows per chunk when `chunk_size` is None: 2^18 / (R·K) rounded down to a power of two,
    at least 256 and at most N."""
    rows = max(256, _CHUNK_ELEMENTS // (n_restarts * n_components))
    return min(n_samples, 1 << (rows.bit_length() - 1))


class FitResult(eqx.Module):
    """What `fit_em` and `fit_gradient` return. R is the number of restarts.

    Attributes:
        best: the GMM of the best restart (highest finite final log-likelihood among restarts
            that did not fail).
        params: GMM with a leading restart axis (R, ...).
        log_likelihood: (R,) mean per-sample log-likelihood of the returned parameters.
        history: (R, max_iter); history[r, t] is the mean log-likelihood of θ_t, the
            parameters after t steps; NaN after the last step.
        n_iter: (R,) number of completed steps.
        status: (R,) `Status` codes.
        best_index: index of `best` in the restart axis.
        evals: (R, max_iter); evals[r, t] is the work spent when history[r, t] became known,
            in evaluations of the log-likelihood over the data (with its gradient where one is
            taken), line-search evaluations included: the measure for comparing methods.
            EM: t + 1 (one fused E/M pass per step); a minibatch gradient counts batch_size / N.
        n_evals: (R,) total work of each restart in the same unit.
    """

    best: GMM
    params: GMM
    log_likelihood: Float[Array, " r"]
    history: Float[Array, "r max_iter"]
    n_iter: Int[Array, " r"]
    status: Int[Array, " r"]
    best_index: Int[Array, ""]
    evals: Float[Array, "r max_iter"]
    n_evals: Float[Array, " r"]

    @property
    def converged(self) -> Array:
        """(R,) True where the tol test stopped the restart."""
        return self.status == Status.CONVERGED


def _em_step(
    gmm: GMM, aux, *, data: Chunked, total_weight, mean_weight, reg_covar, active
) -> StepOutput:
    stats, ll = streamed_e_statistics(gmm, data)
    new = m_step_from_statistics(stats, cov_type=gmm.cov_type, reg_covar=reg_covar, active=active)

    def finite(t):
        return jnp.all(jnp.isfinite(t))

    moments_ok = finite(new.weights) & finite(new.means) & finite(new.covariances)
    # Positive definiteness is read off the Cholesky factor: NaN when it failed.
    empty = active & (stats.s0 < _EMPTY_COMPONENT * mean_weight)
    collapsed = ~finite(new.precisions_cholesky) | jnp.any(empty)
    failure = jnp.where(moments_ok, jnp.where(collapsed, Status.DEGENERATE, OK), Status.NON_FINITE)
    return StepOutput(new, aux, ll / total_weight, failure)


# A component whose responsibilities sum to less than this many (average-weight) samples is
# numerically empty.
_EMPTY_COMPONENT = 1e-10


def em_parts(data, init_data, reg_covar, active, *, n_components, cov_type, init):
    """The EM step over `data` and the initialisation of one restart from its key, shared by
    `_fit_em_program` and successive halving. `init_data`, if not None, is what the
    initialisation reads instead of `data`."""
    step = functools.partial(
        _em_step,
        data=data,
        total_weight=data.total_weight,
        mean_weight=data.mean_weight,
        reg_covar=reg_covar,
        active=active,
    )

    def initial(key) -> GMM:
        return init_from_data(
            data if init_data is None else init_data,
            key,
            n_components=n_components,
            cov_type=cov_type,
            method=init,
            reg_covar=reg_covar,
            active=active,
        )

    return step, initial


@functools.partial(
    jax.jit, static_argnames=("n_components", "cov_type", "init", "max_iter", "has_init")
)
def _fit_em_program(
    data: Chunked,
    keys: PRNGKeyArray,
    init_params: GMM | None,
    tol: Array,
    reg_covar: Array,
    active: Array,
    init_data: Chunked | None = None,
    *,
    n_components: int,
    cov_type: str,
    init: str,
    max_iter: int,
    has_init: bool,
):
    """All restarts of one EM fit. `active` (K,) bool masks padded components (see `select`);
    `init_data`, when given, is what the initialisation reads instead of `data` (a subsample
    of host-streamed data)."""
    trace_counts["fit_em"] += 1
    step, initial = em_parts(
        data,
        init_data,
        reg_covar,
        active,
        n_components=n_components,
        cov_type=cov_type,
        init=init,
    )

    def one_restart(key, start):
        if not has_init:
            start = initial(key)
        out = iterate(step, start, None, max_iter=max_iter, tol=tol)
        final_ll = streamed_log_likelihood(out.params, data) / data.total_weight
        return out.params, final_ll, out

    params, ll, out = map_restarts(one_restart, keys, init_params)
    return params, ll, out, select_best(ll, out.status)


def fit_em(
    X,
    n_components: int,
    *,
    key: PRNGKeyArray,
    cov_type: str = "full",
    n_restarts: int = 1,
    init: str = "kmeans++",
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    sample_weight=None,
    init_params: GMM | None = None,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
    halving_every: int | None = None,
    halving_survivors: int = 1,
) -> FitResult:
    """Fit a Gaussian mixture by EM from `n_restarts` initialisations, all in one program.

    Each restart is one `lax.while_loop`; restarts are a `vmap` over `jax.random.split(key)`.
    Rows stream through the E-step and the sufficient statistics in chunks of `chunk_size`, so
    memory grows with the chunk, not with N. Data are centred on their (weighted) mean before
    fitting and the means shifted back afterwards, which keeps float32 accurate on offset data.
    Only shapes and `n_components`, `cov_type`, `init`, `max_iter` are compiled in: new data
    values, `tol`, `reg_covar` or keys reuse the compiled program.

    Args:
        X: (N, D) data; integer data are cast to the default float dtype, float32 stays float32.
            A `numpy.memmap` or an iterator of (n_i, D) chunks is not copied to the device:
            each EM iteration streams it through the statistics chunk by chunk inside the
            compiled program (exact EM, device memory bounded by one chunk); the
            initialisation then runs on a uniform subsample of 65,536 rows, and an iterator
            is first spooled to a temporary file. See `_stream.py`.
        n_components: K.
        key: PRNG key; restart r uses `jax.random.split(key, n_restarts)[r]`.
        cov_type: "full", "diag", "spherical" or "tied".
        n_restarts: R.
        init: "kmeans++", "random_from_data" or "random"; ignored with `init_params`.
        max_iter: maximum EM steps per restart.
        tol: stop when the change in mean per-sample log-likelihood is below `tol`
            (scikit-learn's criterion); 0 runs exactly `max_iter` steps.
        reg_covar: ε added to the covariance diagonals.
        sample_weight: optional (N,) non-negative weights.
        init_params: a GMM shared by all restarts, or one with a leading (R,) axis.
        chunk_size: rows per chunk (default: 2^18 / (R·K) as a power of two, at least 256).
            For streamed data, the rows of each host-to-device transfer.
        mesh: a `jax.sharding.Mesh` with a "data" axis (and optionally a "restarts" axis) to
            split the rows (and restarts) over its devices; the statistics are summed across
            devices, so the result equals the one-device fit up to summation order. With
            several processes (`jax.distributed.initialize`), every process calls `fit_em`
            with its own rows and gets the same result. See `_sharding.py`.
        halving_every: successive halving over restarts: every `halving_every` iterations
            keep the better half (by log-likelihood) until `halving_survivors` remain, which
            run on to `max_iter` or convergence; pruned restarts get `Status.PRUNED`. Saves
            the iterations a vmapped loop spends waiting for its slowest restart, at the risk
            of pruning a slow climber. See `_halving.py`.
        halving_survivors: see `halving_every`.

    Returns:
        FitResult.

    Raises:
        ValueError: for invalid input, before anything is traced.
    """
    with fit_input(
        X,
        n_components,
        key=key,
        cov_type=cov_type,
        n_restarts=n_restarts,
        init=init,
        max_iter=max_iter,
        tol=tol,
        reg_covar=reg_covar,
        sample_weight=sample_weight,
        init_params=init_params,
        chunk_size=chunk_size,
        mesh=mesh,
    ) as prep:
        if halving_every is not None:
            _check_halving(halving_every, halving_survivors, n_restarts)
            params, ll, out, best = prep.run(
                _halving_program,
                prep.data,
                prep.keys,
                prep.init_params,
                prep.scalar(tol),
                prep.scalar(reg_covar),
                prep.init_data,
                n_components=n_components,
                cov_type=cov_type,
                init=None if init_params is not None else init,
                has_init=init_params is not None,
                stages=halving_schedule(n_restarts, halving_every, halving_survivors, max_iter),
            )
            return make_result(prep.uncentre(params), ll, out, best)
        params, ll, out, best = prep.run(
            _fit_em_program,
            prep.data,
            prep.keys,
            prep.init_params,
            prep.scalar(tol),
            prep.scalar(reg_covar),
            prep.scalar(jnp.ones((n_components,), bool)),
            prep.init_data,
            n_components=n_components,
            cov_type=cov_type,
            init=None if init_params is not None else init,  # unused then: no recompile on it
            max_iter=max_iter,
            has_init=init_params is not None,
        )
    return make_result(prep.uncentre(params), ll, out, best)


def _check_halving(every, survivors, n_restarts):
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise ValueError(f"halving_every must be a positive integer or None, got {every!r}.")
    if not isinstance(survivors, int) or not 1 <= survivors <= n_restarts:
        raise ValueError(
            f"halving_survivors must be an integer in [1, n_restarts={n_restarts}], "
            f"got {survivors!r}."
        )


class PreparedFit(eqx.Module):
    """Validated, centred and chunked input shared by `fit_em` and `fit_gradient`."""

    data: Chunked | Streamed
    keys: PRNGKeyArray
    init_params: GMM | None  # centred, with a leading restart axis
    offset: Float[Array, " d"]
    n_samples: int = eqx.field(static=True)  # rows of all processes, before padding
    mesh: Mesh | None = eqx.field(static=True, default=None)
    init_data: Chunked | None = None  # what the initialisation reads, if not `data`

    @property
    def dtype(self):
        return self.offset.dtype

    def scalar(self, value) -> Array:
        """A traced option (tol, reg_covar, learning rate; a mask) in the data's dtype,
        replicated over the mesh if there is one."""
        value = jnp.asarray(value)
        if value.dtype != bool:
            value = value.astype(self.dtype)
        return value if self.mesh is None else replicate(value, self.mesh)

    def run(self, program, *args, **static):
        """Call a fitting program; with a mesh, bring the outputs back to every process."""
        out = program(*args, **static)
        if isinstance(self.data, Streamed):
            # Dispatch is asynchronous: the host reader must outlive the last chunk read.
            out = jax.block_until_ready(out)
        return out if self.mesh is None else to_host(out)

    def uncentre(self, params: GMM) -> GMM:
        return eqx.tree_at(lambda g: g.means, params, params.means + self.offset)


def prepare_fit(
    X,
    n_components,
    *,
    key,
    cov_type,
    n_restarts,
    init,
    max_iter,
    tol,
    reg_covar,
    sample_weight,
    init_params,
    chunk_size,
    mesh=None,
) -> PreparedFit:
    """Validate everything (ValueError before tracing), centre X on its weighted mean, split
    its rows into chunks, split the key per restart and centre / batch `init_params`; with a
    mesh, place all of it on the mesh's devices."""
    X = check_data(X)
    n_local, d = X.shape
    n = n_local if mesh is None else int(global_sum(n_local))
    check_fit_options(
        n_samples=n,
        n_components=n_components,
        cov_type=cov_type,
        init=init,
        n_restarts=n_restarts,
        max_iter=max_iter,
        tol=tol,
        reg_covar=reg_covar,
        chunk_size=chunk_size,
    )
    if mesh is not None:
        check_mesh(mesh, n_restarts)
        mesh = as_auto(mesh)
    weight = check_sample_weight(sample_weight, n_local, X.dtype)
    if init_params is not None:
        check_init_params(
            init_params,
            n_components=n_components,
            n_features=d,
            cov_type=cov_type,
            n_restarts=n_restarts,
        )
    offset = jnp.sum(X * weight[:, None], axis=0)
    if mesh is None:
        offset = offset / jnp.sum(weight)
    else:
        offset = jnp.asarray(global_sum(offset) / global_sum(jnp.sum(weight)), X.dtype)
    rows = min(n, chunk_size or default_chunk_size(n, n_restarts, n_components))
    if mesh is None:
        data = chunk_rows(X - offset, weight, rows)
    else:
        data = shard_rows(X - offset, weight, rows_per_chunk(rows, mesh), mesh)
    start = _centred_start(init_params, offset, n_restarts)
    keys = jax.random.split(key, n_restarts)
    if mesh is not None:
        keys, start = place_restarts((keys, start), mesh)
    return PreparedFit(data, keys, start, offset, n, mesh)


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
def fit_input(X, n_components, **options):
    """`prepare_fit` for in-memory data; for host-streamed data (memmap, iterator) the same
    checks and centring, with the host reader registered for the duration of the block."""
    if not is_host_stream(X):
        yield prepare_fit(X, n_components, **options)
        return
    if options["mesh"] is not None:
        raise ValueError(
            "streamed data (a memmap or an iterator) cannot be combined with mesh=; give each "
            "process its rows as an array instead."
        )
    n_restarts, chunk_size = options["n_restarts"], options["chunk_size"]
    names = ("cov_type", "init", "n_restarts", "max_iter", "tol", "reg_covar", "chunk_size")
    check = functools.partial(
        check_fit_options, n_components=n_components, **{k: options[k] for k in names}
    )
    # An iterator's length is known only after the validation pass: K <= N is checked then.
    check(n_samples=X.shape[0] if hasattr(X, "shape") else n_components)

    def rows_for(n):
        return min(n, chunk_size or default_chunk_size(n, n_restarts, n_components))

    key = options["key"]
    seed = int(jax.random.randint(jax.random.fold_in(key, 2**20), (), 0, 2**31 - 1))
    with open_host_data(
        X, sample_weight=options["sample_weight"], rows_for=rows_for, seed=seed
    ) as host:
        check(n_samples=host.n_samples)
        d = host.stream.n_features
        if options["init_params"] is not None:
            check_init_params(
                options["init_params"],
                n_components=n_components,
                n_features=d,
                cov_type=options["cov_type"],
                n_restarts=n_restarts,
            )
        offset = jnp.asarray(host.offset, host.stream.dtype)
        sample = jnp.asarray(host.sample) - offset
        init_data = chunk_rows(sample, jnp.asarray(host.sample_weight), min(sample.shape[0], 8192))
        yield PreparedFit(
            host.stream,
            jax.random.split(key, n_restarts),
            _centred_start(options["init_params"], offset, n_restarts),
            offset,
            host.n_samples,
            None,
            init_data,
        )


def make_result(params: GMM, ll, out: LoopResult, best_index) -> FitResult:
    """Assemble a FitResult from the restarts' loop results; warns when every restart failed."""
    status = out.status
    if not bool(jnp.any(status <= Status.MAX_ITER_REACHED)):
        codes = sorted({Status(int(s)).name for s in status})
        warnings.warn(
            f"every restart failed ({', '.join(codes)}): {Status(int(status[best_index])).message}",
            RuntimeWarning,
            stacklevel=3,
        )
    return FitResult(
        best=params[best_index],
        params=params,
        log_likelihood=ll,
        history=out.history,
        n_iter=out.n_iter,
        status=status,
        best_index=best_index,
        evals=out.evals_history,
        n_evals=out.evals,
    )
