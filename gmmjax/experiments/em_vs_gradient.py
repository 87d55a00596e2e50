"""EM vs L-BFGS vs Adam vs SGD across separations, from the same starts.

Per separation c (Dasgupta), one synthetic data set; every method starts each restart from
the same parameters and climbs the same objective (mean log-likelihood + log-prior / N with
the default prior); histories are that full-data objective, work is counted in evaluations
(line-search ones included) and seconds, and overlap is reported as the normalised entropy of
the responsibilities at the solution.
"""

from __future__ import annotations

import numpy as np

from .._covariance import layout
from .._datasets import make_mixture
from . import _plots
from ._common import compare_records, draw_gap_curve, in_best_basin, method_rows
from ._config import setting_text

SCHEMA = {
    "data": {
        "source": "synthetic",
        "n_components": 3,
        "n_features": 2,
        "n_samples": 2000,
        "separation": [4.0, 2.0, 1.0, 0.5],
        "imbalance": 1.0,
        "eccentricity": 1.0,
        "seed": 0,
    },
    "fit": {
        "methods": ["em", "lbfgs", "adam", "sgd"],
        "n_restarts": 8,
        "cov_type": "full",
        "init": "kmeans++",
        "max_iter": 500,
        "tol": 1e-8,
        "learning_rates": {},
        # "mclust": every method maximises log-likelihood + mclust's default log-prior;
        # "none": the plain log-likelihood (unbounded; EM then adds reg_covar).
        "prior": "mclust",
        "seeds": [0],
    },
    "output": {
        "figures": ["gap_vs_iteration", "gap_vs_seconds", "work_vs_overlap", "ellipses"],
    },
}

FIGURES = ("gap_vs_iteration", "gap_vs_evals", "gap_vs_seconds", "work_vs_overlap", "ellipses")
# Keys each unit takes one value of (it carries that value); every other key of [data] and
# [fit] is shared by all units, and a change to any of them reruns every unit.
SWEPT = {"data": ("separation",), "fit": ("seeds",)}
# Tables that only the summary and figures read: editing them reruns nothing.
SUMMARY_ONLY = ("output",)


def plan(config):
    return [
        {"id": f"c={setting_text(float(c))}/seed={s}", "separation": float(c), "seed": int(s)}
        for c in config["data"]["separation"]
        for s in config["fit"]["seeds"]
    ]


def _data(config, separation):
    d = config["data"]
    return make_mixture(
        n_components=d["n_components"],
        n_features=d["n_features"],
        n_samples=d["n_samples"],
        separation=separation,
        imbalance=d["imbalance"],
        eccentricity=d["eccentricity"],
        seed=d["seed"],
    )


def execute(config, unit):
    X, _, _ = _data(config, unit["separation"])
    return compare_records(
        X,
        config["data"]["n_components"],
        config["fit"],
        unit["seed"],
        {"separation": unit["separation"]},
    )


def summarise(config, records):
    rows = method_rows(records, ("separation",))
    return sorted(rows, key=lambda r: (-r["separation"], r["method"]))


def figures(config, records, out):
    wanted = config["output"]["figures"]
    seps = sorted({r["separation"] for r in records}, reverse=True)
    methods = list(dict.fromkeys(r["method"] for r in records))
    paths = []
    x_axes = {
        "gap_vs_iteration": ("iteration", "iteration"),
        "gap_vs_evals": ("evals", "passes over the data"),
        "gap_vs_seconds": ("seconds", "seconds"),
    }
    for kind, (x_axis, x_label) in x_axes.items():
        if kind not in wanted:
            continue
        fig, axes = _plots.subplots(len(seps))
        for ax, c in zip(axes, seps, strict=True):
            for m in methods:
                rs = [r for r in records if r["separation"] == c and r["method"] == m]
                draw_gap_curve(ax, rs, m, x_axis)
            ent = np.median([r["entropy"] for r in records if r["separation"] == c])
            ax.set(
                yscale="log",
                title=f"c = {setting_text(c)} (entropy {ent:.2f})",
                xlabel=x_label,
                ylabel="best f − f (objective per sample)",
            )
            if kind != "gap_vs_seconds":
                ax.set_xscale("symlog", linthresh=10)
            ax.set_xlim(left=0)
            _plots.legend(ax, title="restarts in the best basin")
        paths.append(_plots.save(fig, out / f"{kind}.png"))
    if "work_vs_overlap" in wanted:
        rows = method_rows(records, ("separation",))
        # One overlap value per setting: the entropy at the best solution (methods that end
        # elsewhere would otherwise each report their own).
        best_basin = in_best_basin(records)
        entropy = {
            c: float(np.median([r["entropy"] for r in best_basin if r["separation"] == c]))
            for c in seps
        }
        fig, axes = _plots.subplots(3)
        for m in methods:
            rs = sorted((r for r in rows if r["method"] == m), key=lambda r: r["separation"])
            style = dict(c=_plots.colour(m), label=m)
            ent = [entropy[r["separation"]] for r in rs]
            axes[0].plot(ent, [r["evals_to_best"] for r in rs], "o-", **style)
            axes[1].plot(
                [r["separation"] for r in rs], [r["iters_to_best"] for r in rs], "o-", **style
            )
            axes[2].plot(ent, [r["seconds_to_best"] for r in rs], "o-", **style)
        axes[0].set(
            xlabel="normalised entropy of responsibilities at the best solution",
            ylabel="passes over the data to within 1e-4 of best (median)",
            yscale="log",
        )
        axes[2].set(
            xlabel="normalised entropy of responsibilities at the best solution",
            ylabel="seconds to within 1e-4 of best (median)",
            yscale="log",
        )
        axes[1].set(
            xlabel="separation c",
            ylabel="iterations to within 1e-4 of best (median)",
            yscale="log",
            xscale="log",
        )
        axes[1].set_xticks(seps, [setting_text(c) for c in seps])
        axes[1].minorticks_off()
        for ax in axes:
            ax.legend(fontsize=8)
        paths.append(_plots.save(fig, out / "work_vs_overlap.png"))
    if "ellipses" in wanted and config["data"]["n_features"] == 2:
        fig, axes = _plots.subplots(len(seps))
        for ax, c in zip(axes, seps, strict=True):
            X, _, truth = _data(config, c)
            ax.scatter(X[:, 0], X[:, 1], s=2, c="0.6", alpha=0.5)
            for k in range(truth.n_components):
                _plots.covariance_ellipse(ax, truth.means[k], truth.covariances[k], c="k", ls=":")
            for m in methods:
                rs = [r for r in records if r["separation"] == c and r["method"] == m]
                best = max(rs, key=lambda r: r["final_ll"])
                for mean, cov in zip(best["means"], _full_covs(best, config), strict=True):
                    _plots.covariance_ellipse(ax, mean, cov, c=_plots.colour(m), lw=1.0)
            ax.set(title=f"c = {setting_text(c)}: truth dotted, best fit per method")
        paths.append(_plots.save(fig, out / "ellipses.png"))
    return paths


def _full_covs(record, config):
    cov = np.asarray(record["covariances"])
    k, d = len(record["means"]), len(record["means"][0])
    kind = layout(config["fit"]["cov_type"])
    if kind == "full":
        return cov
    if kind == "tied":
        return np.broadcast_to(cov, (k, d, d))
    if kind == "diag":
        return np.stack([np.diag(v) for v in cov])
    return cov[:, None, None] * np.eye(d)
