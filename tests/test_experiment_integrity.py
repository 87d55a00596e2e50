"""The experiment runner never gives a silent wrong answer on a rerun: edited configs, two runs on
one folder, units that lost records, and configs with typos or impossible values.

The runner tests use a toy study (three records per unit, computed in microseconds) so they
check the bookkeeping alone; the config tests check the shipped studies' schemas.
"""

import copy
import fcntl
import json
import subprocess
import sys
import types

import pytest

from gmmjax.cli import main
from gmmjax.experiments import _plots, _runner
from gmmjax.experiments._config import RANGES, ConfigError, _check_table, load_config
from gmmjax.experiments._records import FolderBusyError

TOY_SCHEMA = {
    "data": {"source": "synthetic", "n_samples": 10, "separation": [1.0, 2.0], "seed": 0},
    "fit": {"tol": 1e-6, "seeds": [0]},
    "output": {"figures": ["curve"]},
}

TOY = """
study = "toy"
name = "toy"

[data]
n_samples = 10
separation = [1.0, 2.0]
"""


def _toy_study(calls):
    """A study whose records are a known function of the config; `calls` collects unit ids."""

    def plan(config):
        return [
            {"id": f"c={c:g}/seed={s}", "separation": c, "seed": s}
            for c in config["data"]["separation"]
            for s in config["fit"]["seeds"]
        ]

    def execute(config, unit):
        calls.append(unit["id"])
        value = config["data"]["n_samples"] * unit["separation"] + config["data"]["seed"]
        return [{"separation": unit["separation"], "value": value, "i": i} for i in range(3)]

    def summarise(config, records):
        rows = {}
        for r in records:
            row = rows.setdefault(r["separation"], {"separation": r["separation"], "n": 0})
            row["n"] += 1
            row["value"] = r["value"]
        return list(rows.values())

    def figures(config, records, out):
        if "curve" not in config["output"]["figures"]:
            return []
        fig, (ax,) = _plots.subplots(1, width=1, height=1)
        ax.plot([r["value"] for r in records])
        return [_plots.save(fig, out / "curve.png")]

    return types.SimpleNamespace(
        SCHEMA=TOY_SCHEMA,
        FIGURES=("curve",),
        SWEPT={"data": ("separation",), "fit": ("seeds",)},
        SUMMARY_ONLY=("output",),
        plan=plan,
        execute=execute,
        summarise=summarise,
        figures=figures,
    )


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """(run(text) -> result, calls, out): the toy study run from a config text into one folder."""
    calls = []
    monkeypatch.setitem(_runner.STUDIES, "toy", _toy_study(calls))
    out = tmp_path / "out"

    def run(text=TOY, **kwargs):
        cfg = tmp_path / "toy.toml"
        cfg.write_text(text)
        calls.clear()
        return _runner.run_experiment(cfg, out, **kwargs)

    return run, calls, out


def _lines(out):
    return (out / "runs.jsonl").read_text().splitlines()


# 1. An edited config never reuses records of other settings.


def test_edited_config_reruns_what_it_affects_and_never_mixes(toy, capsys):
    run, calls, out = toy
    first = run()
    assert calls == ["c=1/seed=0", "c=2/seed=0"]
    assert [r["value"] for r in first["rows"]] == [10.0, 20.0]

    # A different N: every unit reruns, the summary is the new one only, and the run says why
    # the old records are not used and what to do.
    edited = run(TOY.replace("n_samples = 10", "n_samples = 100"))
    assert calls == ["c=1/seed=0", "c=2/seed=0"]
    assert [(r["value"], r["n"]) for r in edited["rows"]] == [(100.0, 3), (200.0, 3)]
    assert "100.0" in (out / "summary.csv").read_text()
    printed = capsys.readouterr().out
    assert "ignoring 6 records" in printed and "other settings" in printed and "--out" in printed

    # A data seed or tol (shared keys) also reruns everything.
    run(TOY.replace("n_samples = 10", "n_samples = 100") + "seed = 3\n")
    assert len(calls) == 2

    # Extending a sweep runs the new value only; going back to the first settings reruns
    # nothing and summarises the first records.
    run(TOY.replace("[1.0, 2.0]", "[1.0, 2.0, 3.0]"))
    assert calls == ["c=3/seed=0"]
    back = run()
    assert calls == [] and [r["value"] for r in back["rows"]] == [10.0, 20.0]

    # [output] does not affect records: dropping a figure reruns nothing and removes the
    # figure of the earlier run rather than leaving it beside the new summary.
    assert (out / "curve.png").exists()
    run(TOY + "\n[output]\nfigures = []\n")
    assert calls == [] and not (out / "curve.png").exists()


@pytest.mark.parametrize("study", sorted(_runner.STUDIES))
def test_fingerprint_covers_every_shared_key_and_spares_sweeps(tmp_path, study):
    """In the shipped studies, changing any key that is not swept changes every unit's
    fingerprint; shrinking a sweep leaves the remaining units' fingerprints alone."""
    mod = _runner.STUDIES[study]
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'study = "{study}"\n')
    config = load_config(cfg, _runner.STUDIES)

    def prints(c):
        return {u["id"]: _runner.unit_fingerprint(c, mod, u) for u in mod.plan(c)}

    base = prints(config)
    for table, values in config.items():
        if not isinstance(values, dict) or table in mod.SUMMARY_ONLY:
            continue
        for key, value in values.items():
            changed = copy.deepcopy(config)
            if key in mod.SWEPT.get(table, ()):
                if isinstance(value, list):
                    changed[table][key] = value[:1]
                    kept = prints(changed)
                    assert kept and all(base[i] == f for i, f in kept.items()), (table, key)
                continue
            changed[table][key] = _other(value)
            after = prints(changed)
            assert all(after[i] != base[i] for i in base), (table, key)
    if study == "real_data":  # a per-data-set K reruns that data set only
        changed = copy.deepcopy(config)
        changed["data"]["n_components"]["iris"] = 4
        after = prints(changed)
        assert [i for i in base if after[i] != base[i]] == ["iris/seed=0"]


def _other(value):
    """A different value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [*value, value[0]]
    return {**value, "x": 1}


# 2. Two runs on one folder: the second is refused; duplicates count once.


def test_a_second_run_on_a_held_folder_is_refused_and_a_dead_lock_does_not_block(
    toy, tmp_path, capsys
):
    run, calls, out = toy
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            f"f = open({str(out / '.lock')!r}, 'a')\n"
            "fcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderBusyError, match="another run holds the output folder"):
            run()
        assert calls == [] and not (out / "runs.jsonl").exists()
        cfg = tmp_path / "toy.toml"
        assert main(["run", str(cfg), "--out", str(out)]) == 2
        assert "another run holds" in capsys.readouterr().err
    finally:
        holder.kill()  # as kill -9 would: the lock file stays, the lock goes with the process
        holder.wait()
        holder.stdout.close()
    assert (out / ".lock").exists()
    assert run(quiet=True)["executed"] == 2


def test_lock_is_released_when_a_run_fails(toy, monkeypatch):
    run, calls, out = toy

    def boom(config, unit):
        raise RuntimeError("unit failed")

    monkeypatch.setattr(_runner.STUDIES["toy"], "execute", boom)
    with pytest.raises(RuntimeError, match="unit failed"):
        run(quiet=True)
    with open(out / ".lock") as f:  # free again: a non-blocking lock succeeds at once
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_duplicate_unit_copies_count_once_and_the_first_wins(toy, capsys):
    run, calls, out = toy
    run(quiet=True)
    lines = _lines(out)
    # A second complete copy of unit c=1, as two unlocked runs of an older version wrote them.
    copy_ = [json.loads(x) for x in lines[:3]]
    for r in copy_:
        r["write"], r["value"] = "another-write", -1.0
    with (out / "runs.jsonl").open("a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in copy_))
    result = run()
    assert calls == []
    assert [(r["value"], r["n"]) for r in result["rows"]] == [(10.0, 3), (20.0, 3)]
    assert "1 units were written twice; the first copy counts" in capsys.readouterr().out


# 3. A unit that lost records is not done.


def test_a_unit_with_a_missing_record_is_rerun_and_its_rest_ignored(toy, capsys):
    run, calls, out = toy
    run(quiet=True)
    lines = _lines(out)
    del lines[1]  # the middle record of unit c=1
    (out / "runs.jsonl").write_text("\n".join(lines) + "\n")
    result = run()
    assert calls == ["c=1/seed=0"]
    assert [r["n"] for r in result["rows"]] == [3, 3]  # the 2 orphans are not counted
    assert "ignoring 2 records of unit writes that lost lines" in capsys.readouterr().out
    # Records without a fingerprint (an older format) are rerun, not trusted.
    old = [{k: v for k, v in json.loads(x).items() if k != "fingerprint"} for x in _lines(out)]
    (out / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    run(quiet=True)
    assert calls == ["c=1/seed=0", "c=2/seed=0"]


# 4. Typos and impossible values are refused with the table, key, value and what is allowed.

EM = 'study = "em_vs_gradient"\n'
RESTARTS = 'study = "restarts"\n'
MISSING = 'study = "missing"\n'
REAL = 'study = "real_data"\n'


@pytest.mark.parametrize(
    "text, message",
    [
        (EM + '[output]\nfigures = ["gap_vs_iter"]\n', "[output] figures has unknown"),
        (EM + '[fit]\nlearning_rates = { adma = 0.1 }\nmethods = ["adam"]\n', "'adma'"),
        (EM + "[fit]\nlearning_rates = { lbfgs = 0.1 }\n", "expected one of ['adam', 'sgd']"),
        (EM + "[fit]\nlearning_rates = { adam = 0 }\n", "learning_rates.adam = 0.0: must be > 0"),
        (EM + '[fit]\nmethods = ["em"]\nlearning_rates = { adam = 0.1 }\n', "not in [fit] methods"),
        (EM + "[fit]\nlearning_rates = 0.1\n", "[fit] learning_rates must be a table"),
        (EM + '[fit]\nmethods = ["em", "lbgfs"]\n', "[fit] methods = 'lbgfs': must be one of"),
        (EM + '[fit]\ninit = "kmeans"\n', "[fit] init = 'kmeans': must be one of"),
        (EM + '[fit]\nprior = "mclst"\n', "[fit] prior = 'mclst'"),
        (EM + "[data]\nseed = 1.5\n", "[data] seed must be a int, got 1.5"),
        (EM + "[fit]\nseeds = [0, 1.5]\n", "[fit] seeds must be a int, got 1.5"),
        (EM + "[data]\nn_components = 2.5\n", "[data] n_components must be a int, got 2.5"),
        (RESTARTS + "[data]\nn_components = [2, 2.5]\n", "n_components must be a int, got 2.5"),
        (EM + "[data]\nn_samples = 0\n", "[data] n_samples = 0: must be >= 1"),
        (EM + "[fit]\nn_restarts = -2\n", "[fit] n_restarts = -2: must be >= 1"),
        (EM + "[fit]\nseeds = [-1]\n", "[fit] seeds = -1: must be >= 0"),
        (EM + "[data]\nseparation = [0.0]\n", "[data] separation = 0.0: must be > 0"),
        (EM + "[data]\nseparation = [inf]\n", "[data] separation = inf: must be a finite"),
        (EM + "[fit]\ntol = nan\n", "[fit] tol = nan: must be a finite number"),
        (EM + "[data]\nimbalance = 0.5\n", "[data] imbalance = 0.5: must be >= 1.0"),
        (EM + "[data]\nseparation = [1, 1.0]\n", "a value is repeated"),
        (EM + "[fit]\nseeds = []\n", "[fit] seeds = []: give at least one value"),
        (EM + '[data]\nsource = "builtin"\n', "[data] source = 'builtin': this study reads"),
        (EM + "[data]\nn_components = 9\nn_samples = 5\n", "n_components = 9 exceeds n_samples"),
        (RESTARTS + "[options]\nbest_of = [0, 2]\n", "[options] best_of = 0: must be >= 1"),
        (RESTARTS + "[options]\nsuccess_tol = -1e-3\n", "success_tol = -0.001: must be >= 0"),
        (REAL + "[data]\nn_components = { irs = 3 }\n", "unknown key 'irs'"),
        (REAL + "[data]\nn_components = { iris = 2.5 }\n", "n_components.iris must be a int"),
        (REAL + '[data]\nnames = ["iris"]\nn_components = {}\n', "no entry for ['iris']"),
        (REAL + '[data]\nnames = ["iris", "wines"]\n', "[data] names = 'wines'"),
        (REAL + "[data]\ndigits_pca = 0\n", "[data] digits_pca = 0: must be >= 1"),
        (MISSING + "[data]\nmissing_rates = [0.2, 1.0]\n", "missing_rates has [1.0]"),
        (MISSING + "[data]\nmissing_rates = [0.0]\n", "missing_rates = 0.0: must be > 0"),
        (MISSING + '[data]\nmechanisms = ["mnar"]\n', "mechanisms = 'mnar': must be one of"),
        (MISSING + "[data]\nn_features = [1, 4]\n", "needs at least 2 features"),
    ],
)
def test_bad_values_are_refused_by_name(tmp_path, text, message):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(cfg, _runner.STUDIES)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_every_schema_value_has_a_rule(tmp_path):
    """A new numeric key needs a range in RANGES, a new table-valued key a rule in
    _check_table; the shipped configs all pass."""
    for name, mod in _runner.STUDIES.items():
        for table, values in mod.SCHEMA.items():
            for key, default in values.items():
                item = default[0] if isinstance(default, list) else default
                if isinstance(item, dict):
                    assert _check_table("where", key, {}) == {}
                elif isinstance(item, int | float) and not isinstance(item, bool):
                    assert key in RANGES, (name, table, key)
        assert set(mod.SCHEMA["output"]["figures"]) <= set(mod.FIGURES)


def test_figures_are_written_atomically(tmp_path):
    fig, (ax,) = _plots.subplots(1, width=1, height=1)
    ax.plot([0, 1])
    path = _plots.save(fig, tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.endswith("f.png")
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]  # no temporary left behind
