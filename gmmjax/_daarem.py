"""DAAREM: damped Anderson acceleration of the EM map with restarts (Henderson & Varadhan
2019; docs/math.md §8).

On the flattened unconstrained coordinates x, with F the EM map and f_k = F(x_k) − x_k, keep the
last m ≤ nlag differences ΔX = [x_j+1 − x_j], ΔF = [f_j+1 − f_j] (the history restarts every nlag
steps). Each step solves the ridge problem min_γ ‖f_k − ΔF γ‖² + λ‖γ‖² through the SVD
ΔF = U diag(d) Vᵀ, γ = V diag(d / (d² + λ)) Uᵀ f_k, with λ chosen so that ‖γ‖ is about
√δ_k ‖γ_LS‖, δ_k = 1 / (1 + α^(κ − s_k)); s_k counts accepted proposals (minus nlag whenever
a whole cycle of nlag steps lowered the objective), so the damping relaxes while proposals
keep being accepted. The proposal x_k + f_k − (ΔX + ΔF) γ is accepted if it is valid and its
objective is at least f(x_k) − mon_tol / W; otherwise the plain EM step F(x_k) is taken.

Work per step: one EM pass (which also gives f(x_k)) and one objective pass for the proposal.
The R package also evaluates the objective of a rejected step's EM point; here that value comes
free with the next step's EM pass, so the cycle check is made one step later, on the same
number.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Bool, Float, Int

from ._em_method import check_option, only_own_options, unconstrained_em_map
from ._method import Problem
from ._params import GMM
from ._solver import StepOutput
from ._transforms import from_unconstrained, to_unconstrained
from ._validate import check_positive_int

# The R package's damping search: at most this many safeguarded Newton steps, and its start.
_DAMPING_ITERATIONS = 10
_LAMBDA_START = 1e5


class _State(eqx.Module):
    x_prev: Float[Array, " p"]  # x_{k−1}
    f_prev: Float[Array, " p"]  # F(x_{k−1}) − x_{k−1}
    dx: Float[Array, "p m"]  # columns x_j+1 − x_j of the current cycle
    df: Float[Array, "p m"]  # columns f_j+1 − f_j
    count: Int[Array, ""]  # columns filled in this cycle
    started: Bool[Array, ""]  # a first plain EM step has been taken
    shrink: Float[Array, ""]  # s_k
    damping: Float[Array, ""]  # λ of the last search (its warm start)
    correction: Float[Array, ""]  # r of the last search (shifts the warm start)
    cycle_best: Float[Array, ""]  # the objective at the last cycle's end (NaN: not yet known)
    cycle_ended: Bool[Array, ""]  # compare this step's objective with cycle_best


@dataclasses.dataclass(frozen=True)
class DAAREM:
    """Damped Anderson acceleration of EM with restarts and an objective safeguard.

    Attributes:
        order: the most differences kept (compiled in: it fixes a shape); the history length
            is min(order, ⌈p/2⌉) for p parameters.
        mon_tol: (traced, as the rest) how far, in total log-posterior units (the R
            package's `mon.tol`), a proposal may fall below the current objective; 0 is
            strictly monotone.
        cycle_mon_tol: the R package's `cycl.mon.tol`: a cycle of `order` steps that ends more
            than this below the last cycle's end tightens the damping.
        kappa, alpha: the damping schedule δ_k = 1 / (1 + alpha^(kappa − s_k)).
    Defaults are the R package's.
    """

    order: int = 5
    mon_tol: float = dataclasses.field(default=0.01, compare=False)
    cycle_mon_tol: float = dataclasses.field(default=0.0, compare=False)
    kappa: float = dataclasses.field(default=25.0, compare=False)
    alpha: float = dataclasses.field(default=1.2, compare=False)

    name: ClassVar[str] = "daarem"
    default_max_iter: ClassVar[int] = 100
    default_tol: ClassVar[float] = 1e-3

    def __post_init__(self):
        check_positive_int("order", self.order)

    def hyper(self, options: dict) -> dict:
        only_own_options(options, self.name)
        return {
            "mon_tol": check_option("mon_tol", self.mon_tol, low=0.0),
            "cycle_mon_tol": check_option("cycle_mon_tol", self.cycle_mon_tol, low=0.0),
            "kappa": check_option("kappa", self.kappa, low=0.0),
            "alpha": check_option("alpha", self.alpha, low=1.0, inclusive=False),
        }

    def init(self, gmm: GMM, key, problem: Problem, hyper):
        u = to_unconstrained(gmm)
        x, _ = ravel_pytree(u)
        p, m = x.shape[0], self._lags(x.shape[0])
        zero = jnp.zeros((), x.dtype)
        state = _State(
            x_prev=jnp.zeros_like(x),
            f_prev=jnp.zeros_like(x),
            dx=jnp.zeros((p, m), x.dtype),
            df=jnp.zeros((p, m), x.dtype),
            count=jnp.array(0),
            started=jnp.array(False),
            shrink=zero,
            damping=zero + _LAMBDA_START,
            correction=zero,
            cycle_best=zero + jnp.nan,
            cycle_ended=jnp.array(False),
        )
        return u, state

    def _lags(self, n_params: int) -> int:
        return min(self.order, math.ceil(n_params / 2))

    def to_gmm(self, params) -> GMM:
        return from_unconstrained(params)

    def step(self, u, s: _State, problem: Problem, hyper) -> StepOutput:
        x, unravel = ravel_pytree(u)
        nlag = self._lags(x.shape[0])
        Fu, fx, failure = unconstrained_em_map(u, problem)
        fx_vec, _ = ravel_pytree(Fu)
        resid = fx_vec - x
        kappa = hyper["kappa"]

        # The cycle check the R package makes at the end of a cycle, on f of its last point.
        # R's first reference is f after the first plain EM step: set on the second step.
        best = jnp.where(jnp.isnan(s.cycle_best) & s.started, fx, s.cycle_best)
        worse = s.cycle_ended & (fx < best - hyper["cycle_mon_tol"] / problem.total_weight)
        shrink = jnp.where(worse, jnp.maximum(s.shrink - nlag, -2.0 * kappa), s.shrink)
        best = jnp.where(s.cycle_ended, fx, best)

        count = jnp.where(s.started, s.count + 1, 0)
        col = jnp.maximum(count - 1, 0)
        dx = s.dx.at[:, col].set(x - s.x_prev)
        df = s.df.at[:, col].set(resid - s.f_prev)
        filled = (jnp.arange(nlag) < count)[None, :]
        dx, df = jnp.where(filled, dx, 0.0), jnp.where(filled, df, 0.0)

        U, d, Vt = jnp.linalg.svd(df, full_matrices=False)
        # Only `count` columns are filled: the rest of the (descending) singular values are
        # zero up to rounding and are left out.
        d = jnp.where(jnp.arange(nlag) < count, d, 0.0)
        uy = U.T @ resid
        damping, correction = _find_damping(
            jnp.square(uy), d, hyper["alpha"], kappa, shrink, s.damping, s.correction
        )
        positive = d > 0
        coef = jnp.where(positive, d * uy / jnp.where(positive, jnp.square(d) + damping, 1.0), 0.0)
        gamma = Vt.T @ coef
        proposal = x + resid - (dx + df) @ gamma
        # The first step is a plain EM step: no proposal to evaluate.
        f_prop = jax.lax.cond(
            s.started,
            lambda point: problem.objective(from_unconstrained(unravel(point)))[0],
            lambda point: jnp.array(jnp.nan, fx.dtype),
            proposal,
        )
        valid = s.started & jnp.isfinite(f_prop) & jnp.all(jnp.isfinite(proposal))
        accept = valid & (f_prop >= fx - hyper["mon_tol"] / problem.total_weight)
        x_next = jnp.where(accept, proposal, fx_vec)
        shrink = shrink + accept.astype(shrink.dtype)
        # An invalid proposal restarts the history (as the R package does); so does a full one.
        count = jnp.where(s.started & ~valid, 0, count)
        cycle_ended = count == nlag
        new_state = _State(
            x_prev=x,
            f_prev=resid,
            dx=dx,
            df=df,
            count=jnp.where(cycle_ended, 0, count),
            started=jnp.array(True),
            shrink=shrink,
            damping=jnp.where(s.started, damping, s.damping),
            correction=jnp.where(s.started, correction, s.correction),
            cycle_best=best,
            cycle_ended=cycle_ended,
        )
        return StepOutput(
            unravel(x_next),
            new_state,
            fx,
            failure,
            evals_value=1.0,
            evals_update=s.started.astype(fx.dtype),
        )


def _find_damping(uy_sq, d, alpha, kappa, shrink, start, correction):
    """λ with ‖γ(λ)‖ ≈ √δ ‖γ_LS‖ (accepted within the band that δ at s_k ± ½ gives), by the
    safeguarded Newton iteration of the R package's `DampingFind`, warm-started from the last
    search. Singular values d = 0 (history columns not filled yet) are left out.
    Returns (λ, r), r the last Newton correction (shifts the next warm start)."""
    positive = d > 0
    d_sq = jnp.where(positive, jnp.square(d), 1.0)
    uy_sq = jnp.where(positive, uy_sq, 0.0)
    power = kappa - shrink
    target = jnp.exp(-0.5 * jnp.log1p(alpha**power))  # √δ_k
    ls_norm = jnp.sqrt(jnp.sum(uy_sq / d_sq))
    goal = target * ls_norm
    safe_goal = jnp.where(goal > 0, goal, 1.0)
    lower = (
        ls_norm
        * (ls_norm - goal)
        / jnp.maximum(jnp.sum(uy_sq / jnp.square(d_sq)), jnp.finfo(d_sq.dtype).tiny)
    )
    upper = jnp.sqrt(jnp.sum(uy_sq * d_sq)) / safe_goal
    low_stop = jnp.exp(-0.5 * jnp.log1p(alpha ** (power + 0.5))) * ls_norm
    high_stop = jnp.exp(-0.5 * jnp.log1p(alpha ** (power - 0.5))) * ls_norm
    d_abs = jnp.where(positive, d, 0.0)

    def newton(_, carry):
        lam, lower, upper, r, done = carry
        outside = (lam <= lower) | (lam >= upper)
        lam_in = jnp.where(outside, jnp.maximum(1e-4 * upper, jnp.sqrt(lower * upper)), lam)
        shrunk = jnp.square(d_abs / (d_sq + lam_in))
        norm = jnp.sqrt(jnp.sum(uy_sq * shrunk))
        phi = norm - safe_goal
        slope = -jnp.sum(uy_sq * shrunk / (d_sq + lam_in)) / jnp.where(norm > 0, norm, 1.0)
        ratio = phi / jnp.where(slope != 0, slope, -1.0)
        hit = (norm <= high_stop) & (norm >= low_stop)
        new_r = norm * ratio
        stop = done | hit
        new_upper = jnp.where(phi >= 0, upper, lam_in)
        new_lower = jnp.maximum(lower, lam_in - ratio)
        new_lam = lam_in - new_r / safe_goal
        keep = lambda old, new: jnp.where(done, old, new)  # noqa: E731
        return (
            keep(lam, jnp.where(hit, lam_in, new_lam)),
            keep(lower, jnp.where(hit, lower, new_lower)),
            keep(upper, jnp.where(hit, upper, new_upper)),
            keep(r, new_r),
            stop,
        )

    lam0 = start - correction / safe_goal
    lam, _, _, r, _ = jax.lax.fori_loop(
        0, _DAMPING_ITERATIONS, newton, (lam0, lower, upper, correction, jnp.array(False))
    )
    # ‖γ_LS‖ = 0: γ = 0 whatever λ is; keep the warm start.
    return jnp.where(goal > 0, lam, start), jnp.where(goal > 0, r, correction)
