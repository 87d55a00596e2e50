"""Host-streamed fits (memmap, iterator of chunks) equal in-memory fits."""

import jax
import numpy as np
import pytest
from conftest import assert_close

import gmmjax as gj
from gmmjax._program import n_compiled
from gmmjax._stream import _READERS


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    X, _, _ = gj.make_mixture(n_samples=5003, n_components=3, n_features=3, separation=1.0)
    X = X + 50.0  # offset data: the stream must centre too
    path = tmp_path_factory.mktemp("stream") / "x.npy"
    np.save(path, X)
    return X, path


def _assert_same_params(a, b):
    for name in ("weights", "means", "covariances"):
        assert_close(getattr(a, name), getattr(b, name), rtol=1e-10, atol=1e-10, err_msg=name)


def _fit(X, **kw):
    options = dict(key=jax.random.key(1), max_iter=20, tol=0.0, chunk_size=700)
    return gj.fit_em(X, 3, **{**options, **kw})


def test_memmap_and_iterator_equal_in_memory(data, cov_type):
    X, path = data
    start = gj.initialize(X, 3, key=jax.random.key(2), cov_type=cov_type)
    ref = _fit(X, cov_type=cov_type, init_params=start)
    mm = _fit(np.load(path, mmap_mode="r"), cov_type=cov_type, init_params=start)
    it = _fit(iter(np.array_split(X, 9)), cov_type=cov_type, init_params=start)
    for res in (mm, it):
        _assert_same_params(res.params, ref.params)
        assert_close(res.history, ref.history, rtol=1e-12, atol=1e-12)
    assert not _READERS  # readers are released after each fit


# Slow (about 20 s); the other streaming tests keep memmap fits in the default run.
@pytest.mark.slow
def test_streamed_restarts_weights_gradient(data):
    X, path = data
    mm = np.load(path, mmap_mode="r")
    start = gj.initialize(X, 3, key=jax.random.key(2))
    w = np.random.default_rng(0).integers(0, 3, X.shape[0]).astype(float)
    ref = _fit(X, init_params=start, sample_weight=w)
    res = _fit(mm, init_params=start, sample_weight=w)
    _assert_same_params(res.params, ref.params)
    g_ref = gj.fit_gradient(X, 3, key=jax.random.key(1), init_params=start, max_iter=10)
    g = gj.fit_gradient(mm, 3, key=jax.random.key(1), init_params=start, max_iter=10)
    assert_close(g.log_likelihood, g_ref.log_likelihood, rtol=1e-10, atol=1e-10)
    # k-means++ on the streamed data's subsample (all of it here: N < 65,536 rows).
    many = _fit(mm, n_restarts=4, tol=1e-6, max_iter=200)
    assert np.all(np.asarray(many.status) == gj.Status.CONVERGED)
    best_in_memory = _fit(X, n_restarts=4, tol=1e-6, max_iter=200)
    assert float(many.log_likelihood.max()) == pytest.approx(
        float(best_in_memory.log_likelihood.max()), abs=1e-6
    )


def test_streamed_fit_compiles_once_per_shape(data, tmp_path):
    X, path = data
    other = tmp_path / "other.npy"
    np.save(other, X[::-1] * 2.0)
    _fit(np.load(path, mmap_mode="r"))
    before = n_compiled()
    _fit(np.load(other, mmap_mode="r"), tol=1e-3, reg_covar=1e-4, key=jax.random.key(7))
    assert n_compiled() == before


def test_streamed_input_errors(data, tmp_path):
    X, path = data
    bad = X.copy()
    bad[4000, 1] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(ValueError, match="NaN or inf"):
        _fit(np.load(tmp_path / "bad.npy", mmap_mode="r"))
    with pytest.raises(ValueError, match="same number of features"):
        _fit(iter([X[:100], X[100:200, :2]]))
    with pytest.raises(ValueError, match="empty"):
        _fit(iter([]))
    with pytest.raises(ValueError, match="exceeds the number of samples"):
        _fit(iter([X[:2]]))
    with pytest.raises(ValueError, match="cov_type"):
        _fit(np.load(path, mmap_mode="r"), cov_type="fll")
    with pytest.raises(ValueError, match="batch_size"):
        gj.fit_gradient(np.load(path, mmap_mode="r"), 3, key=jax.random.key(0), batch_size=64)
    assert not _READERS
