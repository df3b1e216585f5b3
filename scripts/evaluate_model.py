"""Rule evaluate_model: score the trained ensemble, calibrate its interval, draw the figures.

Every member predicts every crop of the split scheme; the ensemble mean is
scored per split (train, val, test), the interval ``mean +- q * spread`` is
calibrated by split conformal prediction on ``val`` (on the blocked split by
block conformal prediction over the validation blocks) and its coverage
measured on ``test`` (``microprop.learning``).

Inputs
------
snakemake.input.dataset : str
    ``results/{specimen}/dataset.h5`` (``/images``, ``/targets/*``,
    ``/meta/*``, ``/splits/{random,blocked}/*``; attrs ``pixel_size_nm``,
    ``quantity``).
snakemake.input.checkpoints : list of str
    The members' ``best.pt`` (``microprop.learning.load_model``), all for the
    same target and split scheme.
snakemake.input.metrics : list of str
    The members' ``metrics.csv`` (``epoch, train_loss, train_mae_GPa,
    val_loss, val_mse_GPa2, val_mae_GPa, ...``), in the order of the
    checkpoints.

Params
------
snakemake.params.target : str
    ``E_GPa`` or ``H_GPa``; checked against the checkpoints.
snakemake.params.split : str
    Split scheme, ``random`` or ``blocked`` (default ``random``).
snakemake.params.level : float
    Nominal coverage of the prediction interval (default 0.9).
snakemake.params.device : str
    ``auto`` (CUDA if available), ``cpu`` or ``cuda`` (default ``auto``).
snakemake.params.mc_samples : int
    MC-dropout passes per member; 0 = deterministic members (default 0).
snakemake.params.interval_method : str, optional
    ``auto`` (default: ``block`` on the blocked split, ``pooled`` on the
    random one), ``pooled`` or ``block`` (``microprop.learning.evaluate``).
snakemake.params.block_confidence : float or None, optional
    Block conformal: probability that a new block is covered at ``level``
    (default ``level``).
snakemake.params.batch_size : int, optional
    Crops per forward pass (default 64).
snakemake.params.seed : int, optional
    Seed of the dropout masks and of the example-crop choice (default 0).
snakemake.params.n_crops : int, optional
    Example crops in ``fig_crops`` (default 12).

Outputs
-------
snakemake.output.summary : JSON
    ``target, split_scheme, level, n_members, mc_samples, n_predictions,
    checkpoints``; ``metrics.{train,val,test}.ensemble`` and ``.members[]``
    (``MSE`` GPa^2, ``MAE`` GPa, ``R2``, ``n``); ``interval.conformal``
    (``method, q, k, n_cal, floor, z, q_pooled, coverage_test,
    coverage_test_ci95, coverage_val, mean_width_test``; with blocks
    ``m_blocks, block_confidence, block_scales, q_unit``),
    ``interval.conformal_pooled`` (the pooled split-conformal interval: ``q,
    coverage_test, coverage_test_ci95, coverage_val, mean_width_test``) and
    ``interval.raw`` (Gaussian ``mean +- z * spread``; ``z, coverage_test,
    coverage_val, mean_width_test``). Widths in GPa.
snakemake.output.predictions : CSV
    One row per crop: ``index, split, specimen, area, batch, indent, x_um,
    y_um, block, y, mean, std, lo, hi, raw_lo, raw_hi`` (GPa; ``lo, hi`` the
    interval of ``interval.conformal``).
snakemake.output.fig_history : PNG
    Training and validation MSE and MAE against epoch.
snakemake.output.fig_scatter : PNG
    Predicted against measured, train and test, with test intervals.
snakemake.output.fig_crops : PNG
    Random test crops with measured and predicted values.
"""
import logging
from pathlib import Path

from microprop.workflow import setup_script

log = logging.getLogger("microprop.evaluate_model")
GREY_LABELS = {"eta": "backscatter coefficient eta (-)", "porosity": "porosity (-)"}


def main(snakemake):
    """Evaluate the ensemble on the dataset; write the summary, predictions and figures."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    from microprop import data, io, learning, plots
    from microprop.plots import _learning

    p = snakemake.params
    inp = snakemake.input
    target = p.get("target")
    split = p.get("split", "random") or "random"
    level = float(p.get("level", 0.9))
    seed = int(p.get("seed", 0) or 0)
    checkpoints = [str(c) for c in inp.checkpoints]
    metric_files = [str(m) for m in inp.metrics]

    res = learning.evaluate(checkpoints, inp.dataset, split=split, device=p.get("device", "auto"),
                            level=level, mc_samples=int(p.get("mc_samples", 0) or 0),
                            target=target, batch_size=int(p.get("batch_size", 64) or 64),
                            seed=seed, interval_method=p.get("interval_method", "auto") or "auto",
                            block_confidence=p.get("block_confidence"))
    pred = res.pop("predictions")

    tables = [io.read_table(m, required=_learning._HISTORY_COLUMNS, what="training metrics")
              for m in metric_files]
    labels = [Path(m).parent.name or f"member {i}" for i, m in enumerate(metric_files)]
    fig_history = plots.training_history(tables, labels=labels, quantity=res["target"])
    fig_scatter = plots.predicted_vs_measured(
        pred, quantity=res["target"], level=level,
        title=f"{res['target']} network, {split} split, "
              f"{res['n_predictions']} prediction(s) per crop")
    with data.open_dataset(inp.dataset) as fh:
        quantity = str(data.read_attrs(fh).get("quantity", "eta"))
        fig_crops = plots.example_crops(
            fh["images"], pred, pixel_size_nm=res["pixel_size_nm"],
            n=int(p.get("n_crops", 12) or 12), seed=seed, quantity=res["target"],
            grey_label=GREY_LABELS.get(quantity, quantity))

    o = snakemake.output
    io.write_json(res, o.summary)
    io.write_table(pred, o.predictions)
    plots.save_png(fig_history, o.fig_history)
    plots.save_png(fig_scatter, o.fig_scatter)
    plots.save_png(fig_crops, o.fig_crops)


if __name__ == "__main__":
    main(setup_script(globals()))
