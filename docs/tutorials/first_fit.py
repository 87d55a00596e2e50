# %% [markdown]
# # A first fit, and how to read a `FitResult`
#
# Old Faithful's eruptions (272 rows: duration in minutes, waiting time to the next eruption).
# `fit_em` runs EM from several k-means++ starts in one compiled program and keeps them all.

# %%
import jax
import numpy as np

import gmmjax as gj

jax.config.update("jax_enable_x64", True)  # float64: the numbers of the reference libraries
X, _ = gj.load_dataset("faithful")
result = gj.fit_em(X, 2, key=jax.random.key(0), n_restarts=8, tol=1e-8, max_iter=500)

# %% [markdown]
# Every field has a leading restart axis. `objective` is what EM climbs: the mean
# log-likelihood per row (plus the log-prior over N when a prior is given). `status` says
# how each restart ended; the best restart is the one with the highest final objective among
# those that did not fail.

# %%
for r in range(8):
    status = gj.Status(int(result.status[r])).name
    print(
        f"restart {r}: objective {float(result.objective[r]):.6f} "
        f"after {int(result.n_iter[r])} steps, {status}"
    )
print("best restart:", int(result.best_index))

# %% [markdown]
# `result.best` is a `GMM`: weights, means and covariances (in scikit-learn's layouts), with
# the precision Cholesky factors derived once.

# %%
best = result.best
print("weights", np.round(np.asarray(best.weights), 4))
print("means\n", np.round(np.asarray(best.means), 3))
print("BIC", float(gj.bic(best, X)), "(lower is better)")

# %% [markdown]
# A picture of the fit, and how each restart climbed.

# %%
ax = gj.plot.ellipses(best, X, feature_names=["eruptions", "waiting"])

# %%
ax = gj.plot.history(result)

# %% [markdown]
# How sure are we? Standard errors from the observed information (docs/math.md §12):

# %%
print(gj.standard_errors(best, X, method="hessian").table())
