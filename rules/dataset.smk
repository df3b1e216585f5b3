# Crops around located indents -> one HDF5 shard per area x batch -> one
# dataset with deterministic random and spatially blocked splits.


rule crop_batch:
    input:
        calibrated="results/{specimen}/{area}/calibrated.zarr",
        located="results/{specimen}/{area}/located/{batch}.csv",
    output:
        shard="results/{specimen}/{area}/shards/{batch}.h5",
        skipped="results/{specimen}/{area}/shards/{batch}_skipped.csv",
    params:
        scale=spec_param("dataset", "scale"),
        crop_size_um=spec_param("dataset", "crop_size_um"),
        specimen="{specimen}",
        area="{area}",
        batch="{batch}",
    log:
        "results/logs/crop_batch/{specimen}_{area}_{batch}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/imaging.yaml"
    script:
        "../scripts/crop_batch.py"


rule assemble_dataset:
    input:
        shards=shard_files,
    output:
        dataset="results/{specimen}/dataset.h5",
        splits_report="results/{specimen}/dataset_splits.json",
    params:
        seed=spec_param("dataset", "split_seed"),
        split_fractions=spec_param("dataset", "split_fractions"),
        block_um=spec_param("dataset", "block_um"),
        config_sha256=config_sha256,
        code_version=code_version(),
    log:
        "results/logs/assemble_dataset/{specimen}.log",
    benchmark:
        "results/benchmarks/assemble_dataset/{specimen}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/assemble_dataset.py"
