"""JAX's persistent compilation cache, on by default in a per-user directory.

A new process otherwise compiles every fitting program afresh: seconds before the first answer
on a small data set (iris, 8 restarts: 3 s of XLA compilation on a 2-core machine). With the
cache, a program compiled once for a given shape, option set, JAX version and machine is read
back from disk.

The cache is JAX's own (`jax_compilation_cache_dir`); gmmjax only chooses its directory and the
smallest compile time worth storing, and only when the user has not configured a directory:

- default directory: `$XDG_CACHE_HOME/gmmjax/xla` (`~/.cache/gmmjax/xla` without it);
- `GMMJAX_COMPILATION_CACHE=0` (or `off`, `false`, `no`) in the environment before importing
  gmmjax leaves JAX's cache off; any other value is taken as the directory to use;
- `gmmjax.set_compilation_cache(None)` turns it off in a running process,
  `gmmjax.set_compilation_cache(path)` moves it;
- a directory set through JAX (`JAX_COMPILATION_CACHE_DIR` or `jax.config.update`) before the
  import wins, and gmmjax changes nothing.

The setting is process-wide: JAX caches the user's own programs there too. Like any JAX
compilation cache, the directory must be writable by its owner only (compiled code is loaded
from it); gmmjax creates it with mode 0700.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

ENVIRONMENT_VARIABLE = "GMMJAX_COMPILATION_CACHE"
_OFF = ("0", "off", "false", "no")
# gmmjax's programs take 0.2-3 s to compile on a 2-core CPU; JAX's default threshold (1 s)
# would skip the smaller ones (scoring, prediction, initialisation on small data).
_MIN_COMPILE_SECONDS = 0.1


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/gmmjax/xla`, or `~/.cache/gmmjax/xla`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gmmjax" / "xla"


def set_compilation_cache(path: str | os.PathLike | None = "default") -> Path | None:
    """Turn JAX's persistent compilation cache on in `path` ("default": the per-user cache
    directory, see the module docstring), or off with None. Returns the directory in use.

    Takes effect for programs compiled from then on (JAX opens the cache at the first
    compilation after a change). Raises ValueError when the directory cannot be created.
    """
    from jax.experimental.compilation_cache import compilation_cache

    if path is None:
        jax.config.update("jax_compilation_cache_dir", None)
        compilation_cache.reset_cache()
        return None
    directory = default_cache_dir() if path == "default" else Path(path).expanduser()
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as err:
        raise ValueError(
            f"cannot create the compilation cache directory {directory}: {err}. Pass another "
            f"path, or set {ENVIRONMENT_VARIABLE}=0 to run without the cache."
        ) from None
    jax.config.update("jax_compilation_cache_dir", str(directory))
    if jax.config.jax_persistent_cache_min_compile_time_secs > _MIN_COMPILE_SECONDS:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", _MIN_COMPILE_SECONDS)
    compilation_cache.reset_cache()
    return directory


def configure_at_import() -> Path | None:
    """The import-time default: the per-user cache, unless JAX already has a cache directory
    or the environment variable says otherwise. Never raises (an unwritable home directory
    only means no cache)."""
    if jax.config.jax_compilation_cache_dir is not None:
        return Path(jax.config.jax_compilation_cache_dir)
    setting = os.environ.get(ENVIRONMENT_VARIABLE, "").strip()
    if setting.lower() in _OFF:
        return None
    try:
        return set_compilation_cache(setting or "default")
    except ValueError:
        return None
