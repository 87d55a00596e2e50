"""Values missing at random: the masked formulas, EM on the observed-data likelihood, scoring
and imputation of incomplete rows.

References: a per-row NumPy/SciPy computation on each row's observed index set; Anderson's
(1957) closed-form MLE for monotone missingness; R's lavaan and Amelia (fixture
`fixtures/missing_mle.json`, made by `fixtures/missing_mle.R`).
"""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import COV_TYPES, assert_close, random_gmm
from scipy.stats import multivariate_normal

import gmmjax as gj
from gmmjax import _missing
from gmmjax._likelihood import kernel_component_log_prob
from gmmjax._stats import kernel_statistics

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def _holes(X, fraction, seed):
    """X with about `fraction` of its values set to NaN, never a whole row."""
    rng = np.random.default_rng(seed)
    out = np.array(X, dtype=float)
    out[rng.random(out.shape) < fraction] = np.nan
    empty = np.isnan(out).all(axis=1)
    out[empty, 0] = np.asarray(X)[empty, 0]
    return out


def _full_covariances(gmm):
    cov = np.asarray(gmm.covariances)
    k, d = gmm.n_components, gmm.n_features
    return {
        "full": lambda: cov,
        "tied": lambda: np.broadcast_to(cov, (k, d, d)),
        "diag": lambda: np.stack([np.diag(c) for c in cov]),
        "spherical": lambda: np.stack([c * np.eye(d) for c in cov]),
    }[gmm.cov_type]()


def _reference(gmm, X):
    """Per row and component, on the row's observed index set o and missing set m:
    log N(x_o; μ_o, Σ_oo), x̂ and C."""
    covs, means = _full_covariances(gmm), np.asarray(gmm.means)
    n, d = X.shape
    k = gmm.n_components
    logpdf, mean, cond = np.zeros((n, k)), np.zeros((n, k, d)), np.zeros((n, k, d, d))
    for i in range(n):
        o = ~np.isnan(X[i])
        m = ~o
        for j in range(k):
            S, mu = covs[j], means[j]
            S_oo, S_mo = S[np.ix_(o, o)], S[np.ix_(m, o)]
            logpdf[i, j] = multivariate_normal(mu[o], S_oo).logpdf(X[i, o])
            mean[i, j] = X[i]
            mean[i, j, m] = mu[m] + S_mo @ np.linalg.solve(S_oo, X[i, o] - mu[o])
            cond[i, j][np.ix_(m, m)] = S[np.ix_(m, m)] - S_mo @ np.linalg.solve(S_oo, S_mo.T)
    return logpdf, mean, cond


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_masked_formulas_equal_a_per_pattern_reference(cov_type):
    gmm = random_gmm(3, 3, 4, cov_type)
    X = _holes(np.random.default_rng(1).normal(size=(40, 4)) * 2, 0.35, seed=2)
    logpdf, mean, cond = _reference(gmm, X)
    assert_close(_missing.marginal_log_gaussian(gmm, jnp.asarray(X)), logpdf, rtol=0, atol=1e-12)
    got_mean, got_cond = _missing.conditional_moments(gmm, jnp.asarray(X))
    assert_close(got_mean, mean, rtol=0, atol=1e-12)
    if cov_type in ("diag", "spherical"):
        cond = np.diagonal(cond, axis1=-2, axis2=-1)
    assert_close(got_cond, cond, rtol=0, atol=1e-12)
    # Expected statistics: the reference's x̂ and C summed by hand.
    resp = np.random.default_rng(4).dirichlet(np.ones(3), size=40)
    w = np.random.default_rng(5).uniform(0.5, 2.0, size=40)
    shift = np.asarray(gmm.means) + 0.3
    s0, s1, s2 = _missing.expected_moments(
        gmm, jnp.asarray(X), jnp.asarray(resp), sample_weight=jnp.asarray(w), shift=shift
    )
    g = resp * w[:, None]
    e = mean - shift[None]
    ref_s2 = np.einsum("nk,nkd,nke->kde", g, e, e) + np.einsum(
        "nk,nkde->kde", g, cond if cond.ndim == 4 else np.eye(4) * cond[..., None]
    )
    ref_s2 = {
        "full": ref_s2,
        "tied": ref_s2.sum(0),
        "diag": np.diagonal(ref_s2, axis1=-2, axis2=-1),
        "spherical": np.diagonal(ref_s2, axis1=-2, axis2=-1),
    }[cov_type]
    assert_close(s0, g.sum(0), rtol=1e-13)
    assert_close(s1, np.einsum("nk,nkd->kd", g, e), rtol=0, atol=1e-11)
    assert_close(s2, ref_s2, rtol=0, atol=1e-11)


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_masked_formulas_on_complete_rows_equal_the_complete_ones(cov_type):
    gmm = random_gmm(5, 3, 3, cov_type)
    X = jnp.asarray(np.random.default_rng(6).normal(size=(30, 3)))
    resp = jnp.asarray(np.random.default_rng(7).dirichlet(np.ones(3), size=30))
    assert_close(
        _missing.marginal_component_log_prob(gmm, X),
        kernel_component_log_prob(gmm, X),
        rtol=1e-12,
    )
    moments = _missing.expected_moments(gmm, X, resp, sample_weight=None, shift=gmm.means)
    stats = kernel_statistics(X, resp, cov_type=cov_type, sample_weight=None, shift=gmm.means)
    for got, want in zip(moments, (stats.s0, stats.s1, stats.s2), strict=True):
        assert_close(got, want, rtol=0, atol=1e-12)


def test_missing_em_on_complete_data_is_the_complete_fit():
    X = np.random.default_rng(8).normal(size=(200, 3))
    kwargs = dict(key=jax.random.key(0), n_restarts=2, max_iter=20)
    a = gj.fit_em(X, 2, **kwargs)
    b = gj.fit_em(X, 2, missing="em", **kwargs)
    for field in ("means", "covariances", "weights"):
        np.testing.assert_array_equal(getattr(a.params, field), getattr(b.params, field))
    np.testing.assert_array_equal(a.history, b.history)


def _anderson(X):
    """Closed-form MLE for one bivariate normal, x1 always observed, x2 missing (monotone):
    Anderson (1957), as in docs/math.md §7."""
    x1, x2 = X[:, 0], X[:, 1]
    c = ~np.isnan(x2)
    mu1, s11_all = x1.mean(), x1.var()
    a1, a2 = x1[c].mean(), x2[c].mean()
    s11 = np.mean((x1[c] - a1) ** 2)
    s12 = np.mean((x1[c] - a1) * (x2[c] - a2))
    s22 = np.mean((x2[c] - a2) ** 2)
    beta = s12 / s11
    mu2 = a2 + beta * (mu1 - a1)
    sigma12 = beta * s11_all
    sigma22 = s22 - beta**2 * s11 + beta**2 * s11_all
    return np.array([mu1, mu2]), np.array([[s11_all, sigma12], [sigma12, sigma22]])


def test_one_component_monotone_missingness_equals_andersons_closed_form():
    rng = np.random.default_rng(9)
    X = rng.multivariate_normal([1.0, -2.0], [[2.0, 1.2], [1.2, 1.5]], size=500)
    # Missing at random: x2 is removed more often where x1 is large.
    X[rng.random(500) < 1 / (1 + np.exp(-(X[:, 0] - 1.5))), 1] = np.nan
    mean, cov = _anderson(X)
    # tol=0: a fixed number of steps. EM's rate here is the fraction of missing information
    # (below 1/2), so 300 steps are far past 1e-8 in the parameters, which a tol on the
    # log-likelihood (quadratic near the optimum) would not guarantee.
    res = gj.fit_em(X, 1, key=jax.random.key(0), missing="em", reg_covar=0.0, tol=0.0, max_iter=300)
    assert gj.Status(int(res.status[0])) == gj.Status.MAX_ITER_REACHED
    assert_close(res.best.means[0], mean, rtol=0, atol=1e-8)
    assert_close(res.best.covariances[0], cov, rtol=0, atol=1e-8)


def test_one_component_fit_reaches_the_R_reference_mle():
    """lavaan's FIML and its EM, Amelia's EM and a base-R EM agree on this MLE (to 4e-9)."""
    X = np.genfromtxt(FIXTURES / "missing_mle.csv", delimiter=",", skip_header=1)
    ref = json.loads((FIXTURES / "missing_mle.json").read_text())
    assert X.shape == (ref["n"], ref["d"])
    assert list(np.isnan(X).sum(0)) == ref["missing_per_column"]
    res = gj.fit_em(X, 1, key=jax.random.key(0), missing="em", reg_covar=0.0, tol=0.0, max_iter=300)
    assert gj.Status(int(res.status[0])) == gj.Status.MAX_ITER_REACHED
    assert_close(res.best.means[0], ref["mean"], rtol=0, atol=1e-9)
    assert_close(res.best.covariances[0], ref["covariance"], rtol=0, atol=1e-9)
    total = float(gj.log_likelihood(res.best, X, missing="marginal"))
    assert_close(total, ref["loglik"], rtol=1e-12)
    assert_close(res.log_likelihood[0] * ref["n"], ref["loglik"], rtol=1e-12)


@pytest.fixture(scope="module")
def mixture_with_holes():
    """Three separated clusters in 4-D, 25% of the values missing completely at random."""
    rng = np.random.default_rng(10)
    centres = np.array([[0.0, 0, 0, 0], [5, 5, 0, -3], [-4, 3, 4, 2]])
    X = np.concatenate([rng.normal(size=(120, 4)) + c for c in centres])
    return X, _holes(X, 0.25, seed=11)


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_em_never_decreases_the_observed_data_log_likelihood(mixture_with_holes, cov_type):
    _, X = mixture_with_holes
    res = gj.fit_em(
        X, 3, key=jax.random.key(1), n_restarts=3, cov_type=cov_type, missing="em", tol=1e-12
    )
    assert all(gj.Status(int(s)) == gj.Status.CONVERGED for s in res.status), res.status
    for r in range(3):
        h = np.asarray(res.history[r])
        h = h[np.isfinite(h)]
        assert len(h) > 3
        assert np.all(np.diff(h) >= -1e-12 * np.abs(h[1:])), (r, np.diff(h).min())
    # The recorded objective is the observed-data log-likelihood of the final parameters.
    best = res.best
    assert_close(
        res.log_likelihood[res.best_index],
        float(gj.log_likelihood(best, X, missing="marginal")) / len(X),
        rtol=1e-10,
    )


# Long; `make test-all` runs it (keeping the default suite short).
@pytest.mark.slow
def test_gradient_and_accelerated_methods_reach_em_s_optimum(mixture_with_holes):
    _, X = mixture_with_holes
    common = dict(key=jax.random.key(2), n_restarts=2, missing="em", max_iter=400)
    em = gj.fit(X, 3, method="em", tol=1e-12, **common)
    lbfgs = gj.fit(X, 3, method="lbfgs", tol=1e-12, **common)
    squarem = gj.fit(X, 3, method="squarem", tol=1e-12, **common)
    target = float(em.objective[em.best_index])
    for res in (lbfgs, squarem):
        assert_close(res.objective[res.best_index], target, rtol=1e-8)
        assert_close(res.best.means, em.best.means, rtol=0, atol=1e-4)


def test_sample_weight_equals_repeating_rows_with_holes(mixture_with_holes):
    _, X = mixture_with_holes
    w = np.ones(len(X))
    w[:40] = 2.0
    kwargs = dict(key=jax.random.key(3), missing="em", max_iter=15, tol=0.0)
    start = gj.initialize(np.nan_to_num(X), 3, key=jax.random.key(3))
    a = gj.fit_em(X, 3, sample_weight=w, init_params=start, **kwargs)
    b = gj.fit_em(np.concatenate([X, X[:40]]), 3, init_params=start, **kwargs)
    assert_close(a.best.means, b.best.means, rtol=0, atol=1e-10)
    assert_close(a.best.covariances, b.best.covariances, rtol=0, atol=1e-10)


def test_float32_fit_with_holes_agrees_with_float64(mixture_with_holes):
    _, X = mixture_with_holes
    X = X + 1e3  # an offset: centring on the observed column means keeps float32 accurate
    start = gj.initialize(np.nan_to_num(X, nan=1e3), 3, key=jax.random.key(4))
    kwargs = dict(key=jax.random.key(4), missing="em", max_iter=30, tol=0.0)
    f64 = gj.fit_em(X, 3, init_params=start, **kwargs)
    f32 = gj.fit_em(X.astype(np.float32), 3, init_params=start, **kwargs)
    assert f32.best.means.dtype == np.float32
    assert np.all(np.isfinite(np.asarray(f32.history)))
    assert_close(f32.log_likelihood, f64.log_likelihood, rtol=1e-5)
    assert_close(f32.best.means, f64.best.means, rtol=0, atol=1e-3)


def test_new_holes_reuse_the_compiled_program(mixture_with_holes):
    X, holes = mixture_with_holes
    kwargs = dict(key=jax.random.key(5), missing="em", max_iter=5)
    gj.fit_em(holes, 3, **kwargs)
    before = gj._program.n_compiled()
    gj.fit_em(_holes(X, 0.1, seed=12), 3, tol=1e-4, **kwargs)
    assert gj._program.n_compiled() == before


def test_impute_gives_the_conditional_mean_and_draws_from_the_conditional():
    gmm = random_gmm(13, 2, 3, "full")
    X = _holes(np.asarray(gj.sample(gmm, 60, key=jax.random.key(6))[0]), 0.4, seed=14)
    logpdf, mean, cond = _reference(gmm, X)
    log_joint = logpdf + np.log(np.asarray(gmm.weights))
    resp = np.exp(log_joint - np.logaddexp.reduce(log_joint, axis=1, keepdims=True))
    expected = np.einsum("nk,nkd->nd", resp, mean)
    filled = np.asarray(gj.impute(gmm, X))
    assert_close(filled, expected, rtol=0, atol=1e-12)
    observed = ~np.isnan(X)
    np.testing.assert_array_equal(filled[observed], X[observed])
    # Multiple imputation: draws keep the observed values and have the mixture conditional's
    # mean and variance, Σ_k r_k (x̂_k² + C_k) − E², within 5 standard errors over 4000 draws
    # (rows are drawn independently, so one call on X repeated 4000 times gives them).
    draws = np.asarray(gj.impute(gmm, np.tile(X, (4000, 1)), key=jax.random.key(7)))
    draws = draws.reshape(4000, *X.shape)
    assert np.all(draws[:, observed] == X[observed])
    second = np.einsum("nk,nkd->nd", resp, mean**2 + np.diagonal(cond, axis1=-2, axis2=-1))
    var = second - expected**2
    miss = ~observed
    z = (draws.mean(0)[miss] - expected[miss]) / np.sqrt(var[miss] / 4000)
    assert np.max(np.abs(z)) < 5, np.max(np.abs(z))
    assert_close(draws.var(0)[miss], var[miss], rtol=0.15)


def test_scoring_incomplete_rows(mixture_with_holes):
    _, X = mixture_with_holes
    gmm = random_gmm(15, 3, 4, "full")
    logpdf, _, _ = _reference(gmm, X[:20])
    ref = np.logaddexp.reduce(logpdf + np.log(np.asarray(gmm.weights)), axis=1)
    assert_close(gj.log_prob(gmm, X[:20], missing="marginal"), ref, rtol=1e-12)
    assert np.isnan(np.asarray(gj.log_prob(gmm, X[:20]))).any()  # the default propagates
    resp, _ = gj.e_step(gmm, X[:20], missing="marginal")
    assert_close(np.sum(resp, axis=1), np.ones(20), rtol=1e-12)
    with pytest.raises(ValueError, match='"marginal"'):
        gj.log_prob(gmm, X[:20], missing="em")


def test_estimator_fits_and_scores_incomplete_rows(mixture_with_holes):
    _, X = mixture_with_holes
    with pytest.raises(ValueError, match='missing="em"'):
        gj.GaussianMixture(3, random_state=0).fit(X)
    est = gj.GaussianMixture(3, n_init=2, random_state=0, missing="em").fit(X)
    gmm = est._gmm
    assert_close(est.score_samples(X), gj.log_prob(gmm, X, missing="marginal"), rtol=1e-12)
    resp = est.predict_proba(X)
    np.testing.assert_array_equal(est.predict(X), resp.argmax(1))
    ll = float(np.sum(est.score_samples(X)))
    assert_close(est.bic(X), -2 * ll + gj.n_parameters(gmm) * np.log(len(X)), rtol=1e-12)
    assert est.get_params()["missing"] == "em"
    # The three clusters are found despite the holes: each true cluster (rows in blocks of
    # 120) goes almost entirely to one component, a different one for each.
    labels = est.predict(X).reshape(3, 120)
    majority = [np.bincount(row, minlength=3).argmax() for row in labels]
    assert sorted(majority) == [0, 1, 2]
    agreement = np.mean(labels == np.asarray(majority)[:, None])
    assert agreement > 0.97, agreement


@pytest.mark.parametrize(
    ("X", "kwargs", "match"),
    [
        (np.array([[1.0, np.nan], [0.0, 1.0], [2.0, 2.0]]), {}, 'missing="em"'),
        (np.array([[np.nan, np.nan], [0.0, 1.0], [2.0, 2.0]]), {"missing": "em"}, "every value"),
        (np.array([[np.nan, 1.0], [np.nan, 1.0], [np.nan, 2.0]]), {"missing": "em"}, "column 0"),
        (np.array([[np.inf, 1.0], [0.0, 1.0], [2.0, 2.0]]), {"missing": "em"}, "contains inf"),
        (np.array([[1.0, 1.0], [0.0, 1.0], [2.0, 2.0]]), {"missing": "drop"}, '"raise"'),
    ],
)
def test_bad_missing_input_is_a_clear_value_error(X, kwargs, match):
    with pytest.raises(ValueError, match=match):
        gj.fit_em(X, 1, key=jax.random.key(0), **kwargs)


def test_missing_em_refuses_streamed_data(tmp_path):
    X = np.random.default_rng(16).normal(size=(50, 2))
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(ValueError, match="in memory"):
        gj.fit_em(
            np.load(tmp_path / "x.npy", mmap_mode="r"), 1, key=jax.random.key(0), missing="em"
        )


def test_select_and_compare_refuse_missing_values_with_their_own_message():
    X = np.random.default_rng(17).normal(size=(40, 2))
    X[5, 1] = np.nan
    key = jax.random.key(0)
    with pytest.raises(ValueError) as err:
        gj.select(X, [1, 2], ("full",), n_restarts=1, key=key)
    message = str(err.value)
    assert "select does not support missing values" in message
    assert 'gmmjax.fit(X, K, key=key, missing="em")' in message
    assert 'gmmjax.bic(res.best, X, missing="marginal")' in message
    with pytest.raises(ValueError) as err:
        gj.compare(X, 1, key=key, methods=("em",), n_restarts=1)
    message = str(err.value)
    assert "compare does not support missing values" in message
    assert 'missing="em", method=...' in message
    # inf: drop the rows; neither function can take NaN in its place.
    X[5, 1] = np.inf
    with pytest.raises(ValueError, match="contains inf") as err:
        gj.select(X, [1, 2], ("full",), n_restarts=1, key=key)
    assert "missing=" not in str(err.value)


@pytest.mark.parametrize(
    "method", ["predict", "predict_proba", "score", "score_samples", "bic", "aic"]
)
def test_estimator_fitted_on_complete_data_names_the_fix_for_scoring_nan(method):
    X = np.random.default_rng(18).normal(size=(60, 2))
    est = gj.GaussianMixture(2, random_state=0).fit(X)
    holes = X.copy()
    holes[3, 0] = np.nan
    with pytest.raises(ValueError) as err:
        getattr(est, method)(holes)
    message = str(err.value)
    assert 'construct the estimator with missing="em"' in message
    assert 'gmmjax.log_prob(gmm, X, missing="marginal")' in message
    # The call the message spells out works.
    gmm = gj.GMM(est.weights_, est.means_, est.covariances_, est.covariance_type)
    assert np.all(np.isfinite(gj.log_prob(gmm, holes, missing="marginal")))


@pytest.mark.parametrize(
    ("fit_option", "counterpart"),
    [
        ("em", 'its scoring counterpart is missing="marginal"'),
        ("raise", 'its scoring counterpart is the default, missing="propagate"'),
    ],
)
def test_scoring_names_the_counterpart_of_a_fit_option(fit_option, counterpart):
    gmm = random_gmm(19, 2, 2, "full")
    X = np.zeros((3, 2))
    with pytest.raises(ValueError) as err:
        gj.log_prob(gmm, X, missing=fit_option)
    assert counterpart in str(err.value)
    with pytest.raises(ValueError) as err:
        gj.log_prob(gmm, X, missing="drop")
    assert "counterpart" not in str(err.value)


def test_rows_with_every_value_missing_when_scoring(mixture_with_holes):
    _, X = mixture_with_holes
    est = gj.GaussianMixture(3, random_state=0, missing="em").fit(X)
    gmm = est._gmm
    empty = np.array([[np.nan] * 4, [0.0, 1.0, np.nan, 2.0]])
    # Scoring functions: log-density 0, responsibilities equal to the weights; impute: the
    # mixture's mean.
    assert_close(gj.log_prob(gmm, empty, missing="marginal")[0], 0.0, rtol=0, atol=1e-12)
    resp, _ = gj.e_step(gmm, empty, missing="marginal")
    assert_close(resp[0], gmm.weights, rtol=1e-12)
    assert_close(gj.impute(gmm, empty)[0], gmm.weights @ gmm.means, rtol=1e-12)
    # The estimator refuses such a row ...
    with pytest.raises(ValueError, match="every value missing"):
        est.predict(empty)
    # ... but scores rows whose missing values fill a whole column of X.
    one = np.array([[np.nan, 1.0, np.nan, 2.0]])
    assert_close(est.score_samples(one), gj.log_prob(gmm, one, missing="marginal"), rtol=1e-12)
    np.testing.assert_array_equal(est.predict(one), est.predict_proba(one).argmax(1))


def test_cli_fits_a_csv_with_empty_cells(tmp_path, capsys):
    from gmmjax.cli import main

    X = np.genfromtxt(FIXTURES / "missing_mle.csv", delimiter=",", skip_header=1)[:120]
    text = "x1,x2,x3,x4\n" + "\n".join(
        ",".join("" if np.isnan(v) else repr(float(v)) for v in row) for row in X
    )
    path = tmp_path / "holes.csv"
    path.write_text(text.replace(",,", ",NA,", 1) + "\n")
    assert main(["fit", str(path), "-k", "1", "--restarts", "1"]) == 2
    assert "--missing em" in capsys.readouterr().err
    out = tmp_path / "model.npz"
    args = ["fit", str(path), "-k", "1", "--restarts", "1", "--missing", "em", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"missing values: {int(np.isnan(X).sum())} of {X.size}" in printed
    direct = gj.fit(X, 1, key=jax.random.key(0), max_iter=500, tol=1e-6, missing="em")
    assert_close(gj.load(out).means, direct.best.means, rtol=1e-10)


def test_map_em_with_holes_climbs_the_penalised_objective(mixture_with_holes):
    _, X = mixture_with_holes
    with pytest.raises(ValueError, match="complete rows"):
        gj.fit_em(X, 3, key=jax.random.key(8), missing="em", prior="mclust")
    prior = gj.Prior.mclust(X[~np.isnan(X).any(1)], 3, "full")
    res = gj.fit_em(X, 3, key=jax.random.key(8), missing="em", prior=prior, tol=1e-12)
    h = np.asarray(res.history[0])
    h = h[np.isfinite(h)]
    assert len(h) > 3 and np.all(np.diff(h) >= -1e-12 * np.abs(h[1:]))
    best = res.best
    penalised = gj.log_likelihood(best, X, missing="marginal") + gj._prior.log_prior(best, prior)
    assert_close(res.objective[0], float(penalised) / len(X), rtol=1e-10)


def test_readme_prior_for_data_with_holes_runs(mixture_with_holes):
    """The README's advice for prior="mclust" on data with missing values."""
    readme = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index("**Missing values.**") :]
    expression = section[section.index("prior=gj.Prior.mclust(") + len("prior=") :]
    expression = expression[: expression.index("`")]
    _, X = mixture_with_holes
    namespace = {"gj": gj, "np": np, "X": X, "K": 3, "cov_type": "diag"}
    prior = eval(expression, namespace)
    res = gj.fit_em(X, 3, key=jax.random.key(8), cov_type="diag", missing="em", prior=prior)
    assert gj.Status(int(res.status[res.best_index])) == gj.Status.CONVERGED
