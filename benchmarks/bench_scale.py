"""Scale benchmark: stitching, calibration and cropping of large virtual tile sets, beside ASHLAR.

Run from the repository root (the machine is shared: nice it)::

    nice -n 10 .venv/bin/python benchmarks/bench_scale.py [--sizes 6 10] [--tile-px 2048]
        [--stages stitch calibrate crop] [--skip-ashlar] [--ashlar PATH]
        [--dir DIR] [--keep] [--json PATH] [--seed 0]

For each size ``n`` an ``n x n`` set of ``--tile-px`` tiles (8-bit TIFF, 10 %
nominal overlap, 40 nm/px) is cut from one virtual cement paste with known,
sub-pixel tile positions:

* the field is :func:`microprop.virtual.large_area` (a multi-phase eta map
  defined by global coordinates, written to zarr chunk by chunk), generated
  once for the largest size; the smaller sets are cut from its top-left part;
* each tile is cut at nominal + a stage error uniform within +-``U`` px per
  axis (``U = min(25, (overlap_px - 8) / 4)``: 25 px = 1 um at 2048 px tiles),
  through the detector line of :func:`microprop.virtual.bse_gain_offset`, by
  :func:`microprop.virtual.cut_tiles` on a window read from the zarr field
  (Fourier sub-pixel shift, shot noise, brightness/contrast drift as the
  demo's tiles): memory stays a few tiles, whatever the size.

Stages (``--stages``), each the workflow's own rule script run by hand as a
separate process (``scripts/<rule>.py --mock job.yaml``, the job as the rule
builds it with the default config), so that its wall time, CPU time and
peak resident memory (``os.wait4`` of that process, through a small launcher:
:data:`LAUNCHER`) are the stage's alone; time the process spent stopped from
outside (``SIGSTOP``, which the shared machine's other users send) is
counted apart and left out of the wall time:

* ``stitch``: ``scripts/stitch_tiles.py`` (:func:`microprop.imaging.stitch`,
  ``max_stage_error_um`` the config's 6 um, or the most the overlap holds for
  small tiles; chunk 1024 px, 1 thread);
* ``calibrate``: ``scripts/calibrate.py`` (eta mode, detector line fitted to
  the histogram (``reference_greys: auto``), MulF and MicF via
  :func:`microprop.physics.calibrate_mosaic`; ``min(4, cores)`` threads as
  Snakemake gives the rule's 4 on this machine);
* ``crop``: ``scripts/crop_batch.py`` per batch of at most 20 x 20 indents of
  a grid at a 10 um pitch over the calibrated MulF (the demo's batches),
  10 x 10 um crops; time summed over the batches, memory the largest.

Beside them ASHLAR (``--ashlar``, default ``/work/ashlar_venv/bin/ashlar``;
its own virtual environment) stitches the same tiles through its
``filepattern`` reader (plain TIFFs, no Bio-Formats; ``pixel_size=0.04``,
its default ``--maximum-shift`` of 15 um) into a pyramidal OME-TIFF. Its
``overlap`` is the exact fraction of the layout's whole-pixel step
(``(tile_px - step_px) / tile_px``, 205/2048 for 2048 px tiles): the reader
places tile ``k`` at ``k * tile_px * (1 - overlap)``, and ASHLAR's edge
aligner crops the overlaps at whole pixels without adding back the fraction
(its layer aligner does, ``Intersection.offset_diff_frac``), so with
``overlap=0.1`` (a 1843.2 px step for a true 1843) every step gained a
0.2 px error, a scale error of the whole mosaic that is not its
registration's. Its positions come from its Python API: a small helper
(:data:`ASHLAR_HELPER`) run by that environment's Python calls ASHLAR's own
command-line ``main`` unchanged and, by wrapping ``ashlar.reg.EdgeAligner``,
records the aligner's tile positions (and the time of its ``run``) as JSON,
so one run gives both the time and the positions. If ASHLAR is missing it is
skipped, with the reason.

Printed per size and stage: wall time, CPU time (user + system), peak RSS,
megapixels per second (stitch and calibrate: of the nominal mosaic; crop: of
the crops), the load averages before the stage, and for stitching the
tile-position error against the truth (median and max, px, after removing the
common offset: :func:`microprop.virtual.stitching_errors`; ours from the
stitch table's sub-pixel ``x_px, y_px``). ``--json`` writes the same as JSON,
with the date, the CPU and its core count. No timing limit is asserted anywhere.
"""
import argparse
import datetime
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from microprop import virtual  # noqa: E402
from microprop.imaging import LAYOUT_COLUMNS  # noqa: E402

STAGES = ("stitch", "calibrate", "crop")
PIXEL_NM = 40.0                 # the demo's pixel size
OVERLAP = 0.1
MAX_STAGE_ERROR_UM = 6.0        # config.yaml stitching.max_stage_error_um
CHUNK_PX = 1024                 # config.yaml stitching.chunk_px
CROP_UM = 10.0                  # config.yaml dataset.crop_size_um
INDENT_PITCH_UM = 10.0          # the demo's indentation spacing_um
BATCH_SIDE = 20                 # the demo's batch_shape: 20 x 20 indents
ELECTRONS_PER_PX = 5000.0       # the demo's detector signal
DEFAULT_ASHLAR = "/work/ashlar_venv/bin/ashlar"

#: Run by ASHLAR's own Python: its command line unchanged, plus the aligner's positions as JSON.
ASHLAR_HELPER = '''\
"""Run ASHLAR's command line; write its tile positions (px, y and x) as JSON to argv[1]."""
import json
import sys
import time

import ashlar
import ashlar.reg as reg
import networkx as nx
from ashlar.scripts import ashlar as cli

seen = {}


class RecordingEdgeAligner(reg.EdgeAligner):
    def run(self):
        t0 = time.perf_counter()
        super().run()
        seen["align_s"] = time.perf_counter() - t0
        seen["aligner"] = self


reg.EdgeAligner = RecordingEdgeAligner  # cli.main looks it up on the module at call time
rc = cli.main(["ashlar", *sys.argv[2:]])
a = seen.get("aligner")
out = {"rc": rc, "version": ashlar.__version__, "align_s": seen.get("align_s")}
if a is not None:
    n = len(a.positions)
    out["tile_rc"] = [[int(v) for v in a.metadata.tile_rc(i)] for i in range(n)]
    out["positions_yx"] = [[float(v) for v in p] for p in a.positions]
    out["edges"] = int(a.neighbors_graph.size())
    out["edges_used"] = int(sum(1 for _, e in a._cache.values() if e < float("inf")))
    out["components"] = nx.number_connected_components(a.spanning_tree)
with open(sys.argv[1], "w") as f:
    json.dump(out, f)
sys.exit(rc or 0)
'''


# ----------------------------------------------------------------------------- machine and processes

def machine_info():
    """Date, CPU model, core count, memory and Python of this machine."""
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "cpu": model,
            "cores": os.cpu_count(), "mem_gib": mem_gib, "python": platform.python_version(),
            "load_at_start": [round(v, 2) for v in os.getloadavg()]}


#: A small process between this one and a measured command. Linux starts a child's peak RSS
#: at the peak of the process it was forked from (kept through ``exec``), and this benchmark's
#: process holds torch (``microprop.virtual`` imports it): measured from here, every stage
#: would read about 1 GB. The launcher, a bare interpreter (about 10 MB), forks the command
#: and reports the ``os.wait4`` usage of it alone. It also counts the time the command was
#: stopped (``SIGSTOP``, state ``T``: on the shared machine whole process trees are paused
#: now and then): polling every 50 ms, an interval in which the command was seen stopped, or
#: one that took over 1 s (the launcher paused with it), counts as stopped.
LAUNCHER = """\
import json, os, subprocess, sys, time
def stopped(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in "Tt"
    except (OSError, IndexError):
        return False
t0 = time.perf_counter()
proc = subprocess.Popen(sys.argv[2:])
paused = 0.0
while True:
    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
    if pid:
        break
    t = time.perf_counter()
    time.sleep(0.05)
    dt = time.perf_counter() - t
    if dt > 1.0 or stopped(proc.pid):
        paused += dt
wall = time.perf_counter() - t0
with open(sys.argv[1], "w") as f:
    json.dump({"rc": os.waitstatus_to_exitcode(status), "wall_s": wall, "paused_s": paused,
               "cpu_s": usage.ru_utime + usage.ru_stime, "maxrss_kib": usage.ru_maxrss}, f)
"""


def run_measured(cmd, log_path, cwd=None):
    """Run ``cmd`` as a child process; its wall time and its own peak RSS.

    Parameters
    ----------
    cmd : list of str
    log_path : path-like
        Receives the child's stdout and stderr.
    cwd : path-like, optional

    Returns
    -------
    dict
        ``rc`` (exit status), ``wall_s`` (from just before the command's
        fork to its exit, less ``paused_s``, the time it was stopped: see
        :data:`LAUNCHER`), ``wall_raw_s`` (the whole), ``cpu_s`` (its user + system CPU time, with the
        processes it waited for: on a shared machine less dependent on the
        load than the wall time), ``peak_rss_gib`` (``ru_maxrss`` of ``os.wait4`` on
        it, through :data:`LAUNCHER`: its largest resident set, or that of
        a process it waited for), ``load_before`` (1, 5, 15 min load
        averages just before it started).
    """
    load = [round(v, 2) for v in os.getloadavg()]
    usage = Path(str(log_path) + ".usage.json")
    with open(log_path, "wb") as log:
        rc = subprocess.call([sys.executable, "-S", "-c", LAUNCHER, str(usage), *(str(c) for c in cmd)],
                             stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    if not usage.exists():
        raise RuntimeError(f"the launcher of {cmd[0]} failed (exit {rc}); see {log_path}")
    u = json.loads(usage.read_text())
    return {"rc": u["rc"], "wall_s": u["wall_s"] - u["paused_s"], "wall_raw_s": u["wall_s"],
            "paused_s": u["paused_s"], "cpu_s": u["cpu_s"],
            "peak_rss_gib": u["maxrss_kib"] / 1024 ** 2,
            "load_before": load}


class PauseWatch:
    """Time this process was paused (a 50 ms sleep that took over 1 s), counted by a thread."""

    def __init__(self):
        import threading

        self.paused_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            t = time.perf_counter()
            time.sleep(0.05)
            dt = time.perf_counter() - t
            if dt > 1.0:
                self.paused_s += dt

    def stop(self):
        """Stop counting; the paused seconds."""
        self._stop.set()
        return self.paused_s


def log_tail(path, n=25):
    """The last ``n`` lines of a log file."""
    lines = Path(path).read_text(errors="replace").splitlines()
    return "\n".join(lines[-n:])


def run_rule_script(script, job, folder, name):
    """Run ``scripts/<script>`` by hand with ``job`` (a dict) as its ``--mock`` YAML.

    Returns the measurement of :func:`run_measured`; raises RuntimeError with
    the log's tail if the script fails.
    """
    job_path = Path(folder) / f"{name}.yaml"
    job_path.write_text(yaml.safe_dump(job, sort_keys=False))
    log = Path(folder) / f"{name}.log"
    m = run_measured([sys.executable, REPO / "scripts" / script, "--mock", job_path], log, cwd=REPO)
    if m["rc"] != 0:
        raise RuntimeError(f"{script} failed (exit {m['rc']}); the end of {log}:\n{log_tail(log)}")
    return m


# ----------------------------------------------------------------------------- virtual tile sets

def geometry(n, tile_px):
    """Step, stage-error bound, padding and field shape of an ``n x n`` set of ``tile_px`` tiles.

    Raises
    ------
    ValueError
        If the overlap is too small to register (under 12 px).
    """
    step = int(round(tile_px * (1 - OVERLAP)))
    overlap = tile_px - step
    if overlap < 12:
        raise ValueError(f"--tile-px {tile_px}: the 10 % overlap is {overlap} px; at least 12 px "
                         f"are needed (tiles of 120 px or more)")
    err_px = min(25.0, (overlap - 8) / 4.0)
    # cut_window pads by 16 px: keep that padding inside real field data
    pad = int(math.ceil(err_px)) + 16 + 2
    extent = (n - 1) * step + tile_px
    # the registration margin: the config's 6 um where the overlap holds it
    margin_px = min(MAX_STAGE_ERROR_UM * 1000 / PIXEL_NM, overlap - 8 - 1)
    return {"n": n, "tile_px": tile_px, "step_px": step, "overlap_px": overlap,
            "stage_error_px": err_px, "pad_px": pad, "extent_px": extent,
            "field_px": extent + 2 * pad + 1, "mosaic_mpx": extent * extent / 1e6,
            # ASHLAR's reader steps by tile_px * (1 - overlap): exact in binary for a whole-pixel step
            "ashlar_overlap": overlap / tile_px,
            "max_stage_error_um": round(margin_px * PIXEL_NM / 1000, 4)}


def make_field(path, field_px, seed):
    """Generate the virtual eta field (zarr group ``MulF``) once; return its MulF array."""
    import zarr

    virtual.large_area(path, (field_px, field_px), pixel_size_nm=PIXEL_NM, seed=seed,
                       phase_eta=virtual.DEFAULT_PHASE_ETA, noise_eta=0.0, chunk=2048, zarr_chunk=1024)
    return zarr.open_group(str(path), mode="r")["MulF"]


def make_tile_set(field, folder, geo, seed):
    """Cut, tile by tile, an ``n x n`` set with sub-pixel stage errors; write TIFFs and ``layout.csv``.

    Parameters
    ----------
    field : zarr.Array
        The eta field of :func:`make_field` (at least ``geo["field_px"]`` square).
    folder : pathlib.Path
        Tile folder to write (tiles ``r000_c000.tif`` ... and ``layout.csv``).
    geo : dict
        From :func:`geometry`.
    seed : int

    Returns
    -------
    pandas.DataFrame
        The truth: ``tile, x_px, y_px`` of each tile's pixel ``[0, 0]`` in the
        field; also written as ``truth.csv`` beside the tile folder.
    """
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    n, t, step, pad = geo["n"], geo["tile_px"], geo["step_px"], geo["pad_px"]
    gain, offset = virtual.bse_gain_offset(virtual.DEFAULT_PHASE_ETA)
    px_um = PIXEL_NM / 1000
    rows, truth = [], []
    side = t + 2 * pad + 1
    for r in range(n):
        for c in range(n):
            rng = np.random.default_rng([seed, n, t, r, c])
            dx, dy = rng.uniform(-geo["stage_error_px"], geo["stage_error_px"], 2)
            # the window whose local (pad, pad) is the tile's nominal corner
            x0, y0 = c * step, r * step
            grey = offset + gain * np.asarray(field[y0:y0 + side, x0:x0 + side], dtype=np.float64)
            tiles, _, tr = virtual.cut_tiles(
                grey, (t, t), OVERLAP, 0.0, PIXEL_NM, rng, field_origin_px=(pad, pad),
                field_shape_px=(t, t), offset_um=(dx * px_um, dy * px_um),
                electrons_per_px=ELECTRONS_PER_PX, gain=gain, offset=offset)
            name = f"r{r:03d}_c{c:03d}"
            tifffile.imwrite(folder / f"{name}.tif", tiles[0])
            nx, ny = pad + c * step, pad + r * step
            rows.append(dict(tile=name, file=f"{name}.tif", row=r, col=c,
                             x_um=round(nx * px_um, 6), y_um=round(ny * px_um, 6)))
            truth.append(dict(tile=name, x_px=x0 + float(tr["x_px"].iloc[0]),
                              y_px=y0 + float(tr["y_px"].iloc[0])))
    pd.DataFrame(rows)[list(LAYOUT_COLUMNS)].to_csv(folder / "layout.csv", index=False)
    truth = pd.DataFrame(truth)
    truth.to_csv(folder.parent / "truth.csv", index=False)  # beside the tiles, not among them
    return truth


# ----------------------------------------------------------------------------- stages

def stage_stitch(work, geo):
    """Rule stitch_tiles on the tile folder; measurement, mosaic path and stitch table."""
    job = {"rule": "stitch_tiles", "threads": 1,
           "input": {"tiles": str(work / "tiles")},
           "output": {"mosaic": str(work / "mosaic_before.zarr"), "table": str(work / "stitch_before.csv")},
           "params": {"pixel_size_nm": PIXEL_NM, "max_stage_error_um": geo["max_stage_error_um"],
                      "unlinked": "error", "chunk": CHUNK_PX},
           "log": [str(work / "stitch_tiles.rule.log")]}
    m = run_rule_script("stitch_tiles.py", job, work, "stitch_tiles")
    return m, pd.read_csv(work / "stitch_before.csv")


def stage_calibrate(work):
    """Rule calibrate (eta mode, detector line fitted) on the stitched mosaic."""
    phase_eta = pd.DataFrame({"phase": list(virtual.DEFAULT_PHASE_ETA),
                              "eta": list(virtual.DEFAULT_PHASE_ETA.values())})
    phase_eta.to_csv(work / "phase_eta.csv", index=False)
    # read by the rule; used in porosity mode only
    pd.DataFrame({"n": np.linspace(0, 1, 11), "eta": np.linspace(0.125, 0.35, 11),
                  "eta_err": 0.001}).to_csv(work / "eta_table.csv", index=False)
    threads = min(4, os.cpu_count() or 1)
    job = {"rule": "calibrate", "threads": threads,
           "input": {"mosaic": str(work / "mosaic_before.zarr"), "phase_eta": str(work / "phase_eta.csv"),
                     "eta_table": str(work / "eta_table.csv")},
           "output": {"calibrated": str(work / "calibrated.zarr"), "hist": str(work / "calibration.png")},
           "params": {"mode": "eta", "reference_phases": ["pore", "ACC"], "reference_greys": "auto",
                      "clinker_grey_window": None, "micf_sigma_px": 10.0, "chunk": CHUNK_PX},
           "log": [str(work / "calibrate.rule.log")]}
    m = run_rule_script("calibrate.py", job, work, "calibrate")
    m["threads"] = threads
    return m


def indent_batches(shape_px):
    """A 10 um grid of indents over a mosaic, in batches of at most 20 x 20 (located tables)."""
    h, w = shape_px
    um = PIXEL_NM / 1000
    margin = CROP_UM / 2 + 1.0
    xs = np.arange(margin, w * um - margin + 1e-9, INDENT_PITCH_UM)
    ys = np.arange(margin, h * um - margin + 1e-9, INDENT_PITCH_UM)
    if not len(xs) or not len(ys):
        raise ValueError(f"a {h} x {w} px mosaic holds no {CROP_UM} um crop")
    rng = np.random.default_rng(0)
    batches = []
    for by in range(0, len(ys), BATCH_SIDE):
        for bx in range(0, len(xs), BATCH_SIDE):
            gx, gy = np.meshgrid(xs[bx:bx + BATCH_SIDE], ys[by:by + BATCH_SIDE])
            k = gx.size
            batches.append(pd.DataFrame({
                "indent": np.arange(1, k + 1), "x_px": gx.ravel() / um, "y_px": gy.ravel() / um,
                "x_um": gx.ravel(), "y_um": gy.ravel(),
                "E_GPa": rng.normal(25, 5, k), "H_GPa": rng.normal(0.8, 0.2, k)}))
    return batches


def stage_crop(work):
    """Rule crop_batch for every batch of the indent grid; summed time, largest peak RSS."""
    import zarr

    shape = zarr.open_group(str(work / "calibrated.zarr"), mode="r")["MulF"].shape
    (work / "located").mkdir(exist_ok=True)
    (work / "shards").mkdir(exist_ok=True)
    total = {"wall_s": 0.0, "wall_raw_s": 0.0, "paused_s": 0.0, "cpu_s": 0.0, "peak_rss_gib": 0.0,
             "load_before": [round(v, 2) for v in os.getloadavg()],
             "n_batches": 0, "n_crops": 0}
    size_px = int(round(CROP_UM * 1000 / PIXEL_NM))
    for i, located in enumerate(indent_batches(shape)):
        batch = f"b{i:03d}"
        located.to_csv(work / "located" / f"{batch}.csv", index=False)
        job = {"rule": "crop_batch", "threads": 1,
               "input": {"calibrated": str(work / "calibrated.zarr"),
                         "located": str(work / "located" / f"{batch}.csv")},
               "output": {"shard": str(work / "shards" / f"{batch}.h5"),
                          "skipped": str(work / "shards" / f"{batch}_skipped.csv")},
               "params": {"scale": "MulF", "crop_size_um": CROP_UM, "specimen": "bench",
                          "area": "A1", "batch": batch},
               "log": [str(work / "shards" / f"{batch}.rule.log")]}
        m = run_rule_script("crop_batch.py", job, work / "shards", f"crop_{batch}")
        skipped = pd.read_csv(work / "shards" / f"{batch}_skipped.csv")
        total["wall_s"] += m["wall_s"]
        total["cpu_s"] += m["cpu_s"]
        total["wall_raw_s"] += m["wall_raw_s"]
        total["paused_s"] += m["paused_s"]
        total["peak_rss_gib"] = max(total["peak_rss_gib"], m["peak_rss_gib"])
        total["n_batches"] += 1
        total["n_crops"] += len(located) - len(skipped)
    total["crop_px"] = size_px
    total["crop_mpx"] = total["n_crops"] * size_px * size_px / 1e6
    return total


def ashlar_python(exe):
    """The Python interpreter of an ASHLAR console script (its ``#!`` line, else its sibling)."""
    exe = Path(exe)
    first = exe.read_bytes()[:300].split(b"\n", 1)[0].decode(errors="replace")
    if first.startswith("#!"):
        cand = first[2:].strip().split()[0]
        if Path(cand).exists():
            return cand
    for name in ("python", "python3"):
        if (exe.parent / name).exists():
            return str(exe.parent / name)
    raise FileNotFoundError(f"{exe}: cannot find the Python of its environment")


def stage_ashlar(work, exe, geo):
    """ASHLAR's command line on the same tiles; measurement and its tile positions (px)."""
    helper = work / "ashlar_positions.py"
    helper.write_text(ASHLAR_HELPER)
    out_json = work / "ashlar_positions.json"
    src = (f"filepattern|{work / 'tiles'}|pattern=r{{row:03}}_c{{col:03}}.tif"
           f"|overlap={geo['ashlar_overlap']!r}"
           f"|pixel_size={PIXEL_NM / 1000}")
    cmd = [ashlar_python(exe), helper, out_json, src, "-o", work / "ashlar.ome.tif", "-q"]
    m = run_measured(cmd, work / "ashlar.log", cwd=work)
    if m["rc"] != 0 or not out_json.exists():
        raise RuntimeError(f"ASHLAR failed (exit {m['rc']}); the end of {work / 'ashlar.log'}:\n"
                           f"{log_tail(work / 'ashlar.log')}")
    res = json.loads(out_json.read_text())
    m["align_s"], m["version"] = res.get("align_s"), res.get("version")
    for key in ("edges", "edges_used", "components"):
        m[key] = res.get(key)
    placed = pd.DataFrame({"tile": [f"r{r:03d}_c{c:03d}" for r, c in res["tile_rc"]],
                           "x_px": [p[1] for p in res["positions_yx"]],
                           "y_px": [p[0] for p in res["positions_yx"]]})
    return m, placed


# ----------------------------------------------------------------------------- the benchmark

def row(size, geo, tool, stage, m, mpx, err=None, **extra):
    """One table row (a dict)."""
    r = {"size": f"{size}x{size}", "tiles": size * size, "tile_px": geo["tile_px"],
         "mosaic_mpx": round(geo["mosaic_mpx"], 1), "tool": tool, "stage": stage,
         "wall_s": round(m["wall_s"], 2), "wall_raw_s": round(m["wall_raw_s"], 2),
         "paused_s": round(m["paused_s"], 2), "cpu_s": round(m["cpu_s"], 2),
         "peak_rss_gib": round(m["peak_rss_gib"], 3),
         "mpx_per_s": round(mpx / m["wall_s"], 2) if m["wall_s"] > 0 else None,
         "load_before": m["load_before"]}
    if err is not None:
        r["err_median_px"], r["err_max_px"] = round(err["median_px"], 4), round(err["max_px"], 4)
    r.update(extra)
    return r


def format_table(rows):
    """The rows as a fixed-width text table."""
    head = (f"{'size':>5} {'tile px':>7} {'Mpx':>6} {'tool':<7} {'stage':<9} {'wall s':>8} {'paused':>6} "
            f"{'CPU s':>8} "
            f"{'peak GiB':>8} {'Mpx/s':>7} {'err med px':>10} {'err max px':>10}  {'load before':<16} notes")
    lines = [head, "-" * len(head)]
    for r in rows:
        med = f"{r['err_median_px']:.3f}" if "err_median_px" in r else ""
        mx = f"{r['err_max_px']:.3f}" if "err_max_px" in r else ""
        load = "/".join(f"{v:.1f}" for v in r["load_before"])
        notes = r.get("notes", "")
        lines.append(f"{r['size']:>5} {r['tile_px']:>7} {r['mosaic_mpx']:>6.1f} {r['tool']:<7} "
                     f"{r['stage']:<9} {r['wall_s']:>8.1f} {r['paused_s']:>6.0f} {r['cpu_s']:>8.1f} "
                     f"{r['peak_rss_gib']:>8.2f} "
                     f"{r['mpx_per_s'] or 0:>7.2f} {med:>10} {mx:>10}  {load:<16} {notes}")
    return "\n".join(lines)


def bench_size(base, field, size, args, ashlar_exe, rows, skipped):
    """All stages for one size; rows appended to ``rows``."""
    geo = geometry(size, args.tile_px)
    work = base / f"size_{size}x{size}"
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    truth = make_tile_set(field, work / "tiles", geo, args.seed)
    print(f"{size} x {size} tiles of {args.tile_px} px: cut in {time.perf_counter() - t0:.0f} s "
          f"(stage error uniform +-{geo['stage_error_px']:.1f} px, search margin "
          f"{geo['max_stage_error_um']} um, nominal mosaic {geo['extent_px']} px square, "
          f"{geo['mosaic_mpx']:.1f} Mpx)", flush=True)
    mpx = geo["mosaic_mpx"]
    speed = {}
    if "stitch" in args.stages:
        m, table = stage_stitch(work, geo)
        err = virtual.stitching_errors(truth, table)
        speed["ours"] = m["wall_s"]
        n_links = int(table["n_links"].sum() // 2) if "n_links" in table else None
        rows.append(row(size, geo, "ours", "stitch", m, mpx, err,
                        notes=f"margin {geo['max_stage_error_um']} um, 1 thread; {n_links} links kept"))
        print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    if "calibrate" in args.stages:
        m = stage_calibrate(work)
        rows.append(row(size, geo, "ours", "calibrate", m, mpx, notes=f"{m['threads']} threads"))
        print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    if "crop" in args.stages:
        m = stage_crop(work)
        rows.append(row(size, geo, "ours", "crop", m, m["crop_mpx"], n_crops=m["n_crops"],
                        n_batches=m["n_batches"],
                        notes=f"{m['n_crops']} crops of {m['crop_px']} px in {m['n_batches']} batches"))
        print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    if ashlar_exe is not None:
        try:
            m, placed = stage_ashlar(work, ashlar_exe, geo)
        except (RuntimeError, OSError, KeyError, ValueError) as exc:
            skipped.append(f"{size}x{size}: {exc}")
            print(f"ASHLAR on {size} x {size}: FAILED: {exc}", flush=True)
        else:
            err = virtual.stitching_errors(truth, placed)
            speed["ashlar"] = m["wall_s"]
            rows.append(row(size, geo, "ashlar", "stitch", m, mpx, err, align_s=m["align_s"],
                            edges=m["edges"], edges_used=m["edges_used"], components=m["components"],
                            overlap_arg=geo["ashlar_overlap"],
                            notes=f"ASHLAR {m['version']}, of it align {m['align_s']:.1f} s; "
                                  f"{m['edges_used']}/{m['edges']} edges kept, {m['components']} group(s)"))
            print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    if "ours" in speed and "ashlar" in speed:
        print(f"{size} x {size}: ASHLAR / ours stitching: wall time {speed['ashlar'] / speed['ours']:.2f}x",
              flush=True)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def parse_args(argv):
    """Command line of the benchmark."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[6, 10], help="tiles per side, one set each")
    ap.add_argument("--tile-px", type=int, default=2048, help="tile edge, px")
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    ap.add_argument("--skip-ashlar", action="store_true", help="do not run ASHLAR")
    ap.add_argument("--ashlar", default=DEFAULT_ASHLAR, help="ASHLAR's executable (its own environment)")
    ap.add_argument("--dir", default=None, help="where the work folder goes (default: /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (tiles, mosaics, logs)")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the table as JSON")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if any(s < 1 for s in a.sizes):
        ap.error(f"--sizes must be positive, got {a.sizes}")
    if "calibrate" in a.stages and "stitch" not in a.stages:
        ap.error("--stages calibrate needs stitch: it calibrates the stitched mosaic")
    if "crop" in a.stages and "calibrate" not in a.stages:
        ap.error("--stages crop needs calibrate: it crops the calibrated map")
    try:
        for s in a.sizes:
            geometry(s, a.tile_px)
    except ValueError as exc:
        ap.error(str(exc))
    return a


def main(argv=None):
    """Run the benchmark; print the table; return the result dict (also written by ``--json``)."""
    args = parse_args(argv)
    t_start = time.perf_counter()
    watch = PauseWatch()
    info = machine_info()
    ashlar_exe, skipped = None, []
    if args.skip_ashlar:
        skipped.append("--skip-ashlar")
    elif not Path(args.ashlar).is_file():
        skipped.append(f"{args.ashlar} not found (install: python3 -m venv /work/ashlar_venv && "
                       f"/work/ashlar_venv/bin/pip install ashlar==1.20.0)")
    else:
        ashlar_exe = args.ashlar
    if skipped:
        print(f"ASHLAR skipped: {skipped[0]}")
    print(f"{info['date']}  {info['cpu']}, {info['cores']} cores, {info['mem_gib']} GiB; "
          f"load {info['load_at_start']}", flush=True)
    if args.dir:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="bench_scale_", dir=args.dir or "/tmp"))
    rows = []
    try:
        field_px = max(geometry(s, args.tile_px)["field_px"] for s in args.sizes)
        t0 = time.perf_counter()
        field = make_field(base / "field.zarr", field_px, args.seed)
        gen_s = time.perf_counter() - t0
        print(f"virtual field {field_px} x {field_px} px ({field_px ** 2 / 1e6:.0f} Mpx, large_area) "
              f"in {gen_s:.0f} s", flush=True)
        for size in sorted(args.sizes):
            bench_size(base, field, size, args, ashlar_exe, rows, skipped)
    finally:
        if args.keep:
            print(f"work folder kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    total_s = time.perf_counter() - t_start
    paused_s = watch.stop()
    print()
    print(format_table(rows))
    for size in sorted(args.sizes):
        here = [r for r in rows if r["size"] == f"{size}x{size}" and r["stage"] == "stitch"]
        ours = [r for r in here if r["tool"] == "ours"]
        ash = [r for r in here if r["tool"] == "ashlar"]
        if ours and ash:
            a, o = ash[0], ours[0]
            print(f"{size} x {size}: ASHLAR takes {a['wall_s'] / o['wall_s']:.2f}x our stitching's wall "
                  f"time, {a['cpu_s'] / o['cpu_s']:.2f}x its CPU time and "
                  f"{a['peak_rss_gib'] / o['peak_rss_gib']:.2f}x "
                  f"its peak RSS")
    for s in skipped:
        print(f"ASHLAR skipped: {s}")
    print(f"total {total_s:.0f} s, of it {paused_s:.0f} s with this process stopped from outside "
          f"(field generation {gen_s:.0f} s)")
    command = " ".join(["benchmarks/bench_scale.py", *(argv if argv is not None else sys.argv[1:])])
    result = {"benchmark": "bench_scale", "command": command,
              "machine": info, "settings": {
                  "sizes": sorted(args.sizes), "tile_px": args.tile_px, "overlap": OVERLAP,
                  "pixel_size_nm": PIXEL_NM, "stages": list(args.stages), "seed": args.seed,
                  "crop_um": CROP_UM, "indent_pitch_um": INDENT_PITCH_UM,
                  "electrons_per_px": ELECTRONS_PER_PX},
              "rows": rows, "ashlar_skipped": skipped, "field_generation_s": round(gen_s, 1),
              "total_s": round(total_s, 1), "total_paused_s": round(paused_s, 1)}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"JSON: {args.json}")
    return result


if __name__ == "__main__":
    main()
