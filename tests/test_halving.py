"""Successive halving over restarts: the schedule, continuity with plain EM, statuses."""

import jax
import numpy as np
import pytest
from conftest import assert_close, blobs

import gmmjax as gj
from gmmjax._halving import halving_schedule
from gmmjax._program import n_compiled


def test_schedule_halves_down_to_the_survivors():
    assert halving_schedule(16, 10, 1, 100) == ((16, 10), (8, 10), (4, 10), (2, 10), (1, 60))
    assert halving_schedule(6, 5, 2, 100) == ((6, 5), (3, 5), (2, 90))
    # max_iter runs out first: the last stage is what is left, still with 4 restarts alive.
    assert halving_schedule(16, 10, 1, 25) == ((16, 10), (8, 10), (4, 5))
    assert halving_schedule(8, 10, 8, 50) == ((8, 50),)


@pytest.fixture(scope="module")
def fits():
    X = blobs(11, n=600, d=2, k=4, sep=1.2)
    kw = dict(key=jax.random.key(4), n_restarts=8, init="random_from_data", max_iter=40, tol=0.0)
    plain = gj.fit_em(X, 4, **kw)
    halved = gj.fit_em(X, 4, halving_every=5, **kw)
    return X, kw, plain, halved


def test_restarts_follow_plain_em_until_pruned(fits):
    _, _, plain, halved = fits
    n_iter = np.asarray(halved.n_iter)
    status = np.asarray(halved.status)
    # tol=0: nothing converges, so the stages are 8x5, 4x5, 2x5, 1x25 iterations.
    assert sorted(n_iter.tolist()) == [5, 5, 5, 5, 10, 10, 15, 40]
    assert (status == gj.Status.PRUNED).sum() == 7
    assert status[n_iter == 40] == gj.Status.MAX_ITER_REACHED
    for r in range(8):  # same start, same steps: the history is plain EM's, cut at pruning
        t = n_iter[r]
        assert_close(halved.history[r, :t], plain.history[r, :t], rtol=1e-12)
        assert np.all(np.isnan(halved.history[r, t:]))
        assert_close(halved.evals[r, :t], plain.evals[r, :t], rtol=0)
    survivor = int(np.argmax(n_iter))
    assert int(halved.best_index) == survivor  # a pruned restart never wins
    assert_close(halved.best.means, plain.params[survivor].means, rtol=1e-10, atol=1e-12)
    assert float(halved.n_evals.sum()) == 8 * 5 + 4 * 5 + 2 * 5 + 25
    # Pruning kept the restarts that led at each cut.
    leader_at_5 = np.argsort(np.asarray(plain.history[:, 4]))[::-1][:4]
    assert set(np.flatnonzero(n_iter >= 10)) == set(leader_at_5.tolist())


def test_no_pruning_equals_plain_em_and_tol_does_not_recompile(fits):
    X, kw, plain, _ = fits
    same = gj.fit_em(X, 4, halving_every=5, halving_survivors=8, **kw)
    assert_close(same.history, plain.history, rtol=1e-12)
    assert_close(same.log_likelihood, plain.log_likelihood, rtol=1e-12)
    before = n_compiled()
    gj.fit_em(X, 4, halving_every=5, **{**kw, "tol": 1e-3, "key": jax.random.key(9)})
    assert n_compiled() == before


@pytest.mark.parametrize(
    ("every", "survivors", "match"),
    [
        (0, 1, "halving_every"),
        (2.5, 1, "halving_every"),
        (5, 0, "halving_survivors"),
        (5, 9, "halving_survivors"),
    ],
)
def test_bad_halving_options(fits, every, survivors, match):
    X, kw, _, _ = fits
    with pytest.raises(ValueError, match=match):
        gj.fit_em(X, 4, halving_every=every, halving_survivors=survivors, **kw)


@pytest.mark.parametrize("method", ["em", pytest.param("lbfgs", marks=pytest.mark.slow)])
def test_tol_carries_across_stages(method):
    """With tol > 0 the solver state carries the tol test across cuts: every restart that
    survives to the end has the plain loop's history, n_iter and status, and restarts that
    finished before a cut keep their own status; gradient methods halve the same way."""
    X = blobs(11, n=600, d=2, k=4, sep=1.2)
    kw = dict(
        key=jax.random.key(4),
        method=method,
        n_restarts=8,
        init="random_from_data",
        max_iter=60,
        tol=1e-4 if method == "em" else 1e-7,
    )
    plain = gj.fit(X, 4, **kw)
    halved = gj.fit(X, 4, halving_every=4, halving_survivors=2, **kw)
    # A batch of 2 restarts sums in another order than a batch of 8: EM's histories agree to
    # rounding; L-BFGS's line search lets that rounding grow over 60 steps (seen: 3e-12).
    rtol = 1e-12 if method == "em" else 1e-9
    status, n_iter = np.asarray(halved.status), np.asarray(halved.n_iter)
    finished = status != gj.Status.PRUNED
    assert finished.sum() >= 2 and (status == gj.Status.PRUNED).sum() >= 1
    assert np.any(np.asarray(plain.n_iter)[finished] > 4)  # some ran through several cuts
    for r in np.flatnonzero(finished):
        assert int(n_iter[r]) == int(plain.n_iter[r])
        assert int(status[r]) == int(plain.status[r])
        assert_close(halved.history[r], plain.history[r], rtol=rtol)
    for r in np.flatnonzero(~finished):  # pruned: plain's history up to the cut
        t = n_iter[r]
        assert t < int(plain.n_iter[r])
        assert_close(halved.history[r, :t], plain.history[r, :t], rtol=rtol)
    assert gj.Status(int(halved.status[halved.best_index])).succeeded
