# Tiles -> chunked mosaic (zarr) with a per-tile residual table.


rule image_layout:
    """A single pre-stitched image as a 1 x 1 tile layout."""
    input:
        image=area_param("image"),
    output:
        layout=directory("results/{specimen}/{area}/image_layout"),
    params:
        region_px=area_param("region_px", default=None),
    log:
        "results/logs/image_layout/{specimen}_{area}.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/imaging.yaml"
    script:
        "../scripts/image_layout.py"


rule stitch_tiles:
    input:
        unpack(tiles_input),
    output:
        mosaic=directory("results/{specimen}/{area}/mosaic_{stage}.zarr"),
        table="results/{specimen}/{area}/stitch_{stage}.csv",
    params:
        pixel_size_nm=spec_param("pixel_size_nm"),
        max_stage_error_um=config["stitching"]["max_stage_error_um"],
        unlinked=config["stitching"]["unlinked"],
        chunk=config["stitching"]["chunk_px"],
    log:
        "results/logs/stitch_tiles/{specimen}_{area}_{stage}.log",
    benchmark:
        "results/benchmarks/stitch_tiles/{specimen}_{area}_{stage}.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=30,
    conda:
        "../envs/imaging.yaml"
    script:
        "../scripts/stitch_tiles.py"
