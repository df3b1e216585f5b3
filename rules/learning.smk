# Learning (issue 3): the seed's ResNet per target, split and ensemble
# member; evaluation with prediction intervals; the baseline ladder; and one
# summary table. Runs for specimens whose config has a `learning:` section.


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
        epochs=lambda w: learn_cfg(w.specimen)["epochs"],
        batch_size=lambda w: learn_cfg(w.specimen)["batch_size"],
        lr=lambda w: learn_cfg(w.specimen)["lr"],
        input_px=lambda w: learn_cfg(w.specimen)["input_px"],
        augment=lambda w: learn_cfg(w.specimen)["augment"],
        device=lambda w: learn_cfg(w.specimen)["device"],
        bf16=lambda w: learn_cfg(w.specimen)["bf16"],
        compile=lambda w: learn_cfg(w.specimen)["compile"],
        resident_uint8=lambda w: learn_cfg(w.specimen)["resident_uint8"],
        seed=lambda w: learn_cfg(w.specimen)["seed"],
        patience=lambda w: learn_cfg(w.specimen)["patience"],
        factor=lambda w: learn_cfg(w.specimen)["factor"],
        cpu=lambda w: learn_cfg(w.specimen)["cpu"],
    log:
        "results/logs/train_model/{specimen}_{split}_{target}_m{member}.log",
    benchmark:
        "results/benchmarks/train_model/{specimen}_{split}_{target}_m{member}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,
    conda:
        "../envs/learning.yaml"
    script:
        "../scripts/train_model.py"


rule evaluate_model:
    input:
        dataset="results/{specimen}/dataset.h5",
        checkpoints=lambda w: member_files(w.specimen, w.split, w.target, "best.pt"),
        metrics=lambda w: member_files(w.specimen, w.split, w.target, "metrics.csv"),
    output:
        summary="results/{specimen}/learning/{split}/{target}/summary.json",
        predictions="results/{specimen}/learning/{split}/{target}/predictions.csv",
        fig_history=report(
            "results/{specimen}/figures/learning_history_{split}_{target}.png",
            caption="../report/learning_history.rst",
            category="Learning",
            labels={"specimen": "{specimen}", "split": "{split}", "target": "{target}", "figure": "history"},
        ),
        fig_scatter=report(
            "results/{specimen}/figures/learning_scatter_{split}_{target}.png",
            caption="../report/learning_scatter.rst",
            category="Learning",
            labels={"specimen": "{specimen}", "split": "{split}", "target": "{target}", "figure": "predicted vs measured"},
        ),
        fig_crops=report(
            "results/{specimen}/figures/learning_crops_{split}_{target}.png",
            caption="../report/learning_crops.rst",
            category="Learning",
            labels={"specimen": "{specimen}", "split": "{split}", "target": "{target}", "figure": "test crops"},
        ),
    params:
        target="{target}",
        split="{split}",
        level=lambda w: learn_cfg(w.specimen)["level"],
        device=lambda w: learn_cfg(w.specimen)["device"],
        mc_samples=lambda w: learn_cfg(w.specimen)["mc_samples"],
    log:
        "results/logs/evaluate_model/{specimen}_{split}_{target}.log",
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/learning.yaml"
    script:
        "../scripts/evaluate_model.py"


rule baseline_ladder:
    input:
        dataset="results/{specimen}/dataset.h5",
    output:
        table="results/{specimen}/learning/ladder.csv",
        fig=report(
            "results/{specimen}/figures/ladder.png",
            caption="../report/ladder.rst",
            category="Learning",
            labels={"specimen": "{specimen}", "figure": "baseline ladder"},
        ),
    params:
        seed=lambda w: learn_cfg(w.specimen)["seed"],
        downsample=64,
    log:
        "results/logs/baseline_ladder/{specimen}.log",
    benchmark:
        "results/benchmarks/baseline_ladder/{specimen}.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=20,
    conda:
        "../envs/learning.yaml"
    script:
        "../scripts/baseline_ladder.py"


rule learning_summary:
    """The ResNet beside the baseline ladder, random and blocked split."""
    input:
        ladder="results/{specimen}/learning/ladder.csv",
        summaries=lambda w: [
            f"results/{w.specimen}/learning/{sp}/{t}/summary.json"
            for sp in learn_cfg(w.specimen)["splits"]
            for t in learn_cfg(w.specimen)["targets"]
        ],
    output:
        table=report(
            "results/{specimen}/learning/summary.csv",
            caption="../report/learning_summary.rst",
            category="Learning",
            labels={"specimen": "{specimen}", "figure": "model table"},
        ),
    log:
        "results/logs/learning_summary/{specimen}.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/learning_summary.py"


rule map_area:
    """The seed's out-of-bag test: map an area the model never saw."""
    input:
        calibrated="results/{specimen}/{area}/calibrated.zarr",
        mosaic="results/{specimen}/{area}/mosaic_before.zarr",
        checkpoints=lambda w: member_files(w.specimen, "random", w.target, "best.pt"),
        table="results/{specimen}/stats/table_model_bins.csv",
        indents=lambda w: located_files(w.specimen),
    output:
        grid_coarse="results/{specimen}/maps/{area}/grid_coarse_{target}.npy",
        grid_dense="results/{specimen}/maps/{area}/grid_dense_{target}.npy",
        table1=report(
            "results/{specimen}/maps/{area}/table1_{target}.csv",
            caption="../report/map_table1.rst",
            category="Mapping",
            labels={"specimen": "{specimen}", "area": "{area}", "target": "{target}", "figure": "Table 1"},
        ),
        fig_maps=report(
            "results/{specimen}/figures/map_{area}_{target}.png",
            caption="../report/map_triptych.rst",
            category="Mapping",
            labels={"specimen": "{specimen}", "area": "{area}", "target": "{target}", "figure": "maps"},
        ),
        fig_hist=report(
            "results/{specimen}/figures/map_hist_{area}_{target}.png",
            caption="../report/map_histograms.rst",
            category="Mapping",
            labels={"specimen": "{specimen}", "area": "{area}", "target": "{target}", "figure": "histograms"},
        ),
        meta="results/{specimen}/maps/{area}/meta_{target}.json",
    params:
        scale=lambda w: spec_cfg(w.specimen)["dataset"]["scale"],
        step_um=lambda w: spec_cfg(w.specimen)["indentation"]["spacing_um"] or 10.0,
        dense_step_px=lambda w: learn_cfg(w.specimen)["map_dense_step_px"],
        dense_max_crops=lambda w: learn_cfg(w.specimen)["map_dense_max_crops"],
        device=lambda w: learn_cfg(w.specimen)["device"],
        n_components=lambda w: spec_cfg(w.specimen)["stats"]["n_components"],
        seed=lambda w: spec_cfg(w.specimen)["stats"]["seed"],
    log:
        "results/logs/map_area/{specimen}_{area}_{target}.log",
    benchmark:
        "results/benchmarks/map_area/{specimen}_{area}_{target}.tsv"
    threads: 2
    resources:
        mem_mb=6000,
        runtime=120,
        gpu=1,
    conda:
        "../envs/learning.yaml"
    script:
        "../scripts/map_area.py"
