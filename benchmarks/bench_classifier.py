"""Training throughput of the porosity-map classifier (DCNN), printed in maps/s.

Run from the repository root::

    .venv/bin/python benchmarks/bench_classifier.py [--maps 600] [--px 192 384] [--batch 32]
        [--epochs 2] [--device auto] [--threads 2]

Writes a ``maps.h5`` of random maps (three classes; the throughput does not
depend on what the maps show) at each edge ``--px``, and trains
``microprop.learning.train_classifier`` on it with the study's defaults
(D4 augmentation; bf16 autocast and uint8-resident maps on CUDA). Prints,
per edge, the median maps/s over the epochs after the first (the first
includes warm-up), the seconds per epoch, and the device. No timing limit is
asserted anywhere.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from microprop import data, learning  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--maps", type=int, default=600, help="maps in all (three classes)")
    ap.add_argument("--px", type=int, nargs="+", default=[192, 384], help="map edges to time")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    dev = learning.resolve_device(a.device)
    rng = np.random.default_rng(0)
    per = a.maps // 3
    k = int(np.ceil(np.sqrt(per)))
    print(f"device {dev}; {3 * k * k} maps, batch {a.batch}, {a.epochs} epochs")
    for px in a.px:
        with tempfile.TemporaryDirectory() as tmp:
            classes = {c: {"mulf": (rng.random((k * px, k * px), np.float32) * 0.4),
                           "micf": np.zeros((k * px, k * px), np.float32), "source": c}
                       for c in ("S1", "S2", "S3")}
            path = Path(tmp) / "maps.h5"
            t0 = time.perf_counter()
            data.write_map_dataset(path, classes, 52.0, px, n_train=int(0.8 * k * k), seed=0)
            t_write = time.perf_counter() - t0
            del classes
            r = learning.train_classifier(path, "MulF", Path(tmp) / "m", epochs=a.epochs,
                                          batch_size=a.batch, device=a.device, num_threads=a.threads)
            hist = pd.read_csv(r["metrics"])
            later = hist["images_per_s"].iloc[1:] if len(hist) > 1 else hist["images_per_s"]
            print(f"{px} px maps: {later.median():.1f} maps/s training (median of epochs 2..; first epoch "
                  f"{hist['images_per_s'].iloc[0]:.1f}), {hist['epoch_s'].median():.2f} s/epoch for "
                  f"{len(data.read_maps(path, 'MulF', 'random', 'train')[0])} maps; maps.h5 written in "
                  f"{t_write:.1f} s; device {r['device']}")


if __name__ == "__main__":
    main()
