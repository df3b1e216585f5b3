"""Validation against a virtual specimen's truth: known offsets and errors."""
import numpy as np
import pandas as pd
import pytest
from microprop import virtual as mp_virtual
from microprop.errors import InputError


def test_stitching_errors_remove_the_common_offset():
    truth = pd.DataFrame({"tile": ["a", "b", "c"], "x_px": [100.0, 300.0, 500.0], "y_px": [50.0, 52.0, 49.0]})
    placed = truth.copy()
    placed[["x_px", "y_px"]] -= [100.0, 49.0]          # mosaic frame: a pure offset
    placed.loc[1, "x_px"] += 3.0                      # one tile off by 3 px in x
    res = mp_virtual.stitching_errors(truth, placed)
    # the offset estimate moves by 1 px; errors are 1, 2, 1 px
    assert res["max_px"] == pytest.approx(2.0)
    assert res["median_px"] == pytest.approx(1.0)


def test_location_errors_in_micrometres():
    truth = pd.DataFrame({"batch": ["b1"] * 2, "indent": [1, 2], "x_px": [10.0, 20.0], "y_px": [5.0, 5.0]})
    loc = pd.DataFrame({"batch": ["b1"] * 2, "indent": [1, 2], "x_px": [13.0, 20.0], "y_px": [9.0, 5.0]})
    res = mp_virtual.location_errors(truth, loc, offset_px=[0.0, 0.0], pixel_size_nm=100.0)
    assert res["max_um"] == pytest.approx(0.5)                  # 5 px
    assert res["rms_um"] == pytest.approx(np.sqrt(0.5 ** 2 / 2))
    with pytest.raises(InputError):
        mp_virtual.location_errors(truth, loc.assign(batch="other"), [0, 0], 100.0)


def test_gmm_errors():
    truth = {"CH": {"fraction": 0.2, "E_mean_GPa": 50.0}}
    gmm = pd.DataFrame({"phase": ["CH", "extra-1"], "fraction": [0.23, 0.1], "mean": [55.0, 1.0]})
    res = mp_virtual.gmm_errors(truth, gmm)
    assert res["max_fraction_abs_error"] == pytest.approx(0.03)
    assert res["max_mean_rel_error"] == pytest.approx(0.1)


def test_generated_phases_renormalise_over_solids():
    t = pd.DataFrame({"f_pore": [0.5, 0.0], "f_LD-C-S-H": [0.5, 0.0], "f_HD-C-S-H": [0.0, 0.5],
                      "f_CH": [0.0, 0.5], "f_ACC": [0.0, 0.0]})
    props = pd.DataFrame({"phase": ["LD-C-S-H", "HD-C-S-H", "CH", "ACC"], "E_mean_GPa": [26.5, 34.8, 52, 122]})
    res = mp_virtual.generated_phases(t, props)
    assert res["LD-C-S-H"]["fraction"] == pytest.approx(1 / 3)
    assert res["CH"]["fraction"] == pytest.approx(1 / 3)
    assert res["ACC"] == {"fraction": 0.0, "E_mean_GPa": 122.0}


def test_calibration_errors_with_offset():
    labels = np.zeros((40, 60), np.uint8)
    labels[:, 30:] = 4                                    # ACC on the right half
    eta = {"pore": 0.05, "ACC": 0.18}
    cal = np.where(labels == 4, 0.19, 0.05).astype(np.float32)[5:35, 10:50]   # mosaic = shifted crop
    res = mp_virtual.calibration_errors(labels, cal, offset_px=[10, 5], phase_eta=eta, step=1)
    assert res["phases"]["pore"]["abs_error"] == pytest.approx(0.0, abs=1e-6)
    assert res["phases"]["ACC"]["abs_error"] == pytest.approx(0.01, abs=1e-6)
    assert res["max_abs_error"] == pytest.approx(0.01, abs=1e-6)
