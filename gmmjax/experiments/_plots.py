"""Figures shared by the studies (matplotlib, Agg backend: files only, no screen)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..plot import ellipse_patch  # noqa: E402

METHOD_COLOURS = {
    "em": "C0",
    "lbfgs": "C1",
    "adam": "C2",
    "sgd": "C3",
    "squarem": "C4",
    "daarem": "C5",
    "online_em": "C6",
    "incremental_em": "C7",
}


def colour(method: str) -> str:
    return METHOD_COLOURS.get(method, "C8")


def padded(histories: list[list[float]], length: int) -> np.ndarray:
    """(R, length) array; each history continues at its last value after it stopped."""
    out = np.full((len(histories), length), np.nan)
    for r, h in enumerate(histories):
        h = np.asarray(h, float)
        if len(h):
            out[r, : len(h)] = h
            out[r, len(h) :] = h[-1]
    return out


def band(ax, x, values, *, label, c):
    """Median line and interquartile band over rows of `values` (R, T)."""
    with np.errstate(all="ignore"):
        q25, q50, q75 = np.nanpercentile(values, [25, 50, 75], axis=0)
    ax.plot(x, q50, color=c, label=label, lw=1.6)
    ax.fill_between(x, q25, q75, color=c, alpha=0.2, lw=0)


def gap_floor(gap: np.ndarray) -> np.ndarray:
    """Gaps below 1e-12 are float64 noise: clip them so a log axis can show them."""
    return np.maximum(gap, 1e-12)


def covariance_ellipse(ax, mean, cov, *, c, lw=1.5, n_std=2.0, ls="-"):
    """The n_std-sigma ellipse of a 2-D Gaussian (`gmmjax.plot`'s, one drawing code path)."""
    ax.add_patch(ellipse_patch(mean, cov, n_std=n_std, colour=c, lw=lw, ls=ls))


def legend(ax, **kwargs) -> None:
    """A legend if anything was drawn (a setting where no restart reached the best has none)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, title_fontsize=7, **kwargs)


def save(fig, path) -> str:
    """Write `fig` to `path` through a temporary file and an atomic rename, so an interrupted
    run never leaves a half-written figure under the final name."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.tight_layout()
    try:
        fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return str(path)


def subplots(n: int, *, width=4.2, height=3.4):
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])
