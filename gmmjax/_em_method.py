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
from jaxtyping import Array

from ._em import m_step_with_status, streamed_e_statistics
from ._method import Problem, all_finite
from ._params import GMM
from ._solver import OK, Status, StepOutput
from ._transforms import Unconstrained, from_unconstrained, to_unconstrained


def em_map(gmm: GMM, problem: Problem) -> tuple[GMM, Array, Array]:
    """One EM update θ -> M(θ) in one fused pass: (M(θ), f(θ), failure code).

    f(θ) is the objective of the *input*, a by-product of the E-step. The failure code is OK,
    Status.NON_FINITE or Status.DEGENERATE (a covariance that is not positive definite). Every
    member of the EM family calls it.
    """
    new, value, failure, _ = em_update(gmm, problem)
    return new, value, failure


def em_update(gmm: GMM, problem: Problem) -> tuple[GMM, Array, Array, Array]:
    """`em_map` and whether the M-step was exact: False when an iterative mclust model's
    inner loop stopped at its cap (the update still increases the objective: a generalised
    EM step)."""
    stats, ll = streamed_e_statistics(gmm, problem.data)
    new, failure, exact = m_step_checked(stats, gmm.cov_type, problem, start=gmm.covariances)
    return new, problem.value(gmm, ll), failure, exact


def m_step_checked(
    stats, cov_type: str, problem: Problem, *, start: Array | None = None
) -> tuple[GMM, Array, Array]:
    """`m_step_from_statistics` with the problem's prior, mask and reg_covar: (parameters,
    failure code (see `em_map`), exact). `start`: the current covariances, where the inner
    loop of mclust's iterative models begins, so that each M-step increases Q even when that
    loop stops at its cap (then `exact` is False)."""
    new, exact = m_step_with_status(
        stats,
        cov_type=cov_type,
        reg_covar=problem.reg_covar,
        active=problem.active,
        prior=problem.prior,
        start=start,
    )
    moments_ok = all_finite((new.weights, new.means, new.covariances))
    # Positive definiteness is read off the Cholesky factor: NaN when it failed. A component
    # with no responsibility left is not a failure by itself (scikit-learn's rule): its count
    # gets 10·eps, so it keeps a finite mean and a covariance of reg_covar·I, and fails only
    # when that is not positive definite (reg_covar = 0 without a prior).
    collapsed = ~jnp.all(jnp.isfinite(new.precisions_cholesky))
    failure = jnp.where(moments_ok, jnp.where(collapsed, Status.DEGENERATE, OK), Status.NON_FINITE)
    return new, failure, exact


def only_own_options(options: dict, name: str) -> None:
    """ValueError for gradient options (learning_rate, grad_tol) given to an EM-family method."""
    given = [key for key, value in options.items() if value is not None]
    if given:
        raise ValueError(
            f"{', '.join(given)}: only for the gradient methods, not {name}; options of the "
            "EM family are set on the method object."
        )


@dataclasses.dataclass(frozen=True)
class EM:
    """Expectation-maximisation; no options, no state beyond the GMM."""

    name: ClassVar[str] = "em"
    # Updates go through the M-step, so every covariance model keeps its structure.
    structured_covariances: ClassVar[bool] = True
    default_max_iter: ClassVar[int] = 100
    default_tol: ClassVar[float] = 1e-3

    def hyper(self, options: dict) -> dict:
        only_own_options(options, self.name)
        return {}

    def init(self, gmm: GMM, key, problem: Problem, hyper):
        return gmm, None

    def step(self, gmm: GMM, aux, problem: Problem, hyper) -> StepOutput:
        new, value, failure, exact = em_update(gmm, problem)
        # Converged only after an exact M-step: an inner loop stopped at its cap has not
        # found the maximiser yet, whatever the change in the objective.
        return StepOutput(new, aux, value, failure, can_stop=exact)

    def to_gmm(self, params: GMM) -> GMM:
        return params


def unconstrained_em_map(u: Unconstrained, problem: Problem):
    """`em_map` in the unconstrained coordinates of `_transforms.py` (logits, means,
    log-Cholesky factors), where every point is a valid GMM: the fixed-point map that SQUAREM
    and DAAREM extrapolate. Returns (F(u), f(u), failure code)."""
    new, value, failure = em_map(from_unconstrained(u), problem)
    return to_unconstrained(new), value, failure


def check_option(name: str, value, *, low: float, inclusive: bool = True) -> float:
    """A method option as a float, ValueError when it is not a number ≥ (or >) `low`."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    ok = ok and (value >= low if inclusive else value > low)
    if not ok:
        relation = ">=" if inclusive else ">"
        raise ValueError(f"{name} must be a number {relation} {low}, got {value!r}.")
    return float(value)
