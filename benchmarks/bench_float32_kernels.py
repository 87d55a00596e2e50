"""The two kernels of one data chunk, expanded and explicit, in float32 and float64, timed.

An EM iteration does two things per chunk of rows and per restart: the E-step's squared
Mahalanobis distances (N, K) and the M-step's weighted second moments Σ γ (x − c)(x − c)ᵀ,
(K, D, D). gmmjax expands both about the data's centre into products with the shared
quadratic features φ(x) (one wide matrix product for every component and restart); the
expansion's rounding error grows as ε·d², d a component's distance from the centre in its own
deviations, which float64's ε absorbs and float32's does not (benchmarks/README.md). So where
that bound is too large float32 forms the differences x − c_k explicitly, and this script
times every layout of that explicit form tried, beside the expanded form in both dtypes,
through the same `jax.vmap` over restarts the fitting program uses.

With `--passes` it times instead one chunk's whole expanded pass (distances, log-sum-exp,
responsibilities and moments) in the layouts tried: row-major (four products and two
transposes per chunk), component-major with ψ(x)ᵀ built from slices, and gmmjax's own
component-major chunk (`gmmjax/_expanded_pass.py`, ψ(x)ᵀ as one gather of rows).

With `--value-pass` it times the pass that gives the log-likelihood alone (a fit's final
parameters, SQUAREM's and DAAREM's proposals) per chunk: by the statistics pass's kernel and
rule (`_em.pass_log_likelihood`: in float32 the expanded products where accurate), against
the differentiable log-likelihood kernel the gradient methods take (`streamed_log_likelihood`:
in float32 the explicit differences).

    python benchmarks/bench_float32_kernels.py [--rows 1024] [--features 16] [--components 16]
        [--restarts 8] [--repeats 5] [--passes | --value-pass [--chunks 16]]

Prints the median milliseconds per call of each variant. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

jax.config.update("jax_enable_x64", True)

import gmmjax as gj  # noqa: E402
from gmmjax import _em, _expanded_pass  # noqa: E402
from gmmjax._likelihood import kernel_component_log_prob, weighted_sum  # noqa: E402
from gmmjax._solver import map_restarts  # noqa: E402
from gmmjax._stats import Chunked, streamed_statistics  # noqa: E402


def _phi(x):
    """Upper-triangle products x_i x_j (i ≤ j) along the last axis, built from slices."""
    d = x.shape[-1]
    return jnp.concatenate([x[..., i : i + 1] * x[..., i:] for i in range(d)], axis=-1)


# Second moments about per-component shifts c (K, D), weights γ (N, K).
def moments_expanded(X, resp, shift):
    """Σ γ φ(x) as one product (the expanded path; the shift corrections are O(K D²))."""
    return resp.T @ _phi(X)


def moments_nkd(X, resp, shift):
    """Explicit differences in (N, K, D) layout (float32's path far from the centre)."""
    diff = X[:, None, :] - shift[None]
    return jnp.einsum("nkd,nke->kde", resp[:, :, None] * diff, diff)


def moments_knd_sqrt(X, resp, shift):
    """Explicit differences in (K, N, D) layout, scaled by √γ so one operand serves twice."""
    diff = (X[None] - shift[:, None]) * jnp.sqrt(resp.T)[:, :, None]
    return jnp.einsum("knd,kne->kde", diff, diff)


def moments_kdn(X, resp, shift):
    """Explicit differences in (K, D, N) layout, as a batched matmul."""
    diff = (X.T[None] - shift[:, :, None]) * jnp.sqrt(resp.T)[:, None, :]
    return jnp.matmul(diff, jnp.swapaxes(diff, 1, 2))


def moments_per_component_phi(X, resp, shift):
    """φ of each component's differences, then a weighted sum (symmetry, no products)."""
    return jnp.einsum("kn,knf->kf", resp.T, _phi(X[None] - shift[:, None]))


# Squared Mahalanobis distances with precision Cholesky factors U (K, D, D), means μ (K, D).
def distances_expanded(X, prec, mu):
    """xᵀPx − 2 (Pμ)ᵀx + μᵀPμ from φ(x) (the expanded path)."""
    d = X.shape[-1]
    P = prec @ jnp.swapaxes(prec, -1, -2)
    i, j = np.triu_indices(d)
    packed = P[:, i, j] * np.where(i == j, 1.0, 2.0)
    pmu = jnp.einsum("kde,ke->kd", P, mu)
    return _phi(X) @ packed.T - 2.0 * X @ pmu.T + jnp.sum(pmu * mu, -1)


def distances_linear(X, prec, mu):
    """‖xᵀU − μᵀU‖²: products with X, then the difference (float32's path far from the
    centre)."""
    y = jnp.einsum("nd,kde->nke", X, prec) - jnp.einsum("kd,kde->ke", mu, prec)
    return jnp.sum(jnp.square(y), -1)


def distances_one_product(X, prec, mu):
    """The same with the K factors side by side, X [U_1 … U_K] as one product."""
    k, d, _ = prec.shape
    y = (X @ jnp.transpose(prec, (1, 0, 2)).reshape(d, k * d)).reshape(-1, k, d)
    y = y - jnp.einsum("kd,kde->ke", mu, prec)
    return jnp.sum(jnp.square(y), -1)


# The whole expanded E-step pass (distances, log-sum-exp, responsibilities, moments) over
# `--chunks` chunks with `lax.scan`, as the fitting program runs it, in the layouts tried.
def pass_row_major(gmm, data):
    """(B, K) log densities from three products (φ(x), x, constants), log-sum-exp along each
    row, then Σγφ(x), Σγx and Σγ: the layout gmmjax used before the component-major pass."""

    def responsibilities(X, w, _c):
        comp = kernel_component_log_prob(gmm, X, expand=True)
        lp = logsumexp(comp, axis=-1, keepdims=True)
        return jnp.exp(comp - lp), weighted_sum(lp[:, 0], w)

    return streamed_statistics(
        responsibilities, data, cov_type=gmm.cov_type, shift=gmm.means, expand=True
    )


def pass_component_major_slices(gmm, data):
    """gmmjax's component-major pass with ψ(x)ᵀ built from row slices and a concatenation."""

    def features(Xt, _cov_type):
        d = Xt.shape[0]
        parts = [Xt[i : i + 1] * Xt[i:] for i in range(d)]
        return jnp.concatenate(parts + [Xt, jnp.ones((1, Xt.shape[1]), Xt.dtype)], axis=0)

    original = _expanded_pass.augmented_features
    _expanded_pass.augmented_features = features  # only while this function is traced
    try:
        return _expanded_pass.expanded_e_statistics(gmm, data)
    finally:
        _expanded_pass.augmented_features = original


def pass_component_major(gmm, data):
    """gmmjax's pass (`gmmjax/_expanded_pass.py`): ψ(x)ᵀ as one gather of rows of (Xᵀ; 1)."""
    return _expanded_pass.expanded_e_statistics(gmm, data)


def pass_differences(gmm, data):
    """The pass a fit takes where the expansion is not accurate: explicit differences."""
    return _em._fused_e_statistics(gmm, data, expand=False)


def _whitened_chunk(X, w, _chunk_index, UT, m, log_norm):
    """y_k = U_kᵀ x − U_kᵀ μ_k for every component as one product (K·D, D)·Xᵀ, then the
    moments Σ γ y yᵀ in the whitened frame (a batched product per component)."""
    k, d = m.shape
    Y = jnp.dot(UT, X.T, precision=jax.lax.Precision.HIGHEST).reshape(k, d, -1) - m[:, :, None]
    comp = log_norm[:, None] - 0.5 * jnp.sum(Y * Y, axis=1)
    log_p = logsumexp(comp, axis=0)
    resp = jnp.exp(comp - log_p) * w
    t1 = jnp.einsum("kb,kdb->kd", resp, Y, precision=jax.lax.Precision.HIGHEST)
    t2 = jnp.einsum("kdb,keb->kde", Y * resp[:, None, :], Y, precision=jax.lax.Precision.HIGHEST)
    return (jnp.sum(resp, axis=1), t1, t2), weighted_sum(log_p, w)


def pass_whitened(gmm, data):
    """A kernel tried for float32 far from the centre: whitening rounds as ε·d̃ (the distance of
    the centre in deviations), not ε·d̃², and takes one wide product for the distances, but its
    moments are a batched product per component, which XLA's CPU backend runs at about a
    sixth of the wide product's rate. Statistics moved back with U⁻ᵀ (· ) U⁻¹."""
    U = gmm.precisions_cholesky
    k, d, _ = U.shape
    UT = jnp.swapaxes(U, 1, 2).reshape(k * d, d)
    m = jnp.einsum("kde,kd->ke", U, gmm.means)
    (s0, t1, t2), ll = _em.sum_over_chunks(
        _whitened_chunk, data, UT, m, _expanded_pass._log_density_terms(gmm)[1]
    )
    Ut = jnp.swapaxes(U, 1, 2)
    s1 = jnp.linalg.solve(Ut, t1[..., None])[..., 0]
    s2 = jnp.swapaxes(jnp.linalg.solve(Ut, jnp.swapaxes(jnp.linalg.solve(Ut, t2), 1, 2)), 1, 2)
    return (s0, s1, s2), ll


def _passes(args):
    _time_passes(
        args,
        "pass",
        (
            ("pass: row-major", pass_row_major),
            ("pass: component-major, slices", pass_component_major_slices),
            ("pass: component-major, gather", pass_component_major),
            ("pass: explicit differences (fallback)", pass_differences),
            ("pass: whitened, one product (tried)", pass_whitened),
        ),
        jax.vmap,
    )


def _value_passes(args):
    # map_restarts, as the fitting program: float32's expansion decision is one for all
    # restarts (under a plain vmap the cond would run both branches).
    _time_passes(
        args,
        "log-likelihood pass",
        (
            ("value pass (pass_log_likelihood)", _em.pass_log_likelihood),
            ("gradient kernel (streamed_log_lik.)", _em.streamed_log_likelihood),
        ),
        lambda fn: functools.partial(map_restarts, fn),
    )


def _time_passes(args, title, passes, over_restarts):
    """Per chunk ms of each `fn(gmm, data)` in `passes` over `args.chunks` chunks of random
    rows, `args.restarts` random full-covariance restarts mapped by `over_restarts`."""
    n, d, k, r = args.rows, args.features, args.components, args.restarts
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.chunks, n, d))
    a = rng.normal(size=(r, k, d, d)) * 0.1
    cov = np.eye(d) + a @ np.swapaxes(a, -1, -2)
    means = rng.normal(size=(r, k, d)) * 0.5
    print(
        f"{args.chunks} chunks of {n} rows, features {d}, components {k}, restarts {r} "
        "(vmapped); ms per chunk"
    )
    print(f"{title:36s} {'float32':>9s} {'float64':>9s}")
    for name, fn in passes:
        row = []
        for dtype in (np.float32, np.float64):
            gmm = gj.GMM(np.full((r, k), 1.0 / k, dtype), means.astype(dtype), cov.astype(dtype))
            data = Chunked(jnp.asarray(X, dtype), jnp.ones(X.shape[:2], dtype))
            program = jax.jit(lambda g, c, fn=fn: over_restarts(lambda h: fn(h, c))(g))
            row.append(_median_ms(program, (gmm, data), args.repeats, calls=3) / args.chunks)
        print(f"{name:36s} {row[0]:9.3f} {row[1]:9.3f}")


def _median_ms(fn, args, repeats, calls=30):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            out = fn(*args)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - start) / calls)
    return 1e3 * float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--components", type=int, default=16)
    parser.add_argument("--restarts", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--passes", action="store_true")
    parser.add_argument("--value-pass", action="store_true")
    parser.add_argument("--chunks", type=int, default=16)
    args = parser.parse_args()
    if args.passes:
        return _passes(args)
    if args.value_pass:
        return _value_passes(args)
    n, d, k, r = args.rows, args.features, args.components, args.restarts
    rng = np.random.default_rng(0)
    data = {
        "X": rng.normal(size=(n, d)),
        "resp": rng.dirichlet(np.ones(k), size=(r, n)),
        "shift": rng.normal(size=(r, k, d)),
        "prec": np.tril(rng.normal(size=(r, k, d, d))),
    }
    moments = [
        ("moments: expanded, Σγφ(x)", moments_expanded),
        ("moments: explicit (N,K,D)", moments_nkd),
        ("moments: explicit (K,N,D) √γ", moments_knd_sqrt),
        ("moments: explicit (K,D,N) matmul", moments_kdn),
        ("moments: φ per component", moments_per_component_phi),
    ]
    distances = [
        ("distances: expanded, φ(x)", distances_expanded),
        ("distances: linear, xᵀU − μᵀU", distances_linear),
        ("distances: linear, one product", distances_one_product),
    ]
    print(f"rows {n}, features {d}, components {k}, restarts {r} (vmapped); ms per call")
    print(f"{'kernel':36s} {'float32':>9s} {'float64':>9s}")
    for kernels, middle in ((moments, "resp"), (distances, "prec")):
        for name, fn in kernels:
            row = []
            for dtype in (np.float32, np.float64):
                operands = [jnp.asarray(data[a], dtype) for a in ("X", middle, "shift")]
                program = jax.jit(jax.vmap(fn, in_axes=(None, 0, 0)))
                row.append(_median_ms(program, operands, args.repeats))
            print(f"{name:36s} {row[0]:9.3f} {row[1]:9.3f}")


if __name__ == "__main__":
    main()
