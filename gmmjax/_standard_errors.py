"""Standard errors and confidence intervals of a fitted mixture (docs/math.md §12).

Three estimates of the information about the free parameters φ (`_free_parameters`), each a
(p, p) matrix, mapped to the natural parameters η = g(φ) by the delta method,
Cov(η̂) ≈ J I⁻¹ Jᵀ with J = ∂g/∂φ at φ̂ (through a Cholesky factor of I, no inverse):

    "hessian"  I = −∇²_φ [ℓ(φ) + log p(φ)]   (autodiff; the observed information)
    "louis"    I = E[−∇² ℓ_c | x] − Σ_i w_i Var(∇ ℓ_c,i | x) − ∇² log p   (Louis 1982), from the
               complete-data terms c_ik = log π_k + log N(x_i | μ_k, Σ_k) and the
               responsibilities: the same matrix as "hessian" by Louis's identity
    "opg"      I = Σ_i w_i s_i s_iᵀ − ∇² log p, s_i = ∇_φ log p(x_i | φ) (outer product of the
               per-sample scores; it estimates the same information only asymptotically)

and "bootstrap" (`_bootstrap`): the spread of refits to resampled data. With a prior these
are the curvature of the log-posterior (a Laplace approximation).
"""

from __future__ import annotations

import dataclasses
import functools
from statistics import NormalDist

import jax
import jax.numpy as jnp
import numpy as np
from scipy.linalg import solve_triangular

from ._free_parameters import (
    check_free_parameterisation,
    from_free,
    natural_names,
    natural_to_gmm_shapes,
    to_free,
    to_natural,
)
from ._likelihood import component_log_prob, log_likelihood, log_prob
from ._params import GMM
from ._prior import Prior, log_prior, resolve_prior
from ._validate import check_data_host, host_sample_weight, normalised_weights

METHODS = ("hessian", "louis", "opg", "bootstrap")

_NAN_MESSAGE = (
    "X contains NaN; standard errors are for complete data: pass the rows the mixture was "
    "fitted to without missing values (X[~np.isnan(X).any(1)])."
)


@dataclasses.dataclass(frozen=True)
class StandardErrors:
    """Standard errors of a fitted mixture's natural parameters.

    Attributes:
        names: (q,) "weight[k]", "mean[k,j]", "cov[k,i,j]"... (0-based; `natural_names`).
        estimate: (q,) the fitted values.
        std_error: (q,) their standard errors.
        covariance: (q, q) their estimated covariance.
        method: "hessian", "louis", "opg" or "bootstrap".
        n_components, n_features, cov_type: of the mixture.
        replicates: (B, q) the bootstrap refits' natural parameters, components matched to
            the fit (None for the other methods); failed refits are left out.
        n_failed: bootstrap refits that failed (non-finite or a collapsed component).
    """

    names: tuple[str, ...]
    estimate: np.ndarray
    std_error: np.ndarray
    covariance: np.ndarray
    method: str
    n_components: int
    n_features: int
    cov_type: str
    replicates: np.ndarray | None = None
    n_failed: int = 0

    def intervals(self, level: float = 0.95) -> np.ndarray:
        """(q, 2) confidence intervals: Wald, estimate ± z_(1+level)/2 · std_error, for the
        information methods; the bootstrap's percentile interval for "bootstrap"."""
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level}.")
        if self.replicates is not None:
            tail = 100 * (1 - level) / 2
            return np.percentile(self.replicates, [tail, 100 - tail], axis=0).T
        z = NormalDist().inv_cdf(0.5 + level / 2)
        return np.stack([self.estimate - z * self.std_error, self.estimate + z * self.std_error], 1)

    def shaped(self, values=None) -> dict:
        """`values` (default the standard errors), laid out like the GMM's fields:
        {"weights": (K,), "means": (K, D), "covariances": the covariance layout}."""
        values = self.std_error if values is None else values
        return natural_to_gmm_shapes(values, self.n_components, self.n_features, self.cov_type)

    def table(self, level: float = 0.95) -> str:
        """One line per parameter: estimate, standard error and the interval of `level`."""
        low, high = self.intervals(level).T
        pct = f"{100 * level:g}%"
        width = max(len(n) for n in self.names)
        head = (
            f"{'parameter':<{width}}  {'estimate':>12}  {'std.error':>10}  "
            f"{pct + ' low':>12}  {pct + ' high':>12}"
        )
        lines = [f"standard errors ({self.method})", head]
        for row in zip(self.names, self.estimate, self.std_error, low, high, strict=True):
            name, est, se, lo, hi = row
            lines.append(f"{name:<{width}}  {est:12.6g}  {se:10.4g}  {lo:12.6g}  {hi:12.6g}")
        if self.replicates is not None:
            lines.append(f"{len(self.replicates)} bootstrap refits, {self.n_failed} failed")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def standard_errors(
    gmm: GMM,
    X,
    *,
    method: str = "hessian",
    prior=None,
    sample_weight=None,
    key=None,
    n_bootstrap: int = 200,
    bootstrap: str = "nonparametric",
    max_iter: int = 1000,
    tol: float = 1e-8,
    reg_covar: float | None = None,
) -> StandardErrors:
    """Standard errors of `gmm`'s weights, means and covariance entries, fitted to X (N, D).

    Args:
        gmm: the fitted mixture (one, no restart axis), e.g. `fit_em(...).best`.
        X: (N, D) the data it was fitted to.
        method: "hessian", "louis", "opg" (module docstring; scikit-learn's four covariance
            types only) or "bootstrap" (every model).
        prior: the prior it was fitted with (None, "mclust" or a `Prior`): the information is
            then that of the log-posterior.
        sample_weight: (N,) the weights it was fitted with, or None. They are frequencies:
            the information methods count Σ w_i observations (weights x c shrink the
            standard errors by √c; integer weights equal repeated rows), rows of weight 0
            are dropped, and the bootstrap resamples the rows with their weights.
        key: the bootstrap's random key (method="bootstrap" only).
        n_bootstrap: B, the number of bootstrap refits, run as one compiled program.
        bootstrap: "nonparametric" (multinomial resampling weights) or "parametric" (data
            drawn from `gmm`).
        max_iter: the refits' step limit; each refit starts at `gmm`.
        tol: the refits' stopping rule, as `fit_em`'s.
        reg_covar: the refits' regulariser (default as in `fit_em`).

    Raises:
        ValueError: before any work, on invalid X (NaN, inf, no rows, the wrong number of
            columns) or sample_weight (the wrong length, NaN, negative, all zero); on an
            unknown method, a structured mclust model with an information
            method, or an information matrix that is not positive definite (the fit is not a
            strict local maximum: an empty or nearly empty component, a component on too few
            points to fix its covariance, or a fit stopped before convergence).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    if not isinstance(gmm, GMM) or gmm.weights.ndim != 1:
        raise ValueError("standard_errors needs one fitted GMM (e.g. fit_em(...).best).")
    # Checked as `fit` checks them, before any work: NaN would surface as a failed
    # factorisation (or as failed bootstrap refits) only after the whole information matrix.
    X, _ = check_data_host(X, nan_message=_NAN_MESSAGE)
    if X.shape[1] != gmm.n_features:
        raise ValueError(
            f"X must have shape (n_samples, {gmm.n_features}) to match gmm, got {X.shape}."
        )
    w = None
    # The information is Σ_i w_i (a per-row term) + the prior's: without a prior it is
    # computed from weights normalised to mean 1 over the rows of positive weight, in
    # float64 on the host (`normalised_weights`), and the covariance divided by the weights'
    # scale afterwards, so tiny or huge weights lose nothing to the compute dtype; with a prior
    # the weights are counts and keep their scale, as in `fit`. Rows of weight 0 are dropped:
    # whatever they hold has no effect.
    scale = 1.0
    if sample_weight is not None:
        w64 = host_sample_weight(sample_weight, X.shape[0])
        X = X[w64 > 0]
        w64 = w64[w64 > 0]
        if prior is None:
            scale = float(np.sum(w64 / np.max(w64))) * float(np.max(w64)) / len(w64)
            w64 = normalised_weights(w64)
        w = jnp.asarray(w64, gmm.means.dtype)
    X = jnp.asarray(X, gmm.means.dtype)
    prior = resolve_prior(
        prior, X, gmm.n_components, gmm.cov_type, n_features=gmm.n_features, sample_weight=w
    )
    if prior is not None:
        prior = prior.astype(X.dtype)
    k, d = gmm.n_components, gmm.n_features
    names = natural_names(k, d, gmm.cov_type)
    estimate = np.asarray(to_natural(gmm), np.float64)
    if method == "bootstrap":
        from ._bootstrap import bootstrap_replicates

        replicates, n_failed = bootstrap_replicates(
            gmm, X, key=key, n_bootstrap=n_bootstrap, kind=bootstrap, prior=prior,
            sample_weight=w, max_iter=max_iter, tol=tol, reg_covar=reg_covar,
        )  # fmt: skip
        # Resampling reflects the rows, not the weights' total: no rescaling here.
        cov = np.cov(replicates, rowvar=False)
        return StandardErrors(
            names, estimate, np.sqrt(np.diag(cov)), cov, method, k, d, gmm.cov_type,
            replicates, n_failed,
        )  # fmt: skip
    check_free_parameterisation(gmm.cov_type, f"method={method!r}")
    info = np.asarray(information(gmm, X, method=method, prior=prior, sample_weight=w), np.float64)
    jac = np.asarray(_natural_jacobian(gmm), np.float64)
    cov = delta_method_covariance(info, jac, np.finfo(np.dtype(X.dtype)).eps) / scale
    return StandardErrors(names, estimate, np.sqrt(np.diag(cov)), cov, method, k, d, gmm.cov_type)


@functools.partial(jax.jit, static_argnames="method")
def information(gmm: GMM, X, *, method: str, prior: Prior | None = None, sample_weight=None):
    """The (p, p) information about the free parameters φ at `gmm` (module docstring)."""
    k, d, cov_type = gmm.n_components, gmm.n_features, gmm.cov_type
    phi = to_free(gmm)
    w = jnp.ones(X.shape[:1], X.dtype) if sample_weight is None else sample_weight

    def mixture(p):
        return from_free(p, k, d, cov_type)

    def log_prior_of(p):
        return 0.0 if prior is None else log_prior(mixture(p), prior)

    prior_part = -jax.hessian(log_prior_of)(phi) if prior is not None else 0.0
    if method == "hessian":
        return -jax.hessian(lambda p: log_likelihood(mixture(p), X, w))(phi) + prior_part
    if method == "opg":
        scores = jax.jacfwd(lambda p: log_prob(mixture(p), X))(phi)  # (N, p), p JVPs
        return jnp.einsum("n,np,nq->pq", w, scores, scores) + prior_part
    if method == "louis":
        comp = component_log_prob(gmm, X)
        resp = jax.nn.softmax(comp, axis=1)  # (N, K), fixed at the fit

        def expected_complete(p):
            return jnp.sum(w[:, None] * resp * component_log_prob(mixture(p), X))

        grads = jax.jacfwd(lambda p: component_log_prob(mixture(p), X))(phi)  # (N, K, p)
        scores = jnp.einsum("nk,nkp->np", resp, grads)
        second = jnp.einsum("n,nk,nkp,nkq->pq", w, resp, grads, grads)
        variance = second - jnp.einsum("n,np,nq->pq", w, scores, scores)
        return -jax.hessian(expected_complete)(phi) - variance + prior_part
    raise ValueError(f"unknown information method {method!r}.")


@jax.jit
def _natural_jacobian(gmm: GMM):
    """∂η/∂φ at `gmm`, (q, p)."""
    k, d = gmm.n_components, gmm.n_features
    return jax.jacfwd(lambda phi: to_natural(from_free(phi, k, d, gmm.cov_type)))(to_free(gmm))


def delta_method_covariance(info: np.ndarray, jac: np.ndarray, eps: float) -> np.ndarray:
    """J I⁻¹ Jᵀ from a Cholesky factor L of the equilibrated S I S (S = diag(I)^-½, so
    I⁻¹ = S (S I S)⁻¹ S and the covariance is AᵀA with A = L⁻¹ S Jᵀ); ValueError when S I S is
    not positive definite beyond rounding (relative to its largest eigenvalue). Equilibrating
    first makes the test independent of the parameters' units: rescaling X rescales the rows
    and columns of I, not whether it is positive definite."""
    info = 0.5 * (info + info.T)
    diagonal = np.diag(info)
    s = np.where(diagonal > 0, 1.0 / np.sqrt(np.where(diagonal > 0, diagonal, 1.0)), 1.0)
    scaled = info * s[:, None] * s[None, :]
    values = np.linalg.eigvalsh(scaled) if np.all(np.isfinite(scaled)) else np.array([np.nan])
    floor = 100 * info.shape[0] * eps * max(abs(values[-1]), 1e-300)
    if not np.all(np.isfinite(values)) or values[0] <= floor or np.any(diagonal <= 0):
        raise ValueError(
            "the information matrix is not positive definite (eigenvalues of its equilibrated "
            f"form from {values[0]:.3g} to {values[-1]:.3g}): the fit is not a strict local "
            "maximum of its objective. Typical causes: an empty or nearly empty component, a "
            "component on too few points to fix its covariance, or a fit stopped before "
            "convergence. Refit to a tight tol, with fewer components or a prior "
            "(prior='mclust'), or use method='bootstrap'."
        )
    chol = np.linalg.cholesky(scaled)
    a = solve_triangular(chol, (jac * s[None, :]).T, lower=True)
    return a.T @ a
