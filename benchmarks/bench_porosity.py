"""Time to build one class's local porosity maps, step by step, printed.

Run from the repository root::

    .venv/bin/python benchmarks/bench_porosity.py [--maps 256] [--map-px 384] [--input-px 192]

For one virtual class (S1 of ``microprop.virtual.DEMO_POROSITY_CLASSES``) at
52 nm/px: the equivalent-porosity map (``virtual.porosity_map``), its BSE
render through a 5 kV eta(n) table (``virtual.render_porosity_bse``; the table
is a Monte Carlo run of 2,000 electrons per point, timed apart), the
calibration back to porosity (``physics.calibrate_mosaic``, MulF and MicF with
sigma 10 px), and the cutting into local maps with their descriptors
(``data.write_map_dataset`` with ``microstructure.porosity_descriptors``,
for two classes so that the file is a valid study). Prints seconds and
megapixels per second of each step; no timing limit is asserted anywhere.
"""
import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import numpy as np  # noqa: E402
import zarr  # noqa: E402
from microprop import data, microstructure, physics  # noqa: E402
from microprop import virtual as mp_virtual  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--maps", type=int, default=256, help="local maps of the class")
    ap.add_argument("--map-px", type=int, default=384)
    ap.add_argument("--input-px", type=int, default=192)
    ap.add_argument("--electrons", type=int, default=2000, help="Monte Carlo electrons per eta(n) point")
    a = ap.parse_args(argv)
    k = int(math.ceil(math.sqrt(a.maps)))
    shape = (k * a.map_px, k * a.map_px)
    mpx = shape[0] * shape[1] / 1e6
    print(f"one class: {shape[1]} x {shape[0]} px ({mpx:.1f} Mpx, {k * k} maps of {a.map_px} px) at 52 nm/px")

    t = time.perf_counter()
    table = physics.eta_table(physics.CSH, physics.FIELDS_METAL, np.linspace(0, 1, 11), 5.0, a.electrons, 0)
    print(f"eta(n) table, 11 points x {a.electrons} electrons at 5 keV: {time.perf_counter() - t:.1f} s")

    rng = np.random.default_rng(0)
    t = time.perf_counter()
    n, _ = mp_virtual.porosity_map(shape, 52.0, mp_virtual.DEMO_POROSITY_CLASSES["S1"], rng)
    dt = time.perf_counter() - t
    print(f"porosity map: {dt:.1f} s ({mpx / dt:.1f} Mpx/s)")
    t = time.perf_counter()
    grey, det = mp_virtual.render_porosity_bse(n, table, rng)
    dt = time.perf_counter() - t
    print(f"BSE render: {dt:.1f} s ({mpx / dt:.1f} Mpx/s)")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        physics.calibrate_mosaic(grey, Path(tmp) / "cal.zarr", "porosity", [60.0, 220.0],
                                 [det["eta_csh"], det["eta_metal"]], eta_table=table,
                                 micf_sigma_px=10.0, chunk=1024, extra_attrs={"pixel_size_nm": 52.0})
        dt = time.perf_counter() - t
        print(f"calibration (MulF + MicF): {dt:.1f} s ({mpx / dt:.1f} Mpx/s)")
        g = zarr.open_group(str(Path(tmp) / "cal.zarr"), mode="r")
        cls = {"mulf": g["MulF"], "micf": g["MicF"], "source": "S1"}

        def describe(maps, px):
            d = microstructure.porosity_descriptors(maps, px)
            return {"porosity": d[:, 0], "pore_size_nm": d[:, 1]}

        t = time.perf_counter()
        data.write_map_dataset(Path(tmp) / "maps.h5", {"S1": cls, "S1b": cls}, 52.0, a.map_px,
                               input_px=a.input_px, describe=describe)
        dt = (time.perf_counter() - t) / 2
        print(f"local maps with descriptors, per class: {dt:.1f} s ({k * k / dt:.0f} maps/s)")


if __name__ == "__main__":
    main()
