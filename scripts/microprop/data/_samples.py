"""The third study's data: a sample table, several images per sample, one HDF5 per study.

The conductivity study (``../shared/references/cnn_conductivity_lto_ni_poster.txt``)
has one measured property per sample (electrical conductivity, S/cm) and a
few SEM images of each. Every image carries its sample's value; the folds of
the cross-validation are drawn per *sample*, so no image of a test sample is
ever seen in training (:func:`sample_folds`).

Inputs (:func:`read_sample_tables`):

* the sample table (CSV): ``sample`` and ``value`` (the property, in the
  config's unit), optional further columns kept as metadata;
* the image table (CSV): ``sample`` and ``image`` (a path, relative to the
  table's folder or absolute), one row per image.

File layout (``results/<study>/samples.h5``):

* ``images``: float32 ``(N, S, S)``, normalised (:func:`microprop.imaging.normalise_images`)
  and area-averaged to the network's input size;
* ``raw``: uint8 ``(N, S, S)``, the same images before normalisation, for figures;
* ``sample``: int64 ``(N,)``, index into the attr ``samples`` (JSON list);
* ``targets/<name>``: float64 ``(N,)``, the learned value (log10 of the
  property when ``log10``), attrs ``unit``, ``log10``;
* ``bright_fraction``: float64 ``(N,)``, of the raw full-resolution image
  (automatic threshold), the baseline's input;
* ``fold``: int64 ``(N,)``, the grouped cross-validation fold of each image;
* attrs: ``samples``, ``sources`` (JSON: path -> sha256), ``property``,
  ``unit``, ``log10``, ``n_folds``, ``image_px`` (as read), ``input_px``,
  ``pixel_size_nm`` (of the stored images, when known), ``seed``.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..io import atomic_path, open_hdf5

log = logging.getLogger(__name__)


def read_sample_tables(samples_csv, images_csv, log10=True):
    """The sample and image tables joined: one row per image, checked.

    Parameters
    ----------
    samples_csv, images_csv : path-like
        See the module. Image paths are resolved against ``images_csv``'s folder.
    log10 : bool
        The property is learned as its log10: every value must be > 0.

    Returns
    -------
    pandas.DataFrame
        ``sample`` (str), ``value`` (float), ``image`` (absolute path, str),
        one row per image, in the image table's order.

    Raises
    ------
    InputError
        A missing table or column, a duplicate or empty sample id, a
        non-numeric or non-finite value, a value <= 0 under ``log10`` (the
        rows named), a sample without images, an image of no listed sample, a
        missing image file.
    """
    samples_csv, images_csv = Path(samples_csv), Path(images_csv)
    tabs = []
    for path, cols in ((samples_csv, ("sample", "value")), (images_csv, ("sample", "image"))):
        if not path.is_file():
            raise InputError(f"{path}: table not found")
        t = pd.read_csv(path, dtype={"sample": str})
        missing = [c for c in cols if c not in t.columns]
        if missing:
            raise InputError(f"{path}: columns {missing} missing; expected at least {list(cols)}, found "
                             f"{list(t.columns)}")
        t["sample"] = t["sample"].astype(str).str.strip()
        if (t["sample"] == "").any() or t["sample"].isna().any():
            rows = [int(i) + 2 for i in np.nonzero((t["sample"] == "").to_numpy())[0]]
            raise InputError(f"{path}: empty sample id on lines {rows}")
        tabs.append(t)
    s, im = tabs
    dup = s["sample"][s["sample"].duplicated()].tolist()
    if dup:
        raise InputError(f"{samples_csv}: samples listed twice: {dup[:10]}")
    value = pd.to_numeric(s["value"], errors="coerce")
    bad = s["sample"][~np.isfinite(value.to_numpy(float))].tolist()
    if bad:
        raise InputError(f"{samples_csv}: no finite numeric value for samples {bad[:10]}")
    if log10 and (value <= 0).any():
        raise InputError(f"{samples_csv}: values <= 0 cannot be learned as log10 (samples "
                         f"{s['sample'][value <= 0].tolist()[:10]}); set log10: false or correct them")
    s = s.assign(value=value.astype(float))
    orphans = sorted(set(im["sample"]) - set(s["sample"]))
    if orphans:
        raise InputError(f"{images_csv}: images of samples not in {samples_csv}: {orphans[:10]}")
    lonely = sorted(set(s["sample"]) - set(im["sample"]))
    if lonely:
        raise InputError(f"{samples_csv}: samples without an image in {images_csv}: {lonely[:10]}")
    paths = []
    for i, p in enumerate(im["image"].astype(str)):
        q = Path(p) if Path(p).is_absolute() else images_csv.parent / p
        if not q.is_file():
            raise InputError(f"{images_csv}, line {i + 2}: image {p} not found (looked for {q})")
        paths.append(str(q.resolve()))
    out = im[["sample"]].assign(image=paths).merge(s[["sample", "value"]], on="sample", how="left")
    return out[["sample", "value", "image"]]


def load_sample_images(table, loader):
    """The images of :func:`read_sample_tables`' table as one uint8 stack, all of one square size.

    Parameters
    ----------
    table : pandas.DataFrame
        ``sample``, ``image`` per row.
    loader : callable
        ``path -> (H, W) array`` (:func:`microprop.imaging.load_tile`); a
        16-bit image is scaled to 8 bits by its own range.

    Returns
    -------
    numpy.ndarray, shape (N, S, S), uint8

    Raises
    ------
    InputError
        An image of another size than the first (both sizes, the file and its
        sample named), or a non-square one.
    """
    from ..progress import progress

    raw, shape = [], None
    for i, path in enumerate(progress(table["image"], desc="read images", unit="image")):
        img = np.asarray(loader(path))
        if img.dtype != np.uint8:
            lo, hi = float(img.min()), float(img.max())
            img = np.round(255 * (img.astype(np.float64) - lo) / (hi - lo if hi > lo else 1)).astype(np.uint8)
        if shape is None:
            shape = img.shape
        elif img.shape != shape:
            raise InputError(f"{path} (sample {table['sample'].iloc[i]}): {img.shape[1]} x {img.shape[0]} px, "
                             f"the study's first image is {shape[1]} x {shape[0]} px; give images of one size")
        if img.shape[0] != img.shape[1]:
            raise InputError(f"{path} (sample {table['sample'].iloc[i]}): {img.shape[1]} x {img.shape[0]} px; "
                             "square images expected (crop them to a square)")
        raw.append(img)
    return np.stack(raw)


def sample_folds(samples, n_folds, seed=0):
    """Grouped folds: each *sample* goes to one fold, balanced by count, at random.

    Parameters
    ----------
    samples : array-like, shape (N,)
        The sample of each image (any hashable ids).
    n_folds : int
        2 .. number of samples.
    seed : int

    Returns
    -------
    numpy.ndarray, shape (N,), int64
        The fold of each image; all images of a sample share it.

    Raises
    ------
    InputError
        ``n_folds`` < 2 or more folds than samples.
    """
    ids = np.asarray(samples)
    uniq = np.unique(ids)
    k = int(n_folds)
    if not 2 <= k <= len(uniq):
        raise InputError(f"sample_folds: {k} folds for {len(uniq)} samples; expected 2..{len(uniq)}")
    rng = np.random.default_rng(int(seed))
    order = rng.permutation(len(uniq))
    fold_of = {uniq[j]: i % k for i, j in enumerate(order)}
    return np.asarray([fold_of[v] for v in ids], np.int64)


def write_sample_dataset(path, images, raw, sample_index, samples, target_name, target, bright_fraction,
                         fold, attrs):
    """Write ``samples.h5`` (layout in the module), atomically.

    Raises
    ------
    InputError
        Arrays of unequal lengths.
    """
    n = len(images)
    if not (len(raw) == len(sample_index) == len(target) == len(bright_fraction) == len(fold) == n) or n == 0:
        raise InputError(f"{path}: images, raw, sample, target, bright fraction and fold differ in length")
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("images", data=np.asarray(images, np.float32), chunks=(1,) + np.shape(images)[1:],
                             compression="gzip", compression_opts=1)
            f.create_dataset("raw", data=np.asarray(raw, np.uint8), chunks=(1,) + np.shape(raw)[1:],
                             compression="gzip", compression_opts=1)
            f["sample"] = np.asarray(sample_index, np.int64)
            d = f.create_dataset(f"targets/{target_name}", data=np.asarray(target, np.float64))
            d.attrs.update({"unit": attrs.get("unit", ""), "log10": bool(attrs.get("log10", False))})
            f["bright_fraction"] = np.asarray(bright_fraction, np.float64)
            f["fold"] = np.asarray(fold, np.int64)
            f.attrs.update({k: (json.dumps(v) if isinstance(v, (dict, list, tuple)) else v)
                            for k, v in attrs.items() if v is not None})
            f.attrs["samples"] = json.dumps([str(s) for s in samples])
            f.attrs["target"] = target_name


def read_sample_dataset(path):
    """Everything of ``samples.h5`` in memory (a study has a few hundred images).

    Returns
    -------
    dict
        ``images`` (N, S, S) float32, ``raw`` uint8, ``sample`` (N,) int,
        ``samples`` (list of str), ``target`` (N,) float64, ``target_name``,
        ``bright_fraction``, ``fold``, ``attrs`` (dict, JSON decoded).

    Raises
    ------
    InputError
        Not a sample dataset (a missing array named).
    """
    with open_hdf5(path, "sample dataset") as f:
        missing = [k for k in ("images", "raw", "sample", "bright_fraction", "fold") if k not in f]
        if missing or "target" not in f.attrs:
            raise InputError(f"{path}: not a sample dataset (missing {missing or ['attr target']})")
        name = str(f.attrs["target"])
        attrs = {}
        for k, v in f.attrs.items():
            try:
                attrs[k] = json.loads(v) if isinstance(v, str) and v[:1] in "[{" else v
            except ValueError:
                attrs[k] = v
        return {"images": f["images"][:], "raw": f["raw"][:], "sample": f["sample"][:],
                "samples": json.loads(f.attrs["samples"]), "target": f[f"targets/{name}"][:],
                "target_name": name, "bright_fraction": f["bright_fraction"][:], "fold": f["fold"][:],
                "attrs": attrs}
