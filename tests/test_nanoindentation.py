"""Tests of microprop.physics: grid model, forward model, export I/O, virtual indentation."""
import numpy as np
import pandas as pd
import pytest
from microprop import (
    imaging,  # noqa: E402
    phases,  # noqa: E402
    physics,  # noqa: E402
)
from microprop import indentation as mp_indentation  # noqa: E402
from microprop import virtual as mp_virtual  # noqa: E402
from microprop.errors import InputError


def test_phase_table_follows_the_label_ids():
    assert phases.PHASES == ("pore", "LD-C-S-H", "HD-C-S-H", "CH", "ACC")
    assert list(phases.PHASE_PROPERTIES.index) == list(phases.PHASES)
    # literature ordering of stiffness and hardness: pore < LD < HD < CH < clinker
    assert phases.PHASE_PROPERTIES["E_mean_GPa"].is_monotonic_increasing
    assert phases.PHASE_PROPERTIES["H_mean_GPa"].is_monotonic_increasing


# ---------------------------------------------------------------- grid model

def test_grid_without_drift_is_the_nominal_grid():
    g = imaging.grid_positions(3, 4, 10.0, origin_um=(5.0, -2.0))
    assert len(g) == 12
    assert list(g["indent"]) == list(range(1, 13))
    np.testing.assert_array_equal(g["row"], np.repeat(np.arange(3), 4))
    np.testing.assert_array_equal(g["col"], np.tile(np.arange(4), 3))
    np.testing.assert_allclose(g["x_um"], 5.0 + 10.0 * g["col"])
    np.testing.assert_allclose(g["y_um"], -2.0 + 10.0 * g["row"])


def test_grid_drift_increments_have_the_requested_std(rng):
    n, s, drift = 2001, 20.0, 0.4
    wide = imaging.grid_positions(3, n, s, drift_um=drift, rng=rng)    # 2000 column increments
    tall = imaging.grid_positions(n, 3, s, drift_um=drift, rng=rng)    # 2000 row increments
    incs = (np.diff(wide[wide["row"] == 0]["x_um"].to_numpy()),
            np.diff(tall[tall["col"] == 0]["y_um"].to_numpy()))
    for inc in incs:
        # the mean is within 4 standard errors of s, the std within ~4 sigma of drift
        assert inc.size == n - 1
        assert abs(inc.mean() - s) < 4 * drift / np.sqrt(inc.size)
        assert abs(inc.std(ddof=1) - drift) < 4 * drift / np.sqrt(2 * inc.size)
    # eq. 3a/3b: per-column x increments are shared by all rows, per-row y by all columns
    x = wide["x_um"].to_numpy().reshape(3, n)
    np.testing.assert_allclose(x[0], x[-1])
    y = tall["y_um"].to_numpy().reshape(n, 3)
    np.testing.assert_allclose(y[:, 0], y[:, -1])
    assert np.ptp(wide["y_um"][wide["col"] == 5]) > 0   # rows do move with drift


def test_grid_rejects_bad_input():
    with pytest.raises(InputError):
        imaging.grid_positions(0, 3, 10.0)
    with pytest.raises(InputError, match="rng"):
        imaging.grid_positions(2, 2, 10.0, drift_um=1.0)


# ---------------------------------------------------------------- forward model

@pytest.mark.parametrize("label", [1, 4])
def test_single_phase_field_returns_the_literature_distribution(rng, label):
    labels = np.full((120, 120), label, np.uint8)
    n = 500
    out = physics.indent_properties(labels, rng.uniform(0, 119, n), rng.uniform(0, 119, n), 50.0, rng)
    name = phases.PHASES[label]
    ref = phases.PHASE_PROPERTIES.loc[name]
    assert (out["phase"] == name).all()
    np.testing.assert_allclose(out[f"f_{name}"], 1.0)
    for q in ("E", "H"):
        mean, std = ref[f"{q}_mean_GPa"], ref[f"{q}_std_GPa"]
        true = out[f"{q}_true_GPa"]
        assert abs(true.mean() - mean) < 4 * std / np.sqrt(n)
        assert abs(true.std(ddof=1) - std) < 4 * std / np.sqrt(2 * n)
        # measured = true x (1 + N(0, 0.05)): relative error has std 0.05
        rel = out[f"{q}_GPa"] / true - 1
        assert abs(rel.std() - 0.05) < 0.01


def test_half_half_field_gives_half_fractions_at_the_interface(rng):
    labels = np.zeros((60, 100), np.uint8)
    labels[:, 50:] = 2            # pixels 0..49 pore, 50..99 HD-C-S-H: interface at x = 49.5
    out = physics.indent_properties(labels, np.full(20, 49.5), np.linspace(20, 40, 20), 50.0, rng)
    np.testing.assert_allclose(out["f_pore"], 0.5, atol=1e-9)
    np.testing.assert_allclose(out["f_HD-C-S-H"], 0.5, atol=1e-9)
    # far from the interface the zone is single-phase
    far = physics.indent_properties(labels, [10.0, 90.0], [30.0, 30.0], 50.0, rng)
    assert list(far["phase"]) == ["pore", "HD-C-S-H"]


def test_zone_is_clipped_at_the_field_edge():
    labels = np.zeros((20, 20), np.uint8)
    labels[:, 10:] = 3
    f = physics.zone_fractions(labels, [0.0, 19.0, 9.5], [0.0, 19.0, 0.0], 4.0)
    np.testing.assert_allclose(f.sum(axis=1), 1.0)
    np.testing.assert_allclose(f[0, 0], 1.0)   # corner inside the pore half
    np.testing.assert_allclose(f[1, 3], 1.0)   # corner inside the CH half
    np.testing.assert_allclose(f[2, [0, 3]], 0.5, atol=1e-9)


def test_hill_average_is_between_reuss_and_voigt():
    f = np.array([[0.5, 0.5], [1.0, 0.0]])
    v = np.array([10.0, 40.0])
    # Voigt 25, Reuss 16 -> Hill 20.5; single phase -> its value
    np.testing.assert_allclose(physics.hill_average(f, v), [20.5, 10.0])


def test_depth_follows_berkovich_area_exactly(rng):
    labels = np.zeros((50, 50), np.uint8)
    labels[:, 25:] = 4
    out = physics.indent_properties(labels, rng.uniform(0, 49, 50), rng.uniform(0, 49, 50), 100.0, rng,
                               load_mN=rng.uniform(0.5, 5, 50))
    area_um2 = 24.5 * (out["depth_nm"] / 1e3) ** 2
    np.testing.assert_allclose(out["load_mN"] / area_um2, out["H_GPa"], rtol=1e-12)
    # 2 mN on H = 1 GPa: A = 2 um^2, h = sqrt(2/24.5) um = 285.714... nm
    assert physics.contact_depth_nm(2.0, 1.0) == pytest.approx(285.7142857, rel=1e-9)


def test_stiffness_matches_a_hand_computed_oliver_pharr_number():
    # E = 30 GPa, nu = 0.2; diamond 1141 GPa, 0.07:
    #   1/Er = 0.96/30 + 0.9951/1141 = 0.032 + 0.00087213 = 0.03287213 -> Er = 30.42091 GPa
    #   h = 200 nm: A = 24.5 * (200e-9)^2 = 9.8e-13 m^2, sqrt(A/pi) = 5.585192e-7 m
    #   S = 2 * 1.034 * 30.42091e9 * 5.585192e-7 = 35136.7 N/m
    assert physics.reduced_modulus_GPa(30.0) == pytest.approx(30.42091, rel=1e-6)
    assert physics.contact_stiffness_N_per_m(30.0, 200.0) == pytest.approx(35136.7, rel=1e-5)


def test_forward_model_output_is_consistent_with_oliver_pharr(rng):
    labels = rng.integers(0, 5, (40, 40)).astype(np.uint8)
    out = physics.indent_properties(labels, rng.uniform(0, 39, 30), rng.uniform(0, 39, 30), 200.0, rng)
    np.testing.assert_allclose(out["stiffness_N_per_m"],
                               physics.contact_stiffness_N_per_m(out["E_GPa"], out["depth_nm"]))
    fr = out[[f"f_{p}" for p in phases.PHASES]].to_numpy()
    np.testing.assert_allclose(fr.sum(axis=1), 1.0)


def test_forward_model_rejects_bad_labels_and_positions(rng):
    with pytest.raises(InputError, match="ids must be"):
        physics.indent_properties(np.full((10, 10), 7, np.uint8), [5.0], [5.0], 100.0, rng)
    with pytest.raises(InputError, match="outside"):
        physics.indent_properties(np.zeros((10, 10), np.uint8), [15.0], [5.0], 100.0, rng)


# ---------------------------------------------------------------- export I/O

def _table(rng, n=12):
    labels = rng.integers(0, 5, (30, 30)).astype(np.uint8)
    g = imaging.grid_positions(3, n // 3, 5.0, origin_um=(1.0, 2.0))
    props = physics.indent_properties(labels, g["x_um"], g["y_um"], 1000.0, rng)
    return pd.concat([g, props], axis=1)


def test_export_round_trip_default_units(tmp_path, rng):
    df = _table(rng)
    path = tmp_path / "b1.csv"
    mp_indentation.write_export(df, path)
    assert path.read_text().splitlines()[0] == "INDENT,X,Y,DEPTH,LOAD,STIFFNESS,HARDNESS,MODULUS"
    acc, rej = mp_indentation.read_export(path, batch="b1")
    assert list(acc.columns) == mp_indentation.STANDARD_COLUMNS
    assert len(rej) == 0 and len(acc) == len(df)
    assert (acc["batch"] == "b1").all()
    np.testing.assert_array_equal(acc["source_row"], np.arange(1, len(df) + 1))
    for c in ("indent", "x_um", "y_um", "depth_nm", "load_mN", "stiffness_N_per_m", "H_GPa", "E_GPa"):
        np.testing.assert_allclose(acc[c], df[c], rtol=1e-9)


def test_export_in_other_units_reads_back_to_the_same_values(tmp_path, rng):
    df = _table(rng)
    units = {"x": "mm", "y": "nm", "depth": "um", "load": "uN", "stiffness": "mN/nm",
             "hardness": "MPa", "modulus": "MPa"}
    path = tmp_path / "b2.tsv"
    mp_indentation.write_export(df, path, units=units, sep="\t")
    raw = pd.read_csv(path, sep="\t")
    # the file really holds other numbers: 1 mN = 1000 uN, 1 GPa = 1000 MPa, 1 mN/nm = 1e6 N/m
    np.testing.assert_allclose(raw["LOAD"], 1e3 * df["load_mN"])
    np.testing.assert_allclose(raw["MODULUS"], 1e3 * df["E_GPa"])
    np.testing.assert_allclose(raw["STIFFNESS"], 1e-6 * df["stiffness_N_per_m"])
    acc, rej = mp_indentation.read_export(path, batch="b2", units=units)
    assert len(rej) == 0
    for c in ("x_um", "y_um", "depth_nm", "load_mN", "stiffness_N_per_m", "H_GPa", "E_GPa"):
        np.testing.assert_allclose(acc[c], df[c], rtol=1e-9)


def test_header_after_metadata_lines_and_renamed_columns(tmp_path):
    text = ("Sample: paste B; operator: X\n"
            "Method, Express Test\n"
            "\n"
            "Test;X Pos;Y Pos;Depth;Load;S;Hardness;Modulus\n"
            "1;1,5;2,0;200;2;35000;1,2;30\n"
            "2;21,5;2,0;180;2;40000;1,4;33,5\n")
    path = tmp_path / "kla.txt"
    path.write_text(text)
    columns = {"indent": "Test", "x": "X Pos", "y": "Y Pos", "depth": "Depth", "load": "Load",
               "stiffness": "S", "hardness": "Hardness", "modulus": "Modulus"}
    acc, rej = mp_indentation.read_export(path, batch="k", columns=columns)
    assert len(rej) == 0
    assert list(acc["indent"]) == [1, 2]
    np.testing.assert_allclose(acc["x_um"], [1.5, 21.5])
    np.testing.assert_allclose(acc["E_GPa"], [30.0, 33.5])


def test_units_line_under_header_is_skipped(tmp_path):
    path = tmp_path / "u.csv"
    path.write_text("INDENT,X,Y,DEPTH,LOAD,STIFFNESS,HARDNESS,MODULUS\n"
                    ",um,um,nm,mN,N/m,GPa,GPa\n"
                    "1,0,0,200,2,35000,1.2,30\n"
                    "2,x,0,200,2,35000,1.2,30\n")
    acc, rej = mp_indentation.read_export(path, batch="u")
    assert list(acc["source_row"]) == [1] and list(rej["source_row"]) == [2]
    # a partly numeric second line is a (bad) data row, not a units line
    path.write_text("INDENT,X,Y,DEPTH,LOAD,STIFFNESS,HARDNESS,MODULUS\n"
                    "1,um,0,nm,mN,N/m,GPa,GPa\n"
                    "2,0,0,200,2,35000,1.2,30\n")
    acc, rej = mp_indentation.read_export(path, batch="u")
    assert list(acc["indent"]) == [2] and list(rej["source_row"]) == [1]


def test_optional_columns_trailing_and_extra_fields(tmp_path):
    path = tmp_path / "min.tsv"
    path.write_text("INDENT\tX\tY\tHARDNESS\tMODULUS\n"
                    "1\t0\t0\t1.2\t30\n"
                    "2\t1\t0\t1.3\t31\t\n"          # trailing separator: fine
                    "3\t2\t0\t1.3\t31\t5\t6\n")    # two fields beyond the header: rejected
    acc, rej = mp_indentation.read_export(path, batch="m", columns={"depth": None, "load": None, "stiffness": None})
    assert list(acc["indent"]) == [1, 2]
    assert acc["depth_nm"].isna().all() and acc["stiffness_N_per_m"].isna().all()
    assert list(rej["source_row"]) == [3] and "2 field(s) beyond the header" in rej["reason"][0]
    with pytest.raises(InputError, match="DEPTH"):      # not optional unless mapped to None
        mp_indentation.read_export(path, batch="m")


def test_missing_column_names_file_and_column(tmp_path):
    path = tmp_path / "nomod.csv"
    path.write_text("INDENT,X,Y,DEPTH,LOAD,STIFFNESS,HARDNESS\n1,0,0,200,2,35000,1.2\n")
    with pytest.raises(InputError) as exc:
        mp_indentation.read_export(path, batch="x")
    msg = str(exc.value)
    assert "nomod.csv" in msg and "MODULUS" in msg and "HARDNESS" in msg


def test_missing_file_and_unknown_unit(tmp_path):
    with pytest.raises(InputError, match="not found"):
        mp_indentation.read_export(tmp_path / "absent.csv", batch="x")
    path = tmp_path / "a.csv"
    path.write_text("INDENT,X,Y,DEPTH,LOAD,STIFFNESS,HARDNESS,MODULUS\n1,0,0,200,2,35000,1.2,30\n")
    with pytest.raises(InputError, match="unknown unit 'psi'") as exc:
        mp_indentation.read_export(path, batch="x", units={"modulus": "psi"})
    assert "`indentation.units`" in str(exc.value) and "a.csv" in str(exc.value)


def test_bad_rows_are_rejected_with_reason_and_source_row(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("INDENT,X,Y,DEPTH,LOAD,STIFFNESS,HARDNESS,MODULUS\n"
                    "1,0,0,200,2,35000,1.2,30\n"        # ok
                    "2,5,0,200,2,35000,,30\n"           # missing H
                    "3,10,0,-5,2,35000,1.2,30\n"        # negative depth
                    "4,15,0,200,2,35000,1.2,900\n"      # E > 500 GPa
                    "5,20,0,200,2,35000,abc,30\n"       # non-numeric
                    "6,25,0,200,0,35000,1.2,30\n"       # zero load
                    "7,30,0,200,2,35000,1.1,28\n")      # ok
    acc, rej = mp_indentation.read_export(path, batch="b")
    assert list(acc["indent"]) == [1, 7]
    assert list(acc["source_row"]) == [1, 7]
    assert list(rej["source_row"]) == [2, 3, 4, 5, 6]
    reasons = dict(zip(rej["source_row"], rej["reason"]))
    assert "missing HARDNESS" in reasons[2]
    assert "DEPTH" in reasons[3] and "outside" in reasons[3]
    assert "MODULUS" in reasons[4] and "500" in reasons[4]
    assert "non-numeric HARDNESS 'abc'" in reasons[5]
    assert "LOAD" in reasons[6]


def test_rejected_row_names_quantity_column_and_expected_range(tmp_path):
    path = tmp_path / "load.csv"
    path.write_text("INDENT,X,Y,DEPTH,Load..mN.,STIFFNESS,HARDNESS,MODULUS\n"
                    "1,0,0,200,0,35000,1.2,30\n2,5,0,200,2,35000,1.1,28\n")
    _, rej = mp_indentation.read_export(path, batch="b", columns={"load": "Load..mN."})
    reason = rej["reason"].iloc[0]
    assert reason == ("load = 0 mN (column 'Load..mN.') is outside the physical range: "
                      "expected load > 0 mN")


def test_empty_export_says_it_is_empty(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("\n\n")
    with pytest.raises(InputError, match=r"empty\.csv: the indentation export is empty") as exc:
        mp_indentation.read_export(path, batch="x")
    assert "found columns []" not in str(exc.value) and "MODULUS" in str(exc.value)


def test_duplicate_indent_ids_raise(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("INDENT,X,Y,DEPTH,LOAD,STIFFNESS,HARDNESS,MODULUS\n"
                    "1,0,0,200,2,35000,1.2,30\n"
                    "2,5,0,200,2,35000,1.2,30\n"
                    "2,10,0,200,2,35000,1.2,30\n")
    with pytest.raises(InputError, match=r"dup\.csv.*duplicate INDENT id\(s\) \[2\]"):
        mp_indentation.read_export(path, batch="b")


# ---------------------------------------------------------------- segmentation, virtual indentation

def test_segment_phases_recovers_five_grey_levels(rng):
    truth = np.repeat(np.repeat(rng.integers(0, 5, (16, 16)), 10, axis=0), 10, axis=1)
    levels = np.array([25.0, 75.0, 125.0, 175.0, 225.0])
    img = np.clip(levels[truth] + rng.normal(0, 9, truth.shape), 0, 255).astype(np.uint8)
    labels, info = imaging.segment_phases(img, seed=1)
    assert labels.dtype == np.uint8 and labels.shape == img.shape
    assert (labels == truth).mean() > 0.95
    assert list(info["phase"]) == list(phases.PHASES)
    np.testing.assert_allclose(info["grey_mean"], levels, atol=5)


def test_regular_grid_keeps_the_margin():
    g = mp_virtual.regular_grid_px((101, 201), 1000.0, 20.0, 10.0)   # 100 x 200 um between pixel centres
    assert (g["row"].max() + 1, g["col"].max() + 1) == (5, 10)
    assert g["x_um"].min() >= 10 and g["x_um"].max() <= 190
    assert g["y_um"].min() >= 10 and g["y_um"].max() <= 90
    np.testing.assert_allclose(g["x_px"], g["x_um"])


def test_virtual_indentation_on_the_real_micrograph(real_bse_image, rng):
    # 800 px at 0.5 um/px: 399.5 um between outer pixel centres; margin 10 um each side
    # leaves 379.5 um -> floor(379.5 / 20) + 1 = 19 indents per row and column
    indents, labels = mp_virtual.virtual_indentation(real_bse_image, 500.0, 20.0, rng, margin_um=10.0)
    assert len(indents) == 19 * 19
    assert labels.shape == real_bse_image.shape
    assert indents["x_um"].min() >= 10 and indents["x_um"].max() <= 389.5
    means = indents.groupby("phase")["E_GPa"].agg(["mean", "size"])
    present = [p for p in phases.PHASES if p in means.index and means.loc[p, "size"] >= 3]
    assert len(present) >= 4
    assert np.all(np.diff(means.loc[present, "mean"].to_numpy()) > 0)
    # BSE contrast: bright clinker -> ACC, dark epoxy/pores -> pore (up to the median smoothing)
    assert (labels[real_bse_image >= 200] == 4).mean() > 0.8
    assert (labels[real_bse_image <= 30] == 0).mean() > 0.8


# ---------------------------------------------------------------- rule scripts
from script_runner import run_script as _run_script  # noqa: E402

#: Monte Carlo eta of the cement phases at 20 keV (screened Rutherford; any increasing set serves here)
PHASE_ETA_MC = {"pore": 0.0508, "LD-C-S-H": 0.1296, "HD-C-S-H": 0.1367, "CH": 0.1642, "ACC": 0.1804}


def test_virtual_indentation_script_writes_an_export_in_indenter_coordinates(real_bse_image, tmp_path):
    work = _calibrated_real(real_bse_image, 1.0, 0.0, tmp_path)
    out = tmp_path / "out"
    spec = {"input": {"image": str(work / "recorded.tif"), "calibrated": str(work / "calibrated.zarr"),
                      "phase_eta": str(work / "phase_eta.csv")},
            "output": {"export": str(out / "v01.csv"), "labels": str(out / "labels.npy"),
                       "note": str(out / "note.json"), "indents": str(out / "full.csv")},
            "params": {"pixel_size_nm": 500.0, "spacing_um": 40.0, "crop_size_um": 40.0, "load_mN": 2.0,
                       "noise_rel": 0.05, "seed": 3, "batch": "v01",
                       "indenter_offset_um": [100.0, -50.0], "indenter_axes": [1, -1]}}
    _run_script("virtual_indentation", spec, tmp_path)
    import json
    note = json.loads((out / "note.json").read_text())
    assert note["targets"] == "SIMULATED"
    assert sum(note["phase_area_fractions"].values()) == pytest.approx(1.0)
    # the phases are eta bands around the Monte Carlo eta, in eta order
    seg = pd.DataFrame(note["segmentation"]).set_index("phase")
    assert (seg.loc[list(PHASE_ETA_MC), "eta"].diff().dropna() > 0).all()
    assert ((seg["eta_lo"] < seg["eta"]) & (seg["eta"] < seg["eta_hi"])).all()
    labels = np.load(out / "labels.npy")
    assert labels.shape == (800, 800) and labels.dtype == np.uint8
    # BSE contrast: bright clinker -> ACC; the darkest pixels (0.09 % of this image, specks the
    # median filter merges into their surroundings) -> the two darkest phases, pore or LD-C-S-H
    assert (labels[real_bse_image >= 200] == 4).mean() > 0.8
    assert (labels[real_bse_image <= 30] <= 1).mean() > 0.95
    # a physical segmentation: no "pore" class the size of a grey mode (a histogram fit gave 20 %)
    assert note["phase_area_fractions"]["pore"] < 0.01
    full = pd.read_csv(out / "full.csv")
    acc, rej = mp_indentation.read_export(out / "v01.csv", batch="v01")
    assert len(rej) == 0 and len(acc) == len(full) == 9 * 9   # floor(359.5 / 40) + 1 = 9
    # stage = s * X + d
    np.testing.assert_allclose(1 * acc["x_um"] + 100.0, full["x_um"], atol=1e-6)
    np.testing.assert_allclose(-1 * acc["y_um"] - 50.0, full["y_um"], atol=1e-6)
    np.testing.assert_allclose(acc["E_GPa"], full["E_GPa"], rtol=1e-8)


def test_read_indentation_script_refuses_a_file_without_valid_rows(tmp_path):
    bad = tmp_path / "b.csv"
    bad.write_text("INDENT,X,Y,DEPTH,LOAD,STIFFNESS,HARDNESS,MODULUS\n1,0,0,200,2,35000,-1,30\n")
    spec = {"input": {"export": str(bad)},
            "output": {"indents": str(tmp_path / "i.csv"), "rejected": str(tmp_path / "r.csv")},
            "params": {"batch": "b", "columns": None, "units": None}}
    with pytest.raises(InputError, match=r"b\.csv: no valid indent"):
        _run_script("read_indentation", spec, tmp_path)
    assert not (tmp_path / "i.csv").exists() and not (tmp_path / "r.csv").exists()
    bad.write_text("INDENT,X,Y,DEPTH,LOAD,STIFFNESS,HARDNESS,MODULUS\n"
                   "1,0,0,200,2,35000,-1,30\n2,5,0,200,2,35000,1.2,30\n")
    _run_script("read_indentation", spec, tmp_path)
    assert len(pd.read_csv(tmp_path / "i.csv")) == 1
    assert pd.read_csv(tmp_path / "r.csv")["source_row"].tolist() == [1]


# ---------------------------------------------------------------- invariance to the detector


def _calibrated_real(image, gain, offset, tmp_path):
    """The real image recorded at a gain/offset (then 8-bit), as a mosaic, calibrated (rule calibrate)."""
    import tifffile
    from microprop import io as mio

    work = tmp_path / f"g{gain}_o{offset}"
    work.mkdir()
    recorded = np.clip(np.rint(gain * image.astype(float) + offset), 0, 255).astype(np.uint8)
    mosaic = mio.create_image_store(work / "mosaic.zarr", recorded.shape, np.uint8, chunk=256,
                                    attrs={"pixel_size_nm": 500.0, "origin_um": [0.0, 0.0]})
    mosaic[:, :] = recorded
    tifffile.imwrite(work / "recorded.tif", recorded)
    pd.DataFrame({"phase": list(PHASE_ETA_MC), "eta": list(PHASE_ETA_MC.values())}).to_csv(
        work / "phase_eta.csv", index=False)
    pd.DataFrame({"n": [0.0, 1.0], "eta": [0.15, 0.45], "eta_err": [0.001, 0.001]}).to_csv(
        work / "eta_table.csv", index=False)
    _run_script("calibrate", {
        "input": {"mosaic": str(work / "mosaic.zarr"), "phase_eta": str(work / "phase_eta.csv"),
                  "eta_table": str(work / "eta_table.csv")},
        "output": {"calibrated": str(work / "calibrated.zarr"), "hist": str(work / "hist.png")},
        "params": {"mode": "eta", "reference_phases": ["LD-C-S-H", "ACC"], "reference_greys": "modes",
                   "clinker_grey_window": None, "micf_sigma_px": 10.0, "chunk": 256}}, work)
    return work


def _virtual_indents_at_detector_setting(image, gain, offset, tmp_path):
    """The real image recorded at another gain/offset (then 8-bit), calibrated, virtually indented."""
    work = _calibrated_real(image, gain, offset, tmp_path)
    out = work / "out"
    _run_script("virtual_indentation", {
        "input": {"image": str(work / "recorded.tif"), "calibrated": str(work / "calibrated.zarr"),
                  "phase_eta": str(work / "phase_eta.csv")},
        "output": {"export": str(out / "v01.csv"), "labels": str(out / "labels.npy"),
                   "note": str(out / "note.json"), "indents": str(out / "full.csv")},
        "params": {"pixel_size_nm": 500.0, "spacing_um": 10.0, "crop_size_um": 10.0, "load_mN": 2.0,
                   "noise_rel": 0.05, "seed": 3, "batch": "v01",
                   "indenter_offset_um": [0.0, 0.0], "indenter_axes": [1, 1]}}, work)
    return pd.read_csv(out / "full.csv"), np.load(out / "labels.npy")


def test_virtual_indentation_is_invariant_to_detector_gain_and_offset(real_bse_image, tmp_path):
    """Gain 0.8-1.25 and offset -20..+20 grey before 8-bit quantisation: >= 99 % of the
    virtual indents keep their dominant phase, because the phases come from calibrated eta."""
    ref, ref_labels = _virtual_indents_at_detector_setting(real_bse_image, 1.0, 0.0, tmp_path)
    assert len(ref) > 1000 and ref["phase"].nunique() >= 4
    for gain, offset in ((0.8, -20.0), (0.8, 20.0), (1.25, -20.0), (1.25, 20.0)):
        got, labels = _virtual_indents_at_detector_setting(real_bse_image, gain, offset, tmp_path)
        kept = float((got["phase"].to_numpy() == ref["phase"].to_numpy()).mean())
        assert kept >= 0.99, (gain, offset, kept)
        # and the phase area fractions agree (a grey-histogram segmentation refits them per image)
        fr = np.bincount(labels.ravel(), minlength=5) / labels.size
        fr0 = np.bincount(ref_labels.ravel(), minlength=5) / ref_labels.size
        assert np.abs(fr - fr0).max() < 0.02, (gain, offset, fr, fr0)
