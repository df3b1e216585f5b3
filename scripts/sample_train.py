"""Rule sample_train: the conductivity CNN with one fold of samples held out.

snakemake.input.dataset : ``samples.h5``
snakemake.params.fold : the held-out fold
snakemake.params.work_dir : checkpoint folder (``last.pt`` there is not an output: a killed job resumes)
snakemake.params.cnn : ``epochs``, ``batch_size``, ``lr``, ``device``, ``bf16``, ``seed``, ``patience``,
    ``factor``, ``arch_kwargs`` (``microprop.learning.train_sample_cnn``)
snakemake.params.isotropic : train on the distinct grid symmetries of each image
snakemake.params.val_fraction : share of the training samples that picks the epoch
snakemake.output.best, metrics : copies of the work folder's files
snakemake.output.summary : JSON: what ``train_sample_cnn`` returned (samples per part, throughput)
"""
import logging
import shutil
from pathlib import Path

from microprop.workflow import setup_script

log = logging.getLogger("microprop.sample_train")


def main(snakemake):
    """Train (or resume) one fold; copy best.pt and metrics.csv out."""
    from microprop import io as mio
    from microprop.learning import set_aside_stale_work, train_sample_cnn

    P = snakemake.params
    c = dict(P.cnn or {})
    work = Path(P.work_dir)
    set_aside_stale_work(work, snakemake.input.dataset, what="samples.h5")
    summary = train_sample_cnn(
        snakemake.input.dataset, int(P.fold), work, epochs=int(c.get("epochs", 40)),
        batch_size=int(c.get("batch_size", 16)), lr=float(c.get("lr", 1e-3)), isotropic=bool(P.isotropic),
        device=c.get("device", "auto"), bf16=bool(c.get("bf16", True)), seed=int(c.get("seed", 0)),
        patience=int(c.get("patience", 4)), factor=float(c.get("factor", 0.5)),
        val_fraction=float(P.val_fraction), num_threads=int(getattr(snakemake, "threads", 1) or 1),
        arch_kwargs=c.get("arch_kwargs") or None)
    for key in ("best", "metrics"):
        with mio.atomic_path(getattr(snakemake.output, key)) as tmp:
            shutil.copyfile(summary[key], tmp)
    mio.write_json({**summary, "fold": int(P.fold), "isotropic": bool(P.isotropic)}, snakemake.output.summary)
    log.info("fold %s: best val MAE %.3f at epoch %s, %d training images (symmetries included), %.1f img/s on %s",
             P.fold, summary["best_val_mae"] or float("nan"), summary["best_epoch"], summary["n_train_images"],
             summary["images_per_s"], summary["device"])


if __name__ == "__main__":
    main(setup_script(globals()))
