"""How sure is a fitted mixture, and how does it move with the data? (docs/math.md §12)

    python examples/uncertainty.py

1. Standard errors of a fit of Old Faithful (Hessian, and a nonparametric bootstrap).
2. The influence function: d μ / d w_i, the derivative of a fitted mean with respect to one
   sample's weight, for every sample at once (one implicit gradient, no refits).
3. Tuning the prior's strength by gradient descent on held-out log-likelihood: the prior's
   scale is s·Λ (Λ mclust's default), and log s follows the gradient of the held-out
   log-likelihood of the MAP fit, differentiated through the EM fixed point.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import gmmjax as gj

jax.config.update("jax_enable_x64", True)


def standard_error_tables(X, k=2):
    gmm = gj.fit_em(X, k, key=jax.random.key(0), tol=1e-12, max_iter=2000, reg_covar=0.0).best
    hessian = gj.standard_errors(gmm, X, method="hessian")
    boot = gj.standard_errors(
        gmm, X, method="bootstrap", key=jax.random.key(1), n_bootstrap=200, reg_covar=0.0
    )
    return gmm, hessian, boot


def influence(X, gmm, component=0, feature=1):
    """(N,) d μ_component,feature / d w_i at w = 1."""

    def mean(w):
        return gj.fit_differentiable(X, gmm, sample_weight=w, tol=1e-14).means[component, feature]

    return jax.grad(mean)(jnp.ones(X.shape[0]))


def tune_prior_strength(train, held_out, k=3, steps=15, learning_rate=0.5):
    """Gradient ascent on the held-out mean log-likelihood over log s, the prior scale being
    s·Λ: returns [(s, held-out log-likelihood)] per step."""
    base = gj.Prior.mclust(train, k, "full")
    start = gj.fit_em(train, k, key=jax.random.key(2), prior=base, tol=1e-10, max_iter=1000).best

    def held_out_loglik(log_s):
        prior = gj.Prior(base.mean, jnp.exp(log_s) * base.scale, base.dof, cov_type="full")
        fit = gj.fit_differentiable(train, start, prior=prior, tol=1e-12)
        return gj.log_likelihood(fit, held_out) / held_out.shape[0]

    value_and_grad = jax.value_and_grad(held_out_loglik)
    log_s, path = jnp.asarray(0.0), []
    for _ in range(steps):  # a handful of outer steps of a tuning loop, not a fit
        value, grad = value_and_grad(log_s)
        path.append((float(jnp.exp(log_s)), float(value)))
        log_s = log_s + learning_rate * grad
    return path


def main():
    X = jnp.asarray(gj.load_dataset("faithful")[0], jnp.float64)
    gmm, hessian, boot = standard_error_tables(X)
    print(hessian.table(), "\n")
    print(boot.table(), "\n")
    infl = np.asarray(influence(X, gmm))
    top = np.argsort(-np.abs(infl))[:5]
    print("rows that move component 0's waiting-time mean most (d mean / d weight):")
    for i in top:
        print(f"  row {i:3d}  x = {np.asarray(X[i])}  influence {infl[i]:+.4f}")
    rng = np.random.default_rng(0)
    order = rng.permutation(X.shape[0])
    train, held_out = X[order[:136]], X[order[136:]]
    print("\nprior scale s and held-out mean log-likelihood:")
    for s, value in tune_prior_strength(train, held_out):
        print(f"  s = {s:8.4f}   {value:.6f}")


if __name__ == "__main__":
    main()
