"""EM's empirical convergence rate against overlap, beside the spectral radius of the Jacobian
of the EM map at its fixed point (Redner & Walker 1984; Xu & Jordan 1996; Ma, Xu & Jordan 2000).

Near the fixed point θ*, θ_t − θ* ≈ ρ^t v (ρ the spectral radius of J = ∂M/∂θ at θ*), so the
ratio of successive parameter increments tends to ρ, while ℓ* − ℓ(θ_t) is quadratic in
θ_t − θ*, so the ratio of successive log-likelihood increments tends to ρ².
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._datasets import make_mixture, normalised_entropy
from .._em import e_step, em_step
from .._init import initialize
from .._params import GMM
from . import _plots
from ._config import setting_text

SCHEMA = {
    "data": {
        "source": "synthetic",
        "n_components": 2,
        "n_features": 1,
        "n_samples": 4000,
        "separation": [4.0, 3.0, 2.0, 1.5, 1.0],
        "imbalance": 1.5,
        "eccentricity": 1.0,
        "seed": 0,
    },
    "fit": {"max_iter": 3000, "reg_covar": 0.0, "seeds": [0]},
    "output": {"figures": ["rate_vs_overlap"]},
}

FIGURES = ("rate_vs_overlap",)
# As in em_vs_gradient: the keys a unit carries one value of, and the tables only the summary
# and figures read.
SWEPT = {"data": ("separation",), "fit": ("seeds",)}
SUMMARY_ONLY = ("output",)


def plan(config):
    return [
        {"id": f"c={setting_text(float(c))}/seed={s}", "separation": float(c), "seed": int(s)}
        for c in config["data"]["separation"]
        for s in config["fit"]["seeds"]
    ]


def _flatten(gmm: GMM):
    return jnp.concatenate([gmm.weights.ravel(), gmm.means.ravel(), gmm.covariances.ravel()])


def _unflatten(theta, like: GMM) -> GMM:
    k, d = like.n_components, like.n_features
    w = theta[:k]
    m = theta[k : k + k * d].reshape(k, d)
    c = theta[k + k * d :].reshape(like.covariances.shape)
    return GMM(w, m, c, like.cov_type)


def em_trajectory(X, start: GMM, n_steps: int, reg_covar: float = 0.0):
    """EM from `start` by a lax.scan of em_step: (flattened θ_t, t = 0..n_steps;
    ℓ(θ_t)/N, t = 0..n_steps−1)."""

    def step(gmm, _):
        new, ll = em_step(gmm, X, reg_covar=reg_covar)
        return new, (_flatten(gmm), ll)

    final, (thetas, lls) = jax.lax.scan(step, start, None, length=n_steps)
    return np.vstack([np.asarray(thetas), np.asarray(_flatten(final))[None]]), np.asarray(lls)


def jacobian_spectral_radius(X, fixed_point: GMM, reg_covar: float = 0.0) -> float:
    """max |eigenvalue| of ∂M/∂θ at θ* (jax.jacfwd of one EM step, flattened parameters)."""

    def em_map(theta):
        return _flatten(em_step(_unflatten(theta, fixed_point), X, reg_covar=reg_covar)[0])

    jac = jax.jacfwd(em_map)(_flatten(fixed_point))
    return float(np.max(np.abs(np.linalg.eigvals(np.asarray(jac)))))


def empirical_rates(thetas: np.ndarray, lls: np.ndarray) -> tuple[float, float]:
    """(median ratio of successive parameter increments, median ratio of successive
    log-likelihood increments), each over the stretch where increments are well above float64
    noise and the early transient is over (the second half of that stretch)."""
    dtheta = np.linalg.norm(np.diff(thetas, axis=0), axis=1)
    ok = np.nonzero(dtheta > 1e-10 * max(1.0, np.abs(thetas).max()))[0]
    ratio_theta = _tail_median(dtheta, ok)
    dll = np.diff(lls)
    ok = np.nonzero(dll > 1e-13 * max(1.0, np.abs(lls).max()))[0]
    ratio_ll = _tail_median(dll, ok)
    return ratio_theta, ratio_ll


def _tail_median(inc, ok):
    if len(ok) < 4:
        return float("nan")
    last = ok[-1]
    start = ok[0] + (last - ok[0]) // 2
    ratios = inc[start + 1 : last + 1] / inc[start:last]
    return float(np.median(ratios)) if len(ratios) else float("nan")


def execute(config, unit):
    d, f = config["data"], config["fit"]
    X, _, truth = make_mixture(
        n_components=d["n_components"],
        n_features=d["n_features"],
        n_samples=d["n_samples"],
        separation=unit["separation"],
        imbalance=d["imbalance"],
        eccentricity=d["eccentricity"],
        seed=d["seed"],
    )
    X = jnp.asarray(X)
    start = initialize(X, d["n_components"], key=jax.random.key(unit["seed"]))
    thetas, lls = em_trajectory(X, start, f["max_iter"], f["reg_covar"])
    fixed = _unflatten(jnp.asarray(thetas[-1]), start)
    rho = jacobian_spectral_radius(X, fixed, f["reg_covar"])
    r_theta, r_ll = empirical_rates(thetas, lls)
    resp, _ = e_step(fixed, X)
    return [
        {
            "separation": unit["separation"],
            "seed": unit["seed"],
            "spectral_radius": rho,
            "param_ratio": r_theta,
            "ll_ratio": r_ll,
            "sqrt_ll_ratio": float(np.sqrt(r_ll)),
            "entropy": normalised_entropy(np.asarray(resp)),
            "final_ll": float(lls[-1]),
            "iterations": int(f["max_iter"]),
        }
    ]


def summarise(config, records):
    keys = ("separation", "entropy", "spectral_radius", "param_ratio", "sqrt_ll_ratio", "ll_ratio")
    return sorted(({k: r[k] for k in keys} for r in records), key=lambda r: -r["separation"])


def figures(config, records, out):
    if "rate_vs_overlap" not in config["output"]["figures"]:
        return []
    rows = sorted(summarise(config, records), key=lambda r: r["entropy"])
    fig, axes = _plots.subplots(2)
    series = (
        ("spectral_radius", "o-", "ρ(J) at θ*"),
        ("param_ratio", "s--", "‖Δθ_{t+1}‖/‖Δθ_t‖"),
        ("sqrt_ll_ratio", "^:", "√(Δℓ_{t+1}/Δℓ_t)"),
    )
    x = [r["entropy"] for r in rows]
    for key, style, label in series:
        axes[0].plot(x, [r[key] for r in rows], style, label=label)
        # 1 − rate on a log axis separates the near-1 rates of heavy overlap.
        axes[1].plot(x, [1 - r[key] for r in rows], style, label=label)
    axes[0].set(xlabel="normalised entropy at the solution", ylabel="rate", ylim=(0, 1.02))
    axes[1].set(xlabel="normalised entropy at the solution", ylabel="1 − rate", yscale="log")
    for ax in axes:
        ax.legend(fontsize=8)
    paths = [_plots.save(fig, out / "rate_vs_overlap.png")]
    return paths
