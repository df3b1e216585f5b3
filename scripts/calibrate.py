"""Rule calibrate: BSE grey mosaic -> eta or porosity maps MulF and MicF.

snakemake.input.mosaic : str
    Before mosaic, 2D uint8/uint16 zarr array (attrs ``pixel_size_nm``, ``origin_um``),
    or a single image file (TIFF/PNG), with ``params.pixel_size_nm``.
snakemake.params.pixel_size_nm : float, optional
    Pixel size of an image-file input, nm.
snakemake.params.region_px : [x0, y0, x1, y1] or None
    Of an image-file input, only this part is calibrated (a class that is a
    region of a larger image; px, x right, y down).
snakemake.input.phase_eta : str
    ``results/backscatter/phase_eta.csv`` (columns ``phase``, ``eta``, ...).
snakemake.input.eta_table : str
    ``results/backscatter/eta_table.csv`` (columns ``n``, ``eta``, ``eta_err``).
snakemake.params.mode : str
    ``"eta"`` (epoxy-impregnated) or ``"porosity"`` (Field's-metal intrusion).
snakemake.params.reference_phases : list of 2 str
    Phase names in phase_eta.csv, or ``"n=<porosity>"`` read from the eta
    table (``n=0`` solid C-S-H, ``n=1`` Field's metal).
snakemake.params.reference_greys : list of 2 numbers, "auto" or "modes"
    Grey levels of the two phases, in the same order. ``auto`` (``eta``
    mode): fit the linear detector to the whole histogram with one component
    per phase of phase_eta.csv, means tied to their Monte Carlo eta
    (:func:`microprop.physics.fit_detector_line`), and read the two
    references off that line. ``modes`` (and ``auto`` in ``porosity`` mode):
    the darkest and brightest significant histogram modes (Gaussian
    mixture), the darker going to the phase of lower eta.
snakemake.params.mode_method : {"gmm", "peaks"}, optional
    How the histogram modes are placed (:func:`microprop.physics.find_reference_greys`):
    ``gmm`` (default) a mixture started at the peaks; ``peaks`` the peaks of
    the smoothed histogram, for a narrow mode (metal) beside a broad skewed
    one (the hydration products of a metal-intruded paste), which a mixture
    would absorb.
snakemake.params.clinker_grey_window : null or [lo, hi]
    Grey window of clinker, set to porosity 0 in ``porosity`` mode.
snakemake.params.micf_sigma_px : float
    Standard deviation of the MicF Gaussian blur, pixels.
snakemake.params.chunk : int
    Processing block edge, pixels.
snakemake.params.hist_exclude_fill : bool, optional (default true)
    Leave the mosaic's fill value (gaps between tiles) out of the histogram.
snakemake.output.calibrated : str
    Zarr group with float32 ``MulF``, ``MicF``; attrs ``quantity``, ``units``,
    ``grey_refs``, ``eta_refs``, ``sigma``, ``pixel_size_nm``, ``origin_um``, ...
snakemake.output.hist : str
    PNG: grey histogram with the modes and the two reference greys marked.
"""
import logging
from pathlib import Path

from microprop.workflow import setup_script

log = logging.getLogger("microprop.scripts.calibrate")


def main(snakemake):
    """Calibrate the mosaic of ``snakemake.input``; write the maps and the histogram figure."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    import matplotlib.pyplot as plt
    from microprop import io as mio
    from microprop import physics
    from microprop.errors import InputError

    inp, par, out = snakemake.input, snakemake.params, snakemake.output
    extra = {}
    if Path(str(inp.mosaic)).is_dir():
        mosaic = mio.open_image(inp.mosaic)
    else:
        # a single image file (the porosity study's classes): read whole, pixel size from the params
        from microprop.imaging import load_tile

        mosaic = load_tile(str(inp.mosaic))
        if par.get("pixel_size_nm") is None:
            raise InputError(f"{inp.mosaic}: an image file needs params.pixel_size_nm")
        extra = {"pixel_size_nm": float(par.pixel_size_nm), "origin_um": [0.0, 0.0]}
        region = par.get("region_px")
        if region:
            x0, y0, x1, y1 = (int(v) for v in region)
            h, w = mosaic.shape[:2]
            if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
                raise InputError(f"{inp.mosaic}: region_px {list(region)} is not inside the "
                                 f"{w} x {h} px image (expected 0 <= x0 < x1 <= {w}, 0 <= y0 < y1 <= {h})")
            mosaic = mosaic[y0:y1, x0:x1]
            um = float(par.pixel_size_nm) / 1000
            extra.update(region_px=[x0, y0, x1, y1], origin_um=[x0 * um, y0 * um])
    phase_eta = mio.read_table(inp.phase_eta, required=("phase", "eta"), what="phase eta table")
    eta_table = mio.read_table(inp.eta_table, required=("n", "eta"), what="eta table")
    phases = list(par.reference_phases)
    if len(phases) != 2:
        raise InputError(f"calibration.reference_phases must name two phases, got {phases}")
    eta_refs = physics.reference_eta(phases, phase_eta, eta_table, source=str(inp.phase_eta))

    exclude = None
    if par.get("hist_exclude_fill", True):
        fill = getattr(mosaic, "fill_value", None)
        exclude = None if fill is None else [float(fill)]
    modes = physics.find_reference_greys(mosaic, exclude_values=exclude,
                                         method=str(par.get("mode_method", "gmm")))

    greys = par.reference_greys
    line = None
    if greys == "auto" and par.mode == "eta":
        line = physics.fit_detector_line(mosaic, dict(zip(phase_eta["phase"], phase_eta["eta"])),
                                         exclude_values=exclude)
        greys = [line["offset"] + line["gain"] * e for e in eta_refs]
        source = "auto: detector line fitted to all phases"
        log.info("detector line: grey = %.2f + %.1f * eta; phase greys %s, weights %s",
                 line["offset"], line["gain"], [round(g, 1) for g in line["grey"]],
                 [round(w, 3) for w in line["weight"]])
    elif isinstance(greys, str):
        if greys not in ("auto", "modes"):
            raise InputError("calibration.reference_greys must be 'auto', 'modes' or two numbers, "
                             f"got {greys!r}")
        dark, bright = physics.darkest_mode(modes), physics.brightest_mode(modes)
        if dark == bright:
            raise InputError(f"{inp.mosaic}: one significant grey mode only ({dark:.1f}); "
                             "give calibration.reference_greys explicitly")
        greys = [dark, bright] if eta_refs[0] <= eta_refs[1] else [bright, dark]
        source = "histogram modes"
    else:
        greys = [float(g) for g in greys]
        source = "config"
    log.info("reference greys %s (%s) for phases %s with eta %s", greys, source, phases, eta_refs)

    physics.calibrate_mosaic(
        mosaic, out.calibrated, par.mode, greys, eta_refs, eta_table=eta_table,
        clinker_grey_window=par.clinker_grey_window, micf_sigma_px=float(par.micf_sigma_px),
        chunk=int(par.chunk), threads=int(snakemake.threads),
        extra_attrs={"reference_phases": phases, "reference_greys_source": source,
                     "grey_modes": modes["grey"].tolist(),
                     "grey_mode_weights": modes["weight"].tolist(),
                     "detector_line": line,
                     "mosaic": str(inp.mosaic), **extra})

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.fill_between(modes["bin_centers"], modes["hist"], step="mid", color="0.6", lw=0)
    for g in modes["grey"]:
        ax.axvline(g, color="0.3", ls=":", lw=1)
    if line is not None:
        for name, g in zip(line["phases"], line["grey"]):
            # inside the axes, along the top, beside its line: clear of the tick labels
            ax.annotate(name, (g, 1.0), xycoords=("data", "axes fraction"), xytext=(2, -4),
                        textcoords="offset points", rotation=90, ha="left", va="top", fontsize=7,
                        color="tab:green")
            ax.axvline(g, color="tab:green", ls="--", lw=0.8)
    for name, g, e, c in zip(phases, greys, eta_refs, ("tab:blue", "tab:red")):
        ax.axvline(g, color=c, lw=2, label=f"{name}: grey {g:.1f}, eta {e:.4f}")
    ax.set_xlabel("grey level (detector units)")
    ax.set_ylabel(f"pixels (subsample of {modes['n_samples']})")
    ax.set_title(f"grey-level calibration ({source})\ndotted: histogram modes"
                 + ("; dashed green: fitted phase greys" if line is not None else ""), fontsize=9)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.25)  # room for the phase names at the top
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    with mio.atomic_path(out.hist) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main(setup_script(globals()))
