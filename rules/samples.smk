# The third study: a sample's property (e.g. electrical conductivity) from a few
# images of each sample (../shared/references/cnn_conductivity_lto_ni_poster.txt).
# Switched on by `sample_studies:`; each study's inputs are its own tables, a
# generated demo (`virtual`) or regions of a real micrograph with a simulated
# property (`simulated_on_real`). Its helpers (smp_cfg, smp_param, sample_targets) are in
# rules/common.smk.


rule sample_inputs:
    """Generated inputs of a sample study: virtual composites, or regions of a real micrograph, with a solved property."""
    output:
        samples="resources/samples/{study}/samples.csv",
        images="resources/samples/{study}/images.csv",
        folder=directory("resources/samples/{study}/images"),
        truth="resources/samples/{study}/truth.json",
    params:
        virtual=smp_param("virtual"),
        real=smp_param("simulated_on_real"),
        prop=smp_param("property"),
    log:
        "results/logs/sample_inputs/{study}.log",
    threads: 2
    resources:
        mem_mb=6000,
        runtime=60,
    conda:
        "../envs/physics.yaml"
    script:
        "../scripts/sample_inputs.py"


rule sample_dataset:
    """Sample and image tables -> checked, normalised, area-averaged images with grouped folds (samples.h5)."""
    input:
        unpack(smp_tables),
    output:
        dataset="results/{study}/samples.h5",
        table="results/{study}/images.csv",
    params:
        prop=smp_param("property"),
        normalise=smp_param("normalise"),
        input_px=smp_param("input_px"),
        cv=smp_param("cv"),
        pixel_size_nm=smp_param("pixel_size_nm"),
    log:
        "results/logs/sample_dataset/{study}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/sample_dataset.py"


rule sample_baseline:
    """The poster's baseline: bright-pixel fraction and polynomial GLMs, the degree chosen by grouped cross-validation."""
    input:
        dataset="results/{study}/samples.h5",
    output:
        summary="results/{study}/glm/summary.json",
        predictions="results/{study}/glm/predictions.csv",
        figure=report(
            "results/{study}/figures/bright_fraction.png",
            caption="../report/sample_bright_fraction.rst",
            category="Sample study",
            labels={"study": "{study}", "figure": "bright-fraction baseline"},
        ),
    params:
        degrees=smp_param("baseline", "degrees", default=[1, 2, 3, 4]),
    log:
        "results/logs/sample_baseline/{study}.log",
    localrule: True
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/sample_baseline.py"


rule sample_train:
    """The conductivity CNN with one fold of samples held out."""
    input:
        dataset="results/{study}/samples.h5",
    output:
        best="results/{study}/cnn/fold{fold}/best.pt",
        metrics="results/{study}/cnn/fold{fold}/metrics.csv",
        summary="results/{study}/cnn/fold{fold}/train.json",
    params:
        fold="{fold}",
        work_dir="results/{study}/cnn/fold{fold}/work",
        cnn=smp_param("cnn"),
        isotropic=smp_param("isotropic"),
        val_fraction=smp_param("cv", "val_fraction", default=0.15),
    log:
        "results/logs/sample_train/{study}_fold{fold}.log",
    benchmark:
        "results/benchmarks/sample_train/{study}_fold{fold}.tsv"
    threads: 2
    resources:
        mem_mb=6000,
        runtime=120,
        gpu=gpu_request(smp_param("cnn", "device", default="auto")),
    conda:
        "../envs/learning.yaml"
    script:
        "../scripts/sample_train.py"


rule sample_evaluate:
    """Held-out predictions of every fold; MAE and R2 over folds beside the baseline; activation maps."""
    input:
        dataset="results/{study}/samples.h5",
        baseline="results/{study}/glm/summary.json",
        baseline_predictions="results/{study}/glm/predictions.csv",
        models=lambda w: expand("results/{study}/cnn/fold{fold}/best.pt", study=w.study, fold=smp_folds(w.study)),
        metrics=lambda w: expand("results/{study}/cnn/fold{fold}/metrics.csv", study=w.study,
                                 fold=smp_folds(w.study)),
    output:
        predictions="results/{study}/cnn/predictions.csv",
        metrics="results/{study}/cnn/metrics.json",
        table=report(
            "results/{study}/model_table.csv",
            caption="../report/sample_summary.rst",
            category="Sample study",
            labels={"study": "{study}", "figure": "model table"},
        ),
        scatter=report(
            "results/{study}/figures/observed_predicted.png",
            caption="../report/sample_observed_predicted.rst",
            category="Sample study",
            labels={"study": "{study}", "figure": "observed vs predicted"},
        ),
        ram=report(
            "results/{study}/figures/activation_maps.png",
            caption="../report/sample_activation_maps.rst",
            category="Sample study",
            labels={"study": "{study}", "figure": "regression activation maps"},
        ),
        history=report(
            "results/{study}/figures/cnn_training.png",
            caption="../report/sample_training.rst",
            category="Sample study",
            labels={"study": "{study}", "figure": "training curves"},
        ),
    params:
        device=smp_param("cnn", "device", default="auto"),
        n_examples=4,
    log:
        "results/logs/sample_evaluate/{study}.log",
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/learning.yaml"
    script:
        "../scripts/sample_evaluate.py"
