"""Drive one study: plan the units, skip those already in runs.jsonl, run, summarise, plot."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jax

from . import convergence_rate, em_vs_gradient, missing, real_data, restarts
from ._config import load_config
from ._records import (
    RECORD_FORMAT,
    Progress,
    Units,
    append_records,
    collect_units,
    hold_folder,
    read_records,
    stamp,
    write_csv,
)

STUDIES = {
    "em_vs_gradient": em_vs_gradient,
    "restarts": restarts,
    "convergence_rate": convergence_rate,
    "real_data": real_data,
    "missing": missing,
}


def run_experiment(config_path, out_dir=None, *, quiet: bool = False) -> dict:
    """Run (or resume) the experiment of `config_path`; returns paths and the summary rows.

    Records go to `<out_dir>/runs.jsonl` as each unit finishes (one atomic append per unit), so
    an interrupted run loses at most the unit in flight, and a rerun skips finished units. A
    unit is finished only when all its records are there and were written for the same
    settings (`unit_fingerprint`): after an edit to the config, the units it affects are run
    again and their old records are ignored. One run at a time holds the folder.
    """
    if not jax.config.jax_enable_x64:
        # Rates and small gaps are only meaningful in float64 (float32 log-likelihood increments
        # are noise below ~1e-6 relative); the `gmmjax` command switches it on.
        raise ValueError(
            "experiments run in float64: call jax.config.update('jax_enable_x64', True)"
        )
    config = load_config(config_path, STUDIES)
    study = STUDIES[config["study"]]
    out = Path(out_dir) if out_dir is not None else Path("results") / config["name"]
    out.mkdir(parents=True, exist_ok=True)
    with hold_folder(out):
        return _run(config, study, out, quiet)


def unit_fingerprint(config: dict, study, unit: dict) -> str:
    """sha256 of what a unit's records depend on: the record format, the study, its own
    settings (`unit`), and every key of the config that all units share.

    Left out: the swept keys (the unit carries its own value of each, so extending a sweep
    reruns only the new units), the tables only the summary reads (`study.SUMMARY_ONLY`), and
    the config's name. Canonical JSON (sorted keys; ints stay ints, floats floats, as the config
    check leaves them) makes the hash stable across runs and machines.
    """
    shared = {
        table: {k: v for k, v in values.items() if k not in study.SWEPT.get(table, ())}
        for table, values in config.items()
        if isinstance(values, dict) and table not in study.SUMMARY_ONLY
    }
    payload = {
        "format": RECORD_FORMAT,
        "study": config["study"],
        "shared": shared,
        "unit": unit,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _run(config: dict, study, out: Path, quiet: bool) -> dict:
    runs = out / "runs.jsonl"
    units = study.plan(config)
    _check_unit_ids(config, units)
    keys = {u["id"]: (u["id"], unit_fingerprint(config, study, u)) for u in units}
    found = collect_units(read_records(runs))
    todo = [u for u in units if keys[u["id"]] not in found.complete]
    if not quiet:
        print(f"{config['name']}: {len(units)} runs, {len(units) - len(todo)} already done")
        for note in _notes(found, set(keys.values()), runs):
            print(f"{config['name']}: {note}")
    progress = Progress(len(units), config["name"]) if not quiet else None
    if progress:
        progress.done = len(units) - len(todo)
    for unit in todo:
        records = study.execute(config, unit)
        if not records:  # a unit with no records could never be told apart from a lost one
            raise RuntimeError(f"{config['study']}: unit {unit['id']} produced no records")
        append_records(runs, stamp(records, *keys[unit["id"]]))
        if progress:
            progress.advance(unit["id"])
    found = collect_units(read_records(runs))
    missing = [u["id"] for u in units if keys[u["id"]] not in found.complete]
    if missing:  # only if runs.jsonl was changed under the lock, e.g. by hand
        raise RuntimeError(f"{runs}: the records of {missing} did not read back whole; rerun")
    # In plan order, each unit once: the summary never counts a unit twice or an earlier one.
    records = [r for u in units for r in found.complete[keys[u["id"]]]]
    rows = study.summarise(config, records)
    write_csv(out / "summary.csv", rows)
    figures = study.figures(config, records, out)
    _remove_stale_figures(study, figures, out)
    return {
        "out": out,
        "runs": runs,
        "summary": out / "summary.csv",
        "rows": rows,
        "figures": figures,
        "executed": len(todo),
    }


def _check_unit_ids(config: dict, units: list[dict]) -> None:
    """Each unit's id names it alone: records are filed and found by id, so two units sharing
    one would run under one key and the summary would show the first unit's records twice."""
    seen: dict[str, dict] = {}
    for unit in units:
        other = seen.setdefault(unit["id"], unit)
        if other is not unit:
            raise RuntimeError(
                f"{config['study']}: units {other} and {unit} share the id {unit['id']!r}; "
                "a study's plan must give distinct settings distinct ids (format floats with "
                "experiments._config.setting_text)"
            )


def _notes(found: Units, current: set, runs: Path) -> list[str]:
    """One line per kind of record in runs.jsonl that this run does not use, and why."""
    notes = []
    stale = found.stale(current)
    if stale:
        notes.append(
            f"ignoring {stale} records in {runs} written for other settings (the config was "
            "edited since); they are kept there but not summarised. Use a new output folder "
            "(--out) to keep the two studies apart, or delete runs.jsonl to drop them"
        )
    if found.partial:
        notes.append(
            f"ignoring {found.partial} records of unit writes that lost lines; "
            "those units run again"
        )
    if found.duplicates:
        notes.append(f"{found.duplicates} units were written twice; the first copy counts")
    if found.unstamped:
        notes.append(
            f"ignoring {found.unstamped} records without a unit fingerprint (an older format); "
            "their units run again"
        )
    return notes


def _remove_stale_figures(study, drawn: list[str], out: Path) -> None:
    """Delete this study's figures that this run did not draw (dropped from [output], or not
    drawable for these settings), so every figure in the folder shows the current records."""
    keep = {Path(p).name for p in drawn}
    for name in study.FIGURES:
        path = out / f"{name}.png"
        if path.name not in keep:
            path.unlink(missing_ok=True)
