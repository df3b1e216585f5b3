"""Tests of microprop.imaging against tile sets whose true positions are known."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import zarr
from microprop import imaging
from microprop.errors import InputError
from microprop.imaging import _tiles
from scipy import ndimage as ndi
from tilesets import cut_jittered_tiles

PIXEL_NM = 500.0
REPO = Path(__file__).resolve().parents[1]


def textured_image(shape, rng):
    """Smoothed random field plus bright and dark discs, uint8."""
    f = ndi.gaussian_filter(rng.normal(size=shape), 3)
    f = (f - f.mean()) / f.std() * 25 + 110
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for _ in range(60):
        cy, cx, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(4, 15)
        f[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += rng.choice([-60, 70])
    return np.clip(f, 0, 255).astype(np.uint8)


def position_errors(table, truth):
    """Placed minus true tile positions after removing the common offset (px)."""
    tr = truth.set_index("tile").loc[table["tile"]]
    ex = (table["x_px"].to_numpy() - tr["x_px"].to_numpy()).astype(float)
    ey = (table["y_px"].to_numpy() - tr["y_px"].to_numpy()).astype(float)
    return np.hypot(ex - np.median(ex), ey - np.median(ey))


def mosaic_vs_source(mosaic, table, truth, source, border=10):
    """Source crop aligned with the mosaic, and the mosaic, both interior."""
    tr = truth.set_index("tile").loc[table["tile"]]
    offx = int(np.round(np.median(tr["x_px"].to_numpy() - table["x_px"].to_numpy())))
    offy = int(np.round(np.median(tr["y_px"].to_numpy() - table["y_px"].to_numpy())))
    # mosaic pixel p shows source pixel p + off; keep what both cover
    y0, x0 = max(0, -offy), max(0, -offx)
    y1 = min(mosaic.shape[0], source.shape[0] - offy)
    x1 = min(mosaic.shape[1], source.shape[1] - offx)
    m = mosaic[y0 + border:y1 - border, x0 + border:x1 - border].astype(float)
    s = source[y0 + offy + border:y1 + offy - border, x0 + offx + border:x1 + offx - border].astype(float)
    return m, s


def run_stitch(tmp_path, tiles, layout, max_err_um, chunk=256):
    folder = tmp_path / "tiles"
    imaging.write_tile_set(folder, tiles, layout)
    out_m, out_t = tmp_path / "mosaic.zarr", tmp_path / "stitch.csv"
    table = imaging.stitch(folder, out_m, out_t, PIXEL_NM, max_stage_error_um=max_err_um, chunk=chunk)
    return table, zarr.open_array(str(out_m), mode="r"), pd.read_csv(out_t, dtype={"tile": str})


# ----------------------------------------------------------------- known-answer stitching

def test_synthetic_grid_with_drift_and_noise(tmp_path, rng):
    img = textured_image((620, 820), rng)
    tiles, layout, truth = cut_jittered_tiles(img, 3, 4, (220, 220), 0.12, 5, rng, PIXEL_NM,
                                       gain_sd=0.05, offset_sd=5.0, counts_per_level=4)
    # the nominal layout alone is off by several px
    nominal_err = position_errors(
        pd.DataFrame({"tile": layout["tile"], "x_px": np.rint(layout["x_um"] * 2).astype(int),
                      "y_px": np.rint(layout["y_um"] * 2).astype(int)}), truth)
    assert nominal_err.max() >= 3
    table, mosaic, csv = run_stitch(tmp_path, tiles, layout, max_err_um=6.0)
    err = position_errors(table, truth)
    assert np.median(err) <= 1.0 and err.max() <= 3.0, err
    assert list(csv.columns[:9]) == list(imaging.TABLE_COLUMNS[:9])
    assert (csv["n_links"] >= 2).all() and (csv["residual_px"] < 1.5).all()
    # mosaic = the mosaic of the same degraded tiles placed at their true positions
    ideal = tmp_path / "ideal.zarr"
    tpos = truth.assign(x_px=truth["x_px"] - truth["x_px"].min(), y_px=truth["y_px"] - truth["y_px"].min(),
                        x_um=0.0, y_um=0.0)
    imaging.write_mosaic(imaging.read_layout(tmp_path / "tiles"), None, tpos, ideal, PIXEL_NM, chunk=256)
    ideal = zarr.open_array(str(ideal), mode="r")[:]
    m, s = mosaic_vs_source(mosaic[:], table, tpos, ideal)
    assert np.corrcoef(m.ravel(), s.ravel())[0, 1] > 0.99
    # and it matches the clean source up to the tiles' drift and noise
    m, s = mosaic_vs_source(mosaic[:], table, truth, img)
    assert np.corrcoef(m.ravel(), s.ravel())[0, 1] > 0.9
    assert mosaic.attrs["n_tiles"] == 12 and mosaic.attrs["pixel_size_nm"] == PIXEL_NM
    # origin: stage position of mosaic pixel [0,0]; every tile's stage position follows from it
    ps_um = PIXEL_NM / 1000
    ox, oy = mosaic.attrs["origin_um"]
    assert np.allclose(ox + table["x_px"] * ps_um, table["x_um"], atol=1e-4)
    assert np.allclose(oy + table["y_px"] * ps_um, table["y_um"], atol=1e-4)
    # the mosaic puts each tile on the whole pixel nearest its sub-pixel estimate
    assert (np.abs(table["placed_x_px"] - table["x_px"]) <= 0.5).all()
    assert (np.abs(table["placed_y_px"] - table["y_px"]) <= 0.5).all()


def test_clean_tiles_mosaic_equals_source(tmp_path, rng):
    img = textured_image((520, 700), rng)
    tiles, layout, truth = cut_jittered_tiles(img, 2, 3, (240, 240), 0.1, 6, rng, PIXEL_NM)
    table, mosaic, _ = run_stitch(tmp_path, tiles, layout, max_err_um=7.0, chunk=128)
    # whole-pixel truth: the sub-pixel estimates are within the peak fit's bias, the placement exact
    assert position_errors(table, truth).max() <= 0.05
    placed = table.assign(x_px=table["placed_x_px"], y_px=table["placed_y_px"])
    assert position_errors(placed, truth).max() == 0
    m, s = mosaic_vs_source(mosaic[:], table, truth, img, border=0)
    # every covered pixel: feathering of identical values returns the value
    covered = np.zeros(mosaic.shape, bool)
    for x, y in zip(table["placed_x_px"], table["placed_y_px"]):
        covered[y:y + 240, x:x + 240] = True
    assert m.shape == s.shape
    assert np.array_equal(m[covered[:m.shape[0], :m.shape[1]]], s[covered[:m.shape[0], :m.shape[1]]])
    assert (mosaic[:][~covered] == 0).all()


def test_real_micrograph_tiles(tmp_path, rng, real_bse_image):
    tiles, layout, truth = cut_jittered_tiles(real_bse_image, 3, 3, (280, 280), 0.1, 6, rng, PIXEL_NM,
                                       gain_sd=0.05, offset_sd=5.0, counts_per_level=4)
    table, mosaic, _ = run_stitch(tmp_path, tiles, layout, max_err_um=8.0)
    err = position_errors(table, truth)
    assert np.median(err) <= 1.0 and err.max() <= 3.0, err
    m, s = mosaic_vs_source(mosaic[:], table, truth, real_bse_image)
    assert np.corrcoef(m.ravel(), s.ravel())[0, 1] > 0.9


def test_real_micrograph_clean_reproduced(tmp_path, rng, real_bse_image):
    tiles, layout, truth = cut_jittered_tiles(real_bse_image, 3, 3, (280, 280), 0.1, 6, rng, PIXEL_NM)
    table, mosaic, _ = run_stitch(tmp_path, tiles, layout, max_err_um=8.0)
    assert position_errors(table, truth).max() <= 1.0
    m, s = mosaic_vs_source(mosaic[:], table, truth, real_bse_image)
    assert np.corrcoef(m.ravel(), s.ravel())[0, 1] > 0.99


@pytest.mark.parametrize("suffix,dtype", [(".tif", np.uint8), (".png", np.uint16)])
def test_single_image_layout(tmp_path, rng, suffix, dtype):
    img = (rng.random((300, 410)) * (np.iinfo(dtype).max + 1)).astype(dtype)
    layout = pd.DataFrame([dict(tile="all", file="image" + suffix, row=0, col=0, x_um=12.5, y_um=-3.0)])
    table, mosaic, csv = run_stitch(tmp_path, [img], layout, max_err_um=5.0, chunk=128)
    assert mosaic.dtype == dtype and np.array_equal(mosaic[:], img)
    assert mosaic.attrs["origin_um"] == [12.5, -3.0] and mosaic.attrs["n_tiles"] == 1
    assert csv.loc[0, "x_px"] == 0 and csv.loc[0, "n_links"] == 0


def test_rgb_grey_png_reduced(tmp_path, rng):
    grey = (rng.random((50, 60)) * 255).astype(np.uint8)
    from PIL import Image

    Image.fromarray(np.dstack([grey] * 3)).save(tmp_path / "g.png")
    assert np.array_equal(imaging.load_tile(tmp_path / "g.png"), grey)
    colour = np.dstack([grey, grey, 255 - grey])
    Image.fromarray(colour).save(tmp_path / "c.png")
    with pytest.raises(InputError, match="c.png"):
        imaging.load_tile(tmp_path / "c.png")


# ----------------------------------------------------------------- pieces

def test_register_pair_subpixel(rng):
    base = ndi.gaussian_filter(rng.normal(size=(300, 400)), 2.5)
    true_dx, true_dy = 181.3, -2.6  # b's [0,0] on a's pixel (dy, dx)
    shifted = ndi.shift(base, (-true_dy, -true_dx), order=3, mode="nearest")
    a = base[10:210, 10:210]
    b = shifted[10:210, 10:210]
    res = imaging.register_pair(a, b, nominal_dx=180.0, nominal_dy=0.0, margin_px=6)
    assert abs(res["dx"] - true_dx) < 0.2 and abs(res["dy"] - true_dy) < 0.2, res
    assert res["quality"] > 0.9 and not res["at_limit"]
    # an offset beyond the search margin is flagged
    res = imaging.register_pair(a, b, nominal_dx=172.0, nominal_dy=0.0, margin_px=4)
    assert res["at_limit"]


def _links(rows):
    df = pd.DataFrame(rows, columns=["tile_a", "tile_b", "dx_px", "dy_px", "weight"])
    df["valid"] = True
    return df


def _grid(n, step_um, jitter, rng):
    layout = pd.DataFrame([dict(tile=f"t{r}{c}", file="", row=r, col=c, x_um=c * step_um,
                                y_um=r * step_um) for r in range(n) for c in range(n)])
    true = layout[["x_um", "y_um"]].to_numpy() * 2 + rng.integers(-jitter, jitter + 1, (n * n, 2))
    pairs = [(r * n + c, r * n + c + 1) for r in range(n) for c in range(n - 1)]
    pairs += [(r * n + c, (r + 1) * n + c) for r in range(n - 1) for c in range(n)]
    return layout, true.astype(float), pairs


def test_solve_positions_exact_and_gauge(rng):
    layout, true, pairs = _grid(3, 50.0, 6, rng)
    true += 0.3  # keeps rounding away from .5 ties
    ids = layout["tile"]
    links = _links([(ids[p], ids[q], *(true[q] - true[p]), rng.uniform(0.5, 1)) for p, q in pairs])
    pos = imaging.solve_positions(layout, links, PIXEL_NM)
    est = pos[["x_px", "y_px"]].to_numpy()
    assert np.allclose(est - est[0], true - true[0], atol=1e-6)  # sub-pixel, not rounded
    placed = pos[["placed_x_px", "placed_y_px"]].to_numpy()
    assert np.array_equal(placed - placed[0], np.rint(true - true[0]))
    assert np.allclose(pos["residual_px"], 0, atol=1e-6) and (pos["n_links"] >= 2).all()
    # gauge: mean placed stage position = mean nominal (up to rounding); origin = min
    assert abs(pos["x_um"].mean() - layout["x_um"].mean()) <= 0.25
    assert abs(pos["y_um"].mean() - layout["y_um"].mean()) <= 0.25
    assert pos["placed_x_px"].min() == 0 and pos["placed_y_px"].min() == 0
    assert (pos["group"] == 0).all() and (pos["placement"] == "linked").all()


def test_solve_positions_robust_to_one_wrong_link(rng):
    layout, true, pairs = _grid(3, 50.0, 6, rng)
    ids = layout["tile"]
    rows = [(ids[p], ids[q], *(true[q] - true[p]), 1.0) for p, q in pairs]
    k = pairs.index((4, 5))  # centre -> middle right: part of two loops
    rows[k] = (rows[k][0], rows[k][1], rows[k][2] + 8.0, rows[k][3], 1.0)

    def max_err(pos):
        e = pos[["x_px", "y_px"]].to_numpy() - true
        return np.abs(e - np.median(e, axis=0)).max()

    plain = imaging.solve_positions(layout, _links(rows), PIXEL_NM, robust_iter=0, max_link_residual_px=None)
    assert max_err(plain) >= 2
    robust = imaging.solve_positions(layout, _links(rows), PIXEL_NM, max_link_residual_px=None)
    assert max_err(robust) <= 1
    res = robust.set_index("tile")["residual_px"]
    assert res[ids[4]] > 2 * res[ids[0]]  # the wrong link shows in its tiles' residuals
    # by default the contradicted link is dropped, said so in the links table, and the rest fit exactly
    links = _links(rows)
    dropped = imaging.solve_positions(layout, links, PIXEL_NM)
    assert max_err(dropped) < 1e-6 and (dropped["group"] == 0).all()
    assert list(~links["valid"]) == [i == k for i in range(len(rows))]
    assert "contradicted by the other links" in links.loc[k, "reason"]


def test_unlinked_tile_keeps_nominal():
    layout = pd.DataFrame(dict(tile=list("abc"), file="", row=[0, 0, 0], col=[0, 1, 2],
                               x_um=[0.0, 50.0, 100.0], y_um=[0.0, 0.0, 0.0]))
    links = _links([("a", "b", 104.6, 3.0, 1.0)])
    pos = imaging.solve_positions(layout, links, PIXEL_NM).set_index("tile")
    # fitted a = -2.3, b = 102.3 px (gauge: their mean stays 50 px), kept to sub-pixel
    assert abs(pos.loc["b", "x_px"] - pos.loc["a", "x_px"] - 104.6) < 1e-6
    assert pos.loc["c", "n_links"] == 0 and np.isnan(pos.loc["c", "residual_px"])
    assert list(pos["group"]) == [0, 0, 1] and list(pos["placement"]) == ["linked", "linked", "nominal"]
    # c at its nominal 200 px; a, b centred on their nominal mean (50 px)
    assert pos.loc["c", "x_um"] == 100.0
    assert abs((pos.loc["a", "x_um"] + pos.loc["b", "x_um"]) / 2 - 25.0) <= 0.25


def test_featureless_tile_link_dropped(tmp_path, rng):
    img = textured_image((300, 580), rng)
    tiles, layout, truth = cut_jittered_tiles(img, 1, 3, (200, 200), 0.1, 3, rng, PIXEL_NM)
    tiles[2] = (rng.random(tiles[2].shape) * 255).astype(np.uint8)  # unrelated noise
    folder = tmp_path / "t"
    imaging.write_tile_set(folder, tiles, layout)
    lay = imaging.read_layout(folder)
    links = imaging.register_pairs(lay, folder, PIXEL_NM, 3.0)
    bad = links[(links["tile_b"] == "r000_c002")]
    good = links[(links["tile_b"] == "r000_c001")]
    assert not bad["valid"].any() and good["valid"].all()
    pos = imaging.solve_positions(lay, links, PIXEL_NM).set_index("tile")
    assert pos.loc["r000_c002", "n_links"] == 0


# ----------------------------------------------------------------- bad inputs

@pytest.fixture
def tile_set(tmp_path, rng):
    img = textured_image((260, 400), rng)
    tiles, layout, _ = cut_jittered_tiles(img, 1, 2, (200, 200), 0.1, 2, rng, PIXEL_NM)
    folder = tmp_path / "tiles"
    imaging.write_tile_set(folder, tiles, layout)
    return folder, layout


def _assert_fails_cleanly(tmp_path, folder, match):
    out_m, out_t = tmp_path / "out" / "mosaic.zarr", tmp_path / "out" / "stitch.csv"
    with pytest.raises(InputError, match=match):
        imaging.stitch(folder, out_m, out_t, PIXEL_NM)
    assert not out_m.exists() and not out_t.exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_missing_tile_file(tmp_path, tile_set):
    folder, layout = tile_set
    (folder / layout["file"][1]).unlink()
    _assert_fails_cleanly(tmp_path, folder, r"tile_r000_c001\.tif.*r000_c001.*not found")


def test_truncated_tile_file(tmp_path, tile_set):
    folder, layout = tile_set
    path = folder / layout["file"][1]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _assert_fails_cleanly(tmp_path, folder, r"tile_r000_c001\.tif.*(truncated or corrupt)")


def test_wrong_tile_size(tmp_path, tile_set, rng):
    folder, layout = tile_set
    tifffile.imwrite(folder / layout["file"][1], (rng.random((200, 180)) * 255).astype(np.uint8))
    _assert_fails_cleanly(tmp_path, folder, r"tile_r000_c001\.tif.*200x180.*expected 200x200")


def test_wrong_tile_dtype(tmp_path, tile_set, rng):
    folder, layout = tile_set
    tifffile.imwrite(folder / layout["file"][1], (rng.random((200, 200)) * 999).astype(np.uint16))
    _assert_fails_cleanly(tmp_path, folder, r"tile_r000_c001\.tif.*uint16.*expected 200x200 uint8")


def test_duplicate_tile_id(tmp_path, tile_set):
    folder, layout = tile_set
    lay = layout.copy()
    lay.loc[1, "tile"] = lay.loc[0, "tile"]
    lay.to_csv(folder / "layout.csv", index=False)
    _assert_fails_cleanly(tmp_path, folder, r"layout\.csv.*duplicate tile id.*r000_c000")


def test_bad_layout_value(tmp_path, tile_set):
    folder, layout = tile_set
    lay = layout.copy().astype({"x_um": object})
    lay.loc[1, "x_um"] = "abc"
    lay.to_csv(folder / "layout.csv", index=False)
    _assert_fails_cleanly(tmp_path, folder, r"layout\.csv, line 3 \(tile r000_c001\): x_um")


def test_missing_layout(tmp_path):
    (tmp_path / "empty").mkdir()
    _assert_fails_cleanly(tmp_path, tmp_path / "empty", "layout.csv.*not found")


def test_rule_script_mock(tmp_path, tile_set):
    folder, _ = tile_set
    job = tmp_path / "job.yaml"
    job.write_text(
        f"input: {{layout: {folder / 'layout.csv'}}}\n"
        f"output: {{mosaic: {tmp_path / 'm.zarr'}, table: {tmp_path / 's.csv'}}}\n"
        "params: {pixel_size_nm: 500.0, max_stage_error_um: 3.0, chunk: 128}\n")
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "stitch_tiles.py"), "--mock", str(job)],
                         cwd=REPO, capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO / "scripts"), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    table = pd.read_csv(tmp_path / "s.csv")
    assert len(table) == 2 and (table["n_links"] == 1).all()
    arr = zarr.open_array(str(tmp_path / "m.zarr"), mode="r")
    assert arr.chunks == (128, 128) and arr.attrs["n_tiles"] == 2


def test_small_tile_cache_gives_same_mosaic(tmp_path, rng, monkeypatch):
    img = textured_image((420, 600), rng)
    tiles, layout, _ = cut_jittered_tiles(img, 2, 3, (200, 200), 0.1, 4, rng, PIXEL_NM,
                                   gain_sd=0.05, offset_sd=5.0)
    folder = tmp_path / "t"
    imaging.write_tile_set(folder, tiles, layout)
    lay = imaging.read_layout(folder)
    pos = imaging.solve_positions(lay, imaging.register_pairs(lay, folder, PIXEL_NM, 5.0), PIXEL_NM)
    big = imaging.write_mosaic(lay, folder, pos, tmp_path / "a.zarr", PIXEL_NM, chunk=64, cache_size=16)[:]
    # count tiles alive in the cache: never more than cache_size
    live = []
    orig = _tiles._TileCache.get

    def get(self, file):
        out = orig(self, file)
        live.append(len(self._cache))
        return out

    monkeypatch.setattr(_tiles._TileCache, "get", get)
    small = imaging.write_mosaic(lay, folder, pos, tmp_path / "b.zarr", PIXEL_NM, chunk=64, cache_size=1)[:]
    assert np.array_equal(big, small) and max(live) == 1
    last = imaging.write_mosaic(lay, folder, pos, tmp_path / "c.zarr", PIXEL_NM, chunk=64, blend="last")[:]
    # last-wins: the bottom-right tile's pixels appear unchanged in the mosaic
    x, y = pos["placed_x_px"].iloc[-1], pos["placed_y_px"].iloc[-1]
    assert np.array_equal(last[y:y + 200, x:x + 200], tiles[-1])


# ----------------------------------------------------------------- regions of one image

def test_crop_region_window_and_errors(rng):
    img = (rng.random((30, 40)) * 255).astype(np.uint8)
    win = imaging.crop_region(img, [5, 7, 10, 20])
    assert win.shape == (10, 20) and win.flags["C_CONTIGUOUS"]
    assert np.array_equal(win, img[5:15, 7:27])
    assert imaging.crop_region(img, None) is img
    for bad in ([25, 0, 10, 10], [0, 35, 10, 10], [0, 0, 0, 5], [-1, 0, 5, 5]):
        with pytest.raises(InputError, match=r"micrograph\.png.*30 x 40"):
            imaging.crop_region(img, bad, path="micrograph.png")
    with pytest.raises(InputError, match="4 integers"):
        imaging.crop_region(img, [0, 0, 5], path="micrograph.png")


def test_image_layout_region_gives_the_window_as_mosaic(tmp_path, rng):
    """Two regions of one image, through image_layout and stitching, tile it exactly."""
    from script_runner import run_script

    img = (rng.random((120, 90)) * 65535).astype(np.uint16)
    src = tmp_path / "micrograph.tif"
    tifffile.imwrite(src, img)
    mosaics = []
    for name, region in (("top", [0, 0, 80, 90]), ("bottom", [80, 0, 40, 90])):
        folder = tmp_path / name
        run_script("image_layout", {"input": {"image": str(src)}, "params": {"region_px": region},
                                    "output": {"layout": str(folder)}}, tmp_path)
        lay = imaging.read_layout(folder)
        assert lay.loc[0, "file"] == "region.tif"
        imaging.stitch(folder, tmp_path / f"{name}.zarr", tmp_path / f"{name}.csv", PIXEL_NM,
                 max_stage_error_um=5.0, chunk=64)
        mosaics.append(zarr.open_array(str(tmp_path / f"{name}.zarr"), mode="r")[:])
    assert np.array_equal(np.vstack(mosaics), img)
    # the original is referenced, never rewritten, when no region is asked for
    run_script("image_layout", {"input": {"image": str(src)}, "params": {"region_px": None},
                                "output": {"layout": str(tmp_path / "whole")}}, tmp_path)
    assert imaging.read_layout(tmp_path / "whole").loc[0, "file"] == str(src.resolve())
    assert not (tmp_path / "whole" / "region.tif").exists()


# ----------------------------------------------------------------- trust: link graph, margin

def _split_tile_set(image, rng, jump_px=40):
    """2 x 3 tiles of 250 px (10 % overlap) whose last column the stage put ``jump_px`` too far right."""
    tiles, layout, truth = cut_jittered_tiles(image, 2, 3, (250, 250), 0.1, 3, rng, PIXEL_NM)
    for k in np.nonzero(layout["col"].to_numpy() == 2)[0]:
        x, y = int(truth.loc[k, "x_px"]) + jump_px, int(truth.loc[k, "y_px"])
        assert x + 250 <= image.shape[1]
        tiles[k] = image[y:y + 250, x:x + 250].copy()
        truth.loc[k, "x_px"] = x
    return tiles, layout, truth


def _check_split_message(err):
    msg = str(err)
    assert "fall apart into 2 groups" in msg
    assert "group 0: 4 tile(s) in rows 0-1, cols 0-1" in msg
    assert "group 1: 2 tile(s) in rows 0-1, cols 2-2: [r000_c002, r001_c002]" in msg
    assert "r000_c001-r000_c002" in msg and "stitching.unlinked: nominal" in msg


@pytest.mark.parametrize("source", ["generated", "real"])
def test_split_link_graph_fails_naming_the_groups(tmp_path, rng, source, request):
    image = (request.getfixturevalue("real_bse_image") if source == "real"
             else textured_image((600, 800), rng))
    tiles, layout, truth = _split_tile_set(image, rng)
    folder = tmp_path / "tiles"
    imaging.write_tile_set(folder, tiles, layout)
    out_m, out_t = tmp_path / "o" / "m.zarr", tmp_path / "o" / "t.csv"
    with pytest.raises(InputError) as err:
        imaging.stitch(folder, out_m, out_t, PIXEL_NM, max_stage_error_um=6.0)
    _check_split_message(err.value)
    assert not out_m.exists() and not out_t.exists()
    # the rule's script, as the workflow runs it, fails the same way and writes nothing
    from script_runner import run_script

    job = {"input": {"tiles": str(folder)}, "output": {"mosaic": str(out_m), "table": str(out_t)},
           "params": {"pixel_size_nm": PIXEL_NM, "max_stage_error_um": 6.0, "chunk": 256,
                      "unlinked": "error"}}
    with pytest.raises(InputError) as err:
        run_script("stitch_tiles", job, tmp_path)
    _check_split_message(err.value)
    assert not out_m.exists() and not out_t.exists()
    # allowed explicitly: written, each tile's placement says which group is not measured
    table = imaging.stitch(folder, out_m, out_t, PIXEL_NM, max_stage_error_um=6.0, unlinked="nominal")
    csv = pd.read_csv(out_t).set_index("tile")
    assert list(csv["group"]) == [0, 0, 1, 0, 0, 1] and len(table) == 6
    assert (csv.loc[["r000_c002", "r001_c002"], "n_links"] == 1).all()  # linked to each other only


def test_stage_margin_the_overlap_cannot_hold_stops_at_start(tmp_path, rng):
    """256 px tiles with 20 px overlap: a margin of 14 px leaves a 6 px template; nothing is written."""
    img = textured_image((300, 560), rng)
    tiles, layout, _ = cut_jittered_tiles(img, 1, 2, (256, 256), 20 / 256, 2, rng, PIXEL_NM)
    folder = tmp_path / "tiles"
    imaging.write_tile_set(folder, tiles, layout)
    out_m, out_t = tmp_path / "o" / "m.zarr", tmp_path / "o" / "t.csv"
    with pytest.raises(InputError) as err:
        imaging.stitch(folder, out_m, out_t, PIXEL_NM, max_stage_error_um=7.0)
    msg = str(err.value)
    assert "max_stage_error_um = 7.0 um is a search margin of 14.0 px" in msg
    assert "overlap by only 20 px" in msg and "at most 6 um" in msg and "at least 22 px" in msg
    assert not out_m.exists() and not out_t.exists()
    # the largest margin it names works
    table = imaging.stitch(folder, out_m, out_t, PIXEL_NM, max_stage_error_um=6.0)
    assert (table["n_links"] == 1).all()


def test_subpixel_stage_positions_are_measured_to_a_tenth_of_a_pixel(tmp_path, rng):
    """Tiles cut at sub-pixel positions (Fourier shift): the table keeps the estimate within 0.1 px."""
    from microprop import virtual

    img = textured_image((560, 560), rng).astype(float)
    tiles, rows, truth = [], [], []
    for r in range(2):
        for c in range(2):
            tx, ty = 10 + c * 250 + rng.uniform(-4, 4), 10 + r * 250 + rng.uniform(-4, 4)
            tiles.append(np.clip(np.rint(virtual.cut_window(img, tx, ty, (280, 280))), 0, 255).astype(np.uint8))
            rows.append(dict(tile=f"t{r}{c}", file=f"t{r}{c}.tif", row=r, col=c,
                             x_um=(10 + c * 250) * PIXEL_NM / 1000, y_um=(10 + r * 250) * PIXEL_NM / 1000))
            truth.append(dict(tile=f"t{r}{c}", x_px=tx, y_px=ty))
    truth = pd.DataFrame(truth)
    assert (np.abs(truth["x_px"] - np.rint(truth["x_px"])) > 0.05).any()
    table, _, csv = run_stitch(tmp_path, tiles, pd.DataFrame(rows), max_err_um=5.0)
    err = virtual.stitching_errors(truth, csv)
    assert err["max_px"] <= 0.15, err
    # rounding to whole pixels, as before, would have been off by more
    whole = virtual.stitching_errors(truth, csv.assign(x_px=csv["placed_x_px"], y_px=csv["placed_y_px"]))
    assert whole["max_px"] > err["max_px"] + 0.1


def test_cut_window_is_exact_on_whole_pixels_and_shifts_a_smooth_image(rng):
    from microprop import virtual

    img = ndi.gaussian_filter(rng.normal(size=(120, 120)), 4)
    assert np.array_equal(virtual.cut_window(img, 10, 20, (30, 40)), img[20:50, 10:50].astype(np.float32))
    # a plane wave shifted by 0.3 px: the window is the wave at x + 0.3 (band-limited interpolation)
    yy, xx = np.mgrid[:120, :120]
    wave = np.sin(2 * np.pi * xx / 24.0)
    win = virtual.cut_window(wave, 30.3, 40, (20, 20))
    assert np.allclose(win, np.sin(2 * np.pi * (xx[:20, :20] + 30.3) / 24.0), atol=0.02)
    with pytest.raises(InputError, match="leaves the image"):
        virtual.cut_window(img, 100.5, 0, (30, 20))
