"""Tests of the backscatter Monte Carlo (microprop.physics).

Known answers: hand-computed formula masses and mixture densities, Reuter's
(1972) measured-eta fit for pure elements, Castaing's rule for compounds, the
continuous-slowing-down range from a quadrature of the same stopping power,
and the density scaling law of a homogeneous target.
"""
import math

import numpy as np
import pytest
from microprop import physics as mp_physics
from microprop.errors import InputError

N = 6000  # electrons per eta in this file: binomial error <= 0.0065


# ---------------------------------------------------------------- formulae
@pytest.mark.parametrize("formula, expected", [
    ("(CaO)1.7(SiO2)(H2O)4", {"Ca": 1.7, "O": 7.7, "Si": 1.0, "H": 8.0}),
    ("Ca(OH)2", {"Ca": 1.0, "O": 2.0, "H": 2.0}),
    ("Ca3SiO5", {"Ca": 3.0, "Si": 1.0, "O": 5.0}),
    ("K4(Fe(CN)6)", {"K": 4.0, "Fe": 1.0, "C": 6.0, "N": 6.0}),
    ("CaSO4·2H2O", {"Ca": 1.0, "S": 1.0, "O": 6.0, "H": 4.0}),
    ("(C21H24O4)5(C4H13N3)2", {"C": 113.0, "H": 146.0, "O": 20.0, "N": 6.0}),
])
def test_parse_formula_known_answers(formula, expected):
    got = mp_physics.parse_formula(formula)
    assert set(got) == set(expected)
    for s, n in expected.items():
        assert got[s] == pytest.approx(n, abs=1e-12)


@pytest.mark.parametrize("bad", ["", "Xx2", "Ca(OH", "CaOH)2", "2", "Ca$O", "(2)"])
def test_parse_formula_rejects_bad_input(bad):
    with pytest.raises(InputError, match="formula"):
        mp_physics.parse_formula(bad)


def test_material_from_formula_mass_fractions_by_hand():
    m = mp_physics.material_from_formula("Ca(OH)2", 2.24)
    molar = 40.078 + 2 * 15.999 + 2 * 1.008  # g/mol
    w = dict(zip(m.symbols, m.mass_fractions))
    assert w["Ca"] == pytest.approx(40.078 / molar, rel=1e-12)
    assert w["O"] == pytest.approx(2 * 15.999 / molar, rel=1e-12)
    assert w["H"] == pytest.approx(2 * 1.008 / molar, rel=1e-12)
    assert m.Z == (20, 8, 1)
    # number densities: rho * N_A / molar mass formula units per cm3
    fu = 2.24 * mp_physics.AVOGADRO / molar
    assert np.allclose(m.atoms_per_cm3(), [fu, 2 * fu, 2 * fu], rtol=1e-12)


def test_mix_by_volume_conserves_mass_by_hand():
    cu, al = mp_physics.element("Cu"), mp_physics.element("Al")
    mix = mp_physics.mix_by_volume(cu, al, 0.25)
    rho = 0.75 * 8.96 + 0.25 * 2.699            # = 7.39475 g/cm3
    assert mix.density_g_cm3 == pytest.approx(rho, rel=1e-12)
    w = dict(zip(mix.symbols, mix.mass_fractions))
    assert w["Al"] == pytest.approx(0.25 * 2.699 / rho, rel=1e-12)   # 0.091247
    assert w["Cu"] == pytest.approx(0.75 * 8.96 / rho, rel=1e-12)
    # per element: mass per cm3 of the mixture = sum of the parts' contributions
    f = 0.3
    m = mp_physics.mix_by_volume(mp_physics.CSH, mp_physics.FIELDS_METAL, f)
    assert sum(m.mass_fractions) == pytest.approx(1.0, abs=1e-12)
    for s, wm in zip(m.symbols, m.mass_fractions):
        parts = sum(frac * mat.density_g_cm3 * dict(zip(mat.symbols, mat.mass_fractions)).get(s, 0.0)
                    for mat, frac in ((mp_physics.CSH, 1 - f), (mp_physics.FIELDS_METAL, f)))
        assert m.density_g_cm3 * wm == pytest.approx(parts, rel=1e-12)
    with pytest.raises(InputError, match="volume fraction"):
        mp_physics.mix_by_volume(cu, al, 1.2)


def test_material_validation():
    with pytest.raises(InputError, match="sum"):
        mp_physics.material_from_mass_fractions({"Cu": 0.5, "Al": 0.3}, 5.0)
    with pytest.raises(InputError, match="density"):
        mp_physics.material_from_formula("SiO2", 0.0)
    with pytest.raises(InputError, match="density_g_cm3"):
        mp_physics.element("N")
    with pytest.raises(InputError, match="unknown"):
        mp_physics.element("Qq")
    fm = mp_physics.FIELDS_METAL
    assert dict(zip(fm.symbols, fm.mass_fractions)) == pytest.approx({"Bi": 0.325, "In": 0.51, "Sn": 0.165})


def test_castaing_eta_by_hand():
    m = mp_physics.material_from_formula("Ca(OH)2", 2.24)
    etas = {"Ca": 0.25, "O": 0.08, "H": 0.01}
    w = dict(zip(m.symbols, m.mass_fractions))
    assert mp_physics.castaing_eta(m, etas) == pytest.approx(
        0.25 * w["Ca"] + 0.08 * w["O"] + 0.01 * w["H"], rel=1e-12)
    with pytest.raises(InputError, match="no eta given"):
        mp_physics.castaing_eta(m, {"Ca": 0.25})


def test_reference_table_is_reuter_fit():
    assert mp_physics.REFERENCE_ETA_20KEV["Cu"] == pytest.approx(0.3024, abs=1e-4)
    assert mp_physics.REFERENCE_ETA_20KEV["Au"] == pytest.approx(0.4870, abs=1e-3)
    assert set(mp_physics.REFERENCE_ETA_20KEV) == {"C", "Al", "Si", "Ti", "Cu", "Ag", "In", "Sn", "Au", "Bi"}
    # Reuter's polynomial by hand for Bi (Z = 83)
    z = 83.0
    assert mp_physics.REFERENCE_ETA_20KEV["Bi"] == pytest.approx(
        -0.0254 + 0.016 * z - 1.86e-4 * z ** 2 + 8.3e-7 * z ** 3, abs=1e-4)


# ---------------------------------------------------------------- physics
def test_stopping_power_known_value_copper():
    # Joy-Luo at 20 keV in Cu, by hand: J = 9.76*29 + 58.5*29**-0.19 eV,
    # k = 0.731 + 0.0688 log10(29)
    J = (9.76 * 29 + 58.5 * 29 ** -0.19) * 1e-3
    k = 0.731 + 0.0688 * math.log10(29)
    hand = 78500 * 8.96 * 29 / (63.546 * 20) * math.log(1.166 * (20 + k * J) / J)
    assert mp_physics.stopping_power_keV_per_cm(mp_physics.element("Cu"), 20.0) == pytest.approx(hand, rel=1e-12)


@pytest.fixture(scope="module")
def element_etas():
    """eta at 20 keV of the reference elements and of H, O, Ca (same code, N electrons)."""
    out = {}
    for s in ("C", "Al", "Si", "Ti", "Cu", "Ag", "In", "Sn", "Au", "Bi", "H", "O", "Ca"):
        # eta of a homogeneous element does not depend on its density
        # (test_density_scaling_law), so gases get 1 g/cm3
        mat = mp_physics.element(s, 1.0 if s in ("H", "O") else None)
        out[s] = mp_physics.simulate_eta(mat, 20.0, N, seed=11)
    return out


@pytest.mark.parametrize("symbol", ["C", "Al", "Si", "Ti", "Cu", "Ag", "In", "Sn", "Au", "Bi"])
def test_pure_element_eta_matches_reference(element_etas, symbol):
    """Default cross-section (Browning et al. 1994, fit of Mott): within 0.02 of Reuter's fit."""
    eta, err = element_etas[symbol]
    ref = mp_physics.REFERENCE_ETA_20KEV[symbol]
    assert err == pytest.approx(math.sqrt(eta * (1 - eta) / N))
    assert abs(eta - ref) <= 0.02 + 2 * err, (symbol, eta, ref)


def test_screened_rutherford_overestimates_heavy_elements_and_mott_does_not():
    """The reason the default changed: screened Rutherford puts Bi ~0.06 above Reuter's fit."""
    ref = mp_physics.REFERENCE_ETA_20KEV["Bi"]
    bi = mp_physics.element("Bi")
    ruth, err = mp_physics.simulate_eta(bi, 20.0, 4000, seed=2, cross_section="rutherford")
    mott, _ = mp_physics.simulate_eta(bi, 20.0, 4000, seed=2, cross_section="browning")
    assert ruth - ref > 0.04 and abs(mott - ref) < 0.02 + 2 * err, (ruth, mott, ref)
    with pytest.raises(InputError, match="cross_section"):
        mp_physics.simulate_eta(bi, 20.0, 10, cross_section="mott")


def test_eta_increases_with_atomic_number(element_etas):
    order = ["H", "C", "O", "Al", "Si", "Ca", "Ti", "Cu", "Ag", "Au"]
    etas = [element_etas[s][0] for s in order]
    assert np.all(np.diff(etas) > 0), dict(zip(order, etas))


@pytest.mark.parametrize("name, formula, rho", [
    ("SiO2", "SiO2", 2.65), ("CH", "Ca(OH)2", 2.24), ("C-S-H", "(CaO)1.7(SiO2)(H2O)4", 2.12)])
def test_compound_follows_castaing_rule(element_etas, name, formula, rho):
    mat = mp_physics.material_from_formula(formula, rho, name=name)
    eta, _ = mp_physics.simulate_eta(mat, 20.0, N, seed=12)
    expected = mp_physics.castaing_eta(mat, {s: v[0] for s, v in element_etas.items()})
    assert abs(eta - expected) <= 0.02, (name, eta, expected)


def test_density_scaling_law():
    # all lengths scale with 1/rho: same random numbers give the same
    # trajectories, path lengths in proportion 1/rho
    dense = mp_physics.simulate_electrons(mp_physics.element("Cu"), 20.0, 2000, seed=5)
    light = mp_physics.simulate_electrons(mp_physics.element("Cu", 4.48), 20.0, 2000, seed=5)
    assert (dense["backscattered"] == light["backscattered"]).mean() > 0.999
    same = dense["backscattered"] == light["backscattered"]
    np.testing.assert_allclose(light["path_length_nm"][same] * 4.48,
                               dense["path_length_nm"][same] * 8.96, rtol=1e-6)


def test_path_length_of_absorbed_electrons_is_csda_range():
    mat = mp_physics.CSH
    res = mp_physics.simulate_electrons(mat, 20.0, 3000, seed=3)
    absorbed = res[~res["backscattered"]]
    r_nm = mp_physics.csda_range_cm(mat, 20.0, 0.5) * 1e7
    assert absorbed["path_length_nm"].mean() == pytest.approx(r_nm, rel=0.01)
    assert res["max_depth_nm"].max() < r_nm
    bse = res[res["backscattered"]]
    assert bse["exit_energy_keV"].between(0.5, 20.0).all()
    assert (absorbed["exit_energy_keV"] <= 0.5).all()


def test_deterministic_given_seed():
    cu = mp_physics.element("Cu")
    a = mp_physics.simulate_electrons(cu, 20.0, 1000, seed=7)
    b = mp_physics.simulate_electrons(cu, 20.0, 1000, seed=7)
    c = mp_physics.simulate_electrons(cu, 20.0, 1000, seed=8)
    assert a.equals(b)
    assert not a["path_length_nm"].equals(c["path_length_nm"])


def test_result_does_not_depend_on_thread_count():
    import numba

    n0 = numba.get_num_threads()
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has a single thread here")
    cu = mp_physics.element("Cu")
    try:
        numba.set_num_threads(1)
        one = mp_physics.simulate_electrons(cu, 20.0, 1000, seed=9)
        numba.set_num_threads(2)
        two = mp_physics.simulate_electrons(cu, 20.0, 1000, seed=9)
    finally:
        numba.set_num_threads(n0)
    assert one.equals(two)


@pytest.mark.parametrize("kwargs, match", [
    ({"beam_energy_keV": -1.0}, "beam energy"),
    ({"n_electrons": 0}, "n_electrons"),
    ({"cutoff_keV": 30.0}, "cut-off"),
])
def test_simulate_rejects_bad_parameters(kwargs, match):
    with pytest.raises(InputError, match=match):
        mp_physics.simulate_eta(mp_physics.element("Cu"), **kwargs)


# ---------------------------------------------------------------- tables
def test_eta_table_field_metal_monotonic_with_end_points():
    n = [0.0, 0.1, 0.25, 0.5, 0.75, 1.0]
    table = mp_physics.eta_table(mp_physics.CSH, mp_physics.FIELDS_METAL, n, 20.0, 4000, seed=4)
    assert list(table.columns) == ["n", "eta", "eta_err"]
    np.testing.assert_allclose(table["n"], n)
    d = np.diff(table["eta"])
    assert np.all(d > -2 * table["eta_err"].to_numpy()[1:]), table
    assert table["eta"].iloc[-1] - table["eta"].iloc[0] > 0.25   # pores filled with metal are bright
    eta_csh, err_csh = mp_physics.simulate_eta(mp_physics.CSH, 20.0, 4000, seed=4)
    eta_fm, err_fm = mp_physics.simulate_eta(mp_physics.FIELDS_METAL, 20.0, 4000, seed=4)
    assert abs(table["eta"].iloc[0] - eta_csh) <= err_csh
    assert abs(table["eta"].iloc[-1] - eta_fm) <= err_fm
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        mp_physics.eta_table(mp_physics.CSH, mp_physics.FIELDS_METAL, [0.5, 1.5], n_electrons=10)


def test_phase_eta_order():
    table = mp_physics.phase_eta_table(n_electrons=N, seed=0)
    assert list(table["phase"]) == ["pore", "LD-C-S-H", "HD-C-S-H", "CH", "ACC"]
    assert list(table.columns) == ["phase", "formula", "density_g_cm3", "eta", "eta_err"]
    assert table["eta"].is_monotonic_increasing and table["eta"].nunique() == 5, table
    # densities of the gel mixtures by hand: 0.64*2.604 + 0.36*1.15, 0.74*2.604 + 0.26*1.15
    dens = dict(zip(table["phase"], table["density_g_cm3"]))
    assert dens["LD-C-S-H"] == pytest.approx(0.64 * 2.604 + 0.36 * 1.15)
    assert dens["HD-C-S-H"] == pytest.approx(0.74 * 2.604 + 0.26 * 1.15)
