"""Rule image_layout: a single pre-stitched image as a 1 x 1 tile layout.

snakemake.input.image : path of the image (PNG/TIFF, 8- or 16-bit grey)
snakemake.params.region_px : [row0, col0, height, width] or None
    A window of the image to use as this area (px); None: the whole image.
snakemake.output.layout : folder to create, holding layout.csv whose one row
    points at the image by absolute path (nominal stage position 0, 0 um);
    with a region, the window is written beside it as ``region.tif`` (a
    derived file under results/, never a copy in the repository) and the
    layout points at that. The window's top-left pixel is stage (0, 0) um.
"""
from pathlib import Path

from microprop.workflow import setup_script


def main(snakemake):
    """Write the 1 x 1 layout of ``snakemake.input.image`` (and its region, if any)."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    import pandas as pd
    from microprop.io import atomic_path

    image = Path(snakemake.input.image).resolve()
    region = snakemake.params.get("region_px")
    with atomic_path(snakemake.output.layout) as tmp:
        tmp.mkdir(parents=True)
        tile_file = str(image)
        if region is not None:
            import tifffile
            from microprop.imaging import crop_region, load_tile

            window = crop_region(load_tile(image), region, path=str(image))
            tifffile.imwrite(tmp / "region.tif", window)
            tile_file = "region.tif"
        pd.DataFrame([{"tile": "image", "file": tile_file, "row": 0, "col": 0,
                       "x_um": 0.0, "y_um": 0.0}]).to_csv(tmp / "layout.csv", index=False)


if __name__ == "__main__":
    main(setup_script(globals()))
