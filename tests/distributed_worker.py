"""Run by tests/test_distributed.py in fresh processes (device flags must precede JAX's start).

python distributed_worker.py devices OUT.json
    4 forced CPU devices: sharded fits vs one-device fits; writes the largest differences
    and the largest all-gather in the compiled sharded EM program.
python distributed_worker.py process PID PORT OUT.npz
    One of two processes joined by jax.distributed; fits its own rows; saves the result.
"""

import json
import os
import re
import sys

if __name__ == "__main__" and sys.argv[1] == "devices":
    flags = os.environ.get("XLA_FLAGS", "")  # test_distributed.py passes only its opt level
    os.environ["XLA_FLAGS"] = (flags + " --xla_force_host_platform_device_count=4").strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

import gmmjax as gj  # noqa: E402

N_SAMPLES, K = 6001, 3


def data():
    X, _, _ = gj.make_mixture(n_samples=N_SAMPLES, n_components=K, n_features=3, separation=1.0)
    return X


def max_diff(a, b) -> float:
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def largest_all_gather(compiled_text: str) -> int:
    """Elements in the largest all-gather result of an HLO module (0 if none)."""
    sizes = [0]
    for dims in re.findall(r"= \w+\[([\d,]*)\][^=]*? all-gather\(", compiled_text):
        sizes.append(int(np.prod([int(d) for d in dims.split(",") if d])))
    return max(sizes)


def devices(out_path):
    from gmmjax._config import FitConfig
    from gmmjax._fit import run_prepared
    from gmmjax._prepare import prepare_fit

    X = data()
    key = jax.random.key(1)
    report = {}
    meshes = {
        "data4": jax.make_mesh((4,), ("data",)),
        "restarts2_data2": jax.make_mesh((2, 2), ("restarts", "data")),
    }
    common = dict(key=key, n_restarts=4, max_iter=25, tol=0.0, chunk_size=1000)
    for cov in ("full", "diag", "spherical", "tied"):
        one = gj.fit_em(X, K, cov_type=cov, **common)
        for name, mesh in meshes.items():
            many = gj.fit_em(X, K, cov_type=cov, mesh=mesh, **common)
            report[f"em/{cov}/{name}"] = max_diff(
                (one.params, one.log_likelihood, one.history, one.n_iter),
                (many.params, many.log_likelihood, many.history, many.n_iter),
            )
    for optimizer in ("lbfgs", "adam"):
        options = dict(key=key, optimizer=optimizer, n_restarts=2, max_iter=15, chunk_size=1000)
        one = gj.fit_gradient(X, K, **options)
        many = gj.fit_gradient(X, K, mesh=meshes["data4"], **options)
        report[f"gradient/{optimizer}"] = max_diff(
            (one.params, one.log_likelihood), (many.params, many.log_likelihood)
        )
    config = FitConfig(n_components=K, n_restarts=4, max_iter=25, tol=0.0, chunk_size=1000)
    prep = prepare_fit(X, config, key=key, mesh=meshes["data4"])
    timing = {}
    run_prepared(prep, config, gj.EM(), {}, timing=timing)
    text = timing["compiled"].as_text()
    report["data_elements"] = int(prep.data.X.size)
    report["data_shards"] = len(prep.data.X.sharding.device_set)
    report["largest_all_gather"] = largest_all_gather(text)
    with open(out_path, "w") as f:
        json.dump(report, f)


def process(pid, port, out_path):
    jax.distributed.initialize(
        coordinator_address=f"localhost:{port}", num_processes=2, process_id=pid
    )
    X = data()
    mine = X[:3500] if pid == 0 else X[3500:]  # unequal shares on purpose
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    start = gj.initialize(X, K, key=jax.random.key(5))
    common = dict(key=jax.random.key(1), max_iter=30, tol=0.0, chunk_size=1000, mesh=mesh)
    em = gj.fit_em(mine, K, init_params=start, **common)
    kmeans = gj.fit_em(mine, K, n_restarts=2, **common)
    lbfgs = gj.fit_gradient(mine, K, init_params=start, **dict(common, max_iter=15))
    np.savez(
        out_path,
        devices=jax.device_count(),
        em_means=em.params.means,
        em_cov=em.params.covariances,
        em_ll=em.log_likelihood,
        kmeans_ll=kmeans.log_likelihood,
        kmeans_means=kmeans.params.means,
        lbfgs_means=lbfgs.params.means,
        lbfgs_ll=lbfgs.log_likelihood,
    )
    jax.distributed.shutdown()


if __name__ == "__main__":
    if sys.argv[1] == "devices":
        devices(sys.argv[2])
    else:
        process(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
