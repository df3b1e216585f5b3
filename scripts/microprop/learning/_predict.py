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

import numpy as np
import torch

from ..errors import InputError
from ._augment import downsample_images
from ._device import resolve_device


def _set_mc_dropout(model, active):
    model.eval()
    if active:
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.train()


@torch.no_grad()
def predict(model, meta, images, device="auto", batch_size=64, mc_dropout=False, bf16=None):
    """Predict the target of crops in physical units.

    Parameters
    ----------
    model : SeedResNet
        From :func:`load_model`.
    meta : dict
        Its checkpoint meta (target normalisation, ``input_px``).
    images : numpy.ndarray, shape (N, S, S), float
        Crops of the same kind and size as the training crops
        (``meta["crop_size_px"]``); downsampled to ``meta["input_px"]`` as in
        training.
    device : str or torch.device
    batch_size : int
    mc_dropout : bool
        Keep the dropout layer active (Monte Carlo dropout; Gal & Ghahramani
        2016) while batch norm stays in eval mode; each call then draws one
        sample from the torch RNG. The model is left in eval mode afterwards.
    bf16 : bool or None
        bf16 autocast of the forward pass; ``None`` (default): on CUDA only.
        On the seed ResNet bf16 changes predictions by about 1e-2 of the
        target's standard deviation, well inside its test error.

    Returns
    -------
    numpy.ndarray, shape (N,), float64
        Predicted ``meta["target"]`` (GPa).

    Raises
    ------
    InputError
        If ``images`` is not ``(N, S, S)`` with ``S = meta["crop_size_px"]``.
    """
    images = np.asarray(images)
    s = meta.get("crop_size_px")
    if images.ndim != 3 or images.shape[1] != images.shape[2] or (s and images.shape[1] != s):
        raise InputError(f"predict: expected crops of shape (N, {s}, {s}), got {images.shape}")
    dev = resolve_device(device)
    model = model.to(dev)
    _set_mc_dropout(model, mc_dropout)
    channels_last = next(model.b2.parameters()).is_contiguous(memory_format=torch.channels_last)
    autocast = dev.type == "cuda" if bf16 is None else bool(bf16)
    out = []
    try:
        for i in range(0, len(images), int(batch_size)):
            x = downsample_images(images[i:i + batch_size], meta.get("input_px"), dev)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
                out.append(model(x).double().cpu())
    finally:
        model.eval()
    z = torch.cat(out).numpy() if out else np.zeros(0)
    return z * float(meta["target_std"]) + float(meta["target_mean"])
