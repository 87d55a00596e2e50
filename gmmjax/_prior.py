"""Conjugate priors for a Gaussian mixture, their log-density, and mclust's default prior.

The prior (docs/math.md §2) is a product of independent pieces:

    weights          π ~ Dirichlet(α, ..., α)                      (α = 1: flat on the simplex)
    means            μ_k | Σ_k ~ N(m, Σ_k / κ)                      (κ = 0: flat, improper)
    full             Σ_k ~ inverse-Wishart(ν, Λ)       one per component
    tied             Σ   ~ inverse-Wishart(ν, Λ)       once
    diag             σ²_kj ~ inverse-gamma(ν/2, ς²_j/2) per component and coordinate
    spherical        σ²_k  ~ inverse-gamma(ν/2, ς²/2)   per component

so that the maximiser of log-likelihood + log-prior over θ given the responsibilities (the MAP
M-step, `_em.m_step_from_statistics`) is closed-form. `log_prob` is the normalised density,
so `objective` is a true log-posterior up to the evidence.

mclust's other models (docs/math.md §11) take the prior as mclust's `priorControl()` does: its
MAP M-step is the model's own M-step on pseudo-observations added to each component's
statistics, e_k to the count and s_k Λ to the scatter (`pseudo_observations`), so the
covariance factor of log p is −½ Σ_k [e_k log|Σ_k| + s_k tr(Λ Σ_k⁻¹)]. For those models
`log_prob` is that function up to an additive constant that does not depend on θ (for VEI,
EVI, EEV, VEV the factor is not a normalisable density of the covariance parameters).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, multigammaln
from jaxtyping import Array, Float

from ._covariance import ALIASES, check_cov_type, layout, model_name
from ._params import GMM, _is_concrete, log_det_precision_cholesky, whitened_square_norms


def _scale_shape(cov_type: str, d: int) -> tuple[int, ...]:
    return {"full": (d, d), "tied": (d, d), "diag": (d,), "spherical": ()}[layout(cov_type)]


class Prior(eqx.Module):
    """A conjugate prior for a D-dimensional mixture with covariance type `cov_type`.

    Attributes:
        mean: (D,) m, the prior mean of every component mean.
        scale: Λ (D, D) for "full", "tied" and the other ellipsoidal models (inverse-Wishart
            scale matrix); ς² (D,) for "diag" and the other diagonal models (EEI, VEI, EVI)
            and () for "spherical" and EII (twice the inverse-gamma scale; EII, as in
            mclust, does not use it).
        dof: ν; > D − 1 for the inverse-Wishart, > 0 for the inverse-gamma.
        shrinkage: κ ≥ 0; the mean prior has covariance Σ_k/κ (0: no mean prior).
        concentration: α ≥ 1 of the symmetric Dirichlet on the weights (1: flat).
        cov_type: the covariance type this prior is for (static).

    Raises:
        ValueError: on an unknown `cov_type`, shapes that do not fit `mean`, or (for concrete
            values) a dof, shrinkage, concentration or scale out of range.
    """

    mean: Float[Array, " d"]
    scale: Array
    dof: Float[Array, ""]
    shrinkage: Float[Array, ""]
    concentration: Float[Array, ""]
    cov_type: str = eqx.field(static=True)

    def __init__(self, mean, scale, dof, *, cov_type, shrinkage=0.01, concentration=1.0):
        check_cov_type(cov_type)
        for name, value in (
            ("mean", mean),
            ("scale", scale),
            ("dof", dof),
            ("shrinkage", shrinkage),
            ("concentration", concentration),
        ):
            _check_real(name, value)
        mean = jnp.asarray(mean)
        dtype = jnp.result_type(mean, jnp.float32)
        mean = mean.astype(dtype)
        if mean.ndim != 1:
            raise ValueError(f"the prior mean must have shape (D,), got {mean.shape}.")
        d = mean.shape[0]
        scale = jnp.asarray(scale, dtype)
        want = _scale_shape(cov_type, d)
        if layout(cov_type) == "diag" and scale.ndim == 0:
            scale = jnp.full((d,), scale)
        if scale.shape != want:
            raise ValueError(
                f"the prior scale for cov_type={cov_type!r} must have shape {want}, "
                f"got {scale.shape}."
            )
        dof, shrinkage, concentration = (
            jnp.asarray(v, dtype) for v in (dof, shrinkage, concentration)
        )
        if _is_concrete(mean, scale, dof, shrinkage, concentration):
            if not np.all(np.isfinite(np.asarray(mean))):
                raise ValueError("the prior mean must be finite.")
            _check_values(
                np.asarray(scale), float(dof), float(shrinkage), float(concentration), cov_type, d
            )
        self.mean, self.scale, self.dof = mean, scale, dof
        self.shrinkage, self.concentration = shrinkage, concentration
        self.cov_type = cov_type

    @property
    def n_features(self) -> int:
        return self.mean.shape[-1]

    @classmethod
    def mclust(cls, X, n_components: int, cov_type: str, *, sample_weight=None) -> Prior:
        """R mclust's default prior, `priorControl()` (Fraley & Raftery 2007, §3).

        κ = 0.01, m = the column means, ν = D + 2, no prior on the weights, and the scale
        var(X) / K^(2/D) (sample covariance, n − 1 divisor; only its diagonal when N ≤ D) for
        the models stored "full" or "tied", or the scalar mean_j var(x_j) / K^(2/D) for those
        stored "diag" or "spherical". Checked against mclust 6.0.0's `defaultPrior` for all
        fourteen models (tests/fixtures/mclust_models.json).
        With `sample_weight` (N,) the moments are weighted (divisor Σw − 1), so integer weights
        give the prior of the repeated rows. X is read into host memory in float64.
        """
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] < 2:
            raise ValueError(f"X must be (N, D) with N >= 2, got shape {X.shape}.")
        if np.isnan(X).any():
            raise ValueError(
                "X contains NaN; Prior.mclust needs complete data: build the prior from the "
                "complete rows, gmmjax.Prior.mclust(X[~np.isnan(X).any(1)], K, cov_type), and "
                "pass it as prior=."
            )
        n, d = X.shape
        w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
        total = w.sum()
        if w.shape != (n,) or not total > 1:
            raise ValueError("Prior.mclust needs (N,) sample weights summing to more than 1.")
        mean = w @ X / total
        centred = X - mean
        cov = (centred * w[:, None]).T @ centred / (total - 1)
        if np.count_nonzero(w) <= d:  # mclust: the sample covariance is singular, keep its diagonal
            cov = np.diag(np.diag(cov))
        if layout(cov_type) in ("full", "tied") and np.linalg.eigvalsh(cov)[0] <= 1e-12 * np.trace(
            cov
        ):
            raise ValueError(
                "X has constant or collinear columns, so the mclust prior's scale var(X)/K^(2/D) "
                f"is singular for cov_type={cov_type!r}; drop or combine those columns, or use "
                'cov_type="diag" or "spherical".'
            )
        factor = float(n_components) ** (2.0 / d)
        if layout(cov_type) in ("full", "tied"):
            scale = cov / factor
        else:
            scale = np.trace(cov) / d / factor
        return cls(mean, scale, d + 2.0, cov_type=cov_type, shrinkage=0.01)

    def astype(self, dtype) -> Prior:
        return Prior(
            self.mean.astype(dtype),
            self.scale.astype(dtype),
            self.dof.astype(dtype),
            cov_type=self.cov_type,
            shrinkage=self.shrinkage.astype(dtype),
            concentration=self.concentration.astype(dtype),
        )

    def shifted(self, offset: Float[Array, " d"]) -> Prior:
        """The same prior in coordinates where the data were centred on `offset`."""
        return eqx.tree_at(lambda p: p.mean, self, self.mean - offset)

    def log_prob(self, gmm: GMM, active=None) -> Float[Array, ""]:
        """log p(θ) of `gmm`'s parameters (one GMM, no batch axes): the normalised
        log-density for the four scikit-learn models; for mclust's others the penalty its
        MAP M-step maximises, up to a constant (module docstring).

        Components masked out by `active` (K,) bool are left out (their weight is 0).
        """
        return log_prior(gmm, self, active)


def _check_real(name: str, value) -> None:
    """TypeError unless `value` is real numbers (an array, a scalar or nested lists of them);
    traced values pass (their dtype is checked by the arithmetic that uses them)."""
    if isinstance(value, jax.Array | jax.core.Tracer):
        kind = np.dtype(value.dtype).kind
    else:
        try:
            kind = np.asarray(value).dtype.kind
        except (TypeError, ValueError):  # ragged lists
            kind = "O"
    if kind not in "iuf":
        raise TypeError(
            f"the prior's {name} must be real numbers (a float or an array of floats), got "
            f"{value!r}; note that Prior(mean, scale, dof, *, cov_type=...) takes cov_type by "
            "keyword."
        )


def _check_values(scale, dof, shrinkage, concentration, cov_type, d):
    if not (np.all(np.isfinite(scale)) and np.isfinite([dof, shrinkage, concentration]).all()):
        raise ValueError("the prior's scale, dof, shrinkage and concentration must be finite.")
    min_dof = d - 1 if layout(cov_type) in ("full", "tied") else 0
    if not dof > min_dof:
        raise ValueError(
            f"the prior's dof must be > {min_dof} for cov_type={cov_type!r}, got {dof}."
        )
    if not shrinkage >= 0:
        raise ValueError(f"the prior's shrinkage must be >= 0, got {shrinkage}.")
    if not concentration >= 1:
        raise ValueError(
            f"the prior's concentration must be >= 1 (a mode inside the simplex), got "
            f"{concentration}."
        )
    if layout(cov_type) in ("full", "tied"):
        if not np.allclose(scale, scale.T, rtol=1e-6, atol=1e-12):
            raise ValueError("the prior's scale matrix must be symmetric.")
        try:
            np.linalg.cholesky(scale)
        except np.linalg.LinAlgError:
            raise ValueError("the prior's scale matrix must be positive definite.") from None
    elif np.any(scale <= 0):
        raise ValueError("the prior's scale must be strictly positive.")


def resolve_prior(
    prior, X, n_components: int, cov_type: str, *, n_features: int, sample_weight=None
) -> Prior | None:
    """`prior=` as the fitting functions take it: None, "mclust" (built from X and the sample
    weights), or a `Prior` (checked against `cov_type` and `n_features`)."""
    if prior is None:
        return None
    if isinstance(prior, str):
        if prior != "mclust":
            raise ValueError(f'prior must be None, "mclust" or a gmmjax.Prior, got {prior!r}.')
        return Prior.mclust(X, n_components, cov_type, sample_weight=sample_weight)
    if not isinstance(prior, Prior):
        raise ValueError(f'prior must be None, "mclust" or a gmmjax.Prior, got {prior!r}.')
    check_matches(prior, cov_type)
    if prior.n_features != n_features:
        raise ValueError(f"the prior is for {prior.n_features} features, X has {n_features}.")
    return prior


def default_reg_covar(reg_covar, prior):
    """`reg_covar=None` means scikit-learn's 1e-6 without a prior and 0 with one (the prior
    keeps covariances regular, and 0 makes EM climb exactly the objective)."""
    if reg_covar is not None:
        return reg_covar
    return 0.0 if prior is not None else 1e-6


def check_matches(prior: Prior, cov_type: str) -> None:
    """ValueError unless `prior` is for `cov_type` (its forms differ by covariance type)."""
    if model_name(prior.cov_type) != model_name(cov_type):
        raise ValueError(
            f"the prior is for cov_type={prior.cov_type!r}, the mixture is {cov_type!r}; "
            f"build the prior with cov_type={cov_type!r}."
        )


# The pseudo-observations of each model's MAP M-step (docs/math.md §11), with b = [κ > 0]:
# (count per component, count once, scale share per component, scale share once); "once"
# terms are split evenly over the active components (their models share what they act on).
# The ten models mclust has priors for follow mclust 6.0.0's EM routines (me*p in its
# Fortran), which reproduce its fits to 1e-10 in the log-likelihood
# (tests/test_model_priors.py), quirks included: EII never adds the scale (its prior only
# counts), VEV never the dof, and the counts of EEI, VEI, EVI and EEV add b once or per
# component as mclust does. One difference:
# mclust's EEI leaves the means at x̄_k (while adding B_k to the scatter), which maximises no
# fixed objective; gmmjax shrinks them as for every other model, so EM stays monotone.
# For the four mclust has no prior for: VEE and VVE as VVV, EVE and EVV as EEV.
def _pseudo_observation_rule(name, nu, d, b):
    full = nu + d + 1 + b
    return {
        "EII": (b, (nu + 2) / d, 0.0, 0.0),
        "VII": (b + (nu + 2) / d, 0.0, 1.0 / d, 0.0),
        "EEI": (0.0, nu + 1 + b, 0.0, 1.0),
        "VEI": ((nu + 2 + b) / d, 0.0, 1.0, 0.0),
        "EVI": (0.0, nu + 1 + b, 1.0, 0.0),
        "VVI": (nu + 2 + b, 0.0, 1.0, 0.0),
        "EEE": (b, nu + d + 1, 0.0, 1.0),
        "VEE": (full, 0.0, 1.0, 0.0),
        "EVE": (0.0, full, 1.0, 0.0),
        "VVE": (full, 0.0, 1.0, 0.0),
        "EEV": (0.0, full, 1.0, 0.0),
        "VEV": (0.0, 0.0, 1.0, 0.0),
        "EVV": (0.0, full, 1.0, 0.0),
        "VVV": (full, 0.0, 1.0, 0.0),
    }[name]


# With one active component every model is its layout's unconstrained one, and mclust then
# fits its one-component models XII, XXI, XXX, whose priors are VII's, VVI's and VVV's.
_ONE_COMPONENT = {"spherical": "VII", "diag": "VVI", "full": "VVV", "tied": "VVV"}


def pseudo_observations(
    prior: Prior, cov_type: str, active: Array
) -> tuple[Float[Array, " k"], Float[Array, " k"]]:
    """(e, s), each (K,): the MAP M-step of model `cov_type` is its maximum-likelihood
    M-step (`_covariance.constrained_covariances`) on counts n_k + e_k and scatter
    W_k + B_k + s_k Λ (Λ = `prior.scale` as a matrix, ς² I for the scalar scales), which
    maximises Q(θ, θ^t) − ½ Σ_k [e_k log|Σ_k| + s_k tr(Λ Σ_k⁻¹) + κ (μ_k − m)ᵀ Σ_k⁻¹ (μ_k − m)].
    For the four scikit-learn models these are the conjugate formulas of §3 (e.g. VVV:
    e_k = ν + D + 1 + [κ > 0], s_k = 1). Components masked out by `active` (K,) get 0."""
    dtype = prior.mean.dtype
    d = prior.n_features
    b = (prior.shrinkage > 0).astype(dtype)
    n_active = jnp.sum(active).astype(dtype)
    rule = _pseudo_observation_rule(model_name(cov_type), prior.dof, d, b)
    single = _pseudo_observation_rule(_ONE_COMPONENT[layout(cov_type)], prior.dof, d, b)
    c_each, c_once, s_each, s_once = (
        jnp.where(n_active == 1, one, many) for one, many in zip(single, rule, strict=True)
    )
    safe_active = jnp.maximum(n_active, 1.0)
    counts = jnp.where(active, c_each + c_once / safe_active, 0.0).astype(dtype)
    shares = jnp.where(active, s_each + s_once / safe_active, 0.0).astype(dtype)
    return counts, shares


def log_prior(gmm: GMM, prior: Prior, active=None) -> Float[Array, ""]:
    """log p(θ) under `prior` (see the module docstring); docs/math.md §2."""
    check_matches(prior, gmm.cov_type)
    if model_name(gmm.cov_type) not in ALIASES.values():
        return _log_pseudo_prior(gmm, prior, active)
    k, d = gmm.n_components, gmm.n_features
    dtype = gmm.means.dtype
    if active is None:
        active = jnp.ones((k,), bool)
    n_active = jnp.sum(active).astype(dtype)
    alpha, kappa, nu = prior.concentration, prior.shrinkage, prior.dof

    # Dirichlet(α) over the active components; 0·log 0 = 0 when α = 1.
    log_w = jnp.where(
        active & (gmm.weights > 0), jnp.log(jnp.where(gmm.weights > 0, gmm.weights, 1)), 0
    )
    lp = gammaln(n_active * alpha) - n_active * gammaln(alpha) + (alpha - 1) * jnp.sum(log_w)

    U = gmm.precisions_cholesky
    half_logdet_prec = log_det_precision_cholesky(U, gmm.cov_type, d)  # −½ log|Σ_k|, (K,) / ()
    # (μ_k − m)ᵀ Σ_k⁻¹ (μ_k − m), K numbers: formed from explicit differences rather than by
    # `_likelihood.squared_mahalanobis`, whose float64 expansion (built for N x K products)
    # cancels and clamps at 0 exactly where μ_k ≈ m.
    maha = whitened_square_norms(gmm.means - prior.mean, U, gmm.cov_type)
    half_logdet_k = (
        half_logdet_prec
        if layout(gmm.cov_type) != "tied"
        else jnp.broadcast_to(half_logdet_prec, (k,))
    )
    safe_kappa = jnp.where(kappa > 0, kappa, 1.0)
    mean_term = 0.5 * d * jnp.log(safe_kappa / (2 * jnp.pi)) + half_logdet_k - 0.5 * kappa * maha
    lp = lp + jnp.where(kappa > 0, jnp.sum(jnp.where(active, mean_term, 0.0)), 0.0)

    if layout(gmm.cov_type) in ("full", "tied"):
        C = jnp.linalg.cholesky(prior.scale)
        log_det_scale = 2 * jnp.sum(jnp.log(jnp.diagonal(C)))
        # tr(Λ Σ⁻¹) = ‖Cᵀ U‖²_F with Λ = C Cᵀ and Σ⁻¹ = U Uᵀ.
        trace = jnp.sum(jnp.square(jnp.einsum("ed,...ef->...df", C, U)), axis=(-2, -1))
        iw = (
            0.5 * nu * log_det_scale
            - 0.5 * nu * d * jnp.log(2.0)
            - multigammaln(0.5 * nu, d)
            + (nu + d + 1) * half_logdet_prec
            - 0.5 * trace
        )
        lp = lp + (iw if layout(gmm.cov_type) == "tied" else jnp.sum(jnp.where(active, iw, 0.0)))
    else:
        # Inverse-gamma(a = ν/2, b = ς²/2) on each variance v = 1/U²:
        # a log b − log Γ(a) − (a + 1) log v − b / v.
        a = 0.5 * nu
        b = 0.5 * prior.scale
        log_prec = 2 * jnp.log(U)  # −log v
        ig = a * jnp.log(b) - gammaln(a) + (a + 1) * log_prec - b * jnp.square(U)
        if layout(gmm.cov_type) == "diag":
            ig = jnp.sum(ig, axis=-1)
        lp = lp + jnp.sum(jnp.where(active, ig, 0.0))
    return lp


def _log_pseudo_prior(gmm: GMM, prior: Prior, active=None) -> Float[Array, ""]:
    """log p(θ) up to a constant for mclust's models beyond scikit-learn's four: the
    Dirichlet and mean factors as above, and −½ Σ_k [e_k log|Σ_k| + s_k tr(Λ Σ_k⁻¹)] with
    the pseudo-observations (e, s) of `pseudo_observations` (module docstring)."""
    k, d = gmm.n_components, gmm.n_features
    dtype = gmm.means.dtype
    if active is None:
        active = jnp.ones((k,), bool)
    n_active = jnp.sum(active).astype(dtype)
    alpha, kappa = prior.concentration, prior.shrinkage
    log_w = jnp.where(
        active & (gmm.weights > 0), jnp.log(jnp.where(gmm.weights > 0, gmm.weights, 1)), 0
    )
    lp = gammaln(n_active * alpha) - n_active * gammaln(alpha) + (alpha - 1) * jnp.sum(log_w)

    U = gmm.precisions_cholesky  # never tied: EEE is scikit-learn's "tied"
    log_det = -2 * log_det_precision_cholesky(U, gmm.cov_type, d)  # log|Σ_k|, (K,)
    diff = gmm.means - prior.mean
    kind = layout(gmm.cov_type)
    if kind == "full":
        maha = jnp.sum(jnp.square(jnp.einsum("kd,kde->ke", diff, U)), axis=-1)
        C = jnp.linalg.cholesky(prior.scale)
        trace = jnp.sum(jnp.square(jnp.einsum("ed,kef->kdf", C, U)), axis=(-2, -1))
    elif kind == "diag":
        maha = jnp.sum(jnp.square(diff * U), axis=-1)
        trace = jnp.sum(prior.scale * jnp.square(U), axis=-1)
    else:
        maha = jnp.sum(jnp.square(diff), axis=-1) * jnp.square(U)
        trace = d * prior.scale * jnp.square(U)
    safe_kappa = jnp.where(kappa > 0, kappa, 1.0)
    mean_norm = jnp.where(kappa > 0, 0.5 * d * jnp.log(safe_kappa / (2 * jnp.pi)), 0.0)
    counts, shares = pseudo_observations(prior, gmm.cov_type, active)
    per_component = mean_norm - 0.5 * (kappa * maha + counts * log_det + shares * trace)
    return lp + jnp.sum(jnp.where(active, per_component, 0.0))
