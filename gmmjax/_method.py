"""What a fitting method is, and the `Problem` every method's step reads.

A method is a frozen (hashable, compiled-in) description plus three functions:

    init(gmm, key, problem, hyper) -> (params, aux)   its iterate and own state from a start
    step(params, aux, problem, hyper) -> StepOutput   one update; StepOutput.value = f(θ_t)
    to_gmm(params) -> GMM                              the mixture an iterate stands for

and `hyper(options)`, the numbers it reads at run time (learning rates, tolerances) as a dict
of traced arrays, so changing them does not recompile. The solver loop (`_solver.py`) owns the
history, the tol test, statuses, the work counter and successive halving; the program
(`_program.py`) owns restarts, initialisation and the final pass. A method gets restarts,
halving, chunking, streaming, sharding, sample weights and priors from `Problem` for free.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from ._em import pass_log_likelihood
from ._objective import penalised
from ._params import GMM
from ._prior import Prior
from ._solver import StepOutput
from ._stats import Chunked
from ._stream import Streamed


class Problem(eqx.Module):
    """The objective's ingredients, as every method's step sees them.

    Attributes:
        data: the (centred) rows: in memory (`Chunked`, possibly sharded) or host-streamed
            (`Streamed`); read only through `_stats.sum_over_chunks` and friends.
        prior: the (centred) `Prior`, or None.
        active: (K,) bool; masked components (see `select`) have weight exactly 0.
        reg_covar: scikit-learn's covariance regulariser for M-steps (EM, initialisation).
        n_samples: () rows before padding (minibatch draws index below it).
    """

    data: Chunked | Streamed
    prior: Prior | None
    active: Bool[Array, " k"]
    reg_covar: Float[Array, ""]
    n_samples: Int[Array, ""]

    @property
    def total_weight(self) -> Array:
        return self.data.total_weight

    def value(self, gmm: GMM, total_log_likelihood) -> Float[Array, ""]:
        """f(θ) from Σ_i w_i log p(x_i | θ): the objective of `_objective.py`."""
        return penalised(total_log_likelihood, gmm, self.prior, self.total_weight, self.active)

    def prior_term(self, gmm: GMM) -> Float[Array, ""]:
        """log p(θ) / Σ_i w_i (0 without a prior): f without its log-likelihood."""
        return penalised(
            jnp.zeros_like(self.total_weight), gmm, self.prior, self.total_weight, self.active
        )

    def objective(self, gmm: GMM) -> tuple[Float[Array, ""], Float[Array, ""]]:
        """(f(θ), mean log-likelihood) over all the data: one pass (`_em.pass_log_likelihood`)."""
        total = pass_log_likelihood(gmm, self.data)
        return self.value(gmm, total), total / self.total_weight


class Method(Protocol):
    """The interface of the module docstring (EM in `_em_method.py`, optax in `_gradient.py`)."""

    name: ClassVar[str]
    default_max_iter: ClassVar[int]
    default_tol: ClassVar[float]

    def hyper(self, options: dict) -> dict[str, Any]: ...

    def init(self, gmm: GMM, key: PRNGKeyArray, problem: Problem, hyper) -> tuple[Any, Any]: ...

    def step(self, params, aux, problem: Problem, hyper) -> StepOutput: ...

    def to_gmm(self, params) -> GMM: ...


def all_finite(tree) -> Array:
    """True when every leaf of `tree` is finite."""
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree)]))
