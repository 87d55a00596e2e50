"""Regression tests, one per class of input that once gave a silent wrong answer or a traceback:
data beyond the compute dtype's reach, collapsing components, argument types, keys and shapes.

(Study reruns and concurrency: test_experiment_integrity.py; CSV, .npy and model files:
test_io_cli_robust.py; scikit-learn's own estimator tests: test_sklearn_mixture_port.py.)
"""

import json
import subprocess
import sys
import warnings

import jax
import numpy as np
import pytest

import gmmjax as gj
from gmmjax._program import n_compiled

KEY = jax.random.key(0)


def _x(n=60, d=2, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


# -- data range: the default float32 mode (x64 off) must centre before it casts ---------------

_FLOAT32_SCRIPT = r"""
import json, warnings
import jax, numpy as np
import gmmjax as gj
from sklearn.mixture import GaussianMixture as SK
assert not jax.config.jax_enable_x64
out = {}
base = np.random.default_rng(0).normal(size=(400, 2))
for offset in (1e7, 1e8):
    X = base + offset
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = gj.fit_em(X, 1, key=jax.random.key(0))
        est = gj.GaussianMixture(1, random_state=0).fit(X)
    out[str(offset)] = {
        "var": np.diag(np.asarray(r.best.covariances)[0]).tolist(),
        "ll": float(r.log_likelihood[0]),
        "sk_ll": float(SK(1).fit(X).score(X)),
        "est_var": np.diag(est.covariances_[0]).tolist(),
        "status": int(r.status[0]),
        "warned": any("rounds the returned means" in str(w.message) for w in caught),
        "dtype": str(r.best.means.dtype),
    }
for name, scale in (("tiny", 1e-150), ("huge", 1e200)):
    try:
        gj.fit_em(base * scale, 1, key=jax.random.key(0))
        out[name] = "fitted"
    except ValueError as err:
        out[name] = str(err)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def float32_default_mode():
    """What a user without x64 sees (a subprocess: x64 is on in this test process)."""
    run = subprocess.run(
        [sys.executable, "-c", _FLOAT32_SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("offset", ["1e7", "1e8"])
def test_float32_fit_of_offset_data_sees_the_spread(float32_default_mode, offset):
    case = float32_default_mode[str(float(offset))]
    assert case["dtype"] == "float32"
    assert case["status"] == gj.Status.CONVERGED
    # Unit spread (the sample's variances are 0.97 and 0.94), not reg_covar.
    np.testing.assert_allclose(case["var"], case["est_var"], rtol=1e-5)
    assert min(case["var"]) > 0.9
    # The per-sample log-likelihood agrees with scikit-learn's float64 fit.
    np.testing.assert_allclose(case["ll"], case["sk_ll"], rtol=1e-6)
    assert case["warned"]  # the returned float32 means are rounded, and the user is told


def test_float32_refuses_data_it_cannot_represent(float32_default_mode):
    assert "below what float32 resolves" in float32_default_mode["tiny"]
    assert "beyond float32's range" in float32_default_mode["huge"]
    for name in ("tiny", "huge"):
        assert "jax_enable_x64" in float32_default_mode[name]  # the message names the fix


def test_float64_offset_data_fit_like_centred_data():
    X = _x(200)
    near = gj.fit_em(X, 2, key=KEY, tol=0.0, max_iter=20)
    far = gj.fit_em(X + 1e6, 2, key=KEY, tol=0.0, max_iter=20)
    np.testing.assert_allclose(far.log_likelihood, near.log_likelihood, rtol=1e-9)
    np.testing.assert_allclose(far.best.covariances, near.best.covariances, rtol=1e-6)


# -- collapse: a failed fit never hands out NaN parameters ------------------------------------

_COLLAPSING = {
    "identical rows": (np.ones((20, 2)), 2),
    "as many components as rows": (_x(3), 3),
}


@pytest.mark.parametrize("case", sorted(_COLLAPSING))
def test_collapsed_start_raises_instead_of_returning_nan(case):
    X, k = _COLLAPSING[case]
    with pytest.raises(gj.FitFailedError, match="Raise reg_covar"):
        gj.fit_em(X, k, key=KEY, reg_covar=0.0, n_restarts=2)
    with pytest.raises(ValueError, match="ill-defined empirical covariance"):
        gj.GaussianMixture(k, reg_covar=0.0, random_state=0).fit(X)


def test_collapse_during_the_fit_keeps_the_last_valid_parameters():
    # Collinear columns: the start's covariances are positive definite only by rounding, and
    # the first EM step's are not; each restart keeps its start (n_iter 0), which is valid.
    X = np.outer(np.arange(30.0), [1.0, 2.0])
    with pytest.warns(RuntimeWarning, match="every restart failed"):
        res = gj.fit_em(X, 2, key=KEY, reg_covar=0.0, n_restarts=3, max_iter=200)
    assert np.all(np.asarray(res.status) == gj.Status.DEGENERATE)
    for leaf in (res.params.covariances, res.params.precisions_cholesky, res.log_likelihood):
        assert np.all(np.isfinite(np.asarray(leaf)))


def test_more_components_than_distinct_points_fits_like_scikit_learn():
    X = np.repeat(_x(3), 10, axis=0)  # 30 rows, 3 distinct points
    est = gj.GaussianMixture(5, random_state=0).fit(X)
    assert est.converged_
    assert np.all(np.isfinite(est.precisions_cholesky_))
    assert np.isfinite(est.score(X))


def test_select_reports_a_collapsed_cell_and_goes_on():
    X = np.repeat(_x(3), 10, axis=0)
    with pytest.warns(RuntimeWarning, match="grid cells failed"):
        sel = gj.select(
            X, n_components=[1, 4], cov_types=("full",), n_restarts=2, reg_covar=0.0, key=KEY
        )
    by_k = {row["n_components"]: row for row in sel.rows}
    assert np.isnan(by_k[4]["bic"]) and by_k[4]["status"] in ("degenerate", "non_finite")
    assert np.isfinite(by_k[1]["bic"]) and sel.n_components == 1


def test_select_of_only_failed_cells_raises():
    with pytest.raises(ValueError, match="every fit of the grid failed"):
        gj.select(np.ones((20, 2)), n_components=[2], cov_types=("full",), reg_covar=0.0, key=KEY)


# -- argument types, keys, shapes ---------------------------------------------------------------


def test_numpy_integers_are_integers():
    X = _x()
    res = gj.fit(X, np.int64(2), key=KEY, n_restarts=np.int32(2), max_iter=np.int64(5))
    assert res.params.means.shape == (2, 2, 2)
    sel = gj.select(
        X, n_components=np.arange(1, 3), cov_types=("diag",), n_restarts=np.int64(2), key=KEY
    )
    assert {row["n_components"] for row in sel.rows} == {1, 2}
    est = gj.GaussianMixture(np.int64(2), n_init=np.int64(2), max_iter=np.int64(20)).fit(X)
    assert est.means_.shape == (2, 2)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda X: gj.fit(X, 2.5, key=KEY), "n_components must be an integer"),
        (lambda X: gj.fit(X, 2, key=KEY, n_restarts=2.0), "n_restarts must be an integer"),
        (lambda X: gj.select(X, n_components=3, key=KEY), "collection of integers"),
        (lambda X: gj.select(X, n_components=[1, 2.5], key=KEY), "integers >= 1"),
        (lambda X: gj.fit(X, 2, key=None), "key must be a JAX PRNG key"),
        (lambda X: gj.fit(X, 2, key=0), "jax.random.key"),
        (lambda X: gj.initialize(X, 2, key=None), "key must be a JAX PRNG key"),
        (lambda X: gj.sample(gj.GMM(*_unit_mixture()), 2.5, key=KEY), "integer >= 0"),
        (lambda X: gj.fit(X, 2, key=jax.random.split(KEY, 2)), "single PRNG key"),
        (lambda X: gj.sample(gj.GMM(*_unit_mixture()), 3, key=None), "JAX PRNG key"),
        (
            lambda X: gj.log_prob(gj.GMM(*_unit_mixture()), np.ones((4, 3))),
            r"shape \(n_samples, 2\)",
        ),
        (lambda X: gj.GaussianMixture(2.5).fit(X), "'n_components' parameter"),
        (lambda X: gj.GaussianMixture(2, tol=-1).fit(X), "'tol' parameter"),
        (lambda X: gj.GaussianMixture(2, means_init=np.zeros(2)).fit(X), "'means' should have"),
        (lambda X: gj.GaussianMixture(2, random_state=2**40).fit(X), "random_state"),
    ],
)
def test_bad_arguments_are_clear_value_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call(_x())


def _unit_mixture():
    return np.array([0.5, 0.5]), np.array([[0.0, 0.0], [1.0, 1.0]]), np.ones(2), "spherical"


@pytest.mark.parametrize(
    "method",
    [
        "predict",
        "predict_proba",
        "score",
        "score_samples",
        "bic",
        "aic",
        "sample",
        "save",
        "_n_parameters",
    ],
)
def test_every_method_of_an_unfitted_estimator_raises_not_fitted(method, tmp_path):
    est = gj.GaussianMixture(2)
    args = {"sample": (2,), "save": (tmp_path / "m.npz",), "_n_parameters": ()}.get(method, (_x(),))
    with pytest.raises(gj.NotFittedError):
        getattr(est, method)(*args)
    from sklearn.exceptions import NotFittedError

    assert issubclass(gj.NotFittedError, NotFittedError)  # drop-in `except` clauses catch it


def test_warm_start_tol_reference_is_traced_not_compiled():
    X = _x(100)
    est = gj.GaussianMixture(2, warm_start=True, max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gj.ConvergenceWarning)
        est.fit(X)
        est.fit(X)  # the first warm-started call: compiles once for the given start
        before = n_compiled()
        for _ in range(3):
            est.fit(X)  # a new previous lower bound every time
    assert n_compiled() == before


def test_verbose_prints_each_restarts_progress(capsys):
    X = _x(100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gj.ConvergenceWarning)
        gj.GaussianMixture(
            2, n_init=2, verbose=2, verbose_interval=1, max_iter=3, tol=0.0, random_state=0
        ).fit(X)
    out = capsys.readouterr().out
    assert "Initialization 0" in out and "Initialization 1" in out
    assert out.count("Iteration 3\t ll change") == 2
    assert "did not converge" in out and "lower bound" in out


def test_sample_draws_the_rows_of_an_exact_size_draw_from_shared_programs():
    gmm = gj.GMM(*_unit_mixture())
    key = jax.random.key(3)
    key_z, key_x = jax.random.split(key)
    for n in (1, 7, 1500):
        X, z = gj.sample(gmm, n, key=key)
        exact_z = jax.random.categorical(key_z, np.log(gmm.weights), shape=(n,))
        exact_noise = jax.random.normal(key_x, (n, 2))
        np.testing.assert_array_equal(z, exact_z)
        expected = np.asarray(gmm.means)[exact_z] + np.sqrt(1.0) * np.asarray(exact_noise)
        np.testing.assert_allclose(X, expected, rtol=1e-12, atol=1e-14)
    before = n_compiled_sample()
    for n in range(1, 40):
        assert gj.sample(gmm, n, key=key)[0].shape == (n, 2)
    assert n_compiled_sample() == before  # every n <= 1024 shares one program


def n_compiled_sample():
    from gmmjax._sample import _draw

    return _draw._cache_size()


def test_keys_of_every_kind_and_empty_samples_are_accepted():
    X = _x()
    legacy = np.asarray(jax.random.PRNGKey(0))  # a raw key held as a NumPy array
    assert gj.fit(X, 2, key=legacy, max_iter=2).params.means.shape == (1, 2, 2)
    starts = gj.initialize(X, 2, key=jax.random.split(KEY, 3))  # a batch where one is allowed
    assert starts.means.shape == (3, 2, 2)
    gmm = gj.GMM(*_unit_mixture())
    X0, z0 = gj.sample(gmm, 0, key=KEY)
    X1, z1 = gj.sample(gmm, 1, key=KEY)
    assert X0.shape == (0, 2) and z0.shape == (0,)
    assert X0.dtype == X1.dtype and z0.dtype == z1.dtype


def test_float32_scoring_of_offset_data_is_not_refused():
    """Only centred data are held to float32's resolution: a fitted mixture scores (and the
    estimator predicts) uncentred float32 data whose spread the offset has rounded away."""
    X = (1e8 + 0.1 * _x(100)).astype(np.float32)  # every row rounds to 1e8 in float32
    gmm = gj.GMM(
        np.array([1.0]), np.full((1, 2), 1e8, np.float32), np.ones((1, 2), np.float32), "diag"
    )
    assert np.all(np.isfinite(np.asarray(gj.log_prob(gmm, X))))
