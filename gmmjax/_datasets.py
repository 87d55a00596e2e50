"""Built-in data sets (bundled CSVs) and the synthetic mixture generator used by the studies."""

from __future__ import annotations

import gzip
from importlib import resources

import jax
import numpy as np

from ._params import GMM
from ._sample import sample

DATASETS = ("faithful", "iris", "wine", "digits")


def load_dataset(
    name: str, *, pca_components: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """A bundled data set as (X (N, D) float64, labels (N,) or None).

    faithful: Old Faithful, 272 x 2 (no labels). iris: 150 x 4. wine: 178 x 13.
    digits: 1797 x 64 pixel counts. `pca_components` projects onto the leading principal
    components (centred; computed by SVD), e.g. digits with 10.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {DATASETS}.")
    path = resources.files("gmmjax") / "data" / (name + (".csv.gz" if name == "digits" else ".csv"))
    with path.open("rb") as raw:
        data = gzip.open(raw) if name == "digits" else raw
        table = np.loadtxt(data, delimiter=",", comments="#", skiprows=0 if name == "digits" else 2)
    if name == "faithful":
        X, labels = table, None
    else:
        X, labels = table[:, :-1], table[:, -1].astype(int)
    if pca_components is not None:
        if not 1 <= pca_components <= X.shape[1]:
            raise ValueError(f"pca_components must be in [1, {X.shape[1]}], got {pca_components}.")
        centred = X - X.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        X = centred @ vt[:pca_components].T
    return X, labels


def make_mixture(
    *,
    n_components: int,
    n_features: int,
    n_samples: int,
    separation: float,
    imbalance: float = 1.0,
    eccentricity: float = 1.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, GMM]:
    """Samples from a random full-covariance mixture with an exact Dasgupta separation.

    Separation c (Dasgupta 1999): min_{i≠j} ‖μ_i − μ_j‖ = c · sqrt(D · max_k λ_max(Σ_k)). Every
    covariance has largest eigenvalue 1 and smallest 1/eccentricity (random orientation), and
    the means are random directions rescaled so that the closest pair sits at exactly c.
    Weights are geometric from 1 to 1/imbalance, normalised.

    Returns:
        X (N, D), labels z (N,), and the true GMM.
    """
    if n_components < 1 or n_features < 1 or n_samples < n_components:
        raise ValueError("need n_components >= 1, n_features >= 1 and n_samples >= n_components.")
    if not separation > 0 or not imbalance >= 1 or not eccentricity >= 1:
        raise ValueError("need separation > 0, imbalance >= 1 and eccentricity >= 1.")
    rng = np.random.default_rng(seed)
    k, d = n_components, n_features
    weights = imbalance ** (-np.arange(k) / max(k - 1, 1))
    weights /= weights.sum()
    covs = []
    for _ in range(k):
        q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        eig = np.geomspace(1.0, 1.0 / eccentricity, d) if d > 1 else np.ones(1)
        covs.append((q * eig) @ q.T)
    covs = np.stack(covs)
    means = rng.normal(size=(k, d)) * max(1.0, k ** (1 / d))
    if k > 1:
        dist = np.linalg.norm(means[:, None] - means[None], axis=-1)
        closest = dist[~np.eye(k, dtype=bool)].min()
        means *= separation * np.sqrt(d * 1.0) / closest
    truth = GMM(weights, means, covs, "full")
    X, z = sample(truth, n_samples, key=jax.random.key(seed))
    return np.asarray(X), np.asarray(z), truth


def dasgupta_separation(gmm: GMM) -> float:
    """min_{i≠j} ‖μ_i − μ_j‖ / sqrt(D · max_k λ_max(Σ_k)) of a full-covariance GMM."""
    means = np.asarray(gmm.means)
    covs = np.asarray(gmm.covariances)
    lam = np.linalg.eigvalsh(covs).max()
    dist = np.linalg.norm(means[:, None] - means[None], axis=-1)
    k = len(means)
    return float(dist[~np.eye(k, dtype=bool)].min() / np.sqrt(gmm.n_features * lam))


def normalised_entropy(gmm_resp: np.ndarray) -> float:
    """−(1/(N log K)) Σ_i Σ_k γ_ik log γ_ik of responsibilities (N, K).

    0 means no overlap (hard assignments), 1 total overlap (uniform responsibilities)."""
    resp = np.asarray(gmm_resp)
    n, k = resp.shape
    if k == 1:
        return 0.0
    plogp = np.where(resp > 0, resp * np.log(np.where(resp > 0, resp, 1.0)), 0.0)
    return float(-plogp.sum() / (n * np.log(k)))
