"""Rule sample_baseline: bright-pixel fraction and polynomial GLMs of it, degree chosen by grouped cross-validation.

The poster's baseline (``../shared/references/cnn_conductivity_lto_ni_poster.txt``,
"EDA & Simple Modeling": degree 4 best, MAE 0.72, R2 0.63 in log10 units).

snakemake.input.dataset : ``samples.h5`` (its ``bright_fraction``, target and folds)
snakemake.params.degrees : polynomial degrees tried
snakemake.output.summary : JSON: per degree the MAE and R2 per fold with mean and sd, the chosen degree
snakemake.output.predictions : CSV per image: fold, sample, bright fraction, observed, predicted (chosen degree)
snakemake.output.figure : PNG: the target against the bright fraction with each degree's fit, and
    observed against predicted (held out) for the chosen degree
"""
import logging

from microprop.workflow import setup_script

log = logging.getLogger("microprop.sample_baseline")


def main(snakemake):
    """Cross-validate the GLMs on the dataset's folds; write the table, the predictions and the figure."""
    import numpy as np
    import pandas as pd
    from microprop import io as mio
    from microprop import plots
    from microprop.data import read_sample_dataset
    from microprop.stats import polynomial_glm_cv

    d = read_sample_dataset(snakemake.input.dataset)
    degrees = [int(v) for v in snakemake.params.degrees]
    res = polynomial_glm_cv(d["bright_fraction"], d["target"], d["fold"], degrees=degrees)
    per_fold = res["per_fold"]
    cv = {"best_degree": int(res["best_degree"]),
          "per_degree": {str(int(r["degree"])): {**{k: float(r[k]) for k in ("mae_mean", "mae_sd", "r2_mean", "r2_sd",
                                                                              "mae_pooled", "r2_pooled")},
                                                 "mae": per_fold.loc[per_fold["degree"] == r["degree"], "mae"].tolist(),
                                                 "r2": per_fold.loc[per_fold["degree"] == r["degree"], "r2"].tolist()}
                         for _, r in res["per_degree"].iterrows()}}
    names = np.asarray(d["samples"], dtype=object)
    pred = pd.DataFrame({"image": np.arange(len(d["target"])), "sample": names[d["sample"]], "fold": d["fold"],
                         "bright_fraction": d["bright_fraction"], "observed": d["target"],
                         "predicted": np.asarray(res["oof_pred"], float)})
    mio.write_table(pred, snakemake.output.predictions)
    unit = d["attrs"].get("unit")
    summary = {"target": d["target_name"], "unit": f"log10 {unit}" if d["attrs"].get("log10") else unit,
               "n_images": int(len(pred)), "n_samples": int(len(names)),
               "n_folds": int(len(np.unique(d["fold"]))), **cv}
    mio.write_json(summary, snakemake.output.summary)
    best = cv["per_degree"][str(cv["best_degree"])]
    log.info("bright-fraction GLM: degree %d chosen; MAE %.3f +- %.3f, R2 %.3f +- %.3f over %d folds",
             cv["best_degree"], best["mae_mean"], best["mae_sd"], best["r2_mean"], best["r2_sd"], summary["n_folds"])
    plots.save_png(plots.bright_fraction_figure(d["bright_fraction"], d["target"], cv, pred, d["target_name"]),
                   snakemake.output.figure)


if __name__ == "__main__":
    main(setup_script(globals()))
