"""Rule image_layout: a single pre-stitched image as a 1 x 1 tile layout.

snakemake.input.image : path of the image (PNG/TIFF, 8- or 16-bit grey)
snakemake.output.layout : folder to create, holding layout.csv whose one row
    points at the image by absolute path (nominal stage position 0, 0 um)
"""
from pathlib import Path

import pandas as pd

from microprop.io import atomic_path
from microprop.workflow import setup_script

snakemake = setup_script(globals())

image = Path(snakemake.input.image).resolve()
with atomic_path(snakemake.output.layout) as tmp:
    tmp.mkdir(parents=True)
    pd.DataFrame([{"tile": "image", "file": str(image), "row": 0, "col": 0,
                   "x_um": 0.0, "y_um": 0.0}]).to_csv(tmp / "layout.csv", index=False)
