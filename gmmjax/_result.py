"""`FitResult`: what every method returns."""

from __future__ import annotations

import warnings

import equinox as eqx
import jax
import numpy as np
from jaxtyping import Array, Float, Int

from ._exceptions import FitFailedError
from ._params import GMM
from ._solver import SolverState, Status, succeeded


class FitResult(eqx.Module):
    """What `fit` (and `fit_em`, `fit_gradient`) return. R is the number of restarts.

    Attributes:
        best: the GMM of the best restart (highest finite final objective among restarts
            that succeeded, see `Status.succeeded`).
        params: GMM with a leading restart axis (R, ...).
        objective: (R,) the objective f of the returned parameters: mean per-sample
            log-likelihood plus log-prior / N (docs/math.md §2); without a prior it equals
            `log_likelihood`. With sample weights, per unit weight: (Σ_i w_i ℓ_i + log p) /
            Σ_i w_i, on the weights' own scale with a prior (they are counts there), and
            independent of their scale without one.
        log_likelihood: (R,) mean per-sample log-likelihood of the returned parameters
            (weighted: Σ_i w_i ℓ_i / Σ_i w_i, independent of the weights' scale).
        history: (R, max_iter); history[r, t] is f(θ_t), the objective of the parameters after
            t steps; NaN after the last step.
        n_iter: (R,) number of completed steps.
        status: (R,) `Status` codes.
        best_index: index of `best` in the restart axis.
        evals: (R, max_iter); evals[r, t] is the work spent when history[r, t] became known,
            in evaluations of the objective over the data (with its gradient where one is
            taken), line-search evaluations included: the measure for comparing methods.
            EM: t + 1 (one fused E/M pass per step); a minibatch gradient counts batch_size / N.
        n_evals: (R,) total work of each restart in the same unit.
    """

    best: GMM
    params: GMM
    objective: Float[Array, " r"]
    log_likelihood: Float[Array, " r"]
    history: Float[Array, "r max_iter"]
    n_iter: Int[Array, " r"]
    status: Int[Array, " r"]
    best_index: Int[Array, ""]
    evals: Float[Array, "r max_iter"]
    n_evals: Float[Array, " r"]

    @property
    def converged(self) -> Array:
        """(R,) True where the tol test stopped the restart."""
        return self.status == Status.CONVERGED


def make_result(
    params: GMM, value, ll, state: SolverState, best_index, offset, *, explain=None
) -> FitResult:
    """Assemble a FitResult from the restarts' solver states (centred parameters are moved
    back by `offset`); warns when none succeeded (the best then holds its last valid
    parameters) and raises `FitFailedError` (a ValueError) when not even the best restart had
    valid parameters to keep. `explain(start)`, given the best restart's (centred) start,
    names the cause of such a failure and its fix (default: `start_failure_cause` without
    context).

    The assembly runs in NumPy on one host copy of the program's outputs: indexing and adding
    there dispatches no JAX operation, and each such operation would cost a compilation (tens
    of milliseconds) in a fresh process.
    """
    # Only the fields kept: a method's aux state (optimiser state, per-block statistics) stays.
    params, value, ll, best_array, status, history, n_iter, evals, n_evals = jax.device_get(
        (
            params,
            value,
            ll,
            best_index,
            state.status,
            state.history,
            state.n_iter,
            state.evals_history,
            state.evals,
        )
    )
    best_index = int(best_array)
    centred = params
    params = eqx.tree_at(lambda g: g.means, params, params.means + jax.device_get(offset))
    best = params[best_index]
    if not np.any(succeeded(status)):
        codes = sorted({Status(int(s)).name for s in status})
        if not np.all(np.isfinite(best.precisions_cholesky)):
            # Not even a start was a valid mixture: nothing can be handed out without NaNs.
            cause = (explain or start_failure_cause)(centred[best_index])
            raise FitFailedError(
                f"every restart failed at its start ({', '.join(codes)}): {cause}",
                int(status[best_index]),
            )
        warnings.warn(
            f"every restart failed ({', '.join(codes)}): {Status(int(status[best_index])).message}",
            RuntimeWarning,
            stacklevel=3,
        )
    result = FitResult(
        best=best,
        params=params,
        objective=value,
        log_likelihood=ll,
        history=history,
        n_iter=n_iter,
        status=status,
        best_index=best_array,
        evals=evals,
        n_evals=n_evals,
    )
    return jax.device_put(result)


def start_failure_cause(
    start: GMM,
    *,
    reg_covar: float | None = None,
    missing: bool = False,
    given_start: bool = False,
    positive_rows: int | None = None,
    n_samples: int | None = None,
    largest_variance: float | None = None,
) -> str:
    """The sentence `FitFailedError` gives for a start that is not a valid mixture: the cause
    detected, most specific first, and its fix. `start` is the failed start (host arrays);
    the keywords are what the fit knows about its input (None: unknown)."""
    dtype = np.asarray(start.means).dtype
    name = dtype.name
    if given_start:
        return (
            f"the given init_params are not a valid mixture in {name} once centred on the "
            "data (a covariance is not positive definite there); pass better-conditioned "
            "covariances or switch on float64."
        )
    if not (np.all(np.isfinite(start.means)) and np.all(np.isfinite(start.covariances))):
        return (
            f"the initial means or covariances are not finite in {name}: X's values, or "
            "their weighted sums of squares, overflow; rescale X (e.g. X / X.std(axis=0))."
        )
    if missing:
        return (
            "the initial covariances, estimated from the rows with their missing values "
            "replaced by the column means, are not positive definite: a component on rows "
            "whose values are mostly imputed has no spread along the imputed columns "
            f"(reg_covar={reg_covar:g}). Raise reg_covar (e.g. 1e-6), pass a prior "
            "(prior='mclust'), or lower n_components."
        )
    k, d = start.n_components, start.n_features
    if positive_rows is not None and n_samples is not None and positive_rows < n_samples:
        if positive_rows < k * (d + 1):
            return (
                f"sample_weight is positive on only {positive_rows} of {n_samples} rows, too "
                f"few to give {k} components of {d} features a positive definite covariance "
                f"(reg_covar={reg_covar:g}). Put weight on more rows, raise reg_covar (e.g. "
                "1e-6), pass a prior, or lower n_components."
            )
    if reg_covar == 0:
        return (
            "the initial covariances are not positive definite (with reg_covar=0: identical "
            "rows, collinear columns, or as many components as distinct points). Raise "
            "reg_covar (e.g. 1e-6), pass a prior, or lower n_components."
        )
    if reg_covar is not None and largest_variance is not None:
        return (
            f"the initial covariances are not positive definite although reg_covar="
            f"{reg_covar:g}: next to variances up to {largest_variance:.3g} the regulariser is "
            f"below {name}'s rounding (collinear or constant columns beside much larger "
            "ones). Rescale X (e.g. X / X.std(axis=0)) or raise reg_covar."
        )
    return (
        "the initial covariances are not positive definite (identical rows, collinear "
        "columns, or as many components as distinct points). Raise reg_covar (e.g. 1e-6), "
        "pass a prior, or lower n_components."
    )
