"""Rule crop_batch: crops of one indentation batch from a calibrated map -> HDF5 shard.

snakemake.input.calibrated : str
    ``calibrated.zarr`` group (arrays ``MulF``, ``MicF`` with attrs
    ``pixel_size_nm``, ``quantity``, calibration parameters).
snakemake.input.located : str
    ``located/{batch}.csv`` (columns ``indent``, ``x_px``, ``y_px``, ``E_GPa``,
    ``H_GPa``; ``x_um``, ``y_um`` optional).
snakemake.params.scale : str
    ``"MulF"`` or ``"MicF"``.
snakemake.params.crop_size_um : float
    Crop edge, um; ``S = round(crop_size_um * 1000 / pixel_size_nm)`` px.
snakemake.params.specimen, snakemake.params.area, snakemake.params.batch : str
    Written to the shard's ``/meta``.
snakemake.output.shard : str
    HDF5 shard (layout in ``microprop/dataset.py``).
snakemake.output.skipped : str
    CSV of the located rows not cropped, with a ``reason`` column.
"""
from pathlib import Path

from microprop.workflow import setup_script


def main(snakemake):
    """Crop the located indents of one batch from the calibrated map into a shard."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    from microprop import data as mp_data
    from microprop import io as mio
    from microprop.errors import InputError

    inp, par, out = snakemake.input, snakemake.params, snakemake.output
    scale = str(par.scale)
    if scale not in ("MulF", "MicF"):
        raise InputError(f"dataset.scale must be 'MulF' or 'MicF', got {scale!r}")
    # group attrs, overridden by the array's own (which carry the calibration too)
    image, cal_attrs = mio.open_calibrated(inp.calibrated, scale)
    pixel_size_nm = cal_attrs["pixel_size_nm"]
    located = mio.read_table(inp.located, required=("indent", "x_px", "y_px", "E_GPa", "H_GPa"),
                             what="located indents")
    size_px = mp_data.crop_size_px(float(par.crop_size_um), float(pixel_size_nm))
    crops, kept, skipped = mp_data.crop_indents(image, located, size_px,
                                                pixel_size_nm=pixel_size_nm,
                                                source=str(inp.located))
    table = kept.assign(specimen=str(par.specimen), area=str(par.area), batch=str(par.batch))
    meta = Path(inp.calibrated) / "zarr.json"
    sources = {str(inp.located): mio.sha256_file(inp.located)}
    if meta.exists():  # group metadata: pins the calibration parameters, not the pixel data
        sources[str(meta)] = mio.sha256_file(meta)
    attrs = {
        "pixel_size_nm": float(pixel_size_nm), "crop_size_um": float(par.crop_size_um),
        "crop_size_px": int(size_px), "quantity": cal_attrs.get("quantity", "unknown"),
        "scale": scale, "sources": sources,
        "calibration": {f"{par.specimen}/{par.area}": cal_attrs},
    }
    mp_data.write_shard(out.shard, crops, table, attrs)
    mio.write_table(skipped, out.skipped)


if __name__ == "__main__":
    main(setup_script(globals()))
