"""Rule figures_overview: BSE overview with located indents and the E map of one area.

Inputs
------
snakemake.input.mosaic : str
    ``results/{specimen}/{area}/mosaic_before.zarr`` (2D uint8/uint16 zarr,
    attr ``pixel_size_nm``).
snakemake.input.located : list of str
    ``results/{specimen}/{area}/located/{batch}.csv`` of the area's batches;
    columns ``x_um, y_um, E_GPa`` (and optional ``detected``, ``H_GPa``).

Params
------
snakemake.params.max_width_px : int, optional
    Width limit of the downsampled overview (default 2000 px); the mosaic is
    block-mean downsampled by the smallest integer factor that meets it.
snakemake.params.quantity : str, optional
    Column that colours the markers and the map (default ``E_GPa``).
snakemake.params.spacing_um : float or None, optional
    The configured indent spacing (um), the width of the map's squares
    (None: estimated from the indents).

Outputs
-------
snakemake.output.overview : PNG
    BSE overview with the indents coloured by the property.
snakemake.output.modulus_map : PNG
    The property on the indentation grid.
"""
import logging
import math

from microprop.workflow import setup_script

log = logging.getLogger("microprop.figures_overview")


def main(snakemake):
    """Draw the BSE overview with the indents and the property map of one area."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    import pandas as pd
    from microprop import io, plots
    from microprop.errors import InputError

    p = snakemake.params
    max_width = int(p.get("max_width_px", 2000))
    quantity = str(p.get("quantity", "E_GPa"))
    area = snakemake.wildcards.get("area", "")

    mosaic = io.open_image(snakemake.input.mosaic)
    if "pixel_size_nm" not in mosaic.attrs:
        raise InputError(f"{snakemake.input.mosaic}: mosaic lacks the attr 'pixel_size_nm'")
    pixel_size_nm = float(mosaic.attrs["pixel_size_nm"])
    factor = max(1, math.ceil(mosaic.shape[1] / max_width))
    small = io.downsample(mosaic, factor)
    log.info("mosaic %s px downsampled by %d to %s px", mosaic.shape, factor, small.shape)

    files = snakemake.input.located
    files = [files] if isinstance(files, str) else list(files)
    located = pd.concat([io.read_table(f, required=("x_um", "y_um", quantity),
                                       what="located indents")
                         for f in files], ignore_index=True)
    suffix = f" ({area})" if area else ""
    fig_o = plots.mosaic_overview(small, pixel_size_nm * factor, located, quantity=quantity,
                                  title=f"BSE overview with {len(located)} indents{suffix}",
                                  downsample_factor=factor)
    spacing = p.get("spacing_um")
    fig_m = plots.modulus_map(located, quantity=quantity,
                              spacing_um=None if spacing is None else float(spacing))
    plots.save_png(fig_o, snakemake.output.overview)
    plots.save_png(fig_m, snakemake.output.modulus_map)


if __name__ == "__main__":
    main(setup_script(globals()))
