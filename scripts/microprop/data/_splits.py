"""Train/val/test splits of the dataset: random and spatially blocked.

:func:`random_split` is a seeded random permutation cut at the target
fractions. :func:`blocked_split` assigns whole spatial blocks
(:func:`block_ids`: squares of ``block_um`` x ``block_um`` in each area's
plane) to one part, so that neighbouring indents, whose crops overlap, never
sit on both sides of a split. Parts are named by ``SPLITS``, schemes by
``SPLIT_SCHEMES``; every split is a dict part -> sorted int64 indices.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputError

SPLITS = ("train", "val", "test")


SPLIT_SCHEMES = ("random", "blocked")


def _check_fractions(fractions):
    """Train/val/test fractions as float64 (3,), normalised; InputError unless non-negative, summing to 1."""
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or np.any(f < 0) or not np.isclose(f.sum(), 1.0, atol=1e-6):
        raise InputError(f"split fractions must be three non-negative numbers summing to 1 "
                         f"(train, val, test); got {list(fractions)}")
    return f / f.sum()


def random_split(n, fractions=(0.7, 0.15, 0.15), seed=0):
    """Seeded random train/val/test split of ``n`` samples.

    ``round(f_train * n)`` and ``round(f_val * n)`` samples go to train and
    val (taken from ``numpy.random.default_rng(seed).permutation(n)``), the
    rest to test.

    Returns
    -------
    dict of str -> numpy.ndarray (int64, sorted)
    """
    f = _check_fractions(fractions)
    perm = np.random.default_rng(seed).permutation(int(n))
    n_tr = int(np.floor(f[0] * n + 0.5))
    n_va = min(int(np.floor(f[1] * n + 0.5)), n - n_tr)
    parts = (perm[:n_tr], perm[n_tr:n_tr + n_va], perm[n_tr + n_va:])
    return {k: np.sort(p).astype(np.int64) for k, p in zip(SPLITS, parts)}


def block_ids(table, block_um):
    """Spatial block of each sample: ``(specimen, area, floor(x/b), floor(y/b))`` as an int code.

    Parameters
    ----------
    table : pandas.DataFrame with ``specimen, area, x_um, y_um``
    block_um : float
        Block edge in micrometres.

    Returns
    -------
    numpy.ndarray (N,), int64
        Codes 0..n_blocks-1 in sorted block order.
    """
    if not block_um or block_um <= 0:
        raise InputError(f"block_um must be positive, got {block_um}")
    if len(table) == 0:
        return np.zeros(0, np.int64)
    keys = pd.DataFrame({
        "specimen": table["specimen"].astype(str).to_numpy(),
        "area": table["area"].astype(str).to_numpy(),
        "bx": np.floor(table["x_um"].to_numpy(np.float64) / block_um).astype(np.int64),
        "by": np.floor(table["y_um"].to_numpy(np.float64) / block_um).astype(np.int64),
    })
    return keys.groupby(list(keys.columns), sort=True).ngroup().to_numpy(np.int64)


def blocked_split(blocks, fractions=(0.7, 0.15, 0.15), seed=0):
    """Spatially blocked split: whole blocks go to train, val or test.

    Blocks are shuffled with ``numpy.random.default_rng([seed, 1])`` and laid
    end to end by sample count; a block goes to the split whose cumulative
    target range ``[0, f_train N), [f_train N, (f_train + f_val) N), ...``
    holds the block's midpoint. The achieved fractions thus differ from the
    targets by at most half the largest block.

    Parameters
    ----------
    blocks : numpy.ndarray (N,), int
        Block id of each sample (:func:`block_ids`).

    Returns
    -------
    dict of str -> numpy.ndarray (int64, sorted)
    """
    f = _check_fractions(fractions)
    blocks = np.asarray(blocks)
    n = blocks.size
    ids, counts = np.unique(blocks, return_counts=True)
    order = np.random.default_rng([int(seed), 1]).permutation(ids.size)
    mid = np.cumsum(counts[order]) - counts[order] / 2.0
    bounds = np.cumsum(f)[:-1] * n
    which = np.searchsorted(bounds, mid, side="right")  # 0 train, 1 val, 2 test
    split_of_block = dict(zip(ids[order].tolist(), which.tolist()))
    assign = np.array([split_of_block[b] for b in blocks.tolist()], dtype=np.int64)
    return {k: np.flatnonzero(assign == i).astype(np.int64) for i, k in enumerate(SPLITS)}


def _split_report(splits, n, fractions):
    """Per part: ``count``, achieved ``fraction`` of ``n`` and ``target`` fraction."""
    return {k: {"count": int(v.size), "fraction": float(v.size / n) if n else 0.0,
                "target": float(t)} for (k, v), t in zip(splits.items(), fractions)}
