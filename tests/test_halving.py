"""Successive halving over restarts: the schedule, continuity with plain EM, statuses."""

import jax
import numpy as np
import pytest
from conftest import assert_close, blobs

import gmmjax as gj
from gmmjax._fit import trace_counts
from gmmjax._halving import halving_schedule


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
    before = trace_counts["fit_em"]
    gj.fit_em(X, 4, halving_every=5, **{**kw, "tol": 1e-3, "key": jax.random.key(9)})
    assert trace_counts["fit_em"] == before


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
