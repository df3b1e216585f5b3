"""Training throughput, model FLOPs utilisation (MFU) and data-wait fraction.

Run from the repository root::

    .venv/bin/python benchmarks/bench_training.py [--input-px 64] [--n 512] [--epochs 2]
        [--device auto] [--batch-size 32] [--compile [MODE]] [--peak-tflops X]
        [--dataset results/demo/dataset.h5] [--profile N [--trace FILE]]

On a GPU the paper's batch of 32 leaves this 3-million-parameter network
launch-bound; compare, e.g.::

    python benchmarks/bench_training.py --device cuda --n 20000 --epochs 3 --profile 50
    python benchmarks/bench_training.py --device cuda --n 20000 --epochs 3 --batch-size 256 \
        --compile reduce-overhead --profile 50

Trains the seed ResNet (``microprop.learning.train``) for a few epochs on a
synthetic dataset of ``--n`` crops (or on ``--dataset``) and prints, from
the per-epoch metrics of the last epoch: images per second, the fraction of
step time spent waiting for data, and MFU = images/s x 3 x forward FLOPs per
image / peak FLOP/s (3 = forward + backward ~ 2 x forward). The peak is
``--peak-tflops`` or, by default, 989 TFLOP/s dense bf16 for an H100/H200
and, on a CPU, cores x clock x 64 (AVX-512) or 32 (AVX2) fp32 FLOP/cycle,
read from /proc/cpuinfo and printed so it can be checked. Prints the device.

``--profile N`` then continues the run for N steps under ``torch.profiler``
(from its last checkpoint, in the same warm process) and prints
where the time goes: the wall time of the step phases annotated in
``microprop.learning`` (``microprop.data``, ``.forward``, ``.backward``,
``.optimizer``), the operators with the largest self time (device time on a
GPU), and on a GPU the fraction of the profiled wall time the device was
busy with kernels. ``--trace FILE`` also writes the Chrome/Perfetto trace.
"""
import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from microprop import (
    learning,  # noqa: E402
    virtual,  # noqa: E402
)
from microprop.learning import models  # noqa: E402

GPU_PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def cpu_peak_tflops(threads):
    """Peak fp32 FLOP/s of ``threads`` cores from /proc/cpuinfo.

    cores x clock x FLOP/cycle, with 64 fp32 FLOP/cycle for AVX-512 (two
    512-bit FMA units) and 32 for AVX2+FMA. The clock is the one the kernel
    reports (turbo may run higher), so this is an estimate.
    """
    mhz, per_cycle = 2500.0, 16
    try:
        text = Path("/proc/cpuinfo").read_text()
        mhz = max(float(m) for m in re.findall(r"cpu MHz\s*:\s*([\d.]+)", text))
        flags = set(re.search(r"flags\s*:\s*(.*)", text).group(1).split())
        per_cycle = 64 if "avx512f" in flags else 32 if {"avx2", "fma"} <= flags else 16
    except (OSError, ValueError, AttributeError):
        pass
    return threads * mhz * 1e6 * per_cycle / 1e12, mhz, per_cycle


PHASES = ("microprop.data", "microprop.forward", "microprop.backward", "microprop.optimizer")


def profile_steps(data, run_dir, a, dev):
    """Continue the timed run (warm: same process, cuDNN autotuned, compiled)
    for ``a.profile`` steps under torch.profiler; returns the profiler."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=activities) as prof:
        try:
            learning.train(data, "E_GPa", run_dir, epochs=a.epochs + a.profile, batch_size=a.batch_size,
                        lr=1e-3, input_px=a.input_px, device=a.device, compile=a.compile,
                        num_threads=a.threads, log_every=0, stop_after_steps=a.profile)
        except learning.TrainingStopped:
            pass
    if a.trace:
        prof.export_chrome_trace(a.trace)
        print(f"trace written to {a.trace}")
    return prof


def print_profile(prof, dev, n_steps):
    """Print the step phases, the top operators and (GPU) the device busy fraction."""
    events = prof.key_averages()
    gpu = dev.type == "cuda"
    by_name = {e.key: e for e in events}
    phase_cpu = {k: by_name[k].cpu_time_total / 1e3 for k in PHASES if k in by_name}
    total = sum(phase_cpu.values())
    n_steps = by_name["microprop.forward"].count if "microprop.forward" in by_name else n_steps
    print(f"profile of {n_steps} steps: wall time per phase (host side, ms per step)")
    for k, v in phase_cpu.items():
        print(f"  {k:22s} {v / n_steps:8.2f} ms  {v / total:6.1%}")
    sort = "self_device_time_total" if gpu else "self_cpu_time_total"
    print(events.table(sort_by=sort, row_limit=15))
    if gpu:
        kernel_us = sum(e.self_device_time_total for e in events)
        print(f"device busy with kernels: {kernel_us / 1e3:.1f} ms over {total:.1f} ms of "
              f"profiled steps ({kernel_us / 1e3 / total:.1%}); the rest is the GPU waiting "
              "on the host (launch overhead, Python, data)")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input-px", type=int, default=64)
    ap.add_argument("--n", type=int, default=512, help="synthetic crops (ignored with --dataset)")
    ap.add_argument("--crop-px", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--compile", nargs="?", const=True, default=False, metavar="MODE",
                    help="torch.compile the model (optionally a mode, e.g. reduce-overhead)")
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--dataset", default=None)
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="then profile N training steps and print where the time goes")
    ap.add_argument("--trace", default=None, help="with --profile: write the trace (JSON) here")
    a = ap.parse_args(argv)

    dev = learning.resolve_device(a.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    with tempfile.TemporaryDirectory() as tmp:
        data = a.dataset
        if data is None:
            data = Path(tmp) / "synthetic.h5"
            virtual.write_synthetic_dataset(data, n=a.n, size=a.crop_px, seed=0)
        t0 = time.perf_counter()
        summary = learning.train(data, "E_GPa", Path(tmp) / "run", epochs=a.epochs,
                              batch_size=a.batch_size, lr=1e-3, input_px=a.input_px,
                              device=a.device, compile=a.compile, num_threads=a.threads)
        wall = time.perf_counter() - t0
        m = pd.read_csv(summary["metrics"]).iloc[-1]
        prof = profile_steps(data, Path(tmp) / "run", a, dev) if a.profile else None
    flops = models.model_flops(models.SeedResNet(), a.input_px)
    if a.peak_tflops:
        peak, how = a.peak_tflops, "given"
    elif dev.type == "cuda":
        peak = next((v for k, v in GPU_PEAK_BF16_TFLOPS.items() if k in name), float("nan"))
        how = "dense bf16 datasheet"
    else:
        peak, mhz, per_cycle = cpu_peak_tflops(a.threads)
        how = f"{a.threads} threads x {mhz:.0f} MHz x {per_cycle} fp32 FLOP/cycle"
    achieved = m["images_per_s"] * 3 * flops / 1e12
    print(f"device: {name} ({dev}), torch {torch.__version__}, threads {a.threads}")
    print(f"model: SeedResNet, {models.count_parameters(models.SeedResNet()):,} parameters, "
          f"{flops / 1e9:.2f} GFLOP forward per {a.input_px} px image")
    print(f"last epoch: {m['images_per_s']:.1f} images/s, epoch {m['epoch_s']:.2f} s, "
          f"data wait {m['data_wait_s']:.3f} s ({m['data_wait_s'] / m['epoch_s']:.1%} of the epoch)")
    print(f"achieved {achieved:.3f} TFLOP/s; peak {peak:.2f} TFLOP/s ({how}); MFU {achieved / peak:.1%}")
    print(f"wall time {wall:.1f} s for {a.epochs} epoch(s) incl. loading")
    if prof is not None:
        print_profile(prof, dev, a.profile)


if __name__ == "__main__":
    main()
