"""Incremental EM (Neal & Hinton 1998; docs/math.md §9): the data in B blocks, each block's
statistics stored, one block refreshed per update.

    S_b ← statistics of block b under θ,   θ ← M-step(Σ_b S_b)

Blocks are the data's chunks, refreshed in order; one solver step is one pass (B updates).
As Neal & Hinton start it, `init` fills every block's statistics under the start θ_0 (one
E-step pass, counted in the first step's work), so the first update is an EM step and every
update after it increases the free energy; the fixed points are EM's, and with one block it
is EM. The step's value is Σ_b ℓ(block b; θ at its refresh) / W + log p(θ)/W at the pass's
start: exactly f(θ) with one block, a running estimate otherwise.

Float32 and cost: statistics are kept about a shift close to the means (`_stats.reshift`). At
the start of a pass every stored block shares one shift (the previous pass's starting means);
the pass keeps two sums about its own starting means, of the blocks not yet refreshed (from
which each refreshed block's old statistics are subtracted once) and of the refreshed ones, so
an update costs O(K·D²) beyond its block's E-step, and the sums are rebuilt from the stored
blocks at every pass, so rounding does not accumulate across passes.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool

from ._em import block_e_statistics
from ._em_method import m_step_checked, only_own_options
from ._method import Problem
from ._params import GMM
from ._solver import OK, StepOutput
from ._stats import SufficientStatistics, reshift
from ._validate import check_positive_int


class _Blocks(eqx.Module):
    stats: SufficientStatistics  # (B, ...) per block, all about one shift (B, K, D) rows equal
    first: Bool[Array, ""]  # the first step has not run (its work includes init's E-step pass)


def _block_statistics(gmm: GMM, data, b):
    return block_e_statistics(gmm, *data.chunk(b), missing=data.missing)


def _sum(stats: SufficientStatistics) -> SufficientStatistics:
    """Σ over the leading block axis of statistics that share one shift."""
    return SufficientStatistics(
        jnp.sum(stats.s0, 0), jnp.sum(stats.s1, 0), jnp.sum(stats.s2, 0), stats.shift[0]
    )


def _add(a: SufficientStatistics, b: SufficientStatistics, sign=1.0) -> SufficientStatistics:
    """a + sign·b for statistics about the same shift."""
    return SufficientStatistics(a.s0 + sign * b.s0, a.s1 + sign * b.s1, a.s2 + sign * b.s2, a.shift)


@dataclasses.dataclass(frozen=True)
class IncrementalEM:
    """Incremental EM over about `n_blocks` blocks of rows (compiled in: it fixes the data's
    chunk size, ⌈N / n_blocks⌉ rows, so it cannot be combined with `chunk_size`). Memory: one
    set of statistics (K·D² numbers for full covariances) per block and restart."""

    n_blocks: int = 10

    name: ClassVar[str] = "incremental_em"
    # Updates go through the M-step, so every covariance model keeps its structure.
    structured_covariances: ClassVar[bool] = True
    # history[t] is the pass's running estimate, not f(θ_t) (see the module docstring).
    history_is_exact: ClassVar[bool] = False
    default_max_iter: ClassVar[int] = 100
    default_tol: ClassVar[float] = 1e-3

    def __post_init__(self):
        check_positive_int("n_blocks", self.n_blocks)

    def rows_per_chunk(self, n_samples: int) -> int:
        return math.ceil(n_samples / self.n_blocks)

    def hyper(self, options: dict) -> dict:
        only_own_options(options, self.name)
        return {}

    def init(self, gmm: GMM, key, problem: Problem, hyper):
        data = problem.data
        stats = jax.lax.map(lambda b: _block_statistics(gmm, data, b)[0], jnp.arange(data.n_chunks))
        return gmm, _Blocks(stats, jnp.array(True))

    def to_gmm(self, params: GMM) -> GMM:
        return params

    def step(self, gmm: GMM, blocks: _Blocks, problem: Problem, hyper) -> StepOutput:
        data = problem.data
        origin = gmm.means  # this pass's shift
        stored = jax.vmap(reshift, in_axes=(0, None))(blocks.stats, origin)
        waiting = _sum(stored)  # blocks not yet refreshed in this pass
        done = _add(waiting, waiting, -1.0)  # zeros about `origin`: refreshed blocks

        def refresh(carry, b):
            gmm, new_stats, waiting, done, total_ll, failure = carry
            fresh, ll = _block_statistics(gmm, data, b)
            fresh = reshift(fresh, origin)
            old = jax.tree.map(lambda a: a[b], stored)
            waiting = _add(waiting, old, -1.0)
            done = _add(done, fresh)
            summed = reshift(_add(waiting, done), gmm.means)
            new, new_failure, _ = m_step_checked(
                summed, gmm.cov_type, problem, start=gmm.covariances
            )
            gmm = jax.tree.map(lambda a, c: jnp.where(new_failure == OK, a, c), new, gmm)
            failure = jnp.where(failure == OK, new_failure, failure).astype(jnp.int32)
            new_stats = jax.tree.map(lambda all_, one: all_.at[b].set(one), new_stats, fresh)
            return (gmm, new_stats, waiting, done, total_ll + ll, failure), None

        dtype = gmm.means.dtype
        start = (gmm, stored, waiting, done, jnp.zeros((), dtype), jnp.asarray(OK, jnp.int32))
        (new, stats, _, _, total_ll, failure), _ = jax.lax.scan(
            refresh, start, jnp.arange(data.n_chunks)
        )
        value = total_ll / problem.total_weight + problem.prior_term(gmm)
        return StepOutput(
            new,
            _Blocks(stats, jnp.array(False)),
            value,
            failure,
            evals_value=1.0,
            evals_update=blocks.first.astype(dtype),
        )
