"""Crops around located indents, per-batch HDF5 shards and the assembled dataset.

One shard holds the crops of one ``{specimen}/{area}/{batch}``; the dataset
concatenates all shards of a specimen in a deterministic order and adds
train/val/test splits, both random and spatially blocked (blocks of
``block_um`` x ``block_um`` in each area's plane, so that neighbouring
indents, whose crops overlap, never sit on both sides of a split).

HDF5 layout (shards and dataset; see ``docs/ARCHITECTURE.md``)::

    /images            (N, S, S) float32, chunks (1, S, S), gzip
    /targets/E_GPa     (N,) float32, attr units = "GPa"
    /targets/H_GPa     (N,) float32, attr units = "GPa"
    /meta/specimen, /meta/area, /meta/batch   (N,) UTF-8 strings
    /meta/indent       (N,) int64
    /meta/x_um, /meta/y_um                    (N,) float64 (before-mosaic frame)
    /splits/{random,blocked}/{train,val,test} int64 indices (dataset only)
    file attrs: pixel_size_nm, crop_size_um, crop_size_px, quantity, scale,
                sources (JSON file -> sha256), ...

This module reads and writes the HDF5 format it defines (its own science).
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from .. import io as mio
from ..errors import InputError
from ._shards import TARGETS
from ._splits import SPLIT_SCHEMES, SPLITS


def read_splits(path):
    """Split indices of an assembled dataset: ``{scheme: {split: int64 array}}``."""
    with h5py.File(path, "r") as fh:
        return {scheme: {s: fh[f"splits/{scheme}/{s}"][...] for s in SPLITS}
                for scheme in fh["splits"]}


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
