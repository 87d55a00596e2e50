"""Successive halving over EM restarts: stop spending iterations on restarts that trail.

A vmapped `while_loop` runs every restart until the slowest one stops, so R restarts cost
R · max_r(n_iter_r) E-steps whatever most of them needed. Successive halving (Jamieson &
Talwalkar 2016, applied to restarts) runs all R restarts for `every` iterations, keeps the
better half by log-likelihood, runs those for `every` more, and so on until `survivors` are
left, which then run to convergence or `max_iter`. Each stage is a vmapped `while_loop` of a
fixed batch size; the stages are unrolled at trace time, so the whole search is still one
compiled program. It costs about R·every·(1 + 1/2 + 1/4 + ...) ≈ 2R·every steps plus the
survivors' tail, instead of R·max n_iter.

Pruning bets that a restart trailing after `every` steps will not overtake: EM's
log-likelihood is monotone, but a slow climber can still win. benchmarks/bench_halving.py
measures how often the pruned search still finds the full search's best optimum.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ._em import streamed_log_likelihood
from ._solver import LoopResult, Status, iterate, map_restarts, select_best


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


def _failed(status):
    return status > Status.MAX_ITER_REACHED


@functools.partial(
    jax.jit, static_argnames=("n_components", "cov_type", "init", "has_init", "stages")
)
def _halving_program(
    data,
    keys,
    init_params,
    tol,
    reg_covar,
    init_data=None,
    *,
    n_components: int,
    cov_type: str,
    init: str,
    has_init: bool,
    stages: tuple[tuple[int, int], ...],
):
    """All restarts with successive halving; returns what `_fit_em_program` returns."""
    from ._fit import em_parts, trace_counts  # _fit imports this module

    trace_counts["fit_em"] += 1
    n_restarts = keys.shape[0]
    max_iter = sum(n for _, n in stages)
    longest = max(n for _, n in stages)
    step, initial = em_parts(
        data,
        init_data,
        reg_covar,
        jnp.ones((n_components,), bool),
        n_components=n_components,
        cov_type=cov_type,
        init=init,
    )
    params = init_params if has_init else map_restarts(initial, keys)
    dtype = params.means.dtype
    # Padded by the longest stage so that every write below fits without clamping.
    history = jnp.full((n_restarts, max_iter + longest), jnp.nan, dtype)
    evals_history = jnp.full_like(history, jnp.nan)
    n_iter = jnp.zeros((n_restarts,), int)
    evals = jnp.zeros((n_restarts,), dtype)
    status = jnp.full((n_restarts,), Status.PRUNED)
    alive = jnp.arange(n_restarts)
    current = params

    def place(row, new, at):
        return jax.lax.dynamic_update_slice(row, new, (at,))

    for i, (_, n_stage) in enumerate(stages):

        def run_stage(p, n_stage=n_stage):
            return iterate(step, p, None, max_iter=n_stage, tol=tol)

        out = map_restarts(run_stage, current)
        done = n_iter[alive]  # where each survivor's record continues
        pad = longest - n_stage
        new_hist = jnp.pad(out.history, ((0, 0), (0, pad)), constant_values=jnp.nan)
        new_evals = jnp.pad(
            out.evals_history + evals[alive][:, None], ((0, 0), (0, pad)), constant_values=jnp.nan
        )
        history = history.at[alive].set(jax.vmap(place)(history[alive], new_hist, done))
        evals_history = evals_history.at[alive].set(
            jax.vmap(place)(evals_history[alive], new_evals, done)
        )
        n_iter = n_iter.at[alive].add(out.n_iter)
        evals = evals.at[alive].add(out.evals)
        params = jax.tree.map(lambda a, b: a.at[alive].set(b), params, out.params)  # noqa: B023
        if i + 1 == len(stages):
            status = status.at[alive].set(out.status)
            break
        # Pruned restarts say PRUNED unless they had already failed.
        status = status.at[alive].set(jnp.where(_failed(out.status), out.status, Status.PRUNED))
        last = jnp.take_along_axis(out.history, jnp.maximum(out.n_iter - 1, 0)[:, None], 1)[:, 0]
        score = jnp.where(_failed(out.status) | ~jnp.isfinite(last), -jnp.inf, last)
        keep = jax.lax.top_k(score, stages[i + 1][0])[1]
        alive = alive[keep]
        current = jax.tree.map(lambda a: a[keep], out.params)  # noqa: B023

    ll = map_restarts(lambda p: streamed_log_likelihood(p, data), params) / data.total_weight
    loop = LoopResult(
        params,
        None,
        history[:, :max_iter],
        evals_history[:, :max_iter],
        evals,
        n_iter,
        status,
    )
    return params, ll, loop, select_best(ll, status)
