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

import h5py
import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F
from torch.profiler import record_function

from . import io as mio
from .errors import InputError
from .resnet import SeedResNet
from .workflow import progress

log = logging.getLogger(__name__)

TARGETS = ("E_GPa", "H_GPa")
SPLIT_SCHEMES = ("random", "blocked")
METRIC_COLUMNS = ("epoch", "train_loss", "train_mae_GPa", "val_loss", "val_mse_GPa2",
                  "val_mae_GPa", "lr", "epoch_s", "data_wait_s", "images_per_s")
#: configuration keys that a resumed run must share with the checkpoint
RESUME_KEYS = ("dataset_sha256", "target", "split", "batch_size", "lr", "input_px", "augment",
               "autocast_bf16", "channels_last", "seed", "member", "patience", "factor",
               "arch_kwargs", "resident_uint8")
#: values of keys added after a checkpoint was written (so it still resumes)
RESUME_DEFAULTS = {"resident_uint8": False}
MIN_INPUT_PX = 16
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune",
                 "max-autotune-no-cudagraphs")


class TrainingStopped(KeyboardInterrupt):
    """Raised by :func:`train` after ``stop_after_steps`` steps (a simulated kill)."""


# ----------------------------------------------------------------------------- device, D4

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


def d4_index_maps(size, device=None):
    """Flat pixel-index maps of the 8 symmetries of a square image (group D4).

    Element ``g = 4 * flip + k`` is "rotate by ``k`` x 90 degrees
    (``torch.rot90`` over the last two axes), then, if ``flip``, mirror left-right".
    For an image ``x`` of shape ``(S, S)``,
    ``x.flatten()[maps[g]].view(S, S)`` is the transformed image.

    Parameters
    ----------
    size : int
        Image edge ``S``, px.
    device : torch.device, optional

    Returns
    -------
    torch.Tensor, shape (8, S*S), int64
    """
    base = torch.arange(size * size, device=device).view(size, size)
    maps = []
    for flip in (0, 1):
        for k in range(4):
            m = torch.rot90(base, k, dims=(0, 1))
            if flip:
                m = torch.flip(m, dims=(1,))
            maps.append(m.reshape(-1))
    return torch.stack(maps)


def d4_apply(x, choice, maps):
    """Apply a per-sample D4 symmetry to a batch, in one vectorised gather.

    Parameters
    ----------
    x : torch.Tensor, shape (B, C, S, S)
    choice : torch.Tensor, shape (B,), int64 in 0..7, on ``x.device``
        Group element per sample (see :func:`d4_index_maps`).
    maps : torch.Tensor, shape (8, S*S), int64, on ``x.device``

    Returns
    -------
    torch.Tensor, shape (B, C, S, S), contiguous
        The pixel values of each image permuted, so their multiset is kept.
    """
    b, c, h, w = x.shape
    if h != w:
        raise InputError(f"D4 augmentation needs square images, got {h} x {w}")
    idx = maps[choice].unsqueeze(1).expand(b, c, h * w)
    return torch.gather(x.reshape(b, c, h * w), 2, idx).view(b, c, h, w)


def downsample_images(images, input_px, device=None, chunk=256):
    """Area-average square images to ``input_px`` x ``input_px`` (done once at load).

    Uses ``F.adaptive_avg_pool2d`` (the same area averaging as
    ``F.interpolate(mode="area")``), which averages each output pixel over the
    input pixels its window covers; non-integer factors are allowed.

    Parameters
    ----------
    images : numpy.ndarray or torch.Tensor, shape (N, S, S)
    input_px : int or None
        Output edge, px; ``None`` or ``S`` returns the images unchanged
        (as a float32 tensor).
    device : torch.device, optional
        Where the work is done and the result lives.
    chunk : int
        Images per pooling call (bounds the temporary memory).

    Returns
    -------
    torch.Tensor, shape (N, 1, P, P), float32
    """
    x = torch.as_tensor(images)
    if device is not None:
        x = x.to(device)
    x = x.float().unsqueeze(1)
    if input_px is None or int(input_px) == x.shape[-1]:
        return x
    out = [F.adaptive_avg_pool2d(x[i:i + chunk], int(input_px)) for i in range(0, len(x), chunk)]
    return torch.cat(out) if out else x.new_empty((0, 1, int(input_px), int(input_px)))


# ----------------------------------------------------------------------------- data

def _check_dataset(path, target, split):
    path = Path(path)
    if target not in TARGETS:
        raise InputError(f"target {target!r}: expected one of {TARGETS}")
    if split not in SPLIT_SCHEMES:
        raise InputError(f"split {split!r}: expected one of {SPLIT_SCHEMES}")
    with mio.open_hdf5(path, "dataset") as fh:
        for key in ("images", f"targets/{target}", f"splits/{split}/train",
                    f"splits/{split}/val"):
            if key not in fh:
                raise InputError(f"{path}: lacks /{key} (see docs/ARCHITECTURE.md, dataset.h5)")
        shape = fh["images"].shape
        if len(shape) != 3 or shape[1] != shape[2]:
            raise InputError(f"{path}: /images must be (N, S, S), found {shape}")
    return path


def read_split(path, target, split="random", part="train"):
    """Read the crops and one target of one part of a split.

    Parameters
    ----------
    path : path-like
        ``dataset.h5``.
    target : {"E_GPa", "H_GPa"}
    split : {"random", "blocked"}
    part : {"train", "val", "test"}

    Returns
    -------
    images : numpy.ndarray, shape (n, S, S), float32
        In the order of ``/splits/<split>/<part>``.
    y : numpy.ndarray, shape (n,), float64
        Target, GPa.
    index : numpy.ndarray, shape (n,), int64
        Row indices into the dataset.

    Raises
    ------
    InputError
        Missing groups, indices out of range or repeated, non-finite crops
        or targets (the message names the file and the dataset rows).
    """
    path = _check_dataset(path, target, split)
    with h5py.File(path, "r") as fh:
        key = f"splits/{split}/{part}"
        if key not in fh:
            raise InputError(f"{path}: lacks /{key}")
        index = np.asarray(fh[key][:], dtype=np.int64)
        n = fh["images"].shape[0]
        if index.size and (index.min() < 0 or index.max() >= n):
            raise InputError(f"{path}: /{key} has indices outside 0..{n - 1}")
        order = np.argsort(index, kind="stable")
        sorted_idx = index[order]
        if np.any(np.diff(sorted_idx) == 0):
            raise InputError(f"{path}: /{key} repeats indices")
        s = fh["images"].shape[1]
        images = np.empty((index.size, s, s), np.float32)
        if index.size:
            images[order] = fh["images"][sorted_idx]
        y = np.asarray(fh[f"targets/{target}"][:], dtype=np.float64)[index]
    bad = ~np.isfinite(y)
    if bad.any():
        raise InputError(f"{path}: /targets/{target} is not finite at rows "
                         f"{index[bad][:10].tolist()}")
    bad = ~np.isfinite(images).all(axis=(1, 2))
    if bad.any():
        raise InputError(f"{path}: /images has non-finite pixels in rows {index[bad][:10].tolist()}")
    return images, y, index


def quantize_uint8(x, lo=None, hi=None):
    """Affine 8-bit quantisation of float images, for a compact resident copy.

    The calibrated crops (eta or porosity) come from 8- or 16-bit detector
    grey through a linear calibration, so 256 levels over the data's range
    lose little: the error is at most half a step, ``(hi - lo) / 510``
    (0.0006 in eta for a 0.05-0.35 range), below the shot noise of a BSE
    pixel. The seed network standardises every crop (B1), so the offset and
    scale do not matter, only the rounding.

    Parameters
    ----------
    x : torch.Tensor, float
        Images, any shape.
    lo, hi : float, optional
        The range mapped onto 0..255 (default: ``x.min()``, ``x.max()``);
        values outside are clipped.

    Returns
    -------
    q : torch.Tensor, uint8, shape of ``x``
    lo : float
    step : float
        ``x ~= q * step + lo``.
    """
    lo = float(x.min()) if lo is None else float(lo)
    hi = float(x.max()) if hi is None else float(hi)
    step = (hi - lo) / 255.0 if hi > lo else 1.0
    q = torch.round((x - lo) / step).clamp_(0, 255).to(torch.uint8)
    return q, lo, step


def _gather(x, idx, dev, dequant):
    """Rows ``idx`` of the resident ``x`` as float32 on ``dev``."""
    xb = x[idx].to(dev, non_blocking=True)
    if dequant is not None:
        lo, step = dequant
        xb = xb.float().mul_(step).add_(lo)
    return xb


def _to_device(x, dev):
    """Keep ``x`` resident on a CUDA device when it fits, else in pinned CPU memory."""
    if dev.type != "cuda":
        return x
    free, _ = torch.cuda.mem_get_info(dev)
    if x.numel() * x.element_size() < 0.5 * free:
        return x.to(dev)
    log.warning("%.2f GB of crops do not fit the GPU comfortably: kept in pinned CPU memory",
                x.numel() * x.element_size() / 1e9)
    return x.pin_memory()


# ----------------------------------------------------------------------------- seeds, RNG

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


# ----------------------------------------------------------------------------- checkpoints

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


# ----------------------------------------------------------------------------- training

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


def _config_diff(old, new):
    old = {**RESUME_DEFAULTS, **old}
    return {k: (old.get(k), new.get(k)) for k in RESUME_KEYS if old.get(k) != new.get(k)}


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


# ----------------------------------------------------------------------------- synthetic data

def synthetic_known_relation(n=200, size=32, seed=0, a=40.0, b=10.0, noise_GPa=1.0):
    """Crops whose target follows a known formula of their content.

    Each crop is a smooth random eta field (Gaussian-filtered white noise,
    mean ~0.13, std ~0.01) plus a central disc (radius ``size / 5``, centre
    ``((S-1)/2, (S-1)/2)``, so the disc is D4-symmetric) of random contrast,
    then a random affine grey change ``eta -> g * eta + o`` (g in 0.7..1.3,
    o in -0.02..0.02). The known feature is the disc's standardised contrast
    ``z = (mean over the disc - mean over the crop) / std over the crop``,
    which the per-image standardisation of the network (B1) keeps, and

        ``E_GPa = a + b * z + N(0, noise_GPa)``,
        ``H_GPa = a / 20 + b / 20 * z + N(0, noise_GPa / 20)``.

    The best possible R2 is ``var(b z) / (var(b z) + noise_GPa**2)`` (~0.9
    for the defaults).

    Parameters
    ----------
    n, size : int
        Number of crops and crop edge, px.
    seed : int
    a, b, noise_GPa : float
        Intercept, slope and noise of the relation, GPa.

    Returns
    -------
    crops : numpy.ndarray, shape (n, size, size), float32
    table : pandas.DataFrame
        ``specimen, area, batch, indent, x_um, y_um, E_GPa, H_GPa`` (the
        columns of :func:`microprop.dataset.write_shard`) and ``z``.
    """
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    c = (size - 1) / 2
    disc = (yy - c) ** 2 + (xx - c) ** 2 <= (size / 5) ** 2
    crops = np.empty((n, size, size), np.float32)
    z = np.empty(n)
    for i in range(n):
        field = gaussian_filter(rng.normal(size=(size, size)), 1.5, mode="wrap")
        img = 0.13 + 0.01 * field / field.std()
        img[disc] += rng.uniform(-0.03, 0.03)
        img = rng.uniform(0.7, 1.3) * img + rng.uniform(-0.02, 0.02)
        crops[i] = img
        im = crops[i].astype(np.float64)
        z[i] = (im[disc].mean() - im.mean()) / im.std()
    e = a + b * z + rng.normal(0, noise_GPa, n)
    h = (a + b * z) / 20 + rng.normal(0, noise_GPa / 20, n)
    side = int(np.ceil(np.sqrt(n)))
    table = pd.DataFrame({"specimen": "synthetic", "area": "S1", "batch": "b01",
                          "indent": np.arange(1, n + 1), "x_um": (np.arange(n) % side) * 5.0,
                          "y_um": (np.arange(n) // side) * 5.0, "E_GPa": e, "H_GPa": h, "z": z})
    return crops, table


def write_synthetic_dataset(path, n=200, size=32, seed=0, pixel_size_nm=40.0, **kwargs):
    """Write a known-relation ``dataset.h5`` (see :func:`synthetic_known_relation`).

    Goes through the dataset writers (:func:`microprop.dataset.write_shard`,
    :func:`microprop.dataset.assemble`), so the file follows the dataset
    contract, with 70/15/15 random and blocked splits.

    Returns
    -------
    table : pandas.DataFrame
        The per-crop table in dataset order (``z`` is the known feature).
    """
    from . import dataset as ds

    path = Path(path)
    crops, table = synthetic_known_relation(n, size, seed, **kwargs)
    shard = path.with_name(path.stem + "_shard.h5")
    attrs = {"pixel_size_nm": pixel_size_nm, "crop_size_px": size,
             "crop_size_um": size * pixel_size_nm / 1000, "quantity": "eta", "scale": "MulF",
             "sources": {}}
    ds.write_shard(shard, crops, table.drop(columns="z"), attrs)
    ds.assemble([shard], path, seed=seed, block_um=15.0)
    shard.unlink()
    return table
