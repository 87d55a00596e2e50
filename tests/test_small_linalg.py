"""Cholesky factors and triangular solves of many small matrices (`_small_linalg`) against
NumPy / SciPy, on both sides of the unrolled block size."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from conftest import assert_close

import gmmjax as gj
from gmmjax import _small_linalg as small
from gmmjax._params import precision_cholesky
from gmmjax._transforms import to_unconstrained


def _spd(rng, batch, d):
    A = rng.normal(size=batch + (d, d))
    return A @ np.swapaxes(A, -1, -2) + d * np.eye(d)


@pytest.mark.parametrize("d", [1, 3, small.BLOCK, small.BLOCK + 1, 2 * small.BLOCK + 3])
def test_factors_and_solves_equal_lapack(d):
    rng = np.random.default_rng(d)
    A = _spd(rng, (2, 5), d)
    B = rng.normal(size=(2, 5, d, 3))
    L = np.linalg.cholesky(A)
    got = small.cholesky(jnp.asarray(A))
    assert_close(got, L, rtol=0, atol=1e-13 * d)
    np.testing.assert_array_equal(np.triu(np.asarray(got), 1), 0.0)
    lower = np.stack(
        [
            scipy.linalg.solve_triangular(f, b, lower=True)
            for f, b in zip(L.reshape(-1, d, d), B.reshape(-1, d, 3), strict=True)
        ]
    ).reshape(B.shape)
    upper = np.stack(
        [
            scipy.linalg.solve_triangular(f.T, b, lower=False)
            for f, b in zip(L.reshape(-1, d, d), B.reshape(-1, d, 3), strict=True)
        ]
    ).reshape(B.shape)
    assert_close(small.solve_lower(jnp.asarray(L), jnp.asarray(B)), lower, rtol=1e-12)
    assert_close(small.solve_lower_transposed(jnp.asarray(L), jnp.asarray(B)), upper, rtol=1e-12)
    assert_close(small.cho_solve(got, jnp.asarray(B)), np.linalg.solve(A, B), rtol=1e-11)


def test_upper_triangle_is_ignored_and_indefinite_matrices_give_nan():
    rng = np.random.default_rng(0)
    A = _spd(rng, (3,), 4)
    garbage = A + np.triu(rng.normal(size=(3, 4, 4)), 1)
    assert_close(small.cholesky(jnp.asarray(garbage)), np.linalg.cholesky(A), rtol=0, atol=1e-13)
    bad = A.copy()
    bad[1] = -np.eye(4)
    L = np.asarray(small.cholesky(jnp.asarray(bad)))
    assert np.isnan(L[1]).any() and np.isfinite(L[[0, 2]]).all()


def test_gradient_equals_lapacks():
    rng = np.random.default_rng(1)
    A = jnp.asarray(_spd(rng, (4,), small.BLOCK + 2))
    W = jnp.asarray(rng.normal(size=A.shape))

    def loss(chol, A):
        L = chol(0.5 * (A + jnp.swapaxes(A, -1, -2)))
        return jnp.sum(W * L) + jnp.sum(jnp.log(jnp.diagonal(L, axis1=-2, axis2=-1)))

    assert_close(
        jax.grad(loss, 1)(small.cholesky, A),
        jax.grad(loss, 1)(jnp.linalg.cholesky, A),
        rtol=1e-10,
        atol=1e-12,
    )


def test_fitting_programs_call_no_lapack_factorisation():
    """jaxlib's batched CPU Cholesky can deadlock when two large ones run at once (see
    `_small_linalg`): neither the covariances' factors nor the per-row factors of the
    missing-value programs use it."""
    X = np.random.default_rng(2).normal(size=(64, 3))
    X[::3, 1] = np.nan
    gmm = gj.GMM(jnp.ones(2) / 2, jnp.zeros((2, 3)), jnp.stack([jnp.eye(3)] * 2), "full")
    from gmmjax import _missing

    def grad_of_density(means):
        g = gj.GMM(gmm.weights, means, gmm.covariances, "full")
        return jnp.sum(_missing.marginal_log_gaussian(g, jnp.asarray(X)))

    programs = {
        "e_step": jax.jit(
            lambda g: _missing.e_statistics(g, X, sample_weight=None, shift=g.means)
        ).lower(gmm),
        "gradient": jax.jit(jax.grad(grad_of_density)).lower(gmm.means),
        "draw": jax.jit(_missing.conditional_draw).lower(gmm, X, jax.random.key(0)),
        "precisions": jax.jit(precision_cholesky, static_argnums=1).lower(gmm.covariances, "full"),
        "gradient parameters": jax.jit(to_unconstrained).lower(gmm),
        "sample": jax.jit(lambda g: gj.sample(g, 100, key=jax.random.key(0))).lower(gmm),
    }
    for name, lowered in programs.items():
        text = lowered.as_text()
        assert "potrf" not in text, name  # LAPACK's Cholesky (lapack_dpotrf_ffi)
