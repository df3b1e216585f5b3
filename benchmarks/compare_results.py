"""Compare two results trees of the workflow, file by file, and print what differs.

A behaviour-preserving change (a move, a rename, a split) must leave every
result the same. Run the workflow before and after the change into two
working copies, then::

    .venv/bin/python benchmarks/compare_results.py BEFORE/results AFTER/results [--specimen demo]

What is compared, under ``results/<specimen>/``:

- JSON and CSV files: every value, exactly (floats as parsed; NaN equals
  NaN); timing fields (wall seconds, throughputs, the log's durations) are
  left out, since they measure the machine, not the result;
- HDF5 files (``dataset.h5``, shards): every dataset bitwise and every attribute;
- NPY files and zarr stores (mosaics, calibrated maps): every array bitwise,
  every attribute;
- PNG figures and TIFF tiles: pixel by pixel.

The same command compares the generated inputs (``resources/`` of the two
copies: tiles, layouts, exports, truth).

Prints one line per file (``same``, ``DIFFERENT: why`` or ``MISSING``) and a
count; exits 1 when anything differs or is missing.
"""
import argparse
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

#: Keys and columns that measure time or speed (compared: no).
TIMING = re.compile(r"(^|_)(seconds|epoch_s|data_wait_s|fit_s|images_per_s|crops_per_s|"
                    r"megapixels_per_s|wall_s|elapsed_s|time_s|s_per_step)$")
SUFFIXES = (".json", ".csv", ".h5", ".npy", ".png", ".tif", ".tiff")


def _same_value(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def compare_json(a, b, where=""):
    """Differences between two parsed JSON values, timing keys left out."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if TIMING.search(str(k)):
                continue
            if k not in a or k not in b:
                out.append(f"{where}/{k}: only in {'after' if k in b else 'before'}")
            else:
                out += compare_json(a[k], b[k], f"{where}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: length {len(a)} vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in compare_json(x, y, f"{where}[{i}]")]
    return [] if _same_value(a, b) else [f"{where}: {a!r} vs {b!r}"]


def compare_csv(pa, pb):
    a, b = pd.read_csv(pa), pd.read_csv(pb)
    keep = [c for c in a.columns if not TIMING.search(c)]
    if list(a.columns) != list(b.columns):
        return [f"columns {list(a.columns)} vs {list(b.columns)}"]
    if a.shape != b.shape:
        return [f"shape {a.shape} vs {b.shape}"]
    a, b = a[keep], b[keep]
    diff = []
    for c in keep:
        x, y = a[c], b[c]
        if x.dtype.kind in "fc" or y.dtype.kind in "fc":
            xa, ya = x.to_numpy(float), y.to_numpy(float)
            bad = ~((xa == ya) | (np.isnan(xa) & np.isnan(ya)))
        else:
            bad = (x.astype(str) != y.astype(str)).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            diff.append(f"column {c}: {int(bad.sum())} row(s) differ, first row {i}: "
                        f"{x.iloc[i]!r} vs {y.iloc[i]!r}")
    return diff


def compare_h5(pa, pb):
    import h5py

    diff = []
    with h5py.File(pa, "r") as fa, h5py.File(pb, "r") as fb:
        def attrs(obj):
            return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in obj.attrs.items()}

        names_a, names_b = [], []
        fa.visit(names_a.append)
        fb.visit(names_b.append)
        if sorted(names_a) != sorted(names_b):
            return [f"members differ: {sorted(set(names_a) ^ set(names_b))[:10]}"]
        diff += [f"attrs{d}" for d in compare_json(attrs(fa), attrs(fb))]
        for name in sorted(names_a):
            oa, ob = fa[name], fb[name]
            diff += [f"{name} attrs{d}" for d in compare_json(attrs(oa), attrs(ob))]
            if isinstance(oa, h5py.Dataset):
                xa, xb = oa[()], ob[()]
                if oa.dtype != ob.dtype or np.shape(xa) != np.shape(xb):
                    diff.append(f"{name}: {oa.dtype}{np.shape(xa)} vs {ob.dtype}{np.shape(xb)}")
                elif isinstance(xa, np.ndarray) and xa.dtype.kind in "fc":
                    if not np.array_equal(xa, xb, equal_nan=True):
                        diff.append(f"{name}: values differ (max |d| {np.nanmax(np.abs(xa - xb)):.3g})")
                elif not np.array_equal(np.asarray(xa), np.asarray(xb)):
                    diff.append(f"{name}: values differ")
    return diff


def compare_png(pa, pb):
    from PIL import Image

    a, b = np.asarray(Image.open(pa)), np.asarray(Image.open(pb))
    if a.shape != b.shape:
        return [f"size {a.shape} vs {b.shape}"]
    n = int((a != b).any(axis=-1).sum()) if a.ndim == 3 else int((a != b).sum())
    return [f"{n} pixel(s) differ"] if n else []


def compare_zarr(pa, pb):
    import zarr

    def arrays(store):
        node = zarr.open(str(store), mode="r")
        if isinstance(node, zarr.Array):
            return {"": node}
        return {name: arr for name, arr in node.arrays()}

    a, b = arrays(pa), arrays(pb)
    if sorted(a) != sorted(b):
        return [f"arrays {sorted(a)} vs {sorted(b)}"]
    diff = []
    for name in sorted(a):
        xa, xb = a[name], b[name]
        diff += [f"{name} attrs{d}" for d in compare_json(dict(xa.attrs), dict(xb.attrs))]
        if xa.shape != xb.shape or xa.dtype != xb.dtype:
            diff.append(f"{name}: {xa.dtype}{xa.shape} vs {xb.dtype}{xb.shape}")
        elif not np.array_equal(xa[...], xb[...], equal_nan=True):
            diff.append(f"{name}: values differ")
    return diff


def compare_file(pa, pb):
    if pa.suffix == ".zarr":
        return compare_zarr(pa, pb)
    suffix = pa.suffix
    if suffix == ".json":
        return compare_json(json.loads(pa.read_text()), json.loads(pb.read_text()))
    if suffix == ".csv":
        return compare_csv(pa, pb)
    if suffix == ".h5":
        return compare_h5(pa, pb)
    if suffix == ".npy":
        return [] if np.array_equal(np.load(pa), np.load(pb), equal_nan=True) else ["values differ"]
    if suffix == ".png":
        return compare_png(pa, pb)
    if suffix in (".tif", ".tiff"):
        import tifffile

        return [] if np.array_equal(tifffile.imread(pa), tifffile.imread(pb)) else ["pixels differ"]
    raise ValueError(suffix)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before", type=Path, help="results/ of the run before the change")
    ap.add_argument("after", type=Path, help="results/ of the run after the change")
    ap.add_argument("--specimen", default="demo")
    a = ap.parse_args(argv)
    root_a, root_b = a.before / a.specimen, a.after / a.specimen
    files = sorted(p.relative_to(root_a) for p in root_a.rglob("*")
                   if p.is_file() and p.suffix in SUFFIXES
                   and "work" not in p.relative_to(root_a).parts  # resume checkpoints
                   and not any(q.endswith(".zarr") for q in p.relative_to(root_a).parts))
    files += sorted(p.relative_to(root_a) for p in root_a.rglob("*.zarr") if p.is_dir())
    bad = 0
    for rel in files:
        pb = root_b / rel
        if not pb.exists():
            print(f"MISSING    {rel}")
            bad += 1
            continue
        diff = compare_file(root_a / rel, pb)
        print(f"{'same' if not diff else 'DIFFERENT':10s} {rel}" + (f": {'; '.join(diff[:3])}" if diff else ""))
        bad += bool(diff)
    extra = sorted(p.relative_to(root_b) for p in root_b.rglob("*")
                   if p.is_file() and p.suffix in SUFFIXES
                   and "work" not in p.relative_to(root_b).parts
                   and not any(q.endswith(".zarr") for q in p.relative_to(root_b).parts)
                   and not (root_a / p.relative_to(root_b)).exists())
    for rel in extra:
        print(f"NEW        {rel}")
    print(f"{len(files)} file(s) compared under {a.specimen}/: {len(files) - bad} same, {bad} different or missing; "
          f"{len(extra)} new")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
