# The baseline ladder: the table model, linear regression, two-point statistics
# and boosted trees, scored on the random and blocked splits the ResNet is
# judged on.


rule baseline_ladder:
    input:
        dataset="results/{specimen}/dataset.h5",
    output:
        table="results/{specimen}/learning/ladder.csv",
        predictions="results/{specimen}/learning/ladder_predictions.csv",
        fig=report(
            "results/{specimen}/figures/ladder.png",
            caption="../report/ladder.rst",
            category="Learning",
            labels={"specimen": "{specimen}", "figure": "baseline ladder"},
        ),
    params:
        seed=learn_param("seed"),
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
