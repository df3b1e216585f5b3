"""The sample-level CNN of the conductivity study: grouped cross-validation, prediction, activation maps.

:func:`train_sample_cnn` fits :class:`~microprop.learning.models.ConductivityCNN`
to the learned target of ``samples.h5`` (:mod:`microprop.data._samples`,
the log10 conductivity by default) on every fold but one, with the project's
training loop (:mod:`microprop.learning._train`: resident images, Adam,
``ReduceLROnPlateau``, ``best.pt`` on the validation loss, ``last.pt`` after
every epoch and resume). The validation images are those of a share of the
*training samples* (grouped too), so the epoch is chosen without the test
fold. Augmentation is the explicit set of distinct grid symmetries of each
training image (:func:`~microprop.learning.symmetry_augment`), only for a
material declared isotropic.

:func:`predict_fold` predicts the held-out fold's images (for an isotropic
material, the mean over the grid symmetries it was trained on) and
:func:`activation_maps` gives their regression activation maps (the last
feature maps weighted by the head's weights after the pooling; see
:mod:`microprop.learning.models._conductivity`).

Reference: ``../shared/references/cnn_conductivity_lto_ni_poster.txt``
("Deep Learning", "Regression Activation Map"; MAE about 0.6 and R2 about
0.7 in log10 units for its 58 samples).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import io as mio
from ..data import read_sample_dataset
from ..errors import InputError
from ._augment import symmetry_augment
from ._checkpoint import _load
from ._device import resolve_device
from ._train import (
    _resumable_checkpoint,
    _run_config,
    _run_epochs,
    _start,
    _Training,
    _TrainVal,
)
from .models import ConductivityCNN

log = logging.getLogger(__name__)

SAMPLE_METRIC_COLUMNS = ("epoch", "train_loss", "train_mae", "val_loss", "val_mae", "lr", "epoch_s",
                         "data_wait_s", "images_per_s")


def fold_parts(data, fold, val_fraction=0.15, seed=0):
    """Image indices of the train, val and test parts for one held-out fold.

    ``test``: the images of ``fold``; ``val``: the images of about
    ``val_fraction`` of the other samples (at least one sample), drawn with
    ``seed``; ``train``: the rest. No sample is in two parts.

    Raises
    ------
    InputError
        ``fold`` not in the file, or too few samples left to train on.
    """
    f = np.asarray(data["fold"])
    s = np.asarray(data["sample"])
    if int(fold) not in set(f.tolist()):
        raise InputError(f"fold {fold}: not among the dataset's folds {sorted(set(f.tolist()))}")
    test = np.nonzero(f == int(fold))[0]
    rest = np.unique(s[f != int(fold)])
    if len(rest) < 3:
        raise InputError(f"fold {fold}: {len(rest)} samples outside it; at least 3 needed (train and val)")
    rng = np.random.default_rng(int(seed) + 1000 * int(fold))
    n_val = max(1, int(round(val_fraction * len(rest))))
    val_s = set(rng.choice(rest, n_val, replace=False).tolist())
    val = np.nonzero((f != int(fold)) & np.isin(s, list(val_s)))[0]
    train = np.nonzero((f != int(fold)) & ~np.isin(s, list(val_s)))[0]
    return train, val, test


class _SampleTraining(_Training):
    """The training loop for the sample study: errors in the target's own unit (log10 units)."""

    def metrics_row(self, epoch, stats, val_loss, err):
        return {"epoch": epoch, "train_loss": float(stats.sum_loss) / self.n_tr,
                "train_mae": float(stats.sum_abs) / self.n_tr * self.y_std, "val_loss": val_loss,
                "val_mae": float(err.abs().mean()), "lr": stats.lr,
                "epoch_s": time.perf_counter() - stats.t0, "data_wait_s": stats.wait,
                "images_per_s": self.n_tr / stats.t_train if stats.t_train > 0 else float("nan")}

    def write_metrics(self):
        mio.write_table(pd.DataFrame(self.history, columns=list(SAMPLE_METRIC_COLUMNS)), self.paths["metrics"])

    def log_epoch(self, epoch, epochs, row):
        log.info("epoch %d/%d: train loss %.4f (MAE %.3f), val loss %.4f (MAE %.3f), lr %.3g, %.1f s, "
                 "%.1f img/s%s", epoch, epochs, row["train_loss"], row["train_mae"], row["val_loss"],
                 row["val_mae"], row["lr"], row["epoch_s"], row["images_per_s"],
                 " *" if self.best_epoch == epoch else "")


def train_sample_cnn(dataset_path, fold, out_dir, epochs=30, batch_size=16, lr=1e-3, isotropic=True,
                     device="auto", bf16=True, channels_last=True, seed=0, patience=4, factor=0.5,
                     val_fraction=0.15, num_threads=None, arch_kwargs=None, stop_after_steps=None):
    """Train the conductivity CNN with one fold held out; resume if possible.

    Parameters
    ----------
    dataset_path : path-like
        ``samples.h5``.
    fold : int
        The held-out (test) fold.
    out_dir : path-like
        ``last.pt``, ``best.pt``, ``metrics.csv``.
    epochs, batch_size, lr : int, int, float
    isotropic : bool
        Train on every distinct grid symmetry of each image
        (:func:`~microprop.learning.symmetry_augment`); False: the images as taken.
    device, bf16, channels_last, num_threads
        As in :func:`microprop.learning.train`.
    seed, patience, factor, val_fraction
        Seeds; ``ReduceLROnPlateau``; the share of training samples that validates.
    arch_kwargs : dict, optional
        :class:`~microprop.learning.models.ConductivityCNN` arguments.
    stop_after_steps : int, optional
        A simulated kill (tests).

    Returns
    -------
    dict
        ``best_epoch``, ``best_val_loss``, ``best_val_mae`` (target units),
        ``n_train_images`` (after augmentation), ``n_val_images``,
        ``train_samples``, ``val_samples``, ``test_samples`` (ids),
        ``device``, ``wall_s``, ``images_per_s`` and the paths.

    Raises
    ------
    InputError
        Bad file, fold or arguments; ``last.pt`` of another configuration.
    """
    t_start = time.perf_counter()
    dataset_path = Path(dataset_path)
    data = read_sample_dataset(dataset_path)
    tr, va, te = fold_parts(data, fold, val_fraction, seed)
    names = np.asarray(data["samples"], dtype=object)
    x_tr, y_tr = data["images"][tr], data["target"][tr]
    if isotropic:
        x_tr, src, _ = symmetry_augment(x_tr, True)
        y_tr = y_tr[src]
    y_mean, y_std = float(y_tr.mean()), float(y_tr.std())
    if not y_std > 0:
        raise InputError(f"{dataset_path}: the target is constant over the training samples of fold {fold}")
    tv = _TrainVal(x_tr.astype(np.float32), y_tr, data["images"][va], data["target"][va], int(x_tr.shape[-1]),
                   None, y_mean, y_std)
    out_dir = Path(out_dir)
    paths, epochs, batch_size, dev, autocast = _start(out_dir, epochs, batch_size, lr, False, device,
                                                      num_threads, bf16, False)
    config, meta_base = _run_config(
        dataset_path, data["target_name"], f"fold{int(fold)}", tv, arch_kwargs, dev, autocast, epochs=epochs,
        batch_size=batch_size, lr=lr, augment=bool(isotropic), channels_last=channels_last, compile=False,
        seed=seed, member=0, patience=patience, factor=factor, resident_uint8=False,
        model_class=ConductivityCNN)
    config["val_fraction"] = float(val_fraction)
    meta_base.update(fold=int(fold), unit=data["attrs"].get("unit"), log10=bool(data["attrs"].get("log10")))
    ckpt = _resumable_checkpoint(paths["last"], config, out_dir)
    run = _SampleTraining(dev, config["arch_kwargs"], tv, paths, meta_base, lr=lr, factor=factor,
                          patience=patience, seed=seed, member=0, batch_size=batch_size, augment=False,
                          autocast=autocast, channels_last=channels_last, log_every=0,
                          stop_after_steps=stop_after_steps, model_class=ConductivityCNN)
    if ckpt is not None:
        run.resume(ckpt)
    run.hold_resident(tv, False)
    run.log_start(f"{data['target_name']} (fold {fold} held out)", dataset_path, f"fold{fold}", tv.crop_px)
    _run_epochs(run, epochs, f"train fold {fold}")
    best_row = next((r for r in run.history if r["epoch"] == run.best_epoch), {})
    this_call = [r["images_per_s"] for r in run.history[run.start:]]
    sid = data["sample"]
    return {"best_epoch": run.best_epoch, "best_val_loss": run.best_val, "best_val_mae": best_row.get("val_mae"),
            "n_train_images": int(len(x_tr)), "n_val_images": int(len(va)),
            "train_samples": sorted(names[np.unique(sid[tr])].tolist()),
            "val_samples": sorted(names[np.unique(sid[va])].tolist()),
            "test_samples": sorted(names[np.unique(sid[te])].tolist()),
            "device": str(dev), "wall_s": time.perf_counter() - t_start,
            "images_per_s": float(np.median(this_call)) if this_call else float("nan"),
            **{k: str(v) for k, v in paths.items()}}


def load_sample_cnn(model_path, device="cpu"):
    """The trained :class:`~microprop.learning.models.ConductivityCNN` of ``best.pt``, eval mode, and its meta.

    Raises
    ------
    InputError
        An unreadable file or a checkpoint of another network.
    """
    ckpt = _load(model_path)
    meta = ckpt["meta"]
    if meta.get("arch") != "ConductivityCNN":
        raise InputError(f"{model_path}: a checkpoint of {meta.get('arch')!r}, not of the conductivity CNN")
    model = ConductivityCNN(**meta["arch_kwargs"])
    model.load_state_dict(ckpt["model"])
    return model.to(resolve_device(device)).eval(), meta


def _grid_symmetries(x):
    """The distinct symmetries of the pixel grid of a batch ``x`` ``(B, 1, H, W)``: 8 if square, else 4."""
    out = []
    for k in (range(4) if x.shape[-1] == x.shape[-2] else (0, 2)):
        r = torch.rot90(x, k, (2, 3))
        out += [r, torch.flip(r, (3,))]
    return out


@torch.no_grad()
def predict_symmetric(model, x, symmetries=True):
    """A model's outputs for images and for their grid symmetries.

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode, ``(B, 1, H, W) -> (B,)``.
    x : torch.Tensor, shape (B, 1, H, W)
    symmetries : bool
        Evaluate the 8 symmetries of the square (rotations by 90 degrees,
        each with and without a flip; 4 for a non-square image), exact on
        the pixel grid. False: ``x`` as given.

    Returns
    -------
    torch.Tensor, shape (n_symmetries, B), float64
        Their mean over axis 0 is invariant under those symmetries of ``x``.
    """
    views = _grid_symmetries(x) if symmetries else [x]
    return torch.stack([model(v).double() for v in views])


def predict_fold(model_path, dataset_path, device="cpu", batch_size=32, symmetries="auto"):
    """Predictions for the held-out fold's images, per image, in the target's unit.

    Parameters
    ----------
    model_path, dataset_path : path-like
        ``best.pt`` of one fold and the ``samples.h5`` it was trained on.
    device : str or torch.device
    batch_size : int
    symmetries : {"auto", True, False}
        Average the prediction over the grid symmetries of each image
        (rotations by 90 degrees and flips, exact on the pixel grid: 8 for a
        square image, 4 otherwise). ``"auto"``: when the model was trained
        on them (``meta["config"]["augment"]``, an isotropic material); the
        network is not exactly invariant, so the mean is a better estimate
        than any one orientation.

    Returns
    -------
    pandas.DataFrame
        ``image`` (row of ``samples.h5``), ``sample``, ``fold``, ``observed``,
        ``predicted`` (mean over the symmetries used), ``predicted_sd_symmetry``
        (their sd, 0 with one; target units), ``n_symmetries``.

    Raises
    ------
    InputError
        The checkpoint was trained on another file (sha256 differs).
    """
    model, meta = load_sample_cnn(model_path, device)
    if meta.get("dataset_sha256") != mio.sha256_file(dataset_path):
        raise InputError(f"{model_path}: trained on another version of {dataset_path} (sha256 differs); rerun "
                         "its training")
    if symmetries == "auto":
        symmetries = bool(meta.get("config", {}).get("augment", False))
    data = read_sample_dataset(dataset_path)
    te = np.nonzero(data["fold"] == int(meta["fold"]))[0]
    dev = resolve_device(device)
    out = []
    with torch.no_grad():
        for i in range(0, len(te), int(batch_size)):
            xb = torch.as_tensor(data["images"][te[i:i + int(batch_size)]][:, None]).to(dev)
            out.append(predict_symmetric(model, xb, bool(symmetries)).cpu().numpy())
    pred = np.concatenate(out, axis=1) * meta["target_std"] + meta["target_mean"]     # (n_sym, n_images)
    names = np.asarray(data["samples"], dtype=object)
    return pd.DataFrame({"image": te, "sample": names[data["sample"][te]], "fold": int(meta["fold"]),
                         "observed": data["target"][te], "predicted": pred.mean(0),
                         "predicted_sd_symmetry": pred.std(0), "n_symmetries": len(pred)})


def activation_maps(model, meta, images, device="cpu"):
    """Regression activation maps of images, upsampled to the image size, in the target's unit.

    Parameters
    ----------
    model, meta
        From :func:`load_sample_cnn`.
    images : numpy.ndarray, shape (N, S, S), float32
        Normalised images as the network sees them.

    Returns
    -------
    ram : numpy.ndarray, shape (N, S, S), float32
        Contribution per pixel: the map's mean plus ``offset`` is the
        prediction (target units; bilinear upsampling keeps the mean only
        approximately, the feature-map means are exact).
    offset : numpy.ndarray, shape (N,)
    prediction : numpy.ndarray, shape (N,)
        In target units.
    """
    dev = resolve_device(device)
    x = torch.as_tensor(np.asarray(images, np.float32)[:, None]).to(dev)
    ram, b, p = model.activation_maps(x)
    sd, mu = float(meta["target_std"]), float(meta["target_mean"])
    up = torch.nn.functional.interpolate(ram[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)
    return (up[:, 0] * sd).cpu().numpy(), (b * sd + mu).cpu().numpy(), (p * sd + mu).cpu().numpy()


def fold_metrics(predictions):
    """MAE and R2 per fold and their mean and standard deviation over folds.

    Parameters
    ----------
    predictions : pandas.DataFrame
        ``fold``, ``observed``, ``predicted`` (target units) of every held-out image.

    Returns
    -------
    dict
        ``per_fold`` (list of ``fold, n_images, mae, r2``), ``mae_mean``,
        ``mae_sd``, ``r2_mean``, ``r2_sd`` (sd with ddof 1 over folds), and
        ``mae_pooled``, ``r2_pooled`` over all held-out images.
    """
    def r2(o, p):
        ss = float(((o - o.mean()) ** 2).sum())
        return 1.0 - float(((o - p) ** 2).sum()) / ss if ss > 0 else float("nan")

    rows = []
    for k, t in predictions.groupby("fold"):
        o, p = t["observed"].to_numpy(float), t["predicted"].to_numpy(float)
        rows.append({"fold": int(k), "n_images": int(len(t)), "mae": float(np.abs(o - p).mean()), "r2": r2(o, p)})
    mae = np.array([r["mae"] for r in rows])
    r2s = np.array([r["r2"] for r in rows])
    o, p = predictions["observed"].to_numpy(float), predictions["predicted"].to_numpy(float)
    return {"per_fold": rows, "mae_mean": float(mae.mean()), "mae_sd": float(mae.std(ddof=1)) if len(rows) > 1
            else float("nan"), "r2_mean": float(np.nanmean(r2s)),
            "r2_sd": float(np.nanstd(r2s, ddof=1)) if len(rows) > 1 else float("nan"),
            "mae_pooled": float(np.abs(o - p).mean()), "r2_pooled": r2(o, p)}
