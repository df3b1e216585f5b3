"""Local porosity maps of the second study: cut from calibrated maps, one HDF5 per study.

The graphene-oxide cement study classifies local equivalent-porosity maps
(NPMs) of 384 x 384 px at 52 nm/px (20 x 20 um), MulF (nano- and microscale)
and MicF (microscale only, Gaussian sigma 10 px), 750 per class for training
and the rest for testing (``../shared/references/dtd_nanoporosity_go_cement.txt``,
sections 2.1-2.3). :func:`cut_local_maps` cuts a non-overlapping grid of
windows from one class's calibrated maps; :func:`write_map_dataset` writes the
study's file with the conventions of the indentation dataset
(``docs/ARCHITECTURE.md``): an ``(N, S, S)`` array per scale, one label per
map, the splits as index arrays, provenance attrs.

File layout (``results/<study>/maps.h5``):

* ``maps/MulF``, ``maps/MicF``: float32 ``(N, S, S)``, equivalent porosity;
* ``labels``: int64 ``(N,)``, index into the attr ``classes`` (JSON list);
* ``meta/x_px``, ``meta/y_px``: int64, top-left corner of each window in its
  class's calibrated map (full resolution); ``meta/source``: int64 index into
  the attr ``sources``;
* ``descriptors/<name>``: float64, the baseline descriptors of each map at
  full resolution, as the caller's ``describe`` gives them (the workflow:
  ``porosity`` and ``pore_size_nm`` of
  :func:`microprop.microstructure.porosity_descriptors`);
* ``splits/random/{train,val,test}``, ``splits/spatial/{train,val,test}``:
  int64 indices. ``random``: per class ``n_train`` maps drawn at random (all
  but a quarter when a class has fewer than ``4/3 n_train``) form the
  training share, the rest test. ``spatial``: per class, the maps whose
  window lies in the left ``train_fraction`` of the class's map form the
  training share, the rest test (no test map touches a training map's
  region). In both, ``val`` is ``val_fraction`` of the training share (the
  last drawn; in ``spatial`` the rightmost windows, nearest the test
  region), which the classifier selects its epoch on; ``train`` is the
  rest. The reference's "750 per class for training" is ``train`` + ``val``
  (the statistical baseline takes its class means from both);
* attrs: ``classes``, ``sources`` (JSON: path -> sha256), ``pixel_size_nm``
  (of the stored maps), ``source_pixel_size_nm``, ``map_size_px`` (as cut),
  ``input_px``, ``map_size_um``, ``seed``, ``n_train``, and the caller's
  ``extra_attrs``.
"""
from __future__ import annotations

import json
import logging

import numpy as np

from ..errors import InputError
from ..io import atomic_path, block_mean_stack, open_hdf5

log = logging.getLogger(__name__)


def cut_local_maps(mulf, micf, size_px, max_maps=None, rng=None, where="calibrated map"):
    """A non-overlapping grid of ``size_px`` windows of a class's MulF and MicF maps.

    Parameters
    ----------
    mulf, micf : array-like, shape (H, W)
        Equivalent porosity at full resolution (numpy or zarr).
    size_px : int
        Window edge.
    max_maps : int, optional
        Keep at most this many windows, drawn at random (``rng``).
    rng : numpy.random.Generator or int, optional
    where : str
        The source, for messages.

    Returns
    -------
    mulf_maps, micf_maps : numpy.ndarray, shape (N, size_px, size_px), float32
    corners : numpy.ndarray, shape (N, 2), int64
        ``(x_px, y_px)`` of each window's top-left pixel, row-major.

    Raises
    ------
    InputError
        If the maps differ in shape, are smaller than one window, or every
        window holds a non-finite value.
    """
    size = int(size_px)
    if mulf.shape != micf.shape:
        raise InputError(f"{where}: MulF {mulf.shape} and MicF {micf.shape} differ in shape")
    h, w = mulf.shape
    if size < 8 or h < size or w < size:
        raise InputError(f"{where}: {h} x {w} px holds no {size} x {size} px map")
    corners = np.array([(x, y) for y in range(0, h - size + 1, size) for x in range(0, w - size + 1, size)],
                       np.int64)
    if max_maps is not None and len(corners) > int(max_maps):
        keep = np.sort(np.random.default_rng(rng).choice(len(corners), int(max_maps), replace=False))
        corners = corners[keep]
    a = np.stack([np.asarray(mulf[y:y + size, x:x + size], np.float32) for x, y in corners])
    b = np.stack([np.asarray(micf[y:y + size, x:x + size], np.float32) for x, y in corners])
    ok = np.isfinite(a).all(axis=(1, 2)) & np.isfinite(b).all(axis=(1, 2))
    if not ok.any():
        raise InputError(f"{where}: every {size} px window holds a non-finite value")
    if (~ok).any():
        log.warning("%s: %d of %d windows hold non-finite values and are left out", where,
                    int((~ok).sum()), len(ok))
    return a[ok], b[ok], corners[ok]


def _n_val(k, val_fraction):
    """Validation maps out of a training share of ``k`` (at least 1 when ``k >= 2``)."""
    if k < 2 or not float(val_fraction) > 0:
        return 0
    return min(k - 1, max(1, int(round(float(val_fraction) * k))))


def _splits(labels, corners, widths, n_train, train_fraction, rng, val_fraction=0.1):
    """``random`` and ``spatial`` train/val/test indices (see the module docstring)."""
    out = {s: {"train": [], "val": [], "test": []} for s in ("random", "spatial")}
    for c in np.unique(labels):
        idx = np.nonzero(labels == c)[0]
        k = int(n_train) if len(idx) >= 4 * int(n_train) / 3 else int(round(0.75 * len(idx)))
        perm = rng.permutation(idx)
        nv = _n_val(k, val_fraction)
        out["random"]["train"].append(np.sort(perm[:k - nv]))
        out["random"]["val"].append(np.sort(perm[k - nv:k]))
        out["random"]["test"].append(np.sort(perm[k:]))
        left = corners[idx, 0] < float(train_fraction) * widths[c]
        share = idx[left][np.argsort(corners[idx[left], 0], kind="stable")]
        nv = _n_val(len(share), val_fraction)
        out["spatial"]["train"].append(np.sort(share[:len(share) - nv]))
        out["spatial"]["val"].append(np.sort(share[len(share) - nv:]))
        out["spatial"]["test"].append(idx[~left])
    return {s: {p: np.concatenate(v).astype(np.int64) for p, v in d.items()} for s, d in out.items()}


def write_map_dataset(path, classes, pixel_size_nm, map_size_px, input_px=None, n_train=750,
                      train_fraction=0.75, max_maps=None, seed=0, describe=None, extra_attrs=None,
                      val_fraction=0.1):
    """Cut every class's calibrated maps into local maps and write the study's HDF5.

    Parameters
    ----------
    path : path-like
        Output ``maps.h5`` (written atomically).
    classes : dict
        Class name -> ``{"mulf": array (H, W), "micf": array (H, W), "source": str,
        "sha256": str}`` (one calibrated map per class; call once per study).
    pixel_size_nm : float
        Pixel size of the calibrated maps, nm.
    map_size_px : int
        Window edge at full resolution (384 in the reference).
    input_px : int, optional
        Store the maps area-averaged to this edge (``map_size_px`` must be a
        multiple of it); default full resolution.
    n_train : int
        Training maps per class of the random split (750 in the reference).
    train_fraction : float
        Share of each class's map width that trains in the spatial split.
    val_fraction : float
        Share of each class's training maps kept for validation (``val``).
    max_maps : int, optional
        Maps per class at most (drawn at random).
    seed : int
    describe : callable, optional
        ``describe(maps, pixel_size_nm) -> {name: array (N,)}``: descriptors
        of the full-resolution MulF maps of one class, stored under
        ``descriptors/``.
    extra_attrs : dict, optional
        More file attrs (e.g. the descriptors' definitions).

    Returns
    -------
    dict
        Maps per class and per split, the stored pixel size.

    Raises
    ------
    InputError
        Fewer than two classes, a window size that is no multiple of
        ``input_px``, or a class without a usable window.
    """
    import h5py

    if len(classes) < 2:
        raise InputError(f"{path}: {len(classes)} class(es); a classification needs at least 2")
    size = int(map_size_px)
    factor = 1
    if input_px is not None and int(input_px) != size:
        if size % int(input_px):
            raise InputError(f"maps: map_size_px={size} is no multiple of input_px={input_px}")
        factor = size // int(input_px)
    rng = np.random.default_rng(seed)
    names = list(classes)
    parts = {"MulF": [], "MicF": [], "labels": [], "corners": [], "desc": [], "source": []}
    widths, sources = {}, {}
    for i, name in enumerate(names):
        c = classes[name]
        a, b, corners = cut_local_maps(c["mulf"], c["micf"], size, max_maps, rng, where=str(c.get("source", name)))
        if describe is not None:
            parts["desc"].append(describe(a, pixel_size_nm))
        if factor > 1:
            a, b = block_mean_stack(a, factor), block_mean_stack(b, factor)
        parts["MulF"].append(a.astype(np.float32))
        parts["MicF"].append(b.astype(np.float32))
        parts["labels"].append(np.full(len(a), i, np.int64))
        parts["corners"].append(corners)
        parts["source"].append(np.full(len(a), i, np.int64))
        widths[i] = c["mulf"].shape[1]
        sources[str(c.get("source", name))] = str(c.get("sha256", ""))
        log.info("class %s: %d maps of %d px from %s", name, len(a), size, c.get("source", name))
    labels = np.concatenate(parts["labels"])
    corners = np.concatenate(parts["corners"])
    desc = ({k: np.concatenate([d[k] for d in parts["desc"]]) for k in parts["desc"][0]}
            if parts["desc"] else {})
    splits = _splits(labels, corners, widths, n_train, train_fraction, rng, val_fraction)
    attrs = {"classes": json.dumps(names), "sources": json.dumps(sources),
             "pixel_size_nm": float(pixel_size_nm) * factor, "source_pixel_size_nm": float(pixel_size_nm),
             "map_size_px": size, "input_px": size // factor, "map_size_um": size * float(pixel_size_nm) / 1000,
             "seed": int(seed), "n_train": int(n_train), "val_fraction": float(val_fraction),
             **(extra_attrs or {})}
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for k in ("MulF", "MicF"):
                f.create_dataset(f"maps/{k}", data=np.concatenate(parts[k]), chunks=True, compression="gzip",
                                 compression_opts=1)
            f["labels"] = labels
            f["meta/x_px"] = corners[:, 0]
            f["meta/y_px"] = corners[:, 1]
            f["meta/source"] = np.concatenate(parts["source"])
            for k, v in desc.items():
                f[f"descriptors/{k}"] = np.asarray(v, np.float64)
            for scheme, d in splits.items():
                for part, idx in d.items():
                    f[f"splits/{scheme}/{part}"] = idx
            f.attrs.update(attrs)
    counts = {n: int((labels == i).sum()) for i, n in enumerate(names)}
    return {"maps_per_class": counts, "pixel_size_nm": attrs["pixel_size_nm"],
            "splits": {s: {p: int(len(v)) for p, v in d.items()} for s, d in splits.items()}}


#: the two scales of the local maps (the reference's MulF and MicF)
MAP_SCALES = ("MulF", "MicF")


def read_maps(path, scale, split, part):
    """The local maps and labels of one part of a split of ``maps.h5``.

    Parameters
    ----------
    path : path-like
        ``results/<study>/maps.h5`` (:func:`write_map_dataset`).
    scale : {"MulF", "MicF"}
    split : {"random", "spatial"}
    part : {"train", "val", "test"}

    Returns
    -------
    maps : numpy.ndarray, shape (N, S, S), float32
        Equivalent porosity.
    labels : numpy.ndarray, shape (N,), int64
        Index into ``classes``.
    index : numpy.ndarray, shape (N,), int64
        Row of each map in the file.
    classes : list of str

    Raises
    ------
    InputError
        A missing file, scale, split or part (the message says what the file holds).
    """
    if scale not in MAP_SCALES:
        raise InputError(f"{path}: scale {scale!r}; expected one of {MAP_SCALES}")
    with open_hdf5(path, "local-map dataset") as f:
        key = f"splits/{split}/{part}"
        if key not in f or f"maps/{scale}" not in f:
            held = sorted(f"{s}/{p}" for s in f.get("splits", {}) for p in f["splits"][s])
            raise InputError(f"{path}: no {key} or maps/{scale} (splits held: {held}); "
                             "rebuild it with rule porosity_maps")
        idx = np.sort(np.asarray(f[key][:], np.int64))
        ds = f[f"maps/{scale}"]
        maps = np.asarray(ds[idx] if len(idx) else np.zeros((0,) + ds.shape[1:]), np.float32)
        labels = np.asarray(f["labels"][:], np.int64)[idx]
        classes = json.loads(f.attrs["classes"])
    return maps, labels, idx, classes
