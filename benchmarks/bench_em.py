"""How much faster is gmmjax's EM than scikit-learn's, per iteration and for 8 restarts?

Both libraries run in this one process, on the same data, from the same initial parameters, for
the same number of EM iterations (tol=0). scikit-learn's `n_init` runs restarts one after the
other, so its 8-restart time is 8 x the median single-restart time; gmmjax runs the 8 restarts
as one vmapped program and is timed doing exactly that. Compile time is reported apart.

Workloads (the core issue's):
    W1  N=10k,  D=2,  K=3,  full
    W2  N=100k, D=16, K=16, full
    W3  N=100k, D=64, K=32, diag
    W4  N=1M,   D=8,  K=8,  full

Usage:
    python benchmarks/bench_em.py                       # all workloads, float64 and float32
    python benchmarks/bench_em.py --workloads W2 --dtypes float64 --iters 10 --repeats 5

Typical output (2-core machine; see benchmarks/README.md for the recorded table):
    wl  dtype    sk ms/it  gj ms/it(8r)  sk 8r s  gj 8r s  compile s  speedup  GFLOP/s
    W2  float64    ...
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402

import gmmjax as gj  # noqa: E402

WORKLOADS = {
    "W1": (10_000, 2, 3, "full"),
    "W2": (100_000, 16, 16, "full"),
    "W3": (100_000, 64, 32, "diag"),
    "W4": (1_000_000, 8, 8, "full"),
}


def make_data(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, d)) * 3.0
    labels = rng.integers(0, k, size=n)
    scales = rng.uniform(0.5, 1.5, size=(k, d))
    return means[labels] + rng.normal(size=(n, d)) * scales[labels]


def matmul_gflops(dtype, size=2048, repeats=5):
    """The machine's XLA matrix-product rate, the ceiling the GFLOP/s column is read against."""
    a = jnp.ones((size, size), dtype)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f(a).block_until_ready()
        times.append(time.perf_counter() - t)
    return 2 * size**3 / statistics.median(times) / 1e9


def _precisions(gmm):
    c = np.asarray(gmm.covariances, dtype=np.float64)
    return np.linalg.inv(c) if gmm.cov_type in ("full", "tied") else 1.0 / c


def bench(name, dtype, iters, repeats, restarts):
    n, d, k, cov_type = WORKLOADS[name]
    X = make_data(n, d, k).astype(dtype)
    keys = jax.random.split(jax.random.key(0), restarts)
    starts = [gj.initialize(X, k, key=kk, cov_type=cov_type) for kk in keys]
    batched = jax.tree.map(lambda *a: jnp.stack(a), *starts)

    # scikit-learn: one restart from starts[0]; n_init runs restarts sequentially.
    sk_times = []
    for _ in range(repeats):
        sk = GaussianMixture(
            k,
            covariance_type=cov_type,
            tol=0.0,
            max_iter=iters,
            init_params="random_from_data",
            weights_init=(w0 := np.asarray(starts[0].weights, np.float64)) / w0.sum(),
            means_init=np.asarray(starts[0].means, np.float64),
            precisions_init=_precisions(starts[0]),
            random_state=0,
        )
        t = time.perf_counter()
        sk.fit(X)
        sk_times.append(time.perf_counter() - t)
    sk_iter = statistics.median(sk_times) / iters

    def run():
        res = gj.fit_em(
            X,
            k,
            key=keys[0],
            cov_type=cov_type,
            n_restarts=restarts,
            init_params=batched,
            max_iter=iters,
            tol=0.0,
        )
        res.log_likelihood.block_until_ready()
        return res

    t = time.perf_counter()
    res = run()
    first = time.perf_counter() - t
    gj_times = []
    for _ in range(repeats):
        t = time.perf_counter()
        res = run()
        gj_times.append(time.perf_counter() - t)
    steady = statistics.median(gj_times)
    # iters EM steps plus one final log-likelihood pass (counted as part of the iterations).
    gj_iter = steady / iters
    assert np.all(np.asarray(res.n_iter) == iters)
    flops = {"full": 4 * n * k * d * d, "tied": 4 * n * k * d * d}.get(cov_type, 6 * n * k * d)
    return dict(
        wl=name,
        dtype=np.dtype(dtype).name,
        sk_ms_it=1e3 * sk_iter,
        gj_ms_it=1e3 * gj_iter,
        sk_8r_100it=restarts * 100 * sk_iter,
        gj_8r_100it=100 * gj_iter,
        compile_s=first - steady,
        speedup=restarts * sk_iter / gj_iter,
        gflops=restarts * flops / gj_iter / 1e9,
        status=sorted({gj.Status(int(s)).name for s in res.status}),
    )


def main():
    # tol=0 runs stop at max_iter by design; scikit-learn warns about each one.
    warnings.simplefilter("ignore", ConvergenceWarning)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", default="W1,W2,W3,W4")
    p.add_argument("--dtypes", default="float64,float32")
    p.add_argument("--iters", type=int, default=10, help="EM iterations per timed fit")
    p.add_argument("--repeats", type=int, default=3, help="timed runs; medians are reported")
    p.add_argument("--restarts", type=int, default=8)
    args = p.parse_args()

    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"jax {jax.__version__}, numpy {np.__version__}"
    )
    for dt in args.dtypes.split(","):
        print(f"# XLA {dt} matmul rate: {matmul_gflops(dt):.1f} GFLOP/s")
    cols = (
        "wl",
        "dtype",
        "sk_ms_it",
        "gj_ms_it",
        "sk_8r_100it",
        "gj_8r_100it",
        "compile_s",
        "speedup",
        "gflops",
        "status",
    )
    print(" | ".join(cols))
    for wl in args.workloads.split(","):
        for dt in args.dtypes.split(","):
            r = bench(wl, dt, args.iters, args.repeats, args.restarts)
            print(
                " | ".join(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols),
                flush=True,
            )


if __name__ == "__main__":
    main()
