"""What a new process pays before its first answer, and the float32 fast path's accuracy.

The subprocesses run with x64 off (a default user), their own cache directory, and warnings
as errors from gmmjax's own modules.
"""

import json
import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import numpy as np
import pytest
from conftest import assert_close

import gmmjax as gj
from gmmjax import _em
from gmmjax._likelihood import expansion_is_accurate
from gmmjax._stats import chunk_rows

_FIRST_FIT = textwrap.dedent(
    """
    import json, logging, warnings
    warnings.filterwarnings("error", module="gmmjax")
    import jax
    compiled = []

    class Names(logging.Handler):
        def emit(self, record):
            message = record.getMessage()
            if message.startswith("Finished XLA compilation of jit("):
                compiled.append(message.split("jit(")[1].split(")")[0])

    logging.getLogger("jax").addHandler(Names())
    logging.getLogger("jax").setLevel(logging.WARNING)
    import numpy as np
    import gmmjax as gj
    jax.config.update("jax_log_compiles", True)
    X = gj.load_dataset("iris")[0]
    out = {"cache_dir": jax.config.jax_compilation_cache_dir}
    est = gj.GaussianMixture(3, n_init=8, random_state=0).fit(X)
    out["fit"], compiled[:] = list(compiled), []
    est.predict(X); est.predict_proba(X); est.score(X); est.score_samples(X)
    out["score"], compiled[:] = list(compiled), []
    float32 = gj.fit(X.astype(np.float32), 3, key=jax.random.key(1), n_restarts=2)
    out["float32_dtype"] = str(float32.best.means.dtype)
    print(json.dumps(out))
    """
)


def _run(env_extra, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GMMJAX_", "JAX_"))}
    env.update(XDG_CACHE_HOME=str(tmp_path), JAX_PLATFORMS="cpu", **env_extra)
    out = subprocess.run(
        [sys.executable, "-c", _FIRST_FIT], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cache_files(directory):
    return sorted(p.name for p in directory.rglob("*") if p.is_file())


def test_first_fit_compiles_one_program_and_reads_it_back_from_the_cache(tmp_path):
    """A new process compiles the fitting program (and a key split) and nothing else, no
    warning from gmmjax; the program lands in the per-user cache, and the next process
    compiles nothing new: the cache serves it."""
    first = _run({}, tmp_path)
    cache = tmp_path / "gmmjax" / "xla"
    assert first["cache_dir"] == str(cache)
    assert set(first["fit"]) <= {"_fit_program", "_threefry_split"}, first["fit"]
    assert "_fit_program" in first["fit"]
    # Scoring: one program each for responsibilities and log-densities.
    assert set(first["score"]) <= {"e_step", "log_prob"}, first["score"]
    assert first["float32_dtype"] == "float32"
    written = _cache_files(cache)
    assert any("fit_program" in name for name in written), written
    stamps = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    _run({}, tmp_path)
    # A miss would compile again and rewrite its entry (same name): every entry is untouched.
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    # JAX writes only programs that took at least the threshold (0.1 s) to compile, so a small
    # program near it (a key split) may be written by one process and not the other; the
    # fitting program is never among the new entries.
    added = set(_cache_files(cache)) - set(written)
    assert not any("fit_program" in name for name in added), added


# Long; `make test-all` runs it (keeping the default suite short).
@pytest.mark.slow
def test_compilation_cache_switches(tmp_path):
    """GMMJAX_COMPILATION_CACHE=0 turns it off, a path moves it, JAX's own setting wins."""
    code = "import gmmjax, jax; print(jax.config.jax_compilation_cache_dir)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GMMJAX_", "JAX_"))}
    env.update(XDG_CACHE_HOME=str(tmp_path), JAX_PLATFORMS="cpu")

    def cache_dir(**extra):
        out = subprocess.run(
            [sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.strip()

    assert cache_dir(GMMJAX_COMPILATION_CACHE="0") == "None"
    assert cache_dir(GMMJAX_COMPILATION_CACHE="off") == "None"
    assert cache_dir(GMMJAX_COMPILATION_CACHE=str(tmp_path / "mine")) == str(tmp_path / "mine")
    assert cache_dir(JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax")) == str(tmp_path / "jax")
    assert cache_dir() == str(tmp_path / "gmmjax" / "xla")


def test_set_compilation_cache_in_process(tmp_path):
    before = jax.config.jax_compilation_cache_dir
    threshold = jax.config.jax_persistent_cache_min_compile_time_secs
    try:
        assert gj.set_compilation_cache(tmp_path / "c") == tmp_path / "c"
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "c")
        assert (tmp_path / "c").is_dir()
        assert gj.set_compilation_cache(None) is None
        assert jax.config.jax_compilation_cache_dir is None
        blocker = tmp_path / "file"
        blocker.write_text("")
        with pytest.raises(ValueError, match="GMMJAX_COMPILATION_CACHE=0"):
            gj.set_compilation_cache(blocker / "sub")
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", threshold)


def _mixture(n, d, k, scale, offset, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(k, d)) * scale
    labels = rng.integers(0, k, size=n)
    scales = rng.uniform(0.5, 1.5, size=(k, d))
    return means[labels] + rng.normal(size=(n, d)) * scales[labels] + offset


@pytest.fixture(scope="module")
def small_passes_branch():
    """Small data take the expanded/differences branch as large data do. The threshold is read
    when a program is traced, so programs traced before are dropped, once; those traced under
    it stay (they compute the same fits, by the branch)."""
    jax.clear_caches()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_em, "_SMALL_PASS", 0)
        yield


@pytest.mark.usefixtures("small_passes_branch")
@pytest.mark.parametrize(("cov_type", "offset"), [("full", 0.0), ("full", 1e4), ("diag", 1e4)])
def test_float32_fit_agrees_with_float64(cov_type, offset):
    """100 EM steps from the same starts: float32's per-sample log-likelihood within 1e-5
    (relative) of float64's, on data offset by 0 and 1e4, every restart finite. The passes
    take the expanded products (the fast path; checked), as on large data."""
    X = _mixture(3000, 6, 5, 3.0, offset)
    start = gj.initialize(X, 5, key=jax.random.split(jax.random.key(0), 4), cov_type=cov_type)
    fits = {
        dtype: gj.fit_em(
            X.astype(dtype),
            5,
            key=jax.random.key(0),
            n_restarts=4,
            cov_type=cov_type,
            init_params=start,
            max_iter=100,
            tol=0.0,
        )
        for dtype in (np.float32, np.float64)
    }
    ll32 = np.asarray(fits[np.float32].log_likelihood, np.float64)
    assert fits[np.float32].log_likelihood.dtype == np.float32
    assert _expands(fits[np.float32].params, X)
    assert np.all(np.isfinite(ll32))
    assert_close(ll32, fits[np.float64].log_likelihood, rtol=1e-5)


def test_small_fits_take_the_quick_compilation(monkeypatch):
    """Tiny fits compile without LLVM's optimisations, large ones with them; both programs
    compute the same fit."""
    from gmmjax import _program

    small = dict(n_samples=150, n_restarts=8, n_components=3, n_features=4, max_iter=100)
    large = dict(n_samples=100_000, n_restarts=8, n_components=16, n_features=16, max_iter=10)
    assert _program.program_for(**small) is _program.quick_fit_program
    assert _program.program_for(**large) is _program.fit_program
    X = gj.load_dataset("iris")[0]
    quick = gj.fit_em(X, 3, key=jax.random.key(0), n_restarts=3, max_iter=30)
    # Under this suite's XLA_FLAGS (conftest) both compile at level 0, so this checks the
    # plumbing; bench_em.py / the first-fit figures compare the two levels themselves.
    monkeypatch.setattr(_program, "_QUICK_WORK", 0)
    optimised = gj.fit_em(X, 3, key=jax.random.key(0), n_restarts=3, max_iter=30)
    assert_close(quick.log_likelihood, optimised.log_likelihood, rtol=1e-12)
    assert_close(quick.best.covariances, optimised.best.covariances, rtol=1e-10, atol=1e-12)


def _expands(params, X):
    """Whether float32's pass expands for every restart of `params` (the fit centres X)."""
    centre = np.mean(X, axis=0).astype(params.means.dtype)
    centred = eqx.tree_at(lambda g: g.means, params, params.means - centre)
    return all(bool(expansion_is_accurate(centred[r])) for r in range(params.means.shape[0]))


@pytest.mark.usefixtures("small_passes_branch")
@pytest.mark.parametrize("cov_type", ["full", "diag"])
def test_float32_fit_of_far_separated_clusters(cov_type):
    """Two unit-variance clusters 2000 standard deviations apart: float32 forms differences,
    not the expansion whose error grows as the square of that distance."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 2)) + np.where(rng.random(2000) < 0.5, -1000.0, 1000.0)[:, None]
    res = gj.fit(X.astype(np.float32), 2, key=jax.random.key(0), n_restarts=2, cov_type=cov_type)
    assert not _expands(res.params, X)
    variances = np.asarray(res.best.covariances).reshape(2, -1)
    expected = [np.var(X[X[:, 0] < 0], axis=0), np.var(X[X[:, 0] > 0], axis=0)]
    order = np.argsort(np.asarray(res.best.means)[:, 0])
    diagonal = variances[order][:, [0, -1]]
    assert_close(diagonal, expected, rtol=1e-3)


@pytest.mark.usefixtures("small_passes_branch")
@pytest.mark.parametrize("cov_type", ["full", "diag"])
@pytest.mark.parametrize("separation", [3.0, 2000.0])
def test_value_pass_follows_the_statistics_pass(cov_type, separation):
    """The log-likelihood of a fit's final parameters (and of SQUAREM's and DAAREM's proposals)
    takes the statistics pass's kernel and rule. In float32 it equals that pass's own
    log-likelihood to 1e-6 and float64's to 1e-5: by the expanded products for nearby
    clusters, by the differences for clusters 2000 standard deviations apart (where the
    products would be off by about ε·2000² in every distance)."""
    rng = np.random.default_rng(1)
    side = np.where(rng.random(3000) < 0.5, -0.5, 0.5) * separation
    X = rng.normal(size=(3000, 3))
    X[:, 0] += side
    X -= X.mean(0)  # the fitting code's centring
    means = np.stack([X[side < 0].mean(0), X[side > 0].mean(0)]) + 0.3 * rng.normal(size=(2, 3))
    cov = np.array([1.2, 0.8])[:, None] * np.ones((2, 3))
    if cov_type == "full":
        cov = cov[..., None] * np.eye(3)
    value = {}
    for dtype in (np.float32, np.float64):
        gmm = gj.GMM(np.array([0.4, 0.6], dtype), means.astype(dtype), cov.astype(dtype), cov_type)
        data = chunk_rows(X.astype(dtype), np.ones(3000, dtype), 512)
        value[dtype] = _em.pass_log_likelihood(gmm, data)
        _, from_statistics = _em.streamed_e_statistics(gmm, data)
        assert value[dtype].dtype == dtype
        assert_close(value[dtype], from_statistics, rtol=1e-6 if dtype == np.float32 else 1e-13)
        if dtype == np.float32:
            assert bool(expansion_is_accurate(gmm)) == (separation < 100)
    assert_close(np.float64(value[np.float32]), value[np.float64], rtol=1e-5)
