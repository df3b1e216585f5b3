"""Time of the deep Taylor relevance pass (zennit) for one batch of local maps, printed.

Run from the repository root::

    .venv/bin/python benchmarks/bench_relevance.py [--px 192 384] [--batch 32] [--device auto] [--repeat 3]

A PorosityDCNN with the study's default widths (untrained: the cost does not
depend on the weights) explains one batch of random maps for their predicted
class (``microprop.learning.relevance_maps``: batch norm merged, z+ and z^B
rules). Prints seconds per batch and maps per second, the best of
``--repeat`` after a warm-up, and the device. No timing limit is asserted.
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from microprop.learning import relevance_maps, resolve_device  # noqa: E402
from microprop.learning.models import PorosityDCNN  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--px", type=int, nargs="+", default=[192, 384])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    dev = resolve_device(a.device)
    model = PorosityDCNN(3, input_mean=0.2, input_std=0.15).to(dev).eval()
    meta = {"arch_kwargs": model.arch_kwargs, "input_px": None}
    rng = np.random.default_rng(0)
    for px in a.px:
        x = rng.random((a.batch, px, px)).astype(np.float32)
        relevance_maps(model, meta, x, batch_size=a.batch, device=dev)
        times = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            relevance_maps(model, meta, x, batch_size=a.batch, device=dev)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        t = min(times)
        print(f"{px} px maps, batch {a.batch}: {t:.3f} s per batch, {a.batch / t:.1f} maps/s (device {dev}, "
              f"best of {a.repeat})")


if __name__ == "__main__":
    main()
