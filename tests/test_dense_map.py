"""Tests of the dense mapping mode (microprop.learning._dense) and the chunked large area.

The dense mode is an approximation of exact per-window inference (module
docstring of ``_dense``): for the seed layout (3 px zero padding, 3x3
convolutions, per-crop standardisation) no tolerance holds a priori -- its
difference to exact inference is *measured* on a trained model (README).
What must hold exactly is tested here:

* the polyphase trunk reproduces the strided network's features wherever
  both see the same input (away from the tile's edges);
* without padding effects and with window-invariant statistics (centre-tap
  3x3 kernels, 1 px padding whose positions are never pooled, a map periodic
  within every window) the dense map equals exact inference to float32
  rounding, at an integer downsampling factor too (even a constant map is
  not such a case for the seed layout: the 3x3 convolutions of the exact
  network pad their *feature* maps with zeros, which the features of the
  zero input are not);
* the dense map does not depend on the tiling (the halo is wide enough);
* :func:`dense_agreement` reports the differences it claims.
"""
import numpy as np
import pytest
import torch
from microprop import io as mio
from microprop import learning, virtual
from microprop.errors import InputError
from microprop.learning.models import SeedResNet
from scipy import ndimage
from torch.nn import functional as F

# float32 rounding of a ~10-layer network with O(1) activations, summed over
# ~100 channels: differences of a few 1e-6 relative; 1e-4 of the output scale
# leaves a margin of ~30 without hiding a misplaced window (which changes the
# output by ~1e-1 of its spread).
TOL = 1e-4


def _small_net(pad=3, centre_taps=False, seed=0):
    """A small SeedResNet with random batch-norm statistics (eval mode)."""
    torch.manual_seed(seed)
    m = SeedResNet(stem_channels=8, stage_channels=(8, 16, 16), hidden=16, pad=pad).eval()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.normal_(0, 0.1)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.normal_(0, 0.1)
        if centre_taps and isinstance(mod, torch.nn.Conv2d) and mod.kernel_size == (3, 3):
            w = mod.weight.data
            c = w[:, :, 1, 1].clone()
            w.zero_()
            w[:, :, 1, 1] = c
    return m


def _meta(s, p):
    return {"crop_size_px": s, "input_px": None if p == s else p, "target_mean": 40.0,
            "target_std": 20.0}


def _smooth(rng, shape):
    img = ndimage.gaussian_filter(rng.normal(size=shape), 6) * 0.2 + 0.13
    return (img + 0.01 * rng.normal(size=shape)).astype(np.float32)


def test_dense_trunk_equals_strided_network_away_from_edges():
    model = _small_net()
    trunk = learning.DenseTrunk(model, 32)
    assert (trunk.levels, trunk.first, trunk.n_final, trunk.reach, trunk.period) == (3, -2, 5, 22, 8)
    n = 128
    x = torch.randn(1, 1, n, n, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        feats, offsets = trunk(x, range(8), range(8))
        assert len(offsets) == 64 and feats.shape[-2:] == (n // 8, n // 8)
        checked = 0
        for sy in (0, 3, 5):
            for sx in (0, 6):
                ref = model.stages(model.b2(F.pad(x[:, :, sy:, sx:], (model.b1.pad,) * 4)))
                for ky in range(ref.shape[2]):
                    for kx in range(ref.shape[3]):
                        py, px = sy + trunk.first + 8 * ky, sx + trunk.first + 8 * kx
                        if min(py - sy, px - sx) < trunk.reach or max(py, px) + trunk.reach >= n:
                            continue              # the strided run sees its own zero padding
                        k = offsets.index((py % 8, px % 8))
                        torch.testing.assert_close(feats[k, :, py // 8, px // 8], ref[0, :, ky, kx],
                                                   atol=1e-4, rtol=1e-4)
                        checked += 1
    assert checked > 20


def test_dense_trunk_computes_only_needed_subgrids():
    trunk = learning.DenseTrunk(_small_net(), 32)
    with torch.no_grad():
        _, offsets = trunk(torch.zeros(1, 1, 64, 64), [1, 6], [3])
    assert sorted(offsets) == [(1, 3), (6, 3)]


@pytest.mark.parametrize("s,p,step,shape", [(32, 32, 5, (160, 190)), (64, 32, 6, (256, 298))])
def test_dense_equals_exact_without_padding_effects(s, p, step, shape):
    """Centre-tap kernels, pad 1 (never pooled) and a map periodic within every window: exact."""
    rng = np.random.default_rng(0)
    f = s // p
    period = rng.normal(size=(8, 8)).astype(np.float32)        # 8 down pixels divide P = 32
    down = np.tile(period, (shape[0] // f // 8 + 1, shape[1] // f // 8 + 1))
    img = (np.kron(down, np.ones((f, f), np.float32))[:shape[0], :shape[1]] * 0.02 + 0.13)
    cy, cx = learning.window_centres(shape, s, step)
    assert np.all((cy - s // 2) % f == 0) and np.all((cx - s // 2) % f == 0)  # no snapping
    model = _small_net(pad=1, centre_taps=True)
    meta = _meta(s, p)
    dense, centres = learning.dense_predict_map(img, [("m", model, meta)], s, step, tile_px=24)
    exact, _ = learning.predict_map(
        img, lambda c: learning.predict(model, meta, c, "cpu", 64), s, step)
    assert [c.tolist() for c in centres] == [cy.tolist(), cx.tolist()]
    assert dense.dtype == np.float32 and dense.shape == exact.shape
    assert np.std(exact) > 1e-3                                 # windows do differ
    np.testing.assert_allclose(dense, exact, atol=TOL * meta["target_std"])


def test_dense_map_does_not_depend_on_tiling_and_averages_members(rng):
    img = _smooth(rng, (150, 170))
    a, b = _small_net(seed=1), _small_net(seed=2)
    meta = _meta(64, 32)
    ref, _ = learning.dense_predict_map(img, [(a, meta)], 64, 5, tile_px=1000)
    for tile in (5, 13):
        grid, _ = learning.dense_predict_map(img, [(a, meta)], 64, 5, tile_px=tile)
        np.testing.assert_allclose(grid, ref, atol=TOL * meta["target_std"])
    gb, _ = learning.dense_predict_map(img, [(b, meta)], 64, 5, tile_px=1000)
    both, _ = learning.dense_predict_map(img, [(a, meta), (b, meta)], 64, 5, tile_px=16)
    np.testing.assert_allclose(both, (ref + gb) / 2, atol=TOL * meta["target_std"])


def test_dense_map_nan_windows(rng):
    img = _smooth(rng, (200, 220))
    img[100, 30] = np.nan
    model = _small_net()
    meta = _meta(40, 20)
    grid, (cy, cx) = learning.dense_predict_map(img, [(model, meta)], 40, 10)
    exact, _ = learning.predict_map(img, lambda c: learning.predict(model, meta, c, "cpu"), 40, 10)
    # NaN exactly where the crop holds the pixel (factor 2, even crop origins: no snapping)
    np.testing.assert_array_equal(np.isnan(grid), np.isnan(exact))
    assert np.isnan(grid).sum() > 0 and np.isfinite(grid).sum() > 0


def test_dense_agreement_reports_the_differences(rng):
    img = _smooth(rng, (200, 230))
    model = _small_net()
    meta = _meta(40, 20)
    fn = lambda c: learning.predict(model, meta, c, "cpu")  # noqa: E731
    grid, centres = learning.dense_predict_map(img, [(model, meta)], 40, 9)
    exact, _ = learning.predict_map(img, fn, 40, 9)
    out = learning.dense_agreement(img, grid, centres, fn, 40, n_windows=50, seed=3, batch=7)
    assert out["n_windows"] == 50
    allout = learning.dense_agreement(img, grid, centres, fn, 40, n_windows=10 ** 6)
    d = (grid - exact).ravel().astype(np.float64)
    e = exact.ravel().astype(np.float64)
    assert allout["n_windows"] == grid.size
    assert allout["max_abs_diff"] == pytest.approx(np.abs(d).max(), rel=1e-4, abs=1e-5)
    assert allout["mean_abs_diff"] == pytest.approx(np.abs(d).mean(), rel=1e-4, abs=1e-5)
    assert allout["r2"] == pytest.approx(1 - np.sum(d ** 2) / np.sum((e - e.mean()) ** 2),
                                         rel=1e-3, abs=1e-4)
    perfect = learning.dense_agreement(img, exact, centres, fn, 40, n_windows=30)
    assert perfect["r2"] == pytest.approx(1.0) and perfect["max_abs_diff"] < 1e-4
    with pytest.raises(InputError, match="does not match"):
        learning.dense_agreement(img, grid[:-1], centres, fn, 40)


def test_dense_map_bad_input(rng):
    img = _smooth(rng, (100, 100))
    meta = _meta(40, 20)
    with pytest.raises(InputError, match="no models"):
        learning.dense_predict_map(img, [], 40, 5)
    with pytest.raises(InputError, match="SeedResNet"):
        learning.dense_predict_map(img, [(torch.nn.Linear(2, 2), meta)], 40, 5)
    with pytest.raises(InputError, match="input_px"):
        learning.dense_predict_map(img, [(_small_net(), meta), (_small_net(), _meta(40, 10))],
                                   40, 5)
    with pytest.raises(InputError, match="smaller than one"):
        learning.dense_predict_map(img, [(_small_net(), meta)], 140, 5)


def test_area_downsample_and_local_standardise(rng):
    img = rng.random((50, 61)).astype(np.float32)
    down = learning.area_downsample(img, 2.5, strip_px=7)
    assert down.shape == (20, 25) and down.dtype == np.float32
    np.testing.assert_allclose(down[0, 0], img[:2, :2].sum() / 6.25 + img[2, :2].sum() / 12.5
                               + img[:2, 2].sum() / 12.5 + img[2, 2] / 25, rtol=1e-5)
    # the last row covers 47.5..50, the last column 60..62.5 of which 60..61 is in the map
    np.testing.assert_allclose(down[-1, -1], (0.5 * img[47, 60] + img[48:, 60].sum()) / 2.5,
                               rtol=1e-5)
    whole = learning.area_downsample(img, 1.0)
    np.testing.assert_array_equal(whole, img)
    y = learning.local_standardise(img.astype(np.float64), 5, block=9)
    # a pixel's box of 5 centred on it, moved inside the map at the edges
    for (i, j) in ((20, 30), (0, 0), (49, 60), (1, 59)):
        i0, j0 = min(max(i - 2, 0), 45), min(max(j - 2, 0), 56)
        box = img[i0:i0 + 5, j0:j0 + 5].astype(np.float64)
        assert y[i, j] == pytest.approx((img[i, j] - box.mean()) / box.std(), rel=1e-4)
    with pytest.raises(InputError):
        learning.area_downsample(img, 0.5)
    with pytest.raises(InputError):
        learning.local_standardise(img, 0)


def test_large_area_is_chunk_independent(tmp_path):
    a = virtual.large_area(tmp_path / "a.zarr", (300, 410), pixel_size_nm=40.0, seed=4,
                           chunk=128, zarr_chunk=64)
    b = virtual.large_area(tmp_path / "b.zarr", (300, 410), pixel_size_nm=40.0, seed=4,
                           chunk=96, zarr_chunk=64)
    pa, pb = (np.asarray(mio.open_image(tmp_path / name, "truth_phase"))
              for name in ("a.zarr", "b.zarr"))
    np.testing.assert_array_equal(pa, pb)
    assert b["area_fractions"] == a["area_fractions"]
    cal, attrs = mio.open_calibrated(tmp_path / "a.zarr", "MulF")
    assert cal.shape == (300, 410) and attrs["pixel_size_nm"] == 40.0
    img = np.asarray(cal)
    assert img.dtype == np.float32 and np.isfinite(img).all()
    eta = np.array([a["phase_eta"][p] for p in a["phases"]])
    for k in range(len(eta)):          # the map is the phase's eta plus small noise
        if (pa == k).sum() > 200:
            assert abs(np.median(img[pa == k]) - eta[k]) < 0.01
    assert sum(a["area_fractions"].values()) == pytest.approx(1.0)
    with pytest.raises(InputError):
        virtual.large_area(tmp_path / "c.zarr", (0, 10))


def test_map_area_script_dense_mode(tmp_path, rng, monkeypatch):
    """Rule map_area with ``mode: dense``: the dense grid is dense_predict_map's, the
    agreement JSON is written beside the map, and the coarse map stays exact."""
    import pandas as pd
    from script_runner import run_script, write_map_stores

    s, ps = 40, 40.0
    image = _smooth(rng, (200, 240))
    write_map_stores(tmp_path, image, ps)
    model, meta = _small_net(seed=5), {**_meta(s, 20), "target": "E_GPa"}
    monkeypatch.setattr(learning, "load_model", lambda path, device: (model, dict(meta)))
    (tmp_path / "m0.pt").write_text("stand-in")
    pd.DataFrame({"E_GPa": rng.normal(40, 15, 300), "H_GPa": 1.0}).to_csv(
        tmp_path / "b01.csv", index=False)
    out = {k: str(tmp_path / "out" / v) for k, v in (
        ("grid_coarse", "coarse.npy"), ("grid_dense", "dense.npy"), ("table1", "table1.csv"),
        ("fig_maps", "maps.png"), ("fig_hist", "hist.png"), ("meta", "meta.json"),
        ("agreement", "agreement.json"))}
    job = {"input": {"calibrated": str(tmp_path / "calibrated.zarr"),
                     "checkpoints": [str(tmp_path / "m0.pt")],
                     "indents": [str(tmp_path / "b01.csv")],
                     "mosaic": str(tmp_path / "mosaic.zarr")},
           "output": out,
           "params": {"scale": "MulF", "step_um": 1.6, "dense_step_px": 8, "device": "cpu",
                      "mode": "dense", "check_windows": 40, "tile_px": 16,
                      "n_components": 2, "seed": 0, "n_init": 1}}
    run_script("map_area", job, tmp_path)
    dense = np.load(out["grid_dense"])
    ref, centres = learning.dense_predict_map(image, [(model, meta)], s, 8)
    np.testing.assert_allclose(dense, ref, atol=TOL * meta["target_std"])
    coarse = np.load(out["grid_coarse"])
    exact, _ = learning.predict_map(image, lambda c: learning.predict(model, meta, c, "cpu"), s, 40)
    np.testing.assert_allclose(coarse, exact, rtol=1e-5)
    agreement = mio.read_json(out["agreement"])
    assert agreement["mode"] == "dense" and agreement["n_windows"] == 40
    assert {"r2", "max_abs_diff", "mean_abs_diff", "meets_r2_target"} <= set(agreement)
    assert agreement["units"] == "GPa" and agreement["step_px"] == 8
    assert mio.read_json(out["meta"])["mode"] == "dense"
    job["params"]["mode"] = "exact"
    run_script("map_area", job, tmp_path)
    assert mio.read_json(out["agreement"]) == {"mode": "exact"}
    np.testing.assert_allclose(np.load(out["grid_dense"]), learning.predict_map(
        image, lambda c: learning.predict(model, meta, c, "cpu"), s, 8)[0], rtol=1e-5)
