"""Gradient methods: maximise the objective f with an optax optimiser (docs/math.md §5).

The iterate is the unconstrained coordinates of `_transforms.py`, so every optimiser step is a
valid GMM; the loss is −f, the same function EM climbs (log-likelihood plus log-prior, per
sample). Same starts, same solver, same `FitResult` as EM: only the step differs.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import PRNGKeyArray

from ._em import streamed_log_likelihood
from ._method import Problem, all_finite
from ._params import GMM
from ._solver import OK, Status, StepOutput
from ._stats import Chunked
from ._transforms import from_unconstrained, to_unconstrained
from ._validate import check_non_negative, check_positive_int

OPTIMIZERS = ("lbfgs", "adam", "sgd")
DEFAULT_LEARNING_RATE = {"adam": 0.05, "sgd": 0.05}
SGD_MOMENTUM = 0.9


class _Aux(eqx.Module):
    opt_state: optax.OptState
    key: PRNGKeyArray


@dataclasses.dataclass(frozen=True)
class Gradient:
    """An optax optimiser on −f over the unconstrained coordinates.

    Attributes:
        optimizer: "lbfgs" (optax's L-BFGS with its zoom line search), "adam", "sgd" (momentum
            0.9), or any `optax.GradientTransformation` (a new object recompiles).
        batch_size: rows per minibatch for stochastic gradients (drawn uniformly with
            replacement, keyed per step), or None for full-data gradients.

    Run-time numbers (`hyper`): learning_rate (adam/sgd) and grad_tol (converged when the tol
    test passes *and* the gradient norm is below it).
    """

    optimizer: Any = "lbfgs"
    batch_size: int | None = None

    default_max_iter: ClassVar[int] = 500
    default_tol: ClassVar[float] = 1e-6

    def __post_init__(self):
        check_optimizer(self.optimizer)
        check_positive_int("batch_size", self.batch_size, allow_none=True)
        if self.batch_size is not None and self.optimizer == "lbfgs":
            raise ValueError(
                "L-BFGS's line search needs the full-data objective; drop batch_size or use "
                '"adam" / "sgd".'
            )

    @property
    def takes_extra_args(self) -> bool:
        """A user's optax transformation that accepts value / grad / value_fn (optax.lbfgs(),
        chains with a line search; plain transformations ignore them)."""
        return isinstance(self.optimizer, optax.GradientTransformationExtraArgs)

    @property
    def name(self) -> str:
        return self.optimizer if isinstance(self.optimizer, str) else "optax"

    def hyper(self, options: dict) -> dict:
        lr = options.get("learning_rate")
        grad_tol = options.get("grad_tol")
        if lr is not None:
            check_non_negative("learning_rate", lr)
            if not lr > 0:
                raise ValueError(f"learning_rate must be > 0, got {lr!r}.")
        else:
            lr = DEFAULT_LEARNING_RATE.get(self.optimizer, 0.0) if self.name != "optax" else 0.0
        grad_tol = 1e-4 if grad_tol is None else grad_tol
        check_non_negative("grad_tol", grad_tol)
        return {"learning_rate": lr, "grad_tol": grad_tol}

    def _optax(self, hyper) -> optax.GradientTransformation:
        """Built inside the traced program: the learning rate is a traced array."""
        if self.optimizer == "lbfgs":
            return optax.lbfgs()
        if self.optimizer == "adam":
            return optax.adam(hyper["learning_rate"])
        if self.optimizer == "sgd":
            return optax.sgd(hyper["learning_rate"], momentum=SGD_MOMENTUM)
        return self.optimizer

    def init(self, gmm: GMM, key, problem: Problem, hyper):
        u = to_unconstrained(gmm)
        return u, _Aux(self._optax(hyper).init(u), jax.random.fold_in(key, 1))

    def to_gmm(self, params) -> GMM:
        return from_unconstrained(params)

    def step(self, u, aux: _Aux, problem: Problem, hyper) -> StepOutput:
        opt = self._optax(hyper)

        def loss(u, batch):
            gmm = from_unconstrained(u)
            ll = streamed_log_likelihood(gmm, batch, checkpoint=True)
            # max(): a minibatch that drew only zero-weight rows contributes nothing, not 0/0.
            mean_ll = ll / jnp.maximum(batch.total_weight, jnp.finfo(ll.dtype).tiny)
            # −f with the batch's mean log-likelihood standing in for the full data's.
            return -(mean_ll + problem.prior_term(gmm))

        full_loss = functools.partial(loss, batch=problem.data)
        key, sub = jax.random.split(aux.key)
        if self.takes_extra_args and self.batch_size is None:
            # A user's transformation that may take the objective (e.g. optax.lbfgs() or a
            # chain with a line search): give it value, grad and value_fn; its own line-search
            # evaluations are not counted.
            value, grad = jax.value_and_grad(full_loss)(u)
            updates, opt_state = opt.update(
                grad, aux.opt_state, u, value=value, grad=grad, value_fn=full_loss
            )
            evals_value, evals_update, f = 1.0, 0.0, -value
        elif self.optimizer == "lbfgs":
            # Reuses the value and gradient the previous line search computed at this point;
            # only the first step (stored value still +inf) evaluates afresh.
            fresh = jnp.isinf(optax.tree_utils.tree_get(aux.opt_state, "value"))
            value, grad = optax.value_and_grad_from_state(full_loss)(u, state=aux.opt_state)
            updates, opt_state = opt.update(
                grad, aux.opt_state, u, value=value, grad=grad, value_fn=full_loss
            )
            evals_value = jnp.where(fresh, 1.0, 0.0)
            evals_update = optax.tree_utils.tree_get(opt_state, "num_linesearch_steps")
            f = -value
        elif self.batch_size is None:
            value, grad = jax.value_and_grad(full_loss)(u)
            updates, opt_state = opt.update(grad, aux.opt_state, u)
            evals_value, evals_update, f = 1.0, 0.0, -value
        else:
            grad = jax.grad(loss)(u, _minibatch(problem, sub, self.batch_size))
            updates, opt_state = opt.update(grad, aux.opt_state, u)
            # The record is the full-data objective, so curves compare with EM's; it is
            # instrumentation, not work the method needs, so it is not counted.
            f = -full_loss(u)
            evals_value = 0.0
            evals_update = self.batch_size / problem.n_samples.astype(f.dtype)
        new_u = optax.apply_updates(u, updates)
        failure = jnp.where(all_finite(from_unconstrained(new_u)), OK, Status.NON_FINITE)
        grad_small = optax.tree_utils.tree_norm(grad) < hyper["grad_tol"]
        return StepOutput(
            new_u,
            _Aux(opt_state, key),
            f,
            failure,
            can_stop=grad_small,
            evals_value=evals_value,
            evals_update=evals_update,
        )


def _minibatch(problem: Problem, key, batch_size: int) -> Chunked:
    data = problem.data
    idx = jax.random.randint(key, (batch_size,), 0, problem.n_samples)
    X, w = data.flat_X[idx], data.flat_weight[idx]
    return Chunked(X[None], w[None], data.missing)


def check_optimizer(optimizer) -> None:
    if isinstance(optimizer, str):
        if optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer must be one of {OPTIMIZERS} or an optax.GradientTransformation, "
                f"got {optimizer!r}."
            )
    elif not isinstance(optimizer, optax.GradientTransformation):
        raise ValueError(
            f"optimizer must be a name or an optax.GradientTransformation, got {optimizer!r}."
        )
