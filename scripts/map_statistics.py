"""Rule map_statistics: Table 1 of a mapped area, joint in (E, H) and from predictive draws.

The seed paper's out-of-bag test (its Sec. 5.4 and Table 1) compares the
phase statistics of the ResNet map of a never-indented area with those of the
indentation test. Here, once the area is mapped for every target
(rule ``map_area``), each row of Table 1 is one Gaussian-mixture
deconvolution (:func:`microprop.learning.phase_statistics_table`): the
indentation (E alone, and joint in E and H), the map's conditional means,
draws from every window's predictive distribution
(:func:`microprop.learning.predictive_draws`, calibrated on the held-out
crops of the evaluation, :func:`microprop.learning.predictive_calibration`)
and the table-model map; joint in (E, H) where both are mapped. On a virtual
specimen every row is set against the generator's truth: the indents' mean
zone fractions (:func:`microprop.virtual.generated_phases`) for the
indentation rows, the area fractions under the map's window centres
(:func:`microprop.learning.true_area_fractions`) for the map rows.

Inputs
------
snakemake.input.grids_coarse, grids_dense : list of str
    ``grid_{coarse,dense}_<target>.npy`` of rule ``map_area``, one per target
    of ``params.targets`` in that order (ensemble mean, GPa).
snakemake.input.windows : list of str
    ``windows_<target>.npz`` of rule ``map_area`` (spread and table-model maps,
    window centres), same order.
snakemake.input.summaries, predictions : list of str
    ``summary.json`` and ``predictions.csv`` of rule ``evaluate_model`` for the
    split whose models map (``random``), same order: the calibrated interval
    (``interval.conformal``: ``q``, ``floor``, ``z``) and the held-out crops.
snakemake.input.indents : list of str
    Located-indent CSVs of the indented areas (``E_GPa``, ``H_GPa``).
snakemake.input.truth_map : str, optional
    Virtual specimens: ``resources/truth/{specimen}/{area}`` of the mapped area
    (``phases.npy``, ``tiles_before.csv``).
snakemake.input.stitch : str, optional
    Virtual specimens: ``stitch_before.csv`` of the mapped area (places the
    mosaic in the truth's frame, :func:`microprop.virtual.mosaic_offset_px`).
snakemake.input.truth_indents : list of str, optional
    Virtual specimens: the truth folders of the indented areas (``indents.csv``
    with zone fractions, ``phase_properties.csv``).

Params
------
snakemake.params.targets : list of str
    Mapped targets, a subset of ``["E_GPa", "H_GPa"]`` in that order.
snakemake.params.draws : int, optional
    Draws per window from its predictive distribution (default 40: about
    50,000 values at the demo's 1350 windows; fewer leave the mixture fit
    free to fall onto another optimum from one seed to the next).
snakemake.params.draws_method : str, optional
    ``neighbours`` (default), ``normal`` or ``residuals``
    (:func:`microprop.learning.predictive_draws`).
snakemake.params.neighbours : int, optional
    ``neighbours``: held-out crops per window (default
    :func:`microprop.learning.default_neighbours`, ``ceil(4 sqrt(n))``).
snakemake.params.calibration_splits : list of str, optional
    Held-out splits of the evaluation that calibrate the draws (default
    ``["val", "test"]``).
snakemake.params.max_values : int, optional
    Values fitted per mixture, a seeded subsample beyond it (default 250000).
snakemake.params.n_components : int, optional
    Gaussian components (default 4).
snakemake.params.seed : int, optional
    Seed of the draws, the subsamples and the EM starts (default 0).
snakemake.params.n_init : int, optional
    EM restarts per start kind (default 10).
snakemake.params.tolerance : float, optional
    Fraction tolerance of the summary's verdicts (default 0.05).

Outputs
-------
snakemake.output.table1 : CSV
    :func:`microprop.learning.phase_statistics_table`: ``source, values,
    method, component, phase, fraction, E_mean, E_std, H_mean, H_std, n,
    truth, fraction_truth, d_fraction_truth, d_fraction_reference`` (GPa), then
    the truth rows (``values`` = ``truth``).
snakemake.output.summary : JSON
    ``reference`` (the row the differences are taken against: the
    indentation's joint fit), ``tolerance``, ``rows``
    (:func:`microprop.learning.phase_statistics_summary`), ``truth`` (phase ->
    fraction, per key, with its definition), ``calibration`` (held-out crops,
    ``q``, ``floor``, residual correlation, method, draws), ``targets``.
snakemake.output.figure : PNG
    :func:`microprop.plots.map_phase_fractions`: fractions per row against the
    truth, and the (E, H) clouds of the coarse map's draws, the indents and the
    map's conditional means.
"""
import logging
from pathlib import Path

from microprop.workflow import setup_script

log = logging.getLogger("microprop.map_statistics")


def _truths(inp, centres):
    """Truth fractions of the mapped area and of the indents (virtual specimens), or {}."""
    import numpy as np
    import pandas as pd
    from microprop import io as mio
    from microprop import learning
    from microprop import virtual as mvirtual

    truths, definitions = {}, {}
    if inp.get("truth_map"):
        truth = Path(str(inp.truth_map))
        offset = mvirtual.mosaic_offset_px(mio.read_table(truth / "tiles_before.csv"),
                                          mio.read_table(inp.stitch, ["tile", "x_px", "y_px"]))
        labels = np.load(truth / "phases.npy", mmap_mode="r")
        cy = np.concatenate([c[0] for c in centres])
        cx = np.concatenate([c[1] for c in centres])
        truths["map area"] = learning.true_area_fractions(labels, (cy, cx), offset)
        definitions["map area"] = (
            "area fraction of each solid phase in the generator's label map over the rectangle "
            "the map's window centres span, renormalised over the solid phases")
    dirs = mio.path_list(inp.get("truth_indents"))
    if dirs:
        indents = pd.concat([mio.read_table(Path(d) / "indents.csv") for d in dirs],
                            ignore_index=True)
        props = mio.read_table(Path(dirs[0]) / "phase_properties.csv")
        truths["indents"] = {p: v["fraction"] for p, v in
                             mvirtual.generated_phases(indents, props).items()}
        definitions["indents"] = (
            "mean volume fraction of each solid phase in the indents' interaction zones, "
            "renormalised over the solid phases (as rule validate_virtual)")
    return truths, definitions


def _sources(targets, indents, means, tables, draws, labels):
    """The rows of Table 1, in order: indentation, conditional means, draws, table model."""
    src = []
    has = [t for t in ("E_GPa", "H_GPa") if t in indents.columns]
    if "E_GPa" in has:
        src.append({"source": "indentation", "values": "measured", "E_GPa": indents["E_GPa"],
                    "joint": False, "truth": "indents"})
    if len(has) == 2:
        src.append({"source": "indentation", "values": "measured", "E_GPa": indents["E_GPa"],
                    "H_GPa": indents["H_GPa"], "truth": "indents"})
    elif "H_GPa" in has:
        src.append({"source": "indentation", "values": "measured", "H_GPa": indents["H_GPa"],
                    "truth": "indents"})
    for kind in ("coarse", "dense"):
        src.append({"source": labels["ResNet", kind], "values": "conditional mean",
                    **{t: means[kind][t] for t in targets}, "truth": "map area"})
        if kind in draws:
            src.append({"source": labels["ResNet", kind], "values": "predictive draws",
                        **draws[kind], "truth": "map area"})
    for kind in ("coarse", "dense"):
        if kind in tables:
            src.append({"source": labels["table model", kind], "values": "conditional mean",
                        **tables[kind], "truth": "map area"})
    return src


def main(snakemake):
    """Deconvolve the indentation and the maps jointly; write Table 1, its summary and figure."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    import numpy as np
    import pandas as pd
    from microprop import io as mio
    from microprop import learning, plots
    from microprop.errors import InputError

    inp, par, out = snakemake.input, snakemake.params, snakemake.output
    targets = [str(t) for t in (par.get("targets") or ["E_GPa", "H_GPa"])]
    lists = {k: mio.path_list(inp.get(k)) for k in ("grids_coarse", "grids_dense", "windows",
                                                    "summaries", "predictions")}
    for key, files in lists.items():
        if len(files) != len(targets):
            raise InputError(f"map_statistics: input.{key} has {len(files)} file(s) for the "
                             f"{len(targets)} target(s) {targets}; one per target, same order")
    seed = int(par.get("seed", 0) or 0)
    means, spreads, tables, centres, steps = {}, {}, {}, {}, {}
    ps_nm = None
    for i, t in enumerate(targets):
        w = np.load(lists["windows"][i])
        ps_nm = float(w["pixel_size_nm"])
        for kind in ("coarse", "dense"):
            grid = np.load(lists[f"grids_{kind}"][i])
            if grid.shape != w[f"spread_{kind}"].shape:
                raise InputError(f"map_statistics: {lists[f'grids_{kind}'][i]} is {grid.shape} "
                                 f"but {lists['windows'][i]} holds {kind} windows of "
                                 f"{w[f'spread_{kind}'].shape}; both from one map_area run")
            means.setdefault(kind, {})[t] = grid
            spreads.setdefault(kind, {})[t] = w[f"spread_{kind}"]
            if np.isfinite(w[f"table_{kind}"]).any():
                tables.setdefault(kind, {})[t] = w[f"table_{kind}"]
            centres[kind] = (w[f"cy_{kind}"], w[f"cx_{kind}"])
            steps[kind] = int(w[f"step_px_{kind}"])
    tables = {k: v for k, v in tables.items() if len(v) == len(targets)}
    labels = {(m, k): learning.map_label(m, steps[k], ps_nm)
              for m in ("ResNet", "table model") for k in steps}

    preds = {t: mio.read_table(f, required=("index", "split", "y", "mean", "std"),
                               what=f"{t} predictions") for t, f in zip(targets, lists["predictions"])}
    intervals = {}
    for t, f in zip(targets, lists["summaries"]):
        conformal = (mio.read_json(f).get("interval") or {}).get("conformal")
        if not conformal:
            raise InputError(f"{f}: no interval.conformal; expected the evaluate_model "
                             "rule's summary.json")
        intervals[t] = conformal
    cal = learning.predictive_calibration(
        preds, intervals, splits=par.get("calibration_splits") or learning.CALIBRATION_SPLITS)
    method = str(par.get("draws_method") or "neighbours")
    n_draws = int(par.get("draws") or 40)
    n_neighbours = int(par.get("neighbours") or learning.default_neighbours(cal["n"]))
    draws = {}
    for kind in ("coarse", "dense"):
        have_spread = all(np.isfinite(spreads[kind][t]).any() for t in targets)
        if method != "neighbours" and not have_spread:
            log.warning("%s map has no members' spread (dense mode): no predictive draws with "
                        "method %r", kind, method)
            continue
        draws[kind] = learning.predictive_draws(
            means[kind], spreads[kind] if have_spread else None, cal, n_draws=n_draws,
            method=method, seed=seed + (kind == "dense"),
            n_neighbours=n_neighbours)

    frames = [mio.read_table(f, what="located indents") for f in mio.path_list(inp.indents)]
    if not frames:
        raise InputError("map_statistics: input.indents is empty; Table 1 needs the "
                         "indentation test")
    indents = pd.concat(frames, ignore_index=True)
    truths, definitions = _truths(inp, [centres[k] for k in ("coarse", "dense")])
    sources = _sources(targets, indents, means, tables, draws, labels)
    for s in sources:
        if s["truth"] not in truths:
            s["truth"] = None
    table = learning.phase_statistics_table(
        sources, truths, n_components=int(par.get("n_components") or 4), seed=seed,
        n_init=int(par.get("n_init", 10) or 10), max_values=int(par.get("max_values") or 250000))
    tolerance = float(par.get("tolerance") or learning.FRACTION_TOLERANCE)
    rows = learning.phase_statistics_summary(table, tolerance)
    for r in rows:
        log.info("Table 1 %s (%s, %s): %s; max |d| truth %s, reference %s", r["source"],
                 r["values"], r["method"],
                 ", ".join(f"{p} {f:.3f}" for p, f in r["fractions"].items()),
                 *(f"{v:.3f}" if v is not None else "-" for v in
                   (r["max_abs_d_fraction_truth"], r["max_abs_d_fraction_reference"])))
    truth_rows = pd.DataFrame([{"source": "truth", "values": "truth", "method": key,
                                "phase": p, "fraction": f, "truth": key, "fraction_truth": f}
                               for key, fr in truths.items() for p, f in fr.items()])
    full = pd.concat([table, truth_rows], ignore_index=True)[list(table.columns)] \
        if len(truth_rows) else table

    mio.write_table(full, out.table1)
    calibration = {k: cal[k] for k in ("targets", "q", "floor", "z", "sd_factor", "n", "splits")}
    corr = cal["correlation"]
    calibration.update(correlation_EH=corr if np.isfinite(corr) else None, method=method,
                       draws_per_window=n_draws,
                       neighbours=n_neighbours if method == "neighbours" else None,
                       windows={k: int(np.logical_and.reduce(
                           [np.isfinite(means[k][t]) for t in targets]).sum()) for k in means})
    mio.write_json({"targets": targets, "reference": table.attrs["reference"],
                    "tolerance": tolerance, "rows": rows,
                    "truth": {k: {"fractions": v, "definition": definitions[k]}
                              for k, v in truths.items()},
                    "calibration": calibration}, out.summary)
    if out.get("figure"):
        clouds = None
        if targets == ["E_GPa", "H_GPa"] and {"E_GPa", "H_GPa"} <= set(indents.columns):
            clouds = {}                       # drawn in this order: the widest cloud first
            if "coarse" in draws:
                clouds[f"{labels['ResNet', 'coarse']}: predictive draws"] = (
                    draws["coarse"]["E_GPa"], draws["coarse"]["H_GPa"])
            clouds["indents"] = (indents["E_GPa"], indents["H_GPa"])
            clouds[f"{labels['ResNet', 'coarse']}: conditional means"] = (
                means["coarse"]["E_GPa"], means["coarse"]["H_GPa"])
        area = snakemake.wildcards.get("area", "")
        plots.save_png(plots.map_phase_fractions(
            table, clouds, seed=seed,
            title=f"Table 1 of {area}: phase fractions of the indentation and of the map "
                  f"({'joint E-H' if len(targets) == 2 else targets[0]}; draws: {method})"),
            out.figure)


if __name__ == "__main__":
    main(setup_script(globals()))
