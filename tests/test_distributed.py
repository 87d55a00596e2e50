"""Sharded fits equal one-device fits: 4 forced CPU devices, and two jax.distributed processes.

Both run in fresh subprocesses (tests/distributed_worker.py): the device count is fixed when
JAX starts, and `jax.distributed.initialize` can run once per process.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import gmmjax as gj

WORKER = Path(__file__).with_name("distributed_worker.py")
TIMEOUT = 300


def _env():
    env = dict(os.environ)
    # None of the caller's XLA flags (a device count would change the test), but conftest's
    # quicker compilation, with the same semantics, as in this process's reference fits.
    env["XLA_FLAGS"] = "--xla_backend_optimization_level=0"
    env["JAX_PLATFORMS"] = "cpu"
    return env


# Slow (about 80 s: a subprocess with 8 virtual devices); the two-process test below keeps
# sharded fitting in the default run.
@pytest.mark.slow
def test_sharded_fits_equal_the_one_device_fit(tmp_path):
    out = tmp_path / "report.json"
    run = subprocess.run(
        [sys.executable, str(WORKER), "devices", str(out)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads(out.read_text())
    diffs = {k: v for k, v in report.items() if "/" in k}
    assert len(diffs) == 10  # 4 cov_types x 2 meshes + 2 optimizers
    for name, diff in diffs.items():
        assert diff < 1e-10, (name, diff)
    # The rows stay split: nothing as large as a shard of the data is ever gathered.
    assert report["data_shards"] == 4
    assert report["largest_all_gather"] < report["data_elements"] // 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_agree_with_one(tmp_path):
    port = _free_port()
    outs = [tmp_path / f"p{pid}.npz" for pid in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "process", str(pid), str(port), str(outs[pid])],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for pid in range(2)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=TIMEOUT)[0])
    finally:
        for p in procs:
            p.kill()
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-4000:]
    a, b = (np.load(o) for o in outs)
    assert int(a["devices"]) == 2
    for name in a.files:  # every process holds the same, complete result
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)

    from distributed_worker import K, data  # same data, generated in this process

    X = data()
    start = gj.initialize(X, K, key=jax.random.key(5))
    em = gj.fit_em(X, K, key=jax.random.key(1), init_params=start, max_iter=30, tol=0.0)
    np.testing.assert_allclose(a["em_means"][0], em.params.means[0], rtol=0, atol=1e-10)
    np.testing.assert_allclose(a["em_cov"][0], em.params.covariances[0], rtol=0, atol=1e-10)
    np.testing.assert_allclose(a["em_ll"], em.log_likelihood, rtol=0, atol=1e-10)
    lbfgs = gj.fit_gradient(X, K, key=jax.random.key(1), init_params=start, max_iter=15)
    np.testing.assert_allclose(a["lbfgs_ll"], lbfgs.log_likelihood, rtol=0, atol=1e-10)
    np.testing.assert_allclose(a["lbfgs_means"], lbfgs.params.means, rtol=0, atol=1e-7)
    # k-means++ draws over the two hosts' rows: a proper fit, not a copy of the one-process
    # draw (the rows sit in another order), so compare its quality, not its parameters.
    assert np.all(np.isfinite(a["kmeans_ll"]))
    assert np.max(a["kmeans_ll"]) > em.log_likelihood[0] - 0.05
