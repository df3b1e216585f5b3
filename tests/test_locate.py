"""Tests of microprop.imaging: Berkovich marks, detection, batch grid model, registration."""
import logging
import math

import numpy as np
import pandas as pd
import pytest
from microprop import imaging
from microprop import io as mio
from microprop.errors import InputError
from microprop.imaging import _marks
from scipy import ndimage
from scipy.spatial import cKDTree

# --------------------------------------------------------------------------- helpers

def bse_texture(rng, shape, mean=110.0):
    """Smoothed-noise image resembling a BSE micrograph (grains, matrix, pores), float."""
    coarse = ndimage.gaussian_filter(rng.standard_normal(shape), 8)
    coarse /= coarse.std()
    fine = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5)
    fine /= fine.std()
    img = mean + 35 * np.tanh(1.5 * coarse) + 8 * fine
    img[coarse < -1.8] = 35  # pores
    return img


def shot_noise(rng, img):
    """8-bit image with Poisson shot noise."""
    return np.clip(rng.poisson(np.clip(img, 0, None)), 0, 255).astype(np.uint8)


def grid_truth(rng, n_rows, n_cols, spacing, origin, origin_err, drift):
    """True positions by the grid model (seed paper eqs. 3a/3b) and the nominal ones."""
    dxk = spacing + rng.normal(0, drift, n_cols - 1)
    dyk = spacing + rng.normal(0, drift, n_rows - 1)
    colx = origin[0] + origin_err[0] + np.concatenate([[0], np.cumsum(dxk)])
    rowy = origin[1] + origin_err[1] + np.concatenate([[0], np.cumsum(dyk)])
    i, j = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    i, j = i.ravel(), j.ravel()
    nominal = pd.DataFrame({"indent": np.arange(1, i.size + 1), "row": i, "col": j,
                            "x_px": origin[0] + j * spacing, "y_px": origin[1] + i * spacing})
    truth = np.column_stack([colx[j], rowy[i]])
    return nominal, truth


def match_rms(found, truth, tol):
    """RMS distance of found points to their nearest truth, misses and false positives."""
    d, idx = cKDTree(truth).query(found, distance_upper_bound=tol)
    ok = np.isfinite(d)
    hit = np.unique(idx[ok])
    return float(np.sqrt(np.mean(d[ok] ** 2))), truth.shape[0] - hit.size, int((~ok).sum())


# --------------------------------------------------------------------------- marks

def test_berkovich_side_gives_the_area_function():
    side = imaging.berkovich_side_px(300.0, 40.0)
    area_nm2 = math.sqrt(3) / 4 * (side * 40.0) ** 2
    assert area_nm2 == pytest.approx(24.5 * 300.0 ** 2, rel=1e-12)
    assert side == pytest.approx(7.5225 * 300 / 40, rel=1e-4)
    np.testing.assert_allclose(imaging.berkovich_side_px(np.array([200.0, 400.0]), 40.0),
                               [37.61, 75.22], atol=0.01)
    with pytest.raises(InputError):
        imaging.berkovich_side_px(300, 0)


def test_rendered_mark_has_area_centroid_and_facets():
    side = 40.0
    for cx, cy in [(50.0, 50.0), (50.3, 49.6)]:
        cov = _marks._mark_coverage(cx, cy, side, 0, 0, 100, 100)
        facets = cov[:3]
        # rasterised area equals the triangle's, each facet a third of it
        assert facets.sum() == pytest.approx(math.sqrt(3) / 4 * side ** 2, rel=0.005)
        np.testing.assert_allclose(facets.sum(axis=(1, 2)) / facets.sum(), 1 / 3, atol=0.005)
        # anti-aliased: the coverage centroid is the requested sub-pixel centroid
        tot = facets.sum(axis=0)
        yy, xx = np.mgrid[:100, :100]
        assert (tot * xx).sum() / tot.sum() == pytest.approx(cx, abs=0.05)
        assert (tot * yy).sum() / tot.sum() == pytest.approx(cy, abs=0.05)

    flat = np.full((100, 100), 128, np.uint8)
    out = imaging.render_berkovich_marks(flat, [50.0], [50.0], 40.0 * 40 / 7.5225, 40.0)
    assert out.dtype == np.float32 and flat[50, 50] == 128  # input untouched
    assert 0 < out.min() and out.max() < 255  # visible, not saturated
    r_in = side / (2 * math.sqrt(3))
    # apex up: left facet dark, right facet bright, bottom facet mid, outside unchanged
    left, right, bottom = out[50 - 3, 50 - 8], out[50 - 3, 50 + 8], out[int(50 + r_in / 2), 50]
    assert left < bottom < 128 < right
    assert out[int(50 - 2 * r_in) - 8, 50] == 128  # above the apex
    assert out[5, 5] == 128
    # a mark partly outside the image is clipped, not an error
    edge = imaging.render_berkovich_marks(flat, [1.0], [99.0], 300.0, 40.0)
    assert edge.shape == flat.shape and (edge != 128).any()


def _mark_field(rng, shape, xs, ys, depth_range, pixel_size_nm):
    depth = rng.uniform(*depth_range, xs.size)
    img = imaging.render_berkovich_marks(bse_texture(rng, shape), xs, ys, depth, pixel_size_nm, rng=rng)
    return shot_noise(rng, img)


def test_detect_marks_recovers_sub_pixel_positions(rng):
    # one batch of 5 x 5 marks at 150 px, a second batch continuing the grid to its right
    g = np.arange(5) * 150.0 + 80
    xs, ys = np.meshgrid(np.concatenate([g, g + 750]), g)
    xs = xs.ravel() + rng.uniform(-0.5, 0.5, xs.size)
    ys = ys.ravel() + rng.uniform(-0.5, 0.5, xs.size)
    img = _mark_field(rng, (760, 1510), xs, ys, (250, 350), 40.0)
    det = imaging.detect_marks(img, imaging.berkovich_side_px(300, 40.0))
    rms, missed, false = match_rms(det[["x_px", "y_px"]].to_numpy(), np.column_stack([xs, ys]), 10)
    assert rms < 1.0
    assert missed <= 1 and false <= 1  # <= 2 % of 50
    assert set(det.columns) == {"x_px", "y_px", "score", "side_px"}


def test_detect_marks_on_real_bse_texture(real_bse_image, rng):
    xs, ys = np.meshgrid(np.arange(80, 800, 130.0), np.arange(80, 800, 130.0))
    xs = xs.ravel() + rng.uniform(-0.5, 0.5, xs.size)
    ys = ys.ravel() + rng.uniform(-0.5, 0.5, xs.size)
    img = imaging.render_berkovich_marks(real_bse_image, xs, ys, rng.uniform(250, 350, xs.size), 40.0,
                                        rng=rng)
    det = imaging.detect_marks(shot_noise(rng, img), imaging.berkovich_side_px(300, 40.0))
    truth = np.column_stack([xs, ys])
    rms, missed, false = match_rms(det[["x_px", "y_px"]].to_numpy(), truth, 10)
    # marks across grain boundaries or on pores score lower and sit less precisely on
    # real texture: allow 2 misses of 36 and a looser RMS
    assert rms < 1.5 and missed <= 2 and false <= 1
    d, _ = cKDTree(truth).query(det[["x_px", "y_px"]].to_numpy())
    assert np.median(d) < 0.6


def test_detect_marks_finds_nothing_in_plain_texture(rng):
    img = shot_noise(rng, bse_texture(rng, (400, 400)))
    # plain texture rarely exceeds the default threshold (about one peak per 0.2 Mpx)
    assert len(imaging.detect_marks(img, 50.0)) <= 1
    with pytest.raises(InputError):
        imaging.detect_marks(np.zeros((3, 3, 3)), 50.0)


# --------------------------------------------------------------------------- grid model

def _detections(rng, truth, noise=0.4, missing=0.05, spurious=8, extent=6000):
    keep = rng.random(len(truth)) >= missing
    det = truth[keep] + rng.normal(0, noise, (keep.sum(), 2))
    det = np.vstack([det, rng.uniform(0, extent, (spurious, 2))])
    return pd.DataFrame(det, columns=["x_px", "y_px"]), keep


def test_fit_batch_grid_recovers_drifting_batch(rng):
    px_um = 0.04  # 40 nm/px
    s = 10 / px_um  # 10 um spacing
    nominal, truth = grid_truth(rng, 20, 20, s, (500.0, 400.0), (2 / px_um, -1.5 / px_um), 0.1 / px_um)
    # the neighbouring batch continues the grid to the right with its own origin error
    _, right = grid_truth(rng, 20, 20, s, (500.0 + 20 * s, 400.0), (-1.0 / px_um, 1.0 / px_um),
                          0.1 / px_um)
    det, keep = _detections(rng, np.vstack([truth, right]))
    located, model = imaging.fit_batch_grid(nominal, det, search_radius_px=4 / px_um)
    err = located[["x_px", "y_px"]].to_numpy() - truth
    assert np.sqrt(np.mean((err ** 2).sum(axis=1))) * px_um < 0.1  # um
    # the voted translation is the batch's median displacement (origin error + drift)
    nom_xy = nominal[["x_px", "y_px"]].to_numpy()
    np.testing.assert_allclose(model["translation_px"], np.median(truth - nom_xy, axis=0), atol=3.0)
    assert model["n_indents"] == 400
    assert abs(model["n_detected"] - keep[:400].sum()) <= 3
    assert located["detected"].to_numpy()[~keep[:400]].sum() <= 3
    assert model["rms_residual_px"] < 1.0
    assert len(model["column_x_px"]) == 20 and len(model["row_y_px"]) == 20
    assert model["x0"] == pytest.approx(truth[0, 0], abs=1.5)


@pytest.mark.parametrize("err_x_um", [3.0, -3.0])
def test_fit_batch_grid_does_not_jump_to_adjacent_batch(rng, err_x_um, caplog):
    px_um = 0.04
    s = 250.0
    n = 20
    err = (err_x_um / px_um, 0.5 / px_um)
    nominal, truth = grid_truth(rng, n, n, s, (5500.0, 500.0), err, 0.05 / px_um)
    # batches on both sides continue the grid: a shift by one spacing matches as many marks
    _, left = grid_truth(rng, n, n, s, (5500.0 - n * s, 500.0), err, 0.05 / px_um)
    _, right = grid_truth(rng, n, n, s, (5500.0 + n * s, 500.0), err, 0.05 / px_um)
    det, _ = _detections(rng, np.vstack([left, truth, right]), missing=0.15, extent=16000)
    with caplog.at_level(logging.WARNING, logger="microprop.imaging"):
        located, model = imaging.fit_batch_grid(nominal, det, search_radius_px=8 / px_um)
    assert "clamped" in caplog.text  # 8 um > half the 10 um spacing
    np.testing.assert_allclose(model["translation_px"], err, atol=10)
    err_px = located[["x_px", "y_px"]].to_numpy() - truth
    assert np.sqrt(np.mean((err_px ** 2).sum(axis=1))) < 2.5


def test_fit_batch_grid_rejects_outlier_and_fills_missing_column(rng):
    nominal, truth = grid_truth(rng, 6, 6, 100.0, (100.0, 100.0), (12.0, -8.0), 1.0)
    det = truth + rng.normal(0, 0.3, truth.shape)
    gone = nominal["col"].to_numpy() == 3  # a whole column undetected
    det = det[~gone]
    # indent 1's mark is missing; a spurious mark 25 px away would be matched, then rejected
    det[0] = truth[0] + [25.0, 0.0]
    located, model = imaging.fit_batch_grid(nominal, pd.DataFrame(det, columns=["x_px", "y_px"]), 40.0)
    assert not located["detected"].iloc[0]
    assert not located.loc[gone, "detected"].any()
    assert model["n_detected"] == 6 * 5 - 1
    err = np.hypot(*(located[["x_px", "y_px"]].to_numpy() - truth).T)
    assert err[~gone].max() < 1.0
    # the missing column is interpolated from its neighbours' offsets
    colx = np.unique(truth[:, 0])
    expect = 100 + 3 * 100.0 + 0.5 * ((colx[2] - 300) + (colx[4] - 500))
    assert located.loc[gone, "x_px"].iloc[0] == pytest.approx(expect, abs=0.5)


# --------------------------------------------------------------------------- registration

def test_register_mosaics_recovers_known_shift(rng):
    ps = 100.0  # nm
    big = bse_texture(rng, (700, 800))
    true = np.array([23.4, -31.7])  # (dx, dy): after px + shift = before px
    before = shot_noise(rng, big[100:600, 100:700])
    # after pixel p shows big at p + (100, 100) + true (fractional: spline shift of the texture)
    shifted = ndimage.shift(big, (-(true[1] % 1), -(true[0] % 1)), order=3, mode="nearest")
    ax, ay = 100 + int(np.floor(true[0])), 100 + int(np.floor(true[1]))
    after_f = shifted[ay:ay + 500, ax:ax + 600]
    yy, xx = np.mgrid[40:500:90, 40:600:90]
    after = shot_noise(rng, imaging.render_berkovich_marks(after_f, xx.ravel(), yy.ravel(), 200.0, ps))
    before_origin = (1000.0, 2000.0)
    stage_error_um = (1.2, -2.0)
    after_origin = (before_origin[0] + true[0] * ps / 1000 + stage_error_um[0],
                    before_origin[1] + true[1] * ps / 1000 + stage_error_um[1])
    res = imaging.register_mosaics(before, after, before_origin, after_origin, ps,
                                  max_shift_um=5.0, downsample=4, window_px=256)
    assert res["dx_px"] == pytest.approx(true[0], abs=0.5)
    assert res["dy_px"] == pytest.approx(true[1], abs=0.5)
    assert res["score"] > 0.5 and res["n_windows"] >= 3


def test_register_mosaics_rejects_disjoint_frames(rng):
    img = shot_noise(rng, bse_texture(rng, (200, 200)))
    with pytest.raises(InputError, match="do not overlap"):
        imaging.register_mosaics(img, img, (0, 0), (500, 0), 100.0, downsample=4)


# --------------------------------------------------------------------------- batches

def _export(n_rows, n_cols, spacing_um, x0_um, y0_um, rng, batch="b1"):
    i, j = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    n = i.size
    return pd.DataFrame({
        "batch": batch, "indent": np.arange(1, n + 1),
        "x_um": x0_um + j.ravel() * spacing_um, "y_um": y0_um + i.ravel() * spacing_um,
        "depth_nm": rng.uniform(190, 210, n), "load_mN": 2.0, "stiffness_N_per_m": 1e5,
        "H_GPa": rng.uniform(0.5, 2, n), "E_GPa": rng.uniform(15, 40, n), "source_row": np.arange(n),
    })


def test_locate_nominal_maps_a_known_grid(rng):
    ind = _export(3, 4, 2.0, 10.0, 5.0, rng)
    out = imaging.locate_nominal(ind, 100.0, origin_um=(105.0, 150.0), indenter_offset_um=(100.0, 200.0),
                                indenter_axes=(1, -1), shape=(500, 100))
    np.testing.assert_allclose(out["x_px"], (ind["x_um"] + 100 - 105) * 10)
    np.testing.assert_allclose(out["y_px"], (-ind["y_um"] + 200 - 150) * 10)
    np.testing.assert_allclose(out["x_um"], out["x_px"] * 0.1)
    np.testing.assert_array_equal(out["col"], (ind["x_um"] - 10) / 2)
    np.testing.assert_array_equal(out["row"], (ind["y_um"] - 5) / 2)
    assert not out["detected"].any() and out["residual_px"].isna().all()
    np.testing.assert_array_equal(out["inside"], out["x_px"] <= 99)
    np.testing.assert_array_equal(out["E_GPa"], ind["E_GPa"])
    assert list(out.columns) == imaging.LOCATED_COLUMNS
    with pytest.raises(InputError, match="indenter_axes"):
        imaging.locate_nominal(ind, 100.0, (0, 0), (0, 0), (1, 2))


def test_grid_indices_rejects_non_grid(rng):
    ind = _export(2, 2, 2.0, 0.0, 0.0, rng)
    ind.loc[3, ["x_um", "y_um"]] = [0.1, 0.1]
    with pytest.raises(InputError, match="batch b1.*same grid node"):
        imaging.grid_indices(ind, spacing_um=2.0)


def test_grid_in_mm_read_as_um_names_the_units_setting(rng):
    """A 10 um grid exported in mm (0.01 mm steps) read as um: every indent on one
    node; the message gives both distances and the config key to set, no numpy reprs."""
    ind = _export(3, 3, 10.0, 0.0, 0.0, rng)
    ind[["x_um", "y_um"]] = ind[["x_um", "y_um"]] / 1000.0
    with pytest.raises(InputError) as exc:
        imaging.grid_indices(ind, spacing_um=10.0)
    msg = str(exc.value)
    assert "indentation.units" in msg and "spacing of 10 um" in msg and "0.01 um" in msg
    assert "np.int64" not in msg and "indents [1, 2, 3" in msg


def _after_mosaic(rng, tmp_path, ps, marks_px, depth_nm, shape):
    """Write an after-mosaic zarr with marks at the given after-mosaic pixel positions."""
    img = bse_texture(rng, shape)
    marks_px = np.asarray(marks_px, float).reshape(-1, 2)
    img = shot_noise(rng, imaging.render_berkovich_marks(img, marks_px[:, 0], marks_px[:, 1], depth_nm, ps,
                                                        rng=rng))
    arr = mio.create_image_store(tmp_path / "after.zarr", shape, np.uint8, chunk=256,
                                 attrs={"pixel_size_nm": ps, "origin_um": [0.0, 0.0]})
    arr[:] = img
    return mio.open_image(tmp_path / "after.zarr")


def test_locate_batch_end_to_end(rng, tmp_path):
    ps, spacing = 80.0, 4.0  # nm/px, um; marks of 200 nm depth: side 1.5 um = 19 px
    ind = _export(5, 5, spacing, 20.0, 30.0, rng)
    offset, axes = (-5.0, 3.0), (1, 1)
    # true stage positions: nominal mapping + origin error + drift (grid model)
    err = np.array([1.1, -0.8])
    colx = 20 + offset[0] + err[0] + np.concatenate([[0], np.cumsum(spacing + rng.normal(0, 0.05, 4))])
    rowy = 30 + offset[1] + err[1] + np.concatenate([[0], np.cumsum(spacing + rng.normal(0, 0.05, 4))])
    col = ((ind["x_um"] - 20) / spacing).round().astype(int).to_numpy()
    row = ((ind["y_um"] - 30) / spacing).round().astype(int).to_numpy()
    truth_um = np.column_stack([colx[col], rowy[row]])
    # the neighbouring batch continues the grid to the right
    nb = truth_um[col < 2] + [5 * spacing + 0.4, 0.3]
    before_origin = (8.0, 26.0)
    shift = {"dx_px": 12.5, "dy_px": -7.25}  # after px + shift = before px
    truth_before_px = (truth_um - before_origin) * 1000 / ps
    marks_after_px = (np.vstack([truth_um, nb]) - before_origin) * 1000 / ps - [12.5, -7.25]
    after = _after_mosaic(rng, tmp_path, ps, marks_after_px, 200.0, (330, 560))
    before_shape = (330, 250)
    located, model = imaging.locate_batch(
        after, ind, ps, before_origin, offset, axes, shift, search_radius_um=1.8,
        before_shape=before_shape)
    err_px = located[["x_px", "y_px"]].to_numpy() - truth_before_px
    rms_um = np.sqrt(np.mean((err_px ** 2).sum(axis=1))) * ps / 1000
    assert rms_um < 0.25
    assert located["detected"].sum() >= 24
    np.testing.assert_allclose(model["translation_um"], err, atol=0.2)
    assert model["batch"] == "b1" and model["rms_residual_um"] < 0.1
    np.testing.assert_allclose(located["x_um"], located["x_px"] * ps / 1000)
    np.testing.assert_array_equal(located["inside"], located["x_px"] <= before_shape[1] - 1)
    assert (~located["inside"]).any() and located["inside"].any()
    np.testing.assert_array_equal(located["H_GPa"], ind["H_GPa"])
    assert list(located.columns) == imaging.LOCATED_COLUMNS


def test_locate_batch_reports_missing_marks_and_wrong_frame(rng, tmp_path):
    ps = 80.0
    ind = _export(4, 4, 4.0, 20.0, 30.0, rng)
    empty = _after_mosaic(rng, tmp_path, ps, np.empty((0, 2)), 200.0, (300, 300))
    with pytest.raises(InputError, match="batch b1: only .* of 16 indent marks"):
        imaging.locate_batch(empty, ind, ps, (10.0, 25.0), (0, 0), (1, 1), (0, 0), search_radius_um=1.5)
    with pytest.raises(InputError, match="batch b1: .*outside the after-mosaic"):
        imaging.locate_batch(empty, ind, ps, (10.0, 25.0), (500.0, 0), (1, 1), (0, 0))
    with pytest.raises(InputError, match="depth_nm"):
        imaging.locate_batch(empty, ind.drop(columns="depth_nm"), ps, (10.0, 25.0), (0, 0), (1, 1), (0, 0))
