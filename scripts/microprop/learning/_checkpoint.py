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

import random
from pathlib import Path

import numpy as np
import torch

from .. import io as mio
from ..errors import InputError
from ._device import resolve_device
from .models import SeedResNet

#: configuration keys that a resumed run must share with the checkpoint
RESUME_KEYS = ("dataset_sha256", "target", "split", "batch_size", "lr", "input_px", "augment",
               "autocast_bf16", "channels_last", "seed", "member", "patience", "factor",
               "arch_kwargs", "resident_uint8")


#: values of keys added after a checkpoint was written (so it still resumes)
RESUME_DEFAULTS = {"resident_uint8": False}


def member_seed(seed, member):
    """One 63-bit seed from the run seed and the ensemble member index.

    ``numpy.random.SeedSequence([seed, member])`` mixes both, so members of an
    ensemble start from unrelated initialisations and batch orders.
    """
    return int(np.random.SeedSequence([int(seed), int(member)]).generate_state(2, np.uint64)[0]
               >> np.uint64(1))


def _rng_state(generators):
    np_state = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                       int(np_state[2]), int(np_state[3]), float(np_state[4])),
             "torch": torch.get_rng_state(),
             "generators": {k: g.get_state() for k, g in generators.items()}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state, generators):
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    for k, g in generators.items():
        g.set_state(state["generators"][k])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save(obj, path):
    with mio.atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _load(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a bad file
        raise InputError(f"{path}: not a readable checkpoint ({exc})") from exc


def load_model(checkpoint_path, device="auto"):
    """Load a trained model from ``best.pt`` (or ``last.pt``).

    Parameters
    ----------
    checkpoint_path : path-like
    device : str or torch.device

    Returns
    -------
    model : SeedResNet
        On ``device``, in eval mode.
    meta : dict
        The checkpoint's ``meta`` (``target``, ``target_mean``, ``target_std``,
        ``input_px``, ``crop_size_px``, ``arch_kwargs``, ``epoch``, ...).

    Raises
    ------
    InputError
        Missing or unreadable file, or not a SeedResNet checkpoint.
    """
    path = Path(checkpoint_path)
    if not path.exists():
        raise InputError(f"{path}: checkpoint not found")
    ckpt = _load(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "meta" not in ckpt:
        raise InputError(f"{path}: not a microprop checkpoint (keys 'model', 'meta' expected)")
    meta = dict(ckpt["meta"])
    if meta.get("arch") != "SeedResNet":
        raise InputError(f"{path}: architecture {meta.get('arch')!r}, expected 'SeedResNet'")
    dev = resolve_device(device)
    model = SeedResNet(**meta["arch_kwargs"])
    model.load_state_dict(ckpt["model"])
    return model.to(dev).eval(), meta


def _config_diff(old, new):
    old = {**RESUME_DEFAULTS, **old}
    return {k: (old.get(k), new.get(k)) for k in RESUME_KEYS if old.get(k) != new.get(k)}
