"""Metrics and prediction intervals of an ensemble's predictions.

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
covers a new sample with probability at least ``level`` (marginally). The
empirical coverage carries a Wilson interval (:func:`coverage_confidence_interval`).

On a spatially blocked split the crops are not exchangeable one by one:
neighbouring crops share material and whole blocks are easy or hard, so a
quantile pooled over a handful of validation blocks holds only on average
over which blocks happened to be held out (on the real micrograph a 90 %
interval covered 0.84 of the test crops, whose blocks had larger errors than
the validation blocks). :func:`block_conformal_quantile` calibrates on the
blocks instead. Each block is taken to scale a common distribution of
scores by its own difficulty ``c_b`` (its median score): the scores divided
by their block's ``c_b`` are pooled for the quantile ``Q_u`` of that common
distribution, and the block difficulties are ranked as in split conformal
prediction (Vovk, Gammerman & Shafer 2005, "Algorithmic learning in a
random world", Springer), ``q = Q_u * c_(k)``, so that a new block
exchangeable with the validation blocks is itself covered at ``level`` with
probability about ``k / (m + 1)`` (for the two-layer, group-exchangeable
setting see Dunn, Wasserman & Ramdas 2023, "Distribution-free prediction
sets for two-layer hierarchical models", J. Am. Stat. Assoc. 118).
"""
from __future__ import annotations

import logging
import math

import numpy as np
from scipy.stats import norm

from .. import stats as stats
from ..errors import InputError

log = logging.getLogger(__name__)

#: relative floor of the spread: ``spread >= SPREAD_FLOOR * median(calibration spread)``
SPREAD_FLOOR = 0.1


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


#: blocks with fewer validation crops take the pooled median as their difficulty (not ranked)
MIN_BLOCK_CROPS = 5


def block_conformal_quantile(scores, blocks, level=0.9, confidence=None,
                             min_block=MIN_BLOCK_CROPS):
    """Block-conformal quantile: a new block, not a new crop, is covered at ``level``.

    Parameters
    ----------
    scores : array-like, shape (n,)
        Non-conformity scores of the calibration crops (finite, >= 0; e.g.
        normalised absolute residuals, dimensionless).
    blocks : array-like, shape (n,)
        Spatial block of each calibration crop (any hashable ids, e.g. the
        dataset's ``/meta/block``).
    level : float
        Coverage asked of every block, in (0, 1).
    confidence : float, optional
        Probability, in (0, 1), with which a new block's own coverage should
        reach ``level``; default ``level``. With ``m`` ranked blocks it is
        reached only when ``confidence <= m / (m + 1)``; otherwise the
        hardest block is used and the confidence achieved, ``m / (m + 1)``,
        is returned (and logged).
    min_block : int
        Blocks with fewer crops are not ranked; their difficulty is the
        median of all scores (when no block has as many, every block is
        ranked, with a warning).

    Returns
    -------
    q : float
        ``Q_u * c_(k)``: ``c_b`` the median score of block ``b`` (its
        difficulty), ``Q_u`` the :func:`conformal_quantile` at ``level`` of
        all scores divided by their block's ``c_b``, ``c_(k)`` the ``k``-th
        smallest difficulty of the ranked blocks, ``k = min(m, ceil((m + 1)
        * confidence))``.
    info : dict
        ``k``, ``m`` (ranked blocks), ``confidence`` (asked),
        ``confidence_achieved`` (``k / (m + 1)``), ``block_scales`` (the
        ranked ``c_b``, ascending), ``q_unit`` (``Q_u``), ``q_pooled``
        (:func:`conformal_quantile` of the scores themselves, for comparison).

    Raises
    ------
    InputError
        If the lengths differ, no score is given, a score is not finite or
        ``level`` / ``confidence`` is outside (0, 1).

    Notes
    -----
    The model: the scores of block ``b`` are ``c_b`` times draws of one
    distribution ``U`` (blocks differ in difficulty, not in the shape of
    their errors). Then block ``b`` is covered at ``level`` when ``q >=
    c_b Q_U(level)``. If the blocks are exchangeable (blocks, not crops, are
    the units drawn), a new block's difficulty is at most the ``k``-th
    smallest of ``m`` with probability at least ``k / (m + 1)`` (the
    split-conformal argument, Vovk et al. 2005, applied to blocks), so the
    new block is covered at ``level`` with about that probability (about:
    ``c_b`` and ``Q_U`` are estimated). This is a statement per block,
    stronger than the pooled quantile's marginal one: it keeps holding when
    the test blocks happen to be harder than most validation blocks, at the
    price of wider intervals where blocks are alike. With few blocks the
    confidence is low (5 blocks: 5/6). The median and the pooled ``Q_u``
    keep it robust: the normalised residuals of an ensemble are
    heavy-tailed, and the 90 % quantile of one block's 25 crops, or the
    largest of them, would follow its one or two worst crops.
    """
    s = np.asarray(scores, dtype=float).ravel()
    b = np.asarray(blocks).ravel()
    if s.shape != b.shape:
        raise InputError(f"block_conformal_quantile: {s.size} scores but {b.size} block ids")
    if s.size == 0 or not np.isfinite(s).all():
        raise InputError(f"block_conformal_quantile needs >= 1 finite score; got {s.size} "
                         f"scores, {int((~np.isfinite(s)).sum())} not finite")
    level = float(level)
    conf = level if confidence is None else float(confidence)
    for name, v in (("level", level), ("confidence", conf)):
        if not 0.0 < v < 1.0:
            raise InputError(f"block_conformal_quantile: {name} must be in (0, 1), got {v}")
    _, inv, counts = np.unique(b, return_inverse=True, return_counts=True)
    min_block = max(1, int(min_block))
    if not (counts >= min_block).any():
        log.warning("block conformal: no calibration block has >= %d crops (sizes %s); every "
                    "block is ranked", min_block, sorted(counts.tolist()))
        min_block = 1
    pooled_median = float(np.median(s))
    scale = np.array([float(np.median(s[inv == j])) if counts[j] >= min_block
                      else pooled_median for j in range(counts.size)])
    if (counts < min_block).any():
        log.info("block conformal: %d of %d calibration blocks have < %d crops and take the "
                 "pooled median as their difficulty", int((counts < min_block).sum()),
                 counts.size, min_block)
    if not (scale > 0).all():
        tiny = 1e-12 * max(float(s.max()), 1e-300)
        scale = np.maximum(scale, tiny)
    ranked = np.sort(scale[counts >= min_block])
    q_unit, _ = conformal_quantile(s / scale[inv], level)
    m = int(ranked.size)
    k = int(math.ceil((m + 1) * conf - 1e-12))
    if k > m:
        log.warning("block conformal: %d calibration blocks give a block-level confidence of at "
                    "most %.3f (asked %.3f); the hardest block is used", m, m / (m + 1), conf)
        k = m
    q_pooled, _ = conformal_quantile(s, level)
    return q_unit * float(ranked[k - 1]), {
        "k": k, "m": m, "confidence": conf, "confidence_achieved": k / (m + 1),
        "block_scales": ranked.tolist(), "q_unit": q_unit, "q_pooled": q_pooled}


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


def prediction_interval(mean, spread, y_cal, mean_cal, spread_cal, level=0.9, floor=None,
                        blocks_cal=None, block_confidence=None):
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
    blocks_cal : array-like, shape (n,), optional
        Spatial block of each calibration sample. Given, ``q`` is the
        :func:`block_conformal_quantile` of the normalised residuals (every
        new block covered at ``level`` with probability ``block_confidence``),
        not the pooled :func:`conformal_quantile`.
    block_confidence : float, optional
        See :func:`block_conformal_quantile` (default ``level``).

    Returns
    -------
    lo, hi : numpy.ndarray, shape (N,), float64
        Split-conformal interval ``mean -+ q * max(spread, floor)`` with ``q``
        the :func:`conformal_quantile` of the normalised calibration residuals
        ``|y_cal - mean_cal| / max(spread_cal, floor)`` (Lei et al. 2018,
        sec. 5.2; Angelopoulos & Bates 2021, sec. 2.3).
    info : dict
        ``method`` (``"pooled"`` or ``"block"``), ``q``, ``k``, ``n_cal``,
        ``level``, ``floor`` (GPa), ``q_pooled`` (the pooled quantile, also
        when the block one is used), with blocks ``m_blocks``,
        ``block_confidence`` (achieved), ``block_scales`` and ``q_unit``
        (:func:`block_conformal_quantile`); ``z`` (the
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
    if blocks_cal is None:
        q, k = conformal_quantile(scores, level)
        extra = {"method": "pooled", "q_pooled": q}
    else:
        q, binfo = block_conformal_quantile(scores, blocks_cal, level, block_confidence)
        k = binfo["k"]
        extra = {"method": "block", "q_pooled": binfo["q_pooled"], "m_blocks": binfo["m"],
                 "block_confidence": binfo["confidence_achieved"],
                 "block_scales": binfo["block_scales"], "q_unit": binfo["q_unit"]}
    half = q * np.maximum(spread, f)
    z = float(norm.ppf(0.5 + 0.5 * float(level)))
    info = {"q": q, "k": k, "n_cal": int(y_cal.size), "level": float(level), "floor": f, "z": z,
            **extra, "raw_lo": mean - z * spread, "raw_hi": mean + z * spread}
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
