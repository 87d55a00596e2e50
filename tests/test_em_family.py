"""The EM family as methods: SQUAREM, DAAREM, online and incremental EM against EM itself.

Small data (faithful, 272 x 2, and 300-row blobs) so each method compiles once or twice; the
evidence against the literature and the R packages lives in benchmarks/bench_em_family.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close, blobs

import gmmjax as gj
from gmmjax._program import n_compiled
from gmmjax._stats import reshift, sufficient_statistics

KEY = jax.random.key(0)
ACCELERATED = ("squarem", "daarem")


@pytest.fixture(scope="module")
def faithful():
    X, _ = gj.load_dataset("faithful")
    return np.asarray(X, np.float64)


@pytest.fixture(
    scope="module",
    params=[1.0, pytest.param(0.5, marks=pytest.mark.slow)],
    ids=["c=1", "c=0.5"],
)
def em_optimum(request):
    """Three components at separation c (600 rows), EM from three k-means++ starts run to its
    fixed point (tol 0, 3000 steps). How many passes each method needs is measured in
    benchmarks/bench_em_family.py, not here."""
    X = gj.make_mixture(
        n_components=3,
        n_features=2,
        n_samples=600,
        separation=request.param,
        imbalance=2.0,
        eccentricity=3.0,
        seed=0,
    )[0]
    start = gj.initialize(X, 3, key=jax.random.split(KEY, 3), reg_covar=0.0, prior="mclust")
    kw = dict(key=KEY, init_params=start, n_restarts=3, prior="mclust")
    em = gj.fit(X, 3, tol=0.0, max_iter=3000, **kw)
    hist = np.asarray(em.history)
    assert np.all(np.abs(hist[:, -1] - hist[:, -2]) < 1e-14)  # EM has stopped moving
    return X, start, em


@pytest.mark.parametrize("method", ACCELERATED + ("incremental_em",))
def test_reaches_em_fixed_point(em_optimum, method):
    X, start, em = em_optimum
    res = gj.fit(
        X,
        3,
        key=KEY,
        method=method,
        init_params=start,
        n_restarts=3,
        prior="mclust",
        tol=1e-13,
        max_iter=3000,
    )
    assert np.all(np.asarray(res.status) == gj.Status.CONVERGED)
    assert_close(res.objective, em.objective, rtol=1e-8)


@pytest.mark.parametrize("method", [gj.SQUAREM, gj.DAAREM])
def test_strict_mode_never_decreases(method):
    # Overlapping components, where extrapolation overshoots: without the safeguard
    # (mon_tol = inf) the objective does drop, so the strict run below is a real test.
    X = gj.make_mixture(n_components=3, n_features=2, n_samples=300, separation=0.5, seed=2)[0]
    kw = dict(key=KEY, n_restarts=4, prior="mclust", tol=0.0, max_iter=200)

    def steps(res):
        hist = np.asarray(res.history)
        diffs = np.diff(hist, axis=1)
        return diffs[np.isfinite(diffs)], np.abs(hist[np.isfinite(hist)]).max()

    free, _ = steps(gj.fit(X, 3, method=method(mon_tol=float("inf")), **kw))
    assert free.min() < -1e-4
    strict, scale = steps(gj.fit(X, 3, method=method(mon_tol=0.0), **kw))
    assert strict.size > 100
    # Rounding of f itself (~1e-16 relative) is the only slack.
    assert strict.min() >= -1e-13 * scale


def test_online_em_with_one_batch_and_unit_steps_is_em(faithful):
    start = gj.initialize(faithful, 3, key=jax.random.split(KEY, 2), reg_covar=0.0)
    kw = dict(key=KEY, init_params=start, n_restarts=2, reg_covar=1e-6, tol=0.0, max_iter=25)
    em = gj.fit(faithful, 3, method="em", **kw)
    exact = gj.OnlineEM(batch_size=len(faithful), step_exponent=0.0, warmup=0.0, average_from=1.0)
    online = gj.fit(faithful, 3, method=exact, **kw)
    assert_close(online.history, em.history, rtol=1e-12)
    for a, b in zip(jax.tree.leaves(online.params), jax.tree.leaves(em.params), strict=True):
        assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "cov_type",
    ["full", *(pytest.param(c, marks=pytest.mark.slow) for c in ("diag", "spherical", "tied"))],
)
def test_incremental_em_with_one_block_is_em(cov_type):
    X = blobs(3, n=300, d=3, k=3)
    kw = dict(key=KEY, cov_type=cov_type, n_restarts=2, prior="mclust", tol=0.0, max_iter=15)
    em = gj.fit(X, 3, method="em", **kw)
    one = gj.fit(X, 3, method=gj.IncrementalEM(n_blocks=1), **kw)
    assert_close(one.history, em.history, rtol=1e-12)
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(em.params), strict=True):
        assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "method",
    [
        "squarem",
        pytest.param("daarem", marks=pytest.mark.slow),
        pytest.param(gj.IncrementalEM(n_blocks=4), marks=pytest.mark.slow),
    ],
)
def test_vmapped_equals_sequential(faithful, method):
    kw = dict(key=KEY, prior="mclust", tol=1e-10, max_iter=40)
    start = gj.initialize(faithful, 2, key=jax.random.split(KEY, 3), prior="mclust")
    together = gj.fit(faithful, 2, method=method, init_params=start, n_restarts=3, **kw)
    for r in range(3):
        # One restart runs unbatched (`map_restarts`): a different program, the same numbers.
        alone = gj.fit(faithful, 2, method=method, init_params=start[r], **kw)
        assert_close(alone.history[0], together.history[r], rtol=1e-10)
        assert_close(alone.objective[0], together.objective[r], rtol=1e-10)


@pytest.mark.slow
def test_online_em_order_is_reproducible_and_keyed(faithful):
    method = gj.OnlineEM(batch_size=32)
    kw = dict(method=method, n_restarts=2, prior="mclust", tol=0.0, max_iter=3)
    a = gj.fit(faithful, 2, key=KEY, **kw)
    b = gj.fit(faithful, 2, key=KEY, **kw)
    c = gj.fit(faithful, 2, key=jax.random.key(1), init_params=a.params, **kw)
    d = gj.fit(faithful, 2, key=jax.random.key(2), init_params=a.params, **kw)
    assert_close(a.history, b.history, rtol=0)
    # Same starts, other keys: other minibatch orders, other iterates.
    assert not np.allclose(np.asarray(c.objective), np.asarray(d.objective), rtol=1e-9)
    # Several passes of small batches still end near the batch optimum (within 0.5%).
    best = gj.fit(faithful, 2, key=KEY, prior="mclust", n_restarts=2, tol=1e-10, max_iter=500)
    assert float(a.objective.max()) > float(best.objective.max()) - 5e-3 * abs(
        float(best.objective.max())
    )


def test_options_are_traced_not_compiled_in(faithful):
    kw = dict(key=KEY, prior="mclust", n_restarts=2, tol=0.0, max_iter=20)
    cases = [
        (gj.SQUAREM(mon_tol=1.0), gj.SQUAREM(mon_tol=0.0, step_max0=2.0, mstep=2.0)),
        (gj.DAAREM(mon_tol=0.01), gj.DAAREM(mon_tol=0.0, kappa=5.0, alpha=2.0)),
        (gj.OnlineEM(batch_size=64), gj.OnlineEM(batch_size=64, step_exponent=0.9, warmup=0.0)),
    ]
    for first, second in cases:
        a = gj.fit(faithful, 2, method=first, **kw)
        before = n_compiled()
        b = gj.fit(faithful, 2, method=second, **kw)
        assert n_compiled() == before, first
        # The new numbers reach the program: the runs differ.
        assert not np.array_equal(np.asarray(a.history), np.asarray(b.history), equal_nan=True)


def test_reshift_matches_statistics_taken_about_the_new_shift():
    X = blobs(5, n=200, d=3, k=2)
    resp = jax.nn.softmax(jax.random.normal(KEY, (200, 2)), axis=1)
    old = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3)))
    new = jnp.asarray(np.random.default_rng(1).normal(size=(2, 3)) * 3)
    for cov_type in ("full", "diag", "spherical", "tied"):
        moved = reshift(sufficient_statistics(X, resp, cov_type=cov_type, shift=old), new)
        direct = sufficient_statistics(X, resp, cov_type=cov_type, shift=new)
        for a, b in zip(jax.tree.leaves(moved), jax.tree.leaves(direct), strict=True):
            assert_close(a, b, rtol=1e-12, atol=1e-10, err_msg=cov_type)


def test_online_em_streams_a_memmap(tmp_path, faithful):
    """Host-streamed data: minibatches are chunks read in a keyed order; with one batch and
    unit steps it is EM on the memmap."""
    path = tmp_path / "rows.npy"
    np.save(path, faithful)
    rows = np.load(path, mmap_mode="r")
    assert isinstance(rows, np.memmap)
    kw = dict(key=KEY, prior="mclust", tol=0.0, max_iter=5)
    em = gj.fit(faithful, 2, method="em", **kw)
    exact = gj.OnlineEM(batch_size=len(faithful), step_exponent=0.0, warmup=0.0, average_from=1.0)
    streamed = gj.fit(rows, 2, method=exact, **kw)
    # The streamed fit initialises on the same (all-row) sample: same start, same EM.
    assert_close(streamed.history, em.history, rtol=1e-10)
    small = gj.fit(rows, 2, method=gj.OnlineEM(batch_size=50), **{**kw, "max_iter": 2})
    assert np.all(np.isfinite(np.asarray(small.objective)))
    assert np.all(np.asarray(small.n_iter) == 2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method=gj.SQUAREM(mstep=1.0)), "mstep"),
        (dict(method=gj.SQUAREM(step_max0=0.5)), "step_max0"),
        (dict(method=gj.DAAREM(alpha=1.0)), "alpha"),
        (dict(method=gj.OnlineEM(step_exponent=1.5)), "step_exponent"),
        (dict(method=gj.OnlineEM(average_from=float("nan"))), "average_from"),
        (dict(method="online_em", chunk_size=64), "chunk_size"),
        (dict(method="squarem", learning_rate=0.1), "learning_rate"),
        (dict(method="daarem", batch_size=10), "batch_size"),
    ],
)
def test_bad_options_are_refused_before_tracing(faithful, kwargs, match):
    with pytest.raises(ValueError, match=match):
        gj.fit(faithful, 2, key=KEY, **kwargs)


@pytest.mark.parametrize("bad", [dict(order=0), dict(order=2.5)])
def test_daarem_order_is_a_positive_integer(bad):
    with pytest.raises(ValueError, match="order"):
        gj.DAAREM(**bad)


@pytest.mark.slow
def test_compare_runs_the_family_beside_the_gradient_methods(faithful):
    methods = ("em", "squarem", "daarem", "online_em", "incremental_em", "lbfgs")
    c = gj.compare(
        faithful, 2, key=KEY, methods=methods, n_restarts=2, max_iter=60, tol=1e-8, prior="mclust"
    )
    rows = {r["method"]: r for r in c.rows}
    assert set(rows) == set(methods)
    # faithful with K = 2 has one basin from these starts: every batch method reaches it.
    for m in ("em", "squarem", "daarem", "incremental_em", "lbfgs"):
        assert rows[m]["reach_best"] == 1.0, m
        assert np.isfinite(rows[m]["evals_to_best"]), m


def test_incremental_em_on_rows_stored_in_cluster_order():
    """Blocks of one cluster each: with every block's statistics filled by the first E-step
    pass, no component collapses before the other blocks are seen."""
    X = blobs(4, n=600, d=2, k=3, sep=8.0)  # rows grouped by component
    kw = dict(key=KEY, n_restarts=2, reg_covar=0.0, tol=1e-10, max_iter=200)
    em = gj.fit(X, 3, method="em", **kw)
    inc = gj.fit(X, 3, method=gj.IncrementalEM(n_blocks=3), **kw)
    assert np.all(np.asarray(inc.status) == gj.Status.CONVERGED)
    assert_close(inc.objective, em.objective, rtol=1e-9)


def test_damping_search_matches_the_r_package():
    """`_find_damping` against daarem's DampingFind (tests/fixtures/daarem_damping.R)."""
    import json
    from pathlib import Path

    from gmmjax._daarem import _find_damping

    cases = json.loads((Path(__file__).parent / "fixtures" / "daarem_damping.json").read_text())
    for case in cases["cases"]:
        lam, r = _find_damping(
            jnp.atleast_1d(jnp.asarray(case["uy_sq"])),
            jnp.atleast_1d(jnp.asarray(case["d"])),
            case["alpha"],
            case["kappa"],
            case["shrink"],
            case["lambda_start"],
            case["r_start"],
        )
        assert_close(lam, case["lambda"], rtol=1e-8, err_msg=str(case))
        # r is a Newton correction that goes to 0 at convergence: compare on lambda's scale.
        assert_close(r, case["r"], rtol=1e-8, atol=1e-8 * abs(case["lambda"]), err_msg=str(case))


@pytest.mark.slow
@pytest.mark.parametrize("cov_type", ["diag", "spherical", "tied"])
@pytest.mark.parametrize("method", ACCELERATED)
def test_accelerated_methods_on_every_covariance_type(cov_type, method):
    X = gj.make_mixture(n_components=3, n_features=3, n_samples=400, separation=1.0, seed=3)[0]
    kw = dict(key=KEY, cov_type=cov_type, n_restarts=2, prior="mclust", max_iter=4000)
    em = gj.fit(X, 3, tol=0.0, **kw)
    res = gj.fit(X, 3, method=method, tol=1e-13, **kw)
    assert np.all(np.asarray(res.status) == gj.Status.CONVERGED)
    assert_close(res.objective, em.objective, rtol=1e-8)


@pytest.mark.slow
@pytest.mark.parametrize(
    "method", ["squarem", "daarem", "incremental_em", gj.OnlineEM(batch_size=50)]
)
def test_float32_runs_every_family_member(method):
    X = gj.make_mixture(n_components=3, n_features=2, n_samples=500, separation=1.0, seed=0)[0]
    X32 = (X + 100.0).astype(np.float32)  # offset data: the centring and shifts must hold
    kw = dict(key=KEY, n_restarts=2, prior="mclust", max_iter=300)
    em = gj.fit(X + 100.0, 3, tol=1e-12, **kw)
    res = gj.fit(X32, 3, method=method, tol=1e-6, **kw)
    assert res.objective.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(res.objective)))
    assert not np.any(np.asarray(gj.Status.NON_FINITE == res.status))
    rtol = 1e-3 if isinstance(method, gj.OnlineEM) else 1e-5
    assert float(res.objective.max()) >= float(em.objective.max()) * (1 + rtol)
