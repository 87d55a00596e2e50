"""Derivatives of a fitted mixture through the EM fixed point (implicit function theorem)
against finite differences of refits and against differentiating through the iterations."""

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gmmjax as gj

X = jnp.asarray(gj.load_dataset("faithful")[0], jnp.float64)
N = X.shape[0]


@pytest.fixture(scope="module")
def start():
    return gj.fit_em(X, 2, key=jax.random.key(0), tol=1e-12, max_iter=2000, reg_covar=0.0).best


def fitted_mean(w, start, **kw):
    """One fitted coordinate: the second feature of component 0's mean."""
    return gj.fit_differentiable(X, start, sample_weight=w, **kw).means[0, 1]


def refit(w, start, prior=None):
    """A refit to the fixed point (tol 0: EM's every step until max_iter)."""
    gmm = gj.fit_differentiable(X, start, sample_weight=w, prior=prior, tol=0.0, max_iter=20_000)
    return gmm.means[0, 1]


def test_influence_of_one_weight_matches_refits_and_unrolling(start):
    """d μ_0,1 / d w_i, the empirical influence function: the implicit gradient equals
    central finite differences of refits (h = 1e-4) and the gradient through 300 unrolled EM
    steps, both to 1e-5 relative."""
    w = jnp.ones(N)
    implicit = jax.grad(fitted_mean)(w, start, tol=1e-14)
    unrolled = jax.grad(fitted_mean)(w, start, gradient="unrolled", max_iter=300)
    scale = jnp.max(jnp.abs(unrolled))
    assert float(jnp.max(jnp.abs(implicit - unrolled)) / scale) < 1e-5
    h = 1e-4
    for i in (3, 100, 200):
        fd = (refit(w.at[i].add(h), start) - refit(w.at[i].add(-h), start)) / (2 * h)
        assert float(jnp.abs(implicit[i] - fd)) < 1e-5 * float(scale), (i, implicit[i], fd)


def test_gradient_with_respect_to_the_data_and_a_prior(start):
    """jax.grad through the data X and through the prior's shrinkage κ and scale Λ; κ against
    finite differences of refits."""
    prior = gj.Prior.mclust(np.asarray(X), 2, "full")
    w = jnp.ones(N)

    def by_shrinkage(kappa, prior):
        p = gj.Prior(prior.mean, prior.scale, prior.dof, cov_type="full", shrinkage=kappa)
        return gj.fit_differentiable(X, start, prior=p, tol=1e-14).means[0, 1]

    kappa = prior.shrinkage
    grad = jax.grad(by_shrinkage)(kappa, prior)
    h = 1e-3

    def at(k):
        p = gj.Prior(prior.mean, prior.scale, prior.dof, cov_type="full", shrinkage=k)
        return refit(w, start, prior=p)

    fd = (at(kappa + h) - at(kappa - h)) / (2 * h)
    assert float(jnp.abs(grad - fd)) <= 1e-5 * float(jnp.abs(fd)) + 1e-10, (grad, fd)
    dX = jax.grad(lambda Xv: gj.fit_differentiable(Xv, start, tol=1e-14).means[0, 1])(X)
    assert dX.shape == X.shape and bool(jnp.all(jnp.isfinite(dX)))
    # Moving every row by the same offset moves the mean by it: the column sums are (0, 1).
    np.testing.assert_allclose(np.asarray(jnp.sum(dX, axis=0)), [0.0, 1.0], atol=1e-8)
    dscale = jax.grad(
        lambda s: gj.fit_differentiable(
            X, start, prior=gj.Prior(prior.mean, s, prior.dof, cov_type="full"), tol=1e-14
        ).covariances[0, 0, 0]
    )(prior.scale)
    assert dscale.shape == (2, 2) and bool(jnp.all(jnp.isfinite(dscale)))


def test_refuses_what_it_cannot_differentiate(start):
    with pytest.raises(ValueError, match="closed-form M-step"):
        gj.fit_differentiable(
            X, gj.GMM(start.weights, start.means, start.covariances, "VEV"), tol=1e-8
        )
    with pytest.raises(ValueError, match="gradient must be one of"):
        gj.fit_differentiable(X, start, gradient="adjoint")


def test_the_example_tunes_the_prior_upward():
    """examples/uncertainty.py: gradient ascent on the prior's scale raises the held-out
    log-likelihood of the MAP fit at every step (3 steps on faithful)."""
    spec = importlib.util.spec_from_file_location(
        "uncertainty_example", Path(__file__).parents[1] / "examples" / "uncertainty.py"
    )
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    order = np.random.default_rng(0).permutation(N)
    path = example.tune_prior_strength(X[order[:136]], X[order[136:]], steps=3)
    values = [v for _, v in path]
    assert all(b > a for a, b in zip(values, values[1:], strict=False)), path
