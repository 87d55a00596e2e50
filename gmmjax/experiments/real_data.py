"""EM vs gradient methods on bundled real data: Old Faithful, iris, wine, digits (PCA)."""

from __future__ import annotations

from .._datasets import load_dataset
from . import _plots
from ._common import compare_records, draw_gap_curve, method_rows

SCHEMA = {
    "data": {
        "source": "builtin",
        "names": ["faithful", "iris", "wine", "digits"],
        "n_components": {"faithful": 2, "iris": 3, "wine": 3, "digits": 10},
        "standardise": True,
        "digits_pca": 10,
    },
    "fit": {
        "methods": ["em", "lbfgs", "adam"],
        "n_restarts": 8,
        "cov_type": "full",
        "init": "kmeans++",
        "max_iter": 1000,
        "tol": 1e-8,
        "learning_rates": {},
        # "mclust": every method maximises log-likelihood + mclust's default log-prior;
        # "none": the plain log-likelihood (unbounded; EM then adds reg_covar).
        "prior": "mclust",
        "seeds": [0],
    },
    "output": {"figures": ["gap_vs_seconds"]},
}

FIGURES = ("gap_vs_seconds",)
# As in em_vs_gradient. A unit carries its data set and that data set's K, so editing one
# data set's K reruns that data set only.
SWEPT = {"data": ("names", "n_components"), "fit": ("seeds",)}
SUMMARY_ONLY = ("output",)


def plan(config):
    k = config["data"]["n_components"]
    return [
        {"id": f"{name}/seed={s}", "dataset": name, "n_components": k[name], "seed": int(s)}
        for name in config["data"]["names"]
        for s in config["fit"]["seeds"]
    ]


def _data(config, name):
    pca = config["data"]["digits_pca"] if name == "digits" else None
    X, _ = load_dataset(name, pca_components=pca)
    if config["data"]["standardise"]:
        X = (X - X.mean(0)) / X.std(0)
    return X


def execute(config, unit):
    name, k = unit["dataset"], unit["n_components"]
    X = _data(config, name)
    return compare_records(X, k, config["fit"], unit["seed"], {"dataset": name, "n_components": k})


def summarise(config, records):
    return method_rows(records, ("dataset", "n_components"))


def figures(config, records, out):
    if "gap_vs_seconds" not in config["output"]["figures"]:
        return []
    names = list(dict.fromkeys(r["dataset"] for r in records))
    fig, axes = _plots.subplots(len(names))
    for ax, name in zip(axes, names, strict=True):
        for m in dict.fromkeys(r["method"] for r in records):
            rs = [r for r in records if r["dataset"] == name and r["method"] == m]
            draw_gap_curve(ax, rs, m, "seconds")
        ax.set(
            yscale="log", title=name, xlabel="seconds", ylabel="best f − f (objective per sample)"
        )
        ax.set_xlim(left=0)
        _plots.legend(ax, title="restarts in the best basin")
    return [_plots.save(fig, out / "gap_vs_seconds.png")]
