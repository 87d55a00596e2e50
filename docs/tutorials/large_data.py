# %% [markdown]
# # Large data: chunked passes, memory-mapped files, several devices
#
# EM needs the data only through sums over rows. gmmjax streams rows in chunks
# (`chunk_size`), reads arrays that live on disk chunk by chunk (a NumPy memmap), and with a
# device mesh spreads rows over devices. The results are the same numbers as the in-memory
# fit.

# %%
import os
import tempfile

import jax
import numpy as np

import gmmjax as gj

jax.config.update("jax_enable_x64", True)
X, _, _ = gj.make_mixture(n_components=4, n_features=3, n_samples=20_000, separation=3.0, seed=0)
X = np.asarray(X)
in_memory = gj.fit_em(X, 4, key=jax.random.key(0), n_restarts=2, max_iter=50)
chunked = gj.fit_em(X, 4, key=jax.random.key(0), n_restarts=2, max_iter=50, chunk_size=4096)
print("chunked equals in-memory:", np.allclose(chunked.objective, in_memory.objective, rtol=1e-10))

# %% [markdown]
# A file larger than memory: write it once, open it as a memmap, and pass the memmap.

# %%
path = os.path.join(tempfile.mkdtemp(), "rows.npy")
np.save(path, X)
on_disk = np.load(path, mmap_mode="r")
streamed = gj.fit_em(on_disk, 4, key=jax.random.key(0), n_restarts=2, max_iter=50, chunk_size=4096)
print("memmap equals in-memory:", np.allclose(streamed.objective, in_memory.objective, rtol=1e-8))

# %% [markdown]
# Several devices: `mesh=` places rows (axis "data") and restarts (axis "restarts") over a
# `jax.sharding.Mesh`; on one CPU device the mesh has one entry and the numbers are
# unchanged.

# %%
mesh = jax.make_mesh((len(jax.devices()),), ("data",))
sharded = gj.fit_em(X, 4, key=jax.random.key(0), n_restarts=2, max_iter=50, mesh=mesh)
print(
    "devices:",
    len(jax.devices()),
    "| sharded equals in-memory:",
    np.allclose(sharded.objective, in_memory.objective, rtol=1e-10),
)
