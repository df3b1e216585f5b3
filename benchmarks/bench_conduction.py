"""Time of one effective-conductivity solve of a two-phase image near percolation, printed.

Run from the repository root::

    .venv/bin/python benchmarks/bench_conduction.py [--px 1024] [--fraction 0.45] [--contrast 1e6] [--threads 2]

A ``--px`` x ``--px`` bright-particle/dark-matrix microstructure
(``microprop.virtual._composite.composite_microstructure``: overlapping discs
of radius ``--particle-px`` with clustered centres, bright area fraction
``--fraction``) is given Ni's conductivity 1.4e5 S/cm in the bright phase and
``1.4e5 / --contrast`` in the matrix, and
``microprop.physics._conduction.effective_conductivity`` solves it along each
axis (Ruge-Stuben AMG-preconditioned conjugate gradients with
extended-precision refinement). Printed per axis: the multigrid setup and
solve seconds, CG iterations and refinement passes, the relative residual and
the inlet/outlet current conservation error, and the effective conductivity.
``--threads`` caps the BLAS/OpenMP threads (set before numpy is imported; the
sparse kernels themselves are single-threaded). No timing limit is asserted.
"""
import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--px", type=int, default=1024)
    ap.add_argument("--fraction", type=float, default=0.45, help="bright area fraction")
    ap.add_argument("--contrast", type=float, default=1e6, help="sigma_bright / sigma_dark")
    ap.add_argument("--particle-px", type=float, default=None,
                    help="particle radius, px (default: px / 64)")
    ap.add_argument("--clustering", type=float, default=0.5)
    ap.add_argument("--method", default="ruge_stuben", choices=["ruge_stuben", "smoothed_aggregation", "direct"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(a.threads)

    import numpy as np
    from microprop.physics._conduction import effective_conductivity
    from microprop.virtual._composite import composite_microstructure

    rng = np.random.default_rng(a.seed)
    particle = a.particle_px if a.particle_px is not None else a.px / 64
    t0 = time.perf_counter()
    bright = composite_microstructure((a.px, a.px), a.fraction, particle, a.clustering, rng)
    t_gen = time.perf_counter() - t0
    s_b = 1.4e5
    sigma = np.where(bright, s_b, s_b / a.contrast)
    print(f"{a.px} x {a.px} px ({a.px * a.px / 1e6:.2f} M unknowns), bright fraction {bright.mean():.3f}, "
          f"particle radius {particle:.1f} px, clustering {a.clustering}, contrast {a.contrast:.3g} "
          f"(generated in {t_gen:.2f} s), {a.method}, {a.threads} threads")
    logs = []
    total = 0.0
    for axis in (0, 1):
        r = effective_conductivity(sigma, axis=axis, method=a.method)
        total += r["setup_s"] + r["solve_s"]
        logs.append(np.log10(r["sigma_eff"]))
        print(f"  axis {axis}: {r['setup_s']:.2f} s setup + {r['solve_s']:.2f} s solve, {r['iterations']} CG "
              f"iterations in {r['passes']} refinement pass(es), residual {r['residual']:.2g}, inlet/outlet "
              f"current conservation {r['conservation_error']:.2g}; sigma_eff {r['sigma_eff']:.4g} S/cm")
    print(f"  both axes: {total:.2f} s; geometric mean {10 ** np.mean(logs):.4g} S/cm")


if __name__ == "__main__":
    main()
