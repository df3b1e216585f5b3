"""Tests of microprop.learning: metrics, conformal intervals, ensembles, figures, script.

The trained networks are replaced by stand-ins whose answer is known: a tiny
torch module predicting ``a + b * (mean of the crop's central disc)`` from a
checkpoint that follows the training contract (``state_dict`` + ``meta``).
The synthetic dataset has the target ``E = 10 + 200 * disc value + noise``.
"""
import importlib
import json
import types

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from microprop import data as mp_data
from microprop import io as mio
from microprop import learning, plots, virtual
from microprop.errors import InputError
from PIL import Image
from script_runner import run_script
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

torch.set_num_threads(1)

S = 32            # crop edge, px
PIXEL_NM = 40.0   # crop pixel size
RADIUS = 8        # central disc radius, px
A, B, NOISE = 10.0, 200.0, 2.0   # E = A + B * disc + N(0, NOISE)
OFFSETS = (-0.5, 0.0, 0.5)       # members: A + offset + B * disc mean (spread 0.5 GPa)


# --------------------------------------------------------------------------
# stand-ins for microprop.learning
# --------------------------------------------------------------------------
class DiscMean(torch.nn.Module):
    """``a + b * mean over the central disc``; MC dropout adds N(0, 1) GPa."""

    def __init__(self, s=S, radius=RADIUS):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.0))
        self.b = torch.nn.Parameter(torch.tensor(1.0))
        yy, xx = np.mgrid[:s, :s] - s // 2
        self.register_buffer("disc", torch.from_numpy((xx ** 2 + yy ** 2 <= radius ** 2)
                                                      .astype(np.float32)))

    def forward(self, x):
        m = (x * self.disc).sum(dim=(-1, -2)) / self.disc.sum()
        return self.a + self.b * m


def disc_means(images):
    yy, xx = np.mgrid[:S, :S] - S // 2
    disc = xx ** 2 + yy ** 2 <= RADIUS ** 2
    return np.asarray(images, float)[:, disc].mean(axis=1)


def save_member(path, a, b, target="E_GPa", split="random", member=0):
    model = DiscMean()
    with torch.no_grad():
        model.a.fill_(a)
        model.b.fill_(b)
    meta = {"target": target, "target_mean": 40.0, "target_std": 10.0, "input_px": S,
            "crop_size_px": S, "member": member, "split": split}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "meta": meta}, path)
    return path


def fake_load_model(checkpoint_path, device):
    ck = torch.load(checkpoint_path, map_location=device, weights_only=True)
    model = DiscMean().to(device)
    model.load_state_dict(ck["state_dict"])
    model.eval()
    return model, ck["meta"]


def fake_predict(model, meta, images, device, batch_size=64, mc_dropout=False):
    assert images.dtype == np.float32 and images.ndim == 3
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            y = model(torch.from_numpy(images[i:i + batch_size]).to(device))
            if mc_dropout:
                y = y + torch.randn_like(y)
            out.append(y.cpu().numpy())
    return np.concatenate(out) if out else np.empty(0, np.float32)


@pytest.fixture
def fake_train(monkeypatch):
    """Install the stand-ins as ``microprop.learning.load_model`` and ``.predict``
    (what the script and :func:`microprop.learning.evaluate` call)."""
    real = importlib.import_module("microprop.learning")
    mod = types.SimpleNamespace(load_model=fake_load_model, predict=fake_predict,
                                resolve_device=real.resolve_device)
    monkeypatch.setattr(real, "load_model", fake_load_model)
    monkeypatch.setattr(real, "predict", fake_predict)
    return mod


def make_images(rng, n):
    """Crops of noisy eta ~ 0.12 with a central disc of eta ``c`` ~ U(0.05, 0.2)."""
    c = rng.uniform(0.05, 0.2, n)
    img = rng.normal(0.12, 0.02, (n, S, S))
    yy, xx = np.mgrid[:S, :S] - S // 2
    disc = xx ** 2 + yy ** 2 <= RADIUS ** 2
    img[:, disc] = c[:, None] + rng.normal(0, 0.005, (n, int(disc.sum())))
    return img.astype(np.float32)


def make_dataset(tmp_path, rng, n=150):
    """A tiny dataset.h5 (contract of docs/ARCHITECTURE.md) via write_shard + assemble."""
    images = make_images(rng, n)
    e = A + B * disc_means(images) + rng.normal(0, NOISE, n)
    k = np.arange(n)
    table = pd.DataFrame({"specimen": "syn", "area": "A1", "batch": "b01", "indent": k + 1,
                          "x_um": 20.0 * (k % 15), "y_um": 20.0 * (k // 15),
                          "E_GPa": e, "H_GPa": e / 30})
    attrs = {"pixel_size_nm": PIXEL_NM, "crop_size_um": S * PIXEL_NM / 1000,
             "crop_size_px": S, "quantity": "eta", "scale": "MulF"}
    shard = tmp_path / "shards" / "b01.h5"
    mp_data.write_shard(shard, images, table, attrs)
    path = tmp_path / "dataset.h5"
    mp_data.assemble([shard], path, seed=0, fractions=(0.6, 0.2, 0.2), block_um=40.0)
    return path


def members(tmp_path, offsets=OFFSETS, **kw):
    return [save_member(tmp_path / f"m{i}" / "best.pt", A + d, B, member=i, **kw)
            for i, d in enumerate(offsets)]


def png(fig, path):
    plots.save_png(fig, path)
    return np.asarray(Image.open(path).convert("L"), dtype=float)


def assert_png(img, figsize):
    w, h = (int(round(v * plots.DPI)) for v in figsize)
    assert img.shape == (h, w)
    assert img.std() > 5 and len(np.unique(img)) > 20


# --------------------------------------------------------------------------
# metrics and intervals
# --------------------------------------------------------------------------
def test_regression_metrics_match_sklearn(rng):
    y = rng.normal(30, 8, 200)
    yhat = y + rng.normal(1, 3, 200)
    m = learning.regression_metrics(y, yhat)
    assert m["MSE"] == pytest.approx(mean_squared_error(y, yhat))
    assert m["MAE"] == pytest.approx(mean_absolute_error(y, yhat))
    assert m["R2"] == pytest.approx(r2_score(y, yhat))
    assert m["n"] == 200
    assert learning.regression_metrics(y, np.full_like(y, y.mean()))["R2"] == pytest.approx(0.0)
    with pytest.raises(InputError, match="not finite"):
        learning.regression_metrics([1.0, np.nan, 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(InputError):
        learning.regression_metrics([1.0, 2.0], [1.0, 2.0, 3.0])


def test_conformal_quantile_is_the_kth_smallest_score():
    scores = np.arange(9, 0, -1, dtype=float)  # 9 .. 1, unsorted
    assert learning.conformal_quantile(scores, 0.9) == (9.0, 9)   # ceil(10 * 0.9) = 9
    assert learning.conformal_quantile(scores, 0.8) == (8.0, 8)
    assert learning.conformal_quantile(scores, 0.5) == (5.0, 5)
    q, k = learning.conformal_quantile(np.ones(5), 0.9)           # ceil(6 * 0.9) = 6 > 5
    assert np.isinf(q) and k == 6
    with pytest.raises(InputError):
        learning.conformal_quantile(scores, 1.0)


def _gaussian(rng, n, scale=1.0):
    """Heteroscedastic Gaussian data with known spread: y = mean + spread * N(0, 1)."""
    mean = rng.uniform(10, 60, n)
    spread = rng.uniform(1, 5, n)
    return mean + spread * rng.normal(size=n), mean, spread * scale


def test_conformal_interval_covers_and_raw_interval_undercovers(rng):
    y_cal, m_cal, s_cal = _gaussian(rng, 500)
    y, m, s = _gaussian(rng, 20000)
    lo, hi, info = learning.prediction_interval(m, s, y_cal, m_cal, s_cal, level=0.9)
    assert info["z"] == pytest.approx(1.6449, abs=1e-4)
    assert info["n_cal"] == 500 and info["k"] == 451
    # the true normalised quantile is z(0.95) = 1.645
    assert info["q"] == pytest.approx(1.645, abs=0.15)
    assert learning.empirical_coverage(y, lo, hi) == pytest.approx(0.9, abs=0.03)
    assert learning.empirical_coverage(y, info["raw_lo"], info["raw_hi"]) == pytest.approx(0.9, abs=0.03)

    # a spread 2x too small: the raw interval covers P(|Z| < 1.645 / 2) = 0.589,
    # the conformal one doubles q and still covers 90 %
    lo2, hi2, info2 = learning.prediction_interval(m, s / 2, y_cal, m_cal, s_cal / 2, level=0.9)
    raw = learning.empirical_coverage(y, info2["raw_lo"], info2["raw_hi"])
    assert raw == pytest.approx(0.589, abs=0.02)
    assert learning.empirical_coverage(y, lo2, hi2) == pytest.approx(0.9, abs=0.03)
    assert info2["q"] == pytest.approx(2 * info["q"], rel=1e-9)
    np.testing.assert_allclose(hi2 - lo2, hi - lo, rtol=1e-9)


def test_conformal_marginal_coverage_with_small_calibration_sets(rng):
    """Averaged over draws, coverage is ceil((n+1) level) / (n+1) (Angelopoulos & Bates 2021)."""
    n_cal, cov = 19, []
    for _ in range(400):
        y_cal, m_cal, s_cal = _gaussian(rng, n_cal)
        y, m, s = _gaussian(rng, 200)
        lo, hi, _ = learning.prediction_interval(m, s, y_cal, m_cal, s_cal, level=0.8)
        cov.append(learning.empirical_coverage(y, lo, hi))
    expected = np.ceil((n_cal + 1) * 0.8) / (n_cal + 1)  # 16 / 20 = 0.8
    assert np.mean(cov) == pytest.approx(expected, abs=0.01)


def test_interval_with_one_member_is_absolute_residual_conformal(rng):
    y_cal, m_cal, _ = _gaussian(rng, 99)
    m = np.array([20.0, 30.0])
    lo, hi, info = learning.prediction_interval(m, np.zeros(2), y_cal, m_cal, np.zeros(99), level=0.9)
    q_abs = np.sort(np.abs(y_cal - m_cal))[89]  # ceil(100 * 0.9) = 90th smallest
    assert info["floor"] == 1.0
    np.testing.assert_allclose(hi - m, q_abs)
    np.testing.assert_allclose(m - lo, q_abs)
    np.testing.assert_array_equal(info["raw_hi"], m)
    with pytest.raises(InputError, match="calibration"):
        learning.prediction_interval(m, np.zeros(2), y_cal, m_cal[:5], np.zeros(99))


def test_empirical_coverage_counts_closed_intervals():
    assert learning.empirical_coverage([1, 2, 3, 4], [1, 0, 5, -np.inf], [1, 1, 6, np.inf]) == 0.5


def test_coverage_confidence_interval_is_wilsons(rng):
    """90 of 100 covered: Wilson's closed form (z = 1.96) gives 0.8256-0.9448."""
    y = np.arange(100.0)
    lo, hi = y - 1, y + 1
    hi[:10] = y[:10] - 0.5                          # 10 crops outside their interval
    low, high = learning.coverage_confidence_interval(y, lo, hi)
    n, p, z = 100, 0.9, 1.959963984540054
    centre = (p + z ** 2 / (2 * n)) / (1 + z ** 2 / n)
    half = z / (1 + z ** 2 / n) * np.sqrt(p * (1 - p) / n + z ** 2 / (4 * n ** 2))
    assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-9)
    assert (low, high) == pytest.approx((0.8256, 0.9448), abs=1e-4)
    # ten times the crops, same coverage: a narrower interval around it
    big = learning.coverage_confidence_interval(np.tile(y, 10), np.tile(lo, 10), np.tile(hi, 10))
    assert low < big[0] < 0.9 < big[1] < high
    assert np.isnan(learning.coverage_confidence_interval([], [], [])).all()
    with pytest.raises(InputError, match="lengths differ"):
        learning.coverage_confidence_interval([1, 2], [0], [3, 3])


# --------------------------------------------------------------------------
# ensembles
# --------------------------------------------------------------------------
def test_ensemble_predict_columns_are_the_members(tmp_path, rng):
    images = make_images(rng, 23)
    p1 = save_member(tmp_path / "a.pt", 5.0, 100.0)
    p2 = save_member(tmp_path / "b.pt", -3.0, 250.0, member=1)
    with h5py.File(tmp_path / "imgs.h5", "w") as fh:
        fh.create_dataset("images", data=images, chunks=(1, S, S))
    with h5py.File(tmp_path / "imgs.h5", "r") as fh:  # read in blocks of 7
        preds, metas = learning.ensemble_predict([p1, p2], fh["images"], device="cpu", block=7,
                                           batch_size=4, load_model=fake_load_model,
                                           predict=fake_predict)
    d = disc_means(images)
    assert preds.shape == (23, 2)
    np.testing.assert_allclose(preds[:, 0], 5.0 + 100.0 * d, rtol=1e-5)
    np.testing.assert_allclose(preds[:, 1], -3.0 + 250.0 * d, rtol=1e-5)
    assert [m["member"] for m in metas] == [0, 1]


def test_ensemble_predict_mc_dropout_samples(tmp_path, rng, fake_train):
    images = make_images(rng, 40)
    p = save_member(tmp_path / "a.pt", 5.0, 100.0)
    preds, _ = learning.ensemble_predict([p], images, device="auto", mc_samples=30)  # via train API
    assert preds.shape == (40, 30)
    det = 5.0 + 100.0 * disc_means(images)
    # the stand-in's dropout noise is N(0, 1) GPa around the deterministic output
    assert np.std(preds - det[:, None]) == pytest.approx(1.0, abs=0.05)
    np.testing.assert_allclose(preds.mean(axis=1), det, atol=4 / np.sqrt(30))
    again, _ = learning.ensemble_predict([p], images, device="cpu", mc_samples=30)
    np.testing.assert_array_equal(preds, again)  # seeded


def test_ensemble_predict_rejects_inconsistent_members(tmp_path, rng):
    images = make_images(rng, 4)
    kw = {"load_model": fake_load_model, "predict": fake_predict, "device": "cpu"}
    e = save_member(tmp_path / "e.pt", 0.0, 1.0)
    h = save_member(tmp_path / "h.pt", 0.0, 1.0, target="H_GPa")
    with pytest.raises(InputError, match="h.pt.*H_GPa"):
        learning.ensemble_predict([e, h], images, **kw)
    with pytest.raises(InputError, match="32 px crops; the dataset has 16"):
        learning.ensemble_predict([e], images[:, :16, :16], **kw)
    with pytest.raises(InputError, match="not found"):
        learning.ensemble_predict([tmp_path / "none.pt"], images, **kw)
    with pytest.raises(InputError, match="split"):
        learning.ensemble_predict([e], images, expect={"split": "blocked"}, **kw)


# --------------------------------------------------------------------------
# evaluate end to end
# --------------------------------------------------------------------------
def test_evaluate_end_to_end_known_answer(tmp_path, rng):
    path = make_dataset(tmp_path, rng)
    ck = members(tmp_path)
    res = learning.evaluate(ck, path, split="random", device="cpu", level=0.9, target="E_GPa",
                      load_model=fake_load_model, predict=fake_predict)
    df = res["predictions"]
    _, table, _ = mp_data.read_shard(path, images=False)
    splits = mp_data.read_splits(path)["random"]
    with h5py.File(path, "r") as fh:
        images = fh["images"][...]
    assert list(df.columns) == list(learning.PREDICTION_COLUMNS)
    assert len(df) == 150 and sorted(df["index"]) == list(range(150))
    for s in ("train", "val", "test"):
        assert set(df.loc[df["split"] == s, "index"]) == set(splits[s])
    # ensemble mean and spread of members that differ by constant offsets
    truth = A + np.mean(OFFSETS) + B * disc_means(images)[df["index"]]
    np.testing.assert_allclose(df["mean"], truth, rtol=1e-5)
    np.testing.assert_allclose(df["std"], np.std(OFFSETS, ddof=1), rtol=1e-4)
    np.testing.assert_allclose(df["y"], table["E_GPa"].to_numpy()[df["index"]])
    # conformal half width (constant spread): the ceil(31 * 0.9) = 28th smallest
    # |residual| of the 30 val samples
    val = df[df["split"] == "val"]
    assert len(val) == 30
    k = int(np.ceil(31 * 0.9))
    q_abs = np.sort(np.abs(val["y"] - val["mean"]))[k - 1]
    np.testing.assert_allclose(df["hi"] - df["mean"], q_abs, rtol=1e-5)
    np.testing.assert_allclose(df["mean"] - df["lo"], q_abs, rtol=1e-5)
    np.testing.assert_allclose(df["raw_hi"] - df["mean"], 1.645 * df["std"], rtol=1e-3)
    # metrics per split, ensemble and members, against sklearn
    for s in ("train", "val", "test"):
        d = df[df["split"] == s]
        ens = res["metrics"][s]["ensemble"]
        assert ens["MSE"] == pytest.approx(mean_squared_error(d["y"], d["mean"]))
        assert ens["R2"] == pytest.approx(r2_score(d["y"], d["mean"]))
        for i, off in enumerate(OFFSETS):
            pm = d["mean"] + off - np.mean(OFFSETS)
            assert res["metrics"][s]["members"][i]["MAE"] == pytest.approx(
                mean_absolute_error(d["y"], pm), rel=1e-5)
    # the relation is learnt: test error near the noise (MAE ~ 0.8 NOISE), R2 high
    assert res["metrics"]["test"]["ensemble"]["MAE"] < 1.5 * NOISE
    assert res["metrics"]["test"]["ensemble"]["R2"] > 0.9
    c = res["interval"]["conformal"]
    assert c["coverage_val"] >= k / 30 - 1e-12
    assert c["mean_width_test"] == pytest.approx(2 * q_abs)
    # the members' spread (0.5 GPa) ignores the measurement noise (2 GPa): the raw interval
    # +-0.82 GPa covers P(|N(0, 2)| < 0.82) = 0.32 of the samples
    raw = res["interval"]["raw"]
    assert raw["coverage_val"] < 0.6 and raw["coverage_test"] < 0.6
    te = df[df["split"] == "test"]
    assert raw["coverage_test"] == pytest.approx(
        ((te["raw_lo"] <= te["y"]) & (te["y"] <= te["raw_hi"])).mean())
    assert raw["mean_width_test"] == pytest.approx(2 * 1.645 * 0.5, rel=1e-3)
    assert res["n_members"] == 3 and res["target"] == "E_GPa"
    json.dumps(mio.jsonable({k: v for k, v in res.items() if k != "predictions"}))


def test_evaluate_blocked_split_calibrates_on_validation_blocks(tmp_path, rng):
    """On the blocked split the interval is block-conformal over the validation
    blocks (the largest block score with few blocks); the pooled interval is
    reported beside it, and every prediction row carries its block."""
    path = make_dataset(tmp_path, rng)
    ck = members(tmp_path, split="blocked")
    kw = {"device": "cpu", "level": 0.9, "load_model": fake_load_model, "predict": fake_predict}
    res = learning.evaluate(ck, path, split="blocked", **kw)
    df = res["predictions"]
    with h5py.File(path, "r") as fh:
        blocks = fh["meta/block"][...]
    np.testing.assert_array_equal(df["block"], blocks[df["index"]])
    c, pooled = res["interval"]["conformal"], res["interval"]["conformal_pooled"]
    val = df[df["split"] == "val"]
    scores = np.abs(val["y"] - val["mean"]) / np.maximum(val["std"], c["floor"])
    q, info = learning.block_conformal_quantile(scores, val["block"], 0.9)
    assert c["method"] == "block" and c["q"] == pytest.approx(q) and c["m_blocks"] == info["m"]
    assert c["q"] >= pooled["q"] and c["mean_width_test"] >= pooled["mean_width_test"]
    assert c["coverage_test"] >= pooled["coverage_test"]
    res_p = learning.evaluate(ck, path, split="blocked", interval_method="pooled", **kw)
    assert res_p["interval"]["conformal"]["method"] == "pooled"
    assert res_p["interval"]["conformal"]["q"] == pytest.approx(pooled["q"])
    assert learning.evaluate(members(tmp_path / "r"), path, split="random",
                             **kw)["interval"]["conformal"]["method"] == "pooled"


def test_evaluate_rejects_wrong_split_or_target(tmp_path, rng):
    path = make_dataset(tmp_path, rng, n=60)
    kw = {"device": "cpu", "load_model": fake_load_model, "predict": fake_predict}
    ck = members(tmp_path, split="blocked")
    with pytest.raises(InputError, match="split = 'blocked'"):
        learning.evaluate(ck, path, split="random", **kw)
    with pytest.raises(InputError, match="target = 'E_GPa'; expected 'H_GPa'"):
        learning.evaluate(ck, path, split="blocked", target="H_GPa", **kw)
    with pytest.raises(InputError, match="no /splits/spatial"):
        learning.evaluate(ck, path, split="spatial", **kw)


# --------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------
def _history(rng, n_epochs=30, var=100.0, extra=False):
    ep = np.arange(1, n_epochs + 1)
    tr = 2.0 * np.exp(-ep / 8) + 0.05
    va = tr + 0.1 + 0.01 * (ep - 20).clip(0)  # overfits after epoch 20
    t = pd.DataFrame({"epoch": ep, "train_loss": tr, "train_mae_GPa": np.sqrt(tr * var) * 0.8,
                      "val_loss": va, "val_mse_GPa2": va * var,
                      "val_mae_GPa": np.sqrt(va * var) * 0.8, "lr": 1e-3, "epoch_s": 1.0,
                      "data_wait_s": 0.1, "images_per_s": 500.0})
    if extra:
        t["train_mse_GPa2"] = 7.0
    return t


def test_training_history_png(tmp_path, rng):
    tables = [_history(rng), _history(rng, 25, var=81.0)]
    fig = plots.training_history(tables)
    ax1, ax2 = fig.axes
    assert ax1.get_ylabel() == "mean squared error (GPa²)"
    assert ax2.get_ylabel() == "mean absolute error (GPa)"
    assert ax1.get_xlabel() == "epoch (-)"
    # the training MSE is train_loss times the target variance (val_mse / val_loss)
    line = ax1.get_lines()[0]
    np.testing.assert_allclose(line.get_ydata(), tables[0]["train_loss"] * 100.0)
    star = [ln for ln in ax1.get_lines() if ln.get_marker() == "*"][0]
    assert star.get_xdata()[0] == tables[0]["epoch"][tables[0]["val_mse_GPa2"].idxmin()]
    assert_png(png(fig, tmp_path / "h.png"), plots.FIGSIZE["double"])
    # an explicit training MSE column wins
    fig = plots.training_history([_history(rng, extra=True)])
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), 7.0)
    with pytest.raises(InputError, match="val_mse_GPa2"):
        plots.training_history([_history(rng).drop(columns="val_mse_GPa2")])


def _predictions(rng, n=200):
    y = rng.uniform(10, 60, n)
    mean = y + rng.normal(0, 3, n)
    split = np.array(["train"] * (n // 2) + ["val"] * (n // 4) + ["test"] * (n - n // 2 - n // 4))
    return pd.DataFrame({"index": np.arange(n), "split": split, "y": y, "mean": mean,
                         "std": 1.0, "lo": mean - 5, "hi": mean + 5})


def test_predicted_vs_measured_png(tmp_path, rng):
    df = _predictions(rng)
    fig = plots.predicted_vs_measured(df, quantity="E_GPa")
    ax_tr, ax_te = fig.axes
    assert ax_te.get_xlabel() == "measured E (GPa)"
    te = df[df["split"] == "test"]
    r2 = r2_score(te["y"], te["mean"])
    labels = [t.get_text() for t in ax_te.get_legend().get_texts()]
    assert any(f"R² = {r2:.3f}" in t and f"N={len(te)}" in t for t in labels)
    assert any("90% conformal interval" in t for t in labels)
    assert ax_te.containers  # error bars on the test panel only
    assert not ax_tr.containers
    assert_png(png(fig, tmp_path / "s.png"), plots.FIGSIZE["double"])


def test_example_crops_png(tmp_path, rng):
    images = make_images(rng, 200)
    df = _predictions(rng)
    fig = plots.example_crops(images, df, pixel_size_nm=PIXEL_NM, n=12, seed=3)
    img_axes = [ax for ax in fig.axes if ax.images and ax.get_title()]
    assert len(img_axes) == 12
    chosen = learning.pick_examples(df, 12, 3)
    assert set(chosen["split"]) == {"test"}
    titles = "\n".join(ax.get_title() for ax in img_axes)
    for r in chosen.itertuples():
        assert f"#{r.index}: measured {r.y:.3g} GPa" in titles
    assert "± 5 GPa" in titles  # half of the 10 GPa interval
    # crops drawn in um: 32 px at 40 nm = 1.28 um
    assert img_axes[0].images[0].get_extent() == pytest.approx([0, 1.28, 1.28, 0])
    np.testing.assert_array_equal(img_axes[0].images[0].get_array(),
                                  images[chosen["index"].min()])
    assert "eta" in fig.axes[-1].get_ylabel()  # colourbar
    assert_png(png(fig, tmp_path / "c.png"), plots.CROPS_FIGSIZE)


# --------------------------------------------------------------------------
# rule script
# --------------------------------------------------------------------------
def test_evaluate_model_script(tmp_path, rng, fake_train):
    path = make_dataset(tmp_path, rng, n=80)
    ck = members(tmp_path, offsets=(-1.0, 1.0))
    metrics = []
    for i in range(2):
        m = tmp_path / f"m{i}" / "metrics.csv"
        _history(rng).to_csv(m, index=False)
        metrics.append(str(m))
    out = tmp_path / "out"
    outputs = {"summary": str(out / "summary.json"), "predictions": str(out / "pred.csv"),
               "fig_history": str(out / "history.png"), "fig_scatter": str(out / "scatter.png"),
               "fig_crops": str(out / "crops.png")}
    run_script("evaluate_model", {
        "input": {"dataset": str(path), "checkpoints": [str(c) for c in ck],
                  "metrics": metrics},
        "output": outputs,
        "params": {"target": "E_GPa", "split": "random", "level": 0.9, "device": "cpu",
                   "mc_samples": 0},
        "log": [str(tmp_path / "log.txt")]}, tmp_path)
    summary = json.loads((out / "summary.json").read_text())
    pred = pd.read_csv(out / "pred.csv")
    assert summary["target"] == "E_GPa" and summary["n_members"] == 2
    assert set(summary["metrics"]) == {"train", "val", "test"}
    te = pred[pred["split"] == "test"]
    assert summary["metrics"]["test"]["ensemble"]["MAE"] == pytest.approx(
        mean_absolute_error(te["y"], te["mean"]))
    assert summary["interval"]["conformal"]["coverage_test"] == pytest.approx(
        ((te["lo"] <= te["y"]) & (te["y"] <= te["hi"])).mean())
    np.testing.assert_allclose(pred["std"], np.std([-1.0, 1.0], ddof=1), rtol=1e-4)
    for name, size in (("history", plots.FIGSIZE["double"]),
                       ("scatter", plots.FIGSIZE["double"]), ("crops", plots.CROPS_FIGSIZE)):
        assert_png(np.asarray(Image.open(out / f"{name}.png").convert("L"), float), size)
    assert not list(out.glob(".*tmp*"))  # atomic writers left nothing behind


# --------------------------------------------------------------------------
# with the real training module (tiny network, 2 epochs)
# --------------------------------------------------------------------------
def test_with_real_trained_members(tmp_path):
    train = pytest.importorskip("microprop.learning")
    path = tmp_path / "ds.h5"
    virtual.write_synthetic_dataset(path, n=60, size=32, seed=0)
    small = {"stem_channels": 8, "stage_channels": (8, 16, 16), "hidden": 32, "dropout": 0.4}
    for m in range(2):
        train.train(path, "E_GPa", tmp_path / f"m{m}", epochs=2, batch_size=16, device="cpu",
                    arch_kwargs=small, member=m, log_every=0, lr=1e-3, num_threads=1)
    ck = [tmp_path / f"m{m}" / "best.pt" for m in range(2)]
    metrics = [str(tmp_path / f"m{m}" / "metrics.csv") for m in range(2)]
    out = tmp_path / "out"
    outputs = {k: str(out / f"{k}.{ext}") for k, ext in (
        ("summary", "json"), ("predictions", "csv"), ("fig_history", "png"),
        ("fig_scatter", "png"), ("fig_crops", "png"))}
    run_script("evaluate_model", {
        "input": {"dataset": str(path), "checkpoints": [str(c) for c in ck], "metrics": metrics},
        "output": outputs,
        "params": {"target": "E_GPa", "split": "random", "level": 0.9, "device": "cpu",
                   "mc_samples": 0}}, tmp_path)
    pred = pd.read_csv(out / "predictions.csv").sort_values("index")
    with h5py.File(path, "r") as fh:
        images = fh["images"][...]
    own = []
    for c in ck:  # each member on its own, through the training module
        model, meta = train.load_model(c, "cpu")
        own.append(train.predict(model, meta, images, "cpu"))
    own = np.column_stack(own)
    np.testing.assert_allclose(pred["mean"], own.mean(axis=1), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(pred["std"], own.std(axis=1, ddof=1), rtol=1e-4, atol=1e-4)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_members"] == 2 and summary["target"] == "E_GPa"
    # training MSE in GPa^2 = standardised train_loss * target_std^2
    hist = pd.read_csv(metrics[0])
    fig = plots.training_history([hist])
    _, meta = train.load_model(ck[0], "cpu")
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(),
                               hist["train_loss"] * meta["target_std"] ** 2, rtol=1e-6)
    # MC dropout of one member: distinct samples, seeded
    mc, _ = learning.ensemble_predict(ck[:1], images[:10], device="cpu", mc_samples=4)
    assert mc.shape == (10, 4) and np.all(mc.std(axis=1) > 0)
    mc2, _ = learning.ensemble_predict(ck[:1], images[:10], device="cpu", mc_samples=4)
    np.testing.assert_array_equal(mc, mc2)
