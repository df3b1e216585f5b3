# Grey -> backscatter coefficient eta (or equivalent porosity n) maps:
# MulF at full resolution and MicF (Gaussian blur) for the microscale.


rule calibrate:
    input:
        mosaic="results/{specimen}/{area}/mosaic_before.zarr",
        phase_eta="results/backscatter/phase_eta.csv",
        eta_table="results/backscatter/eta_table.csv",
    output:
        calibrated=directory("results/{specimen}/{area}/calibrated.zarr"),
        hist=report(
            "results/{specimen}/figures/calibration_{area}.png",
            caption="../report/calibration.rst",
            category="Calibration",
            labels={"specimen": "{specimen}", "area": "{area}"},
        ),
    params:
        mode=spec_param("calibration", "mode"),
        reference_phases=spec_param("calibration", "reference_phases"),
        reference_greys=spec_param("calibration", "reference_greys"),
        clinker_grey_window=spec_param("calibration", "clinker_grey_window"),
        micf_sigma_px=spec_param("calibration", "micf_sigma_px"),
        chunk=config["stitching"]["chunk_px"],
    log:
        "results/logs/calibrate/{specimen}_{area}.log",
    benchmark:
        "results/benchmarks/calibrate/{specimen}_{area}.tsv"
    # blocks in threads; Snakemake gives at most --cores
    threads: 4
    resources:
        mem_mb=3000,
        runtime=20,
    conda:
        "../envs/imaging.yaml"
    script:
        "../scripts/calibrate.py"
