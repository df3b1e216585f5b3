"""Rule porosity_summary: the study's accuracies side by side, and the classifier's figures.

snakemake.input.baseline : JSON of rule porosity_baseline
snakemake.input.metrics : list of JSON of rule porosity_evaluate, one per scale
snakemake.input.histories : list of ``metrics.csv`` of rule porosity_train, same order
snakemake.input.predictions : list of CSV of rule porosity_evaluate, same order
snakemake.input.maps : ``maps.h5`` (example maps)
snakemake.params.scales : list of scales, the order of the lists above
snakemake.output.table : CSV ``method, input, accuracy, ci95_low, ci95_high, n_maps, evaluated_on``
    (the reference's comparison: nearest class mean of porosity and of
    average pore size against the DCNN on MulF and MicF)
snakemake.output.summary : JSON: the same, and the DCNN's lead over the best baseline, points
snakemake.output.confusion, history, examples : PNG figures
"""
import logging

from microprop.workflow import setup_script

log = logging.getLogger("microprop.porosity_summary")


def main(snakemake):
    """Collect baseline and classifier accuracies; draw confusion matrices, training and examples."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    import json

    import numpy as np
    import pandas as pd
    from microprop import io as mio
    from microprop import plots
    from microprop.data import read_maps

    inp, out = snakemake.input, snakemake.output
    scales = list(snakemake.params.scales)
    base = json.loads(open(inp.baseline).read())
    rows = []
    for k in ("porosity", "pore_size_nm"):
        b = base[k]
        rows.append({"method": "nearest class mean", "input": k, "accuracy": b["nearest_class_mean_accuracy"],
                     "ci95_low": b.get("accuracy_ci95", [np.nan, np.nan])[0],
                     "ci95_high": b.get("accuracy_ci95", [np.nan, np.nan])[1], "n_maps": b["n"],
                     "evaluated_on": "all maps (class means of all maps, as the reference)"})
        if "test" in b:
            t = b["test"]
            rows.append({"method": "nearest class mean", "input": k, "accuracy": t["accuracy"],
                         "ci95_low": t["accuracy_ci95"][0], "ci95_high": t["accuracy_ci95"][1],
                         "n_maps": t["n"], "evaluated_on": "test maps (class means of the training share)"})
    metrics, confusions = {}, {}
    for scale, path in zip(scales, inp.metrics):
        m = json.loads(open(path).read())
        metrics[scale] = m
        confusions[scale] = pd.DataFrame(m["confusion"]).T.reindex(index=m["classes"], columns=m["classes"])
        rows.append({"method": "DCNN", "input": scale, "accuracy": m["accuracy"],
                     "ci95_low": m["accuracy_ci95"][0], "ci95_high": m["accuracy_ci95"][1],
                     "n_maps": m["n_maps"], "evaluated_on": f"test maps ({m['split']} split)"})
    table = pd.DataFrame(rows)
    mio.write_table(table, out.table)
    best_base = max(base[k]["nearest_class_mean_accuracy"] for k in ("porosity", "pore_size_nm"))
    lead = {s: 100 * (metrics[s]["accuracy"] - best_base) for s in scales}
    mio.write_json({"classes": base["classes"], "rows": table.to_dict(orient="records"),
                    "best_baseline_accuracy": best_base, "dcnn_lead_points": lead}, out.summary)
    for s in scales:
        log.info("DCNN %s: %.1f %% against the best baseline %.1f %% (%+.1f points)", s,
                 100 * metrics[s]["accuracy"], 100 * best_base, lead[s])
    baseline = {k: base[k]["nearest_class_mean_accuracy"] for k in ("porosity", "pore_size_nm")}
    plots.save_png(plots.confusion_matrices(confusions, metrics, baseline), out.confusion)
    hist = {s: mio.read_table(p, ("epoch", "train_loss", "val_loss"), what="classifier metrics")
            for s, p in zip(scales, inp.histories)}
    plots.save_png(plots.classifier_history(hist), out.history)
    pred = mio.read_table(inp.predictions[0], ("map", "true", "predicted"), what="predictions")
    maps, _, idx, classes = read_maps(inp.maps, scales[0], metrics[scales[0]]["split"], "test")
    order = pd.Series(range(len(idx)), index=idx)
    sel = order.loc[pred["map"]].to_numpy()
    with mio.open_hdf5(inp.maps, "local-map dataset") as f:
        px = float(f.attrs["pixel_size_nm"])
    plots.save_png(plots.example_maps(maps[sel], pred["true"].to_numpy(), pred["predicted"].to_numpy(),
                                      classes, px, title=f"{scales[0]} test maps: true -> predicted "
                                      "class (red: wrong)"), out.examples)


if __name__ == "__main__":
    main(setup_script(globals()))
