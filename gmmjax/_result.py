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
            `log_likelihood`.
        log_likelihood: (R,) mean per-sample log-likelihood of the returned parameters.
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


def make_result(params: GMM, value, ll, state: SolverState, best_index, offset) -> FitResult:
    """Assemble a FitResult from the restarts' solver states (centred parameters are moved
    back by `offset`); warns when none succeeded (the best then holds its last valid
    parameters) and raises `FitFailedError` (a ValueError) when not even the best restart had
    valid parameters to keep.

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
    params = eqx.tree_at(lambda g: g.means, params, params.means + jax.device_get(offset))
    best = params[best_index]
    if not np.any(succeeded(status)):
        codes = sorted({Status(int(s)).name for s in status})
        if not np.all(np.isfinite(best.precisions_cholesky)):
            # Not even a start was a valid mixture: nothing can be handed out without NaNs.
            raise FitFailedError(
                f"every restart failed at its start ({', '.join(codes)}): the initial "
                "covariances are not positive definite (with reg_covar=0: identical rows, "
                "collinear columns, or as many components as distinct points). Raise "
                "reg_covar (e.g. 1e-6), pass a prior, or lower n_components.",
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
