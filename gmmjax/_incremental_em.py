"""Incremental EM (Neal & Hinton 1998; docs/math.md §9): the data in B blocks, each block's
statistics stored, one block refreshed per update.

    S_b ← statistics of block b under θ,   θ ← M-step(Σ_b S_b)

Blocks are the data's chunks, refreshed in order; one solver step is one pass (B updates), and
its value is Σ_b ℓ(block b; θ at its refresh) / W + log p(θ)/W at the pass's start (exactly f(θ)
with one block, where the method is EM). Blocks not yet visited in the first pass hold zero
statistics, so the first pass is EM on the rows seen so far; after it every update increases
the free energy and the fixed points are EM's. Stored statistics keep the shift (the means)
they were taken about and are moved to the current means before they are summed
(`_stats.reshift`), so the sum never drifts by repeated subtraction.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp

from ._em import streamed_e_statistics
from ._em_method import m_step_checked, only_own_options
from ._method import Problem
from ._params import GMM
from ._solver import OK, StepOutput
from ._stats import Chunked, SufficientStatistics, reshift, zero_statistics


@dataclasses.dataclass(frozen=True)
class IncrementalEM:
    """Incremental EM over about `n_blocks` blocks of rows (compiled in: it fixes the data's
    chunk size, ⌈N / n_blocks⌉ rows, so it cannot be combined with `chunk_size`). Memory: one
    set of statistics (K·D² numbers for full covariances) per block and restart."""

    n_blocks: int = 10

    name: ClassVar[str] = "incremental_em"
    default_max_iter: ClassVar[int] = 100
    default_tol: ClassVar[float] = 1e-3

    def __post_init__(self):
        b = self.n_blocks
        if not isinstance(b, int) or isinstance(b, bool) or b < 1:
            raise ValueError(f"n_blocks must be a positive integer, got {b!r}.")

    def rows_per_chunk(self, n_samples: int) -> int:
        return math.ceil(n_samples / self.n_blocks)

    def hyper(self, options: dict) -> dict:
        only_own_options(options, self.name)
        return {}

    def init(self, gmm: GMM, key, problem: Problem, hyper):
        empty = zero_statistics(gmm.means, gmm.cov_type)
        n_blocks = problem.data.n_chunks
        blocks = jax.tree.map(lambda a: jnp.broadcast_to(a, (n_blocks,) + a.shape), empty)
        return gmm, blocks

    def to_gmm(self, params: GMM) -> GMM:
        return params

    def step(self, gmm: GMM, blocks: SufficientStatistics, problem: Problem, hyper) -> StepOutput:
        data = problem.data

        def refresh(carry, b):
            gmm, blocks, total_ll, failure = carry
            X, w = data.chunk(b)
            fresh, ll = streamed_e_statistics(gmm, Chunked(X[None], w[None]))
            blocks = jax.tree.map(lambda all_, one: all_.at[b].set(one), blocks, fresh)
            moved = jax.vmap(reshift, in_axes=(0, None))(blocks, gmm.means)
            summed = SufficientStatistics(
                jnp.sum(moved.s0, 0), jnp.sum(moved.s1, 0), jnp.sum(moved.s2, 0), gmm.means
            )
            new, new_failure = m_step_checked(summed, gmm.cov_type, problem)
            gmm = jax.tree.map(lambda a, b_: jnp.where(new_failure == OK, a, b_), new, gmm)
            failure = jnp.where(failure == OK, new_failure, failure).astype(jnp.int32)
            return (gmm, blocks, total_ll + ll, failure), None

        dtype = gmm.means.dtype
        start = (gmm, blocks, jnp.zeros((), dtype), jnp.asarray(OK, jnp.int32))
        (new, blocks, total_ll, failure), _ = jax.lax.scan(
            refresh, start, jnp.arange(data.n_chunks)
        )
        value = total_ll / problem.total_weight + problem.prior_term(gmm)
        return StepOutput(new, blocks, value, failure)
