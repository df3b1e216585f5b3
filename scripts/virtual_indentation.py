"""Rule script: virtual grid indentation of one real micrograph (SIMULATED targets).

The E and H written here are not measurements: the calibrated map of the
image (backscatter coefficient eta) is segmented into pore, LD-C-S-H,
HD-C-S-H, CH and ACC by the phases' Monte Carlo eta
(:func:`microprop.imaging.segment_eta`), so that the phases do not depend on
the detector's gain and offset; a regular grid is laid over it, and the
forward model of ``microprop.physics`` draws literature phase properties and
homogenises them over each indent's interaction zone.

snakemake.input.image : path
    Grey BSE micrograph, PNG or TIFF (recorded for provenance).
snakemake.input.calibrated : path
    The area's ``calibrated.zarr`` (``MulF`` in ``eta`` mode), the same
    window of the image as the area's mosaic.
snakemake.input.phase_eta : path
    ``results/backscatter/phase_eta.csv`` (``phase, eta``).
snakemake.params.pixel_size_nm : float
    Pixel size of the image (nm).
snakemake.params.spacing_um : float
    Grid spacing (um).
snakemake.params.crop_size_um : float
    Crop size of the dataset (um); indents keep half of it from the field edge.
snakemake.params.load_mN : float
    Peak load (mN).
snakemake.params.noise_rel : float
    Relative measurement noise of E and H.
snakemake.params.seed : int
    Random seed.
snakemake.params.batch : str
    Batch name (e.g. "v01").
snakemake.params.region_px : [row0, col0, height, width] or None
    The window of the image that is this area (px); its top-left pixel is
    stage (0, 0), as in the area's 1 x 1 layout (rule image_layout).
snakemake.params.indenter_offset_um : [float, float]
    ``[dx, dy]``: stage = indenter_axes * indenter + offset.
snakemake.params.indenter_axes : [int, int]
    ``[sx, sy]``, each +1 or -1.
snakemake.output.export : path (CSV)
    KLA-like export ``INDENT, X, Y, DEPTH, LOAD, STIFFNESS, HARDNESS,
    MODULUS`` (um, um, nm, mN, N/m, GPa, GPa); X, Y in indenter coordinates
    ``X = sx * (stage_x - dx)`` with stage = pixel * pixel_size (pixel (0, 0)
    at stage (0, 0)).
snakemake.output.labels : path (.npy)
    uint8 phase label map (0 pore .. 4 ACC) used for the simulation, by eta
    bands halfway between the phases' Monte Carlo eta.
snakemake.output.note : path (JSON)
    States that the targets are SIMULATED, with phase fractions, parameters
    and the phase properties used.
snakemake.output.indents : path (CSV), optional
    The full simulated table (positions in px and um, true and noisy E/H,
    zone fractions ``f_<phase>``, dominant ``phase``).
"""
import logging

from microprop.workflow import setup_script

log = logging.getLogger("microprop.virtual_indentation")


def main(snakemake):
    """Indent one micrograph virtually; write the export, labels, note and indents."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    import numpy as np
    from microprop.errors import InputError
    from microprop.imaging import segment_eta
    from microprop.indentation import write_export
    from microprop.io import open_image, read_table, sha256_file, write_json, write_npy, write_table
    from microprop.phases import PHASE_PROPERTIES, PHASES
    from microprop.virtual import virtual_indentation

    p = snakemake.params
    image_path = str(snakemake.input.image)
    region_px = p.get("region_px")
    # the calibrated map of the area's mosaic: the same window of the image as rule image_layout
    cal_path = str(snakemake.input.calibrated)
    mulf = open_image(cal_path, "MulF")
    if mulf.attrs.get("quantity", "eta") != "eta":
        raise InputError(f"{cal_path}: virtual indentation segments a map of the backscatter "
                         f"coefficient, but this one holds {mulf.attrs.get('quantity')!r}; set "
                         "calibration.mode: eta for this specimen")
    eta_map = np.asarray(mulf[:, :], dtype=np.float32)
    table = read_table(snakemake.input.phase_eta, ("phase", "eta"), what="phase eta table")
    phase_eta = dict(zip(table["phase"].astype(str), table["eta"].astype(float)))
    labels, seg = segment_eta(eta_map, phase_eta)
    pixel_size_nm = float(p.pixel_size_nm)
    spacing_um = float(p.spacing_um)
    margin_um = 0.5 * float(p.crop_size_um)
    dx, dy = (float(v) for v in p.indenter_offset_um)
    sx, sy = (int(v) for v in p.indenter_axes)
    if sx not in (1, -1) or sy not in (1, -1):
        raise InputError(f"indenter_axes {list(p.indenter_axes)} for {image_path}: "
                         "expected +1 or -1 each")

    rng = np.random.default_rng(int(p.seed))
    indents, labels = virtual_indentation(eta_map, pixel_size_nm, spacing_um, rng,
                                          load_mN=float(p.load_mN), margin_um=margin_um,
                                          noise_rel=float(p.noise_rel), labels=labels)
    indents.insert(0, "batch", str(p.batch))

    # specimen frame (stage, um) -> indenter coordinates: stage = s * X + d  =>  X = s * (stage - d)
    export = indents.copy()
    export["x_um"] = sx * (indents["x_um"] - dx)
    export["y_um"] = sy * (indents["y_um"] - dy)

    area = np.bincount(labels.ravel(), minlength=len(PHASES)) / labels.size
    zone_cols = [f"f_{ph}" for ph in PHASES]
    note = {
        "targets": "SIMULATED",
        "statement": ("E_GPa and H_GPa of this batch are SIMULATED by virtual indentation of a "
                      "segmentation of a real micrograph's calibrated eta map with literature "
                      "phase properties; they are not measurements."),
        "segmentation": seg.to_dict(orient="records"),
        "image": image_path, "image_sha256": sha256_file(image_path),
        "region_px": None if region_px is None else [int(v) for v in region_px],
        "batch": str(p.batch), "n_indents": int(len(indents)),
        "grid": {"n_rows": int(indents["row"].max() + 1), "n_cols": int(indents["col"].max() + 1),
                 "spacing_um": spacing_um, "margin_um": margin_um},
        "parameters": {"pixel_size_nm": pixel_size_nm, "load_mN": float(p.load_mN),
                       "noise_rel": float(p.noise_rel), "seed": int(p.seed),
                       "indenter_offset_um": [dx, dy], "indenter_axes": [sx, sy]},
        "phase_area_fractions": dict(zip(PHASES, area)),
        "mean_zone_fractions": dict(zip(PHASES, indents[zone_cols].mean().to_numpy())),
        "dominant_phase_counts": {ph: int((indents["phase"] == ph).sum()) for ph in PHASES},
        "phase_properties": PHASE_PROPERTIES.reset_index().to_dict(orient="records"),
    }

    write_export(export, snakemake.output.export)
    write_npy(labels.astype(np.uint8), snakemake.output.labels)
    if snakemake.output.get("indents"):
        write_table(indents, snakemake.output.indents)
    write_json(note, snakemake.output.note)
    log.info("virtual indentation of %s: %d SIMULATED indents written", image_path, len(indents))


if __name__ == "__main__":
    main(setup_script(globals()))
