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


@pytest.mark.parametrize("name", build.ORDER)
def test_tutorial_runs(name):
    page = build.run_tutorial(DOCS / "tutorials" / f"{name}.py")
    assert page.startswith("# ") and "```python" in page and "```text" in page
