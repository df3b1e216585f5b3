"""Rule baseline_ladder: a ladder of baselines crop -> E, H on the random and blocked splits.

Rungs (``microprop.learning``): the seed's table model (crop mean, 20
equal-count bins), linear regression on the crop mean, two-point statistics
+ PCA + ridge regression (materials knowledge systems), and gradient-boosted
trees on grey-level quantiles of the crop and of a central disc plus grey-class
fractions. Every rung is fitted on train + val and scored on test of the
dataset's ``/splits/random`` and ``/splits/blocked``, the splits the ResNet is
judged on.

Inputs
------
snakemake.input.dataset : str
    ``results/{specimen}/dataset.h5`` (``/images`` (N, S, S) float32,
    ``/targets/{E_GPa,H_GPa}``, ``/splits/{random,blocked}/{train,val,test}``,
    file attr ``pixel_size_nm``).

Params
------
snakemake.params.seed : int, optional
    Random state of the boosted trees and the PCA (default 0).
snakemake.params.downsample : int or None, optional
    Approximate crop edge in px for the two-point statistics (block-mean
    factor ``round(S / downsample)``; default 64; ``None`` = full resolution,
    slow and memory-hungry for 250 px crops).
snakemake.params.n_classes : int, optional
    Grey classes of the segmentation (default 4).
snakemake.params.disc_radius_um : float, optional
    Radius of the central disc (indent neighbourhood) in um (default 1.0).
snakemake.params.max_shift_um : float, optional
    Largest two-point shift in um (default 1.5).
snakemake.params.window_um : float or None, optional
    Edge of the central window (um) on which the two-point statistics are
    computed (default 5.0; ``None`` = whole crop).

Outputs
-------
snakemake.output.table : CSV
    ``model, target, split, MSE, MAE, R2, n_train, n_test, fit_s, fit_on,
    notes`` (MSE GPa^2, MAE GPa, fit_s seconds), 4 models x 2 targets x 2
    splits rows.
snakemake.output.fig : PNG
    Test R^2 per model, grouped bars random vs blocked split, one panel per
    target (caption ``report/ladder.rst``).
snakemake.output.predictions : CSV, optional
    Every rung's test predictions: ``model, target, split, index`` (dataset
    row), ``y``, ``pred`` (GPa); rule learning_summary bootstraps them.
"""
import contextlib
import logging
import time

from microprop.workflow import setup_script

log = logging.getLogger("microprop.baseline_ladder")


def main(snakemake):
    """Fit and score the ladder on ``snakemake.input.dataset``; write the table and figure."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    from microprop import io, learning, plots

    p = snakemake.params
    downsample = p.get("downsample", 64)
    downsample = None if downsample in (None, "None", "none", "") else int(downsample)
    window_um = p.get("window_um", 5.0)
    window_um = None if window_um in (None, "None", "none", "") else float(window_um)
    t0 = time.perf_counter()
    table, preds = learning.ladder(
        snakemake.input.dataset, seed=int(p.get("seed", 0)), downsample=downsample,
        n_classes=int(p.get("n_classes", 4)), disc_radius_um=float(p.get("disc_radius_um", 1.0)),
        max_shift_um=float(p.get("max_shift_um", 1.5)), window_um=window_um,
        return_predictions=True)
    log.info("ladder done in %.1f s", time.perf_counter() - t0)
    fig = plots.r2_figure(table)
    # all outputs or none: each is renamed into place only after all were written
    pred_out = snakemake.output.get("predictions")
    with contextlib.ExitStack() as stack:
        tmp_table = stack.enter_context(io.atomic_path(snakemake.output.table))
        tmp_fig = stack.enter_context(io.atomic_path(snakemake.output.fig))
        table.to_csv(tmp_table, index=False)
        fig.savefig(tmp_fig, format="png", dpi=plots.DPI)
        if pred_out:
            preds.to_csv(stack.enter_context(io.atomic_path(pred_out)), index=False)


if __name__ == "__main__":
    main(setup_script(globals()))
