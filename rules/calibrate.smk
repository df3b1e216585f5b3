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
        mode=lambda w: spec_cfg(w.specimen)["calibration"]["mode"],
        reference_phases=lambda w: spec_cfg(w.specimen)["calibration"]["reference_phases"],
        reference_greys=lambda w: spec_cfg(w.specimen)["calibration"]["reference_greys"],
        clinker_grey_window=lambda w: spec_cfg(w.specimen)["calibration"]["clinker_grey_window"],
        micf_sigma_px=lambda w: spec_cfg(w.specimen)["calibration"]["micf_sigma_px"],
        chunk=config["stitching"]["chunk_px"],
    log:
        "results/logs/calibrate/{specimen}_{area}.log",
    benchmark:
        "results/benchmarks/calibrate/{specimen}_{area}.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=20,
    conda:
        "../envs/imaging.yaml"
    script:
        "../scripts/calibrate.py"
