"""Wall time and thread scaling of the backscatter Monte Carlo: 20,000 electrons at 20 keV.

Run from the repository root::

    .venv/bin/python benchmarks/bench_backscatter.py [--electrons 20000] [--repeat 3]
        [--threads 1 2]

Prints the numba thread count, the first-call time (kernel compilation or
loading from numba's on-disk cache) and, for Cu and C-S-H and each thread
count of ``--threads``, the best of ``--repeat`` wall times of one
:func:`microprop.physics.simulate_eta` call and its speed-up over the first
count. Beside it, the same for a control kernel: a trivially parallel numba
loop of equal work per iteration and no memory traffic, i.e. the speed-up
this machine gives two threads at the moment of the run (on a virtual
machine whose "cores" share a physical core, or under load, it is below 2).
The Monte Carlo's balance is its speed-up as a fraction of the control's.
Targets: under 10 s per eta on 2 cores; 1.8x from one to two threads (issue
13). The load average before each measurement is printed; no limit is
asserted anywhere.
"""
import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import numba  # noqa: E402
import numpy as np  # noqa: E402
from microprop import physics  # noqa: E402


@numba.njit(parallel=True, cache=False)
def _control(n, reps):
    """Equal, compute-bound work per iteration (no allocation, no shared writes but one)."""
    out = np.zeros(n)
    for i in numba.prange(n):
        s = 0.0
        x = i * 1e-3
        for _ in range(reps):
            x = np.sin(x) + 1.0001
            s += x
        out[i] = s
    return out


def _best(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), sorted(times)[len(times) // 2], out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--electrons", type=int, default=20000)
    ap.add_argument("--energy", type=float, default=20.0, help="beam energy, keV")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=None,
                    help="thread counts to compare (default: numba's count only)")
    args = ap.parse_args(argv)

    print(f"numba threads: {physics.n_threads()} (CPU cores visible: {os.cpu_count()}), "
          f"threading layer after first call below")
    t0 = time.perf_counter()
    physics.simulate_eta(physics.element("Cu"), args.energy, 10, seed=0)
    _control(16, 10)
    print(f"first call (compile or cache load): {time.perf_counter() - t0:.2f} s; "
          f"layer {numba.threading_layer()}")
    counts = args.threads or [physics.n_threads()]
    first = {}
    for t in counts:
        numba.set_num_threads(t)
        print(f"-- {t} thread(s), load average {os.getloadavg()[0]:.2f}")
        best, med, _ = _best(lambda: _control(4000, 20000), args.repeat)
        first.setdefault("control", best)
        print(f"control kernel: best {best:.3f} s, median {med:.3f} s, "
              f"speed-up {first['control'] / best:.2f}x")
        for mat in (physics.element("Cu"), physics.CSH):
            best, med, (eta, err) = _best(
                lambda: physics.simulate_eta(mat, args.energy, args.electrons, seed=0), args.repeat)
            first.setdefault(mat.name, best)
            print(f"{mat.name:6s} {args.electrons} electrons at {args.energy:g} keV: "
                  f"eta = {eta:.4f} +- {err:.4f}; wall time best {best:.3f} s, "
                  f"median {med:.3f} s, speed-up {first[mat.name] / best:.2f}x")


if __name__ == "__main__":
    main()
