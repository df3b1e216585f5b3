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

snakemake = setup_script(globals())

from microprop import io as mio  # noqa: E402
from microprop.errors import InputError  # noqa: E402
from microprop.imaging import register_mosaics  # noqa: E402


def _attr(arr, key, path):
    if key not in arr.attrs:
        raise InputError(f"{path}: mosaic lacks attribute {key!r}")
    return arr.attrs[key]


before_path, after_path = snakemake.input.before, snakemake.input.after
before, after = mio.open_image(before_path), mio.open_image(after_path)
ps_b = float(_attr(before, "pixel_size_nm", before_path))
ps_a = float(_attr(after, "pixel_size_nm", after_path))
if abs(ps_a - ps_b) > 1e-6 * ps_b:
    raise InputError(f"{after_path}: pixel size {ps_a} nm differs from the before-mosaic's {ps_b} nm "
                     f"({before_path})")
result = register_mosaics(
    before, after, _attr(before, "origin_um", before_path), _attr(after, "origin_um", after_path), ps_b,
    max_shift_um=float(snakemake.params.max_shift_um),
    downsample=int(snakemake.params.get("downsample", 8) or 8))
result.update({"pixel_size_nm": ps_b, "before": str(before_path), "after": str(after_path)})
mio.write_json(result, snakemake.output.shift)
