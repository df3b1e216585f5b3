"""Rule script: stitch a folder of overlapping BSE tiles into a zarr mosaic.

Expects (Snakemake names):

- ``snakemake.input.tiles`` (path): the tile folder holding ``layout.csv``
  (columns ``tile, file, row, col, x_um, y_um``) and the tiles; a mock job
  may give ``snakemake.input.layout`` (the CSV itself) instead.
- ``snakemake.params.pixel_size_nm`` (float, nm per pixel).
- ``snakemake.params.max_stage_error_um`` (float, um): largest deviation,
  per axis, of the offset between two neighbouring tiles from the nominal
  layout; links beyond it are dropped. The overlap must exceed it by 8 px.
- ``snakemake.params.unlinked`` (``error`` or ``nominal``): what to do when
  the trusted links leave tiles unconnected (default ``error``).
- ``snakemake.params.chunk`` (int, px): zarr chunk edge, conventionally 1024.
- ``snakemake.output.mosaic`` (path, ``*.zarr`` directory): 2D uint8/uint16
  mosaic, attrs ``pixel_size_nm``, ``origin_um``, ``n_tiles``, ``blend``.
- ``snakemake.output.table`` (path, CSV): per tile ``tile, row, col, x_px,
  y_px`` (sub-pixel estimate), ``nominal_x_px, nominal_y_px, residual_px,
  n_links, x_um, y_um, placed_x_px, placed_y_px`` (whole pixels of the
  mosaic), ``group, placement``.

Both outputs are written atomically; on bad input (missing, truncated or
mismatched tiles, duplicate ids, a margin the overlap cannot hold, a link
graph that falls apart into groups) an InputError is raised before any output
exists.
"""
from microprop.workflow import setup_script


def main(snakemake):
    """Stitch the tile set of ``snakemake.input`` into the mosaic and its table."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    from microprop.imaging import stitch

    stitch(
        snakemake.input.get("tiles") or snakemake.input.layout,
        snakemake.output.mosaic,
        snakemake.output.table,
        pixel_size_nm=float(snakemake.params.pixel_size_nm),
        max_stage_error_um=float(snakemake.params.max_stage_error_um),
        chunk=int(snakemake.params.get("chunk", 1024)),
        unlinked=snakemake.params.get("unlinked", "error"),
    )


if __name__ == "__main__":
    main(setup_script(globals()))
