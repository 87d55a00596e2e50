"""The EM family against the literature and the R packages.

Questions:
  A. How many passes over the data (E-steps plus objective evaluations) do EM, SQUAREM and
     DAAREM need as components overlap more, and how do gmmjax's counts compare with R's
     SQUAREM and daarem run on the same EM map, data and starts
     (benchmarks/fixtures/em_family, made by em_family_reference.py / .R)? The papers report
     a gain over EM that grows with overlap.
  B. Does one pass of averaged online EM (Cappé & Moulines 2009) over 10^5 rows end within
     O(p/N) of the batch optimum per sample (EM's fixed point from the same start), and the
     last iterate without averaging not?
  C. (--rows) One pass of online EM over a host memmap of many rows: seconds and the gap to
     the generating mixture's objective.

Passes: an EM-map evaluation is 1, an objective evaluation is 1 (gmmjax's `n_evals`; R: every
call of fixptfn or objfn). "To ε" = first time the objective per sample of an iterate is within
ε = 1e-8 of the best final value any method reached from that start. Maximum likelihood, no
prior, reg_covar = 0 (the R scripts' EM map), float64.

    python benchmarks/bench_em_family.py            # A and B (a few minutes; --parts b: B)
    python benchmarks/bench_em_family.py --rows 20000000   # also C (writes a 320 MB file)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import gmmjax as gj  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "em_family"
EPS = 1e-8
METHODS = ("em", "squarem", "daarem")


def passes_to(history, evals, target):
    """First work count at which the per-sample objective is within EPS of target."""
    hit = np.nonzero(np.asarray(history) >= target - EPS)[0]
    return float(np.asarray(evals)[hit[0]]) if len(hit) else float("nan")


def r_passes_to(trace, n, target):
    """The same for an R trace of [calls so far, total log-likelihood of the point]."""
    for count, total in trace:
        if total is not None and total / n >= target - EPS:
            return float(count)
    return float("nan")


def part_a():
    starts = json.loads((FIXTURES / "starts.json").read_text())["datasets"]
    reference = json.loads((FIXTURES / "reference.json").read_text())["results"]
    print("A. passes to within 1e-8 per sample of the best value from each start (gmmjax | R)")
    print(
        f"{'data':<12}{'start':>6}{'entropy':>9}{'EM':>8}{'SQUAREM':>16}{'DAAREM':>16}"
        f"{'EM/SQ':>8}{'EM/DA':>8}"
    )
    gains = {}
    for ds in starts:
        X = np.loadtxt(FIXTURES / ds["file"], delimiter=",")
        n, k = X.shape[0], ds["K"]
        start = gj.GMM(
            *(np.array([s[f] for s in ds["starts"]]) for f in ("weights", "means", "covariances")),
            "full",
        )
        kw = dict(
            key=jax.random.key(0), init_params=start, n_restarts=len(ds["starts"]), reg_covar=0.0
        )
        res = {
            "em": gj.fit(X, k, method="em", tol=1e-13, max_iter=20000, **kw),
            "squarem": gj.fit(X, k, method="squarem", tol=1e-13, max_iter=5000, **kw),
            "daarem": gj.fit(X, k, method="daarem", tol=1e-13, max_iter=5000, **kw),
        }
        resp = gj.e_step(res["em"].best, X)[0]
        entropy = float(-np.sum(resp * np.log(np.clip(resp, 1e-300, None))) / (n * np.log(k)))
        for s in range(len(ds["starts"])):
            ref = reference[ds["dataset"]][s]
            best = max(
                [float(res[m].objective[s]) for m in METHODS]
                + [ref[m]["loglik_final"] / n for m in METHODS]
            )
            ours = {m: passes_to(res[m].history[s], res[m].evals[s], best) for m in METHODS}
            theirs = {m: r_passes_to(ref[m]["trace"], n, best) for m in METHODS}
            ends = {m: float(res[m].objective[s]) >= best - 1e-6 for m in METHODS}
            note = (
                ""
                if all(ends.values())
                else "  ends elsewhere: " + ", ".join(m for m, ok in ends.items() if not ok)
            )
            print(
                f"{ds['dataset']:<12}{s:>6}{entropy:>9.3f}{ours['em']:>8.0f}"
                f"{ours['squarem']:>8.0f} |{theirs['squarem']:>6.0f}"
                f"{ours['daarem']:>8.0f} |{theirs['daarem']:>6.0f}"
                f"{ours['em'] / ours['squarem']:>8.1f}{ours['em'] / ours['daarem']:>8.1f}{note}"
            )
            gains.setdefault(ds["dataset"], []).append(
                (entropy, ours["em"] / ours["squarem"], ours["em"] / ours["daarem"])
            )
    print("\nmedian gain over EM per data set (entropy of the responsibilities at EM's best)")
    for name, g in gains.items():
        g = np.array(g)
        print(
            f"  {name:<12} entropy {g[0, 0]:.3f}  SQUAREM {np.nanmedian(g[:, 1]):6.1f}x"
            f"  DAAREM {np.nanmedian(g[:, 2]):6.1f}x"
        )


def part_b(seeds: int, sizes=(10_000, 100_000, 1_000_000)):
    k, d = 3, 2
    p = k - 1 + k * d + k * d * (d + 1) // 2
    print(f"\nB. one pass of online EM, K = {k}, D = {d} full (p = {p}), separation 2,")
    print("   batch 100; gap = f(EM's fixed point from the same start) - f(online) per sample,")
    print("   in units of p/N; the step size t^-0.6 leaves the last iterate's error ~ N^-0.6")
    print(f"{'N':>9}{'seed':>6}{'EM iters':>10}{'averaged':>10}{'last':>8}")
    summary = []
    for n in sizes:
        rows = []
        for seed in range(seeds):
            X = gj.make_mixture(
                n_components=k,
                n_features=d,
                n_samples=n,
                separation=2.0,
                imbalance=2.0,
                eccentricity=3.0,
                seed=seed,
            )[0]
            key = jax.random.key(seed)
            start = gj.initialize(X, k, key=key, reg_covar=0.0)
            kw = dict(key=key, init_params=start, reg_covar=0.0)
            batch = gj.fit(X, k, tol=1e-12, max_iter=5000, **kw)
            one_pass = dict(max_iter=1, tol=0.0, **kw)
            averaged = gj.fit(X, k, method=gj.OnlineEM(batch_size=100), **one_pass)
            last = gj.fit(X, k, method=gj.OnlineEM(batch_size=100, average_from=1.0), **one_pass)
            best = float(batch.objective[0])
            gaps = [(best - float(r.objective[0])) * n / p for r in (averaged, last)]
            rows.append((int(batch.n_iter[0]), *gaps))
            print(f"{n:>9}{seed:>6}{rows[-1][0]:>10}{gaps[0]:>10.2f}{gaps[1]:>8.2f}")
        rows = np.array(rows)
        fast = rows[rows[:, 0] <= 200]
        summary.append((n, len(fast), np.median(fast[:, 1]), np.median(fast[:, 2])))
    print("   medians over the seeds where batch EM needs <= 200 iterations from the start (one")
    print("   pass covers Σγ_t ≈ T^0.4/0.4 EM steps, 16 to 100 here; slow starts need more):")
    for n, count, a, b in summary:
        print(f"   N = {n:>9,}: {count} seeds, averaged {a:.2f} p/N, last iterate {b:.2f} p/N")


def part_c(rows: int, batch: int = 65536):
    k, d = 3, 2
    truth = gj.make_mixture(
        n_components=k,
        n_features=d,
        n_samples=k,
        separation=1.0,
        imbalance=2.0,
        eccentricity=3.0,
        seed=0,
    )[2]
    print(f"\nC. one pass of online EM over a {rows:,}-row memmap (batch {batch})")
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "rows.npy")
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(rows, d))
        for start in range(0, rows, 1_000_000):
            stop = min(rows, start + 1_000_000)
            out[start:stop] = gj.sample(truth, stop - start, key=jax.random.key(start))[0]
        out.flush()
        data = np.load(path, mmap_mode="r")
        key = jax.random.key(0)
        t0 = time.perf_counter()
        res = gj.fit(
            data, k, key=key, method=gj.OnlineEM(batch_size=batch), max_iter=1, reg_covar=0.0
        )
        seconds = time.perf_counter() - t0
        sub = np.asarray(data[:1_000_000])
        gap = float(gj.objective(truth, sub)) - float(gj.objective(res.best, sub))
    print(
        f"   {seconds:.1f} s for the pass (initialisation and compilation included);"
        f" f(truth) - f(online) on the first 10^6 rows = {gap:.1e} per sample"
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="ab", help="which of a, b to run (c: use --rows)")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--rows", type=int, default=0)
    parser.add_argument("--batch", type=int, default=65536, help="C's minibatch rows")
    args = parser.parse_args()
    if "a" in args.parts:
        part_a()
    if "b" in args.parts:
        part_b(args.seeds)
    if args.rows:
        part_c(args.rows, args.batch)


if __name__ == "__main__":
    main()
