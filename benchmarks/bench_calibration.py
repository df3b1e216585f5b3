"""Speed of the calibration's block stage (grey -> MulF and MicF) against the thread count.

Run from the repository root::

    .venv/bin/python benchmarks/bench_calibration.py [--mpx 300] [--threads 1 2] [--mode porosity]
        [--chunk 1024] [--dir /tmp]

Writes a square uint8 zarr mosaic of about ``--mpx`` megapixels (four grey
phases with noise, written chunk by chunk, so memory stays flat), then runs
``microprop.physics.calibrate_mosaic`` on it with each thread count and
prints the wall time, megapixels per second and the speed-up over the first
count, and whether the maps are identical; first the time of the rule's
histogram stage (the grey modes and the detector-line fit). The issue's target: 1.8x on 2
cores for a mosaic of at least 300 Mpx. No timing limit is asserted anywhere.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import zarr  # noqa: E402
from microprop import io as mio  # noqa: E402
from microprop import physics  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mpx", type=float, default=300.0)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--mode", default="porosity", choices=["eta", "porosity"])
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--dir", default=None, help="where the mosaic and the maps go (default: a temporary folder)")
    a = ap.parse_args(argv)
    edge = int(np.sqrt(a.mpx * 1e6)) // a.chunk * a.chunk or a.chunk
    tmp = Path(tempfile.mkdtemp(dir=a.dir, prefix="bench_calibration_"))
    try:
        rng = np.random.default_rng(0)
        arr = mio.create_image_store(tmp / "mosaic.zarr", (edge, edge), np.uint8, chunk=a.chunk,
                                     attrs={"pixel_size_nm": 40.0, "origin_um": [0.0, 0.0]})
        t0 = time.perf_counter()
        for sy, sx in mio.iter_chunks((edge, edge), a.chunk):
            shape = (sy.stop - sy.start, sx.stop - sx.start)
            phase = rng.choice(np.array([45, 110, 170, 230], np.float32), size=shape, p=[0.2, 0.4, 0.2, 0.2])
            arr[sy, sx] = np.clip(phase + rng.normal(0, 8, shape), 0, 255).astype(np.uint8)
        mosaic = mio.open_image(tmp / "mosaic.zarr")
        print(f"mosaic {edge} x {edge} px ({edge * edge / 1e6:.0f} Mpx, chunks {a.chunk} px) written in "
              f"{time.perf_counter() - t0:.1f} s; mode {a.mode}")
        eta_table = pd.DataFrame({"n": np.linspace(0, 1, 11), "eta": np.linspace(0.30, 0.05, 11)})
        # the histogram stage of rule calibrate: modes, then the detector line on all phases
        t0 = time.perf_counter()
        physics.find_reference_greys(mosaic, method="gmm")
        t1 = time.perf_counter()
        physics.fit_detector_line(mosaic, {"pore": 0.05, "C-S-H": 0.15, "CH": 0.2, "ACC": 0.3})
        t2 = time.perf_counter()
        print(f"histogram stage: modes {t1 - t0:.2f} s, detector line {t2 - t1:.2f} s "
              f"(load average {os.getloadavg()[0]:.2f})")
        first, ref = None, None
        for t in a.threads:
            out = tmp / f"cal_{t}.zarr"
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            physics.calibrate_mosaic(mosaic, out, a.mode, (45.0, 230.0), (0.10, 0.28), eta_table=eta_table,
                                     clinker_grey_window=(215, 256), micf_sigma_px=10.0, chunk=a.chunk,
                                     threads=t)
            dt = time.perf_counter() - t0
            first = first or dt
            g = zarr.open_group(str(out), mode="r")
            probe = np.asarray(g["MicF"][: a.chunk * 2, : a.chunk * 2])
            same = "" if ref is None else f", maps identical to the first count: {bool(np.array_equal(probe, ref))}"
            ref = probe if ref is None else ref
            print(f"threads {t}: {dt:.1f} s, {edge * edge / 1e6 / dt:.1f} Mpx/s, speed-up {first / dt:.2f}x{same} (load average {load:.2f} before)")
            shutil.rmtree(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
