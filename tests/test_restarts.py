"""Restarts: one vmapped program equals the restarts run one at a time; failures never win."""

import jax
import numpy as np
import pytest
from conftest import assert_close, blobs

import gmmjax as gj
from gmmjax._program import n_compiled


def test_vmapped_restarts_equal_one_at_a_time(cov_type):
    X = blobs(31, n=500, d=3, k=4, sep=2.0)
    key = jax.random.key(7)
    res = gj.fit_em(
        X,
        4,
        key=key,
        cov_type=cov_type,
        n_restarts=5,
        max_iter=60,
        tol=1e-6,
        init="random_from_data",
        chunk_size=128,
    )
    for r, k_r in enumerate(jax.random.split(key, 5)):
        start = gj.initialize(X, 4, key=k_r, cov_type=cov_type, method="random_from_data")
        one = gj.fit_em(
            X,
            4,
            key=k_r,
            cov_type=cov_type,
            init_params=start,
            max_iter=60,
            tol=1e-6,
            chunk_size=128,
        )
        assert int(one.n_iter[0]) == int(res.n_iter[r])
        assert int(one.status[0]) == int(res.status[r])
        assert_close(one.log_likelihood[0], res.log_likelihood[r], rtol=1e-12)
        assert_close(one.best.means, res.params[r].means, rtol=1e-12, atol=1e-12)
        assert_close(one.best.covariances, res.params[r].covariances, rtol=1e-12, atol=1e-12)
        assert_close(one.history[0], res.history[r], rtol=1e-12)


def test_best_is_highest_finite_log_likelihood():
    X = blobs(32, n=600, d=2, k=5, sep=3.0)
    res = gj.fit_em(X, 5, key=jax.random.key(1), n_restarts=8, init="random", max_iter=300)
    ll = np.asarray(res.log_likelihood)
    assert len(np.unique(np.round(ll, 6))) > 1, "restarts should reach different optima here"
    assert int(res.best_index) == int(np.argmax(ll))
    assert_close(gj.log_likelihood(res.best, X) / 600, ll.max(), rtol=1e-12)


def test_non_finite_restart_is_flagged_and_never_wins():
    X = blobs(33, n=300, d=2, k=2, sep=4.0)
    good = gj.initialize(X, 2, key=jax.random.key(0), cov_type="spherical")
    # Means at 1e200: every squared distance overflows to inf, so ℓ = −inf at once.
    bad = gj.GMM(good.weights, good.means + 1e200, good.covariances, "spherical")
    starts = jax.tree.map(lambda a, b: np.stack([a, b, a]), bad, good)
    res = gj.fit_em(
        X, 2, key=jax.random.key(0), cov_type="spherical", n_restarts=3, init_params=starts
    )
    status = [gj.Status(int(s)) for s in res.status]
    assert status[0] == gj.Status.NON_FINITE and status[2] == gj.Status.NON_FINITE
    assert status[1] == gj.Status.CONVERGED
    assert int(res.best_index) == 1
    assert np.all(np.isfinite(np.asarray(res.best.means)))
    # The failed restart returns its last finite parameters, not NaN.
    assert np.all(np.isfinite(np.asarray(res.params.covariances)))


def test_all_restarts_failing_warns():
    X = blobs(34, n=100, d=2, k=2)
    good = gj.initialize(X, 2, key=jax.random.key(0), cov_type="spherical")
    bad = gj.GMM(good.weights, good.means + 1e200, good.covariances, "spherical")
    with pytest.warns(RuntimeWarning, match="every restart failed"):
        gj.fit_em(X, 2, key=jax.random.key(0), cov_type="spherical", init_params=bad)


def test_no_retrace_for_new_values_tol_reg_covar_or_key():
    X1 = blobs(35, n=400, d=3, k=3)
    X2 = blobs(36, n=400, d=3, k=3) * 2.0
    opts = dict(cov_type="diag", n_restarts=3, max_iter=40)
    gj.fit_em(X1, 3, key=jax.random.key(0), tol=1e-3, reg_covar=1e-6, **opts)
    before = n_compiled()
    res = gj.fit_em(X2, 3, key=jax.random.key(9), tol=1e-5, reg_covar=1e-3, **opts)
    assert n_compiled() == before
    assert np.all(np.asarray(res.best.covariances) >= 1e-3)  # the new reg_covar took effect
    # A shape-determining option does recompile, which shows the counter is live.
    gj.fit_em(X2, 3, key=jax.random.key(9), cov_type="diag", n_restarts=3, max_iter=41)
    assert n_compiled() == before + 1


def test_exact_step_count_with_init_params_and_zero_tol():
    X = blobs(37, n=300)
    start = gj.initialize(X, 3, key=jax.random.key(0))
    res = gj.fit_em(X, 3, key=jax.random.key(0), init_params=start, max_iter=7, tol=0.0)
    assert int(res.n_iter[0]) == 7 and int(res.status[0]) == gj.Status.MAX_ITER_REACHED
    assert not bool(res.converged[0])
    h = np.asarray(res.history[0])
    assert np.all(np.isfinite(h[:7]))
    # history[0] is ℓ(θ_0)/N, the start.
    assert_close(h[0], gj.log_likelihood(start, X) / 300, rtol=1e-12)
    # Manual EM steps reproduce the returned parameters.
    theta = start
    for _ in range(7):
        theta, _ = gj.em_step(theta, X)
    assert_close(res.best.means, theta.means, rtol=1e-10, atol=1e-12)
