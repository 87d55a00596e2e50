"""Experiment configs: TOML files read with tomllib, checked against each study's schema.

A config has a top-level `study` naming the study, and tables `[data]`, `[fit]`, `[options]`,
`[output]`. Every key must be known to the study's schema (unknown keys are an error, so a typo
never silently falls back to a default); missing keys take the schema's defaults.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path


class ConfigError(ValueError):
    """A config that cannot be run; the message is one line naming the key and the fix."""


def load_config(path: str | Path, schemas: dict[str, dict]) -> dict:
    """Read `path`, check it against `schemas[study]`, and fill in defaults."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    study = raw.pop("study", None)
    if study not in schemas:
        raise ConfigError(f"{path}: 'study' must be one of {sorted(schemas)}, got {study!r}")
    schema = schemas[study]
    config = {"study": study, "name": raw.pop("name", path.stem)}
    for table in raw:
        if table not in schema:
            raise ConfigError(
                f"{path}: unknown table or key {table!r}; expected one of "
                f"{sorted(['study', 'name', *schema])}"
            )
    for table, defaults in schema.items():
        given = raw.get(table, {})
        if not isinstance(given, dict):
            raise ConfigError(f"{path}: {table!r} must be a table ([{table}])")
        merged = copy.deepcopy(defaults)
        for key, value in given.items():
            if key not in defaults:
                raise ConfigError(
                    f"{path}: unknown key {key!r} in [{table}]; expected one of {sorted(defaults)}"
                )
            merged[key] = _check_type(path, table, key, value, defaults[key])
        config[table] = merged
    return config


def _check_type(path, table, key, value, default):
    if default is None or isinstance(default, dict):
        return value
    expected = type(default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is list and not isinstance(value, list):
        value = [value]  # a single value where a sweep is allowed
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"{path}: [{table}] {key} must be a {expected.__name__}, got {value!r}")
    return value


def prior_option(fit: dict):
    """[fit] prior as `fit`'s prior= takes it: "mclust" or "none" (None)."""
    prior = fit["prior"]
    if prior not in ("mclust", "none"):
        raise ConfigError(f'[fit] prior must be "mclust" or "none", got {prior!r}')
    return None if prior == "none" else prior
