"""`fit_gradient`: maximum likelihood by an optax optimiser, the baseline EM is compared against.

Same initial parameters, same log-likelihood kernel, same iteration skeleton and the same
`FitResult` as `fit_em`: only the step differs. The objective is the mean log-likelihood per
sample, maximised over the unconstrained coordinates of `_transforms.py`.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, PRNGKeyArray

from ._em import streamed_log_likelihood
from ._fit import fit_input, make_result, trace_counts
from ._init import init_from_data
from ._params import GMM
from ._solver import OK, Status, StepOutput, iterate, map_restarts, select_best
from ._stats import Chunked
from ._stream import is_host_stream
from ._transforms import Unconstrained, from_unconstrained, to_unconstrained
from ._validate import check_non_negative

OPTIMIZERS = ("lbfgs", "adam", "sgd")
DEFAULT_LEARNING_RATE = {"adam": 0.05, "sgd": 0.05}
SGD_MOMENTUM = 0.9


def _make_optimizer(optimizer, learning_rate: Array) -> optax.GradientTransformation:
    """Built inside the traced program: the learning rate is a traced array, not a constant."""
    if optimizer == "lbfgs":
        return optax.lbfgs()
    if optimizer == "adam":
        return optax.adam(learning_rate)
    if optimizer == "sgd":
        return optax.sgd(learning_rate, momentum=SGD_MOMENTUM)
    return optimizer  # a user's optax.GradientTransformation


def _minibatch(data: Chunked, key, batch_size: int, n_samples: int) -> Chunked:
    idx = jax.random.randint(key, (batch_size,), 0, n_samples)
    X, w = data.flat_X[idx], data.flat_weight[idx]
    return Chunked(X[None], w[None])


class _Aux(eqx.Module):
    opt_state: optax.OptState
    key: PRNGKeyArray


def _gradient_step(
    u: Unconstrained,
    aux: _Aux,
    *,
    data: Chunked,
    total_weight,
    opt: optax.GradientTransformation,
    is_lbfgs: bool,
    batch_size: int | None,
    n_samples: int,
    grad_tol,
) -> StepOutput:
    def loss(u, batch):
        ll = streamed_log_likelihood(from_unconstrained(u), batch, checkpoint=True)
        # max(): a minibatch that drew only zero-weight rows contributes nothing, not 0/0.
        return -ll / jnp.maximum(batch.total_weight, jnp.finfo(ll.dtype).tiny)

    full_loss = functools.partial(loss, batch=data)
    key, sub = jax.random.split(aux.key)
    if is_lbfgs:
        # Reuses the value and gradient the previous line search computed at this point; only
        # the first step (stored value still +inf) evaluates afresh.
        fresh = jnp.isinf(optax.tree_utils.tree_get(aux.opt_state, "value"))
        value, grad = optax.value_and_grad_from_state(full_loss)(u, state=aux.opt_state)
        updates, opt_state = opt.update(
            grad, aux.opt_state, u, value=value, grad=grad, value_fn=full_loss
        )
        evals_value = jnp.where(fresh, 1.0, 0.0)
        evals_update = optax.tree_utils.tree_get(opt_state, "num_linesearch_steps")
        ll = -value
    elif batch_size is None:
        value, grad = jax.value_and_grad(full_loss)(u)
        updates, opt_state = opt.update(grad, aux.opt_state, u)
        evals_value, evals_update, ll = 1.0, 0.0, -value
    else:
        grad = jax.grad(loss)(u, _minibatch(data, sub, batch_size, n_samples))
        updates, opt_state = opt.update(grad, aux.opt_state, u)
        # The record is the full-data log-likelihood, so curves compare with EM's; it is
        # instrumentation, not work the method needs, so it is not counted.
        ll = -full_loss(u)
        evals_value, evals_update = 0.0, batch_size / n_samples
    new_u = optax.apply_updates(u, updates)
    new = from_unconstrained(new_u)
    finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(new)]))
    failure = jnp.where(finite, OK, Status.NON_FINITE)
    grad_small = optax.tree_utils.tree_norm(grad) < grad_tol
    return StepOutput(
        new_u,
        _Aux(opt_state, key),
        ll,
        failure,
        can_stop=grad_small,
        evals_value=evals_value,
        evals_update=evals_update,
    )


@functools.partial(
    jax.jit,
    static_argnames=(
        "n_components",
        "cov_type",
        "init",
        "max_iter",
        "has_init",
        "optimizer",
        "batch_size",
        "n_samples",
    ),
)
def _fit_gradient_program(
    data: Chunked,
    keys: PRNGKeyArray,
    init_params: GMM | None,
    tol: Array,
    grad_tol: Array,
    learning_rate: Array,
    reg_covar: Array,
    init_data: Chunked | None = None,
    *,
    n_components: int,
    cov_type: str,
    init: str,
    max_iter: int,
    has_init: bool,
    optimizer,
    batch_size: int | None,
    n_samples: int,
):
    trace_counts["fit_gradient"] += 1
    total_weight = data.total_weight
    opt = _make_optimizer(optimizer, learning_rate)
    step = functools.partial(
        _gradient_step,
        data=data,
        total_weight=total_weight,
        opt=opt,
        is_lbfgs=optimizer == "lbfgs",
        batch_size=batch_size,
        n_samples=n_samples,
        grad_tol=grad_tol,
    )

    def one_restart(key, start):
        if not has_init:  # the same key as fit_em's: the same initial parameters
            start = init_from_data(
                data if init_data is None else init_data,
                key,
                n_components=n_components,
                cov_type=cov_type,
                method=init,
                reg_covar=reg_covar,
            )
        u = to_unconstrained(start)
        aux = _Aux(opt.init(u), jax.random.fold_in(key, 1))
        out = iterate(step, u, aux, max_iter=max_iter, tol=tol)
        params = from_unconstrained(out.params)
        final_ll = streamed_log_likelihood(params, data) / total_weight
        return params, final_ll, out

    params, ll, out = map_restarts(one_restart, keys, init_params)
    return params, ll, out, select_best(ll, out.status)


def fit_gradient(
    X,
    n_components: int,
    *,
    key: PRNGKeyArray,
    optimizer="lbfgs",
    learning_rate: float | None = None,
    cov_type: str = "full",
    n_restarts: int = 1,
    init: str = "kmeans++",
    max_iter: int = 500,
    tol: float = 1e-6,
    grad_tol: float = 1e-4,
    init_params: GMM | None = None,
    batch_size: int | None = None,
    sample_weight=None,
    reg_covar: float = 1e-6,
    chunk_size: int | None = None,
    mesh=None,
):
    """Maximise the mean log-likelihood per sample with an optax optimiser.

    Same initialisation (`init`, `init_params`, keys), the same log-likelihood code, the same
    while_loop skeleton and the same `FitResult` as `fit_em`; `history[r, t]` is the full-data
    mean log-likelihood of the t-th iterate, so curves compare with EM's step for step.

    Args:
        X: (N, D) data.
        n_components: K.
        key: PRNG key; with the same key and `init` the initial parameters equal `fit_em`'s.
        optimizer: "lbfgs" (optax's L-BFGS with its zoom line search), "adam", "sgd" (with
            momentum 0.9), or any `optax.GradientTransformation` (a new object recompiles).
        learning_rate: for "adam"/"sgd" (defaults 0.05); ignored by "lbfgs", whose line
            search picks the step. A traced array: changing it does not recompile.
        cov_type, n_restarts, init, max_iter, init_params, sample_weight, chunk_size, mesh:
            as in `fit_em` (with a mesh, gradients are summed across devices).
        tol: converged when the change in mean log-likelihood is below `tol` *and* the gradient
            norm is below `grad_tol`.
        grad_tol: see `tol`.
        batch_size: minibatch size for stochastic gradients (rows drawn uniformly with
            replacement, keyed per step); the history still records full-data values.
        reg_covar: only used by the initialisation's M-step (the gradient fit has no M-step).

    Returns:
        FitResult (with `n_evals`: full-data objective evaluations, line-search ones included).
    """
    _check_gradient_options(optimizer, learning_rate, grad_tol, batch_size)
    if batch_size is not None and mesh is not None and jax.process_count() > 1:
        # Minibatch rows are drawn by index below N, which assumes the padding comes last.
        raise ValueError("batch_size is not supported with several processes; use full batches.")
    if batch_size is not None and is_host_stream(X):
        raise ValueError("batch_size needs in-memory data; pass an array, not a memmap/iterator.")
    with fit_input(
        X,
        n_components,
        key=key,
        cov_type=cov_type,
        n_restarts=n_restarts,
        init=init,
        max_iter=max_iter,
        tol=tol,
        reg_covar=reg_covar,
        sample_weight=sample_weight,
        init_params=init_params,
        chunk_size=chunk_size,
        mesh=mesh,
    ) as prep:
        if learning_rate is None:
            learning_rate = (
                DEFAULT_LEARNING_RATE.get(optimizer, 0.0) if isinstance(optimizer, str) else 0.0
            )
        params, ll, out, best = prep.run(
            _fit_gradient_program,
            prep.data,
            prep.keys,
            prep.init_params,
            prep.scalar(tol),
            prep.scalar(grad_tol),
            prep.scalar(learning_rate),
            prep.scalar(reg_covar),
            prep.init_data,
            n_components=n_components,
            cov_type=cov_type,
            init=None if init_params is not None else init,  # unused then: no recompile on it
            max_iter=max_iter,
            has_init=init_params is not None,
            optimizer=optimizer,
            batch_size=batch_size,
            n_samples=prep.n_samples,
        )
    return make_result(prep.uncentre(params), ll, out, best)


def _check_gradient_options(optimizer, learning_rate, grad_tol, batch_size):
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
    if learning_rate is not None:
        check_non_negative("learning_rate", learning_rate)
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}.")
    check_non_negative("grad_tol", grad_tol)
    if batch_size is not None and (
        not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}.")
