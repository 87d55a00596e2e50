"""The identities of docs/math.md §4, checked numerically in float64."""

import jax
import jax.numpy as jnp
import numpy as np
from conftest import assert_close, blobs, random_gmm

import gmmjax as gj


def _overlapping_data():
    return blobs(21, n=800, d=2, k=3, sep=1.0)


def _mean_ll_fn(cov_type, X):
    """ℓ(θ) as a function of (weights, means, covariances); the GMM re-derives its factors."""
    return lambda w, m, c: gj.log_likelihood(gj.GMM(w, m, c, cov_type), X)


def test_monotone_over_200_iterations(cov_type):
    X = _overlapping_data()
    start = random_gmm(12, 3, 2, cov_type)  # a poor start, so that there is a long climb
    res = gj.fit_em(
        X, 3, key=jax.random.key(0), cov_type=cov_type, init_params=start, max_iter=200, tol=0.0
    )
    h = np.asarray(res.history[0])
    assert np.all(np.isfinite(h)) and int(res.n_iter[0]) == 200
    # float64 rounding of a mean over 800 samples is ~1e-15; allow that, nothing more.
    assert np.all(np.diff(h) >= -1e-12), np.diff(h).min()
    assert float(res.log_likelihood[0]) >= h[-1] - 1e-12
    assert h[-1] - h[0] > 0.05  # it actually climbed


def test_decomposition_and_tight_bound(cov_type):
    X = _overlapping_data()
    theta_t = random_gmm(2, 3, 2, cov_type)
    resp_t, _ = gj.e_step(theta_t, X)
    theta_next, _ = gj.em_step(theta_t, X)
    for theta in (theta_t, theta_next, random_gmm(9, 3, 2, cov_type)):
        resp, _ = gj.e_step(theta, X)
        q = gj.q_function(theta, X, resp_t)
        h = -jnp.sum(resp_t * jnp.log(resp))
        assert_close(gj.log_likelihood(theta, X), q + h, rtol=1e-12)
    entropy = -jnp.sum(resp_t * jnp.log(resp_t))
    assert_close(
        gj.log_likelihood(theta_t, X), gj.q_function(theta_t, X, resp_t) + entropy, rtol=1e-12
    )
    # Gibbs: H(θ, θ^t) ≥ H(θ^t, θ^t), hence ℓ climbs when Q does.
    resp_next, _ = gj.e_step(theta_next, X)
    assert -jnp.sum(resp_t * jnp.log(resp_next)) >= entropy - 1e-9
    assert gj.log_likelihood(theta_next, X) >= gj.log_likelihood(theta_t, X)


def test_fisher_identity(cov_type):
    X = _overlapping_data()
    theta = random_gmm(4, 3, 2, cov_type)
    resp, _ = gj.e_step(theta, X)
    args = (theta.weights, theta.means, theta.covariances)
    grad_ll = jax.grad(_mean_ll_fn(cov_type, X), argnums=(0, 1, 2))(*args)

    def q(w, m, c):
        return gj.q_function(gj.GMM(w, m, c, cov_type), X, resp)

    grad_q = jax.grad(q, argnums=(0, 1, 2))(*args)
    for a, b in zip(grad_ll, grad_q, strict=True):
        assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_m_step_maximises_q(cov_type):
    X = _overlapping_data()
    theta_t = random_gmm(6, 3, 2, cov_type)
    resp, _ = gj.e_step(theta_t, X)
    new = gj.m_step(X, resp, cov_type=cov_type, reg_covar=0.0)

    def q(w, m, c):
        return gj.q_function(gj.GMM(w, m, c, cov_type), X, resp)

    gw, gm, gc = jax.grad(q, argnums=(0, 1, 2))(new.weights, new.means, new.covariances)
    # On the simplex only the component of ∇_π Q orthogonal to (1, …, 1) must vanish.
    assert_close(gw - jnp.mean(gw), 0.0, rtol=0, atol=1e-8)
    assert_close(gm, 0.0, rtol=0, atol=1e-8)
    assert_close(gc, 0.0, rtol=0, atol=1e-8)
    q_best = q(new.weights, new.means, new.covariances)
    rng = np.random.default_rng(0)
    for _ in range(20):
        dw = rng.normal(size=3) * 1e-3
        dw -= dw.mean()
        dc = rng.normal(size=new.covariances.shape) * 1e-3
        if cov_type in ("full", "tied"):
            dc = dc + np.swapaxes(dc, -1, -2)
        perturbed = q(
            new.weights + dw, new.means + rng.normal(size=(3, 2)) * 1e-3, new.covariances + dc
        )
        assert perturbed < q_best


def _slogdet_log_likelihood(w, m, c, X):
    """ℓ written with slogdet/solve so that ∇_Σ reads the whole matrix (docs/math.md §4)."""
    diff = X[:, None, :] - m[None]
    sol = jnp.linalg.solve(c[None], diff[..., None])[..., 0]
    quad = jnp.sum(diff * sol, axis=-1)
    logdet = jnp.linalg.slogdet(c)[1]
    comp = jnp.log(w) - 0.5 * (X.shape[1] * jnp.log(2 * jnp.pi) + logdet + quad)
    return jnp.sum(jax.scipy.special.logsumexp(comp, axis=1))


def test_xu_jordan_preconditioned_gradient():
    X = _overlapping_data()
    theta = random_gmm(8, 3, 2, "full")
    new, _ = gj.em_step(theta, X, reg_covar=0.0)
    resp, _ = gj.e_step(theta, X)
    nk = jnp.sum(resp, axis=0)
    n = X.shape[0]
    w, m, c = theta.weights, theta.means, theta.covariances
    gw, gm, gc = jax.grad(_slogdet_log_likelihood, argnums=(0, 1, 2))(w, m, c, X)
    gc = 0.5 * (gc + jnp.swapaxes(gc, -1, -2))
    assert_close(new.weights - w, (jnp.diag(w) - jnp.outer(w, w)) @ gw / n, rtol=0, atol=1e-9)
    step_mu = jnp.einsum("kde,ke->kd", c, gm) / nk[:, None]
    assert_close(new.means - m, step_mu, rtol=0, atol=1e-9)
    delta = new.means - m
    step_cov = (2 / nk[:, None, None]) * (c @ gc @ c) - delta[:, :, None] * delta[:, None, :]
    assert_close(new.covariances - c, step_cov, rtol=0, atol=1e-9)
