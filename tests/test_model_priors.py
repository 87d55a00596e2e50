"""Priors for mclust's fourteen models (docs/math.md §11): mclust's default hyperparameters,
the MAP M-step as the maximiser of Q + log p within each model, monotone MAP-EM that keeps the
structure, and MAP-EM against R mclust 6.0.0 from mclust's own starts
(tests/fixtures/mclust_models.json, made by tests/fixtures/mclust_models.R)."""

import warnings

import jax
import numpy as np
import pytest
from test_covariance_models import (
    IRIS,
    as_full,
    assert_monotone_and_structured,
    perturbed,
    structure_violation,
)
from test_mclust_models import FIXTURE, check_pick, data, from_mclust_start, mclust_gmm
from test_prior import _em_steps

import gmmjax as gj
from gmmjax import _covariance
from gmmjax._covariance import ITERATIVE, MODELS, layout
from gmmjax._em import q_function

# The ten models mclust fits with a prior (mclustBIC drops EVE, VEE, VVE and EVV).
MCLUST_PRIOR_MODELS = ("EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "EEV", "VEV", "VVV")
PRIOR_ROWS = [r for r in FIXTURE["rows"] if r["prior"] and r["loglik"] is not None]


@pytest.mark.parametrize("dataset", ["faithful", "iris", "wine"])
def test_default_prior_is_mclusts_for_every_model(dataset):
    """`Prior.mclust` equals `defaultPrior(X, G, model)` for all fourteen models, G = 1..6."""
    X = data(dataset)
    refs = [p for p in FIXTURE["priors"] if p["dataset"] == dataset]
    assert len(refs) == 14 * 6
    for ref in refs:
        prior = gj.Prior.mclust(X, ref["G"], ref["model"])
        np.testing.assert_allclose(prior.mean, ref["mean"], rtol=1e-13)
        assert float(prior.dof) == ref["dof"] and float(prior.shrinkage) == ref["shrinkage"]
        scale = np.asarray(prior.scale)
        if layout(ref["model"]) == "diag":  # mclust's scalar, on every coordinate
            assert np.all(scale == scale[0])
            scale = scale[0]
        np.testing.assert_allclose(scale, ref["scale"], rtol=1e-12)


def to_layout(full, model):
    return {
        "full": full,
        "tied": full[0],
        "diag": np.diagonal(full, axis1=1, axis2=2),
        "spherical": full[:, 0, 0],
    }[layout(model)]


def strong_prior(X, k, model):
    """A prior whose terms all bite: κ = 2, a mean away from the data's, distinct ς²_j."""
    d = X.shape[1]
    rng = np.random.default_rng(7)
    a = rng.normal(size=(d, d))
    scale = {
        "full": a @ a.T + d * np.eye(d),
        "tied": a @ a.T + d * np.eye(d),
        "diag": rng.uniform(0.5, 3.0, size=d),
        "spherical": 1.7,
    }[layout(model)]
    return gj.Prior(X.mean(0) + 1.0, scale, d + 2.0, cov_type=model, shrinkage=2.0)


@pytest.mark.parametrize("model", MODELS)
def test_map_m_step_maximises_q_plus_log_prior(model, monkeypatch):
    """The MAP M-step maximises Q(θ) + log p(θ) (`Prior.log_prob`, which for mclust's other
    models is the penalty of its pseudo-observations): moving the means, or the volumes,
    shapes and orientations the model leaves free, does not raise it."""
    monkeypatch.setattr(_covariance, "INNER_MAX_ITER", 10_000)
    rng = np.random.default_rng(0)
    k, d, n = 3, 3, 40
    X = rng.normal(size=(n, d)) * np.array([1.0, 2.0, 0.5]) + 3.0
    resp = rng.dirichlet(np.ones(k), size=n)
    prior = strong_prior(X, k, model)
    best = gj.m_step(X, resp, cov_type=model, reg_covar=0.0, prior=prior)
    full = as_full(best.covariances, model, k, d)
    assert structure_violation(model, full) < 1e-10

    def value(gmm):
        return float(q_function(gmm, X, resp) + prior.log_prob(gmm))

    top = value(best)
    for eps in (1e-2, 1e-4):
        for _ in range(10):
            cov = to_layout(perturbed(model, full, rng, eps), model)
            means = np.asarray(best.means) + eps * rng.normal(size=(k, d))
            for moved in (
                gj.GMM(best.weights, best.means, cov, cov_type=model),
                gj.GMM(best.weights, means, best.covariances, cov_type=model),
            ):
                assert value(moved) - top < 1e-10 * abs(top), (model, eps, value(moved) - top)


@pytest.mark.parametrize("model", MODELS)
def test_one_component_prior_is_the_layouts(model):
    """With one component every model is its layout's unconstrained one, and so is its prior
    (mclust fits XII, XXI, XXX there): the MAP M-step equals VII's, VVI's or VVV's."""
    X = IRIS[:, :3]
    resp = np.ones((X.shape[0], 1))
    plain = {"spherical": "VII", "diag": "VVI", "full": "VVV", "tied": "VVV"}[layout(model)]
    ours = gj.m_step(X, resp, cov_type=model, reg_covar=0.0, prior=gj.Prior.mclust(X, 1, model))
    ref = gj.m_step(X, resp, cov_type=plain, reg_covar=0.0, prior=gj.Prior.mclust(X, 1, plain))
    np.testing.assert_allclose(
        as_full(ours.covariances, model, 1, 3), as_full(ref.covariances, plain, 1, 3), rtol=1e-12
    )
    np.testing.assert_allclose(ours.means, ref.means, rtol=1e-14)


@pytest.fixture(scope="module")
def iris_map_fits():
    """MAP-EM with mclust's prior, iris K = 3, 4 restarts, for the ten models beyond
    scikit-learn's four (whose MAP-EM tests/test_prior.py covers)."""
    models = [m for m in MODELS if m not in _covariance.ALIASES.values()]
    return {
        m: gj.fit_em(
            IRIS,
            3,
            key=jax.random.key(1),
            cov_type=m,
            prior="mclust",
            n_restarts=4,
            max_iter=1000,
            tol=1e-9,
        )  # fmt: skip
        for m in models
    }


@pytest.mark.parametrize("model", [m for m in MODELS if m not in _covariance.ALIASES.values()])
def test_map_em_is_monotone_and_keeps_the_structure(iris_map_fits, model):
    assert_monotone_and_structured(iris_map_fits[model], model)


def _replay_id(row):
    return f"{row['dataset']}-{row['model']}-G{row['G']}"


REPLAY = [
    pytest.param(
        r,
        marks=() if (r["dataset"], r["G"]) == ("iris", 3) else pytest.mark.slow,
        id=_replay_id(r),
    )
    for r in PRIOR_ROWS
    if r["G"] > 1
]


@pytest.mark.parametrize("row", REPLAY)
def test_map_em_replicates_mclust_from_its_start(row):
    """From mclust's own starting partition, mclust's number of MAP-EM steps lands on its
    fit: the log-likelihood to 1e-10 (1e-8 for VEI and VEV, whose inner loops stop at a
    tolerance) and, where mclust kept EM's parameters (no closing M-step), the parameters
    to 1e-7. EEI, where mclust leaves the means unshrunk, agrees to 5e-5."""
    X = data(row["dataset"])
    model, g = row["model"], row["G"]
    prior = gj.Prior.mclust(X, g, model)
    z = np.eye(g)[np.asarray(row["init_class"]) - 1]
    start = gj.m_step(X, z, cov_type=model, reg_covar=0.0, prior=prior)
    # mclust loops M-step, E-step: its log-likelihood is at our start plus iterations − 1 EM
    # steps (its closing M-step, where it ran one, came after).
    fitted = _em_steps(start, X, prior, row["iterations"] - 1)
    loglik = float(gj.log_likelihood(fitted, X))
    rel = 5e-5 if model == "EEI" else 1e-8 if model in ITERATIVE else 1e-10
    assert loglik == pytest.approx(row["loglik"], rel=rel)
    if not row["extra_mstep"] and model != "EEI":
        ref = mclust_gmm(row)
        np.testing.assert_allclose(fitted.weights, ref.weights, rtol=1e-7, atol=1e-12)
        np.testing.assert_allclose(fitted.means, ref.means, rtol=1e-7)
        np.testing.assert_allclose(fitted.covariances, ref.covariances, rtol=1e-7)


def check_prior_grid(dataset, n_restarts=8):
    """select over mclust's ten prior models x G = 1..6 with prior="mclust": in every cell the
    penalised objective reaches that of mclust's fit (under gmmjax's log p; from mclust's
    own start where the restarts found another optimum), and the BIC-best cell is mclust's
    or one where gmmjax found a higher optimum whose BIC beats mclust's best. Returns the
    cells where gmmjax's log-posterior is higher than at mclust's fit (by how much, in
    log-likelihood units), and the pick."""
    jax.clear_caches()
    X = data(dataset)
    n = X.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sel = gj.select(
            X, range(1, 7), cov_types=MCLUST_PRIOR_MODELS, n_restarts=n_restarts,
            key=jax.random.key(0), prior="mclust", tol=1e-9, max_iter=1000,
        )  # fmt: skip
    ours = {(r["cov_type"], r["n_components"]): r for r in sel.rows}
    higher = {}
    for row in PRIOR_ROWS:
        if row["dataset"] != dataset:
            continue
        cell = ours[(row["model"], row["G"])]
        assert cell["n_parameters"] == row["npar"]
        prior = gj.Prior.mclust(X, row["G"], row["model"])
        theirs = float(gj.objective(mclust_gmm(row), X, prior=prior))
        floor = theirs - 1e-5 * abs(theirs)
        mine = cell["objective"]
        if not mine >= floor:
            start_fit = from_mclust_start(X, row, prior=prior)
            mine = float(gj.objective(start_fit, X, prior=prior))
        assert mine >= floor, (row["model"], row["G"], mine, theirs)
        if cell["objective"] > theirs + 1e-5 * abs(theirs):
            higher[(row["model"], row["G"])] = (cell["objective"] - theirs) * n
    pick = check_pick(sel, ours, PRIOR_ROWS, dataset, prior=True)
    return higher, pick


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["faithful", "iris", "wine"])
def test_prior_grid_reaches_mclust_and_picks_its_model(dataset):
    higher, pick = check_prior_grid(dataset)
    print(dataset, "pick", pick, "cells above mclust:", {k: round(v, 4) for k, v in higher.items()})
