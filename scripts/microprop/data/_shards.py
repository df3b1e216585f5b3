"""Per-batch HDF5 shards: the crops and table of one ``{specimen}/{area}/{batch}``.

:func:`write_shard` writes the crops of one batch with their table
(``META_COLUMNS``, ``TARGETS``) and file attrs, atomically;
:func:`read_shard` reads a shard (or an assembled dataset, which shares the
layout) back. The private writers of ``/images`` and the table columns and
the attr conversion (dicts and lists as JSON strings) serve the assembly
(``_assemble``) too. ``CONSISTENT_ATTRS`` are the attrs all shards of one
dataset must agree on.

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

import json
import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from .. import io as mio
from ..errors import InputError

log = logging.getLogger(__name__)

META_STR = ("specimen", "area", "batch")


META_COLUMNS = ("specimen", "area", "batch", "indent", "x_um", "y_um")


TARGETS = ("E_GPa", "H_GPa")


#: file attrs that must agree between shards assembled into one dataset
CONSISTENT_ATTRS = ("crop_size_px", "crop_size_um", "pixel_size_nm", "quantity", "scale")


def _attr_value(v):
    """HDF5-storable attr: dicts/lists/None as JSON strings, numpy scalars as Python."""
    if isinstance(v, (dict, list, tuple)) or v is None:
        return json.dumps(mio.jsonable(v), sort_keys=True)
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    return v


def _read_attr(v):
    """Attr as stored by :func:`_attr_value`, back: bytes decoded, numpy scalars as Python, JSON parsed."""
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, str) and (v[:1] in ("{", "[") or v == "null"):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def _create_images(fh, n, s, data=None):
    """``/images`` (n, s, s) float32, one image per chunk, gzip; extendable along N."""
    return fh.create_dataset("images", shape=(n, s, s), data=data, dtype=np.float32,
                             chunks=(1, s, s), maxshape=(None, s, s),
                             compression="gzip", compression_opts=4, shuffle=True)


def _write_h5(fh, crops, table):
    """Write ``/images`` and the table columns of a shard into an open file."""
    _create_images(fh, crops.shape[0], crops.shape[1], data=crops)
    _write_h5_columns(fh, table)


def _check_shard_input(crops, table, path):
    """Crops as float32 ``(N, S, S)``, checked against the table's columns and length (InputError)."""
    crops = np.asarray(crops, dtype=np.float32)
    if crops.ndim != 3 or crops.shape[1] != crops.shape[2]:
        raise InputError(f"{path}: crops must be (N, S, S); got shape {crops.shape}")
    missing = [c for c in (*META_COLUMNS, *TARGETS) if c not in table.columns]
    if missing:
        raise InputError(f"{path}: table lacks column(s) {missing}")
    if len(table) != crops.shape[0]:
        raise InputError(f"{path}: {crops.shape[0]} crops but {len(table)} table rows")
    return crops


def write_shard(path, crops, table, attrs):
    """Write the crops of one batch to an HDF5 shard, atomically.

    Parameters
    ----------
    path : path-like
        Output ``.h5`` file.
    crops : numpy.ndarray, shape (N, S, S), float32
        N may be 0 (an empty shard is allowed).
    table : pandas.DataFrame
        N rows with ``specimen, area, batch`` (str), ``indent`` (int),
        ``x_um, y_um`` (float, um), ``E_GPa, H_GPa`` (float, GPa).
    attrs : dict
        File attrs: ``pixel_size_nm``, ``crop_size_um``, ``crop_size_px``,
        ``quantity``, ``scale``, ``sources`` (dict file -> sha256), ... Dicts
        and lists are stored as JSON strings.

    Raises
    ------
    InputError
        If crops are not ``(N, S, S)``, lengths differ, columns are missing,
        or ``(specimen, area, batch, indent)`` repeats.
    """
    crops = _check_shard_input(crops, table, path)
    table = table.reset_index(drop=True)
    dup = table.duplicated(["specimen", "area", "batch", "indent"], keep=False)
    if dup.any():
        raise InputError(f"{path}: duplicate indents {table.loc[dup, 'indent'].tolist()[:10]}")
    with mio.atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as fh:
            _write_h5(fh, crops, table)
            for k, v in (attrs or {}).items():
                fh.attrs[k] = _attr_value(v)
    log.info("wrote %d crops to %s", len(table), path)


def read_shard(path, images=True):
    """Read a shard (or a dataset) written by :func:`write_shard`/:func:`assemble`.

    Parameters
    ----------
    path : path-like
    images : bool
        Load ``/images`` (False: return None for them, read only the table).

    Returns
    -------
    crops : numpy.ndarray (N, S, S) float32, or None
    table : pandas.DataFrame
        Columns ``specimen, area, batch, indent, x_um, y_um, E_GPa, H_GPa``.
    attrs : dict
        File attrs, JSON strings decoded.

    Raises
    ------
    InputError
        If the file is missing, not HDF5, or lacks a dataset of the layout.
    """
    path = Path(path)
    with mio.open_hdf5(path, "shard") as fh:
        need = ["images", *(f"targets/{t}" for t in TARGETS), *(f"meta/{c}" for c in META_COLUMNS)]
        missing = [k for k in need if k not in fh]
        if missing:
            raise InputError(f"{path}: lacks dataset(s) {missing}")
        cols = {}
        for c in META_COLUMNS:
            v = fh[f"meta/{c}"]
            cols[c] = v.asstr()[...] if c in META_STR else v[...]
        for t in TARGETS:
            cols[t] = fh[f"targets/{t}"][...]
        table = pd.DataFrame(cols)
        for c in META_STR:
            table[c] = table[c].astype(object)
        crops = fh["images"][...] if images else None
        attrs = {k: _read_attr(v) for k, v in fh.attrs.items()}
        n_img = fh["images"].shape[0]
    if n_img != len(table):
        raise InputError(f"{path}: {n_img} images but {len(table)} metadata rows")
    return crops, table, attrs


def _write_h5_columns(fh, table):
    """Write ``/targets/*`` (float32, GPa) and ``/meta/*`` (strings, int64 indent, float64 um) of a table."""
    for t in TARGETS:
        d = fh.create_dataset(f"targets/{t}", data=table[t].to_numpy(np.float32), dtype=np.float32)
        d.attrs["units"] = "GPa"
    str_dt = h5py.string_dtype("utf-8")
    for c in META_STR:
        fh.create_dataset(f"meta/{c}", data=np.asarray(table[c].astype(str).tolist(), dtype=object)
                          if len(table) else np.empty(0, dtype=object), dtype=str_dt)
    fh.create_dataset("meta/indent", data=table["indent"].to_numpy(np.int64), dtype=np.int64)
    for c in ("x_um", "y_um"):
        d = fh.create_dataset(f"meta/{c}", data=table[c].to_numpy(np.float64), dtype=np.float64)
        d.attrs["units"] = "um"
