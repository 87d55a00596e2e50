"""How fast is gmmjax's EM against scikit-learn, pomegranate and torchgmm, per iteration?

All libraries run in this one process, on the same data, from the same initial parameters
(torchgmm accepts initial means only; its covariances start from those means), for the same
number of EM iterations (tol=0). Steady-state time per iteration is (T(2M) − T(M)) / M for
fits of M and 2M iterations timed back to back (the median over rounds), so set-up,
initialisation, compile and final passes cancel out.
The peers run restarts one after another (scikit-learn's n_init is a loop), so their R-restart
time is R × their one-restart time; gmmjax runs R restarts as one vmapped program and is timed
doing exactly that, for R = 1, 8, 64. Compile time is reported apart.

Workloads:
    W1  N=10k,  D=2,  K=3,  full
    W2  N=100k, D=16, K=16, full
    W3  N=100k, D=64, K=32, diag
    W4  N=1M,   D=8,  K=8,  full
    W2s N=100k, D=16, K=16, full: W2 with spread clusters (means N(0, 16 I), covariances A Aᵀ,
        A = I + N(0, 1/D)): ordinary clustered data far enough apart that float32's expansion
        bound sends its passes to the explicit differences

Peers are optional: pomegranate and torchgmm need torch (CPU build: see benchmarks/README.md);
a library that does not import is reported as missing and skipped.

A first fit in a new process (`--first-fit`): scikit-learn's and gmmjax's GaussianMixture on
iris with n_init=8, each in a fresh subprocess, timed from after the imports: gmmjax with JAX's
persistent compilation cache cold (an empty directory), warm (the directory the cold run
filled) and off.

Whole fits (`--whole-fit`): what a user waits for once the program is compiled, k-means++
initialisation, M EM iterations and the final pass, float64 against float32, interleaved round
by round; with the per-sample log-likelihood of the two from one shared start, and float32
again in a child process with x64 off (JAX's default), timed there the same way.

float32 against float64 (`--dtype-ratio`): gmmjax's fits in the two dtypes from the same starts,
interleaved round by round (M then 2M iterations of one, then of the other), so that a noisy
machine slows both alike; prints the median time per iteration of each and the median of the
per-round ratios.

Usage:
    python benchmarks/bench_em.py            # everything
    python benchmarks/bench_em.py --first-fit --repeats 5
    python benchmarks/bench_em.py --workloads W2 --dtypes float64 --restarts 8 --libs gmmjax,sklearn
    python benchmarks/bench_em.py --memory   # peak RSS per (workload, library, R), own process
    python benchmarks/bench_em.py --dtype-ratio --workloads W2,W4 --restarts 8 --repeats 7
    python benchmarks/bench_em.py --whole-fit --workloads W2,W2s --restarts 1,8 --iters 10
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import warnings

# Compile times below are real compilations: the persistent cache stays off in this process
# (the --first-fit children set their own).
os.environ.setdefault("GMMJAX_COMPILATION_CACHE", "0")

import jax  # noqa: E402

# x64 on, except in the --whole-fit child that measures float32 with JAX's default (x64 off).
jax.config.update("jax_enable_x64", os.environ.get("GMMJAX_BENCH_X64", "1") != "0")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402

import gmmjax as gj  # noqa: E402
import gmmjax._em  # noqa: E402
import gmmjax._program  # noqa: E402

# Steady state = (T(2M) − T(M)) / M needs both fits built the same way: gmmjax compiles fits
# whose whole run is tiny without LLVM's optimisations (quicker to build, slower to run), and
# the M- and 2M-step fits of one workload can fall on either side of that line.
gmmjax._program._QUICK_WORK = 0

WORKLOADS = {
    "W1": (10_000, 2, 3, "full"),
    "W2": (100_000, 16, 16, "full"),
    "W3": (100_000, 64, 32, "diag"),
    "W4": (1_000_000, 8, 8, "full"),
    "W2s": (100_000, 16, 16, "full"),
}
LIBS = ("gmmjax", "sklearn", "pomegranate", "torchgmm")


def make_data(n, d, k, seed=0, spread=False):
    rng = np.random.default_rng(seed)
    if spread:
        means = rng.normal(size=(k, d)) * 4.0
        labels = rng.integers(0, k, size=n)
        factors = np.eye(d) + rng.normal(size=(k, d, d)) / np.sqrt(d)
        return means[labels] + np.einsum("ne,nde->nd", rng.normal(size=(n, d)), factors[labels])
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


def executed_flops(n, d, k, cov_type, dtype):
    """Multiply-adds x 2 that gmmjax's EM iteration executes for one restart.

    Where the pass expands (both dtypes where the `path` column says so), the E-step's
    quadratic forms and the M-step's moments are one product each with the augmented features
    ψ(x) (gmmjax/_expanded_pass.py): full ψ = (φ(x), x, 1), P = D(D+1)/2 + D + 1 columns;
    diag ψ = (x², x, 1), 2D + 1 columns. 2NKP flops each way.
    """
    columns = 2 * d + 1 if cov_type == "diag" else d * (d + 1) // 2 + d + 1
    return 4 * n * k * columns


def steady_per_iter(fit, iters, repeats):
    """(seconds per iteration, seconds of the first call beyond a warm one) for fit(m).

    Seconds per iteration is the median over `repeats` rounds of (T(2M) − T(M)) / M, each round
    timing the M- and the 2M-iteration fit back to back: on a shared machine whose speed drifts
    between rounds the two fits of a round see the same load, which medians of all short and
    all long fits taken apart do not guarantee."""
    t = time.perf_counter()
    fit(iters)
    first = time.perf_counter() - t
    fit(2 * iters)  # compiles the longer fit too, where there is anything to compile
    shorts, per_iter = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        fit(iters)
        short = time.perf_counter() - t
        t = time.perf_counter()
        fit(2 * iters)
        per_iter.append((time.perf_counter() - t - short) / iters)
        shorts.append(short)
    return statistics.median(per_iter), first - statistics.median(shorts)


def fitters(lib, X, start, cov_type, k, restarts):
    """fit(m) running m EM iterations of `lib` from `start` (R restarts for gmmjax)."""
    w0 = np.asarray(start.weights[0], np.float64)
    m0 = np.asarray(start.means[0], np.float64)
    c0 = np.asarray(start.covariances[0], np.float64)
    if lib == "gmmjax":
        statuses = fit_statuses[0] = set()

        def fit(m):
            res = gj.fit_em(
                X,
                k,
                key=jax.random.key(0),
                cov_type=cov_type,
                n_restarts=restarts,
                init_params=start,
                max_iter=m,
                tol=0.0,
            )
            res.log_likelihood.block_until_ready()
            # A restart that fails (e.g. a component collapses) stops early; say so in the table.
            statuses.update(gj.Status(int(s)).name for s in res.status)
            last_fit[0] = res  # its path is read after the timing (`expansion_path`)

        return fit
    if lib == "sklearn":

        def fit(m):
            GaussianMixture(
                k,
                covariance_type=cov_type,
                tol=0.0,
                max_iter=m,
                weights_init=w0 / w0.sum(),
                means_init=m0,
                precisions_init=_precisions(c0),
                random_state=0,
            ).fit(X)

        return fit
    import torch

    dtype = torch.float64 if X.dtype == np.float64 else torch.float32
    Xt = torch.tensor(X, dtype=dtype)
    if lib == "pomegranate":
        from pomegranate.distributions import Normal
        from pomegranate.gmm import GeneralMixtureModel

        def fit(m):
            dists = [
                Normal(
                    means=torch.tensor(m0[j], dtype=dtype),
                    covs=torch.tensor(c0[j], dtype=dtype),
                    covariance_type=cov_type,
                )
                for j in range(k)
            ]
            GeneralMixtureModel(
                dists, priors=torch.tensor(w0, dtype=dtype), max_iter=m, tol=-np.inf
            ).fit(Xt)

        return fit
    from torchgmm.bayes import GaussianMixture as TorchGMM

    precision = {"precision": 64} if dtype == torch.float64 else {}

    def fit(m):
        TorchGMM(
            k,
            covariance_type=cov_type,
            init_means=torch.tensor(m0, dtype=dtype),
            convergence_tolerance=0.0,
            trainer_params=dict(
                max_epochs=m,
                accelerator="cpu",
                enable_progress_bar=False,
                logger=False,
                enable_model_summary=False,
                enable_checkpointing=False,
                **precision,
            ),
        ).fit(Xt)

    return fit


fit_statuses = [set()]  # gmmjax's restart statuses in the last measurement
last_fit = [None]  # gmmjax's last FitResult in the last measurement


def fit_path(start, X):
    """How the last gmmjax fit's E-step passes formed the quadratic forms at its start and end,
    computed outside the timed calls."""
    return "/".join(sorted({expansion_path(start, X), expansion_path(last_fit[0].params, X)}))


def expansion_path(params, X):
    """ "expanded" where gmmjax's pass takes the products over φ(x) for these parameters
    (`_em.pass_expands`, data centred as the fit centres them), "differences" otherwise."""
    means = params.means - X.mean(axis=0).astype(X.dtype)
    centred = gj.GMM(params.weights, means, params.covariances, params.cov_type)
    return "expanded" if gmmjax._em.pass_expands(centred, X.shape[0]) else "differences"


def _precisions(c):
    return np.linalg.inv(c) if c.ndim == 3 else 1.0 / c


def available(lib):
    try:
        if lib in ("pomegranate", "torchgmm"):
            __import__(lib)
        return True
    except ImportError:
        return False


def bench(name, dtype, lib, restarts, iters, repeats):
    n, d, k, cov_type = WORKLOADS[name]
    X = make_data(n, d, k, spread=name == "W2s").astype(dtype)
    keys = jax.random.split(jax.random.key(0), restarts)
    start = gj.initialize(X, k, key=keys, cov_type=cov_type)
    one = 1 if lib != "gmmjax" else restarts  # peers: one restart, timed; R x that reported
    per_iter, compile_s = steady_per_iter(fitters(lib, X, start, cov_type, k, one), iters, repeats)
    per_iter_all = per_iter * (restarts if lib != "gmmjax" else 1)
    gflops = None
    if lib == "gmmjax":
        gflops = restarts * executed_flops(n, d, k, cov_type, dtype) / per_iter / 1e9
    return dict(
        wl=name,
        dtype=np.dtype(dtype).name,
        lib=lib,
        restarts=restarts,
        ms_per_iter=1e3 * per_iter_all,
        compile_s=compile_s,
        gflops=gflops,
        status=",".join(sorted(fit_statuses[0])) if lib == "gmmjax" else "-",
        path=fit_path(start, X) if lib == "gmmjax" else "-",
    )


def dtype_ratio(name, restarts, iters, rounds):
    """float64 against float32 gmmjax fits, interleaved: (median ms per iteration of each,
    median of the per-round float64 / float32 ratios)."""
    n, d, k, cov_type = WORKLOADS[name]
    X = make_data(n, d, k, spread=name == "W2s")
    start = gj.initialize(X, k, key=jax.random.split(jax.random.key(0), restarts))
    fits = {}
    for dtype in (np.float64, np.float32):
        cast = jax.tree.map(lambda a, dtype=dtype: a.astype(dtype), start)
        fits[dtype] = fitters("gmmjax", X.astype(dtype), cast, cov_type, k, restarts)
        fits[dtype](iters), fits[dtype](2 * iters)  # compile both lengths
    per_iter = {dtype: [] for dtype in fits}
    for _ in range(rounds):
        for dtype, fit in fits.items():
            t = time.perf_counter()
            fit(iters)
            short = time.perf_counter() - t
            t = time.perf_counter()
            fit(2 * iters)
            per_iter[dtype].append((time.perf_counter() - t - short) / iters)
    ratios = [a / b for a, b in zip(per_iter[np.float64], per_iter[np.float32], strict=True)]
    medians = [1e3 * statistics.median(per_iter[dtype]) for dtype in fits]
    return medians, statistics.median(ratios)


def whole_fit_fn(X, k, restarts, iters, init_params=None):
    """fit() running a whole gmmjax fit: k-means++ (unless `init_params`), `iters` EM
    iterations (tol=0) and the final pass; returns the FitResult."""

    def fit():
        res = gj.fit_em(
            X,
            k,
            key=jax.random.key(0),
            n_restarts=restarts,
            init_params=init_params,
            max_iter=iters,
            tol=0.0,
        )
        res.log_likelihood.block_until_ready()
        return res

    return fit


def whole_fit(name, restarts, iters, rounds):
    """float64 against float32 whole fits (compiled beforehand), interleaved round by round:
    (median seconds of each, median of the per-round float64 / float32 ratios, the largest
    |per-sample log-likelihood difference| over restarts from one shared start, the path
    float32's passes took at the end of that fit)."""
    n, d, k, _ = WORKLOADS[name]
    X32 = make_data(n, d, k, spread=name == "W2s").astype(np.float32)
    fits = {dt: whole_fit_fn(X32.astype(dt), k, restarts, iters) for dt in (np.float64, np.float32)}
    for fit in fits.values():
        fit()  # compile
    seconds = {dt: [] for dt in fits}
    for _ in range(rounds):
        for dt, fit in fits.items():
            t = time.perf_counter()
            fit()
            seconds[dt].append(time.perf_counter() - t)
    ratios = [a / b for a, b in zip(seconds[np.float64], seconds[np.float32], strict=True)]
    # Accuracy: both dtypes from one start (float64 k-means++ on the float32-rounded data).
    start = gj.initialize(
        X32.astype(np.float64), k, key=jax.random.split(jax.random.key(1), restarts)
    )
    lls = {}
    for dt in (np.float64, np.float32):
        cast = jax.tree.map(lambda a, dt=dt: a.astype(dt), start)
        res = whole_fit_fn(X32.astype(dt), k, restarts, iters, init_params=cast)()
        lls[dt] = np.asarray(res.log_likelihood, np.float64)
        if dt == np.float32:
            path = expansion_path(res.params, X32)
    gap = float(np.max(np.abs(lls[np.float64] - lls[np.float32])))
    medians = [statistics.median(seconds[dt]) for dt in fits]
    return medians, statistics.median(ratios), gap, path


_X64_OFF_CHILD = """
import statistics, sys, time
import jax
import numpy as np
sys.path.insert(0, {bench_dir!r})
import bench_em
assert not jax.config.jax_enable_x64
n, d, k, _ = bench_em.WORKLOADS[{name!r}]
X = bench_em.make_data(n, d, k, spread={name!r} == "W2s").astype(np.float32)
fit = bench_em.whole_fit_fn(X, k, {restarts}, {iters})
fit()
times = []
for _ in range({rounds}):
    t = time.perf_counter()
    fit()
    times.append(time.perf_counter() - t)
print(statistics.median(times))
"""


def whole_fit_x64_off(name, restarts, iters, rounds):
    """Median seconds of the same float32 whole fit in a child process with x64 off."""
    code = _X64_OFF_CHILD.format(
        bench_dir=os.path.dirname(os.path.abspath(__file__)),
        name=name,
        restarts=restarts,
        iters=iters,
        rounds=rounds,
    )
    env = {**os.environ, "GMMJAX_BENCH_X64": "0"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.split()[-1])


def peak_rss(wl, dtype, lib, restarts):
    """Peak RSS in GiB of a separate process running this one measurement (2 iterations)."""
    cmd = [
        "/usr/bin/time",
        "-v",
        sys.executable,
        __file__,
        "--workloads",
        wl,
        "--dtypes",
        dtype,
        "--libs",
        lib,
        "--restarts",
        str(restarts),
        "--iters",
        "2",
        "--repeats",
        "1",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out).group(1))
    return kb / 2**20


_FIRST_FIT_CHILD = """
import sys, time, warnings
t0 = time.perf_counter()
import numpy as np
import jax
import gmmjax as gj
from sklearn.mixture import GaussianMixture
imported = time.perf_counter() - t0
X = gj.load_dataset("iris")[0]
warnings.simplefilter("ignore")
t = time.perf_counter()
gj.GaussianMixture(3, n_init=8, random_state=0).fit(X).predict(X)
first = time.perf_counter() - t
t = time.perf_counter()
gj.GaussianMixture(3, n_init=8, random_state=0).fit(X).predict(X)
again = time.perf_counter() - t
t = time.perf_counter()
GaussianMixture(3, n_init=8, random_state=0).fit(X).predict(X)
sk = time.perf_counter() - t
print(imported, first, again, sk)
"""


def first_fit(repeats):
    """Medians over `repeats` fresh processes: (import, first fit + predict, second, sklearn)."""
    import tempfile

    def child(env):
        out = subprocess.run(
            [sys.executable, "-c", _FIRST_FIT_CHILD],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        )
        return [float(v) for v in out.stdout.split()]

    rows = {"cold cache": [], "warm cache": [], "cache off": []}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            rows["cold cache"].append(child({"GMMJAX_COMPILATION_CACHE": cache}))
            rows["warm cache"].append(child({"GMMJAX_COMPILATION_CACHE": cache}))
        rows["cache off"].append(child({"GMMJAX_COMPILATION_CACHE": "0"}))
    print("cache | import s | gmmjax first fit+predict s | gmmjax again s | sklearn s | ratio")
    for name, runs in rows.items():
        med = [statistics.median(col) for col in zip(*runs, strict=True)]
        print(
            f"{name} | {med[0]:.2f} | {med[1]:.2f} | {med[2]:.3f} | {med[3]:.3f} | "
            f"{med[3] / med[1]:.2f}x",
            flush=True,
        )


def main():
    # tol=0 runs stop at max_iter by design; scikit-learn warns about each one.
    warnings.simplefilter("ignore", ConvergenceWarning)
    warnings.simplefilter("ignore", UserWarning)  # lightning's advice about data loaders
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)  # its banner on every fit
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", default="W1,W2,W3,W4")
    p.add_argument("--dtypes", default="float64,float32")
    p.add_argument("--libs", default=",".join(LIBS))
    p.add_argument("--restarts", default="1,8,64", help="gmmjax restart counts")
    p.add_argument("--iters", type=int, default=5, help="M: fits of M and 2M iterations")
    p.add_argument("--repeats", type=int, default=3, help="timed runs; medians are reported")
    p.add_argument("--memory", action="store_true", help="peak RSS table instead of times")
    p.add_argument("--first-fit", action="store_true", help="first fit in a new process")
    p.add_argument("--dtype-ratio", action="store_true", help="float64 vs float32, interleaved")
    p.add_argument("--whole-fit", action="store_true", help="whole fits, float64 vs float32")
    args = p.parse_args()
    if args.first_fit:
        first_fit(args.repeats)
        return
    libs = [lib for lib in args.libs.split(",") if available(lib)]
    missing = sorted(set(args.libs.split(",")) - set(libs))
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"jax {jax.__version__}, numpy {np.__version__}; missing: {missing or 'none'}"
    )
    restart_counts = [int(r) for r in args.restarts.split(",")]
    if args.dtype_ratio:
        print("wl | restarts | float64 ms/iter | float32 ms/iter | float64/float32 (median)")
        for wl in args.workloads.split(","):
            for r in restart_counts:
                (f64, f32), ratio = dtype_ratio(wl, r, args.iters, args.repeats)
                print(f"{wl} | {r} | {f64:.1f} | {f32:.1f} | {ratio:.2f}", flush=True)
        return
    if args.whole_fit:
        print(
            "wl | restarts | iters | float64 s | float32 s | float64/float32 (median) | "
            "float32 s, x64 off | float64/float32 x64 off | max |ll64 - ll32| | float32 path"
        )
        for wl in args.workloads.split(","):
            for r in restart_counts:
                (f64, f32), ratio, gap, path = whole_fit(wl, r, args.iters, args.repeats)
                off = whole_fit_x64_off(wl, r, args.iters, args.repeats)
                print(
                    f"{wl} | {r} | {args.iters} | {f64:.3f} | {f32:.3f} | {ratio:.2f} | "
                    f"{off:.3f} | {f64 / off:.2f} | {gap:.1e} | {path}",
                    flush=True,
                )
        return
    if args.memory:
        print("wl | dtype | lib | restarts | peak RSS GiB")
        for wl in args.workloads.split(","):
            for dt in args.dtypes.split(","):
                for lib in libs:
                    for r in restart_counts if lib == "gmmjax" else [1]:
                        print(
                            f"{wl} | {dt} | {lib} | {r} | {peak_rss(wl, dt, lib, r):.2f}",
                            flush=True,
                        )
        return
    gemm = {dt: matmul_gflops(dt) for dt in args.dtypes.split(",")}
    for dt, rate in gemm.items():
        print(f"# XLA {dt} matmul rate: {rate:.1f} GFLOP/s")
    cols = (
        "wl",
        "dtype",
        "lib",
        "restarts",
        "ms_per_iter",
        "vs_sklearn",
        "compile_s",
        "gflops",
        "of_gemm",
        "status",
        "path",
    )
    print(" | ".join(cols))
    for wl in args.workloads.split(","):
        for dt in args.dtypes.split(","):
            sk_one = None
            for lib in sorted(libs, key=lambda name: name != "sklearn"):  # sklearn first
                for r in restart_counts if lib == "gmmjax" else [1]:
                    try:
                        row = bench(wl, dt, lib, r, args.iters, args.repeats)
                    except Exception as err:  # noqa: BLE001 - a peer failing is a result
                        print(f"{wl} | {dt} | {lib} | {r} | failed: {type(err).__name__}: {err}")
                        continue
                    if lib == "sklearn":
                        sk_one = row["ms_per_iter"]
                    row["vs_sklearn"] = None if sk_one is None else sk_one * r / row["ms_per_iter"]
                    row["of_gemm"] = row["gflops"] and row["gflops"] / gemm[dt]
                    print(" | ".join(_fmt(row[c]) for c in cols), flush=True)


def _fmt(v):
    if v is None:
        return "-"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    main()
