"""Exact EM over a memmap bigger than we want in memory: N=20M, D=16, K=16, float32, full.

Writes the data once to --path (a .npy file, 1.28 GB for the default size; reused if present),
opens it with `np.load(mmap_mode="r")` and fits it with `gj.fit_em`, which streams the rows
through each EM iteration chunk by chunk (see gmmjax/_stream.py). Reports the validation pass,
compile + first fit, steady-state seconds per iteration ((T(2M) − T(M)) / M) and memory:

- peak RSS of this process (what `/usr/bin/time -v` calls maximum resident set size), which
  counts the memmap's file pages while they are mapped (the kernel can drop them at will);
- peak anonymous RSS (RssAnon, sampled every 50 ms): the memory the fit itself allocated.

Usage:
    /usr/bin/time -v python benchmarks/bench_stream.py            # the recorded run
    python benchmarks/bench_stream.py --n 2000000 --iters 2        # quick look
"""

from __future__ import annotations

import argparse
import os
import resource
import threading
import time

import jax
import numpy as np

import gmmjax as gj


def write_data(path, n, d, k, seed=0, block=1_000_000):
    """A float32 mixture of k Gaussians, written block by block (never all in memory)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, d)) * 4.0
    scales = rng.uniform(0.5, 1.5, size=(k, d))
    out = np.lib.format.open_memmap(path + ".tmp", mode="w+", dtype=np.float32, shape=(n, d))
    for start in range(0, n, block):
        m = min(block, n - start)
        labels = rng.integers(0, k, size=m)
        out[start : start + m] = means[labels] + rng.normal(size=(m, d)) * scales[labels]
    out.flush()
    del out
    os.replace(path + ".tmp", path)


class AnonPeak:
    """Samples RssAnon from /proc/self/status in a thread; `.peak` in bytes."""

    def __init__(self, every=0.05):
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)

    def _run(self, every):
        while not self._stop.is_set():
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        self.peak = max(self.peak, int(line.split()[1]) * 1024)
            time.sleep(every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--path", default="/tmp/gmmjax_stream_20M_16.npy")
    p.add_argument("--n", type=int, default=20_000_000)
    p.add_argument("--d", type=int, default=16)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--iters", type=int, default=3, help="M: timed fits run M and 2M steps")
    p.add_argument("--chunk-size", type=int, default=None)
    p.add_argument(
        "--in-memory", action="store_true", help="the same fits from an in-memory array instead"
    )
    args = p.parse_args()
    if not os.path.exists(args.path):
        t = time.perf_counter()
        write_data(args.path, args.n, args.d, args.k)
        print(f"wrote {args.path} in {time.perf_counter() - t:.1f} s")
    X = np.load(args.path, mmap_mode="r")
    if args.in_memory:
        X = np.array(X)  # read into RAM: fit_em then copies it to the device as usual
    n, d = X.shape
    where = "in memory" if args.in_memory else "memmap"
    print(
        f"# jax {jax.__version__}, {os.cpu_count()} cpus; X {X.shape} {X.dtype} "
        f"({X.nbytes / 2**30:.2f} GiB) {where}, K={args.k}, full, 1 restart, k-means++ on "
        f"{'all' if args.in_memory else '65,536'} rows"
    )

    def fit(m):
        t = time.perf_counter()
        res = gj.fit_em(
            X,
            args.k,
            key=jax.random.key(0),
            max_iter=m,
            tol=0.0,
            chunk_size=args.chunk_size,
        )
        res.log_likelihood.block_until_ready()
        return res, time.perf_counter() - t

    with AnonPeak() as anon:
        res, first = fit(args.iters)
        _, short = fit(args.iters)
        res, long = fit(2 * args.iters)
    per_iter = (long - short) / args.iters
    # float32 explicit differences: 2NKD² each for E and M (the expanded path, which float32
    # takes where `expansion_is_accurate`, executes about half of that).
    flops = 4 * n * args.k * d * d
    print(f"first fit ({args.iters} steps, incl. compile and validation pass): {first:.1f} s")
    print(f"fit of {args.iters} steps: {short:.1f} s; of {2 * args.iters} steps: {long:.1f} s")
    print(f"steady state: {per_iter:.2f} s per EM iteration ({flops / per_iter / 1e9:.1f} GFLOP/s)")
    print(
        f"final mean log-likelihood {float(res.log_likelihood[0]):.5f}, status "
        f"{gj.Status(int(res.status[0])).name}"
    )
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        f"peak RSS {peak_rss / 2**30:.2f} GiB (includes mapped file pages); "
        f"peak anonymous RSS {anon.peak / 2**30:.2f} GiB; data {X.nbytes / 2**30:.2f} GiB"
    )


if __name__ == "__main__":
    main()
