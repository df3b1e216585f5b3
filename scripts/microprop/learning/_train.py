"""Training loop of the seed ResNet with checkpoint/resume, prediction, and a
known-answer synthetic dataset.

One call of :func:`train` fits one model (one target, one split, one ensemble
member) on the crops of a ``dataset.h5`` (contract: ``docs/ARCHITECTURE.md``):

- the train and validation crops of the split are read into memory once,
  optionally downsampled once to ``input_px`` by area averaging, and kept
  resident (on CUDA on the GPU when they fit, else in pinned CPU memory); on
  CUDA they are held as uint8 by default (:func:`quantize_uint8`, 4x less
  memory; dequantised per batch on the device);
- targets are standardised with the training mean and standard deviation
  (kept in the checkpoint); the loss is the MSE of the standardised target;
- Adam, ``ReduceLROnPlateau`` on the validation loss, the checkpoint with the
  best validation loss kept as ``best.pt``;
- augmentation by the 8 symmetries of the square (dihedral group D4), drawn
  per sample, applied per batch on the device with one gather;
- on CUDA bf16 autocast, channels_last and optional ``torch.compile``; on CPU
  float32 (bf16 autocast with ``cpu_bf16``);
- the step is annotated for ``torch.profiler`` (``microprop.data``,
  ``microprop.forward``, ``microprop.backward``, ``microprop.optimizer``), so a
  trace shows where the time goes (``benchmarks/bench_training.py --profile``);
- ``last.pt`` written atomically after every epoch with everything needed to
  continue (model, optimiser, scheduler, all RNG states, history): a killed
  run restarted on the same ``out_dir`` continues from the last full epoch and
  reproduces the uninterrupted run (bitwise on CPU, tested);
- ``metrics.csv`` rewritten after every epoch, one row per epoch.

Checkpoint contract (``best.pt`` and ``last.pt`` are ``torch.save`` dicts,
loadable with ``torch.load(..., weights_only=True)``):

- ``"model"``: state_dict of :class:`microprop.resnet.SeedResNet`;
- ``"meta"``: ``target`` (e.g. ``"E_GPa"``), ``target_mean``, ``target_std``
  (GPa; prediction = output * std + mean), ``input_px`` (int or None),
  ``crop_size_px``, ``arch`` (``"SeedResNet"``), ``arch_kwargs``, ``epoch``,
  ``val_loss`` (standardised MSE at that epoch), ``dataset`` (path),
  ``dataset_sha256``, ``split``, ``seed``, ``member``, ``config``;
- ``last.pt`` also: ``"optimizer"``, ``"scheduler"``, ``"rng"``,
  ``"best_val_loss"``, ``"best_epoch"``, ``"epoch"``, ``"history"``.
"""
from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F
from torch.profiler import record_function

from .. import io as mio
from ..data import read_split
from ..data._reader import _check_dataset
from ..errors import InputError
from ..progress import progress
from ._augment import (
    _gather,
    _to_device,
    d4_apply,
    d4_index_maps,
    downsample_images,
    quantize_uint8,
)
from ._checkpoint import (
    _config_diff,
    _load,
    _rng_state,
    _save,
    _set_rng_state,
    member_seed,
)
from ._device import resolve_device
from .models import SeedResNet

log = logging.getLogger(__name__)

METRIC_COLUMNS = ("epoch", "train_loss", "train_mae_GPa", "val_loss", "val_mse_GPa2",
                  "val_mae_GPa", "lr", "epoch_s", "data_wait_s", "images_per_s")


MIN_INPUT_PX = 16


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune",
                 "max-autotune-no-cudagraphs")


class TrainingStopped(KeyboardInterrupt):
    """Raised by :func:`train` after ``stop_after_steps`` steps (a simulated kill)."""


def _evaluate(model, x, y, batch_size, dev, autocast, channels_last, dequant=None):
    """Standardised predictions of ``x`` in eval mode (no augmentation)."""
    model.eval()
    preds = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = _gather(x, slice(i, i + batch_size), dev, dequant)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
                preds.append(model(xb).float())
    return torch.cat(preds) if preds else torch.zeros(0, device=dev)


def train(dataset_path, target, out_dir, split="random", epochs=100, batch_size=32, lr=1e-5,
          input_px=None, augment=True, device="auto", bf16=True, channels_last=True,
          compile=False, seed=0, patience=5, factor=0.9, member=0, num_threads=None,
          log_every=50, stop_after_steps=None, cpu_bf16=False, arch_kwargs=None,
          resident_uint8=None):
    """Train the seed ResNet on one target of ``dataset.h5``; resume if possible.

    Parameters
    ----------
    dataset_path : path-like
        ``dataset.h5`` (``/images`` (N, S, S) float32, ``/targets/<target>``,
        ``/splits/<split>/{train,val}``).
    target : {"E_GPa", "H_GPa"}
    out_dir : path-like
        Work directory: ``last.pt``, ``best.pt``, ``metrics.csv``. If
        ``last.pt`` exists, training resumes from it.
    split : {"random", "blocked"}
    epochs : int
        Total number of epochs (a resumed run continues up to it; a larger
        value than the checkpoint's extends a finished run).
    batch_size : int
    lr : float
        Adam learning rate (seed paper: 1e-5).
    input_px : int or None
        Downsample the crops once at load to ``input_px`` x ``input_px`` by
        area averaging (>= 16); None keeps the crop size.
    augment : bool
        Random D4 symmetry per training sample and step.
    device : str
        ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``.
    bf16 : bool
        bf16 autocast on CUDA.
    channels_last : bool
        channels_last memory format for model and batches (CUDA and CPU).
    compile : bool or str
        ``torch.compile`` the model (CUDA; on CPU it needs a C++ compiler).
        ``True`` for the default mode, or a mode name: ``"reduce-overhead"``
        (CUDA graphs: removes the per-layer launch cost that dominates small
        batches of this small network) or ``"max-autotune"``.
    seed, member : int
        Seeds of Python, numpy and torch, the batch order and the
        augmentation are derived from both (:func:`member_seed`).
    patience, factor : int, float
        ``ReduceLROnPlateau`` on the validation loss (seed: 5, 0.9).
    num_threads : int, optional
        ``torch.set_num_threads``.
    log_every : int
        Log the running training loss every ``log_every`` steps (0: never).
    stop_after_steps : int, optional
        Raise :class:`TrainingStopped` after this many optimisation steps of
        this call, without a checkpoint for the partial epoch (simulates a
        kill; for tests).
    cpu_bf16 : bool
        Also use bf16 autocast on CPU (off: CPU runs in float32).
    resident_uint8 : bool or None
        Hold the resident train/val crops as uint8 (:func:`quantize_uint8`
        over their joint range), dequantised per batch on the device.
        ``None`` (default): on CUDA only.
    arch_kwargs : dict, optional
        Override :class:`~microprop.resnet.SeedResNet` arguments (tests use a
        narrower network); None is the seed paper's layout.

    Returns
    -------
    dict
        ``best_epoch``, ``best_val_loss`` (standardised MSE),
        ``best_val_mse_GPa2``, ``best_val_mae_GPa``, ``epochs_run`` (in this
        call), ``epoch`` (last finished), ``resumed_from`` (epoch or None),
        ``best``, ``last``, ``metrics`` (paths), ``target_mean``,
        ``target_std``, ``device``.

    Raises
    ------
    InputError
        Bad dataset or arguments; ``last.pt`` from a different configuration
        (the message lists the differing keys; delete ``out_dir`` to start
        afresh).
    TrainingStopped
        After ``stop_after_steps`` steps.
    """
    t_start = time.perf_counter()
    dataset_path = _check_dataset(dataset_path, target, split)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"best": out_dir / "best.pt", "last": out_dir / "last.pt",
             "metrics": out_dir / "metrics.csv"}
    epochs, batch_size = int(epochs), int(batch_size)
    if isinstance(compile, str) and compile not in COMPILE_MODES:
        raise InputError(f"compile {compile!r}: expected true/false or one of {COMPILE_MODES}")
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise InputError(f"epochs ({epochs}), batch_size ({batch_size}) and lr ({lr}) "
                         "must be positive")
    if num_threads:
        torch.set_num_threads(int(num_threads))
    dev = resolve_device(device)
    autocast = bool(bf16) and (dev.type == "cuda" or bool(cpu_bf16))
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")

    # -- data
    x_tr, y_tr, _ = read_split(dataset_path, target, split, "train")
    x_va, y_va, _ = read_split(dataset_path, target, split, "val")
    if len(x_tr) < 2 or len(x_va) < 1:
        raise InputError(f"{dataset_path}: split {split!r} has {len(x_tr)} train and "
                         f"{len(x_va)} val crops; need at least 2 and 1")
    crop_px = int(x_tr.shape[-1])
    if input_px is not None:
        input_px = int(input_px)
        if not MIN_INPUT_PX <= input_px <= crop_px:
            raise InputError(f"input_px {input_px}: expected {MIN_INPUT_PX}..{crop_px} "
                             f"(the crops of {dataset_path} are {crop_px} px)")
        if input_px == crop_px:
            input_px = None
    elif crop_px < MIN_INPUT_PX:
        raise InputError(f"{dataset_path}: crops of {crop_px} px, at least {MIN_INPUT_PX} needed")
    y_mean, y_std = float(np.mean(y_tr)), float(np.std(y_tr))
    if not y_std > 0:
        raise InputError(f"{dataset_path}: /targets/{target} is constant over the train split")

    arch = SeedResNet().arch_kwargs if arch_kwargs is None else \
        SeedResNet(**arch_kwargs).arch_kwargs
    config = {"dataset": str(dataset_path), "dataset_sha256": mio.sha256_file(dataset_path),
              "target": target, "split": split, "epochs": epochs, "batch_size": batch_size,
              "lr": float(lr), "input_px": input_px, "augment": bool(augment),
              "autocast_bf16": autocast, "channels_last": bool(channels_last),
              "compile": compile if isinstance(compile, str) else bool(compile), "seed": int(seed),
              "resident_uint8": bool(dev.type == "cuda" if resident_uint8 is None
                                     else resident_uint8), "member": int(member),
              "patience": int(patience), "factor": float(factor), "arch_kwargs": arch}
    meta_base = {"target": target, "target_mean": y_mean, "target_std": y_std,
                 "input_px": input_px, "crop_size_px": crop_px, "arch": "SeedResNet",
                 "arch_kwargs": arch, "dataset": str(dataset_path),
                 "dataset_sha256": config["dataset_sha256"], "split": split,
                 "seed": int(seed), "member": int(member), "config": config}

    ckpt = None
    if paths["last"].exists():
        ckpt = _load(paths["last"])
        diff = _config_diff(ckpt["meta"]["config"], config)
        if diff:
            raise InputError(
                f"{paths['last']}: checkpoint of a different configuration, cannot resume "
                f"({', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in diff.items())}); "
                f"delete {out_dir} to start afresh")

    # -- seeds, model, optimiser
    s = member_seed(seed, member)
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)
    gens = {"shuffle": torch.Generator().manual_seed(s + 1),
            "augment": torch.Generator().manual_seed(s + 2)}
    model = SeedResNet(**arch)
    memfmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(dev, memory_format=memfmt)
    # fused Adam on CUDA: one kernel for all parameters instead of one per tensor
    opt = torch.optim.Adam(model.parameters(), lr=lr, fused=dev.type == "cuda" or None)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=factor,
                                                       patience=patience)
    history, best_val, best_epoch, start = [], math.inf, None, 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        _set_rng_state(ckpt["rng"], gens)
        history = list(ckpt["history"])
        best_val, best_epoch, start = ckpt["best_val_loss"], ckpt["best_epoch"], ckpt["epoch"]
        y_mean, y_std = ckpt["meta"]["target_mean"], ckpt["meta"]["target_std"]
        log.info("resuming %s from epoch %d (best val loss %.4g at epoch %s)", paths["last"],
                 start, best_val, best_epoch)
    if compile:
        net = torch.compile(model, mode=None if compile is True else str(compile))
    else:
        net = model

    # -- tensors: once, on the device when possible
    x_tr, x_va = downsample_images(x_tr, input_px), downsample_images(x_va, input_px)
    dequant = None
    if config["resident_uint8"]:
        lo = float(min(x_tr.min(), x_va.min()))
        hi = float(max(x_tr.max(), x_va.max()))
        (x_tr, lo, step), (x_va, _, _) = quantize_uint8(x_tr, lo, hi), quantize_uint8(x_va, lo, hi)
        dequant = (lo, step)
        log.info("crops held as uint8: range %.4g..%.4g, step %.3g", lo, hi, step)
    x_tr, x_va = _to_device(x_tr, dev), _to_device(x_va, dev)
    log.info("resident crops: %.1f MB on %s", (x_tr.numel() * x_tr.element_size()
             + x_va.numel() * x_va.element_size()) / 1e6, x_tr.device)
    z_tr = torch.as_tensor((y_tr - y_mean) / y_std, dtype=torch.float32, device=dev)
    z_va = torch.as_tensor((y_va - y_mean) / y_std, dtype=torch.float32, device=dev)
    maps = d4_index_maps(x_tr.shape[-1], device=dev) if augment else None
    n_tr = len(x_tr)
    steps_per_epoch = math.ceil(n_tr / batch_size)
    log.info("training %s on %s (%s split): %d train / %d val crops of %d px (input %d px), "
             "%d steps/epoch, device %s, autocast bf16 %s, %d threads", target, dataset_path,
             split, n_tr, len(x_va), crop_px, x_tr.shape[-1], steps_per_epoch, dev, autocast,
             torch.get_num_threads())

    steps_done = 0
    bar = progress(total=max(0, epochs - start) * steps_per_epoch,
                   desc=f"train {target} m{member}", unit="step")
    try:
        for epoch in range(start + 1, epochs + 1):
            model.train()
            t0 = time.perf_counter()
            wait = 0.0
            lr_now = opt.param_groups[0]["lr"]
            sum_loss = torch.zeros((), device=dev, dtype=torch.float64)
            sum_abs = torch.zeros((), device=dev, dtype=torch.float64)
            # the epoch's order and symmetries drawn at once (the same sequence as
            # per-batch draws) and copied to the device once: a blocking
            # host-to-device copy per step would make the host wait for the GPU
            perm = torch.randperm(n_tr, generator=gens["shuffle"])
            perm_dev = perm.to(dev)
            perm_x = perm_dev if x_tr.device == perm_dev.device else perm
            if augment:
                choices = torch.randint(0, 8, (n_tr,), generator=gens["augment"]).to(dev)
            for i in range(0, n_tr, batch_size):
                tw = time.perf_counter()
                with record_function("microprop.data"):
                    xb = _gather(x_tr, perm_x[i:i + batch_size], dev, dequant)
                    yb = z_tr[perm_dev[i:i + batch_size]]
                    if augment:
                        xb = d4_apply(xb, choices[i:i + batch_size], maps)
                    if channels_last:
                        xb = xb.contiguous(memory_format=torch.channels_last)
                wait += time.perf_counter() - tw
                with record_function("microprop.forward"):
                    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
                        pred = net(xb)
                    loss = F.mse_loss(pred.float(), yb)
                with record_function("microprop.backward"):
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                with record_function("microprop.optimizer"):
                    opt.step()
                sum_loss += loss.detach().double() * len(yb)
                sum_abs += (pred.detach().double() - yb.double()).abs().sum()
                steps_done += 1
                bar.update(1)
                if log_every and steps_done % int(log_every) == 0:
                    log.info("epoch %d step %d: loss %.4f", epoch, steps_done, loss.item())
                if stop_after_steps is not None and steps_done >= int(stop_after_steps):
                    raise TrainingStopped(f"stopped after {steps_done} steps (epoch {epoch})")
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t_train = time.perf_counter() - t0
            p_va = _evaluate(net, x_va, z_va, max(batch_size, 64), dev, autocast, channels_last,
                             dequant)
            val_loss = float(F.mse_loss(p_va.double(), z_va.double()))
            err = (p_va.double() - z_va.double()) * y_std
            row = {"epoch": epoch,
                   "train_loss": float(sum_loss) / n_tr,
                   "train_mae_GPa": float(sum_abs) / n_tr * y_std,
                   "val_loss": val_loss,
                   "val_mse_GPa2": float((err ** 2).mean()),
                   "val_mae_GPa": float(err.abs().mean()),
                   "lr": lr_now,
                   "epoch_s": time.perf_counter() - t0,
                   "data_wait_s": wait,
                   "images_per_s": n_tr / t_train if t_train > 0 else float("nan")}
            sched.step(val_loss)
            meta = {**meta_base, "target_mean": y_mean, "target_std": y_std, "epoch": epoch,
                    "val_loss": val_loss}
            if val_loss < best_val:
                best_val, best_epoch = val_loss, epoch
                _save({"model": model.state_dict(), "meta": meta}, paths["best"])
            history.append(row)
            _save({"model": model.state_dict(), "meta": meta, "optimizer": opt.state_dict(),
                   "scheduler": sched.state_dict(), "rng": _rng_state(gens),
                   "best_val_loss": best_val, "best_epoch": best_epoch, "epoch": epoch,
                   "history": history}, paths["last"])
            mio.write_table(pd.DataFrame(history, columns=list(METRIC_COLUMNS)),
                            paths["metrics"])
            log.info("epoch %d/%d: train loss %.4f, val loss %.4f (MAE %.3f GPa), lr %.3g, "
                     "%.1f s, %.1f img/s%s", epoch, epochs, row["train_loss"], val_loss,
                     row["val_mae_GPa"], lr_now, row["epoch_s"], row["images_per_s"],
                     " *" if best_epoch == epoch else "")
    finally:
        bar.close()
    if not paths["metrics"].exists():  # nothing left to run, a finished checkpoint
        mio.write_table(pd.DataFrame(history, columns=list(METRIC_COLUMNS)), paths["metrics"])
    best_row = next((r for r in history if r["epoch"] == best_epoch), {})
    summary = {"best_epoch": best_epoch, "best_val_loss": best_val,
               "best_val_mse_GPa2": best_row.get("val_mse_GPa2"),
               "best_val_mae_GPa": best_row.get("val_mae_GPa"),
               "epochs_run": max(0, epochs - start), "epoch": max(start, epochs),
               "resumed_from": start if ckpt is not None else None,
               "target_mean": y_mean, "target_std": y_std, "device": str(dev),
               "wall_s": time.perf_counter() - t_start,
               **{k: str(v) for k, v in paths.items()}}
    log.info("done: best val loss %.4g at epoch %s", best_val, best_epoch)
    return summary
