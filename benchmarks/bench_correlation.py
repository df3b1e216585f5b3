"""Time of the grey-level two-point correlation S2(r, delta n) of one local map, printed.

Run from the repository root::

    .venv/bin/python benchmarks/bench_correlation.py [--px 384] [--levels 256 64] [--max-r 192] [--repeat 3]

For a map of the demo's class S1 (``microprop.virtual.porosity_map``, 52 nm/px)
quantised to ``--levels`` levels: seconds of
``microstructure._correlation.radial_s2`` (one real 3-D FFT over levels x
pixels, its inverse, the ring average), the best of ``--repeat`` runs after a
warm-up, and the largest difference of the float32 FFT's S2 against a float64
count of the same map (both round whole pair counts, so it is 0 when the
float32 error stays under half a count). No timing limit is asserted anywhere.
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import numpy as np  # noqa: E402
from microprop import virtual as mp_virtual  # noqa: E402
from microprop.microstructure import _correlation as corr  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--px", type=int, default=384)
    ap.add_argument("--levels", type=int, nargs="+", default=[256, 64])
    ap.add_argument("--max-r", type=int, default=None, help="largest distance, px (default: half the edge)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    n, _ = mp_virtual.porosity_map((a.px, a.px), 52.0, mp_virtual.DEMO_POROSITY_CLASSES["S1"], rng, "S1")
    for L in a.levels:
        lev = corr.quantize_levels(n, L)
        corr.radial_s2(lev, L, a.max_r, workers=a.workers)          # warm-up
        times = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            r, delta, s2, frac = corr.radial_s2(lev, L, a.max_r, workers=a.workers)
            times.append(time.perf_counter() - t0)
        lengths = corr.correlation_lengths(r * 0.052, s2, frac)
        c32, _ = corr._pair_counts(lev, L, a.max_r, workers=a.workers)
        c64, _ = corr._pair_counts(lev, L, a.max_r, workers=a.workers, dtype=np.float64)
        diff = float(np.abs(c32 - c64).max())
        print(f"{a.px} x {a.px} px map, {L} levels ({len(np.unique(lev))} populated), r up to {r[-1]} px: "
              f"{min(times):.3f} s (best of {a.repeat}, {a.workers} FFT workers); correlation length "
              f"{lengths['correlation_length']:.3f} um, characteristic length {lengths['characteristic_length']:.2f} um; "
              f"float32 against float64 FFT: largest difference {diff:g} pair counts")


if __name__ == "__main__":
    main()
