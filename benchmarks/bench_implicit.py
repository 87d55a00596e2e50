"""The cost of one implicit gradient of a fitted mixture against one fit, and against the
gradient through the unrolled EM iterations.

    python benchmarks/bench_implicit.py [--repeats 5]

For each problem: `fit_differentiable` (reg_covar 1e-6, `fit_em`'s default) to tol 1e-10
from a fitted start perturbed by a 1% change in the sample weights (so EM has work to do),
timed (a) forward only, (b) forward plus the implicit gradient of one fitted mean with
respect to all N sample weights (`jax.value_and_grad`), (c) the same through 300 unrolled EM
steps (skipped where reverse mode's stored steps would not fit in memory), beside (d)
`fit_em` from scratch (1 k-means++ restart, same tol, at most 1000 steps). "gradient" is
(b) − (a), the cost of the implicit gradient alone. Medians of `repeats` calls after one
warm-up call (compilation excluded). Nothing here is a test.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

import gmmjax as gj

jax.config.update("jax_enable_x64", True)


def problems():
    faithful = jnp.asarray(gj.load_dataset("faithful")[0], jnp.float64)
    yield "faithful 272 x 2, K=2, full", faithful, 2
    for n, d, k in ((10_000, 5, 4), (100_000, 8, 8)):
        X, _, _ = gj.make_mixture(n_components=k, n_features=d, n_samples=n, separation=3.0, seed=0)
        yield f"simulated {n} x {d}, K={k}, full", jnp.asarray(X, jnp.float64), k


def median_time(fn, repeats):
    jax.block_until_ready(fn())  # compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(X, k, repeats):
    """Median seconds: (fit_em from scratch, warm-started fit, fit + implicit gradient,
    fit + unrolled gradient or None where its stored steps would not fit in memory)."""
    start = gj.fit_em(X, k, key=jax.random.key(1), tol=1e-10, max_iter=2000).best
    n, d = X.shape
    w = jnp.ones(n).at[: n // 100].set(2.0)

    def mean(w, **kw):
        return gj.fit_differentiable(X, start, sample_weight=w, reg_covar=1e-6, **kw).means[0, 0]

    scratch = median_time(
        lambda: (
            gj.fit_em(
                X, k, key=jax.random.key(2), n_restarts=1, tol=1e-10, max_iter=1000
            ).log_likelihood
        ),
        repeats,
    )
    fit = median_time(lambda: mean(w, tol=1e-10), repeats)
    implicit = median_time(lambda: jax.value_and_grad(mean)(w, tol=1e-10), repeats)
    unrolled = None
    if n * k * d * 300 * 8 < 2e9:  # reverse mode keeps every step's (N, K, D) intermediates
        unrolled = median_time(
            lambda: jax.value_and_grad(mean)(w, gradient="unrolled", max_iter=300), repeats
        )
    return scratch, fit, implicit, unrolled


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(
        f"{'problem':32s} {'fit_em':>8s} {'warm fit':>9s} {'gradient':>9s} {'/fit_em':>8s} "
        f"{'unrolled 300':>13s}"
    )
    for name, X, k in problems():
        scratch, fit, implicit, unrolled = measure(X, k, args.repeats)
        grad = max(implicit - fit, 0.0)
        un = "-" if unrolled is None else f"{unrolled:.3f}s"
        print(
            f"{name:32s} {scratch:7.3f}s {fit:8.3f}s {grad:8.3f}s {grad / scratch:8.2f} {un:>13s}",
            flush=True,
        )


if __name__ == "__main__":
    main()
