"""How accurate is a float32 EM fit on each of its two paths, against float64 from the same start?

float32's E-step pass either expands the quadratic forms into products with the shared
quadratic features (fast; rounding error about ε·d², d a component's Mahalanobis distance from
the data's centre) or forms explicit differences (exact, 5-6x slower on W2). gmmjax picks
the expansion while the bound `expansion_error` ≤ `EXPANSION_TOLERANCE` (docs/math.md §3).
This script forces each path in turn (by setting the tolerance to 0 or infinity) on mixtures of
16 components in 16 dimensions whose means spread ever wider, runs 100 EM steps from the same 4
starts in float32 and float64, and prints for each spread: the bound at the float64 fit, then
per path the largest relative difference of the per-sample log-likelihood over restarts and the
largest entry of the whitened covariance error L⁻¹(Σ₃₂ − Σ₆₄)L⁻ᵀ of the best restart
(Σ₆₄ = LLᵀ). Nothing here is a test.

    python benchmarks/float32_accuracy.py [--rows 20000] [--spreads 1,3,10,30,100]
"""

from __future__ import annotations

import argparse

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

import gmmjax as gj  # noqa: E402
from gmmjax import _likelihood  # noqa: E402


def mixture(n, d, k, spread, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, d)) * spread
    labels = rng.integers(0, k, size=n)
    scales = rng.uniform(0.5, 1.5, size=(k, d))
    return means[labels] + rng.normal(size=(n, d)) * scales[labels]


def whitened_error(c32, c64):
    L = np.linalg.cholesky(c64)
    left = np.linalg.solve(L, c32 - c64)
    return np.max(np.abs(np.linalg.solve(L, np.swapaxes(left, -1, -2))))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--spreads", default="1,3,10,30,100")
    args = parser.parse_args()
    k, d = 16, 16
    tolerance = _likelihood.EXPANSION_TOLERANCE
    print(f"{args.rows} rows, D={d}, K={k}, 4 restarts, 100 EM steps; tolerance {tolerance:g}")
    print("spread | bound at the fit | path | loglik rel. diff | whitened cov error")
    for spread in (float(s) for s in args.spreads.split(",")):
        X = mixture(args.rows, d, k, spread)
        start = gj.initialize(X, k, key=jax.random.split(jax.random.key(0), 4))
        options = dict(key=jax.random.key(0), n_restarts=4, init_params=start, max_iter=100)
        f64 = gj.fit_em(X, k, tol=0.0, **options)
        best = int(f64.best_index)
        fit = f64.params[best]
        centred = gj.GMM(
            fit.weights.astype(np.float32),
            (fit.means - X.mean(axis=0)).astype(np.float32),
            fit.covariances.astype(np.float32),
            "full",
        )
        bound = float(_likelihood.expansion_error(centred))
        for path, forced in (("differences", 0.0), ("expanded", np.inf)):
            _likelihood.EXPANSION_TOLERANCE = forced
            jax.clear_caches()  # the tolerance is read at trace time
            f32 = gj.fit_em(X.astype(np.float32), k, tol=0.0, **options)
            ll = np.asarray(f32.log_likelihood, np.float64) / np.asarray(f64.log_likelihood)
            cov = whitened_error(
                np.asarray(f32.params.covariances[best], np.float64),
                np.asarray(f64.params.covariances[best]),
            )
            print(
                f"{spread:g} | {bound:.2e} | {path} | {np.max(np.abs(ll - 1)):.1e} | {cov:.1e}",
                flush=True,
            )
        _likelihood.EXPANSION_TOLERANCE = tolerance


if __name__ == "__main__":
    main()
