"""Reference fixture for the EM family: data and starting points for R's SQUAREM and daarem.

The fixture lets gmmjax's accelerated EM (SQUAREM, DAAREM) be compared with the R packages
SQUAREM 2021.1 and daarem 0.7 on the same data, from the same starts, E-step for E-step.
Nothing here runs at test time: benchmarks/fixtures/em_family/reference.json, written by
benchmarks/em_family_reference.R, is the fixture.

Regenerate (from the repository root, in this order):
    python benchmarks/em_family_reference.py           # data CSVs and starts.json
    Rscript benchmarks/em_family_reference.R           # reference.json (see its header)
    python benchmarks/em_family_reference.py --check   # gmmjax EM vs the R EM map

Data sets (CSV, no header, 17 significant digits, so R reads exactly what gmmjax wrote):
    two_c{c}, three_c{c}: make_mixture with 2 or 3 components in 2-D, N = 2000, Dasgupta
        separation c in 4, 2, 1, 0.5 (well separated to heavily overlapping, where EM is slow),
        imbalance 2, eccentricity 3, seed 0; fitted with K = the true number of components.
    faithful, faithful_k3: Old Faithful (272 x 2) with K = 2 and K = 3.
Starts: 4 per data set, `initialize(X, K, key=split(key(0), 4), method="kmeans++",
reg_covar=0)`, i.e. the starts of `fit(X, K, key=key(0), n_restarts=4, reg_covar=0)`.

--check runs 5 plain EM steps of `gmmjax.fit` from every start and compares their mean
log-likelihoods f(θ_0..θ_4) with the first 5 entries of the R EM trace (total / N).
"""

from __future__ import annotations

import argparse
import json
import pathlib

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import gmmjax  # noqa: E402  (after enabling float64)

OUT = pathlib.Path(__file__).resolve().parent / "fixtures" / "em_family"
SEPARATIONS = [4.0, 2.0, 1.0, 0.5]
N_STARTS = 4


def datasets() -> list[tuple[str, int, np.ndarray]]:
    """(name, K, X) for every case, in the fixture's order."""
    cases = []
    for prefix, k in (("two", 2), ("three", 3)):
        for c in SEPARATIONS:
            X, _, _ = gmmjax.make_mixture(
                n_components=k,
                n_features=2,
                n_samples=2000,
                separation=c,
                imbalance=2.0,
                eccentricity=3.0,
                seed=0,
            )
            cases.append((f"{prefix}_c{c}", k, X))
    faithful, _ = gmmjax.load_dataset("faithful")
    cases += [("faithful", 2, faithful), ("faithful_k3", 3, faithful)]
    return cases


def write() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, k, X in datasets():
        # faithful_k3 reuses faithful's file: one copy of the data, two values of K.
        data_file = ("faithful" if name.startswith("faithful") else name) + ".csv"
        np.savetxt(OUT / data_file, X, fmt="%.17g", delimiter=",")
        starts = gmmjax.initialize(
            X,
            k,
            key=jax.random.split(jax.random.key(0), N_STARTS),
            cov_type="full",
            method="kmeans++",
            reg_covar=0.0,
        )
        entries.append(
            {
                "dataset": name,
                "K": k,
                "file": data_file,
                "n_samples": int(X.shape[0]),
                "n_features": int(X.shape[1]),
                "starts": [
                    {
                        "weights": np.asarray(starts.weights[r]).tolist(),
                        "means": np.asarray(starts.means[r]).tolist(),
                        "covariances": np.asarray(starts.covariances[r]).tolist(),
                    }
                    for r in range(N_STARTS)
                ],
            }
        )
        print(f"{name}: K={k}, X {X.shape} -> {data_file}")
    # json writes float64 with repr (shortest round-trip), so the starts are exact.
    (OUT / "starts.json").write_text(json.dumps({"datasets": entries}, indent=1) + "\n")


def check(n_steps: int = 5) -> float:
    """Largest relative difference between gmmjax's EM and the R EM map over all cases."""
    reference = json.loads((OUT / "reference.json").read_text())
    starts = json.loads((OUT / "starts.json").read_text())["datasets"]
    worst = 0.0
    for entry in starts:
        X = np.loadtxt(OUT / entry["file"], delimiter=",")
        for r, start in enumerate(entry["starts"]):
            init = gmmjax.GMM(
                np.asarray(start["weights"]),
                np.asarray(start["means"]),
                np.asarray(start["covariances"]),
                "full",
            )
            result = gmmjax.fit(
                X,
                entry["K"],
                key=jax.random.key(0),
                method="em",
                init_params=init,
                reg_covar=0.0,
                tol=0.0,
                max_iter=n_steps,
            )
            ours = np.asarray(result.history[result.best_index])
            trace = reference["results"][entry["dataset"]][r]["em"]["trace"]
            theirs = np.array([ll for _, ll in trace[:n_steps]]) / X.shape[0]
            rel = float(np.max(np.abs(ours - theirs) / np.abs(theirs)))
            worst = max(worst, rel)
            print(f"{entry['dataset']:12s} start {r}: max rel diff {rel:.2e}")
    print(f"largest relative difference over all cases: {worst:.2e}")
    return worst


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with reference.json")
    if parser.parse_args().check:
        check()
    else:
        write()
