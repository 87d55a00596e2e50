"""`GaussianMixture`: scikit-learn's estimator interface over `fit_em`.

Swap `from sklearn.mixture import GaussianMixture` for `from gmmjax import GaussianMixture`:
same constructor, fitted attributes and methods; the `n_init` restarts run as one vmapped
program, and every restart's history and status stay available (`restarts_`).
scikit-learn itself is not needed at run time (only its tag machinery, when it asks).
"""

from __future__ import annotations

import inspect
import numbers

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from ._criteria import aic, bic
from ._em import e_step
from ._fit import FitResult, fit_em
from ._init import initialize
from ._io import load, save
from ._likelihood import log_prob
from ._params import GMM
from ._sample import sample
from ._validate import check_data

_INIT_NAMES = {
    "kmeans": "kmeans++",
    "k-means++": "kmeans++",
    "random": "random",
    "random_from_data": "random_from_data",
}


try:  # Where scikit-learn is installed, its handlers catch our error too (drop-in use).
    from sklearn.exceptions import NotFittedError as _NotFittedBase
except ImportError:  # pragma: no cover - scikit-learn is a test-only dependency

    class _NotFittedBase(ValueError, AttributeError):
        pass


class NotFittedError(_NotFittedBase):
    """The estimator is used before `fit` (scikit-learn's exception where it is installed)."""


class GaussianMixture:
    """A Gaussian mixture fitted by EM, with scikit-learn's interface and defaults.

    Parameters are scikit-learn's (see `sklearn.mixture.GaussianMixture`); `init_params`
    "kmeans" means k-means++ seeding plus Lloyd steps, run in JAX. `random_state` (None, an int
    or a `np.random.RandomState`) seeds the JAX key: an int gives the same fit every time.
    The best of the `n_init` restarts is the one with the highest final log-likelihood (
    scikit-learn picks by its lower bound, the previous iterate's value).

    Fitted attributes: weights_, means_, covariances_, precisions_, precisions_cholesky_,
    converged_, n_iter_, lower_bound_ (mean log-likelihood of the second-last iterate, as in
    scikit-learn), lower_bounds_, n_features_in_; and, beyond scikit-learn, `restarts_` (the
    `FitResult` of all restarts: histories, statuses, parameters) and `status_`.
    Results are NumPy arrays, in float64 when `jax_enable_x64` is on.

    Beyond scikit-learn's parameters, `prior` (None, "mclust" or a `gmmjax.Prior`) makes the
    fit MAP-EM on the penalised objective (docs/math.md); `reg_covar` keeps its scikit-learn
    meaning and default and is added on top, so pass reg_covar=0 for the exact MAP fit. With
    a prior, `lower_bound_` and `lower_bounds_` are values of that objective.
    """

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        prior=None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.prior = prior

    # -- scikit-learn's parameter protocol -------------------------------------------------

    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> GaussianMixture:
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for GaussianMixture; valid: {valid}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = inspect.signature(type(self).__init__).parameters
        changed = [
            f"{k}={v!r}"
            for k, v in self.get_params().items()
            if not (isinstance(v, type(defaults[k].default)) and v == defaults[k].default)
        ]
        return f"GaussianMixture({', '.join(changed)})"

    def __sklearn_tags__(self):
        # Only scikit-learn calls this, so importing it here adds no run-time dependency.
        from sklearn.utils import Tags, TargetTags

        tags = Tags(estimator_type="density_estimator", target_tags=TargetTags(required=False))
        tags.input_tags.allow_nan = False
        return tags

    # -- fitting -------------------------------------------------------------------------

    def fit(self, X, y=None, sample_weight=None) -> GaussianMixture:
        """Fit by EM with `n_init` vmapped restarts; `y` is ignored."""
        X = self._check_X(X, fitting=True)
        self._check_options(X)
        key = _key_from(self.random_state)
        start = self._initial_params(X, key)
        self.restarts_: FitResult = fit_em(
            X,
            self.n_components,
            key=key,
            cov_type=self.covariance_type,
            n_restarts=1 if start is not None and not start.batch_shape else self.n_init,
            init=_INIT_NAMES[self.init_params],
            max_iter=self.max_iter,
            tol=self.tol,
            reg_covar=self.reg_covar,
            prior=self.prior,
            sample_weight=sample_weight,
            init_params=start,
        )
        self._set_fitted(self.restarts_)
        return self

    def fit_predict(self, X, y=None, sample_weight=None) -> np.ndarray:
        return self.fit(X, y, sample_weight).predict(X)

    def _check_options(self, X) -> None:
        if self.init_params not in _INIT_NAMES:
            raise ValueError(
                f"init_params must be one of {sorted(_INIT_NAMES)}, got {self.init_params!r}."
            )
        if not isinstance(self.n_init, numbers.Integral) or self.n_init < 1:
            raise ValueError(f"n_init must be an integer >= 1, got {self.n_init!r}.")
        if self.n_components > X.shape[0]:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = "
                f"{self.n_components}, n_samples = {X.shape[0]}"
            )

    def _initial_params(self, X, key) -> GMM | None:
        """None (fit_em initialises), the warm-start parameters, or user-given pieces over
        the default initialisation (as scikit-learn combines them)."""
        if self.warm_start and hasattr(self, "weights_"):
            return self._gmm
        given = (self.weights_init, self.means_init, self.precisions_init)
        if all(g is None for g in given):
            return None
        keys = jax.random.split(key, self.n_init)
        gmm = initialize(
            X,
            self.n_components,
            key=keys,
            cov_type=self.covariance_type,
            method=_INIT_NAMES[self.init_params],
            reg_covar=self.reg_covar,
            prior=self.prior,
        )
        r = self.n_init
        weights, means, covs = gmm.weights, gmm.means, gmm.covariances
        if self.weights_init is not None:
            weights = jnp.broadcast_to(jnp.asarray(self.weights_init, X.dtype), weights.shape)
        if self.means_init is not None:
            means = jnp.broadcast_to(jnp.asarray(self.means_init, X.dtype), means.shape)
        if self.precisions_init is not None:
            cov = _covariance_from_precision(
                jnp.asarray(self.precisions_init, X.dtype), self.covariance_type
            )
            covs = jnp.broadcast_to(cov, (r,) + cov.shape)
        return GMM(np.asarray(weights), np.asarray(means), np.asarray(covs), self.covariance_type)

    def _set_mixture(self, gmm: GMM) -> None:
        """The fitted mixture and the scikit-learn attributes derived from it."""
        self._gmm = gmm
        self.weights_ = np.asarray(gmm.weights)
        self.means_ = np.asarray(gmm.means)
        self.covariances_ = np.asarray(gmm.covariances)
        u = np.asarray(gmm.precisions_cholesky)
        self.precisions_cholesky_ = u
        # Σ⁻¹ = U Uᵀ (full, tied); 1/σ² = u² (diag, spherical).
        self.precisions_ = u @ np.swapaxes(u, -1, -2) if gmm.cov_type in ("full", "tied") else u**2
        self.n_features_in_ = gmm.n_features

    def _set_fitted(self, res: FitResult) -> None:
        best = int(res.best_index)
        self._set_mixture(res.best)
        self.n_iter_ = int(res.n_iter[best])
        self.converged_ = bool(res.converged[best])
        self.status_ = int(res.status[best])
        history = np.asarray(res.history[best, : self.n_iter_])
        self.lower_bounds_ = history.tolist()
        self.lower_bound_ = float(history[-1]) if len(history) else float("nan")

    # -- using the fit -------------------------------------------------------------------

    def predict_proba(self, X) -> np.ndarray:
        """(N, K) responsibilities."""
        X = self._check_X(X)
        return np.asarray(e_step(self._gmm, X)[0])

    def predict(self, X) -> np.ndarray:
        """(N,) the most responsible component of each sample."""
        return self.predict_proba(X).argmax(axis=1)

    def score_samples(self, X) -> np.ndarray:
        """(N,) log p(x_i)."""
        return np.asarray(log_prob(self._gmm, self._check_X(X)))

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per sample."""
        return float(np.mean(self.score_samples(X)))

    def bic(self, X) -> float:
        return float(bic(self._gmm, self._check_X(X)))

    def aic(self, X) -> float:
        return float(aic(self._gmm, self._check_X(X)))

    def sample(self, n_samples=1) -> tuple[np.ndarray, np.ndarray]:
        """(X (n, D), component labels (n,)), sorted by component as scikit-learn returns them."""
        self._check_fitted()
        if not isinstance(n_samples, numbers.Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}.")
        X, z = sample(self._gmm, int(n_samples), key=_key_from(self.random_state))
        order = np.argsort(np.asarray(z), kind="stable")
        return np.asarray(X)[order], np.asarray(z)[order]

    def save(self, path) -> None:
        """The fitted mixture as `.npz` + JSON metadata (see `gmmjax.save`)."""
        self._check_fitted()
        save(self._gmm, path)

    @classmethod
    def load(cls, path) -> GaussianMixture:
        """An estimator whose fitted mixture is read from `path` (see `gmmjax.load`)."""
        gmm = load(path)
        est = cls(n_components=gmm.n_components, covariance_type=gmm.cov_type)
        est._set_mixture(gmm)
        return est

    # -- input checks --------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "weights_"):
            raise NotFittedError(
                "This GaussianMixture instance is not fitted yet. Call 'fit' with appropriate "
                "arguments before using this estimator."
            )

    def _check_X(self, X, fitting: bool = False):
        if not fitting:
            self._check_fitted()
        if hasattr(X, "toarray") or hasattr(X, "tocsr"):
            raise TypeError("sparse input is not supported; pass a dense array (X.toarray()).")
        X = check_data(X)
        if not fitting and X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but GaussianMixture is expecting "
                f"{self.n_features_in_} features as input."
            )
        if not fitting and X.dtype != self._gmm.means.dtype:
            X = X.astype(self._gmm.means.dtype)
        return X


def _key_from(random_state):
    """A JAX key from scikit-learn's random_state conventions."""
    if random_state is None:
        seed = np.random.randint(np.iinfo(np.int32).max)
    elif isinstance(random_state, numbers.Integral):
        seed = int(random_state)
    elif isinstance(random_state, np.random.RandomState):
        seed = random_state.randint(np.iinfo(np.int32).max)
    else:
        raise ValueError(
            f"random_state must be None, an int or a RandomState, got {random_state!r}"
        )
    return jax.random.key(seed)


def _covariance_from_precision(prec, cov_type: str):
    """Σ = P⁻¹ by Cholesky solves (full/tied), 1/p (diag/spherical)."""
    if cov_type in ("full", "tied"):
        eye = jnp.broadcast_to(jnp.eye(prec.shape[-1], dtype=prec.dtype), prec.shape)
        chol = jnp.linalg.cholesky(prec)
        return jax.vmap(lambda c, e: jsl.cho_solve((c, True), e))(
            chol.reshape(-1, *chol.shape[-2:]), eye.reshape(-1, *eye.shape[-2:])
        ).reshape(prec.shape)
    return 1.0 / prec
