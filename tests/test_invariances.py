"""Invariance properties, and scoring against an independent reference, under hypothesis.

Every property runs over generated data and mixtures in float64 and in float32 (float32 tests
pass float32 arrays). Hypothesis varies values, never shapes: N, D and K are fixed per test, so
each example reuses one compiled program, and it runs derandomized (reproducible in CI).

Tolerances: 1e-10 relative in float64, 1e-5 relative in float32 (`RTOL`). For a log-density
"relative" means relative to the magnitude of the terms it is made of,

    T_ik = |log π_k| + ½ (D log 2π + |log det Σ_k| + (x_i − μ_k)ᵀ Σ_k⁻¹ (x_i − μ_k)),

taken over the components that contribute to log p(x_i): a sum is only ever determined to a
relative accuracy of the sum of its terms' magnitudes (log p may be 0 where large terms cancel,
and no relative bound on 0 exists), and this is the accuracy that the exact inputs permit:
explicit differences x − μ_k give it in either dtype, whatever the offsets and variances.

Transformed data are built so that the transformation is exact in the dtype at hand, so that a
failure is the code's and never the inputs' rounding: translations act on data and means
rounded to a grid on which adding the shift is exact (`on_shift_grid`).
"""

import warnings

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import gmmjax as gj

DTYPES = (np.float64, np.float32)
COV_TYPES = ("full", "diag", "spherical", "tied")
RTOL = {np.float64: 1e-10, np.float32: 1e-5}
MANTISSA_BITS = {np.float64: 53, np.float32: 24}
LOG_2PI = np.log(2 * np.pi)

# Fixed shapes: scoring on N_SCORE rows of a K_SCORE-component mixture; fits, selection and
# standard errors on N_FIT rows (N_MORE for repeated rows / rows with zero weight), K_FIT.
D = 2
K_SCORE, N_SCORE = 3, 18
K_FIT, N_FIT, N_MORE = 2, 24, 36
FIT_STEPS = 5


def examples(n, *, shrink=True):
    """Hypothesis settings: n examples, derandomized. shrink=False for the tests whose examples
    cost whole selections or Hessians: a failure then reports the first failing example
    instead of minutes of shrinking (their examples are seeds and exponents anyway)."""
    phases = tuple(Phase) if shrink else (Phase.explicit, Phase.reuse, Phase.generate)
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        phases=phases,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


seeds = st.integers(0, 2**32 - 1)


def exponents(low, high):
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


# -- generated mixtures and data ------------------------------------------------------------


def covariances(rng, cov_type, k, d, scales):
    """Covariances of `cov_type`, component k's eigenvalues in scales[k]·[1, 4] (tied:
    scales[0]): any overall size, condition number at most 4, so that the reference's own
    rounding (relative cond·ε) stays far below the tolerances."""

    def matrix(scale):
        q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        c = (q * (scale * rng.uniform(1.0, 4.0, d))) @ q.T
        return 0.5 * (c + c.T)

    scales = np.asarray(scales, np.float64)
    if cov_type == "full":
        return np.stack([matrix(s) for s in scales])
    if cov_type == "tied":
        return matrix(scales[0])
    if cov_type == "diag":
        return scales[:, None] * rng.uniform(1.0, 4.0, (k, d))
    return scales * rng.uniform(1.0, 4.0, k)


def full_matrices(cov, cov_type, k, d):
    cov = np.asarray(cov, np.float64)
    if cov_type == "full":
        return cov
    if cov_type == "tied":
        return np.broadcast_to(cov, (k, d, d))
    if cov_type == "diag":
        return np.stack([np.diag(v) for v in cov])
    return cov[:, None, None] * np.eye(d)


def draw_rows(rng, means, cov, cov_type, counts):
    """counts[k] rows drawn from component k (float64)."""
    k, d = means.shape
    full = full_matrices(cov, cov_type, k, d)
    rows = [
        means[j] + rng.normal(size=(n, d)) @ np.linalg.cholesky(full[j]).T
        for j, n in enumerate(counts)
    ]
    return np.concatenate(rows)


class Mixture:
    """A mixture's parameters in `dtype` (the values the code is given) and its GMM."""

    def __init__(self, weights, means, cov, cov_type, dtype):
        weights = np.asarray(weights, np.float64)
        self.weights = np.asarray(weights / weights.sum(), dtype)
        self.means = np.asarray(means, dtype)
        self.cov = np.asarray(cov, dtype)
        self.cov_type, self.dtype = cov_type, dtype

    @property
    def gmm(self):
        return gj.GMM(self.weights, self.means, self.cov, cov_type=self.cov_type)

    def replace(self, means=None, cov=None):
        return Mixture(
            self.weights,
            self.means if means is None else means,
            self.cov if cov is None else cov,
            self.cov_type,
            self.dtype,
        )

    @property
    def precisions(self):
        """The precisions (scikit-learn's `precisions_init`), inverted in float64."""
        k, d = self.means.shape
        if self.cov_type in ("diag", "spherical"):
            return np.asarray(1.0 / self.cov.astype(np.float64), self.dtype)
        inv = np.linalg.inv(self.cov.astype(np.float64))
        return np.asarray(0.5 * (inv + np.swapaxes(inv, -1, -2)), self.dtype)


def moderate_mixture(rng, cov_type, dtype, spread, k, separation=2.0):
    """Weights away from 0, means a few spreads apart, variances within 10x of spread²."""
    weights = rng.dirichlet(np.full(k, 4.0))
    means = spread * separation * rng.normal(size=(k, D))
    cov = covariances(rng, cov_type, k, D, spread**2 * 10.0 ** rng.uniform(-0.5, 0.5, k))
    return Mixture(weights, means, cov, cov_type, dtype)


def sample(rng, mixture, n, *, background=0, spread=1.0):
    """n rows: `background` from N(0, spread² I), the rest spread over the components."""
    k = mixture.means.shape[0]
    counts = np.full(k, (n - background) // k)
    counts[: (n - background) - counts.sum()] += 1
    rows = draw_rows(
        rng, mixture.means.astype(np.float64), mixture.cov.astype(np.float64),
        mixture.cov_type, counts,
    )  # fmt: skip
    if background:
        rows = np.concatenate([spread * rng.normal(size=(background, D)), rows])
    return np.asarray(rows[rng.permutation(n)], mixture.dtype)


def separated_mixture(rng, cov_type, dtype, spread):
    """K_FIT components 12 spreads apart: EM converges to the same point from any sensible
    start within a few steps (the responsibilities of the far cluster are e^-70 or less)."""
    direction = rng.normal(size=D)
    direction /= np.linalg.norm(direction)
    means = spread * (6.0 * np.outer([-1.0, 1.0], direction) + 0.5 * rng.normal(size=(2, D)))
    cov = covariances(rng, cov_type, 2, D, spread**2 * 10.0 ** rng.uniform(-0.3, 0.0, 2))
    return Mixture(rng.dirichlet([8.0, 8.0]), means, cov, cov_type, dtype)


def on_shift_grid(shift, *arrays, dtype):
    """(shift, arrays) rounded to one grid g = 2^e on which every sum a + shift is exact in
    `dtype`: all of them are integer multiples of g below 2^p·g in magnitude (p the mantissa
    bits). Rounding the inputs (not the result) makes the translation exact, so that the
    shifted and unshifted problems are the same problem. Where the shift is large against the
    data's spread (1e12 in float64, 1e4 and more in float32) the grid is coarse: the data are
    what `dtype` can hold at that offset."""
    shift = np.asarray(shift, np.float64)
    largest = max(float(np.max(np.abs(a))) for a in arrays) + float(np.max(np.abs(shift)))
    grid = 2.0 ** (np.ceil(np.log2(largest)) + 1 - MANTISSA_BITS[dtype])
    out = [np.asarray(np.round(a.astype(np.float64) / grid) * grid, dtype) for a in arrays]
    shift = np.asarray(np.round(shift / grid) * grid, dtype)
    for a in out:  # exact by construction; checked, as everything below relies on it
        assert np.array_equal((a + shift).astype(np.float64), a.astype(np.float64) + shift)
    return shift, out


def shift_vector(rng, log_size, spread):
    """A shift of size 10^log_size · spread in a random direction."""
    direction = rng.normal(size=D)
    return spread * 10.0**log_size * direction / np.linalg.norm(direction)


# -- the float64 reference ---------------------------------------------------------------


def reference(mixture, X):
    """scipy in float64 on exactly the values the code was given (inputs in `dtype`, cast to
    float64 exactly): component log-probabilities (N, K) and their term magnitudes T (N, K)."""
    X = np.asarray(X, np.float64)
    k = mixture.means.shape[0]
    full = full_matrices(mixture.cov, mixture.cov_type, k, D)
    weights = mixture.weights.astype(np.float64)
    means = mixture.means.astype(np.float64)
    comp, size = np.empty((len(X), k)), np.empty((len(X), k))
    for j in range(k):
        log_pdf = multivariate_normal(mean=means[j], cov=full[j]).logpdf(X)
        log_det = np.linalg.slogdet(full[j])[1]
        quad = np.abs(-2.0 * log_pdf - D * LOG_2PI - log_det)
        comp[:, j] = np.log(weights[j]) + log_pdf
        size[:, j] = np.abs(np.log(weights[j])) + 0.5 * (D * LOG_2PI + abs(log_det) + quad)
    return comp, size


def row_reference(comp, size):
    """log p (N,) and its term magnitude (N,): the largest T of the components that
    contribute (within e^-40 of the total, below float64's resolution of the sum)."""
    log_p = logsumexp(comp, axis=1)
    contributes = comp >= log_p[:, None] - 40.0
    return log_p, np.max(np.where(contributes, size, 0.0), axis=1)


def check(actual, expected, bound, what):
    """|actual − expected| ≤ bound elementwise (NaN fails), with the worst entry named."""
    actual = np.asarray(actual, np.float64)
    expected = np.broadcast_to(np.asarray(expected, np.float64), actual.shape)
    bound = np.broadcast_to(np.asarray(bound, np.float64), actual.shape)
    err = np.abs(actual - expected)
    bad = ~(err <= bound)
    if np.any(bad):
        ratio = np.where(np.isnan(err), np.inf, err / np.maximum(bound, 1e-300))
        i = np.unravel_index(np.argmax(ratio), actual.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} entries off; worst at {tuple(map(int, i))}: "
            f"got {actual[i]!r}, expected {expected[i]!r}, |error| {err[i]:.3g} > bound "
            f"{bound[i]:.3g}"
        )


def responsibility_bound(resp, comp_size, row_size, rtol):
    """γ_ik = exp(c_ik − log p_i) inherits the errors of c_ik and log p_i as a relative error;
    plus rtol absolute (γ lies in [0, 1])."""
    return rtol * ((comp_size + row_size[:, None]) * resp + 1.0)


def all_scores(gmm, X, w):
    """Every public score of `gmm` on X (w: sample weights for the log-likelihood)."""
    resp, mean_ll = gj.e_step(gmm, X)
    return {
        "component_log_prob": np.asarray(gj.component_log_prob(gmm, X)),
        "log_prob": np.asarray(gj.log_prob(gmm, X)),
        "log_likelihood": float(gj.log_likelihood(gmm, X)),
        "weighted_log_likelihood": float(gj.log_likelihood(gmm, X, w)),
        "e_step": np.asarray(resp),
        "e_step_mean": float(mean_ll),
        "bic": float(gj.bic(gmm, X)),
        "aic": float(gj.aic(gmm, X)),
    }


def estimator_at(mixture, X):
    """The scikit-learn estimator holding exactly `mixture` (all three inits, max_iter=0)."""
    k = mixture.means.shape[0]
    return gj.GaussianMixture(
        k,
        covariance_type=mixture.cov_type,
        weights_init=mixture.weights,
        means_init=mixture.means,
        precisions_init=mixture.precisions,
        max_iter=0,
    ).fit(X)


def estimator_scores(est, X):
    return {
        "score_samples": np.asarray(est.score_samples(X)),
        "score": est.score(X),
        "predict_proba": np.asarray(est.predict_proba(X)),
        "bic": est.bic(X),
        "aic": est.aic(X),
    }


def check_scores(actual, expected, comp_size, row_size, rtol, shift=None, where=""):
    """All of `all_scores` against `expected` (same keys), each within rtol of its terms;
    `shift`: a constant that the log-densities of `actual` are offset by (D log a)."""
    s = 0.0 if shift is None else shift
    n = len(row_size)
    total = float(np.sum(row_size))
    check(actual["component_log_prob"], expected["component_log_prob"] + s,
          rtol * (comp_size + abs(s)), f"component_log_prob{where}")  # fmt: skip
    check(actual["log_prob"], expected["log_prob"] + s, rtol * (row_size + abs(s)),
          f"log_prob{where}")  # fmt: skip
    check(actual["log_likelihood"], expected["log_likelihood"] + n * s,
          rtol * (total + n * abs(s)), f"log_likelihood{where}")  # fmt: skip
    check(actual["e_step"], expected["e_step"],
          responsibility_bound(expected["e_step"], comp_size, row_size, rtol),
          f"e_step responsibilities{where}")  # fmt: skip
    check(actual["e_step_mean"], expected["e_step_mean"] + s,
          rtol * (total / n + abs(s)), f"e_step mean log-likelihood{where}")  # fmt: skip
    for name in ("bic", "aic"):
        check(actual[name], expected[name] - 2 * n * s, 2 * rtol * (total + n * abs(s)) + 1e-300,
              f"{name}{where}")  # fmt: skip


# -- class 1: scoring equals scipy, far and tight components included -----------------------


@st.composite
def far_tight_problems(draw, dtype, cov_type):
    """Component means anywhere in ±1e12 and variances 1e-12 … 1e12, both relative to the
    data's spread (itself 1e-6 … 1e6 in float64, 1e-3 … 1e3 in float32, where every such
    squared Mahalanobis distance, up to ~1e36, stays below float32's 3.4e38); rows from the
    spread and from every component (so some sit right at far, tight components)."""
    rng = np.random.default_rng(draw(seeds))
    spread = 10.0 ** draw(exponents(-6, 6) if dtype == np.float64 else exponents(-3, 3))
    log_offsets = draw(st.lists(exponents(-1, 12), min_size=K_SCORE, max_size=K_SCORE))
    log_variances = draw(st.lists(exponents(-12, 12), min_size=K_SCORE, max_size=K_SCORE))
    means = np.stack([shift_vector(rng, e, spread) for e in log_offsets])
    cov = covariances(rng, cov_type, K_SCORE, D, spread**2 * 10.0 ** np.asarray(log_variances))
    mixture = Mixture(rng.dirichlet(np.full(K_SCORE, 2.0)), means, cov, cov_type, dtype)
    X = sample(rng, mixture, N_SCORE, background=6, spread=spread)
    return mixture, X


@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("dtype", DTYPES)
@examples(8)
@given(data=st.data())
def test_scores_equal_scipy_for_far_tight_components(dtype, cov_type, data):
    """Every public score, the estimator's included, equals scipy's log-sum-exp of
    `multivariate_normal.logpdf` in float64 at the same parameters.

    float32: the reference is computed in float64 on the float32-rounded inputs (the values
    the code is actually given), so it is the exact answer to the float32 problem and the
    test measures only the code's arithmetic; the domain is that of float64 with the data's
    spread limited to 1e-3 … 1e3, where all the quantities involved are float32 numbers."""
    mixture, X = data.draw(far_tight_problems(dtype, cov_type))
    rtol = RTOL[dtype]
    comp, comp_size = reference(mixture, X)
    log_p, row_size = row_reference(comp, comp_size)
    n, total = N_SCORE, float(np.sum(row_size))
    p = gj.n_parameters(mixture.gmm)
    w = np.linspace(0.5, 2.0, N_SCORE).astype(dtype)
    expected = {
        "component_log_prob": comp,
        "log_prob": log_p,
        "log_likelihood": np.sum(log_p),
        "weighted_log_likelihood": np.sum(w.astype(np.float64) * log_p),
        "e_step": np.exp(comp - log_p[:, None]),
        "e_step_mean": np.mean(log_p),
        "bic": -2 * np.sum(log_p) + p * np.log(n),
        "aic": -2 * np.sum(log_p) + 2 * p,
    }
    actual = all_scores(mixture.gmm, X, w)
    check_scores(actual, expected, comp_size, row_size, rtol)
    check(actual["weighted_log_likelihood"], expected["weighted_log_likelihood"],
          rtol * float(np.sum(w * row_size)), "weighted log_likelihood")  # fmt: skip

    est = estimator_at(mixture, X)
    # The estimator stores the covariances it derived from the precisions: score those.
    held = Mixture(est.weights_, est.means_, est.covariances_, cov_type, dtype)
    comp, comp_size = reference(held, X)
    log_p, row_size = row_reference(comp, comp_size)
    total = float(np.sum(row_size))
    got = estimator_scores(est, X)
    check(got["score_samples"], log_p, rtol * row_size, "GaussianMixture.score_samples")
    check(got["score"], np.mean(log_p), rtol * total / n, "GaussianMixture.score")
    resp = np.exp(comp - log_p[:, None])
    check(got["predict_proba"], resp, responsibility_bound(resp, comp_size, row_size, rtol),
          "GaussianMixture.predict_proba")  # fmt: skip
    check(got["bic"], -2 * np.sum(log_p) + p * np.log(n), 2 * rtol * total, "GaussianMixture.bic")


# -- translation ----------------------------------------------------------------------------


@st.composite
def shifted_problems(draw, dtype, cov_type, k, n, *, max_log_shift, separated=False):
    """(mixture, X, shift, spread): a mixture near data of spread 1e-6 … 1e6, and a shift of
    10^-2 … 10^max_log_shift spreads, all on the grid where the shift is exact."""
    rng = np.random.default_rng(draw(seeds))
    spread = 10.0 ** draw(exponents(-6, 6))
    shift = shift_vector(rng, draw(exponents(-2, max_log_shift)), spread)
    if separated:
        mixture = separated_mixture(rng, cov_type, dtype, spread)
    else:
        mixture = moderate_mixture(rng, cov_type, dtype, spread, k)
    X = sample(rng, mixture, n)
    shift, (X, means) = on_shift_grid(shift, X, mixture.means, dtype=dtype)
    return mixture.replace(means=means), X, shift, spread


@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("dtype", DTYPES)
@examples(7)
@given(data=st.data())
def test_translation_leaves_scores_unchanged(dtype, cov_type, data):
    """Shifting X and the means by the same vector (up to 1e12 spreads) changes no score:
    kernels, E-step, criteria and the estimator's scores."""
    mixture, X, shift, _ = data.draw(
        shifted_problems(dtype, cov_type, K_SCORE, N_SCORE, max_log_shift=12)
    )
    rtol = RTOL[dtype]
    comp, comp_size = reference(mixture, X)
    _, row_size = row_reference(comp, comp_size)
    moved = mixture.replace(means=mixture.means + shift)
    w = np.linspace(0.5, 2.0, N_SCORE).astype(dtype)
    expected = all_scores(mixture.gmm, X, w)
    actual = all_scores(moved.gmm, X + shift, w)
    check_scores(actual, expected, comp_size, row_size, rtol, where=" after the shift")
    est, moved_est = estimator_at(mixture, X), estimator_at(moved, X + shift)
    a, b = estimator_scores(moved_est, X + shift), estimator_scores(est, X)
    total = float(np.sum(row_size))
    check(a["score_samples"], b["score_samples"], rtol * row_size, "score_samples")
    check(a["score"], b["score"], rtol * total / N_SCORE, "score")
    check(
        a["predict_proba"],
        b["predict_proba"],
        responsibility_bound(b["predict_proba"], comp_size, row_size, rtol),
        "predict_proba",
    )
    check(a["bic"], b["bic"], 2 * rtol * total, "GaussianMixture.bic")


# -- scaling --------------------------------------------------------------------------------


@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("dtype", DTYPES)
@examples(6)
@given(seed=seeds, log_scale=exponents(-6, 6))
def test_scaling_shifts_log_densities_by_d_log_a(dtype, cov_type, seed, log_scale):
    """X → aX, μ → aμ, Σ → a²Σ (a = 10^-6 … 10^6): log-densities shift by −D log a, the
    responsibilities do not change, the criteria shift by +2ND log a."""
    rng = np.random.default_rng(seed)
    mixture = moderate_mixture(rng, cov_type, dtype, 1.0, K_SCORE)
    X = sample(rng, mixture, N_SCORE)
    a = 10.0**log_scale
    rtol = RTOL[dtype]
    comp, comp_size = reference(mixture, X)
    _, row_size = row_reference(comp, comp_size)
    scaled = mixture.replace(means=mixture.means * a, cov=mixture.cov * a**2)
    Xa = np.asarray(X * a, dtype)
    w = np.linspace(0.5, 2.0, N_SCORE).astype(dtype)
    expected = all_scores(mixture.gmm, X, w)
    actual = all_scores(scaled.gmm, Xa, w)
    # The scaled inputs are rounded (relative ε each), which moves each term by ε·T at most.
    check_scores(actual, expected, comp_size, row_size, rtol, shift=-D * np.log(a),
                 where=f" at scale {a:.3g}")  # fmt: skip
    est = estimator_at(scaled, Xa)
    b = estimator_scores(estimator_at(mixture, X), X)
    check(est.score_samples(Xa), b["score_samples"] - D * np.log(a),
          rtol * (row_size + D * abs(np.log(a))), "GaussianMixture.score_samples")  # fmt: skip


# -- rows: permutation, weights --------------------------------------------------------------


@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("dtype", DTYPES)
@examples(6)
@given(data=st.data(), log_c=exponents(-300, 300))
def test_row_order_and_weight_scale_leave_scores_unchanged(dtype, cov_type, data, log_c):
    """Permuted rows give the permuted scores; Σ c·w_i log p_i = c · Σ w_i log p_i for any
    c > 0 whose weighted sum float32 / float64 can hold; zero-weight rows, whatever finite
    values they hold, add nothing to the weighted log-likelihood."""
    mixture, X = data.draw(far_tight_problems(dtype, cov_type))
    perm = data.draw(st.permutations(range(N_SCORE)))
    rtol = RTOL[dtype]
    comp, comp_size = reference(mixture, X)
    log_p, row_size = row_reference(comp, comp_size)
    w = np.linspace(0.5, 2.0, N_SCORE).astype(dtype)
    expected = all_scores(mixture.gmm, X, w)
    actual = all_scores(mixture.gmm, X[perm], w[perm])
    permuted = {k: (v[perm] if np.ndim(v) else v) for k, v in expected.items()}
    check_scores(actual, permuted, comp_size[perm], row_size[perm], rtol, where=" (rows permuted)")
    check(
        actual["weighted_log_likelihood"],
        expected["weighted_log_likelihood"],
        rtol * float(np.sum(w * row_size)),
        "weighted log_likelihood (rows permuted)",
    )

    # Rescaled weights: c within what the dtype holds, for the weights and for the sum.
    big = float(np.finfo(dtype).max) / (4.0 * N_SCORE * float(np.max(row_size)))
    small = float(np.finfo(dtype).tiny) * 4.0
    c = float(np.clip(10.0**log_c, small, big))
    wc = np.asarray(w.astype(np.float64) * c, dtype)
    got = float(gj.log_likelihood(mixture.gmm, X, wc))
    want = np.sum(wc.astype(np.float64) * log_p)
    check(got, want, rtol * float(np.sum(wc.astype(np.float64) * row_size)),
          f"log_likelihood with weights x{c:.3g}")  # fmt: skip

    # Zero-weight rows holding anything finite.
    garbage = np.asarray(data.draw(st.sampled_from([1e3, 1e30, 1e200])), np.float64)
    garbage = np.asarray(min(garbage, float(np.finfo(dtype).max) / 4), dtype)
    X0 = np.concatenate([X, np.full((6, D), garbage, dtype)])
    w0 = np.concatenate([w, np.zeros(6, dtype)])
    got = float(gj.log_likelihood(mixture.gmm, X0, w0))
    check(got, np.sum(w.astype(np.float64) * log_p), rtol * float(np.sum(w * row_size)),
          f"log_likelihood with zero-weight rows at {float(garbage):.3g}")  # fmt: skip


# -- fits ---------------------------------------------------------------------------------


def run_fit(X, start, *, sample_weight=None, reg_covar=None, chunk_size=None, steps=FIT_STEPS):
    """`FIT_STEPS` EM steps from `start` (tol=0: exactly that many)."""
    res = gj.fit(
        X, start.n_components, key=jax.random.key(0), cov_type=start.cov_type,
        init_params=start, max_iter=steps, tol=0.0, reg_covar=reg_covar,
        sample_weight=sample_weight, chunk_size=chunk_size,
    )  # fmt: skip
    assert int(res.n_iter[0]) == steps, res.status
    return res


def check_same_fit(a, b, rtol, spread, what, *, mean_offset=None, scale=1.0, order=None):
    """Fitted GMMs a and b: weights within rtol; means within rtol·spread (plus the rounding of
    b's means where they carry an offset: a float holds a mean of size |m| only to ε|m|);
    covariances within rtol of each component's largest entry. b is compared after mapping
    a → (means − mean_offset) / scale, covariances / scale²; `order`: b's components in a's
    order."""
    a_means = np.asarray(a.means, np.float64)
    b_w, b_means, b_cov = (np.asarray(x, np.float64) for x in (b.weights, b.means, b.covariances))
    a_w, a_cov = np.asarray(a.weights, np.float64), np.asarray(a.covariances, np.float64)
    if order is not None:
        b_w, b_means = b_w[order], b_means[order]
        b_cov = b_cov if b.cov_type == "tied" else b_cov[order]
    eps = float(np.finfo(np.asarray(a.means).dtype).eps)
    rounding = 4 * eps * (np.abs(a_means) + np.abs(b_means))
    if mean_offset is not None:
        a_means = a_means - np.asarray(mean_offset, np.float64)
    check(a_w, b_w, rtol, f"{what}: weights")
    check(a_means / scale, b_means, rtol * spread + rounding / scale, f"{what}: means")
    cov_size = np.max(np.abs(b_cov).reshape(b_cov.shape[0], -1), axis=-1) if b_cov.ndim > 1 else 0
    if b.cov_type == "tied":
        size = np.max(np.abs(b_cov))
    elif b.cov_type == "spherical":
        size = np.abs(b_cov)
    else:
        size = cov_size.reshape((-1,) + (1,) * (b_cov.ndim - 1))
    check(a_cov / scale**2, b_cov, rtol * size, f"{what}: covariances")


def garbage_rows(rng, n, log_size):
    """n rows of values ±10^(log_size · [0.5, 1]): what rows of weight 0 may hold."""
    return rng.choice([-1.0, 1.0], (n, D)) * 10.0 ** (log_size * rng.uniform(0.5, 1.0, (n, D)))


def with_zero_weight_rows(rng, X, log_garbage, dtype):
    """(X_all, w_all): X's N_FIT rows (weight 1) among N_MORE − N_FIT rows of weight 0 holding
    `garbage_rows` up to 10^log_garbage (at most 1e37 in float32), in a random order."""
    if dtype == np.float32:
        log_garbage = min(log_garbage, 37.0)
    where = rng.permutation(N_MORE)
    X_all = np.empty((N_MORE, D), dtype)
    X_all[where[:N_FIT]] = X
    X_all[where[N_FIT:]] = np.asarray(garbage_rows(rng, N_MORE - N_FIT, log_garbage), dtype)
    w_all = np.zeros(N_MORE, dtype)
    w_all[where[:N_FIT]] = 1.0
    return X_all, w_all


def fit_problem(rng, cov_type, dtype, spread):
    mixture = moderate_mixture(rng, cov_type, dtype, spread, K_FIT, separation=3.0)
    return mixture, sample(rng, mixture, N_FIT)


@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("dtype", DTYPES)
@examples(5)
@given(data=st.data())
def test_translated_fit_ends_at_translated_parameters(dtype, cov_type, data):
    """A fit of X + t from the start shifted by t ends at the fit of X shifted by t (t up to
    1e12 spreads in float64; 1e4 in float32, beyond which float32 data no longer hold their
    spread), for gj.fit and the estimator; reg_covar scaled with the spread."""
    mixture, X, shift, spread = data.draw(
        shifted_problems(
            dtype, cov_type, K_FIT, N_FIT, max_log_shift=12 if dtype == np.float64 else 4,
            separated=True,
        )
    )  # fmt: skip
    rtol = RTOL[dtype]
    reg = 1e-6 * spread**2
    moved = mixture.replace(means=mixture.means + shift)
    base = run_fit(X, mixture.gmm, reg_covar=reg).best
    other = run_fit(X + shift, moved.gmm, reg_covar=reg).best
    check_same_fit(other, base, rtol, spread, "gj.fit after the shift", mean_offset=shift)

    def estimator(m, data):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return gj.GaussianMixture(
                K_FIT, covariance_type=cov_type, weights_init=m.weights, means_init=m.means,
                precisions_init=m.precisions, max_iter=FIT_STEPS, tol=0.0, reg_covar=reg,
            ).fit(data)  # fmt: skip

    a, b = estimator(moved, X + shift), estimator(mixture, X)
    as_gmm = lambda e: gj.GMM(e.weights_, e.means_, e.covariances_, cov_type)  # noqa: E731
    check_same_fit(as_gmm(a), as_gmm(b), rtol, spread, "GaussianMixture after the shift",
                   mean_offset=shift)  # fmt: skip


@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("dtype", DTYPES)
@examples(5)
@given(seed=seeds, log_scale=exponents(-6, 6))
def test_scaled_fit_ends_at_scaled_parameters(dtype, cov_type, seed, log_scale):
    """A fit of aX from (aμ, a²Σ) with reg_covar·a² ends at (aμ̂, a²Σ̂), same weights."""
    rng = np.random.default_rng(seed)
    mixture, X = fit_problem(rng, cov_type, dtype, 1.0)
    a = 10.0**log_scale
    scaled = mixture.replace(means=mixture.means * a, cov=mixture.cov * a**2)
    base = run_fit(X, mixture.gmm, reg_covar=1e-6).best
    other = run_fit(np.asarray(X * a, dtype), scaled.gmm, reg_covar=1e-6 * a**2).best
    check_same_fit(other, base, RTOL[dtype], 1.0, f"fit at scale {a:.3g}", scale=a)


@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("dtype", DTYPES)
@examples(5)
@given(seed=seeds, log_c=exponents(-300, 300))
def test_weight_scale_does_not_change_the_fit(dtype, cov_type, seed, log_c):
    """sample_weight·c gives the same fit for any c > 0 with c·w representable: 1e-300 …
    1e300 in float64 (to 1e-12), float32's normal range in float32; gj.fit and the
    estimator."""
    rng = np.random.default_rng(seed)
    mixture, X = fit_problem(rng, cov_type, dtype, 1.0)
    w = rng.uniform(0.5, 2.0, N_FIT)
    if dtype == np.float32:  # c·w within float32's normal numbers (1.2e-38 … 3.4e38)
        log_c = float(np.clip(log_c, -37.5, 37.5))
    wc = np.asarray(w * 10.0**log_c, dtype)
    w = np.asarray(w, dtype)
    rtol = 1e-12 if dtype == np.float64 else RTOL[dtype]
    base = run_fit(X, mixture.gmm, sample_weight=w)
    other = run_fit(X, mixture.gmm, sample_weight=wc)
    what = f"fit with weights x1e{log_c:.4g}"
    check_same_fit(other.best, base.best, rtol, 1.0, what)
    check(other.log_likelihood, base.log_likelihood, rtol * (1 + np.abs(base.log_likelihood)),
          f"{what}: mean log-likelihood")  # fmt: skip


@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("dtype", DTYPES)
@examples(5)
@given(seed=seeds, perm=st.permutations(range(N_FIT)))
def test_row_order_does_not_change_the_fit(dtype, cov_type, seed, perm):
    """Permuted rows (and their weights) give the same fit from the same start."""
    rng = np.random.default_rng(seed)
    mixture, X = fit_problem(rng, cov_type, dtype, 1.0)
    w = np.asarray(rng.uniform(0.5, 2.0, N_FIT), dtype)
    perm = np.asarray(perm)
    base = run_fit(X, mixture.gmm, sample_weight=w).best
    other = run_fit(X[perm], mixture.gmm, sample_weight=w[perm]).best
    check_same_fit(other, base, RTOL[dtype], 1.0, "fit of permuted rows")


@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("dtype", DTYPES)
@examples(5)
@given(seed=seeds)
def test_integer_weights_equal_repeated_rows(dtype, cov_type, seed):
    """Integer weights (1 … 4, N_MORE in all over N_FIT rows) fit as the repeated rows do."""
    rng = np.random.default_rng(seed)
    mixture, X = fit_problem(rng, cov_type, dtype, 1.0)
    counts = 1 + rng.multinomial(N_MORE - N_FIT, np.full(N_FIT, 1.0 / N_FIT))
    base = run_fit(np.repeat(X, counts, axis=0), mixture.gmm).best
    other = run_fit(X, mixture.gmm, sample_weight=counts.astype(dtype)).best
    check_same_fit(other, base, RTOL[dtype], 1.0, f"fit with integer weights {counts.tolist()}")


@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("dtype", DTYPES)
@examples(5)
@given(seed=seeds, log_garbage=exponents(0, 200))
def test_zero_weight_rows_are_dropped_whatever_they_hold(dtype, cov_type, seed, log_garbage):
    """N_MORE − N_FIT rows of weight 0 holding finite values up to 1e200 (float64; up to 1e37
    in float32, its range) change nothing: the fit equals that of the other rows alone."""
    rng = np.random.default_rng(seed)
    mixture, X = fit_problem(rng, cov_type, dtype, 1.0)
    X_all, w_all = with_zero_weight_rows(rng, X, log_garbage, dtype)
    base = run_fit(X, mixture.gmm).best
    other = run_fit(X_all, mixture.gmm, sample_weight=w_all).best
    check_same_fit(other, base, RTOL[dtype], 1.0,
                   f"fit with zero-weight rows up to 1e{log_garbage:.4g}")  # fmt: skip


@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("dtype", DTYPES)
@examples(5)
@given(seed=seeds)
def test_chunk_size_does_not_change_the_fit(dtype, cov_type, seed):
    """chunk_size=7 (four chunks, the last one padded) fits as the default one chunk does."""
    rng = np.random.default_rng(seed)
    mixture, X = fit_problem(rng, cov_type, dtype, 1.0)
    w = np.asarray(rng.uniform(0.5, 2.0, N_FIT), dtype)
    base = run_fit(X, mixture.gmm, sample_weight=w)
    other = run_fit(X, mixture.gmm, sample_weight=w, chunk_size=7)
    check_same_fit(other.best, base.best, RTOL[dtype], 1.0, "fit with chunk_size=7")
    rtol = RTOL[dtype]
    check(other.history, base.history, rtol * (1 + np.abs(base.history)), "history, chunk_size=7")


# -- select -----------------------------------------------------------------------------------

SELECT_TYPES = ("full", "spherical")


def run_select(X, *, key=0, sample_weight=None, reg_covar=None, chunk_size=None):
    return gj.select(
        X, n_components=[1, 2], cov_types=SELECT_TYPES, n_restarts=2, key=jax.random.key(key),
        max_iter=20, tol=0.0, reg_covar=reg_covar, sample_weight=sample_weight,
        chunk_size=chunk_size,
    )  # fmt: skip


def check_same_selection(a, b, rtol, spread, what, *, mean_offset=None, scale=1.0,
                         ll_shift=0.0, compare_bic=True):  # fmt: skip
    """Selections a (transformed) and b: the same cell chosen, per-cell mean log-likelihoods
    (a's shifted by ll_shift) and criteria within rtol, the chosen models the same (components
    matched by their means, as the restarts' starts depend on the row order)."""
    for ra, rb in zip(a.rows, b.rows, strict=True):
        cell = f"{what}, cell K={rb['n_components']} {rb['cov_type']}"
        ll = rb["log_likelihood"]
        check(ra["log_likelihood"] - ll_shift, ll, rtol * (1 + abs(ll) + abs(ll_shift)),
              f"{cell}: mean log-likelihood")  # fmt: skip
        if compare_bic:
            n_shift = -2 * N_FIT * ll_shift
            check(ra["bic"] - n_shift, rb["bic"], rtol * (abs(rb["bic"]) + abs(n_shift) + 10),
                  f"{cell}: bic")  # fmt: skip
    assert (a.n_components, a.cov_type) == (b.n_components, b.cov_type), what
    a_means = np.asarray(a.best.means, np.float64)
    a_means = (a_means - (0.0 if mean_offset is None else mean_offset)) / scale
    b_means = np.asarray(b.best.means, np.float64)
    axis = b_means[-1] - b_means[0]  # K = 1: any axis will do
    a_best = reorder(a.best, np.argsort(a_means @ axis))
    b_best = reorder(b.best, np.argsort(b_means @ axis))
    check_same_fit(a_best, b_best, rtol, spread, f"{what}: the selected model",
                   mean_offset=mean_offset, scale=scale)  # fmt: skip


def reorder(gmm, order):
    cov = gmm.covariances if gmm.cov_type == "tied" else np.asarray(gmm.covariances)[order]
    return gj.GMM(np.asarray(gmm.weights)[order], np.asarray(gmm.means)[order], cov,
                  cov_type=gmm.cov_type)  # fmt: skip


@st.composite
def selection_problems(draw, dtype, *, max_log_shift=None):
    """Two clusters 12 spreads apart (spread 1e-6 … 1e6), N_FIT rows; with max_log_shift, a
    shift of up to that many powers of ten of the spread, data on its grid."""
    rng = np.random.default_rng(draw(seeds))
    spread = 10.0 ** draw(exponents(-6, 6))
    mixture = separated_mixture(rng, "full", dtype, spread)
    X = sample(rng, mixture, N_FIT)
    if max_log_shift is None:
        return X, spread, rng
    shift = shift_vector(rng, draw(exponents(-2, max_log_shift)), spread)
    shift, (X,) = on_shift_grid(shift, X, dtype=dtype)
    return X, spread, shift


@pytest.mark.parametrize("dtype", DTYPES)
@examples(4, shrink=False)
@given(data=st.data())
def test_select_is_translation_invariant(dtype, data):
    """select on X + t (t up to 1e12 spreads in float64, 1e4 in float32) picks the same cell,
    with the same criteria and the shifted model."""
    X, spread, shift = data.draw(
        selection_problems(dtype, max_log_shift=12 if dtype == np.float64 else 4)
    )
    reg = 1e-6 * spread**2
    base, other = run_select(X, reg_covar=reg), run_select(X + shift, reg_covar=reg)
    check_same_selection(other, base, RTOL[dtype], spread, "select after the shift",
                         mean_offset=shift)  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES)
@examples(4, shrink=False)
@given(data=st.data(), log_scale=exponents(-6, 6))
def test_select_is_scale_equivariant(dtype, data, log_scale):
    """select on aX with reg_covar·a²: the same cell, mean log-likelihoods shifted by
    −D log a, the scaled model."""
    X, spread, _ = data.draw(selection_problems(dtype))
    a = 10.0**log_scale
    base = run_select(X, reg_covar=1e-6 * spread**2)
    other = run_select(np.asarray(X * a, dtype), reg_covar=1e-6 * (a * spread) ** 2)
    check_same_selection(other, base, RTOL[dtype], spread, f"select at scale {a:.3g}",
                         scale=a, ll_shift=-D * np.log(a))  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES)
@examples(4, shrink=False)
@given(data=st.data(), log_c=exponents(-300, 300))
def test_select_counts_rescaled_weights_as_frequencies(dtype, data, log_c):
    """select with sample_weight·c fits every cell to the same model and mean log-likelihood;
    its criteria count the weights as frequencies, so ℓ and N = Σw scale by c and
    BIC = c·(−2ℓ) + p log(c N). A cell with more free parameters than c N is unavailable, and
    with none left select raises a ValueError that names the weights."""
    X, spread, rng = data.draw(selection_problems(dtype))
    if dtype == np.float32:  # c·w within float32's normal numbers
        log_c = float(np.clip(log_c, -37.5, 37.5))
    w = rng.uniform(0.5, 2.0, N_FIT)
    reg = 1e-6 * spread**2
    c = 10.0**log_c
    base = run_select(X, sample_weight=np.asarray(w, dtype), reg_covar=reg)
    total = float(np.sum(np.asarray(w, dtype).astype(np.float64)))
    scaled_total = float(np.sum(np.asarray(w * c, dtype).astype(np.float64)))
    if all(r["n_parameters"] > scaled_total for r in base.rows):
        with pytest.raises(ValueError, match="sample_weight as frequencies"):
            run_select(X, sample_weight=np.asarray(w * c, dtype), reg_covar=reg)
        return
    other = run_select(X, sample_weight=np.asarray(w * c, dtype), reg_covar=reg)
    rtol = 1e-12 if dtype == np.float64 else RTOL[dtype]
    for ra, rb in zip(other.rows, base.rows, strict=True):
        cell = f"weights x1e{log_c:.4g}, cell K={rb['n_components']} {rb['cov_type']}"
        p = rb["n_parameters"]
        if p > scaled_total:
            assert ra["status"] == "too_many_parameters" and np.isnan(ra["bic"]), cell
            continue
        ll = rb["log_likelihood"]
        check(ra["log_likelihood"], ll, rtol * (1 + abs(ll)), f"{cell}: mean log-likelihood")
        two_ll = rb["bic"] - p * np.log(total)  # −2ℓ at the weights w
        want = c * two_ll + p * np.log(scaled_total)
        check(ra["bic"], want, rtol * (abs(c * two_ll) + abs(p * np.log(scaled_total)) + 1),
              f"{cell}: bic")  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES)
@examples(4, shrink=False)
@given(data=st.data(), perm=st.permutations(range(N_FIT)))
def test_select_ignores_row_order(dtype, data, perm):
    """Permuted rows: the same selection (restarts start elsewhere, but on two clusters 12
    spreads apart every start converges to the same fit within the 20 steps)."""
    X, spread, _ = data.draw(selection_problems(dtype))
    reg = 1e-6 * spread**2
    base, other = run_select(X, reg_covar=reg), run_select(X[np.asarray(perm)], reg_covar=reg)
    check_same_selection(other, base, RTOL[dtype], spread, "select of permuted rows")


@pytest.mark.parametrize("dtype", DTYPES)
@examples(4, shrink=False)
@given(data=st.data(), log_garbage=exponents(0, 200))
def test_select_repeated_and_zero_weight_rows(dtype, data, log_garbage):
    """Integer weights select as the repeated rows do; rows of weight 0 holding anything finite
    (up to 1e200 in float64, 1e37 in float32) select as if they were absent."""
    X, spread, rng = data.draw(selection_problems(dtype))
    reg = 1e-6 * spread**2
    counts = 1 + rng.multinomial(N_MORE - N_FIT, np.full(N_FIT, 1.0 / N_FIT))
    repeated = run_select(np.repeat(X, counts, axis=0), reg_covar=reg)
    weighted = run_select(X, sample_weight=counts.astype(dtype), reg_covar=reg)
    check_same_selection(weighted, repeated, RTOL[dtype], spread, "select with integer weights")

    X_all, w_all = with_zero_weight_rows(rng, X, log_garbage, dtype)
    base = run_select(X, reg_covar=reg)
    other = run_select(X_all, sample_weight=w_all, reg_covar=reg)
    check_same_selection(other, base, RTOL[dtype], spread,
                         f"select with zero-weight rows up to 1e{log_garbage:.4g}")  # fmt: skip


@pytest.mark.parametrize("dtype", DTYPES)
@examples(4, shrink=False)
@given(data=st.data())
def test_select_ignores_chunk_size(dtype, data):
    """chunk_size=7 selects as the default one chunk does, with the same criteria."""
    X, spread, _ = data.draw(selection_problems(dtype))
    reg = 1e-6 * spread**2
    base, other = run_select(X, reg_covar=reg), run_select(X, reg_covar=reg, chunk_size=7)
    check_same_selection(other, base, RTOL[dtype], spread, "select with chunk_size=7")


# -- standard errors -------------------------------------------------------------------------


def se_factors(names, scale):
    """How each natural parameter scales when X → aX: weights 1, means a, covariances a²."""
    return np.array([1.0 if n.startswith("weight") else scale if n.startswith("mean")
                     else scale**2 for n in names])  # fmt: skip


def fitted_for_se(rng, cov_type, dtype, spread=1.0):
    """Separated data and a fit to them: a strict local maximum, so the information is
    positive definite."""
    mixture = separated_mixture(rng, cov_type, dtype, spread)
    X = sample(rng, mixture, N_FIT)
    fitted = run_fit(X, mixture.gmm, reg_covar=1e-6 * spread**2, steps=FIT_STEPS).best
    as_mixture = Mixture(fitted.weights, fitted.means, fitted.covariances, cov_type, dtype)
    return as_mixture, X


def check_se(a, b, rtol, what, factor=1.0):
    """Standard errors a == b · factor; estimates too."""
    assert a.names == b.names
    check(a.std_error, b.std_error * factor, rtol * np.abs(b.std_error * factor),
          f"{what}: standard errors")  # fmt: skip


SE_METHODS = ("hessian", "opg")


@pytest.mark.parametrize("method", SE_METHODS)
@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("dtype", DTYPES)
@examples(4, shrink=False)
@given(seed=seeds, log_shift=exponents(-2, 12), log_scale=exponents(-6, 6))
def test_standard_errors_translation_and_scaling(dtype, cov_type, method, seed, log_shift,
                                                 log_scale):  # fmt: skip
    """Standard errors do not move with X and the model (shift up to 1e12 spreads in float64,
    1e4 in float32), and scale as the parameters when X → aX (weights 1, means a,
    covariances a²)."""
    rng = np.random.default_rng(seed)
    mixture, X = fitted_for_se(rng, cov_type, dtype)
    rtol = RTOL[dtype]
    base = gj.standard_errors(mixture.gmm, X, method=method)
    if dtype == np.float32:
        log_shift = min(log_shift, 4.0)
    shift, (X_grid, means) = on_shift_grid(shift_vector(rng, log_shift, 1.0), X, mixture.means,
                                           dtype=dtype)  # fmt: skip
    on_grid = mixture.replace(means=means)
    ref = gj.standard_errors(on_grid.gmm, X_grid, method=method)
    moved = gj.standard_errors(on_grid.replace(means=means + shift).gmm, X_grid + shift,
                               method=method)  # fmt: skip
    check_se(moved, ref, rtol, f"standard_errors ({method}) after a shift of 1e{log_shift:.3g}")
    a = 10.0**log_scale
    scaled = mixture.replace(means=mixture.means * a, cov=mixture.cov * a**2)
    se = gj.standard_errors(scaled.gmm, np.asarray(X * a, dtype), method=method)
    check_se(se, base, rtol, f"standard_errors ({method}) at scale {a:.3g}",
             se_factors(base.names, a))  # fmt: skip


@pytest.mark.parametrize("method", SE_METHODS)
@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("dtype", DTYPES)
@examples(4, shrink=False)
@given(seed=seeds, log_c=exponents(-300, 300), perm=st.permutations(range(N_FIT)))
def test_standard_errors_of_weighted_rows(dtype, cov_type, method, seed, log_c, perm):
    """Frequency weights: weights·c divide the standard errors by √c; permuted rows change
    nothing; integer weights equal repeated rows."""
    rng = np.random.default_rng(seed)
    mixture, X = fitted_for_se(rng, cov_type, dtype)
    rtol = RTOL[dtype]
    counts = 1 + rng.multinomial(N_MORE - N_FIT, np.full(N_FIT, 1.0 / N_FIT))
    w = counts.astype(dtype)
    base = gj.standard_errors(mixture.gmm, X, method=method, sample_weight=w)
    repeated = gj.standard_errors(mixture.gmm, np.repeat(X, counts, axis=0), method=method)
    check_se(base, repeated, rtol, f"standard_errors ({method}) with integer weights")
    perm = np.asarray(perm)
    permuted = gj.standard_errors(mixture.gmm, X[perm], method=method, sample_weight=w[perm])
    check_se(permuted, base, rtol, f"standard_errors ({method}) of permuted rows")
    if dtype == np.float32:
        log_c = float(np.clip(log_c, -37.0, 37.0))
    c = 10.0**log_c
    wc = np.asarray(counts * c, dtype)
    c_exact = float(wc.astype(np.float64)[0] / counts[0])  # what the dtype holds
    scaled = gj.standard_errors(mixture.gmm, X, method=method, sample_weight=wc)
    check_se(scaled, base, rtol, f"standard_errors ({method}) with weights x1e{log_c:.4g}",
             1.0 / np.sqrt(c_exact))  # fmt: skip


@pytest.mark.parametrize("method", SE_METHODS)
@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("dtype", DTYPES)
@examples(4, shrink=False)
@given(seed=seeds, log_garbage=exponents(0, 200))
def test_standard_errors_ignore_zero_weight_rows(dtype, cov_type, method, seed, log_garbage):
    """Rows of weight 0 holding anything finite (up to 1e200 in float64, 1e37 in float32)
    leave the standard errors as without them."""
    rng = np.random.default_rng(seed)
    mixture, X = fitted_for_se(rng, cov_type, dtype)
    X_all, w_all = with_zero_weight_rows(rng, X, log_garbage, dtype)
    base = gj.standard_errors(mixture.gmm, X, method=method)
    other = gj.standard_errors(mixture.gmm, X_all, method=method, sample_weight=w_all)
    check_se(
        other,
        base,
        RTOL[dtype],
        f"standard_errors ({method}) with zero-weight rows up to 1e{log_garbage:.4g}",
    )
