# Indentation exports -> validated tables; indents located in the after-image
# by the per-batch grid model and mapped into the before-mosaic.


rule virtual_indentation:
    """Simulated indentation of a single real image on the phases of its calibrated eta map."""
    input:
        image=area_param("image"),
        calibrated="results/{specimen}/{area}/calibrated.zarr",
        phase_eta="results/backscatter/phase_eta.csv",
    output:
        export="results/{specimen}/{area}/virtual_indentation/{batch}.csv",
        labels="results/{specimen}/{area}/virtual_indentation/{batch}_labels.npy",
        note="results/{specimen}/{area}/virtual_indentation/{batch}_SIMULATED.json",
        indents="results/{specimen}/{area}/virtual_indentation/{batch}_truth.csv",
    params:
        pixel_size_nm=spec_param("pixel_size_nm"),
        spacing_um=area_param("virtual_indentation", "spacing_um"),
        crop_size_um=spec_param("dataset", "crop_size_um"),
        load_mN=area_param("virtual_indentation", "load_mN"),
        noise_rel=area_param("virtual_indentation", "noise_rel"),
        seed=area_param("virtual_indentation", "seed"),
        batch="{batch}",
        region_px=area_param("region_px", default=None),
        indenter_offset_um=area_param("indenter_offset_um"),
        indenter_axes=area_param("indenter_axes"),
    log:
        "results/logs/virtual_indentation/{specimen}_{area}_{batch}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/imaging.yaml"
    script:
        "../scripts/virtual_indentation.py"


rule read_indentation:
    input:
        export=export_file,
    output:
        indents="results/{specimen}/{area}/indents/{batch}.csv",
        rejected="results/{specimen}/{area}/indents/{batch}_rejected.csv",
    params:
        batch="{batch}",
        columns=spec_param("indentation", "columns"),
        units=spec_param("indentation", "units"),
    log:
        "results/logs/read_indentation/{specimen}_{area}_{batch}.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/imaging.yaml"
    script:
        "../scripts/read_indentation.py"


rule register_after:
    input:
        before="results/{specimen}/{area}/mosaic_before.zarr",
        after="results/{specimen}/{area}/mosaic_after.zarr",
    output:
        shift="results/{specimen}/{area}/after_to_before.json",
    params:
        max_shift_um=20.0,
    log:
        "results/logs/register_after/{specimen}_{area}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/imaging.yaml"
    script:
        "../scripts/register_after.py"


rule locate_indents:
    input:
        unpack(locate_inputs),
    output:
        located="results/{specimen}/{area}/located/{batch}.csv",
        model="results/{specimen}/{area}/located/{batch}.json",
    params:
        mode=lambda w: locate_mode(w.specimen, w.area),
        batch="{batch}",
        pixel_size_nm=spec_param("pixel_size_nm"),
        indenter_offset_um=area_param("indenter_offset_um"),
        indenter_axes=area_param("indenter_axes"),
        search_radius_um=spec_param("indentation", "search_radius_um"),
        spacing_um=spec_param("indentation", "spacing_um"),
    log:
        "results/logs/locate_indents/{specimen}_{area}_{batch}.log",
    benchmark:
        "results/benchmarks/locate_indents/{specimen}_{area}_{batch}.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=10,
    conda:
        "../envs/imaging.yaml"
    script:
        "../scripts/locate_indents.py"
