"""The seed's "table model" and the linear model: the baselines on the mean grey of a crop.

* :func:`table_model_fit` / :func:`table_model_predict` /
  :func:`table_model` -- mean grey of a crop, binned in equal-count bins,
  and the mean property of each bin as the prediction (the seed paper's
  table model).
* :func:`linear_model` -- ordinary least squares of the property on the mean
  grey; :func:`metrics` -- MSE, MAE, R^2 (scikit-learn).
* :func:`crop_means`, :func:`read_crop_means`, :func:`read_table_model_bins`
  -- their inputs and saved bins.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split

from .. import io as mio
from ..data import (
    TARGETS,
    has_split,
    open_dataset,
    read_attrs,
    read_split,
    read_targets,
)
from ..errors import InputError
from ..progress import progress

log = logging.getLogger(__name__)

def metrics(y_true, y_pred):
    """Regression metrics (scikit-learn).

    Parameters
    ----------
    y_true, y_pred : array-like, shape (N,)

    Returns
    -------
    dict
        ``MSE`` (unit^2), ``MAE`` (unit), ``R2`` (coefficient of
        determination, 1 - SS_res/SS_tot; 0 for predicting the mean).

    Raises
    ------
    InputError
        If the shapes differ or fewer than 2 values are given.
    """
    y_true = np.asarray(y_true, dtype=float).ravel()
    y_pred = np.asarray(y_pred, dtype=float).ravel()
    if y_true.shape != y_pred.shape or y_true.size < 2:
        raise InputError(f"metrics: need two equal-length arrays of >= 2 values, got "
                         f"{y_true.shape} and {y_pred.shape}")
    return {"MSE": float(mean_squared_error(y_true, y_pred)),
            "MAE": float(mean_absolute_error(y_true, y_pred)),
            "R2": float(r2_score(y_true, y_pred))}


def _paired(mean_grey, y, what):
    g = np.asarray(mean_grey, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if g.shape != y.shape:
        raise InputError(f"{what}: mean grey ({g.size}) and target ({y.size}) differ in length")
    ok = np.isfinite(g) & np.isfinite(y)
    if not ok.all():
        log.warning("%s: dropping %d sample(s) with non-finite grey or target", what, int((~ok).sum()))
    return g, y, ok


def table_model_fit(mean_grey, y, n_bins=10, binning="quantile", what="table model"):
    """Fit the seed's table model: mean target per bin of crop mean grey.

    Parameters
    ----------
    mean_grey : array-like, shape (N,)
        Mean calibrated grey value of each crop (eta or porosity).
    y : array-like, shape (N,)
        Target (``E_GPa`` or ``H_GPa``).
    n_bins : int
        Number of bins.
    binning : {"quantile", "uniform"}
        ``quantile`` (default): equal-count bins (edges at grey quantiles;
        tied edges merged, so fewer bins may result); ``uniform``: equal-width
        bins between the minimum and maximum grey. An empty uniform bin takes
        the value of the nearest non-empty bin.
    what : str
        Name of the data in error messages.

    Returns
    -------
    pandas.DataFrame
        One row per bin: ``bin``, ``grey_lo``, ``grey_hi`` (edges),
        ``grey_mean``, ``y_mean``, ``y_std``, ``n``.

    Raises
    ------
    InputError
        If ``n_bins < 1``, an unknown binning, or fewer than 2 usable samples.
    """
    g, y, ok = _paired(mean_grey, y, what)
    g, y = g[ok], y[ok]
    n_bins = int(n_bins)
    if n_bins < 1:
        raise InputError(f"{what}: n_bins must be >= 1, got {n_bins}")
    if g.size < 2:
        raise InputError(f"{what}: {g.size} usable sample(s); at least 2 are needed")
    if binning == "quantile":
        edges = np.unique(np.quantile(g, np.linspace(0, 1, n_bins + 1)))
    elif binning == "uniform":
        edges = np.linspace(g.min(), g.max(), n_bins + 1)
    else:
        raise InputError(f"{what}: binning {binning!r}; expected 'quantile' or 'uniform'")
    if edges.size < 2:
        edges = np.array([g.min(), g.max()])
    idx = _bin_index(g, edges)
    nb = edges.size - 1
    df = pd.DataFrame({"bin": idx, "g": g, "y": y}).groupby("bin").agg(
        grey_mean=("g", "mean"), y_mean=("y", "mean"), y_std=("y", "std"), n=("y", "size"))
    df = df.reindex(range(nb))
    df["n"] = df["n"].fillna(0).astype(int)
    centres = 0.5 * (edges[:-1] + edges[1:])
    filled = df["y_mean"].notna().to_numpy()
    if not filled.all():
        src = np.flatnonzero(filled)
        nearest = src[np.abs(centres[:, None] - centres[src][None, :]).argmin(axis=1)]
        df["y_mean"] = df["y_mean"].to_numpy()[nearest]
    df.insert(0, "grey_hi", edges[1:])
    df.insert(0, "grey_lo", edges[:-1])
    df.insert(0, "bin", np.arange(nb))
    return df.reset_index(drop=True)


def _bin_index(g, edges):
    # inner edges only: values below/above the range fall in the end bins
    return np.searchsorted(edges[1:-1], g, side="right")


def table_model_predict(table, mean_grey):
    """Predict with the table model: the bin mean of each crop's grey bin.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`table_model_fit`.
    mean_grey : array-like, shape (N,)

    Returns
    -------
    numpy.ndarray, shape (N,), float
        Greys outside the fitted range take the end bins' values; a
        non-finite grey gives NaN.
    """
    g = np.asarray(mean_grey, dtype=float).ravel()
    edges = np.append(table["grey_lo"].to_numpy(float), table["grey_hi"].to_numpy(float)[-1])
    pred = table["y_mean"].to_numpy(float)[_bin_index(np.nan_to_num(g), edges)]
    pred[~np.isfinite(g)] = np.nan
    return pred


def split_indices(n, seed=0, test_fraction=0.2):
    """Seeded random train/test split of ``n`` samples (scikit-learn).

    Returns
    -------
    train, test : numpy.ndarray of int64
    """
    if not 0 < test_fraction < 1:
        raise InputError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if n < 2:
        raise InputError(f"split: {n} sample(s); at least 2 are needed")
    train, test = train_test_split(np.arange(n), test_size=test_fraction, random_state=int(seed))
    return np.sort(train).astype(np.int64), np.sort(test).astype(np.int64)


def _resolve_split(n, ok, seed, test_fraction, train_index, test_index):
    if (train_index is None) != (test_index is None):
        raise InputError("give both train_index and test_index, or neither")
    if train_index is None:
        train_index, test_index = split_indices(n, seed, test_fraction)
    train_index = np.asarray(train_index, dtype=np.int64)
    test_index = np.asarray(test_index, dtype=np.int64)
    for name, ix in (("train_index", train_index), ("test_index", test_index)):
        if ix.size and (ix.min() < 0 or ix.max() >= n):
            raise InputError(f"{name}: indices outside 0..{n - 1}")
    train_index = train_index[ok[train_index]]
    test_index = test_index[ok[test_index]]
    if train_index.size < 2 or test_index.size < 2:
        raise InputError(f"split: {train_index.size} train / {test_index.size} test usable "
                         "samples; at least 2 of each are needed")
    return train_index, test_index


def table_model(mean_grey, y, n_bins=10, binning="quantile", seed=0, test_fraction=0.2,
                train_index=None, test_index=None):
    """Fit the table model on a train split and score it on the test split.

    Parameters
    ----------
    mean_grey, y : array-like, shape (N,)
    n_bins, binning : see :func:`table_model_fit`.
    seed, test_fraction : seeded random split (:func:`split_indices`) used
        when no indices are given.
    train_index, test_index : array-like of int, optional
        An explicit split (e.g. the dataset's ``/splits/random``).

    Returns
    -------
    dict
        ``table`` (bins), ``metrics`` (on the test split), ``n_train``,
        ``n_test``, ``test_index``, ``y_pred`` (test predictions, aligned with
        ``test_index``).
    """
    g, yv, ok = _paired(mean_grey, y, "table model")
    tr, te = _resolve_split(g.size, ok, seed, test_fraction, train_index, test_index)
    table = table_model_fit(g[tr], yv[tr], n_bins=n_bins, binning=binning)
    pred = table_model_predict(table, g[te])
    return {"table": table, "metrics": metrics(yv[te], pred), "n_train": int(tr.size),
            "n_test": int(te.size), "test_index": te, "y_pred": pred}


def linear_model(mean_grey, y, seed=0, test_fraction=0.2, train_index=None, test_index=None):
    """Ordinary least squares ``y = a + b * grey`` fitted on a train split.

    Parameters
    ----------
    mean_grey, y : array-like, shape (N,)
    seed, test_fraction : seeded random split (default 80/20) when no indices
        are given.
    train_index, test_index : array-like of int, optional
        An explicit split.

    Returns
    -------
    dict
        ``intercept``, ``slope`` (unit of y per unit grey), ``metrics`` (on
        the test split), ``n_train``, ``n_test``, ``test_index``, ``y_pred``.
    """
    g, yv, ok = _paired(mean_grey, y, "linear model")
    tr, te = _resolve_split(g.size, ok, seed, test_fraction, train_index, test_index)
    reg = LinearRegression().fit(g[tr, None], yv[tr])
    pred = reg.predict(g[te, None])
    return {"intercept": float(reg.intercept_), "slope": float(reg.coef_[0]),
            "metrics": metrics(yv[te], pred), "n_train": int(tr.size), "n_test": int(te.size),
            "test_index": te, "y_pred": pred}


def crop_means(images):
    """Mean value of each crop, ignoring NaN pixels.

    Parameters
    ----------
    images : array-like, shape (N, S, S)
        Calibrated crops (float32).

    Returns
    -------
    numpy.ndarray, shape (N,), float64
        NaN for an all-NaN crop.
    """
    a = np.asarray(images, dtype=np.float64)
    if a.ndim != 3:
        raise InputError(f"crop_means: expected (N, S, S) crops, got shape {a.shape}")
    flat = a.reshape(a.shape[0], -1)
    n = np.isfinite(flat).sum(axis=1)
    s = np.where(np.isfinite(flat), flat, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def read_table_model_bins(path, target=None):
    """Read table-model bins written by the ``baselines`` rule (its ``bins`` output).

    Parameters
    ----------
    path : path-like
        CSV with ``grey_lo, grey_hi, y_mean`` (and optionally ``target``,
        ``bin``, ...; the columns of :func:`table_model_fit`).
    target : str, optional
        With a ``target`` column, keep the rows of this target (``E_GPa`` or
        ``H_GPa``).

    Returns
    -------
    pandas.DataFrame
        The bins, sorted by ``bin`` when that column exists, index reset.

    Raises
    ------
    InputError
        If the file is missing or lacks a column, or has no bins for
        ``target`` (the message names the file).
    """
    df = mio.read_table(path, required=("grey_lo", "grey_hi", "y_mean"), what="table-model bins")
    if "target" in df.columns and target is not None:
        df = df[df["target"] == target]
        if df.empty:
            raise InputError(f"{path}: no table-model bins for target {target!r}")
    if "bin" in df.columns:
        df = df.sort_values("bin")
    return df.reset_index(drop=True)


def read_crop_means(path, targets=TARGETS, scheme="random", block=512):
    """What the table and linear models need of a dataset: crop means, targets, split.

    Parameters
    ----------
    path : path-like
        ``dataset.h5`` (:func:`microprop.data.open_dataset`).
    targets : sequence of str
        Target columns to read (``E_GPa``, ``H_GPa``).
    scheme : str
        Split scheme whose ``train`` + ``val`` (fit) and ``test`` parts are
        returned, when the file has its ``train`` and ``test`` parts.
    block : int
        Crops read at a time (memory bound).

    Returns
    -------
    means : numpy.ndarray, shape (N,), float64
        :func:`crop_means` of every crop (NaN pixels ignored).
    targets : dict of str -> numpy.ndarray, shape (N,), float64
        GPa.
    split : tuple of two numpy.ndarray (int64, sorted), or None
        ``(train + val, test)`` row indices of ``/splits/<scheme>``; None when
        the file lacks its train or test part.
    quantity : str
        File attr ``quantity`` (``eta``, ``porosity``; ``"grey"`` if absent):
        the grey axis of the crop means.

    Raises
    ------
    InputError
        As :func:`microprop.data.open_dataset`, :func:`microprop.data.read_targets`
        and :func:`microprop.data.read_split`.
    """
    with open_dataset(path) as h5:
        ys = read_targets(h5, targets)
        images = h5["images"]
        n = images.shape[0]
        means = np.empty(n, np.float64)
        for i0 in progress(range(0, n, block), desc="crop means", unit="block"):
            means[i0:i0 + block] = crop_means(images[i0:i0 + block])
        split = None
        if has_split(h5, scheme, ("train", "test")):
            parts = read_split(h5, scheme, required=("train", "test"))
            split = (np.sort(np.concatenate([parts["train"], parts["val"]])),
                     np.sort(parts["test"]))
        quantity = read_attrs(h5).get("quantity", "grey")
    return means, ys, split, str(quantity)
