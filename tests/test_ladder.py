"""Tests of microprop.learning: two-point statistics, features and the baseline ladder."""
import h5py
import numpy as np
import pandas as pd
import pytest
from microprop import data as mp_data
from microprop import learning, microstructure, stats
from microprop.errors import InputError
from scipy import ndimage
from script_runner import run_script

PIXEL_NM = 200.0  # 50 px crops = 10 um, disc of 1 um = 5 px
LEVELS = (0.08, 0.16)  # grey of the two background phases (eta)


def blob_phase(rng, n, s, fraction, sigma=2.0):
    """Random two-phase blob fields with a prescribed phase-1 fraction per crop."""
    noise = ndimage.gaussian_filter(rng.normal(size=(n, s, s)), sigma=(0, sigma, sigma),
                                    mode="wrap")
    flat = noise.reshape(n, -1)
    thr = np.array([np.quantile(f, 1 - fr) for f, fr in zip(flat, fraction)])
    return (noise > thr[:, None, None]).astype(np.float64)


def make_dataset(path, rng, n=200, s=50, disc_px=5.0):
    """A small dataset.h5 (contract of docs/ARCHITECTURE.md) with a known answer.

    The background of each crop is a two-phase blob pattern whose phase
    fraction (0.2-0.8) dominates the crop mean; a central disc of radius
    ``disc_px`` (1 um) has its own grey ``c``, drawn independently. The target
    depends on ``c`` only: ``E = 10 + 400 (c - 0.09) + N(0, 1)`` GPa,
    ``H = 0.5 + 0.05 E``. So the crop mean says little about E, the central
    disc everything.
    """
    frac = rng.uniform(0.2, 0.8, n)
    phase = blob_phase(rng, n, s, frac)
    img = LEVELS[0] + (LEVELS[1] - LEVELS[0]) * phase + rng.normal(0, 0.003, (n, s, s))
    disc = microstructure.disc_mask(s, disc_px)
    c = rng.uniform(0.09, 0.17, n)
    img[:, disc] = c[:, None] + rng.normal(0, 0.002, (n, int(disc.sum())))
    E = 10 + 400 * (c - 0.09) + rng.normal(0, 1.0, n)
    H = 0.5 + 0.05 * E
    perm = rng.permutation(n)
    n_tr, n_va = int(0.7 * n), int(0.15 * n)
    block = np.arange(n) // 10
    bperm = rng.permutation(block.max() + 1)
    border = np.argsort(bperm[block], kind="stable")
    with h5py.File(path, "w") as fh:
        fh.create_dataset("images", data=img.astype(np.float32), chunks=(1, s, s),
                          compression="gzip")
        fh.create_dataset("targets/E_GPa", data=E.astype(np.float32))
        fh.create_dataset("targets/H_GPa", data=H.astype(np.float32))
        for k in ("specimen", "area", "batch"):
            fh.create_dataset(f"meta/{k}", data=np.array(["syn"] * n, dtype=object),
                              dtype=h5py.string_dtype())
        fh.create_dataset("meta/indent", data=np.arange(1, n + 1))
        fh.create_dataset("meta/x_um", data=np.arange(n) * 10.0)
        fh.create_dataset("meta/y_um", data=np.zeros(n))
        fh.create_dataset("meta/block", data=block)
        for name, order in (("random", perm), ("blocked", border)):
            fh.create_dataset(f"splits/{name}/train", data=np.sort(order[:n_tr]).astype(np.int64))
            fh.create_dataset(f"splits/{name}/val",
                              data=np.sort(order[n_tr:n_tr + n_va]).astype(np.int64))
            fh.create_dataset(f"splits/{name}/test",
                              data=np.sort(order[n_tr + n_va:]).astype(np.int64))
        fh.attrs.update(pixel_size_nm=PIXEL_NM, crop_size_um=s * PIXEL_NM / 1000,
                        crop_size_px=s, quantity="eta")
    return {"E": E, "c": c, "frac": frac}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    path = tmp_path_factory.mktemp("ladder") / "dataset.h5"
    truth = make_dataset(path, np.random.default_rng(7))
    table = learning.ladder(path, seed=3, downsample=25, max_shift_um=1.6, n_classes=3)
    return path, truth, table


# --------------------------------------------------------------------------
# two-point statistics against analytical answers
# --------------------------------------------------------------------------
def _tri(d, p):
    # periodic triangle wave: 1 at 0, -1 at +-p, period 2p
    d = (np.asarray(d) + p) % (2 * p) - p
    return 1 - 2 * np.abs(d) / p


def test_two_point_checkerboard_periodic():
    p, s = 4, 32
    yy, xx = np.mgrid[:s, :s]
    black = (((yy // p) + (xx // p)) % 2 == 0).astype(float)
    fields = np.stack([black, 1 - black])[None]
    r = 10
    c = microstructure.two_point(fields, max_shift=r, periodic=True)
    assert c.shape == (1, 3, 2 * r + 1, 2 * r + 1)  # pairs (0,0), (0,1), (1,1)
    d = np.arange(-r, r + 1)
    tt = _tri(d, p)[:, None] * _tri(d, p)[None, :]
    np.testing.assert_allclose(c[0, 0], 0.25 + 0.25 * tt, atol=1e-12)
    np.testing.assert_allclose(c[0, 1], 0.25 - 0.25 * tt, atol=1e-12)
    np.testing.assert_allclose(c[0, 2], 0.25 + 0.25 * tt, atol=1e-12)
    assert c[0, 0, r, r] == pytest.approx(0.5)  # volume fraction at zero shift
    assert c[0, 0, r, r + 2 * p] == pytest.approx(0.5)  # period 2p
    assert c[0, 0, r, r + p] == pytest.approx(0.0)


def _brute_force(m, d_max):
    s = m.shape[0]
    out = np.empty((2 * d_max + 1, 2 * d_max + 1))
    for dy in range(-d_max, d_max + 1):
        for dx in range(-d_max, d_max + 1):
            a = m[max(0, -dy):s - max(0, dy), max(0, -dx):s - max(0, dx)]
            b = m[max(0, dy):s - max(0, -dy), max(0, dx):s - max(0, -dx)]
            out[dy + d_max, dx + d_max] = (a * b).sum() / a.size
    return out


def test_two_point_single_disc_nonperiodic():
    s, rad, r = 40, 6.0, 14
    yy, xx = np.mgrid[:s, :s]
    disc = ((yy - 20) ** 2 + (xx - 17) ** 2 <= rad ** 2).astype(float)
    c = microstructure.two_point(disc[None, None], max_shift=r)[0, 0]
    # exact reference: direct sum over the overlapping region
    np.testing.assert_allclose(c, _brute_force(disc, r), atol=1e-12)
    assert c[r, r] == pytest.approx(disc.mean())  # volume fraction
    # analytical: lens area of two discs at distance |d|, over the pair count
    d = np.hypot(*np.mgrid[-r:r + 1, -r:r + 1])
    dd = np.minimum(d, 2 * rad)
    lens = 2 * rad ** 2 * np.arccos(dd / (2 * rad)) - dd / 2 * np.sqrt(4 * rad ** 2 - dd ** 2)
    pairs = (s - np.abs(np.mgrid[-r:r + 1, -r:r + 1])).prod(axis=0)
    near = d <= rad  # away from the discretised edge of the lens
    np.testing.assert_allclose(c[near], (lens / pairs)[near], rtol=0.08)
    assert np.all(c[d > 2 * rad + 1] == pytest.approx(0.0, abs=1e-12))


def test_two_point_mask_ignores_nan_pixels():
    s = 20
    img = np.full((1, s, s), 0.2)
    img[0, 5:9, 3:15] = np.nan
    m, w = microstructure.state_fields(img, [0.1])
    c = microstructure.two_point(m, mask=w, max_shift=6)
    np.testing.assert_allclose(c[0, 2], 1.0)  # state 1 everywhere that is valid
    np.testing.assert_allclose(c[0, 0], 0.0)
    # the block-averaged fields carry the finite-pixel fraction in the mask
    m2, w2 = microstructure.state_fields(img, [0.1], factor=2)
    np.testing.assert_allclose(m2[:, 1], w2)
    assert w2.min() == 0.0 and w2.max() == 1.0


# --------------------------------------------------------------------------
# segmentation and features
# --------------------------------------------------------------------------
def test_fit_thresholds_separates_levels(rng):
    levels = np.array([0.05, 0.13, 0.18])
    px = rng.choice(levels, 20000, p=[0.2, 0.5, 0.3]) + rng.normal(0, 0.004, 20000)
    t = microstructure.fit_thresholds(px, 3)
    assert t.shape == (2,)
    assert levels[0] + 0.012 < t[0] < levels[1] - 0.012
    assert levels[1] + 0.012 < t[1] < levels[2] - 0.012
    with pytest.raises(InputError, match="distinct"):
        microstructure.fit_thresholds(np.full(100, 0.1), 3)


def test_segment_and_class_fractions():
    img = np.array([[[0.05, 0.10, 0.15, np.nan]]])
    lab = microstructure.segment(img, [0.10, 0.14])
    np.testing.assert_array_equal(lab, [[[0, 0, 2, -1]]])  # 0.10 on a threshold -> lower class
    f = microstructure.class_fractions(img, [0.10, 0.14])
    np.testing.assert_allclose(f, [[2 / 3, 0, 1 / 3]])


def test_disc_mask_and_crop_features(rng):
    s = 51
    disc = microstructure.disc_mask(s, 10)
    assert disc[25, 25] and disc[25, 35] and not disc[25, 36]
    assert disc.sum() == pytest.approx(np.pi * 100, rel=0.03)
    img = np.zeros((2, s, s))
    img[:, disc] = 1.0
    img[1] = rng.uniform(0, 1, (s, s))
    feats, names = microstructure.crop_features(img, disc)
    fd = dict(zip(names, feats[0]))
    assert fd["disc_mean"] == 1.0 and fd["disc_std"] == 0.0 and fd["disc_q5"] == 1.0
    assert fd["mean"] == pytest.approx(disc.mean())
    fu = dict(zip(names, feats[1]))
    assert fu["q25"] == pytest.approx(0.25, abs=0.03) and fu["q95"] == pytest.approx(0.95, abs=0.02)


def test_block_factor():
    assert microstructure.block_factor(250, 64) == 4
    assert microstructure.block_factor(250, None) == 1
    assert microstructure.block_factor(50, 25) == 2
    with pytest.raises(InputError):
        microstructure.block_factor(50, 0)


# --------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------
def test_pca_ridge_recovers_linear_function_of_volume_fraction(rng):
    n, s = 200, 40
    frac = rng.uniform(0.15, 0.85, n)
    img = 0.08 + 0.08 * blob_phase(rng, n, s, frac) + rng.normal(0, 0.003, (n, s, s))
    y = 5.0 + 20.0 * frac
    X = microstructure.two_point_features(img, [0.12], factor=2, max_shift=5)
    assert X.shape == (n, 3 * 11 * 11)
    model = learning.fit_pca_ridge(X[:150], y[:150])
    pred = learning.predict_pca_ridge(model, X[150:])
    resid = pred - y[150:]
    assert np.sqrt(np.mean(resid ** 2)) < 0.3  # y spans 14 GPa
    assert 1 - np.sum(resid ** 2) / np.sum((y[150:] - y[150:].mean()) ** 2) > 0.99


# --------------------------------------------------------------------------
# the ladder
# --------------------------------------------------------------------------
def test_ladder_table_layout(synthetic):
    path, truth, table = synthetic
    assert list(table.columns) == ["model", "target", "split", "MSE", "MAE", "R2", "n_train",
                                   "n_test", "fit_s", "fit_on", "notes"]
    assert len(table) == 4 * 2 * 2
    combos = set(zip(table.model, table.target, table.split))
    assert combos == {(m, t, s) for m in learning.MODELS for t in mp_data.TARGETS for s in mp_data.SPLIT_SCHEMES}
    assert (table.n_train + table.n_test == 200).all()
    assert (table.fit_on == "train+val").all()
    assert np.isfinite(table[["MSE", "MAE", "R2", "fit_s"]].to_numpy()).all()
    assert table.attrs["factor"] == 2 and table.attrs["disc_radius_px"] == pytest.approx(5.0)
    assert table.attrs["window_px"] == 25 and table.attrs["max_shift_px"] == 4
    two = table.notes[table.model == "two_point"].iloc[0]
    assert "3 classes, 486 correlations" in two  # 6 pairs x 9 x 9 shifts


def test_ladder_central_disc_features_beat_table_model(synthetic):
    _, _, table = synthetic
    r2 = table.set_index(["model", "target", "split"])["R2"]
    for split in mp_data.SPLIT_SCHEMES:
        for t in mp_data.TARGETS:
            assert r2["boosting", t, split] > 0.85
            assert r2["table", t, split] < 0.4
            assert r2["boosting", t, split] > r2["table", t, split] + 0.4


def test_ladder_table_model_matches_stats(synthetic):
    

    path, _, table = synthetic
    with h5py.File(path, "r") as fh:
        means = stats.crop_means(fh["images"][...])
        y = fh["targets/E_GPa"][...].astype(float)
        tr = np.r_[fh["splits/random/train"][...], fh["splits/random/val"][...]]
        te = fh["splits/random/test"][...]
    res = stats.table_model(means, y, n_bins=20, train_index=tr, test_index=te)
    row = table[(table.model == "table") & (table.target == "E_GPa") & (table.split == "random")]
    assert row.R2.item() == pytest.approx(res["metrics"]["R2"], rel=1e-9)
    assert row.MAE.item() == pytest.approx(res["metrics"]["MAE"], rel=1e-9)


def test_ladder_deterministic(synthetic):
    path, _, table = synthetic
    again = learning.ladder(path, seed=3, downsample=25, max_shift_um=1.6, n_classes=3,
                     splits=("blocked",), targets=("H_GPa",), models=("two_point", "boosting"))
    ref = table[(table.split == "blocked") & (table.target == "H_GPa")
                & table.model.isin(["two_point", "boosting"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(again.drop(columns="fit_s"), ref.drop(columns="fit_s"))


def test_ladder_bad_input(tmp_path, synthetic):
    path, _, _ = synthetic
    with pytest.raises(InputError, match="unknown target"):
        learning.ladder(path, targets=("E",))
    bad = tmp_path / "nosplit.h5"
    with h5py.File(path, "r") as src, h5py.File(bad, "w") as dst:
        for k in ("images", "targets", "meta"):
            src.copy(k, dst)
        src.copy("splits/random", dst, name="splits/random")
        dst.attrs.update(src.attrs)
    with pytest.raises(InputError, match=r"nosplit.h5.*splits/blocked"):
        learning.ladder(bad, models=("table",))
    with pytest.raises(InputError, match="not found"):
        learning.ladder(tmp_path / "missing.h5")


def test_baseline_ladder_script(tmp_path, synthetic):
    path, _, _ = synthetic
    out_csv, out_png = tmp_path / "ladder.csv", tmp_path / "ladder.png"
    run_script("baseline_ladder", {
        "input": {"dataset": str(path)},
        "output": {"table": str(out_csv), "fig": str(out_png)},
        "params": {"seed": 3, "downsample": 25, "n_classes": 3, "max_shift_um": 1.6},
    }, tmp_path)
    df = pd.read_csv(out_csv)
    assert len(df) == 16 and set(df.split) == {"random", "blocked"}
    from PIL import Image

    with Image.open(out_png) as im:
        assert im.size == (1200, 500)
