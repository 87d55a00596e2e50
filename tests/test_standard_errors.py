"""Standard errors (Hessian, Louis, OPG, bootstrap) against each other, closed forms and R
mclust's MclustBootstrap (tests/fixtures/mclust_bootstrap.json, made by
tests/fixtures/mclust_bootstrap.R; R is not needed here)."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

import gmmjax as gj
from gmmjax._bootstrap import match_components
from gmmjax._free_parameters import to_natural

BOOT = json.loads((Path(__file__).parent / "fixtures" / "mclust_bootstrap.json").read_text())
TRUE = gj.GMM(
    np.array([0.4, 0.6]),
    np.array([[0.0, 0.0], [3.0, 1.0]]),
    np.array([[[1.0, 0.3], [0.3, 1.0]], [[0.5, 0.0], [0.0, 2.0]]]),
    "full",
)


def fitted(X, k, cov_type="full", prior=None, start=None):
    res = gj.fit_em(
        X, k, key=jax.random.key(1), cov_type=cov_type, prior=prior, tol=1e-13, max_iter=3000,
        reg_covar=0.0, n_restarts=4 if start is None else 1, init_params=start,
    )  # fmt: skip
    return res.best


@pytest.fixture(scope="module")
def simulated():
    """N = 10^4 rows from TRUE (well specified), fitted to convergence."""
    X, _ = gj.sample(TRUE, 10_000, key=jax.random.key(0))
    X = np.asarray(X)
    return X, fitted(X, 2, start=TRUE)


@pytest.mark.parametrize(
    "cov_type",
    ["full", pytest.param("tied", marks=pytest.mark.slow),
     pytest.param("diag", marks=pytest.mark.slow), "spherical"],
)  # fmt: skip
def test_louis_equals_the_hessian(cov_type):
    """Louis's identity is exact: the complete-data information less the missing information
    is the observed information, so the two routes agree to rounding (also with a prior)."""
    X, _ = gj.sample(TRUE, 600, key=jax.random.key(2))
    for prior in (None, "mclust"):
        gmm = fitted(X, 2, cov_type, prior=prior)
        h = gj.standard_errors(gmm, X, method="hessian", prior=prior)
        lo = gj.standard_errors(gmm, X, method="louis", prior=prior)
        np.testing.assert_allclose(lo.std_error, h.std_error, rtol=1e-7)
        np.testing.assert_allclose(lo.covariance, h.covariance, rtol=1e-6, atol=1e-14)


def test_one_gaussian_has_the_textbook_standard_errors():
    """K = 1: at the MLE, Var(μ̂_j) = Σ_jj / N and Var(Σ̂_ij) = (Σ_ii Σ_jj + Σ_ij²) / N, and the
    weight (always 1) has standard error 0."""
    X = np.asarray(gj.load_dataset("iris")[0], np.float64)[:, :3]
    n = X.shape[0]
    gmm = fitted(X, 1)
    se = gj.standard_errors(gmm, X, method="hessian")
    S = np.cov(X, rowvar=False, bias=True)
    shaped = se.shaped()
    assert abs(shaped["weights"][0]) < 1e-12
    np.testing.assert_allclose(shaped["means"][0], np.sqrt(np.diag(S) / n), rtol=1e-8)
    want = np.sqrt((np.outer(np.diag(S), np.diag(S)) + S**2) / n)
    np.testing.assert_allclose(shaped["covariances"][0], want, rtol=1e-7)


def test_hessian_and_opg_agree_on_a_well_specified_mixture(simulated):
    """N = 10^4 from the model: the outer product of scores estimates the same information
    as the Hessian; their standard errors agree within 5% (Louis is the Hessian)."""
    X, gmm = simulated
    h = gj.standard_errors(gmm, X, method="hessian")
    opg = gj.standard_errors(gmm, X, method="opg")
    ratio = opg.std_error / h.std_error
    assert np.all(np.abs(ratio - 1) < 0.05), dict(zip(h.names, np.round(ratio, 3), strict=True))
    assert h.names[0] == "weight[0]" and h.names[-1] == "cov[1,1,1]"
    np.testing.assert_allclose(h.estimate[2:6], np.asarray(gmm.means).ravel())
    low, high = h.intervals(0.95).T
    np.testing.assert_allclose(high - low, 2 * 1.959963984540054 * h.std_error)
    assert "mean[1,0]" in h.table() and "std.error" in str(h)


def test_bootstrap_spreads_like_the_information(simulated):
    """Nonparametric and parametric bootstrap (B = 100, one compiled program each) give
    standard errors within 30% of the Hessian's (B = 100 leaves about 7% noise in each);
    the percentile interval brackets the estimate."""
    X, gmm = simulated
    h = gj.standard_errors(gmm, X, method="hessian")
    for kind in ("nonparametric", "parametric"):
        bs = gj.standard_errors(
            gmm, X, method="bootstrap", bootstrap=kind, key=jax.random.key(3), n_bootstrap=100,
            reg_covar=0.0, tol=1e-9,
        )  # fmt: skip
        assert bs.n_failed == 0 and bs.replicates.shape == (100, len(h.names))
        ratio = bs.std_error / h.std_error
        assert np.all(np.abs(ratio - 1) < 0.3), (kind, np.round(ratio, 3))
        low, high = bs.intervals(0.9).T
        assert np.all((low < bs.estimate) & (bs.estimate < high))


def test_components_are_matched_to_the_fit():
    perm = TRUE.__class__(TRUE.weights[::-1], TRUE.means[::-1], TRUE.covariances[::-1], "full")
    back = match_components(perm, TRUE, np.ones(2))
    np.testing.assert_array_equal(back.means, TRUE.means)
    np.testing.assert_array_equal(back.covariances, TRUE.covariances)


def test_bootstrap_fits_mclust_models_and_refuses_information_for_them():
    X = np.asarray(gj.load_dataset("iris")[0], np.float64)
    gmm = fitted(X, 2, "VEV")
    bs = gj.standard_errors(
        gmm, X, method="bootstrap", key=jax.random.key(0), n_bootstrap=20, reg_covar=0.0
    )
    assert bs.std_error.shape == (2 + 8 + 2 * 10,) and np.all(bs.std_error > 0)
    with pytest.raises(ValueError, match="method='bootstrap'"):
        gj.standard_errors(gmm, X, method="hessian")


def test_singular_information_is_a_clear_error():
    """A third component far from every point carries no information about its mean: a
    ValueError naming the cause, not NaN."""
    X, _ = gj.sample(TRUE, 400, key=jax.random.key(4))
    gmm = fitted(np.asarray(X), 2)
    dead = gj.GMM(
        np.append(np.asarray(gmm.weights) * (1 - 1e-30), 1e-30),
        np.vstack([gmm.means, [[1e3, 1e3]]]),
        np.concatenate([gmm.covariances, np.eye(2)[None]]),
        "full",
    )
    with pytest.raises(ValueError, match="not positive definite.*empty"):
        gj.standard_errors(dead, X, method="hessian")


def test_bad_arguments_are_named():
    X, _ = gj.sample(TRUE, 50, key=jax.random.key(5))
    with pytest.raises(ValueError, match="method must be one of"):
        gj.standard_errors(TRUE, X, method="fisher")
    with pytest.raises(ValueError, match="key=jax.random.key"):
        gj.standard_errors(TRUE, X, method="bootstrap")
    with pytest.raises(ValueError, match=r"X must have shape \(n_samples, 2\)"):
        gj.standard_errors(TRUE, np.ones((5, 3)))
    with pytest.raises(ValueError, match="level must be in"):
        gj.standard_errors(TRUE, X).intervals(1.5)


@pytest.mark.parametrize(
    "cell",
    [pytest.param(c, marks=() if c["model"] == "VVV" else pytest.mark.slow) for c in BOOT["cells"]],
    ids=lambda c: f"{c['model']}{c['G']}",
)
def test_same_order_as_mclust_bootstrap(cell):
    """faithful, mclust's EEE,3 and VVV,2 fits: gmmjax's Hessian and bootstrap (B = 200)
    standard errors are within a factor 2 of MclustBootstrap's (B = 999) for every
    parameter, nonparametric and parametric. (Not equal: different resamples, and mclust's
    refits start from the resampled rows' responsibilities, ours from the fit.)"""
    X = np.asarray(gj.load_dataset("faithful")[0], np.float64)
    cov_type = {"EEE": "tied", "VVV": "full"}[cell["model"]]
    sigma = np.asarray(cell["sigma"])
    start = gj.GMM(
        np.asarray(cell["pro"]),
        np.asarray(cell["mean"]),
        sigma[0] if cov_type == "tied" else sigma,
        cov_type,
    )
    gmm = fitted(X, cell["G"], cov_type, start=start)
    assert float(gj.log_likelihood(gmm, X)) >= cell["loglik"] - 1e-5 * abs(cell["loglik"])
    ours = {"hessian": gj.standard_errors(gmm, X, method="hessian")}
    for kind in ("nonparametric", "parametric"):
        ours[kind] = gj.standard_errors(
            gmm, X, method="bootstrap", bootstrap=kind, key=jax.random.key(7), n_bootstrap=200,
            reg_covar=0.0, tol=1e-9,
        )  # fmt: skip
    for mine, theirs in (
        ("hessian", "bs"),
        ("nonparametric", "bs"),
        ("parametric", "pb"),
    ):
        ref = cell["boot"][theirs]
        se = ours[mine].shaped()
        pairs = [(se["weights"], ref["pro"]), (se["means"], ref["mean"])]
        cov = se["covariances"]
        ref_cov = np.asarray(ref["variance"])
        pairs.append((cov, ref_cov[0] if cov_type == "tied" else ref_cov))
        for a, b in pairs:
            ratio = np.asarray(a, np.float64) / np.asarray(b, np.float64)
            assert np.all((ratio > 0.5) & (ratio < 2)), (mine, np.round(ratio, 3))


def coverage(n_simulations, n_samples, methods=("hessian", "opg")):
    """Fraction of 95% Wald intervals that contain the true natural parameters, per method,
    over `n_simulations` data sets of `n_samples` rows from TRUE (each fitted from TRUE)."""
    truth = np.asarray(to_natural(TRUE))
    hits = {m: [] for m in methods}
    for s in range(n_simulations):  # independent data sets: a study, not a fit
        X, _ = gj.sample(TRUE, n_samples, key=jax.random.key(100 + s))
        gmm = fitted(np.asarray(X), 2, start=TRUE)
        for m in methods:
            low, high = gj.standard_errors(gmm, X, method=m).intervals(0.95).T
            hits[m].append((low <= truth) & (truth <= high))
    return {m: float(np.mean(h)) for m, h in hits.items()}


@pytest.mark.slow
def test_wald_intervals_cover_at_the_nominal_rate():
    """200 simulated data sets of N = 10^4 from TRUE: the 95% intervals of the Hessian (=
    Louis) and OPG standard errors cover the 12 true parameters 93% to 97% of the time."""
    rates = coverage(200, 10_000)
    print("coverage of 95% intervals:", rates)
    for m, rate in rates.items():
        assert 0.93 <= rate <= 0.97, (m, rate)
