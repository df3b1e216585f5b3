"""The assembly of ``dataset.h5``: all shards of a specimen in one file, with splits.

:func:`assemble` checks that the shards agree (``CONSISTENT_ATTRS``) and that
no indent appears twice, concatenates them in the deterministic order
``(specimen, area, batch, indent)``, adds the random and the spatially
blocked split (``_splits``; blocks of ``block_um`` x ``block_um`` in each
area's plane, so that neighbouring indents, whose crops overlap, never sit on
both sides of a split) and writes the dataset atomically, one shard in
memory at a time.

The dataset has the shards' layout (``_shards``; see ``docs/ARCHITECTURE.md``)
plus::

    /splits/{random,blocked}/{train,val,test} int64 indices
    /splits/blocked    attrs block_um, n_blocks
    /meta/block        (N,) int64 block id of each sample
    file attrs: the shards' CONSISTENT_ATTRS, sources (each shard's and its
                sources' sha256), n_samples, split_seed, split_fractions,
                block_um, calibration (when the shards carry one), ...

This module reads and writes the HDF5 format the package defines (its own science).
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

#: the key of a sample: samples are ordered by it, and it must be unique (a list: it selects columns)
_KEY_COLUMNS = ["specimen", "area", "batch", "indent"]


def _same(a, b):
    """Whether two shard attrs agree (numbers to a relative 1e-9)."""
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
    tables, shard_attrs = _read_tables(paths)
    first = shard_attrs[0]
    _check_consistent(paths, shard_attrs)
    table = pd.concat(tables, ignore_index=True)
    _check_unique(table, paths)
    table = table.sort_values(_KEY_COLUMNS, kind="mergesort").reset_index(drop=True)
    n = len(table)
    s = int(first["crop_size_px"])

    rnd, blocks, blk, report = _splits(table, f, seed, block_um)
    file_attrs = _file_attrs(paths, shard_attrs, n, f, seed, block_um, attrs)
    _write_dataset(out_path, paths, table, s, {"random": rnd, "blocked": blk}, blocks, report, file_attrs)
    log.info("assembled %d samples from %d shards into %s", n, len(paths), out_path)
    return report


def _read_tables(paths):
    """The table of each shard (with ``_shard`` index and ``_row`` within it) and its attrs; logs empty shards."""
    tables, shard_attrs = [], []
    for i, p in enumerate(paths):
        _, t, a = read_shard(p, images=False)
        if len(t) == 0:
            log.info("%s: empty shard (0 crops)", p)
        tables.append(t.assign(_shard=i, _row=np.arange(len(t))))
        shard_attrs.append(a)
    return tables, shard_attrs


def _check_consistent(paths, shard_attrs):
    """Raise InputError naming both files when a shard disagrees with the first on a ``CONSISTENT_ATTRS`` key."""
    first = shard_attrs[0]
    for key in CONSISTENT_ATTRS:
        for p, a in zip(paths[1:], shard_attrs[1:]):
            if (key in first) != (key in a) or (key in first and not _same(first[key], a[key])):
                raise InputError(f"shards disagree on {key}: {paths[0]} has {first.get(key)!r}, "
                                 f"{p} has {a.get(key)!r}")


def _check_unique(table, paths):
    """Raise InputError naming the files when an indent ``(specimen, area, batch, indent)`` repeats."""
    dup = table[table.duplicated(_KEY_COLUMNS, keep=False)]
    if len(dup):
        row = dup.iloc[0]
        same = dup[(dup[_KEY_COLUMNS] == row[_KEY_COLUMNS]).all(axis=1)]
        files = sorted({str(paths[i]) for i in same["_shard"]})
        raise InputError(f"indent {row['indent']} of {row['specimen']}/{row['area']}/"
                         f"{row['batch']} appears more than once, in {', '.join(files)} "
                         f"({len(dup)} duplicated rows in all)")


def _splits(table, f, seed, block_um):
    """Random split, block ids, blocked split and the report of both (logged; empty parts warned)."""
    n = len(table)
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
    return rnd, blocks, blk, report


def _file_attrs(paths, shard_attrs, n, f, seed, block_um, attrs):
    """File attrs of the dataset: the shards' common attrs, sources (with each shard's sha256), split settings."""
    first = shard_attrs[0]
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
    return file_attrs


def _write_dataset(out_path, paths, table, s, splits, blocks, report, file_attrs):
    """Write ``dataset.h5`` atomically: images copied shard by shard in table order, columns, splits, attrs."""
    n = len(table)
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
            for scheme, parts in splits.items():
                g = fh.create_group(f"splits/{scheme}")
                for k, v in parts.items():
                    g.create_dataset(k, data=v, dtype=np.int64)
            fh["splits/blocked"].attrs["block_um"] = report["block_um"]
            fh["splits/blocked"].attrs["n_blocks"] = report["n_blocks"]
            fh.create_dataset("meta/block", data=blocks, dtype=np.int64)
            for k, v in file_attrs.items():
                fh.attrs[k] = _attr_value(v)
