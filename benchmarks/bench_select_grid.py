"""The full mclust grid, fourteen covariance models x G = 1..9, by gmmjax's `select` beside R
mclust's `Mclust()` on the same data, run side by side from one script.

    python benchmarks/bench_select_grid.py [--datasets faithful,iris,wine] [--repeats 3]

gmmjax, two settings: "mclust-like" (1 restart per cell and mclust's stopping rule: a change
in the log-likelihood below 1e-5 of its size, here tol = 1e-5 x |mean log-likelihood of the
one-component fit|) and "default" (8 k-means++ restarts, tol 1e-6), both at most 500 EM
steps. For each: the first call in the process (compilation of the 14 programs included,
persistent cache off) and the median of `repeats` further calls (compiled programs reused).
mclust: `Mclust(X, G = 1:9)` (all fourteen models, one hierarchical-clustering start, tol
1e-5 relative), the median elapsed time of `repeats` calls inside one R process (R's start-up
excluded). Each reports its BIC-best cell. Needs `Rscript` with mclust (`apt-get install
r-cran-mclust`); without it only gmmjax runs. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time

os.environ.setdefault("GMMJAX_COMPILATION_CACHE", "0")  # the first call compiles for real

import jax  # noqa: E402
import numpy as np  # noqa: E402

import gmmjax as gj  # noqa: E402

jax.config.update("jax_enable_x64", True)

R_SCRIPT = r"""
suppressPackageStartupMessages(library(mclust))
args <- commandArgs(trailingOnly = TRUE)
X <- as.matrix(read.csv(args[1], header = FALSE))
repeats <- as.integer(args[2])
times <- numeric(repeats)
for (r in seq_len(repeats)) {
  times[r] <- system.time(fit <- Mclust(X, G = 1:9, verbose = FALSE))[["elapsed"]]
}
cat(sprintf('{"seconds": %.4f, "model": "%s", "G": %d, "bic": %.6f}\n',
            median(times), fit$modelName, fit$G, fit$bic))
"""


def time_gmmjax(X, restarts, tol, repeats):
    def run():
        return gj.select(
            X, range(1, 10), cov_types="all", n_restarts=restarts, key=jax.random.key(0),
            max_iter=500, tol=tol,
        )  # fmt: skip

    t = time.perf_counter()
    sel = run()
    first = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sel = run()
        times.append(time.perf_counter() - t)
    return first, float(np.median(times)), sel


def mclust_like_tol(X):
    """1e-5 x |mean log-likelihood| of the one-component (VVV) fit: mclust's relative rule."""
    one = gj.m_step(X, np.ones((X.shape[0], 1)), cov_type="full", reg_covar=0.0)
    return 1e-5 * abs(float(gj.log_likelihood(one, X)) / X.shape[0])


def time_mclust(X, repeats):
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "x.csv")
        np.savetxt(data, X, delimiter=",", fmt="%.17g")
        script = os.path.join(tmp, "grid.R")
        with open(script, "w") as f:
            f.write(R_SCRIPT)
        out = subprocess.run(
            ["Rscript", script, data, str(repeats)], capture_output=True, text=True, check=True
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="faithful,iris,wine")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(
        "dataset   N x D    setting       gmmjax first  gmmjax warm   mclust  warm/mclust  "
        "gmmjax best  mclust best"
    )
    for name in args.datasets.split(","):
        X = np.asarray(gj.load_dataset(name)[0], np.float64)
        ref = time_mclust(X, args.repeats)
        settings = (("mclust-like", 1, mclust_like_tol(X)), ("default", 8, 1e-6))
        for label, restarts, tol in settings:
            # Each setting compiles 14 programs; drop the previous ones: with about 60 of them
            # alive, XLA's CPU compiler failed ("LLVM compilation error: Cannot allocate
            # memory") on a machine with 23 GiB free.
            jax.clear_caches()
            first, warm, sel = time_gmmjax(X, restarts, tol, args.repeats)
            ours = f"{sel.cov_type},{sel.n_components}"
            size = f"{X.shape[0]}x{X.shape[1]}"
            line = f"{name:9s} {size:8s} {label:12s} {first:10.1f} s {warm:10.2f} s"
            if ref is None:
                print(line + "   (no R)")
                continue
            print(
                f"{line} {ref['seconds']:7.2f} s {warm / ref['seconds']:10.1f}x   {ours:11s}  "
                f"{ref['model']},{ref['G']}"
            )


if __name__ == "__main__":
    main()
