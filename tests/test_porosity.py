"""The second study's parts: virtual metal-intruded specimens, porosity descriptors,
the statistical baseline and the local-map dataset, against known answers."""
import json

import h5py
import numpy as np
import pandas as pd
import pytest
from microprop import data, microstructure, physics, stats
from microprop import virtual as mp_virtual
from microprop.errors import InputError

#: A linear eta(n) table (C-S-H 0.18 -> Field's metal 0.41), enough to test the render and its inverse.
ETA_TABLE = pd.DataFrame({"n": np.linspace(0, 1, 11), "eta": 0.18 + 0.23 * np.linspace(0, 1, 11)})


def test_gaussian_random_field_is_standard_with_the_stated_correlation(rng):
    g = mp_virtual.gaussian_random_field((512, 512), 6.0, rng)
    assert g.dtype == np.float32 and abs(g.mean()) < 1e-6 and g.std() == pytest.approx(1.0, rel=1e-5)
    # correlation function: Gaussian of sd sqrt(2) * 6 px -> at a lag of 12 px, exp(-12^2 / (4 * 36)) = e^-1
    c = float(np.mean(g * np.roll(g, 12, axis=1)))
    assert c == pytest.approx(np.exp(-1.0), abs=0.05)
    with pytest.raises(InputError, match="corr_px"):
        mp_virtual.gaussian_random_field((8, 8), 0.0, rng)


def test_porosity_map_regions_and_their_values(rng):
    p = dict(mp_virtual.DEMO_POROSITY_CLASSES["S2"])
    n, regions = mp_virtual.porosity_map((768, 768), 52.0, p, rng, "S2")
    assert n.dtype == np.float32 and n.min() >= 0 and n.max() <= 1
    assert (n[regions == 1] == 0).all() and (n[regions == 3] == 1).all()   # grains solid, capillaries metal
    assert (regions == 1).mean() == pytest.approx(p["grain_fraction"], abs=0.03)
    assert (regions == 3).mean() == pytest.approx(p["capillary_fraction"], abs=0.02)
    # the densified rims hold less metal than the rest of the hydration products
    assert n[regions == 2].mean() < 0.7 * n[regions == 0].mean()
    bad = dict(p, mean_porosity=1.5)
    with pytest.raises(InputError, match="mean_porosity"):
        mp_virtual.porosity_map((64, 64), 52.0, bad, rng, "S2")
    with pytest.raises(InputError, match="missing"):
        mp_virtual.porosity_map((64, 64), 52.0, {"mean_porosity": 0.2}, rng, "bad")


def test_rendered_image_calibrates_back_to_its_porosity(rng, tmp_path):
    """The BSE render through eta(n) and a detector, inverted by the porosity calibration."""
    n, _ = mp_virtual.porosity_map((256, 256), 52.0, mp_virtual.DEMO_POROSITY_CLASSES["S1"], rng)
    grey, det = mp_virtual.render_porosity_bse(n, ETA_TABLE, rng, electrons_per_px=0)
    assert grey.dtype == np.uint8
    assert det["offset"] + det["gain"] * det["eta_csh"] == pytest.approx(60.0)
    physics.calibrate_mosaic(grey, tmp_path / "cal.zarr", "porosity", [60.0, 180.0],
                             [det["eta_csh"], det["eta_metal"]], eta_table=ETA_TABLE, micf_sigma_px=10.0,
                             chunk=128, extra_attrs={"pixel_size_nm": 52.0})
    import zarr

    mulf = zarr.open_group(str(tmp_path / "cal.zarr"), mode="r")["MulF"][:]
    # 8-bit quantisation of a 120-grey range: |error| <= half a grey level = 0.0042 in n
    assert np.abs(mulf - n).max() <= 0.5 / 120 + 1e-4


def test_average_pore_size_of_known_discs():
    yy, xx = np.mgrid[:200, :200]
    n = np.zeros((200, 200))
    for cy, cx, r in ((40, 40, 10), (120, 60, 10), (60, 150, 10), (150, 150, 10)):
        n[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1.0
    area = ((yy - 40) ** 2 + (xx - 40) ** 2 <= 100).sum()
    d_px = 2 * np.sqrt(area / np.pi)
    assert microstructure.average_pore_size_nm(n, 50.0) == pytest.approx(d_px * 50.0)
    n[5, 5] = n[5, 195] = 1.0          # two one-pixel specks: noise, not pores
    assert microstructure.average_pore_size_nm(n, 50.0) == pytest.approx(d_px * 50.0)
    assert np.isnan(microstructure.average_pore_size_nm(np.zeros((20, 20)), 50.0))
    d = microstructure.porosity_descriptors(np.stack([n, np.full((200, 200), 0.25)]), 50.0)
    assert d[0, 0] == pytest.approx(n.mean()) and d[1, 0] == pytest.approx(0.25) and np.isnan(d[1, 1])


def test_nearest_class_mean_and_tukey_kramer_known_answers(rng):
    vals = np.repeat([1.0, 2.0, 4.0], 5) + np.tile([-0.1, 0, 0, 0, 0.1], 3)
    labs = np.repeat(["a", "b", "c"], 5)
    r = stats.nearest_class_mean(vals, labs)
    assert r["accuracy"] == 1.0 and r["class_means"]["b"] == pytest.approx(2.0)
    # one value of b moved next to a's mean: misassigned
    vals2 = vals.copy()
    vals2[5] = 1.05
    r = stats.nearest_class_mean(vals2, labs)
    assert r["accuracy"] == pytest.approx(14 / 15) and r["confusion"].loc["b", "a"] == 1
    # ANOVA = scipy's; Tukey-Kramer separates far groups, not two draws of one distribution
    x = np.r_[rng.normal(0, 1, 40), rng.normal(0, 1, 35), rng.normal(3, 1, 30)]
    lab = np.repeat(["S1", "S3", "S2"], [40, 35, 30])
    anova, table = stats.anova_tukey(x, lab, alpha=0.10)
    from scipy.stats import f_oneway

    assert anova["F"] == pytest.approx(f_oneway(x[:40], x[40:75], x[75:]).statistic)
    pairs = {frozenset((a, b)): r for a, b, r in zip(table.group1, table.group2, table.reject)}
    assert pairs[frozenset(("S1", "S2"))] and pairs[frozenset(("S2", "S3"))]
    assert not pairs[frozenset(("S1", "S3"))]
    with pytest.raises(InputError, match="2 are needed"):
        stats.nearest_class_mean([1.0, 2.0], ["a", "a"])


def test_map_dataset_layout_splits_and_downsampling(tmp_path, rng):
    classes = {}
    for i, c in enumerate(("S1", "S2", "S3")):
        mulf = rng.random((96, 160)).astype(np.float32) * 0.5 + 0.1 * i
        classes[c] = {"mulf": mulf, "micf": mulf * 0.5, "source": f"{c}.zarr", "sha256": "x"}
    out = tmp_path / "maps.h5"
    res = data.write_map_dataset(
        out, classes, 52.0, 32, input_px=16, n_train=6, seed=1,
        describe=lambda m, px: {"porosity": m.mean(axis=(1, 2))})
    assert res["maps_per_class"] == {"S1": 15, "S2": 15, "S3": 15}   # 3 x 5 windows of 32 px
    with h5py.File(out) as f:
        assert f["maps/MulF"].shape == (45, 16, 16) and f["maps/MicF"].shape == (45, 16, 16)
        assert json.loads(f.attrs["classes"]) == ["S1", "S2", "S3"] and f.attrs["pixel_size_nm"] == 104.0
        lab, x, y = f["labels"][:], f["meta/x_px"][:], f["meta/y_px"][:]
        # the stored map is the 2 x 2 block mean of the window, the descriptor is of the full window
        k = int(np.nonzero(lab == 1)[0][3])
        win = classes["S2"]["mulf"][y[k]:y[k] + 32, x[k]:x[k] + 32]
        np.testing.assert_allclose(f["maps/MulF"][k], win.reshape(16, 2, 16, 2).mean(axis=(1, 3)), rtol=1e-6)
        assert f["descriptors/porosity"][k] == pytest.approx(win.mean(), rel=1e-6)
        for scheme in ("random", "spatial"):
            tr, va, te = (f[f"splits/{scheme}/{p}"][:] for p in ("train", "val", "test"))
            assert sorted(np.r_[tr, va, te]) == list(range(45))   # a partition
        tr, va = f["splits/random/train"][:], f["splits/random/val"][:]
        assert list(np.bincount(lab[np.r_[tr, va]])) == [6, 6, 6]   # n_train per class (15 >= 4/3 * 6)
        assert list(np.bincount(lab[va])) == [1, 1, 1]              # a tenth of 6, at least one
        sp = np.r_[f["splits/spatial/train"][:], f["splits/spatial/val"][:]]
        assert (x[sp] < 0.75 * 160).all() and (x[np.setdiff1d(np.arange(45), sp)] >= 0.75 * 160).all()
    with pytest.raises(InputError, match="no multiple"):
        data.write_map_dataset(tmp_path / "b.h5", classes, 52.0, 32, input_px=12)
    with pytest.raises(InputError, match="at least 2"):
        data.write_map_dataset(tmp_path / "c.h5", {"S1": classes["S1"]}, 52.0, 32)
