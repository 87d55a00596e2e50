"""Data files for `gmmjax fit` and model files for `gj.save`/`gj.load`: every bad input is one
clear error (ValueError, or argparse's usage error), never a traceback or a silent wrong answer.
No test here runs a fit: every error is raised before one would start."""

import numpy as np
import pytest

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
    import pickle

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
