# Evaluation: each ensemble on its test crops with prediction intervals, and
# one summary table of the ResNet beside the baseline ladder.


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
        level=learn_param("level"),
        device=learn_param("device"),
        mc_samples=learn_param("mc_samples"),
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
