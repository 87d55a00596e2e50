"""Batched Cholesky factorisation and solve of many small matrices: gmmjax's array-operation
version (`gmmjax/_small_linalg.py`) beside jaxlib's LAPACK one, in one process.

gmmjax factors its batches (the covariances of every restart and component; one matrix per
row and component for missing values) with its own loops because jaxlib's CPU Cholesky can
deadlock when two large ones run at once (see the module). This prints what that costs or
saves: the median milliseconds of L = chol(A) followed by L Lᵀ X = B (3 right-hand sides),
jitted, for each matrix size, and the largest difference between the two results.

    python benchmarks/bench_small_linalg.py [--sizes 4,8,12,16,24,40] [--elements 800000]
        [--repeats 5]

The batch of size d holds `elements / d²` matrices (the same memory at every size).
Nothing here is a test.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from gmmjax import _small_linalg as small

jax.config.update("jax_enable_x64", True)


def _median_ms(f, *args, repeats):
    jax.block_until_ready(f(*args))  # compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4,8,12,16,24,40")
    parser.add_argument("--elements", type=int, default=800_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    lapack = jax.jit(lambda A, B: jsl.cho_solve((jnp.linalg.cholesky(A), True), B))
    ours = jax.jit(lambda A, B: small.cho_solve(small.cholesky(A), B))
    print(f"{'d':>3} {'batch':>7} {'LAPACK ms':>10} {'gmmjax ms':>10} {'ratio':>6} {'max diff':>9}")
    for d in map(int, args.sizes.split(",")):
        batch = max(args.elements // (d * d), 1)
        rng = np.random.default_rng(d)
        A = rng.normal(size=(batch, d, d))
        A = jnp.asarray(A @ np.swapaxes(A, -1, -2) + d * np.eye(d))
        B = jnp.asarray(rng.normal(size=(batch, d, 3)))
        diff = float(jnp.max(jnp.abs(lapack(A, B) - ours(A, B))))
        t_lapack = _median_ms(lapack, A, B, repeats=args.repeats)
        t_ours = _median_ms(ours, A, B, repeats=args.repeats)
        print(
            f"{d:>3} {batch:>7} {t_lapack:>10.2f} {t_ours:>10.2f} "
            f"{t_ours / t_lapack:>6.2f} {diff:>9.1e}"
        )


if __name__ == "__main__":
    main()
