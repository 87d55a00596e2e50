"""`fit`: the one entry point every method runs through; `fit_em` and `fit_gradient` are its
named forms."""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import PRNGKeyArray

from ._config import FitConfig
from ._covariance import ALIASES, LAYOUTS, model_name
from ._daarem import DAAREM
from ._em_method import EM
from ._gradient import Gradient
from ._incremental_em import IncrementalEM
from ._method import Method, Problem
from ._online_em import OnlineEM
from ._params import GMM
from ._prepare import PreparedFit, fit_input
from ._prior import default_reg_covar
from ._program import program_for
from ._result import FitResult, make_result, start_failure_cause
from ._squarem import SQUAREM
from ._stats import Chunked
from ._stream import is_host_stream

# The EM family by name, with default options; the gradient methods' names follow.
EM_FAMILY = {
    "em": EM,
    "squarem": SQUAREM,
    "daarem": DAAREM,
    "online_em": OnlineEM,
    "incremental_em": IncrementalEM,
}
METHOD_NAMES = tuple(EM_FAMILY) + ("lbfgs", "adam", "sgd")


def resolve_method(method, batch_size: int | None = None) -> Method:
    """`method=` as `fit` takes it: a name, an optax transformation, or a method object."""
    if isinstance(method, str) and method in EM_FAMILY:
        if method == "online_em":
            return OnlineEM(batch_size=batch_size)
        if batch_size is not None:
            raise ValueError(
                f'batch_size is for the gradient methods and "online_em", not {method!r}.'
            )
        return EM_FAMILY[method]()
    if not isinstance(method, str) and all(
        hasattr(method, name) for name in ("hyper", "init", "step", "to_gmm")
    ):
        if batch_size is not None:
            raise ValueError("pass batch_size to the method object (gmmjax.Gradient(...)).")
        hash(method)  # compiled in as a static argument: a frozen dataclass, not a mutable one
        return method
    if isinstance(method, str) and method not in METHOD_NAMES:
        raise ValueError(
            f"method must be one of {METHOD_NAMES}, an optax.GradientTransformation or a "
            f"method object, got {method!r}."
        )
    return Gradient(method, batch_size)


def fit(
    X,
    n_components: int,
    *,
    key: PRNGKeyArray,
    method="em",
    cov_type: str = "full",
    n_restarts: int = 1,
    init: str = "kmeans++",
    max_iter: int | None = None,
    tol: float | None = None,
    reg_covar: float | None = None,
    prior=None,
    sample_weight=None,
    init_params: GMM | None = None,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
    halving_every: int | None = None,
    halving_survivors: int = 1,
    learning_rate: float | None = None,
    grad_tol: float | None = None,
    batch_size: int | None = None,
    missing: str = "raise",
) -> FitResult:
    """Fit a Gaussian mixture from `n_restarts` starts with one method, all in one program.

    Every method maximises the same objective (docs/math.md §2): the mean per-sample
    log-likelihood plus log p(θ)/N when a `prior` is given. Each restart is one resumable
    solver loop (`_solver.py`); restarts are a `vmap` over `jax.random.split(key)`. Rows
    stream through the objective in chunks of `chunk_size`, so memory grows with the chunk,
    not with N. Data are centred on their (weighted) mean before fitting and the means shifted
    back afterwards, which keeps float32 accurate on offset data. Only shapes and the static
    options (K, cov_type, init, max_iter, the method, halving's schedule) are compiled in:
    new data values, `tol`, `reg_covar`, the prior's values, learning rates or keys reuse
    the compiled program.

    Args:
        X: (N, D) data; integer data are cast to the default float dtype, float32 stays float32.
            A `numpy.memmap` or an iterator of (n_i, D) chunks is not copied to the device:
            each step streams it through the objective chunk by chunk inside the compiled
            program (device memory bounded by one chunk); the initialisation then runs on a
            uniform subsample of 65,536 rows, and an iterator is first spooled to a temporary
            file. See `_stream.py`.
        n_components: K.
        key: PRNG key; restart r uses `jax.random.split(key, n_restarts)[r]`, so every method
            with the same key and `init` starts from the same parameters.
        method: "em"; the EM family "squarem", "daarem" (accelerated EM), "online_em",
            "incremental_em" (EM on minibatch / block statistics; one step is one pass); "lbfgs"
            (optax's L-BFGS with its zoom line search), "adam", "sgd" (momentum 0.9) or any
            `optax.GradientTransformation`, on the unconstrained coordinates; or a method
            object with options (`gmmjax.SQUAREM(mon_tol=0.0)`, `gmmjax.DAAREM(...)`,
            `gmmjax.OnlineEM(batch_size=...)`, `gmmjax.IncrementalEM(n_blocks=...)`,
            `gmmjax.EM()`, `gmmjax.Gradient(...)`).
        cov_type: "full", "diag", "spherical" or "tied" (scikit-learn's names), or one of R
            mclust's fourteen models "EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE",
            "EVE", "VVE", "EEV", "VEV", "EVV", "VVV" (docs/math.md §11; the four are VII,
            VVI, EEE, VVV). The EM family (EM, online and incremental EM) fits every model;
            gradient methods, SQUAREM and DAAREM take the four only. A prior exists for
            every model (mclust's for the ten it has one for).
        n_restarts: R.
        init: "kmeans++", "random_from_data" or "random"; ignored with `init_params`.
        max_iter: maximum steps per restart (default 100 for EM, SQUAREM, DAAREM and
            incremental EM, 10 passes for online EM, 500 for gradient methods).
        tol: stop when the change in the objective is below `tol` (scikit-learn's criterion;
            gradient methods also need the gradient norm below `grad_tol`); 0 runs exactly
            `max_iter` steps. Default 1e-3 for the EM family, 1e-6 for gradient methods.
        reg_covar: ε added to every covariance diagonal by EM's M-step and the
            initialisation's (scikit-learn's regulariser). It is not part of any objective:
            EM with reg_covar > 0 is not the EM of a fixed function, so gradient methods and
            EM agree only with reg_covar = 0. Default: 1e-6 without a prior (scikit-learn's
            EM), 0 with a prior (the prior keeps covariances regular).
        prior: None, "mclust" (`Prior.mclust(X, K, cov_type)`, R mclust's default), or a
            `gmmjax.Prior`. EM's M-step becomes the MAP M-step and every method maximises the
            same penalised objective.
        sample_weight: optional (N,) finite non-negative weights, not all zero. Without a
            prior only their ratios matter: they are normalised on the host in float64 to
            mean 1 before any cast, so any positive rescaling (1e-300 to 1e300) gives the same
            fit, objective and log-likelihood (both per unit weight, Σ w_i ℓ_i / Σ w_i). With
            a prior they are counts (weight 2 is the row twice) and keep their scale, which
            sets the prior's strength against the data. A row of weight 0 has no effect,
            whatever finite values it holds; integer weights fit as repeated rows.
        init_params: a GMM shared by all restarts, or one with a leading (R,) axis.
        chunk_size: rows per chunk (default on the CPU: min(2^18 / (R·K), 2^20 / F) as a
            power of two, at least 1024, F = D(D+1)/2 for full and tied covariances, D
            otherwise; at most 8192 in float64 and where N·K·D² ≥ 2^24, the passes that can
            take the expanded products; measured in benchmarks/README.md. On a GPU the
            chunk only bounds memory: 2^27 / max(F + D + 1, R·K, R·K·D below float64) rows).
            For streamed data, the rows of each host-to-device transfer.
        mesh: a `jax.sharding.Mesh` with a "data" axis (and optionally a "restarts" axis) to
            split the rows (and restarts) over its devices; sums over rows become all-reduces,
            so the result equals the one-device fit up to summation order. With several
            processes (`jax.distributed.initialize`), every process calls `fit` with its own
            rows and gets the same result. See `_sharding.py`.
        halving_every: successive halving over restarts: every `halving_every` iterations
            keep the better half (by objective) until `halving_survivors` remain, which run on
            to `max_iter` or convergence; restarts cut while running get `Status.PRUNED`.
            Survivors' histories equal the plain loop's. See `_halving.py`.
        halving_survivors: see `halving_every`.
        learning_rate: for "adam"/"sgd" (default 0.05); traced, changing it does not recompile.
        grad_tol: gradient methods' gradient-norm condition (default 1e-4).
        batch_size: minibatch rows for stochastic gradient methods (in-memory data, one
            process; the history still records full-data values) and for "online_em".
        missing: "raise" (default): NaN in X is a ValueError. "em": NaN marks a value missing
            at random; every method then maximises the observed-data log-likelihood
            Σ_i log Σ_k π_k N(x_io; μ_ko, Σ_koo) (EM with conditional expectations in its
            E-step, `_missing.py`), the initialisation reads the rows with missing values
            replaced by the column means, and rows with every value missing are refused. In
            memory only (not a memmap or iterator); complete data fit exactly as with "raise".

    Returns:
        FitResult.

    Raises:
        ValueError: for invalid input, before anything is traced (including values whose
            weighted sums of squares would overflow the compute dtype: rescale X);
            `FitFailedError` (a ValueError, naming the cause it detected: a singular
            mean-imputed start, weight on too few rows, reg_covar=0 on identical rows, a
            regulariser below the data's rounding) when every restart failed at its start,
            so that no valid parameters exist (a failed restart otherwise keeps its last
            valid parameters, and a RuntimeWarning says when no restart succeeded).
    """
    return _fit(**locals())


def _fit(X, n_components, *, key, method, timing=None, previous_value=None, **options) -> FitResult:
    """`fit`; with a `timing` dict, compiled ahead of time and timed (compile, run seconds).
    `previous_value` is the objective the first step's tol test compares with (default −inf,
    so the first step never converges): a warm-started fit continues the previous fit's test."""
    batch_size = options.pop("batch_size")
    method = resolve_method(method, batch_size)
    if isinstance(method, Gradient) and method.batch_size is not None:
        if is_host_stream(X):
            raise ValueError(
                "batch_size needs in-memory data; pass an array, not a memmap/iterator."
            )
        if options["mesh"] is not None and jax.process_count() > 1:
            # Minibatch rows are drawn by index below N, which assumes the padding comes last.
            raise ValueError("batch_size is not supported with several processes.")
    chunk_rule = getattr(method, "rows_per_chunk", None)
    if chunk_rule is not None:
        # Online and incremental EM visit the data chunk by chunk: the chunk is their
        # minibatch or block, so its size is theirs to set.
        if options["chunk_size"] is not None:
            raise ValueError(
                f"{method.name} sets the chunk size from its own batch_size / n_blocks; drop "
                "chunk_size."
            )
        if options["mesh"] is not None:
            raise ValueError(f"{method.name} runs on one device; drop mesh.")
    hyper = method.hyper(
        {"learning_rate": options.pop("learning_rate"), "grad_tol": options.pop("grad_tol")}
    )
    prior = options.pop("prior")
    reg_covar = default_reg_covar(options.pop("reg_covar"), prior)
    max_iter = options.pop("max_iter")
    tol = options.pop("tol")
    config = FitConfig(
        n_components=n_components,
        cov_type=options.pop("cov_type"),
        n_restarts=options.pop("n_restarts"),
        init=options.pop("init"),
        max_iter=method.default_max_iter if max_iter is None else max_iter,
        tol=method.default_tol if tol is None else tol,
        reg_covar=reg_covar,
        chunk_size=options.pop("chunk_size"),
        chunk_rule=chunk_rule,
        halving_every=options.pop("halving_every"),
        halving_survivors=options.pop("halving_survivors"),
        missing=options.pop("missing", "raise"),
    )
    check_method_supports(method, config.cov_type)
    with fit_input(X, config, key=key, prior=prior, **options) as prep:
        return run_prepared(
            prep, config, method, hyper, timing=timing, previous_value=previous_value
        )


def check_method_supports(method: Method, cov_type: str) -> None:
    """ValueError when a method cannot keep an mclust model's structure: only the methods that
    update through the M-step (EM, online and incremental EM: `structured_covariances`) fit
    the models beyond scikit-learn's four; gradient steps and SQUAREM / DAAREM's
    extrapolation move the free covariance parameters."""
    if model_name(cov_type) in ALIASES.values() or getattr(method, "structured_covariances", False):
        return
    raise ValueError(
        f"method {method.name!r} fits the covariance types {LAYOUTS} (mclust's "
        f"{tuple(ALIASES.values())}), not {cov_type!r}; fit mclust's other models with "
        "method='em', 'online_em' or 'incremental_em'."
    )


def run_prepared(
    prep: PreparedFit,
    config: FitConfig,
    method: Method,
    hyper: dict,
    *,
    active=None,
    timing: dict | None = None,
    previous_value: float | None = None,
) -> FitResult:
    """Run the fitting program on prepared input (`active` (K,) masks components, see
    `select`). With a `timing` dict the program is compiled ahead of time and the dict gets
    "compile_seconds", "seconds" (the run alone) and "compiled" (the executable)."""
    if active is None:
        active = np.ones((config.n_components,), bool)
    problem = Problem(
        prep.data,
        prep.prior,
        prep.scalar(active),
        prep.scalar(config.reg_covar),
        prep.count(prep.n_samples),
    )
    tol = prep.scalar(config.tol)
    # Every method may read the run's planned length (online EM averages its later part); the
    # solver's first tol test compares with `previous_value` (traced: no recompile).
    previous = -jnp.inf if previous_value is None else previous_value
    hyper = prep.traced({**hyper, "max_iter": config.max_iter, "previous_value": previous})
    args = (problem, prep.keys, prep.init_params, tol, hyper, prep.init_data)
    static = dict(
        method=method,
        n_components=config.n_components,
        cov_type=config.cov_type,
        # Unused with init_params: no recompile on it.
        init=None if prep.init_params is not None else config.init,
        max_iter=config.max_iter,
        has_init=prep.init_params is not None,
        stages=config.stages,
    )
    program = program_for(
        n_samples=prep.n_samples,
        n_restarts=config.n_restarts,
        n_components=config.n_components,
        n_features=prep.offset.shape[-1],
        max_iter=config.max_iter,
    )
    if timing is None:
        out = prep.run(program, *args, **static)
    else:
        t0 = time.perf_counter()
        compiled = program.lower(*args, **static).compile()
        timing["compile_seconds"] = time.perf_counter() - t0
        timing["compiled"] = compiled
        t0 = time.perf_counter()
        out = prep.run(lambda *a: jax.block_until_ready(compiled(*a)), *args)
        timing["seconds"] = time.perf_counter() - t0
    params, value, ll, state, best = out
    return make_result(
        params,
        value,
        ll,
        state,
        best,
        prep.offset,
        explain=functools.partial(_start_failure, prep, config),
    )


def _start_failure(prep: PreparedFit, config: FitConfig, start: GMM) -> str:
    """`start_failure_cause` with what the prepared input says (called only on failure)."""
    positive_rows = largest_variance = None
    if isinstance(prep.data, Chunked) and prep.mesh is None:
        weight = np.asarray(prep.data.weight)
        positive_rows = int(np.count_nonzero(weight))
        X = np.asarray(prep.data.X).reshape(-1, prep.data.X.shape[-1])[weight.reshape(-1) > 0]
        largest_variance = float(np.max(np.nanvar(X, axis=0))) if X.size else None
    return start_failure_cause(
        start,
        reg_covar=float(config.reg_covar),
        missing=isinstance(prep.data, Chunked) and prep.data.missing,
        given_start=prep.init_params is not None,
        positive_rows=positive_rows,
        n_samples=prep.n_samples,
        largest_variance=largest_variance,
    )


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
    reg_covar: float | None = None,
    prior=None,
    sample_weight=None,
    init_params: GMM | None = None,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
    halving_every: int | None = None,
    halving_survivors: int = 1,
    missing: str = "raise",
) -> FitResult:
    """`fit(..., method="em")`: expectation-maximisation (MAP-EM with a `prior`).

    With the defaults (no prior, reg_covar = 1e-6) this is scikit-learn's EM step for step.
    See `fit` for every argument.
    """
    return fit(
        X,
        n_components,
        key=key,
        method="em",
        cov_type=cov_type,
        n_restarts=n_restarts,
        init=init,
        max_iter=max_iter,
        tol=tol,
        reg_covar=reg_covar,
        prior=prior,
        sample_weight=sample_weight,
        init_params=init_params,
        chunk_size=chunk_size,
        mesh=mesh,
        halving_every=halving_every,
        halving_survivors=halving_survivors,
        missing=missing,
    )


def fit_gradient(
    X,
    n_components: int,
    *,
    key: PRNGKeyArray,
    optimizer="lbfgs",
    learning_rate: float | None = None,
    cov_type: str = "full",
    n_restarts: int = 1,
    init: str = "kmeans++",
    max_iter: int = 500,
    tol: float = 1e-6,
    grad_tol: float = 1e-4,
    init_params: GMM | None = None,
    batch_size: int | None = None,
    sample_weight=None,
    reg_covar: float | None = None,
    prior=None,
    chunk_size: int | None = None,
    mesh: Mesh | None = None,
    halving_every: int | None = None,
    halving_survivors: int = 1,
    missing: str = "raise",
) -> FitResult:
    """`fit(..., method=optimizer)`: maximise the objective with an optax optimiser.

    Same starts (same key and `init` give `fit_em`'s initial parameters), the same objective,
    the same solver and the same `FitResult` as `fit_em`; `history[r, t]` is the full-data
    objective of the t-th iterate, so curves compare with EM's step for step. `reg_covar` only
    enters through the initialisation's M-step. See `fit` for every argument.
    """
    from ._gradient import check_optimizer

    check_optimizer(optimizer)
    return fit(
        X,
        n_components,
        key=key,
        method=optimizer,
        cov_type=cov_type,
        n_restarts=n_restarts,
        init=init,
        max_iter=max_iter,
        tol=tol,
        reg_covar=reg_covar,
        prior=prior,
        sample_weight=sample_weight,
        init_params=init_params,
        chunk_size=chunk_size,
        mesh=mesh,
        halving_every=halving_every,
        halving_survivors=halving_survivors,
        learning_rate=learning_rate,
        grad_tol=grad_tol,
        batch_size=batch_size,
        missing=missing,
    )
