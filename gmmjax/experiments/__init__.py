"""Reproducible studies driven by TOML configs; each writes `results/<name>/`.

A study module defines `SCHEMA` (the config tables and their defaults), `plan(config)` (the
units of work, each with a stable `id`), `execute(config, unit)` (records for runs.jsonl),
`summarise(config, records)` (rows for summary.csv) and `figures(config, records, out_dir)`.
"""

from ._runner import STUDIES as STUDIES
from ._runner import run_experiment as run_experiment
