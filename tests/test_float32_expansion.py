"""float32's choice between the expanded quadratic forms (fast) and explicit differences (exact).

The E-step pass expands in float32 only while the bound `expansion_error` is small for every
restart, decided once per pass and shared by the restarts, so `lax.cond` runs one branch.
The fits' agreement with float64 on both sides of the line is in test_first_fit.py.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from conftest import assert_close

from gmmjax import GMM, _em
from gmmjax._em import _fused_e_statistics, streamed_e_statistics
from gmmjax._likelihood import EXPANSION_TOLERANCE, expansion_error, expansion_is_accurate
from gmmjax._solver import map_restarts
from gmmjax._stats import chunk_rows


def _gmm(offset, dtype=np.float32, scale=1.0):
    means = np.array([[-1.0, 0.5], [1.0, -0.5]]) + offset
    covariances = np.stack([np.eye(2) * scale**2] * 2)
    return GMM(np.array([0.5, 0.5], dtype), means.astype(dtype), covariances.astype(dtype), "full")


def test_expansion_bound_is_the_squared_distance_of_the_origin_times_eps():
    """Unit covariances: ‖|U|ᵀ|μ|‖² is ‖μ‖², so the bound is ε·max_k ‖μ_k‖²; it scales as
    d² with the distance in standard deviations."""
    eps = np.finfo(np.float32).eps
    assert_close(expansion_error(_gmm(0.0)), eps * 1.25, rtol=1e-6)
    assert_close(expansion_error(_gmm(0.0, scale=0.1)), eps * 125.0, rtol=1e-5)
    assert_close(expansion_error(_gmm(100.0)), eps * (101**2 + 99.5**2), rtol=1e-5)


def test_components_of_weight_zero_do_not_count():
    """`select`'s padded programs mask components with weight 0; a far or narrow masked one
    must not send the pass to the slow path."""
    gmm = _gmm(0.0)
    far = GMM(
        np.array([1.0, 0.0], np.float32),
        np.array([[1.0, 0.0], [1e4, 1e4]], np.float32),
        gmm.covariances,
        "full",
    )
    assert_close(expansion_error(far), np.finfo(np.float32).eps, rtol=1e-6)
    assert bool(expansion_is_accurate(far))


def test_float32_expands_near_the_origin_only():
    assert bool(expansion_is_accurate(_gmm(0.0)))
    far = np.sqrt(2 * EXPANSION_TOLERANCE / np.finfo(np.float32).eps)  # ε·d² = 2 x tolerance
    assert not bool(expansion_is_accurate(_gmm(far)))
    assert bool(expansion_is_accurate(_gmm(1e6, dtype=np.float64)))  # float64: always


def test_a_failed_restart_does_not_force_the_explicit_path():
    # Inside a fit a failed restart's parameters are NaN; constructing one needs tracing.
    nan = jax.jit(lambda g: eqx.tree_at(lambda h: h.means, g, g.means * jnp.nan))
    assert bool(jax.jit(expansion_is_accurate)(nan(_gmm(0.0))))


def test_restarts_share_one_decision_and_one_branch_runs(monkeypatch):
    """Under map_restarts the decision is and-ed over restarts (one far restart sends all to the
    explicit path), and the pass is a real `cond`, not a select computing both branches."""
    monkeypatch.setattr(_em, "_SMALL_PASS", 0)  # these 64 rows stand for a large data set
    near, far = _gmm(0.0), _gmm(1e4)
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


def test_both_paths_give_the_same_statistics_near_the_origin():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 2)).astype(np.float32)
    data = chunk_rows(X, np.ones(300, np.float32), 128)
    gmm = _gmm(0.0)
    (fast, ll_fast), (exact, ll_exact) = (
        _fused_e_statistics(gmm, data, expand=expand) for expand in (True, False)
    )
    assert_close(ll_fast, ll_exact, rtol=1e-6)
    assert_close(fast.s1, exact.s1, rtol=1e-5, atol=1e-5)
    assert_close(fast.s2, exact.s2, rtol=1e-5, atol=1e-4)
