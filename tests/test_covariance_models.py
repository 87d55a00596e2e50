"""mclust's fourteen covariance models (gmmjax/_covariance.py): each M-step is the maximiser
within its model, keeps the structure exactly, and EM with it never decreases the likelihood."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from scipy.linalg import expm

import gmmjax as gj
from gmmjax import _covariance
from gmmjax._covariance import MODELS, constrained_covariances, layout, n_covariance_parameters

IRIS = np.asarray(gj.load_dataset("iris")[0], np.float64)
MCLUST = json.loads((Path(__file__).parent / "fixtures" / "mclust_models.json").read_text())


def as_full(cov, cov_type, k, d):
    """(K, D, D) matrices from any layout."""
    cov = np.asarray(cov)
    kind = layout(cov_type)
    if kind == "full":
        return cov
    if kind == "tied":
        return np.broadcast_to(cov, (k, d, d))
    if kind == "diag":
        return np.stack([np.diag(v) for v in cov])
    return cov[:, None, None] * np.eye(d)


def m_objective(full_cov, scatter_full, n):
    """Σ_k n_k log|Σ_k| + tr(Σ_k⁻¹ S_k): what the M-step minimises (test-side, by slogdet)."""
    _, logdet = np.linalg.slogdet(full_cov)
    traces = np.trace(np.linalg.solve(full_cov, scatter_full), axis1=-2, axis2=-1)
    return float(np.sum(n * logdet + traces))


def structure_violation(model, cov):
    """Largest relative departure of (K, D, D) covariances from `model`'s constraints."""
    d = cov.shape[-1]
    scale = np.max(np.abs(cov))
    volume = np.exp(np.linalg.slogdet(cov)[1] / d)
    unit = cov / volume[:, None, None]  # shape and orientation, |.| = 1
    out = []
    if model[0] == "E":
        out.append(np.ptp(volume) / np.max(volume))
    if model[2] == "I":  # axis-aligned
        off = cov - np.stack([np.diag(np.diag(c)) for c in cov])
        out.append(np.max(np.abs(off)) / scale)
        if model[1] == "I":
            out.append(np.max(np.abs(unit - np.eye(d))))
    if model[1] == "E":  # one shape: the eigenvalues of Σ_k / λ_k agree
        eig = np.linalg.eigvalsh(unit)
        out.append(np.max(np.ptp(eig, axis=0)) / np.max(eig))
    if model[2] == "E":  # one orientation: the covariances commute
        comm = np.einsum("aij,bjk->abik", cov, cov)
        out.append(np.max(np.abs(comm - np.swapaxes(comm, 0, 1))) / scale**2)
    if model[1:] == "EE":
        out.append(np.max(np.ptp(unit, axis=0)))
    return max(out, default=0.0)


def random_scatter(seed, k, d, model):
    """Scatter matrices S_k (layout of `model`) and counts n_k of a random problem."""
    rng = np.random.default_rng(seed)
    n = rng.uniform(5, 50, size=k)
    a = rng.normal(size=(k, d, 3 * d))
    S = (a @ np.swapaxes(a, 1, 2)) * (n / (3 * d))[:, None, None]
    kind = layout(model)
    if kind == "tied":
        return S.sum(0), S, n
    if kind in ("diag", "spherical"):
        diag = np.stack([np.diag(s) for s in S])
        return diag, np.stack([np.diag(v) for v in diag]), n
    return S, S, n


def perturbed(model, cov, rng, eps):
    """A covariance near `cov` that satisfies `model`: Σ_k = λ_k Q_k diag(a_k) Q_kᵀ with λ, a
    and Q moved in the directions the model leaves free."""
    k, d, _ = cov.shape
    lam = np.exp(np.linalg.slogdet(cov)[1] / d)
    a, Q = np.linalg.eigh(cov / lam[:, None, None])
    if model[2] == "I":  # keep the axes: a_k is the diagonal in axis order
        a, Q = (
            np.stack([np.diag(c) for c in cov]) / lam[:, None],
            np.broadcast_to(np.eye(d), cov.shape),
        )
    z = rng.normal(size=1 if model[0] == "E" else k)
    lam = lam * np.exp(eps * z)
    if model[1] != "I":
        u = rng.normal(size=(1 if model[1] == "E" else k, d))
        a = a * np.exp(eps * (u - u.mean(-1, keepdims=True)))
    out = np.einsum("kij,kj,klj->kil", Q, lam[:, None] * a, Q)
    if model[2] != "I":
        skew = rng.normal(size=(1 if model[2] == "E" else k, d, d))
        R = np.stack([expm(eps * (s - s.T)) for s in skew])
        R = np.broadcast_to(R, cov.shape)
        out = R @ out @ np.swapaxes(R, 1, 2)
    return out


@pytest.mark.parametrize("model", MODELS)
def test_m_step_is_the_maximiser_within_the_model(model):
    """Every move that stays in the model (volumes, shapes, orientations, as the letters leave
    them free) does not lower the objective; the iterative models converge to the same point
    from the pooled scatter and from a far start."""
    k, d = 3, 4
    scatter, scatter_full, n = random_scatter(1, k, d, model)
    cov, ok = constrained_covariances(
        model, jax.numpy.asarray(scatter), jax.numpy.asarray(n), max_inner=10_000
    )
    assert bool(ok)
    full = as_full(cov, model, k, d)
    assert structure_violation(model, full) < 1e-10
    best = m_objective(full, scatter_full, n)
    rng = np.random.default_rng(2)
    for eps in (1e-2, 1e-4):
        changes = [
            m_objective(perturbed(model, full, rng, eps), scatter_full, n) - best for _ in range(20)
        ]
        # At a maximiser the change is second order: ≥ 0 up to rounding.
        assert min(changes) > -1e-10 * abs(best), (model, eps, min(changes))
    if model in _covariance.ITERATIVE:
        far = np.asarray(
            gj.GMM(
                np.ones(k) / k, np.zeros((k, d)), _start_for(model, k, d), cov_type=model
            ).covariances
        )
        cov2, ok2 = constrained_covariances(
            model,
            jax.numpy.asarray(scatter),
            jax.numpy.asarray(n),
            start=jax.numpy.asarray(far),
            max_inner=10_000,
        )
        assert bool(ok2)
        np.testing.assert_allclose(as_full(cov2, model, k, d), full, rtol=1e-5, atol=1e-8)


def _start_for(model, k, d):
    rng = np.random.default_rng(5)
    if layout(model) == "diag":
        return rng.uniform(0.2, 5.0, size=(k, d))
    a = rng.normal(size=(d, d))
    return np.broadcast_to(a @ a.T + np.eye(d), (k, d, d))


def test_inner_loop_reports_its_cap():
    scatter, _, n = random_scatter(3, 3, 4, "VVE")
    _, ok = constrained_covariances(
        "VVE", jax.numpy.asarray(scatter), jax.numpy.asarray(n), max_inner=1
    )
    assert not bool(ok)
    _, ok = constrained_covariances(
        "VVE", jax.numpy.asarray(scatter), jax.numpy.asarray(n), max_inner=10_000
    )
    assert bool(ok)


FIT = dict(n_restarts=8, max_iter=1000, tol=1e-9, reg_covar=0.0)


@pytest.fixture(scope="module")
def iris_fits():
    """Every model on iris, K = 3, 8 restarts to tol 1e-9 without regularisation (shared by
    the tests here and tests/test_mclust_models.py's comparison at G = 3)."""
    return {m: gj.fit_em(IRIS, 3, key=jax.random.key(0), cov_type=m, **FIT) for m in MODELS}


def assert_monotone_and_structured(res, model):
    """Every restart converged, its history (the objective) never decreased and its
    covariances satisfy `model`'s constraints."""
    status = np.asarray(res.status)
    assert np.all(status == gj.Status.CONVERGED), status
    hist = np.asarray(res.history)
    steps = np.diff(hist, axis=1)
    steps = steps[np.isfinite(steps)]
    assert np.all(steps >= -1e-12 * np.nanmax(np.abs(hist))), (model, steps.min())
    for r in range(hist.shape[0]):
        k, d = res.params[r].means.shape
        full = as_full(res.params[r].covariances, model, k, d)
        assert structure_violation(model, full) < 1e-10, model


@pytest.mark.parametrize("model", MODELS)
def test_em_is_monotone_and_keeps_the_structure(iris_fits, model):
    assert_monotone_and_structured(iris_fits[model], model)


@pytest.mark.parametrize("model", MODELS)
def test_fits_reach_mclust_on_iris_k3(iris_fits, model):
    """R mclust 6.0.0 at G = 3 (tests/fixtures/mclust_models.json): the best restart's
    log-likelihood is at least mclust's, less mclust's own relative tolerance 1e-5."""
    row = next(
        r
        for r in MCLUST["rows"]
        if r["dataset"] == "iris" and not r["prior"] and r["model"] == model and r["G"] == 3
    )
    res = iris_fits[model]
    ll = float(res.log_likelihood[res.best_index]) * IRIS.shape[0]
    assert ll >= row["loglik"] - 1e-5 * abs(row["loglik"]), (model, ll, row["loglik"])
    assert gj.n_parameters(res.best) == row["npar"]


def test_aliases_are_the_same_models(iris_fits):
    """scikit-learn's names run the same M-step as mclust's: identical fits and counts."""
    for alias, model in _covariance.ALIASES.items():
        res = gj.fit_em(IRIS, 3, key=jax.random.key(0), cov_type=alias, **FIT)
        np.testing.assert_array_equal(np.asarray(res.history), np.asarray(iris_fits[model].history))
        assert gj.n_parameters(res.best) == gj.n_parameters(iris_fits[model].best)


def test_parameter_counts_follow_the_letters():
    """mclust's nVarParams for K = 3, D = 4 (its documented table; R's values are also in the
    fixture test)."""
    k, d = 3, 4
    expected = {
        "EII": 1, "VII": 3, "EEI": 4, "VEI": 6, "EVI": 10, "VVI": 12, "EEE": 10, "VEE": 12,
        "EVE": 16, "VVE": 18, "EEV": 22, "VEV": 24, "EVV": 28, "VVV": 30,
    }  # fmt: skip
    assert {m: n_covariance_parameters(m, k, d) for m in MODELS} == expected


def test_an_inexact_m_step_still_climbs_but_never_converges(monkeypatch):
    """An inner loop stopped at its cap gives a generalised-EM step: the history still never
    decreases, and the restart is not declared converged until an M-step is exact, however
    loose tol (1.0 would stop plain EM at its second step). Shapes no other test compiles, so
    the cap is traced afresh."""
    X = IRIS[:, :3]
    fit = dict(key=jax.random.key(1), cov_type="VVE", tol=1.0)
    exact = gj.fit_em(X, 2, n_restarts=2, max_iter=50, **fit)
    assert np.all(np.asarray(exact.status) == gj.Status.CONVERGED)
    monkeypatch.setattr(_covariance, "INNER_MAX_ITER", 1)
    capped = gj.fit_em(X, 2, n_restarts=3, max_iter=3, **fit)
    assert np.all(np.asarray(capped.status) == gj.Status.MAX_ITER_REACHED)
    long = gj.fit_em(X, 2, n_restarts=3, max_iter=30, **{**fit, "tol": 0.0})
    hist = np.asarray(long.history)
    assert np.all(np.diff(hist, axis=1) >= -1e-12 * np.abs(hist[:, 1:]))
    for r in range(3):
        assert structure_violation("VVE", as_full(long.params[r].covariances, "VVE", 2, 3)) < 1e-10


@pytest.mark.parametrize(
    "method, model",
    [
        (gj.OnlineEM(batch_size=30), "EEV"),
        (gj.OnlineEM(batch_size=30), "VEE"),
        (gj.IncrementalEM(n_blocks=3), "EVE"),
    ],
)
def test_online_and_incremental_em_keep_the_structure(method, model):
    """Online EM averages its iterates: the average of two EEV or VEE covariances is not EEV
    or VEE, so it is mapped back by the model's M-step."""
    res = gj.fit(
        IRIS, 3, key=jax.random.key(0), method=method, cov_type=model, n_restarts=2, max_iter=6
    )
    assert not any(gj.Status(int(s)).failed for s in np.asarray(res.status))
    for r in range(2):
        assert structure_violation(model, as_full(res.params[r].covariances, model, 3, 4)) < 1e-10


def test_float32_fit_tracks_float64(iris_fits):
    """EVE (the MM inner loop) in float32: the structure holds to float32 rounding and the
    best restart's log-likelihood is float64's to 1e-5 relative."""
    res = gj.fit_em(IRIS.astype(np.float32), 3, key=jax.random.key(0), cov_type="EVE", **FIT)
    assert res.best.means.dtype == np.float32
    ll32 = float(res.log_likelihood[res.best_index])
    ll64 = float(iris_fits["EVE"].log_likelihood[iris_fits["EVE"].best_index])
    assert ll32 == pytest.approx(ll64, rel=1e-5)
    full = as_full(np.asarray(res.best.covariances, np.float64), "EVE", 3, 4)
    assert structure_violation("EVE", full) < 1e-5


def test_estimator_takes_mclust_models(tmp_path):
    """GaussianMixture(covariance_type="VEI") fits, saves, loads and refits."""
    est = gj.GaussianMixture(n_components=3, covariance_type="VEI", n_init=2, random_state=0)
    est.fit(IRIS)
    assert est.covariances_.shape == (3, 4) and est.predict(IRIS).shape == (150,)
    full = as_full(est.covariances_, "VEI", 3, 4)
    assert structure_violation("VEI", full) < 1e-10
    est.save(tmp_path / "vei.npz")
    loaded = gj.GaussianMixture.load(tmp_path / "vei.npz")
    assert loaded.covariance_type == "VEI" and gj.load(tmp_path / "vei.npz").cov_type == "VEI"
    np.testing.assert_array_equal(loaded.predict(IRIS), est.predict(IRIS))
    assert loaded.fit(IRIS).converged_


def test_methods_that_move_free_parameters_refuse_structured_models():
    with pytest.raises(ValueError, match="method='em'"):
        gj.fit(IRIS, 2, key=jax.random.key(0), method="lbfgs", cov_type="VEI")
    with pytest.raises(ValueError, match="method='em'"):
        gj.fit(IRIS, 2, key=jax.random.key(0), method="squarem", cov_type="EVE")
    with pytest.raises(ValueError, match="method='em'"):
        gj.fit(IRIS, 2, key=jax.random.key(0), method="lbfgs", cov_type="EEV", prior="mclust")
    with pytest.raises(ValueError, match="mclust's models"):
        gj.fit_em(IRIS, 2, key=jax.random.key(0), cov_type="XYZ")


FAITHFUL_GRID = dict(n_restarts=2, max_iter=500, tol=1e-6)


def test_selection_table_and_picture():
    """The BIC table (K x model, best starred) and mclust's BIC-vs-K picture of a small grid."""
    X = np.asarray(gj.load_dataset("faithful")[0], np.float64)
    sel = gj.select(
        X, range(1, 3), cov_types=("EII", "VEI"), key=jax.random.key(0), **FAITHFUL_GRID
    )
    table = sel.table()
    lines = table.splitlines()
    assert lines[0].split() == ["K", "EII", "VEI"] and len(lines) == 3
    best = next(
        r
        for r in sel.rows
        if (r["n_components"], r["cov_type"]) == (sel.n_components, sel.cov_type)
    )
    assert f"{best['bic']:.2f}*" in table and table.count("*") == 1
    ax = sel.plot()
    lines = {
        line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")
    }
    assert set(lines) == {"EII", "VEI"}
    for model, line in lines.items():
        expected = [r["bic"] for r in sel.rows if r["cov_type"] == model]
        np.testing.assert_allclose(line.get_ydata(), expected)
    assert ax.get_xlabel() and "BIC" in ax.get_ylabel() and sel.cov_type in ax.get_title()
    import matplotlib.pyplot as plt

    plt.close(ax.figure)


def test_cli_select_prints_the_table_and_writes_the_figure(tmp_path, capsys):
    from gmmjax import cli

    assert cli.COV_TYPES == _covariance.COV_TYPES
    X = np.asarray(gj.load_dataset("faithful")[0], np.float64)
    path = tmp_path / "faithful.csv"
    np.savetxt(path, X, delimiter=",")
    out = tmp_path / "bic.png"
    argv = [
        "select",
        str(path),
        "--k-max",
        "2",
        "--models",
        "EII,VEI",
        "--restarts",
        "2",
        "--plot",
        str(out),
    ]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "EII" in text and "VEI" in text and "best:" in text and out.stat().st_size > 10_000
    assert cli.main(["select", str(path), "--models", "XYZ"]) == 2
    assert "mclust's models" in capsys.readouterr().err
