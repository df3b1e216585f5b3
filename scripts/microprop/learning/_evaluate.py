"""Evaluation of the trained crop -> property networks: metrics, uncertainty, figures.

An ensemble of ``M`` independently trained members (or ``M`` Monte Carlo
dropout samples of one member, Gal & Ghahramani 2016) predicts the property
of every crop; the ensemble mean is the prediction and the ensemble standard
deviation its spread (deep ensembles, Lakshminarayanan et al. 2017).

The spread of an ensemble measures only the disagreement of its members, not
the scatter of the measurement itself, so a Gaussian interval built from it
usually covers far fewer samples than it claims. The interval reported here is
therefore calibrated by split conformal prediction on the validation split
(Papadopoulos et al. 2002; normalised residual scores as in Lei et al. 2018,
sec. 5.2; Angelopoulos & Bates 2021, "A gentle introduction to conformal
prediction and distribution-free uncertainty quantification", sec. 2.3):
with scores ``s_i = |y_i - mean_i| / spread_i`` on ``n`` calibration samples,
``q`` is the ``ceil((n + 1) * level)``-th smallest score and the interval is
``mean +- q * spread``. If calibration and test samples are exchangeable, it
covers a new sample with probability at least ``level`` (marginally).

The trained networks are reached only through ``microprop.train``
(``load_model``, ``predict``); all predictions here are in physical units
(GPa). Figures follow :mod:`microprop.figures` (fixed size, Agg, units on
every axis).
"""
from __future__ import annotations

import importlib
import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from .. import data as mdataset
from .. import stats as stats
from ..data import SPLITS
from ..errors import InputError
from ..progress import progress
from ._device import resolve_device
from ._intervals import (
    coverage_confidence_interval,
    empirical_coverage,
    prediction_interval,
    regression_metrics,
)

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = ("index", "split", "specimen", "area", "batch", "indent", "x_um", "y_um",
                      "y", "mean", "std", "lo", "hi", "raw_lo", "raw_hi")


def _train_api(load_model=None, predict=None):
    if load_model is None or predict is None:
        # looked up at call time, so that a stand-in set on the package is used
        learning = importlib.import_module("microprop.learning")
        load_model = load_model or learning.load_model
        predict = predict or learning.predict
    return load_model, predict


def ensemble_predict(checkpoints, images, device="auto", mc_samples=0, batch_size=64,
                     block=512, seed=0, expect=None, load_model=None, predict=None):
    """Predictions of every ensemble member (or MC-dropout sample) for every crop.

    Parameters
    ----------
    checkpoints : sequence of path-like
        Checkpoints (``best.pt``) of the members, loaded with
        ``microprop.train.load_model``; all must predict the same target from
        crops of the same size.
    images : array-like, shape (N, S, S), float32
        Calibrated crops; a numpy array or an ``h5py`` dataset (read
        ``block`` crops at a time, so memory stays bounded).
    device : str or torch.device
        ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ...
    mc_samples : int
        0: one deterministic prediction per member (``M`` = number of
        checkpoints). ``> 0``: Monte Carlo dropout, ``mc_samples`` stochastic
        passes per member (``M = members * mc_samples``; Gal & Ghahramani 2016).
    batch_size : int
        Passed to ``predict``.
    block : int
        Crops read from ``images`` per call of ``predict``.
    seed : int
        Seed of torch's generator (reproducible dropout masks).
    expect : dict, optional
        Checkpoint meta values required of every member, e.g.
        ``{"target": "E_GPa", "split": "random"}``; a key a member's meta
        lacks (or None) is not checked. Checked as soon as a member is loaded.
    load_model, predict : callable, optional
        Replacements of ``microprop.train.load_model`` and ``predict`` (same
        signatures), e.g. for tests.

    Returns
    -------
    preds : numpy.ndarray, shape (N, M), float64
        Column ``m`` holds member (or sample) ``m`` in GPa.
    metas : list of dict
        The checkpoint metadata of each member.

    Raises
    ------
    InputError
        No checkpoint; a checkpoint not found; members disagreeing on the
        target, or with ``expect``; crops of another size than the members
        were trained on; images not (N, S, S); a non-finite prediction.
    """
    import torch

    paths = [Path(p) for p in checkpoints]
    if not paths:
        raise InputError("ensemble_predict: no checkpoints given")
    for p in paths:
        if not p.exists():
            raise InputError(f"{p}: checkpoint not found")
    if len(getattr(images, "shape", ())) != 3:
        raise InputError(f"ensemble_predict: images must be (N, S, S); got shape "
                         f"{getattr(images, 'shape', None)}")
    n, s = int(images.shape[0]), int(images.shape[-1])
    mc_samples = int(mc_samples or 0)
    load_model, predict = _train_api(load_model, predict)
    dev = resolve_device(device)
    torch.manual_seed(int(seed))
    passes = max(mc_samples, 1)
    preds = np.empty((n, len(paths) * passes), np.float64)
    metas = []
    for m, p in enumerate(paths):
        model, meta = load_model(p, dev)
        metas.append(dict(meta))
        if meta.get("target") != metas[0].get("target"):
            raise InputError(f"{p}: member predicts {meta.get('target')!r} but {paths[0]} "
                             f"predicts {metas[0].get('target')!r}")
        for key, want in (expect or {}).items():
            have = meta.get(key)
            if want is not None and have is not None and have != want:
                hint = (" (evaluating on another split scheme would score it on samples it was "
                        "trained on)") if key == "split" else ""
                raise InputError(f"{p}: member has {key} = {have!r}; expected {want!r}{hint}")
        size = meta.get("crop_size_px")
        if size is not None and int(size) != s:
            raise InputError(f"{p}: member was trained on {int(size)} px crops; the dataset "
                             f"has {s} px crops")
        for r in range(passes):
            col = m * passes + r
            for i0 in progress(range(0, n, block), desc=f"predict {p.parent.name or p.name}",
                               unit="block", disable=n <= block):
                x = np.asarray(images[i0:i0 + block], dtype=np.float32)
                out = np.asarray(predict(model, meta, x, dev, batch_size=batch_size,
                                         mc_dropout=mc_samples > 0), dtype=np.float64).ravel()
                if out.shape != (x.shape[0],):
                    raise InputError(f"{p}: predict returned shape {out.shape} for "
                                     f"{x.shape[0]} crops")
                preds[i0:i0 + x.shape[0], col] = out
        bad = ~np.isfinite(preds[:, m * passes:(m + 1) * passes])
        if bad.any():
            raise InputError(f"{p}: {int(bad.sum())} non-finite predictions (crops "
                             f"{np.flatnonzero(bad.any(axis=1))[:10].tolist()})")
        log.info("member %d (%s): %d crops, %d pass(es)", m, p, n, passes)
    return preds, metas


def _read_dataset(path, scheme):
    path = Path(path)
    _, table, attrs = mdataset.read_shard(path, images=False)
    try:
        splits = mdataset.read_splits(path)
    except KeyError as exc:
        raise InputError(f"{path}: dataset has no /splits group") from exc
    if scheme not in splits:
        raise InputError(f"{path}: no /splits/{scheme}; found {sorted(splits)}")
    parts = splits[scheme]
    n = len(table)
    seen = np.zeros(n, int)
    for name in SPLITS:
        idx = parts[name]
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise InputError(f"{path}: /splits/{scheme}/{name} has indices outside 0..{n - 1}")
        np.add.at(seen, idx, 1)
    if (seen > 1).any():
        raise InputError(f"{path}: /splits/{scheme} puts {int((seen > 1).sum())} samples in "
                         "more than one split")
    for name in ("val", "test"):
        if parts[name].size == 0:
            raise InputError(f"{path}: /splits/{scheme}/{name} is empty")
    return table, attrs, parts


def evaluate(checkpoints, dataset_path, split="random", device="auto", level=0.9,
             mc_samples=0, target=None, batch_size=64, seed=0, load_model=None, predict=None):
    """Score an ensemble on a dataset and calibrate its prediction interval.

    Every sample of the split scheme is predicted by every member; the
    ensemble mean is scored per split (train, val, test) and so is each
    member. The interval is calibrated on ``val`` (:func:`prediction_interval`)
    and its coverage is measured on ``test``.

    Parameters
    ----------
    checkpoints : sequence of path-like
        Members' ``best.pt``.
    dataset_path : path-like
        ``dataset.h5`` (``docs/ARCHITECTURE.md``).
    split : str
        Split scheme, ``"random"`` or ``"blocked"``; must be the one the
        members were trained on (checkpoint meta ``split``, when recorded).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``.
    level : float
        Nominal coverage of the interval (0.9).
    mc_samples : int
        MC-dropout passes per member (0: deterministic members).
    target : str, optional
        ``"E_GPa"`` or ``"H_GPa"``; checked against the members' target.
    batch_size, seed, load_model, predict
        See :func:`ensemble_predict`.

    Returns
    -------
    dict
        ``target``, ``split_scheme``, ``level``, ``n_members``,
        ``mc_samples``, ``n_predictions`` (M), ``checkpoints``;
        ``metrics``: per split ``{"ensemble": {MSE, MAE, R2, n}, "members":
        [...]}`` (GPa^2, GPa); ``interval``: ``conformal`` and ``raw``, each
        with ``coverage_test``, ``coverage_val``, ``mean_width_test`` (GPa),
        and the calibration (``q``, ``k``, ``n_cal``, ``floor``, ``z``);
        ``predictions``: DataFrame with :data:`PREDICTION_COLUMNS` (``index``
        the dataset row, ``y`` measured, ``mean``/``std`` of the ensemble,
        ``lo``/``hi`` conformal, ``raw_lo``/``raw_hi`` Gaussian, GPa).

    Raises
    ------
    InputError
        Dataset unreadable or without this split scheme (or with an empty
        val/test split); members trained on another target or split scheme;
        see :func:`ensemble_predict`.
    """
    dataset_path = Path(dataset_path)
    table, attrs, parts = _read_dataset(dataset_path, split)
    rows = np.concatenate([parts[s] for s in SPLITS]).astype(np.int64)
    labels = np.concatenate([np.full(parts[s].size, s, dtype=object) for s in SPLITS])
    order = np.argsort(rows, kind="stable")
    rows, labels = rows[order], labels[order]
    with h5py.File(dataset_path, "r") as fh:
        imgs = fh["images"]
        # h5py reads fancy indices in increasing order; all rows is the common case
        images = imgs if rows.size == imgs.shape[0] else imgs[rows]
        preds, metas = ensemble_predict(checkpoints, images, device=device, mc_samples=mc_samples,
                                        batch_size=batch_size, seed=seed,
                                        expect={"target": target, "split": split},
                                        load_model=load_model, predict=predict)
    tgt = metas[0].get("target") or target
    if tgt not in mdataset.TARGETS:
        raise InputError(f"{checkpoints[0]}: unknown target {tgt!r}; expected one of "
                         f"{list(mdataset.TARGETS)}")
    y = table[tgt].to_numpy(float)[rows]
    mean = preds.mean(axis=1)
    std = preds.std(axis=1, ddof=1) if preds.shape[1] > 1 else np.zeros_like(mean)
    if preds.shape[1] == 1:
        log.warning("one prediction per crop: no ensemble spread; the conformal interval has "
                    "constant width and the raw interval zero width")
    cal = labels == "val"
    lo, hi, info = prediction_interval(mean, std, y[cal], mean[cal], std[cal], level=level)
    raw_lo, raw_hi = info.pop("raw_lo"), info.pop("raw_hi")

    metrics = {}
    for s in SPLITS:
        sel = labels == s
        if sel.sum() < 2:
            log.warning("split %s has %d samples: no metrics", s, int(sel.sum()))
            metrics[s] = {"ensemble": None, "members": []}
            continue
        metrics[s] = {"ensemble": regression_metrics(y[sel], mean[sel]),
                      "members": [regression_metrics(y[sel], preds[sel, m])
                                  for m in range(preds.shape[1])]}
    te = labels == "test"
    interval = {"conformal": {**info,
                              "coverage_test": empirical_coverage(y[te], lo[te], hi[te]),
                              "coverage_test_ci95": list(coverage_confidence_interval(
                                  y[te], lo[te], hi[te])),
                              "coverage_val": empirical_coverage(y[cal], lo[cal], hi[cal]),
                              "mean_width_test": float(np.mean(hi[te] - lo[te]))},
                "raw": {"z": info["z"],
                        "coverage_test": empirical_coverage(y[te], raw_lo[te], raw_hi[te]),
                        "coverage_val": empirical_coverage(y[cal], raw_lo[cal], raw_hi[cal]),
                        "mean_width_test": float(np.mean(raw_hi[te] - raw_lo[te]))}}
    t = table.iloc[rows]
    pred_df = pd.DataFrame({
        "index": rows, "split": labels.astype(str),
        "specimen": t["specimen"].to_numpy(), "area": t["area"].to_numpy(),
        "batch": t["batch"].to_numpy(), "indent": t["indent"].to_numpy(np.int64),
        "x_um": t["x_um"].to_numpy(float), "y_um": t["y_um"].to_numpy(float),
        "y": y, "mean": mean, "std": std, "lo": lo, "hi": hi,
        "raw_lo": raw_lo, "raw_hi": raw_hi})
    c, r = interval["conformal"], interval["raw"]
    ens = metrics["test"]["ensemble"] or {}
    log.info("%s, %d prediction(s) per crop: test MAE %.3g GPa, R2 %.3f; %.0f%% interval "
             "coverage on test: conformal %.3f (95%% CI %.3f-%.3f, mean width %.3g GPa), "
             "raw %.3f (%.3g GPa)",
             tgt, preds.shape[1], ens.get("MAE", float("nan")), ens.get("R2", float("nan")),
             100 * level, c["coverage_test"], *c["coverage_test_ci95"], c["mean_width_test"],
             r["coverage_test"],
             r["mean_width_test"])
    return {"target": tgt, "split_scheme": split, "level": float(level),
            "n_members": len(metas), "mc_samples": int(mc_samples or 0),
            "n_predictions": int(preds.shape[1]), "checkpoints": [str(p) for p in checkpoints],
            "pixel_size_nm": attrs.get("pixel_size_nm"), "metrics": metrics,
            "interval": interval, "predictions": pred_df}


def pick_examples(predictions, n=12, seed=0, split="test"):
    """Rows of ``n`` randomly drawn samples of one split (seeded, sorted by index)."""
    d = predictions[predictions["split"] == split]
    if len(d) == 0:
        raise InputError(f"example_crops: no {split} samples")
    take = np.random.default_rng(seed).choice(len(d), size=min(n, len(d)), replace=False)
    return d.iloc[np.sort(take)]
