"""EM on in-memory data as a function: the weighted EM map, and EM from a start to a
tolerance inside one `lax.while_loop` (used by the bootstrap's vmapped refits and by the
differentiable fit, `_implicit`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._em import e_step, m_step_with_status
from ._objective import objective
from ._params import GMM
from ._solver import Status
from ._stats import sufficient_statistics

# A component holding less than this many rows' worth of responsibility (π_k · #{w_i > 0})
# is empty: EM never brings it back, its mean and covariance rest on rounding, and the fixed
# point's derivative does not exist there (`fit_status`).
EMPTY_ROWS = 1e-3


def em_map(gmm: GMM, X, w, prior, reg_covar) -> GMM:
    """T(θ): one EM (MAP-EM with a prior) step on rows X (N, D) with weights w (N,)."""
    resp, _ = e_step(gmm, X)
    stats = sufficient_statistics(X, resp, cov_type=gmm.cov_type, sample_weight=w, shift=gmm.means)
    new, _ = m_step_with_status(
        stats, cov_type=gmm.cov_type, reg_covar=reg_covar, prior=prior, start=gmm.covariances
    )
    return new


def em_until(gmm: GMM, X, w, prior, reg_covar, tol, max_iter) -> tuple[GMM, jax.Array]:
    """EM from `gmm` until the objective (`objective`, per unit weight) changes by less than
    `tol` or after `max_iter` steps (`fit_em`'s rule): (fit, its `Status` code, see
    `fit_status`)."""

    def value(g):
        return objective(g, X, prior=prior, sample_weight=w)

    def cond(state):
        _, f_old, f_new, it = state
        return (it < max_iter) & ~(jnp.abs(f_new - f_old) < tol) & jnp.isfinite(f_new)

    def body(state):
        g, _, f, it = state
        new = em_map(g, X, w, prior, reg_covar)
        return new, f, value(new), it + 1

    first = value(gmm)
    g, f_old, f, _ = jax.lax.while_loop(cond, body, (gmm, first - 2 * tol - 1, first, 0))
    return g, fit_status(g, f_old, f, tol, jnp.sum(w > 0), empty_check=prior is None)


def fit_status(gmm: GMM, f_old, f_new, tol, n_rows, *, empty_check: bool) -> jax.Array:
    """The `Status` of EM stopped at `gmm` (traceable, an int32 scalar):

    NON_FINITE: the objective or a parameter is NaN or inf.
    DEGENERATE: a covariance is not positive definite (its precision factor is not finite)
        or, with `empty_check` (no prior: a prior keeps an empty component's MAP update
        defined), a component is empty: π_k · n_rows < `EMPTY_ROWS`, n_rows the rows of
        positive weight.
    CONVERGED: the last step changed the objective by less than `tol` (or by exactly 0:
        tol = 0 then stops only at max_iter, and a fixed point there is still one).
    MAX_ITER_REACHED: otherwise.
    """
    leaves = (gmm.weights, gmm.means, gmm.covariances)
    finite = jnp.isfinite(f_new) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in leaves]))
    degenerate = ~jnp.all(jnp.isfinite(gmm.precisions_cholesky))
    if empty_check:
        degenerate = degenerate | jnp.any(gmm.weights * n_rows < EMPTY_ROWS)
    change = jnp.abs(f_new - f_old)
    converged = (change < tol) | (change == 0)
    return jnp.where(
        ~finite,
        Status.NON_FINITE,
        jnp.where(
            degenerate,
            Status.DEGENERATE,
            jnp.where(converged, Status.CONVERGED, Status.MAX_ITER_REACHED),
        ),
    ).astype(jnp.int32)
