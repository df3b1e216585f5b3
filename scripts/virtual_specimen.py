"""Generate one area of a virtual specimen: what a microscope and a nanoindenter give a user.

Rule script (run by Snakemake, or by hand: ``python scripts/virtual_specimen.py --rule virtual_specimen_demo_A1``).

snakemake.input
    phase_eta : path of ``phase_eta.csv`` (columns ``phase, eta``; one row per
        phase of ``microprop.phases.PHASES``).
snakemake.output
    before : directory; ``layout.csv`` (``tile, file, row, col, x_um, y_um``
        nominal stage positions) and the before-indentation tiles (TIFF).
    after : directory; the same for the after-indentation tiles (Berkovich marks).
    exports : list of paths, ``{indentation}/{batch}.csv``, one per batch in the
        order of ``params.batches`` (KLA-like: ``INDENT, X, Y, DEPTH, LOAD,
        STIFFNESS, HARDNESS, MODULUS`` in um, um, nm, mN, N/m, GPa, GPa; NOMINAL
        positions in indenter coordinates). Alternatively ``indentation_dir``:
        a directory that receives ``{batch}.csv``.
    truth_dir : directory; ``phases.npy`` (uint8 labels, specimen frame),
        ``tiles_before.csv``, ``tiles_after.csv`` (``tile, x_px, y_px`` true),
        ``indents.csv`` (``batch, indent, row, col, x_px, y_px`` true, ``x_um,
        y_um`` true stage, ``nominal_x_um, nominal_y_um``, ``E_GPa, H_GPa``
        measured, ``E_true_GPa, H_true_GPa``, ``depth_nm, load_mN,
        stiffness_N_per_m``, ``f_<phase>``, ``phase``), ``phase_properties.csv``
        (the drawn per-phase E/H distributions), ``truth.json`` (area
        fractions, per dominant phase indent fraction and E/H mean/std,
        geometry, all generator parameters).
snakemake.params
    pixel_size_nm : float, nm/px.
    fractions : dict phase -> area fraction (all five phases, sum 1).
    batches : list of str, batch names (len = nx * ny), e.g. ["b01", "b02"].
    n_batches : [nx, ny] batches along x and y (default [2, 1]).
    batch_shape : [n_rows, n_cols] indents per batch (default [20, 20]).
    spacing_um : float, indent spacing (default 10).
    margin_um : float, field margin around the batches (default 15).
    batch_origin_error_um : float, sigma of each batch's origin error (default 1.0).
    grid_drift_um : float, sigma of each row/column increment (default 0.1).
    tile_shape_px : [h, w] of a tile (default [2048, 2048]).
    overlap_frac : float, nominal overlap of neighbouring tiles (default 0.1).
    stage_error_um : float, sigma of the stage error per tile and axis (default 1.5).
    after_offset_um : [x, y] common shift of the after set (default [3, -2]).
    indenter_offset_um : [dx, dy], indenter_axes : [sx, sy]: export X = sx *
        (stage_x - dx), Y = sy * (stage_y - dy) (defaults [0, 0], [1, 1]).
    load_mN : float, peak load (default 2.0).
    noise_rel : float, relative measurement noise of E and H (default 0.05).
    electrons_per_px : float, primary electrons per pixel (shot noise; default 5000).
    brightness_drift : float, sigma of per-tile brightness, fraction of full scale (default 0.01).
    contrast_drift : float, sigma of per-tile relative contrast (default 0.02).
    seed : int, random seed (default 0).
All outputs are written into temporary siblings and renamed only when every
one of them is complete.
"""
import contextlib
import logging
from pathlib import Path

from microprop.workflow import setup_script

log = logging.getLogger("microprop.virtual_specimen")

#: Generator parameters of ``snakemake.params`` and their defaults (also for a null value).
DEFAULTS = {
    "n_batches": [2, 1], "batch_shape": [20, 20], "spacing_um": 10.0, "margin_um": 15.0,
    "batch_origin_error_um": 1.0, "grid_drift_um": 0.1, "tile_shape_px": [2048, 2048],
    "overlap_frac": 0.1, "stage_error_um": 1.5, "after_offset_um": [3.0, -2.0],
    "indenter_offset_um": [0.0, 0.0], "indenter_axes": [1, 1], "load_mN": 2.0,
    "noise_rel": 0.05, "electrons_per_px": 5000.0, "brightness_drift": 0.01,
    "contrast_drift": 0.02, "seed": 0,
}
#: Parameters passed to the generator as float (the others as given, the seed as int).
FLOATS = ("spacing_um", "margin_um", "batch_origin_error_um", "grid_drift_um", "overlap_frac",
          "stage_error_um", "load_mN", "noise_rel", "electrons_per_px", "brightness_drift",
          "contrast_drift")


def main(snakemake):
    """Generate one virtual area; write its tile sets, exports and truth atomically."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    import numpy as np
    from microprop import imaging
    from microprop import indentation as mp_indentation
    from microprop import io as mio
    from microprop import phases as mp_phases
    from microprop import virtual as mp_virtual
    from microprop.errors import InputError
    from microprop.progress import progress

    P = snakemake.params
    # a parameter absent or null takes its default
    par = {k: (d if P.get(k, d) is None else P.get(k, d)) for k, d in
           {**DEFAULTS, "fractions": mp_phases.DEFAULT_FRACTIONS, "batches": None}.items()}
    eta_table = mio.read_table(snakemake.input.phase_eta, required=("phase", "eta"),
                               what="phase eta table")
    phase_eta = dict(zip(eta_table["phase"].astype(str), eta_table["eta"].astype(float)))
    missing = [p for p in mp_phases.PHASES if p not in phase_eta]
    if missing:
        raise InputError(f"{snakemake.input.phase_eta}: no row for phase(s) {missing}")

    batch_names = list(par.pop("batches") or [])
    out = snakemake.output
    export_paths = list(out.get("exports", None) or [])
    if export_paths and len(export_paths) != len(batch_names):
        raise InputError(f"virtual_specimen: {len(export_paths)} export outputs for "
                         f"{len(batch_names)} batches {batch_names}")

    kwargs = {k: float(v) if k in FLOATS else v for k, v in par.items()}
    kwargs["seed"] = int(kwargs["seed"])
    area = mp_virtual.generate_area(phase_eta, pixel_size_nm=float(P.pixel_size_nm),
                                    batches=batch_names or None, **kwargs)
    names = area["summary"]["parameters"]["batches"]

    with contextlib.ExitStack() as stack:
        # every output goes to a temporary sibling; all are renamed when the block ends without
        # error
        tmp_before = stack.enter_context(mio.atomic_path(out.before))
        tmp_after = stack.enter_context(mio.atomic_path(out.after))
        tmp_truth = Path(stack.enter_context(mio.atomic_path(out.truth_dir)))
        if export_paths:
            tmp_exports = [stack.enter_context(mio.atomic_path(p)) for p in export_paths]
        else:
            tmp_dir = Path(stack.enter_context(mio.atomic_path(out.indentation_dir)))
            tmp_dir.mkdir(parents=True)
            tmp_exports = [tmp_dir / f"{b}.csv" for b in names]

        for folder, tileset in ((Path(tmp_before), area["before"]),
                                (Path(tmp_after), area["after"])):
            imaging.write_tile_set(folder, progress(tileset["tiles"], desc=f"tiles {folder.name}",
                                                    unit="tile"), tileset["layout"])
        for b, path in zip(names, tmp_exports):
            mp_indentation.write_export(area["exports"][b], path)

        tmp_truth.mkdir(parents=True)
        np.save(tmp_truth / "phases.npy", area["labels"])
        area["before"]["truth"].to_csv(tmp_truth / "tiles_before.csv", index=False)
        area["after"]["truth"].to_csv(tmp_truth / "tiles_after.csv", index=False)
        area["indents"].to_csv(tmp_truth / "indents.csv", index=False)
        mp_phases.PHASE_PROPERTIES.to_csv(tmp_truth / "phase_properties.csv")
        mio.write_json(area["summary"], tmp_truth / "truth.json")

    log.info("virtual area written: %d + %d tiles, %d batches, %d indents; area fractions %s",
             len(area["before"]["tiles"]), len(area["after"]["tiles"]), len(names),
             len(area["indents"]),
             {k: round(v, 4) for k, v in area["summary"]["area_fractions"].items()})


if __name__ == "__main__":
    main(setup_script(globals()))
