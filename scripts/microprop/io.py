"""File input and output shared by the workflow's scripts.

Chunked 2D images (mosaics, calibrated maps) live in zarr stores; tables are
CSV. Writers write to a temporary sibling and rename on success, so that an
interrupted rule never leaves a partial output that a rerun would trust.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputError


def _zarr():
    # imported on first use: the training and mapping code (and the GPU
    # benchmarks, on machines whose Python lacks zarr) use this module's HDF5
    # and table helpers without touching a zarr store
    import zarr

    return zarr


DEFAULT_CHUNK = 1024


def sha256_file(path, block=1 << 20) -> str:
    """Hex SHA-256 digest of a file, read in blocks of ``block`` bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    Works for files and for directories (zarr stores). On an exception the
    temporary output is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    _remove(path)
    os.replace(tmp, path)


def _remove(path: Path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def create_image_store(path, shape, dtype, chunk=DEFAULT_CHUNK, attrs=None, fill_value=0):
    """Create a chunked 2D zarr array on disk and return it opened for writing.

    Parameters
    ----------
    path : path-like
        Directory of the zarr store (conventionally ``*.zarr``).
    shape : tuple of int
        ``(H, W)`` in pixels.
    dtype : numpy dtype
        ``uint8``/``uint16`` for grey images, ``float32`` for calibrated maps.
    chunk : int
        Square chunk edge in pixels.
    attrs : dict, optional
        JSON-serialisable metadata, e.g. ``pixel_size_nm``.
    fill_value : scalar
        Value of never-written pixels.

    Returns
    -------
    zarr.Array
    """
    arr = _zarr().open_array(
        str(path), mode="w", shape=tuple(int(s) for s in shape), dtype=dtype,
        chunks=(min(chunk, int(shape[0])), min(chunk, int(shape[1]))), fill_value=fill_value,
    )
    if attrs:
        arr.attrs.update(jsonable(attrs))
    return arr


def create_group(path):
    """Create (overwrite) a zarr group at ``path`` and return it."""
    return _zarr().open_group(str(path), mode="w")


def create_group_array(group, name, shape, dtype, chunk=DEFAULT_CHUNK, attrs=None, fill_value=0):
    """Create a chunked 2D array ``name`` inside zarr ``group`` (see :func:`create_image_store`)."""
    arr = group.create_array(
        name, shape=tuple(int(s) for s in shape), dtype=dtype,
        chunks=(min(chunk, int(shape[0])), min(chunk, int(shape[1]))), fill_value=fill_value,
    )
    if attrs:
        arr.attrs.update(jsonable(attrs))
    return arr


def open_image(path, name=None):
    """Open a 2D image store read-only.

    Parameters
    ----------
    path : path-like
        A zarr array store, or a zarr group store when ``name`` is given
        (e.g. ``calibrated.zarr`` with ``name="MulF"``).
    name : str, optional
        Array inside a group.

    Returns
    -------
    zarr.Array
        Sliceable like a numpy array; ``.attrs`` holds the metadata.

    Raises
    ------
    InputError
        If the store does not exist or is not a 2D array.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: image store not found")
    try:
        if name is None:
            arr = _zarr().open_array(str(path), mode="r")
        else:
            arr = _zarr().open_group(str(path), mode="r")[name]
    except Exception as exc:  # zarr raises several types for a bad store
        raise InputError(f"{path}: not a readable zarr image store ({exc})") from exc
    if arr.ndim != 2:
        raise InputError(f"{path}: expected a 2D image, found shape {arr.shape}")
    return arr


def open_calibrated(path, name):
    """Open one array of a calibrated group with the attrs of the group and of the array.

    Parameters
    ----------
    path : path-like
        ``calibrated.zarr`` group store.
    name : str
        Array of the group (``"MulF"`` or ``"MicF"``).

    Returns
    -------
    array : zarr.Array
        As :func:`open_image`.
    attrs : dict
        The group's attrs updated with the array's own (which carry the
        calibration too); ``pixel_size_nm`` (nm) is present and non-zero.

    Raises
    ------
    InputError
        As :func:`open_image`; if the attrs lack ``pixel_size_nm``.
    """
    arr = open_image(path, name=name)
    attrs = {**dict(_zarr().open_group(str(path), mode="r").attrs), **dict(arr.attrs)}
    if not attrs.get("pixel_size_nm"):
        raise InputError(f"{path}/{name}: attrs lack pixel_size_nm")
    return arr, attrs


def iter_chunks(shape, chunk=DEFAULT_CHUNK):
    """Yield ``(slice_y, slice_x)`` covering a 2D ``shape`` in square blocks."""
    h, w = shape
    for y0 in range(0, h, chunk):
        for x0 in range(0, w, chunk):
            yield slice(y0, min(y0 + chunk, h)), slice(x0, min(x0 + chunk, w))


def block_mean_stack(a, factor):
    """Block-mean downsample of a stack of square images (crops, local maps).

    Parameters
    ----------
    a : numpy.ndarray, shape (N, S, S)
    factor : int
        Integer reduction factor; the ``S % factor`` leftover pixels are
        dropped evenly from both sides, so the image centre stays central.

    Returns
    -------
    numpy.ndarray, shape (N, S // factor, S // factor)
        ``a`` itself when ``factor == 1``.
    """
    factor = int(factor)
    if factor == 1:
        return a
    n, s, _ = a.shape
    m = s // factor
    lead = (s - m * factor) // 2
    a = a[:, lead:lead + m * factor, lead:lead + m * factor]
    return a.reshape(n, m, factor, m, factor).mean(axis=(2, 4))


def downsample(arr, factor):
    """Block-mean downsample of a (possibly chunked, on-disk) 2D image.

    Reads one chunk row at a time, so memory stays bounded by the image width
    times the chunk height.

    Parameters
    ----------
    arr : array-like, shape (H, W)
    factor : int
        Integer reduction factor; trailing rows/columns that do not fill a
        block are dropped.

    Returns
    -------
    numpy.ndarray, shape (H // factor, W // factor), float32
    """
    factor = int(factor)
    h, w = arr.shape
    oh, ow = h // factor, w // factor
    out = np.empty((oh, ow), np.float32)
    step = max(factor, (DEFAULT_CHUNK // factor) * factor)
    for y0 in range(0, oh * factor, step):
        y1 = min(y0 + step, oh * factor)
        block = np.asarray(arr[y0:y1, : ow * factor], dtype=np.float32)
        out[y0 // factor: y1 // factor] = block.reshape(
            (y1 - y0) // factor, factor, ow, factor).mean(axis=(1, 3))
    return out


def image_attr(arr, key, path):
    """Attribute ``key`` of an image store opened with :func:`open_image`.

    Parameters
    ----------
    arr : zarr.Array
        The opened store.
    key : str
        Attribute name (e.g. ``pixel_size_nm``, ``origin_um``).
    path : path-like
        The store's path, for the message.

    Returns
    -------
    object
        The attribute's value (JSON type).

    Raises
    ------
    InputError
        If the store lacks the attribute (the message names the file).
    """
    if key not in arr.attrs:
        raise InputError(f"{path}: mosaic lacks attribute {key!r}")
    return arr.attrs[key]


def write_npy(array, path):
    """Write a numpy array as ``.npy`` atomically (:func:`numpy.save`, dtype and shape kept)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


def write_npz(arrays, path):
    """Write named numpy arrays as one ``.npz`` atomically (:func:`numpy.savez_compressed`).

    Parameters
    ----------
    arrays : dict
        Name -> array-like (names become the archive's keys).
    path : path-like
        Output file; it should end in ``.npz``.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **{str(k): np.asarray(v) for k, v in arrays.items()})


def path_list(value):
    """A path, a list of paths or None (a Snakemake input) as a list of str.

    Parameters
    ----------
    value : str, path-like, iterable of path-like, or None

    Returns
    -------
    list of str
        ``[]`` for None, ``[str(value)]`` for one path.
    """
    if value is None:
        return []
    if isinstance(value, (str, Path)):
        return [str(value)]
    return [str(v) for v in value]


def open_hdf5(path, what="HDF5 file"):
    """Open an HDF5 file read-only, with errors that name the file.

    Parameters
    ----------
    path : path-like
    what : str
        What the file is, for the messages (e.g. ``"dataset"``, ``"shard"``).

    Returns
    -------
    h5py.File
        Open for reading; use it as a context manager.

    Raises
    ------
    InputError
        If the file is missing or not readable as HDF5.
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: {what} not found")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path}: not a readable HDF5 {what} ({exc})") from exc


def read_table(path, required=(), what="table"):
    """Read a CSV table and check that ``required`` columns are present.

    Raises
    ------
    InputError
        If the file is missing, unreadable, or lacks a required column
        (the message names the file and the missing columns).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: {what} not found")
    try:
        df = pd.read_csv(path)
    except Exception as exc:
        raise InputError(f"{path}: cannot read {what} as CSV ({exc})") from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(f"{path}: {what} lacks column(s) {missing}; found {list(df.columns)}")
    return df


def read_located(files, areas=None, required=("batch", "indent", "E_GPa", "H_GPa")):
    """Concatenate located-indent tables, with an ``area`` and a ``source`` column.

    Parameters
    ----------
    files : sequence of path-like
        ``results/{specimen}/{area}/located/{batch}.csv`` files.
    areas : sequence of str, optional
        The area of each file, same order; default: read from the path (the
        folder above ``located/``).
    required : sequence of str
        Columns every file must have.

    Returns
    -------
    pandas.DataFrame
        The rows of all files in order, index reset, with ``area`` (str) and
        ``source`` (the file, str) added.

    Raises
    ------
    InputError
        If no file is given, ``areas`` does not have one entry per file, or a
        file is missing or lacks a required column (the message names it).
    """
    files = [str(f) for f in files]
    if not files:
        raise InputError("no located-indent files given (input.located is empty)")
    if areas is not None and len(areas) != len(files):
        raise InputError(f"{len(areas)} areas given for {len(files)} located files; "
                         "expected one area per file")
    frames = []
    for i, f in enumerate(files):
        df = read_table(f, required=tuple(required), what="located indents")
        df["area"] = str(areas[i]) if areas is not None else Path(f).parent.parent.name
        df["source"] = f
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def write_table(df, path):
    """Write a DataFrame as CSV atomically."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def write_json(obj, path):
    """Write JSON atomically (numpy scalars and arrays are converted)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(jsonable(obj), indent=2, sort_keys=True) + "\n")


def read_json(path):
    """Read a JSON file."""
    return json.loads(Path(path).read_text())


def jsonable(obj):
    """Convert numpy scalars/arrays and paths inside dicts/lists to JSON types."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj
