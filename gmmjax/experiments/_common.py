"""What the EM-vs-gradient studies share: one `compare` call turned into run records, and the
summary rows and curves built from them."""

from __future__ import annotations

import jax
import numpy as np

from .._compare import REACH_TOL, compare
from .._datasets import normalised_entropy
from .._em import e_step
from .._solver import Status
from . import _plots
from ._config import prior_option


def compare_records(X, n_components: int, fit: dict, seed: int, setting: dict) -> list[dict]:
    """Run `compare` from the same starts for every method; one record per (method, restart)."""
    c = compare(
        X,
        n_components,
        key=jax.random.key(seed),
        methods=tuple(fit["methods"]),
        n_restarts=fit["n_restarts"],
        cov_type=fit["cov_type"],
        init=fit["init"],
        max_iter=fit["max_iter"],
        tol=fit["tol"],
        learning_rates=fit["learning_rates"],
        prior=prior_option(fit),
    )
    rows = {r["method"]: r for r in c.rows}
    records = []
    for method, res in c.results.items():
        resp = jax.vmap(lambda g: e_step(g, X)[0])(res.params)
        # The vmapped batch runs until its slowest restart: a restart's seconds per evaluation
        # is the batch's seconds over the most evaluations any restart of the batch made.
        sec_per_eval = rows[method]["seconds"] / max(float(np.max(res.n_evals)), 1.0)
        for r in range(fit["n_restarts"]):
            n = int(res.n_iter[r])
            params = res.params[r]
            records.append(
                {
                    **setting,
                    "method": method,
                    "restart": r,
                    "seed": seed,
                    # "ll" fields hold the objective every method climbed: the mean
                    # log-likelihood plus log-prior / N (the log-likelihood without a prior).
                    "final_ll": float(res.objective[r]),
                    "final_loglik": float(res.log_likelihood[r]),
                    "best_ll_any": c.best_value,
                    "n_iter": n,
                    "n_evals": float(res.n_evals[r]),
                    "status": int(res.status[r]),
                    "seconds": rows[method]["seconds"],
                    "compile_seconds": rows[method]["compile_seconds"],
                    "seconds_per_eval": sec_per_eval,
                    "entropy": normalised_entropy(np.asarray(resp[r])),
                    "history": np.asarray(res.history[r, :n]).tolist(),
                    "evals": np.asarray(res.evals[r, :n]).tolist(),
                    "means": np.asarray(params.means).tolist(),
                    "covariances": np.asarray(params.covariances).tolist(),
                    "weights": np.asarray(params.weights).tolist(),
                }
            )
    return records


def in_best_basin(records: list[dict]) -> list[dict]:
    """The records whose run ended within REACH_TOL of the best value any method found: speed
    curves are drawn over these only (other restarts ended at another optimum)."""
    return [r for r in records if r["final_ll"] >= r["best_ll_any"] - REACH_TOL]


def reach_index(record: dict) -> int | None:
    """First iteration within REACH_TOL of the best value found on the record's data, or None."""
    h = np.asarray(record["history"], float)
    hit = np.nonzero(h >= record["best_ll_any"] - REACH_TOL)[0]
    return int(hit[0]) if len(hit) else None


def method_rows(records: list[dict], keys: tuple[str, ...]) -> list[dict]:
    """Summary rows per (setting keys..., method).

    Speed is compared per basin: iterations / evaluations / seconds to come within REACH_TOL of
    the best value any method found, over the restarts that end there (others are counted in
    `reach_best` but not timed).
    """
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault(tuple(r[k] for k in keys) + (r["method"],), []).append(r)
    rows = []
    for group_key, rs in groups.items():
        final = np.array([r["final_ll"] for r in rs])
        reached = in_best_basin(rs)
        idx = [reach_index(r) for r in reached]
        hits = [(r, i) for r, i in zip(reached, idx, strict=True) if i is not None]
        its = [i for _, i in hits]
        evs = [r["evals"][i] for r, i in hits]
        secs = [r["evals"][i] * r["seconds_per_eval"] for r, i in hits]
        row = dict(zip(keys, group_key[:-1], strict=True))
        row.update(
            {
                "method": group_key[-1],
                "entropy": float(np.median([r["entropy"] for r in rs])),
                "best_ll": float(np.max(final)),
                "median_ll": float(np.median(final)),
                "reach_best": len(reached) / len(rs),
                "iters_to_best": float(np.median(its)) if its else float("nan"),
                "evals_to_best": float(np.median(evs)) if evs else float("nan"),
                "seconds_to_best": float(np.median(secs)) if secs else float("nan"),
                "seconds_all_restarts": float(np.median([r["seconds"] for r in rs])),
                "compile_seconds": float(np.median([r["compile_seconds"] for r in rs])),
                "failed": sum(Status(r["status"]).failed for r in rs),
            }
        )
        rows.append(row)
    return rows


def draw_gap_curve(ax, records: list[dict], method: str, x_axis: str) -> None:
    """Median and IQR of (best ℓ/N − ℓ/N) against iterations, passes over the data or seconds
    for one method's restarts of one setting, over the restarts that end in the best basin
    (the legend says how many); x_axis is "iteration", "evals" or "seconds"."""
    total = len(records)
    records = in_best_basin(records)
    if not records:
        return
    length = max(len(r["history"]) for r in records)
    gap = _plots.gap_floor(
        np.array([[r["best_ll_any"]] for r in records])
        - _plots.padded([r["history"] for r in records], length)
    )
    if x_axis == "iteration":
        x = np.arange(length)
    else:
        evals = _plots.padded([r["evals"] for r in records], length)
        if x_axis == "seconds":
            evals = evals * np.array([[r["seconds_per_eval"]] for r in records])
        x = np.nanmedian(evals, 0)
    label = f"{method} ({len(records)}/{total})"
    _plots.band(ax, x, gap, label=label, c=_plots.colour(method))
