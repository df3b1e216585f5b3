"""Tests of the virtual specimen: microstructure, BSE rendering, tiles, one area."""
import numpy as np
import pandas as pd
import pytest
from microprop import phases
from microprop import virtual as mp_virtual
from microprop.errors import InputError
from scipy import ndimage
from skimage.measure import label, regionprops

PX_NM = 100.0


@pytest.fixture(scope="module")
def labels100():
    """A 120 x 120 um field at 100 nm/px with the default fractions."""
    return mp_virtual.generate_microstructure((1200, 1200), PX_NM, phases.DEFAULT_FRACTIONS, np.random.default_rng(5))


def test_phase_ids_are_the_convention():
    assert phases.PHASES == ("pore", "LD-C-S-H", "HD-C-S-H", "CH", "ACC")
    assert [phases.PHASE_IDS[p] for p in phases.PHASES] == [0, 1, 2, 3, 4]


def test_default_fractions_are_met(labels100):
    got = mp_virtual.phase_fractions(labels100)
    assert labels100.dtype == np.uint8 and labels100.shape == (1200, 1200)
    for p, want in phases.DEFAULT_FRACTIONS.items():
        assert abs(got[p] - want) < 0.02, (p, got[p], want)


def test_other_fractions_at_40nm_are_met():
    want = {"pore": 0.10, "LD-C-S-H": 0.30, "HD-C-S-H": 0.15, "CH": 0.20, "ACC": 0.25}
    lab = mp_virtual.generate_microstructure((900, 1300), 40.0, want, 11)
    got = mp_virtual.phase_fractions(lab)
    for p in phases.PHASES:
        assert abs(got[p] - want[p]) < 0.02, (p, got[p], want[p])


def test_a_missing_phase_stays_absent():
    want = {"pore": 0.0, "LD-C-S-H": 0.6, "HD-C-S-H": 0.2, "CH": 0.0, "ACC": 0.2}
    got = mp_virtual.phase_fractions(mp_virtual.generate_microstructure((500, 500), PX_NM, want, 1))
    assert got["pore"] == 0 and got["CH"] == 0
    assert abs(got["ACC"] - 0.2) < 0.02


def test_deterministic_with_a_seed():
    a = mp_virtual.generate_microstructure((300, 400), PX_NM, None, 3)
    b = mp_virtual.generate_microstructure((300, 400), PX_NM, None, 3)
    c = mp_virtual.generate_microstructure((300, 400), PX_NM, None, 4)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("bad, msg", [
    ({"pore": 0.5, "LD-C-S-H": 0.38, "HD-C-S-H": 0.25, "CH": 0.15, "ACC": 0.17}, "sum"),
    ({"pore": 0.05, "LD-C-S-H": 0.38, "HD-C-S-H": 0.25, "CH": 0.15}, "missing"),
    ({"pore": 0.05, "LD-CSH": 0.38, "HD-C-S-H": 0.25, "CH": 0.15, "ACC": 0.17}, "unknown"),
    ({"pore": -0.05, "LD-C-S-H": 0.48, "HD-C-S-H": 0.25, "CH": 0.15, "ACC": 0.17}, r"\[0, 1\]"),
])
def test_bad_fractions_raise(bad, msg):
    with pytest.raises(InputError, match=msg):
        mp_virtual.generate_microstructure((100, 100), PX_NM, bad, 0)


def _components(mask, min_px):
    return [r for r in regionprops(label(mask)) if r.area >= min_px]


def test_clinker_grains_are_compact_angular_and_sized(labels100):
    grains = _components(labels100 == phases.ACC, 20)
    assert len(grains) > 30
    solidity = np.array([g.solidity for g in grains])
    assert np.mean(solidity > 0.8) > 0.9
    d_um = np.array([g.equivalent_diameter_area for g in grains]) * PX_NM / 1000
    assert d_um.max() < 35 and np.median(d_um) > 2.0
    # angular (polygons), not discs: a disc has perimeter^2 / (4 pi A) = 1
    shape = np.array([g.perimeter ** 2 / (4 * np.pi * g.area) for g in grains if g.area > 2000])
    assert np.median(shape) > 1.08


def test_hd_rims_touch_most_clinker_grains(labels100):
    lab_acc = label(labels100 == phases.ACC)
    ring = ndimage.binary_dilation(lab_acc > 0, iterations=3) & (lab_acc == 0)
    near = ndimage.grey_dilation(lab_acc, size=7)  # grain id next to each ring pixel
    ids = np.unique(near[ring & (labels100 == phases.HD)])
    n_grains = lab_acc.max()
    assert len(set(ids) - {0}) / n_grains > 0.9


def test_ch_crystals_are_elongated_on_average(labels100):
    crystals = _components(labels100 == phases.CH, 100)
    assert len(crystals) > 20
    ratio = np.array([c.axis_major_length / max(c.axis_minor_length, 1) for c in crystals])
    assert ratio.mean() > 1.8
    assert 5.0 < np.median([c.axis_major_length for c in crystals]) * PX_NM / 1000 < 25.0


def test_pores_are_small_and_in_the_outer_product(labels100):
    pores = _components(labels100 == phases.PORE, 1)
    d_um = np.array([p.equivalent_diameter_area for p in pores]) * PX_NM / 1000
    assert np.median(d_um) < 1.0 and np.percentile(d_um, 95) < 5.0
    # the pixels around pores are outer product (LD-C-S-H), not clinker
    ring = ndimage.binary_dilation(labels100 == phases.PORE) & (labels100 != phases.PORE)
    around = np.bincount(labels100[ring], minlength=5) / ring.sum()
    assert around[phases.LD] > 0.8 and around[phases.ACC] < 0.01


def test_look_does_not_depend_on_pixel_size():
    """The same field in um at two pixel sizes: similar grain sizes in um."""
    med = []
    for px, n in ((100.0, 900), (50.0, 1800)):
        lab = mp_virtual.generate_microstructure((n, n), px, None, 8)
        grains = _components(lab == phases.ACC, 20 * (100 / px) ** 2)
        med.append(np.median([g.equivalent_diameter_area for g in grains]) * px / 1000)
    assert med[0] == pytest.approx(med[1], rel=0.35)


# ------------------------------------------------------------------ rendering


def test_render_is_linear_in_eta_and_ordered(labels100, rng):
    # an eta table where CH is brighter than ACC: the order must follow eta, not the label id
    eta = {"pore": 0.07, "LD-C-S-H": 0.12, "HD-C-S-H": 0.14, "CH": 0.19, "ACC": 0.17}
    img = mp_virtual.render_bse(labels100, eta, rng, pixel_size_nm=PX_NM, gain=1000.0, offset=-20.0)
    assert img.dtype == np.float32 and img.shape == labels100.shape
    core = {p: ndimage.binary_erosion(labels100 == i, iterations=3) for i, p in enumerate(phases.PHASES)}
    mean = {p: float(img[m].mean()) for p, m in core.items()}
    assert sorted(mean, key=mean.get) == sorted(eta, key=eta.get)
    for p in phases.PHASES:  # grey = offset + gain * eta, texture averages out
        assert mean[p] == pytest.approx(-20.0 + 1000.0 * eta[p], rel=0.01)
    # not piecewise constant: a few % texture inside a phase
    sd_ld = float(img[core["LD-C-S-H"]].std()) / (1000 * eta["LD-C-S-H"])
    assert 0.01 < sd_ld < 0.15


def test_default_detector_maps_eta_range_to_grey_range():
    gain, offset = mp_virtual.bse_gain_offset(mp_virtual.DEFAULT_PHASE_ETA, (50, 205))
    assert offset + gain * min(mp_virtual.DEFAULT_PHASE_ETA.values()) == pytest.approx(50)
    assert offset + gain * max(mp_virtual.DEFAULT_PHASE_ETA.values()) == pytest.approx(205)


def test_render_without_eta_for_a_present_phase_raises():
    lab = np.array([[0, 1], [4, 4]], np.uint8)
    with pytest.raises(InputError, match="ACC"):
        mp_virtual.render_bse(lab, {"pore": 0.07, "LD-C-S-H": 0.12}, 0)


# ------------------------------------------------------------------ tiles


@pytest.fixture(scope="module")
def ideal():
    lab = mp_virtual.generate_microstructure((800, 900), PX_NM, None, 21)
    return mp_virtual.render_bse(lab, mp_virtual.DEFAULT_PHASE_ETA, 22, pixel_size_nm=PX_NM)


def _cut(ideal, seed, **kw):
    args = dict(field_origin_px=(60, 50), field_shape_px=(560, 700), brightness_drift=0.01,
                contrast_drift=0.02, electrons_per_px=5000.0)
    args.update(kw)
    return mp_virtual.cut_tiles(ideal, (256, 256), 0.1, 1.0, PX_NM, np.random.default_rng(seed), **args)


def test_tiles_are_the_image_at_their_true_position(ideal):
    tiles, layout, truth = _cut(ideal, 1)
    assert all(t.dtype == np.uint8 and t.shape == (256, 256) for t in tiles)
    moved = 0
    for t, (_, tr), (_, lay) in zip(tiles, truth.iterrows(), layout.iterrows()):
        ref = mp_virtual.cut_window(ideal, tr.x_px, tr.y_px, (256, 256))
        assert np.corrcoef(t.ravel(), ref.ravel())[0, 1] > 0.9
        # the stage stops between pixels: positions are not whole numbers
        assert tr.x_px != round(tr.x_px) or tr.y_px != round(tr.y_px)
        nx, ny = int(round(lay.x_um * 10)), int(round(lay.y_um * 10))
        if abs(nx - tr.x_px) + abs(ny - tr.y_px) >= 6:  # moved >= 6 px: nominal crop must fit worse
            moved += 1
            nom = ideal[ny: ny + 256, nx: nx + 256]
            assert np.corrcoef(t.ravel(), nom.ravel())[0, 1] < np.corrcoef(t.ravel(), ref.ravel())[0, 1] - 0.1
    assert moved > 0


def test_nominal_layout_is_the_grid_with_overlap(ideal):
    tiles, layout, truth = _cut(ideal, 2)
    step = round(256 * 0.9)  # 230 px = 23 um at 100 nm/px
    assert list(layout.columns) == ["tile", "file", "row", "col", "x_um", "y_um"]
    assert list(truth.columns) == ["tile", "x_px", "y_px"]
    assert layout["tile"].is_unique and layout["file"].is_unique
    np.testing.assert_allclose(layout["x_um"], (60 + layout["col"] * step) * PX_NM / 1000)
    np.testing.assert_allclose(layout["y_um"], (50 + layout["row"] * step) * PX_NM / 1000)
    n_rows, n_cols = layout["row"].max() + 1, layout["col"].max() + 1
    assert len(layout) == n_rows * n_cols == len(tiles)
    # covers the nominal field, and one tile less would not
    assert (n_cols - 1) * step + 256 >= 700 > (n_cols - 2) * step + 256
    assert (n_rows - 1) * step + 256 >= 560 > (n_rows - 2) * step + 256


def test_stage_error_and_offset_statistics():
    img = np.full((3000, 3000), 100.0, np.float32)
    _, layout, truth = mp_virtual.cut_tiles(img, (100, 100), 0.1, 2.0, PX_NM, 3, field_origin_px=(500, 500),
                                    field_shape_px=(1900, 1900), offset_um=(3.0, -2.0), electrons_per_px=0)
    dx = (truth["x_px"] - layout["x_um"] * 10) * PX_NM / 1000
    dy = (truth["y_px"] - layout["y_um"] * 10) * PX_NM / 1000
    n = len(dx)  # 441 tiles
    assert dx.mean() == pytest.approx(3.0, abs=4 * 2.0 / np.sqrt(n))
    assert dy.mean() == pytest.approx(-2.0, abs=4 * 2.0 / np.sqrt(n))
    assert dx.std() == pytest.approx(2.0, rel=0.15)


def test_shot_noise_and_drift_follow_the_detector_model():
    gain, offset = 1000.0, -20.0
    grey = 130.0  # eta = 0.15
    img = np.full((400, 400), grey, np.float32)
    ne = 2000.0
    tiles, _, _ = mp_virtual.cut_tiles(img, (200, 200), 0.0, 0.0, PX_NM, 4, electrons_per_px=ne, gain=gain,
                               offset=offset, brightness_drift=0.0, contrast_drift=0.0)
    t = np.stack(tiles).astype(float)
    # Poisson: var(counts) = ne * eta -> var(grey) = gain^2 * eta / ne; plus rounding 1/12
    eta = (grey - offset) / gain
    assert t.var() == pytest.approx(gain ** 2 * eta / ne + 1 / 12, rel=0.05)
    assert t.mean() == pytest.approx(grey, abs=0.1)
    tiles, _, _ = mp_virtual.cut_tiles(img, (100, 100), 0.0, 0.0, PX_NM, 5, electrons_per_px=0,
                               brightness_drift=0.02, contrast_drift=0.0)
    means = np.array([x.mean() for x in tiles])
    assert means.std() == pytest.approx(0.02 * 255, rel=0.5)


def test_uint16_tiles_use_the_full_range(ideal):
    t8, _, _ = _cut(ideal, 6, electrons_per_px=0, brightness_drift=0, contrast_drift=0)
    t16, _, _ = _cut(ideal, 6, electrons_per_px=0, brightness_drift=0, contrast_drift=0, dtype=np.uint16)
    assert t16[0].dtype == np.uint16
    np.testing.assert_allclose(t16[0] / 257.0, t8[0], atol=0.51)


def test_tiles_are_deterministic_with_a_seed(ideal):
    a, la, ta = _cut(ideal, 7)
    b, lb, tb = _cut(ideal, 7)
    c, _, tc = _cut(ideal, 8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    pd.testing.assert_frame_equal(ta, tb)
    pd.testing.assert_frame_equal(la, lb)
    assert not ta.equals(tc)


def test_field_outside_the_image_raises(ideal):
    with pytest.raises(InputError, match="does not fit"):
        _cut(ideal, 0, field_origin_px=(0, 0), field_shape_px=(800, 900))


# ------------------------------------------------------------------ one area


@pytest.fixture(scope="module")
def area():
    return mp_virtual.generate_area(
        mp_virtual.DEFAULT_PHASE_ETA, pixel_size_nm=PX_NM, n_batches=(2, 1), batch_shape=(4, 5), spacing_um=10.0,
        margin_um=10.0, tile_shape_px=(384, 384), overlap_frac=0.15, stage_error_um=1.0,
        after_offset_um=(3.0, -2.0), indenter_offset_um=(5.0, -3.0), indenter_axes=(1, -1),
        batches=["b01", "b02"], seed=9)


def test_area_exports_are_nominal_positions_in_indenter_coordinates(area):
    ind = area["indents"]
    assert set(area["exports"]) == {"b01", "b02"}
    for b, exp in area["exports"].items():
        t = ind[ind["batch"] == b]
        assert list(exp["indent"]) == list(range(1, 21))
        # X = sx (stage_x - dx), Y = sy (stage_y - dy), with sx = 1, sy = -1, (dx, dy) = (5, -3)
        np.testing.assert_allclose(exp["x_um"], t["nominal_x_um"] - 5.0)
        np.testing.assert_allclose(exp["y_um"], -(t["nominal_y_um"] + 3.0))
        # the nominal grid: spacing 10 um along columns (X) and rows (-Y)
        np.testing.assert_allclose(np.diff(exp["x_um"].to_numpy().reshape(4, 5), axis=1), 10.0)
        np.testing.assert_allclose(np.diff(exp["y_um"].to_numpy().reshape(4, 5), axis=0), -10.0)
        np.testing.assert_allclose(exp["E_GPa"], t["E_GPa"])
        # true positions differ from nominal by the batch origin error (+ a small drift)
        err = np.hypot(t["x_um"] - t["nominal_x_um"], t["y_um"] - t["nominal_y_um"])
        assert err.max() < 6.0
    np.testing.assert_allclose(ind["x_px"], ind["x_um"] * 1000 / PX_NM)


def test_area_after_tiles_show_marks_at_true_positions(area):
    """Marks are dark/bright triangles: the after tile differs from the before image there."""
    lab = area["labels"]
    ind = area["indents"]
    tr_b = area["before"]["truth"].set_index("tile")
    tr_a = area["after"]["truth"].set_index("tile")
    # offset of the after set = shift applied (3, -2) um = (30, -20) px up to stage noise
    lay_a = area["after"]["layout"].set_index("tile")
    d = (tr_a["x_px"] - lay_a["x_um"] * 10).mean(), (tr_a["y_px"] - lay_a["y_um"] * 10).mean()
    assert abs(d[0] - 30) < 15 and abs(d[1] + 20) < 15
    assert lab.shape[0] > tr_b["y_px"].max() + 384 - 1 and lab.shape[1] > tr_b["x_px"].max() + 384 - 1
    # compare one after tile with the same region cut from the before set where they overlap
    name = tr_a.index[0]
    a = area["after"]["tiles"][0].astype(float)
    x0, y0 = tr_a.loc[name, "x_px"], tr_a.loc[name, "y_px"]
    inside = ind[(ind.x_px > x0 + 15) & (ind.x_px < x0 + 369) & (ind.y_px > y0 + 15) & (ind.y_px < y0 + 369)]
    assert len(inside) > 0
    ideal_full = mp_virtual.render_bse(lab, mp_virtual.DEFAULT_PHASE_ETA, 0, pixel_size_nm=PX_NM)
    ideal_b = mp_virtual.cut_window(ideal_full, x0, y0, (384, 384))
    diff = np.abs(a - ideal_b)
    for _, r in inside.iterrows():
        cx, cy = int(round(r.x_px - x0)), int(round(r.y_px - y0))
        at_mark = diff[cy - 3: cy + 4, cx - 3: cx + 4].mean()
        assert at_mark > np.median(diff) * 1.5


def test_area_summary(area):
    s = area["summary"]
    for p in phases.PHASES:
        assert abs(s["area_fractions"][p] - phases.DEFAULT_FRACTIONS[p]) < 0.02
    n = sum(v["n_indents"] for v in s["dominant_phase"].values())
    assert n == len(area["indents"]) == 40
    assert sum(v["indent_fraction"] for v in s["dominant_phase"].values()) == pytest.approx(1.0)
    assert s["parameters"]["batches"] == ["b01", "b02"]


def test_area_rejects_wrong_batch_names():
    with pytest.raises(InputError, match="batch names"):
        mp_virtual.generate_area(mp_virtual.DEFAULT_PHASE_ETA, pixel_size_nm=PX_NM, n_batches=(2, 1), batch_shape=(2, 2),
                         tile_shape_px=(256, 256), batches=["b01"])
