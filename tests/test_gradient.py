"""The gradient baseline: bijection, gradients, agreement with EM, status codes, compile count."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import assert_close, blobs, random_gmm
from hypothesis import given, settings
from hypothesis import strategies as st

import gmmjax as gj
from gmmjax._program import n_compiled


def test_round_trip_is_exact(cov_type):
    gmm = random_gmm(1, 4, 3, cov_type)
    back = gj.from_unconstrained(gj.to_unconstrained(gmm))
    assert_close(back.weights, gmm.weights, rtol=1e-12)
    assert_close(back.means, gmm.means, rtol=1e-12)
    assert_close(back.covariances, gmm.covariances, rtol=1e-12, atol=1e-14)
    u = gj.to_unconstrained(gmm)
    assert_close(jnp.sum(u.logits), 0.0, rtol=0, atol=1e-12)  # the gauge is fixed
    u2 = gj.to_unconstrained(back)
    for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(u2), strict=True):
        assert_close(a, b, rtol=1e-12, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([1e-3, 1.0, 3.0]))
def test_every_unconstrained_value_is_a_valid_gmm(seed, scale):
    """Constraints hold by construction: any unconstrained point maps to a feasible GMM.

    Exact in arithmetic; in float64 Σ = LLᵀ stays numerically positive definite while its
    condition number is below ~1e15, hence the clip of the log-scales to [-5, 5]."""
    rng = np.random.default_rng(seed)
    for cov_type in ("full", "diag", "spherical", "tied"):
        shape = {"full": (3, 2, 2), "tied": (2, 2), "diag": (3, 2), "spherical": (3,)}[cov_type]
        u = gj.Unconstrained(
            jnp.asarray(rng.normal(size=3) * scale),
            jnp.asarray(rng.normal(size=(3, 2))),
            jnp.asarray(np.clip(rng.normal(size=shape) * scale, -5, 5)),
            cov_type,
        )
        gj.from_unconstrained(u)  # concrete: the GMM constructor's value checks run and pass


def test_gradients_finite_at_the_boundaries(cov_type):
    X = blobs(2, n=100, d=2)
    gmm = random_gmm(3, 3, 2, cov_type)
    u = gj.to_unconstrained(gmm)
    # A weight near 0 and variances near 0 and very large.
    extreme = gj.Unconstrained(
        u.logits.at[0].set(-40.0),
        u.means,
        u.scale * 0 + jnp.where(u.scale != 0, 1.0, 0.0) * 8.0,
        cov_type,
    )
    tiny = gj.Unconstrained(u.logits, u.means, u.scale - 6.0, cov_type)

    def f(u):
        return gj.log_likelihood(gj.from_unconstrained(u), X) / 100

    for point in (extreme, tiny):
        g = jax.grad(f)(point)
        assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(g))


def test_grad_matches_central_differences(cov_type):
    X = blobs(4, n=200, d=2, sep=1.5)
    u = gj.to_unconstrained(random_gmm(5, 3, 2, cov_type))

    def f(u):
        return gj.log_likelihood(gj.from_unconstrained(u), X) / 200

    grad = jax.grad(f)(u)
    leaves, treedef = jax.tree.flatten(u)
    gleaves = jax.tree.leaves(grad)
    h = 1e-6
    for i, leaf in enumerate(leaves):
        for idx in np.ndindex(leaf.shape):
            if cov_type in ("full", "tied") and i == 2 and idx[-2] < idx[-1]:
                assert float(gleaves[i][idx]) == 0.0  # strictly upper triangle is unused
                continue
            plus = [lf.at[idx].add(h) if j == i else lf for j, lf in enumerate(leaves)]
            minus = [lf.at[idx].add(-h) if j == i else lf for j, lf in enumerate(leaves)]
            fd = (f(jax.tree.unflatten(treedef, plus)) - f(jax.tree.unflatten(treedef, minus))) / (
                2 * h
            )
            # Central differences: O(h²) truncation plus O(eps/h) rounding ≈ 1e-9.
            assert_close(gleaves[i][idx], fd, rtol=1e-6, atol=1e-8, err_msg=f"leaf {i} {idx}")


# tests/test_objective.py checks the same meeting point on the penalised objective by default.
@pytest.mark.slow
def test_em_and_lbfgs_reach_the_same_optimum(cov_type):
    truth = gj.GMM(
        np.array([0.5, 0.3, 0.2]),
        np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]]),
        np.stack([np.eye(2)] * 3),
    )
    X, _ = gj.sample(truth, 3000, key=jax.random.key(0))
    start = gj.initialize(X, 3, key=jax.random.key(1), cov_type=cov_type)
    # reg_covar=0: EM's fixed point is then the unregularised MLE that L-BFGS maximises.
    em = gj.fit_em(
        X,
        3,
        key=jax.random.key(0),
        cov_type=cov_type,
        init_params=start,
        max_iter=1000,
        tol=1e-12,
        reg_covar=0.0,
    )
    lb = gj.fit_gradient(
        X,
        3,
        key=jax.random.key(0),
        cov_type=cov_type,
        init_params=start,
        max_iter=500,
        tol=1e-12,
        grad_tol=1e-8,
    )
    assert int(em.status[0]) == gj.Status.CONVERGED
    assert int(lb.status[0]) == gj.Status.CONVERGED
    assert_close(lb.log_likelihood, em.log_likelihood, rtol=0, atol=1e-6)
    # The same components in the same order (same start), so no permutation is needed here.
    assert_close(lb.best.weights, em.best.weights, rtol=0, atol=1e-4)
    assert_close(lb.best.means, em.best.means, rtol=0, atol=1e-4)
    assert_close(lb.best.covariances, em.best.covariances, rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    "optimizer", [pytest.param("lbfgs", marks=pytest.mark.slow), "adam", "sgd"]
)
def test_every_iterate_is_feasible(optimizer):
    """Stop after t = 1, 2 and 5 steps: each iterate is a valid GMM (checked by the
    constructor, which runs on concrete values)."""
    X = blobs(6, n=300, d=2)
    start = gj.initialize(X, 3, key=jax.random.key(0))
    for t in (1, 2, 5):
        res = gj.fit_gradient(
            X, 3, key=jax.random.key(0), optimizer=optimizer, init_params=start, max_iter=t, tol=0.0
        )
        assert int(res.n_iter[0]) == t
        best = res.best
        gj.GMM(np.asarray(best.weights), np.asarray(best.means), np.asarray(best.covariances))


@pytest.mark.parametrize("optimizer", [pytest.param("lbfgs", marks=pytest.mark.slow), "adam"])
def test_vmapped_restarts_equal_one_at_a_time(optimizer):
    X = blobs(7, n=400, d=2, k=3, sep=2.0)
    key = jax.random.key(3)
    keys = jax.random.split(key, 3)
    # Bit-identical starts and a fixed chunk_size: L-BFGS's line search amplifies any other
    # rounding difference (a start computed in other chunks, another summation order).
    starts = gj.initialize(X, 3, key=keys, method="random_from_data")
    res = gj.fit_gradient(
        X,
        3,
        key=key,
        optimizer=optimizer,
        n_restarts=3,
        max_iter=40,
        init_params=starts,
        chunk_size=128,
    )
    for r, k_r in enumerate(keys):
        one = gj.fit_gradient(
            X, 3, key=k_r, optimizer=optimizer, init_params=starts[r], max_iter=40, chunk_size=128
        )
        assert int(one.n_iter[0]) == int(res.n_iter[r])
        assert_close(one.history[0], res.history[r], rtol=1e-10)
        # XLA fuses the batched program differently (rounding at 1e-16); L-BFGS's curvature
        # pairs carry that into flat directions of ℓ, where parameters drift ~1e-8 while ℓ
        # agrees to 1e-10 (above).
        assert_close(one.best.means, res.params[r].means, rtol=1e-7, atol=1e-8)


def test_diverging_optimizer_is_non_finite_and_never_wins():
    X = blobs(8, n=300, d=2)
    starts = gj.initialize(X, 3, key=jax.random.split(jax.random.key(0), 2))
    sane = gj.fit_gradient(
        X,
        3,
        key=jax.random.key(0),
        optimizer="sgd",
        init_params=starts,
        n_restarts=2,
        learning_rate=1e-2,
        max_iter=50,
    )
    with pytest.warns(RuntimeWarning, match="every restart failed"):
        wild = gj.fit_gradient(
            X,
            3,
            key=jax.random.key(0),
            optimizer="sgd",
            init_params=starts,
            n_restarts=2,
            learning_rate=1e12,
            max_iter=50,
        )
    assert np.all(np.asarray(wild.status) == gj.Status.NON_FINITE)
    assert np.all(np.asarray(sane.status) != gj.Status.NON_FINITE)
    for leaf in jax.tree.leaves(wild.params):  # the last finite iterate is returned
        assert np.all(np.isfinite(np.asarray(leaf)))


def test_failed_restart_loses_to_a_finite_one():
    X = blobs(9, n=300, d=2)
    good = gj.initialize(X, 3, key=jax.random.key(0))
    bad = gj.GMM(good.weights, good.means + 1e200, good.covariances)
    starts = jax.tree.map(lambda a, b: np.stack([a, b]), bad, good)
    res = gj.fit_gradient(
        X, 3, key=jax.random.key(0), init_params=starts, n_restarts=2, max_iter=30
    )
    assert int(res.status[0]) == gj.Status.NON_FINITE
    assert int(res.best_index) == 1


def test_no_retrace_when_learning_rate_tol_or_data_change():
    X1, X2 = blobs(10, n=300, d=2), blobs(11, n=300, d=2)
    gj.fit_gradient(
        X1, 3, key=jax.random.key(0), optimizer="adam", learning_rate=0.1, tol=1e-6, max_iter=20
    )
    before = n_compiled()
    gj.fit_gradient(
        X2,
        3,
        key=jax.random.key(1),
        optimizer="adam",
        learning_rate=0.01,
        tol=1e-3,
        grad_tol=1e-2,
        max_iter=20,
    )
    assert n_compiled() == before
    gj.fit_gradient(X2, 3, key=jax.random.key(1), optimizer="adam", max_iter=21)
    assert n_compiled() == before + 1


def test_minibatch_records_full_data_log_likelihood():
    X = blobs(12, n=1000, d=2, sep=4.0)
    res = gj.fit_gradient(
        X, 3, key=jax.random.key(0), optimizer="adam", batch_size=100, max_iter=30, tol=0.0
    )
    h = np.asarray(res.history[0])
    start = gj.initialize(X, 3, key=jax.random.split(jax.random.key(0), 1)[0])
    assert_close(h[0], gj.log_likelihood(start, X) / 1000, rtol=1e-12)
    assert_close(res.evals[0, -1], 29 * 0.1, rtol=1e-12)  # 29 minibatch gradients of 10%
    assert h[-1] > h[0]


def test_custom_optax_transformation_and_bad_options():
    X = blobs(13, n=200, d=2)
    res = gj.fit_gradient(X, 2, key=jax.random.key(0), optimizer=optax.rmsprop(1e-2), max_iter=10)
    assert np.isfinite(float(res.log_likelihood[0]))
    with pytest.raises(ValueError, match="optimizer must be one of"):
        gj.fit_gradient(X, 2, key=jax.random.key(0), optimizer="newton")
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        gj.fit_gradient(X, 2, key=jax.random.key(0), optimizer="adam", learning_rate=0.0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        gj.fit_gradient(X, 2, key=jax.random.key(0), batch_size=0)


def test_compare_table():
    truth = gj.GMM(
        np.array([0.6, 0.4]), np.array([[0.0, 0.0], [5.0, 5.0]]), np.stack([np.eye(2)] * 2)
    )
    X, _ = gj.sample(truth, 2000, key=jax.random.key(0))
    c = gj.compare(
        X,
        2,
        key=jax.random.key(1),
        methods=("em", "lbfgs"),
        n_restarts=2,
        init="random",
        true_params=truth,
    )
    assert [r["method"] for r in c.rows] == ["em", "lbfgs"]
    for row in c.rows:
        assert row["reach_best"] == 1.0 and row["failed"] == 0
        assert row["best_value"] >= c.best_value - 1e-4
        assert row["param_error"] < 0.15  # sampling error of 2000 points
        # Knowing ℓ(θ_t) costs at least t + 1 evaluations; EM spends exactly one per step.
        assert row["iters_to_best"] >= 1
        assert row["evals_to_best"] >= row["iters_to_best"] + 1
    assert c.rows[0]["evals_to_best"] == c.rows[0]["iters_to_best"] + 1
    assert c.histories["em"].shape == (2, 500)
    assert "evals_to_best" in str(c)
    # Both methods started from the same parameters.
    assert_close(c.histories["em"][:, 0], c.histories["lbfgs"][:, 0], rtol=1e-12)
