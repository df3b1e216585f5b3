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

import logging
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from .. import io as mio
from ..errors import InputError
from ..progress import progress
from ._shards import (
    CONSISTENT_ATTRS,
    _attr_value,
    _create_images,
    _write_h5_columns,
    read_shard,
)
from ._splits import (
    _check_fractions,
    _split_report,
    block_ids,
    blocked_split,
    random_split,
)

log = logging.getLogger(__name__)

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
