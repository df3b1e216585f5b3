"""The porosity-map classifier's training and evaluation (second study).

:func:`train_classifier` fits :class:`~microprop.learning.models.PorosityDCNN`
on one scale (MulF or MicF) of a study's ``maps.h5``
(:func:`microprop.data.write_map_dataset`) with the project's training loop
(:mod:`microprop.learning._train`): the same resident (uint8 on CUDA) maps,
D4 augmentation, bf16 autocast on CUDA, ``ReduceLROnPlateau``, ``best.pt``
on the best validation loss, ``last.pt`` after every epoch and a resume that
reproduces the uninterrupted run. What differs from the regression is the
task: integer class labels, the cross-entropy loss, and the accuracy in
``metrics.csv`` (:data:`CLASS_METRIC_COLUMNS`).

:func:`evaluate_classifier` predicts the test maps with ``best.pt`` and
gives the accuracy with its Wilson 95 % interval and the confusion matrix
(the reference's Fig. 4).

Reference: ``../shared/references/dtd_nanoporosity_go_cement.txt``, section
2.2 (seven conv + BN + ReLU layers; 750 training maps per class; accuracy on
the test maps).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from .. import io as mio
from ..data import MAP_SCALES, read_maps
from ..errors import InputError
from ..stats import wilson_interval
from ._augment import downsample_images
from ._checkpoint import _load
from ._device import resolve_device
from ._train import (
    _evaluate,
    _resumable_checkpoint,
    _run_config,
    _run_epochs,
    _start,
    _Training,
    _TrainVal,
)
from .models import PorosityDCNN

log = logging.getLogger(__name__)

CLASS_METRIC_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
                        "epoch_s", "data_wait_s", "images_per_s")


def _read_maps_train_val(maps_path, scale, split, input_px):
    """The train and val maps of ``split``, their labels and the input standardisation.

    Raises
    ------
    InputError
        Fewer than 2 train or 1 val map, a class without training maps, or an
        ``input_px`` the stored maps cannot be averaged to.
    """
    x_tr, y_tr, _, classes = read_maps(maps_path, scale, split, "train")
    x_va, y_va, _, _ = read_maps(maps_path, scale, split, "val")
    if len(x_tr) < 2 or len(x_va) < 1:
        raise InputError(f"{maps_path}: split {split!r} has {len(x_tr)} train and {len(x_va)} val "
                         "maps; need at least 2 and 1")
    missing = [c for i, c in enumerate(classes) if not (y_tr == i).any()]
    if missing:
        raise InputError(f"{maps_path}: split {split!r} has no training map of classes {missing}")
    size = int(x_tr.shape[-1])
    if input_px is not None:
        input_px = int(input_px)
        if input_px > size or size % input_px:
            raise InputError(f"input_px {input_px}: the maps of {maps_path} are {size} px; expected "
                             "a divisor of it")
        if input_px == size:
            input_px = None
    # the targets are labels: nothing to standardise (mean 0, sd 1 keep the loop's bookkeeping inert)
    data = _TrainVal(x_tr, y_tr, x_va, y_va, size, input_px, 0.0, 1.0)
    return data, classes


def _input_standardisation(x_tr, input_px):
    """Mean and standard deviation of the training maps as the network sees them."""
    x = downsample_images(x_tr, input_px)
    return float(x.mean()), float(x.std()) or 1.0


class _ClassTraining(_Training):
    """The training loop's state for a classification: labels, cross-entropy, accuracy."""

    def _hold_targets(self, data):
        self.z_tr = torch.as_tensor(data.y_tr, dtype=torch.long, device=self.dev)
        self.z_va = torch.as_tensor(data.y_va, dtype=torch.long, device=self.dev)

    def _loss(self, pred, yb):
        return F.cross_entropy(pred.float(), yb)

    def _score(self, pred, yb):
        return (pred.argmax(1) == yb).sum().double()

    def validate(self):
        """``(val_loss, accuracy)``: cross-entropy and accuracy on the val maps."""
        logits = _evaluate(self.net, self.x_va, self.z_va, max(self.batch_size, 64), self.dev,
                           self.autocast, self.channels_last, self.dequant)
        val_loss = float(F.cross_entropy(logits.double(), self.z_va))
        return val_loss, float((logits.argmax(1) == self.z_va).double().mean())

    def metrics_row(self, epoch, stats, val_loss, accuracy):
        return {"epoch": epoch, "train_loss": float(stats.sum_loss) / self.n_tr,
                "train_accuracy": float(stats.sum_abs) / self.n_tr, "val_loss": val_loss,
                "val_accuracy": accuracy, "lr": stats.lr, "epoch_s": time.perf_counter() - stats.t0,
                "data_wait_s": stats.wait,
                "images_per_s": self.n_tr / stats.t_train if stats.t_train > 0 else float("nan")}

    def _meta(self, epoch, val_loss):
        return {**self.meta_base, "epoch": epoch, "val_loss": val_loss}

    def write_metrics(self):
        mio.write_table(pd.DataFrame(self.history, columns=list(CLASS_METRIC_COLUMNS)),
                        self.paths["metrics"])

    def log_epoch(self, epoch, epochs, row):
        log.info("epoch %d/%d: train loss %.4f (accuracy %.3f), val loss %.4f (accuracy %.3f), "
                 "lr %.3g, %.1f s, %.1f maps/s%s", epoch, epochs, row["train_loss"],
                 row["train_accuracy"], row["val_loss"], row["val_accuracy"], row["lr"],
                 row["epoch_s"], row["images_per_s"], " *" if self.best_epoch == epoch else "")


def train_classifier(maps_path, scale, out_dir, split="random", epochs=30, batch_size=32, lr=1e-3,
                     input_px=None, augment=True, device="auto", bf16=True, channels_last=True,
                     compile=False, seed=0, patience=3, factor=0.5, num_threads=None, log_every=0,
                     stop_after_steps=None, cpu_bf16=False, arch_kwargs=None, resident_uint8=None):
    """Train the porosity-map DCNN on one scale of ``maps.h5``; resume if possible.

    Parameters
    ----------
    maps_path : path-like
        The study's ``maps.h5`` (``maps/<scale>`` (N, S, S) float32
        equivalent porosity, ``labels``, ``splits/<split>/{train,val}``).
    scale : {"MulF", "MicF"}
    out_dir : path-like
        ``last.pt``, ``best.pt``, ``metrics.csv``; an existing ``last.pt``
        of the same configuration is resumed.
    split : {"random", "spatial"}
    epochs, batch_size, lr : int, int, float
        Adam; ``ReduceLROnPlateau(patience, factor)`` on the validation loss.
    input_px : int, optional
        Area-average the stored maps to this edge (a divisor of it).
    augment, device, bf16, channels_last, compile, num_threads, cpu_bf16, resident_uint8
        As in :func:`microprop.learning.train`.
    seed : int
    log_every, stop_after_steps : int, optional
        Running-loss log; a simulated kill after that many steps (tests).
    arch_kwargs : dict, optional
        :class:`~microprop.learning.models.PorosityDCNN` arguments besides
        ``n_classes`` and the input standardisation (tests: narrower widths).

    Returns
    -------
    dict
        ``best_epoch``, ``best_val_loss`` (cross-entropy), ``best_val_accuracy``,
        ``epochs_run``, ``epoch``, ``resumed_from``, ``classes``, ``device``,
        ``wall_s``, ``images_per_s`` (median over this call's epochs) and the paths.

    Raises
    ------
    InputError
        Bad file, split or arguments; ``last.pt`` of another configuration.
    TrainingStopped
        After ``stop_after_steps`` steps.
    """
    t_start = time.perf_counter()
    maps_path = Path(maps_path)
    if scale not in MAP_SCALES:
        raise InputError(f"scale {scale!r}: expected one of {MAP_SCALES}")
    out_dir = Path(out_dir)
    paths, epochs, batch_size, dev, autocast = _start(out_dir, epochs, batch_size, lr, compile, device,
                                                      num_threads, bf16, cpu_bf16)
    data, classes = _read_maps_train_val(maps_path, scale, split, input_px)
    mean, sd = _input_standardisation(data.x_tr, data.input_px)
    config, meta_base = _run_config(
        maps_path, f"class:{scale}", split, data,
        {**(arch_kwargs or {}), "n_classes": len(classes), "input_mean": mean, "input_std": sd},
        dev, autocast, epochs=epochs, batch_size=batch_size, lr=lr, augment=augment,
        channels_last=channels_last, compile=compile, seed=seed, member=0, patience=patience,
        factor=factor, resident_uint8=resident_uint8, model_class=PorosityDCNN)
    arch = config["arch_kwargs"]
    # labels, not a standardised target: no target mean and sd; the classes and the scale instead
    for key in ("target_mean", "target_std"):
        meta_base.pop(key)
    meta_base.update(scale=scale, classes=list(classes))
    ckpt = _resumable_checkpoint(paths["last"], config, out_dir)
    run = _ClassTraining(dev, arch, data, paths, meta_base, lr=lr, factor=factor,
                         patience=patience, seed=seed, member=0, batch_size=batch_size,
                         augment=augment, autocast=autocast, channels_last=channels_last,
                         log_every=log_every, stop_after_steps=stop_after_steps,
                         model_class=PorosityDCNN)
    if ckpt is not None:
        run.resume(ckpt)
    run.compile(compile)
    run.hold_resident(data, config["resident_uint8"])
    run.log_start(f"classifier {scale} ({len(classes)} classes)", maps_path, split, data.crop_px)
    _run_epochs(run, epochs, f"train {scale} classifier")
    best_row = next((r for r in run.history if r["epoch"] == run.best_epoch), {})
    this_call = [r["images_per_s"] for r in run.history[run.start:]]
    return {"best_epoch": run.best_epoch, "best_val_loss": run.best_val,
            "best_val_accuracy": best_row.get("val_accuracy"),
            "epochs_run": max(0, epochs - run.start), "epoch": max(run.start, epochs),
            "resumed_from": run.start if ckpt is not None else None, "classes": list(classes),
            "device": str(dev), "wall_s": time.perf_counter() - t_start,
            "images_per_s": float(np.median(this_call)) if this_call else float("nan"),
            **{k: str(v) for k, v in paths.items()}}


def load_classifier(model_path, device="cpu"):
    """The trained :class:`~microprop.learning.models.PorosityDCNN` of ``best.pt``, in eval mode.

    Returns
    -------
    model : PorosityDCNN
    meta : dict
        The checkpoint's meta (``classes``, ``scale``, ``input_px``, ...).

    Raises
    ------
    InputError
        An unreadable file or a checkpoint of another network.
    """
    ckpt = _load(model_path)
    meta = ckpt["meta"]
    if meta.get("arch") != "PorosityDCNN":
        raise InputError(f"{model_path}: a checkpoint of {meta.get('arch')!r}, not of the "
                         "porosity classifier (PorosityDCNN)")
    model = PorosityDCNN(**meta["arch_kwargs"])
    model.load_state_dict(ckpt["model"])
    return model.to(resolve_device(device)).eval(), meta


def classify_maps(model, meta, maps, batch_size=64, device="cpu"):
    """Class probabilities of local maps.

    Parameters
    ----------
    model, meta
        From :func:`load_classifier`.
    maps : numpy.ndarray, shape (N, S, S), float32
        Equivalent porosity at the stored resolution of the training maps
        (area-averaged here to the model's ``input_px`` when it has one).

    Returns
    -------
    numpy.ndarray, shape (N, n_classes), float64
        Softmax probabilities, columns in the order of ``meta["classes"]``.
    """
    dev = resolve_device(device)
    x = downsample_images(np.asarray(maps, np.float32), meta.get("input_px"))
    out = []
    with torch.no_grad():
        for i in range(0, len(x), int(batch_size)):
            xb = x[i:i + int(batch_size)].to(dev)
            out.append(torch.softmax(model(xb).double(), 1).cpu().numpy())
    k = len(meta["classes"])
    return np.concatenate(out) if out else np.zeros((0, k))


def evaluate_classifier(model_path, maps_path, split="random", part="test", device="cpu"):
    """Predict a part of a split with ``best.pt``: per-map table, accuracy and confusion.

    Returns
    -------
    predictions : pandas.DataFrame
        ``map, true, predicted, p_<class>...`` per map (``map``: row in ``maps.h5``).
    metrics : dict
        ``accuracy``, ``accuracy_ci95`` (Wilson), ``n_maps``, ``classes``,
        ``scale``, ``split``, ``per_class_recall``, ``best_epoch``.
    confusion : pandas.DataFrame
        Counts, true classes as rows, predicted as columns.

    Raises
    ------
    InputError
        A checkpoint whose classes differ from the file's, or an empty part.
    """
    model, meta = load_classifier(model_path, device)
    x, y, idx, classes = read_maps(maps_path, meta["scale"], split, part)
    if list(classes) != list(meta["classes"]):
        raise InputError(f"{model_path}: trained on classes {meta['classes']}, {maps_path} holds "
                         f"{classes}")
    if not len(x):
        raise InputError(f"{maps_path}: split {split!r} has no {part} map")
    prob = classify_maps(model, meta, x, device=device)
    pred = prob.argmax(1)
    names = np.asarray(classes, dtype=object)
    table = pd.DataFrame({"map": idx, "true": names[y], "predicted": names[pred]})
    for i, c in enumerate(classes):
        table[f"p_{c}"] = prob[:, i]
    conf = pd.crosstab(pd.Series(names[y], name="true"), pd.Series(names[pred], name="predicted")
                       ).reindex(index=classes, columns=classes, fill_value=0)
    k = int((pred == y).sum())
    lo, hi = wilson_interval(k, len(y))
    metrics = {"scale": meta["scale"], "split": split, "part": part, "classes": list(classes),
               "n_maps": int(len(y)), "accuracy": k / len(y), "accuracy_ci95": [lo, hi],
               "per_class_recall": {c: float(conf.loc[c, c] / max(1, conf.loc[c].sum()))
                                    for c in classes},
               "best_epoch": meta.get("epoch")}
    return table, metrics, conf
