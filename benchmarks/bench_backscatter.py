"""Wall time of the backscatter Monte Carlo: 20,000 electrons at 20 keV.

Run from the repository root::

    .venv/bin/python benchmarks/bench_backscatter.py [--electrons 20000] [--repeat 3]

Prints the numba thread count, the first-call time (kernel compilation or
loading from numba's on-disk cache) and, for Cu and C-S-H, the best of
``--repeat`` wall times of one :func:`microprop.physics.simulate_eta`
call. Target: under 10 s per eta on 2 cores.
"""
import argparse
import sys
import time
from pathlib import Path

from microprop import physics  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))



def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--electrons", type=int, default=20000)
    ap.add_argument("--energy", type=float, default=20.0, help="beam energy, keV")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    import os

    print(f"numba threads: {physics.n_threads()} (CPU cores visible: {os.cpu_count()})")
    t0 = time.perf_counter()
    physics.simulate_eta(physics.element("Cu"), args.energy, 10, seed=0)
    print(f"first call (compile or cache load): {time.perf_counter() - t0:.2f} s")
    for mat in (physics.element("Cu"), physics.CSH):
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            eta, err = physics.simulate_eta(mat, args.energy, args.electrons, seed=0)
            times.append(time.perf_counter() - t0)
        print(f"{mat.name:6s} {args.electrons} electrons at {args.energy:g} keV: "
              f"eta = {eta:.4f} +- {err:.4f}; wall time best {min(times):.3f} s, "
              f"median {sorted(times)[len(times) // 2]:.3f} s")


if __name__ == "__main__":
    main()
