"""`select`: model selection over K x covariance type, one compiled program per cov_type.

Every K of a covariance type runs through the same program, compiled for K_max components:
components beyond K are masked (weight exactly 0, never assigned, never initialised), so a
padded fit follows the same path as an unpadded K-component fit with the same key.
"""

from __future__ import annotations

import dataclasses
import numbers
import warnings

import jax.numpy as jnp
import numpy as np
from jaxtyping import PRNGKeyArray

from ._compare import format_table
from ._config import FitConfig
from ._covariance import LAYOUTS, MODELS, check_cov_type, layout, model_name
from ._criteria import classification_loss, n_parameters
from ._em_method import EM
from ._exceptions import FitFailedError
from ._fit import run_prepared
from ._likelihood import log_likelihood
from ._objective import objective
from ._params import GMM
from ._prepare import check_concrete, prepare_fit
from ._prior import default_reg_covar, resolve_prior
from ._program import n_compiled
from ._solver import Status
from ._validate import check_data_host, is_int

CRITERIA = ("bic", "aic", "icl")

_NO_MISSING = (
    "X contains NaN; select does not support missing values yet: drop the incomplete rows "
    '(X[~np.isnan(X).any(1)]), or fit each K with gmmjax.fit(X, K, key=key, missing="em") '
    'and compare gmmjax.bic(res.best, X, missing="marginal").'
)


@dataclasses.dataclass(frozen=True)
class Selection:
    """What `select` returns.

    Attributes:
        rows: one dict per (n_components, cov_type): bic, aic, icl, log_likelihood (mean per
            sample of the best restart), objective (the same plus log-prior / N; equal
            without a prior), status (of that restart), n_parameters.
        best: the GMM minimising the criterion.
        n_components, cov_type: where the best sits in the grid.
        criterion: "bic", "aic" or "icl" (lower is better).
        n_compilations: programs compiled for the grid (one per cov_type when not cached).
    """

    rows: list[dict]
    best: GMM
    n_components: int
    cov_type: str
    criterion: str
    n_compilations: int

    def __str__(self) -> str:
        return format_table(self.rows)

    def table(self, criterion: str | None = None) -> str:
        """The criterion as a K x covariance-model table (mclust's BIC table; gmmjax's sign,
        lower is better: mclust prints 2ℓ − p log N, the negative), the best cell starred and
        failed cells "--"."""
        criterion = self.criterion if criterion is None else criterion
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}.")
        models = list(dict.fromkeys(r["cov_type"] for r in self.rows))
        ks = sorted({r["n_components"] for r in self.rows})
        value = {(r["n_components"], r["cov_type"]): r[criterion] for r in self.rows}
        if criterion == self.criterion:  # the cell `select` chose (first of any ties)
            best = (self.n_components, self.cov_type)
        else:
            best = min((v, key) for key, v in value.items() if not np.isnan(v))[1]
        table = []
        for k in ks:
            line = {"K": k}
            for m in models:
                v = value.get((k, m), float("nan"))
                line[m] = "--" if np.isnan(v) else f"{v:.2f}" + ("*" if (k, m) == best else "")
            table.append(line)
        return format_table(table)

    def plot(self, ax=None, criterion: str | None = None):
        """The criterion against K, one line per covariance model (mclust's
        `plot(mclustBIC(...))`), the best cell circled; returns the matplotlib Axes."""
        from ._select_plot import plot_criterion

        return plot_criterion(self, ax=ax, criterion=criterion)


def select(
    X,
    n_components=range(1, 11),
    cov_types=LAYOUTS,
    criterion: str = "bic",
    n_restarts: int = 8,
    *,
    key: PRNGKeyArray,
    init: str = "kmeans++",
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float | None = None,
    prior=None,
    sample_weight=None,
    chunk_size: int | None = None,
) -> Selection:
    """Fit every (K, cov_type) of the grid by EM with `n_restarts` restarts and pick the best
    by `criterion`: BIC = −2ℓ + p log N, AIC = −2ℓ + 2p, ICL = BIC − 2 Σ_i log max_k γ_ik
    (mclust's), with ℓ the (weighted) log-likelihood and N the total sample weight.

    With a `prior` ("mclust" or a `Prior`) every fit is MAP-EM; "mclust" builds
    `Prior.mclust(X, K, cov_type)` for each K, as R mclust's `priorControl()` does, and the
    criteria use the log-likelihood at the MAP estimate without the prior term (mclust's
    convention). `reg_covar` defaults to 1e-6 without a prior and 0 with one.

    `cov_types`: names of `fit`'s cov_type (scikit-learn's or mclust's), one name, or "all":
    mclust's fourteen models (also with a prior; mclust drops EVE, VEE, VVE and EVV when
    given one, gmmjax fits them with the prior of docs/math.md §11). `Selection.table()` and
    `Selection.plot()` show the grid as mclust does.

    A cell whose every restart failed (a collapsed component, non-finite iterates) gets NaN
    criteria and its status in `rows`, cannot be selected, and is named in one RuntimeWarning;
    the rest of the grid is unaffected.

    Raises:
        ValueError: for an empty grid or one that is not a collection of integers >= 1, an
            unknown criterion or cov_type, X with missing values (NaN), any input `fit_em`
            refuses (checked for the largest K), or when every cell of the grid failed.
    """
    ks = _grid_of_counts(n_components)
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}.")
    cov_types = _grid_of_models(cov_types)
    k_max = ks[-1]
    if prior is not None and not isinstance(prior, str):
        for cov in cov_types:
            if model_name(getattr(prior, "cov_type", cov)) != model_name(cov):
                raise ValueError(
                    f"a gmmjax.Prior is for one covariance type ({prior.cov_type!r}); pass "
                    f'cov_types=("{prior.cov_type}",) or prior="mclust", which builds one per '
                    "cov_type and K."
                )
    # Checked once here for select's own message on NaN; each cov_type's fit checks X again.
    check_concrete(X=X, key=key, sample_weight=sample_weight, prior=prior)
    X, _ = check_data_host(X, nan_message=_NO_MISSING)
    reg_covar = default_reg_covar(reg_covar, prior)
    before = n_compiled()
    rows, models = [], {}
    for cov in cov_types:
        config = FitConfig(
            n_components=k_max,
            cov_type=cov,
            n_restarts=n_restarts,
            init=init,
            max_iter=max_iter,
            tol=tol,
            reg_covar=reg_covar,
            chunk_size=chunk_size,
        )
        prep = prepare_fit(X, config, key=key, sample_weight=sample_weight)
        X_data = prep.data.flat_X[: prep.n_samples] + prep.offset
        w = prep.data.flat_weight[: prep.n_samples]
        total = float(jnp.sum(w))
        for k in ks:  # grid points, not restarts or iterations: all reuse one program
            prior_k = resolve_prior(
                prior, X_data, k, cov, n_features=X_data.shape[1], sample_weight=w
            )
            if prior_k is not None:
                prep = dataclasses.replace(
                    prep, prior=prior_k.astype(prep.dtype).shifted(prep.offset)
                )
            with warnings.catch_warnings():
                # One cell failing is reported in its row (and once below), not per cell.
                warnings.filterwarnings("ignore", "every restart failed", RuntimeWarning)
                try:
                    res = run_prepared(prep, config, EM(), {}, active=jnp.arange(k_max) < k)
                except FitFailedError as err:
                    rows.append(_failed_row(k, cov, Status(err.status)))
                    continue
            status = Status(int(res.status[res.best_index]))
            gmm = _first_components(res.best, k)
            if status.failed:
                # Every restart of this cell failed: it has no fit to score, so its criteria
                # are NaN and it cannot be selected; the rest of the grid goes on.
                rows.append(_failed_row(k, cov, status))
                continue
            loglik = float(log_likelihood(gmm, X_data, w))
            p = n_parameters(gmm)
            bic = -2 * loglik + p * np.log(total)
            loss = float(classification_loss(gmm, X_data, w))
            rows.append(
                {
                    "n_components": k,
                    "cov_type": cov,
                    "bic": bic,
                    "aic": -2 * loglik + 2 * p,
                    "icl": bic + 2 * loss,
                    "log_likelihood": loglik / total,
                    "objective": float(objective(gmm, X_data, prior=prior_k, sample_weight=w)),
                    "n_parameters": p,
                    "status": Status(int(res.status[res.best_index])).name.lower(),
                }
            )
            models[(k, cov)] = gmm
    failed = [(r["n_components"], r["cov_type"]) for r in rows if np.isnan(r[criterion])]
    if len(failed) == len(rows):
        raise ValueError(
            f"every fit of the grid failed ({rows[0]['status']}): "
            f"{Status[rows[0]['status'].upper()].message}"
        )
    if failed:
        warnings.warn(
            f"{len(failed)} of {len(rows)} grid cells failed (every restart collapsed or became "
            f"non-finite) and cannot be selected: {failed}; see Selection.rows' status. Raise "
            'reg_covar, use a prior (prior="mclust"), or drop those K.',
            RuntimeWarning,
            stacklevel=2,
        )
    best_row = min((r for r in rows if not np.isnan(r[criterion])), key=lambda r: r[criterion])
    key_best = (best_row["n_components"], best_row["cov_type"])
    return Selection(
        rows,
        models[key_best],
        key_best[0],
        key_best[1],
        criterion,
        n_compiled() - before,
    )


def _grid_of_models(cov_types) -> tuple[str, ...]:
    """The covariance models of the grid: "all" is mclust's fourteen (with a prior too,
    where mclust drops EVE, VEE, VVE and EVV); a single name is a grid of one."""
    if isinstance(cov_types, str):
        if cov_types == "all":
            return MODELS
        cov_types = (cov_types,)
    cov_types = tuple(cov_types)
    if not cov_types:
        raise ValueError("cov_types is empty; pass names such as ('VVV', 'EEE') or 'all'.")
    for cov in cov_types:
        check_cov_type(cov)
    return cov_types


def _grid_of_counts(n_components) -> list[int]:
    """The sorted distinct K of the grid: a collection of integers >= 1 (NumPy's included)."""
    if isinstance(n_components, numbers.Integral | str) or not hasattr(n_components, "__iter__"):
        raise ValueError(
            f"n_components must be a collection of integers, e.g. range(1, 7) or [3], got "
            f"{n_components!r}."
        )
    values = list(n_components)
    bad = [k for k in values if not is_int(k) or k < 1]
    if not values or bad:
        raise ValueError(
            f"n_components must be a non-empty collection of integers >= 1, got {values!r}."
        )
    return sorted({int(k) for k in values})


def _failed_row(k: int, cov_type: str, status: Status) -> dict:
    """A grid cell whose every restart failed: NaN criteria, its status."""
    nan = float("nan")
    return {
        "n_components": k,
        "cov_type": cov_type,
        "bic": nan,
        "aic": nan,
        "icl": nan,
        "log_likelihood": nan,
        "objective": nan,
        "n_parameters": nan,
        "status": status.name.lower(),
    }


def _first_components(gmm: GMM, k: int) -> GMM:
    """The k active components of a padded fit (masked ones have weight exactly 0)."""
    cov = gmm.covariances if layout(gmm.cov_type) == "tied" else gmm.covariances[:k]
    weights = gmm.weights[:k]
    return GMM(weights / jnp.sum(weights), gmm.means[:k], cov, gmm.cov_type)
