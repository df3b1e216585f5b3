# Training: the seed's ResNet (or CentreNet, `learning.architecture`), one
# model per target, split and ensemble member. Runs for specimens whose
# config has a `learning:` section.


rule train_model:
    input:
        dataset="results/{specimen}/dataset.h5",
    output:
        best="results/{specimen}/models/{split}/{target}/m{member}/best.pt",
        last="results/{specimen}/models/{split}/{target}/m{member}/last.pt",
        metrics="results/{specimen}/models/{split}/{target}/m{member}/metrics.csv",
    params:
        target="{target}",
        split="{split}",
        member=lambda w: int(w.member),
        work_dir="results/{specimen}/models/{split}/{target}/m{member}/work",
        epochs=learn_param("epochs"),
        batch_size=learn_param("batch_size"),
        lr=learn_param("lr"),
        input_px=learn_param("input_px"),
        augment=learn_param("augment"),
        device=learn_param("device"),
        bf16=learn_param("bf16"),
        compile=learn_param("compile"),
        resident_uint8=learn_param("resident_uint8"),
        seed=learn_param("seed"),
        patience=learn_param("patience"),
        factor=learn_param("factor"),
        cpu=learn_param("cpu"),
        architecture=learn_param("architecture"),
        centre=lambda w: centre_options(w.specimen),
    log:
        "results/logs/train_model/{specimen}_{split}_{target}_m{member}.log",
    benchmark:
        "results/benchmarks/train_model/{specimen}_{split}_{target}_m{member}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=gpu_request(learn_param("device")),
    conda:
        "../envs/learning.yaml"
    script:
        "../scripts/train_model.py"
