"""Reproducible studies driven by TOML configs; each writes `results/<name>/`.

A study module defines `SCHEMA` (the config tables and their defaults), `FIGURES` (the figure
names `[output] figures` may list), `SWEPT` (per table, the keys whose values are spread over
units: each unit carries its own value), `SUMMARY_ONLY` (tables that no unit's records depend
on), `plan(config)` (the units of work, each with a stable `id`), `execute(config, unit)`
(records for runs.jsonl), `summarise(config, records)` (rows for summary.csv) and
`figures(config, records, out_dir)`.
"""

from ._runner import STUDIES as STUDIES
from ._runner import run_experiment as run_experiment
