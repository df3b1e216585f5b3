"""Rule validate_virtual: errors of stitching, micro-positioning and GMM
deconvolution of a virtual specimen against the generator's truth.

snakemake.input.truth_dir : resources/truth/{specimen}/{area} (tiles_before.csv,
    tiles_after.csv, indents.csv, truth.json)
snakemake.input.stitch_before, stitch_after : per-tile tables of stitching
snakemake.input.located : list of located/{batch}.csv of the area
snakemake.input.calibrated : calibrated.zarr (MulF, eta) of the area
snakemake.input.gmm_E : pooled and per-area GMM table of E (the E marginal of
    the joint (E, H) mixture by default)
snakemake.params.pixel_size_nm : float
snakemake.params.tile_median_px, tile_max_px : float, optional
    Stitching limits (default 0.1 and 0.3 px, the config's ``virtual.validation``)
snakemake.output.figure : PNG, optional: the same as a table with PASS/FAIL
snakemake.output.report : JSON with the measured errors and the acceptance
    limits (tile median <= 0.1 px, max <= 0.3 px by default; indent RMS <= 0.25 um;
    GMM fractions within 0.05 and means within 10 %)
"""
import logging
from pathlib import Path

from microprop.workflow import setup_script

log = logging.getLogger("validate_virtual")


def main(snakemake):
    """Measure the errors of one virtual area against its truth; write the report."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    import numpy as np
    import pandas as pd
    from microprop import io
    from microprop import virtual as mp_virtual

    truth = Path(snakemake.input.truth_dir)
    px = float(snakemake.params.pixel_size_nm)
    par = snakemake.params
    report = {"stitching": {}, "limits": {"tile_median_px": float(par.get("tile_median_px", 0.1)),
                                          "tile_max_px": float(par.get("tile_max_px", 0.3)),
                                          "indent_rms_um": 0.25, "gmm_fraction_abs": 0.05,
                                          "gmm_mean_rel": 0.10}}
    placed = {}
    for stage in ("before", "after"):
        placed[stage] = io.read_table(getattr(snakemake.input, f"stitch_{stage}"),
                                      ["tile", "x_px", "y_px"])
        t = io.read_table(truth / f"tiles_{stage}.csv", ["tile", "x_px", "y_px"])
        report["stitching"][stage] = mp_virtual.stitching_errors(t, placed[stage])

    offset = mp_virtual.mosaic_offset_px(io.read_table(truth / "tiles_before.csv"),
                                         placed["before"])
    labels = np.load(truth / "phases.npy", mmap_mode="r")
    report["calibration"] = mp_virtual.calibration_errors(
        labels, io.open_image(snakemake.input.calibrated, "MulF"), offset,
        io.read_json(truth / "truth.json")["phase_eta"])
    located = pd.concat([io.read_table(p) for p in snakemake.input.located], ignore_index=True)
    indents = io.read_table(truth / "indents.csv", ["batch", "indent", "x_px", "y_px"])
    report["location"] = mp_virtual.location_errors(indents, located, offset, px)

    gmm = io.read_table(snakemake.input.gmm_E)
    pooled = gmm[gmm["area"] == "pooled"] if "area" in gmm.columns else gmm
    truth_phases = mp_virtual.generated_phases(indents,
                                               io.read_table(truth / "phase_properties.csv"))
    report["gmm_E"] = mp_virtual.gmm_errors(truth_phases, pooled)
    report["gmm_E"]["truth_definition"] = (
        "fraction: mean volume fraction of the phase in the indents' interaction zones, "
        "renormalised over the solid phases (pores are not a GMM component); "
        "mean: mean E of the phase's generating distribution")

    lim = report["limits"]
    report["pass"] = {
        "stitching": all(s["median_px"] <= lim["tile_median_px"]
                         and s["max_px"] <= lim["tile_max_px"]
                         for s in report["stitching"].values()),
        "location": report["location"]["rms_um"] <= lim["indent_rms_um"],
        "gmm_E": (report["gmm_E"]["max_fraction_abs_error"] <= lim["gmm_fraction_abs"]
                  and report["gmm_E"]["max_mean_rel_error"] <= lim["gmm_mean_rel"]),
    }
    for k, ok in report["pass"].items():
        log.info("validation %s: %s", k, "PASS" if ok else "FAIL")
    io.write_json(report, snakemake.output.report)
    if snakemake.output.get("figure"):
        from microprop import plots

        area = snakemake.wildcards.get("area", "")
        plots.save_png(plots.validation_table(
            report, title=f"Validation of {snakemake.wildcards.get('specimen', '')} {area} "
                          "against the virtual specimen's truth"), snakemake.output.figure)


if __name__ == "__main__":
    main(setup_script(globals()))
