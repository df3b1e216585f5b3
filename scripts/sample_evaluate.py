"""Rule sample_evaluate: every fold's held-out predictions, MAE and R2 over folds beside the baseline, activation maps.

snakemake.input.dataset : ``samples.h5``
snakemake.input.baseline, baseline_predictions : rule sample_baseline's summary and predictions
snakemake.input.models, metrics : ``best.pt`` and ``metrics.csv`` of every fold
snakemake.params.device : where the models predict
snakemake.params.n_examples : test images in the activation-map figure
snakemake.output.predictions : CSV per held-out image: image, sample, fold, observed, predicted (the mean over
    the grid symmetries for an isotropic material), predicted_sd_symmetry, n_symmetries
snakemake.output.metrics : JSON: per fold MAE and R2, mean and sd over folds, pooled; per sample
    (the mean of its images' predictions) too, for the CNN and the GLM
snakemake.output.table : CSV, the model table: method, MAE and R2 mean and sd over folds, and pooled
    over all held-out images (target units)
snakemake.output.scatter, ram, history : PNG figures
"""
import logging

from microprop.workflow import setup_script

log = logging.getLogger("microprop.sample_evaluate")


def main(snakemake):
    """Predict each fold with its model; tabulate against the GLM; draw the figures."""
    import json

    import numpy as np
    import pandas as pd
    from microprop import io as mio
    from microprop import plots
    from microprop.data import read_sample_dataset
    from microprop.errors import InputError
    from microprop.learning import activation_maps, fold_metrics, load_sample_cnn, predict_fold, resolve_device

    P = snakemake.params
    dev = resolve_device(P.get("device", "auto"))
    d = read_sample_dataset(snakemake.input.dataset)
    preds, models = [], {}
    for path in snakemake.input.models:
        p = predict_fold(path, snakemake.input.dataset, device=dev)
        preds.append(p)
        models[int(p["fold"].iloc[0])] = path
    pred = pd.concat(preds, ignore_index=True).sort_values("image")
    if len(pred) != len(d["target"]) or pred["image"].duplicated().any():
        raise InputError(f"{snakemake.input.dataset}: the folds' held-out images do not cover each image once "
                         f"({len(pred)} predictions for {len(d['target'])} images)")
    mio.write_table(pred, snakemake.output.predictions)
    per_image = fold_metrics(pred)
    per_sample_tab = pred.groupby(["sample", "fold"], as_index=False)[["observed", "predicted"]].mean()
    per_sample = fold_metrics(per_sample_tab)
    base = json.loads(open(snakemake.input.baseline).read())
    base_pred = pd.read_csv(snakemake.input.baseline_predictions)
    base_metrics = fold_metrics(base_pred)
    base_per_sample = fold_metrics(base_pred.groupby(["sample", "fold"], as_index=False)[["observed", "predicted"]]
                                   .mean())
    deg = base["best_degree"]
    rows = [{"method": "CNN (ConductivityCNN)", "level": "image", **_row(per_image)},
            {"method": "CNN (ConductivityCNN)", "level": "sample (mean of its images)", **_row(per_sample)},
            {"method": f"bright-fraction GLM, degree {deg} (chosen by CV)", "level": "image", **_row(base_metrics)},
            {"method": f"bright-fraction GLM, degree {deg} (chosen by CV)", "level": "sample (mean of its images)",
             **_row(base_per_sample)}]
    for k, v in base["per_degree"].items():
        rows.append({"method": f"bright-fraction GLM, degree {k}", "level": "image",
                     "mae_mean": v["mae_mean"], "mae_sd": v["mae_sd"], "r2_mean": v["r2_mean"],
                     "r2_sd": v["r2_sd"], "mae_pooled": v.get("mae_pooled"), "r2_pooled": v.get("r2_pooled"),
                     "n_folds": len(v.get("mae", [])) or None})
    table = pd.DataFrame(rows)
    table.insert(2, "unit", base.get("unit"))
    mio.write_table(table.round(4), snakemake.output.table)
    mio.write_json({"target": d["target_name"], "per_image": per_image, "per_sample": per_sample,
                    "baseline_per_image": base_metrics, "baseline_per_sample": base_per_sample, "baseline_degree": deg,
                    "cnn_beats_baseline_mae": bool(per_image["mae_mean"] < base_metrics["mae_mean"]),
                    "cnn_beats_baseline_mae_per_sample": bool(per_sample["mae_mean"] < base_per_sample["mae_mean"]),
                    "n_symmetries": int(pred["n_symmetries"].max()),
                    "folds": sorted(models)}, snakemake.output.metrics)
    log.info("CNN: MAE %.3f +- %.3f, R2 %.3f +- %.3f over %d folds; GLM degree %s: MAE %.3f +- %.3f, R2 %.3f +- %.3f",
             per_image["mae_mean"], per_image["mae_sd"], per_image["r2_mean"], per_image["r2_sd"], len(models), deg,
             base_metrics["mae_mean"], base_metrics["mae_sd"], base_metrics["r2_mean"], base_metrics["r2_sd"])
    plots.save_png(plots.observed_predicted_figure(pred, base_pred, per_image, base_metrics, d["target_name"]),
                   snakemake.output.scatter)
    # activation maps of the best-predicted held-out image of as many folds as examples asked for
    err = (pred["predicted"] - pred["observed"]).abs()
    pick = pred.assign(err=err).sort_values("err").groupby("fold").head(1).head(int(P.get("n_examples", 4)))
    imgs, rams, titles = [], [], []
    for _, r in pick.iterrows():
        model, meta = load_sample_cnn(models[int(r["fold"])], dev)
        ram, offset, p = activation_maps(model, meta, d["images"][[int(r["image"])]], device=dev)
        imgs.append(d["raw"][int(r["image"])])
        rams.append(ram[0])
        titles.append(f"{r['sample']} (fold {int(r['fold'])}): observed {r['observed']:.2f}, "
                      f"predicted {r['predicted']:.2f} (as shown {p[0]:.2f})")
    plots.save_png(plots.activation_map_panels(np.stack(imgs), np.stack(rams), titles, d["target_name"]),
                   snakemake.output.ram)
    hist = {int(m.split("fold")[-1].split("/")[0]): pd.read_csv(m) for m in snakemake.input.metrics}
    plots.save_png(plots.sample_training_curves(hist, d["target_name"]), snakemake.output.history)


def _row(m):
    return {"mae_mean": m["mae_mean"], "mae_sd": m["mae_sd"], "r2_mean": m["r2_mean"], "r2_sd": m["r2_sd"],
            "mae_pooled": m["mae_pooled"], "r2_pooled": m["r2_pooled"], "n_folds": len(m["per_fold"])}


if __name__ == "__main__":
    main(setup_script(globals()))
