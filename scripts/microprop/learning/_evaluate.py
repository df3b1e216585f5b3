"""Evaluation of a trained ensemble on the dataset's split: predictions, metrics, intervals.

:func:`ensemble_predict` runs every member (or its MC-dropout samples) over
the crops; :func:`evaluate` scores the ensemble mean on train, val and test
(:func:`microprop.learning.regression_metrics`), calibrates the interval on
val and measures its coverage on test (:mod:`microprop.learning._intervals`;
on the spatially blocked split by validation blocks,
:func:`microprop.learning.block_conformal_quantile`).
The trained networks are reached only through ``microprop.learning``
(``load_model``, ``predict``, looked up at call time so that tests can put
stand-ins there); all predictions are in physical units (GPa).
"""
from __future__ import annotations

import importlib
import logging
from pathlib import Path

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
                      "block", "y", "mean", "std", "lo", "hi", "raw_lo", "raw_hi")

#: how :func:`evaluate` calibrates the interval: ``auto`` is ``block`` on the blocked split
INTERVAL_METHODS = ("auto", "pooled", "block")


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
        ``microprop.learning.load_model``; all must predict the same target from
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
        Replacements of ``microprop.learning.load_model`` and ``predict`` (same
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

    paths = _check_ensemble_input(checkpoints, images)
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
        _check_member(p, meta, paths[0], metas[0], expect, s)
        cols = preds[:, m * passes:(m + 1) * passes]
        _member_passes(cols, p, model, meta, images, predict, dev, batch_size, block,
                       mc_samples)
        bad = ~np.isfinite(cols)
        if bad.any():
            raise InputError(f"{p}: {int(bad.sum())} non-finite predictions (crops "
                             f"{np.flatnonzero(bad.any(axis=1))[:10].tolist()})")
        log.info("member %d (%s): %d crops, %d pass(es)", m, p, n, passes)
    return preds, metas


def _check_ensemble_input(checkpoints, images):
    """The checkpoint paths, checked to exist, and ``images`` checked to be (N, S, S)."""
    paths = [Path(p) for p in checkpoints]
    if not paths:
        raise InputError("ensemble_predict: no checkpoints given")
    for p in paths:
        if not p.exists():
            raise InputError(f"{p}: checkpoint not found")
    if len(getattr(images, "shape", ())) != 3:
        raise InputError(f"ensemble_predict: images must be (N, S, S); got shape "
                         f"{getattr(images, 'shape', None)}")
    return paths


def _check_member(path, meta, first_path, first_meta, expect, crop_px):
    """Raise if a member's meta disagrees with the first member, ``expect`` or the crops."""
    if meta.get("target") != first_meta.get("target"):
        raise InputError(f"{path}: member predicts {meta.get('target')!r} but {first_path} "
                         f"predicts {first_meta.get('target')!r}")
    for key, want in (expect or {}).items():
        have = meta.get(key)
        if want is not None and have is not None and have != want:
            hint = (" (evaluating on another split scheme would score it on samples it was "
                    "trained on)") if key == "split" else ""
            raise InputError(f"{path}: member has {key} = {have!r}; expected {want!r}{hint}")
    size = meta.get("crop_size_px")
    if size is not None and int(size) != crop_px:
        raise InputError(f"{path}: member was trained on {int(size)} px crops; the dataset "
                         f"has {crop_px} px crops")


def _member_passes(cols, path, model, meta, images, predict, dev, batch_size, block, mc_samples):
    """Fill ``cols`` (N, passes) with one member's passes over ``images``, ``block`` crops a time."""
    n = cols.shape[0]
    for r in range(cols.shape[1]):
        for i0 in progress(range(0, n, block), desc=f"predict {path.parent.name or path.name}",
                           unit="block", disable=n <= block):
            x = np.asarray(images[i0:i0 + block], dtype=np.float32)
            out = np.asarray(predict(model, meta, x, dev, batch_size=batch_size,
                                     mc_dropout=mc_samples > 0), dtype=np.float64).ravel()
            if out.shape != (x.shape[0],):
                raise InputError(f"{path}: predict returned shape {out.shape} for "
                                 f"{x.shape[0]} crops")
            cols[i0:i0 + x.shape[0], r] = out


def _read_dataset(path, scheme):
    """Table and attrs of a dataset and the parts of split ``scheme`` (val, test non-empty).

    The table gains a ``block`` column from ``/meta/block`` (-1 where the
    dataset has none).
    """
    path = Path(path)
    with mdataset.open_dataset(path) as fh:
        if "splits" not in fh:
            raise InputError(f"{path}: dataset has no /splits group")
        parts = mdataset.read_split(fh, scheme)
        blocks = np.asarray(fh["meta/block"][:], np.int64) if "meta/block" in fh else None
    _, table, attrs = mdataset.read_shard(path, images=False)
    for name in ("val", "test"):
        if parts[name].size == 0:
            raise InputError(f"{path}: /splits/{scheme}/{name} is empty")
    if blocks is not None and blocks.size != len(table):
        raise InputError(f"{path}: /meta/block has {blocks.size} entries for {len(table)} samples")
    table["block"] = blocks if blocks is not None else np.full(len(table), -1, np.int64)
    return table, attrs, parts


def _interval_method(method, split, table, path):
    """The calibration actually used: ``block`` needs the dataset's block ids."""
    if method not in INTERVAL_METHODS:
        raise InputError(f"interval method {method!r}: expected one of {list(INTERVAL_METHODS)}")
    has_blocks = bool((table["block"].to_numpy() >= 0).all())
    if method == "auto":
        method = "block" if split == "blocked" and has_blocks else "pooled"
        if split == "blocked" and not has_blocks:
            log.warning("%s: no /meta/block, so the blocked split's interval is calibrated on "
                        "pooled validation crops", path)
    elif method == "block" and not has_blocks:
        raise InputError(f"{path}: interval method 'block' needs /meta/block, which this "
                         "dataset lacks")
    return method


def evaluate(checkpoints, dataset_path, split="random", device="auto", level=0.9,
             mc_samples=0, target=None, batch_size=64, seed=0, load_model=None, predict=None,
             interval_method="auto", block_confidence=None):
    """Score an ensemble on a dataset and calibrate its prediction interval.

    Every sample of the split scheme is predicted by every member; the
    ensemble mean is scored per split (train, val, test) and so is each
    member. The interval is calibrated on ``val`` (:func:`prediction_interval`)
    and its coverage is measured on ``test``. On the blocked split the
    validation crops come in whole blocks and the calibration uses them
    (``interval_method="auto"``):
    :func:`microprop.learning.block_conformal_quantile`, so that
    the interval holds per block, also where test blocks are harder than
    most validation blocks; the pooled split-conformal interval is reported
    beside it (``interval.conformal_pooled``).

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
    interval_method : str
        ``"auto"`` (``"block"`` on the blocked split when the dataset has
        ``/meta/block``, else ``"pooled"``), ``"pooled"`` (split conformal
        over validation crops) or ``"block"`` (:data:`INTERVAL_METHODS`).
    block_confidence : float, optional
        Probability that a new block is covered at ``level`` (default
        ``level``; capped by the number of validation blocks, see
        :func:`microprop.learning.block_conformal_quantile`).

    Returns
    -------
    dict
        ``target``, ``split_scheme``, ``level``, ``n_members``,
        ``mc_samples``, ``n_predictions`` (M), ``checkpoints``;
        ``metrics``: per split ``{"ensemble": {MSE, MAE, R2, n}, "members":
        [...]}`` (GPa^2, GPa); ``interval``: ``conformal`` and ``raw``, each
        with ``coverage_test``, ``coverage_val``, ``mean_width_test`` (GPa),
        and the calibration (``method``, ``q``, ``k``, ``n_cal``, ``floor``,
        ``z``, ...), and ``conformal_pooled`` (the pooled split-conformal
        interval's ``q``, coverage and width, whichever is used);
        ``predictions``: DataFrame with :data:`PREDICTION_COLUMNS` (``index``
        the dataset row, ``block`` its spatial block or -1, ``y`` measured,
        ``mean``/``std`` of the ensemble, ``lo``/``hi`` conformal,
        ``raw_lo``/``raw_hi`` Gaussian, GPa).

    Raises
    ------
    InputError
        Dataset unreadable or without this split scheme (or with an empty
        val/test split); members trained on another target or split scheme;
        see :func:`ensemble_predict`.
    """
    dataset_path = Path(dataset_path)
    table, attrs, parts = _read_dataset(dataset_path, split)
    method = _interval_method(interval_method, split, table, dataset_path)
    rows, labels = _rows_and_labels(parts)
    with mdataset.open_dataset(dataset_path) as fh:
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
    mean, std = _ensemble_mean_std(preds)
    cal = labels == "val"
    blocks = table["block"].to_numpy(np.int64)[rows]
    lo, hi, info = prediction_interval(
        mean, std, y[cal], mean[cal], std[cal], level=level,
        blocks_cal=blocks[cal] if method == "block" else None, block_confidence=block_confidence)
    raw_lo, raw_hi = info.pop("raw_lo"), info.pop("raw_hi")
    metrics = _split_metrics(y, mean, preds, labels)
    interval = _interval_summary(y, labels, (lo, hi), (raw_lo, raw_hi), info)
    interval["conformal_pooled"] = _pooled_summary(y, labels, mean, std, info)
    pred_df = _predictions_table(table, rows, labels, y, mean, std, (lo, hi), (raw_lo, raw_hi))
    _log_summary(tgt, preds.shape[1], metrics, interval, level)
    return {"target": tgt, "split_scheme": split, "level": float(level),
            "n_members": len(metas), "mc_samples": int(mc_samples or 0),
            "n_predictions": int(preds.shape[1]), "checkpoints": [str(p) for p in checkpoints],
            "pixel_size_nm": attrs.get("pixel_size_nm"), "metrics": metrics,
            "interval": interval, "predictions": pred_df}


def _rows_and_labels(parts):
    """Dataset rows of all parts in increasing order and the part name of each."""
    rows = np.concatenate([parts[s] for s in SPLITS]).astype(np.int64)
    labels = np.concatenate([np.full(parts[s].size, s, dtype=object) for s in SPLITS])
    order = np.argsort(rows, kind="stable")
    return rows[order], labels[order]


def _ensemble_mean_std(preds):
    """Ensemble mean and spread (ddof 1; zeros for a single prediction) per crop."""
    mean = preds.mean(axis=1)
    std = preds.std(axis=1, ddof=1) if preds.shape[1] > 1 else np.zeros_like(mean)
    if preds.shape[1] == 1:
        log.warning("one prediction per crop: no ensemble spread; the conformal interval has "
                    "constant width and the raw interval zero width")
    return mean, std


def _split_metrics(y, mean, preds, labels):
    """Per split, the metrics of the ensemble mean and of every member (None below 2 samples)."""
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
    return metrics


def _pooled_summary(y, labels, mean, std, info):
    """The pooled split-conformal interval (same scores and floor): q, coverage and width."""
    te, cal = labels == "test", labels == "val"
    half = info["q_pooled"] * np.maximum(std, info["floor"])
    lo, hi = mean - half, mean + half
    return {"q": info["q_pooled"],
            "coverage_test": empirical_coverage(y[te], lo[te], hi[te]),
            "coverage_test_ci95": list(coverage_confidence_interval(y[te], lo[te], hi[te])),
            "coverage_val": empirical_coverage(y[cal], lo[cal], hi[cal]),
            "mean_width_test": float(np.mean(hi[te] - lo[te]))}


def _interval_summary(y, labels, conformal, raw, info):
    """Coverage and mean width on test (and val) of the conformal and the raw interval."""
    (lo, hi), (raw_lo, raw_hi) = conformal, raw
    te, cal = labels == "test", labels == "val"
    return {"conformal": {**info,
                          "coverage_test": empirical_coverage(y[te], lo[te], hi[te]),
                          "coverage_test_ci95": list(coverage_confidence_interval(
                              y[te], lo[te], hi[te])),
                          "coverage_val": empirical_coverage(y[cal], lo[cal], hi[cal]),
                          "mean_width_test": float(np.mean(hi[te] - lo[te]))},
            "raw": {"z": info["z"],
                    "coverage_test": empirical_coverage(y[te], raw_lo[te], raw_hi[te]),
                    "coverage_val": empirical_coverage(y[cal], raw_lo[cal], raw_hi[cal]),
                    "mean_width_test": float(np.mean(raw_hi[te] - raw_lo[te]))}}


def _predictions_table(table, rows, labels, y, mean, std, conformal, raw):
    """One row per predicted crop, with :data:`PREDICTION_COLUMNS`."""
    (lo, hi), (raw_lo, raw_hi) = conformal, raw
    t = table.iloc[rows]
    return pd.DataFrame({
        "index": rows, "split": labels.astype(str),
        "specimen": t["specimen"].to_numpy(), "area": t["area"].to_numpy(),
        "batch": t["batch"].to_numpy(), "indent": t["indent"].to_numpy(np.int64),
        "x_um": t["x_um"].to_numpy(float), "y_um": t["y_um"].to_numpy(float),
        "block": t["block"].to_numpy(np.int64), "y": y, "mean": mean, "std": std, "lo": lo, "hi": hi,
        "raw_lo": raw_lo, "raw_hi": raw_hi})


def _log_summary(target, n_predictions, metrics, interval, level):
    """Log the test error and the interval coverage."""
    c, r = interval["conformal"], interval["raw"]
    p = interval.get("conformal_pooled", c)
    ens = metrics["test"]["ensemble"] or {}
    log.info("%s, %d prediction(s) per crop: test MAE %.3g GPa, R2 %.3f; %.0f%% interval "
             "coverage on test: conformal (%s) %.3f (95%% CI %.3f-%.3f, mean width %.3g GPa), "
             "pooled conformal %.3f (%.3g GPa), raw %.3f (%.3g GPa)",
             target, n_predictions, ens.get("MAE", float("nan")), ens.get("R2", float("nan")),
             100 * level, c.get("method", "pooled"), c["coverage_test"], *c["coverage_test_ci95"],
             c["mean_width_test"], p["coverage_test"], p["mean_width_test"],
             r["coverage_test"], r["mean_width_test"])


def pick_examples(predictions, n=12, seed=0, split="test"):
    """Rows of ``n`` randomly drawn samples of one split (seeded, sorted by index)."""
    d = predictions[predictions["split"] == split]
    if len(d) == 0:
        raise InputError(f"example_crops: no {split} samples")
    take = np.random.default_rng(seed).choice(len(d), size=min(n, len(d)), replace=False)
    return d.iloc[np.sort(take)]
