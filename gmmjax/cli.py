"""The `gmmjax` command: run experiments from configs, fit a data file, run the demo."""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

import numpy as np


def _load_matrix(path: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"data file not found: {path}")
    if p.suffix == ".npy":
        X = np.load(p, allow_pickle=False)
    elif p.suffix in (".csv", ".txt"):
        delimiter = "," if p.suffix == ".csv" else None
        try:
            X = np.loadtxt(p, delimiter=delimiter, comments="#", ndmin=2)
        except ValueError:
            # One header line of column names.
            X = np.loadtxt(p, delimiter=delimiter, comments="#", ndmin=2, skiprows=1)
    else:
        raise ValueError(f"unsupported data file {path!r}: use .npy, .csv or .txt")
    return X


def _cmd_run(args) -> None:
    from ._compare import format_table
    from .experiments._runner import run_experiment

    result = run_experiment(args.config, args.out)
    print(format_table(result["rows"]))
    print(f"\nruns:    {result['runs']}\nsummary: {result['summary']}")
    for f in result["figures"]:
        print(f"figure:  {f}")


def _cmd_demo(args) -> None:
    config = resources.files("gmmjax") / "experiments" / "demo.toml"
    with resources.as_file(config) as path:
        args.config = str(path)
        args.out = args.out or "results/demo"
        _cmd_run(args)


def _cmd_fit(args) -> None:
    import jax

    import gmmjax as gj

    X = _load_matrix(args.data)
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
    )
    best = res.best
    n = X.shape[0]
    print(
        f"data: {args.data} ({n} x {X.shape[1]}), K={args.k}, cov={args.cov}, "
        f"method={args.method}, restarts={args.restarts}"
    )
    best_ll = float(res.log_likelihood[res.best_index])
    penalised = (
        f", objective {float(res.objective[res.best_index]):.6f}" if args.prior != "none" else ""
    )
    print(
        f"best restart {int(res.best_index)}: mean log-likelihood {best_ll:.6f}{penalised}, "
        f"BIC {float(gj.bic(best, X)):.2f}, AIC {float(gj.aic(best, X)):.2f}"
    )
    print("restart  log-likelihood/N  iterations  status")
    for r in range(args.restarts):
        status = gj.Status(int(res.status[r])).name.lower()
        print(f"{r:7d}  {float(res.log_likelihood[r]):16.6f}  {int(res.n_iter[r]):10d}  {status}")
    if args.out:
        gj.save(best, args.out)
        print(f"model written to {args.out}")


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
    fit.add_argument("data", help="an (N, D) matrix; a .csv may have one header line")
    fit.add_argument("-k", type=int, required=True, help="number of components")
    fit.add_argument("--cov", default="full", choices=("full", "diag", "spherical", "tied"))
    fit.add_argument("--restarts", type=int, default=16)
    # Spelled out (not imported from gmmjax._fit) so that `gmmjax --help` need not import jax.
    methods = ("em", "squarem", "daarem", "online_em", "incremental_em", "lbfgs", "adam", "sgd")
    fit.add_argument("--method", default="em", choices=methods)
    fit.add_argument("--max-iter", type=int, default=500)
    fit.add_argument("--tol", type=float, default=1e-6)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument(
        "--prior",
        default="none",
        choices=("none", "mclust"),
        help="mclust: MAP fit with R mclust's default conjugate prior",
    )
    fit.add_argument("--out", help="write the best model to this .npz")
    fit.set_defaults(func=_cmd_fit)

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
