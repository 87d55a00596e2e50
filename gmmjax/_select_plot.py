"""The picture of a model-selection grid: criterion against K, a line per covariance model."""

from __future__ import annotations

import numpy as np


def plot_criterion(selection, ax=None, criterion: str | None = None):
    """Draw `selection`'s criterion (lower is better) against the number of components, one
    line per covariance model, the selected cell circled. Failed cells are gaps. Returns the
    Axes (a new figure's when `ax` is None); never calls `show`."""
    from ._select import CRITERIA, Selection

    if not isinstance(selection, Selection):
        raise TypeError(
            "the criterion picture takes the Selection that gmmjax.select(...) returns, got "
            f"{type(selection).__name__}."
        )
    criterion = selection.criterion if criterion is None else criterion
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA} or None, got {criterion!r}.")
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
    models = list(dict.fromkeys(r["cov_type"] for r in selection.rows))
    colours = plt.get_cmap("tab20" if len(models) > 10 else "tab10")
    markers = "osD^v<>phX*8Pd"
    best = None
    for i, model in enumerate(models):
        rows = sorted(
            (r for r in selection.rows if r["cov_type"] == model), key=lambda r: r["n_components"]
        )
        ks = np.array([r["n_components"] for r in rows])
        values = np.array([r[criterion] for r in rows], float)
        ax.plot(ks, values, marker=markers[i % len(markers)], color=colours(i), label=model, ms=5)
        for k, v in zip(ks, values, strict=True):
            if not np.isnan(v) and (best is None or v < best[1]):
                best = (k, v, model)
    if best is not None:
        ax.plot(best[0], best[1], "o", ms=14, mfc="none", mec="black", mew=1.5)
        ax.set_title(f"best: {best[2]}, K = {best[0]} ({criterion.upper()} {best[1]:.1f})")
    ax.set_xlabel("number of components K")
    ax.set_ylabel(f"{criterion.upper()} (lower is better)")
    ax.set_xticks(sorted({r["n_components"] for r in selection.rows}))
    ax.grid(alpha=0.3)
    ax.legend(title="model", ncols=2 if len(models) > 7 else 1, fontsize=8, loc="best")
    return ax
