"""Rule baselines: the seed's table model and a linear model, grey -> E and H.

Each crop is reduced to its mean calibrated value (NaN pixels ignored); the
table model predicts the mean target of the crop's grey bin (equal-count
bins), the linear model a least-squares line. Both are fitted on the train
split and scored on the test split: the dataset's ``/splits/random`` when
present (train + val for fitting, test for scoring, the split the CNN is
judged on), else a seeded 80/20 random split.

Inputs
------
snakemake.input.dataset : str
    ``results/{specimen}/dataset.h5``: ``/images`` (N, S, S) float32,
    ``/targets/E_GPa``, ``/targets/H_GPa`` (N,), optional
    ``/splits/random/{train,val,test}``; file attr ``quantity`` (``eta`` or
    ``porosity``) labels the grey axis.

Params
------
snakemake.params.n_bins : int
    Bins of the table model (default 10).
snakemake.params.seed : int
    Seed of the fallback random split (default 0).
snakemake.params.test_fraction : float, optional
    Test share of the fallback split (default 0.2).

Outputs
-------
snakemake.output.table : CSV
    ``model, target, MSE, MAE, R2, n_train, n_test, split`` (MSE in GPa^2,
    MAE in GPa), rows for ``table`` and ``linear`` x ``E_GPa``/``H_GPa``.
snakemake.output.fig_table_model : PNG
    Table model for E: predicted vs measured and bin means vs grey.
snakemake.output.fig_table_model_H : PNG
    Same for H.
snakemake.output.bins : CSV, optional
    The table-model bins of both targets (``target, bin, grey_lo, grey_hi,
    grey_mean, y_mean, y_std, n``).
"""
import logging

from microprop.workflow import setup_script

log = logging.getLogger("microprop.baselines")
TARGETS = ("E_GPa", "H_GPa")


def main(snakemake):
    """Fit and score the table and linear models; write the table, bins and figures."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    import pandas as pd
    from microprop import io, plots, stats

    p = snakemake.params
    n_bins = int(p.get("n_bins", 10))
    seed = int(p.get("seed", 0))
    test_fraction = float(p.get("test_fraction", 0.2))

    means, targets, split, quantity = stats.read_crop_means(snakemake.input.dataset, TARGETS)
    split_kw = {} if split is None else {"train_index": split[0], "test_index": split[1]}
    split_name = "seeded random 80/20" if split is None else "dataset /splits/random"
    if split is None and test_fraction != 0.2:
        split_name = f"seeded random, test fraction {test_fraction}"
    log.info("%d crops; split: %s; grey quantity %s", means.size, split_name, quantity)

    rows, bins, figs = [], [], {}
    for target in TARGETS:
        y = targets[target]
        tab = stats.table_model(means, y, n_bins=n_bins, seed=seed, test_fraction=test_fraction,
                                **split_kw)
        lin = stats.linear_model(means, y, seed=seed, test_fraction=test_fraction, **split_kw)
        for name, res in (("table", tab), ("linear", lin)):
            rows.append({"model": name, "target": target, **res["metrics"],
                         "n_train": res["n_train"], "n_test": res["n_test"], "split": split_name})
            log.info("%s model, %s: %s", name, target, res["metrics"])
        b = tab["table"].copy()
        b.insert(0, "target", target)
        bins.append(b)
        te = tab["test_index"]
        figs[target] = plots.table_model_scatter(
            means[te], y[te], tab["y_pred"], tab["metrics"], quantity=target, table=tab["table"],
            grey_label=f"mean crop value ({quantity})",
            title=f"Table model ({len(tab['table'])} equal-count bins), {target}")

    o = snakemake.output
    io.write_table(pd.DataFrame(rows), o.table)
    if o.get("bins"):
        io.write_table(pd.concat(bins, ignore_index=True), o.bins)
    plots.save_png(figs["E_GPa"], o.fig_table_model)
    plots.save_png(figs["H_GPa"], o.fig_table_model_H)


if __name__ == "__main__":
    main(setup_script(globals()))
