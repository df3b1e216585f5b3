"""Rule script: Monte Carlo backscatter coefficient eta(n) and per-phase eta.

Expects
-------
snakemake.params.beam_energy_keV : float
    Incident beam energy, keV (e.g. 20.0).
snakemake.params.n_electrons : int
    Electrons per eta value (e.g. 20000; binomial error ~0.0035).
snakemake.params.n_points : int
    Number of equivalent-porosity values n, evenly spaced from 0 to 1
    inclusive (>= 2).
snakemake.params.seed : int
    Random seed (results depend on it only, not on the thread count).
snakemake.params.cross_section : {"browning", "rutherford"}, optional
    Elastic cross-section model (default ``browning``, a fit of Mott
    cross-sections; see :func:`microprop.physics.simulate_electrons`).
snakemake.params.cutoff_keV : float, optional
    Absorption cut-off energy, keV (default 0.5).
snakemake.output.eta_table : str
    CSV ``n, eta, eta_err``: C-S-H ((CaO)1.7(SiO2)(H2O)4, 2.12 g/cm3) whose
    pore volume fraction n is filled with Field's metal.
snakemake.output.eta_meta : str
    JSON: parameters, materials (formula, density, mass fractions), code
    version, numba threads, wall time.
snakemake.output.phase_eta : str
    CSV ``phase, formula, density_g_cm3, eta, eta_err`` for the five
    cement-paste phases (``microprop.physics.DEFAULT_PHASES``).
snakemake.threads : int
    Threads for the numba kernel.

Nothing is written until all results are computed; each file is written
atomically.
"""
import logging
import time

from microprop.workflow import setup_script

log = logging.getLogger("microprop.simulate_backscatter")


def main(snakemake):
    """Simulate eta(n) and the per-phase eta; write the tables and their metadata."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    import microprop
    import numpy as np
    from microprop import physics
    from microprop.errors import InputError
    from microprop.io import write_json, write_table

    params = snakemake.params
    energy = float(params.beam_energy_keV)
    n_electrons = int(params.n_electrons)
    n_points = int(params.n_points)
    seed = int(params.seed)
    cutoff = float(getattr(params, "cutoff_keV", 0.5))
    cross_section = str(params.get("cross_section", physics.DEFAULT_CROSS_SECTION))
    if n_points < 2:
        raise InputError(f"params.n_points = {n_points}: expected at least 2 values of n in [0, 1]")

    try:
        import numba

        numba.set_num_threads(max(1, min(int(getattr(snakemake, "threads", 1) or 1),
                                         numba.config.NUMBA_NUM_THREADS)))
    except ImportError:  # pragma: no cover - numba is a dependency
        pass

    t0 = time.perf_counter()
    n_values = np.linspace(0.0, 1.0, n_points)
    log.info("eta(n): %s + Field's metal, %d values, %d electrons each, %g keV, %d threads",
             physics.CSH.name, n_points, n_electrons, energy, physics.n_threads())
    table = physics.eta_table(physics.CSH, physics.FIELDS_METAL, n_values, energy, n_electrons,
                              seed, cutoff, cross_section=cross_section)
    log.info("phase eta: %s", ", ".join(physics.DEFAULT_PHASES))
    phases = physics.phase_eta_table(physics.DEFAULT_PHASES, energy, n_electrons, seed, cutoff,
                                     cross_section=cross_section)
    wall = time.perf_counter() - t0

    order = phases["eta"].to_numpy()
    if not np.all(np.diff(order) > 0):
        log.warning("phase eta not in the order %s: %s", list(phases["phase"]),
                    order.round(4).tolist())

    meta = {
        "beam_energy_keV": energy, "n_electrons": n_electrons, "n_points": n_points, "seed": seed,
        "cutoff_keV": cutoff, "cross_section": cross_section,
        "method": "single-scattering Monte Carlo (Joy 1995): "
                  + ("elastic cross-sections of Browning et al. (1994, J. Appl. Phys. 76, 2016), a fit "
                     "of Mott cross-sections" if cross_section == "browning" else "screened Rutherford")
                  + ", Joy-Luo (1989) Bethe stopping power, J from Berger & Seltzer (1964)",
        "materials": {"matrix": physics.CSH.as_dict(), "filler": physics.FIELDS_METAL.as_dict(),
                      "phases": {k: m.as_dict() for k, m in physics.DEFAULT_PHASES.items()}},
        "code_version": microprop.__version__,
        "numba_threads": physics.n_threads(),
        "wall_time_s": round(wall, 3),
    }
    write_table(table, snakemake.output.eta_table)
    write_table(phases, snakemake.output.phase_eta)
    write_json(meta, snakemake.output.eta_meta)
    log.info("done in %.1f s", wall)


if __name__ == "__main__":
    main(setup_script(globals()))
