"""Tests of the ceiling, the bootstrap spread and the block-conformal interval (microprop.learning).

Known answers: generated indents whose property is a known function of the
zone fractions plus noise of known variance (the generator's own forward
model), a linear model of known population R^2, and residuals whose scale
varies from block to block.
"""
import json

import numpy as np
import pandas as pd
import pytest
from microprop import learning, physics
from microprop.errors import InputError
from microprop.phases import PHASE_PROPERTIES, PHASES
from microprop.physics import _indentation as forward
from scipy import stats
from script_runner import run_script

NOISE_REL = 0.05


def dirichlet_fractions(rng, n, alpha=0.6):
    """Zone fractions of ``n`` indents over the five cement phases (rows sum to 1)."""
    return rng.dirichlet(np.full(len(PHASES), alpha), size=n)


def forward_draws(rng, fractions, target="E_GPa", noise_rel=NOISE_REL):
    """The generator's measured property for given zone fractions (its own code)."""
    E_ph, H_ph = forward._draw_phase_values(rng, PHASE_PROPERTIES, fractions.shape[0])
    E_true = physics.hill_average(fractions, E_ph)
    H_true = physics.hill_average(fractions, H_ph)
    E, H, _, _ = forward._measure(rng, E_true, H_true, np.ones(fractions.shape[0]), noise_rel)
    return E if target == "E_GPa" else H


# --------------------------------------------------------------------------
# the noise-only ceiling
# --------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["E_GPa", "H_GPa"])
def test_generator_moments_of_single_phase_indents_are_the_truncated_normals(target):
    """One phase per zone: E[y|f] and Var(y|f) are the truncated normal's moments
    with the multiplicative noise: (1 + s^2) var + s^2 mean^2."""
    q = target[0]
    f = np.eye(len(PHASES))
    mean, var = learning.generator_moments(f, PHASE_PROPERTIES, NOISE_REL, target,
                                           n_draws=40000, seed=1)
    mu = PHASE_PROPERTIES[f"{q}_mean_GPa"].to_numpy()
    sd = PHASE_PROPERTIES[f"{q}_std_GPa"].to_numpy()
    a = (physics.TRUNCATE_FRACTION * mu - mu) / sd
    m_t, v_t = stats.truncnorm.stats(a, np.inf, loc=mu, scale=sd, moments="mv")
    np.testing.assert_allclose(mean, m_t, rtol=0.01)
    np.testing.assert_allclose(var, (1 + NOISE_REL ** 2) * v_t + NOISE_REL ** 2 * m_t ** 2,
                               rtol=0.03)


@pytest.mark.parametrize("target", ["E_GPa", "H_GPa"])
def test_noise_ceiling_is_one_minus_noise_over_target_variance(rng, target):
    """y = h(f, p)(1 + e) drawn by the generator's code: the noise-only ceiling
    equals 1 - mean (y - E[y|f])^2 / var(y) within sampling error, and
    boosting on the fractions approaches it."""
    n = 3000
    f = dirichlet_fractions(rng, n)
    y = forward_draws(rng, f, target)
    mean, var = learning.generator_moments(f, PHASE_PROPERTIES, NOISE_REL, target, seed=2)
    ceiling = learning.noise_ceiling(y, var)
    realised = 1 - np.mean((y - mean) ** 2) / np.var(y)
    assert 0.3 < ceiling < 0.95
    assert ceiling == pytest.approx(realised, abs=0.025)
    # attainable: fitted on 1500 indents, scored on 1500 others
    model, info = learning.fit_attainable(f[:1500], y[:1500], seed=0, cv=3, max_iter=150)
    pred = model.predict(f[1500:])
    r2 = 1 - np.sum((y[1500:] - pred) ** 2) / np.sum((y[1500:] - y[1500:].mean()) ** 2)
    ceiling_test = learning.noise_ceiling(y[1500:], var[1500:])
    assert ceiling_test - 0.06 < r2 <= ceiling_test + 0.03
    assert 10 <= info["n_iter"] <= 150 and info["cv_r2"] == pytest.approx(r2, abs=0.05)


def test_noise_ceiling_of_noise_free_fractions_is_one():
    """No phase scatter and no measurement noise: y is a function of f, ceiling 1."""
    pp = PHASE_PROPERTIES.copy()
    pp["E_std_GPa"] = 0.0
    f = dirichlet_fractions(np.random.default_rng(0), 50)
    mean, var = learning.generator_moments(f, pp, 0.0, "E_GPa", n_draws=10)
    np.testing.assert_allclose(var, 0.0, atol=1e-9)
    np.testing.assert_allclose(mean, physics.hill_average(f, pp["E_mean_GPa"].to_numpy()))
    assert learning.noise_ceiling(mean, var) == 1.0


def test_ceiling_table_on_generated_splits(rng):
    """Per target and split: the attainable model is scored on that split's test
    rows, near the noise-only ceiling; the predictions name the dataset rows."""
    n = 800
    f = dirichlet_fractions(rng, n)
    y = {"E_GPa": forward_draws(rng, f, "E_GPa")}
    mom = {"E_GPa": learning.generator_moments(f, PHASE_PROPERTIES, NOISE_REL, "E_GPa")}
    perm = rng.permutation(n)
    parts = {"random": {"train": perm[:500], "val": perm[500:600], "test": perm[600:]},
             "blocked": {"train": np.arange(500), "val": np.arange(500, 600),
                         "test": np.arange(600, n)}}
    table, preds = learning.ceiling_table(y, parts, f, {"E_GPa": mom["E_GPa"][0]},
                                          {"E_GPa": mom["E_GPa"][1]}, seed=0, cv=3,
                                          max_iter=120)
    assert list(table.columns) == list(learning.CEILING_COLUMNS) and len(table) == 2
    for _, r in table.iterrows():
        assert r.n_fit == 600 and r.n_test == 200
        assert r.R2_noise_ceiling - 0.12 < r.R2_attainable < r.R2_noise_ceiling + 0.1
        assert abs(r.R2_oracle - r.R2_noise_ceiling) < 0.1
    sub = preds[preds.split == "random"]
    np.testing.assert_array_equal(np.sort(sub["index"]), np.sort(perm[600:]))
    np.testing.assert_allclose(sub["y"], y["E_GPa"][sub["index"]])


# --------------------------------------------------------------------------
# truth files
# --------------------------------------------------------------------------
def write_truth_dir(folder, f, noise_rel=NOISE_REL, batch="b01"):
    folder.mkdir(parents=True)
    t = pd.DataFrame({"batch": batch, "indent": np.arange(1, len(f) + 1)})
    for k, p in enumerate(PHASES):
        t[f"f_{p}"] = f[:, k]
    t.to_csv(folder / "indents.csv", index=False)
    PHASE_PROPERTIES.to_csv(folder / "phase_properties.csv")
    (folder / "truth.json").write_text(json.dumps({"parameters": {"noise_rel": noise_rel}}))
    return t


def test_read_generator_from_truth_folder_and_simulated_note(tmp_path):
    write_truth_dir(tmp_path / "A1", np.eye(5), noise_rel=0.07)
    pp, noise = learning.read_generator(tmp_path / "A1")
    assert noise == 0.07 and list(pp.index) == list(PHASES)
    np.testing.assert_allclose(pp["E_mean_GPa"], PHASE_PROPERTIES["E_mean_GPa"])
    note = tmp_path / "v01_SIMULATED.json"
    note.write_text(json.dumps({"parameters": {"noise_rel": 0.05}, "phase_properties":
                                PHASE_PROPERTIES.reset_index().to_dict(orient="records")}))
    pp2, noise2 = learning.read_generator(note)
    assert noise2 == 0.05
    pd.testing.assert_frame_equal(pp2, pp)
    note.write_text(json.dumps({"parameters": {}}))
    with pytest.raises(InputError, match="noise_rel"):
        learning.read_generator(note)


def test_truth_errors_name_file_and_column(tmp_path):
    t = write_truth_dir(tmp_path / "A1", np.eye(5))
    path = tmp_path / "A1" / "indents.csv"
    t.drop(columns=["f_CH"]).to_csv(path, index=False)
    with pytest.raises(InputError, match=r"indents\.csv.*f_CH"):
        learning.read_truth_indents([path], ["A1"], PHASES)
    t.to_csv(path, index=False)
    truth = learning.read_truth_indents([path], ["A1"], PHASES)
    samples = pd.DataFrame({"area": "A1", "batch": "b01", "indent": [2, 9]})
    with pytest.raises(InputError, match=r"indents\.csv.*no truth row.*'b01', 9"):
        learning.align_truth(samples, truth, PHASES)
    f, src = learning.align_truth(samples.iloc[:1], truth, PHASES, return_source=True)
    np.testing.assert_array_equal(f, np.eye(5)[[1]])
    assert src[0] == str(path)


def test_learning_ceiling_script(tmp_path, rng):
    """The rule script on a generated dataset whose truth folder it reads."""
    import h5py

    n = 300
    f = dirichlet_fractions(rng, n)
    write_truth_dir(tmp_path / "truth" / "A1", f)
    e = forward_draws(rng, f, "E_GPa")
    ds = tmp_path / "dataset.h5"
    perm = rng.permutation(n)
    with h5py.File(ds, "w") as fh:
        fh.create_dataset("images", data=np.zeros((n, 4, 4), np.float32))
        fh.create_dataset("targets/E_GPa", data=e.astype(np.float32))
        fh.create_dataset("targets/H_GPa", data=(e / 30).astype(np.float32))
        for k, v in (("specimen", "syn"), ("area", "A1"), ("batch", "b01")):
            fh.create_dataset(f"meta/{k}", data=np.array([v] * n, dtype=object),
                              dtype=h5py.string_dtype())
        fh.create_dataset("meta/indent", data=np.arange(1, n + 1))
        fh.create_dataset("meta/x_um", data=np.zeros(n))
        fh.create_dataset("meta/y_um", data=np.zeros(n))
        for part, sl in (("train", slice(0, 200)), ("val", slice(200, 250)), ("test", slice(250, n))):
            fh.create_dataset(f"splits/random/{part}", data=np.sort(perm[sl]).astype(np.int64))
    out = tmp_path / "ceiling.csv"
    run_script("learning_ceiling", {
        "input": {"dataset": str(ds), "truth": [str(tmp_path / "truth" / "A1")],
                  "generator": [str(tmp_path / "truth" / "A1")]},
        "output": {"table": str(out), "predictions": str(tmp_path / "ceiling_predictions.csv")},
        "params": {"areas": ["A1"], "targets": ["E_GPa"], "splits": ["random"], "seed": 0,
                   "n_draws": 2000, "max_iter": 60},
    }, tmp_path)
    table = pd.read_csv(out)
    assert len(table) == 1 and 0.3 < table.R2_noise_ceiling[0] < 0.95
    assert len(pd.read_csv(tmp_path / "ceiling_predictions.csv")) == 50


# --------------------------------------------------------------------------
# bootstrap
# --------------------------------------------------------------------------
def test_bootstrap_interval_contains_the_true_r2_about_95_percent(rng):
    """A known linear model y = 2 x + N(0, 1), x ~ N(0, 1): the population R^2 of
    its predictor 2 x is 4 / 5. The 95 % interval over 200 test crops holds it in
    roughly 95 % of 150 repeats."""
    hits, n, true_r2 = 0, 200, 0.8
    for k in range(150):
        x = rng.normal(size=n)
        y = 2 * x + rng.normal(size=n)
        w = learning.bootstrap_weights(n, n_boot=400, seed=k)
        lo, hi = learning.percentile_interval(learning.bootstrap_metrics(y, 2 * x, w)["R2"])
        hits += lo <= true_r2 <= hi
    assert 0.87 <= hits / 150 <= 0.995


def test_bootstrap_intervals_shrink_with_n(rng):
    widths = {}
    for n in (100, 1600):
        x = rng.normal(size=n)
        y = 2 * x + rng.normal(size=n)
        w = learning.bootstrap_weights(n, n_boot=1000, seed=1)
        b = learning.bootstrap_metrics(y, 2 * x, w)
        widths[n] = {m: np.subtract(*learning.percentile_interval(b[m])[::-1])
                     for m in ("R2", "MAE")}
        assert b["MAE"].mean() == pytest.approx(np.mean(np.abs(y - 2 * x)), rel=0.02)
    for m in ("R2", "MAE"):
        assert 2.5 < widths[100][m] / widths[1600][m] < 6.5      # ~ sqrt(16) = 4


def test_block_bootstrap_draws_whole_blocks_and_is_wider_for_correlated_blocks(rng):
    """Blocks sharing an offset: resampling blocks keeps each block whole and
    gives a wider interval than resampling crops."""
    m, per = 12, 20
    blocks = np.repeat(np.arange(m), per)
    w = learning.bootstrap_weights(blocks.size, groups=blocks, n_boot=300, seed=0)
    for row in w[:20]:
        for b in range(m):
            assert np.unique(row[blocks == b]).size == 1
    x = rng.normal(size=blocks.size)
    y = x + rng.normal(0, 1.0, m)[blocks] + rng.normal(0, 0.3, blocks.size)
    wc = learning.bootstrap_weights(blocks.size, n_boot=300, seed=0)
    width = {k: np.subtract(*learning.percentile_interval(
        learning.bootstrap_metrics(y, x, ww)["MAE"])[::-1]) for k, ww in (("block", w), ("crop", wc))}
    assert width["block"] > 1.5 * width["crop"]
    cov = learning.bootstrap_coverage(y, x - 1, x + 1, w)
    assert cov.shape == (300,) and ((0 <= cov) & (cov <= 1)).all()


def test_member_spread():
    s = learning.member_spread([0.6, 0.62, 0.58])
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.6) and s["sd"] == pytest.approx(0.02)
    assert (s["min"], s["max"]) == (0.58, 0.62)
    assert np.isnan(learning.member_spread([0.5])["sd"])


# --------------------------------------------------------------------------
# block-conformal intervals
# --------------------------------------------------------------------------
def test_block_conformal_holds_where_test_blocks_are_harder(rng):
    """Residual scales vary from block to block (log-normal, sd 0.5). Test blocks
    drawn from the hard end (scale e^0.5, the 84th percentile): the pooled
    split-conformal 90 % interval under-covers them, the block-conformal one
    (9 validation blocks of 25 crops) covers at least 90 %."""
    tau, m_val, per = 0.5, 9, 25
    pooled, block = [], []
    for _ in range(200):
        scale_val = np.exp(tau * rng.normal(size=m_val))
        blocks = np.repeat(np.arange(m_val), per)
        res_val = rng.normal(size=blocks.size) * scale_val[blocks]
        res_test = rng.normal(size=6 * per) * np.exp(tau * 1.0)
        q_pool, _ = learning.conformal_quantile(np.abs(res_val), 0.9)
        q_block, info = learning.block_conformal_quantile(np.abs(res_val), blocks, 0.9)
        assert info["m"] == m_val and info["q_pooled"] == q_pool and q_block >= q_pool
        pooled.append(np.mean(np.abs(res_test) <= q_pool))
        block.append(np.mean(np.abs(res_test) <= q_block))
    assert np.mean(pooled) < 0.87
    assert np.mean(block) >= 0.9


def test_block_conformal_quantile_known_answer_and_interval():
    """Three blocks whose scores are one pattern scaled by 1, 10 and 0.5: the
    difficulties are the block medians (5.5, 55, 2.75), the unit quantile the
    28th smallest of the 30 de-scaled scores (10 / 5.5), and q their product
    with the k-th smallest difficulty, k = ceil((m + 1) confidence), the
    hardest block when k > m."""
    scores = np.r_[np.arange(1, 11), 10 * np.arange(1, 11), 0.5 * np.arange(1, 11)]
    blocks = np.repeat([7, 3, 5], 10)
    q, info = learning.block_conformal_quantile(scores, blocks, level=0.9)
    assert info["block_scales"] == [2.75, 5.5, 55.0] and info["k"] == 3
    assert info["q_unit"] == pytest.approx(10 / 5.5) and q == pytest.approx(100.0)
    assert info["confidence_achieved"] == pytest.approx(0.75)
    q, info = learning.block_conformal_quantile(scores, blocks, level=0.9, confidence=0.5)
    assert q == pytest.approx(10.0) and info["k"] == 2
    # a block of fewer than min_block crops takes the pooled median and is not ranked
    q, info = learning.block_conformal_quantile(np.r_[scores, 1000.0], np.r_[blocks, 9],
                                                level=0.9)
    assert info["m"] == 3 and info["block_scales"] == [2.75, 5.5, 55.0]
    mean = np.zeros(30)
    lo, hi, pinfo = learning.prediction_interval(mean, np.ones(30), scores, mean, np.ones(30),
                                                 level=0.9, floor=1.0, blocks_cal=blocks)
    assert pinfo["method"] == "block" and pinfo["q"] == pytest.approx(100.0)
    assert pinfo["m_blocks"] == 3
    np.testing.assert_allclose(hi, 100.0)
    with pytest.raises(InputError, match="block ids"):
        learning.block_conformal_quantile(scores, blocks[:5])


# --------------------------------------------------------------------------
# the summary table
# --------------------------------------------------------------------------
def _summary_inputs(rng, n=120):
    idx = np.arange(n)
    y = rng.normal(50, 10, n)
    ladder_rows, lpred = [], []
    for model, noise in (("table", 8.0), ("boosting", 5.0)):
        p = y + rng.normal(0, noise, n)
        r2 = 1 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2)
        ladder_rows.append({"model": model, "target": "E_GPa", "split": "blocked",
                            "MSE": np.mean((y - p) ** 2), "MAE": np.mean(np.abs(y - p)),
                            "R2": r2, "n_test": n})
        lpred.append(pd.DataFrame({"model": model, "target": "E_GPa", "split": "blocked",
                                   "index": idx, "y": y, "pred": p}))
    mean = y + rng.normal(0, 4.0, n)
    r2 = 1 - np.sum((y - mean) ** 2) / np.sum((y - y.mean()) ** 2)
    summary = {"target": "E_GPa", "split_scheme": "blocked", "level": 0.9, "n_predictions": 3,
               "metrics": {"test": {"ensemble": {"MSE": np.mean((y - mean) ** 2),
                                                 "MAE": np.mean(np.abs(y - mean)), "R2": r2,
                                                 "n": n},
                                    "members": [{"R2": r2 - 0.02}, {"R2": r2}, {"R2": r2 + 0.03}]}},
               "interval": {"conformal": {"method": "block", "coverage_test": 0.9,
                                          "coverage_test_ci95": [0.83, 0.94],
                                          "mean_width_test": 13.0},
                            "conformal_pooled": {"coverage_test": 0.85, "mean_width_test": 11.0}}}
    preds = pd.DataFrame({"index": idx, "split": "test", "y": y, "mean": mean,
                          "lo": mean - 6.6, "hi": mean + 6.6})
    ceiling = pd.DataFrame([{"target": "E_GPa", "split": "blocked", "R2_attainable": 0.85,
                             "R2_noise_ceiling": 0.86, "R2_oracle": 0.84}])
    att = y + rng.normal(0, 3.9, n)
    cpred = pd.DataFrame({"target": "E_GPa", "split": "blocked", "index": idx, "y": y,
                          "attainable": att})
    blocks = idx // 20
    return pd.DataFrame(ladder_rows), pd.concat(lpred), [(summary, preds)], ceiling, cpred, blocks


def test_summary_table_intervals_ceiling_and_members(rng):
    ladder, lpred, resnet, ceiling, cpred, blocks = _summary_inputs(rng)
    t = learning.summary_table(ladder, lpred, resnet, ceiling, cpred, blocks=blocks, n_boot=500)
    assert list(t.columns) == list(learning.SUMMARY_COLUMNS)
    assert set(t.model) == {"table", "boosting", "resnet (x3)", learning.ATTAINABLE}
    assert (t.bootstrap_unit == "block").all() and (t.n_units == 6).all()
    assert ((t.R2_ci95_lo <= t.R2) & (t.R2 <= t.R2_ci95_hi)).all()
    assert ((t.MAE_ci95_lo <= t.MAE) & (t.MAE <= t.MAE_ci95_hi)).all()
    np.testing.assert_allclose(t.frac_of_attainable, t.R2 / 0.85)
    assert (t.R2_noise_ceiling == 0.86).all()
    res = t[t.model == "resnet (x3)"].iloc[0]
    assert res.n_members == 3 and res.members_R2_max - res.members_R2_min == pytest.approx(0.05)
    assert res.coverage_ci95_lo <= res.coverage <= res.coverage_ci95_hi
    assert (res.interval_method, res.coverage_pooled) == ("block", 0.85)
    # no truth: the ceiling columns are NaN, the rest is there
    t2 = learning.summary_table(ladder, lpred, resnet, blocks=blocks, n_boot=200)
    assert len(t2) == 3 and t2.R2_attainable.isna().all() and t2.frac_of_attainable.isna().all()
    assert t2.R2_ci95_lo.notna().all()


def test_learning_summary_script_writes_table_and_figure(tmp_path, rng):
    import h5py
    from PIL import Image

    ladder, lpred, resnet, ceiling, cpred, blocks = _summary_inputs(rng)
    files = {}
    for name, df in (("ladder", ladder), ("ladder_predictions", lpred), ("ceiling", ceiling),
                     ("ceiling_predictions", cpred), ("predictions", resnet[0][1])):
        files[name] = str(tmp_path / f"{name}.csv")
        df.to_csv(files[name], index=False)
    (tmp_path / "summary.json").write_text(json.dumps(resnet[0][0]))
    ds = tmp_path / "dataset.h5"
    with h5py.File(ds, "w") as fh:
        fh.create_dataset("meta/block", data=blocks)
    out = {"table": str(tmp_path / "summary.csv"), "fig": str(tmp_path / "summary.png")}
    run_script("learning_summary", {
        "input": {"ladder": files["ladder"], "ladder_predictions": files["ladder_predictions"],
                  "summaries": [str(tmp_path / "summary.json")],
                  "predictions": [files["predictions"]], "dataset": str(ds),
                  "ceiling": [files["ceiling"], files["ceiling_predictions"]]},
        "output": out, "params": {"n_boot": 300, "seed": 0}}, tmp_path)
    t = pd.read_csv(out["table"])
    assert len(t) == 4 and t.R2_attainable.notna().all()
    with Image.open(out["fig"]) as im:
        assert im.size[0] > 1000
