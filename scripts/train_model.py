"""Rule script: train one network (one target, split and ensemble member).

The network is ``learning.architecture``: the seed's ResNet (``seed_resnet``,
the default) or CentreNet (``centre``, centre-weighted pooling of a fully
convolutional trunk; ``microprop.learning.models.CentreNet``).

Expects
-------
snakemake.input.dataset : str
    ``results/{specimen}/dataset.h5``.
snakemake.params.target : str
    ``"E_GPa"`` or ``"H_GPa"``.
snakemake.params.split : str
    ``"random"`` or ``"blocked"``.
snakemake.params.epochs : int
snakemake.params.batch_size : int
snakemake.params.lr : float
    Adam learning rate (seed paper: 1e-5).
snakemake.params.input_px : int or None
    Downsample crops to this edge (px) by area averaging; None = full crops.
snakemake.params.augment : bool
    D4 (rotations x flips) augmentation.
snakemake.params.device : str
    ``"auto"``, ``"cpu"`` or ``"cuda"``.
snakemake.params.bf16 : bool
    bf16 autocast on CUDA.
snakemake.params.resident_uint8 : bool or None
    Hold the crops as uint8 in memory (``None``: on CUDA only).
snakemake.params.compile : bool or str
    ``torch.compile`` the model (``true`` or a mode such as ``reduce-overhead``).
snakemake.params.seed : int
snakemake.params.member : int
    Ensemble member index (mixed into the seed).
snakemake.params.patience : int
snakemake.params.factor : float
    ``ReduceLROnPlateau`` patience (epochs) and factor.
snakemake.params.work_dir : str
    Checkpoint directory, e.g. ``results/{specimen}/models/{target}/m{member}/work``.
    ``last.pt`` lives here and is deliberately NOT a declared output:
    Snakemake deletes the outputs of a failed or killed job, so a checkpoint
    among them would be lost; in ``work_dir`` it survives and the rerun
    resumes from the last finished epoch. A ``last.pt`` of a different
    configuration stops the job with an InputError that says to delete
    ``work_dir``; one of another dataset (the dataset was rebuilt, e.g. after
    a new batch) is set aside as ``work_dir/stale-<time>`` and training
    starts afresh.
snakemake.params.cpu : dict, optional
    ``epochs``, ``lr``, ``input_px`` that replace the above when the run
    lands on a CPU (a reduced run; logged, and recorded in the checkpoint).
snakemake.params.arch_kwargs : dict, optional
    SeedResNet arguments overriding the seed paper's layout (tiny test
    configurations); absent or null = the paper's network.
snakemake.params.architecture : str, optional
    ``"seed_resnet"`` (default) or ``"centre"``.
snakemake.params.centre : dict, optional
    CentreNet options in physical units (``learning.centre``:
    ``resolution_nm, patch_um, sigma_um, widths, context, hidden, dropout``;
    :func:`microprop.learning.models.centre_arch_kwargs`), ``lr`` (its
    learning rate on any device; null: ``lr`` / ``cpu.lr``) and ``cpu_epochs``
    (the epochs of its reduced CPU run; null: ``cpu.epochs``).
    CentreNet reads the crops at full resolution and pools them itself, so
    ``input_px`` (and ``cpu.input_px``) do not apply to it.
snakemake.threads : int
    ``torch.set_num_threads``.

Writes
------
snakemake.output.best : str
    Copy of ``work_dir/best.pt`` (best validation loss), at the end.
snakemake.output.last : str
    Copy of ``work_dir/last.pt`` (final epoch), at the end.
snakemake.output.metrics : str
    Copy of ``work_dir/metrics.csv`` (one row per epoch), at the end.
"""
import logging
import shutil

from microprop.workflow import setup_script

log = logging.getLogger("microprop.train_model")


def main(snakemake):
    """Train one member (resuming from ``work_dir``); copy best, last and metrics out."""
    # imported here, after setup_script has set the thread counts and matplotlib's backend
    from microprop import io as mio
    from microprop.learning import (
        cpu_reduced_run,
        resolve_device,
        set_aside_stale_work,
        train,
    )
    from microprop.learning.models import ARCHITECTURES

    p = snakemake.params
    epochs, lr, input_px = cpu_reduced_run(p.get("device", "auto"), p.epochs, p.get("lr", 1e-5),
                                           p.get("input_px"), p.get("cpu"), where="learning.cpu")
    architecture = str(p.get("architecture") or "seed_resnet")
    arch_kwargs = p.get("arch_kwargs") or None
    if architecture == "centre":
        if input_px not in (None, "", "None"):
            log.info("CentreNet reads the crops at full resolution: input_px %s not applied",
                     input_px)
        input_px = None
        arch_kwargs = dict(p.get("centre") or {})
        cpu_epochs, centre_lr = arch_kwargs.pop("cpu_epochs", None), arch_kwargs.pop("lr", None)
        reduced = bool(p.get("cpu")) and resolve_device(p.get("device", "auto")).type == "cpu"
        if cpu_epochs and reduced:
            epochs = int(cpu_epochs)
        if centre_lr:
            lr = float(centre_lr)
        log.info("CentreNet: %d epochs, lr %g (learning.centre)", epochs, lr)
        arch_kwargs = arch_kwargs or None
    cls = ARCHITECTURES.get(architecture)
    set_aside_stale_work(p.work_dir, snakemake.input.dataset, what="dataset",
                         arch=cls.__name__ if cls else None)

    summary = train(
        snakemake.input.dataset, p.target, p.work_dir, split=p.get("split", "random"),
        epochs=epochs, batch_size=int(p.get("batch_size", 32)), lr=lr,
        input_px=None if input_px in (None, "", "None") else int(input_px),
        augment=bool(p.get("augment", True)), device=p.get("device", "auto"),
        bf16=bool(p.get("bf16", True)), compile=p.get("compile", False),
        resident_uint8=p.get("resident_uint8"),
        seed=int(p.get("seed", 0)), member=int(p.get("member", 0)),
        patience=int(p.get("patience", 5)), factor=float(p.get("factor", 0.9)),
        num_threads=int(getattr(snakemake, "threads", 1) or 1),
        arch_kwargs=arch_kwargs, architecture=architecture,
    )
    for key in ("best", "last", "metrics"):
        with mio.atomic_path(getattr(snakemake.output, key)) as tmp:
            shutil.copyfile(summary[key], tmp)


if __name__ == "__main__":
    main(setup_script(globals()))
