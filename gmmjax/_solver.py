"""The one iteration loop every method runs in: init -> advance(until) -> finish.

A method supplies a step (see `_method.Method`):

    step(params, aux) -> StepOutput(params=θ_{t+1}, aux=..., value=f(θ_t), failure)

with f the objective of `_objective.py` (mean log-likelihood plus log-prior / N). The loop
owns everything else: the NaN-filled history of f(θ_t), the work counter, the tol test
|f(θ_t) − f(θ_{t−1})| < tol (scikit-learn's test) and the per-restart status. Its state is
a pytree that can be advanced in stages (`advance(until=...)`), gathered and scattered along
the restart axis, so successive halving (`_halving.py`) carries the tol test across stage
boundaries. Iteration t returns θ_{t+1}, exactly like scikit-learn: `n_iter` counts completed
updates.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

# The axis name `map_restarts` gives its vmap over restarts (not a mesh axis: see
# `_sharding.RESTART_AXIS`): a choice every restart must share, like
# `_likelihood.expansion_is_accurate`'s, is reduced across it by `all_restarts`.
RESTART_VMAP_AXIS = "gmmjax_restarts"


class Status(enum.IntEnum):
    """Why a restart stopped."""

    CONVERGED = 0  # the change in the objective fell below tol
    MAX_ITER_REACHED = 1  # ran max_iter steps without meeting tol
    NON_FINITE = 2  # the objective or the parameters became NaN/inf
    DEGENERATE = 3  # a covariance lost positive definiteness or a component emptied
    PRUNED = 4  # stopped by successive halving: it trailed the other restarts

    @property
    def message(self) -> str:
        return _MESSAGES[self]

    @property
    def failed(self) -> bool:
        """The restart broke down (non-finite or degenerate iterates); it never wins."""
        return bool(failed(self))

    @property
    def succeeded(self) -> bool:
        """The restart ran its course (converged or reached max_iter); only these can win."""
        return bool(succeeded(self))


def _as_status_array(status):
    """Host values stay NumPy (no JAX dispatch, hence no compilation, outside a program)."""
    if isinstance(status, jax.Array | jax.core.Tracer):
        return status
    return np.asarray(status)


def failed(status) -> Array:
    """Elementwise `Status.failed` of an array of status codes."""
    status = _as_status_array(status)
    return (status == Status.NON_FINITE) | (status == Status.DEGENERATE)


def succeeded(status) -> Array:
    """Elementwise `Status.succeeded`: converged or reached max_iter. A pruned restart neither
    failed nor succeeded."""
    status = _as_status_array(status)
    return (status == Status.CONVERGED) | (status == Status.MAX_ITER_REACHED)


_MESSAGES = {
    Status.CONVERGED: "converged: the change in the objective fell below tol",
    Status.MAX_ITER_REACHED: "stopped at max_iter before meeting tol; raise max_iter or tol",
    Status.NON_FINITE: (
        "iterates became non-finite; use float64, rescale the data or raise reg_covar; "
        "the last finite parameters are returned"
    ),
    Status.DEGENERATE: (
        "a component collapsed (its covariance is not positive definite, e.g. a component on "
        "a single point or on collinear points); raise reg_covar or lower n_components; the "
        "last valid parameters are returned"
    ),
    Status.PRUNED: (
        "stopped early by successive halving: its objective trailed the other restarts'"
    ),
}

RUNNING = -1
OK = -1  # StepOutput.failure when the step succeeded


class StepOutput(eqx.Module):
    params: Any
    aux: Any
    # The objective f(θ_t) of the *input* params, per sample. Online and incremental EM, whose
    # step is a pass of many updates, report the pass's running estimate instead (their
    # docstrings say how it is formed); the fit's final `objective` is always exact.
    value: Float[Array, ""]
    failure: Int[Array, ""]  # OK, Status.NON_FINITE or Status.DEGENERATE
    # A method's own extra convergence condition (e.g. a small gradient), ANDed with the tol test.
    can_stop: Bool[Array, ""] | bool = True
    # Work, in evaluations of the objective over the data (with its gradient where one is
    # taken): what it cost to know `value`, and what the update cost beyond that.
    evals_value: Float[Array, ""] | float = 1.0
    evals_update: Float[Array, ""] | float = 0.0


class SolverState(eqx.Module):
    """Everything one restart's loop carries; gather / scatter it along a restart axis.

    Attributes:
        params, aux: the method's iterate and its own state.
        prev_value: f of the last evaluated iterate (−inf before the first step).
        history: (max_iter,) f(θ_t), NaN where not reached.
        evals_history: (max_iter,) cumulative work when history[t] was known.
        evals: total work so far.
        n_iter: completed steps.
        status: RUNNING (−1) or a `Status`.
    """

    params: Any
    aux: Any
    prev_value: Float[Array, ""]
    history: Float[Array, " max_iter"]
    evals_history: Float[Array, " max_iter"]
    evals: Float[Array, ""]
    n_iter: Int[Array, ""]
    status: Int[Array, ""]


def init(params: Any, aux: Any, *, max_iter: int, dtype, previous_value=-jnp.inf) -> SolverState:
    """The state before the first step. The first tol test compares f(θ_0) with
    `previous_value`: −inf (never converged at the first step), or the last value of a fit
    this one continues (scikit-learn's warm start)."""
    return SolverState(
        params=params,
        aux=aux,
        prev_value=jnp.asarray(previous_value, dtype),
        history=jnp.full((max_iter,), jnp.nan, dtype),
        evals_history=jnp.full((max_iter,), jnp.nan, dtype),
        evals=jnp.zeros((), dtype),
        n_iter=jnp.array(0),
        status=jnp.array(RUNNING),
    )


def advance(
    step: Callable[[Any, Any], StepOutput],
    state: SolverState,
    *,
    until: int,
    tol: Float[Array, ""],
) -> SolverState:
    """Run `step` while the restart is running and has done fewer than `until` steps.

    A restart stops for good when the tol test passes (CONVERGED), when its history is full
    (MAX_ITER_REACHED) or when a step fails (the last good iterate is kept). Reaching `until`
    below the history's length only pauses it: calling `advance` again continues exactly as
    one longer call would, tol test included.
    """
    max_iter = state.history.shape[-1]

    def cond(s: SolverState) -> Bool[Array, ""]:
        return (s.status == RUNNING) & (s.n_iter < until)

    def body(s: SolverState) -> SolverState:
        out = step(s.params, s.aux)
        t = s.n_iter
        value = out.value
        failure = jnp.where(jnp.isfinite(value), out.failure, Status.NON_FINITE)
        broke = failure != OK
        # t == 0: prev_value is −inf (the change is +inf, never below tol) unless the fit
        # continues an earlier one (`init`'s previous_value).
        converged = (jnp.abs(value - s.prev_value) < tol) & out.can_stop
        status = jnp.where(
            broke,
            failure,
            jnp.where(
                converged,
                Status.CONVERGED,
                jnp.where(t + 1 >= max_iter, Status.MAX_ITER_REACHED, RUNNING),
            ),
        )

        def keep(new, old):
            return jax.tree.map(lambda a, b: jnp.where(broke, b, a), new, old)

        return SolverState(
            params=keep(out.params, s.params),
            aux=keep(out.aux, s.aux),
            prev_value=value,
            history=s.history.at[t].set(value),
            evals_history=s.evals_history.at[t].set(s.evals + out.evals_value),
            evals=(s.evals + out.evals_value + out.evals_update).astype(s.evals.dtype),
            n_iter=jnp.where(broke, t, t + 1),
            status=status,
        )

    return jax.lax.while_loop(cond, body, state)


def map_restarts(fn: Callable, *batched):
    """`jax.vmap(fn)(*batched)` over the leading restart axis; one restart runs unbatched.

    XLA's CPU backend lowers products with a batch dimension of size 1 badly: the float32
    diagonal E-step of W3 (N=100k, D=64, K=32) took 3.7 s as a vmap of one restart and 70 ms
    unbatched. `None` entries stay None. The vmap's axis is named `RESTART_VMAP_AXIS`, so that
    `all_restarts` can take a decision shared by every restart.
    """
    leaves = [b for b in batched if b is not None]
    if jax.tree.leaves(leaves)[0].shape[0] != 1:
        return jax.vmap(fn, axis_name=RESTART_VMAP_AXIS)(*batched)
    first = [None if b is None else jax.tree.map(lambda a: a[0], b) for b in batched]
    return jax.tree.map(lambda a: a[None], fn(*first))


def all_restarts(flag: Array) -> Array:
    """`flag` and-ed over the restarts of an enclosing `map_restarts` vmap (one unbatched
    value); `flag` itself where there is none (one restart, or a caller's own vmap)."""
    try:
        return jax.lax.pmin(flag, RESTART_VMAP_AXIS)
    except NameError:  # no enclosing vmap names the axis
        return flag


def select_best(value: Float[Array, " r"], status: Int[Array, " r"]) -> Int[Array, ""]:
    """Index of the best restart: the highest finite objective among restarts that succeeded;
    only if none did, the highest finite one among all (its status says so)."""
    finite = jnp.isfinite(value)
    ok = finite & succeeded(status)
    score = jnp.where(ok, value, -jnp.inf)
    fallback = jnp.where(finite, value, -jnp.inf)
    return jnp.argmax(jnp.where(jnp.any(ok), score, fallback))
