"""Dense 1 um maps of large areas: windows/s, wall time and peak RSS of the dense mode.

Run from the repository root::

    .venv/bin/python benchmarks/bench_dense_map.py [--mpx 100 | --rows R --cols C]
        [--area /tmp/microprop_bench/area.zarr] [--checkpoint best.pt ...]
        [--step-um 1] [--tile-px 256] [--device auto] [--exact-windows 256]
        [--check-windows 0] [--json out.json]

1. Generates a virtual calibrated area of the asked size chunk by chunk with
   its phase truth (:func:`microprop.virtual.large_area`, a zarr group; in a
   child process, so that the mapping's peak RSS is its own; an existing
   area of the same shape and seed is reused).
2. Maps it densely at ``--step-um`` with
   :func:`microprop.learning.dense_predict_map` (the seed ResNet: the
   checkpoints given, else random weights with 250 px crops at 40 nm
   area-averaged to 32 px, the demo's CPU model; the cost does not depend on
   the weights).
3. Measures exact per-window inference (:func:`microprop.learning.predict`)
   on ``--exact-windows`` windows of the same area, on the same machine
   under the same load, for the speed ratio.
4. Optionally compares the dense map with exact inference on
   ``--check-windows`` sampled windows (:func:`microprop.learning.dense_agreement`;
   meaningful for a trained checkpoint only).

Prints windows/s, wall time, peak RSS, the speed ratio to exact inference
and the time of a 1.1-gigapixel area: *measured* when the area is that
large, otherwise *extrapolated* from the measured windows/s (and labelled
so). Timings on a shared machine are contended: the load average is printed.
"""
import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import numpy as np  # noqa: E402

GIGA_AREA_PX = 1.1e9


def _rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _windows(shape, s, step):
    from microprop import learning

    cy, cx = learning.window_centres(shape, s, step)
    return cy.size * cx.size


def generate(args, shape):
    """Generate (or reuse) the area in a child process; return its wall time (0 if reused)."""
    from microprop import io as mio

    path = Path(args.area)
    if path.exists():
        try:
            _, attrs = mio.open_calibrated(path, "MulF")
            arr = mio.open_image(path, "MulF")
            if tuple(arr.shape) == tuple(shape) and int(attrs.get("seed", -1)) == args.seed:
                print(f"area: reusing {path} ({shape[0]} x {shape[1]} px)")
                return 0.0, None
        except Exception:  # noqa: BLE001 -- anything unreadable is regenerated
            pass
    t0 = time.perf_counter()
    cmd = [sys.executable, __file__, "--generate-only", "--area", str(path), "--rows",
           str(shape[0]), "--cols", str(shape[1]), "--seed", str(args.seed),
           "--pixel-nm", str(args.pixel_nm)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    rss = json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]
    print(f"area: generated {shape[0]} x {shape[1]} px ({shape[0] * shape[1] / 1e6:.0f} Mpx) "
          f"in {dt:.1f} s, peak RSS {rss:.0f} MB -> {path}")
    return dt, rss


def _models(args, dev):
    from microprop import learning
    from microprop.learning.models import SeedResNet

    if args.checkpoint:
        models, meta = learning.load_ensemble(args.checkpoint, dev)
        return models, meta, "checkpoints " + ", ".join(args.checkpoint)
    s = int(round(args.crop_um * 1000 / args.pixel_nm))
    meta = {"crop_size_px": s, "input_px": args.input_px, "target_mean": 40.0,
            "target_std": 20.0, "target": "E_GPa"}
    return [("random", SeedResNet().to(dev).eval(), meta)], meta, "random-weight SeedResNet"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mpx", type=float, default=None, help="square area of this many megapixels")
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--cols", type=int, default=None)
    ap.add_argument("--area", default="/tmp/microprop_bench/area.zarr")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pixel-nm", type=float, default=40.0)
    ap.add_argument("--crop-um", type=float, default=10.0)
    ap.add_argument("--input-px", type=int, default=32)
    ap.add_argument("--checkpoint", nargs="*", default=[])
    ap.add_argument("--step-um", type=float, default=1.0)
    ap.add_argument("--tile-px", type=int, default=256)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    ap.add_argument("--exact-windows", type=int, default=256)
    ap.add_argument("--check-windows", type=int, default=0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.mpx:
        edge = int(round(math.sqrt(a.mpx * 1e6)))
        shape = (edge, edge)
    else:
        shape = (a.rows or 10000, a.cols or a.rows or 10000)

    if a.generate_only:
        from microprop import virtual

        virtual.large_area(a.area, shape, pixel_size_nm=a.pixel_nm, seed=a.seed)
        print(json.dumps({"peak_rss_mb": _rss_mb()}))
        return

    import torch
    from microprop import io as mio
    from microprop import learning

    gen_s, gen_rss = generate(a, shape)
    dev = learning.resolve_device(a.device)
    if dev.type == "cpu":
        torch.set_num_threads(a.threads or os.cpu_count())
    models, meta, what = _models(a, dev)
    s = int(meta["crop_size_px"])
    step = max(1, int(round(a.step_um * 1000 / a.pixel_nm)))
    calibrated, _ = mio.open_calibrated(a.area, "MulF")
    load0 = os.getloadavg()
    name = (torch.cuda.get_device_name(dev) if dev.type == "cuda"
            else f"CPU ({torch.get_num_threads()} threads of {os.cpu_count()} cores)")
    print(f"device: {name}; load average {load0[0]:.1f}; model: {what} "
          f"(crop {s} px -> {meta.get('input_px') or s} px, {len(models)} member(s))")

    rss0 = _rss_mb()
    t0 = time.perf_counter()
    grid, centres = learning.dense_predict_map(calibrated, models, s, step, device=dev,
                                               tile_px=a.tile_px, desc="dense map")
    dense_s = time.perf_counter() - t0
    rss_dense = _rss_mb()
    n = int(grid.size)
    rate = n / dense_s
    px = shape[0] * shape[1]
    load1 = os.getloadavg()
    print(f"dense map: {grid.shape[0]} x {grid.shape[1]} = {n} windows at {step} px "
          f"({step * a.pixel_nm / 1000:g} um) in {dense_s:.1f} s: {rate:.1f} windows/s, "
          f"{px / 1e6 / dense_s:.2f} Mpx/s; peak RSS {rss_dense:.0f} MB (before mapping "
          f"{rss0:.0f} MB); load average {load1[0]:.1f}")

    exact_rate = None
    if a.exact_windows > 0:
        fn = learning.ensemble_mean_predictor(models, dev, 512 if dev.type == "cuda" else 64)
        cy, cx = centres
        rng = np.random.default_rng(1)
        iy = rng.integers(0, cy.size, a.exact_windows)
        ix = rng.integers(0, cx.size, a.exact_windows)
        crops = np.stack([np.asarray(calibrated[cy[i] - s // 2:cy[i] - s // 2 + s,
                                                cx[j] - s // 2:cx[j] - s // 2 + s], np.float32)
                          for i, j in zip(iy, ix)])
        fn(crops[:8])                                                     # warm-up
        t0 = time.perf_counter()
        fn(crops)
        exact_rate = crops.shape[0] / (time.perf_counter() - t0)
        print(f"exact inference: {exact_rate:.1f} crops/s on {crops.shape[0]} windows "
              f"(same machine, load average {os.getloadavg()[0]:.1f}); dense / exact = "
              f"{rate / exact_rate:.1f}x")

    edge = int(round(math.sqrt(GIGA_AREA_PX)))
    n_giga = _windows((edge, edge), s, step)
    measured = px >= 0.99 * GIGA_AREA_PX
    giga_s = dense_s if measured else n_giga / rate
    label = "MEASURED" if measured else f"EXTRAPOLATED from {px / 1e6:.0f} Mpx at {rate:.0f} windows/s"
    print(f"1.1-gigapixel area ({edge} x {edge} px, {n_giga} windows at {step} px): dense "
          f"{giga_s / 60:.1f} min [{label}]"
          + (f"; exact would take {n_giga / exact_rate / 3600:.1f} h [EXTRAPOLATED]"
             if exact_rate else ""))

    agreement = None
    if a.check_windows > 0:
        fn = learning.ensemble_mean_predictor(models, dev, 512 if dev.type == "cuda" else 64)
        agreement = learning.dense_agreement(calibrated, grid, centres, fn, s,
                                             n_windows=a.check_windows)
        print("dense vs exact: " + json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                               for k, v in agreement.items()}))
    if a.json:
        out = {"shape": list(shape), "megapixels": px / 1e6, "step_px": step,
               "pixel_size_nm": a.pixel_nm, "model": what, "members": len(models),
               "device": name, "tile_px": a.tile_px, "generate_s": gen_s,
               "generate_peak_rss_mb": gen_rss, "windows": n, "dense_s": dense_s,
               "dense_windows_per_s": rate, "dense_peak_rss_mb": rss_dense,
               "exact_crops_per_s": exact_rate, "load_average": [load0[0], load1[0]],
               "giga_windows": n_giga, "giga_dense_s": giga_s, "giga_label": label,
               "agreement": agreement}
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=2))
        print(f"written {a.json}")


if __name__ == "__main__":
    main()
