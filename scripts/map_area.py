"""Rule map_area: map E (or H) over a whole area with the trained ResNet ensemble.

The seed paper's out-of-bag test: the calibrated map of an area is cut into
sliding windows of the training crop size, once at the indent spacing and
once densely; the ensemble mean of the trained models predicts each window
(:func:`microprop.learning.predict_map`), the seed's table model maps the same
windows from their mean grey; the phase statistics (GMM fraction, mean, std)
of the maps are compared with those of the indentation test (Table 1).

Inputs
------
snakemake.input.calibrated : str
    ``results/{specimen}/{area}/calibrated.zarr`` group (array
    ``params.scale``, attrs ``pixel_size_nm``, ``origin_um``, ``quantity``).
snakemake.input.checkpoints : str or list of str
    ``best.pt`` checkpoints of the trained models
    (:func:`microprop.learning.load_model`); all must share ``target`` and
    ``crop_size_px``. The map is their mean prediction (ensemble).
snakemake.input.table : str, optional
    CSV of table-model bins (``grey_lo, grey_hi, y_mean``; with a ``target``
    column, as written by the ``baselines`` rule's ``bins`` output, the rows
    of the models' target are used). Absent: no table-model map.
snakemake.input.indents : str or list of str
    Located-indent CSVs of the indented areas
    (``results/{specimen}/{area}/located/{batch}.csv``; column ``E_GPa`` or
    ``H_GPa`` = the models' target, and the other when present).
snakemake.input.mosaic : str
    ``mosaic_before.zarr`` of the mapped area (BSE panel of the figure).

Params
------
snakemake.params.scale : str
    Array of the calibrated group the models were trained on (``"MulF"``).
snakemake.params.step_um : float
    Indent spacing, um: the step of the coarse map.
snakemake.params.dense_step_px : int, optional
    Step of the dense map, px (default ``crop_size_px // 8``).
snakemake.params.dense_max_crops : int, optional
    Upper bound on the windows of the dense map: a larger step is used (with a
    warning) when ``dense_step_px`` would give more (default: no bound; the
    seed ResNet runs ~14 crops/s at 64 px input on 2 CPU cores).
snakemake.params.device : str, optional
    ``"auto"`` (default: CUDA if available, else CPU), ``"cpu"`` or ``"cuda"``.
snakemake.params.batch_size : int, optional
    Crops per model call (default 64).
snakemake.params.n_components : int, optional
    Gaussian components of the mixtures (default 4).
snakemake.params.seed : int, optional
    Random state of the mixtures and of their subsample (default 0).
snakemake.params.n_init : int, optional
    EM restarts per start kind (default 10).
snakemake.params.max_values : int, optional
    Map values fitted per mixture, a seeded subsample (default 10000).
snakemake.params.bse_max_px : int, optional
    Longest edge of the BSE panel after block-mean downsampling (default 1200).

Outputs
-------
snakemake.output.grid_coarse : NPY
    ``(ny, nx)`` float32 ensemble prediction (GPa) at step ``step_um``;
    window ``(i, j)`` centred at pixel ``(cy[i], cx[j])`` of
    :func:`microprop.learning.window_centres` (NaN: crop with non-finite pixels).
snakemake.output.grid_dense : NPY
    Same at step ``dense_step_px``.
snakemake.output.table1 : CSV
    :func:`microprop.learning.compare_statistics`: ``source, component, phase,
    fraction, mean, std, n, method, d_fraction, d_mean, d_std`` for the
    indents, the ResNet maps and the table-model maps (GPa).
snakemake.output.fig_maps : PNG
    BSE | ResNet map | table-model map (dense), same colour scale.
snakemake.output.fig_hist : PNG
    Histograms with GMM components, one panel per source.
snakemake.output.meta : JSON, optional
    Window geometry (``crop_size_px``, steps, first centres in px and um,
    ``pixel_size_nm``, ``origin_um``), checkpoints, device and the measured
    throughput (crops/s, megapixels/s) of both maps.
"""
import time
from pathlib import Path

from microprop.workflow import setup_script

snakemake = setup_script(globals())

import logging  # noqa: E402
import math  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import zarr  # noqa: E402
from microprop import io as mio  # noqa: E402
from microprop import (
    learning,  # noqa: E402
    plots,  # noqa: E402
)
from microprop.errors import InputError  # noqa: E402

log = logging.getLogger("microprop.map_area")


def as_list(value):
    if value is None:
        return []
    if isinstance(value, (str, Path)):
        return [str(value)]
    return [str(v) for v in value]


def load_ensemble(paths, device):
    if not paths:
        raise InputError("map_area: input.checkpoints is empty; expected at least one best.pt")
    models = [(p, *learning.load_model(p, device)) for p in paths]
    first = models[0][2]
    for p, _, meta in models[1:]:
        for key in ("target", "crop_size_px"):
            if meta.get(key) != first.get(key):
                raise InputError(f"{p}: {key} = {meta.get(key)!r} differs from "
                                 f"{models[0][0]}'s {first.get(key)!r}; an ensemble needs one")
    return models, first


def read_bins(path, target):
    df = mio.read_table(path, required=("grey_lo", "grey_hi", "y_mean"), what="table-model bins")
    if "target" in df.columns:
        df = df[df["target"] == target]
        if df.empty:
            raise InputError(f"{path}: no table-model bins for target {target!r}")
    if "bin" in df.columns:
        df = df.sort_values("bin")
    return df.reset_index(drop=True)


def save_npy(array, path):
    with mio.atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


inp, par, out = snakemake.input, snakemake.params, snakemake.output
scale = str(par.get("scale", "MulF"))
calibrated = mio.open_image(inp.calibrated, name=scale)
cal_attrs = {**dict(zarr.open_group(str(inp.calibrated), mode="r").attrs),
             **dict(calibrated.attrs)}
if not cal_attrs.get("pixel_size_nm"):
    raise InputError(f"{inp.calibrated}/{scale}: attrs lack pixel_size_nm")
ps_nm = float(cal_attrs["pixel_size_nm"])
origin_um = [float(v) for v in cal_attrs.get("origin_um", [0.0, 0.0])]

device = learning.resolve_device(par.get("device", "auto"))
checkpoints = as_list(inp.checkpoints)
models, meta = load_ensemble(checkpoints, device)
target = str(meta["target"])
s = int(meta["crop_size_px"])
batch_size = int(par.get("batch_size") or (512 if device.type == "cuda" else 64))
step_px = int(round(float(par.step_um) * 1000.0 / ps_nm))
dense_px = int(par.get("dense_step_px") or max(s // 8, 1))
max_crops = par.get("dense_max_crops")
if max_crops:
    want = dense_px
    while np.prod([c.size for c in learning.window_centres(calibrated.shape, s, dense_px)]) \
            > int(max_crops):
        dense_px += 1
    if dense_px != want:
        log.warning("dense step raised from %d to %d px to stay within dense_max_crops = %d",
                    want, dense_px, int(max_crops))
log.info("%d model(s) of %s on %s, crop %d px, steps %d px (%.3g um) and %d px", len(models),
         target, device, s, step_px, step_px * ps_nm / 1000, dense_px)


def ensemble(crops):
    preds = [learning.predict(m, mt, crops, device, batch_size) for _, m, mt in models]
    return np.mean(np.stack([np.asarray(p, dtype=np.float64).reshape(-1) for p in preds]), axis=0)


grids, timing, centres = {}, {}, {}
for kind, step in (("coarse", step_px), ("dense", dense_px)):
    t0 = time.perf_counter()
    grids[kind], centres[kind] = learning.predict_map(calibrated, ensemble, s, step,
                                                     batch=batch_size, desc=f"{kind} map")
    dt = max(time.perf_counter() - t0, 1e-9)
    timing[kind] = {"seconds": dt, "crops": int(grids[kind].size),
                    "crops_per_s": grids[kind].size / dt,
                    "megapixels_per_s": calibrated.shape[0] * calibrated.shape[1] / 1e6 / dt}
    log.info("%s map: %d crops in %.1f s: %.1f crops/s, %.2f megapixels/s", kind,
             grids[kind].size, dt, timing[kind]["crops_per_s"], timing[kind]["megapixels_per_s"])

tables = {}
if inp.get("table"):
    bins = read_bins(inp.table, target)
    for kind, step in (("coarse", step_px), ("dense", dense_px)):
        tables[kind] = learning.table_model_map(calibrated, bins, s, step)

frames = [mio.read_table(f, required=(target,), what="located indents")
          for f in as_list(inp.indents)]
if not frames:
    raise InputError("map_area: input.indents is empty; the comparison needs the indentation test")
indents = pd.concat(frames, ignore_index=True)


def label(model, step):
    return f"{model}, step {step * ps_nm / 1000:.3g} um"


sources = {label("ResNet", step_px): grids["coarse"], label("ResNet", dense_px): grids["dense"]}
for kind, step in (("coarse", step_px), ("dense", dense_px)):
    if kind in tables:
        sources[label("table model", step)] = tables[kind]
table1 = learning.compare_statistics(
    indents[target], sources, n_components=int(par.get("n_components", 4)),
    seed=int(par.get("seed", 0)), n_init=int(par.get("n_init", 10)),
    max_values=int(par.get("max_values", 10000)), quantity=target)

mosaic = mio.open_image(inp.mosaic)
factor = max(1, math.ceil(max(mosaic.shape) / int(par.get("bse_max_px", 1200))))
bse = mio.downsample(mosaic, factor)
first_centre = [(int(centres["dense"][1][0]) - s // 2 + (s - 1) / 2) * ps_nm / 1000,
                (int(centres["dense"][0][0]) - s // 2 + (s - 1) / 2) * ps_nm / 1000]
fig_maps = plots.map_triptych(
    bse, ps_nm * factor, grids["dense"], tables.get("dense"), dense_px * ps_nm / 1000,
    first_centre_um=first_centre, downsample_factor=factor, quantity=target,
    title=f"{target.split('_')[0]} mapped over {Path(str(inp.calibrated)).parent.name} "
          f"({len(models)}-model ensemble)")
fig_hist = plots.map_histograms(indents[target], sources, table1, quantity=target)

save_npy(grids["coarse"], out.grid_coarse)
save_npy(grids["dense"], out.grid_dense)
mio.write_table(table1, out.table1)
plots.save_png(fig_maps, out.fig_maps)
plots.save_png(fig_hist, out.fig_hist)
if out.get("meta"):
    geometry = {kind: {"step_px": int(step), "step_um": step * ps_nm / 1000,
                       "shape": list(grids[kind].shape),
                       "first_centre_px": [int(centres[kind][1][0]), int(centres[kind][0][0])],
                       **timing[kind]}
                for kind, step in (("coarse", step_px), ("dense", dense_px))}
    mio.write_json({"target": target, "crop_size_px": s, "pixel_size_nm": ps_nm,
                    "origin_um": origin_um, "scale": scale, "device": str(device),
                    "checkpoints": checkpoints, "map_shape": list(calibrated.shape),
                    "table_model": bool(tables), "n_indents": int(len(indents)),
                    **geometry}, out.meta)
