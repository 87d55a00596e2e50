"""Pictures of fitted mixtures (matplotlib), mclust's `plot()` for gmmjax.

    import gmmjax as gj
    gj.plot.ellipses(gmm, X)          # classification with covariance ellipses
    gj.plot.uncertainty(gmm, X)       # 1 − max_k γ_ik per point
    gj.plot.density(gmm, X)           # contours of log p(x)
    gj.plot.history(result)           # per-restart objective traces, statuses marked
    gj.plot.compare(comparison)       # the traces of a `compare()` table, one panel per method
    gj.plot.bic(selection)            # criterion against K per covariance model

Single-panel pictures take `ax=` and return the Axes; several panels return the Figure.
Nothing here calls `show`. For D > 2, `ellipses` draws a pairs plot over `dims` (default the
first four coordinates) and `uncertainty` and `density` one pair of coordinates (default the
first two): the marginal of a Gaussian mixture on a set of coordinates is the mixture of the
marginals (the same weights, the means' and covariances' sub-blocks), so each panel is exact,
not a projection of fitted points.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._covariance import layout
from ._em import e_step
from ._likelihood import log_prob
from ._params import GMM
from ._select_plot import plot_criterion
from ._solver import Status

__all__ = ["bic", "compare", "density", "ellipses", "history", "uncertainty"]


def _plt():
    import matplotlib.pyplot as plt

    return plt


def full_covariances(gmm: GMM) -> np.ndarray:
    """(K, D, D) covariance matrices of any layout."""
    cov = np.asarray(gmm.covariances, np.float64)
    k, d = gmm.n_components, gmm.n_features
    kind = layout(gmm.cov_type)
    if kind == "full":
        return cov
    if kind == "tied":
        return np.broadcast_to(cov, (k, d, d)).copy()
    if kind == "diag":
        return np.stack([np.diag(v) for v in cov])
    return cov[:, None, None] * np.eye(d)


def marginal(gmm: GMM, dims) -> GMM:
    """The mixture of `gmm`'s marginals on coordinates `dims` (a full-covariance GMM)."""
    dims = list(dims)
    cov = full_covariances(gmm)[:, dims][:, :, dims]
    return GMM(np.asarray(gmm.weights, np.float64), np.asarray(gmm.means)[:, dims], cov, "full")


def ellipse_patch(mean, cov, *, n_std=2.0, colour="k", **kwargs):
    """The `n_std`-standard-deviation ellipse of a 2-D Gaussian as a matplotlib Ellipse:
    centred on `mean`, axes 2·n_std·√λ along the eigenvectors of `cov`."""
    from matplotlib.patches import Ellipse

    values, vectors = np.linalg.eigh(np.asarray(cov, np.float64))
    angle = np.degrees(np.arctan2(vectors[1, 1], vectors[0, 1]))
    width, height = 2 * n_std * np.sqrt(np.maximum(values[::-1], 0))
    return Ellipse(
        tuple(np.asarray(mean, np.float64)), width, height, angle=angle, fill=False,
        edgecolor=colour, **kwargs,
    )  # fmt: skip


def _check_dims(gmm: GMM, dims, count):
    d = gmm.n_features
    if d < 2:
        raise ValueError("these pictures need at least two coordinates (D >= 2).")
    dims = tuple(range(min(d, count))) if dims is None else tuple(int(i) for i in dims)
    if len(dims) < 2 or any(not 0 <= i < d for i in dims) or len(set(dims)) < len(dims):
        raise ValueError(f"dims must name two or more distinct coordinates in 0..{d - 1}: {dims}")
    return dims


def _classes(gmm: GMM, X):
    resp, _ = e_step(gmm, np.asarray(X, np.asarray(gmm.means).dtype))
    resp = np.asarray(resp)
    return resp.argmax(1), 1.0 - resp.max(1)


def _panel(ax, gmm, X, labels, i, j, n_std, names):
    colours = [f"C{k % 10}" for k in range(gmm.n_components)]
    if X is not None:
        ax.scatter(X[:, i], X[:, j], s=8, c=[colours[c] for c in labels], alpha=0.6, lw=0)
    cov = full_covariances(gmm)
    means = np.asarray(gmm.means, np.float64)
    for k in range(gmm.n_components):
        sub = cov[k][np.ix_([i, j], [i, j])]
        for scale, style in ((1.0, ":"), (n_std, "-")):
            ax.add_patch(ellipse_patch(means[k, [i, j]], sub, n_std=scale, colour=colours[k],
                                       lw=1.4, ls=style))  # fmt: skip
        ax.plot(*means[k, [i, j]], "x", color="k", ms=7, mew=1.8)
    ax.set_xlabel(names[i])
    ax.set_ylabel(names[j])
    ax.autoscale_view()


def _names(gmm, feature_names):
    if feature_names is None:
        return [f"x{j}" for j in range(gmm.n_features)]
    if len(feature_names) != gmm.n_features:
        raise ValueError(f"feature_names needs {gmm.n_features} names, got {len(feature_names)}.")
    return list(feature_names)


def ellipses(gmm: GMM, X=None, *, dims=None, ax=None, n_std=2.0, feature_names=None):
    """The data coloured by most responsible component, with each component's 1- and
    `n_std`-standard-deviation ellipses (dotted, solid) and its mean (x).

    D = 2 (or two `dims`): one panel, on `ax` if given, returns the Axes. More coordinates: a
    pairs plot of `dims` (default the first four), every pair of coordinates below the
    diagonal and each coordinate's histogram by component on the diagonal; returns its own
    Figure (`ax` is then a ValueError: pass two `dims` to draw on it).
    """
    _require_one(gmm)
    dims = _check_dims(gmm, dims, 4)
    X = None if X is None else _data(X, gmm)
    labels = None if X is None else _classes(gmm, X)[0]
    names = _names(gmm, feature_names)
    plt = _plt()
    if len(dims) == 2:
        if ax is None:
            _, ax = plt.subplots(figsize=(5.5, 4.5), layout="constrained")
        _panel(ax, gmm, X, labels, dims[0], dims[1], n_std, names)
        ax.set_title(f"{gmm.n_components} components, {gmm.cov_type}")
        return ax
    if ax is not None:
        raise ValueError(
            f"ax= takes one panel, and with {len(dims)} coordinates ellipses draws a pairs plot "
            "(a Figure of its own): pass dims=(i, j) to draw one pair of coordinates on ax, or "
            "leave ax out for the pairs plot."
        )
    m = len(dims)
    fig, axes = plt.subplots(m, m, figsize=(2.6 * m, 2.6 * m), layout="constrained")
    for r, j in enumerate(dims):
        for c, i in enumerate(dims):
            axis = axes[r, c]
            if r == c:
                if X is not None:
                    bins = np.histogram_bin_edges(X[:, i], bins=20)  # shared by the components
                    for k in range(gmm.n_components):
                        axis.hist(X[labels == k, i], bins=bins, color=f"C{k % 10}", alpha=0.5)
                axis.set_xlabel(names[i])
            elif c < r:
                _panel(axis, gmm, X, labels, i, j, n_std, names)
            else:
                axis.set_visible(False)
    fig.suptitle(f"{gmm.n_components} components, {gmm.cov_type}: pairs of coordinates")
    return fig


def uncertainty(gmm: GMM, X, *, dims=None, ax=None, feature_names=None):
    """Each point's classification uncertainty 1 − max_k γ_ik (as mclust's plot), shown by
    colour and size on two coordinates (`dims`, default the first two); returns the Axes."""
    _require_one(gmm)
    dims = _check_dims(gmm, dims, 2)[:2]
    X = _data(X, gmm)
    _, unc = _classes(gmm, X)
    names = _names(gmm, feature_names)
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(5.8, 4.5), layout="constrained")
    order = np.argsort(unc)  # the uncertain points on top
    points = ax.scatter(
        X[order, dims[0]], X[order, dims[1]], c=unc[order], s=8 + 120 * unc[order],
        cmap="viridis", vmin=0.0, vmax=1.0 - 1.0 / gmm.n_components, lw=0,
    )  # fmt: skip
    ax.figure.colorbar(points, ax=ax, label="uncertainty 1 − max γ")
    ax.set_xlabel(names[dims[0]])
    ax.set_ylabel(names[dims[1]])
    ax.set_title(f"classification uncertainty (max {unc.max():.2f})")
    return ax


def density(gmm: GMM, X=None, *, dims=None, ax=None, n_grid=120, levels=12, feature_names=None):
    """Contours of log p(x) of the mixture's marginal on two coordinates (`dims`, default the
    first two) over the data's range (or ±3 sd of the components without X), the data on top;
    returns the Axes."""
    _require_one(gmm)
    if not _is_int(n_grid) or n_grid < 2:
        raise ValueError(
            f"n_grid must be an integer >= 2 (grid points per coordinate), got {n_grid!r}."
        )
    dims = _check_dims(gmm, dims, 2)[:2]
    names = _names(gmm, feature_names)
    margin = marginal(gmm, dims)
    sd = np.sqrt(np.diagonal(np.asarray(margin.covariances), axis1=1, axis2=2))
    means = np.asarray(margin.means)
    if X is not None:
        X = _data(X, gmm)
        pts = X[:, list(dims)]
        low, high = pts.min(0), pts.max(0)
    else:
        low, high = (means - 3 * sd).min(0), (means + 3 * sd).max(0)
    # A coordinate on which the data do not vary (one row, identical rows) is drawn over
    # the components' spread instead of a range of width 0.
    pad = np.where(high > low, 0.08 * (high - low), 3 * sd.max(0))
    gx = np.linspace(low[0] - pad[0], high[0] + pad[0], n_grid)
    gy = np.linspace(low[1] - pad[1], high[1] + pad[1], n_grid)
    grid = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)
    values = np.asarray(log_prob(margin, grid)).reshape(n_grid, n_grid)
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(5.8, 4.5), layout="constrained")
    floor = np.percentile(values, 5)
    contours = ax.contour(gx, gy, np.maximum(values, floor), levels=levels, cmap="viridis")
    ax.figure.colorbar(contours, ax=ax, label="log density")
    if X is not None:
        ax.scatter(pts[:, 0], pts[:, 1], s=5, c="k", alpha=0.35, lw=0)
    ax.set_xlabel(names[dims[0]])
    ax.set_ylabel(names[dims[1]])
    ax.set_title("log density" + (" (marginal)" if gmm.n_features > 2 else ""))
    return ax


_STATUS_MARKERS = {"converged": "o", "max_iter_reached": "s"}


def history(result, *, ax=None, label=None, colour=None):
    """Each restart's objective along its iterations as the gap to the best value reached,
    f* − f_t (log scale; gaps below 1e-12 drawn at 1e-12), the best restart in bold and each
    restart's end marked by its status (o converged, s max_iter, x any failure). Works for a
    `FitResult` of any method. Returns the Axes."""
    from ._result import FitResult

    if not isinstance(result, FitResult):
        raise TypeError(
            f"history draws a fit's iterations and takes its FitResult (res = gmmjax.fit(...); "
            f"plot.history(res)), got {type(result).__name__}"
            + (": for a fitted model's picture use plot.ellipses." if isinstance(result, GMM)
               else ".")
        )  # fmt: skip
    hist = np.asarray(result.history, np.float64)
    status = np.asarray(result.status)
    best = float(np.nanmax(hist)) if np.isfinite(hist).any() else 0.0
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 4.2), layout="constrained")
    best_index = int(np.asarray(result.best_index))
    for r in range(hist.shape[0]):
        steps = np.flatnonzero(np.isfinite(hist[r]))
        if not len(steps):
            continue
        gap = np.maximum(best - hist[r, steps], 1e-12)
        bold = r == best_index
        line = ax.plot(
            steps + 1, gap, lw=2.2 if bold else 0.9, alpha=1.0 if bold else 0.6,
            color=colour, label=(label or "restarts") if r == 0 else None,
        )[0]  # fmt: skip
        name = Status(int(status[r])).name.lower()
        marker = _STATUS_MARKERS.get(name, "x")
        ax.plot(steps[-1] + 1, gap[-1], marker, color=line.get_color(), ms=6)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("gap to best objective  f* − f")
    ax.set_title(f"{hist.shape[0]} restarts (bold: best; o converged, s max_iter, x failed)")
    ax.grid(alpha=0.3, which="both")
    return ax


def compare(comparison):
    """A `compare()` table as pictures: every method's restarts as in `history`, one panel
    per method against a common best value, the x axis in the work unit of the table
    (evaluations). Returns the Figure."""
    from ._compare import Comparison

    if not isinstance(comparison, Comparison):
        raise TypeError(
            "plot.compare takes the Comparison that gmmjax.compare(...) returns, got "
            f"{type(comparison).__name__}."
        )
    methods = list(comparison.histories)
    plt = _plt()
    cols = min(len(methods), 3)
    rows = -(-len(methods) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.4 * cols, 3.4 * rows), squeeze=False, layout="constrained",
        sharey=True,
    )  # fmt: skip
    best = comparison.best_value
    for axis, method in zip(axes.flat, methods, strict=False):
        hist = np.asarray(comparison.histories[method], np.float64)
        evals = np.asarray(comparison.evals[method], np.float64)
        for r in range(hist.shape[0]):
            ok = np.isfinite(hist[r]) & np.isfinite(evals[r])
            axis.plot(evals[r, ok], np.maximum(best - hist[r, ok], 1e-12), lw=1.0, alpha=0.7)
        axis.set_yscale("log")
        axis.set_title(method)
        axis.set_xlabel("evaluations")
        axis.grid(alpha=0.3, which="both")
    for axis in axes.flat[len(methods) :]:
        axis.set_visible(False)
    axes[0, 0].set_ylabel("gap to best  f* − f")
    fig.suptitle("every method from the same starts, one objective")
    return fig


def bic(selection, *, ax=None, criterion=None):
    """mclust's picture of a model-selection grid: the criterion (lower is better) against K,
    a line per covariance model, the selected cell circled; returns the Axes."""
    return plot_criterion(selection, ax=ax, criterion=criterion)


def _require_one(gmm):
    if not isinstance(gmm, GMM) or np.ndim(gmm.weights) != 1:
        raise ValueError("plot functions take one GMM (e.g. result.best), not a batch of them.")


def _data(X, gmm):
    X = np.asarray(X, np.float64)
    if X.ndim != 2 or X.shape[1] != gmm.n_features:
        raise ValueError(f"X must be (N, {gmm.n_features}), got shape {X.shape}.")
    if X.shape[0] == 0:
        raise ValueError(
            "X has no rows; pass the data to draw, or X=None (ellipses, density) to draw the "
            "mixture alone."
        )
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or inf; draw the complete rows, X[np.isfinite(X).all(1)].")
    return X


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
