"""Experiment configs: TOML files read with tomllib, checked against each study's schema.

A config has a top-level `study` naming the study, and tables `[data]`, `[fit]`, `[options]`,
`[output]`. Every key must be known to the study's schema (unknown keys are an error, so a typo
never silently falls back to a default); missing keys take the schema's defaults. Values are
checked as well as keys: the type of the default (no silent rounding of 2.5 to 2), the range
of each number (no zero counts, negative seeds or non-finite floats), the names a string may
take (methods, figures, data sets), and the keys and values of the option tables.
"""

from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path

from .._covariance import COV_TYPES
from .._datasets import DATASETS
from .._fit import METHOD_NAMES
from .._gradient import DEFAULT_LEARNING_RATE
from .._validate import INIT_METHODS


class ConfigError(ValueError):
    """A config that cannot be run; the message is one line naming the key and the fix."""


# The range of every numeric key, by name: a name means the same thing in every study, and a
# test checks that each numeric key of every schema is listed. (lowest, whether it is allowed)
RANGES = {
    "n_components": (1, True),
    "n_features": (1, True),
    "n_samples": (1, True),
    "n_test": (1, True),
    "missing_rates": (0.0, False),
    "n_restarts": (1, True),
    "max_iter": (1, True),
    "digits_pca": (1, True),
    "best_of": (1, True),
    "seed": (0, True),
    "seeds": (0, True),
    "tol": (0.0, True),
    "reg_covar": (0.0, True),
    "success_tol": (0.0, True),
    "separation": (0.0, False),
    "imbalance": (1.0, True),
    "eccentricity": (1.0, True),
}

# The names a string (or each string of a list) may take, by key.
CHOICES = {
    "cov_type": COV_TYPES,
    "init": INIT_METHODS,
    "methods": METHOD_NAMES,
    "prior": ("mclust", "none"),
    "names": DATASETS,
    "mechanisms": ("mcar", "mar"),
}

# Lists that may be empty (an empty sweep or method list would run nothing and summarise nothing).
MAY_BE_EMPTY = ("figures",)


def load_config(path: str | Path, studies: dict) -> dict:
    """Read `path`, check it against `studies[study]` (a study module: its SCHEMA and the
    FIGURES it can draw), and fill in defaults."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    study = raw.pop("study", None)
    if study not in studies:
        raise ConfigError(f"{path}: 'study' must be one of {sorted(studies)}, got {study!r}")
    schema = studies[study].SCHEMA
    name = raw.pop("name", path.stem)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{path}: 'name' must be a non-empty string, got {name!r}")
    config = {"study": study, "name": name}
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
            merged[key] = _check_value(path, table, key, value, defaults[key])
        config[table] = merged
    _check_study(path, config, studies[study])
    return config


def _check_value(path, table, key, value, default):
    """`value` of [table] key converted to the default's type and checked against its range
    or choices; ConfigError otherwise."""
    where = f"{path}: [{table}] {key}"
    if isinstance(default, dict):
        return _check_table(where, key, value)
    if isinstance(default, list):
        if not isinstance(value, list):
            value = [value]  # a single value where a sweep is allowed
        items = [_check_scalar(where, key, v, type(default[0])) for v in value]
        if not items and key not in MAY_BE_EMPTY:
            raise ConfigError(f"{where} = []: give at least one value")
        if len(set(map(repr, items))) < len(items):
            raise ConfigError(f"{where} = {value!r}: a value is repeated; list each once")
        return items
    return _check_scalar(where, key, value, type(default))


def _check_scalar(where, key, value, expected, bound=None):
    """One value of type `expected` (an int is taken where a float is expected) within `bound`
    (lowest, whether it is allowed), by default the key's entry in RANGES."""
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"{where} must be a {expected.__name__}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} = {value!r}: must be a finite number")
    low, inclusive = bound or RANGES.get(key, (None, True))
    if low is not None and (value < low or (value == low and not inclusive)):
        raise ConfigError(f"{where} = {value!r}: must be {'>=' if inclusive else '>'} {low}")
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"{where} = {value!r}: must be one of {list(CHOICES[key])}")
    return value


def _check_table(where, key, value):
    """The option tables: learning_rates (per gradient method, > 0) and n_components (per
    data set, an integer >= 1)."""
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table ({key} = {{ name = value }}), not {value!r}")
    if key == "learning_rates":
        allowed, expected, bound = tuple(DEFAULT_LEARNING_RATE), float, (0.0, False)
    elif key == "n_components":
        allowed, expected, bound = DATASETS, int, (1, True)
    else:  # a new table-valued schema key needs its rule here
        raise AssertionError(f"no rule for the table {key!r}")
    for name in value:
        if name not in allowed:
            raise ConfigError(f"{where}: unknown key {name!r}; expected one of {list(allowed)}")
    return {
        name: _check_scalar(f"{where}.{name}", None, v, expected, bound)
        for name, v in value.items()
    }


def _check_study(path, config, study) -> None:
    """What involves more than one key: figure names, the data source, learning rates only for
    listed methods, a K for every data set, no more components than samples."""
    figures = config["output"]["figures"]
    unknown = [f for f in figures if f not in study.FIGURES]
    if unknown:
        raise ConfigError(
            f"{path}: [output] figures has unknown {unknown}; "
            f"this study draws {list(study.FIGURES)}"
        )
    source = config["data"]["source"]
    if source != study.SCHEMA["data"]["source"]:
        raise ConfigError(
            f"{path}: [data] source = {source!r}: this study reads only "
            f"{study.SCHEMA['data']['source']!r}"
        )
    fit, data = config["fit"], config["data"]
    stray = sorted(set(fit.get("learning_rates", {})) - set(fit.get("methods", ())))
    if stray:
        raise ConfigError(
            f"{path}: [fit] learning_rates has {stray}, not in [fit] methods {fit['methods']}; "
            "drop them or add the methods"
        )
    if "names" in data:
        missing = [n for n in data["names"] if n not in data["n_components"]]
        if missing:
            raise ConfigError(
                f"{path}: [data] n_components has no entry for {missing}; add e.g. "
                f"n_components = {{ {missing[0]} = 3 }}"
            )
    too_many = [r for r in data.get("missing_rates", ()) if r >= 1.0]
    if too_many:
        raise ConfigError(
            f"{path}: [data] missing_rates has {too_many}: a fraction of the entries must be < 1"
        )
    if "missing_rates" in data and min(data["n_features"]) < 2:
        raise ConfigError(
            f"{path}: [data] n_features = {data['n_features']}: the missing-value study keeps "
            "column 0 observed and needs at least 2 features"
        )
    if "n_samples" in data and "n_components" in data:
        k = data["n_components"]
        k = max(k) if isinstance(k, list) else k
        if k > data["n_samples"]:
            raise ConfigError(
                f"{path}: [data] n_components = {k} exceeds n_samples = {data['n_samples']}"
            )


def setting_text(value) -> str:
    """A swept value as text for unit ids, file names and figure labels: exact, so that two
    distinct values never share a text (3.0 and 3.0000001 stay apart).

    A float takes the short `g` form when that form reads back as the same float (the ids
    older runs wrote, so their records stay resumable), its repr otherwise (the shortest text
    that reads back exactly). Either way the text parses to the value, hence distinct values
    give distinct texts.
    """
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return str(value)


def prior_option(fit: dict):
    """[fit] prior as `fit`'s prior= takes it: "mclust" or "none" (None)."""
    prior = fit["prior"]
    if prior not in ("mclust", "none"):
        raise ConfigError(f'[fit] prior must be "mclust" or "none", got {prior!r}')
    return None if prior == "none" else prior
