"""Tests of microprop.physics: grey -> eta -> porosity, reference greys, chunked maps."""
import numpy as np
import pandas as pd
import pytest
import zarr
from microprop import io as mio
from microprop import physics
from microprop.errors import InputError
from scipy import ndimage


def _phase_image(rng, shape=(300, 300), greys=(40.0, 95.0, 150.0, 215.0),
                 fractions=(0.15, 0.4, 0.25, 0.2), noise=6.0):
    """Blocky multi-phase label image rendered to uint8 with Gaussian noise."""
    coarse = rng.choice(len(greys), size=(shape[0] // 10, shape[1] // 10), p=fractions)
    labels = np.kron(coarse, np.ones((10, 10), dtype=int))
    img = np.asarray(greys)[labels] + rng.normal(0, noise, shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), labels


def test_grey_to_eta_recovers_eta_through_linear_detector(rng):
    # eta field of known truth, rendered by a linear detector g = a + b*eta (uint16: fine steps)
    eta_true = rng.uniform(0.08, 0.45, size=(64, 64))
    a, b = 1200.0, 90000.0
    grey = np.round(a + b * eta_true).astype(np.uint16)
    e_pore, e_acc = 0.10, 0.40
    refs = (a + b * e_pore, a + b * e_acc)
    eta = physics.grey_to_eta(grey, refs, (e_pore, e_acc))
    assert eta.dtype == np.float32 and eta.shape == grey.shape
    # quantisation of 1 grey level = 1/b in eta ~ 1e-5
    assert np.max(np.abs(eta - eta_true)) < 1e-3
    # references map exactly
    np.testing.assert_allclose(physics.grey_to_eta(np.array(refs), refs, (e_pore, e_acc)),
                               [e_pore, e_acc], atol=1e-7)


def test_grey_to_eta_rejects_bad_references():
    with pytest.raises(InputError, match="equal"):
        physics.grey_to_eta(np.zeros(3), (10, 10), (0.1, 0.3))
    with pytest.raises(InputError, match="opposite order"):
        physics.grey_to_eta(np.zeros(3), (10, 200), (0.3, 0.1))
    with pytest.raises(InputError, match="two numbers"):
        physics.grey_to_eta(np.zeros(3), "auto", (0.1, 0.3))


def test_grey_to_eta_clips_extrapolation_to_physical_range():
    eta = physics.grey_to_eta(np.array([0, 255]), (50, 200), (0.1, 0.4))
    assert eta[0] == 0.0 and eta[1] == pytest.approx(0.51, abs=1e-6)  # 0.1 + 205 * 0.002
    eta = physics.grey_to_eta(np.array([0]), (100, 200), (0.1, 0.4), clip=False)
    assert eta[0] == pytest.approx(-0.2, abs=1e-6)


@pytest.mark.parametrize("method", ["gmm", "peaks"])
def test_auto_reference_greys_within_two_levels(rng, method):
    greys = (40.0, 95.0, 150.0, 215.0)
    img, _ = _phase_image(rng, greys=greys)
    modes = physics.find_reference_greys(img, method=method)
    assert len(modes["grey"]) == 4
    np.testing.assert_allclose(modes["grey"], greys, atol=2.0)
    assert physics.darkest_mode(modes) == pytest.approx(40.0, abs=2.0)
    assert physics.brightest_mode(modes) == pytest.approx(215.0, abs=2.0)
    if method == "gmm":
        np.testing.assert_allclose(modes["sigma"], 6.0, atol=1.0)
        assert modes["weight"].sum() == pytest.approx(1.0)


def test_auto_reference_greys_overlapping_modes_and_fixed_count(rng):
    # overlapping peaks (separation 3 sigma): the mixture still finds the means
    greys = (90.0, 120.0, 200.0)
    img, _ = _phase_image(rng, shape=(400, 400), greys=greys,
                          fractions=(0.5, 0.3, 0.2), noise=10.0)
    modes = physics.find_reference_greys(img, n_modes=3)
    np.testing.assert_allclose(modes["grey"], greys, atol=2.0)


def test_significant_mode_skips_small_weights(rng):
    modes = {"grey": np.array([5.0, 80.0, 200.0]), "weight": np.array([0.005, 0.6, 0.395])}
    assert physics.darkest_mode(modes, min_weight=0.02) == 80.0
    assert physics.darkest_mode(modes, min_weight=0.001) == 5.0
    with pytest.raises(InputError):
        physics.brightest_mode(modes, min_weight=0.9)


def test_exclude_values_drops_fill_spike(rng):
    img, _ = _phase_image(rng, greys=(60.0, 160.0), fractions=(0.5, 0.5))
    img[:, :60] = 0  # a zero-filled gap between tiles
    modes = physics.find_reference_greys(img, exclude_values=[0])
    assert physics.darkest_mode(modes) == pytest.approx(60.0, abs=2.0)


def test_saturated_end_spike_is_no_mode_and_does_not_pull_one(rng):
    """A spike at the end of the range (a saturated detector, or a fill value) is left out: the
    modes of the rest are found where they are, in unit steps or in the comb of a gain above 1."""
    img, _ = _phase_image(rng, greys=(60.0, 160.0), fractions=(0.5, 0.5))
    img[:, :60] = 0  # a zero-filled gap between tiles, or pores below the detector's black level
    modes = physics.find_reference_greys(img)
    assert physics.darkest_mode(modes) == pytest.approx(60.0, abs=2.0)
    # gain 1.25 and +20 grey before 8-bit quantisation: the bright phase partly clipped at 255
    img, _ = _phase_image(rng, greys=(60.0, 180.0), fractions=(0.5, 0.5))
    rec = np.clip(np.rint(1.25 * img.astype(float) + 20), 0, 255).astype(np.uint8)
    assert (rec == 255).mean() > 0.05
    modes = physics.find_reference_greys(rec)
    assert len(modes["grey"]) == 2
    np.testing.assert_allclose((modes["grey"] - 20) / 1.25, [60.0, 180.0], atol=1.0)


def test_find_reference_greys_rejects_constant():
    with pytest.raises(InputError, match="constant"):
        physics.find_reference_greys(np.full((20, 20), 7, np.uint8))


ETA_TABLE = pd.DataFrame({"n": [0.0, 0.25, 0.5, 0.75, 1.0],
                          "eta": [0.15, 0.21, 0.28, 0.36, 0.45]})


def test_eta_to_porosity_inverts_table_exactly():
    n = physics.eta_to_porosity(ETA_TABLE["eta"].to_numpy(), ETA_TABLE)
    np.testing.assert_allclose(n, ETA_TABLE["n"], atol=1e-7)
    # midway between two knots -> midway in n (piecewise linear)
    assert physics.eta_to_porosity(np.array([0.18]), ETA_TABLE)[0] == pytest.approx(0.125, abs=1e-6)
    # round trip through eta_at_porosity
    nn = np.linspace(0, 1, 37)
    np.testing.assert_allclose(physics.eta_to_porosity(physics.eta_at_porosity(ETA_TABLE, nn), ETA_TABLE),
                               nn, atol=1e-6)


def test_eta_to_porosity_clips_and_masks():
    eta = np.array([[0.05, 0.15, 0.30], [0.45, 0.9, np.nan]])
    mask = np.array([[False, False, True], [False, False, False]])
    n = physics.eta_to_porosity(eta, ETA_TABLE, clinker_mask=mask)
    assert n.dtype == np.float32
    assert n[0, 0] == 0.0          # darker than solid C-S-H
    assert n[0, 1] == 0.0
    assert n[0, 2] == 0.0          # clinker, although bright
    assert n[1, 0] == 1.0
    assert n[1, 1] == 1.0          # brighter than the metal
    assert np.isnan(n[1, 2])
    assert physics.eta_to_porosity(np.array([0.30]), ETA_TABLE)[0] == pytest.approx(0.5625, abs=1e-6)


def test_eta_to_porosity_decreasing_table_and_non_monotone():
    dec = ETA_TABLE.assign(eta=ETA_TABLE["eta"][::-1].to_numpy())
    np.testing.assert_allclose(physics.eta_to_porosity(dec["eta"].to_numpy(), dec), dec["n"], atol=1e-7)
    bad = ETA_TABLE.copy()
    bad.loc[2, "eta"] = 0.20  # below eta(0.25)
    with pytest.raises(InputError, match="monotone"):
        physics.eta_to_porosity(np.array([0.2]), bad)
    # isotonic fit pools (0.25, 0.21) and (0.5, 0.20) into one knot (0.375, 0.205)
    n = physics.eta_to_porosity(np.array([0.15, 0.205, 0.45]), bad, monotone="isotonic")
    np.testing.assert_allclose(n, [0.0, 0.375, 1.0], atol=1e-6)
    with pytest.raises(InputError, match="span"):
        physics.eta_to_porosity(np.array([0.2]), ETA_TABLE.iloc[:3])


def test_reference_eta_from_tables():
    phase_eta = pd.DataFrame({"phase": ["pore", "ACC", "Field's metal"],
                              "eta": [0.06, 0.20, 0.45]})
    assert physics.reference_eta(["pore", "ACC"], phase_eta) == pytest.approx([0.06, 0.20])
    assert physics.reference_eta(["n=0", "n=1"], phase_eta, ETA_TABLE) == pytest.approx([0.15, 0.45])
    with pytest.raises(InputError, match="'CH' not found"):
        physics.reference_eta(["CH", "ACC"], phase_eta)


def _mosaic(tmp_path, rng, shape=(230, 310), chunk=64):
    img, _ = _phase_image(rng, shape=shape)
    arr = mio.create_image_store(tmp_path / "mosaic.zarr", shape, np.uint8, chunk=chunk,
                                 attrs={"pixel_size_nm": 40.0, "origin_um": [1.5, -2.0]})
    arr[:] = img
    return mio.open_image(tmp_path / "mosaic.zarr"), img


@pytest.mark.parametrize("sigma", [3.0, 10.0])
def test_chunked_micf_equals_whole_image_blur(tmp_path, rng, sigma):
    mosaic, img = _mosaic(tmp_path, rng)
    refs, etas = (40.0, 215.0), (0.06, 0.20)
    out = tmp_path / "calibrated.zarr"
    physics.calibrate_mosaic(mosaic, out, "eta", refs, etas, micf_sigma_px=sigma, chunk=64)
    g = zarr.open_group(str(out), mode="r")
    mulf, micf = np.asarray(g["MulF"]), np.asarray(g["MicF"])
    assert mulf.dtype == np.float32 and micf.dtype == np.float32
    assert mulf.shape == img.shape and g["MulF"].chunks == (64, 64) and g["MicF"].chunks == (64, 64)
    np.testing.assert_array_equal(mulf, physics.grey_to_eta(img, refs, etas))
    ref = ndimage.gaussian_filter(physics.grey_to_eta(img, refs, etas).astype(np.float64), sigma,
                                  mode="reflect")
    assert np.max(np.abs(micf - ref)) < 1e-5
    # conservation: a normalised blur keeps the mean (reflect border: exactly for the whole image)
    assert micf.mean() == pytest.approx(mulf.mean(), rel=1e-5)
    # and it does smooth: variance drops
    assert micf.var() < 0.5 * mulf.var()
    attrs = dict(g.attrs)
    assert attrs["quantity"] == "eta" and attrs["units"] == "1"
    assert attrs["grey_refs"] == [40.0, 215.0] and attrs["eta_refs"] == [0.06, 0.20]
    assert attrs["sigma"] == sigma and attrs["pixel_size_nm"] == 40.0
    assert attrs["origin_um"] == [1.5, -2.0]


def test_threaded_blocks_give_the_same_maps(tmp_path, rng):
    mosaic, img = _mosaic(tmp_path, rng, shape=(200, 170), chunk=32)
    refs, etas = (40.0, 215.0), (0.15, 0.45)
    maps = []
    for threads in (1, 3):
        out = tmp_path / f"cal{threads}.zarr"
        physics.calibrate_mosaic(mosaic, out, "porosity", refs, etas, eta_table=ETA_TABLE,
                                 clinker_grey_window=(200, 256), micf_sigma_px=4.0, chunk=32, threads=threads)
        g = zarr.open_group(str(out), mode="r")
        maps.append((np.asarray(g["MulF"]), np.asarray(g["MicF"])))
    # 42 blocks of 32 px in 3 threads: every chunk written once, by one thread
    np.testing.assert_array_equal(maps[0][0], maps[1][0])
    np.testing.assert_array_equal(maps[0][1], maps[1][1])
    assert np.isfinite(maps[1][1]).all() and maps[1][1].std() > 0
    with pytest.raises(InputError, match="threads"):
        physics.calibrate_mosaic(mosaic, tmp_path / "bad.zarr", "eta", refs, etas, threads=0)


def test_calibrate_mosaic_porosity_mode_and_clinker(tmp_path, rng):
    mosaic, img = _mosaic(tmp_path, rng, shape=(150, 170), chunk=32)
    refs, etas = (40.0, 215.0), (0.15, 0.45)
    out = tmp_path / "cal.zarr"
    physics.calibrate_mosaic(mosaic, out, "porosity", refs, etas, eta_table=ETA_TABLE,
                         clinker_grey_window=(200, 255), micf_sigma_px=2.0, chunk=50)
    g = zarr.open_group(str(out), mode="r")
    expect = physics.eta_to_porosity(physics.grey_to_eta(img, refs, etas), ETA_TABLE,
                                 clinker_mask=img >= 200)
    np.testing.assert_array_equal(np.asarray(g["MulF"]), expect)
    assert np.all(np.asarray(g["MulF"])[img >= 200] == 0)
    assert g.attrs["quantity"] == "porosity"


def test_calibrate_mosaic_failure_leaves_no_output(tmp_path, rng):
    mosaic, _ = _mosaic(tmp_path, rng, shape=(40, 40), chunk=16)
    out = tmp_path / "cal.zarr"
    with pytest.raises(InputError, match="eta table"):
        physics.calibrate_mosaic(mosaic, out, "porosity", (40, 215), (0.1, 0.4), eta_table=None)
    bad = ETA_TABLE.copy()
    bad.loc[2, "eta"] = 0.20
    with pytest.raises(InputError, match="monotone"):
        physics.calibrate_mosaic(mosaic, out, "porosity", (40, 215), (0.1, 0.4), eta_table=bad)
    assert not out.exists()
    assert not list(tmp_path.glob(".cal.zarr*"))


def test_real_bse_modes(real_bse_image):
    # the real paste shows two grey modes: hydration products and clinker; pores are a
    # dark tail, not a mode. The clinker mode must be the brighter, and the hydrates'
    # mode the most populated.
    modes = physics.find_reference_greys(real_bse_image)
    assert len(modes["grey"]) >= 2
    hist = np.bincount(real_bse_image.ravel(), minlength=256)
    smooth = ndimage.gaussian_filter1d(hist.astype(float), 3)
    # the brightest mode lies at the histogram's upper local maximum (within 5 levels)
    upper = 140 + int(np.argmax(smooth[140:]))
    assert physics.brightest_mode(modes) == pytest.approx(upper, abs=5)
    main = modes["grey"][np.argmax(modes["weight"])]
    assert main == pytest.approx(int(np.argmax(smooth)), abs=8)


def test_detector_line_recovers_merged_modes():
    """Five phases through a known linear detector (LD/HD-C-S-H merged in one
    histogram mode): the eta-constrained mixture recovers the line."""
    

    eta = {"pore": 0.0508, "LD-C-S-H": 0.1296, "HD-C-S-H": 0.1367, "CH": 0.1642, "ACC": 0.1804}
    frac = [0.05, 0.38, 0.25, 0.15, 0.17]
    gain, offset = 1196.0, -10.8
    rng = np.random.default_rng(1)
    lab = rng.choice(5, 50_000, p=frac)
    e = np.array(list(eta.values()))[lab]
    grey = offset + gain * e + rng.normal(0, 8.0, lab.size)
    fit = physics.fit_detector_line(grey, eta)
    assert fit["gain"] == pytest.approx(gain, rel=0.02)
    assert fit["offset"] == pytest.approx(offset, abs=2.0)
    np.testing.assert_allclose(fit["weight"], frac, atol=0.03)
    with pytest.raises(InputError):
        physics.fit_detector_line(grey, {"a": 0.1, "b": 0.1})
