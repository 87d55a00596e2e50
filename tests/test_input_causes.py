"""Inputs that used to give a plausible wrong answer or an internal crash: the scale of the
sample weights, zero-weight rows, `fit_differentiable`'s checks and statuses, the cause a
failed fit names, standard errors' checks, and the containers X arrives in (pandas' nullable
columns, SciPy sparse matrices, NumPy masked arrays)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse
from conftest import assert_close
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import gmmjax as gj

KEY = jax.random.key(0)
N = 60


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(0, 1, (36, 2)), rng.normal(4, 1, (24, 2))])


@pytest.fixture(scope="module")
def weights():
    return np.random.default_rng(1).uniform(0.5, 2.0, N)


@pytest.fixture(scope="module")
def start(data):
    return gj.GMM(
        np.array([0.5, 0.5]), np.array([[0.0, 0.0], [4.0, 4.0]]), np.stack([np.eye(2)] * 2)
    )


def _fit(X, **kw):
    return gj.fit(X, 2, key=KEY, max_iter=30, tol=1e-8, chunk_size=64, **kw)


def _assert_same_fit(a, b, rtol):
    for x, y in (
        (a.best.weights, b.best.weights),
        (a.best.means, b.best.means),
        (a.best.covariances, b.best.covariances),
        (a.objective, b.objective),
    ):
        assert_close(x, y, rtol=rtol, atol=rtol)


# -- sample weights: only their ratios matter (without a prior) ------------------------------


@pytest.fixture(scope="module")
def weighted_fit(data, weights):
    return _fit(data, sample_weight=weights)


@pytest.mark.parametrize("scale", [1e-300, 1e-20, 1e20, 1e300, 1e307])
def test_any_positive_rescaling_of_the_weights_gives_the_same_fit(
    data, weights, weighted_fit, scale
):
    """Weights normalised in float64 before any cast: 1e-20 used to give weights [.5, .5], 1e307
    was refused as identical rows."""
    _assert_same_fit(_fit(data, sample_weight=weights * scale), weighted_fit, rtol=1e-12)
    if scale < 1e300:
        assert_close(weights * scale / np.sum(weights * scale), weights / weights.sum(), rtol=1e-15)


def test_equal_tiny_weights_fit_as_no_weights(data):
    tiny = _fit(data, sample_weight=np.full(N, 1e-20))
    _assert_same_fit(tiny, _fit(data), rtol=1e-12)


def test_float32_weights_over_float32s_range_give_the_same_fit(data, weights):
    """Powers of two near float32's ends (2^±120 ≈ 1e∓36): the float32 weights are then the
    same numbers rescaled, not re-rounded, and the fit is the same. The 10·eps floor on each
    component's count used to swamp weights this small."""
    X = data.astype(np.float32)
    w = weights.astype(np.float32)
    reference = _fit(X, sample_weight=w)
    assert reference.best.means.dtype == np.float32
    for scale in (2.0**-120, 2.0**120):
        res = _fit(X, sample_weight=w * np.float32(scale))
        _assert_same_fit(res, reference, rtol=1e-6)


def test_integer_weights_are_repeated_rows_and_zero_weights_dropped_rows(data, start):
    """From one start, EM on weights (2, 0, 1, 1, ...) equals EM on the rows repeated and
    dropped; the zero-weight rows hold 1e200 (their squares overflow: 0·inf used to be NaN)."""
    counts = np.tile([2, 0, 1], N // 3)
    held = data.copy()
    held[counts == 0] = 1e200
    weighted = gj.fit_em(held, 2, key=KEY, init_params=start, sample_weight=counts, tol=1e-10)
    repeated = gj.fit_em(np.repeat(data, counts, axis=0), 2, key=KEY, init_params=start, tol=1e-10)
    _assert_same_fit(weighted, repeated, rtol=1e-10)


def test_a_zero_weight_row_has_no_effect_on_kmeans_plus_plus_either(data):
    """Appended with weight 0 (and 1e200 in it), a row changes nothing: the chunk keeps its
    shape (N + 1 rows pad to the same 64), k-means++ never draws the row, and the statistics
    never see it. It used to move the means by 2e-3."""
    with_row = np.vstack([data, [[1e200, -1e200]]])
    res = _fit(with_row, sample_weight=np.r_[np.ones(N), 0.0])
    _assert_same_fit(res, _fit(data), rtol=1e-12)


def test_with_a_prior_weights_are_counts(data, start):
    """A prior's pull against the data depends on how many rows there are: weight 2 on every
    row is every row twice, not the unweighted fit."""
    prior = gj.Prior.mclust(data, 2, "full")
    doubled = gj.fit_em(data, 2, key=KEY, init_params=start, prior=prior,
                        sample_weight=np.full(N, 2.0), tol=1e-10)  # fmt: skip
    twice = gj.fit_em(np.repeat(data, 2, axis=0), 2, key=KEY, init_params=start, prior=prior,
                      tol=1e-10)  # fmt: skip
    _assert_same_fit(doubled, twice, rtol=1e-10)


def test_the_estimator_ignores_the_weights_scale(data, weights):
    reference = gj.GaussianMixture(2, random_state=0).fit(data, sample_weight=weights)
    for scale in (1e-300, 1e300):
        est = gj.GaussianMixture(2, random_state=0).fit(data, sample_weight=weights * scale)
        assert_close(est.means_, reference.means_, rtol=1e-12)
        assert_close(est.weights_, reference.weights_, rtol=1e-12)
        assert est.lower_bound_ == pytest.approx(reference.lower_bound_, rel=1e-12)


# -- fit_differentiable checks its input as fit does, and reports where it stopped ------------


def _bad_inputs(data, start):
    nan, inf = data.copy(), data.copy()
    nan[3, 1], inf[3, 1] = np.nan, np.inf
    empty = gj.GMM(np.array([1.0, 0.0]), start.means, start.covariances)
    return {
        "NaN in X": (dict(X=nan), "X contains NaN"),
        "inf in X": (dict(X=inf), "X contains inf"),
        "0 rows": (dict(X=data[:0]), "0 sample"),
        "wrong columns": (dict(X=data[:, :1]), r"shape \(n_samples, 2\)"),
        "NaN weight": (dict(sample_weight=np.r_[np.nan, np.ones(N - 1)]), "NaN or inf"),
        "negative weight": (dict(sample_weight=np.r_[-1.0, np.ones(N - 1)]), "non-negative"),
        "wrong weight length": (dict(sample_weight=np.ones(3)), r"shape \(n_samples,\)"),
        "negative reg_covar": (dict(reg_covar=-1e-3), "reg_covar must be finite and >= 0"),
        "negative tol": (dict(tol=-1.0), "tol must be finite and >= 0"),
        "max_iter 0": (dict(max_iter=0), "max_iter must be a positive integer"),
        "empty component": (dict(init_params=empty), "empty component"),
    }


@pytest.mark.parametrize(
    "case",
    ["NaN in X", "inf in X", "0 rows", "wrong columns", "NaN weight", "negative weight",
     "wrong weight length", "negative reg_covar", "negative tol", "max_iter 0",
     "empty component"],
)  # fmt: skip
def test_fit_differentiable_checks_its_input(data, start, case):
    """Each bad input is a ValueError before anything is traced, also where the call sits
    inside the caller's jax.jit (the offending input is concrete there)."""
    given, message = _bad_inputs(data, start)[case]
    args = {"X": data, "init_params": start, **given}
    with pytest.raises(ValueError, match=message):
        gj.fit_differentiable(args.pop("X"), args.pop("init_params"), **args)
    if case not in ("NaN weight", "negative weight", "wrong weight length"):
        return
    # The weights traced, X concrete: the weights' shape is still checked; their values are
    # not (they are traced), which is what return_status is for.
    if case == "wrong weight length":
        with pytest.raises(ValueError, match=message):
            jax.jit(lambda w: gj.fit_differentiable(data, start, sample_weight=w))(
                given["sample_weight"]
            )
    nan = data.copy()
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        jax.jit(lambda w: gj.fit_differentiable(nan, start, sample_weight=w).means)(jnp.ones(N))


@pytest.fixture(scope="module")
def reference_em(data, start):
    """scikit-learn's EM from the same start, to a tight tol, with reg_covar = 0."""
    precisions = np.linalg.inv(np.asarray(start.covariances))
    sk = SkGaussianMixture(2, weights_init=np.asarray(start.weights),
                           means_init=np.asarray(start.means), precisions_init=precisions,
                           reg_covar=0.0, tol=1e-14, max_iter=5000)  # fmt: skip
    return sk.fit(data)


def test_fit_differentiable_reports_its_status(data, start, reference_em):
    """Converged: the fixed point (scikit-learn's from the same start) with status CONVERGED;
    max_iter: a ConvergenceWarning, or Status.MAX_ITER_REACHED with return_status, also under
    jit; the derivative still flows with return_status."""
    fitted, status = gj.fit_differentiable(data, start, tol=1e-14, return_status=True)
    assert int(status) == gj.Status.CONVERGED
    assert_close(fitted.means, reference_em.means_, rtol=1e-6)
    assert_close(fitted.covariances, reference_em.covariances_, rtol=1e-6)
    with pytest.warns(gj.ConvergenceWarning, match="max_iter"):
        gj.fit_differentiable(data, start, max_iter=2)

    def mean_and_status(X):
        gmm, status = gj.fit_differentiable(X, start, max_iter=2, return_status=True)
        return gmm.means[0, 0], status

    _, status = jax.jit(mean_and_status)(jnp.asarray(data))
    assert int(status) == gj.Status.MAX_ITER_REACHED
    grad = jax.grad(lambda X: mean_and_status(X)[0])(jnp.asarray(data))
    assert grad.shape == data.shape and bool(jnp.all(jnp.isfinite(grad)))


def test_fit_differentiable_refuses_a_point_without_a_derivative(data, start):
    """A component started far from every row empties: DEGENERATE, raised when concrete (its
    mean would rest on rounding), returned as a status under jit."""
    far = gj.GMM(start.weights, np.array([[2.0, 2.0], [1e3, 1e3]]), start.covariances)
    with pytest.raises(gj.FitFailedError, match="DEGENERATE.*emptied"):
        gj.fit_differentiable(data, far, reg_covar=1e-6)
    status = jax.jit(
        lambda X: gj.fit_differentiable(X, far, reg_covar=1e-6, return_status=True)[1]
    )(jnp.asarray(data))
    assert int(status) == gj.Status.DEGENERATE


# -- a failed fit names the cause it found -------------------------------------------------


def test_values_whose_squares_overflow_are_refused_before_any_work(data):
    with pytest.raises(ValueError, match="too large for float64.*rescale X"):
        gj.fit(data * 1e155, 2, key=KEY)
    with pytest.raises(ValueError, match="too large for float32.*rescale X"):
        gj.fit((data * 1e19).astype(np.float32), 2, key=KEY)


def test_a_singular_mean_imputed_start_is_named(data):
    X = data.copy()
    X[36:, 1] = np.nan  # the second cluster's column 1 is all imputed: no spread there
    with pytest.raises(gj.FitFailedError, match="missing values replaced by the column means"):
        gj.fit(X, 2, key=KEY, missing="em", reg_covar=0.0, max_iter=5)


def test_weight_on_too_few_rows_is_named(data):
    w = np.zeros(N)
    w[:2] = 1.0
    with pytest.raises(gj.FitFailedError, match="sample_weight is positive on only 2 of 60"):
        gj.fit(data, 2, key=KEY, reg_covar=0.0, sample_weight=w, max_iter=5)


# -- standard errors check their input before any work -------------------------------------


def test_standard_errors_check_their_input(data, start):
    nan = data.copy()
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        gj.standard_errors(start, nan)
    with pytest.raises(ValueError, match="X contains NaN"):
        gj.standard_errors(start, nan, method="bootstrap", key=KEY, n_bootstrap=4)
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(n_samples,\) = \(60,\)"):
        gj.standard_errors(start, data, sample_weight=np.ones(N - 1))
    with pytest.raises(ValueError, match="0 sample"):
        gj.standard_errors(start, data[:0])


# -- the containers X arrives in -----------------------------------------------------------


def test_sparse_x_is_refused_as_scikit_learn_refuses_it(data):
    X = scipy.sparse.csr_matrix(data)
    with pytest.raises(TypeError, match="toarray") as ours:
        gj.fit(X, 2, key=KEY)
    with pytest.raises(TypeError, match="toarray") as theirs:
        SkGaussianMixture(2).fit(X)
    assert str(ours.value) == str(theirs.value)
    with pytest.raises(TypeError, match="toarray"):
        gj.GaussianMixture(2).fit(X)


@pytest.fixture(scope="module")
def with_holes(data):
    X = data.copy()
    X[::7, 0] = np.nan
    return X, _fit(X, missing="em")


def test_masked_values_are_missing_values(data, with_holes):
    """A masked entry is a missing one, never its hidden value (scikit-learn fits the hidden
    values): refused with missing="raise", fitted as NaN with missing="em"."""
    X, reference = with_holes
    masked = np.ma.masked_invalid(X)
    masked.data[np.isnan(X)] = 1e6  # what a masked array may hold under its mask
    with pytest.raises(ValueError, match='masked value.*missing="em"'):
        gj.fit(masked, 2, key=KEY)
    _assert_same_fit(_fit(masked, missing="em"), reference, rtol=1e-12)
    plain = np.ma.masked_array(data, mask=np.zeros_like(data, bool))
    _assert_same_fit(_fit(plain), _fit(data), rtol=1e-12)


def test_pandas_nullable_columns_hold_missing_values(with_holes):
    pd = pytest.importorskip("pandas")
    X, reference = with_holes
    frame = pd.DataFrame(
        {
            "a": pd.array(X[:, 0], dtype="Float64"),  # NaN becomes pd.NA
            "b": pd.array(X[:, 1], dtype="Float64"),
        }
    )
    assert frame["a"].isna().sum() == np.isnan(X[:, 0]).sum()
    with pytest.raises(ValueError, match='X contains NaN; fit with missing="em"'):
        gj.fit(frame, 2, key=KEY)
    _assert_same_fit(_fit(frame, missing="em"), reference, rtol=1e-12)
    counts = pd.DataFrame({"n": pd.array([1, 2, None, 4], dtype="Int64"), "x": [1.0, 2, 3, 4]})
    with pytest.raises(ValueError, match="X contains NaN"):
        gj.fit(counts, 1, key=KEY)
