"""Drive one study: plan the units, skip those already in runs.jsonl, run, summarise, plot."""

from __future__ import annotations

from pathlib import Path

import jax

from . import convergence_rate, em_vs_gradient, real_data, restarts
from ._config import load_config
from ._records import Progress, append_records, read_records, write_csv

STUDIES = {
    "em_vs_gradient": em_vs_gradient,
    "restarts": restarts,
    "convergence_rate": convergence_rate,
    "real_data": real_data,
}


def run_experiment(config_path, out_dir=None, *, quiet: bool = False) -> dict:
    """Run (or resume) the experiment of `config_path`; returns paths and the summary rows.

    Records go to `<out_dir>/runs.jsonl` as each unit finishes (one atomic append per unit), so
    an interrupted run loses at most the unit in flight, and a rerun skips finished units.
    """
    if not jax.config.jax_enable_x64:
        # Rates and small gaps are only meaningful in float64 (float32 log-likelihood increments
        # are noise below ~1e-6 relative); the `gmmjax` command switches it on.
        raise ValueError(
            "experiments run in float64: call jax.config.update('jax_enable_x64', True)"
        )
    config = load_config(config_path, {name: mod.SCHEMA for name, mod in STUDIES.items()})
    study = STUDIES[config["study"]]
    out = Path(out_dir) if out_dir is not None else Path("results") / config["name"]
    out.mkdir(parents=True, exist_ok=True)
    runs = out / "runs.jsonl"
    done = {r["unit"] for r in read_records(runs)}
    units = study.plan(config)
    todo = [u for u in units if u["id"] not in done]
    if not quiet:
        print(f"{config['name']}: {len(units)} runs, {len(units) - len(todo)} already done")
    progress = Progress(len(units), config["name"]) if not quiet else None
    if progress:
        progress.done = len(units) - len(todo)
    for unit in todo:
        records = study.execute(config, unit)
        for r in records:
            r["unit"] = unit["id"]
        append_records(runs, records)
        if progress:
            progress.advance(unit["id"])
    records = read_records(runs)
    rows = study.summarise(config, records)
    write_csv(out / "summary.csv", rows)
    figures = study.figures(config, records, out)
    return {
        "out": out,
        "runs": runs,
        "summary": out / "summary.csv",
        "rows": rows,
        "figures": figures,
        "executed": len(todo),
    }
