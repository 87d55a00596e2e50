"""A mixture as one vector of free parameters, and as one vector of natural parameters.

Free parameters φ (length p = `n_parameters(gmm)`, every value a valid mixture): the logits
a_k = log π_k − log π_K of the first K − 1 weights (a_K = 0), the means, and per covariance
the entries of its Cholesky factor on and below the diagonal with the diagonal as logs
("full": K D(D+1)/2, "tied": D(D+1)/2) or the log-variances ("diag": K D, "spherical": K).
Unlike `Unconstrained` (centred logits, full triangles) no coordinate is redundant, so the
Hessian of the objective in φ is the observed information, positive definite at a strict
local maximum (docs/math.md §12).

Natural parameters η (what standard errors are reported for): the K weights, the K D means
and the distinct covariance entries (the upper triangle Σ_k,ij, i ≤ j, of each covariance;
the variances for "diag" and "spherical"), with their names from `natural_names`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._covariance import layout, model_name
from ._likelihood import matmul_precision
from ._params import GMM


def check_free_parameterisation(cov_type: str, purpose: str) -> None:
    """ValueError unless `cov_type` is one of scikit-learn's four models (VVV, EEE, VVI, VII),
    whose free parameters are the entries above; mclust's other models constrain them."""
    if model_name(cov_type) not in ("VVV", "EEE", "VVI", "VII"):
        raise ValueError(
            f"{purpose} needs the free parameters of cov_type 'full', 'tied', 'diag' or "
            f"'spherical' (VVV, EEE, VVI, VII); mclust's {cov_type!r} constrains them. Use "
            "method='bootstrap', which refits the model itself."
        )


def _tril(d: int):
    return np.tril_indices(d)


def to_free(gmm: GMM) -> Float[Array, " p"]:
    """GMM (no batch axes) -> φ."""
    d = gmm.n_features
    log_w = jnp.log(gmm.weights)
    logits = log_w[:-1] - log_w[-1]
    kind = layout(gmm.cov_type)
    if kind in ("full", "tied"):
        chol = jnp.linalg.cholesky(gmm.covariances)
        rows, cols = _tril(d)
        entries = chol[..., rows, cols]
        on_diagonal = rows == cols
        scale = jnp.where(on_diagonal, jnp.log(jnp.where(on_diagonal, entries, 1.0)), entries)
    else:
        scale = jnp.log(gmm.covariances)
    return jnp.concatenate([logits, gmm.means.reshape(-1), scale.reshape(-1)])


def from_free(phi: Float[Array, " p"], k: int, d: int, cov_type: str) -> GMM:
    """φ -> GMM with K components in D dimensions."""
    logits = jnp.concatenate([phi[: k - 1], jnp.zeros((1,), phi.dtype)])
    weights = jnp.exp(logits - jnp.max(logits))
    weights = weights / jnp.sum(weights)
    means = phi[k - 1 : k - 1 + k * d].reshape(k, d)
    rest = phi[k - 1 + k * d :]
    kind = layout(cov_type)
    if kind in ("full", "tied"):
        rows, cols = _tril(d)
        entries = rest.reshape((k, -1) if kind == "full" else (-1,))
        # exp of the diagonal only: an off-diagonal entry of 3.5e5 (covariances at scale 1e6)
        # overflows exp, and where() would pass 0·inf = NaN into every derivative.
        diagonal = rows == cols
        entries = jnp.where(diagonal, jnp.exp(jnp.where(diagonal, entries, 0.0)), entries)
        chol = jnp.zeros(entries.shape[:-1] + (d, d), phi.dtype).at[..., rows, cols].set(entries)
        cov = jnp.matmul(chol, jnp.swapaxes(chol, -1, -2), precision=matmul_precision())
    elif kind == "diag":
        cov = jnp.exp(rest.reshape(k, d))
    else:
        cov = jnp.exp(rest)
    return GMM(weights, means, cov, cov_type)


def to_natural(gmm: GMM) -> Float[Array, " q"]:
    """GMM -> η: weights, means, distinct covariance entries (module docstring)."""
    d = gmm.n_features
    cov = gmm.covariances
    if layout(gmm.cov_type) in ("full", "tied"):
        rows, cols = np.triu_indices(d)
        cov = cov[..., rows, cols]
    return jnp.concatenate([gmm.weights, gmm.means.reshape(-1), cov.reshape(-1)])


def natural_names(k: int, d: int, cov_type: str) -> tuple[str, ...]:
    """Names of the entries of `to_natural`, 0-based: "weight[k]", "mean[k,j]",
    "cov[k,i,j]" (full), "cov[i,j]" (tied), "var[k,j]" (diag), "var[k]" (spherical)."""
    names = [f"weight[{c}]" for c in range(k)]
    names += [f"mean[{c},{j}]" for c in range(k) for j in range(d)]
    kind = layout(cov_type)
    rows, cols = np.triu_indices(d)
    if kind == "full":
        names += [f"cov[{c},{i},{j}]" for c in range(k) for i, j in zip(rows, cols, strict=True)]
    elif kind == "tied":
        names += [f"cov[{i},{j}]" for i, j in zip(rows, cols, strict=True)]
    elif kind == "diag":
        names += [f"var[{c},{j}]" for c in range(k) for j in range(d)]
    else:
        names += [f"var[{c}]" for c in range(k)]
    return tuple(names)


def natural_to_gmm_shapes(values: np.ndarray, k: int, d: int, cov_type: str) -> dict:
    """A vector laid out like `to_natural` (e.g. standard errors) as arrays shaped like the
    GMM's fields: {"weights": (K,), "means": (K, D), "covariances": layout, symmetric}."""
    values = np.asarray(values)
    weights, means, rest = values[:k], values[k : k + k * d].reshape(k, d), values[k + k * d :]
    kind = layout(cov_type)
    if kind in ("full", "tied"):
        rows, cols = np.triu_indices(d)
        lead = (k,) if kind == "full" else ()
        cov = np.zeros(lead + (d, d), values.dtype)
        cov[..., rows, cols] = rest.reshape(lead + (-1,))
        cov[..., cols, rows] = rest.reshape(lead + (-1,))
    elif kind == "diag":
        cov = rest.reshape(k, d)
    else:
        cov = rest
    return {"weights": weights, "means": means, "covariances": cov}
