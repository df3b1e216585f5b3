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

import json
import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from . import io as mio
from .errors import InputError
from .workflow import progress

log = logging.getLogger(__name__)

META_STR = ("specimen", "area", "batch")
META_COLUMNS = ("specimen", "area", "batch", "indent", "x_um", "y_um")
TARGETS = ("E_GPa", "H_GPa")
SPLITS = ("train", "val", "test")
#: file attrs that must agree between shards assembled into one dataset
CONSISTENT_ATTRS = ("crop_size_px", "crop_size_um", "pixel_size_nm", "quantity", "scale")
SKIP_OUTSIDE = "crop outside mosaic"
SKIP_NO_POSITION = "no position"
SKIP_NO_TARGET = "missing target"


def crop_size_px(crop_size_um, pixel_size_nm):
    """Crop edge in pixels, ``S = round(crop_size_um * 1000 / pixel_size_nm)``.

    Parameters
    ----------
    crop_size_um : float
        Crop edge in micrometres.
    pixel_size_nm : float
        Pixel size in nanometres.

    Returns
    -------
    int
        ``S >= 1`` (may be even or odd; see :func:`crop_indents`).

    Raises
    ------
    InputError
        If either value is not positive.
    """
    if not (crop_size_um and crop_size_um > 0 and pixel_size_nm and pixel_size_nm > 0):
        raise InputError(f"crop_size_um ({crop_size_um}) and pixel_size_nm ({pixel_size_nm}) "
                         "must be positive")
    return max(1, int(np.floor(crop_size_um * 1000.0 / pixel_size_nm + 0.5)))


def crop_indents(image, located, crop_size_px, pixel_size_nm=None, source="located"):
    """Cut square crops centred on located indents.

    The indent at ``(x_px, y_px)`` (rounded half-up to the nearest pixel
    ``(cx, cy)``) lands on crop pixel ``[S // 2, S // 2]``: the crop covers
    rows ``cy - S//2 .. cy - S//2 + S - 1`` and the same for columns. For odd
    ``S`` this is the exact centre; for even ``S`` the indent is the
    lower-right of the four central pixels.

    Indents are skipped, with a reason, when the crop leaves the mosaic
    (``"crop outside mosaic"``), when the position is not finite
    (``"no position"``), or when ``E_GPa`` or ``H_GPa`` is not finite
    (``"missing target"``).

    Parameters
    ----------
    image : zarr.Array or numpy.ndarray, shape (H, W)
        Calibrated map (``MulF``/``MicF``) in the before-mosaic frame.
    located : pandas.DataFrame
        Columns ``indent``, ``x_px``, ``y_px``, ``E_GPa``, ``H_GPa``;
        ``x_um``, ``y_um`` are used when present, else computed from
        ``pixel_size_nm`` (``x_um = x_px * pixel_size_nm / 1000``). Other
        columns are carried along.
    crop_size_px : int
        Crop edge ``S`` in pixels.
    pixel_size_nm : float, optional
        Needed only when ``located`` lacks ``x_um``/``y_um``.
    source : str
        Name of the located table, for error messages.

    Returns
    -------
    crops : numpy.ndarray, shape (N, S, S), float32
    kept : pandas.DataFrame
        The N kept rows (index reset), in input order, with ``x_um``/``y_um``.
    skipped : pandas.DataFrame
        The skipped rows with a ``reason`` column.

    Raises
    ------
    InputError
        If a required column is missing or ``crop_size_px < 1``.
    """
    s = int(crop_size_px)
    if s < 1:
        raise InputError(f"crop size must be >= 1 px, got {crop_size_px}")
    missing = [c for c in ("indent", "x_px", "y_px", *TARGETS) if c not in located.columns]
    if missing:
        raise InputError(f"{source}: lacks column(s) {missing}; found {list(located.columns)}")
    table = located.reset_index(drop=True).copy()
    if "x_um" not in table.columns or "y_um" not in table.columns:
        if pixel_size_nm is None:
            raise InputError(f"{source}: lacks x_um/y_um and no pixel_size_nm was given")
        table["x_um"] = table["x_px"].astype(float) * float(pixel_size_nm) / 1000.0
        table["y_um"] = table["y_px"].astype(float) * float(pixel_size_nm) / 1000.0
    h, w = (int(v) for v in image.shape)
    x = table["x_px"].to_numpy(dtype=np.float64)
    y = table["y_px"].to_numpy(dtype=np.float64)
    reason = np.full(len(table), "", dtype=object)
    finite = np.isfinite(x) & np.isfinite(y)
    reason[~finite] = SKIP_NO_POSITION
    cx = np.floor(np.where(finite, x, 0) + 0.5).astype(np.int64)
    cy = np.floor(np.where(finite, y, 0) + 0.5).astype(np.int64)
    x0, y0 = cx - s // 2, cy - s // 2
    outside = finite & ((x0 < 0) | (y0 < 0) | (x0 + s > w) | (y0 + s > h))
    reason[outside] = SKIP_OUTSIDE
    no_target = (reason == "") & ~(np.isfinite(table["E_GPa"].to_numpy(dtype=np.float64))
                                   & np.isfinite(table["H_GPa"].to_numpy(dtype=np.float64)))
    reason[no_target] = SKIP_NO_TARGET
    keep = reason == ""
    idx = np.flatnonzero(keep)
    crops = np.empty((idx.size, s, s), np.float32)
    for k, i in enumerate(progress(idx, desc="crop", unit="indent")):
        crops[k] = np.asarray(image[y0[i]:y0[i] + s, x0[i]:x0[i] + s], dtype=np.float32)
    kept = table.loc[keep].reset_index(drop=True)
    skipped = table.loc[~keep].assign(reason=reason[~keep]).reset_index(drop=True)
    if len(skipped):
        log.warning("%s: %d of %d indents skipped (%s)", source, len(skipped), len(table),
                    skipped["reason"].value_counts().to_dict())
    return crops, kept, skipped


# --------------------------------------------------------------------------
# Shards
# --------------------------------------------------------------------------
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
    _create_images(fh, crops.shape[0], crops.shape[1], data=crops)
    _write_h5_columns(fh, table)


def _check_shard_input(crops, table, path):
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


def read_splits(path):
    """Split indices of an assembled dataset: ``{scheme: {split: int64 array}}``."""
    with h5py.File(path, "r") as fh:
        return {scheme: {s: fh[f"splits/{scheme}/{s}"][...] for s in SPLITS}
                for scheme in fh["splits"]}


# --------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------
def _check_fractions(fractions):
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
    return {k: {"count": int(v.size), "fraction": float(v.size / n) if n else 0.0,
                "target": float(t)} for (k, v), t in zip(splits.items(), fractions)}


# --------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------
def _same(a, b):
    if isinstance(a, (int, float, np.number)) and isinstance(b, (int, float, np.number)):
        return bool(np.isclose(float(a), float(b), rtol=1e-9, atol=0))
    return a == b


def assemble(shard_paths, out_path, seed=0, fractions=(0.7, 0.15, 0.15), block_um=50.0,
             attrs=None):
    """Concatenate shards into one dataset with random and blocked splits.

    Samples are ordered by ``(specimen, area, batch, indent)``. Shards are
    read one at a time (memory: one shard). Writing is atomic.

    Parameters
    ----------
    shard_paths : sequence of path-like
        Shards from :func:`write_shard`. Empty shards (0 crops) are allowed
        and logged.
    out_path : path-like
        Dataset ``.h5`` to write.
    seed : int
        Seed of both splits.
    fractions : (float, float, float)
        Target train/val/test fractions (sum 1).
    block_um : float
        Edge of the square spatial blocks of the blocked split, um.
    attrs : dict, optional
        More file attrs (``config_sha256``, ``code_version``, ...).

    Returns
    -------
    dict
        Report: ``n``, ``n_blocks``, ``block_um``, ``seed`` and per scheme
        (``random``, ``blocked``) per split ``count``, ``fraction``,
        ``target``.

    Raises
    ------
    InputError
        No shards; a shard unreadable; shards disagreeing on crop size, pixel
        size, quantity or scale (message names both files); an indent
        ``(specimen, area, batch, indent)`` in two shards (names both files)
        or twice in one.
    """
    paths = [Path(p) for p in shard_paths]
    if not paths:
        raise InputError("assemble: no shards given")
    f = _check_fractions(fractions)
    tables, shard_attrs = [], []
    for i, p in enumerate(paths):
        _, t, a = read_shard(p, images=False)
        if len(t) == 0:
            log.info("%s: empty shard (0 crops)", p)
        tables.append(t.assign(_shard=i, _row=np.arange(len(t))))
        shard_attrs.append(a)
    first = shard_attrs[0]
    for key in CONSISTENT_ATTRS:
        for p, a in zip(paths[1:], shard_attrs[1:]):
            if (key in first) != (key in a) or (key in first and not _same(first[key], a[key])):
                raise InputError(f"shards disagree on {key}: {paths[0]} has {first.get(key)!r}, "
                                 f"{p} has {a.get(key)!r}")
    table = pd.concat(tables, ignore_index=True)
    key_cols = ["specimen", "area", "batch", "indent"]
    dup = table[table.duplicated(key_cols, keep=False)]
    if len(dup):
        row = dup.iloc[0]
        same = dup[(dup[key_cols] == row[key_cols]).all(axis=1)]
        files = sorted({str(paths[i]) for i in same["_shard"]})
        raise InputError(f"indent {row['indent']} of {row['specimen']}/{row['area']}/"
                         f"{row['batch']} appears more than once, in {', '.join(files)} "
                         f"({len(dup)} duplicated rows in all)")
    table = table.sort_values(key_cols, kind="mergesort").reset_index(drop=True)
    n = len(table)
    s = int(first["crop_size_px"])

    rnd = random_split(n, f, seed)
    blocks = block_ids(table, block_um)
    blk = blocked_split(blocks, f, seed)
    report = {"n": n, "n_blocks": int(np.unique(blocks).size), "block_um": float(block_um),
              "seed": int(seed), "random": _split_report(rnd, n, f),
              "blocked": _split_report(blk, n, f)}
    for scheme in ("random", "blocked"):
        log.info("%s split: %s", scheme, ", ".join(
            f"{k} {v['count']} ({v['fraction']:.3f})" for k, v in report[scheme].items()))
        if n and any(v["count"] == 0 for v in report[scheme].values()):
            log.warning("%s split has an empty part (n=%d, %d blocks)", scheme, n,
                        report["n_blocks"])

    sources = {}
    calibration = {}
    for p, a in zip(paths, shard_attrs):
        sources.update(a.get("sources") or {})
        sources[str(p)] = mio.sha256_file(p)
        if "calibration" in a:
            calibration.update(a["calibration"] if isinstance(a["calibration"], dict) else {})
    file_attrs = {k: first[k] for k in CONSISTENT_ATTRS if k in first}
    file_attrs.update({"sources": sources, "n_samples": n, "split_seed": int(seed),
                       "split_fractions": list(map(float, f)), "block_um": float(block_um)})
    if calibration:
        file_attrs["calibration"] = calibration
    file_attrs.update(attrs or {})

    with mio.atomic_path(out_path) as tmp:
        with h5py.File(tmp, "w") as fh:
            img = _create_images(fh, n, s)
            _write_h5_columns(fh, table)
            for i in progress(np.unique(table["_shard"]), desc="assemble", unit="shard"):
                rows = np.flatnonzero(table["_shard"].to_numpy() == i)
                if rows.size == 0:
                    continue
                crops, _, _ = read_shard(paths[i])
                src = table["_row"].to_numpy()[rows]
                for k, r in zip(rows, src):
                    img[k] = crops[r]
            for scheme, parts in (("random", rnd), ("blocked", blk)):
                g = fh.create_group(f"splits/{scheme}")
                for k, v in parts.items():
                    g.create_dataset(k, data=v, dtype=np.int64)
            fh["splits/blocked"].attrs["block_um"] = float(block_um)
            fh["splits/blocked"].attrs["n_blocks"] = report["n_blocks"]
            fh.create_dataset("meta/block", data=blocks, dtype=np.int64)
            for k, v in file_attrs.items():
                fh.attrs[k] = _attr_value(v)
    log.info("assembled %d samples from %d shards into %s", n, len(paths), out_path)
    return report


def _write_h5_columns(fh, table):
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
