"""What does a change cost? gmmjax's EM time per iteration at a git revision against the working
tree, measured by `bench_em.py` in alternating fresh processes.

A change to a kernel cannot be timed against its predecessor inside one process (both would be
the same compiled program), so each round runs `bench_em.py --libs gmmjax` once from a clean
checkout of `--base` (a temporary git worktree) and once from this tree, one after the other,
and the table reports the median ms per iteration of each and the median of the per-round
ratios. Alternating rounds let a shared machine's drift slow both alike.

With `--first-fit` each round runs `bench_em.py --first-fit --repeats 1` instead (iris,
n_init=8, fit and predict in a fresh process: compilation included, cache cold, warm and off)
and the table compares those seconds.

Usage:
    python benchmarks/bench_revisions.py --base HEAD --workloads W2,W4 --dtypes float64 \\
        --restarts 1,8 --rounds 5
    python benchmarks/bench_revisions.py --base HEAD --first-fit --rounds 5

Typical output (columns; figures vary by machine):
    wl | dtype | restarts | base ms/iter | tree ms/iter | tree/base (median of rounds)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_bench(tree: Path, args) -> dict[tuple[str, str, str], float]:
    """{(workload, dtype, restarts): ms per iteration} from one `bench_em.py` process whose
    `gmmjax` is imported from `tree`."""
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "bench_em.py"),
        "--libs",
        "gmmjax",
        "--workloads",
        args.workloads,
        "--dtypes",
        args.dtypes,
        "--restarts",
        args.restarts,
        "--iters",
        str(args.iters),
        "--repeats",
        str(args.repeats),
    ]
    if args.first_fit:
        cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_em.py"), "--first-fit"]
        cmd += ["--repeats", "1"]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True, check=True)
    rows = {}
    for line in out.stdout.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if (
            args.first_fit
            and len(cells) > 2
            and cells[0] in ("cold cache", "warm cache", "cache off")
        ):
            rows[("first fit + predict, " + cells[0],)] = float(cells[2])
        elif len(cells) > 4 and cells[2] == "gmmjax" and cells[0] != "wl":
            rows[cells[0], cells[1], cells[3]] = float(cells[4])
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default="HEAD", help="git revision to compare the tree against")
    p.add_argument("--workloads", default="W2,W4")
    p.add_argument("--dtypes", default="float64")
    p.add_argument("--restarts", default="1,8")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--first-fit", action="store_true", help="first fit in a new process")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.base],
            check=True,
            capture_output=True,
        )
        try:
            times = {"base": [], "tree": []}
            for i in range(args.rounds):
                times["base"].append(run_bench(base, args))
                times["tree"].append(run_bench(ROOT, args))
                print(f"# round {i + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=True
            )
    print(f"# base {args.base}; {args.rounds} alternating rounds")
    if args.first_fit:
        print("measurement | base s | tree s | tree/base (median of rounds)")
    else:
        print("wl | dtype | restarts | base ms/iter | tree ms/iter | tree/base (median of rounds)")
    for key in times["base"][0]:
        b = [r[key] for r in times["base"]]
        t = [r[key] for r in times["tree"]]
        ratio = statistics.median(x / y for x, y in zip(t, b, strict=True))
        print(
            f"{' | '.join(key)} | {statistics.median(b):.3g} | {statistics.median(t):.3g} | "
            f"{ratio:.3f}"
        )


if __name__ == "__main__":
    main()
