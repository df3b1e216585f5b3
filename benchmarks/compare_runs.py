"""Compare two working directories of the workflow, every file they produced.

Two runs of the same study, e.g. one local and one through the Slurm profile
(``benchmarks/slurm_integration.sh``), must give the same results::

    .venv/bin/python benchmarks/compare_runs.py LOCAL_DIR SLURM_DIR

Every file under ``results/`` and ``resources/`` of the first directory is
compared with its namesake in the second, by content:

- JSON, CSV, HDF5, NPY, zarr, PNG and TIFF as ``compare_results.py`` does
  (values exactly, timing fields left out; figures and tiles pixel by pixel,
  so PNG metadata is no difference);
- torch checkpoints (``.pt``) byte by byte, else every tensor and value of
  the loaded object exactly;
- anything else byte by byte.

Some results record absolute paths (the sample study's provenance in
``samples.h5``, and so the sha256 of that file in each checkpoint): run both
in the same directory and move them apart afterwards, as
``slurm_integration.sh`` does, and every file must be the same. A text file
that differs only by the two given directories' own paths counts as the same
(``same*``, said so in the output). Left out, as what legitimately differs between two
runs: logs (``results/logs/``, ``*.log``), benchmark timings
(``results/benchmarks/``), Snakemake's own metadata (``.snakemake/``) and
resume checkpoints (``work/`` folders). A file only in the second directory
is a difference too (``NEW``).

Prints one line per file (``same``, ``DIFFERENT: why``, ``MISSING``,
``NEW``), what was left out, and a last line with the counts; exits 1 when
anything differs, is missing or is new.
"""
import argparse
import sys
import warnings
from collections import Counter
from pathlib import Path

# Snakemake's marker in a directory output (a zarr store) is no zarr member
warnings.filterwarnings("ignore", message=".*snakemake_timestamp.*")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_results as cr  # noqa: E402

TREES = ("results", "resources")


def _skip_reason(rel):
    """Why ``rel`` (relative to the working directory) is left out, or None."""
    parts = rel.parts
    if parts[:2] == ("results", "logs") or rel.suffix == ".log":
        return "logs"
    if parts[:2] == ("results", "benchmarks"):
        return "benchmark timings"
    if "work" in parts[1:]:
        return "resume checkpoints (work/)"
    return None


def collect(root):
    """(files, skipped): the compared entries (files; zarr stores as one
    entry) relative to ``root``, and a Counter of the left-out ones by reason."""
    files, skipped = [], Counter()
    for tree in TREES:
        base = root / tree
        if not base.is_dir():
            continue
        for p in sorted(base.rglob("*")):
            rel = p.relative_to(root)
            inside_zarr = any(q.endswith(".zarr") for q in rel.parts[:-1])
            if inside_zarr:
                continue
            if p.is_dir() and p.suffix != ".zarr":
                continue
            reason = _skip_reason(rel)
            if reason:
                skipped[reason] += 1
            else:
                files.append(rel)
    return files, skipped


def _same_torch(pa, pb):
    import torch

    def same(a, b):
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
            return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        if isinstance(a, dict) and isinstance(b, dict):
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        return type(a) is type(b) and cr._same_value(a, b)

    a = torch.load(pa, map_location="cpu", weights_only=False)
    b = torch.load(pb, map_location="cpu", weights_only=False)
    return [] if same(a, b) else ["tensors or values differ"]


def _text(p):
    try:
        return p.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return None


def compare(pa, pb, roots):
    """(status, detail) for one file or zarr store."""
    if pa.suffix == ".zarr" or pa.suffix in cr.SUFFIXES:
        diff = cr.compare_file(pa, pb)
    elif pa.read_bytes() == pb.read_bytes():
        diff = []
    elif pa.suffix == ".pt":
        diff = _same_torch(pa, pb)
    else:
        diff = ["bytes differ"]
    if diff and pa.is_file():
        ta, tb = _text(pa), _text(pb)
        if ta is not None and tb is not None:
            for root in roots:
                ta, tb = ta.replace(str(root), "<workdir>"), tb.replace(str(root), "<workdir>")
            if ta == tb:
                return "same*", "differs only by the working directories' paths"
    return ("same", "") if not diff else ("DIFFERENT", "; ".join(diff[:3]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("first", type=Path, help="working directory of the first run (e.g. the local one)")
    ap.add_argument("second", type=Path, help="working directory of the second run (e.g. the Slurm one)")
    a = ap.parse_args(argv)
    first, second = a.first.resolve(), a.second.resolve()
    files_a, skipped = collect(first)
    files_b, _ = collect(second)
    if not files_a:
        print(f"nothing to compare under {first}/{{{','.join(TREES)}}}")
        return 1
    counts = Counter()
    for rel in files_a:
        pb = second / rel
        if not pb.exists():
            status, detail = "MISSING", ""
        else:
            status, detail = compare(first / rel, pb, (first, second))
        counts[status] += 1
        print(f"{status:10s} {rel}" + (f": {detail}" if detail and status != "same*" else ""))
    seen = set(files_a)
    new = [rel for rel in files_b if rel not in seen]
    for rel in new:
        print(f"{'NEW':10s} {rel}")
    counts["NEW"] = len(new)
    if counts["same*"]:
        print(f"(same*: {counts['same*']} text file(s) that differ only by the working directories' paths)")
    if skipped:
        print("left out: " + ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items())))
    bad = counts["DIFFERENT"] + counts["MISSING"] + counts["NEW"]
    same = counts["same"] + counts["same*"]
    print(f"{len(files_a)} file(s) compared: {same} same, {counts['DIFFERENT']} different, "
          f"{counts['MISSING']} missing, {counts['NEW']} new: {'SAME' if not bad else 'DIFFERENT'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
