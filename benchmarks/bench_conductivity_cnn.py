"""Training throughput of the sample study's ConductivityCNN, printed in images/s.

Run from the repository root::

    .venv/bin/python benchmarks/bench_conductivity_cnn.py [--samples 58] [--images 3] [--px 128 256]
        [--batch 16] [--epochs 2] [--device auto] [--threads 2]

Writes a ``samples.h5`` of random images (the throughput does not depend on
what they show; one value per sample, five folds) at each edge ``--px`` and
trains ``microprop.learning.train_sample_cnn`` on fold 0 held out, with the
study's defaults (the 8 grid symmetries of every training image, the
default widths; bf16 autocast on CUDA). Prints, per edge, the median
images/s over the epochs after the first (the first includes warm-up), the
seconds per epoch and the device. No timing limit is asserted anywhere.
"""
import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from microprop import data, learning  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=58)
    ap.add_argument("--images", type=int, default=3, help="images per sample")
    ap.add_argument("--px", type=int, nargs="+", default=[128, 256], help="input edges to time")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    dev = learning.resolve_device(a.device)
    rng = np.random.default_rng(0)
    n = a.samples * a.images
    sample = np.repeat(np.arange(a.samples), a.images)
    value = rng.normal(0.0, 1.5, a.samples)
    print(f"device {dev}; {a.samples} samples x {a.images} images, batch {a.batch}, {a.epochs} epochs")
    for px in a.px:
        with tempfile.TemporaryDirectory() as tmp:
            raw = rng.integers(0, 256, (n, px, px), dtype=np.uint8)
            img = (raw.astype(np.float32) - 127.5) / 73.9
            path = Path(tmp) / "samples.h5"
            data.write_sample_dataset(path, img, raw, sample, [f"S{i}" for i in range(a.samples)], "log10_y",
                                      value[sample], raw.mean(axis=(1, 2)) / 255.0, sample % 5,
                                      {"unit": "S/cm", "log10": True})
            r = learning.train_sample_cnn(path, 0, Path(tmp) / "m", epochs=a.epochs, batch_size=a.batch,
                                          device=a.device, num_threads=a.threads)
            hist = pd.read_csv(r["metrics"])
            later = hist["images_per_s"].iloc[1:] if len(hist) > 1 else hist["images_per_s"]
            print(f"{px} px images: {later.median():.1f} images/s training (median of epochs 2..; first epoch "
                  f"{hist['images_per_s'].iloc[0]:.1f}), {hist['epoch_s'].median():.2f} s/epoch for "
                  f"{r['n_train_images']} augmented training images; device {r['device']}")


if __name__ == "__main__":
    main()
