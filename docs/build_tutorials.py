"""Execute the tutorials (percent-format scripts in docs/tutorials/) and write each as a
Markdown page with its printed output and figures, for the documentation site.

    python docs/build_tutorials.py [OUT_DIR]     (default: docs/tutorials)

A tutorial is a Python script whose cells start with `# %%`; `# %% [markdown]` cells hold
Markdown as comment lines. Code cells run in order in one namespace; what a cell prints
follows it on the page, and every matplotlib figure it leaves open is saved as a PNG and
shown after it. An exception stops the build (the tests run the same code).
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent
TUTORIALS = HERE / "tutorials"
ORDER = (
    "first_fit",
    "restarts_and_halving",
    "em_vs_gradient",
    "sklearn_pipeline",
    "large_data",
)


def cells(source: str) -> list[tuple[str, str]]:
    """[(kind, text)] with kind "markdown" or "code"."""
    out: list[tuple[str, list[str]]] = []
    for line in source.splitlines():
        if line.startswith("# %%"):
            out.append(("markdown" if "[markdown]" in line else "code", []))
        elif out:
            out[-1][1].append(line)
    result = []
    for kind, lines in out:
        if kind == "markdown":
            text = "\n".join(ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in lines)
        else:
            text = "\n".join(lines)
        if text.strip():
            result.append((kind, text.strip("\n")))
    return result


def run_tutorial(path: Path, out_dir: Path | None = None) -> str:
    """Execute one tutorial; returns its Markdown page (figures written under out_dir/figures
    when out_dir is given, else discarded)."""
    namespace: dict = {"__name__": "__tutorial__", "__file__": str(path)}
    page: list[str] = []
    figure_count = 0
    for kind, text in cells(path.read_text()):
        if kind == "markdown":
            page.append(text)
            continue
        page.append(f"```python\n{text}\n```")
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(text, str(path), "exec"), namespace)  # noqa: S102 - our own tutorials
        if printed.getvalue().strip():
            page.append(f"```text\n{printed.getvalue().rstrip()}\n```")
        for number in plt.get_fignums():
            fig = plt.figure(number)
            figure_count += 1
            if out_dir is not None:
                name = f"{path.stem}-{figure_count}.png"
                (out_dir / "figures").mkdir(parents=True, exist_ok=True)
                fig.savefig(out_dir / "figures" / name, dpi=90, bbox_inches="tight")
                page.append(f"![figure {figure_count}](figures/{name})")
            plt.close(fig)
    return "\n\n".join(page) + "\n"


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    out_dir = Path(argv[0]) if argv else TUTORIALS
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ORDER:
        page = run_tutorial(TUTORIALS / f"{name}.py", out_dir)
        (out_dir / f"{name}.md").write_text(page)
        print(f"wrote {out_dir / (name + '.md')}")


if __name__ == "__main__":
    main()
