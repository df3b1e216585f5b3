"""Rule learning_summary: the ResNet beside the baseline ladder, per split.

snakemake.input.ladder : CSV of the baseline ladder (model, target, split,
    MSE, MAE, R2, n_train, n_test, ...)
snakemake.input.summaries : list of evaluation summaries (JSON), one per
    split and target (``results/{specimen}/learning/{split}/{target}/summary.json``)
snakemake.output.table : CSV with columns model, target, split, MSE, MAE, R2
    (test set, GPa), n_test, coverage (empirical coverage of the conformal
    prediction interval on the test set, ResNet rows only), coverage_ci95_lo,
    coverage_ci95_hi (its 95 % Wilson interval: the binomial uncertainty of a
    coverage measured on n_test crops), interval_level,
    mean_width_GPa; sorted by target, split and R2.
"""
import logging

from microprop.workflow import setup_script

log = logging.getLogger("microprop.learning_summary")


def main(snakemake):
    """Stack the ladder and the ResNet evaluation summaries into one table."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    import pandas as pd
    from microprop import io

    ladder = io.read_table(snakemake.input.ladder,
                           ["model", "target", "split", "MSE", "MAE", "R2"],
                           what="baseline ladder")
    rows = [ladder[["model", "target", "split", "MSE", "MAE", "R2", "n_test"]]]
    for path in snakemake.input.summaries:
        s = io.read_json(path)
        test = s["metrics"]["test"]["ensemble"]
        conf = s["interval"]["conformal"]
        ci_lo, ci_hi = conf.get("coverage_test_ci95", [float("nan")] * 2)
        rows.append(pd.DataFrame([{
            "model": f"resnet (x{s['n_predictions']})", "target": s["target"],
            "split": s.get("split_scheme", s.get("split")),
            "MSE": test["MSE"], "MAE": test["MAE"], "R2": test["R2"], "n_test": test["n"],
            "coverage": conf["coverage_test"],
            "coverage_ci95_lo": ci_lo, "coverage_ci95_hi": ci_hi,
            "interval_level": s.get("level", conf.get("level")),
            "mean_width_GPa": conf["mean_width_test"]}]))
    table = pd.concat(rows, ignore_index=True).sort_values(
        ["target", "split", "R2"], ascending=[True, True, False])
    io.write_table(table, snakemake.output.table)
    for (target, split), part in table.groupby(["target", "split"]):
        log.info("%s, %s split: %s", target, split,
                 ", ".join(f"{m} R2 {r:.3f}" for m, r in zip(part.model, part.R2)))


if __name__ == "__main__":
    main(setup_script(globals()))
