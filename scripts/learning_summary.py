"""Rule learning_summary: the ResNet beside the baseline ladder, with intervals and the ceiling.

Every model's test R^2, MAE and (ResNet) interval coverage gets a bootstrap
95 % interval over the test crops (whole spatial blocks on the blocked
split), the ResNet the spread of its members' R^2, and on a specimen whose
truth is known every model its R^2 as a fraction of the attainable R^2
(``microprop.learning.summary_table``).

Inputs
------
snakemake.input.ladder : str
    CSV of the baseline ladder (``model, target, split, MSE, MAE, R2,
    n_train, n_test, ...``).
snakemake.input.ladder_predictions : str
    Its test predictions (``model, target, split, index, y, pred``).
snakemake.input.summaries : list of str
    Evaluation summaries (JSON), one per split and target
    (``results/{specimen}/learning/{split}/{target}/summary.json``).
snakemake.input.predictions : list of str
    Their ``predictions.csv``, same order.
snakemake.input.dataset : str
    ``results/{specimen}/dataset.h5``: ``/meta/block``, the spatial block
    of every crop (absent: crops are resampled one by one).
snakemake.input.ceiling : list of str
    ``[ceiling.csv, ceiling_predictions.csv]`` of rule learning_ceiling, or
    empty for a specimen without truth (then the ceiling columns are NaN,
    and the log says why).

Params
------
snakemake.params.n_boot : int, optional
    Bootstrap resamples (default 2000).
snakemake.params.seed : int, optional
    Seed of the resamples (default 0).
snakemake.params.confidence : float, optional
    Of the intervals (default 0.95).

Outputs
-------
snakemake.output.table : CSV
    ``microprop.learning.SUMMARY_COLUMNS``: ``model, target, split, MSE,
    MAE`` (GPa^2, GPa) with ``MAE_ci95_lo/hi``, ``R2`` with
    ``R2_ci95_lo/hi``, ``n_test``, ``bootstrap_unit`` (crop or block),
    ``n_units``, ``R2_attainable`` (with its interval), ``R2_noise_ceiling``,
    ``R2_oracle``, ``frac_of_attainable`` (with its interval), the members'
    ``n_members, members_R2_mean, _sd, _min, _max``, ``coverage`` (with its
    bootstrap ``coverage_ci95_lo/hi`` and binomial ``coverage_wilson_lo/hi``),
    ``interval_level``, ``interval_method``, ``coverage_pooled``,
    ``mean_width_GPa``, ``mean_width_pooled_GPa``; sorted by target, split
    and R^2.
snakemake.output.fig : PNG, optional
    ``microprop.plots.summary_figure`` of the table.
"""
import logging

from microprop.workflow import setup_script

log = logging.getLogger("microprop.learning_summary")


def main(snakemake):
    """Stack the ladder, the ResNet evaluations and the ceiling; bootstrap; write table and figure."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    import numpy as np
    from microprop import io, learning, plots
    from microprop.errors import InputError

    inp, p = snakemake.input, snakemake.params
    ladder = io.read_table(inp.ladder, ["model", "target", "split", "MSE", "MAE", "R2"],
                           what="baseline ladder")
    ladder_pred = io.read_table(inp.ladder_predictions,
                                ["model", "target", "split", "index", "y", "pred"],
                                what="baseline ladder predictions")
    summaries, predictions = list(inp.summaries), list(inp.get("predictions") or [])
    if len(predictions) != len(summaries):
        raise InputError(f"learning_summary: {len(summaries)} evaluation summaries but "
                         f"{len(predictions)} prediction tables")
    resnet = [(io.read_json(s), io.read_table(pr, ["index", "split", "y", "mean", "lo", "hi"],
                                              what="ResNet predictions"))
              for s, pr in zip(summaries, predictions)]

    blocks = None
    with io.open_hdf5(inp.dataset, "dataset") as fh:
        if "meta/block" in fh:
            blocks = np.asarray(fh["meta/block"][:], np.int64)
        else:
            log.info("%s has no /meta/block: the blocked split is bootstrapped over crops",
                     inp.dataset)

    ceiling = ceiling_pred = None
    files = [str(f) for f in (inp.get("ceiling") or [])]
    if files:
        table_file = next(f for f in files if not f.endswith("_predictions.csv"))
        pred_file = next(f for f in files if f.endswith("_predictions.csv"))
        ceiling = io.read_table(table_file, ["target", "split", "R2_attainable",
                                             "R2_noise_ceiling", "R2_oracle"],
                                what="ceiling table")
        ceiling_pred = io.read_table(pred_file, ["target", "split", "index", "y", "attainable"],
                                     what="ceiling predictions")
    else:
        log.info("no generator truth for this specimen (measured, not virtual, indents): the "
                 "attainable and noise-only ceiling columns are NaN")

    table = learning.summary_table(ladder, ladder_pred, resnet, ceiling, ceiling_pred,
                                   blocks=blocks, n_boot=int(p.get("n_boot", 0) or learning.N_BOOT),
                                   seed=int(p.get("seed", 0) or 0),
                                   confidence=float(p.get("confidence", 0.95) or 0.95))
    io.write_table(table, snakemake.output.table)
    if snakemake.output.get("fig"):
        plots.save_png(plots.summary_figure(table), snakemake.output.fig)
    for (target, split), part in table.groupby(["target", "split"]):
        log.info("%s, %s split: %s", target, split, "; ".join(
            f"{m} R2 {r:.3f} ({lo:.3f}-{hi:.3f})" + (f", {f:.0%} of attainable" if np.isfinite(f)
                                                       else "")
            for m, r, lo, hi, f in zip(part.model, part.R2, part.R2_ci95_lo, part.R2_ci95_hi,
                                       part.frac_of_attainable)))


if __name__ == "__main__":
    main(setup_script(globals()))
