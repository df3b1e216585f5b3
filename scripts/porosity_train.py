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
import time
from pathlib import Path

from microprop.workflow import setup_script

log = logging.getLogger("microprop.porosity_train")


def main(snakemake):
    """Train (or resume) the classifier of one scale; copy best, last and metrics out."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    import torch
    from microprop import io as mio
    from microprop.learning import resolve_device, train_classifier

    p = snakemake.params
    epochs, lr, input_px = int(p.epochs), float(p.lr), p.get("input_px")
    if resolve_device(p.get("device", "auto")).type == "cpu" and p.get("cpu"):
        over = dict(p.get("cpu"))
        epochs, lr = int(over.get("epochs", epochs)), float(over.get("lr", lr))
        input_px = over.get("input_px", input_px)
        log.warning("training on a CPU: reduced run with epochs=%d, lr=%g, input_px=%s "
                    "(classifier.cpu of the study's config)", epochs, lr, input_px)
    work = Path(p.work_dir)
    last = work / "last.pt"
    if last.exists():
        old = torch.load(last, map_location="cpu", weights_only=True)["meta"].get("dataset_sha256")
        if old != mio.sha256_file(snakemake.input.maps):
            stale = work.parent / f"{work.name}-stale-{time.strftime('%Y%m%dT%H%M%S')}"
            log.warning("%s was trained on another maps.h5; moved to %s, training afresh", work, stale)
            work.rename(stale)
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
