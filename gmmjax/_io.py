"""Saving and loading a GMM: `.npz` arrays plus JSON metadata, never pickle."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np

from ._params import COV_TYPES, GMM

FORMAT_VERSION = 1


def save(gmm: GMM, path: str | os.PathLike) -> None:
    """Write `gmm` to `path` (.npz): weights, means, covariances and a JSON `metadata` entry
    (format version, cov_type, dtype, gmmjax version). Written to a temporary file and renamed,
    so a crash never leaves a half-written model."""
    from . import __version__

    meta = {
        "format": "gmmjax.GMM",
        "format_version": FORMAT_VERSION,
        "cov_type": gmm.cov_type,
        "dtype": str(np.asarray(gmm.means).dtype),
        "gmmjax_version": __version__,
    }
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    with tempfile.NamedTemporaryFile(dir=directory, suffix=".npz", delete=False) as tmp:
        np.savez(
            tmp,
            weights=np.asarray(gmm.weights),
            means=np.asarray(gmm.means),
            covariances=np.asarray(gmm.covariances),
            metadata=np.array(json.dumps(meta)),
        )
    os.replace(tmp.name, path)


def load(path: str | os.PathLike) -> GMM:
    """Read a GMM written by `save`. Never unpickles; a truncated, tampered or wrong-version
    file raises ValueError."""
    try:
        # Our own handle: np.load leaks its file when the archive is corrupt.
        with open(path, "rb") as raw, np.load(raw, allow_pickle=False) as f:
            arrays = {k: f[k] for k in ("weights", "means", "covariances", "metadata")}
    except (KeyError, ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise ValueError(f"{path} is not a readable gmmjax model file: {err}") from None
    try:
        meta = json.loads(str(arrays["metadata"]))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: corrupt metadata: {err}") from None
    if meta.get("format") != "gmmjax.GMM" or meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: unsupported format {meta.get('format')!r} version "
            f"{meta.get('format_version')!r}; this gmmjax reads version {FORMAT_VERSION}."
        )
    if meta.get("cov_type") not in COV_TYPES:
        raise ValueError(f"{path}: unknown cov_type {meta.get('cov_type')!r} in metadata.")
    return GMM(arrays["weights"], arrays["means"], arrays["covariances"], meta["cov_type"])
