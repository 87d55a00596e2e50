"""The expanded E-step pass (`_expanded_pass`) against statistics computed independently with
SciPy's Gaussian densities and NumPy sums, in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from gmmjax import GMM
from gmmjax._expanded_pass import (
    augmented_features,
    expanded_e_statistics,
    expanded_log_likelihood,
)
from gmmjax._likelihood import distance_coefficients, quadratic_features
from gmmjax._solver import map_restarts
from gmmjax._stats import chunk_rows


def _mixture(rng, cov_type, k=3, d=3):
    means = rng.normal(size=(k, d))
    if cov_type == "full":
        a = rng.normal(size=(k, d, d)) * 0.4
        cov = np.eye(d) + a @ np.swapaxes(a, -1, -2)
    elif cov_type == "diag":
        cov = rng.uniform(0.5, 2.0, size=(k, d))
    else:
        cov = rng.uniform(0.5, 2.0, size=k)
    weights = rng.dirichlet(np.ones(k))
    return GMM(weights, means, cov, cov_type)


def _dense(gmm):
    cov = np.asarray(gmm.covariances)
    k, d = gmm.means.shape
    if gmm.cov_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    if gmm.cov_type == "spherical":
        return cov[:, None, None] * np.eye(d)
    return cov


def _reference(gmm, X, w):
    """(s0, s1, s2, Σ w log p) about the means, from SciPy's densities."""
    cov = _dense(gmm)
    means = np.asarray(gmm.means)
    with np.errstate(divide="ignore"):
        log_w = np.log(np.asarray(gmm.weights))
    comp = np.stack(
        [log_w[j] + multivariate_normal(means[j], cov[j]).logpdf(X) for j in range(len(means))],
        axis=1,
    )
    log_p = logsumexp(comp, axis=1)
    resp = np.exp(comp - log_p[:, None]) * w[:, None]
    diff = X[:, None, :] - means[None]  # (N, K, D)
    s0 = resp.sum(0)
    s1 = np.einsum("nk,nkd->kd", resp, diff)
    s2 = np.einsum("nk,nkd,nke->kde", resp, diff, diff)
    if gmm.cov_type != "full":
        s2 = np.diagonal(s2, axis1=1, axis2=2)
    return s0, s1, s2, np.sum(w * log_p)


@pytest.mark.parametrize("cov_type", ["full", "diag", "spherical"])
def test_statistics_equal_scipys_over_padded_weighted_chunks(cov_type):
    """Three chunks of 64 rows, the last padded with zero-weight rows, unequal sample weights
    and one component of weight 0 (the masked components of `select`'s padded programs)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 3)) * 1.5
    w = rng.uniform(0.2, 3.0, size=150)
    gmm = _mixture(rng, cov_type)
    gmm = GMM(jnp.asarray([0.6, 0.4, 0.0]), gmm.means, gmm.covariances, cov_type)
    stats, log_lik = expanded_e_statistics(gmm, chunk_rows(X, w, 64))
    s0, s1, s2, ll = _reference(gmm, X, w)
    assert_close(log_lik, ll, rtol=1e-12)
    assert_close(stats.s0, s0, rtol=1e-12, atol=1e-12)
    assert_close(stats.s1, s1, rtol=1e-10, atol=1e-11)
    assert_close(stats.s2, s2, rtol=1e-10, atol=1e-11)
    assert_close(stats.shift, gmm.means, rtol=0)
    assert_close(expanded_log_likelihood(gmm, chunk_rows(X, w, 64)), ll, rtol=1e-12)


def test_restarts_vmapped_equal_each_alone():
    """Under `map_restarts` (the fitting programs' vmap) every restart gets its own statistics."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    data = chunk_rows(X, np.ones(200), 128)
    gmms = [_mixture(rng, "full") for _ in range(3)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *gmms)
    (stats, log_lik) = map_restarts(lambda g: expanded_e_statistics(g, data), stacked)
    for r, gmm in enumerate(gmms):
        s0, s1, s2, ll = _reference(gmm, X, np.ones(200))
        assert_close(log_lik[r], ll, rtol=1e-12)
        assert_close(stats.s0[r], s0, rtol=1e-12)
        assert_close(stats.s2[r], s2, rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("cov_type", ["full", "diag", "spherical"])
def test_features_and_coefficients_give_the_quadratic_form(cov_type):
    """ψ(x) · c_k = (x − μ_k)ᵀ Σ_k⁻¹ (x − μ_k), and for full covariances ψ's first rows are
    `quadratic_features` in its order."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(20, 4))
    gmm = _mixture(rng, cov_type, d=4)
    psi = np.asarray(augmented_features(jnp.asarray(X.T), cov_type))
    distance = np.asarray(distance_coefficients(gmm)) @ psi  # (K, N)
    diff = X[None] - np.asarray(gmm.means)[:, None]
    expected = np.einsum("knd,kde,kne->kn", diff, np.linalg.inv(_dense(gmm)), diff)
    assert_close(distance, expected, rtol=1e-10)
    assert_close(psi[-5:-1], X.T, rtol=0)
    assert_close(psi[-1], np.ones(20), rtol=0)
    squares = np.asarray(quadratic_features(jnp.asarray(X))).T if cov_type == "full" else X.T**2
    assert_close(psi[: len(squares)], squares, rtol=0)
