"""Saving and loading a GMM: `.npz` arrays plus JSON metadata, never pickle."""

from __future__ import annotations

import json
import math
import os
import secrets
import zipfile
import zlib

import numpy as np

from ._covariance import COV_TYPES  # every name a GMM may carry
from ._params import GMM, _check_values, check_one_mixture

FORMAT_VERSION = 1

_ARRAYS = ("weights", "means", "covariances")
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_save_path(path: str | os.PathLike) -> str:
    """`path` as a str, or a ValueError naming the fix when a model cannot be written there."""
    path = os.fsdecode(path)
    if not path or path.endswith(("/", os.sep)):
        raise ValueError(f"{path!r} is not a file name; pass one such as model.npz")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory; pass a file name such as {path}/model.npz")
    problem = folder_problem(path)
    if problem:
        raise ValueError(f"cannot write {path}: {problem}")
    return path


def folder_problem(path: str) -> str | None:
    """Why a file cannot be created at `path` because of its folder (missing, not writable),
    with the fix; None when it can."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return f"folder {directory} does not exist; create it first"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"folder {directory} is not writable"
    return None


def save(gmm: GMM, path: str | os.PathLike) -> None:
    """Write `gmm` to `path`: weights, means, covariances and a JSON `metadata` entry
    (format version, cov_type, dtype, gmmjax version), as a NumPy `.npz` archive.

    The file is written at exactly `path` (no `.npz` is appended; `load(path)` reads it back),
    via a temporary file in the same folder that is renamed into place, so a crash never leaves
    a half-written model and a failed write leaves no temporary file behind.

    Raises:
        TypeError: `gmm` is not a `gmmjax.GMM`.
        ValueError: `path` is a folder or its folder is missing or not writable (checked before
            writing), or the parameters are not a valid mixture (e.g. NaN from a failed fit).
    """
    from . import __version__

    check_one_mixture(gmm, "save")
    path = check_save_path(path)
    arrays = {name: np.asarray(getattr(gmm, name)) for name in _ARRAYS}
    # A GMM built under jit (e.g. a fit's result) skipped the value checks: run them here, so
    # that every file `save` writes is one `load` accepts.
    try:
        _check_values(*arrays.values(), gmm.cov_type)
        check_model(arrays["covariances"], gmm.cov_type)
    except ValueError as err:
        raise ValueError(f"cannot save this GMM to {path}: {err}") from None
    meta = {
        "format": "gmmjax.GMM",
        "format_version": FORMAT_VERSION,
        "cov_type": gmm.cov_type,
        "dtype": str(arrays["means"].dtype),
        "gmmjax_version": __version__,
    }
    directory, base = os.path.split(os.path.abspath(path))
    # os.open with mode 0o666 lets the umask set the permissions, as for any new file
    # (tempfile would make it private, 0o600); O_EXCL never reuses an existing name.
    while True:
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays, metadata=np.array(json.dumps(meta)))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


_READ_ERRORS = (
    ValueError,
    OSError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    NotImplementedError,  # an unsupported zip compression method
    RuntimeError,  # an encrypted zip member
)


def _read_member(archive: zipfile.ZipFile, name: str) -> np.ndarray:
    """The array `name.npy` of the archive, read without pickle and without trusting its header
    for an allocation larger than the member itself."""
    info = archive.getinfo(f"{name}.npy")
    with archive.open(info) as fp:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"{name}: unsupported .npy version {version}")
        if dtype.hasobject:
            raise ValueError(f"{name}: an object array (it would need pickle, never used here)")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > info.file_size:
            raise ValueError(f"{name}: truncated ({info.file_size} bytes for shape {shape})")
        data = fp.read(nbytes)
    if len(data) != nbytes:
        raise ValueError(f"{name}: truncated ({len(data)} of {nbytes} bytes)")
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C").copy()


def load(path: str | os.PathLike) -> GMM:
    """Read a GMM written by `save`.

    Never unpickles. Anything that is not such a file (missing, not a zip archive, truncated,
    tampered, another format version) raises ValueError naming the file and the problem:
    missing or pickled members, metadata that is not a JSON object with the expected fields,
    arrays that are not float32/float64 of the shapes `cov_type` implies, and values that are
    not a mixture (NaN/inf, weights off the simplex, covariances not positive definite).
    Archive members and metadata fields beyond those `save` writes are ignored, so that a
    later minor addition does not make older readers fail.
    """
    path = os.fspath(path)  # a TypeError for anything that is not a path
    try:
        with open(path, "rb") as raw:
            if not zipfile.is_zipfile(raw):
                raise ValueError("not a .npz (zip) archive")
            with zipfile.ZipFile(raw) as archive:
                names = set(archive.namelist())
                missing = [n for n in (*_ARRAYS, "metadata") if f"{n}.npy" not in names]
                if missing:
                    raise ValueError(f"missing member(s) {', '.join(missing)}")
                arrays = {n: _read_member(archive, n) for n in (*_ARRAYS, "metadata")}
    except _READ_ERRORS as err:
        raise ValueError(f"{path} is not a readable gmmjax model file: {err}") from None
    meta = _read_metadata(path, arrays.pop("metadata"))
    cov_type = meta["cov_type"]
    for name, arr in arrays.items():
        if arr.dtype.kind != "f" or arr.dtype.newbyteorder("=") not in _FLOAT_DTYPES:
            raise ValueError(f"{path}: {name} has dtype {arr.dtype}; expected float32 or float64")
        arr = arrays[name] = arr.astype(arr.dtype.newbyteorder("="))
        if arr.dtype != np.dtype(meta["dtype"]):
            raise ValueError(
                f"{path}: {name} has dtype {arr.dtype} but the metadata says {meta['dtype']}"
            )
    means = arrays["means"]
    if means.ndim > 2:
        raise ValueError(
            f"{path}: holds a batch of mixtures (means of shape {means.shape}); a model file "
            "holds one: save one of them again, e.g. gmmjax.save(result.best, path)"
        )
    if means.ndim != 2 or 0 in means.shape:
        raise ValueError(
            f"{path}: means must have shape (K, D) with K, D >= 1 (one mixture), got {means.shape}"
        )
    try:
        # GMM checks the shapes against cov_type's layout and the values (finite, weights on
        # the simplex, covariances positive definite); the arrays are concrete, so both run.
        gmm = GMM(arrays["weights"], means, arrays["covariances"], cov_type)
        # mclust's models share a layout: their constraints are checked on the values.
        check_model(arrays["covariances"], cov_type)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    return gmm


def check_model(covariances: np.ndarray, cov_type: str) -> None:
    """ValueError unless `covariances` (one mixture's, in `cov_type`'s layout, already shown
    positive definite) satisfy the constraints of the model `cov_type`.

    With Σ_k = λ_k Q_k A_k Q_kᵀ (volume λ_k = |Σ_k|^(1/D), shape A_k diagonal with |A_k| = 1,
    orientation Q_k), a model's letters say which of the three are Equal across components
    (docs/math.md §11). The layout fixes the I letters (diagonal: Q_k = I; spherical: also
    A_k = I) and a single tied matrix makes EEE; what is left is checked here:

        equal volumes       |Σ_k|^(1/D) equal                           EII EEI EVI EVE EEV EVV
        equal shapes        diagonal models: Σ_k / λ_k equal            EEI VEI
                            common orientation: Σ_k / λ_k equal         VEE
                            own orientations: eigenvalues / λ_k equal   EEV VEV
        common orientation  Σ_j Σ_k = Σ_k Σ_j (commuting symmetric      VEE EVE VVE
                            matrices share their eigenvectors)

    Each equality is relative, to 100 √ε of the dtype (1.5e-6 in float64): fits meet the
    constraints to rounding, while a file whose cov_type was changed misses them by far more.
    """
    from ._covariance import layout, model_name

    c = np.asarray(covariances, dtype=np.float64)
    name = model_name(cov_type)
    kind = layout(cov_type)
    if kind == "tied" or name in ("VII", "VVI", "VVV"):
        return  # no constraint beyond the layout
    tol = 100 * np.sqrt(np.finfo(np.asarray(covariances).dtype).eps)
    if kind == "spherical":
        eig = c[:, None]
    elif kind == "diag":
        eig = c
    else:
        eig = np.linalg.eigvalsh(c)  # ascending, per component
    volume = np.exp(np.mean(np.log(eig), axis=-1))  # λ_k
    violated = []
    if name[0] == "E" and not _all_close(volume, tol):
        violated.append(f"equal volumes |Σ_k|^(1/D) (got {volume})")
    if name[1] == "E":
        if kind == "full" and name[2] == "E":  # VEE: one orientation, so the matrices
            shape = c / volume[:, None, None]
        else:  # diagonals in coordinate order; own orientations: the sorted eigenvalues
            shape = eig / volume[:, None]
        if not _all_close(shape, tol):
            violated.append("equal shapes Σ_k / |Σ_k|^(1/D)")
    if kind == "full" and name[2] == "E":
        scale = np.linalg.norm(c, axis=(-2, -1))
        products = np.einsum("jab,kbc->jkac", c, c)
        commutator = products - np.swapaxes(products, 0, 1)
        size = np.linalg.norm(commutator, axis=(-2, -1)) / np.outer(scale, scale)
        if np.max(size) > tol:
            violated.append("one orientation shared by all components (Σ_j Σ_k = Σ_k Σ_j)")
    if violated:
        raise ValueError(
            f"the covariances do not satisfy the model cov_type={cov_type!r} ("
            + "; ".join(violated)
            + "): the file's cov_type does not describe its covariances. Save the "
            "model again from its fit, or set cov_type to the layout's general model "
            '("full", "diag" or "spherical")'
        )


def _all_close(values: np.ndarray, tol: float) -> bool:
    """Whether every row of `values` (K, ...) equals the first, relative to the largest."""
    values = np.asarray(values).reshape(len(values), -1)
    return bool(np.max(np.abs(values - values[:1])) <= tol * np.max(np.abs(values)))


def _read_metadata(path, metadata: np.ndarray) -> dict:
    if metadata.shape != () or metadata.dtype.kind != "U":
        raise ValueError(
            f"{path}: metadata must be a 0-d string array, got dtype {metadata.dtype} "
            f"shape {metadata.shape}"
        )
    try:
        meta = json.loads(str(metadata))
    except (json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"{path}: corrupt metadata: {err}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: metadata must be a JSON object, got {type(meta).__name__}")
    version = meta.get("format_version")
    if meta.get("format") != "gmmjax.GMM" or type(version) is not int or version != FORMAT_VERSION:
        raise ValueError(
            f"{path}: unsupported format {meta.get('format')!r} version "
            f"{version!r}; this gmmjax reads version {FORMAT_VERSION}."
        )
    cov_type = meta.get("cov_type")
    if not isinstance(cov_type, str) or cov_type not in COV_TYPES:
        raise ValueError(f"{path}: unknown cov_type {cov_type!r} in metadata.")
    if meta.get("dtype") not in [str(d) for d in _FLOAT_DTYPES]:
        raise ValueError(f"{path}: unknown dtype {meta.get('dtype')!r} in metadata.")
    return meta
