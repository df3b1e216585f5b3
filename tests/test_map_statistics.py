"""Table 1 from predictive distributions and joint (E, H) mixtures (microprop.learning,
rule map_statistics): generated maps and indents with known phase fractions."""
import json

import numpy as np
import pandas as pd
import pytest
from microprop import io as mio
from microprop import learning
from microprop.errors import InputError
from microprop.phases import DEFAULT_FRACTIONS, PHASE_PROPERTIES, PHASES, SOLID_PHASES
from PIL import Image
from scipy.ndimage import uniform_filter
from script_runner import run_script

FRACTIONS = np.array([DEFAULT_FRACTIONS[p] for p in SOLID_PHASES])
FRACTIONS = FRACTIONS / FRACTIONS.sum()

#: Four phases apart in E and H (GPa): a window's phase is resolvable from its value
SEPARATED = {"E": (np.array([20.0, 40.0, 70.0, 120.0]), np.array([3.0, 5.0, 8.0, 15.0])),
             "H": (np.array([0.8, 1.6, 3.0, 8.0]), np.array([0.1, 0.2, 0.4, 1.5]))}


def _window_weights(rng, ny, nx, shrink=0.5, block=3, neighbourhood=5):
    """Per window the probability of each phase at its centre, shape (ny, nx, 4).

    Phases in blocks of ``block`` windows (the demo's solid fractions); what
    a model sees is its window's phase mixed with the composition of the
    ``neighbourhood`` around it: ``(1 - shrink) * onehot + shrink * composition``.
    """
    lab = rng.choice(4, size=(ny // block + 1, nx // block + 1), p=FRACTIONS)
    lab = np.kron(lab, np.ones((block, block), int))[:ny, :nx]
    onehot = np.eye(4)[lab]
    comp = np.stack([uniform_filter(onehot[..., k], neighbourhood, mode="reflect")
                     for k in range(4)], axis=-1)
    return (1 - shrink) * onehot + shrink * comp


def _conditional(w, props):
    """Exact conditional mean and sd of E and H given the phase probabilities ``w``."""
    out = {}
    for q in "EH":
        mu, sd = props[q]
        m = w @ mu
        out[q] = (m, np.sqrt(np.maximum(w @ (sd ** 2 + mu ** 2) - m ** 2, 0.0)))
    return out


def _measure(rng, w, props):
    """One measurement per window: its phase drawn from ``w``, then E and H of that phase."""
    w = w.reshape(-1, 4)
    k = (rng.random(len(w))[:, None] > np.cumsum(w, axis=1)).sum(axis=1)
    return {q: props[q][0][k] + props[q][1][k] * rng.standard_normal(len(w)) for q in "EH"}


def _held_out(rng, n_y, n_x, props, spread_scale=0.5):
    """Predictions tables (evaluate_model layout) and intervals of held-out crops."""
    w = _window_weights(rng, n_y, n_x).reshape(-1, 4)
    y, cond = _measure(rng, w, props), _conditional(w, props)
    preds, intervals = {}, {}
    for q, t in (("E", "E_GPa"), ("H", "H_GPa")):
        m, sd = cond[q]
        n = len(m)
        preds[t] = pd.DataFrame({"index": np.arange(n), "split": np.where(np.arange(n) % 2, "val", "test"),
                                 "y": y[q], "mean": m, "std": sd * spread_scale})
        floor = learning.spread_floor(preds[t]["std"])
        q_, _ = learning.conformal_quantile(np.abs(y[q] - m) / np.maximum(preds[t]["std"], floor), 0.9)
        intervals[t] = {"q": q_, "floor": floor, "z": 1.6448536269514722}
    return preds, intervals


def _cement_pairs(rng, n):
    """(E, H) of the demo's four solid phases (bench_deconvolution's generator), and the labels."""
    pp = PHASE_PROPERTIES.loc[list(SOLID_PHASES)]
    lab = rng.choice(4, size=n, p=FRACTIONS)
    out = {}
    for q in "EH":
        mean = pp[f"{q}_mean_GPa"].to_numpy()
        sd = np.hypot(pp[f"{q}_std_GPa"].to_numpy(), 0.05 * mean)     # 5 % measurement noise
        v = rng.normal(mean[lab], sd[lab])
        low = v < 0.05 * mean[lab]
        while low.any():                                              # truncated at 5 % of the mean
            v[low] = rng.normal(mean[lab[low]], sd[lab[low]])
            low = v < 0.05 * mean[lab]
        out[q] = v
    return out["E"], out["H"], lab


# ------------------------------------------------------------------ known answers

def test_predictive_draws_recover_fractions_where_conditional_means_do_not():
    """A map of conditional means (scatter removed, shrunk toward the neighbours) gives
    wrong fractions; draws from the windows' predictive distributions recover them."""
    rng = np.random.default_rng(4)
    w = _window_weights(rng, 40, 60)
    truth = dict(zip(SOLID_PHASES, w.reshape(-1, 4).mean(axis=0)))
    cond = _conditional(w, SEPARATED)
    means = {"E_GPa": cond["E"][0], "H_GPa": cond["H"][0]}
    spreads = {"E_GPa": 0.5 * cond["E"][1], "H_GPa": 0.5 * cond["H"][1]}
    preds, intervals = _held_out(rng, 30, 40, SEPARATED)
    cal = learning.predictive_calibration(preds, intervals)
    sources = [{"source": "map", "values": "conditional mean", **means, "truth": "area"}]
    for method in ("neighbours", "normal"):
        draws = learning.predictive_draws(means, spreads, cal, n_draws=4, method=method, seed=0)
        assert draws["E_GPa"].shape == draws["H_GPa"].shape == (w.shape[0] * w.shape[1] * 4,)
        sources.append({"source": method, "values": "predictive draws", **draws, "truth": "area"})
    table = learning.phase_statistics_table(sources, {"area": truth}, n_init=3, max_values=8000)
    worst = {r["source"]: r["max_abs_d_fraction_truth"]
             for r in learning.phase_statistics_summary(table)}
    assert worst["map"] > 0.15, worst              # the means: components sharp and shifted
    assert worst["neighbours"] <= 0.05, worst      # the local predictive draws: the truth
    assert worst["normal"] > 0.1, worst            # a unimodal normal per window blurs the phases
    row = table[(table["source"] == "neighbours") & (table["phase"] == "ACC")].iloc[0]
    assert row["E_mean"] == pytest.approx(120.0, rel=0.05)   # and the phase means too


def test_joint_fit_splits_ld_hd_where_e_alone_does_not():
    """The demo's overlapping LD-, HD-C-S-H and CH in E: the 1D E mixture misses the
    fractions by more than 0.1 on some generated sets, the joint (E, H) one never by 0.05."""
    worst_e, worst_joint = [], []
    for seed in (2, 3, 4, 5):
        rng = np.random.default_rng(seed)
        e, h, lab = _cement_pairs(rng, 3000)
        truth = dict(zip(SOLID_PHASES, np.bincount(lab, minlength=4) / lab.size))
        table = learning.phase_statistics_table([
            {"source": "indentation", "values": "measured", "E_GPa": e, "H_GPa": h,
             "joint": False, "truth": "zones"},
            {"source": "indentation", "values": "measured", "E_GPa": e, "H_GPa": h,
             "truth": "zones"}], {"zones": truth}, n_init=5)
        summary = {r["method"]: r for r in learning.phase_statistics_summary(table)}
        worst_e.append(summary["E_GPa only"]["max_abs_d_fraction_truth"])
        worst_joint.append(summary["joint E-H"]["max_abs_d_fraction_truth"])
        assert summary["joint E-H"]["within_truth"] is True
        # the reference is the joint fit: the 1D row's differences to it, the joint row NaN
        assert table.attrs["reference"] == "indentation (joint E-H)"
        joint = table[table["method"] == "joint E-H"]
        assert joint["d_fraction_reference"].isna().all()
        one_d = table[table["method"] == "E_GPa only"].set_index("phase")
        np.testing.assert_allclose(
            one_d["d_fraction_reference"], one_d["fraction"] - joint.set_index("phase")["fraction"]
            .reindex(one_d.index))
        assert one_d["H_mean"].isna().all() and one_d["E_mean"].notna().all()
    assert max(worst_joint) <= 0.05, worst_joint
    assert max(worst_e) > 0.1, worst_e


def test_predictive_calibration_pairs_crops_and_measures_the_correlation():
    rng = np.random.default_rng(1)
    n = 400
    z = rng.multivariate_normal([0, 0], [[1, 0.6], [0.6, 1]], n)
    base = pd.DataFrame({"index": np.arange(n), "split": np.where(np.arange(n) < 300, "val", "train")})
    e = base.assign(mean=50.0, std=2.0, y=50.0 + 4.0 * z[:, 0])
    h = base.assign(mean=1.0, std=0.1, y=1.0 + 0.2 * z[:, 1]).iloc[::-1]   # other row order
    cal = learning.predictive_calibration(
        {"E_GPa": e, "H_GPa": h}, {"E_GPa": {"q": 3.3, "floor": 1.0, "level": 0.9},
                                   "H_GPa": {"q": 3.3, "floor": 0.05, "z": 1.6448536269514722}},
        splits=("val",))
    assert cal["n"] == 300 and cal["targets"] == ["E_GPa", "H_GPa"]
    assert cal["correlation"] == pytest.approx(np.corrcoef(z[:300, 0], z[:300, 1])[0, 1])
    np.testing.assert_allclose(cal["residuals"]["E_GPa"].to_numpy(), 2.0 * z[:300, 0])
    assert cal["z"]["E_GPa"] == pytest.approx(1.6448536, rel=1e-6)
    assert cal["sd_factor"]["H_GPa"] == pytest.approx(3.3 / 1.6448536, rel=1e-6)
    # only the crops both evaluations hold are paired
    cal = learning.predictive_calibration({"E_GPa": e, "H_GPa": h.iloc[:150]},
                                          {"E_GPa": {"q": 3, "floor": 1}, "H_GPa": {"q": 3, "floor": 1}},
                                          splits=("val",))
    assert cal["n"] == 50   # h.iloc[:150] holds crops 399..250, of which 299..250 are val


@pytest.mark.parametrize("change, message", [
    (lambda p, i: p["E_GPa"].drop(columns="std"), "lack column"),
    (lambda p, i: i["E_GPa"].pop("q") and p["E_GPa"], "lacks q or floor"),
    (lambda p, i: i["E_GPa"].update(q=np.inf) or p["E_GPa"], "finite and > 0"),
    (lambda p, i: p["E_GPa"].iloc[:5], "at least 10"),
])
def test_predictive_calibration_bad_input(change, message):
    table = pd.DataFrame({"index": np.arange(40), "split": "val", "y": np.arange(40.0),
                          "mean": 20.0, "std": 1.0})
    preds, intervals = {"E_GPa": table}, {"E_GPa": {"q": 2.0, "floor": 0.5}}
    preds["E_GPa"] = change(preds, intervals)
    with pytest.raises(InputError, match=message):
        learning.predictive_calibration(preds, intervals)
    with pytest.raises(InputError, match="targets must be among"):
        learning.predictive_calibration({"G_GPa": table}, intervals)


def test_normal_draws_have_the_calibrated_interval_and_correlation():
    """``normal``: each window's draws are N(mean, (q / z * max(spread, floor))^2), with
    the held-out correlation of E and H; the calibrated interval holds 90 % of them."""
    rng = np.random.default_rng(2)
    n = 500
    z = rng.multivariate_normal([0, 0], [[1, -0.5], [-0.5, 1]], n)
    preds = {t: pd.DataFrame({"index": np.arange(n), "split": "val", "y": 10.0 + s * z[:, i],
                              "mean": 10.0, "std": s})
             for i, (t, s) in enumerate((("E_GPa", 2.0), ("H_GPa", 0.1)))}
    intervals = {"E_GPa": {"q": 3.0, "floor": 0.5, "level": 0.9},
                 "H_GPa": {"q": 2.0, "floor": 0.2, "level": 0.9}}
    cal = learning.predictive_calibration(preds, intervals, splits=("val",))
    means = {"E_GPa": np.array([[30.0, 40.0]]), "H_GPa": np.array([[1.0, np.nan]])}
    spreads = {"E_GPa": np.array([[2.0, 2.0]]), "H_GPa": np.array([[0.1, 0.1]])}
    d = learning.predictive_draws(means, spreads, cal, n_draws=20000, method="normal", seed=3)
    assert d["E_GPa"].shape == (20000,)               # the window with a NaN H is left out
    assert d["E_GPa"].mean() == pytest.approx(30.0, abs=0.1)
    assert d["E_GPa"].std() == pytest.approx(3.0 / 1.6449 * 2.0, rel=0.02)
    assert d["H_GPa"].std() == pytest.approx(2.0 / 1.6449 * 0.2, rel=0.02)   # the floor 0.2
    assert np.mean(np.abs(d["E_GPa"] - 30.0) <= 3.0 * 2.0) == pytest.approx(0.9, abs=0.01)
    assert np.corrcoef(d["E_GPa"], d["H_GPa"])[0, 1] == pytest.approx(cal["correlation"], abs=0.02)
    # residuals: the held-out normalised residuals times the window's scale, one crop for both
    d = learning.predictive_draws(means, spreads, cal, n_draws=5000, method="residuals", seed=3)
    r = cal["residuals"].to_numpy()
    assert set(np.round((d["E_GPa"] - 30.0) / 2.0, 9)) <= set(np.round(r[:, 0], 9))
    assert np.corrcoef(d["E_GPa"], d["H_GPa"])[0, 1] == pytest.approx(cal["correlation"], abs=0.05)


def test_neighbour_draws_take_the_errors_of_the_nearest_crops():
    """``neighbours``: mean + the error of a held-out crop among the nearest in predicted
    values, the same crop for E and H; no spread needed."""
    n = 100
    pred_e = np.arange(n, dtype=float)          # crop j predicted E = j, H = j / 100
    preds = {"E_GPa": pd.DataFrame({"index": np.arange(n), "split": "test", "mean": pred_e,
                                    "y": pred_e + np.arange(n) * 0.01, "std": 1.0}),
             "H_GPa": pd.DataFrame({"index": np.arange(n), "split": "val", "mean": pred_e / 100,
                                    "y": pred_e / 100 - np.arange(n) * 1e-4, "std": 0.1})}
    cal = learning.predictive_calibration(preds, {t: {"q": 2.0, "floor": 0.1} for t in preds})
    means = {"E_GPa": np.array([10.2, 80.0]), "H_GPa": np.array([0.102, 0.8])}
    d = learning.predictive_draws(means, None, cal, n_draws=200, method="neighbours",
                                  n_neighbours=3, seed=0)
    crop_e = np.round((d["E_GPa"] - np.repeat(means["E_GPa"], 200)) / 0.01).astype(int)
    crop_h = np.round(-(d["H_GPa"] - np.repeat(means["H_GPa"], 200)) / 1e-4).astype(int)
    np.testing.assert_array_equal(crop_e, crop_h)
    assert set(crop_e[:200]) == {9, 10, 11} and set(crop_e[200:]) == {79, 80, 81}


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "bootstrap"}, "method must be one of"),
    ({"n_draws": 0}, "n_draws must be a positive integer"),
    ({"n_neighbours": 0}, "n_neighbours must be a positive integer"),
    ({"method": "normal", "spreads": None}, "needs the spread maps"),
    ({"means": {"E_GPa": np.ones(3)}}, "must be the same targets"),
    ({"means": {"E_GPa": np.ones(3), "H_GPa": np.ones(4)}}, "must share windows"),
    ({"means": {"E_GPa": np.full(4, np.nan), "H_GPa": np.ones(4)}}, "no window has finite"),
    ({"method": "normal", "spreads": {"E_GPa": -np.ones(4), "H_GPa": np.ones(4)}}, "negative"),
])
def test_predictive_draws_bad_input(kwargs, message):
    preds = {t: pd.DataFrame({"index": np.arange(20), "split": "val", "y": np.arange(20.0),
                              "mean": 10.0, "std": 1.0}) for t in ("E_GPa", "H_GPa")}
    cal = learning.predictive_calibration(preds, {t: {"q": 2.0, "floor": 0.5} for t in preds})
    args = {"means": {t: np.ones(4) for t in preds}, "spreads": {t: np.ones(4) for t in preds},
            "calibration": cal, **kwargs}
    with pytest.raises(InputError, match=message):
        learning.predictive_draws(**args)


def test_true_area_fractions_of_the_window_centres_rectangle():
    labels = np.zeros((100, 200), np.uint8)          # pores outside the columns below
    labels[:, 20:60] = PHASES.index("LD-C-S-H")
    labels[:, 60:90] = PHASES.index("HD-C-S-H")
    labels[:, 90:100] = PHASES.index("CH")
    labels[:, 100:120] = PHASES.index("ACC")
    labels[40:50, 20:60] = 0                          # pores inside: left out, solids renormalised
    cy, cx = np.array([10, 30, 50, 70]), np.array([15, 35, 55, 75, 95, 115])
    f = learning.true_area_fractions(labels, (cy, cx), offset_px=(5.0, 0.0))   # columns 20..120
    solid = 61 * (40 + 30 + 10 + 20) - 10 * 40
    assert f == pytest.approx({"LD-C-S-H": (61 * 40 - 400) / solid, "HD-C-S-H": 61 * 30 / solid,
                               "CH": 61 * 10 / solid, "ACC": 61 * 20 / solid})
    with pytest.raises(InputError, match="miss the"):
        learning.true_area_fractions(labels, (cy, cx), offset_px=(500.0, 0.0))
    with pytest.raises(InputError, match="2D label map"):
        learning.true_area_fractions(labels[None], (cy, cx))
    with pytest.raises(InputError, match="not among"):
        learning.true_area_fractions(labels, (cy, cx), phases=("LD-C-S-H", "quartz"))


def test_phase_statistics_table_bad_input(rng):
    e = rng.normal(30, 5, 200)
    with pytest.raises(InputError, match="no sources"):
        learning.phase_statistics_table([])
    with pytest.raises(InputError, match="neither E_GPa nor H_GPa"):
        learning.phase_statistics_table([{"source": "x", "values": "measured"}])
    with pytest.raises(InputError, match="a joint fit needs pairs"):
        learning.phase_statistics_table([{"source": "x", "E_GPa": e, "H_GPa": e[:10]}])
    with pytest.raises(InputError, match="truth 'nowhere'"):
        learning.phase_statistics_table([{"source": "x", "E_GPa": e, "truth": "nowhere"}],
                                        n_init=1)
    with pytest.raises(InputError, match="matches no row"):
        learning.phase_statistics_table([{"source": "x", "E_GPa": e}], n_init=1,
                                        reference=("y", "joint E-H"))


def test_ensemble_mean_spread_predictor_on_a_map(rng):
    """Two members (prediction = crop mean -+ 1): mean = crop mean, spread = sqrt(2)."""
    image = rng.random((60, 70)).astype(np.float32)
    models = [("m0", -1.0, {}), ("m1", 1.0, {})]

    def predict(model, meta, crops, device, batch_size):
        return crops.mean(axis=(1, 2)) + model

    fn = learning.ensemble_mean_spread_predictor(models, "cpu", 8, predict=predict)
    grid, (cy, cx) = learning.predict_map(image, fn, 20, 10, batch=7, outputs=2)
    mean, _ = learning.window_means(image, 20, 10)
    assert grid.shape == (cy.size, cx.size, 2)
    np.testing.assert_allclose(grid[..., 0], mean, rtol=1e-5)
    np.testing.assert_allclose(grid[..., 1], np.sqrt(2.0), rtol=1e-5)
    with pytest.raises(InputError, match="2 per crop expected"):
        learning.predict_map(image, lambda c: c.mean(axis=(1, 2)), 20, 10, outputs=2)


# ------------------------------------------------------------------ the rule script

@pytest.mark.parametrize("targets", [["E_GPa", "H_GPa"], ["E_GPa"]])
def test_map_statistics_script(tmp_path, targets):
    """Rule map_statistics on generated maps and indents: every row of Table 1, the truth
    of the area (a label map in another frame) and of the indents, the summary, the figure;
    with E alone mapped, the map rows are 1D fits of E."""
    rng = np.random.default_rng(4)
    s, steps = 20, {"coarse": 20, "dense": 10}
    shape = (420, 620)                                 # the mapped image, px
    ind_w = _window_weights(rng, 30, 30).reshape(-1, 4)
    measured = _measure(rng, ind_w, SEPARATED)
    pd.DataFrame({"batch": "b01", "indent": np.arange(ind_w.shape[0]), "E_GPa": measured["E"],
                  "H_GPa": measured["H"]}).to_csv(tmp_path / "b01.csv", index=False)
    files = {k: [] for k in ("grids_coarse", "grids_dense", "windows", "summaries", "predictions")}
    preds, intervals = _held_out(rng, 30, 40, SEPARATED)
    maps = {}
    for kind, step in steps.items():
        cy, cx = learning.window_centres(shape, s, step)
        w = _window_weights(rng, cy.size, cx.size)
        maps[kind] = (w, cy, cx, _conditional(w, SEPARATED))
    for t, q in [(t, t[0]) for t in targets]:
        arrays = {"crop_size_px": s, "pixel_size_nm": 500.0}
        for kind, (w, cy, cx, cond) in maps.items():
            np.save(tmp_path / f"grid_{kind}_{t}.npy", cond[q][0].astype(np.float32))
            arrays.update({f"spread_{kind}": 0.5 * cond[q][1], f"cy_{kind}": cy, f"cx_{kind}": cx,
                           f"step_px_{kind}": steps[kind],
                           f"table_{kind}": np.round(cond[q][0], 0 if q == "E" else 1)})
            files[f"grids_{kind}"].append(str(tmp_path / f"grid_{kind}_{t}.npy"))
        mio.write_npz(arrays, tmp_path / f"windows_{t}.npz")
        files["windows"].append(str(tmp_path / f"windows_{t}.npz"))
        (tmp_path / f"summary_{t}.json").write_text(json.dumps({"interval": {"conformal": intervals[t]}}))
        files["summaries"].append(str(tmp_path / f"summary_{t}.json"))
        preds[t].to_csv(tmp_path / f"predictions_{t}.csv", index=False)
        files["predictions"].append(str(tmp_path / f"predictions_{t}.csv"))
    # truth: the label map in the specimen frame = image frame + (7, 4) px
    truth_map, truth_ind = tmp_path / "truth" / "A4", tmp_path / "truth" / "A1"
    truth_map.mkdir(parents=True)
    truth_ind.mkdir(parents=True)
    labels = np.full((shape[0] + 4, shape[1] + 7), PHASES.index("LD-C-S-H"), np.uint8)
    labels[:, 300:] = PHASES.index("ACC")
    np.save(truth_map / "phases.npy", labels)
    pd.DataFrame({"tile": ["t0"], "x_px": [7.0], "y_px": [4.0]}).to_csv(truth_map / "tiles_before.csv", index=False)
    pd.DataFrame({"tile": ["t0"], "x_px": [0.0], "y_px": [0.0]}).to_csv(tmp_path / "stitch_before.csv", index=False)
    zones = pd.DataFrame({f"f_{p}": 0.0 for p in PHASES}, index=range(4))
    zones["f_LD-C-S-H"], zones["f_ACC"], zones["f_pore"] = [1, 1, 0.5, 0], [0, 0, 0, 1], [0, 0, 0.5, 0]
    zones.to_csv(truth_ind / "indents.csv", index=False)
    PHASE_PROPERTIES.reset_index().to_csv(truth_ind / "phase_properties.csv", index=False)
    out = {"table1": str(tmp_path / "out" / "table1.csv"), "summary": str(tmp_path / "out" / "table1.json"),
           "figure": str(tmp_path / "out" / "fractions.png")}
    job = {"input": {**files, "indents": [str(tmp_path / "b01.csv")], "truth_map": str(truth_map),
                     "stitch": str(tmp_path / "stitch_before.csv"), "truth_indents": [str(truth_ind)]},
           "output": out, "wildcards": {"specimen": "demo", "area": "A4"},
           "params": {"targets": targets, "draws": 3, "n_components": 4, "seed": 0,
                      "n_init": 1, "max_values": 4000}}
    run_script("map_statistics", job, tmp_path)
    t1 = pd.read_csv(out["table1"])
    groups = list(dict.fromkeys(zip(t1["source"], t1["values"], t1["method"])))
    fit = "joint E-H" if len(targets) == 2 else "E_GPa only"
    assert groups == [
        ("indentation", "measured", "E_GPa only"), ("indentation", "measured", "joint E-H"),
        ("ResNet, step 10 um", "conditional mean", fit),
        ("ResNet, step 10 um", "predictive draws", fit),
        ("ResNet, step 5 um", "conditional mean", fit),
        ("ResNet, step 5 um", "predictive draws", fit),
        ("table model, step 10 um", "conditional mean", fit),
        ("table model, step 5 um", "conditional mean", fit),
        ("truth", "truth", "map area"), ("truth", "truth", "indents")]
    # the label map's truth: columns 0-299 LD, 300- ACC in the specimen frame; the window
    # centres span image columns 10..610 (specimen 17..617)
    cx = maps["dense"][2]
    c0, c1 = int(cx.min()) + 7, int(cx.max()) + 7
    area = t1[(t1["source"] == "truth") & (t1["method"] == "map area")].set_index("phase")["fraction"]
    assert area["ACC"] == pytest.approx((c1 - 300 + 1) / (c1 - c0 + 1))
    ind = t1[(t1["source"] == "truth") & (t1["method"] == "indents")].set_index("phase")["fraction"]
    assert ind["LD-C-S-H"] == pytest.approx(2.5 / 3.5) and ind["ACC"] == pytest.approx(1 / 3.5)
    rows = t1[t1["source"] != "truth"]
    np.testing.assert_allclose(rows["d_fraction_truth"], rows["fraction"] - rows["fraction_truth"])
    summary = mio.read_json(out["summary"])
    assert summary["reference"] == "indentation (joint E-H)" and summary["tolerance"] == 0.05
    assert summary["calibration"]["method"] == "neighbours" and summary["calibration"]["n"] == 1200
    assert summary["calibration"]["windows"]["coarse"] == maps["coarse"][0].shape[0] * maps["coarse"][0].shape[1]
    draws = [r for r in summary["rows"] if r["values"] == "predictive draws"]
    assert len(draws) == 2 and all(r["truth"] == "map area" for r in draws)
    assert set(summary["truth"]) == {"map area", "indents"}
    assert (summary["calibration"]["correlation_EH"] is None) == (len(targets) == 1)
    assert Image.open(out["figure"]).size == ((1500, 550) if len(targets) == 2 else (900, 550))


def test_map_area_writes_spread_and_table_maps_for_map_statistics(tmp_path, monkeypatch):
    """map_area's ``windows`` output: the members' spread (two members at -+1 GPa: sqrt 2),
    the table-model maps and the window centres of both maps."""
    from microprop import stats
    from script_runner import write_map_stores
    from test_mapping import _fake_train, _smooth_map

    rng = np.random.default_rng(3)
    s, ps = 40, 40.0
    image = _smooth_map(rng, (260, 300))
    write_map_stores(tmp_path, image, ps)
    for i, shift in enumerate((-1.0, 1.0)):
        (tmp_path / f"m{i}.pt").write_text(str(shift))
    pd.DataFrame({"E_GPa": rng.normal(40, 10, 300), "H_GPa": 1.0}).to_csv(tmp_path / "b01.csv", index=False)
    wm, _ = learning.window_means(image, s, 10)
    stats.table_model_fit(wm.ravel(), 20 + 200 * wm.ravel(), n_bins=10).to_csv(tmp_path / "bins.csv", index=False)
    fake = _fake_train(s)
    monkeypatch.setattr(learning, "load_model", fake.load_model)
    monkeypatch.setattr(learning, "predict", fake.predict)
    names = (("grid_coarse", "coarse.npy"), ("grid_dense", "dense.npy"), ("table1", "t1.csv"),
             ("fig_maps", "maps.png"), ("fig_hist", "hist.png"), ("windows", "windows_E_GPa.npz"))
    out = {k: str(tmp_path / "out" / v) for k, v in names}
    job = {"input": {"calibrated": str(tmp_path / "calibrated.zarr"),
                     "checkpoints": [str(tmp_path / "m0.pt"), str(tmp_path / "m1.pt")],
                     "table": str(tmp_path / "bins.csv"), "indents": [str(tmp_path / "b01.csv")],
                     "mosaic": str(tmp_path / "mosaic.zarr")},
           "output": out,
           "params": {"scale": "MulF", "step_um": 1.6, "dense_step_px": 10, "device": "cpu",
                      "n_components": 4, "seed": 0, "n_init": 1}}
    run_script("map_area", job, tmp_path)
    w = np.load(out["windows"])
    assert int(w["crop_size_px"]) == s and float(w["pixel_size_nm"]) == ps
    for kind, step in (("coarse", 40), ("dense", 10)):
        grid = np.load(out[f"grid_{kind}"])
        cy, cx = learning.window_centres(image.shape, s, step)
        np.testing.assert_array_equal(w[f"cy_{kind}"], cy)
        np.testing.assert_array_equal(w[f"cx_{kind}"], cx)
        assert int(w[f"step_px_{kind}"]) == step
        assert w[f"spread_{kind}"].shape == grid.shape
        np.testing.assert_allclose(w[f"spread_{kind}"], np.sqrt(2.0), rtol=1e-5)
        wmk, _ = learning.window_means(image, s, step)
        bins = pd.read_csv(tmp_path / "bins.csv")
        np.testing.assert_allclose(w[f"table_{kind}"], stats.table_model_predict(bins, wmk.ravel())
                                   .reshape(wmk.shape), rtol=1e-5)
