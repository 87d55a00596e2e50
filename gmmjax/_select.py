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
from ._covariance import (
    LAYOUTS,
    MODELS,
    check_cov_type,
    layout,
    model_name,
    n_covariance_parameters,
)
from ._criteria import classification_loss
from ._em_method import EM
from ._exceptions import FitFailedError
from ._fit import run_prepared
from ._likelihood import log_likelihood
from ._objective import objective
from ._params import GMM
from ._prepare import check_concrete, prepare_fit
from ._prior import default_reg_covar, resolve_prior
from ._program import n_compiled
from ._solver import Status, succeeded
from ._validate import check_data_host, host_sample_weight, is_int

CRITERIA = ("bic", "aic", "icl")
# The statuses of grid cells that are not available although their fits ran: every usable
# restart has a collapsed component; more free parameters than observations (never fitted).
COLLAPSED = "collapsed"
TOO_MANY = "too_many_parameters"
# A covariance direction whose spread beyond reg_covar is below this many machine epsilons of
# the covariance's largest eigenvalue is empty: above the rounding of Σ_k − reg_covar·I, far
# below any spread the data resolve.
_COLLAPSE_EPS = 1e3

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
            without a prior), status (of that restart, or why the cell is not available:
            see `select`), n_parameters (the model's, fitted or not). Criteria and fit values
            are NaN for a cell that is not available.
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
    (mclust's), with ℓ the (weighted) log-likelihood and N the total sample weight: the
    criteria count weights as frequencies (integer weights give the table of repeated rows),
    while the fits depend only on their ratios without a prior (any rescaling gives the same
    fits and per-sample log-likelihoods; N, and so BIC's penalty, follows the total).

    With a `prior` ("mclust" or a `Prior`) every fit is MAP-EM; "mclust" builds
    `Prior.mclust(X, K, cov_type)` for each K, as R mclust's `priorControl()` does, and the
    criteria use the log-likelihood at the MAP estimate without the prior term (mclust's
    convention). `reg_covar` defaults to 1e-6 without a prior and 0 with one.

    `cov_types`: names of `fit`'s cov_type (scikit-learn's or mclust's), one name, or "all":
    mclust's fourteen models (also with a prior; mclust drops EVE, VEE, VVE and EVV when
    given one, gmmjax fits them with the prior of docs/math.md §11). `Selection.table()` and
    `Selection.plot()` show the grid as mclust does.

    A cell is not available (as mclust reports NA) when
      - its model has more free parameters than observations (p > N, N the total sample
        weight): the data cannot determine it, and it is not fitted ("too_many_parameters");
      - every restart failed: a collapsed component or non-finite iterates ("degenerate",
        "non_finite");
      - every restart that ran its course has a component collapsed onto reg_covar,
        λ_min(Σ_k) − reg_covar ≤ 1e3 ε λ_max(Σ_k) (ε the dtype's machine epsilon): the
        covariance the data give the component is singular (one row, fewer rows than
        dimensions, identical rows), which is where mclust's EM stops with "singular
        covariance", and the likelihood measures reg_covar rather than the data
        ("collapsed").
    Otherwise a cell's fit is its best restart without a collapsed component. An unavailable
    cell gets NaN criteria and its status in `rows`, cannot be selected, and is named in one
    RuntimeWarning; the rest of the grid is unaffected. A prior (prior="mclust") keeps
    covariances regular, as in mclust.

    Raises:
        ValueError: for an empty grid or one that is not a collection of integers >= 1, an
            unknown criterion or cov_type, X with missing values (NaN), any input `fit_em`
            refuses (checked for the largest K), or when no cell of the grid is available.
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
    n_observations = (
        float(X.shape[0])
        if sample_weight is None
        else float(np.sum(host_sample_weight(sample_weight, X.shape[0])))
    )
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
        # The fits see weights normalised to mean 1 over the rows of positive weight (without
        # a prior only their ratios matter, and tiny or huge weights lose nothing to the
        # compute dtype); the criteria count them as frequencies, on the caller's scale:
        # ℓ = Σ w_i log p(x_i) and N = Σ w_i, so integer weights equal repeated rows.
        prep = prepare_fit(
            X, config, key=key, sample_weight=sample_weight, relative_weights=prior is None
        )
        X_data = prep.data.flat_X[: prep.n_samples] + prep.offset
        w = prep.data.flat_weight[: prep.n_samples]
        total = n_observations
        frequency = total / float(np.sum(np.asarray(w, np.float64)))
        for k in ks:  # grid points, not restarts or iterations: all reuse one program
            p = (k - 1) + k * X_data.shape[1] + n_covariance_parameters(cov, k, X_data.shape[1])
            if p > total:
                # More free parameters than observations: the data do not determine the
                # model, so the cell is not fitted at all.
                rows.append(_failed_row(k, cov, TOO_MANY, p))
                continue
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
                    rows.append(_failed_row(k, cov, Status(err.status).name.lower(), p))
                    continue
            status = Status(int(res.status[res.best_index]))
            if status.failed:
                # Every restart of this cell failed: it has no fit to score, so its criteria
                # are NaN and it cannot be selected; the rest of the grid goes on.
                rows.append(_failed_row(k, cov, status.name.lower(), p))
                continue
            index = _best_regular_restart(res, k, reg_covar)
            if index is None:
                # Every restart that ran its course has a component held up by reg_covar
                # alone: its likelihood measures reg_covar, not the data (mclust reports NA).
                rows.append(_failed_row(k, cov, COLLAPSED, p))
                continue
            status = Status(int(res.status[index]))
            gmm = _first_components(res.params[index], k)
            loglik = float(log_likelihood(gmm, X_data, w)) * frequency
            bic = -2 * loglik + p * np.log(total)
            loss = float(classification_loss(gmm, X_data, w)) * frequency
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
                    "status": status.name.lower(),
                }
            )
            models[(k, cov)] = gmm
    _report_unavailable(rows)
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


def _report_unavailable(rows: list[dict]) -> None:
    """ValueError when no cell of the grid can be selected; one RuntimeWarning naming the
    cells that cannot, and why, when some cannot."""
    cells = {
        kind: [(r["n_components"], r["cov_type"]) for r in rows if r["status"] == kind]
        for kind in (COLLAPSED, TOO_MANY)
    }
    collapsed, too_many = cells[COLLAPSED], cells[TOO_MANY]
    failed = [
        (r["n_components"], r["cov_type"])
        for r in rows
        if np.isnan(r["bic"]) and r["status"] not in (COLLAPSED, TOO_MANY)
    ]
    why = []
    if failed:
        why.append(f"every restart of {failed} failed (collapsed or became non-finite)")
    if collapsed:
        why.append(
            f"every fit of {collapsed} has a component collapsed onto reg_covar (its "
            "covariance less reg_covar·I is singular, so its likelihood measures reg_covar, "
            "not the data; mclust reports such cells as NA)"
        )
    if too_many:
        why.append(
            f"{too_many} have more free parameters than observations (N = the total sample "
            "weight), which cannot determine them (the criteria count sample_weight as "
            "frequencies: weights that sum to less than the rows, e.g. probabilities, make N "
            "small; pass counts, e.g. w * len(w) / w.sum())"
        )
    fix = (
        'use a prior (prior="mclust", which keeps covariances regular as in mclust), fewer '
        "components, or more data"
    )
    unavailable = len(failed) + len(collapsed) + len(too_many)
    if unavailable == len(rows):
        if not (collapsed or too_many):
            first = rows[0]["status"]
            raise ValueError(
                f"every fit of the grid failed ({first}): {Status[first.upper()].message}"
            )
        raise ValueError(f"no cell of the grid can be selected: {'; '.join(why)}. Then {fix}.")
    if why:
        warnings.warn(
            f"{unavailable} of {len(rows)} grid cells failed and cannot be "
            f"selected: {'; '.join(why)}. See Selection.rows' status; "
            + ("raise reg_covar, " if failed else "")
            + f"{fix}.",
            RuntimeWarning,
            stacklevel=3,
        )


def _best_regular_restart(res, k: int, reg_covar: float) -> int | None:
    """The restart with the highest objective among those that ran their course (converged
    or reached max_iter) with no collapsed component among the first k; None if there is none.

    A component has collapsed when its covariance less reg_covar·I, the spread the data
    give it, is singular: λ_min(Σ_k) − reg_covar ≤ 1e3 ε λ_max(Σ_k) (ε the dtype's machine
    epsilon). Without reg_covar this is EM's 'singular covariance', where mclust stops and
    reports the cell as NA: one row per component, fewer rows than dimensions in a component,
    or identical rows. (For tied covariances the pooled one is tested; for mclust's models whose
    structure is fitted after adding reg_covar, the same test is applied to the fitted Σ_k.)
    """
    status = np.asarray(res.status)
    value = np.asarray(res.objective, dtype=float)
    usable = np.asarray(succeeded(status)) & np.isfinite(value)
    usable &= ~_collapsed(np.asarray(res.params.covariances), res.params.cov_type, k, reg_covar)
    if not usable.any():
        return None
    return int(np.argmax(np.where(usable, value, -np.inf)))


def _collapsed(covariances: np.ndarray, cov_type: str, k: int, reg_covar: float) -> np.ndarray:
    """(R,) whether each restart's first k components (of covariances with a leading restart
    axis, in `cov_type`'s layout) have a collapsed one (see `_best_regular_restart`)."""
    covariances = np.where(np.isfinite(covariances), covariances, 0.0)
    kind = layout(cov_type)
    if kind == "full":
        eig = np.linalg.eigvalsh(covariances[:, :k])  # (R, k, D)
    elif kind == "tied":
        eig = np.linalg.eigvalsh(covariances)[:, None]  # (R, 1, D)
    elif kind == "diag":
        eig = covariances[:, :k]  # (R, k, D)
    else:
        eig = covariances[:, :k, None]  # (R, k, 1)
    tol = _COLLAPSE_EPS * np.finfo(covariances.dtype).eps
    spread = eig.min(axis=-1) - reg_covar
    return np.any(spread <= tol * eig.max(axis=-1), axis=-1)


def _failed_row(k: int, cov_type: str, status: str, n_params: int) -> dict:
    """A grid cell that is not available: NaN criteria and fit values, its status and its
    model's count of free parameters."""
    nan = float("nan")
    return {
        "n_components": k,
        "cov_type": cov_type,
        "bic": nan,
        "aic": nan,
        "icl": nan,
        "log_likelihood": nan,
        "objective": nan,
        "n_parameters": n_params,
        "status": status,
    }


def _first_components(gmm: GMM, k: int) -> GMM:
    """The k active components of a padded fit (masked ones have weight exactly 0)."""
    cov = gmm.covariances if layout(gmm.cov_type) == "tied" else gmm.covariances[:k]
    weights = gmm.weights[:k]
    return GMM(weights / jnp.sum(weights), gmm.means[:k], cov, gmm.cov_type)
