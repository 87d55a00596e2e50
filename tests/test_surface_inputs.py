"""Inputs at the edges of the public surface: each one gets a correct answer or one clear error
raised before any work, never a silent wrong result or a crash inside JAX or NumPy.

Covered: experiment unit ids (distinct settings, distinct ids), `select` cells that the data
cannot support (mclust's NA cells), the plotting, saving, loading, scoring and comparison
entry points given batches, empty data or wrong types, and the `gmmjax fit` output paths.
Every fit here is tiny and shared through module fixtures.
"""

import json
import types

import jax
import matplotlib
import numpy as np
import pytest
from conftest import assert_close
from scipy.stats import multivariate_normal, norm

import gmmjax as gj
from gmmjax.cli import main
from gmmjax.experiments import _plots, _runner, convergence_rate, em_vs_gradient
from gmmjax.experiments._config import setting_text

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

KEY = jax.random.key(0)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(0).normal(size=(40, 2)) + np.repeat(
        [[0.0, 0.0], [4.0, 4.0]], 20, 0
    )


@pytest.fixture(scope="module")
def fitted(data):
    """A MAP fit with mclust's prior: two restarts, so `params` is a batch of two mixtures."""
    return gj.fit(data, 2, key=KEY, n_restarts=2, max_iter=20, prior="mclust")


# -- experiment unit ids ---------------------------------------------------------------------


def test_setting_text_is_exact_and_keeps_the_short_ids():
    assert setting_text(3.0) == "3" and setting_text(0.5) == "0.5"  # the ids older runs wrote
    assert setting_text(3.0000001) == "3.0000001"
    values = [3.0, 3.0000001, 3.0 + 2**-51, 1e-300, 1 / 3, 7]
    texts = [setting_text(v) for v in values]
    assert len(set(texts)) == len(values)
    assert [float(t) for t in texts] == [float(v) for v in values]


@pytest.mark.parametrize("study", [em_vs_gradient, convergence_rate])
def test_study_plans_give_distinct_settings_distinct_ids(study):
    config = {"data": {"separation": [3.0, 3.0000001, 4.0]}, "fit": {"seeds": [0]}}
    ids = [u["id"] for u in study.plan(config)]
    assert ids == ["c=3/seed=0", "c=3.0000001/seed=0", "c=4/seed=0"]


def _study(plan):
    """A study whose one record per unit carries the unit's separation."""

    def figures(config, records, out):
        fig, (ax,) = _plots.subplots(1, width=1, height=1)
        return [_plots.save(fig, out / "curve.png")] if config["output"]["figures"] else []

    return types.SimpleNamespace(
        SCHEMA={
            "data": {"source": "synthetic", "separation": [1.0]},
            "fit": {"seeds": [0]},
            "output": {"figures": []},
        },
        FIGURES=("curve",),
        SWEPT={"data": ("separation",), "fit": ("seeds",)},
        SUMMARY_ONLY=("output",),
        plan=plan,
        execute=lambda config, unit: [{"separation": unit["separation"]}],
        summarise=lambda config, records: [{"separation": r["separation"]} for r in records],
        figures=figures,
    )


def test_close_settings_are_run_and_summarised_apart(tmp_path, monkeypatch):
    monkeypatch.setitem(_runner.STUDIES, "probe", _study(em_vs_gradient.plan))
    config = tmp_path / "probe.toml"
    config.write_text('study = "probe"\n[data]\nseparation = [3.0, 3.0000001]\n')
    result = _runner.run_experiment(config, tmp_path / "out", quiet=True)
    assert result["executed"] == 2
    assert [r["separation"] for r in result["rows"]] == [3.0, 3.0000001]
    summary = (tmp_path / "out" / "summary.csv").read_text().split()
    assert summary == ["separation", "3.0", "3.0000001"]


def test_a_plan_with_colliding_ids_is_refused_before_any_unit_runs(tmp_path, monkeypatch):
    def plan(config):  # the former id format: 3.0 and 3.0000001 both read "c=3"
        return [{"id": f"c={c:g}", "separation": c} for c in config["data"]["separation"]]

    study = _study(plan)
    ran = []
    study.execute = lambda config, unit: ran.append(unit) or [{"separation": 0.0}]
    monkeypatch.setitem(_runner.STUDIES, "probe", study)
    config = tmp_path / "probe.toml"
    config.write_text('study = "probe"\n[data]\nseparation = [3.0, 3.0000001]\n')
    with pytest.raises(RuntimeError, match="share the id 'c=3'"):
        _runner.run_experiment(config, tmp_path / "out", quiet=True)
    assert ran == [] and not (tmp_path / "out" / "runs.jsonl").exists()


# -- select: cells the data cannot support ---------------------------------------------------

# Ten rows around 0 and two identical rows at 50 (1-D): with K = 2 one component sits on the
# identical pair with a variance of reg_covar alone, a likelihood spike that BIC would pick.
SPIKE = np.concatenate([np.random.default_rng(1).normal(size=10), [50.0, 50.0]])[:, None]


@pytest.fixture(scope="module")
def spike_selection():
    with pytest.warns(RuntimeWarning, match="collapsed onto reg_covar") as record:
        sel = gj.select(SPIKE, [1, 2, 5], "full", n_restarts=2, max_iter=30, key=KEY)
    return sel, record


def test_select_reports_collapsed_and_overparameterised_cells_as_not_available(
    spike_selection,
):
    sel, record = spike_selection
    assert len(record) == 1 and "more free parameters than observations" in str(record[0].message)
    by_k = {r["n_components"]: r for r in sel.rows}
    assert by_k[2]["status"] == "collapsed" and np.isnan(by_k[2]["bic"])
    assert by_k[2]["n_parameters"] == 5  # the count is the model's, fitted or not
    # K = 5: 14 free parameters for 12 rows; never fitted.
    assert by_k[5]["status"] == "too_many_parameters" and by_k[5]["n_parameters"] == 14
    assert np.isnan(by_k[5]["bic"]) and np.isnan(by_k[5]["aic"]) and np.isnan(by_k[5]["icl"])
    assert sel.n_components == 1
    # The cell that is left is the one-Gaussian fit: BIC by hand from its closed form.
    x = SPIKE[:, 0]
    loglik = norm.logpdf(x, x.mean(), np.sqrt(x.var() + 1e-6)).sum()
    assert_close(by_k[1]["bic"], -2 * loglik + 2 * np.log(12), rtol=1e-9)
    assert "--" in sel.table() and "*" in sel.table()


def test_select_with_a_prior_keeps_the_spike_cell():
    # mclust's prior keeps a covariance on two identical rows regular: the cell is a fit.
    sel = gj.select(SPIKE, [2], "full", n_restarts=2, max_iter=30, key=KEY, prior="mclust")
    (row,) = sel.rows
    assert np.isfinite(row["bic"]) and row["status"] in ("converged", "max_iter_reached")
    covs = np.asarray(sel.best.covariances)[:, 0, 0]
    assert covs.min() > 1e-3  # well above any floor


def test_select_with_no_available_cell_raises():
    X = np.random.default_rng(0).normal(size=(5, 2))
    with pytest.raises(ValueError, match="no cell of the grid can be selected.*prior"):
        gj.select(X, [2, 3], ("full", "spherical"), key=KEY)


# -- crashes inside JAX or NumPy: batches, empty data, wrong types ---------------------------


def test_a_batch_of_mixtures_is_refused_where_one_is_expected(fitted, data, tmp_path):
    batch = fitted.params
    holes = data.copy()
    holes[0, 1] = np.nan
    with pytest.raises(ValueError, match=r"result\.best or result\.params\[i\]"):
        gj.impute(batch, holes)
    with pytest.raises(ValueError, match=r"save takes one mixture.*pass result\.best"):
        gj.save(batch, tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()
    with pytest.raises(ValueError, match="one mixture"):
        gj.bic(batch, data)
    # One restart of the batch: imputes, saves and loads as itself.
    one = batch[1]
    filled = np.asarray(gj.impute(one, holes))
    assert np.isfinite(filled).all() and np.array_equal(filled[1:], data[1:])
    gj.save(one, tmp_path / "m.npz")
    back = gj.load(tmp_path / "m.npz")
    assert np.array_equal(np.asarray(back.covariances), np.asarray(one.covariances))


def test_a_model_file_holding_a_batch_is_refused(fitted, tmp_path):
    path = tmp_path / "batch.npz"
    batch = fitted.params
    meta = {"format": "gmmjax.GMM", "format_version": 1, "cov_type": "full", "dtype": "float64"}
    np.savez(
        path,
        weights=np.asarray(batch.weights),
        means=np.asarray(batch.means),
        covariances=np.asarray(batch.covariances),
        metadata=np.array(json.dumps(meta)),
    )
    with pytest.raises(ValueError, match="batch of mixtures.*gmmjax.save"):
        gj.load(path)


def test_objective_takes_the_prior_spellings_of_fit(fitted, data):
    best = fitted.best
    value = gj.objective(best, data, prior="mclust")
    assert_close(value, fitted.objective[fitted.best_index], rtol=1e-10)
    explicit = gj.Prior.mclust(data, 2, "full")
    assert_close(value, gj.objective(best, data, prior=explicit), rtol=1e-14)
    weights = np.arange(1.0, 41.0)
    assert_close(
        gj.objective(best, data, prior="mclust", sample_weight=weights),
        gj.objective(
            best,
            data,
            prior=gj.Prior.mclust(data, 2, "full", sample_weight=weights),
            sample_weight=weights,
        ),
        rtol=1e-14,
    )
    with pytest.raises(ValueError, match='"mclust" or a gmmjax.Prior'):
        gj.objective(best, data, prior="mclst")
    with pytest.raises(TypeError, match="prior must be"):
        gj.objective(best, data, prior=3.0)
    with pytest.raises(ValueError, match="traced.*Prior.mclust"):
        jax.jit(lambda X: gj.objective(best, X, prior="mclust"))(data)


@pytest.mark.parametrize(
    "args, name",
    [
        (("abc", 1.0, 4.0), "mean"),
        (([0.0, 0.0], "wide", 4.0), "scale"),
        (([0.0, 0.0], np.eye(2), None), "dof"),
    ],
)
def test_prior_of_non_numbers_is_a_type_error(args, name):
    with pytest.raises(TypeError, match=f"prior's {name} must be real numbers"):
        gj.Prior(*args, cov_type="full")


def test_compare_refuses_an_empty_or_repeated_method_list(data):
    with pytest.raises(ValueError, match="methods is empty"):
        gj.compare(data, 2, key=KEY, methods=())
    with pytest.raises(ValueError, match=r"methods lists \['em'\] more than once"):
        gj.compare(data, 2, key=KEY, methods=("em", "lbfgs", "em"))
    with pytest.raises(TypeError, match="method names"):
        gj.compare(data, 2, key=KEY, methods=None)


def test_criteria_of_no_rows_raise_and_of_rows_match_scipy(fitted, data):
    best = fitted.best
    for criterion in (gj.bic, gj.aic, gj.icl):
        with pytest.raises(ValueError, match="X has no rows"):
            criterion(best, data[:0])
        with pytest.raises(ValueError, match=r"shape \(n_samples, 2\)"):
            criterion(best, data[:, :1])
    w, m, c = (np.asarray(a) for a in (best.weights, best.means, best.covariances))
    x = data[:3]
    loglik = np.log(sum(w[k] * multivariate_normal(m[k], c[k]).pdf(x) for k in range(2))).sum()
    assert_close(gj.bic(best, x), -2 * loglik + 11 * np.log(3), rtol=1e-10)
    assert_close(gj.aic(best, x), -2 * loglik + 22, rtol=1e-10)


def test_density_of_no_rows_or_a_one_point_grid_raises(fitted, data):
    best = fitted.best
    with pytest.raises(ValueError, match="X has no rows.*X=None"):
        gj.plot.density(best, data[:0])
    for n_grid in (1, 0, 2.5, True):
        with pytest.raises(ValueError, match="n_grid must be an integer >= 2"):
            gj.plot.density(best, data, n_grid=n_grid)
    # One row: the range on each coordinate comes from the components' spread.
    ax = gj.plot.density(best, data[:1], n_grid=3)
    (low, high), point = ax.get_xlim(), data[0, 0]
    assert low < point < high and high - low > 1.0


def test_pictures_refuse_the_wrong_object(fitted):
    with pytest.raises(TypeError, match=r"FitResult.*plot\.ellipses"):
        gj.plot.history(fitted.best)
    with pytest.raises(TypeError, match="Comparison"):
        gj.plot.compare(fitted)
    with pytest.raises(TypeError, match="Selection"):
        gj.plot.bic(fitted)


def test_criterion_picture_refuses_an_unknown_criterion(spike_selection):
    sel, _ = spike_selection
    with pytest.raises(ValueError, match="criterion must be one of"):
        gj.plot.bic(sel, criterion="xyz")
    ax = gj.plot.bic(sel, criterion="aic")
    assert ax.get_ylabel().startswith("AIC")


# -- silent results: ellipses' ax, edited model files, CLI paths -----------------------------


def _three_d(cov_type="full"):
    weights = np.array([0.5, 0.5])
    means = np.array([[0.0, 0.0, 0.0], [3.0, 1.0, -1.0]])
    covs = np.stack([np.diag([1.0, 2.0, 0.5]), np.diag([0.3, 1.0, 2.0]) + 0.1])
    return gj.GMM(weights, means, covs, cov_type)


def test_ellipses_of_more_than_two_coordinates_on_one_axes():
    gmm = _three_d()
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match=r"dims=\(i, j\)"):
        gj.plot.ellipses(gmm, ax=ax)
    assert gj.plot.ellipses(gmm, ax=ax, dims=(0, 2)) is ax
    centres = sorted({tuple(np.round(p.center, 9)) for p in ax.patches})
    assert centres == [(0.0, 0.0), (3.0, -1.0)]


def _write_model(path, gmm, cov_type):
    """A model file as `save` writes it, with `cov_type` in its metadata (edited by hand)."""
    meta = {"format": "gmmjax.GMM", "format_version": 1, "cov_type": cov_type, "dtype": "float64"}
    arrays = {n: np.asarray(getattr(gmm, n)) for n in ("weights", "means", "covariances")}
    np.savez(path, **arrays, metadata=np.array(json.dumps(meta)))


def _rotation(angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


@pytest.mark.parametrize(
    "covariances, layout, edited",
    [
        # Different diagonals: not EEI (equal), VEI (equal shape) nor EVI (equal volume).
        (np.array([[1.0, 2.0], [3.0, 0.5]]), "diag", "EEI"),
        (np.array([[1.0, 2.0], [3.0, 0.5]]), "diag", "VEI"),
        (np.array([[1.0, 2.0], [3.0, 0.5]]), "diag", "EVI"),
        (np.array([1.0, 2.0]), "spherical", "EII"),
        # Two orientations of one shape and volume: EEV, but not VEE / EVE / VVE.
        (np.stack([_rotation(a) @ np.diag([4.0, 1.0]) @ _rotation(a).T for a in (0, 1)]),
         "full", "VEE"),
        (np.stack([_rotation(a) @ np.diag([4.0, 1.0]) @ _rotation(a).T for a in (0, 1)]),
         "full", "VVE"),
        # One orientation, different volumes: VEE / VVE, but not EEV or EVV.
        (np.stack([np.diag([4.0, 1.0]), np.diag([8.0, 2.0])]), "full", "EEV"),
        (np.stack([np.diag([4.0, 1.0]), np.diag([8.0, 2.0])]), "full", "EVV"),
    ],
)  # fmt: skip
def test_a_model_file_whose_cov_type_was_edited_is_refused(tmp_path, covariances, layout, edited):
    gmm = gj.GMM([0.5, 0.5], [[0.0, 0.0], [3.0, 3.0]], covariances, layout)
    path = tmp_path / "edited.npz"
    _write_model(path, gmm, edited)
    with pytest.raises(ValueError, match=f"do not satisfy the model cov_type='{edited}'"):
        gj.load(path)
    with pytest.raises(ValueError, match="do not satisfy"):
        gj.save(gj.GMM(gmm.weights, gmm.means, gmm.covariances, edited), tmp_path / "m.npz")
    _write_model(path, gmm, layout)  # the layout's general model holds them
    assert np.array_equal(np.asarray(gj.load(path).covariances), covariances)


@pytest.mark.parametrize(
    "covariances, cov_type",
    [
        (np.stack([_rotation(a) @ np.diag([4.0, 1.0]) @ _rotation(a).T for a in (0, 1)]), "EEV"),
        (np.stack([_rotation(a) @ np.diag([4.0, 1.0]) @ _rotation(a).T for a in (0, 1)]) *
         np.array([1.0, 3.0])[:, None, None], "VEV"),
        (np.stack([np.diag([4.0, 1.0]), np.diag([8.0, 2.0])]), "VEE"),
        (np.stack([np.diag([4.0, 1.0]), np.diag([1.0, 4.0])]), "EVE"),
        (np.array([[1.0, 2.0], [2.0, 4.0]]), "VEI"),
        (np.array([[1.0, 4.0], [2.0, 2.0]]), "EVI"),
    ],
)  # fmt: skip
def test_models_that_meet_their_constraints_round_trip(tmp_path, covariances, cov_type):
    gmm = gj.GMM([0.5, 0.5], [[0.0, 0.0], [3.0, 3.0]], covariances, cov_type)
    gj.save(gmm, tmp_path / "m.npz")
    back = gj.load(tmp_path / "m.npz")
    assert back.cov_type == cov_type
    assert np.array_equal(np.asarray(back.covariances), covariances)


def test_fitted_constrained_models_save_and_load(data, tmp_path):
    for cov_type, dtype in (("VEV", np.float32), ("EVE", np.float64)):
        res = gj.fit(data.astype(dtype), 2, key=KEY, n_restarts=1, max_iter=5, cov_type=cov_type)
        gj.save(res.best, tmp_path / "m.npz")
        back = gj.load(tmp_path / "m.npz")
        assert back.cov_type == cov_type and back.means.dtype == dtype


@pytest.fixture
def cli_data(tmp_path, monkeypatch):
    """A data file, and `gmmjax.fit` / `select` replaced by a failure: every refusal below
    must come before the fit."""
    path = tmp_path / "x.csv"
    np.savetxt(path, np.random.default_rng(0).normal(size=(6, 2)), delimiter=",")

    def no_fit(*args, **kwargs):
        raise AssertionError("the command fitted before checking its output paths")

    monkeypatch.setattr(gj, "fit", no_fit)
    monkeypatch.setattr(gj, "select", no_fit)
    return path


def _cli_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("gmmjax: error: ") and err.count("\n") == 1, err
    return err


def test_cli_refuses_output_paths_before_the_fit(cli_data, tmp_path, capsys):
    fit = ["fit", str(cli_data), "-k", "1"]
    same = str(tmp_path / "m.png")
    assert "name the same file" in _cli_error(capsys, [*fit, "--out", same, "--plot", same])
    assert "give a .png" in _cli_error(capsys, [*fit, "--plot", ""])
    assert "give a file name" in _cli_error(capsys, [*fit, "--out", ""])
    missing = str(tmp_path / "no" / "fig.png")
    assert "does not exist" in _cli_error(capsys, [*fit, "--plot", missing])
    assert "does not exist" in _cli_error(capsys, [*fit, "--out", str(tmp_path / "no" / "m")])
    (tmp_path / "figs.png").mkdir()
    assert "is a directory" in _cli_error(capsys, [*fit, "--plot", str(tmp_path / "figs.png")])
    assert "overwrite the data" in _cli_error(capsys, [*fit, "--out", str(cli_data)])
    select = ["select", str(cli_data), "--plot"]
    assert "does not exist" in _cli_error(capsys, [*select, missing])
    assert "give a .png" in _cli_error(capsys, [*select, ""])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figs.png", "x.csv"]
