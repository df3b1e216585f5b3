"""Rule porosity_baseline: the statistical baseline of the second study, as in the reference.

Each local map is identified by the class whose mean porosity (or average pore
size) is nearest; one-way ANOVA and the Tukey-Kramer procedure at 90 %
confidence compare the class means (the reference's Table 2).

snakemake.input.maps : ``maps.h5`` (``descriptors/porosity``, ``descriptors/pore_size_nm``, ``labels``)
snakemake.params.alpha : float, family-wise error rate of Tukey-Kramer (default 0.10)
snakemake.output.summary : JSON: per descriptor the accuracy (class means and
    accuracy of all maps, as the reference; and ``test``: class means of the
    random split's training share, accuracy of its test maps) with Wilson 95 %
    intervals, the class means, the confusion matrix, the ANOVA F and p, and
    the definitions
snakemake.output.tukey : CSV: ``descriptor, group1, group2, meandiff, p_adj, lower, upper, reject``
snakemake.output.figure : PNG: porosity against average pore size per map,
    coloured by class (the reference's Fig. 3c), with the accuracies
"""
import logging

from microprop.workflow import setup_script

log = logging.getLogger("microprop.porosity_baseline")

DESCRIPTORS = {"porosity": "porosity (-)", "pore_size_nm": "average pore size (nm)"}


def main(snakemake):
    """Nearest class mean, ANOVA and Tukey-Kramer on the maps' descriptors; write table, JSON, figure."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    import json

    import numpy as np
    import pandas as pd
    from microprop import io as mio
    from microprop import plots, stats

    with mio.open_hdf5(snakemake.input.maps, "local-map dataset") as f:
        classes = json.loads(f.attrs["classes"])
        labels = np.asarray(classes, dtype=object)[f["labels"][:]]
        desc = {k: f[f"descriptors/{k}"][:] for k in DESCRIPTORS}
        # the reference's training share (train + val of the random split), for a held-out test
        share = np.zeros(len(labels), bool)
        for part in ("train", "val"):
            if f"splits/random/{part}" in f:
                share[f[f"splits/random/{part}"][:]] = True
        definitions = str(f.attrs.get("descriptor_definitions", ""))
    alpha = float(snakemake.params.get("alpha", 0.10))
    summary, tables = {"classes": classes, "n_maps": int(len(labels)), "definitions": definitions,
                       "confidence": 1 - alpha}, []
    for k in DESCRIPTORS:
        ncm = stats.nearest_class_mean(desc[k], labels, what=k)
        held = stats.nearest_class_mean(desc[k], labels, what=k, train=share)
        ci = stats.wilson_interval(round(ncm["accuracy"] * ncm["n"]), ncm["n"])
        ci_test = stats.wilson_interval(round(held["accuracy"] * held["n"]), held["n"])
        anova, table = stats.anova_tukey(desc[k], labels, alpha=alpha, what=k)
        tables.append(table)
        summary[k] = {"nearest_class_mean_accuracy": ncm["accuracy"], "class_means": ncm["class_means"],
                      "confusion": ncm["confusion"].to_dict(orient="index"), "n": ncm["n"],
                      "accuracy_ci95": list(ci),
                      "test": {"accuracy": held["accuracy"], "accuracy_ci95": list(ci_test), "n": held["n"],
                               "class_means": held["class_means"],
                               "note": "class means of the random split's training share, accuracy of its test maps"},
                      "anova": anova,
                      "not_separated_at_confidence": [f"{a}-{b}" for a, b, r in
                                                      zip(table.group1, table.group2, table.reject) if not r]}
        log.info("%s: nearest-class-mean accuracy %.3f; pairs not separated at %.0f %%: %s", k,
                 ncm["accuracy"], 100 * (1 - alpha), summary[k]["not_separated_at_confidence"])
    mio.write_table(pd.concat(tables, ignore_index=True), snakemake.output.tukey)
    mio.write_json(summary, snakemake.output.summary)
    plots.save_png(plots.porosity_scatter(desc["porosity"], desc["pore_size_nm"], labels, classes,
                                          {k: summary[k]["nearest_class_mean_accuracy"] for k in DESCRIPTORS}),
                   snakemake.output.figure)


if __name__ == "__main__":
    main(setup_script(globals()))
