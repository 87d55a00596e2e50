"""mclust's fourteen models against R mclust 6.0.0 (tests/fixtures/mclust_models.json, made by
tests/fixtures/mclust_models.R; R is not needed here): parameter counts, the density and BIC at
mclust's own parameters, and fitted log-likelihoods at least mclust's."""

import csv
import json
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

import gmmjax as gj
from gmmjax._covariance import layout, n_covariance_parameters

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "mclust_models.json").read_text())
ROWS = [r for r in FIXTURE["rows"] if not r["prior"]]
# mclust's icl() of the same fits (tests/fixtures/mclust_icl.R), keyed by (dataset, model, G).
ICL = {
    (r["dataset"], r["model"], int(r["G"])): r
    for r in csv.DictReader(
        (Path(__file__).parent / "fixtures" / "mclust_icl.csv").read_text().splitlines()
    )
    if r["prior"] == "false"
}


def data(name):
    return np.asarray(gj.load_dataset(name)[0], np.float64)


def mclust_gmm(row):
    """The GMM mclust fitted, in gmmjax's layout for the model."""
    sigma = np.asarray(row["sigma"], np.float64)
    kind = layout(row["model"])
    cov = {
        "full": sigma,
        "tied": sigma[0],
        "diag": np.diagonal(sigma, axis1=1, axis2=2),
        "spherical": sigma[:, 0, 0],
    }[kind]
    return gj.GMM(np.asarray(row["pro"]), np.asarray(row["mean"]), cov, cov_type=row["model"])


def test_parameter_counts_equal_mclust():
    """nMclustParams for every model, G = 1..6, D = 2, 4, 13: K − 1 + K D plus the
    covariance count."""
    for row in FIXTURE["rows"]:
        k, d = row["G"], row["d"]
        ours = k - 1 + k * d + n_covariance_parameters(row["model"], k, d)
        assert ours == row["npar"], (row["model"], k, d)


@pytest.mark.parametrize(
    "dataset", ["faithful", "iris", pytest.param("wine", marks=pytest.mark.slow)]
)
def test_density_and_bic_at_mclust_parameters(dataset):
    """At mclust's fitted parameters gmmjax's log-likelihood equals mclust's and its BIC and
    ICL are mclust's with the sign flipped: for each model, its smallest G >= 2 fitted
    without mclust's final extra M-step (after which the reported log-likelihood and
    responsibilities belong to the previous parameters), or G = 1."""
    X = data(dataset)
    checked = set()
    for row in sorted(ROWS, key=lambda r: (r["G"] == 1, r["G"])):  # G >= 2 first
        usable = row["loglik"] is not None and not row["extra_mstep"]
        if row["dataset"] != dataset or not usable or row["model"] in checked:
            continue
        gmm = mclust_gmm(row)
        ll = float(gj.log_likelihood(gmm, X))  # the sum over rows
        assert ll == pytest.approx(row["loglik"], rel=1e-9, abs=1e-8), (row["model"], row["G"])
        assert float(gj.bic(gmm, X)) == pytest.approx(-row["bic"], rel=1e-9)
        ref = ICL[(dataset, row["model"], row["G"])]
        assert float(ref["loglik"]) == pytest.approx(row["loglik"], rel=1e-14)  # the same fit
        assert float(gj.icl(gmm, X)) == pytest.approx(-float(ref["icl"]), rel=1e-9)
        checked.add(row["model"])
    assert len(checked) == 14, checked


def grid_against_mclust(dataset, n_restarts):
    """select over all 14 models x G = 1..6 without a prior: (ours by cell, mclust rows)."""
    X = data(dataset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # cells where every restart collapsed
        sel = gj.select(
            X,
            range(1, 7),
            cov_types="all",
            n_restarts=n_restarts,
            key=jax.random.key(0),
            reg_covar=0.0,
            tol=1e-8,
            max_iter=1000,
        )
    ours = {(r["cov_type"], r["n_components"]): r for r in sel.rows}
    return X.shape[0], sel, ours


def from_mclust_start(X, row, prior=None):
    """(MAP-)EM for one cell from mclust's own initial partition (its hierarchical
    clustering): the fitted GMM."""
    z = np.eye(row["G"])[np.asarray(row["init_class"]) - 1]
    start = gj.m_step(X, z, cov_type=row["model"], reg_covar=0.0, prior=prior)
    res = gj.fit_em(
        X, row["G"], key=jax.random.key(0), cov_type=row["model"], init_params=start,
        reg_covar=0.0, tol=1e-10, max_iter=3000, prior=prior,
    )  # fmt: skip
    return res.best


def check_grid(dataset, n_restarts):
    """Every cell mclust fitted: gmmjax's best of `n_restarts` k-means++ starts, or where that
    is lower (another local optimum), EM from mclust's own start, reaches mclust's
    log-likelihood less mclust's relative tolerance 1e-5; the BIC-best cell is mclust's, or
    one where gmmjax found a higher optimum than mclust and so a better BIC than mclust's best.
    Returns the cells where gmmjax's grid found a higher optimum (and by how much), and its
    pick."""
    jax.clear_caches()  # 14 programs per data set, and one per refitted cell
    n, sel, ours = grid_against_mclust(dataset, n_restarts)
    X = data(dataset)
    higher = {}
    for row in ROWS:
        if row["dataset"] != dataset or row["loglik"] is None:
            continue
        cell = ours[(row["model"], row["G"])]
        assert cell["n_parameters"] == row["npar"]
        floor = row["loglik"] - 1e-5 * abs(row["loglik"])
        ll = cell["log_likelihood"] * n
        if not ll >= floor:
            ll = float(gj.log_likelihood(from_mclust_start(X, row), X))
        assert ll >= floor, (row["model"], row["G"], ll, row["loglik"])
        if ll > row["loglik"] + 1e-5 * abs(row["loglik"]):
            higher[(row["model"], row["G"])] = ll - row["loglik"]
    pick = check_pick(sel, ours, ROWS, dataset, prior=False)
    return higher, pick


def check_pick(sel, ours, rows, dataset, *, prior):
    """The grid's BIC-best cell is mclust's, or one where gmmjax found a higher optimum than
    mclust did in that cell and whose BIC beats mclust's best (gmmjax's BIC is the negative
    of mclust's). Returns the pick."""
    best = next(b for b in FIXTURE["best"] if b["dataset"] == dataset and b["prior"] == prior)
    pick = (sel.cov_type, sel.n_components)
    if pick != (best["model"], best["G"]):
        mine = ours[pick]
        theirs = next(r for r in rows if r["dataset"] == dataset and (r["model"], r["G"]) == pick)
        n = theirs["n"]
        assert mine["log_likelihood"] * n > theirs["loglik"] + 1e-5 * abs(theirs["loglik"])
        assert mine["bic"] < -best["bic"], (pick, mine["bic"], best)
    return pick


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["faithful", "iris", "wine"])
def test_grid_reaches_mclust_and_picks_its_model(dataset):
    higher, pick = check_grid(dataset, n_restarts=8)
    print(dataset, "pick", pick, "cells above mclust:", {k: round(v, 4) for k, v in higher.items()})
