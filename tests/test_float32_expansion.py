"""The passes' choice between the expanded quadratic forms (fast) and explicit differences
(exact), in float32 and float64.

The E-step pass expands only while the bound `expansion_error` is below the dtype's tolerance
for every restart, decided once per pass and shared by the restarts, so `lax.cond` runs one branch.
The fits' agreement with float64 on both sides of the line is in test_first_fit.py.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close

from gmmjax import GMM, _em
from gmmjax._em import _fused_e_statistics, streamed_e_statistics
from gmmjax._likelihood import (
    EXPANSION_TOLERANCE,
    EXPANSION_TOLERANCE_FLOAT64,
    expansion_error,
    expansion_is_accurate,
)
from gmmjax._solver import map_restarts
from gmmjax._stats import chunk_rows


def _gmm(offset, dtype=np.float32, scale=1.0, cov_type="full"):
    means = np.array([[-1.0, 0.5], [1.0, -0.5]]) + offset
    variances = scale**2 * np.array([[1.0, 0.6], [0.8, 1.2]])  # (K, D)
    covariances = {
        "full": np.stack([np.diag(v) + 0.1 * scale**2 for v in variances]),
        "tied": np.diag(variances[0]) + 0.1 * scale**2,
        "diag": variances,
        "spherical": variances[:, 0],
    }[cov_type]
    weights = np.array([0.5, 0.5], dtype)
    return GMM(weights, means.astype(dtype), covariances.astype(dtype), cov_type)


def test_expansion_bound_is_the_squared_distance_of_the_origin_times_eps():
    """Spherical covariances σ_k² I: ‖|U_k|ᵀ|μ_k|‖² is ‖μ_k‖²/σ_k², so the bound is
    ε·max_k ‖μ_k‖²/σ_k² (here σ² = 1 and 0.8); it scales as d² with the distance in standard
    deviations."""
    eps = np.finfo(np.float32).eps
    assert_close(expansion_error(_gmm(0.0, cov_type="spherical")), eps * 1.25 / 0.8, rtol=1e-6)
    assert_close(
        expansion_error(_gmm(0.0, scale=0.1, cov_type="spherical")), eps * 125 / 0.8, rtol=1e-5
    )
    far = _gmm(100.0, cov_type="spherical")
    assert_close(expansion_error(far), eps * (101**2 + 99.5**2) / 0.8, rtol=1e-5)
    # Every layout: the bound equals ε·max_k ‖|U_k|ᵀ|μ_k|‖² computed here with NumPy.
    for cov_type in ("full", "tied", "diag"):
        gmm = _gmm(3.0, cov_type=cov_type)
        U = np.abs(np.asarray(gmm.precisions_cholesky, np.float64))
        mu = np.abs(np.asarray(gmm.means, np.float64))
        if cov_type == "diag":
            d2 = np.sum(np.square(mu * U), axis=-1)
        else:
            U = U if cov_type == "full" else np.stack([U, U])
            d2 = np.sum(np.square(np.einsum("kd,kde->ke", mu, U)), axis=-1)
        assert_close(expansion_error(gmm), eps * d2.max(), rtol=1e-5)


def test_components_of_weight_zero_do_not_count():
    """`select`'s padded programs mask components with weight 0; a far or narrow masked one
    must not send the pass to the slow path."""
    gmm = _gmm(0.0, cov_type="spherical")  # σ² = 1 for the first component
    far = GMM(
        np.array([1.0, 0.0], np.float32),
        np.array([[1.0, 0.0], [1e4, 1e4]], np.float32),
        gmm.covariances,
        "spherical",
    )
    assert_close(expansion_error(far), np.finfo(np.float32).eps, rtol=1e-6)
    assert bool(expansion_is_accurate(far))


def test_float32_expands_near_the_origin_only():
    assert bool(expansion_is_accurate(_gmm(0.0)))
    far = np.sqrt(2 * EXPANSION_TOLERANCE / np.finfo(np.float32).eps)  # ε·d² ≈ 4 x tolerance
    assert not bool(expansion_is_accurate(_gmm(far)))


def test_float64_expands_near_the_origin_only():
    """float64 has its own, smaller tolerance: a component a few hundred standard deviations
    from the expansion's centre (a far, tight component) goes to the explicit differences."""
    eps = np.finfo(np.float64).eps
    assert bool(expansion_is_accurate(_gmm(0.0, dtype=np.float64)))
    near = np.sqrt(0.25 * EXPANSION_TOLERANCE_FLOAT64 / eps)  # ε·d² ≈ tolerance / 4
    far = np.sqrt(2 * EXPANSION_TOLERANCE_FLOAT64 / eps)  # ε·d² ≈ 4 x tolerance
    assert bool(expansion_is_accurate(_gmm(near, dtype=np.float64)))
    assert not bool(expansion_is_accurate(_gmm(far, dtype=np.float64)))
    # A tight component near the origin is far in its own standard deviations (d ≈ 2e4).
    assert not bool(expansion_is_accurate(_gmm(1.0, dtype=np.float64, scale=1e-4)))


def test_non_finite_parameters_do_not_force_the_explicit_path():
    """NaN or infinite iterates (an extrapolation or step that will be rejected) do not vote;
    constructing them needs tracing (the GMM constructor refuses them)."""
    nan = jax.jit(lambda g: eqx.tree_at(lambda h: h.means, g, g.means * jnp.nan))
    inf = jax.jit(lambda g: eqx.tree_at(lambda h: h.means, g, g.means * jnp.inf))
    assert bool(jax.jit(expansion_is_accurate)(nan(_gmm(0.0))))
    assert bool(jax.jit(expansion_is_accurate)(inf(_gmm(0.0))))


@pytest.mark.parametrize("cov_type", ["full", "tied", "diag", "spherical"])
def test_restarts_share_one_decision_and_one_branch_runs(monkeypatch, cov_type):
    """Under map_restarts the decision is and-ed over restarts (one far restart sends all to the
    explicit path), and the pass is a real `cond`, not a select computing both branches (which
    also checks that both branches give statistics of the same shapes in every layout)."""
    monkeypatch.setattr(_em, "_SMALL_PASS", 0)  # these 64 rows stand for a large data set
    near, far = _gmm(0.0, cov_type=cov_type), _gmm(1e4, cov_type=cov_type)
    both = jax.tree.map(lambda a, b: jnp.stack([a, b]), near, far)
    nears = jax.tree.map(lambda a, b: jnp.stack([a, b]), near, near)
    decide = jax.jit(lambda g: map_restarts(expansion_is_accurate, g))
    assert not np.any(decide(both))
    assert np.all(decide(nears))

    X = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
    data = chunk_rows(X, np.ones(64, np.float32), 32)
    jaxpr = jax.make_jaxpr(lambda g: map_restarts(lambda h: streamed_e_statistics(h, data), g))(
        both
    )
    text = str(jaxpr)
    assert "cond[" in text and "pmin" in text


def test_small_data_keep_to_the_differences():
    """A pass too small to gain from the expansion compiles the explicit kernel alone."""
    X = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
    data = chunk_rows(X, np.ones(64, np.float32), 32)
    text = str(jax.make_jaxpr(lambda g: streamed_e_statistics(g, data))(_gmm(0.0)))
    assert "cond[" not in text and "pmin" not in text


@pytest.mark.parametrize("cov_type", ["full", "tied", "diag", "spherical"])
def test_both_paths_give_the_same_statistics_near_the_origin(cov_type):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 2)).astype(np.float32)
    data = chunk_rows(X, np.ones(300, np.float32), 128)
    gmm = _gmm(0.0, cov_type=cov_type)
    (fast, ll_fast), (exact, ll_exact) = (
        _fused_e_statistics(gmm, data, expand=expand) for expand in (True, False)
    )
    assert_close(ll_fast, ll_exact, rtol=1e-6)
    assert_close(fast.s1, exact.s1, rtol=1e-5, atol=1e-5)
    assert_close(fast.s2, exact.s2, rtol=1e-5, atol=1e-4)


def test_pass_expands_reports_the_passes_rule(monkeypatch):
    """The host-side report (`_em.pass_expands`, for benchmarks) follows the pass's rule."""
    stack = lambda a, b: jax.tree.map(lambda x, y: jnp.stack([x, y]), a, b)  # noqa: E731
    near = stack(_gmm(0.0), _gmm(0.0))
    assert not _em.pass_expands(near, 64)  # a small pass keeps to the differences
    assert _em.pass_expands(stack(_gmm(0.0, np.float64), _gmm(1.0, np.float64)), 64)
    assert not _em.pass_expands(stack(_gmm(0.0, np.float64), _gmm(1e6, np.float64)), 64)
    monkeypatch.setattr(_em, "_SMALL_PASS", 0)
    assert _em.pass_expands(near, 64)
    assert not _em.pass_expands(stack(_gmm(0.0), _gmm(1e4)), 64)
