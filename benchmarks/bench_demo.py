"""End-to-end wall time of the demo workflow, and its validation figures.

Run from the repository root::

    .venv/bin/python benchmarks/bench_demo.py [--cores 2] [--workdir /tmp/microprop-demo]

Runs ``snakemake --cores N`` on ``config.yaml`` from scratch in a fresh
working directory (so nothing already computed is reused), then prints the
total wall time, the time of each rule (from the rules' ``benchmark:``
files), and the measured errors against the virtual specimen's truth:
stitching (median/max tile-position error, px), micro-positioning (RMS
indent-position error, um) calibrated eta per phase, and the Gaussian-mixture recovery (fractions and
means). The goal for the demo is under 10 minutes on 2 CPU cores.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--workdir", default="/tmp/microprop-demo-bench")
    ap.add_argument("--configfile", default=str(REPO / "config.yaml"))
    args = ap.parse_args(argv)

    work = Path(args.workdir)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(work),
           "--configfile", args.configfile, "--cores", str(args.cores), "--quiet", "rules"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-5000:], sep="\n")
        raise SystemExit(f"demo failed (exit {proc.returncode})")

    print(f"machine: {os.cpu_count()} CPU(s) visible, --cores {args.cores}")
    print(f"demo end to end: {wall:.1f} s wall ({wall / 60:.2f} min)")
    rows = []
    for tsv in sorted((work / "results" / "benchmarks").rglob("*.tsv")):
        b = pd.read_csv(tsv, sep="\t")
        rows.append((str(tsv.relative_to(work / "results" / "benchmarks")), b["s"].iloc[-1],
                     b["max_rss"].iloc[-1]))
    print("\nper-rule wall time (s) and peak RSS (MB):")
    for name, s, rss in rows:
        print(f"  {name:55s} {s:8.1f} {rss:9.0f}")

    for val in sorted((work / "results").glob("*/validation/*.json")):
        d = json.loads(val.read_text())
        print(f"\nvalidation {val.relative_to(work)}:")
        for stage, s in d["stitching"].items():
            print(f"  stitching {stage}: median {s['median_px']:.2f} px, max {s['max_px']:.2f} px "
                  f"over {s['n_tiles']} tiles")
        loc = d["location"]
        print(f"  indent positions: RMS {loc['rms_um']:.3f} um, max {loc['max_um']:.3f} um "
              f"over {loc['n']} indents")
        c = d.get("calibration")
        if c:
            print(f"  calibrated eta: max |median - Monte Carlo eta| {c['max_abs_error']:.4f} "
                  + ", ".join(f"{p} {v['eta_calibrated_median']:.4f}/{v['eta_true']:.4f}"
                              for p, v in c["phases"].items()))
        g = d["gmm_E"]
        print(f"  GMM: max |fraction error| {g['max_fraction_abs_error']:.3f}, "
              f"max relative mean error {g['max_mean_rel_error']:.3f}")
        for phase, p in g["phases"].items():
            print(f"    {phase:9s} fraction {p['fraction_fit']:.3f} (true {p['fraction_true']:.3f}), "
                  f"mean E {p['mean_fit_GPa']:.1f} GPa (true {p['mean_true_GPa']:.1f})")
        print(f"  pass: {d['pass']}")


if __name__ == "__main__":
    main()
