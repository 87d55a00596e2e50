"""gmmjax.plot: every picture on small fits in float32 and float64, checked through the data
its artists carry (no image comparison)."""

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest
from matplotlib.patches import Ellipse

import gmmjax as gj

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FAITHFUL = np.asarray(gj.load_dataset("faithful")[0], np.float64)
IRIS = np.asarray(gj.load_dataset("iris")[0], np.float64)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module", params=["float64", "float32"])
def fits(request):
    dtype = jnp.dtype(request.param)
    kw = dict(key=jax.random.key(0), n_restarts=3, max_iter=100)
    two = gj.fit_em(jnp.asarray(FAITHFUL, dtype), 2, cov_type="tied", **kw)
    four = gj.fit_em(jnp.asarray(IRIS, dtype), 3, cov_type="diag", **kw)
    return two, four


def centres(ax):
    return sorted(tuple(np.round(p.center, 6)) for p in ax.patches if isinstance(p, Ellipse))


def test_ellipses_are_centred_on_the_means(fits):
    two, four = fits
    ax = gj.plot.ellipses(two.best, FAITHFUL, feature_names=["eruptions", "waiting"])
    want = sorted(tuple(np.round(m, 6)) for m in np.asarray(two.best.means, np.float64))
    assert centres(ax) == sorted(want * 2)  # a 1-sd and a 2-sd ellipse per component
    assert ax.get_xlabel() == "eruptions" and len(ax.collections[0].get_offsets()) == 272
    # The 2-sd ellipse of a tied model: axes 4·sqrt(eigenvalues of the shared covariance).
    big = max((p for p in ax.patches), key=lambda p: p.width)
    values = np.linalg.eigvalsh(np.asarray(two.best.covariances, np.float64))
    np.testing.assert_allclose(sorted([big.width, big.height]), 4 * np.sqrt(values), rtol=1e-5)
    fig = gj.plot.ellipses(four.best, IRIS, dims=(0, 2, 3))
    panels = [a for a in fig.axes if a.get_visible()]
    assert len(panels) == 6  # 3 histograms + 3 pairs
    pair = next(a for a in panels if a.get_xlabel() == "x0" and a.get_ylabel() == "x3")
    means = np.asarray(four.best.means, np.float64)[:, [0, 3]]
    assert centres(pair) == sorted([tuple(np.round(m, 6)) for m in means] * 2)


def test_uncertainty_colours_points_by_one_minus_max_responsibility(fits):
    two, _ = fits
    ax = gj.plot.uncertainty(two.best, FAITHFUL)
    resp, _ = gj.e_step(two.best, jnp.asarray(FAITHFUL, two.best.means.dtype))
    want = np.sort(1 - np.asarray(resp, np.float64).max(1))
    np.testing.assert_allclose(np.sort(ax.collections[0].get_array()), want, atol=1e-6)


def test_density_contours_the_marginal_log_density(fits):
    _, four = fits
    ax = gj.plot.density(four.best, IRIS, dims=(2, 3))
    contours = ax.collections[0]
    assert np.all(np.isfinite(contours.levels)) and len(contours.levels) > 3
    # The marginal on (2, 3): the same weights, the means' and covariances' sub-blocks.
    marginal = gj.plot.marginal(four.best, (2, 3))
    best = four.best
    np.testing.assert_allclose(marginal.means, np.asarray(best.means, np.float64)[:, [2, 3]])
    np.testing.assert_allclose(
        np.diagonal(marginal.covariances, axis1=1, axis2=2),
        np.asarray(best.covariances, np.float64)[:, [2, 3]],
    )
    # The contoured surface is log p of that marginal: at most log Σ_k π_k N(μ_k | μ_k, Σ_k)
    # (each component peaks at its mean), at least its value at the densest data point.
    cov = np.asarray(marginal.covariances)
    peaks = np.asarray(marginal.weights) / (2 * np.pi * np.sqrt(np.linalg.det(cov)))
    at_data = np.asarray(gj.log_prob(marginal, IRIS[:, [2, 3]]))
    assert at_data.max() - 0.5 <= contours.zmax <= np.log(peaks.sum()) + 1e-9
    assert ax.get_xlabel() == "x2"


def test_history_and_compare_draw_every_restart(fits):
    two, _ = fits
    ax = gj.plot.history(two)
    traces = [ln for ln in ax.lines if len(ln.get_xdata()) > 1]
    assert len(traces) == 3 and ax.get_yscale() == "log"
    cmp = gj.compare(
        FAITHFUL, 2, key=jax.random.key(0), methods=("em", "lbfgs"), n_restarts=2, max_iter=30
    )
    fig = gj.plot.compare(cmp)
    assert [a.get_title() for a in fig.axes if a.get_visible()] == ["em", "lbfgs"]
    assert all(len(a.lines) == 2 for a in fig.axes if a.get_visible())


def test_bic_draws_a_line_per_model():
    sel = gj.select(
        FAITHFUL, range(1, 4), cov_types=("VVV", "EII"), n_restarts=2, key=jax.random.key(0)
    )
    ax = gj.plot.bic(sel)
    labels = [ln.get_label() for ln in ax.lines if not ln.get_label().startswith("_")]
    assert labels == ["VVV", "EII"]
    vvv = next(ln for ln in ax.lines if ln.get_label() == "VVV")
    want = [r["bic"] for r in sel.rows if r["cov_type"] == "VVV"]
    np.testing.assert_allclose(vvv.get_ydata(), want)


def test_bad_input_is_named(fits):
    two, _ = fits
    with pytest.raises(ValueError, match="dims must name"):
        gj.plot.ellipses(two.best, FAITHFUL, dims=(0, 0))
    with pytest.raises(ValueError, match="one GMM"):
        gj.plot.ellipses(two.params, FAITHFUL)
    with pytest.raises(ValueError, match=r"X must be \(N, 2\)"):
        gj.plot.uncertainty(two.best, IRIS)


def test_cli_fit_writes_the_picture(tmp_path, capsys):
    from gmmjax import cli

    data = tmp_path / "iris.csv"
    np.savetxt(data, IRIS, delimiter=",")
    out = tmp_path / "fit.png"
    cli.main(["fit", str(data), "-k", "3", "--restarts", "2", "--plot", str(out)])
    assert out.stat().st_size > 10_000 and "figure written" in capsys.readouterr().out
