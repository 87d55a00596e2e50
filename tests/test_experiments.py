"""The `gmmjax` command and the experiment machinery, end to end on tiny configs."""

import json

import jax
import numpy as np
import pytest
from conftest import assert_close

import gmmjax as gj
from gmmjax.cli import main
from gmmjax.experiments import convergence_rate

TINY = """
study = "em_vs_gradient"
name = "tiny"

[data]
n_components = 2
n_features = 2
n_samples = 300
separation = [3.0, 1.0]
seed = 0

[fit]
methods = ["em", "lbfgs"]
n_restarts = 2
max_iter = 40
tol = 1e-6

[output]
figures = ["gap_vs_iteration", "gap_vs_seconds", "work_vs_overlap", "ellipses"]
"""


def _is_png(path):
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_run_writes_records_summary_figures_and_resumes(tmp_path, capsys):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    lines = (out / "runs.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 2 * 2 * 2  # separations x methods x restarts
    assert {r["method"] for r in records} == {"em", "lbfgs"}
    for r in records:
        assert len(r["history"]) == r["n_iter"] and np.isfinite(r["final_ll"])
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("separation,method,entropy") and len(summary) == 1 + 4
    for name in ("gap_vs_iteration", "gap_vs_seconds", "work_vs_overlap", "ellipses"):
        assert _is_png(out / f"{name}.png"), name
    printed = capsys.readouterr().out
    assert "runs.jsonl" in printed and "best_ll" in printed

    # Resume: a finished experiment runs nothing again.
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    assert "2 runs, 2 already done" in capsys.readouterr().out
    assert (out / "runs.jsonl").read_text().splitlines() == lines

    # An interrupted run: its records never landed (or landed torn); only it is redone.
    kept = [line for line in lines if json.loads(line)["separation"] == 3.0]
    (out / "runs.jsonl").write_text("\n".join(kept) + "\n" + '{"unit": "c=1/se')
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    assert "2 runs, 1 already done" in capsys.readouterr().out
    again = [
        json.loads(x)
        for x in (out / "runs.jsonl").read_text().splitlines()
        if x.startswith("{") and x.endswith("}")
    ]
    assert sum(r["separation"] == 1.0 for r in again) == 4


@pytest.mark.parametrize(
    "text, message",
    [
        (TINY.replace("n_restarts = 2", "n_restart = 2"), "unknown key 'n_restart' in [fit]"),
        (TINY.replace('study = "em_vs_gradient"', 'study = "nope"'), "'study' must be one of"),
        (TINY + "\n[plots]\nx = 1\n", "unknown table or key 'plots'"),
        (TINY.replace("n_samples = 300", 'n_samples = "many"'), "n_samples must be a int"),
        (TINY.replace("[data]", "[data"), "not valid TOML"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path, capsys, text, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    assert main(["run", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gmmjax: error:") and message in err and "\n" not in err


def test_missing_files_are_one_clear_line(tmp_path, capsys):
    assert main(["run", str(tmp_path / "none.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "none.csv"), "-k", "2"]) == 2
    assert "data file not found" in capsys.readouterr().err


def test_help_everywhere(capsys):
    for argv in (["--help"], ["run", "--help"], ["fit", "--help"], ["demo", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 0
    assert "usage: gmmjax demo" in capsys.readouterr().out


def test_fit_a_csv_and_save_the_model(tmp_path, capsys):
    X, _, _ = gj.make_mixture(n_components=2, n_features=2, n_samples=400, separation=3.0)
    data = tmp_path / "x.csv"
    np.savetxt(data, X, delimiter=",", header="a,b", comments="")
    model = tmp_path / "model.npz"
    assert main(["fit", str(data), "-k", "2", "--restarts", "3", "--out", str(model)]) == 0
    out = capsys.readouterr().out
    assert "BIC" in out and out.count("converged") == 3
    gmm = gj.load(model)
    assert gmm.n_components == 2 and gmm.cov_type == "full"
    # --prior mclust: MAP-EM, the objective printed beside the log-likelihood.
    args = ["fit", str(data), "-k", "2", "--restarts", "3", "--prior", "mclust"]
    assert main([*args, "--out", str(model)]) == 0
    out = capsys.readouterr().out
    assert "objective" in out and out.count("converged") == 3
    prior = gj.Prior.mclust(X, 2, "full")
    assert f"objective {float(gj.objective(gj.load(model), X, prior=prior)):.6f}" in out


def test_generator_hits_requested_separation():
    for c, ecc in ((0.5, 1.0), (2.0, 4.0), (4.0, 2.0)):
        X, z, truth = gj.make_mixture(
            n_components=4,
            n_features=3,
            n_samples=1000,
            separation=c,
            imbalance=3.0,
            eccentricity=ecc,
            seed=1,
        )
        from gmmjax._datasets import dasgupta_separation

        assert_close(dasgupta_separation(truth), c, rtol=1e-12)
        w = np.asarray(truth.weights)
        assert_close(w.max() / w.min(), 3.0, rtol=1e-12)
        eig = np.linalg.eigvalsh(np.asarray(truth.covariances))
        assert_close(eig.max(axis=1) / eig.min(axis=1), ecc, rtol=1e-9)
        assert X.shape == (1000, 3) and set(np.unique(z)) <= set(range(4))


def test_bundled_data_sets():
    shapes = {"faithful": (272, 2), "iris": (150, 4), "wine": (178, 13), "digits": (1797, 64)}
    for name, shape in shapes.items():
        X, labels = gj.load_dataset(name)
        assert X.shape == shape and np.all(np.isfinite(X))
        assert (labels is None) == (name == "faithful")
    X, _ = gj.load_dataset("digits", pca_components=10)
    assert X.shape == (1797, 10)
    assert np.all(np.diff(X.var(0)) <= 1e-9)  # components in order of variance


# Long; `make test-all` runs it (keeping the default suite short).
@pytest.mark.slow
def test_jacobian_spectral_radius_matches_empirical_rate():
    """1-D, two overlapping components: ρ(∂M/∂θ) at θ* predicts the observed rate."""
    X, _, _ = gj.make_mixture(
        n_components=2, n_features=1, n_samples=3000, separation=2.0, imbalance=1.5, seed=0
    )
    start = gj.initialize(X, 2, key=jax.random.key(0))
    thetas, lls = convergence_rate.em_trajectory(jax.numpy.asarray(X), start, 2500)
    fixed = convergence_rate._unflatten(jax.numpy.asarray(thetas[-1]), start)
    rho = convergence_rate.jacobian_spectral_radius(X, fixed)
    r_theta, r_ll = convergence_rate.empirical_rates(thetas, lls)
    assert 0.3 < rho < 1.0
    assert abs(r_theta - rho) < 0.02
    # ℓ* − ℓ(θ_t) is quadratic in θ_t − θ*, so log-likelihood increments shrink like ρ².
    assert abs(np.sqrt(r_ll) - rho) < 0.02


def test_save_load_round_trip_and_bad_files(tmp_path, cov_type):
    from conftest import random_gmm

    gmm = random_gmm(0, 3, 2, cov_type)
    path = tmp_path / "m.npz"
    gj.save(gmm, path)
    back = gj.load(path)
    assert back.cov_type == cov_type
    for a, b in (
        (back.weights, gmm.weights),
        (back.means, gmm.means),
        (back.covariances, gmm.covariances),
    ):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable gmmjax model file"):
        gj.load(tmp_path / "cut.npz")
    with np.load(path) as f:
        arrays = dict(f)
    meta = json.loads(str(arrays["metadata"]))
    meta["format_version"] = 99
    arrays["metadata"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "v99.npz", **arrays)
    with pytest.raises(ValueError, match="unsupported format"):
        gj.load(tmp_path / "v99.npz")


MISSING = """
study = "missing"
[data]
n_features = 3
n_samples = 300
n_test = 200
missing_rates = [0.3]
mechanisms = ["mar"]
[fit]
n_restarts = 2
max_iter = 60
seeds = 0
"""


# Long; `make test-all` runs it (keeping the default suite short).
@pytest.mark.slow
def test_missing_study_fits_every_method_and_em_beats_deletion_under_mar(tmp_path):
    """The missing-value study end to end on a tiny config: four methods per unit, the holes
    as asked (column 0 observed), and under MAR with 30% holes EM on the observed values is
    closer to the truth than complete-case deletion and imputes better than column means."""
    cfg = tmp_path / "m.toml"
    cfg.write_text(MISSING)
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    records = [json.loads(x) for x in (out / "runs.jsonl").read_text().splitlines()]
    by = {r["method"]: r for r in records}
    assert set(by) == {"mar_em", "complete_case", "mean_imputation", "complete_data"}
    assert all(r["status"] >= 0 for r in records)
    assert abs(by["mar_em"]["missing_fraction"] - 0.3) < 0.03
    assert by["mar_em"]["mean_error"] < by["complete_case"]["mean_error"]
    assert by["mar_em"]["impute_rmse"] < by["mar_em"]["column_mean_rmse"]
    for name in ("mean_error", "covariance_error", "imputation_error"):
        assert _is_png(out / f"{name}.png"), name


def test_missing_study_holes_follow_the_mechanism():
    from gmmjax.experiments.missing import missing_mask

    X = np.random.default_rng(0).normal(size=(20000, 5))
    for mechanism in ("mcar", "mar"):
        mask = missing_mask(X, 0.2, mechanism, np.random.default_rng(1))
        assert not mask[:, 0].any() and abs(mask.mean() - 0.2) < 0.01
    # MAR: holes follow the observed column 0, MCAR: they do not.
    mar = missing_mask(X, 0.2, "mar", np.random.default_rng(1)).any(1)
    mcar = missing_mask(X, 0.2, "mcar", np.random.default_rng(1)).any(1)
    assert X[mar, 0].mean() - X[~mar, 0].mean() > 0.5
    assert abs(X[mcar, 0].mean() - X[~mcar, 0].mean()) < 0.1
