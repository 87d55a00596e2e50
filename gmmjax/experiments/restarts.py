"""How often does one randomly initialised EM run reach the best optimum, as K grows, and how
does the best of R restarts improve with R? (Jin et al. 2016: bad local maxima are common.)"""

from __future__ import annotations

from math import comb

import jax
import numpy as np

from .._datasets import make_mixture
from .._fit import fit_em
from .._solver import Status
from . import _plots
from ._config import prior_option

SCHEMA = {
    "data": {
        "source": "synthetic",
        "n_components": [2, 4, 8, 12],
        "n_features": 2,
        "n_samples": 3000,
        "separation": 2.0,
        "imbalance": 1.0,
        "eccentricity": 1.0,
        "seed": 0,
    },
    "fit": {
        "n_restarts": 64,
        "cov_type": "full",
        "init": "random_from_data",
        "max_iter": 500,
        "tol": 1e-7,
        "prior": "mclust",  # or "none": see em_vs_gradient
        "seeds": [0],
    },
    "options": {"success_tol": 1e-3, "best_of": [1, 2, 4, 8, 16, 32, 64]},
    "output": {"figures": ["success_vs_k", "best_of_r"]},
}

FIGURES = ("success_vs_k", "best_of_r")
# As in em_vs_gradient; [options] (success_tol, best_of) is read by the summary only.
SWEPT = {"data": ("n_components",), "fit": ("seeds",)}
SUMMARY_ONLY = ("options", "output")


def plan(config):
    return [
        {"id": f"K={k}/seed={s}", "n_components": int(k), "seed": int(s)}
        for k in config["data"]["n_components"]
        for s in config["fit"]["seeds"]
    ]


def execute(config, unit):
    d, f = config["data"], config["fit"]
    k = unit["n_components"]
    X, _, truth = make_mixture(
        n_components=k,
        n_features=d["n_features"],
        n_samples=d["n_samples"],
        separation=d["separation"],
        imbalance=d["imbalance"],
        eccentricity=d["eccentricity"],
        seed=d["seed"] + k,
    )
    res = fit_em(
        X,
        k,
        key=jax.random.key(unit["seed"]),
        cov_type=f["cov_type"],
        n_restarts=f["n_restarts"],
        init=f["init"],
        max_iter=f["max_iter"],
        tol=f["tol"],
        prior=prior_option(f),
    )
    # The reference optimum: the best of these restarts and of a fit started at the truth.
    from_truth = fit_em(
        X,
        k,
        key=jax.random.key(0),
        init_params=truth,
        max_iter=f["max_iter"],
        tol=f["tol"],
        prior=prior_option(f),
    )
    ll = np.asarray(res.objective)
    best = float(max(np.nanmax(ll), float(from_truth.objective[0])))
    return [
        {
            "n_components": k,
            "seed": unit["seed"],
            "restart": r,
            "final_ll": float(ll[r]),
            "best_ll": best,
            "n_iter": int(res.n_iter[r]),
            "status": int(res.status[r]),
        }
        for r in range(len(ll))
    ]


def _success(rs, tol):
    return np.array([r["final_ll"] >= r["best_ll"] - tol for r in rs])


def best_of_r(successes: int, total: int, r: int) -> float:
    """P(at least one success among r restarts drawn without replacement from `total` runs of
    which `successes` succeeded): 1 − C(total − successes, r) / C(total, r)."""
    return 1.0 - comb(total - successes, r) / comb(total, r)


def summarise(config, records):
    tol = config["options"]["success_tol"]
    rows = []
    for k in sorted({r["n_components"] for r in records}):
        rs = [r for r in records if r["n_components"] == k]
        ok = _success(rs, tol)
        row = {
            "n_components": k,
            "restarts": len(rs),
            "p_single": float(ok.mean()),
            "median_iters": float(np.median([r["n_iter"] for r in rs])),
            "failed": sum(Status(r["status"]).failed for r in rs),
        }
        for r_ in config["options"]["best_of"]:
            if r_ <= len(rs):
                row[f"p_best_of_{r_}"] = best_of_r(int(ok.sum()), len(rs), r_)
        rows.append(row)
    return rows


def figures(config, records, out):
    rows = summarise(config, records)
    paths = []
    if "success_vs_k" in config["output"]["figures"]:
        fig, (ax,) = _plots.subplots(1)
        ax.plot([r["n_components"] for r in rows], [r["p_single"] for r in rows], "o-")
        ax.set(xlabel="K", ylabel="P(one random start reaches the best)", ylim=(-0.02, 1.02))
        paths.append(_plots.save(fig, out / "success_vs_k.png"))
    if "best_of_r" in config["output"]["figures"]:
        fig, (ax,) = _plots.subplots(1)
        for r in rows:
            rs = [x for x in config["options"]["best_of"] if f"p_best_of_{x}" in r]
            ax.plot(rs, [r[f"p_best_of_{x}"] for x in rs], "o-", label=f"K={r['n_components']}")
        ax.set(
            xscale="log",
            xlabel="restarts R",
            ylabel="P(best of R reaches the best)",
            ylim=(-0.02, 1.02),
        )
        ax.legend(fontsize=8)
        paths.append(_plots.save(fig, out / "best_of_r.png"))
    return paths
