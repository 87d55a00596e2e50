"""Online EM (Cappé & Moulines 2009; docs/math.md §9): EM on a running average of minibatch
statistics, for data too large for a full pass per update.

Minibatches are the data's chunks (`batch_size` rows), visited in a random order each pass
(`batch_order` of the data source, from the restart's key: reproducible). For minibatch t,
with statistics s̄_t per unit weight computed under the current θ_t−1:

    ŝ_t = (1 − γ_t) ŝ_t−1 + γ_t s̄_t,   γ_t = γ0 (t + t0)^(−α)   (γ_1 = 1: ŝ starts at s̄_1)
    θ_t = M-step(W ŝ_t)                                      (W = Σ_i w_i: the prior keeps
                                                              its full-data weight)

with no M-step during the first `warmup` passes, and Polyak–Ruppert averaging of the iterates
θ_t (weights, means and covariances) from `average_from` of the run on. With one minibatch
and γ = 1 it is EM exactly. One solver step is one pass; its value is the pass's progressive
objective, Σ_t ℓ(B_t; θ_t−1) / W + log p(θ)/W at the pass's start (exactly f(θ) with one
minibatch). The fit's final `objective` is the exact one of the returned (averaged) iterate.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from ._covariance import project
from ._em import block_e_statistics
from ._em_method import check_option, m_step_checked, only_own_options
from ._method import Problem
from ._params import GMM
from ._solver import OK, StepOutput
from ._stats import SufficientStatistics, reshift, scaled, zero_statistics
from ._validate import check_positive_int

# Default minibatches per pass when no batch_size is given (and the smallest default batch).
_DEFAULT_BATCHES = 100
_MIN_DEFAULT_BATCH = 256


class Iterates(eqx.Module):
    """The current iterate and the running average of the iterates since averaging began."""

    current: GMM
    mean_weights: Float[Array, " k"]
    mean_means: Float[Array, "k d"]
    mean_covariances: Array
    n_averaged: Int[Array, ""]


class _Aux(eqx.Module):
    stats: SufficientStatistics  # ŝ, per unit weight
    t: Int[Array, ""]  # minibatches seen
    key: PRNGKeyArray


def batch_rows(batch_size: int | None, n_samples: int) -> int:
    """Rows per minibatch: `batch_size`, or about N/100 (at least 256, at most N)."""
    if batch_size is not None:
        return min(batch_size, n_samples)
    return min(n_samples, max(_MIN_DEFAULT_BATCH, math.ceil(n_samples / _DEFAULT_BATCHES)))


@dataclasses.dataclass(frozen=True)
class OnlineEM:
    """Online EM with a decreasing step size, warm-up and iterate averaging.

    Attributes:
        batch_size: rows per minibatch (compiled in: it fixes a shape); None for about N/100.
            It sets the data's chunk size, so it cannot be combined with `chunk_size`.
        step_exponent: α in γ_t = γ0 (t + t0)^(−α); the convergence theory needs α in
            (1/2, 1] (0 with γ0 = 1 makes every γ_t = 1: EM on each minibatch in turn).
        step_scale, step_offset: γ0 (in (0, 1]) and t0 (≥ 0).
        warmup: passes (a fraction of one) before the first M-step.
        average_from: the fraction of the run (max_iter passes) after which iterates are
            averaged (0.5: the later half); 1 turns averaging off.
    All but batch_size are traced: changing them does not recompile.
    """

    batch_size: int | None = None
    step_exponent: float = dataclasses.field(default=0.6, compare=False)
    step_scale: float = dataclasses.field(default=1.0, compare=False)
    step_offset: float = dataclasses.field(default=0.0, compare=False)
    warmup: float = dataclasses.field(default=0.05, compare=False)
    average_from: float = dataclasses.field(default=0.5, compare=False)

    name: ClassVar[str] = "online_em"
    # Updates go through the M-step, so every covariance model keeps its structure.
    structured_covariances: ClassVar[bool] = True
    # history[t] is the pass's running estimate, not f(θ_t) (see the module docstring).
    history_is_exact: ClassVar[bool] = False
    default_max_iter: ClassVar[int] = 10
    default_tol: ClassVar[float] = 1e-3

    def __post_init__(self):
        check_positive_int("batch_size", self.batch_size, allow_none=True)

    def rows_per_chunk(self, n_samples: int) -> int:
        return batch_rows(self.batch_size, n_samples)

    def hyper(self, options: dict) -> dict:
        only_own_options(options, self.name)
        exponent = check_option("step_exponent", self.step_exponent, low=0.0)
        scale = check_option("step_scale", self.step_scale, low=0.0, inclusive=False)
        average_from = check_option("average_from", self.average_from, low=0.0)
        if exponent > 1 or scale > 1 or average_from > 1:
            raise ValueError(
                "step_exponent and average_from must be in [0, 1] and step_scale in (0, 1], got "
                f"{exponent}, {average_from} and {scale}."
            )
        return {
            "step_exponent": exponent,
            "step_scale": scale,
            "step_offset": check_option("step_offset", self.step_offset, low=0.0),
            "warmup": check_option("warmup", self.warmup, low=0.0),
            "average_from": average_from,
        }

    def init(self, gmm: GMM, key, problem: Problem, hyper):
        iterates = Iterates(gmm, gmm.weights, gmm.means, gmm.covariances, jnp.array(0))
        aux = _Aux(zero_statistics(gmm.means, gmm.cov_type), jnp.array(0), key)
        return iterates, aux

    def to_gmm(self, params: Iterates) -> GMM:
        cov_type = params.current.cov_type
        # An average of structured covariances can leave a non-convex mclust model (EVI, EEV,
        # ...): map it back by the model's M-step.
        covariances = project(
            cov_type, params.mean_covariances, params.mean_weights, params.current.covariances
        )
        averaged = GMM(params.mean_weights, params.mean_means, covariances, cov_type)
        return jax.tree.map(
            lambda a, b: jnp.where(params.n_averaged > 0, a, b), averaged, params.current
        )

    def step(self, params: Iterates, aux: _Aux, problem: Problem, hyper) -> StepOutput:
        data = problem.data
        n_batches = data.n_chunks
        key, sub = jax.random.split(aux.key)
        order = data.batch_order(sub)
        dtype = params.current.means.dtype
        warm = jnp.floor(hyper["warmup"] * n_batches)
        average_start = jnp.floor(hyper["average_from"] * hyper["max_iter"] * n_batches)
        # average_from = 1 never averages (t never reaches the run's last minibatch + 1).
        average_start = jnp.where(hyper["average_from"] >= 1, jnp.inf, average_start)

        def minibatch(carry, j):
            it, stats, t, total_ll, failure = carry
            X, w = data.batch(order, j)
            gmm = it.current
            batch, ll = block_e_statistics(gmm, X, w, missing=data.missing)
            batch_weight = jnp.sum(w)
            rate = hyper["step_scale"] * (t + 1 + hyper["step_offset"]) ** -hyper["step_exponent"]
            rate = jnp.where(t == 0, 1.0, rate).astype(dtype)
            rate = jnp.where(batch_weight > 0, rate, 0.0)  # a batch of padding only
            mean = scaled(batch, 1.0 / jnp.maximum(batch_weight, jnp.finfo(dtype).tiny))
            prev = reshift(stats, gmm.means)
            stats = jax.tree.map(lambda a, b: (1 - rate) * a + rate * b, prev, mean)
            new, new_failure, _ = m_step_checked(
                scaled(stats, problem.total_weight),
                gmm.cov_type,
                problem,
                start=gmm.covariances,
            )
            update = (t + 1 > warm) & (new_failure == OK)
            current = jax.tree.map(lambda a, b: jnp.where(update, a, b), new, gmm)
            failure = jnp.where((failure == OK) & (t + 1 > warm), new_failure, failure)
            failure = failure.astype(jnp.int32)
            it = _averaged(it, current, t >= average_start)
            return (it, stats, t + 1, total_ll + ll, failure), None

        start = (params, aux.stats, aux.t, jnp.zeros((), dtype), jnp.asarray(OK, jnp.int32))
        (params_next, stats, t, total_ll, failure), _ = jax.lax.scan(
            minibatch, start, jnp.arange(n_batches)
        )
        value = total_ll / problem.total_weight + problem.prior_term(params.current)
        # The tol test may stop the run only once averaging has begun (or with it off), so a
        # quick plateau of the noisy pass objective does not return the unaveraged iterate.
        can_stop = (params_next.n_averaged > 0) | (hyper["average_from"] >= 1)
        return StepOutput(params_next, _Aux(stats, t, key), value, failure, can_stop=can_stop)


def _averaged(it: Iterates, current: GMM, include) -> Iterates:
    """Iterates with `current` taken into the running average when `include`."""
    n = it.n_averaged + include.astype(it.n_averaged.dtype)
    step = jnp.where(include, 1.0 / jnp.maximum(n, 1), 0.0)

    def mean(old, new):
        return old + step * (new - old)

    return Iterates(
        current,
        mean(it.mean_weights, current.weights),
        mean(it.mean_means, current.means),
        mean(it.mean_covariances, current.covariances),
        n,
    )
