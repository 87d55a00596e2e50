"""The documentation's tutorials (docs/tutorials/*.py) run from start to end, as `make docs`
runs them, so that they cannot rot."""

import importlib.util
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

DOCS = Path(__file__).parents[1] / "docs"
spec = importlib.util.spec_from_file_location("build_tutorials", DOCS / "build_tutorials.py")
build = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build)


def test_every_tutorial_is_built():
    assert sorted(build.ORDER) == sorted(p.stem for p in (DOCS / "tutorials").glob("*.py"))


# The tutorials that compile the most programs (a grid search refitting every fold, every
# method of the comparison, the streamed and halving fits, 10-28 s each) run under
# `make test-all` and `make docs`, which executes them all; their library code has its own
# tests (test_stream.py, test_halving.py, ...). `first_fit` stays in the default suite.
SLOW = {"sklearn_pipeline", "em_vs_gradient", "large_data", "restarts_and_halving"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in build.ORDER]
)
def test_tutorial_runs(name):
    page = build.run_tutorial(DOCS / "tutorials" / f"{name}.py")
    assert page.startswith("# ") and "```python" in page and "```text" in page
