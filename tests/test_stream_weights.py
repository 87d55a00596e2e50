"""Weights of host-streamed fits (memmap): only their ratios matter, and a row of weight 0 has
no effect whatever it holds, as for in-memory data."""

import jax
import numpy as np
from conftest import assert_close

import gmmjax as gj


def test_streamed_zero_weight_rows_and_weight_scale(tmp_path):
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(size=(300, 2)), rng.normal(size=(300, 2)) + 5.0])
    w = rng.uniform(0.5, 2.0, len(X))
    start = gj.initialize(X, 2, key=jax.random.key(0))
    options = dict(key=jax.random.key(1), init_params=start, max_iter=10, tol=0.0, chunk_size=256)
    ref = gj.fit_em(X, 2, sample_weight=w, **options)

    # The same rows with 100 rows of weight 0 holding 1e200 between them, weights x 1e-300.
    junk = np.full((100, 2), 1e200)
    path = tmp_path / "x.npy"
    np.save(path, np.concatenate([X[:200], junk, X[200:]]))
    w_all = np.concatenate([w[:200], np.zeros(100), w[200:]]) * 1e-300
    streamed = gj.fit_em(np.load(path, mmap_mode="r"), 2, sample_weight=w_all, **options)
    for name in ("weights", "means", "covariances"):
        assert_close(getattr(streamed.best, name), getattr(ref.best, name), rtol=1e-10, atol=1e-12)
    assert_close(streamed.log_likelihood, ref.log_likelihood, rtol=1e-10)
