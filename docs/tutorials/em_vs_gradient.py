# %% [markdown]
# # EM and gradient methods on one objective
#
# Every method in gmmjax maximises the same function, the log-likelihood plus an optional
# log-prior (docs/math.md §2), so they can be compared fairly: same starts, same objective,
# the work counted in one unit. With mclust's conjugate prior the objective is bounded, so a
# gradient method cannot climb into a degenerate covariance.

# %%
import jax

import gmmjax as gj

jax.config.update("jax_enable_x64", True)
X, _ = gj.load_dataset("faithful")
comparison = gj.compare(
    X,
    3,
    key=jax.random.key(0),
    methods=("em", "squarem", "lbfgs", "adam"),
    n_restarts=4,
    max_iter=100,
    prior="mclust",
)
print(comparison)

# %% [markdown]
# Each panel shows every restart's gap to the best value any method reached, against the
# evaluations of the objective (EM: one per step).

# %%
fig = gj.plot.compare(comparison)
