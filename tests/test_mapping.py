"""Tests of microprop.learning and the map_area rule script (known answers)."""
import importlib
import types

import numpy as np
import pandas as pd
import pytest
from microprop import io as mio
from microprop import learning, plots, stats
from microprop.errors import InputError
from PIL import Image
from scipy import ndimage
from script_runner import run_script, write_map_stores


def _smooth_map(rng, shape=(330, 410)):
    """A float32 eta-like map with structure at several scales."""
    img = ndimage.gaussian_filter(rng.normal(size=shape), 6) * 0.2 + 0.12
    return (img + 0.01 * rng.normal(size=shape)).astype(np.float32)


def _explicit_crops(image, cy, cx, s):
    return np.stack([image[y - s // 2:y - s // 2 + s, x - s // 2:x - s // 2 + s]
                     for y in cy for x in cx]).astype(np.float32)


class RowCounter:
    """Array wrapper that records the rows of every read (memory bound check)."""

    def __init__(self, a):
        self.a, self.shape, self.rows = a, a.shape, []

    def __getitem__(self, key):
        self.rows.append(key[0].stop - key[0].start)
        return self.a[key]


# --------------------------------------------------------------------------
# window_centres
# --------------------------------------------------------------------------

@pytest.mark.parametrize("shape,s,step", [((1000, 1300), 250, 250), ((1000, 1300), 250, 31),
                                          ((250, 251), 250, 7), ((97, 300), 11, 5)])
def test_window_centres_cover_map_inside(shape, s, step):
    cy, cx = learning.window_centres(shape, s, step)
    for c, length in ((cy, shape[0]), (cx, shape[1])):
        assert c.dtype == np.int64
        assert np.all(np.diff(c) == step)
        first, last = c[0] - s // 2, c[-1] - s // 2 + s      # first row, end row (exclusive)
        assert first >= 0 and last <= length                    # whole crops inside
        margin = first + (length - last)
        assert 0 <= margin < step                               # no room for one more window
        assert abs(first - (length - last)) <= 1                # grid centred
    if shape == (1000, 1300) and step == 250:
        assert cy.tolist() == [125, 375, 625, 875]
        assert cx.tolist() == [150, 400, 650, 900, 1150]


@pytest.mark.parametrize("args", [((100, 100), 101, 10), ((200, 200), 50, 0),
                                  ((200, 200), 0, 5), ((10, 10, 3), 5, 5)])
def test_window_centres_bad_input(args):
    with pytest.raises(InputError):
        learning.window_centres(*args)


# --------------------------------------------------------------------------
# predict_map
# --------------------------------------------------------------------------

@pytest.mark.parametrize("step,strip_px", [(50, 10_000), (50, 60), (7, 10_000), (7, 83), (13, 1)])
def test_predict_map_crop_mean_is_box_filter(rng, step, strip_px):
    """predict_fn = crop mean reproduces scipy's box filter at the window centres."""
    image = _smooth_map(rng)
    s = 50
    calls = []

    def crop_mean(crops):
        calls.append(crops.shape)
        assert crops.dtype == np.float32 and crops.shape[1:] == (s, s)
        return crops.astype(np.float64).mean(axis=(1, 2))

    src = RowCounter(image)
    grid, (cy, cx) = learning.predict_map(src, crop_mean, s, step, batch=16, strip_px=strip_px)
    box = ndimage.uniform_filter(image.astype(np.float64), size=s, mode="constant")
    assert grid.dtype == np.float32 and grid.shape == (cy.size, cx.size)
    np.testing.assert_allclose(grid, box[np.ix_(cy, cx)], rtol=0, atol=2e-6)
    # every window evaluated exactly once, in batches of at most 16
    assert sum(c[0] for c in calls) == grid.size and max(c[0] for c in calls) <= 16
    # memory bounded: each read is one strip of at most max(strip_px, S) rows
    assert max(src.rows) <= max(strip_px, s)
    if strip_px < image.shape[0]:
        assert len(src.rows) > 1


def test_predict_map_nan_windows_skipped(rng):
    image = _smooth_map(rng, (200, 260))
    image[100, 130] = np.nan
    s, step = 40, 10

    def fn(crops):
        assert np.isfinite(crops).all()
        return crops.mean(axis=(1, 2))

    grid, (cy, cx) = learning.predict_map(image, fn, s, step, batch=7)
    rows = (cy - s // 2 <= 100) & (100 < cy - s // 2 + s)
    cols = (cx - s // 2 <= 130) & (130 < cx - s // 2 + s)
    expect_nan = rows[:, None] & cols[None, :]
    np.testing.assert_array_equal(np.isnan(grid), expect_nan)
    assert expect_nan.sum() == 16  # 4 x 4 windows of 40 px at step 10 cover one pixel


def test_predict_map_wrong_output_size(rng):
    image = _smooth_map(rng, (100, 100))
    with pytest.raises(InputError, match="returned"):
        learning.predict_map(image, lambda c: np.zeros(c.shape[0] + 1), 20, 20)


def test_predict_map_on_zarr_equals_numpy(tmp_path, rng):
    image = _smooth_map(rng, (300, 300))
    g = mio.create_group(tmp_path / "cal.zarr")
    arr = mio.create_group_array(g, "MulF", image.shape, np.float32, chunk=64)
    arr[:] = image
    fn = lambda c: c[:, ::3, ::5].max(axis=(1, 2))  # noqa: E731 - any crop function
    a, _ = learning.predict_map(mio.open_image(tmp_path / "cal.zarr", "MulF"), fn, 60, 17,
                               strip_px=100)
    b, (cy, cx) = learning.predict_map(image, fn, 60, 17)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(b, fn(_explicit_crops(image, cy, cx, 60)).reshape(b.shape))


# --------------------------------------------------------------------------
# window_means / table_model_map
# --------------------------------------------------------------------------

@pytest.mark.parametrize("step,strip_px", [(30, 10_000), (9, 70)])
def test_table_model_map_equals_explicit_windows(rng, step, strip_px):
    image = _smooth_map(rng)
    image[5:9, 200:240] = np.nan  # NaN pixels are left out of the mean, as crop_means does
    s = 50
    wm, (cy, cx) = learning.window_means(image, s, step, strip_px=strip_px)
    # bins spanning the map's window means (a few beyond both ends of the table)
    means = rng.uniform(np.nanmin(wm) + 1e-4, np.nanmax(wm) - 1e-4, 400)
    table = stats.table_model_fit(means, 20 + 300 * means + rng.normal(0, 0.1, 400), n_bins=8)
    grid = learning.table_model_map(image, table, s, step, strip_px=strip_px)
    explicit = stats.crop_means(_explicit_crops(image, cy, cx, s)).reshape(wm.shape)
    np.testing.assert_allclose(wm, explicit, rtol=0, atol=1e-9)
    expected = stats.table_model_predict(table, explicit.ravel()).reshape(grid.shape)
    np.testing.assert_array_equal(grid, expected.astype(np.float32))
    assert grid.dtype == np.float32 and len(np.unique(grid)) == 8


def test_window_means_all_nan_window():
    image = np.full((60, 60), np.nan, np.float32)
    image[:, 40:] = 1.0
    wm, (cy, cx) = learning.window_means(image, 20, 20)
    np.testing.assert_array_equal(np.isnan(wm[0]), [True, True, False])
    assert np.all(wm[:, 2] == 1.0)


def test_table_model_map_bad_table(rng):
    with pytest.raises(InputError, match="y_mean"):
        learning.table_model_map(_smooth_map(rng, (80, 80)), pd.DataFrame({"a": [1]}), 20, 20)


# --------------------------------------------------------------------------
# compare_statistics
# --------------------------------------------------------------------------

MEANS = np.array([25.0, 35.0, 52.0, 122.0])   # near the LD, HD, CH, ACC reference means
STDS = np.array([1.5, 2.0, 3.0, 8.0])


def _mixture(rng, fractions, n):
    comp = rng.choice(4, size=n, p=fractions)
    return rng.normal(MEANS[comp], STDS[comp])


def test_compare_statistics_recovers_fractions(rng):
    f_ind = np.array([0.40, 0.25, 0.15, 0.20])
    f_map = np.array([0.30, 0.30, 0.25, 0.15])
    indents = _mixture(rng, f_ind, 1500)
    grid = _mixture(rng, f_map, 90 * 100).reshape(90, 100)
    grid[0, :5] = np.nan
    table = learning.compare_statistics(indents, {"map": grid}, n_components=4, seed=0,
                                       n_init=2, max_values=5000)
    assert list(table["source"].unique()) == ["indentation", "map"]
    phases = ["LD-C-S-H", "HD-C-S-H", "CH", "ACC"]
    for src, f in (("indentation", f_ind), ("map", f_map)):
        t = table[table["source"] == src].set_index("phase").loc[phases]
        np.testing.assert_allclose(t["fraction"], f, atol=0.03)
        np.testing.assert_allclose(t["mean"], MEANS, rtol=0.04)
        np.testing.assert_allclose(t["std"], STDS, rtol=0.25)
    assert table.loc[table["source"] == "map", "n"].iloc[0] == 5000      # subsample
    assert table.loc[table["source"] == "indentation", "n"].iloc[0] == 1500
    m = table[table["source"] == "map"].set_index("phase").loc[phases]
    np.testing.assert_allclose(m["d_fraction"], f_map - f_ind, atol=0.04)
    assert table.loc[table["source"] == "indentation", "d_fraction"].isna().all()
    ind = table[table["source"] == "indentation"].set_index("phase").loc[phases]
    np.testing.assert_allclose(m["d_mean"], m["mean"] - ind["mean"])


def test_compare_statistics_wasserstein_of_a_shifted_histogram(rng):
    """W1 between a distribution and itself shifted by c is c (and 0 to itself)."""
    indents = _mixture(rng, [0.4, 0.25, 0.15, 0.2], 1200)
    shifted = (indents + 5.0).reshape(30, 40)
    table = learning.compare_statistics(indents, {"same": indents.copy(), "shifted": shifted},
                                       n_components=4, seed=0, n_init=1)
    w1 = table.groupby("source")["w1_GPa"].agg(["min", "max"])
    assert (w1["min"] == w1["max"]).all()                       # one value per source
    assert w1.loc["indentation", "max"] == 0 and w1.loc["same", "max"] == pytest.approx(0, abs=1e-12)
    assert w1.loc["shifted", "max"] == pytest.approx(5.0, rel=1e-9)
    assert table.columns[-1] == "w1_GPa"


def test_compare_statistics_joint(rng):
    f = np.array([0.4, 0.25, 0.15, 0.2])
    h_means = np.array([0.8, 1.2, 1.8, 8.0])
    comp = rng.choice(4, size=1200, p=f)
    e = rng.normal(MEANS[comp], STDS[comp])
    h = rng.normal(h_means[comp], 0.05 * h_means[comp])
    table = learning.compare_statistics(e, {"map": e.reshape(30, 40)}, n_components=4, n_init=2,
                                       indent_H=h, map_grids_H={"map": h.reshape(30, 40)})
    assert set(table["method"]) == {"joint E-H"}
    t = table[table["source"] == "indentation"].set_index("phase")
    np.testing.assert_allclose(t.loc[["LD-C-S-H", "HD-C-S-H", "CH", "ACC"], "fraction"], f,
                               atol=0.04)
    # the same values under two names give the same fit: zero difference
    np.testing.assert_allclose(table.loc[table["source"] == "map", "d_fraction"], 0, atol=1e-6)


def test_compare_statistics_too_few_values(rng):
    with pytest.raises(InputError, match="map"):
        learning.compare_statistics(_mixture(rng, [0.25] * 4, 200), {"map": np.full(5, 30.0)},
                                   n_init=1)


# --------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------

def test_map_triptych_renders(tmp_path, rng):
    bse = (255 * rng.uniform(size=(200, 300))).astype(np.uint8)   # 400 nm/px: 80 x 120 um
    g1 = rng.normal(30, 5, (16, 24))
    g2 = g1 + 3
    g1[0, 0] = np.nan
    fig = plots.map_triptych(bse, 400.0, g1, g2, step_um=5.0, first_centre_um=(2.3, 2.3),
                               downsample_factor=10)
    axes = fig.axes
    assert len(axes) == 4  # 3 panels + colourbar
    assert axes[-1].get_ylabel() == "indentation modulus E (GPa)"
    ims = [ax.images[0] for ax in axes[1:3]]
    assert ims[0].get_clim() == ims[1].get_clim()                 # one colour scale
    assert ims[0].get_extent() == pytest.approx((-0.2, 119.8, 79.8, -0.2))
    for ax in axes[:3]:
        assert ax.get_xlabel() == "x (um)"
        assert ax.get_xlim() == pytest.approx((-0.02, 119.98))
        assert ax.get_ylim() == pytest.approx((79.98, -0.02))  # y down
    
    plots.save_png(fig, tmp_path / "maps.png")
    img = np.asarray(Image.open(tmp_path / "maps.png").convert("L"), float)
    assert img.shape == (550, 1600) and img.std() > 5
    two = plots.map_triptych(bse, 400.0, g1, None, step_um=5.0)
    assert len(two.axes) == 3


def test_map_histograms_renders(tmp_path, rng):
    indents = _mixture(rng, [0.4, 0.25, 0.15, 0.2], 400)
    grids = {"ResNet": _mixture(rng, [0.3, 0.3, 0.2, 0.2], 600).reshape(20, 30),
             "table model": _mixture(rng, [0.3, 0.3, 0.2, 0.2], 600)}
    table = learning.compare_statistics(indents, grids, n_init=1)
    fig = plots.map_histograms(indents, grids, table)
    vis = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title().split("\n")[0] for ax in vis] == ["indentation", "ResNet", "table model"]
    assert "Wasserstein distance to the indents" in vis[1].get_title()
    for ax in vis:
        assert len(ax.get_lines()) == 5          # 4 components + mixture
        heights = np.array([p.get_height() for p in ax.patches])
        width = ax.patches[0].get_width()
        assert 0.9 < heights.sum() * width <= 1.0 + 1e-9   # density of all N (tails not drawn)
    
    plots.save_png(fig, tmp_path / "hist.png")
    assert Image.open(tmp_path / "hist.png").size == (1650, 450)
    with pytest.raises(InputError, match="nope"):
        plots.map_histograms(indents, {"nope": grids["ResNet"]}, table)


# --------------------------------------------------------------------------
# Rule script with a stand-in for microprop.learning
# --------------------------------------------------------------------------

def _fake_train(s):
    """Stand-in for microprop.learning: E = 20 + 200 * crop mean (GPa), shift per checkpoint."""
    mod = types.ModuleType("microprop.learning")
    mod.loaded = []
    mod.resolve_device = importlib.import_module("microprop.learning").resolve_device

    def load_model(path, device):
        mod.loaded.append((str(path), str(device)))
        shift = float(open(path).read())
        return shift, {"target": "E_GPa", "target_mean": 0.0, "target_std": 1.0,
                       "input_px": None, "crop_size_px": s}

    def predict(model, meta, images, device, batch_size, mc_dropout=False):
        assert images.shape[1:] == (s, s) and images.dtype == np.float32
        return 20 + 200 * images.mean(axis=(1, 2)) + model

    mod.load_model, mod.predict = load_model, predict
    return mod


def test_map_area_script(tmp_path, rng, monkeypatch):
    s, ps = 40, 40.0                      # 1.6 um crops at 40 nm/px
    image = _smooth_map(rng, (260, 300))
    write_map_stores(tmp_path, image, ps, origin_um=(1.0, 2.0))
    for i, shift in enumerate((-1.0, 1.0)):
        (tmp_path / f"m{i}.pt").write_text(str(shift))
    located = pd.DataFrame({"E_GPa": _mixture(rng, [0.4, 0.25, 0.15, 0.2], 300),
                            "H_GPa": 1.0})
    located.to_csv(tmp_path / "b01.csv", index=False)
    wm, _ = learning.window_means(image, s, 10)
    bins = stats.table_model_fit(wm.ravel(), 20 + 200 * wm.ravel(), n_bins=10)
    pd.concat([bins.assign(target="H_GPa", y_mean=-1.0), bins.assign(target="E_GPa")]).to_csv(
        tmp_path / "bins.csv", index=False)
    fake = _fake_train(s)
    monkeypatch.setattr(learning, "load_model", fake.load_model)
    monkeypatch.setattr(learning, "predict", fake.predict)
    out = {k: str(tmp_path / "out" / v) for k, v in (
        ("grid_coarse", "coarse.npy"), ("grid_dense", "dense.npy"), ("table1", "table1.csv"),
        ("fig_maps", "maps.png"), ("fig_hist", "hist.png"), ("meta", "meta.json"))}
    job = {"input": {"calibrated": str(tmp_path / "calibrated.zarr"),
                     "checkpoints": [str(tmp_path / "m0.pt"), str(tmp_path / "m1.pt")],
                     "table": str(tmp_path / "bins.csv"), "indents": [str(tmp_path / "b01.csv")],
                     "mosaic": str(tmp_path / "mosaic.zarr")},
           "output": out,
           "params": {"scale": "MulF", "step_um": 1.6, "dense_step_px": 10, "device": "cpu",
                      "n_components": 4, "seed": 0, "n_init": 1}}  # default batch
    run_script("map_area", job, tmp_path)
    assert fake.loaded == [(job["input"]["checkpoints"][0], "cpu"),
                           (job["input"]["checkpoints"][1], "cpu")]
    coarse, dense = np.load(out["grid_coarse"]), np.load(out["grid_dense"])
    for grid, step in ((coarse, 40), (dense, 10)):
        cy, cx = learning.window_centres(image.shape, s, step)
        assert grid.shape == (cy.size, cx.size)
        expected = 20 + 200 * stats.crop_means(_explicit_crops(image, cy, cx, s))  # shifts cancel
        np.testing.assert_allclose(grid.ravel(), expected, rtol=1e-5)
    t1 = pd.read_csv(out["table1"])
    assert list(t1["source"].unique()) == ["indentation", "ResNet, step 1.6 um",
                                           "ResNet, step 0.4 um", "table model, step 1.6 um",
                                           "table model, step 0.4 um"]
    tm = t1[t1["source"] == "table model, step 0.4 um"]
    assert (tm["mean"] > 0).all()               # the E bins, not the H bins (y_mean = -1)
    meta = mio.read_json(out["meta"])
    assert meta["dense"]["shape"] == list(dense.shape) and meta["dense"]["crops_per_s"] > 0
    assert Image.open(out["fig_maps"]).size == (1600, 550)
    assert Image.open(out["fig_hist"]).size[0] == 1650


def test_dense_step_and_window_placement():
    shape, s = (260, 300), 40
    n = lambda step: np.prod([c.size for c in learning.window_centres(shape, s, step)])  # noqa: E731
    assert learning.dense_step_px(shape, s, 5) == 5 and learning.dense_step_px(shape, s, 5, 0) == 5
    step = learning.dense_step_px(shape, s, 5, max_crops=200)
    assert n(step) <= 200 < n(step - 1)
    assert learning.map_label("ResNet", 40, 40.0) == "ResNet, step 1.6 um"
    centres = learning.window_centres(shape, s, 10)
    grid = np.zeros((centres[0].size, centres[1].size), np.float32)
    geo = learning.map_geometry(10, 40.0, grid, centres)
    assert geo == {"step_px": 10, "step_um": 0.4, "shape": list(grid.shape),
                   "first_centre_px": [int(centres[1][0]), int(centres[0][0])]}
    # an even crop's centre lies half a pixel before its centre pixel
    x_um, y_um = learning.first_centre_um(centres, s, 40.0)
    assert x_um == pytest.approx((centres[1][0] - 0.5) * 0.04)
    assert y_um == pytest.approx((centres[0][0] - 0.5) * 0.04)
    assert learning.first_centre_um(centres, 41, 40.0)[0] == pytest.approx(centres[1][0] * 0.04)


def test_load_ensemble_and_mean_predictor(tmp_path, rng):
    fake = _fake_train(8)
    paths = []
    for i, shift in enumerate((-1.0, 3.0)):
        paths.append(str(tmp_path / f"m{i}.pt"))
        (tmp_path / f"m{i}.pt").write_text(str(shift))
    models, meta = learning.load_ensemble(paths, "cpu", load_model=fake.load_model)
    assert [m[0] for m in models] == paths and meta["crop_size_px"] == 8
    fn = learning.ensemble_mean_predictor(models, "cpu", 4, predict=fake.predict)
    crops = rng.random((5, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(fn(crops), 20 + 200 * crops.mean(axis=(1, 2)) + 1.0, rtol=1e-6)
    with pytest.raises(InputError, match="no checkpoints"):
        learning.load_ensemble([], "cpu", load_model=fake.load_model)
    other = _fake_train(16)
    mixed = lambda p, d: (other if p == paths[1] else fake).load_model(p, d)  # noqa: E731
    with pytest.raises(InputError, match="m1.pt: crop_size_px = 16 differs"):
        learning.load_ensemble(paths, "cpu", load_model=mixed)
