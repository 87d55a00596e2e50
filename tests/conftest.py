"""Test configuration: float64 everywhere unless a test passes float32 data explicitly.

Tests that need float32 arrays build them with `.astype(np.float32)`; JAX keeps their dtype
because gmmjax computes in the data's own float dtype.
"""

import os

# The suite compiles several hundred small programs whose run time is negligible: XLA's CPU
# backend without LLVM's optimisation passes compiles them about a fifth faster, with the same
# semantics (fast-math stays off). Set before JAX starts its backend; subprocesses inherit it.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()

# A run must not depend on (or fill) the user's persistent compilation cache: gmmjax's import
# leaves it off, and subprocesses inherit that. `pytest_configure` below then points this
# process at a fresh directory shared by the run's test processes only.
# tests/test_first_fit.py checks the cache itself in subprocesses with their own directories.
os.environ["GMMJAX_COMPILATION_CACHE"] = "0"

import shutil  # noqa: E402
import tempfile  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "standard")

import gmmjax as gj  # noqa: E402

COV_TYPES = ("full", "diag", "spherical", "tied")


def assert_close(actual, expected, *, rtol, atol=0.0, err_msg=""):
    """The one closeness helper; every call states its tolerances."""
    np.testing.assert_allclose(
        np.asarray(actual), np.asarray(expected), rtol=rtol, atol=atol, err_msg=err_msg
    )


def blobs(key_seed=0, n=600, d=2, k=3, sep=4.0, dtype=np.float64):
    """Gaussian blobs with random anisotropic covariances and unequal weights."""
    rng = np.random.default_rng(key_seed)
    weights = rng.dirichlet(np.full(k, 5.0))
    means = rng.normal(size=(k, d)) * sep
    counts = rng.multinomial(n, weights)
    parts = []
    for j in range(k):
        a = rng.normal(size=(d, d)) * 0.5 + np.eye(d)
        parts.append(rng.normal(size=(counts[j], d)) @ a.T + means[j])
    return np.concatenate(parts).astype(dtype)


def random_gmm(seed, k, d, cov_type, dtype=np.float64):
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(k))
    means = rng.normal(size=(k, d)) * 2
    if cov_type == "full":
        a = rng.normal(size=(k, d, d))
        cov = a @ np.swapaxes(a, 1, 2) + 0.5 * np.eye(d)
    elif cov_type == "tied":
        a = rng.normal(size=(d, d))
        cov = a @ a.T + 0.5 * np.eye(d)
    elif cov_type == "diag":
        cov = rng.uniform(0.3, 2.0, size=(k, d))
    else:
        cov = rng.uniform(0.3, 2.0, size=(k,))
    return gj.GMM(*(np.asarray(a, dtype) for a in (weights, means, cov)), cov_type=cov_type)


def full_covariances(gmm):
    """(K, D, D) covariance matrices of any cov_type (test-side reference)."""
    k, d = gmm.n_components, gmm.n_features
    c = np.asarray(gmm.covariances)
    if gmm.cov_type == "full":
        return c
    if gmm.cov_type == "tied":
        return np.broadcast_to(c, (k, d, d))
    if gmm.cov_type == "diag":
        return np.stack([np.diag(v) for v in c])
    return c[:, None, None] * np.eye(d)


@pytest.fixture(params=COV_TYPES)
def cov_type(request):
    return request.param


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop JAX's compiled programs after each test module.

    The suite compiles a few hundred programs (every shape, cov_type and option); keeping all
    of them alive made XLA's CPU compiler crash late in a full run (segfault inside
    backend_compile_and_load, never in a module run alone).
    """
    yield
    jax.clear_caches()


# -- one compilation cache per test run, shared by its xdist workers --------------------------
#
# Many programs are compiled identically by several test modules (and again within a module
# after `_free_compiled_programs`, and under another Python-level cache key: cov_type aliases,
# equal options): JAX's persistent cache keys them on the lowered program, so each is
# compiled once per run and read back (milliseconds) everywhere else. The directory is made
# once per run (by the xdist controller, or by the one process of a plain `pytest`), handed
# to the workers, and removed at the end; nothing outside it is read or written.

_CACHE_KEY = "gmmjax_test_compilation_cache"
_cache_dir = pytest.StashKey[str]()


def pytest_configure(config):
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        directory = workerinput[_CACHE_KEY]
    else:
        directory = tempfile.mkdtemp(prefix="gmmjax-test-xla-")
        config.stash[_cache_dir] = directory
    gj.set_compilation_cache(directory)
    # Every program, however quick to compile: a read is cheaper than the quickest compile.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """xdist controller: hand the run's cache directory to each worker."""
    node.workerinput[_CACHE_KEY] = node.config.stash[_cache_dir]


def pytest_unconfigure(config):
    directory = config.stash.get(_cache_dir, None)
    if directory is not None:
        gj.set_compilation_cache(None)
        shutil.rmtree(directory, ignore_errors=True)


# -- the longest modules first ----------------------------------------------------------------
#
# `--dist=loadfile` hands whole modules to the workers in collection order; a long module
# collected last (alphabetically) would run alone at the end. These, the longest on a 2-core
# machine, are collected first, longest first; the rest keep their order. Order only: every
# test runs as before, and a module missing from the list is merely not moved.
LONGEST_FIRST = (
    "test_sklearn_mixture_port.py",
    "test_invariances.py",
    "test_covariance_models.py",
    "test_model_priors.py",
    "test_tutorials.py",
    "test_objective.py",
    "test_missing.py",
    "test_standard_errors.py",
    "test_em_family.py",
    "test_gradient.py",
    "test_validation.py",
    "test_implicit.py",
)


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
