"""The spread of a test figure: bootstrap intervals over test crops or blocks, and over seeds.

A test R^2 measured on a hundred-odd crops is one draw: another test set of
the same size gives another figure (the same config on two machines gave
an H blocked-split R^2 of 0.631 and 0.517). :func:`bootstrap_weights` draws
the resamples once, as multiplicities of the test crops, so that every model
scored on the same test crops is scored on the same resamples (a paired
bootstrap: differences and ratios between models get intervals too);
:func:`bootstrap_metrics` and :func:`bootstrap_coverage` evaluate them, and
:func:`percentile_interval` turns the replicates into an interval.

Crops are resampled one by one on a random split. On a spatially blocked
split neighbouring crops share material and whole blocks are easy or hard,
so the blocks are resampled with all their crops (the cluster bootstrap,
Davison & Hinkley 1997, "Bootstrap methods and their application",
Cambridge, sec. 3.8); with few test blocks the interval is coarse and, if
anything, too narrow (the blocks seen are all the between-block variation
it knows).

:func:`member_spread` summarises the spread over ensemble members trained
with different seeds: the other part of a single run's uncertainty, which
resampling the test set does not see.

Percentile intervals (Efron & Tibshirani 1993, "An introduction to the
bootstrap", Chapman & Hall, ch. 13).
"""
from __future__ import annotations

import logging

import numpy as np

from ..errors import InputError

log = logging.getLogger(__name__)

#: bootstrap resamples by default
N_BOOT = 2000


def bootstrap_weights(n, groups=None, n_boot=N_BOOT, seed=0):
    """Resamples of ``n`` test crops as multiplicities, by crop or by block.

    Parameters
    ----------
    n : int
        Number of test crops (``>= 2``).
    groups : array-like, shape (n,), optional
        Block of each crop (any ids). Given, whole blocks are drawn with
        replacement (as many as there are blocks), each with all its crops;
        otherwise crops are drawn one by one.
    n_boot : int
        Number of resamples (``>= 1``).
    seed : int
        Seed of numpy's generator.

    Returns
    -------
    numpy.ndarray, shape (n_boot, n), float64
        Row ``b`` holds how often each crop is in resample ``b`` (each row
        sums to ``n`` for crops, to the resampled blocks' crop count for
        blocks).

    Raises
    ------
    InputError
        If ``n < 2``, ``n_boot < 1`` or ``groups`` has another length.
    """
    n, n_boot = int(n), int(n_boot)
    if n < 2 or n_boot < 1:
        raise InputError(f"bootstrap_weights: need >= 2 crops and >= 1 resample; got n={n}, "
                         f"n_boot={n_boot}")
    rng = np.random.default_rng(int(seed))
    if groups is None:
        return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
    g = np.asarray(groups).ravel()
    if g.size != n:
        raise InputError(f"bootstrap_weights: {g.size} block ids for {n} crops")
    _, inv = np.unique(g, return_inverse=True)
    m = int(inv.max()) + 1
    if m < 2:
        log.warning("bootstrap over blocks: the test crops are all in one block; the interval "
                    "is a point")
    counts = rng.multinomial(m, np.full(m, 1.0 / m), size=n_boot).astype(np.float64)
    return counts[:, inv]


def _check_pair(y, yhat, weights, what):
    y = np.asarray(y, dtype=float).ravel()
    yhat = np.asarray(yhat, dtype=float).ravel()
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    if y.shape != yhat.shape or w.shape[1] != y.size:
        raise InputError(f"{what}: y {y.shape}, prediction {yhat.shape} and weights {w.shape} "
                         "do not match")
    if not (np.isfinite(y).all() and np.isfinite(yhat).all()):
        raise InputError(f"{what}: {int((~np.isfinite(y)).sum())} measured and "
                         f"{int((~np.isfinite(yhat)).sum())} predicted values are not finite")
    return y, yhat, w


def bootstrap_metrics(y, yhat, weights):
    """MSE, MAE and R^2 of every resample.

    Parameters
    ----------
    y, yhat : array-like, shape (n,)
        Measured and predicted property of the test crops (GPa).
    weights : numpy.ndarray, shape (B, n)
        Multiplicities from :func:`bootstrap_weights`.

    Returns
    -------
    dict of numpy.ndarray, each shape (B,)
        ``MSE`` (GPa^2), ``MAE`` (GPa), ``R2`` (``1 - SS_res / SS_tot`` of
        the resample, with its own weighted mean; NaN where a resample has
        no spread of ``y``).

    Raises
    ------
    InputError
        On mismatched shapes or non-finite values.
    """
    y, yhat, w = _check_pair(y, yhat, weights, "bootstrap_metrics")
    tot = w.sum(axis=1)
    r = y - yhat
    mse = (w @ (r * r)) / tot
    mae = (w @ np.abs(r)) / tot
    ybar = (w @ y) / tot
    ss_tot = w @ (y * y) - tot * ybar * ybar
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(ss_tot > 1e-12 * np.maximum(w @ (y * y), 1e-300),
                      1.0 - (w @ (r * r)) / ss_tot, np.nan)
    return {"MSE": mse, "MAE": mae, "R2": r2}


def bootstrap_coverage(y, lo, hi, weights):
    """Empirical coverage of an interval in every resample.

    Parameters
    ----------
    y, lo, hi : array-like, shape (n,)
        Measured values and interval bounds (GPa; bounds may be infinite).
    weights : numpy.ndarray, shape (B, n)
        Multiplicities from :func:`bootstrap_weights`.

    Returns
    -------
    numpy.ndarray, shape (B,)
        Weighted fraction of crops with ``lo <= y <= hi``.
    """
    y, lo, hi = (np.asarray(a, dtype=float).ravel() for a in (y, lo, hi))
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    if not (y.shape == lo.shape == hi.shape) or w.shape[1] != y.size:
        raise InputError(f"bootstrap_coverage: y {y.shape}, lo {lo.shape}, hi {hi.shape} and "
                         f"weights {w.shape} do not match")
    inside = ((lo <= y) & (y <= hi)).astype(float)
    return (w @ inside) / w.sum(axis=1)


def percentile_interval(replicates, confidence=0.95):
    """Percentile bootstrap interval of replicates (NaN replicates left out).

    Parameters
    ----------
    replicates : array-like, shape (B,)
    confidence : float
        In (0, 1).

    Returns
    -------
    (float, float)
        The ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles;
        ``(nan, nan)`` when no replicate is finite.
    """
    if not 0 < float(confidence) < 1:
        raise InputError(f"percentile_interval: confidence must be in (0, 1), got {confidence}")
    r = np.asarray(replicates, dtype=float).ravel()
    r = r[np.isfinite(r)]
    if r.size == 0:
        return float("nan"), float("nan")
    a = 0.5 * (1.0 - float(confidence))
    lo, hi = np.quantile(r, [a, 1.0 - a])
    return float(lo), float(hi)


def member_spread(values):
    """Mean, standard deviation and range of a figure over ensemble members (seeds).

    Parameters
    ----------
    values : array-like, shape (M,)
        One figure per member, e.g. each member's test R^2 (members trained
        with different seeds, :func:`microprop.learning.member_seed`).

    Returns
    -------
    dict
        ``n``, ``mean``, ``sd`` (ddof 1; NaN for one member), ``min``,
        ``max`` (NaN everywhere for no finite value).
    """
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"n": 0, "mean": float("nan"), "sd": float("nan"), "min": float("nan"),
                "max": float("nan")}
    return {"n": int(v.size), "mean": float(v.mean()),
            "sd": float(v.std(ddof=1)) if v.size > 1 else float("nan"),
            "min": float(v.min()), "max": float(v.max())}
