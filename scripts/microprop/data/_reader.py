"""The one reader of an assembled ``dataset.h5``.

Every consumer of the dataset (training, evaluation, the baselines and the
baseline ladder, the evaluation figures) opens it with :func:`open_dataset`
and reads its split indices with :func:`read_split`, so that a missing file,
a file that is not a dataset and a malformed split give the same
:class:`~microprop.errors.InputError`, naming the file, wherever they are met.

* :func:`open_dataset` -- the open, checked HDF5 file (a context manager).
* :func:`read_split` -- the ``train``/``val``/``test`` indices of one split
  scheme, validated (present, in range, no index twice).
* :func:`read_splits` -- the same for every scheme of the file.
* :func:`has_split` -- whether the parts of a scheme are present.
* :func:`read_targets` -- target columns as float64 arrays.
* :func:`read_attrs` -- the file attrs, JSON strings decoded.
* :func:`read_crops` -- the crops and one target of one part of a split
  (the training input).

The file's layout is the shards' (:mod:`microprop.data._shards`) plus the
``/splits`` group and file attrs of :mod:`microprop.data._assemble`
(contract: ``docs/ARCHITECTURE.md``).
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from .. import io as mio
from ..errors import InputError
from ._shards import TARGETS, _read_attr
from ._splits import SPLIT_SCHEMES, SPLITS

#: Where the layout of ``dataset.h5`` is documented (for the error messages).
_LAYOUT = "see docs/ARCHITECTURE.md, dataset.h5"


def _check_images(fh, path):
    """Raise unless ``fh`` holds ``/images`` of shape (N, S, S)."""
    if "images" not in fh:
        raise InputError(f"{path}: not a dataset: lacks /images ({_LAYOUT})")
    shape = fh["images"].shape
    if len(shape) != 3 or shape[1] != shape[2]:
        raise InputError(f"{path}: not a dataset: /images must be (N, S, S), found {shape}")


@contextlib.contextmanager
def open_dataset(path):
    """Open an assembled ``dataset.h5`` read-only, checked to be a dataset.

    Parameters
    ----------
    path : path-like
        ``results/{specimen}/dataset.h5`` (layout in the module docstring).

    Yields
    ------
    h5py.File
        The file open for reading; closed when the ``with`` block ends.

    Raises
    ------
    InputError
        If the file is missing, not readable as HDF5, or lacks ``/images`` of
        shape ``(N, S, S)`` (the message names the file).
    """
    path = Path(path)
    with mio.open_hdf5(path, "dataset") as fh:
        _check_images(fh, path)
        yield fh


@contextlib.contextmanager
def _opened(source):
    """``(file, path)`` of a path (opened and closed here) or of an open file."""
    if isinstance(source, (str, Path)):
        with open_dataset(source) as fh:
            yield fh, Path(source)
    else:
        path = Path(source.file.filename)
        _check_images(source, path)
        yield source, path


def has_split(source, scheme, parts=SPLITS):
    """Whether ``/splits/<scheme>/<part>`` is present for every part of ``parts``.

    Parameters
    ----------
    source : path-like or h5py.File
        ``dataset.h5``, or the file opened by :func:`open_dataset`.
    scheme : str
        Split scheme, e.g. ``"random"``.
    parts : sequence of str
        Among ``train``, ``val``, ``test``.

    Returns
    -------
    bool

    Raises
    ------
    InputError
        As :func:`open_dataset`.
    """
    with _opened(source) as (fh, _):
        return all(f"splits/{scheme}/{p}" in fh for p in parts)


def read_split(source, scheme, required=SPLITS):
    """Indices of the ``train``, ``val`` and ``test`` parts of one split scheme.

    Parameters
    ----------
    source : path-like or h5py.File
        ``dataset.h5``, or the file opened by :func:`open_dataset`.
    scheme : str
        Split scheme under ``/splits`` (``"random"``, ``"blocked"``).
    required : sequence of str
        Parts that must be present; a part not in it that the file lacks is
        returned as an empty array.

    Returns
    -------
    dict of str -> numpy.ndarray
        ``{"train": idx, "val": idx, "test": idx}``, 1D int64 row indices into
        the dataset in the file's order.

    Raises
    ------
    InputError
        As :func:`open_dataset`; if the file has no ``/splits/<scheme>`` or
        lacks a required part, an index is outside ``0..N-1``, a part repeats
        an index or an index is in two parts (the message names the file and
        the split).
    """
    with _opened(source) as (fh, path):
        n = fh["images"].shape[0]
        if f"splits/{scheme}" not in fh:
            found = sorted(fh["splits"]) if "splits" in fh else []
            raise InputError(f"{path}: no /splits/{scheme} (split scheme {scheme!r}); "
                             f"found {found}")
        parts = {}
        for name in SPLITS:
            key = f"splits/{scheme}/{name}"
            if key not in fh:
                if name in required:
                    raise InputError(f"{path}: lacks /{key} (split scheme {scheme!r})")
                parts[name] = np.empty(0, np.int64)
                continue
            idx = np.asarray(fh[key][...], dtype=np.int64).ravel()
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise InputError(f"{path}: /{key} has indices outside 0..{n - 1}")
            if np.unique(idx).size != idx.size:
                raise InputError(f"{path}: /{key} repeats indices")
            parts[name] = idx
    seen = np.zeros(n, np.int64)
    for idx in parts.values():
        np.add.at(seen, idx, 1)
    if (seen > 1).any():
        raise InputError(f"{path}: /splits/{scheme} puts {int((seen > 1).sum())} samples in "
                         "more than one split")
    return parts


def read_splits(path):
    """Split indices of every scheme of an assembled dataset.

    Parameters
    ----------
    path : path-like or h5py.File
        ``dataset.h5``, or the file opened by :func:`open_dataset`.

    Returns
    -------
    dict
        ``{scheme: {"train": idx, "val": idx, "test": idx}}`` (int64 arrays,
        :func:`read_split` of each scheme under ``/splits``).

    Raises
    ------
    InputError
        As :func:`read_split`; if the file has no ``/splits`` group.
    """
    with _opened(path) as (fh, p):
        if "splits" not in fh:
            raise InputError(f"{p}: dataset has no /splits group")
        return {scheme: read_split(fh, scheme) for scheme in fh["splits"]}


def read_targets(source, targets=TARGETS):
    """Target columns of a dataset.

    Parameters
    ----------
    source : path-like or h5py.File
        ``dataset.h5``, or the file opened by :func:`open_dataset`.
    targets : sequence of str
        Among ``E_GPa``, ``H_GPa``.

    Returns
    -------
    dict of str -> numpy.ndarray
        Target -> shape (N,) float64 (GPa), in row order.

    Raises
    ------
    InputError
        As :func:`open_dataset`; if ``/targets/<target>`` is missing or not of
        shape (N,).
    """
    with _opened(source) as (fh, path):
        n = fh["images"].shape[0]
        out = {}
        for t in targets:
            if f"targets/{t}" not in fh:
                raise InputError(f"{path}: dataset lacks /targets/{t}")
            out[t] = np.asarray(fh[f"targets/{t}"][...], dtype=np.float64)
            if out[t].shape != (n,):
                raise InputError(f"{path}: /targets/{t} has shape {out[t].shape}; expected ({n},)")
    return out


def read_attrs(source):
    """File attrs of a dataset (or shard), JSON strings decoded.

    Parameters
    ----------
    source : path-like or h5py.File
        ``dataset.h5``, or the file opened by :func:`open_dataset`.

    Returns
    -------
    dict
        Attr name -> value: bytes decoded to str, numpy scalars as Python
        scalars, JSON objects and lists parsed (``pixel_size_nm`` nm,
        ``quantity``, ``sources``, ...).

    Raises
    ------
    InputError
        As :func:`open_dataset`.
    """
    with _opened(source) as (fh, _):
        return {k: _read_attr(v) for k, v in fh.attrs.items()}


def _check_dataset(path, target, split):
    """Check names and the groups training needs; return ``path`` as a Path."""
    path = Path(path)
    if target not in TARGETS:
        raise InputError(f"target {target!r}: expected one of {TARGETS}")
    if split not in SPLIT_SCHEMES:
        raise InputError(f"split {split!r}: expected one of {SPLIT_SCHEMES}")
    with open_dataset(path) as fh:
        for key in (f"targets/{target}", f"splits/{split}/train", f"splits/{split}/val"):
            if key not in fh:
                raise InputError(f"{path}: lacks /{key} ({_LAYOUT})")
    return path


def read_crops(path, target, scheme="random", part="train"):
    """Read the crops and one target of one part of a split.

    Parameters
    ----------
    path : path-like
        ``dataset.h5``.
    target : {"E_GPa", "H_GPa"}
    scheme : {"random", "blocked"}
    part : {"train", "val", "test"}

    Returns
    -------
    images : numpy.ndarray, shape (n, S, S), float32
        In the order of ``/splits/<scheme>/<part>``.
    y : numpy.ndarray, shape (n,), float64
        Target, GPa.
    index : numpy.ndarray, shape (n,), int64
        Row indices into the dataset.

    Raises
    ------
    InputError
        Missing file or groups, indices out of range or repeated (or in two
        parts, :func:`read_split`), non-finite crops or targets (the message
        names the file and the dataset rows).
    """
    path = _check_dataset(path, target, scheme)
    with open_dataset(path) as fh:
        index = read_split(fh, scheme, required=(part,))[part]
        order = np.argsort(index, kind="stable")
        sorted_idx = index[order]
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
