"""From the same initial parameters, n EM steps equal scikit-learn's GaussianMixture (float64)."""

import jax
import numpy as np
import pytest
from conftest import assert_close, blobs
from sklearn.datasets import load_iris, load_wine
from sklearn.mixture import GaussianMixture

import gmmjax as gj


def _precisions(gmm):
    c = np.asarray(gmm.covariances)
    return np.linalg.inv(c) if gmm.cov_type in ("full", "tied") else 1.0 / c


def _datasets():
    wine = load_wine().data
    return {
        "iris": (load_iris().data, 3),
        # wine's features span 4 orders of magnitude; standardise as a user would.
        "wine": ((wine - wine.mean(0)) / wine.std(0), 3),
        "synthetic": (blobs(11, n=1500, d=5, k=4, sep=2.0), 4),
    }


DATASETS = _datasets()


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_fixed_steps_match_sklearn(name, cov_type):
    X, k = DATASETS[name]
    n_steps = 15
    start = gj.initialize(X, k, key=jax.random.key(3), cov_type=cov_type)
    ours = gj.fit_em(
        X,
        k,
        key=jax.random.key(0),
        cov_type=cov_type,
        init_params=start,
        max_iter=n_steps,
        tol=0.0,
        reg_covar=1e-6,
    )
    sk = GaussianMixture(
        k,
        covariance_type=cov_type,
        tol=0.0,
        max_iter=n_steps,
        reg_covar=1e-6,
        weights_init=np.asarray(start.weights),
        means_init=np.asarray(start.means),
        precisions_init=_precisions(start),
    ).fit(X)
    assert int(ours.n_iter[0]) == sk.n_iter_ == n_steps
    best = ours.best
    assert_close(best.weights, sk.weights_, rtol=1e-8, atol=1e-14)
    assert_close(best.means, sk.means_, rtol=1e-8, atol=1e-12)
    assert_close(best.covariances, sk.covariances_, rtol=1e-8, atol=1e-12)
    u = np.asarray(best.precisions_cholesky)
    if cov_type in ("full", "tied"):  # U Uᵀ = Σ⁻¹; scikit-learn's factor is the same U
        assert_close(u @ np.swapaxes(u, -1, -2), sk.precisions_, rtol=1e-7, atol=1e-10)
    assert_close(u, sk.precisions_cholesky_, rtol=1e-7, atol=1e-10)
    # scikit-learn's lower_bound_ is ℓ(θ_{n−1})/N, our history[n−1].
    assert_close(ours.history[0, n_steps - 1], sk.lower_bound_, rtol=1e-10)
    # Our log_likelihood is that of the returned parameters, which scikit-learn's score gives.
    assert_close(ours.log_likelihood[0], sk.score(X), rtol=1e-10)


def test_convergence_test_matches_sklearn(cov_type):
    """Same tol semantics: the same number of iterations and the same converged flag."""
    X, k = DATASETS["iris"]
    start = gj.initialize(X, k, key=jax.random.key(5), cov_type=cov_type)
    ours = gj.fit_em(
        X, k, key=jax.random.key(0), cov_type=cov_type, init_params=start, max_iter=500, tol=1e-4
    )
    sk = GaussianMixture(
        k,
        covariance_type=cov_type,
        tol=1e-4,
        max_iter=500,
        weights_init=np.asarray(start.weights),
        means_init=np.asarray(start.means),
        precisions_init=_precisions(start),
    ).fit(X)
    assert int(ours.n_iter[0]) == sk.n_iter_
    assert bool(ours.converged[0]) == sk.converged_
    assert_close(ours.best.means, sk.means_, rtol=1e-7, atol=1e-10)
