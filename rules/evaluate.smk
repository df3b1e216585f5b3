# Evaluation: each ensemble on its test crops with prediction intervals; on a
# virtual specimen the ceiling (attainable and noise-only R2); and one summary
# table and figure of the ResNet beside the baseline ladder, with bootstrap
# intervals, the members' spread and the ceiling.


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
        interval_method=learn_param("interval_method"),
        block_confidence=learn_param("block_confidence"),
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


rule learning_ceiling:
    """Virtual specimens: the attainable R2 (boosting on the true zone fractions) and the noise-only ceiling."""
    input:
        dataset="results/{specimen}/dataset.h5",
        truth=lambda w: [t for _, t, _ in truth_sources(w.specimen)],
        generator=lambda w: [g for _, _, g in truth_sources(w.specimen)],
    output:
        table="results/{specimen}/learning/ceiling.csv",
        predictions="results/{specimen}/learning/ceiling_predictions.csv",
    params:
        areas=lambda w: [a for a, _, _ in truth_sources(w.specimen)],
        # both targets and split schemes, as the ladder: a ceiling beside every rung
        targets=["E_GPa", "H_GPa"],
        splits=["random", "blocked"],
        seed=learn_param("seed"),
    log:
        "results/logs/learning_ceiling/{specimen}.log",
    threads: 1
    resources:
        mem_mb=1500,
        runtime=10,
    conda:
        "../envs/learning.yaml"
    script:
        "../scripts/learning_ceiling.py"


rule learning_summary:
    """The ResNet beside the baseline ladder, random and blocked split, with bootstrap intervals and the ceiling."""
    input:
        ladder="results/{specimen}/learning/ladder.csv",
        ladder_predictions="results/{specimen}/learning/ladder_predictions.csv",
        summaries=lambda w: [
            f"results/{w.specimen}/learning/{sp}/{t}/summary.json"
            for sp in learn_cfg(w.specimen)["splits"]
            for t in learn_cfg(w.specimen)["targets"]
        ],
        predictions=lambda w: [
            f"results/{w.specimen}/learning/{sp}/{t}/predictions.csv"
            for sp in learn_cfg(w.specimen)["splits"]
            for t in learn_cfg(w.specimen)["targets"]
        ],
        dataset="results/{specimen}/dataset.h5",
        ceiling=lambda w: ceiling_files(w.specimen),
    output:
        table=report(
            "results/{specimen}/learning/summary.csv",
            caption="../report/learning_summary.rst",
            category="Learning",
            labels={"specimen": "{specimen}", "figure": "model table"},
        ),
        fig=report(
            "results/{specimen}/figures/learning_summary.png",
            caption="../report/learning_summary_figure.rst",
            category="Learning",
            labels={"specimen": "{specimen}", "figure": "model figure with intervals"},
        ),
    params:
        n_boot=learn_param("bootstrap"),
        seed=learn_param("seed"),
        confidence=0.95,
    log:
        "results/logs/learning_summary/{specimen}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/learning.yaml"
    script:
        "../scripts/learning_summary.py"
