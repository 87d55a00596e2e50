"""EM as a method of the shared solver (docs/math.md §3).

One step is one fused pass over the data: the E-step's statistics about the current means and
the log-likelihood of the current parameters, then the (MAP) M-step. With a prior and
reg_covar = 0 it is the EM algorithm of the objective f (monotone in f); with reg_covar > 0 it
is scikit-learn's regularised EM, which is not the EM of any fixed objective.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp

from ._em import m_step_from_statistics, streamed_e_statistics
from ._method import Problem, all_finite
from ._params import GMM
from ._solver import OK, Status, StepOutput

# A component whose responsibilities sum to less than this many (average-weight) samples is
# numerically empty.
_EMPTY_COMPONENT = 1e-10


@dataclasses.dataclass(frozen=True)
class EM:
    """Expectation-maximisation; no options, no state beyond the GMM."""

    name: ClassVar[str] = "em"
    default_max_iter: ClassVar[int] = 100
    default_tol: ClassVar[float] = 1e-3

    def hyper(self, options: dict) -> dict:
        given = [name for name, value in options.items() if value is not None]
        if given:
            raise ValueError(f"{', '.join(given)}: only for the gradient methods, not EM.")
        return {}

    def init(self, gmm: GMM, key, problem: Problem, hyper):
        return gmm, None

    def step(self, gmm: GMM, aux, problem: Problem, hyper) -> StepOutput:
        stats, ll = streamed_e_statistics(gmm, problem.data)
        new = m_step_from_statistics(
            stats,
            cov_type=gmm.cov_type,
            reg_covar=problem.reg_covar,
            active=problem.active,
            prior=problem.prior,
        )
        moments_ok = all_finite((new.weights, new.means, new.covariances))
        # Positive definiteness is read off the Cholesky factor: NaN when it failed. Without a
        # prior an emptied component has no defined M-step; with one it sits at the prior.
        collapsed = ~jnp.all(jnp.isfinite(new.precisions_cholesky))
        if problem.prior is None:
            mean_weight = problem.data.mean_weight
            empty = problem.active & (stats.s0 < _EMPTY_COMPONENT * mean_weight)
            collapsed = collapsed | jnp.any(empty)
        failure = jnp.where(
            moments_ok, jnp.where(collapsed, Status.DEGENERATE, OK), Status.NON_FINITE
        )
        return StepOutput(new, aux, problem.value(gmm, ll), failure)

    def to_gmm(self, params: GMM) -> GMM:
        return params
