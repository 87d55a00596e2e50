"""Successive halving over restarts: stop spending iterations on restarts that trail.

A vmapped `while_loop` runs every restart until the slowest one stops, so R restarts cost
R · max_r(n_iter_r) steps whatever most of them needed. Successive halving (Jamieson &
Talwalkar 2016, applied to restarts) advances all R restarts for `every` iterations, keeps the
better half by objective, advances those for `every` more, and so on until `survivors` are
left, which then run to convergence or `max_iter`. Each stage gathers the survivors' solver
states, advances them (a vmapped `while_loop` of a fixed batch size) and scatters them back; the
stages are unrolled at trace time, so the whole search is still one compiled program. Because
the solver state carries the tol test, a survivor's history, n_iter and status are exactly
those of the plain loop. It works for every method. It costs about
R·every·(1 + 1/2 + 1/4 + ...) ≈ 2R·every steps plus the survivors' tail, instead of
R·max n_iter.

Pruning bets that a restart trailing after `every` steps will not overtake: EM's objective is
monotone, but a slow climber can still win. benchmarks/bench_halving.py measures how often the
pruned search still finds the full search's best optimum.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp

from ._solver import RUNNING, SolverState, Status, advance, failed, map_restarts


def halving_schedule(
    n_restarts: int, every: int, survivors: int, max_iter: int
) -> tuple[tuple[int, int], ...]:
    """Stages as (restarts alive, iterations): halve (rounding up) every `every` iterations
    down to `survivors`; the last stage gets what is left of `max_iter`."""
    stages, alive, spent = [], n_restarts, 0
    while alive > survivors and spent + every < max_iter:
        stages.append((alive, every))
        spent += every
        alive = max(survivors, -(-alive // 2))
    stages.append((alive, max_iter - spent))
    return tuple(stages)


def check_halving(every, survivors, n_restarts) -> None:
    """ValueError unless `every` is None or a positive int and 1 <= survivors <= n_restarts."""
    if every is None:
        return
    if not isinstance(every, int) or isinstance(every, bool) or every < 1:
        raise ValueError(f"halving_every must be a positive integer or None, got {every!r}.")
    if not isinstance(survivors, int) or not 1 <= survivors <= n_restarts:
        raise ValueError(
            f"halving_survivors must be an integer in [1, n_restarts={n_restarts}], "
            f"got {survivors!r}."
        )


def successive_halving(
    step, state: SolverState, stages: tuple[tuple[int, int], ...], *, tol
) -> SolverState:
    """Advance the restarts' states (leading axis R) through the `stages` of
    `halving_schedule`; restarts cut while still running get `Status.PRUNED`."""
    alive = jnp.arange(state.n_iter.shape[0])
    until = 0
    for i, (_, n_stage) in enumerate(stages):
        until += n_stage
        current = jax.tree.map(lambda a: a[alive], state)  # noqa: B023
        current = map_restarts(functools.partial(advance, step, until=until, tol=tol), current)
        state = jax.tree.map(lambda a, b: a.at[alive].set(b), state, current)  # noqa: B023
        if i + 1 == len(stages):
            break
        # Rank by the objective of the last evaluated iterate; failed restarts rank last.
        score = jnp.where(
            failed(current.status) | ~jnp.isfinite(current.prev_value),
            -jnp.inf,
            current.prev_value,
        )
        keep = jax.lax.top_k(score, stages[i + 1][0])[1]
        alive = alive[keep]
    # Whatever was cut while still running was pruned; finished restarts keep their status.
    status = jnp.where(state.status == RUNNING, Status.PRUNED, state.status)
    return eqx.tree_at(lambda s: s.status, state, status)
