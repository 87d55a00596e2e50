"""What values missing at random cost, and what each way of handling them gets back.

Data: a K-component full-covariance mixture (`make_mixture`), N training rows and as many held
out. Holes: column 0 is always observed (so no row is empty); each other entry is missing with
probability p = rate · D / (D − 1), so that `rate` of all entries are missing:
- "mcar": independently of everything;
- "mar": with probability sigmoid(a + 2 z), z the row's standardised x_0 (observed), a solved so
  that the mean probability is p. Missing at random, not completely at random: complete rows
  are those with small x_0, so deleting incomplete rows biases the fit.

Methods, each fitted with the same restarts, initialisation and tolerance:
- "mar_em": EM on the observed-data likelihood (`missing="em"`);
- "complete_case": EM on the complete rows only (incomplete rows get weight 0, so every unit of
  a given D runs the same compiled program);
- "mean_imputation": EM on the rows with each hole filled by its column's observed mean;
- "complete_data": EM on the rows before the holes were made (the reference).

Reported per unit: parameter errors against the true mixture after matching components
(Hungarian assignment on the distances between means): mean error (RMS over components of
‖μ̂ − μ‖/√D), covariance error (mean relative Frobenius error), weight error (Σ|π̂ − π|); and the
held-out imputation error: RMSE over the held-out rows' holes (same mechanism) of each model's
conditional-mean imputation `gj.impute`, beside imputing the training column means.
"""

from __future__ import annotations

import jax
import numpy as np
from scipy.optimize import brentq, linear_sum_assignment
from scipy.special import expit

from .._datasets import make_mixture
from .._fit import fit_em
from .._missing import impute
from . import _plots

SCHEMA = {
    "data": {
        "source": "synthetic",
        "n_components": 3,
        "n_features": [4, 7, 10],
        "n_samples": 1000,
        "n_test": 1000,
        "separation": 2.0,
        "eccentricity": 3.0,
        "missing_rates": [0.05, 0.1, 0.2, 0.3, 0.4],
        "mechanisms": ["mcar", "mar"],
        "seed": 0,
    },
    "fit": {
        "n_restarts": 4,
        "cov_type": "full",
        "init": "kmeans++",
        "max_iter": 500,
        "tol": 1e-7,
        "seeds": [0, 1],
    },
    "output": {"figures": ["mean_error", "covariance_error", "imputation_error"]},
}

FIGURES = ("mean_error", "covariance_error", "imputation_error")
SWEPT = {"data": ("n_features", "missing_rates", "mechanisms"), "fit": ("seeds",)}
SUMMARY_ONLY = ("output",)

METHODS = ("mar_em", "complete_case", "mean_imputation", "complete_data")
MAR_SLOPE = 2.0


def plan(config):
    d = config["data"]
    return [
        {
            "id": f"D={n_features}/{mechanism}/rate={rate}/seed={seed}",
            "n_features": int(n_features),
            "mechanism": mechanism,
            "rate": float(rate),
            "seed": int(seed),
        }
        for n_features in d["n_features"]
        for mechanism in d["mechanisms"]
        for rate in d["missing_rates"]
        for seed in config["fit"]["seeds"]
    ]


def missing_mask(X: np.ndarray, rate: float, mechanism: str, rng) -> np.ndarray:
    """(N, D) True where a value is to be removed; column 0 never (module docstring)."""
    n, d = X.shape
    p = min(rate * d / (d - 1), 1.0)
    if mechanism == "mcar":
        prob = np.full(n, p)
    else:
        z = (X[:, 0] - X[:, 0].mean()) / X[:, 0].std()
        # The mean of sigmoid(a + slope z) increases with a from 0 to 1: solve for a.
        a = brentq(lambda a: np.mean(expit(a + MAR_SLOPE * z)) - p, -50.0, 50.0, xtol=1e-12)
        prob = expit(a + MAR_SLOPE * z)
    mask = rng.random((n, d)) < prob[:, None]
    mask[:, 0] = False
    return mask


def parameter_errors(gmm, truth) -> dict:
    """Errors of a fitted GMM against the truth after matching components by their means."""
    means, covs, weights = (np.asarray(a) for a in (gmm.means, gmm.covariances, gmm.weights))
    t_means, t_covs = np.asarray(truth.means), np.asarray(truth.covariances)
    cost = np.linalg.norm(means[:, None] - t_means[None], axis=-1)
    rows, cols = linear_sum_assignment(cost)
    d = means.shape[1]
    return {
        "mean_error": float(np.sqrt(np.mean(cost[rows, cols] ** 2) / d)),
        "cov_error": float(
            np.mean(
                np.linalg.norm(covs[rows] - t_covs[cols], axis=(1, 2))
                / np.linalg.norm(t_covs[cols], axis=(1, 2))
            )
        ),
        "weight_error": float(np.sum(np.abs(weights[rows] - np.asarray(truth.weights)[cols]))),
    }


def execute(config, unit):
    d, f = config["data"], config["fit"]
    n, n_test, k = d["n_samples"], d["n_test"], d["n_components"]
    n_features, seed = unit["n_features"], unit["seed"]
    # The data depend on D and the replicate seed; the holes also on the mechanism and rate.
    data_seed = d["seed"] + 1000 * seed + n_features
    X_all, _, truth = make_mixture(
        n_components=k,
        n_features=n_features,
        n_samples=n + n_test,
        separation=d["separation"],
        eccentricity=d["eccentricity"],
        seed=data_seed,
    )
    X_all = np.asarray(X_all, dtype=np.float64)
    rng = np.random.default_rng(
        [data_seed, round(1000 * unit["rate"]), int(unit["mechanism"] == "mar")]
    )
    holes = missing_mask(X_all, unit["rate"], unit["mechanism"], rng)
    X, X_test = X_all[:n], X_all[n:]
    train_holes, test_holes = holes[:n], holes[n:]
    X_nan = np.where(train_holes, np.nan, X)
    X_test_nan = np.where(test_holes, np.nan, X_test)
    column_means = np.nanmean(X_nan, axis=0)
    complete = ~train_holes.any(axis=1)
    fits = {
        "mar_em": dict(X=X_nan, missing="em"),
        "complete_case": dict(X=np.where(train_holes, 0.0, X), sample_weight=complete * 1.0),
        "mean_imputation": dict(X=np.where(train_holes, column_means, X)),
        "complete_data": dict(X=X),
    }
    setting = {
        "n_features": n_features,
        "mechanism": unit["mechanism"],
        "rate": unit["rate"],
        "seed": seed,
        "missing_fraction": float(train_holes.mean()),
        "complete_rows": int(complete.sum()),
    }
    held_out = test_holes.sum()
    baseline = float(np.sqrt(np.sum(((column_means - X_test) * test_holes) ** 2) / held_out))
    records = []
    for method in METHODS:
        kwargs = dict(fits[method])
        record = {**setting, "method": method, "column_mean_rmse": baseline}
        try:
            res = fit_em(
                kwargs.pop("X"),
                k,
                key=jax.random.key(seed),
                n_restarts=f["n_restarts"],
                cov_type=f["cov_type"],
                init=f["init"],
                max_iter=f["max_iter"],
                tol=f["tol"],
                **kwargs,
            )
        except ValueError as err:  # e.g. fewer complete rows than components
            records.append({**record, "error": str(err), "status": -1})
            continue
        filled = np.asarray(impute(res.best, X_test_nan))
        record.update(parameter_errors(res.best, truth))
        record["impute_rmse"] = float(
            np.sqrt(np.sum(((filled - X_test) * test_holes) ** 2) / held_out)
        )
        record["status"] = int(res.status[int(res.best_index)])
        record["n_iter"] = int(res.n_iter[int(res.best_index)])
        records.append(record)
    return records


METRICS = ("mean_error", "cov_error", "weight_error", "impute_rmse", "column_mean_rmse")


def summarise(config, records):
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        key = (r["n_features"], r["mechanism"], r["rate"], r["method"])
        groups.setdefault(key, []).append(r)
    rows = []
    for (n_features, mechanism, rate, method), rs in groups.items():
        ok = [r for r in rs if r["status"] >= 0]
        row = {
            "n_features": n_features,
            "mechanism": mechanism,
            "rate": rate,
            "method": method,
            "runs": len(rs),
            "fitted": len(ok),
            "complete_rows": float(np.median([r["complete_rows"] for r in rs])),
        }
        for m in METRICS:
            row[m] = float(np.median([r[m] for r in ok])) if ok else float("nan")
        rows.append(row)
    return rows


def _panels(config, rows, metric, ylabel, out, name, baseline=None):
    d = config["data"]
    panels = [(m, n_features) for m in d["mechanisms"] for n_features in d["n_features"]]
    fig, axes = _plots.subplots(len(panels))
    for ax, (mechanism, n_features) in zip(axes, panels, strict=True):
        sel = [r for r in rows if r["mechanism"] == mechanism and r["n_features"] == n_features]
        for method in METHODS:
            rs = sorted((r for r in sel if r["method"] == method), key=lambda r: r["rate"])
            ax.plot([r["rate"] for r in rs], [r[metric] for r in rs], "o-", label=method)
        if baseline:
            rs = sorted((r for r in sel if r["method"] == METHODS[0]), key=lambda r: r["rate"])
            ax.plot([r["rate"] for r in rs], [r[baseline] for r in rs], "k:", label="column mean")
        ax.set(
            title=f"{mechanism.upper()}, D = {n_features}",
            xlabel="fraction of entries missing",
            ylabel=ylabel,
            yscale="log",
        )
        _plots.legend(ax)
    return _plots.save(fig, out / f"{name}.png")


# Figure name -> (summary column, axis label, baseline column drawn beside the methods).
_FIGURE_METRICS = {
    "mean_error": ("mean_error", "mean error (RMS per coordinate)", None),
    "covariance_error": ("cov_error", "covariance error (relative Frobenius)", None),
    "imputation_error": ("impute_rmse", "held-out imputation RMSE", "column_mean_rmse"),
}


def figures(config, records, out):
    rows = summarise(config, records)
    return [
        _panels(config, rows, *_FIGURE_METRICS[name][:2], out, name, _FIGURE_METRICS[name][2])
        for name in FIGURES
        if name in config["output"]["figures"]
    ]
