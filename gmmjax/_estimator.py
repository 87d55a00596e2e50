"""`GaussianMixture`: scikit-learn's estimator interface over `fit_em`.

Swap `from sklearn.mixture import GaussianMixture` for `from gmmjax import GaussianMixture`:
same constructor, fitted attributes and methods; the `n_init` restarts run as one vmapped
program, and every restart's history and status stay available (`restarts_`).
scikit-learn itself is not needed at run time (only its tag machinery, when it asks).
"""

from __future__ import annotations

import inspect
import numbers
import time
import warnings

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from ._covariance import COV_TYPES, layout
from ._criteria import aic, bic, n_parameters
from ._em import e_step
from ._exceptions import (
    ConvergenceWarning,
    FitFailedError,
    InvalidParameterError,
    NotFittedError,
)
from ._fit import FitResult, _fit
from ._init import initialize
from ._io import load, save
from ._likelihood import log_likelihood, log_prob
from ._params import GMM, covariance_shape
from ._sample import sample
from ._solver import Status
from ._validate import (
    check_data,
    check_data_host,
    check_dense,
    float_dtype_for,
    host_sample_weight,
    is_int,
)

_INIT_NAMES = {
    "kmeans": "kmeans++",
    "k-means++": "kmeans++",
    "random": "random",
    "random_from_data": "random_from_data",
}
# scikit-learn's four names, and mclust's fourteen models (fitted by EM like the others).
_COV_TYPES = COV_TYPES

# scikit-learn's message when a covariance cannot be factorised; ours adds the status message.
_ILL_DEFINED = (
    "Fitting the mixture model failed because some components have ill-defined empirical "
    "covariance (for instance caused by singleton or collapsed samples). Try to decrease the "
    "number of components, increase reg_covar, or scale the input data."
)
_NOT_CONVERGED = (
    "Best performing initialization did not converge. Try different init parameters, or "
    "increase max_iter, tol, or check for degenerate data."
)
_NAN_WHEN_SCORING = (
    'X contains NaN; construct the estimator with missing="em" to score rows with missing '
    'values by their observed values, or call gmmjax.log_prob(gmm, X, missing="marginal") with '
    "gmm = gmmjax.GMM(est.weights_, est.means_, est.covariances_, est.covariance_type)."
)


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

    `missing="em"` fits data with values missing at random (NaN; see `gmmjax.fit`) and
    lets `predict`, `predict_proba`, `score_samples`, `score`, `bic` and `aic` take rows with
    NaN, scored by their observed values; with the default "raise" NaN is a ValueError, as
    in scikit-learn. A row with every value missing has nothing to fit or score and is a
    ValueError in every method (`gmmjax.log_prob` with missing="marginal" gives it log-density
    0, `gmmjax.impute` the mixture's mean).

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
        missing="raise",
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
        self.missing = missing

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
        """Fit by EM with `n_init` vmapped restarts; `y` is ignored.

        As scikit-learn: with `warm_start` a second call continues from the fitted mixture (one
        restart) and its first tol test compares with the previous `lower_bound_`; given
        `weights_init` / `means_init` / `precisions_init` replace the initialisation's pieces
        (all three: no k-means at all); `max_iter=0` returns the initialisation. Raises
        ValueError when every restart failed (a covariance that is not positive definite, e.g.
        reg_covar=0 on collapsed samples) and warns `ConvergenceWarning` when the best restart
        stopped at max_iter.
        """
        self._check_params()
        X = self._check_X(X, fitting=True)
        if self.n_components > X.shape[0]:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = "
                f"{self.n_components}, n_samples = {X.shape[0]}"
            )
        given = self._checked_inits(X, float_dtype_for(X))
        warm = self.warm_start and hasattr(self, "converged_")
        key = _key_from(self.random_state)
        if warm:
            if self._gmm.n_features != X.shape[1]:
                raise ValueError(
                    f"X has {X.shape[1]} features, but the warm-started mixture has "
                    f"{self._gmm.n_features}; fit with warm_start=False."
                )
            start, previous = self._gmm, self.lower_bound_
        else:
            start, previous = self._initial_params(X, key, given), None
        if self.max_iter == 0:
            return self._fit_no_iteration(X, key, start, sample_weight)
        n_restarts = 1 if start is not None and not start.batch_shape else self.n_init
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            # fit's "every restart failed" warning: the estimator raises its own error below.
            warnings.filterwarnings("ignore", "every restart failed", RuntimeWarning)
            try:
                result = self._run_em(X, key, start, n_restarts, previous, sample_weight)
            except FitFailedError as err:
                raise ValueError(f"{_ILL_DEFINED} ({err})") from None
        best = int(result.best_index)
        status = Status(int(np.asarray(result.status)[best]))
        if status.failed:
            # scikit-learn raises when a covariance cannot be factorised; gmmjax only when no
            # restart survived (a failed restart never wins), and never hands out its NaNs.
            raise ValueError(f"{_ILL_DEFINED} ({status.message.split(';')[0]})")
        self.restarts_: FitResult = result
        self._set_fitted(result)
        if self.verbose:
            self._print_progress(result, time.perf_counter() - t0)
        if not self.converged_:
            warnings.warn(_NOT_CONVERGED, ConvergenceWarning, stacklevel=2)
        return self

    def _run_em(self, X, key, start, n_restarts, previous, sample_weight) -> FitResult:
        """All restarts by EM in one program (`previous`: the warm start's lower bound)."""
        return _fit(
            X,
            int(self.n_components),
            key=key,
            method="em",
            previous_value=previous,
            cov_type=self.covariance_type,
            n_restarts=int(n_restarts),
            init=_INIT_NAMES[self.init_params],
            max_iter=int(self.max_iter),
            tol=float(self.tol),
            reg_covar=float(self.reg_covar),
            prior=self.prior,
            sample_weight=sample_weight,
            init_params=start,
            chunk_size=None,
            mesh=None,
            halving_every=None,
            halving_survivors=1,
            learning_rate=None,
            grad_tol=None,
            batch_size=None,
            missing=self.missing,
        )

    def fit_predict(self, X, y=None, sample_weight=None) -> np.ndarray:
        """`fit(X)` then the labels of X under the fitted mixture."""
        return self.fit(X, y, sample_weight).predict(X)

    def _check_params(self) -> None:
        """scikit-learn's constructor-parameter validation, at `fit` (InvalidParameterError,
        both a ValueError and a TypeError, naming the parameter and what it accepts)."""
        _check_int("n_components", self.n_components, low=1)
        _check_choice("covariance_type", self.covariance_type, _COV_TYPES)
        _check_real("tol", self.tol)
        _check_real("reg_covar", self.reg_covar)
        _check_int("max_iter", self.max_iter, low=0)
        _check_int("n_init", self.n_init, low=1)
        _check_choice("init_params", self.init_params, tuple(_INIT_NAMES))
        _check_choice("missing", self.missing, ("raise", "em"))
        if not isinstance(self.warm_start, bool | np.bool_):
            raise InvalidParameterError(
                f"The 'warm_start' parameter of GaussianMixture must be an instance of 'bool'. "
                f"Got {self.warm_start!r} instead."
            )
        _check_int("verbose", self.verbose, low=0)
        _check_int("verbose_interval", self.verbose_interval, low=1)
        if not (
            self.random_state is None
            or is_int(self.random_state)
            or isinstance(self.random_state, np.random.RandomState)
        ):
            raise InvalidParameterError(
                "The 'random_state' parameter of GaussianMixture must be an int, an instance of "
                f"'numpy.random.RandomState' or None. Got {self.random_state!r} instead."
            )

    def _checked_inits(self, X, dtype) -> dict:
        """`weights_init`, `means_init`, `precisions_init` checked as scikit-learn checks them
        (shapes, ranges, normalisation, symmetry and positive definiteness), in X's dtype."""
        k, d, cov_type = self.n_components, X.shape[1], self.covariance_type
        given = {}
        if self.weights_init is not None:
            w = _as_float_array(self.weights_init, "weights", dtype)
            _check_shape(w, (k,), "weights")
            if np.any(w < 0.0) or np.any(w > 1.0):
                raise ValueError(
                    "The parameter 'weights' should be in the range [0, 1], but got max value "
                    f"{np.min(w):.5f}, min value {np.max(w):.5f}"
                )
            # scikit-learn's tolerance, by the given weights' own precision.
            atol = 1e-6 if np.asarray(self.weights_init).dtype == np.float32 else 1e-8
            if not np.allclose(np.abs(1.0 - np.sum(w, dtype=np.float64)), 0.0, atol=atol):
                raise ValueError(
                    f"The parameter 'weights' should be normalized, but got sum(weights) = "
                    f"{np.sum(w):.5f}"
                )
            given["weights"] = w
        if self.means_init is not None:
            m = _as_float_array(self.means_init, "means", dtype)
            _check_shape(m, (k, d), "means")
            given["means"] = m
        if self.precisions_init is not None:
            name = f"{cov_type} precision"
            p = _as_float_array(self.precisions_init, name, dtype)
            _check_shape(p, covariance_shape(cov_type, k, d), name)
            if layout(cov_type) in ("full", "tied"):
                mats = p.reshape(-1, d, d)
                symmetric = np.allclose(mats, np.swapaxes(mats, -1, -2))
                if not symmetric or np.any(np.linalg.eigvalsh(mats) <= 0.0):
                    raise ValueError(f"'{name}' should be symmetric, positive-definite")
            elif np.any(p <= 0.0):
                raise ValueError(f"'{name}' should be positive")
            given["covariances"] = np.asarray(_covariance_from_precision(jnp.asarray(p), cov_type))
        return given

    def _initial_params(self, X, key, given: dict) -> GMM | None:
        """None (the fit initialises itself), the given pieces over the default
        initialisation of every restart (as scikit-learn combines them), or, when all three
        are given, exactly them (no initialisation is computed)."""
        if not given:
            return None
        if len(given) == 3:
            return GMM(given["weights"], given["means"], given["covariances"], self.covariance_type)
        gmm = self._default_starts(X, key)
        r = self.n_init
        pieces = {"weights": gmm.weights, "means": gmm.means, "covariances": gmm.covariances}
        for name, value in given.items():
            pieces[name] = np.broadcast_to(value, (r,) + value.shape)
        return GMM(**{n: np.asarray(v) for n, v in pieces.items()}, cov_type=self.covariance_type)

    def _default_starts(self, X, key) -> GMM:
        """The (n_init, ...) starts `fit` would compute: restart r from split(key)[r]."""
        if self.missing == "em":
            # As the fit's own initialisation: rows with missing values mean-imputed.
            X = np.where(np.isnan(X), np.nanmean(X, axis=0), X)
        return initialize(
            X,
            self.n_components,
            key=jax.random.split(key, self.n_init),
            cov_type=self.covariance_type,
            method=_INIT_NAMES[self.init_params],
            reg_covar=self.reg_covar,
            prior=self.prior,
        )

    def _fit_no_iteration(self, X, key, start: GMM | None, sample_weight) -> GaussianMixture:
        """max_iter=0: the initialisation itself (the best start by mean log-likelihood),
        n_iter_ 0, lower_bound_ −inf, no ConvergenceWarning (scikit-learn's behaviour)."""
        starts = self._default_starts(X, key) if start is None else start
        if starts.batch_shape:
            w = None
            if sample_weight is not None:
                # Only the mean log-likelihood is compared: the weights' scale does not matter.
                w = jnp.asarray(host_sample_weight(sample_weight, X.shape[0]), X.dtype)
            ll = jax.vmap(lambda g: log_likelihood(g, X, w, missing=self._scoring))(starts)
            starts = starts[int(jnp.argmax(jnp.where(jnp.isfinite(ll), ll, -jnp.inf)))]
        if not bool(jnp.all(jnp.isfinite(starts.precisions_cholesky))):
            raise ValueError(_ILL_DEFINED)
        self.restarts_ = None
        self._set_mixture(starts)
        self.n_iter_, self.converged_, self.status_ = 0, False, None
        self.lower_bound_, self.lower_bounds_ = -np.inf, []
        return self

    def _set_mixture(self, gmm: GMM) -> None:
        """The fitted mixture and the scikit-learn attributes derived from it."""
        self._gmm = gmm
        self.weights_ = np.asarray(gmm.weights)
        self.means_ = np.asarray(gmm.means)
        self.covariances_ = np.asarray(gmm.covariances)
        u = np.asarray(gmm.precisions_cholesky)
        self.precisions_cholesky_ = u
        # Σ⁻¹ = U Uᵀ (full, tied); 1/σ² = u² (diag, spherical).
        self.precisions_ = (
            u @ np.swapaxes(u, -1, -2) if layout(gmm.cov_type) in ("full", "tied") else u**2
        )
        self.n_features_in_ = gmm.n_features

    def _set_fitted(self, res: FitResult) -> None:
        # One host copy: indexing JAX arrays here would compile a small program per index.
        res = jax.device_get(res)
        best = int(res.best_index)
        self._set_mixture(res.best)
        self.n_iter_ = int(res.n_iter[best])
        self.converged_ = bool(res.converged[best])
        self.status_ = int(res.status[best])
        history = np.asarray(res.history[best, : self.n_iter_])
        self.lower_bounds_ = history.tolist()
        self.lower_bound_ = float(history[-1]) if len(history) else float("nan")

    def _print_progress(self, res: FitResult, seconds: float) -> None:
        """scikit-learn's `verbose` report, printed after the run: all restarts ran together
        in one compiled program, so there is one time for all of them."""
        res = jax.device_get(res)
        n_restarts = res.n_iter.shape[0]
        print(f"Fitted {n_restarts} initialization(s) in one program: {seconds:.5f}s")
        for r in range(n_restarts):
            print(f"Initialization {r}")
            history = np.asarray(res.history[r])
            for t in range(self.verbose_interval, int(res.n_iter[r]) + 1, self.verbose_interval):
                if self.verbose >= 2:
                    change = history[t - 1] - (history[t - 2] if t > 1 else -np.inf)
                    print(f"  Iteration {t}\t ll change {change:.5f}")
                else:
                    print(f"  Iteration {t}")
            status = Status(int(res.status[r]))
            outcome = "converged" if status == Status.CONVERGED else "did not converge"
            if status.failed:
                outcome = f"failed ({status.name})"
            line = f"Initialization {outcome}."
            if self.verbose >= 2:
                line += f"\t lower bound {history[int(res.n_iter[r]) - 1]:.5f}."
            print(line)

    # -- using the fit -------------------------------------------------------------------

    def predict_proba(self, X) -> np.ndarray:
        """(N, K) responsibilities."""
        X = self._check_X(X)
        return np.asarray(e_step(self._gmm, X, missing=self._scoring)[0])

    def predict(self, X) -> np.ndarray:
        """(N,) the most responsible component of each sample."""
        return self.predict_proba(X).argmax(axis=1)

    def score_samples(self, X) -> np.ndarray:
        """(N,) log p(x_i)."""
        X = self._check_X(X)
        return np.asarray(log_prob(self._gmm, X, missing=self._scoring))

    def score(self, X, y=None) -> float:
        """Mean log-likelihood per sample."""
        return float(np.mean(self.score_samples(X)))

    def bic(self, X) -> float:
        """Bayesian information criterion −2ℓ + p log N of X (lower is better)."""
        X = self._check_X(X)
        return float(bic(self._gmm, X, missing=self._scoring))

    def aic(self, X) -> float:
        """Akaike information criterion −2ℓ + 2p of X (lower is better)."""
        X = self._check_X(X)
        return float(aic(self._gmm, X, missing=self._scoring))

    def _n_parameters(self) -> int:
        """Free parameters of the fitted mixture (scikit-learn's private method, kept for code
        that calls it; `gmmjax.n_parameters` is the public form)."""
        self._check_fitted()
        return n_parameters(self._gmm)

    def sample(self, n_samples=1) -> tuple[np.ndarray, np.ndarray]:
        """(X (n, D), component labels (n,)), sorted by component as scikit-learn returns them."""
        self._check_fitted()
        if not is_int(n_samples) or n_samples < 1:
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples!r} . The sampling requires at "
                "least one sample."
            )
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
        if not hasattr(self, "_gmm"):
            raise NotFittedError(
                "This GaussianMixture instance is not fitted yet. Call 'fit' with appropriate "
                "arguments before using this estimator."
            )

    @property
    def _scoring(self) -> str:
        """How the scoring functions treat NaN: as missing values with missing="em"."""
        return "marginal" if self.missing == "em" else "propagate"

    def _check_X(self, X, fitting: bool = False):
        if not fitting:
            self._check_fitted()
        check_dense(X)  # scikit-learn's TypeError and message
        if fitting:
            # Kept on the host in its own precision: the fit centres it before any cast.
            X, _ = check_data_host(X, missing=self.missing)
            if X.shape[0] < 2:
                raise ValueError(
                    f"Found array with {X.shape[0]} sample(s) (shape={X.shape}) while a "
                    "minimum of 2 is required by GaussianMixture."
                )
            return X
        X = check_data(X, missing=self.missing, nan_message=_NAN_WHEN_SCORING, scoring=True)
        if not fitting and X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but GaussianMixture is expecting "
                f"{self.n_features_in_} features as input."
            )
        if not fitting and X.dtype != self._gmm.means.dtype:
            X = X.astype(self._gmm.means.dtype)
        return X


def _check_int(name: str, value, *, low: int) -> None:
    if not is_int(value) or value < low:
        raise InvalidParameterError(
            f"The '{name}' parameter of GaussianMixture must be an int in the range "
            f"[{low}, inf). Got {value!r} instead."
        )


def _check_real(name: str, value) -> None:
    """A finite real >= 0 (tol, reg_covar)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)
    if not ok or not np.isfinite(value) or value < 0:
        raise InvalidParameterError(
            f"The '{name}' parameter of GaussianMixture must be a float in the range "
            f"[0.0, inf). Got {value!r} instead."
        )


def _check_choice(name: str, value, choices: tuple) -> None:
    if not isinstance(value, str) or value not in choices:
        raise InvalidParameterError(
            f"The '{name}' parameter of GaussianMixture must be a str among "
            f"{set(choices)}. Got {value!r} instead."
        )


def _as_float_array(value, name: str, dtype) -> np.ndarray:
    """A user-given initial parameter as a finite float array of X's dtype."""
    try:
        array = np.array(value, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise ValueError(f"The parameter '{name}' must be a numeric array: {err}") from None
    if not np.all(np.isfinite(array)):
        raise ValueError(f"The parameter '{name}' contains NaN or inf.")
    return array


def _check_shape(array: np.ndarray, shape: tuple, name: str) -> None:
    if array.shape != shape:
        raise ValueError(
            f"The parameter '{name}' should have the shape of {shape}, but got {array.shape}"
        )


def _key_from(random_state):
    """A JAX key from scikit-learn's random_state conventions."""
    if random_state is None:
        seed = np.random.randint(np.iinfo(np.int32).max)
    elif is_int(random_state):
        if not 0 <= random_state < 2**32:
            raise ValueError(f"random_state must be in [0, 2**32), got {random_state!r}.")
        seed = int(random_state)
    elif isinstance(random_state, np.random.RandomState):
        seed = random_state.randint(np.iinfo(np.int32).max)
    else:
        raise ValueError(
            f"random_state must be None, an int or a RandomState, got {random_state!r}"
        )
    if jax.config.jax_default_prng_impl == "threefry2x32":
        # Exactly jax.random.key(seed) for 0 <= seed < 2**32 (key data [seed >> 32, seed]),
        # without the compiled seeding operation a fresh process would pay for.
        return jax.random.wrap_key_data(np.array([0, seed], np.uint32))
    return jax.random.key(seed)


def _covariance_from_precision(prec, cov_type: str):
    """Σ = P⁻¹ by Cholesky solves (full/tied), 1/p (diag/spherical)."""
    if layout(cov_type) in ("full", "tied"):
        eye = jnp.broadcast_to(jnp.eye(prec.shape[-1], dtype=prec.dtype), prec.shape)
        chol = jnp.linalg.cholesky(prec)
        return jax.vmap(lambda c, e: jsl.cho_solve((c, True), e))(
            chol.reshape(-1, *chol.shape[-2:]), eye.reshape(-1, *eye.shape[-2:])
        ).reshape(prec.shape)
    return 1.0 / prec
