"""EM on in-memory data as a function: the weighted EM map, and EM from a start to a
tolerance inside one `lax.while_loop` (used by the bootstrap's vmapped refits and by the
differentiable fit, `_implicit`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._em import e_step, m_step_with_status
from ._objective import objective
from ._params import GMM
from ._stats import sufficient_statistics


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
    `tol` or after `max_iter` steps (`fit_em`'s rule): (fit, whether it is finite)."""

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
    g, _, f, _ = jax.lax.while_loop(cond, body, (gmm, first - 2 * tol - 1, first, 0))
    leaves_finite = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(g)]
    return g, jnp.isfinite(f) & jnp.all(jnp.stack(leaves_finite))
