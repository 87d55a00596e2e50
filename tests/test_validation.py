"""Bad input raises ValueError before tracing; degenerate data fit without NaN."""

import jax
import numpy as np
import pytest
from conftest import blobs

import gmmjax as gj

KEY = jax.random.key(0)
X = blobs(41, n=50, d=2)


@pytest.mark.parametrize(
    "bad_X, match",
    [
        (np.zeros(10), "must be 2-D"),
        (np.zeros((2, 3, 4)), "must be 2-D"),
        (np.zeros((0, 2)), "0 sample"),
        (np.array([[1.0, np.nan], [0.0, 1.0], [2.0, 2.0], [3.0, 1.0]]), 'missing="em"'),
        (np.array([[1.0, np.inf], [0.0, 1.0], [2.0, 2.0], [3.0, 1.0]]), "contains inf"),
        (np.ones((5, 2)) * (1 + 1j), "Complex data not supported"),
        (np.array([["a", "b"], ["c", "d"]]), "numeric"),
    ],
)
def test_bad_data(bad_X, match):
    with pytest.raises(ValueError, match=match):
        gj.fit_em(bad_X, 1, key=KEY)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_components=0), "n_components must be an integer >= 1"),
        (dict(n_components=51), "exceeds the number of samples"),
        (dict(n_components=2.5), "n_components must be an integer"),
        (dict(cov_type="banana"), "cov_type must be one of"),
        (dict(init="kmeans"), "init must be one of"),
        (dict(n_restarts=0), "n_restarts must be an integer >= 1"),
        (dict(max_iter=0), "max_iter must be an integer >= 1"),
        (dict(tol=-1e-3), "tol must be finite and >= 0"),
        (dict(tol=np.nan), "tol must be finite and >= 0"),
        (dict(reg_covar=-1.0), "reg_covar must be finite and >= 0"),
        (dict(chunk_size=0), "chunk_size must be a positive integer"),
        (dict(sample_weight=np.ones(49)), r"sample_weight must have shape \(n_samples,\)"),
        (dict(sample_weight=-np.ones(50)), "non-negative"),
        (dict(sample_weight=np.zeros(50)), "all zero"),
        (dict(sample_weight=np.full(50, np.nan)), "NaN or inf"),
    ],
)
def test_bad_options(kwargs, match):
    kwargs = {"n_components": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        gj.fit_em(X, key=KEY, **kwargs)


def test_bad_init_params():
    good = gj.initialize(X, 2, key=KEY)
    with pytest.raises(ValueError, match="cov_type='full' but the fit asks for cov_type='diag'"):
        gj.fit_em(X, 2, key=KEY, cov_type="diag", init_params=good)
    with pytest.raises(ValueError, match="init_params.means must have shape"):
        gj.fit_em(X, 3, key=KEY, init_params=good)
    batched = jax.tree.map(lambda a: np.stack([a, a]), good)
    with pytest.raises(ValueError, match="init_params.means must have shape"):
        gj.fit_em(X, 2, key=KEY, n_restarts=3, init_params=batched)
    with pytest.raises(ValueError, match="must be a gmmjax.GMM"):
        gj.fit_em(X, 2, key=KEY, init_params={"means": good.means})


@pytest.mark.parametrize(
    "transform",
    [
        lambda: jax.jit(lambda Y: gj.fit_em(Y, 2, key=KEY).log_likelihood)(X),
        lambda: jax.vmap(lambda k: gj.fit_em(X, 2, key=k).log_likelihood)(jax.random.split(KEY)),
        lambda: jax.grad(lambda w: gj.fit_em(X, 2, key=KEY, sample_weight=w).log_likelihood[0])(
            np.ones(len(X))
        ),
        lambda: jax.jit(lambda Y: gj.select(Y, [1, 2], key=KEY).best.log_likelihood)(X),
        "memmap",
    ],
    ids=["jit-X", "vmap-key", "grad-weights", "select", "memmap-vmap-key"],
)
def test_a_fit_inside_a_transformation_names_the_fix(transform, tmp_path):
    if transform == "memmap":  # streamed data take their own path through the checks
        np.save(tmp_path / "X.npy", X)
        on_disk = np.load(tmp_path / "X.npy", mmap_mode="r")

        def transform():
            fit = lambda k: gj.fit_em(on_disk, 2, key=k).log_likelihood  # noqa: E731
            return jax.vmap(fit)(jax.random.split(KEY))

    with pytest.raises(ValueError, match="traced value.*outside the transformation"):
        transform()


def test_gmm_construction_checks():
    with pytest.raises(ValueError, match="covariances must have shape"):
        gj.GMM(np.ones(2) / 2, np.zeros((2, 3)), np.ones((2, 2)), "diag")
    with pytest.raises(ValueError, match="weights must be non-negative and sum to 1"):
        gj.GMM(np.array([0.7, 0.7]), np.zeros((2, 1)), np.ones(2), "spherical")
    with pytest.raises(ValueError, match="positive definite"):
        gj.GMM(np.ones(1), np.zeros((1, 2)), np.array([[[1.0, 2.0], [2.0, 1.0]]]), "full")
    with pytest.raises(ValueError, match="strictly positive"):
        gj.GMM(np.ones(1), np.zeros((1, 2)), np.array([[1.0, 0.0]]), "diag")
    with pytest.raises(ValueError, match="cov_type must be one of"):
        gj.GMM(np.ones(1), np.zeros((1, 2)), np.ones(1), "round")


def test_integer_data_is_accepted():
    Xi = np.round(blobs(42, n=200) * 3).astype(np.int64)
    res = gj.fit_em(Xi, 2, key=KEY)
    assert res.best.means.dtype == np.float64
    assert np.isfinite(float(res.log_likelihood[0]))


def _assert_finite_or_flagged(res):
    ok = np.asarray(res.status) <= gj.Status.MAX_ITER_REACHED
    assert np.all(ok | (np.asarray(res.status) == gj.Status.DEGENERATE))
    for leaf in jax.tree.leaves(res.params):
        assert np.all(np.isfinite(np.asarray(leaf)))
    assert np.all(np.isfinite(np.asarray(res.log_likelihood)))


@pytest.mark.parametrize(
    "name",
    ["duplicated_points", "constant_column", "collinear", "k_equals_distinct_points"],
)
def test_degenerate_data_fits_without_nan(name, cov_type):
    rng = np.random.default_rng(0)
    if name == "duplicated_points":
        data, k = np.repeat(rng.normal(size=(10, 2)), 20, axis=0), 3
    elif name == "constant_column":
        data, k = np.column_stack([rng.normal(size=200), np.full(200, 5.0)]), 3
    elif name == "collinear":
        t = rng.normal(size=200)
        data, k = np.column_stack([t, 2 * t + 1, -t]), 3
    else:
        data, k = np.repeat(rng.normal(size=(4, 2)), 25, axis=0), 4
    res = gj.fit_em(data, k, key=KEY, cov_type=cov_type, n_restarts=4, max_iter=100)
    _assert_finite_or_flagged(res)
