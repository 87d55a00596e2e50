"""Bootstrap refits of a fitted mixture (docs/math.md §12): B EM runs in one compiled program.

Nonparametric: replicate b reweights the rows by multinomial counts, n_b ~ Multinomial(N, w/Σw)
scaled to the total weight, so a replicate is a resample of the rows without copying X.
Parametric: replicate b is N rows drawn from the fitted mixture. Every refit starts at the fit
and runs EM (MAP-EM with a prior) until the objective changes by less than `tol`, as `fit_em`;
the B runs are one `vmap` over a `lax.while_loop`. Components are then matched to the fit's
(label switching) by the assignment that minimises the summed squared distance between means,
in units of the data's standard deviations (Hungarian algorithm, scipy).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

from ._covariance import layout
from ._em_loop import em_until
from ._free_parameters import to_natural
from ._params import GMM
from ._prior import default_reg_covar
from ._sample import sample
from ._solver import Status, succeeded
from ._validate import is_int

KINDS = ("nonparametric", "parametric")


def bootstrap_replicates(
    gmm: GMM, X, *, key, n_bootstrap, kind, prior, sample_weight, max_iter, tol, reg_covar
) -> tuple[np.ndarray, int]:
    """((B', q) natural parameters of the refits that succeeded (converged or stopped at
    max_iter), components matched to `gmm`, number that failed: non-finite, or a collapsed
    or (without a prior) empty component, `_em_loop.fit_status`)."""
    if key is None:
        raise ValueError("method='bootstrap' needs key=jax.random.key(seed).")
    if not is_int(n_bootstrap) or n_bootstrap < 2:
        raise ValueError(f"n_bootstrap must be an integer >= 2, got {n_bootstrap!r}.")
    if kind not in KINDS:
        raise ValueError(f"bootstrap must be one of {KINDS}, got {kind!r}.")
    if not is_int(max_iter) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}.")
    reg_covar = default_reg_covar(reg_covar, prior)
    n = X.shape[0]
    dtype = X.dtype
    w = jnp.ones((n,), dtype) if sample_weight is None else sample_weight
    keys = jax.random.split(key, n_bootstrap)
    settings = (jnp.asarray(reg_covar, dtype), jnp.asarray(tol, dtype), jnp.asarray(max_iter))
    if kind == "nonparametric":
        draws = jax.vmap(lambda k: jax.random.choice(k, n, (n,), p=w / jnp.sum(w)))(keys)
        counts = jax.vmap(lambda idx: jnp.bincount(idx, length=n))(draws).astype(dtype)
        weights = counts * (jnp.sum(w) / n)
        fits, ok = _refit_weighted(gmm, X, weights, prior, *settings)
    else:
        data = jax.vmap(lambda k: sample(gmm, n, key=k)[0])(keys)
        fits, ok = _refit_data(gmm, data, w, prior, *settings)
    # A refit that stopped at max_iter still counts; a non-finite or collapsed one does not.
    status = np.asarray(ok)
    ok = np.asarray(succeeded(status))
    scale = np.asarray(jnp.std(X, axis=0)) + 1e-300
    rows = []
    for b in np.flatnonzero(ok):
        rows.append(np.asarray(to_natural(match_components(fits[b], gmm, scale)), np.float64))
    if len(rows) < 2:
        non_finite = int(np.sum(status == Status.NON_FINITE))
        collapsed = int(np.sum(status == Status.DEGENERATE))
        causes = []
        if collapsed:
            causes.append(
                f"{collapsed} with a collapsed or empty component: fit with a prior "
                "(prior='mclust') or fewer components"
            )
        if non_finite:
            causes.append(
                f"{non_finite} with non-finite iterates: rescale X (e.g. X / X.std(axis=0)) "
                "or raise reg_covar"
            )
        raise ValueError(
            f"{n_bootstrap - len(rows)} of {n_bootstrap} bootstrap refits failed, too many for "
            f"a spread ({'; '.join(causes)})."
        )
    return np.stack(rows), int(n_bootstrap - ok.sum())


def match_components(fit: GMM, reference: GMM, scale) -> GMM:
    """`fit` with its components reordered to face `reference`'s: the permutation minimising
    Σ_j ‖(μ_fit,π(j) − μ_ref,j) / scale‖² (Hungarian assignment)."""
    diff = (np.asarray(fit.means)[None, :, :] - np.asarray(reference.means)[:, None, :]) / scale
    _, order = linear_sum_assignment(np.sum(np.square(diff), axis=-1))
    tied = layout(fit.cov_type) == "tied"
    covariances = fit.covariances if tied else fit.covariances[order]
    return GMM(fit.weights[order], fit.means[order], covariances, fit.cov_type)


@jax.jit
def _refit_weighted(gmm, X, weights, prior, reg_covar, tol, max_iter):
    return jax.vmap(lambda w: em_until(gmm, X, w, prior, reg_covar, tol, max_iter))(weights)


@jax.jit
def _refit_data(gmm, data, w, prior, reg_covar, tol, max_iter):
    return jax.vmap(lambda X: em_until(gmm, X, w, prior, reg_covar, tol, max_iter))(data)
