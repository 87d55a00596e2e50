"""Covariance structures: scikit-learn's four and mclust's fourteen (docs/math.md §11).

mclust writes each covariance as Σ_k = λ_k Q_k A_k Q_kᵀ (Banfield & Raftery 1993; Celeux &
Govaert 1995): volume λ_k = |Σ_k|^(1/D), orientation Q_k orthogonal, shape A_k diagonal with
|A_k| = 1. A model's three letters say whether volume, shape and orientation are Equal across
components, Variable, or the Identity:

    EII VII                    spherical   σ² I, σ_k² I
    EEI VEI EVI VVI            diagonal    axis-aligned ellipsoids
    EEE VEE EVE VVE            ellipsoidal, one orientation shared by all components
    EEV VEV EVV VVV            ellipsoidal, an orientation per component

scikit-learn's names are four of them: "spherical" = VII, "diag" = VVI, "tied" = EEE,
"full" = VVV. Every name is stored in one of scikit-learn's four array layouts (`layout`),
so the E-step, the likelihood, sampling and the missing-value formulas only ever see those
four; what a model adds is its M-step (`constrained_covariances`, from the scatter matrices)
and its parameter count.

M-step. With counts n_k and regularised scatter S_k (W_k + n_k ε I, W_k = Σ_i γ_ik (x_i −
x̄_k)(x_i − x̄_k)ᵀ), the covariances maximise Σ_k −½ [n_k log|Σ_k| + tr(S_k Σ_k⁻¹)] within the
model. Nine models have a closed form; VEI, VEE, VEV (alternate the volumes and the common
shape) and EVE, VVE (a common orientation, by the majorise-minimise step of Browne &
McNicholas 2014) iterate, starting from the previous parameters (`start`): every inner step
increases the objective, so EM stays monotone even when the inner loop stops at its cap
(generalised EM), and near convergence a few inner steps suffice. Adding ε n_k I to the
scatter before imposing the structure (instead of ε I to Σ_k after it) keeps the structure
exact and, for the four scikit-learn models, is the same M-step as scikit-learn's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float

from . import _small_linalg as small_linalg

LAYOUTS = ("full", "diag", "spherical", "tied")
MODELS = (
    "EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE",
    "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV",
)  # fmt: skip
COV_TYPES = LAYOUTS + MODELS
ALIASES = {"spherical": "VII", "diag": "VVI", "tied": "EEE", "full": "VVV"}
_LAYOUT_OF_MODEL = {
    "EII": "spherical", "VII": "spherical",
    "EEI": "diag", "VEI": "diag", "EVI": "diag", "VVI": "diag",
    "EEE": "tied",
}  # fmt: skip
# Models whose M-step iterates (an inner loop, capped at INNER_MAX_ITER steps).
ITERATIVE = ("VEI", "VEE", "VEV", "EVE", "VVE")
INNER_MAX_ITER = 100


def check_cov_type(cov_type) -> None:
    """ValueError naming the accepted names."""
    if not isinstance(cov_type, str) or cov_type not in COV_TYPES:
        raise ValueError(
            f"cov_type must be one of {LAYOUTS} (scikit-learn's names) or one of mclust's "
            f"models {MODELS}, got {cov_type!r}."
        )


def model_name(cov_type: str) -> str:
    """mclust's three-letter name: "full" -> "VVV", "VEI" -> "VEI"."""
    return ALIASES.get(cov_type, cov_type)


def layout(cov_type: str) -> str:
    """The array layout of `covariances`: "full" (K, D, D), "diag" (K, D), "spherical" (K,)
    or "tied" (D, D)."""
    if cov_type in LAYOUTS:
        return cov_type
    return _LAYOUT_OF_MODEL.get(cov_type, "full")


def n_covariance_parameters(cov_type: str, k: int, d: int) -> int:
    """Free covariance parameters, as mclust's `nVarParams`: volumes (1 or K), shapes
    (D − 1 or K(D − 1)) and orientations (D(D − 1)/2 or K D(D − 1)/2), or the full counts."""
    name = model_name(cov_type)
    rotation = d * (d - 1) // 2
    volume = {"E": 1, "V": k}[name[0]]
    if name in ("EII", "VII"):
        return volume
    if name == "EEE":
        return d * (d + 1) // 2
    if name == "VVV":
        return k * d * (d + 1) // 2
    if name == "EVV":  # one volume and K unit-determinant matrices
        return 1 - k + k * d * (d + 1) // 2
    shape = {"E": d - 1, "V": k * (d - 1)}[name[1]]
    orientation = {"I": 0, "E": rotation, "V": k * rotation}[name[2]]
    return volume + shape + orientation


def constrained_covariances(
    cov_type: str,
    scatter: Array,
    counts: Float[Array, " k"],
    *,
    start: Array | None = None,
    max_inner: int | Array | None = None,
) -> tuple[Array, Bool[Array, ""]]:
    """The covariances of model `cov_type` that maximise −½ Σ_k [n_k log|Σ_k| + tr(S_k Σ_k⁻¹)].

    Args:
        cov_type: a name of `COV_TYPES`.
        scatter: S in the model's layout: full (K, D, D); diag and spherical (K, D), the
            diagonals only; tied (D, D), already summed over components.
        counts: (K,) n_k; components with n_k = 0 (masked out) contribute nothing and get an
            undefined covariance that the caller replaces.
        start: the previous covariances (same layout), where the inner loop of the iterative
            models starts; None starts from the pooled scatter.
        max_inner: cap on the inner steps of the iterative models (default `INNER_MAX_ITER`).

    Returns:
        (covariances in the layout, whether the inner loop met its tolerance: always True for
        the closed forms).
    """
    name = model_name(cov_type)
    fn = _M_STEPS[name]
    if name in ITERATIVE:
        return fn(scatter, counts, start, INNER_MAX_ITER if max_inner is None else max_inner)
    return fn(scatter, counts), jnp.array(True)


# Models whose set of covariances is convex (an average of members is a member): iterate
# averaging (online EM) keeps them; the others are mapped back by `project`.
CONVEX = ("EII", "VII", "EEI", "VVI", "EEE", "VVV")


def project(cov_type: str, covariances: Array, weights: Float[Array, " k"], start: Array):
    """Covariances in the model again after averaging: the M-step on the scatter w_k Σ̄_k with
    counts w_k (identity on members of the model; the weights' scale does not matter).
    Components of weight 0 keep their covariance."""
    if model_name(cov_type) in CONVEX:
        return covariances
    scale = weights.reshape((-1,) + (1,) * (covariances.ndim - 1))  # never tied (EEE): convex
    projected, _ = constrained_covariances(cov_type, covariances * scale, weights, start=start)
    return jnp.where(scale > 0, projected, covariances)


# ---- closed forms ---------------------------------------------------------------------------


def _safe(n):
    return jnp.where(n > 0, n, 1.0)


def _geometric_mean(v):
    """(..., D) non-negative -> (...,) geometric mean (0 where an entry is 0)."""
    return jnp.exp(jnp.mean(jnp.log(v), axis=-1))


def _ratio(a, b):
    """a / b with 0 where b = 0 (components without data)."""
    return jnp.where(b > 0, a / jnp.where(b > 0, b, 1.0), 0.0)


def _eii(S, n):
    d = S.shape[-1]
    return jnp.broadcast_to(jnp.sum(S) / (d * _safe(jnp.sum(n))), n.shape)


def _vii(S, n):
    return jnp.sum(S, axis=-1) / (S.shape[-1] * _safe(n))


def _eei(S, n):
    return jnp.broadcast_to(jnp.sum(S, axis=0) / _safe(jnp.sum(n)), S.shape)


def _vvi(S, n):
    return S / _safe(n)[:, None]


def _evi(S, n):
    # Σ_k = λ A_k: A_k = S_k / |S_k|^(1/D), λ = Σ_k |S_k|^(1/D) / N. A (nearly) empty
    # component's scatter may round below 0: clamp it, so it reads as degenerate, not NaN.
    S = jnp.maximum(S, 0.0)
    g = _geometric_mean(S)
    lam = jnp.sum(g) / _safe(jnp.sum(n))
    return lam * _ratio(S, g[:, None])


def _eee(S, n):
    return S / _safe(jnp.sum(n))


def _vvv(S, n):
    return S / _safe(n)[:, None, None]


def _log_volume(S):
    """(..., D, D) -> (...,) log |S|^(1/D), from a Cholesky factor (no determinant)."""
    chol = small_linalg.cholesky(S)
    return 2.0 * jnp.mean(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)


def _evv(S, n):
    # Σ_k = λ C_k with |C_k| = 1: C_k = S_k / |S_k|^(1/D), λ = Σ_k |S_k|^(1/D) / N.
    g = jnp.exp(_log_volume(S))
    # An empty component without regularisation has a singular S_k (NaN factor): it must
    # not spread NaN through the common volume; it stays degenerate on its own.
    g = jnp.where((n > 0) & jnp.isfinite(g), g, 0.0)
    lam = jnp.sum(g) / _safe(jnp.sum(n))
    return lam * _ratio(S, g[:, None, None])


def _eev(S, n):
    # Σ_k = λ Q_k A Q_kᵀ: Q_k the eigenvectors of S_k (ascending eigenvalues ω_k, paired with
    # the ascending entries of A), λ A = Σ_k ω_k / N.
    omega, vectors = jnp.linalg.eigh(S)
    common = jnp.sum(omega, axis=0) / _safe(jnp.sum(n))
    return _rotate(vectors, jnp.broadcast_to(common, omega.shape))


def _rotate(vectors, values):
    """Q diag(values) Qᵀ for (..., D, D) orthogonal Q and (..., D) values."""
    return jnp.einsum("...ij,...j,...kj->...ik", vectors, values, vectors)


# ---- iterative models -----------------------------------------------------------------------


def _tolerance(dtype):
    # mclust's inner tolerance is √eps (float64), here on the parameters' relative change.
    return jnp.sqrt(jnp.finfo(dtype).eps)


def _relative_change(new, old):
    """max |new − old| / max |new| over the leaves of a state."""
    change = [jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a)) for a, b in zip(new, old, strict=True)]
    return jnp.max(jnp.stack(change))


def _iterate(update, state, max_inner, dtype):
    """Run `state = update(state)` (a tuple of arrays) until its relative change is below √eps
    or `max_inner` steps; returns (state, converged)."""
    tol = _tolerance(dtype)

    def cond(carry):
        _, change, it = carry
        return (it < max_inner) & ~(change <= tol)

    def body(carry):
        state, _, it = carry
        new = update(state)
        return new, _relative_change(new, state), it + 1

    state, change, _ = jax.lax.while_loop(
        cond, body, (state, jnp.asarray(jnp.inf, dtype), jnp.asarray(0))
    )
    return state, change <= tol


def _unit_determinant(v):
    """(D,) positive -> v / geometric mean (product 1)."""
    return v / _geometric_mean(v)


def _volumes_given_shape(values, n, shape):
    """λ_k = Σ_d values_kd / a_d / (n_k D): the volumes that are optimal for a shape A."""
    d = values.shape[-1]
    return jnp.sum(values / shape, axis=-1) / (d * _safe(n))


def _shape_given_volumes(values, lam):
    """A ∝ Σ_k values_k / λ_k with |A| = 1: the shape that is optimal for the volumes."""
    return _unit_determinant(jnp.sum(_ratio(values, lam[:, None]), axis=0))


def _alternate_volume_shape(values, n, shape, max_inner):
    """VEI and VEV in the eigenbasis: values (K, D) (diagonals of S_k, or their eigenvalues),
    a common shape A, a volume per component. Returns (λ (K,), A (D,), converged)."""

    def update(state):
        _, a = state
        lam = _volumes_given_shape(values, n, a)
        return lam, _shape_given_volumes(values, lam)

    lam = _volumes_given_shape(values, n, shape)
    (lam, shape), ok = _iterate(update, (lam, shape), max_inner, values.dtype)
    return lam, shape, ok


def _vei(S, n, start, max_inner):
    S = jnp.maximum(S, 0.0)  # see `_evi`
    shape = _unit_determinant(jnp.sum(S, axis=0) if start is None else start[0])
    lam, shape, ok = _alternate_volume_shape(S, n, shape, max_inner)
    return lam[:, None] * shape, ok


def _vev(S, n, start, max_inner):
    omega, vectors = jnp.linalg.eigh(S)  # ascending, paired with ascending shape entries
    if start is None:
        shape = _unit_determinant(jnp.sum(omega, axis=0))
    else:
        shape = _unit_determinant(jnp.linalg.eigvalsh(start[0]))
    lam, shape, ok = _alternate_volume_shape(omega, n, shape, max_inner)
    return _rotate(vectors, lam[:, None] * shape), ok


def _whitened_traces(S, C):
    """tr(C⁻¹ S_k) for (K, D, D) S and one (D, D) C, by triangular solves with chol(C)."""
    chol = small_linalg.cholesky(C)
    half = small_linalg.solve_lower(jnp.broadcast_to(chol, S.shape), S)  # L⁻¹ S_k
    both = small_linalg.solve_lower(jnp.broadcast_to(chol, S.shape), jnp.swapaxes(half, -1, -2))
    return jnp.trace(both, axis1=-2, axis2=-1)


def _vee(S, n, start, max_inner):
    # Σ_k = λ_k C, |C| = 1: λ_k = tr(C⁻¹ S_k) / (n_k D), C ∝ Σ_k S_k / λ_k.
    d = S.shape[-1]
    pooled = jnp.sum(S, axis=0) if start is None else start[0]
    shape = pooled * jnp.exp(-_log_volume(pooled))

    def volumes(C):
        return _whitened_traces(S, C) / (d * _safe(n))

    def update(state):
        _, C = state
        lam = volumes(C)
        C = jnp.sum(_ratio(S, lam[:, None, None]), axis=0)
        C = 0.5 * (C + C.T)
        return lam, C * jnp.exp(-_log_volume(C))

    (lam, C), ok = _iterate(update, (volumes(shape), shape), max_inner, S.dtype)
    return lam[:, None, None] * C, ok


def _rotated_diagonals(S, Q):
    """diag(Qᵀ S_k Q), (K, D), clamped at 0 (rounding; see `_evi`)."""
    return jnp.maximum(jnp.einsum("di,kde,ei->ki", Q, S, Q), 0.0)


def _orientation_step(S, Q, precisions, bound):
    """Two majorise-minimise steps for a common orientation Q (Browne & McNicholas 2014).

    g(Q) = Σ_k tr(Π_k Qᵀ S_k Q) with Π_k = diag(precisions_k) is a quadratic form in Q with
    matrix Σ_k Π_k ⊗ S_k. For orthogonal Q, subtracting α_k I from S_k (α_k ≥ its largest
    eigenvalue) or β_k I from Π_k (β_k = its largest entry) changes g by a constant and
    makes the form concave, so its tangent at the current Q majorises g; the tangent's
    minimiser over orthogonal matrices is U Vᵀ from the SVD U s Vᵀ of
        Σ_k (α_k I − S_k) Q Π_k      (first step)   or   Σ_k S_k Q (β_k I − Π_k)   (second).
    Neither step increases g. The first is slow when the eigenvalues of S_k are spread and the
    second when the precisions are, so one of each is taken (as mclust does).
    """
    d = S.shape[-1]
    shifted = bound[:, None, None] * jnp.eye(d, dtype=S.dtype) - S
    Q = _polar(jnp.einsum("kde,ef,kf->df", shifted, Q, precisions))
    top = jnp.max(precisions, axis=-1, keepdims=True)
    return _polar(jnp.einsum("kde,ef,kf->df", S, Q, top - precisions))


def _polar(G):
    """The orthogonal factor U Vᵀ of G = U s Vᵀ."""
    U, _, Vt = jnp.linalg.svd(G, full_matrices=False)
    return U @ Vt


def _common_orientation(S, n, start, max_inner, shapes_given_orientation):
    """EVE and VVE: alternate (volumes and shapes given Q) and the two MM steps in Q of
    `_orientation_step`."""
    if start is None:
        _, Q = jnp.linalg.eigh(jnp.sum(S, axis=0))
    else:
        # The previous covariances share Q; one of them alone may have tied eigenvalues (an
        # empty component's shape is I), which leaves Q undetermined. A combination with
        # distinct weights has distinct eigenvalues and the same eigenvectors.
        weights = jnp.arange(1, start.shape[0] + 1, dtype=start.dtype)
        _, Q = jnp.linalg.eigh(jnp.einsum("k,kde->de", weights, start))
    bound = jnp.linalg.eigvalsh(S)[:, -1]

    def update(state):
        (Q,) = state
        precisions = shapes_given_orientation(_rotated_diagonals(S, Q))
        return (_orientation_step(S, Q, precisions, bound),)

    (Q,), ok = _iterate(update, (Q,), max_inner, S.dtype)
    precisions = shapes_given_orientation(_rotated_diagonals(S, Q))
    variances = _ratio(jnp.ones_like(precisions), precisions)
    return _rotate(jnp.broadcast_to(Q, S.shape), variances), ok


def _eve(S, n, start, max_inner):
    # Given Q, with b_k = diag(Qᵀ S_k Q): A_k = b_k / g_k (g_k its geometric mean) and
    # λ = Σ_k g_k / N, so Σ_k⁻¹ = Q diag(g_k / (λ b_k)) Qᵀ.
    def precisions(b):
        g = _geometric_mean(b)
        lam = jnp.sum(jnp.where(n > 0, g, 0.0)) / _safe(jnp.sum(n))
        return _ratio(g[:, None] / lam, b)

    return _common_orientation(S, n, start, max_inner, precisions)


def _vve(S, n, start, max_inner):
    # Given Q: λ_k A_k = b_k / n_k, so Σ_k⁻¹ = Q diag(n_k / b_k) Qᵀ.
    def precisions(b):
        return _ratio(jnp.broadcast_to(n[:, None], b.shape), b)

    return _common_orientation(S, n, start, max_inner, precisions)


_M_STEPS = {
    "EII": _eii, "VII": _vii, "EEI": _eei, "VEI": _vei, "EVI": _evi, "VVI": _vvi,
    "EEE": _eee, "VEE": _vee, "EVE": _eve, "VVE": _vve, "EEV": _eev, "VEV": _vev,
    "EVV": _evv, "VVV": _vvv,
}  # fmt: skip
