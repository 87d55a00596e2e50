"""Fit one GMM across several processes (hosts) with jax.distributed: each loads its own rows.

Two processes on one machine (CPU, collectives over gloo):

    python examples/distributed_fit.py --process-id 0 --num-processes 2 &
    python examples/distributed_fit.py --process-id 1 --num-processes 2

On a cluster of GPU hosts run one process per host with the first host's address as
--coordinator (or omit all three flags under SLURM / Open MPI, where
`jax.distributed.initialize()` reads them from the environment). Every process sees all GPUs
of all hosts in `jax.devices()`, so the mesh below spans them; nothing else changes.
"""

import argparse

import jax
import numpy as np

import gmmjax as gj


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--coordinator", default="localhost:12355")
    p.add_argument("--process-id", type=int)
    p.add_argument("--num-processes", type=int)
    p.add_argument("--data", default=None, help=".npy file of rows (default: synthetic)")
    p.add_argument("--components", type=int, default=4)
    p.add_argument("--out", default="distributed_model.npz")
    args = p.parse_args()
    jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    jax.config.update("jax_enable_x64", True)

    if args.data is None:
        X, _, _ = gj.make_mixture(
            n_samples=200_000, n_components=args.components, n_features=8, separation=1.0
        )
    else:
        X = np.load(args.data, mmap_mode="r")
    # This process's rows: a contiguous slice (any split works; shares may differ in size).
    rows = np.array_split(np.arange(X.shape[0]), jax.process_count())[jax.process_index()]
    mine = np.asarray(X[rows[0] : rows[-1] + 1])

    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    res = gj.fit_em(mine, args.components, key=jax.random.key(0), n_restarts=8, tol=1e-6, mesh=mesh)
    if jax.process_index() == 0:  # every process holds the same result
        gj.save(res.best, args.out)
        print(
            f"{jax.process_count()} processes, {jax.device_count()} devices: mean "
            f"log-likelihood {float(res.log_likelihood[res.best_index]):.6f}, saved {args.out}"
        )
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
