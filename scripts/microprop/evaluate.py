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
import math
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.stats import norm

from . import dataset as mdataset
from . import figures as mfig
from . import stats
from .errors import InputError
from .workflow import progress

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
#: relative floor of the spread: ``spread >= SPREAD_FLOOR * median(calibration spread)``
SPREAD_FLOOR = 0.1
#: size (inches) of the example-crops figure at :data:`microprop.figures.DPI`
CROPS_FIGSIZE = (12.0, 10.0)
PREDICTION_COLUMNS = ("index", "split", "specimen", "area", "batch", "indent", "x_um", "y_um",
                      "y", "mean", "std", "lo", "hi", "raw_lo", "raw_hi")


# --------------------------------------------------------------------------
# Metrics and intervals (pure numpy)
# --------------------------------------------------------------------------
def regression_metrics(y, yhat):
    """Mean squared error, mean absolute error and R^2 of predictions.

    Parameters
    ----------
    y, yhat : array-like, shape (N,)
        Measured and predicted property in GPa (``N >= 2``).

    Returns
    -------
    dict
        ``MSE`` (GPa^2), ``MAE`` (GPa), ``R2`` (coefficient of determination,
        1 - SS_res / SS_tot), ``n`` (int). Computed by scikit-learn through
        :func:`microprop.stats.metrics`.

    Raises
    ------
    InputError
        If the shapes differ, fewer than 2 values are given or a value is not
        finite.
    """
    y = np.asarray(y, dtype=float).ravel()
    yhat = np.asarray(yhat, dtype=float).ravel()
    if y.shape == yhat.shape and not (np.isfinite(y).all() and np.isfinite(yhat).all()):
        raise InputError(f"regression_metrics: {int((~np.isfinite(y)).sum())} measured and "
                         f"{int((~np.isfinite(yhat)).sum())} predicted values are not finite")
    out = stats.metrics(y, yhat)
    out["n"] = int(y.size)
    return out


def conformal_quantile(scores, level=0.9):
    """Split-conformal quantile of calibration scores.

    Parameters
    ----------
    scores : array-like, shape (n,)
        Non-conformity scores of the calibration samples (finite, >= 0).
    level : float
        Target coverage ``1 - alpha`` in (0, 1).

    Returns
    -------
    q : float
        The ``k``-th smallest score with ``k = ceil((n + 1) * level)``, i.e.
        the empirical quantile of order ``ceil((n + 1) level) / n``
        (Angelopoulos & Bates 2021, eq. 1); ``inf`` when ``k > n`` (too few
        calibration samples for this level: the interval is unbounded).
    k : int

    Raises
    ------
    InputError
        If ``level`` is outside (0, 1), no score is given or a score is not
        finite.
    """
    s = np.asarray(scores, dtype=float).ravel()
    if not 0.0 < float(level) < 1.0:
        raise InputError(f"conformal level must be in (0, 1), got {level}")
    if s.size == 0 or not np.isfinite(s).all():
        raise InputError(f"conformal calibration needs >= 1 finite score; got {s.size} scores, "
                         f"{int((~np.isfinite(s)).sum())} not finite")
    n = s.size
    k = int(math.ceil((n + 1) * float(level) - 1e-12))
    if k > n:
        log.warning("conformal calibration: %d samples are too few for level %.3g "
                    "(need >= %d); the interval is unbounded", n, level,
                    int(math.ceil(float(level) / (1 - float(level)))))
        return float("inf"), k
    return float(np.sort(s)[k - 1]), k


def spread_floor(spread_cal, relative=SPREAD_FLOOR):
    """Lower bound applied to ensemble spreads before normalising residuals.

    Parameters
    ----------
    spread_cal : array-like, shape (n,)
        Calibration spreads (GPa).
    relative : float
        Floor as a fraction of the median calibration spread.

    Returns
    -------
    float
        ``relative * median(spread_cal)``, or 1.0 (GPa) when that is 0 or not
        finite (a single member: all spreads 0, so every floored spread is 1
        and the interval becomes ``mean +- q`` with ``q`` the conformal
        quantile of the absolute residuals).
    """
    s = np.asarray(spread_cal, dtype=float)
    s = s[np.isfinite(s)]
    f = relative * float(np.median(s)) if s.size else 0.0
    return f if f > 0 and np.isfinite(f) else 1.0


def prediction_interval(mean, spread, y_cal, mean_cal, spread_cal, level=0.9, floor=None):
    """Conformalised ensemble interval and the raw Gaussian ensemble interval.

    Parameters
    ----------
    mean, spread : array-like, shape (N,)
        Ensemble mean and standard deviation (GPa) of the samples to bound.
    y_cal, mean_cal, spread_cal : array-like, shape (n,)
        Measured value, ensemble mean and spread (GPa) of the calibration
        samples (the validation split; never used for training or testing).
    level : float
        Target coverage in (0, 1), e.g. 0.9.
    floor : float, optional
        Lower bound of the spread (GPa), applied to calibration and test alike;
        default :func:`spread_floor` of ``spread_cal``.

    Returns
    -------
    lo, hi : numpy.ndarray, shape (N,), float64
        Split-conformal interval ``mean -+ q * max(spread, floor)`` with ``q``
        the :func:`conformal_quantile` of the normalised calibration residuals
        ``|y_cal - mean_cal| / max(spread_cal, floor)`` (Lei et al. 2018,
        sec. 5.2; Angelopoulos & Bates 2021, sec. 2.3).
    info : dict
        ``q``, ``k``, ``n_cal``, ``level``, ``floor`` (GPa), ``z`` (the
        Gaussian quantile ``Phi^-1((1 + level) / 2)``, 1.645 at 0.9), and
        ``raw_lo``, ``raw_hi`` (arrays): the uncalibrated interval
        ``mean -+ z * spread``, which assumes the measurement scatters as
        a normal distribution of the ensemble's standard deviation.

    Raises
    ------
    InputError
        If lengths differ, a value is not finite or a spread is negative.
    """
    mean = np.asarray(mean, dtype=float).ravel()
    spread = np.asarray(spread, dtype=float).ravel()
    y_cal, mean_cal, spread_cal = (np.asarray(a, dtype=float).ravel()
                                   for a in (y_cal, mean_cal, spread_cal))
    if mean.shape != spread.shape:
        raise InputError(f"prediction_interval: mean {mean.shape} and spread {spread.shape} differ")
    if not (y_cal.shape == mean_cal.shape == spread_cal.shape):
        raise InputError(f"prediction_interval: calibration arrays differ in length: y "
                         f"{y_cal.shape}, mean {mean_cal.shape}, spread {spread_cal.shape}")
    for name, a in (("mean", mean), ("spread", spread), ("y_cal", y_cal),
                    ("mean_cal", mean_cal), ("spread_cal", spread_cal)):
        if not np.isfinite(a).all():
            raise InputError(f"prediction_interval: {name} has {int((~np.isfinite(a)).sum())} "
                             "non-finite values")
    if (spread < 0).any() or (spread_cal < 0).any():
        raise InputError("prediction_interval: spreads must be >= 0")
    f = spread_floor(spread_cal) if floor is None else float(floor)
    if not f > 0:
        raise InputError(f"prediction_interval: floor must be > 0 GPa, got {floor}")
    scores = np.abs(y_cal - mean_cal) / np.maximum(spread_cal, f)
    q, k = conformal_quantile(scores, level)
    half = q * np.maximum(spread, f)
    z = float(norm.ppf(0.5 + 0.5 * float(level)))
    info = {"q": q, "k": k, "n_cal": int(y_cal.size), "level": float(level), "floor": f, "z": z,
            "raw_lo": mean - z * spread, "raw_hi": mean + z * spread}
    return mean - half, mean + half, info


def empirical_coverage(y, lo, hi):
    """Fraction of samples whose measured value lies inside its interval.

    Parameters
    ----------
    y, lo, hi : array-like, shape (N,)
        Measured values and interval bounds (GPa); bounds may be infinite.

    Returns
    -------
    float
        ``mean(lo <= y <= hi)``; NaN for ``N = 0``.
    """
    y, lo, hi = (np.asarray(a, dtype=float).ravel() for a in (y, lo, hi))
    if not (y.shape == lo.shape == hi.shape):
        raise InputError(f"empirical_coverage: lengths differ: {y.shape}, {lo.shape}, {hi.shape}")
    if y.size == 0:
        return float("nan")
    return float(np.mean((lo <= y) & (y <= hi)))


def coverage_confidence_interval(y, lo, hi, confidence=0.95):
    """Wilson score interval of the empirical coverage.

    How far the coverage measured on ``N`` test crops may be from the
    interval's true coverage by chance alone: a 90 % interval that covers
    0.82 of 120 crops is not the same evidence as one that covers 0.82 of
    12,000. Wilson 1927, "Probable inference, the law of succession, and
    statistical inference", J. Am. Stat. Assoc. 22, 209-212 (computed by
    :meth:`scipy.stats.binomtest` ``.proportion_ci(method="wilson")``).

    Parameters
    ----------
    y, lo, hi : array-like, shape (N,)
        Measured values and interval bounds (GPa).
    confidence : float
        Confidence of the interval, in (0, 1).

    Returns
    -------
    (float, float)
        Lower and upper bound of the coverage; ``(nan, nan)`` for ``N = 0``.

    Notes
    -----
    It treats the crops as independent. Neighbouring crops share material,
    so on a spatially blocked split, where whole blocks are in or out, the
    real uncertainty of the coverage is larger than this.
    """
    from scipy.stats import binomtest

    y, lo, hi = (np.asarray(a, dtype=float).ravel() for a in (y, lo, hi))
    if not (y.shape == lo.shape == hi.shape):
        raise InputError(f"coverage_confidence_interval: lengths differ: {y.shape}, {lo.shape}, "
                         f"{hi.shape}")
    if not 0 < confidence < 1:
        raise InputError(f"coverage_confidence_interval: confidence must be in (0, 1), got {confidence}")
    if y.size == 0:
        return float("nan"), float("nan")
    k = int(np.sum((lo <= y) & (y <= hi)))
    ci = binomtest(k, int(y.size)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


# --------------------------------------------------------------------------
# Predictions of the trained members
# --------------------------------------------------------------------------
def resolve_device(device="auto"):
    """:func:`microprop.train.resolve_device` (imported late: torch is loaded
    only when predictions are made); ``None`` means ``"auto"``."""
    train = importlib.import_module("microprop.train")
    return train.resolve_device("auto" if device is None else device)


def _train_api(load_model=None, predict=None):
    if load_model is None or predict is None:
        train = importlib.import_module("microprop.train")
        load_model = load_model or train.load_model
        predict = predict or train.predict
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


# --------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------
_HISTORY_COLUMNS = ("epoch", "train_loss", "train_mae_GPa", "val_loss", "val_mse_GPa2",
                    "val_mae_GPa")


def _train_mse(table, what):
    """Training MSE in GPa^2 from a metrics table.

    ``train_mse_GPa2`` when the table has it; else ``train_loss`` times the
    ratio ``val_mse_GPa2 / val_loss`` when that ratio is the same in every
    epoch (the loss is then an MSE in standardised units, the ratio the
    target variance); else None.
    """
    if "train_mse_GPa2" in table:
        return table["train_mse_GPa2"].to_numpy(float)
    ratio = table["val_mse_GPa2"].to_numpy(float) / table["val_loss"].to_numpy(float)
    ratio = ratio[np.isfinite(ratio)]
    if ratio.size and np.ptp(ratio) <= 1e-3 * abs(np.median(ratio)) and np.median(ratio) > 0:
        return table["train_loss"].to_numpy(float) * float(np.median(ratio))
    log.warning("%s: train_loss is not an MSE in standardised units (val_mse_GPa2 / val_loss "
                "varies); the training MSE is left out of the history figure", what)
    return None


def training_history(tables, labels=None, quantity="E_GPa", title=None):
    """Training and validation MSE and MAE against epoch, for every member.

    Parameters
    ----------
    tables : sequence of pandas.DataFrame
        One ``metrics.csv`` per member: ``epoch``, ``train_loss``,
        ``train_mae_GPa``, ``val_loss``, ``val_mse_GPa2``, ``val_mae_GPa``
        (and optionally ``train_mse_GPa2``). The training MSE in GPa^2 is
        ``train_mse_GPa2`` or, when the loss is an MSE of standardised
        targets (``val_mse_GPa2 / val_loss`` constant), ``train_loss`` times
        that ratio. Training values are epoch averages with dropout and
        augmentation active; validation values are computed after the epoch.
    labels : sequence of str, optional
        Member names (default ``member 0``, ...).
    quantity : str
        ``E_GPa`` or ``H_GPa`` (title).

    Returns
    -------
    matplotlib.figure.Figure
        Size ``FIGSIZE["double"]`` at :data:`microprop.figures.DPI`: left MSE
        (GPa^2, log scale), right MAE (GPa); blue training, orange
        validation, one line style per member; a star marks each member's
        lowest validation MSE.

    Raises
    ------
    InputError
        No table, or a table lacking a column.
    """
    if not len(tables):
        raise InputError("training_history: no metrics tables given")
    labels = list(labels) if labels is not None else [f"member {i}" for i in range(len(tables))]
    fig = Figure(figsize=mfig.FIGSIZE["double"], dpi=mfig.DPI)
    ax1, ax2 = fig.subplots(1, 2)
    styles = ["-", "--", ":", "-."]
    for i, (t, lab) in enumerate(zip(tables, labels)):
        mfig._need(t, _HISTORY_COLUMNS, f"training_history {lab}")
        if len(t) == 0:
            raise InputError(f"training_history: {lab} has no epochs")
        ls = styles[i % len(styles)]
        first = i == 0
        ep = t["epoch"].to_numpy(float)
        tr_mse = _train_mse(t, lab)
        if tr_mse is not None:
            ax1.plot(ep, tr_mse, ls, color="tab:blue", lw=1.2,
                     label="training" if first else None)
        val = t["val_mse_GPa2"].to_numpy(float)
        ax1.plot(ep, val, ls, color="tab:orange", lw=1.2, label="validation" if first else None)
        b = int(np.nanargmin(val))
        ax1.plot(ep[b], val[b], "*", color="k", ms=10,
                 label="lowest validation MSE" if first else None)
        ax2.plot(ep, t["train_mae_GPa"].to_numpy(float), ls, color="tab:blue", lw=1.2,
                 label="training" if first else None)
        ax2.plot(ep, t["val_mae_GPa"].to_numpy(float), ls, color="tab:orange", lw=1.2,
                 label="validation" if first else None)
        ax2.plot(ep[b], t["val_mae_GPa"].to_numpy(float)[b], "*", color="k", ms=10)
        if len(tables) > 1:  # line style key for the members
            ax2.plot([], [], ls, color="0.3", label=lab)
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch (-)")
    ax1.set_ylabel("mean squared error (GPa²)")
    ax1.set_title("MSE")
    ax2.set_xlabel("epoch (-)")
    ax2.set_ylabel("mean absolute error (GPa)")
    ax2.set_title("MAE")
    ax1.legend(fontsize=9)
    ax2.legend(fontsize=8, ncol=2)
    sym = quantity.split("_")[0]
    fig.suptitle(title or f"Training history of the {sym} network ({len(tables)} member"
                 f"{'s' if len(tables) != 1 else ''})")
    fig.tight_layout()
    return fig


def predicted_vs_measured(predictions, quantity="E_GPa", level=0.9, title=None):
    """Ensemble prediction against measurement, training and test samples.

    Parameters
    ----------
    predictions : pandas.DataFrame
        The ``predictions`` of :func:`evaluate`: ``split``, ``y`` (measured),
        ``mean`` (predicted), ``lo``, ``hi`` (interval), GPa.
    quantity : str
        ``E_GPa`` or ``H_GPa`` (axis labels).
    level : float
        Nominal coverage of ``lo``..``hi`` (legend).

    Returns
    -------
    matplotlib.figure.Figure
        Size ``FIGSIZE["double"]``: left training, right test samples, each
        with the 1:1 line and R^2 and MAE in the legend; test points carry
        their interval as error bars (infinite bounds drawn to the axis edge).

    Raises
    ------
    InputError
        If columns are missing or the train or test split has < 2 samples.
    """
    mfig._need(predictions, ["split", "y", "mean", "lo", "hi"], "predicted_vs_measured")
    sym, unit = quantity.split("_")[0], "GPa"
    fig = Figure(figsize=mfig.FIGSIZE["double"], dpi=mfig.DPI)
    axes = fig.subplots(1, 2)
    finite = np.concatenate([predictions[c].to_numpy(float) for c in ("y", "mean")])
    finite = finite[np.isfinite(finite)]
    lo_lim, hi_lim = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    pad = 0.05 * (hi_lim - lo_lim or 1.0)
    lim = (lo_lim - pad, hi_lim + pad)
    for ax, s, colour in zip(axes, ("train", "test"), ("tab:blue", "tab:orange")):
        d = predictions[predictions["split"] == s]
        if len(d) < 2:
            raise InputError(f"predicted_vs_measured: {len(d)} {s} samples; need >= 2")
        y, m = d["y"].to_numpy(float), d["mean"].to_numpy(float)
        met = regression_metrics(y, m)
        lab = f"{s} (N={len(d)}): R² = {met['R2']:.3f}, MAE = {met['MAE']:.3g} {unit}"
        if s == "test":
            lo = d["lo"].to_numpy(float)
            hi = d["hi"].to_numpy(float)
            err = np.vstack([np.clip(m - lo, 0, lim[1] - lim[0]), np.clip(hi - m, 0, lim[1] - lim[0])])
            cov = empirical_coverage(y, lo, hi)
            ax.errorbar(y, m, yerr=err, fmt="o", ms=3, color=colour, ecolor=colour,
                        elinewidth=0.6, alpha=0.6, capsize=0, label=lab)
            ax.plot([], [], color=colour, lw=0.8,
                    label=f"{100 * level:.0f}% conformal interval (coverage {cov:.2f})")
        else:
            ax.scatter(y, m, s=8, alpha=0.5, color=colour, label=lab)
        ax.plot(lim, lim, "k--", lw=1, label="1:1")
        ax.set_xlim(lim)
        ax.set_ylim(lim)
        ax.set_aspect("equal")
        ax.set_xlabel(f"measured {sym} ({unit})")
        ax.set_ylabel(f"predicted {sym} ({unit}), ensemble mean")
        ax.set_title(f"{s} samples")
        ax.legend(fontsize=8, loc="upper left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def pick_examples(predictions, n=12, seed=0, split="test"):
    """Rows of ``n`` randomly drawn samples of one split (seeded, sorted by index)."""
    d = predictions[predictions["split"] == split]
    if len(d) == 0:
        raise InputError(f"example_crops: no {split} samples")
    take = np.random.default_rng(seed).choice(len(d), size=min(n, len(d)), replace=False)
    return d.iloc[np.sort(take)]


def example_crops(images, predictions, pixel_size_nm, n=12, seed=0, quantity="E_GPa",
                  grey_label="backscatter coefficient eta (-)", title=None):
    """A grid of random test crops titled with measured and predicted value.

    Parameters
    ----------
    images : array-like, shape (N, S, S)
        The dataset's ``/images`` (numpy array or ``h5py`` dataset); row
        ``predictions["index"]`` is read.
    predictions : pandas.DataFrame
        ``index``, ``split``, ``y``, ``mean``, ``lo``, ``hi`` (GPa).
    pixel_size_nm : float
        Crop pixel size (dataset attr ``pixel_size_nm``).
    n : int
        Number of crops (12 fill the 3 x 4 grid).
    seed : int
        Seed of the random choice.
    quantity : str
    grey_label : str
        Colourbar label (the calibrated quantity with its unit).

    Returns
    -------
    matplotlib.figure.Figure
        Size :data:`CROPS_FIGSIZE` at :data:`microprop.figures.DPI`; crops
        in um (indent at the centre, marked +), one grey scale for all
        (2nd-98th percentile), a scale bar in um; each title gives the
        measured value and the prediction +- half the interval width.

    Raises
    ------
    InputError
        No test sample, bad pixel size, or images not (N, S, S).
    """
    if pixel_size_nm is None or not float(pixel_size_nm) > 0:
        raise InputError(f"example_crops: pixel_size_nm must be > 0 (dataset attr), "
                         f"got {pixel_size_nm}")
    if len(getattr(images, "shape", ())) != 3:
        raise InputError(f"example_crops: images must be (N, S, S), got "
                         f"{getattr(images, 'shape', None)}")
    mfig._need(predictions, ["index", "split", "y", "mean", "lo", "hi"], "example_crops")
    rows = pick_examples(predictions, n, seed).sort_values("index")
    idx = rows["index"].to_numpy(np.int64)
    crops = np.asarray(images[idx], dtype=float)  # increasing indices (h5py)
    s_px = crops.shape[-1]
    width_um = s_px * float(pixel_size_nm) / 1000.0
    vmin, vmax = mfig.robust_limits(crops)
    ncols = 4
    nrows = max(1, math.ceil(len(rows) / ncols))
    fig = Figure(figsize=CROPS_FIGSIZE, dpi=mfig.DPI)
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    sym, unit = quantity.split("_")[0], "GPa"
    im = None
    for ax, crop, r in zip(axes, crops, rows.itertuples()):
        im = ax.imshow(crop, cmap="gray", vmin=vmin, vmax=vmax,
                       extent=(0.0, width_um, width_um, 0.0), interpolation="antialiased")
        ax.plot([width_um / 2], [width_um / 2], "+", color="tab:red", ms=10, mew=1.2)
        mfig.add_scale_bar(ax, width_um)
        half = 0.5 * (r.hi - r.lo)
        ax.set_title(f"#{r.index}: measured {r.y:.3g} {unit}\npredicted {r.mean:.3g} ± "
                     f"{half:.2g} {unit}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(rows):]:
        ax.axis("off")
    fig.tight_layout(rect=(0, 0, 0.9, 0.95))
    if im is not None:
        cax = fig.add_axes((0.91, 0.15, 0.02, 0.7))
        fig.colorbar(im, cax=cax).set_label(grey_label)
    fig.suptitle(title or f"{len(rows)} random test crops ({width_um:.3g} um wide): measured "
                 f"and predicted {sym}")
    return fig
