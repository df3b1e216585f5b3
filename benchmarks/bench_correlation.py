"""Time of the grey-level two-point correlation S2(r, delta n) of one local map, printed.

Run from the repository root::

    .venv/bin/python benchmarks/bench_correlation.py [--px 384] [--levels 256 64] [--max-r 192] [--repeat 3]

For a map of the demo's class S1 (``microprop.virtual.porosity_map``, 52 nm/px)
quantised to ``--levels`` levels: seconds of
``microstructure.radial_s2`` (the 2-D FFTs of the level frequencies, the
reflection-averaged power spectrum, one octant's type-I DCT and the ring sums;
scipy on ``--workers`` CPU threads), the best of ``--repeat`` runs after a
warm-up, and the largest difference of the float32 S2 against float64. Where
CUDA is available, the same for the torch path on the GPU (``device="cuda"``,
timed with ``torch.cuda.synchronize``). For comparison, the per-displacement
volume (``level_correlation``'s 3-D FFT, which the ring average used before)
is timed once. No timing limit is asserted anywhere.
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
    try:
        import torch
        cuda = torch.cuda.is_available()
    except ImportError:                      # the analysis env has no torch
        cuda = False
    for L in a.levels:
        lev = corr.quantize_levels(n, L)

        def timed(**kw):
            corr.radial_s2(lev, L, a.max_r, **kw)          # warm-up
            times = []
            for _ in range(a.repeat):
                if kw.get("device"):
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                out = corr.radial_s2(lev, L, a.max_r, **kw)
                if kw.get("device"):
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
            return min(times), out

        t32, (r, delta, s2, frac) = timed(workers=a.workers)
        _, (_, _, s64, _) = timed(workers=a.workers, dtype=np.float64)
        lengths = corr.correlation_lengths(r * 0.052, s2, frac)
        t0 = time.perf_counter()
        corr._pair_counts(lev, L, a.max_r, workers=a.workers)
        t_volume = time.perf_counter() - t0
        print(f"{a.px} x {a.px} px map, {L} levels ({len(np.unique(lev))} populated), r up to {r[-1]} px: "
              f"{t32:.3f} s on the CPU (best of {a.repeat}, {a.workers} threads; the per-displacement volume "
              f"took {t_volume:.2f} s); correlation length {lengths['correlation_length']:.3f} um, characteristic "
              f"length {lengths['characteristic_length']:.2f} um; float32 against float64: largest difference "
              f"{np.nanmax(np.abs(s2 - s64)):.2g} in probability")
        if cuda:
            tg, (_, _, sg, _) = timed(device="cuda")
            print(f"  CUDA ({torch.cuda.get_device_name()}): {tg * 1000:.1f} ms, largest difference to the CPU's "
                  f"float64 {np.nanmax(np.abs(sg - s64)):.2g}")

if __name__ == "__main__":
    main()
