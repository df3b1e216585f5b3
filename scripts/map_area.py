"""Rule map_area: map E (or H) over a whole area with the trained ResNet ensemble.

The seed paper's out-of-bag test: the calibrated map of an area is cut into
sliding windows of the training crop size, once at the indent spacing and
once densely; the ensemble mean of the trained models predicts each window
(:func:`microprop.learning.predict_map`), the seed's table model maps the same
windows from their mean grey; the phase statistics (GMM fraction, mean, std)
of this target's maps are compared with those of the indentation test
(``table1_<target>.csv``, a 1D mixture of the conditional means). The
members' spread per window and the table-model maps go to ``windows`` for
rule ``map_statistics``, whose Table 1 is joint in (E, H) and drawn from the
windows' predictive distributions.

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
snakemake.params.mode : {"exact", "dense"}, optional
    How the dense map is computed (default ``"exact"``): every window through
    the whole network (:func:`microprop.learning.predict_map`), or the
    convolutional trunk once over the map, pooled per window
    (:func:`microprop.learning.dense_predict_map`, an approximation). The
    coarse map is always exact.
snakemake.params.check_windows : int, optional
    Dense mode: windows of the dense map compared with exact inference
    (:func:`microprop.learning.dense_agreement`; default 10000, 0: none).
snakemake.params.tile_px : int, optional
    Dense mode: window origins per trunk tile edge, input pixels (default 256).
snakemake.params.device : str, optional
    ``"auto"`` (default: CUDA if available, else CPU), ``"cpu"`` or ``"cuda"``.
snakemake.params.batch_size : int, optional
    Crops per model call (default 64).
snakemake.params.n_components : int, optional
    Gaussian components of the mixtures (default 4; the rule gives one per
    solid phase of the specimen's phase set unless ``stats.n_components`` is set).
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
    ``pixel_size_nm``, ``origin_um``), checkpoints, device, the mode and
    the measured throughput (crops/s, megapixels/s) of both maps.
snakemake.output.windows : NPZ, optional
    What rule ``map_statistics`` needs beside the means: per map ``kind``
    (``coarse``, ``dense``) ``spread_<kind>`` (``(ny, nx)`` float32, the
    members' sd, ddof 1, GPa; NaN for a dense-mode dense map, which has no
    members' spread), ``table_<kind>`` (the table-model map, NaN without
    ``input.table``), ``cy_<kind>``, ``cx_<kind>`` (window centres, px) and
    ``step_px_<kind>``; ``crop_size_px``, ``pixel_size_nm``.
snakemake.output.agreement : JSON, optional
    ``mode``; in dense mode the difference between the dense map and exact
    per-window inference on ``check_windows`` sampled windows
    (:func:`microprop.learning.dense_agreement`: ``n_windows``, ``r2``,
    ``max_abs_diff``, ``mean_abs_diff``, ... in GPa) and whether ``r2``
    reaches 0.98; in exact mode only the mode (the map is exact).
"""
import logging
import math
from pathlib import Path

from microprop.workflow import setup_script

log = logging.getLogger("microprop.map_area")


def main(snakemake):
    """Map the area with the ensemble and the table model; write grids, Table 1 and figures."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    import numpy as np
    import pandas as pd
    from microprop import io as mio
    from microprop import learning, plots, stats
    from microprop.errors import InputError

    inp, par, out = snakemake.input, snakemake.params, snakemake.output
    scale = str(par.get("scale", "MulF"))
    calibrated, cal_attrs = mio.open_calibrated(inp.calibrated, scale)
    ps_nm = float(cal_attrs["pixel_size_nm"])
    origin_um = [float(v) for v in cal_attrs.get("origin_um", [0.0, 0.0])]

    device = learning.resolve_device(par.get("device", "auto"))
    checkpoints = mio.path_list(inp.checkpoints)
    models, meta = learning.load_ensemble(checkpoints, device)
    target = str(meta["target"])
    s = int(meta["crop_size_px"])
    batch_size = int(par.get("batch_size") or (512 if device.type == "cuda" else 64))
    step_px = int(round(float(par.step_um) * 1000.0 / ps_nm))
    dense_px = learning.dense_step_px(calibrated.shape, s,
                                      int(par.get("dense_step_px") or max(s // 8, 1)),
                                      par.get("dense_max_crops"))
    log.info("%d model(s) of %s on %s, crop %d px, steps %d px (%.3g um) and %d px", len(models),
             target, device, s, step_px, step_px * ps_nm / 1000, dense_px)
    steps = (("coarse", step_px), ("dense", dense_px))

    mode = str(par.get("mode") or "exact")
    if mode not in ("exact", "dense"):
        raise InputError(f"map_area: params.mode must be 'exact' or 'dense', got {mode!r}")
    predict_fn = learning.ensemble_mean_predictor(models, device, batch_size)
    spread_fn = learning.ensemble_mean_spread_predictor(models, device, batch_size)
    grids, spreads, timing, centres = {}, {}, {}, {}
    for kind, step in steps:
        if kind == "dense" and mode == "dense":
            grids[kind], centres[kind], timing[kind] = learning.timed_dense_predict_map(
                calibrated, models, s, step, device=device,
                tile_px=int(par.get("tile_px") or learning.DENSE_TILE_PX), desc="dense map")
            spreads[kind] = np.full(grids[kind].shape, np.nan, np.float32)  # no members' spread
        else:
            both, centres[kind], timing[kind] = learning.timed_predict_map(
                calibrated, spread_fn, s, step, batch=batch_size, desc=f"{kind} map", outputs=2)
            grids[kind] = np.ascontiguousarray(both[..., 0])
            spreads[kind] = np.ascontiguousarray(both[..., 1])
    agreement = {"mode": mode}
    check = int(par.get("check_windows", learning.CHECK_WINDOWS) or 0)
    if mode == "dense" and check > 0:
        agreement.update(learning.dense_agreement(
            calibrated, grids["dense"], centres["dense"], predict_fn, s, n_windows=check,
            seed=int(par.get("seed", 0)), batch=batch_size))
        agreement.update({"units": "GPa", "target": target, "step_px": dense_px,
                          "checkpoints": checkpoints, "r2_target": 0.98,
                          "meets_r2_target": bool(agreement["r2"] >= 0.98)})
        if not agreement["meets_r2_target"]:
            log.warning("dense map: R2 %.3f against exact inference on %d windows is below "
                        "0.98 (largest difference %.1f GPa); use map_mode: exact for results",
                        agreement["r2"], agreement["n_windows"], agreement["max_abs_diff"])

    tables = {}
    if inp.get("table"):
        bins = stats.read_table_model_bins(inp.table, target)
        for kind, step in steps:
            tables[kind] = learning.table_model_map(calibrated, bins, s, step)

    frames = [mio.read_table(f, required=(target,), what="located indents")
              for f in mio.path_list(inp.indents)]
    if not frames:
        raise InputError("map_area: input.indents is empty; the comparison needs the "
                         "indentation test")
    indents = pd.concat(frames, ignore_index=True)

    sources = {learning.map_label("ResNet", step, ps_nm): grids[kind] for kind, step in steps}
    for kind, step in steps:
        if kind in tables:
            sources[learning.map_label("table model", step, ps_nm)] = tables[kind]
    table1 = learning.compare_statistics(
        indents[target], sources, n_components=int(par.get("n_components") or 4),
        seed=int(par.get("seed", 0)), n_init=int(par.get("n_init", 10)),
        max_values=int(par.get("max_values", 10000)), quantity=target)

    mosaic = mio.open_image(inp.mosaic)
    factor = max(1, math.ceil(max(mosaic.shape) / int(par.get("bse_max_px", 1200))))
    bse = mio.downsample(mosaic, factor)
    fig_maps = plots.map_triptych(
        bse, ps_nm * factor, grids["dense"], tables.get("dense"), dense_px * ps_nm / 1000,
        first_centre_um=learning.first_centre_um(centres["dense"], s, ps_nm),
        downsample_factor=factor, quantity=target,
        title=f"{target.split('_')[0]} mapped over {Path(str(inp.calibrated)).parent.name} "
              f"({len(models)}-model ensemble)")
    fig_hist = plots.map_histograms(indents[target], sources, table1, quantity=target)

    mio.write_npy(grids["coarse"], out.grid_coarse)
    mio.write_npy(grids["dense"], out.grid_dense)
    mio.write_table(table1, out.table1)
    plots.save_png(fig_maps, out.fig_maps)
    plots.save_png(fig_hist, out.fig_hist)
    if out.get("meta"):
        geometry = {kind: {**learning.map_geometry(step, ps_nm, grids[kind], centres[kind]),
                           **timing[kind]} for kind, step in steps}
        mio.write_json({"target": target, "crop_size_px": s, "pixel_size_nm": ps_nm,
                        "origin_um": origin_um, "scale": scale, "device": str(device),
                        "checkpoints": checkpoints, "map_shape": list(calibrated.shape),
                        "table_model": bool(tables), "n_indents": int(len(indents)),
                        "mode": mode, **geometry}, out.meta)
    if out.get("agreement"):
        mio.write_json(agreement, out.agreement)
    if out.get("windows"):
        arrays = {"crop_size_px": np.int64(s), "pixel_size_nm": np.float64(ps_nm)}
        for kind, step in steps:
            arrays.update({f"spread_{kind}": spreads[kind], f"cy_{kind}": centres[kind][0],
                           f"cx_{kind}": centres[kind][1], f"step_px_{kind}": np.int64(step),
                           f"table_{kind}": tables.get(kind, np.full(grids[kind].shape, np.nan,
                                                                     np.float32))})
        mio.write_npz(arrays, out.windows)


if __name__ == "__main__":
    main(setup_script(globals()))
