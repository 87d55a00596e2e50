"""Initial parameters: k-means++ (+ Lloyd steps), random data points, random responsibilities.

Every method ends with one M-step from responsibilities (hard for the k-means based methods,
soft for "random"), so initial covariances are estimated from data, as scikit-learn does.
All of it is traceable: `fit` runs it inside the same compiled program, vmapped over keys.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from ._covariance import layout
from ._em import m_step_from_statistics
from ._likelihood import (
    matmul_precision,
    quadratic_features,
    squared_distances,
    unpack_symmetric,
)
from ._params import GMM
from ._prior import default_reg_covar, resolve_prior
from ._stats import (
    Chunked,
    SufficientStatistics,
    chunk_rows,
    streamed_statistics,
    sum_over_chunks,
)
from ._validate import check_data, check_fit_options, check_key

N_LLOYD_STEPS = 10


def init_from_data(
    data: Chunked,
    key: PRNGKeyArray,
    *,
    n_components: int,
    cov_type: str,
    method: str,
    reg_covar: float | Array,
    active: Array | None = None,
    prior=None,
) -> GMM:
    """Initial GMM for one restart from chunked (zero-weight padded) data.

    The closing M-step is the fit's own (MAP with a `prior`), so a start is a point the
    method's objective is defined at.

    `active` (K,) masks components out (zero weight, never assigned): `select` pads every K
    to the same K_max so that one compiled program serves the whole grid. The first k-means++
    picks do not depend on how many follow, so a masked fit starts where an unpadded one does.
    """
    if active is None:
        active = jnp.ones((n_components,), bool)
    if method == "random":
        return _random_responsibilities(data, key, n_components, cov_type, reg_covar, active, prior)
    log_w = _log_weight(data.weight)
    if method == "kmeans++":
        centres = _kmeans_plus_plus(data.X, log_w, key, n_components)
        centres = jax.lax.fori_loop(
            0, N_LLOYD_STEPS, lambda _, c: _lloyd_step(c, data, active), centres
        )
    else:  # random_from_data: K distinct rows, drawn in proportion to the sample weights
        centres = _distinct_rows(data.X, log_w, key, n_components)
    stats = _hard_assignment_statistics(centres, data, cov_type, active)
    return m_step_from_statistics(
        stats, cov_type=cov_type, reg_covar=reg_covar, active=active, prior=prior
    )


# The draws below work on the (C, B) chunk layout and never flatten it: X may be sharded over
# devices along B, and a reshape would gather every row onto every device.


def _log_weight(w: Float[Array, "c b"]) -> Float[Array, "c b"]:
    return jnp.where(w > 0, jnp.log(jnp.where(w > 0, w, 1.0)), -jnp.inf)


def _draw_row(key, logits: Float[Array, "c b"], X: Float[Array, "c b d"]):
    """One row drawn with probability ∝ exp(logits) (Gumbel-max), and its (C, B) one-hot."""
    scores = logits + jax.random.gumbel(key, logits.shape, logits.dtype)
    best_in_chunk = jnp.max(scores, axis=1)
    c = jnp.argmax(best_in_chunk)
    b = jnp.argmax(scores[c])
    hit = (jnp.arange(X.shape[0])[:, None] == c) & (jnp.arange(X.shape[1])[None, :] == b)
    # A masked sum rather than X[c, b]: a reduction stays local to each shard.
    return jnp.einsum("cb,cbd->d", hit.astype(X.dtype), X, precision=matmul_precision()), hit


def _kmeans_plus_plus(X: Float[Array, "c b d"], log_w: Float[Array, "c b"], key, k: int):
    """k-means++ seeding (Arthur & Vassilvitskii 2007): each next centre is drawn with
    probability ∝ w_i · D(x_i)², D the distance to the nearest centre chosen so far."""
    key, sub = jax.random.split(key)
    first, _ = _draw_row(sub, log_w, X)
    centres = jnp.zeros((k, X.shape[-1]), X.dtype).at[0].set(first)
    d2 = jnp.sum(jnp.square(X - first), axis=-1)

    def pick(j, carry):
        centres, d2, key = carry
        key, sub = jax.random.split(key)
        # A zero-weight row is never drawn, whatever its distance: −inf + log(inf) would be
        # NaN, which argmax would take for the largest score.
        eligible = (d2 > 0) & (log_w > -jnp.inf)
        logits = jnp.where(eligible, log_w + jnp.log(jnp.where(eligible, d2, 1.0)), -jnp.inf)
        # Fewer distinct points than components: fall back to drawing by weight alone.
        logits = jnp.where(jnp.any(jnp.isfinite(logits)), logits, log_w)
        c, _ = _draw_row(sub, logits, X)
        return centres.at[j].set(c), jnp.minimum(d2, jnp.sum(jnp.square(X - c), axis=-1)), key

    centres, _, _ = jax.lax.fori_loop(1, k, pick, (centres, d2, key))
    return centres


def _distinct_rows(X: Float[Array, "c b d"], log_w: Float[Array, "c b"], key, k: int):
    """K distinct rows drawn without replacement with probability ∝ w (successive draws,
    each removing the row it took: the same law as Gumbel top-k)."""

    def pick(j, carry):
        centres, log_w = carry
        row, hit = _draw_row(jax.random.fold_in(key, j), log_w, X)
        return centres.at[j].set(row), jnp.where(hit, -jnp.inf, log_w)

    centres = jnp.zeros((k, X.shape[-1]), X.dtype)
    centres, _ = jax.lax.fori_loop(0, k, pick, (centres, log_w))
    return centres


def _nearest_one_hot(X, centres, active):
    d2 = jnp.where(active, squared_distances(X, centres), jnp.inf)
    labels = jnp.argmin(d2, axis=-1)
    return jax.nn.one_hot(labels, centres.shape[0], dtype=X.dtype)


def _chunk_lloyd(X, w, _chunk_index, centres, active):
    onehot = _nearest_one_hot(X, centres, active) * w[:, None]
    return jnp.sum(onehot, axis=0), jnp.dot(onehot.T, X, precision=matmul_precision())


def _lloyd_step(centres, data: Chunked, active):
    counts, sums = sum_over_chunks(_chunk_lloyd, data, centres, active)
    # An empty cluster keeps its centre rather than dividing by zero.
    return jnp.where(
        counts[:, None] > 0, sums / jnp.where(counts > 0, counts, 1.0)[:, None], centres
    )


def _hard_assignment_statistics(
    centres, data: Chunked, cov_type: str, active
) -> SufficientStatistics:
    """The statistics of the hard assignment to the nearest centres, about those centres.

    Each row belongs to one component, so each row needs one difference, δ_i = x_i − c_{k(i)},
    not K: the moments are one product of the (weighted) one-hot assignment with δ and with
    its quadratic features φ(δ), Σ_i γ_ik φ(δ_i), at the cost of the expanded pass and with no
    cancellation (δ is small however far the cluster lies from the origin)."""
    chunk = functools.partial(_chunk_hard_statistics, cov_type=cov_type)
    s0, s1, s2 = sum_over_chunks(chunk, data, centres, active)
    if layout(cov_type) == "full":
        s2 = unpack_symmetric(s2, centres.shape[-1])
    return SufficientStatistics(s0, s1, s2, centres)


def _chunk_hard_statistics(X, w, _chunk_index, centres, active, *, cov_type):
    onehot = _nearest_one_hot(X, centres, active)
    delta = X - jnp.dot(onehot, centres, precision=matmul_precision())  # x_i − c_{k(i)}, exact
    onehot = onehot * w[:, None]
    s0 = jnp.sum(onehot, axis=0)
    s1 = jnp.dot(onehot.T, delta, precision=matmul_precision())
    kind = layout(cov_type)
    if kind == "tied":
        s2 = jnp.dot((delta * w[:, None]).T, delta, precision=matmul_precision())
    else:
        features = quadratic_features(delta) if kind == "full" else jnp.square(delta)
        s2 = jnp.dot(onehot.T, features, precision=matmul_precision())
    return s0, s1, s2


def _random_responsibilities(
    data: Chunked, key, k: int, cov_type: str, reg_covar, active, prior
) -> GMM:
    w = data.weight
    mean = jnp.sum(data.X * w[..., None], axis=(0, 1)) / jnp.sum(w)
    shift = jnp.broadcast_to(mean, (k, mean.shape[0]))

    def responsibilities(X, _w, chunk_index):
        u = jax.random.uniform(jax.random.fold_in(key, chunk_index), (X.shape[0], k), X.dtype)
        u = jnp.where(active, u, 0.0)
        return u / jnp.sum(u, axis=1, keepdims=True), None

    # About the data's mean (the origin of the centred data) the expanded moments do not
    # cancel: Σ γ x xᵀ is the scatter itself, so they are accurate in either dtype.
    stats, _ = streamed_statistics(
        responsibilities, data, cov_type=cov_type, shift=shift, expand=True
    )
    return m_step_from_statistics(
        stats, cov_type=cov_type, reg_covar=reg_covar, active=active, prior=prior
    )


def initialize(
    X,
    n_components: int,
    *,
    key: PRNGKeyArray,
    cov_type: str = "full",
    method: str = "kmeans++",
    reg_covar: float | None = None,
    prior=None,
) -> GMM:
    """Initial parameters for one fit, or for R fits at once when `key` holds R keys.

    With a `prior` (None, "mclust" or a `Prior`) the closing M-step is the MAP one, as in a fit
    with that prior. `reg_covar` defaults as in `fit`: 1e-6 without a prior, 0 with one.

    Methods:
        "kmeans++": k-means++ seeding, then 10 Lloyd steps, then an M-step from the hard
            assignment (what scikit-learn's default does, with fewer Lloyd steps).
        "random_from_data": K distinct rows as centres, then an M-step from the assignment of
            every row to its nearest centre.
        "random": uniformly random responsibilities, normalised per row, then an M-step.

    Args:
        key: one PRNG key, or a (R,) array of keys (e.g. `jax.random.split(key, R)`): the R
            initialisations are then vmapped and the GMM has a leading (R,) axis. `fit`
            restart r starts from `initialize(..., key=jax.random.split(key, R)[r])`.

    Raises:
        ValueError: for invalid X or options.
    """
    X = check_data(X)
    check_key(key, batch=True)
    reg_covar = default_reg_covar(reg_covar, prior)
    check_fit_options(
        n_samples=X.shape[0],
        n_components=n_components,
        cov_type=cov_type,
        init=method,
        n_restarts=1,
        max_iter=1,
        tol=0.0,
        reg_covar=reg_covar,
        chunk_size=None,
    )
    prior = resolve_prior(prior, X, n_components, cov_type, n_features=X.shape[1])
    # Centred as in fit, so that float32 k-means distances keep their digits.
    offset = jnp.mean(X, axis=0)
    data = chunk_rows(X - offset, jnp.ones(X.shape[0], X.dtype), min(X.shape[0], 8192))
    gmm = _initialize_program(
        data,
        key,
        jnp.asarray(reg_covar, X.dtype),
        None if prior is None else prior.astype(X.dtype).shifted(offset),
        n_components=n_components,
        cov_type=cov_type,
        method=method,
    )
    return eqx.tree_at(lambda g: g.means, gmm, gmm.means + offset)


@functools.partial(jax.jit, static_argnames=("n_components", "cov_type", "method"))
def _initialize_program(data, key, reg_covar, prior, *, n_components, cov_type, method):
    def one(k):
        return init_from_data(
            data,
            k,
            n_components=n_components,
            cov_type=cov_type,
            method=method,
            reg_covar=reg_covar,
            prior=prior,
        )

    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    batched = key.ndim >= (1 if typed else 2)
    return jax.vmap(one)(key) if batched else one(key)
