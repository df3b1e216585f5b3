"""Mapping throughput: crops/s and megapixels/s of sliding-window inference.

Run from the repository root::

    .venv/bin/python benchmarks/bench_mapping.py [--device auto] [--input-px 64]
        [--rows 1500] [--cols 1500] [--step 31] [--crop-px 250]

Maps a region of the demo's calibrated map (``results/demo/A1/calibrated.zarr``
when it exists, else a synthetic one) with ``microprop.learning.predict_map``
and the seed ResNet (random weights: the cost does not depend on them),
crops area-averaged to ``--input-px`` as the trained model would. Prints the
device, forward GFLOP per crop, crops/s and megapixels of map per second.
"""
import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from microprop import io as mio  # noqa: E402
from microprop import learning  # noqa: E402
from microprop.learning.models import SeedResNet, model_flops  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--input-px", type=int, default=64)
    ap.add_argument("--rows", type=int, default=1500)
    ap.add_argument("--cols", type=int, default=1500)
    ap.add_argument("--step", type=int, default=31)
    ap.add_argument("--crop-px", type=int, default=250)
    ap.add_argument("--batch", type=int, default=None,
                    help="crops per forward pass (default 512 on CUDA, 64 on CPU)")
    a = ap.parse_args(argv)
    dev = learning.resolve_device(a.device)
    if dev.type == "cpu":
        torch.set_num_threads(os.cpu_count())
    model = SeedResNet().to(dev).eval()
    S = a.crop_px

    # the workflow's own inference path (bf16 autocast on CUDA), standardised units
    meta = {"crop_size_px": S, "input_px": a.input_px if a.input_px != S else None,
            "target_mean": 0.0, "target_std": 1.0}
    batch = a.batch or (512 if dev.type == "cuda" else 64)

    def predict(crops):
        return learning.predict(model, meta, crops, dev, batch_size=batch)

    path = Path("results/demo/A1/calibrated.zarr")
    if path.exists():
        region = np.asarray(mio.open_image(path, "MulF")[:a.rows, :a.cols])
        source = str(path)
    else:
        region = (0.12 + 0.02 * np.random.default_rng(0).standard_normal((a.rows, a.cols))).astype(np.float32)
        source = "synthetic"
    predict(region[None, :S, :S].repeat(4, 0))  # warm-up
    t0 = time.perf_counter()
    grid, _ = learning.predict_map(region, predict, S, a.step, batch=batch)
    dt = time.perf_counter() - t0
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; map region {region.shape} from {source}; crop {S} px -> {a.input_px} px, step {a.step} px, batch {batch}")
    print(f"forward {model_flops(model, a.input_px) / 1e9:.2f} GFLOP per crop")
    print(f"{grid.size} crops in {dt:.2f} s: {grid.size / dt:.1f} crops/s, "
          f"{region.size / 1e6 / dt:.3f} Mpx/s of map")


if __name__ == "__main__":
    main()
