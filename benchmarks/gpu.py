"""GPU benchmark: gmmjax EM per iteration vs a plain jitted EM iteration, float32, on one card.

One prepared script to run on a GPU machine (see benchmarks/README.md). For each
workload and restart count it times, in one process on the same card:

- `reference`: the textbook full-covariance EM iteration written directly in jax.numpy (no
  chunking, no restarts machinery, no status checks), jitted, one restart at a time, R times;
- `gmmjax`: `fit_em` with R restarts from the same initial parameters, tol=0 (each row also
  records whether the float32 pass expands from those starts, `expanded_at_start`); the steady-state
  time per iteration is (T(M2) − T(M1)) / (M2 − M1) for two compiled fits of M1 < M2
  iterations, so initialisation, the final log-likelihood pass and transfers cancel out;
  for each chunk setting of `--chunks`: `default` (the rule for the card: the chunk bounds
  memory only, `gmmjax._prepare.default_chunk_size`), `cpu` (the CPU's cache-sized rule for
  the same fit, the comparison that tunes the card's rule) or a number of rows.

both at full float32 precision (`Precision.HIGHEST`, gmmjax's default) and with TF32 allowed
(`jax.default_matmul_precision("tensorfloat32")`, which gmmjax honours). Peak device memory is
read from `device.memory_stats()` where the backend reports it.

Workloads: W2 N=100k D=16 K=16, W4 N=1M D=8 K=8, W5 N=1M D=32 K=32, W6 N=4M D=64 K=64 (all full).
Target: per iteration no slower than the reference (H200: about 5.6 ms W5 and 78 ms W6
with TF32; 7.1 ms and 140 ms at full precision).

The configurations run most important first: one restart before eight, W5 and W6 (the
target's workloads) first; no new fit starts after `--budget-s` seconds, and the ones left
out are listed at the end and in the JSON. Every row is written as soon as it is measured.
`process_peak_device_bytes` is the process's peak device memory so far (JAX keeps no
per-fit peak), so every row after W6's reports at least W6's.
On a CPU (`--smoke`) the `cpu` setting is the default rule and is not run twice.

Usage:
    python benchmarks/gpu.py                  # everything, prints a table and writes --out
    python benchmarks/gpu.py --smoke          # tiny sizes: checks the script runs (any device)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import gmmjax as gj
import gmmjax._program
from gmmjax._em import pass_expands
from gmmjax._likelihood import expansion_error
from gmmjax._prepare import default_chunk_size

# (T(2M) − T(M)) / M needs both fits built alike: small fits otherwise compile without LLVM's
# optimisations (see gmmjax/_program.py).
gmmjax._program._QUICK_WORK = 0

WORKLOADS = {
    "W2": (100_000, 16, 16),
    "W4": (1_000_000, 8, 8),
    "W5": (1_000_000, 32, 32),
    "W6": (4_000_000, 64, 64),
}
SMOKE = {"S1": (4_000, 4, 3), "S2": (8_000, 6, 5)}


def make_data(n, d, k, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, d)) * 3.0
    labels = rng.integers(0, k, size=n)
    return (means[labels] + rng.normal(size=(n, d))).astype(np.float32)


@jax.jit
def reference_step(X, weights, means, cov):
    """One EM iteration, written the plain way: (weights, means, cov) -> next, and mean ℓ."""
    n, d = X.shape
    chol = jnp.linalg.cholesky(cov)  # (K, D, D)
    diff = X[None, :, :] - means[:, None, :]  # (K, N, D)
    y = jax.scipy.linalg.solve_triangular(chol, jnp.swapaxes(diff, 1, 2), lower=True)
    maha = jnp.sum(y * y, axis=1)  # (K, N)
    log_det = 2 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=1, axis2=2)), axis=1)
    log_p = -0.5 * (d * jnp.log(2 * jnp.pi) + log_det[:, None] + maha) + jnp.log(weights)[:, None]
    norm = jax.scipy.special.logsumexp(log_p, axis=0)
    resp = jnp.exp(log_p - norm)  # (K, N)
    nk = jnp.sum(resp, axis=1) + 10 * jnp.finfo(X.dtype).eps
    new_means = resp @ X / nk[:, None]
    centred = X[None, :, :] - new_means[:, None, :]
    new_cov = jnp.einsum("kn,knd,kne->kde", resp, centred, centred) / nk[:, None, None]
    new_cov = new_cov + 1e-6 * jnp.eye(d, dtype=X.dtype)
    return nk / n, new_means, new_cov, jnp.mean(norm)


def _median_time(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def time_reference(X, start, restarts, iters, repeats):
    """Seconds per iteration of `restarts` sequential plain EM runs (the restarts' sum)."""

    def run():
        w, m, c = start.weights, start.means, start.covariances
        for _ in range(iters):
            w, m, c, ll = reference_step(X, w, m, c)
        ll.block_until_ready()

    return restarts * _median_time(run, repeats) / iters


def time_gmmjax(X, starts, restarts, iters, repeats, chunk_size):
    k = starts.means.shape[-2]

    def fit(m):
        res = gj.fit_em(
            X,
            k,
            key=jax.random.key(0),
            n_restarts=restarts,
            init_params=starts,
            max_iter=m,
            tol=0.0,
            chunk_size=chunk_size,
        )
        res.log_likelihood.block_until_ready()
        return res

    t = time.perf_counter()
    fit(iters)
    compile_s = time.perf_counter() - t
    short, long = (
        _median_time(lambda: fit(iters), repeats),
        _median_time(lambda: fit(2 * iters), repeats),
    )
    return (long - short) / iters, compile_s


def centred(starts, X):
    """The starts with their means centred as the fit centres the data: what gmmjax's float32
    pass reads its expansion bound from (docs/math.md §3)."""
    means = starts.means - jnp.mean(X, axis=0)
    return gj.GMM(starts.weights, means, starts.covariances, starts.cov_type)


def peak_device_bytes():
    """The process's peak device memory so far (None where the backend keeps no count)."""
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def chunk_rows(setting, n, d, k, restarts, platform):
    """(chunk_size to pass, rows per chunk) for a `--chunks` item: the fit's default (None, and
    the rows of the `platform`'s rule), the CPU rule, or a number of rows."""
    if setting not in ("default", "cpu"):
        return min(n, int(setting)), min(n, int(setting))
    rule = "cpu" if setting == "cpu" else platform
    rows = default_chunk_size(
        n, restarts, k, n_features=d, cov_type="full", dtype=np.float32, platform=rule
    )
    return (None if setting == "default" else rows), rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", default="W5,W6,W2,W4")
    p.add_argument("--restarts", default="1,8")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--chunks", default="default,cpu", help="default, cpu or rows, comma-separated")
    p.add_argument("--budget-s", type=float, default=420.0, help="no new configuration after")
    p.add_argument("--smoke", action="store_true", help="tiny workloads, any device")
    p.add_argument("--out", default="benchmarks/results/gpu_results.json")
    args = p.parse_args()
    began = time.perf_counter()
    workloads = SMOKE if args.smoke else {w: WORKLOADS[w] for w in args.workloads.split(",")}
    if args.smoke:
        args.iters, args.repeats = 3, 1
    dev = jax.devices()[0]
    print(f"# {dev.device_kind} ({dev.platform}), jax {jax.__version__}", flush=True)
    settings = args.chunks.split(",")
    if dev.platform == "cpu" and "default" in settings:  # there the card's rule is the CPU's
        settings = [s for s in settings if s != "cpu"]
    rows, skipped, data = [], [], {}

    def out_of_time(what):
        if time.perf_counter() - began <= args.budget_s:
            return False
        skipped.append(what)
        return True

    for restarts in map(int, args.restarts.split(",")):
        for name, (n, d, k) in workloads.items():
            if out_of_time(f"{name} R={restarts}"):
                continue
            if name not in data:
                data[name] = jnp.asarray(make_data(n, d, k))
            X = data[name]
            keys = jax.random.split(jax.random.key(1), restarts)
            starts = gj.initialize(X[: min(n, 100_000)], k, key=keys)
            at_start = centred(starts, X)
            bound = float(jnp.max(jax.vmap(expansion_error)(at_start)))
            for precision in ("highest", "tensorfloat32"):
                if out_of_time(f"{name} R={restarts} {precision}"):
                    continue
                ctx = (
                    jax.default_matmul_precision("tensorfloat32")
                    if precision == "tensorfloat32"
                    else contextlib.nullcontext()
                )
                with ctx:
                    ref = _guarded(time_reference, X, starts[0], restarts, args.iters, args.repeats)
                    for setting in settings:
                        if out_of_time(f"{name} R={restarts} {precision} chunks={setting}"):
                            continue
                        chunk, chunk_rows_used = chunk_rows(
                            setting, n, d, k, restarts, dev.platform
                        )
                        got = _guarded(
                            time_gmmjax, X, starts, restarts, args.iters, args.repeats, chunk
                        )
                        row = dict(
                            workload=name,
                            n=n,
                            d=d,
                            k=k,
                            restarts=restarts,
                            precision=precision,
                            chunk_setting=setting,
                            chunk=chunk_rows_used,
                            expansion_bound=bound,
                            expanded_at_start=pass_expands(at_start, n),
                            reference_ms_per_iter=_ms(ref),
                            gmmjax_ms_per_iter=_ms(got if isinstance(got, str) else got[0]),
                            compile_s=None if isinstance(got, str) else got[1],
                            process_peak_device_bytes=peak_device_bytes(),
                        )
                        rows.append(row)
                        print(json.dumps(row), flush=True)
                        _write(args.out, dev, rows, skipped)  # after every row: nothing lost
    _write(args.out, dev, rows, skipped)
    print(f"# {time.perf_counter() - began:.0f} s; not run (budget): {skipped or 'none'}")


def _guarded(fn, *args):
    """The measurement, or the error text (e.g. out of memory) so that the run goes on."""
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001 - recorded in the table, not swallowed
        return f"error: {type(err).__name__}: {str(err)[:200]}"


def _ms(seconds):
    return seconds if isinstance(seconds, str) else 1e3 * seconds


def _write(path, dev, rows, skipped):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp"
    out = {"device": dev.device_kind, "jax": jax.__version__, "rows": rows, "skipped": skipped}
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
