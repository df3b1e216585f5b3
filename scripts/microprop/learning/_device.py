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

import torch

from ..errors import InputError


def resolve_device(device="auto"):
    """Choose the torch device once: ``"auto"`` -> CUDA when available, else CPU.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...

    Raises
    ------
    InputError
        If CUDA is asked for but not available, or the name is unknown.
    """
    if isinstance(device, torch.device):
        return device
    name = str(device or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"device {device!r}: expected 'auto', 'cpu' or 'cuda[:i]'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r}: CUDA is not available on this machine")
    return dev
