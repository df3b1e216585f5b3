"""Checkpoints of the training loop: what ``best.pt`` and ``last.pt`` hold, how
they are written and read, the resume rule, and the loader of a trained model.

- :func:`member_seed`: the one seed of a run from its seed and ensemble member;
- ``_rng_state`` / ``_set_rng_state``: the Python, numpy, torch (and CUDA)
  RNG states and the loop's generators, as stored in ``last.pt``;
- ``_save`` (atomic) / ``_load`` (``weights_only``, :class:`InputError` for a
  bad file);
- :data:`RESUME_KEYS`, :data:`RESUME_DEFAULTS` and ``_config_diff``: which
  configuration keys a resumed run must share with its ``last.pt``;
- :func:`load_model`: the network of ``best.pt`` (a
  :class:`~microprop.learning.models.SeedResNet` or
  :class:`~microprop.learning.models.CentreNet`, by ``meta["arch"]``) with its meta.

Checkpoint contract (``best.pt`` and ``last.pt`` are ``torch.save`` dicts,
loadable with ``torch.load(..., weights_only=True)``):

- ``"model"``: state_dict of the network (``meta["arch"]``);
- ``"meta"``: ``target`` (e.g. ``"E_GPa"``), ``target_mean``, ``target_std``
  (GPa; prediction = output * std + mean), ``input_px`` (int or None),
  ``crop_size_px``, ``arch`` (the class name: ``"SeedResNet"`` or
  ``"CentreNet"``), ``arch_kwargs`` (its constructor arguments), ``epoch``,
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
from .models import ARCHITECTURES

#: configuration keys that a resumed run must share with the checkpoint
RESUME_KEYS = ("dataset_sha256", "target", "split", "batch_size", "lr", "input_px", "augment",
               "autocast_bf16", "channels_last", "seed", "member", "patience", "factor",
               "arch_kwargs", "resident_uint8")


#: values of keys added after a checkpoint was written (so it still resumes)
RESUME_DEFAULTS = {"resident_uint8": False}


#: the networks :func:`load_model` rebuilds, by ``meta["arch"]``
MODEL_CLASSES = {cls.__name__: cls for cls in ARCHITECTURES.values()}


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
    model : SeedResNet or CentreNet
        Rebuilt from ``meta["arch"]`` and ``meta["arch_kwargs"]``, on
        ``device``, in eval mode.
    meta : dict
        The checkpoint's ``meta`` (``target``, ``target_mean``, ``target_std``,
        ``input_px``, ``crop_size_px``, ``arch_kwargs``, ``epoch``, ...).

    Raises
    ------
    InputError
        Missing or unreadable file, or not a checkpoint of one of
        :data:`MODEL_CLASSES`.
    """
    path = Path(checkpoint_path)
    if not path.exists():
        raise InputError(f"{path}: checkpoint not found")
    ckpt = _load(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "meta" not in ckpt:
        raise InputError(f"{path}: not a microprop checkpoint (keys 'model', 'meta' expected)")
    meta = dict(ckpt["meta"])
    cls = MODEL_CLASSES.get(meta.get("arch"))
    if cls is None:
        raise InputError(f"{path}: architecture {meta.get('arch')!r}, expected one of "
                         f"{sorted(MODEL_CLASSES)}")
    dev = resolve_device(device)
    model = cls(**meta["arch_kwargs"])
    model.load_state_dict(ckpt["model"])
    return model.to(dev).eval(), meta


def _config_diff(old, new):
    old = {**RESUME_DEFAULTS, **old}
    return {k: (old.get(k), new.get(k)) for k in RESUME_KEYS if old.get(k) != new.get(k)}


def set_aside_stale_work(work_dir, data_path, what="dataset", arch=None):
    """Move ``work_dir`` aside when its ``last.pt`` was trained on other data than ``data_path``
    (or, with ``arch``, is of another network).

    A rule's work directory survives a failed job so that the rerun resumes;
    once the data have been rebuilt (e.g. a new indent batch), its checkpoint
    is of another dataset and training must start afresh. It is renamed
    ``<work_dir>-stale-<time>``, not deleted.

    Parameters
    ----------
    work_dir : path-like
    data_path : path-like
        The training data (its sha256 is compared with the checkpoint's
        ``meta["dataset_sha256"]``).
    what : str
        The data, for the log ("dataset", "maps.h5").
    arch : str, optional
        The network about to be trained (class name, e.g. ``"CentreNet"``);
        a ``last.pt`` of another one is set aside too (``learning.architecture``
        changed). Checkpoints without ``meta["arch"]`` count as ``"SeedResNet"``.

    Returns
    -------
    pathlib.Path or None
        Where the work directory went, or None when it was kept (or absent).
    """
    import logging
    import time

    work = Path(work_dir)
    last = work / "last.pt"
    if not last.exists():
        return None
    meta = torch.load(last, map_location="cpu", weights_only=True)["meta"]
    other_arch = arch is not None and meta.get("arch", "SeedResNet") != arch
    if meta.get("dataset_sha256") == mio.sha256_file(data_path) and not other_arch:
        return None
    stale = work.parent / f"{work.name}-stale-{time.strftime('%Y%m%dT%H%M%S')}"
    why = (f"is a {meta.get('arch', 'SeedResNet')}, not a {arch}" if other_arch
           else f"was trained on another {what}")
    logging.getLogger(__name__).warning("%s %s; moved to %s, training afresh", work, why, stale)
    work.rename(stale)
    return stale
