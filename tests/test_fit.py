"""fit_em end to end: recovery, chunking, sample weights, float32."""

import itertools

import jax
import numpy as np
import pytest
from conftest import assert_close, blobs

import gmmjax as gj


def _match(estimated, true):
    """Permutation of estimated components closest to the true means."""
    k = len(true)
    return min(
        itertools.permutations(range(k)),
        key=lambda p: np.sum((np.asarray(estimated)[list(p)] - true) ** 2),
    )


def test_recovers_well_separated_parameters():
    weights = np.array([0.5, 0.3, 0.2])
    means = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    truth = gj.GMM(weights, means, np.stack([np.eye(2)] * 3), "full")
    n = 6000
    X, _ = gj.sample(truth, n, key=jax.random.key(42))
    res = gj.fit_em(X, 3, key=jax.random.key(1), n_restarts=8)
    perm = list(_match(res.best.means, means))
    w_hat, mu_hat = np.asarray(res.best.weights)[perm], np.asarray(res.best.means)[perm]
    # Four standard errors: sqrt(w(1-w)/n) for weights, sqrt(1/(n w)) per mean coordinate.
    assert np.all(np.abs(w_hat - weights) < 4 * np.sqrt(weights * (1 - weights) / n))
    assert np.all(np.abs(mu_hat - means) < 4 * np.sqrt(1 / (n * weights))[:, None])
    assert np.all(res.converged)


def test_chunk_size_does_not_change_the_fit(cov_type):
    X = blobs(51, n=1000, d=3, k=3, sep=2.0)
    start = gj.initialize(X, 3, key=jax.random.key(0), cov_type=cov_type)
    fits = [
        gj.fit_em(
            X,
            3,
            key=jax.random.key(0),
            cov_type=cov_type,
            init_params=start,
            max_iter=30,
            tol=0.0,
            chunk_size=c,
        )
        for c in (1000, 300, 64)  # one chunk; uneven chunks with padding; many chunks
    ]
    for other in fits[1:]:
        assert_close(other.best.means, fits[0].best.means, rtol=1e-11, atol=1e-12)
        assert_close(other.best.covariances, fits[0].best.covariances, rtol=1e-11, atol=1e-12)
        assert_close(other.history, fits[0].history, rtol=1e-12)


@pytest.mark.parametrize(
    ("shape", "restarts", "cov_type", "dtype", "rows"),
    [
        ((100_000, 16, 16), 1, "full", "float64", 4096),  # φ's 136 columns cap it, not 2^18 / K
        ((100_000, 16, 16), 1, "full", "float32", 4096),
        ((100_000, 16, 16), 8, "full", "float64", 2048),
        ((100_000, 16, 16), 64, "full", "float64", 1024),  # the floor
        ((1_000_000, 8, 8), 1, "full", "float64", 8192),  # the expanded pass's ceiling
        ((1_000_000, 8, 8), 8, "full", "float32", 4096),
        ((100_000, 64, 32), 1, "diag", "float64", 8192),  # diag's features are x², D columns
        ((1_000_000, 2, 3), 1, "full", "float64", 8192),  # the ceiling again
        ((1_000_000, 2, 3), 1, "full", "float32", 65_536),  # differences only: no ceiling
        ((500, 16, 16), 1, "full", "float64", 500),  # never more than N
    ],
)
def test_default_chunk_rows_keep_the_chunk_arrays_cache_sized(
    shape, restarts, cov_type, dtype, rows
):
    from gmmjax._prepare import default_chunk_size

    n, d, k = shape
    got = default_chunk_size(n, restarts, k, n_features=d, cov_type=cov_type, dtype=dtype)
    assert got == rows


@pytest.mark.parametrize(
    ("shape", "restarts", "cov_type", "dtype", "missing", "rows"),
    [
        ((100_000, 16, 16), 1, "full", "float32", False, 100_000),  # one chunk: N < 2^27 / 256
        ((1_000_000, 32, 32), 1, "full", "float32", False, 131_072),  # R·K·D = 1024 per row
        ((4_000_000, 64, 64), 8, "full", "float32", False, 4096),  # R·K·D = 32,768 per row
        # float64 too may take the differences (far, tight components), and a compiled branch
        # holds its buffers whether or not it runs.
        ((4_000_000, 64, 64), 8, "full", "float64", False, 4096),  # R·K·D = 32,768 per row
        ((100_000, 64, 2), 1, "full", "float64", False, 32_768),  # ψ's 2145 columns
        ((1_000_000, 8, 8), 64, "spherical", "float64", False, 32_768),  # R·K·D = 4096 per row
        ((100_000, 16, 16), 1, "full", "float64", True, 1024),  # missing: the CPU's rule
    ],
)
def test_default_chunk_rows_on_a_gpu_bound_only_memory(
    shape, restarts, cov_type, dtype, missing, rows
):
    from gmmjax._prepare import default_chunk_size

    n, d, k = shape
    kwargs = dict(n_features=d, cov_type=cov_type, dtype=dtype, missing=missing)
    assert default_chunk_size(n, restarts, k, platform="gpu", **kwargs) == rows
    if not missing:  # the CPU keeps its cache-sized chunks for the same fit
        assert default_chunk_size(n, restarts, k, platform="cpu", **kwargs) <= 8192


def test_the_fit_chunks_its_rows_by_the_rule_of_its_platform(monkeypatch):
    from gmmjax import _prepare
    from gmmjax._config import FitConfig

    X = blobs(53, n=40_000, d=4, k=3)  # float64: at most 8192 rows on the CPU
    config = FitConfig(n_components=3)
    assert _prepare.prepare_fit(X, config, key=jax.random.key(0)).data.rows == 8192
    monkeypatch.setattr(_prepare, "_platform", lambda X, mesh: "gpu")
    assert _prepare.prepare_fit(X, config, key=jax.random.key(0)).data.rows == 40_000


def test_integer_sample_weights_equal_duplicated_rows(cov_type):
    X = blobs(52, n=300, d=2, k=3)
    counts = np.random.default_rng(0).integers(0, 4, size=300)
    start = gj.initialize(X, 3, key=jax.random.key(0), cov_type=cov_type)
    weighted = gj.fit_em(
        X,
        3,
        key=jax.random.key(0),
        cov_type=cov_type,
        init_params=start,
        sample_weight=counts,
        max_iter=25,
        tol=0.0,
    )
    repeated = gj.fit_em(
        np.repeat(X, counts, axis=0),
        3,
        key=jax.random.key(0),
        cov_type=cov_type,
        init_params=start,
        max_iter=25,
        tol=0.0,
    )
    assert_close(weighted.best.means, repeated.best.means, rtol=1e-10, atol=1e-12)
    assert_close(weighted.best.covariances, repeated.best.covariances, rtol=1e-10, atol=1e-12)
    assert_close(weighted.log_likelihood, repeated.log_likelihood, rtol=1e-12)


@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_float32_fit_tracks_float64(cov_type, offset):
    """Centred statistics keep float32 close to float64, also on data far from the origin."""
    X64 = blobs(53, n=4000, d=4, k=3, sep=3.0) + offset
    X32 = X64.astype(np.float32)
    start = gj.initialize(X64, 3, key=jax.random.key(0), cov_type=cov_type)
    start32 = jax.tree.map(lambda a: a.astype(np.float32), start)
    f64 = gj.fit_em(
        X32.astype(np.float64),
        3,
        key=jax.random.key(0),
        cov_type=cov_type,
        init_params=start,
        max_iter=50,
        tol=0.0,
    )
    f32 = gj.fit_em(
        X32, 3, key=jax.random.key(0), cov_type=cov_type, init_params=start32, max_iter=50, tol=0.0
    )
    assert f32.best.means.dtype == np.float32
    assert int(f32.status[0]) == gj.Status.MAX_ITER_REACHED
    # float32 carries ~7 digits; after 50 steps a few units in the 5th digit remain.
    assert_close(f32.log_likelihood, f64.log_likelihood, rtol=1e-5)
    assert_close(f32.best.means, f64.best.means, rtol=1e-5, atol=1e-3)
    assert_close(f32.best.covariances, f64.best.covariances, rtol=1e-3, atol=1e-4)
