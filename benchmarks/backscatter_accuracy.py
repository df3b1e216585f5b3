"""Accuracy of the backscatter Monte Carlo against reference data, printed.

Run from the repository root::

    .venv/bin/python benchmarks/backscatter_accuracy.py [--electrons 20000]

Pure elements at 20 keV against Reuter's (1972) fit of measured backscatter
coefficients (``microprop.physics.REFERENCE_ETA_20KEV``; acceptance
0.03 absolute or 15 %), compounds against the mass-fraction (Castaing)
average of their elements' simulated eta (acceptance 0.02), the eta of the
five cement-paste phases, and the C-S-H/Field's-metal table eta(n).
"""
import argparse
import sys
from pathlib import Path

from microprop import physics  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))



def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--electrons", type=int, default=20000)
    ap.add_argument("--energy", type=float, default=20.0)
    a = ap.parse_args(argv)
    kw = dict(beam_energy_keV=a.energy, n_electrons=a.electrons, seed=0)
    print(f"{a.electrons} electrons per eta at {a.energy} keV")
    print("element  eta_MC   err     reference  |diff|  rel    ok")
    for sym, ref in physics.REFERENCE_ETA_20KEV.items():
        eta, err = physics.simulate_eta(physics.element(sym), **kw)
        d = abs(eta - ref)
        print(f"{sym:7s}  {eta:.4f}  {err:.4f}  {ref:.4f}     {d:.4f}  {d / ref:5.1%}  "
              f"{d <= 0.03 or d / ref <= 0.15}")
    print("compound        eta_MC   Castaing  |diff|  ok")
    for name, formula, rho in (("SiO2", "SiO2", 2.65), ("Ca(OH)2", "Ca(OH)2", 2.24),
                               ("C-S-H", "(CaO)1.7(SiO2)(H2O)4", 2.12), ("C3S", "Ca3SiO5", 3.15)):
        mat = physics.material_from_formula(formula, rho, name=name)
        eta, _ = physics.simulate_eta(mat, **kw)
        # eta does not depend on density (only path lengths scale), so gases take the compound's
        el = {s: physics.simulate_eta(physics.element(s, density_g_cm3=rho), **kw)[0] for s in mat.symbols}
        cast = physics.castaing_eta(mat, el)
        print(f"{name:14s}  {eta:.4f}   {cast:.4f}    {abs(eta - cast):.4f}  {abs(eta - cast) <= 0.02}")
    print("\nphase eta:")
    print(physics.phase_eta_table(**kw).to_string(index=False))
    print("\nC-S-H / Field's metal eta(n):")
    print(physics.eta_table(physics.CSH, physics.FIELDS_METAL, [0, 0.1, 0.25, 0.5, 0.75, 1.0], **kw).to_string(index=False))


if __name__ == "__main__":
    main()
