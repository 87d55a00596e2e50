"""The one compiled program every fit runs: all restarts of one method, start to finish.

    vmap over restart keys:  start (initialisation or given params) -> method.init -> solver init
    then:                    advance to max_iter (or successive halving's stages)
    vmap over restarts:      the final pass (objective and log-likelihood of the last iterate)
    then:                    the best restart

Only shapes and the static arguments are compiled in; `hyper` (learning rates, grad_tol),
`tol`, the prior's values and the problem's numbers are traced.
"""

from __future__ import annotations

import functools

import jax
from jaxtyping import Array, PRNGKeyArray

from . import _solver
from ._halving import successive_halving
from ._init import init_from_data
from ._method import Method, Problem
from ._params import GMM
from ._solver import map_restarts, select_best
from ._stats import Chunked

STATIC = ("method", "n_components", "cov_type", "init", "max_iter", "has_init", "stages")


def _fit_program(
    problem: Problem,
    keys: PRNGKeyArray,
    init_params: GMM | None,
    tol: Array,
    hyper: dict,
    init_data: Chunked | None = None,
    *,
    method: Method,
    n_components: int,
    cov_type: str,
    init: str | None,
    max_iter: int,
    has_init: bool,
    stages: tuple[tuple[int, int], ...] | None,
):
    """All restarts of one fit. `init_data`, when given, is what the initialisation reads
    instead of `problem.data` (a subsample of host-streamed data).

    Returns:
        (params GMM (R, ...), objective (R,), mean log-likelihood (R,), SolverState (R, ...),
        best index).
    """

    def start(key, given):
        gmm = given
        if not has_init:
            gmm = init_from_data(
                problem.data if init_data is None else init_data,
                key,
                n_components=n_components,
                cov_type=cov_type,
                method=init,
                reg_covar=problem.reg_covar,
                active=problem.active,
                prior=problem.prior,
            )
        params, aux = method.init(gmm, key, problem, hyper)
        return _solver.init(
            params,
            aux,
            max_iter=max_iter,
            dtype=gmm.means.dtype,
            previous_value=hyper["previous_value"],
        )

    state = map_restarts(start, keys, init_params)
    step = functools.partial(_method_step, method, problem=problem, hyper=hyper)
    if stages is None:
        state = map_restarts(
            functools.partial(_solver.advance, step, until=max_iter, tol=tol), state
        )
    else:
        state = successive_halving(step, state, stages, tol=tol)
    params = map_restarts(method.to_gmm, state.params)
    value, ll = map_restarts(problem.objective, params)
    return params, value, ll, state, select_best(value, state.status)


# Two compilations of the same program. XLA's CPU backend spends most of a small fit's first
# call in LLVM's optimisation passes (iris, 8 restarts: 3.0 s of a 3.4 s first fit on a 2-core
# machine); without them it compiles in about half the time and runs 2.5-3x slower (W2, 8
# restarts, benchmarks/README.md). Fits whose whole run is tiny take the quick compilation.
fit_program = jax.jit(_fit_program, static_argnames=STATIC)
quick_fit_program = jax.jit(
    _fit_program,
    static_argnames=STATIC,
    compiler_options={"xla_backend_optimization_level": 0},
)

# max_iter x restarts x rows x components x features²: below this a fit's optimised run takes
# well under a second (W2's 10 iterations of 8 restarts are 3.3e10 and take 3 s), so the
# quick compilation's slower code costs less than the compilation time it saves.
_QUICK_WORK = 2**31


def program_for(
    *, n_samples: int, n_restarts: int, n_components: int, n_features: int, max_iter: int
):
    """`quick_fit_program` for small fits, `fit_program` otherwise (shapes are static, so
    the choice is too)."""
    work = max_iter * n_restarts * n_samples * n_components * n_features**2
    return quick_fit_program if work < _QUICK_WORK else fit_program


def _method_step(method, params, aux, *, problem, hyper):
    return method.step(params, aux, problem, hyper)


def n_compiled() -> int:
    """How many versions of the fitting program this process has compiled (for tests and
    `Selection.n_compilations`)."""
    return fit_program._cache_size() + quick_fit_program._cache_size()
