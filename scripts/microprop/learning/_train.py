"""The training loop of the seed ResNet (and CentreNet), with resume from its last checkpoint.

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
  reproduces the uninterrupted run (bitwise on CPU, tested); the contents of
  ``best.pt`` and ``last.pt`` are given in :mod:`microprop.learning._checkpoint`;
- ``metrics.csv`` rewritten after every epoch, one row per epoch
  (:data:`METRIC_COLUMNS`).

:func:`train` runs these steps in order: check the arguments and choose the
device (:func:`_check_arguments`, :func:`_setup_device`); read the split
(:func:`_read_train_val`); fix the run's configuration (:func:`_run_config`)
and find a ``last.pt`` to resume (:func:`_resumable_checkpoint`); seed the
RNGs and build model, optimiser and scheduler (:class:`_Training`), resume or
start, hold the crops resident; then per epoch train, validate, schedule,
checkpoint and log; finally the summary (:func:`_summary`). The order of
these steps, and of the random draws inside them, is what makes a resumed run
reproduce an uninterrupted one: keep it.
"""
from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F
from torch.profiler import record_function

from .. import io as mio
from ..data import read_attrs, read_crops
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
from .models import ARCHITECTURES, CentreNet, SeedResNet, centre_arch_kwargs

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


def _check_arguments(epochs, batch_size, lr, compile):
    """``epochs`` and ``batch_size`` as int; :class:`InputError` for a bad argument."""
    epochs, batch_size = int(epochs), int(batch_size)
    if isinstance(compile, str) and compile not in COMPILE_MODES:
        raise InputError(f"compile {compile!r}: expected true/false or one of {COMPILE_MODES}")
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise InputError(f"epochs ({epochs}), batch_size ({batch_size}) and lr ({lr}) "
                         "must be positive")
    return epochs, batch_size


def _setup_device(device, num_threads, bf16, cpu_bf16):
    """Set the thread count, resolve the device; ``(device, autocast bf16 or not)``.

    On CUDA also turns on the cuDNN autotuner and TF32 matrix products.
    """
    if num_threads:
        torch.set_num_threads(int(num_threads))
    dev = resolve_device(device)
    autocast = bool(bf16) and (dev.type == "cuda" or bool(cpu_bf16))
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    return dev, autocast


@dataclass
class _TrainVal:
    """The train and validation crops of a split as read, and their checked sizes.

    ``x_tr``, ``x_va``: (N, S, S) float32 crops (released once held resident);
    ``y_tr``, ``y_va``: (N,) targets, GPa; ``crop_px``: ``S``; ``input_px``:
    the checked input size (None: no downsampling); ``y_mean``, ``y_std``:
    of ``y_tr``, GPa.
    """

    x_tr: object
    y_tr: np.ndarray
    x_va: object
    y_va: np.ndarray
    crop_px: int
    input_px: int | None
    y_mean: float
    y_std: float


def _read_train_val(dataset_path, target, split, input_px):
    """Read the train and val crops of ``split``; check their sizes and ``input_px``.

    Raises
    ------
    InputError
        Fewer than 2 train or 1 val crop, ``input_px`` outside
        ``MIN_INPUT_PX..crop size``, crops under ``MIN_INPUT_PX``, or a
        constant target over the train split.
    """
    x_tr, y_tr, _ = read_crops(dataset_path, target, split, "train")
    x_va, y_va, _ = read_crops(dataset_path, target, split, "val")
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
    return _TrainVal(x_tr, y_tr, x_va, y_va, crop_px, input_px, y_mean, y_std)


def _start(out_dir, epochs, batch_size, lr, compile, device, num_threads, bf16, cpu_bf16):
    """The start of a run: its work directory and file paths, checked arguments, the device.

    Returns ``(paths, epochs, batch_size, device, autocast)``; ``paths`` holds
    ``best``, ``last`` and ``metrics`` in ``out_dir`` (created).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"best": out_dir / "best.pt", "last": out_dir / "last.pt",
             "metrics": out_dir / "metrics.csv"}
    epochs, batch_size = _check_arguments(epochs, batch_size, lr, compile)
    dev, autocast = _setup_device(device, num_threads, bf16, cpu_bf16)
    return paths, epochs, batch_size, dev, autocast


def _run_config(dataset_path, target, split, data, arch_kwargs, dev, autocast, *, epochs,
                batch_size, lr, augment, channels_last, compile, seed, member, patience,
                factor, resident_uint8, model_class=SeedResNet):
    """The run's ``config`` (compared on resume) and the checkpoints' ``meta`` without the epoch.

    Returns ``(config, meta_base)``; the keys are those of the checkpoint
    contract (:mod:`microprop.learning._checkpoint`). ``model_class`` gives
    the architecture's full arguments and its name (``meta["arch"]``).
    """
    arch = model_class(**(arch_kwargs or {})).arch_kwargs
    config = {"dataset": str(dataset_path), "dataset_sha256": mio.sha256_file(dataset_path),
              "target": target, "split": split, "epochs": epochs, "batch_size": batch_size,
              "lr": float(lr), "input_px": data.input_px, "augment": bool(augment),
              "autocast_bf16": autocast, "channels_last": bool(channels_last),
              "compile": compile if isinstance(compile, str) else bool(compile), "seed": int(seed),
              "resident_uint8": bool(dev.type == "cuda" if resident_uint8 is None
                                     else resident_uint8), "member": int(member),
              "patience": int(patience), "factor": float(factor), "arch_kwargs": arch}
    meta_base = {"target": target, "target_mean": data.y_mean, "target_std": data.y_std,
                 "input_px": data.input_px, "crop_size_px": data.crop_px, "arch": model_class.__name__,
                 "arch_kwargs": arch, "dataset": str(dataset_path),
                 "dataset_sha256": config["dataset_sha256"], "split": split,
                 "seed": int(seed), "member": int(member), "config": config}
    return config, meta_base


def _resumable_checkpoint(last_path, config, out_dir):
    """The ``last.pt`` to resume from, or None when there is none.

    Raises
    ------
    InputError
        ``last.pt`` unreadable, or of a different configuration (the message
        lists the differing keys).
    """
    if not last_path.exists():
        return None
    ckpt = _load(last_path)
    diff = _config_diff(ckpt["meta"]["config"], config)
    if diff:
        raise InputError(
            f"{last_path}: checkpoint of a different configuration, cannot resume "
            f"({', '.join(f'{k}: {a!r} -> {b!r}' for k, (a, b) in diff.items())}); "
            f"delete {out_dir} to start afresh")
    return ckpt


class _EpochStats(NamedTuple):
    """What one training epoch measured (the loss sums are float64 tensors on the device)."""

    sum_loss: torch.Tensor
    sum_abs: torch.Tensor
    lr: float
    t0: float
    wait: float
    t_train: float


class _Training:
    """The state of one training run and its steps.

    Holds the model (and ``net``, its compiled form or itself), the optimiser,
    the scheduler, the shuffle and augmentation generators, the resident
    crops and standardised targets, the history and the best epoch so far.
    Building it seeds Python, numpy and torch and initialises the model, so
    build it exactly once per run, after the configuration checks.
    """

    def __init__(self, dev, arch, data, paths, meta_base, *, lr, factor, patience, seed, member,
                 batch_size, augment, autocast, channels_last, log_every, stop_after_steps,
                 model_class=SeedResNet):
        self.dev, self.paths, self.meta_base = dev, paths, meta_base
        self.batch_size, self.augment, self.autocast = batch_size, augment, autocast
        self.channels_last, self.log_every = channels_last, log_every
        self.stop_after_steps = stop_after_steps
        self.y_mean, self.y_std = data.y_mean, data.y_std
        s = member_seed(seed, member)
        random.seed(s)
        np.random.seed(s % 2**32)
        torch.manual_seed(s)
        self.gens = {"shuffle": torch.Generator().manual_seed(s + 1),
                     "augment": torch.Generator().manual_seed(s + 2)}
        model = model_class(**arch)
        memfmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(dev, memory_format=memfmt)
        # fused Adam on CUDA: one kernel for all parameters instead of one per tensor
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr,
                                    fused=dev.type == "cuda" or None)
        self.sched = torch.optim.lr_scheduler.ReduceLROnPlateau(self.opt, mode="min",
                                                                factor=factor, patience=patience)
        self.history, self.best_val, self.best_epoch, self.start = [], math.inf, None, 0
        self.net = self.model
        self.steps_done = 0

    # -- resume or start

    def resume(self, ckpt):
        """Continue from ``last.pt``: weights, optimiser, scheduler, RNG states, history."""
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        _set_rng_state(ckpt["rng"], self.gens)
        self.history = list(ckpt["history"])
        self.best_val, self.best_epoch = ckpt["best_val_loss"], ckpt["best_epoch"]
        self.start = ckpt["epoch"]
        self.y_mean = ckpt["meta"].get("target_mean", self.y_mean)
        self.y_std = ckpt["meta"].get("target_std", self.y_std)
        log.info("resuming %s from epoch %d (best val loss %.4g at epoch %s)", self.paths["last"],
                 self.start, self.best_val, self.best_epoch)

    def compile(self, compile):
        """``torch.compile`` the model into ``net`` (``compile``: bool or a mode name)."""
        if compile:
            self.net = torch.compile(self.model, mode=None if compile is True else str(compile))

    def hold_resident(self, data, resident_uint8):
        """Downsample the crops once, optionally quantise them to uint8, and keep them
        on the device when possible; standardise the targets. Releases ``data``'s crops."""
        self._hold_images(data, resident_uint8)
        self._hold_targets(data)
        self.maps = d4_index_maps(self.x_tr.shape[-1], device=self.dev) if self.augment else None
        self.n_tr = len(self.x_tr)
        self.steps_per_epoch = math.ceil(self.n_tr / self.batch_size)

    def _hold_images(self, data, resident_uint8):
        """The crops of ``data`` downsampled, optionally as uint8, on the device."""
        dev = self.dev
        x_tr = downsample_images(data.x_tr, data.input_px)
        x_va = downsample_images(data.x_va, data.input_px)
        data.x_tr = data.x_va = None  # the host copies are not needed any more
        self.dequant = None
        if resident_uint8:
            lo = float(min(x_tr.min(), x_va.min()))
            hi = float(max(x_tr.max(), x_va.max()))
            (x_tr, lo, step), (x_va, _, _) = (quantize_uint8(x_tr, lo, hi),
                                              quantize_uint8(x_va, lo, hi))
            self.dequant = (lo, step)
            log.info("crops held as uint8: range %.4g..%.4g, step %.3g", lo, hi, step)
        self.x_tr, self.x_va = _to_device(x_tr, dev), _to_device(x_va, dev)
        log.info("resident crops: %.1f MB on %s", (self.x_tr.numel() * self.x_tr.element_size()
                 + self.x_va.numel() * self.x_va.element_size()) / 1e6, self.x_tr.device)

    def _hold_targets(self, data):
        """The standardised targets on the device (``z_tr``, ``z_va``)."""
        self.z_tr = torch.as_tensor((data.y_tr - self.y_mean) / self.y_std, dtype=torch.float32,
                                    device=self.dev)
        self.z_va = torch.as_tensor((data.y_va - self.y_mean) / self.y_std, dtype=torch.float32,
                                    device=self.dev)

    def log_start(self, target, dataset_path, split, crop_px):
        """Log what is trained on what, where."""
        log.info("training %s on %s (%s split): %d train / %d val crops of %d px (input %d px), "
                 "%d steps/epoch, device %s, autocast bf16 %s, %d threads", target, dataset_path,
                 split, self.n_tr, len(self.x_va), crop_px, self.x_tr.shape[-1],
                 self.steps_per_epoch, self.dev, self.autocast, torch.get_num_threads())

    # -- one epoch

    def train_epoch(self, epoch, bar):
        """One pass over the training crops in a fresh random order (D4-augmented)."""
        self.model.train()
        t0 = time.perf_counter()
        wait = 0.0
        lr_now = self.opt.param_groups[0]["lr"]
        sum_loss = torch.zeros((), device=self.dev, dtype=torch.float64)
        sum_abs = torch.zeros((), device=self.dev, dtype=torch.float64)
        order = self._epoch_order()
        for i in range(0, self.n_tr, self.batch_size):
            tw = time.perf_counter()
            xb, yb = self._batch(order, i)
            wait += time.perf_counter() - tw
            pred, loss = self._step(xb, yb)
            sum_loss += loss.detach().double() * len(yb)
            sum_abs += self._score(pred.detach(), yb)
            self._count_step(epoch, loss, bar)
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
        return _EpochStats(sum_loss, sum_abs, lr_now, t0, wait, time.perf_counter() - t0)

    def _epoch_order(self):
        """The epoch's sample order and symmetries, drawn at once and moved to the device once.

        Returns ``(perm_x, perm_dev, choices)``: the order to index the crops
        with (on their device), the order on the device (targets), the D4
        element per position (None without augmentation). The same sequence
        as per-batch draws; one host-to-device copy per epoch, not per step.
        """
        perm = torch.randperm(self.n_tr, generator=self.gens["shuffle"])
        perm_dev = perm.to(self.dev)
        perm_x = perm_dev if self.x_tr.device == perm_dev.device else perm
        choices = None
        if self.augment:
            choices = torch.randint(0, 8, (self.n_tr,), generator=self.gens["augment"]).to(self.dev)
        return perm_x, perm_dev, choices

    def _batch(self, order, i):
        """The batch at position ``i`` of ``order``: float32 crops on the device, targets."""
        perm_x, perm_dev, choices = order
        b = self.batch_size
        with record_function("microprop.data"):
            xb = _gather(self.x_tr, perm_x[i:i + b], self.dev, self.dequant)
            yb = self.z_tr[perm_dev[i:i + b]]
            if self.augment:
                xb = d4_apply(xb, choices[i:i + b], self.maps)
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
        return xb, yb

    def _step(self, xb, yb):
        """One optimisation step; returns the predictions and the loss."""
        with record_function("microprop.forward"):
            with torch.autocast(self.dev.type, dtype=torch.bfloat16, enabled=self.autocast):
                pred = self.net(xb)
            loss = self._loss(pred, yb)
        with record_function("microprop.backward"):
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
        with record_function("microprop.optimizer"):
            self.opt.step()
        return pred, loss

    def _loss(self, pred, yb):
        """The training loss of a batch: MSE of the standardised target."""
        return F.mse_loss(pred.float(), yb)

    def _score(self, pred, yb):
        """What an epoch sums besides the loss: the absolute errors (standardised)."""
        return (pred.double() - yb.double()).abs().sum()

    def _count_step(self, epoch, loss, bar):
        """Count the step: progress, the running-loss log, the ``stop_after_steps`` hook."""
        self.steps_done += 1
        bar.update(1)
        if self.log_every and self.steps_done % int(self.log_every) == 0:
            log.info("epoch %d step %d: loss %.4f", epoch, self.steps_done, loss.item())
        if self.stop_after_steps is not None and self.steps_done >= int(self.stop_after_steps):
            raise TrainingStopped(f"stopped after {self.steps_done} steps (epoch {epoch})")

    def validate(self):
        """``(val_loss, err)``: standardised MSE on the val crops and the errors (GPa)."""
        p_va = _evaluate(self.net, self.x_va, self.z_va, max(self.batch_size, 64), self.dev,
                         self.autocast, self.channels_last, self.dequant)
        val_loss = float(F.mse_loss(p_va.double(), self.z_va.double()))
        err = (p_va.double() - self.z_va.double()) * self.y_std
        return val_loss, err

    def metrics_row(self, epoch, stats, val_loss, err):
        """The epoch's row of ``metrics.csv`` (:data:`METRIC_COLUMNS`)."""
        return {"epoch": epoch,
                "train_loss": float(stats.sum_loss) / self.n_tr,
                "train_mae_GPa": float(stats.sum_abs) / self.n_tr * self.y_std,
                "val_loss": val_loss,
                "val_mse_GPa2": float((err ** 2).mean()),
                "val_mae_GPa": float(err.abs().mean()),
                "lr": stats.lr,
                "epoch_s": time.perf_counter() - stats.t0,
                "data_wait_s": stats.wait,
                "images_per_s": (self.n_tr / stats.t_train if stats.t_train > 0
                                 else float("nan"))}

    def schedule(self, val_loss):
        """``ReduceLROnPlateau`` step on the epoch's validation loss."""
        self.sched.step(val_loss)

    def _meta(self, epoch, val_loss):
        """The checkpoint's ``meta`` at ``epoch``."""
        return {**self.meta_base, "target_mean": self.y_mean, "target_std": self.y_std,
                "epoch": epoch, "val_loss": val_loss}

    def checkpoint(self, epoch, val_loss, row):
        """Keep ``best.pt`` if the epoch is the best so far; append ``row``; write ``last.pt``."""
        meta = self._meta(epoch, val_loss)
        if val_loss < self.best_val:
            self.best_val, self.best_epoch = val_loss, epoch
            _save({"model": self.model.state_dict(), "meta": meta}, self.paths["best"])
        self.history.append(row)
        _save({"model": self.model.state_dict(), "meta": meta, "optimizer": self.opt.state_dict(),
               "scheduler": self.sched.state_dict(), "rng": _rng_state(self.gens),
               "best_val_loss": self.best_val, "best_epoch": self.best_epoch, "epoch": epoch,
               "history": self.history}, self.paths["last"])

    def write_metrics(self):
        """Rewrite ``metrics.csv`` from the history."""
        mio.write_table(pd.DataFrame(self.history, columns=list(METRIC_COLUMNS)),
                        self.paths["metrics"])

    def log_epoch(self, epoch, epochs, row):
        """Log the epoch's losses, learning rate and speed (``*``: the best so far)."""
        log.info("epoch %d/%d: train loss %.4f, val loss %.4f (MAE %.3f GPa), lr %.3g, "
                 "%.1f s, %.1f img/s%s", epoch, epochs, row["train_loss"], row["val_loss"],
                 row["val_mae_GPa"], row["lr"], row["epoch_s"], row["images_per_s"],
                 " *" if self.best_epoch == epoch else "")


def _summary(run, epochs, resumed, t_start):
    """The dict :func:`train` returns (see there)."""
    best_row = next((r for r in run.history if r["epoch"] == run.best_epoch), {})
    summary = {"best_epoch": run.best_epoch, "best_val_loss": run.best_val,
               "best_val_mse_GPa2": best_row.get("val_mse_GPa2"),
               "best_val_mae_GPa": best_row.get("val_mae_GPa"),
               "epochs_run": max(0, epochs - run.start), "epoch": max(run.start, epochs),
               "resumed_from": run.start if resumed else None,
               "target_mean": run.y_mean, "target_std": run.y_std, "device": str(run.dev),
               "wall_s": time.perf_counter() - t_start,
               **{k: str(v) for k, v in run.paths.items()}}
    log.info("done: best val loss %.4g at epoch %s", run.best_val, run.best_epoch)
    return summary


def _architecture(architecture, arch_kwargs, dataset_path, data):
    """``(model_class, arch_kwargs)`` of the network to train.

    ``seed_resnet``: :class:`SeedResNet` with ``arch_kwargs`` as given.
    ``centre``: :class:`CentreNet`, ``arch_kwargs`` the physical options of
    :func:`centre_arch_kwargs` (nm, um) turned into pixels for the dataset's
    pixel size and crop size, plus the input standardisation (mean and sd of
    the training crops).
    """
    if architecture not in ARCHITECTURES:
        raise InputError(f"architecture {architecture!r}: expected one of {sorted(ARCHITECTURES)}")
    model_class = ARCHITECTURES[architecture]
    if model_class is not CentreNet:
        return model_class, arch_kwargs
    if data.input_px is not None:
        raise InputError(f"architecture 'centre' reads the crops at full resolution (it pools "
                         f"them itself); input_px must be null, got {data.input_px}")
    ps = float(read_attrs(dataset_path)["pixel_size_nm"])
    try:
        kwargs = centre_arch_kwargs(ps, data.crop_px, **(arch_kwargs or {}))
    except (TypeError, ValueError) as exc:
        raise InputError(f"learning.centre: {exc}") from exc
    x = np.asarray(data.x_tr, np.float64)
    kwargs.update(input_mean=float(x.mean()), input_std=float(x.std()) or 1.0)
    log.info("CentreNet on %g nm pixels: patch %d px (%.2f um), pool %d, Gaussian sd %s px, "
             "input standardised by %.5g +- %.4g", ps, kwargs["patch_px"],
             kwargs["patch_px"] * ps / 1000, kwargs["pool"],
             [round(v, 2) for v in kwargs["sigmas_px"]], kwargs["input_mean"], kwargs["input_std"])
    return model_class, kwargs


def train(dataset_path, target, out_dir, split="random", epochs=100, batch_size=32, lr=1e-5,
          input_px=None, augment=True, device="auto", bf16=True, channels_last=True,
          compile=False, seed=0, patience=5, factor=0.9, member=0, num_threads=None,
          log_every=50, stop_after_steps=None, cpu_bf16=False, arch_kwargs=None,
          resident_uint8=None, architecture="seed_resnet"):
    """Train the seed ResNet (or CentreNet) on one target of ``dataset.h5``; resume if possible.

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
        Override :class:`~microprop.learning.models.SeedResNet` arguments (tests use a
        narrower network); None is the seed paper's layout. For
        ``architecture="centre"`` the options of
        :func:`~microprop.learning.models.centre_arch_kwargs` (physical sizes;
        None: its defaults).
    architecture : {"seed_resnet", "centre"}
        The network (``learning.architecture``):
        :class:`~microprop.learning.models.SeedResNet` or
        :class:`~microprop.learning.models.CentreNet` (full-resolution crops:
        ``input_px`` must be None; its input standardisation is the mean and
        sd of the training crops, kept in ``arch_kwargs``).

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
    paths, epochs, batch_size, dev, autocast = _start(out_dir, epochs, batch_size, lr, compile, device,
                                                      num_threads, bf16, cpu_bf16)

    # -- data, configuration, the checkpoint to resume from
    data = _read_train_val(dataset_path, target, split, input_px)
    model_class, arch_kwargs = _architecture(architecture, arch_kwargs, dataset_path, data)
    config, meta_base = _run_config(
        dataset_path, target, split, data, arch_kwargs, dev, autocast, epochs=epochs,
        batch_size=batch_size, lr=lr, augment=augment, channels_last=channels_last,
        compile=compile, seed=seed, member=member, patience=patience, factor=factor,
        resident_uint8=resident_uint8, model_class=model_class)
    ckpt = _resumable_checkpoint(paths["last"], config, out_dir)

    # -- seeds, model, optimiser; resume or start; resident tensors
    run = _Training(dev, config["arch_kwargs"], data, paths, meta_base, lr=lr, factor=factor,
                    patience=patience, seed=seed, member=member, batch_size=batch_size,
                    augment=augment, autocast=autocast, channels_last=channels_last,
                    log_every=log_every, stop_after_steps=stop_after_steps,
                    model_class=model_class)
    if ckpt is not None:
        run.resume(ckpt)
    run.compile(compile)
    run.hold_resident(data, config["resident_uint8"])
    run.log_start(target, dataset_path, split, data.crop_px)

    _run_epochs(run, epochs, f"train {target} m{member}")
    return _summary(run, epochs, ckpt is not None, t_start)


def _run_epochs(run, epochs, desc):
    """The epochs from ``run.start + 1`` to ``epochs``: train, validate, schedule,
    checkpoint, log (in this order); ``metrics.csv`` also when nothing is left to run."""
    bar = progress(total=max(0, epochs - run.start) * run.steps_per_epoch, desc=desc, unit="step")
    try:
        for epoch in range(run.start + 1, epochs + 1):
            stats = run.train_epoch(epoch, bar)
            val_loss, err = run.validate()
            row = run.metrics_row(epoch, stats, val_loss, err)
            run.schedule(val_loss)
            run.checkpoint(epoch, val_loss, row)
            run.write_metrics()
            run.log_epoch(epoch, epochs, row)
    finally:
        bar.close()
    if not run.paths["metrics"].exists():  # nothing left to run, a finished checkpoint
        run.write_metrics()
