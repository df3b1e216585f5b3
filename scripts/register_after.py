"""Register the after-indentation mosaic onto the before-indentation mosaic.

Snakemake interface
-------------------
snakemake.input.before : str
    Before-mosaic zarr store (attrs ``pixel_size_nm``, ``origin_um``).
snakemake.input.after : str
    After-mosaic zarr store (same attrs, same pixel size).
snakemake.params.max_shift_um : float
    Largest stage error (per axis, um) between the two frames, searched
    around the shift given by the stage origins.
snakemake.params.downsample : int, optional
    Block-mean factor of the coarse step (default 8).
snakemake.output.shift : str
    JSON ``{"dx_px", "dy_px", "score", ...}``: after pixel + shift = before pixel
    (see ``microprop.imaging.register_mosaics``).
"""
from microprop.workflow import setup_script


def main(snakemake):
    """Register the after-mosaic onto the before-mosaic; write the shift."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    from microprop import io as mio
    from microprop.errors import InputError
    from microprop.imaging import register_mosaics

    before_path, after_path = snakemake.input.before, snakemake.input.after
    before, after = mio.open_image(before_path), mio.open_image(after_path)
    ps_b = float(mio.image_attr(before, "pixel_size_nm", before_path))
    ps_a = float(mio.image_attr(after, "pixel_size_nm", after_path))
    if abs(ps_a - ps_b) > 1e-6 * ps_b:
        raise InputError(f"{after_path}: pixel size {ps_a} nm differs from the before-mosaic's "
                         f"{ps_b} nm ({before_path})")
    result = register_mosaics(
        before, after, mio.image_attr(before, "origin_um", before_path),
        mio.image_attr(after, "origin_um", after_path), ps_b,
        max_shift_um=float(snakemake.params.max_shift_um),
        downsample=int(snakemake.params.get("downsample", 8) or 8))
    result.update({"pixel_size_nm": ps_b, "before": str(before_path), "after": str(after_path)})
    mio.write_json(result, snakemake.output.shift)


if __name__ == "__main__":
    main(setup_script(globals()))
