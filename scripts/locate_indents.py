"""Locate the indents of one batch in the before-mosaic.

Snakemake interface
-------------------
snakemake.input.indents : str
    Validated export of the batch (CSV, standard columns ``batch, indent,
    x_um, y_um, depth_nm, ..., H_GPa, E_GPa``; ``x_um, y_um`` are nominal
    indenter coordinates).
snakemake.input.before : str
    Before-mosaic zarr store (attrs ``pixel_size_nm``, ``origin_um``): the
    frame of the output positions and the bounds for ``inside``.
snakemake.input.after : str, optional
    After-mosaic zarr store; required for mode ``marks``.
snakemake.input.shift : str, optional
    JSON from ``register_after`` (``dx_px, dy_px``); required for mode ``marks``.
snakemake.params.mode : str
    ``"marks"`` (detect the marks in the after-mosaic, fit the grid model)
    or ``"nominal"`` (single image with virtual indentation: nominal mapping).
snakemake.params.pixel_size_nm : float or None
    Expected pixel size (nm); checked against the mosaic's attribute (None:
    take the attribute).
snakemake.params.indenter_offset_um : [float, float]
    ``[dx, dy]``: SEM stage = (sx * X + dx, sy * Y + dy), in the stage frame
    of the before-mosaic (the after-mosaic is tied to it by input.shift).
snakemake.params.indenter_axes : [int, int]
    ``[sx, sy]``, each +1 or -1.
snakemake.params.search_radius_um : float
    Largest batch origin error searched (mode ``marks``).
snakemake.params.spacing_um : float or None
    Nominal indent spacing; None: estimated from the export.
snakemake.params.batch : str
    Batch name (messages, ``batch`` column).
snakemake.params.threshold : float, optional
    Mark detection threshold (masked NCC, default 0.6).
snakemake.output.located : str
    CSV ``batch, indent, row, col, x_px, y_px, x_um, y_um, detected,
    residual_px, inside, E_GPa, H_GPa`` (before-mosaic frame).
snakemake.output.model : str
    JSON grid model (``x0, y0, column_x_px, row_y_px`` in before-mosaic px,
    ``rms_residual_px/_um``, ``translation_um``, counts); for mode
    ``nominal`` only the mapping and counts.
"""
from microprop.workflow import setup_script


def main(snakemake):
    """Locate the indents of one batch; write the located table and the grid model."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    from microprop import io as mio
    from microprop.errors import InputError
    from microprop.imaging import locate_batch, locate_nominal

    inp, par = snakemake.input, snakemake.params
    mode = str(par.mode)
    batch = str(par.get("batch", None) or "?")
    before_path = inp.before
    before = mio.open_image(before_path)
    for key in ("pixel_size_nm", "origin_um"):
        mio.image_attr(before, key, before_path)
    ps = float(before.attrs["pixel_size_nm"])
    if par.get("pixel_size_nm", None) is not None and abs(float(par.pixel_size_nm) - ps) > 1e-6 * ps:
        raise InputError(f"{before_path}: pixel size {ps} nm differs from the configured "
                         f"{par.pixel_size_nm} nm (batch {batch})")
    indents = mio.read_table(inp.indents, required=["indent", "x_um", "y_um"],
                             what=f"indents of batch {batch}")
    spacing = par.get("spacing_um", None)
    spacing = None if spacing in (None, "null", "") else float(spacing)

    if mode == "nominal":
        located = locate_nominal(indents, ps, before.attrs["origin_um"], par.indenter_offset_um,
                                 par.indenter_axes, spacing_um=spacing, shape=before.shape,
                                 batch=batch)
        model = {"batch": batch, "mode": "nominal", "frame": "before-mosaic px",
                 "pixel_size_nm": ps, "n_indents": len(located), "n_detected": 0,
                 "n_inside": int(located["inside"].sum())}
    elif mode == "marks":
        after_path, shift_path = inp.get("after", None), inp.get("shift", None)
        if not after_path or not shift_path:
            raise InputError(f"batch {batch}: mode 'marks' needs input.after and input.shift")
        after = mio.open_image(after_path)
        if abs(float(after.attrs.get("pixel_size_nm", ps)) - ps) > 1e-6 * ps:
            raise InputError(f"{after_path}: pixel size differs from the before-mosaic's "
                             f"({before_path})")
        shift = mio.read_json(shift_path)
        if "dx_px" not in shift or "dy_px" not in shift:
            raise InputError(f"{shift_path}: expected keys dx_px, dy_px")
        kwargs = {} if par.get("threshold", None) is None else {"threshold": float(par.threshold)}
        try:
            located, model = locate_batch(
                after, indents, ps, before.attrs["origin_um"], par.indenter_offset_um,
                par.indenter_axes, shift, search_radius_um=float(par.search_radius_um),
                spacing_um=spacing, before_shape=before.shape, batch=batch, **kwargs)
        except InputError as exc:
            raise InputError(f"{inp.indents}: {exc}") from exc
        model["mode"] = "marks"
    else:
        raise InputError(f"batch {batch}: params.mode must be 'marks' or 'nominal', got {mode!r}")

    mio.write_table(located, snakemake.output.located)
    mio.write_json(model, snakemake.output.model)


if __name__ == "__main__":
    main(setup_script(globals()))
