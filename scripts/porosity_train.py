"""Rule porosity_train: the study's DCNN on one scale (MulF or MicF) of ``maps.h5``.

snakemake.input.maps : ``results/{study}/maps.h5``
snakemake.params.scale : ``"MulF"`` or ``"MicF"``
snakemake.params.split : ``"random"`` or ``"spatial"``
snakemake.params.work_dir : checkpoint folder; ``last.pt`` there is not a
    declared output, so a killed job keeps it and the rerun resumes from the
    last finished epoch (a ``last.pt`` of another ``maps.h5`` is set aside as
    ``work-stale-<time>``)
snakemake.params.epochs, batch_size, lr, input_px, augment, device, bf16,
    compile, resident_uint8, seed, patience, factor, arch_kwargs : as in
    ``microprop.learning.train_classifier``
snakemake.params.cpu : dict, optional: ``epochs``, ``lr``, ``input_px`` for a
    run that lands on a CPU (a reduced run, logged)
snakemake.output.best, last, metrics : copies of the work folder's files
snakemake.output.summary : JSON: what ``train_classifier`` returned (device,
    throughput in maps/s, best epoch)
"""
import logging
import shutil
from pathlib import Path

from microprop.workflow import setup_script

log = logging.getLogger("microprop.porosity_train")


def main(snakemake):
    """Train (or resume) the classifier of one scale; copy best, last and metrics out."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    from microprop import io as mio
    from microprop.learning import cpu_reduced_run, set_aside_stale_work, train_classifier

    p = snakemake.params
    epochs, lr, input_px = cpu_reduced_run(p.get("device", "auto"), p.epochs, p.lr, p.get("input_px"),
                                           p.get("cpu"), where="classifier.cpu")
    work = Path(p.work_dir)
    set_aside_stale_work(work, snakemake.input.maps, what="maps.h5")
    summary = train_classifier(
        snakemake.input.maps, str(p.scale), work, split=str(p.split), epochs=epochs,
        batch_size=int(p.batch_size), lr=lr, input_px=None if input_px in (None, "") else int(input_px),
        augment=bool(p.augment), device=p.device, bf16=bool(p.bf16), compile=p.get("compile", False),
        resident_uint8=p.get("resident_uint8"), seed=int(p.seed), patience=int(p.patience),
        factor=float(p.factor), num_threads=int(getattr(snakemake, "threads", 1) or 1),
        arch_kwargs=p.get("arch_kwargs") or None)
    for key in ("best", "last", "metrics"):
        with mio.atomic_path(getattr(snakemake.output, key)) as tmp:
            shutil.copyfile(summary[key], tmp)
    mio.write_json({**summary, "scale": str(p.scale), "split": str(p.split), "epochs": epochs,
                    "lr": lr, "input_px": input_px}, snakemake.output.summary)
    log.info("%s classifier: best val accuracy %.3f at epoch %s, %.1f maps/s on %s", p.scale,
             summary["best_val_accuracy"], summary["best_epoch"], summary["images_per_s"], summary["device"])


if __name__ == "__main__":
    main(setup_script(globals()))
