"""Tests of microprop.plots: PNG size, content, and the plotted numbers."""

import numpy as np
import pandas as pd
import pytest
from microprop import plots, stats
from microprop.errors import InputError
from PIL import Image
from script_runner import run_script


def _png(fig, path):
    plots.save_png(fig, path)
    img = np.asarray(Image.open(path).convert("L"), dtype=float)
    return img


def _grid_table(rng, n_rows=10, n_cols=12, s=20.0):
    rows, cols = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    e = 20 + 2.0 * cols.ravel() + rng.normal(0, 1, rows.size)  # E rises with x
    return pd.DataFrame({"x_um": 30 + s * cols.ravel(), "y_um": 40 + s * rows.ravel(),
                         "E_GPa": e, "H_GPa": e / 30,
                         "detected": rng.uniform(size=rows.size) > 0.1})


def _assert_png(img, size_in, kind):
    w, h = (int(round(v * plots.DPI)) for v in plots.FIGSIZE[kind])
    assert img.shape == (h, w)
    assert img.std() > 5  # not a uniform image
    assert len(np.unique(img)) > 20


def test_mosaic_overview_png(tmp_path, rng):
    # smooth random "BSE" image, 300 x 400 px at 500 nm: 200 um x 150 um
    img = (rng.normal(size=(300, 400)).cumsum(axis=0).cumsum(axis=1))
    img = (255 * (img - img.min()) / np.ptp(img)).astype(np.uint8)
    located = _grid_table(rng, 5, 8, s=20.0)
    fig = plots.mosaic_overview(img, 500.0, located)
    ax, ax_dots = fig.axes[0], fig.axes[1]
    assert ax.get_xlabel() == "x (um)" and ax.get_ylabel() == "y (um)"
    assert fig.axes[2].get_ylabel() == "indentation modulus E (GPa)"  # colourbar
    # (a) holds the image only, (b) the image and the indents
    assert not ax.collections and len(ax_dots.collections) == 2  # located + not-detected rings
    # axes span the image in um, y down
    assert ax.get_xlim() == pytest.approx((-0.25, 199.75))
    assert ax.get_ylim() == pytest.approx((149.75, -0.25))
    # dots a third of the 20 um spacing wide: they cover a small part of panel (b)
    fig.canvas.draw()
    side_pt = float(np.sqrt(ax_dots.collections[0].get_sizes()[0]))
    p0, p1 = ax_dots.transData.transform([(0, 0), (20.0, 0)])
    assert side_pt == pytest.approx(min(8.0, abs(p1[0] - p0[0]) * 72 / fig.dpi / 3), rel=0.2)
    _assert_png(_png(fig, tmp_path / "overview.png"), None, "double")


def test_nice_length():
    assert plots.nice_length(730) == 100.0
    assert plots.nice_length(200) == 20.0
    assert plots.nice_length(30) == 5.0
    assert plots.nice_length(1.0) == 0.2


def test_modulus_map_png(tmp_path, rng):
    located = _grid_table(rng)
    fig = plots.modulus_map(located)
    coll = fig.axes[0].collections[0]
    lo, hi = coll.get_clim()
    np.testing.assert_allclose([lo, hi], np.percentile(located["E_GPa"], [2, 98]))
    np.testing.assert_allclose(coll.get_array(), located["E_GPa"])
    img = _png(fig, tmp_path / "map.png")
    _assert_png(img, None, "image")
    # squares tile a regular grid: square width (pt) = the spacing in pt, 3 % more (no hairline gaps)
    ax = fig.axes[0]
    p0, p1 = ax.transData.transform([(0, 0), (20.0, 0)])
    side_pt = np.sqrt(coll.get_sizes()[0])
    assert side_pt == pytest.approx(1.03 * abs(p1[0] - p0[0]) * 72 / fig.dpi, rel=0.02)
    assert "spacing 20 um, estimated" in ax.get_title()
    # the configured spacing sizes the squares and is the one the title gives
    fig = plots.modulus_map(located, spacing_um=25.0)
    ax, coll = fig.axes[0], fig.axes[0].collections[0]
    p0, p1 = ax.transData.transform([(0, 0), (25.0, 0)])
    assert np.sqrt(coll.get_sizes()[0]) == pytest.approx(1.03 * abs(p1[0] - p0[0]) * 72 / fig.dpi, rel=0.02)
    assert "spacing 25 um)" in ax.get_title()


def test_histogram_components_plots_normalised_mixture(tmp_path, rng):
    x = np.concatenate([rng.normal(26.5, 3, 700), rng.normal(34.8, 3, 600),
                        rng.normal(52, 5, 300), rng.normal(122, 15, 400)])
    table = stats.deconvolve(x, seed=0, n_init=2)
    fig = plots.histogram_components(x, table, quantity="E_GPa")
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert len(lines) == len(table) + 1
    grid = lines[0].get_xdata()
    comps = np.array([ln.get_ydata() for ln in lines[:-1]])
    np.testing.assert_allclose(comps, stats.component_curves(grid, table))
    np.testing.assert_allclose(lines[-1].get_ydata(), comps.sum(axis=0))
    assert np.trapezoid(lines[-1].get_ydata(), grid) == pytest.approx(1.0, abs=1e-3)
    for i, row in enumerate(table.itertuples()):
        assert np.trapezoid(comps[i], grid) == pytest.approx(row.fraction, abs=1e-3)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(lab.startswith("ACC: f=") for lab in labels)
    assert ax.get_xlabel() == "indentation modulus E (GPa)"
    _assert_png(_png(fig, tmp_path / "hist.png"), None, "single")


def test_table_model_scatter_png(tmp_path, rng):
    g = rng.uniform(0.1, 0.2, 500)
    e = 10 + 300 * g + rng.normal(0, 1, g.size)
    res = stats.table_model(g, e, n_bins=10)
    te = res["test_index"]
    fig = plots.table_model_scatter(g[te], e[te], res["y_pred"], res["metrics"],
                                      table=res["table"])
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert f"R² = {res['metrics']['R2']:.3f}" in labels[0]
    _assert_png(_png(fig, tmp_path / "table.png"), None, "double")
    with pytest.raises(InputError):
        plots.table_model_scatter(g, e[:3], e[:3], res["metrics"])


def test_bic_plot_png(tmp_path):
    bic = pd.DataFrame({"k": [1, 2, 3, 4], "bic": [10.0, 5.0, 7.0, 9.0],
                        "aic": [9.0, 4.0, 5.0, 6.0]})
    fig = plots.bic_plot(bic)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "minimum BIC: k = 2" in labels
    _assert_png(_png(fig, tmp_path / "bic.png"), None, "single")


def test_save_png_leaves_no_partial_file(tmp_path):
    class Boom:
        def savefig(self, *a, **k):
            raise RuntimeError("disk full")

    out = tmp_path / "x.png"
    with pytest.raises(RuntimeError):
        plots.save_png(Boom(), out)
    assert list(tmp_path.iterdir()) == []


def test_missing_columns_raise():
    with pytest.raises(InputError, match="E_GPa"):
        plots.modulus_map(pd.DataFrame({"x_um": [1.0], "y_um": [1.0]}))


def test_figures_overview_script(tmp_path, rng):
    from microprop import io
    arr = io.create_image_store(tmp_path / "mosaic_before.zarr", (600, 900), np.uint8, chunk=256,
                                attrs={"pixel_size_nm": 250.0, "origin_um": [0, 0]})
    arr[:] = rng.integers(0, 255, (600, 900), dtype=np.uint8)
    located = _grid_table(rng, 4, 6, s=30.0)
    located.to_csv(tmp_path / "b1.csv", index=False)
    out = {"overview": str(tmp_path / "ov.png"), "modulus_map": str(tmp_path / "map.png")}
    job = {"input": {"mosaic": str(tmp_path / "mosaic_before.zarr"),
                     "located": [str(tmp_path / "b1.csv")]},
           "output": out, "params": {"max_width_px": 400}, "wildcards": {"area": "A1"},
           "log": [str(tmp_path / "log.txt")]}
    run_script("figures_overview", job, tmp_path)
    assert "downsampled by 3 to (200, 300) px" in (tmp_path / "log.txt").read_text()
    for k in out:
        _assert_png(np.asarray(Image.open(out[k]).convert("L"), float), None,
                    "double" if k == "overview" else "image")
