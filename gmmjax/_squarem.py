"""SQUAREM: squared extrapolation of the EM map (Varadhan & Roland 2008; docs/math.md §8).

One cycle from θ, with F the EM map in unconstrained coordinates (`unconstrained_em_map`):

    θ1 = F(θ), θ2 = F(θ1),  r = θ1 − θ,  v = θ2 − θ1 − r
    α  = clip(√(rᵀr / vᵀv), 1, step_max)                 (scheme S3)
    θ' = θ + 2α r + α² v,   then θ'' = F(θ') when |α − 1| > 0.01  (stabilising EM step)
    accept θ'' if it is valid and f(θ'') ≥ f(θ) − mon_tol / W, else fall back to θ2

with the R package's step-length control: step_max starts at step_max0; a fallback from the
cap divides it by mstep (not below step_max0); a cycle that ends at the cap multiplies it by
mstep. With mon_tol = 0 the objective never decreases (θ2 is two EM steps). Work per cycle:
two or three EM passes plus one objective pass; the solver's tol test compares f at
successive cycles. Under vmap (several restarts) the stabilising pass runs for every restart
whenever one needs it (`lax.cond` becomes a select); work counts what each restart needs.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import optax

from ._em_method import check_option, only_own_options, unconstrained_em_map
from ._method import Problem, all_finite
from ._params import GMM
from ._solver import OK, StepOutput
from ._transforms import from_unconstrained, to_unconstrained


@dataclasses.dataclass(frozen=True)
class SQUAREM:
    """Squared extrapolation of EM (scheme S3) with the objective safeguard.

    Attributes (traced: changing them does not recompile):
        mon_tol: how far, in total log-posterior units (R's `objfn.inc`), an extrapolated
            point may fall below the cycle's start and still be accepted; 0 is strictly
            monotone, inf accepts every valid point. Default 1, the R package's.
        step_max0: the initial and smallest cap on the step length α (≥ 1).
        mstep: the factor the cap grows and shrinks by (> 1).
    """

    mon_tol: float = dataclasses.field(default=1.0, compare=False)
    step_max0: float = dataclasses.field(default=1.0, compare=False)
    mstep: float = dataclasses.field(default=4.0, compare=False)

    name: ClassVar[str] = "squarem"
    default_max_iter: ClassVar[int] = 100
    default_tol: ClassVar[float] = 1e-3

    def hyper(self, options: dict) -> dict:
        only_own_options(options, self.name)
        return {
            "mon_tol": check_option("mon_tol", self.mon_tol, low=0.0),
            "step_max0": check_option("step_max0", self.step_max0, low=1.0),
            "mstep": check_option("mstep", self.mstep, low=1.0, inclusive=False),
        }

    def init(self, gmm: GMM, key, problem: Problem, hyper):
        return to_unconstrained(gmm), jnp.asarray(hyper["step_max0"], gmm.means.dtype)

    def to_gmm(self, params) -> GMM:
        return from_unconstrained(params)

    def step(self, u, step_max, problem: Problem, hyper) -> StepOutput:
        u1, f0, failure0 = unconstrained_em_map(u, problem)
        u2, _, failure1 = unconstrained_em_map(u1, problem)
        r = jax.tree.map(jnp.subtract, u1, u)
        v = jax.tree.map(lambda b, a, c: b - a - c, u2, u1, r)
        rr, vv = optax.tree_utils.tree_vdot(r, r), optax.tree_utils.tree_vdot(v, v)
        # v = 0: the EM map is affine along this path, so the longest allowed step is exact;
        # r = 0 as well: a fixed point, and α = 1 returns θ2 = θ.
        alpha = jnp.where(vv > 0, jnp.sqrt(rr / jnp.where(vv > 0, vv, 1.0)), jnp.inf)
        alpha = jnp.where(rr > 0, alpha, 1.0)
        alpha = jnp.clip(alpha, 1.0, step_max)
        u_ext = jax.tree.map(lambda a, b, c: a + 2 * alpha * b + alpha**2 * c, u, r, v)
        stabilise = jnp.abs(alpha - 1.0) > 0.01

        def stabilised(point):
            new, _, failure = unconstrained_em_map(point, problem)
            return new, jnp.asarray(failure, jnp.int32)

        u_new, failure_new = jax.lax.cond(
            stabilise, stabilised, lambda point: (point, jnp.asarray(OK, jnp.int32)), u_ext
        )
        f_new, _ = problem.objective(from_unconstrained(u_new))
        valid = (failure_new == OK) & jnp.isfinite(f_new) & all_finite(u_new)
        accept = valid & (f_new >= f0 - hyper["mon_tol"] / problem.total_weight)
        u_next = jax.tree.map(lambda a, b: jnp.where(accept, a, b), u_new, u2)
        # The R package's step-length control, in its order.
        at_cap = alpha == step_max
        step_max = jnp.where(
            ~accept & at_cap, jnp.maximum(hyper["step_max0"], step_max / hyper["mstep"]), step_max
        )
        alpha = jnp.where(accept, alpha, 1.0)
        step_max = jnp.where(alpha == step_max, hyper["mstep"] * step_max, step_max)
        # A failed second EM map matters only if the cycle falls back to its output.
        failure = jnp.where(failure0 != OK, failure0, jnp.where(accept, OK, failure1))
        return StepOutput(
            u_next,
            step_max,
            f0,
            failure,
            evals_value=1.0,
            evals_update=2.0 + stabilise.astype(f0.dtype),
        )
