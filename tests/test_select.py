"""Model selection over K x covariance type in one compiled program per cov_type."""

import jax
import numpy as np
import pytest
from conftest import assert_close

import gmmjax as gj
from gmmjax._select import _first_components


# Slow (about 30 s); test_criteria_and_weights and test_padded_fit_equals_unpadded keep select
# in the default run.
@pytest.mark.slow
def test_bic_recovers_k_and_full_covariances():
    X, _, _ = gj.make_mixture(
        n_components=3, n_features=2, n_samples=1500, separation=2.0, eccentricity=4.0, seed=3
    )
    sel = gj.select(X, [1, 2, 3, 4, 5], key=jax.random.key(0), n_restarts=3)
    assert (sel.n_components, sel.cov_type) == (3, "full")
    assert len(sel.rows) == 5 * 4
    assert sel.n_compilations <= 4  # one program per cov_type serves every K
    again = gj.select(X, [1, 2, 3, 4, 5], key=jax.random.key(1), n_restarts=3)
    assert again.n_compilations == 0


@pytest.mark.slow
def test_bic_recovers_diagonal_structure():
    truth = gj.GMM(
        np.array([0.4, 0.35, 0.25]),
        np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 3.0], [0.0, 7.0, -3.0]]),
        np.array([[1.0, 0.2, 2.0], [0.3, 1.5, 1.0], [2.0, 0.5, 0.4]]),
        "diag",
    )
    X, _ = gj.sample(truth, 3000, key=jax.random.key(0))
    sel = gj.select(X, [2, 3, 4], key=jax.random.key(0), n_restarts=3)
    assert (sel.n_components, sel.cov_type) == (3, "diag")


@pytest.mark.parametrize(
    "cov_type", ["full", *(pytest.param(c, marks=pytest.mark.slow) for c in ("spherical", "tied"))]
)
def test_padded_fit_equals_unpadded(cov_type):
    """Masked components change nothing: K of K_max equals a plain K-component fit."""
    X, _, _ = gj.make_mixture(n_components=3, n_features=2, n_samples=600, separation=1.5)
    key = jax.random.key(2)
    sel = gj.select(
        X,
        [2, 5],
        cov_types=(cov_type,),
        key=key,
        n_restarts=3,
        max_iter=30,
        tol=0.0,
        chunk_size=128,
    )
    plain = gj.fit_em(
        X, 2, key=key, cov_type=cov_type, n_restarts=3, max_iter=30, tol=0.0, chunk_size=128
    )
    row = next(r for r in sel.rows if r["n_components"] == 2)
    assert_close(row["log_likelihood"], float(np.max(plain.log_likelihood)), rtol=1e-10)


def test_criteria_and_weights():
    X, _, _ = gj.make_mixture(n_components=2, n_features=2, n_samples=400, separation=3.0)
    sel = gj.select(
        X, [1, 2, 3], cov_types=("full",), criterion="icl", key=jax.random.key(0), n_restarts=2
    )
    for r in sel.rows:
        assert r["icl"] >= r["bic"] - 1e-9  # −log max_k γ_ik ≥ 0
        gmm = gj.fit_em(X, r["n_components"], key=jax.random.key(0), n_restarts=2).best
        assert r["n_parameters"] == gj.n_parameters(gmm)
    assert sel.n_components == 2
    # Integer weights behave as repeated rows.
    counts = np.random.default_rng(0).integers(1, 3, size=400)
    weighted = gj.select(
        X,
        [2],
        cov_types=("diag",),
        key=jax.random.key(0),
        n_restarts=2,
        sample_weight=counts,
        init="random_from_data",
    )
    assert np.isfinite(weighted.rows[0]["bic"])
    with pytest.raises(ValueError, match="criterion must be one of"):
        gj.select(X, [1], key=jax.random.key(0), criterion="mdl")
    with pytest.raises(ValueError, match="sample_weight must be non-negative"):
        gj.select(X, [1], key=jax.random.key(0), sample_weight=-np.ones(400))


def test_first_components_drops_only_masked():
    gmm = gj.GMM(np.array([0.5, 0.5, 0.0]), np.zeros((3, 2)), np.ones(3), "spherical")
    first = _first_components(gmm, 2)
    assert first.n_components == 2 and np.allclose(first.weights, [0.5, 0.5])
