"""`compare`: EM and gradient methods from the same starts, scored the same way."""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
from jaxtyping import PRNGKeyArray
from scipy.optimize import linear_sum_assignment

from ._fit import _fit, check_method_supports, resolve_method
from ._init import initialize
from ._params import GMM
from ._result import FitResult
from ._solver import failed
from ._validate import check_data

# Reaching "the best optimum" means ending within this of the best objective any method found
# (per sample, the scale every history uses).
REACH_TOL = 1e-4

_NO_MISSING = (
    "X contains NaN; compare does not support missing values yet: drop the incomplete rows "
    "(X[~np.isnan(X).any(1)]), or fit each method with gmmjax.fit(X, K, key=key, "
    'missing="em", method=...).'
)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """What `compare` returns.

    Attributes:
        rows: one dict per method (see `compare` for the columns).
        histories: method -> (R, max_iter) objective per iteration (NaN padded).
        evals: method -> (R, max_iter) cumulative evaluations when each history entry was known.
        results: method -> the FitResult itself.
        best_value: the best objective any method reached, at the end or along the way.
    """

    rows: list[dict]
    histories: dict[str, np.ndarray]
    evals: dict[str, np.ndarray]
    results: dict[str, FitResult]
    best_value: float

    def __str__(self) -> str:
        return format_table(self.rows)


def format_table(rows: list[dict]) -> str:
    """Rows (dicts with the same keys) as an aligned text table."""
    if not rows:
        return "(no rows)"
    cols = list(rows[0])
    cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def compare(
    X,
    n_components: int,
    *,
    key: PRNGKeyArray,
    methods=("em", "lbfgs", "adam"),
    n_restarts: int = 8,
    cov_type: str = "full",
    init: str = "kmeans++",
    max_iter: int = 500,
    tol: float = 1e-8,
    reg_covar: float = 0.0,
    prior=None,
    sample_weight=None,
    chunk_size: int | None = None,
    mesh=None,
    learning_rates: dict[str, float] | None = None,
    true_params: GMM | None = None,
) -> Comparison:
    """Run each method once from the same initial parameters on the same objective and
    tabulate the outcome.

    Every method starts restart r from `initialize(X, K, key=split(key, R)[r], ...)` and
    maximises the same objective (mean log-likelihood plus log-prior / N with a `prior`); every
    history is that full-data objective, so curves compare step for step.

    Columns of each row:
        method; best_value and median_value (final objective over restarts; the mean
            log-likelihood without a prior);
        iters_to_best and evals_to_best (median over the restarts that get there of the
            iterations / evaluations until the history first comes within 1e-4 of the best
            value any method found; NaN when none does);
        seconds (wall clock of the compiled fit, all restarts) and compile_seconds (its
            ahead-of-time compilation, `jit(...).lower(...).compile()`, timed separately);
        reach_best (fraction of restarts ending within 1e-4 of that best value);
        failed (restarts whose `Status.failed`: non-finite or degenerate iterates);
        param_error (with `true_params`: max abs error of weights and means of the best
            restart after matching components by the Hungarian algorithm, via scipy).

    Args:
        methods: one or more distinct `fit` method names ("em", "lbfgs", "adam", "sgd", ...);
            a single name is a comparison of one.
        learning_rates: per-method learning rates for "adam"/"sgd".
        reg_covar: EM's regulariser and the shared initialisation's. Default 0, so that EM climbs
            exactly the objective the gradient methods climb; with reg_covar > 0 it does not
            (docs/math.md §7). Without a prior that objective is the unbounded log-likelihood,
            so a restart that collapses a component ends DEGENERATE (EM) or climbs without
            bound (gradient methods); pass `prior="mclust"` for a bounded one.
        prior: as in `fit`, forwarded to every method.
        sample_weight: as in `fit`, forwarded to every method.
        chunk_size: as in `fit`, forwarded to every method.
        mesh: as in `fit`, forwarded to every method.

    X must be complete: missing values (NaN) are a ValueError.
    """
    methods = _check_methods(methods)
    X = check_data(X, nan_message=_NO_MISSING)
    for method in methods:  # refuse a bad name or model before anything is compiled
        check_method_supports(resolve_method(method), cov_type)
    unknown = set(learning_rates or {}) - set(methods)
    if unknown:
        raise ValueError(f"learning_rates has methods not in methods: {sorted(unknown)}.")
    keys = jax.random.split(key, n_restarts)
    init_params = initialize(
        X,
        n_components,
        key=keys,
        cov_type=cov_type,
        method=init,
        reg_covar=reg_covar,
        prior=prior,
    )
    learning_rates = learning_rates or {}

    results, seconds, compile_seconds = {}, {}, {}
    for method in methods:
        timing: dict = {}
        results[method] = _fit(
            X,
            n_components,
            key=key,
            method=method,
            timing=timing,
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
            halving_every=None,
            halving_survivors=1,
            learning_rate=learning_rates.get(method),
            grad_tol=None,
            batch_size=None,
        )
        seconds[method] = timing["seconds"]
        compile_seconds[method] = timing["compile_seconds"]

    finals = {m: np.asarray(r.objective) for m, r in results.items()}
    # The best value any method found, at any iterate: a method that oscillates (Adam with a
    # fixed step) can pass a higher value than the one it ends on.
    # Online and incremental EM record a pass's running estimate, not f of an iterate
    # (`history_is_exact`): only their final values count here.
    best = max(
        float(np.max(v[np.isfinite(v)], initial=-np.inf))
        for m, r in results.items()
        for v in (
            (np.asarray(r.objective), np.asarray(r.history))
            if getattr(resolve_method(m), "history_is_exact", True)
            else (np.asarray(r.objective),)
        )
    )
    rows = []
    for method, res in results.items():
        hist, evals = _with_final(res)
        reached = hist >= best - REACH_TOL
        hit = reached.any(axis=1)
        first = reached.argmax(axis=1)
        final = finals[method]
        ok = np.isfinite(final)
        row = {
            "method": method,
            "best_value": float(np.max(final[ok], initial=-np.inf)),
            "median_value": float(np.median(final[ok])) if ok.any() else float("nan"),
            "iters_to_best": float(np.median(first[hit])) if hit.any() else float("nan"),
            "evals_to_best": (
                float(np.median(evals[hit, first[hit]])) if hit.any() else float("nan")
            ),
            "seconds": seconds[method],
            "compile_seconds": compile_seconds[method],
            "reach_best": float(np.mean(final >= best - REACH_TOL)),
            "failed": int(np.sum(np.asarray(failed(res.status)))),
        }
        if true_params is not None:
            row["param_error"] = parameter_error(res.best, true_params)
        rows.append(row)
    return Comparison(
        rows,
        {m: np.asarray(r.history) for m, r in results.items()},
        {m: np.asarray(r.evals) for m, r in results.items()},
        results,
        best,
    )


def _check_methods(methods) -> tuple[str, ...]:
    """The methods to compare as a non-empty tuple of distinct names (a single name is one)."""
    if isinstance(methods, str):
        return (methods,)
    try:
        methods = tuple(methods)
    except TypeError:
        raise TypeError(
            f'methods must be method names such as ("em", "lbfgs"), got {methods!r}.'
        ) from None
    if not methods:
        raise ValueError('methods is empty; pass at least one method name, e.g. ("em", "lbfgs").')
    names = [m for m in methods if isinstance(m, str)]
    repeated = sorted({m for m in names if names.count(m) > 1})
    if repeated:
        raise ValueError(
            f"methods lists {repeated} more than once; each method runs once from the same "
            "starts, so list each once."
        )
    return methods


def _with_final(res: FitResult) -> tuple[np.ndarray, np.ndarray]:
    """History and work with the final value appended at index n_iter (where there is room),
    so that a restart whose last step reaches the best counts as reaching it there."""
    hist = np.concatenate([np.asarray(res.history), np.full((len(res.n_iter), 1), np.nan)], 1)
    evals = np.concatenate([np.asarray(res.evals), np.full_like(hist[:, :1], np.nan)], 1)
    rows = np.arange(len(res.n_iter))
    n_iter = np.asarray(res.n_iter)
    hist[rows, n_iter] = np.asarray(res.objective)
    evals[rows, n_iter] = np.asarray(res.n_evals)
    return hist, evals


def parameter_error(estimate: GMM, truth: GMM) -> float:
    """Max abs error of weights and means after matching components (Hungarian algorithm)."""
    est_m, true_m = np.asarray(estimate.means), np.asarray(truth.means)
    cost = np.sum((est_m[:, None, :] - true_m[None]) ** 2, axis=-1)
    rows, cols = linear_sum_assignment(cost)
    w_err = np.abs(np.asarray(estimate.weights)[rows] - np.asarray(truth.weights)[cols])
    m_err = np.abs(est_m[rows] - true_m[cols])
    return float(max(w_err.max(), m_err.max()))
