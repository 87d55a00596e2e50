import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close, blobs, full_covariances, random_gmm
from scipy.stats import multivariate_normal

import gmmjax as gj


def _scipy_component_log_prob(gmm, X):
    cov = full_covariances(gmm)
    return np.stack(
        [
            np.log(gmm.weights[k]) + multivariate_normal(gmm.means[k], cov[k]).logpdf(X)
            for k in range(gmm.n_components)
        ],
        axis=1,
    )


@pytest.mark.parametrize("d", [1, 3, 7])
def test_log_prob_matches_scipy(cov_type, d):
    gmm = random_gmm(1, 4, d, cov_type)
    X = blobs(2, n=200, d=d)
    expected = _scipy_component_log_prob(gmm, X)
    assert_close(gj.component_log_prob(gmm, X), expected, rtol=1e-10, atol=1e-10)
    assert_close(gj.log_prob(gmm, X), jax.scipy.special.logsumexp(expected, axis=1), rtol=1e-10)
    assert_close(gj.log_likelihood(gmm, X), np.sum(gj.log_prob(gmm, X)), rtol=1e-12)


def test_sample_weighted_log_likelihood():
    gmm = random_gmm(3, 3, 2, "full")
    X = blobs(4, n=50)
    w = np.random.default_rng(0).uniform(0, 2, size=50)
    assert_close(gj.log_likelihood(gmm, X, w), np.sum(w * gj.log_prob(gmm, X)), rtol=1e-12)


def test_float32_log_prob_on_offset_data(cov_type):
    """Far from the origin (X + 1e4) float32 keeps ~6 digits of the log-density."""
    gmm64 = random_gmm(5, 3, 4, cov_type)
    gmm64 = gj.GMM(gmm64.weights, gmm64.means + 1e4, gmm64.covariances, cov_type)
    X32 = (blobs(6, n=300, d=4) + 1e4).astype(np.float32)
    gmm32 = jax.tree.map(lambda a: a.astype(jnp.float32), gmm64)
    got = gj.component_log_prob(gmm32, X32)
    assert got.dtype == jnp.float32
    # Reference: the same float32-rounded data and parameters, evaluated in float64.
    ref = gj.component_log_prob(
        jax.tree.map(lambda a: a.astype(jnp.float64), gmm32), X32.astype(np.float64)
    )
    assert_close(got, ref, rtol=1e-4, atol=1e-3)


def test_sample_draws_from_the_mixture(cov_type):
    gmm = random_gmm(7, 3, 2, cov_type)
    X, z = gj.sample(gmm, 40_000, key=jax.random.key(0))
    assert X.shape == (40_000, 2) and z.shape == (40_000,)
    freq = np.bincount(np.asarray(z), minlength=3) / 40_000
    assert_close(freq, gmm.weights, rtol=0, atol=0.015)
    cov = full_covariances(gmm)
    for k in range(3):
        xk = np.asarray(X)[np.asarray(z) == k]
        assert_close(xk.mean(0), gmm.means[k], rtol=0, atol=0.1)
        assert_close(np.cov(xk.T), cov[k], rtol=0.1, atol=0.1)
