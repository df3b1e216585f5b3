"""Known-answer tests of microprop.stats."""
import numpy as np
import pandas as pd
import pytest
from microprop import io as mio
from microprop import stats  # noqa: E402
from microprop.errors import InputError
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

LIT_E = [26.5, 34.8, 52.0, 122.0]
SD_E = [3.0, 3.0, 5.0, 15.0]
FRACTIONS = [0.35, 0.30, 0.15, 0.20]
PHASES = ["LD-C-S-H", "HD-C-S-H", "CH", "ACC"]


def sample_mixture(rng, means, sds, fractions, n):
    counts = rng.multinomial(n, fractions)
    x = np.concatenate([rng.normal(m, s, k) for m, s, k in zip(means, sds, counts)])
    return rng.permutation(x)


def test_deconvolve_recovers_literature_mixture(rng):
    x = sample_mixture(rng, LIT_E, SD_E, FRACTIONS, 2000)
    table = stats.deconvolve(x, n_components=4, seed=0)
    assert list(table.columns) == ["component", "phase", "fraction", "mean", "std"]
    assert list(table["phase"]) == PHASES
    np.testing.assert_allclose(table["fraction"], FRACTIONS, atol=0.05)
    np.testing.assert_allclose(table["mean"], LIT_E, rtol=0.10)
    assert table["fraction"].sum() == pytest.approx(1.0)
    assert table.attrs["n"] == 2000


def test_deconvolve_names_shuffled_and_extra_components(rng):
    # H values: 5 components -> the one nearest no phase is "extra-<component>"
    ref = {"LD-C-S-H": 0.9, "HD-C-S-H": 1.2, "CH": 1.8, "ACC": 8.0}
    x = sample_mixture(rng, [0.3, 0.9, 1.4, 2.5, 8.0], [0.03, 0.05, 0.07, 0.12, 0.5],
                       [0.2, 0.3, 0.2, 0.15, 0.15], 3000)
    table = stats.deconvolve(x, n_components=5, seed=0, quantity="H_GPa", reference=ref)
    assert list(table["phase"]) == ["extra-0", "LD-C-S-H", "HD-C-S-H", "CH", "ACC"]
    assert np.all(np.diff(table["mean"]) > 0)


def test_name_components_uses_optimal_assignment():
    # greedy nearest naming would call both 30 and 33 "HD-C-S-H"-ish; optimal gives distinct names
    names = stats.name_components([24.0, 33.0, 60.0], {"LD-C-S-H": 26.5, "HD-C-S-H": 34.8,
                                                       "CH": 52.0, "ACC": 122.0})
    assert names == ["LD-C-S-H", "HD-C-S-H", "CH"]


def test_deconvolve_rejects_too_few_values():
    with pytest.raises(InputError, match="located.csv"):
        stats.deconvolve([1.0, 2.0, np.nan], n_components=4, what="located.csv")


def test_component_curves_integrate_to_one(rng):
    x = sample_mixture(rng, LIT_E, SD_E, FRACTIONS, 1000)
    table = stats.deconvolve(x, seed=0, n_init=2)
    grid = np.linspace(-50, 250, 20001)
    total = np.trapezoid(stats.component_curves(grid, table).sum(axis=0), grid)
    assert total == pytest.approx(1.0, abs=1e-3)


def test_bic_minimum_at_true_k(rng):
    x = sample_mixture(rng, [10.0, 20.0, 30.0], [1.0, 1.0, 1.0], [0.3, 0.3, 0.4], 1000)
    bic = stats.bic_table(x, k_range=range(1, 7), seed=0, n_init=2)
    assert list(bic["k"]) == [1, 2, 3, 4, 5, 6]
    assert bic.loc[bic["best"], "k"].tolist() == [3]
    assert bic["bic"].idxmin() == 2
    # BIC penalises more than AIC for N > e^2: BIC - AIC = p (ln N - 2), p = 3k - 1
    p = 3 * bic["k"] - 1
    np.testing.assert_allclose(bic["bic"] - bic["aic"], p * (np.log(1000) - 2), rtol=1e-9)


def test_hydration_reproduces_the_seed_papers_worked_example():
    """Seed paper, eqs. 9-10: V_h 0.90 (LD + HD + CH), V_a 0.10, w/c 0.4 -> alpha 0.8036, Mr 0.4253."""
    fr = {"LD-C-S-H": 0.40, "HD-C-S-H": 0.35, "CH": 0.15, "ACC": 0.10}
    out = stats.hydration(fr, 0.4)
    assert out["V_h"] == pytest.approx(0.90) and out["V_a"] == pytest.approx(0.10) and out["V"] == 2.2
    assert round(out["alpha"], 4) == 0.8036
    assert round(out["Mr_model"], 4) == 0.4253
    assert out["Mr_measured"] == pytest.approx(0.40 / 0.75)
    # limits: no clinker left -> fully hydrated; no products -> refused
    assert stats.hydration({"ACC": 0.0, "CH": 1.0}, 0.45)["alpha"] == pytest.approx(1.0)
    # eq. 9 by hand for another split: (0.6/2.2) / (0.6/2.2 + 0.4)
    assert stats.hydration({"LD-C-S-H": 0.6, "ACC": 0.4}, 0.45)["alpha"] == pytest.approx(
        (0.6 / 2.2) / (0.6 / 2.2 + 0.4))


def test_hydration_validates():
    with pytest.raises(InputError, match="ACC"):
        stats.hydration({"CH": 0.1}, 0.5)
    with pytest.raises(InputError, match="hydration product"):
        stats.hydration({"ACC": 0.1}, 0.5)
    with pytest.raises(InputError, match="w/c"):
        stats.hydration({"ACC": 0.1, "CH": 0.9}, 0.0)
    with pytest.raises(InputError, match="expected 0..1"):
        stats.hydration({"ACC": 1.5, "CH": 0.1}, 0.4)
    assert "outside the 0.35-0.6 range" in " ".join(stats.hydration({"ACC": 0.1, "CH": 0.9}, 0.8)["notes"])


def test_metrics_match_sklearn_on_hand_example():
    y = [3.0, -0.5, 2.0, 7.0]
    p = [2.5, 0.0, 2.0, 8.0]
    m = stats.metrics(y, p)
    assert m["MSE"] == pytest.approx(0.375)  # (0.25 + 0.25 + 0 + 1) / 4
    assert m["MAE"] == pytest.approx(0.5)
    assert m["R2"] == pytest.approx(0.9486081370449679)
    assert m["MSE"] == mean_squared_error(y, p)
    assert m["MAE"] == mean_absolute_error(y, p)
    assert m["R2"] == r2_score(y, p)


def test_table_model_linear_relation(rng):
    g = rng.uniform(0.1, 0.2, 2000)
    e = 10 + 300 * g + rng.normal(0, 1.0, g.size)  # E in 40..70 GPa
    res = stats.table_model(g, e, n_bins=20, seed=0)
    assert res["n_train"] == 1600 and res["n_test"] == 400
    assert res["metrics"]["R2"] > 0.9
    # equal-count bins: each holds ~1600/20 samples
    assert res["table"]["n"].sum() == 1600
    assert res["table"]["n"].min() >= 79 and res["table"]["n"].max() <= 81
    lin = stats.linear_model(g, e, seed=0)
    assert lin["slope"] == pytest.approx(300, rel=0.05)
    assert lin["metrics"]["R2"] > 0.9
    np.testing.assert_array_equal(lin["test_index"], res["test_index"])


def test_table_model_pure_noise(rng):
    g = rng.uniform(0, 1, 2000)
    e = rng.normal(30, 5, g.size)
    assert stats.table_model(g, e, n_bins=10, seed=1)["metrics"]["R2"] < 0.1
    assert stats.linear_model(g, e, seed=1)["metrics"]["R2"] < 0.1


def test_table_model_lookup_known_bins():
    g = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    y = np.array([1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0])
    t = stats.table_model_fit(g, y, n_bins=4)
    np.testing.assert_allclose(t["y_mean"], [1, 2, 3, 4])
    np.testing.assert_allclose(stats.table_model_predict(t, [-5, 0.5, 2.6, 4.9, 99, np.nan]),
                               [1, 1, 2, 3, 4, np.nan])
    # uniform bins with an empty bin borrow the nearest filled bin
    t2 = stats.table_model_fit([0.0, 0.1, 0.9, 1.0], [1.0, 1.0, 5.0, 5.0], n_bins=5,
                               binning="uniform")
    assert t2["n"].tolist() == [2, 0, 0, 0, 2]
    np.testing.assert_allclose(t2["y_mean"], [1, 1, 1, 5, 5])


def test_explicit_split_and_bad_input():
    g = np.linspace(0, 1, 10)
    res = stats.linear_model(g, 2 * g, train_index=[0, 2, 4, 6, 8], test_index=[1, 3, 5, 7, 9])
    np.testing.assert_allclose(res["y_pred"], 2 * g[1::2])
    with pytest.raises(InputError, match="differ in length"):
        stats.linear_model(g, g[:5])
    with pytest.raises(InputError, match="binning"):
        stats.table_model_fit(g, g, binning="magic")


def test_crop_means_ignores_nan():
    crops = np.ones((3, 4, 4), np.float32)
    crops[1] *= 2
    crops[1, 0, 0] = np.nan
    crops[2] = np.nan
    out = stats.crop_means(crops)
    np.testing.assert_allclose(out[:2], [1.0, 2.0])
    assert np.isnan(out[2])


def test_phase_reference_means():
    e = stats.phase_reference_means("E_GPa")
    assert list(e) == PHASES and e["ACC"] == 122.0
    h = stats.phase_reference_means("H_GPa")
    assert list(h) == PHASES
    assert all(np.diff([h[p] for p in PHASES]) > 0)
    with pytest.raises(InputError):
        stats.phase_reference_means("depth_nm")


def test_deconvolve_escapes_kmeans_local_optimum():
    # on this sample, k-means starts alone merge LD/HD and split the clinker peak
    # (E means ~30, 53, 110, 131); the random starts of fit_gmm find the truth
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(m, s, k) for m, s, k in
                        zip(LIT_E, SD_E, [700, 600, 300, 400])])
    table = stats.deconvolve(x, seed=0)
    assert list(table["phase"]) == PHASES
    np.testing.assert_allclose(table["mean"], LIT_E, rtol=0.05)
    np.testing.assert_allclose(table["fraction"], [0.35, 0.30, 0.15, 0.20], atol=0.03)


# --- rule scripts, run by hand with --mock (as Snakemake would run them) ---

import json  # noqa: E402
from pathlib import Path  # noqa: E402

from script_runner import run_script  # noqa: E402


def test_deconvolve_script(tmp_path, rng):
    files = []
    for area, n in (("A1", 900), ("A2", 900)):
        counts = rng.multinomial(n, FRACTIONS)
        e = np.concatenate([rng.normal(m, s, k) for m, s, k in zip(LIT_E, SD_E, counts)])
        h = np.concatenate([rng.normal(m, s, k) for m, s, k in
                            zip([0.9, 1.2, 1.8, 8.0], [0.05, 0.07, 0.15, 0.8], counts)])
        df = pd.DataFrame({"batch": "b1", "indent": np.arange(1, n + 1), "x_um": 0.0,
                           "y_um": 0.0, "E_GPa": e, "H_GPa": h})
        f = tmp_path / "results" / "S" / area / "located" / "b1.csv"
        f.parent.mkdir(parents=True)
        df.to_csv(f, index=False)
        files.append(str(f))
    out = {k: str(tmp_path / "stats" / v) for k, v in dict(
        gmm_E="gmm_E_GPa.csv", gmm_H="gmm_H_GPa.csv", bic_E="bic_E_GPa.csv",
        fig_hist_E="hist_E.png", fig_hist_H="hist_H.png", fig_bic="bic.png").items()}
    job = {"input": {"located": files}, "output": out,
           "params": {"n_components": None, "k_max": 5, "seed": 0, "n_init": 3},
           "log": [str(tmp_path / "log.txt")]}
    run_script("deconvolve", job, tmp_path)
    gmm = pd.read_csv(out["gmm_E"])
    assert sorted(gmm["area"].unique()) == ["A1", "A2", "pooled"]
    pooled = gmm[gmm["area"] == "pooled"]
    assert list(pooled["phase"]) == PHASES
    np.testing.assert_allclose(pooled["fraction"], FRACTIONS, atol=0.05)
    assert (pooled["n"] == 1800).all()
    assert list(pd.read_csv(out["gmm_H"]).query("area == 'pooled'")["phase"]) == PHASES
    # the hydration rule, on the tables deconvolve wrote (cement phase set: 4 components by default)
    hyd_path = tmp_path / "stats" / "hydration.json"
    run_script("hydration", {"input": {"gmm_E": out["gmm_E"], "gmm_H": out["gmm_H"]},
                             "output": {"hydration": str(hyd_path)}, "params": {"w_c": 0.5},
                             "log": [str(tmp_path / "log_h.txt")]}, tmp_path)
    hyd = json.loads(hyd_path.read_text())
    f_acc = pooled["fraction"].iloc[3]
    v_h = pooled["fraction"].iloc[:3].sum()
    assert hyd["alpha"] == pytest.approx((v_h / 2.2) / (v_h / 2.2 + f_acc))  # eq. 9
    assert hyd["Mr_measured"] == pytest.approx(
        pooled["fraction"].iloc[0] / pooled["fraction"].iloc[:2].sum())
    assert set(hyd["per_area"]) == {"A1", "A2"}
    bic = pd.read_csv(out["bic_E"])
    assert list(bic["k"]) == [1, 2, 3, 4, 5] and bic["best"].sum() == 1
    # the BIC table is that of the joint (E, H) model the tables come from, with the k used
    assert (bic["model"] == "joint (E, H) mixture").all() and (bic["k_used"] == 4).all()
    import microprop.stats as st
    ref = st.bic_table(pd.concat([pd.read_csv(f) for f in files])[["E_GPa", "H_GPa"]].to_numpy(),
                       k_range=[4], seed=0)
    assert bic.loc[bic["k"] == 4, "bic"].iloc[0] == pytest.approx(ref["bic"].iloc[0], rel=1e-6)
    for k in ("fig_hist_E", "fig_hist_H", "fig_bic"):
        assert Path(out[k]).stat().st_size > 10_000


def test_baselines_script(tmp_path, rng):
    import h5py

    n, s = 400, 16
    grey = rng.uniform(0.1, 0.3, n)
    images = (grey[:, None, None] + rng.normal(0, 0.01, (n, s, s))).astype(np.float32)
    e = (10 + 200 * grey + rng.normal(0, 1, n)).astype(np.float32)
    h = rng.normal(1.0, 0.1, n).astype(np.float32)  # unrelated to grey
    path = tmp_path / "dataset.h5"
    with h5py.File(path, "w") as f:
        f["images"] = images
        f["targets/E_GPa"] = e
        f["targets/H_GPa"] = h
        idx = rng.permutation(n)
        f["splits/random/train"] = np.sort(idx[:280])
        f["splits/random/val"] = np.sort(idx[280:320])
        f["splits/random/test"] = np.sort(idx[320:])
        f.attrs["quantity"] = "eta"
    out = {"table": str(tmp_path / "t.csv"), "fig_table_model": str(tmp_path / "tE.png"),
           "fig_table_model_H": str(tmp_path / "tH.png"), "bins": str(tmp_path / "bins.csv")}
    run_script("baselines", {"input": {"dataset": str(path)}, "output": out,
                             "params": {"n_bins": 8, "seed": 0}}, tmp_path)
    t = pd.read_csv(out["table"]).set_index(["model", "target"])
    assert list(t.columns) == ["MSE", "MAE", "R2", "n_train", "n_test", "split"]
    assert (t["n_train"] == 320).all() and (t["n_test"] == 80).all()
    assert t.loc[("table", "E_GPa"), "R2"] > 0.9
    assert t.loc[("linear", "E_GPa"), "R2"] > 0.9
    assert t.loc[("table", "H_GPa"), "R2"] < 0.1
    bins = pd.read_csv(out["bins"])
    assert bins.groupby("target")["n"].sum().tolist() == [320, 320]
    assert Path(out["fig_table_model"]).stat().st_size > 10_000


def test_h_reference_follows_forward_model():
    from microprop import phases
    h = stats.phase_reference_means("H_GPa")
    for phase in PHASES:
        assert h[phase] == phases.PHASE_PROPERTIES.loc[phase, "H_mean_GPa"]


def test_joint_deconvolution_recovers_overlapping_phases():
    """Literature (E, H) phases whose E histograms overlap: the bivariate fit
    recovers fractions within 0.05 and means within 10 %, names them right,
    and its E and H marginals share phases and fractions."""
    from microprop.phases import PHASE_PROPERTIES as P

    phases = ["LD-C-S-H", "HD-C-S-H", "CH", "ACC"]
    frac = np.array([0.40, 0.27, 0.15, 0.18])
    rng = np.random.default_rng(3)
    lab = rng.choice(4, 4000, p=frac)
    E = rng.normal(P.loc[phases, "E_mean_GPa"].to_numpy()[lab], P.loc[phases, "E_std_GPa"].to_numpy()[lab])
    H = rng.normal(P.loc[phases, "H_mean_GPa"].to_numpy()[lab], P.loc[phases, "H_std_GPa"].to_numpy()[lab])
    table = stats.deconvolve_joint(E, H, n_components=4, seed=0, n_init=5)
    assert list(table.phase) == phases
    true_frac = np.bincount(lab, minlength=4) / lab.size
    np.testing.assert_allclose(table.fraction, true_frac, atol=0.05)
    np.testing.assert_allclose(table.E_mean, P.loc[phases, "E_mean_GPa"], rtol=0.10)
    np.testing.assert_allclose(table.H_mean, P.loc[phases, "H_mean_GPa"], rtol=0.10)
    mE, mH = stats.marginal(table, "E_GPa"), stats.marginal(table, "H_GPa")
    assert list(mE.phase) == list(mH.phase) and np.allclose(mE.fraction, mH.fraction)
    np.testing.assert_allclose(mH["mean"], table.H_mean)
    with pytest.raises(InputError):
        stats.deconvolve_joint(E[:10], H[:10])


def test_component_names_keep_the_order_of_the_means():
    """Means all shifted above the references: names must stay in order."""
    names = stats.name_components([46.0, 66.0, 89.0, 105.0], stats.phase_reference_means("E_GPa"))
    assert names == ["LD-C-S-H", "HD-C-S-H", "CH", "ACC"]


def test_gmm_tables_fractions_and_hydration_by_area(rng):
    counts = rng.multinomial(1200, FRACTIONS)
    e = np.concatenate([rng.normal(m, s, k) for m, s, k in zip(LIT_E, SD_E, counts)])
    data = pd.DataFrame({"E_GPa": e, "H_GPa": e / 30.0,
                         "area": np.where(np.arange(e.size) % 2, "A2", "A1")})
    data.loc[:3, "area"] = "tiny"  # too few indents for a mixture: left out with a warning
    t = stats.gmm_tables(data, "E_GPa", n_components=4, seed=0, n_init=2)
    assert list(t["area"].unique()) == ["pooled", "A1", "A2"]
    assert (t["method"] == "E_GPa only").all()
    assert (t.loc[t["area"] == "pooled", "n"] == 1200).all()
    fr = stats.mixture_fractions(t)
    assert list(fr) == sorted(PHASES) and sum(fr.values()) == pytest.approx(1.0)
    hyd = stats.hydration_by_area(t, t, 0.5)
    assert hyd["alpha"] == pytest.approx(stats.hydration(fr, 0.5)["alpha"])
    assert set(hyd["per_area"]) == {"A1", "A2"} and hyd["fractions_E"] == fr
    note = stats.hydration_or_note({"CH": 0.2}, 0.5)
    assert note["alpha"] is None and "ACC" in note["notes"][0]


def test_read_located_and_table_model_bins(tmp_path):
    files = []
    for area in ("A1", "A2"):
        f = tmp_path / "results" / "S" / area / "located" / "b1.csv"
        f.parent.mkdir(parents=True)
        pd.DataFrame({"batch": "b1", "indent": [1, 2], "E_GPa": [20.0, 30.0],
                      "H_GPa": [1.0, 1.1]}).to_csv(f, index=False)
        files.append(str(f))
    df = mio.read_located(files)
    assert df["area"].tolist() == ["A1", "A1", "A2", "A2"] and df["source"].tolist()[2] == files[1]
    assert mio.read_located(files, areas=["x", "y"])["area"].tolist() == ["x", "x", "y", "y"]
    with pytest.raises(InputError, match="one area per file"):
        mio.read_located(files, areas=["x"])
    with pytest.raises(InputError, match="no located-indent files"):
        mio.read_located([])
    bins = pd.DataFrame({"target": ["E_GPa", "E_GPa", "H_GPa"], "bin": [1, 0, 0],
                         "grey_lo": [0.5, 0.0, 0.0], "grey_hi": [1.0, 0.5, 1.0],
                         "y_mean": [30.0, 20.0, 1.0]})
    bins.to_csv(tmp_path / "bins.csv", index=False)
    b = stats.read_table_model_bins(tmp_path / "bins.csv", "E_GPa")
    assert b["bin"].tolist() == [0, 1] and b["y_mean"].tolist() == [20.0, 30.0]
    with pytest.raises(InputError, match="bins.csv: no table-model bins for target 'G'"):
        stats.read_table_model_bins(tmp_path / "bins.csv", "G")
