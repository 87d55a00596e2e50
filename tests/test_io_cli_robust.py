"""Data files for `gmmjax fit` and model files for `gj.save`/`gj.load`: every bad input is one
clear error (ValueError, or argparse's usage error), never a traceback or a silent wrong answer.
No test here runs a fit: every error is raised before one would start."""

import io
import json
import os
import pickle
import zipfile

import jax
import numpy as np
import pytest

import gmmjax as gj
from gmmjax.cli import _load_matrix, main


def _fit_error(capsys, path, *options):
    """Run `gmmjax fit path -k 1 ...`; the one-line error it prints (exit status 2)."""
    assert main(["fit", str(path), "-k", "1", *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gmmjax: error: ") and err.count("\n") == 1, err
    return err


# Text data: no row is ever dropped; a problem names file, line and column.

GOOD_TEXT = {
    "plain.csv": ("1,2\n3,4\n", [[1, 2], [3, 4]]),
    "header.csv": ("a,b\n1,2\n3,4\n", [[1, 2], [3, 4]]),
    "quoted_header.csv": ('"col a","col, b"\n1,2\n', [[1, 2]]),
    "no_trailing_newline.csv": ("a,b\n1,2\n3,4", [[1, 2], [3, 4]]),
    "windows.csv": ("a,b\r\n1,2\r\n3,4\r\n", [[1, 2], [3, 4]]),
    "spaces.csv": (" 1 , 2 \n\n3,\t4\n", [[1, 2], [3, 4]]),
    "comments.csv": ("# a,b\n1,2\n# note\n3,4\n", [[1, 2], [3, 4]]),
    "bom.csv": ("\ufeffa,b\n1,2\n", [[1, 2]]),
    "single_column.csv": ("x\n1\n2\n3\n", [[1], [2], [3]]),
    "single_row.csv": ("1,2,3\n", [[1, 2, 3]]),
    "quoted_numbers.csv": ('"1","2e-3"\n', [[1, 2e-3]]),
    "whitespace.txt": ("a b\n1   2\n3\t4\r\n", [[1, 2], [3, 4]]),
    "single_column.txt": ("1\n2\n", [[1], [2]]),
    "quoted_header.txt": ('"col a" "col b"\n1 2\n', [[1, 2]]),
}


@pytest.mark.parametrize("name", GOOD_TEXT)
def test_text_data_is_read_without_losing_rows(tmp_path, name):
    text, expected = GOOD_TEXT[name]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    X = _load_matrix(str(path))
    assert X.dtype == np.float64
    np.testing.assert_array_equal(X, np.array(expected, dtype=np.float64))


BAD_TEXT = {
    # The regression: a bad first row used to be taken for a header and silently dropped.
    "bad_first_row.csv": ("1,x\n3,4\n5,6\n", "line 1, column 2: could not read 'x' as a number"),
    "bad_later_row.csv": (
        "a,b\n1,2\n3,abc\n",
        "line 3, column 2: could not read 'abc' as a number",
    ),
    "bad_txt.txt": ("1 2\n3 4..\n", "line 2, column 2: could not read '4..' as a number"),
    "empty.csv": ("", "no data rows (the file is empty)"),
    "only_comments.txt": ("# nothing\n\n", "no data rows (the file is empty)"),
    "header_only.csv": ("a,b\n", "no data rows (only a header line)"),
    "ragged.csv": ("1,2\n3,4,5\n", "line 2 has 3 value(s), expected 2 (as on line 1)"),
    "ragged.txt": ("1 2\n3\n", "line 2 has 1 value(s), expected 2"),
    "header_width.csv": ("a,b,c\n1,2\n", "header line has 3 column name(s) but line 2 has 2"),
    "empty_cell.csv": ("1,2\n3,\n", "line 2, column 2: empty cell (missing values are not"),
    "blank_cell.csv": ("1, ,3\n", "line 1, column 2: empty cell"),
    "nan.csv": ("1,2\nnan,4\n", "line 2, column 1: 'nan' is not a finite number"),
    "inf.txt": ("1 2\n3 -inf\n", "line 2, column 2: '-inf' is not a finite number"),
    "overflow.csv": ("1,1e999\n", "line 1, column 2: '1e999' is not a finite number"),
    "semicolons.csv": ("1;2\n3;4\n", "line 2, column 1: could not read '3;4' as a number (columns"),
}


@pytest.mark.parametrize("name", BAD_TEXT)
def test_bad_text_data_names_file_line_and_column(tmp_path, capsys, name):
    text, message = BAD_TEXT[name]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    err = _fit_error(capsys, path)
    assert f"{path}: " in err and message in err


def test_undecodable_or_unsupported_files_are_one_line(tmp_path, capsys):
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x01,2\n")
    assert "not a UTF-8 text file" in _fit_error(capsys, binary)
    other = tmp_path / "data.json"
    other.write_text("[[1, 2]]")
    assert "use .npy, .csv or .txt" in _fit_error(capsys, other)
    assert "is a directory" in _fit_error(capsys, tmp_path)
    upper = tmp_path / "UPPER.CSV"
    upper.write_text("1,2\n")
    np.testing.assert_array_equal(_load_matrix(str(upper)), [[1.0, 2.0]])


# .npy data: a numeric (N, D) array with N, D >= 1, never unpickled.

BAD_NPY = {
    "flat_empty": (np.zeros((0,)), "shape (0,)"),
    "no_rows": (np.zeros((0, 3)), "empty array of shape (0, 3)"),
    "no_columns": (np.zeros((3, 0)), "empty array of shape (3, 0)"),
    "one_d": (np.arange(4.0), "reshape to (N, 1)"),
    "three_d": (np.zeros((2, 2, 2)), "shape (2, 2, 2)"),
    "scalar": (np.float64(1.0), "shape ()"),
    "strings": (np.array([["a", "b"]]), "dtype <U1 is not numeric"),
    "complex": (np.ones((2, 2), complex), "dtype complex128 is not numeric"),
    "object": (np.array([[1, "a"]], dtype=object), "Object arrays cannot be loaded"),
    "nan": (np.array([[1.0, 2.0], [np.inf, np.nan]]), "X[1, 0] is inf"),
}


@pytest.mark.parametrize("name", BAD_NPY)
def test_bad_npy_data_is_refused_with_the_expected_shape(tmp_path, capsys, name):
    array, message = BAD_NPY[name]
    path = tmp_path / f"{name}.npy"
    np.save(path, array, allow_pickle=True)
    err = _fit_error(capsys, path)
    assert f"{path}: " in err and message in err
    if name != "nan":
        assert "(N, D) with N >= 1" in err


def test_npy_that_is_not_an_array_file(tmp_path, capsys):
    pickled = tmp_path / "pickled.npy"
    pickled.write_bytes(pickle.dumps([[1.0, 2.0]]))
    assert "not a readable .npy file" in _fit_error(capsys, pickled)
    archive = tmp_path / "archive.npy"
    with open(archive, "wb") as f:
        np.savez(f, X=np.ones((2, 2)))
    assert "not a readable .npy file" in _fit_error(capsys, archive)
    truncated = tmp_path / "truncated.npy"
    np.save(truncated, np.ones((50, 2)))
    truncated.write_bytes(truncated.read_bytes()[:200])
    assert "not a readable .npy file" in _fit_error(capsys, truncated)
    ints = tmp_path / "ints.npy"
    np.save(ints, np.arange(6).reshape(3, 2))
    assert _load_matrix(str(ints)).shape == (3, 2)


# Command-line options: usage errors from argparse (exit 2, one message, no traceback).

BAD_OPTIONS = {
    "zero_k": (["-k", "0"], "argument -k: expected an integer >= 1, got '0'"),
    "negative_k": (["-k", "-2"], "argument -k: expected an integer >= 1"),
    "fractional_k": (["-k", "2.5"], "argument -k: expected an integer, got '2.5'"),
    "zero_restarts": (["-k", "1", "--restarts", "0"], "argument --restarts: expected an"),
    "fractional_restarts": (["-k", "1", "--restarts", "1.5"], "argument --restarts"),
    "zero_max_iter": (["-k", "1", "--max-iter", "0"], "argument --max-iter"),
    "negative_seed": (["-k", "1", "--seed", "-1"], "argument --seed: expected an integer betw"),
    "overlong_seed": (["-k", "1", "--seed", "9" * 20], "argument --seed: expected an integer"),
    "nan_tol": (["-k", "1", "--tol", "nan"], "argument --tol: expected a finite number >= 0"),
}


@pytest.mark.parametrize("name", BAD_OPTIONS)
def test_bad_options_are_usage_errors(tmp_path, capsys, name):
    options, message = BAD_OPTIONS[name]
    data = tmp_path / "x.csv"
    data.write_text("1,2\n3,4\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", str(data), *options])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_fewer_rows_than_components(tmp_path, capsys):
    data = tmp_path / "x.csv"
    data.write_text("a,b\n1,2\n3,4\n")
    assert main(["fit", str(data), "-k", "3"]) == 2
    err = capsys.readouterr().err
    assert f"{data}: 2 data row(s), fewer than the 3 components" in err


# Model files: gj.load raises ValueError naming the file and the problem, for anything.


def _model_arrays(tmp_path):
    gmm = gj.GMM(np.array([0.4, 0.6]), np.zeros((2, 2)), np.stack([np.eye(2)] * 2), "full")
    gj.save(gmm, tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as f:
        return dict(f)


def _meta(arrays, **changes):
    return np.array(json.dumps(dict(json.loads(str(arrays["metadata"])), **changes)))


def _npy_bytes(array, allow_pickle=False):
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


TAMPERED = {
    # name: (members replaced, None dropping one, (field, value) changing metadata; message)
    "meta_list": ({"metadata": np.array("[1, 2]")}, "metadata must be a JSON object, got list"),
    "meta_number": ({"metadata": np.array("3")}, "metadata must be a JSON object, got int"),
    "meta_string": ({"metadata": np.array('"x"')}, "metadata must be a JSON object, got str"),
    "meta_not_json": ({"metadata": np.array("{")}, "corrupt metadata"),
    "meta_1d": ({"metadata": np.array(["{}"])}, "metadata must be a 0-d string array"),
    "meta_bytes": ({"metadata": np.array(b"{}")}, "metadata must be a 0-d string array"),
    "meta_int": ({"metadata": np.array(3)}, "metadata must be a 0-d string array"),
    "cov_type_unknown": ({"metadata": ("cov_type", ["full"])}, "unknown cov_type ['full']"),
    "cov_type_mismatch": ({"metadata": ("cov_type", "diag")}, "covariances must have shape (2, 2)"),
    "version_bool": ({"metadata": ("format_version", True)}, "unsupported format"),
    "dtype_unknown": ({"metadata": ("dtype", "int64")}, "unknown dtype 'int64' in metadata"),
    "weights_shape": ({"weights": np.array([0.2, 0.3, 0.5])}, "weights must have shape (2,)"),
    "means_1d": ({"means": np.zeros(2)}, "means must have shape (K, D) with K, D >= 1"),
    "no_components": (
        {"weights": np.zeros(0), "means": np.zeros((0, 2)), "covariances": np.zeros((0, 2, 2))},
        "got (0, 2)",
    ),
    "cov_shape": ({"covariances": np.ones((2, 2))}, "covariances must have shape (2, 2, 2)"),
    "int_weights": ({"weights": np.array([1, 0])}, "weights has dtype int64; expected float"),
    "bool_weights": ({"weights": np.array([True, False])}, "weights has dtype bool"),
    "complex_means": ({"means": np.zeros((2, 2), complex)}, "means has dtype complex128"),
    "mixed_dtypes": ({"means": np.zeros((2, 2), np.float32)}, "but the metadata says float64"),
    "nan_means": ({"means": np.array([[np.nan, 0], [0, 0]])}, "means contain NaN or inf"),
    "inf_cov": ({"covariances": np.stack([np.eye(2) + np.inf] * 2)}, "contain NaN or inf"),
    "negative_weights": ({"weights": np.array([-0.5, 1.5])}, "must be non-negative and sum"),
    "weights_sum": ({"weights": np.array([0.5, 0.6])}, "must be non-negative and sum to 1"),
    "not_pd": ({"covariances": np.stack([-np.eye(2)] * 2)}, "must be positive definite"),
    "asymmetric": ({"covariances": np.stack([np.array([[1, 0.5], [0, 1]])] * 2)}, "symmetric"),
    "no_metadata": ({"metadata": None}, "not a readable gmmjax model file: missing member"),
    "no_means": ({"means": None}, "missing member(s) means"),
}


@pytest.mark.parametrize("name", TAMPERED)
def test_tampered_model_members_are_value_errors(tmp_path, name):
    arrays = _model_arrays(tmp_path)
    changes, message = TAMPERED[name]
    for key, value in changes.items():
        if isinstance(value, tuple):  # one metadata field changed
            value = _meta(arrays, **dict([value]))
        arrays[key] = value
    path = tmp_path / f"{name}.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    with pytest.raises(ValueError) as info:
        gj.load(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_archives_that_are_not_model_files(tmp_path):
    arrays = _model_arrays(tmp_path)
    files = {"text": b"hello", "empty": b"", "npy": _npy_bytes(np.ones(3))}
    members = {f"{k}.npy": _npy_bytes(v) for k, v in arrays.items()}
    variants = {
        "object": dict(members, **{"means.npy": _npy_bytes(np.array([{}]), allow_pickle=True)}),
        "pickle": dict(members, **{"means.npy": pickle.dumps(arrays["means"])}),
        "cut": dict(members, **{"means.npy": members["means.npy"][:-8]}),
    }
    # A header claiming 10**12 elements: refused before anything that size is allocated.
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**12, 2)}
    )
    variants["huge"] = dict(members, **{"means.npy": header.getvalue() + b"\0" * 32})
    for name, content in variants.items():
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for member, data in content.items():
                z.writestr(member, data)
        files[name] = buf.getvalue()
    for name, data in files.items():
        path = tmp_path / f"{name}.npz"
        path.write_bytes(data)
        with pytest.raises(ValueError, match="is not a readable gmmjax model file"):
            gj.load(path)
    with pytest.raises(ValueError, match="not a readable gmmjax model file"):
        gj.load(tmp_path)
    # Members beyond the four `save` writes are ignored (not read).
    np.savez(tmp_path / "extra.npz", **arrays, notes=np.array([{}]), allow_pickle=True)
    assert gj.load(tmp_path / "extra.npz").n_components == 2


# gj.save: checks the path before writing, never leaves a temporary file behind.


def test_save_checks_the_path_and_the_model(tmp_path, capsys):
    gmm = gj.GMM(np.array([1.0]), np.zeros((1, 2)), np.ones((1, 2)), "diag")
    with pytest.raises(ValueError, match="is a directory; pass a file name such as"):
        gj.save(gmm, tmp_path)
    with pytest.raises(ValueError, match="does not exist; create it first"):
        gj.save(gmm, tmp_path / "missing" / "m.npz")
    with pytest.raises(ValueError, match="is not a file name"):
        gj.save(gmm, "")
    with pytest.raises(TypeError, match="save takes a gmmjax.GMM, got dict"):
        gj.save({"weights": [1.0]}, tmp_path / "m.npz")
    # A GMM built under jit skipped the value checks: save refuses NaN rather than write a
    # file that load would refuse.
    nan_gmm = jax.jit(lambda m: gj.GMM(np.array([1.0]), m, np.ones((1, 2)), "diag"))(
        np.full((1, 2), np.nan)
    )
    with pytest.raises(ValueError, match="cannot save this GMM to .*NaN or inf"):
        gj.save(nan_gmm, tmp_path / "nan.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # --out is checked before the fit starts.
    data = tmp_path / "x.csv"
    data.write_text("1,2\n3,4\n")
    err = _fit_error(capsys, data, "--out", str(tmp_path))
    assert "is a directory" in err


def test_save_into_a_read_only_folder(tmp_path, monkeypatch):
    gmm = gj.GMM(np.array([1.0]), np.zeros((1, 2)), np.ones((1, 2)), "diag")
    # os.access stands in for a read-only folder: root (as in containers) may write anywhere.
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(ValueError, match="is not writable"):
        gj.save(gmm, tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    gmm = gj.GMM(np.array([1.0]), np.zeros((1, 2)), np.ones((1, 2)), "diag")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(OSError, match="No space left"):
        gj.save(gmm, tmp_path / "m.npz")
    assert list(tmp_path.iterdir()) == []


def test_save_writes_exactly_the_given_path(tmp_path):
    gmm = gj.GMM(np.array([0.3, 0.7]), np.eye(2), np.array([1.0, 2.0]), "spherical")
    for name in ("model", "model.bin", "model.npz"):
        gj.save(gmm, tmp_path / name)
        back = gj.load(str(tmp_path / name))
        np.testing.assert_array_equal(back.covariances, gmm.covariances)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "model.bin", "model.npz"]
    # Permissions follow the umask like any new file (not a private temporary file's 0o600).
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "model").stat().st_mode & 0o777 == 0o666 & ~umask
    gj.save(gmm, tmp_path / "model")  # overwriting is allowed
    assert gj.load(tmp_path / "model").cov_type == "spherical"
