# %% [markdown]
# # Many restarts, and successive halving
#
# EM finds a local maximum; which one depends on the start. gmmjax runs all restarts as one
# compiled program (a `vmap` over a `lax.while_loop`), so 64 restarts cost far less than 64
# fits. Successive halving stops the restarts that trail: every `halving_every` iterations
# the better half survives.

# %%
import jax
import numpy as np

import gmmjax as gj

jax.config.update("jax_enable_x64", True)
X, _ = gj.load_dataset("iris")
key = jax.random.key(1)
plain = gj.fit_em(X, 4, key=key, n_restarts=32, max_iter=300, tol=1e-9)
halved = gj.fit_em(X, 4, key=key, n_restarts=32, max_iter=300, tol=1e-9, halving_every=10)

# %% [markdown]
# The final objectives of the restarts spread over several local maxima:

# %%
values = np.sort(np.asarray(plain.objective))[::-1]
print("distinct optima (rounded):", np.unique(np.round(values, 4))[::-1][:6])
print("best without halving:", float(plain.objective[plain.best_index]))
print("best with halving:   ", float(halved.objective[halved.best_index]))
print(
    "EM steps, all restarts: plain", int(np.sum(plain.n_iter)), "halved", int(np.sum(halved.n_iter))
)

# %%
ax = gj.plot.history(halved)
