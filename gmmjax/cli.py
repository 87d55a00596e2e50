"""The `gmmjax` command: run experiments from configs, fit a data file, run the demo."""

from __future__ import annotations

import argparse
import csv
import math
import os
import shlex
import sys
from importlib import resources
from pathlib import Path

import numpy as np

# Text data is read by our own small parser (the csv module for .csv, str.split for .txt)
# rather than np.loadtxt/genfromtxt: loadtxt has no header rule of its own (the old retry with
# skiprows=1 dropped a data row whenever row 1 failed to parse) and its errors do not name the
# cell; genfromtxt fills bad or missing cells with NaN. Here a first line is a header only when
# every field is non-numeric, and every other problem names the file, line and column.


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# Cells read as a missing value with --missing em (R writes NA, pandas and NumPy nan).
_MISSING_CELLS = ("", "na", "nan")


def _parse_cell(
    path: str, line: int, column: int, text: str, first: bool = False, missing: bool = False
) -> float:
    hint = " (a header line must hold only column names)" if first else ""
    if ";" in text or "\t" in text.strip():
        hint += " (columns of a .csv are separated by commas, of a .txt by whitespace)"
    if text.strip().lower() in _MISSING_CELLS:
        if missing:
            return math.nan
        hint += " (for a missing value, fit with --missing em)"
    if not text.strip():
        raise ValueError(
            f"{path}: line {line}, column {column}: empty cell (missing values are not supported "
            "unless you fit with --missing em)"
        )
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"{path}: line {line}, column {column}: could not read {text.strip()!r} as a number"
            + hint
        ) from None
    if not math.isfinite(value):
        raise ValueError(
            f"{path}: line {line}, column {column}: {text.strip()!r} is not a finite number "
            "(NaN and inf are not supported; remove or impute that row, or for a missing "
            "value leave the cell empty and fit with --missing em)"
        )
    return value


def _split_whitespace(text: str) -> list[str]:
    """The fields of a .txt line; quoted fields ("col a" "col b") may hold spaces."""
    if '"' in text or "'" in text:
        try:
            return shlex.split(text, posix=True)
        except ValueError:  # an unbalanced quote: the plain split, so a cell names it
            pass
    return text.split()


def _text_records(path: Path, csv_format: bool):
    """(line number, fields) for every line that is not blank or a `#` comment."""
    # utf-8-sig: a byte-order mark (spreadsheet exports) is not part of the first field.
    # newline="": the csv module reads \n, \r\n and \r line endings itself.
    with open(path, encoding="utf-8-sig", newline="" if csv_format else None) as f:
        if csv_format:
            reader = csv.reader(f)
            for fields in reader:
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue
                if fields[0].lstrip().startswith("#"):
                    continue
                yield reader.line_num, fields
        else:
            for number, text in enumerate(f, start=1):
                fields = _split_whitespace(text)
                if fields and not fields[0].startswith("#"):
                    yield number, fields


def _load_text(path: Path, csv_format: bool, missing: bool = False) -> np.ndarray:
    name = str(path)
    rows: list[list[float]] = []
    width = header_fields = None
    first_data_line = None
    try:
        for line, fields in _text_records(path, csv_format):
            if width is None and header_fields is None:
                if not any(_is_number(x) for x in fields) and any(x.strip() for x in fields):
                    header_fields = len(fields)  # column names: every field non-numeric
                    continue
            if width is None:
                width, first_data_line = len(fields), line
                if header_fields is not None and header_fields != width:
                    raise ValueError(
                        f"{name}: the header line has {header_fields} column name(s) but line "
                        f"{line} has {width} value(s)"
                    )
            elif len(fields) != width:
                raise ValueError(
                    f"{name}: line {line} has {len(fields)} value(s), expected {width} "
                    f"(as on line {first_data_line})"
                )
            try:
                rows.append([float(x) for x in fields])
            except ValueError:
                first = line == first_data_line and header_fields is None
                rows.append(
                    [_parse_cell(name, line, j, x, first, missing) for j, x in enumerate(fields, 1)]
                )
            if not all(math.isfinite(v) for v in rows[-1]):
                for j, x in enumerate(fields, 1):
                    _parse_cell(name, line, j, x, missing=missing)
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{name}: not a UTF-8 text file ({err.reason} at byte {err.start})"
        ) from None
    except csv.Error as err:
        raise ValueError(f"{name}: not a readable CSV file: {err}") from None
    if not rows:
        what = "only a header line" if header_fields is not None else "the file is empty"
        raise ValueError(f"{name}: no data rows ({what}); expected an (N, D) matrix")
    return np.array(rows, dtype=np.float64)


def _load_npy(path: Path, missing: bool = False) -> np.ndarray:
    expected = "expected a numeric array of shape (N, D) with N >= 1 and D >= 1"
    try:
        with open(path, "rb") as f:
            np.lib.format.read_magic(f)
            f.seek(0)
            # Never unpickles: an object array is refused here.
            X = np.lib.format.read_array(f, allow_pickle=False)
    except (ValueError, EOFError) as err:
        raise ValueError(f"{path}: not a readable .npy file ({err}); {expected}") from None
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{path}: dtype {X.dtype} is not numeric; {expected}")
    if X.ndim != 2:
        hint = "; for a single feature, reshape to (N, 1)" if X.ndim == 1 else ""
        raise ValueError(f"{path}: array of shape {X.shape}; {expected}{hint}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{path}: empty array of shape {X.shape}; {expected}")
    bad = np.argwhere(~np.isfinite(X)) if X.dtype.kind == "f" else ()
    if missing and len(bad):
        bad = np.argwhere(np.isinf(X))
    if len(bad):
        i, j = bad[0]
        raise ValueError(
            f"{path}: X[{i}, {j}] is {X[i, j]} (0-based; {len(bad)} non-finite value(s)); "
            "NaN and inf are not supported, remove or impute those rows (or, for NaN marking "
            "missing values, fit with --missing em)"
        )
    return X


def _load_matrix(path: str, missing: bool = False) -> np.ndarray:
    """The (N, D) data matrix in `path`: .npy, .csv (comma-separated) or .txt (whitespace).

    Text files: blank lines and lines starting with `#` are skipped; the first remaining line is
    a header only if every field is non-numeric (column names); every other line must have the
    same number of finite numbers. Any problem is a ValueError naming the file, line and column.
    With `missing`, an empty cell, NA or nan (and NaN in a .npy) is read as NaN, a missing value.
    """
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"data file {path} is a directory; pass a .npy, .csv or .txt file")
    if not p.is_file():
        raise ValueError(f"data file not found: {path}")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return _load_npy(p, missing)
    if suffix in (".csv", ".txt"):
        return _load_text(p, csv_format=suffix == ".csv", missing=missing)
    raise ValueError(f"unsupported data file {path!r}: use .npy, .csv or .txt")


def _cmd_run(args) -> None:
    from ._compare import format_table
    from .experiments._runner import run_experiment

    if args.out is not None and not args.out:
        raise ValueError('--out "": give an output folder, such as results/my-study')
    result = run_experiment(args.config, args.out)
    print(format_table(result["rows"]))
    print(f"\nruns:    {result['runs']}\nsummary: {result['summary']}")
    for f in result["figures"]:
        print(f"figure:  {f}")


def _cmd_demo(args) -> None:
    config = resources.files("gmmjax") / "experiments" / "demo.toml"
    with resources.as_file(config) as path:
        args.config = str(path)
        args.out = "results/demo" if args.out is None else args.out
        _cmd_run(args)


def _cmd_fit(args) -> None:
    import jax

    import gmmjax as gj

    from ._io import check_save_path

    # Every output path is checked before the fit, not after it.
    if args.out is not None:
        if not args.out:
            raise ValueError('--out "": give a file name for the model, such as model.npz')
        check_save_path(args.out)
    _check_figure_path(args.plot)
    if args.out and args.plot and _same_file(args.out, args.plot):
        raise ValueError(
            f"--out {args.out} and --plot {args.plot} name the same file: the figure would "
            "overwrite the model; give them different paths (e.g. model.npz and model.png)"
        )
    _check_not_data(args.data, out=args.out, plot=args.plot)
    X = _load_matrix(args.data, missing=args.missing == "em")
    if args.plot and X.shape[1] < 2:
        raise ValueError(f"--plot draws two or more coordinates; {args.data} has one column")
    if X.shape[0] < args.k:
        raise ValueError(
            f"{args.data}: {X.shape[0]} data row(s), fewer than the {args.k} components asked "
            "for with -k; lower -k or pass more data"
        )
    key = jax.random.key(args.seed)
    res = gj.fit(
        X,
        args.k,
        key=key,
        method=args.method,
        cov_type=args.cov,
        n_restarts=args.restarts,
        max_iter=args.max_iter,
        tol=args.tol,
        prior=None if args.prior == "none" else args.prior,
        missing=args.missing,
    )
    best = res.best
    n = X.shape[0]
    print(
        f"data: {args.data} ({n} x {X.shape[1]}), K={args.k}, cov={args.cov}, "
        f"method={args.method}, restarts={args.restarts}"
    )
    best_ll = float(res.log_likelihood[res.best_index])
    scoring = "marginal" if args.missing == "em" else "propagate"
    if args.missing == "em":
        print(f"missing values: {int(np.isnan(X).sum())} of {X.size}, fitted by EM on the observed")
    penalised = (
        f", objective {float(res.objective[res.best_index]):.6f}" if args.prior != "none" else ""
    )
    print(
        f"best restart {int(res.best_index)}: mean log-likelihood {best_ll:.6f}{penalised}, "
        f"BIC {float(gj.bic(best, X, missing=scoring)):.2f}, "
        f"AIC {float(gj.aic(best, X, missing=scoring)):.2f}"
    )
    print("restart  log-likelihood/N  iterations  status")
    for r in range(args.restarts):
        status = gj.Status(int(res.status[r])).name.lower()
        print(f"{r:7d}  {float(res.log_likelihood[r]):16.6f}  {int(res.n_iter[r]):10d}  {status}")
    if args.out:
        gj.save(best, args.out)
        print(f"model written to {args.out}")
    if args.plot:
        complete = X[~np.isnan(X).any(axis=1)]  # rows with holes have no place to be drawn

        def draw():
            drawn = gj.plot.ellipses(best, complete)
            return getattr(drawn, "figure", drawn)  # Axes for two coordinates, else a Figure

        _write_figure(draw, args.plot)


def _cmd_select(args) -> None:
    import jax

    import gmmjax as gj

    _check_figure_path(args.plot)
    _check_not_data(args.data, plot=args.plot)
    X = _load_matrix(args.data, missing=False)
    ks = range(1, min(args.k_max, X.shape[0]) + 1)
    models = "all" if args.models == "all" else tuple(m.strip() for m in args.models.split(","))
    sel = gj.select(
        X,
        ks,
        cov_types=models,
        criterion=args.criterion,
        n_restarts=args.restarts,
        key=jax.random.key(args.seed),
        max_iter=args.max_iter,
        tol=args.tol,
        prior=None if args.prior == "none" else args.prior,
    )
    print(
        f"data: {args.data} ({X.shape[0]} x {X.shape[1]}), K = 1..{ks[-1]}, "
        f"{args.restarts} restarts per cell, {args.criterion.upper()} (lower is better; "
        "mclust prints the negative of BIC)"
    )
    print(sel.table())
    print(f"best: {sel.cov_type}, K = {sel.n_components}")
    if args.plot:
        _write_figure(lambda: sel.plot().figure, args.plot)


def _check_figure_path(path) -> None:
    """ValueError naming the fix unless a figure can be written at `path` (None: no figure):
    a .png, .pdf or .svg file name in an existing, writable folder."""
    if path is None:
        return
    if not path.endswith((".png", ".pdf", ".svg")):
        raise ValueError(f"--plot {path!r}: give a .png, .pdf or .svg path, such as fit.png")
    if os.path.isdir(path):
        raise ValueError(f"--plot {path}: is a directory; give a file name such as fit.png")
    from ._io import folder_problem  # here: `gmmjax --help` does not import JAX

    problem = folder_problem(path)
    if problem:
        raise ValueError(f"--plot {path}: {problem}")


def _check_not_data(data: str, **outputs) -> None:
    """ValueError when an output path names the data file (writing would destroy the data)."""
    for option, path in outputs.items():
        if path and _same_file(path, data):
            raise ValueError(
                f"--{option} {path} is the data file: writing it would overwrite the data; "
                "give another path"
            )


def _same_file(a: str, b: str) -> bool:
    """Whether two output paths name one file (through links and relative spellings)."""
    return os.path.realpath(a) == os.path.realpath(b)


def _write_figure(draw, path) -> None:
    """Draw a figure off screen (Agg) with `draw()`, write it to `path` and close it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = draw()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"figure written to {path}")


# Spelled out (not imported from gmmjax._covariance) so that `gmmjax --help` need not import
# jax; a test checks they are the same.
COV_TYPES = (
    "full", "diag", "spherical", "tied", "EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE",
    "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV",
)  # fmt: skip

# The largest seed jax.random.key takes with float64 (int64) enabled, as the command does.
_MAX_SEED = 2**63 - 1


def _int_at_least(low: int, high: int | None = None):
    """An argparse `type`: an integer in [low, high]; anything else is a usage error (exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f">= {low}" if high is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"expected an integer {bound}, got {text!r}")
        return value

    parse.__name__ = "integer"  # argparse names the type in some messages
    return parse


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _add_fit_options(parser, *, prior_help: str) -> None:
    """--max-iter, --tol, --seed and --prior, shared by `fit` and `select`."""
    parser.add_argument("--max-iter", type=_int_at_least(1), default=500)
    parser.add_argument("--tol", type=_non_negative_float, default=1e-6)
    parser.add_argument(
        "--seed", type=_int_at_least(0, _MAX_SEED), default=0, help=f"0 to {_MAX_SEED}"
    )
    parser.add_argument("--prior", default="none", choices=("none", "mclust"), help=prior_help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gmmjax", description="Gaussian mixture models in JAX: experiments and fits."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run (or resume) an experiment from a TOML config")
    run.add_argument("config", help="path to configs/<name>.toml")
    run.add_argument("--out", help="output folder (default results/<name>)")
    run.set_defaults(func=_cmd_run)

    fit = sub.add_parser("fit", help="fit a mixture to a data file (.npy, .csv, .txt)")
    fit.add_argument(
        "data",
        help="an (N, D) matrix: .npy, .csv (commas) or .txt (whitespace); a text file may "
        "start with one header line of column names",
    )
    positive = _int_at_least(1)
    fit.add_argument("-k", type=positive, required=True, help="number of components (>= 1)")
    fit.add_argument(
        "--cov",
        default="full",
        choices=COV_TYPES,
        help="scikit-learn's names or mclust's models (EII ... VVV)",
    )
    fit.add_argument("--restarts", type=positive, default=16)
    # Spelled out (not imported from gmmjax._fit) so that `gmmjax --help` need not import jax.
    methods = ("em", "squarem", "daarem", "online_em", "incremental_em", "lbfgs", "adam", "sgd")
    fit.add_argument("--method", default="em", choices=methods)
    _add_fit_options(fit, prior_help="mclust: MAP fit with R mclust's default conjugate prior")
    fit.add_argument(
        "--missing",
        default="raise",
        choices=("raise", "em"),
        help="em: empty cells, NA and nan are values missing at random, fitted by EM on the "
        "observed values (default: raise, an error)",
    )
    fit.add_argument("--out", help="write the best model to this .npz")
    fit.add_argument(
        "--plot",
        help="write the best fit's picture (.png, .pdf, .svg): the data and covariance "
        "ellipses, a pairs plot of the first four coordinates when there are more than two",
    )
    fit.set_defaults(func=_cmd_fit)

    select = sub.add_parser(
        "select", help="BIC over K and covariance models (mclust's Mclust grid) for a data file"
    )
    select.add_argument("data", help="an (N, D) matrix file, as for fit")
    select.add_argument("--k-max", type=positive, default=9, help="fit K = 1..k_max (default 9)")
    select.add_argument(
        "--models",
        default="all",
        help="'all' (mclust's fourteen) or a comma-separated list such as VVV,EEE,VII",
    )
    select.add_argument("--criterion", default="bic", choices=("bic", "aic", "icl"))
    select.add_argument("--restarts", type=positive, default=8)
    _add_fit_options(
        select,
        prior_help="mclust: MAP fits with R mclust's default prior (the models that have one)",
    )
    select.add_argument("--plot", help="write the criterion-vs-K figure (.png, .pdf, .svg)")
    select.set_defaults(func=_cmd_select)

    demo = sub.add_parser("demo", help="the EM-vs-gradient study on built-in data (~1 minute)")
    demo.add_argument("--out", help="output folder (default results/demo)")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import jax

    from .experiments._records import FolderBusyError

    # The command computes in float64: rates and small log-likelihood gaps need it.
    jax.config.update("jax_enable_x64", True)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("gmmjax: interrupted; finished runs are kept, rerun to resume", file=sys.stderr)
        return 130
    except (ValueError, OSError, FolderBusyError) as err:  # ConfigError is a ValueError
        print(f"gmmjax: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
