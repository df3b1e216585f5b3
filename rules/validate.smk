# Virtual specimens only: measured errors of stitching, micro-positioning and
# GMM deconvolution against the generator's truth.


rule validate_virtual:
    input:
        truth_dir="resources/truth/{specimen}/{area}",
        stitch_before="results/{specimen}/{area}/stitch_before.csv",
        stitch_after="results/{specimen}/{area}/stitch_after.csv",
        located=lambda w: located_files(w.specimen, w.area),
        gmm_E="results/{specimen}/stats/gmm_E_GPa.csv",
        calibrated="results/{specimen}/{area}/calibrated.zarr",
    output:
        report="results/{specimen}/validation/{area}.json",
        figure=report(
            "results/{specimen}/figures/validation_{area}.png",
            caption="../report/validation.rst",
            category="Validation",
            labels={"specimen": "{specimen}", "area": "{area}"},
        ),
    params:
        pixel_size_nm=spec_param("pixel_size_nm"),
        tile_median_px=spec_param("virtual", "validation", "tile_median_px"),
        tile_max_px=spec_param("virtual", "validation", "tile_max_px"),
    log:
        "results/logs/validate_virtual/{specimen}_{area}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/validate_virtual.py"
