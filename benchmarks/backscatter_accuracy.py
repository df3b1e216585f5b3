"""Accuracy of the backscatter Monte Carlo against reference data, printed.

Run from the repository root::

    .venv/bin/python benchmarks/backscatter_accuracy.py [--electrons 20000] [--energy 20]

For both elastic cross-sections (``browning``, the fit of Mott cross-sections
by Browning et al. 1994, the default; ``rutherford``, screened Rutherford):

* pure elements C, Al, Si, Ti, Cu, Ag, In, Sn, Au, Bi at 20 keV against
  Reuter's (1972) fit of measured backscatter coefficients
  (``microprop.physics.reuter_eta``; acceptance 0.02 absolute);
* Field's metal (Bi 32.5, In 51, Sn 16.5 wt %) against the mass-fraction
  (Castaing) average of Reuter's values of its elements, and the scale of the
  equivalent porosity it implies: ``d eta / d n`` of the C-S-H/Field's-metal
  table, whose inverse converts a calibrated eta difference into a porosity
  difference;
* compounds against the Castaing average of their elements' simulated eta
  (acceptance 0.02), and the eta of the five cement-paste phases.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from microprop import physics  # noqa: E402

ELEMENTS = ("C", "Al", "Si", "Ti", "Cu", "Ag", "In", "Sn", "Au", "Bi")
FIELDS_WT = {"Bi": 0.325, "In": 0.51, "Sn": 0.165}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--electrons", type=int, default=20000)
    ap.add_argument("--energy", type=float, default=20.0)
    a = ap.parse_args(argv)
    print(f"{a.electrons} electrons per eta at {a.energy} keV")
    reuter = {s: physics.reuter_eta(physics.ELEMENTS[s][0]) for s in ELEMENTS}
    fields_ref = sum(w * reuter[s] for s, w in FIELDS_WT.items())
    worst = {}
    for cs in ("browning", "rutherford"):
        kw = dict(beam_energy_keV=a.energy, n_electrons=a.electrons, seed=0, cross_section=cs)
        print(f"\n== cross-section: {cs}{' (default)' if cs == physics.DEFAULT_CROSS_SECTION else ''}")
        print("element  eta_MC   err     Reuter   diff     ok (|diff| <= 0.02)")
        diffs = []
        for sym in ELEMENTS:
            eta, err = physics.simulate_eta(physics.element(sym), **kw)
            d = eta - reuter[sym]
            diffs.append(abs(d))
            print(f"{sym:7s}  {eta:.4f}  {err:.4f}  {reuter[sym]:.4f}  {d:+.4f}  {abs(d) <= 0.02}")
        worst[cs] = max(diffs)
        eta_f, err_f = physics.simulate_eta(physics.FIELDS_METAL, **kw)
        tab = physics.eta_table(physics.CSH, physics.FIELDS_METAL, [0.0, 1.0], **kw)
        scale = float(tab["eta"].iloc[1] - tab["eta"].iloc[0])
        print(f"Field's metal: eta {eta_f:.4f} +- {err_f:.4f}; Castaing average of Reuter's values "
              f"{fields_ref:.4f} ({eta_f - fields_ref:+.4f})")
        print(f"porosity scale: eta(n=1) - eta(n=0) = {scale:.4f} (C-S-H {tab['eta'].iloc[0]:.4f}); "
              f"a calibrated eta difference of 0.01 is a porosity difference of {0.01 / scale:.4f}")
        print("compound        eta_MC   Castaing  |diff|  ok")
        for name, formula, rho in (("SiO2", "SiO2", 2.65), ("Ca(OH)2", "Ca(OH)2", 2.24),
                                   ("C-S-H", "(CaO)1.7(SiO2)(H2O)4", 2.12), ("C3S", "Ca3SiO5", 3.15)):
            mat = physics.material_from_formula(formula, rho, name=name)
            eta, _ = physics.simulate_eta(mat, **kw)
            # eta does not depend on density (only path lengths scale), so gases take the compound's
            el = {s: physics.simulate_eta(physics.element(s, density_g_cm3=rho), **kw)[0]
                  for s in mat.symbols}
            cast = physics.castaing_eta(mat, el)
            print(f"{name:14s}  {eta:.4f}   {cast:.4f}    {abs(eta - cast):.4f}  {abs(eta - cast) <= 0.02}")
        print("phase eta:")
        print(physics.phase_eta_table(**kw).to_string(index=False))
    print("\nlargest |eta - Reuter| over the 10 elements: "
          + ", ".join(f"{cs} {w:.4f}" for cs, w in worst.items()))
    return 0 if worst[physics.DEFAULT_CROSS_SECTION] <= 0.02 else 1


if __name__ == "__main__":
    sys.exit(main())
