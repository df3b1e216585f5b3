"""Tile sets of BSE micrographs: reading tiles and their ``layout.csv``.

A tile folder holds grey tile images (TIFF, PNG, ...) and a ``layout.csv``
with columns :data:`LAYOUT_COLUMNS`: ``tile`` id, ``file``, grid ``row`` and
``col``, and the nominal stage position ``x_um, y_um`` of the tile's pixel
``[0, 0]``. :func:`read_layout` reads and validates the layout and every
tile (present, decodable, same shape and dtype) before anything is written;
:func:`load_tile` decodes one tile as a 2D uint8/uint16 array;
:func:`crop_region` cuts a window out of a pre-stitched image;
:func:`write_tile_set` writes a tile set (for tests and demos). Stitching
the tiles is ``_stitch``.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError

LAYOUT_COLUMNS = ("tile", "file", "row", "col", "x_um", "y_um")


_TIFF_SUFFIXES = (".tif", ".tiff")


def load_tile(path):
    """Read one tile image as a 2D grey array.

    Parameters
    ----------
    path : path-like
        TIFF (read with :mod:`tifffile`) or any format Pillow reads (PNG,
        BMP, ...). An RGB(A) image whose three colour channels are identical
        is reduced to one channel.

    Returns
    -------
    numpy.ndarray, shape (H, W), dtype uint8 or uint16
        Grey levels as the detector wrote them.

    Raises
    ------
    InputError
        If the file is missing, truncated or corrupt, is not 2D grey (or
        grey-as-RGB), or is not uint8/uint16. The message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: tile image not found")
    try:
        if path.suffix.lower() in _TIFF_SUFFIXES:
            import tifffile

            img = np.asarray(tifffile.imread(path, key=0))
        else:
            from PIL import Image

            with Image.open(path) as im:
                im.load()
                if im.mode in ("P", "1"):
                    im = im.convert("RGB" if im.mode == "P" else "L")
                elif im.mode == "LA":
                    im = im.getchannel(0)
                img = np.asarray(im)
    except InputError:
        raise
    except Exception as exc:  # decoders raise many types for a corrupt file
        raise InputError(f"{path}: cannot decode tile image (truncated or corrupt?): "
                         f"{type(exc).__name__}: {exc}") from exc
    if img.ndim == 3 and img.shape[-1] in (3, 4):
        rgb = img[..., :3]
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise InputError(f"{path}: expected a grey BSE image; found colour channels "
                             f"that differ (shape {img.shape})")
        img = rgb[..., 0]
    if img.ndim != 2:
        raise InputError(f"{path}: expected a 2D grey image, found shape {img.shape}")
    if img.dtype.kind in "iu" and img.dtype not in (np.uint8, np.uint16):
        # Pillow opens some 16-bit PNGs as int32 ("I" mode)
        if img.size and (img.min() < 0 or img.max() > 65535):
            raise InputError(f"{path}: expected uint8 or uint16 grey levels, found values "
                             f"{img.min()}..{img.max()} ({img.dtype})")
        img = img.astype(np.uint16)
    if img.dtype not in (np.uint8, np.uint16):
        raise InputError(f"{path}: expected uint8 or uint16 grey levels, found {img.dtype}")
    return np.ascontiguousarray(img)


def crop_region(image, region_px, path="image"):
    """Cut a rectangular window out of a pre-stitched image.

    Lets one micrograph serve as several areas, e.g. an indented (training)
    area and a never-indented area that the trained model maps.

    Parameters
    ----------
    image : numpy.ndarray, shape (H, W)
        Grey image.
    region_px : sequence of 4 int or None
        ``[row0, col0, height, width]`` of the window, px, with ``(0, 0)``
        the image's top-left pixel. ``None`` returns the whole image.
    path : str
        Name of the image, for error messages.

    Returns
    -------
    numpy.ndarray, shape (height, width)
        A contiguous copy of the window (same dtype as ``image``).

    Raises
    ------
    InputError
        If ``region_px`` does not have four integers, has a negative origin
        or a non-positive size, or does not lie inside the image. The
        message names the image and its shape.
    """
    if region_px is None:
        return image
    r = [int(v) for v in region_px]
    if len(r) != 4 or any(v != float(w) for v, w in zip(r, region_px)):
        raise InputError(f"{path}: region_px must be [row0, col0, height, width] (4 integers, px), "
                         f"got {list(region_px)}")
    r0, c0, h, w = r
    if r0 < 0 or c0 < 0 or h < 1 or w < 1 or r0 + h > image.shape[0] or c0 + w > image.shape[1]:
        raise InputError(f"{path}: region_px {r} (rows {r0}..{r0 + h}, columns {c0}..{c0 + w}) "
                         f"is not inside the image of {image.shape[0]} x {image.shape[1]} px")
    return np.ascontiguousarray(image[r0:r0 + h, c0:c0 + w])


def _layout_path(folder):
    """``(folder, layout.csv path)`` from a tile folder or the path of its layout file."""
    folder = Path(folder)
    if folder.suffix.lower() == ".csv" or folder.is_file():
        return folder.parent, folder
    return folder, folder / "layout.csv"


def _read_layout_csv(path):
    """The layout columns of ``layout.csv`` as read (header stripped), checked present and non-empty."""
    if not path.is_file():
        raise InputError(f"{path}: tile layout not found (expected layout.csv with columns "
                         f"{list(LAYOUT_COLUMNS)})")
    try:
        df = pd.read_csv(path, dtype={"tile": str, "file": str}, skipinitialspace=True)
    except Exception as exc:
        raise InputError(f"{path}: cannot read tile layout as CSV ({exc})") from exc
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in LAYOUT_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{path}: tile layout lacks column(s) {missing}; found {list(df.columns)}")
    if df.empty:
        raise InputError(f"{path}: tile layout has no rows")
    return df[list(LAYOUT_COLUMNS)].copy()


def _check_layout_rows(df, path):
    """Raise InputError (naming the line) on an empty id/file, a non-number or a bad grid index."""
    for i, rec in enumerate(df.itertuples(index=False)):
        line = i + 2  # 1-based file line, after the header
        if pd.isna(rec.tile) or pd.isna(rec.file) or not str(rec.tile).strip() or not str(rec.file).strip():
            raise InputError(f"{path}, line {line}: empty tile id or file name")
        for col in ("row", "col", "x_um", "y_um"):
            val = pd.to_numeric(pd.Series([getattr(rec, col)]), errors="coerce").iloc[0]
            if not np.isfinite(val):
                raise InputError(f"{path}, line {line} (tile {rec.tile}): {col}={getattr(rec, col)!r} "
                                 f"is not a finite number")
            if col in ("row", "col") and (val != round(val) or val < 0):
                raise InputError(f"{path}, line {line} (tile {rec.tile}): {col}={getattr(rec, col)!r} "
                                 f"is not a non-negative integer grid index")


def _typed_layout(df):
    """Strip ``tile``/``file`` and cast ``row, col`` to int and ``x_um, y_um`` to float, in place."""
    df["tile"] = df["tile"].str.strip()
    df["file"] = df["file"].str.strip()
    df["row"] = pd.to_numeric(df["row"]).astype(int)
    df["col"] = pd.to_numeric(df["col"]).astype(int)
    df["x_um"] = pd.to_numeric(df["x_um"]).astype(float)
    df["y_um"] = pd.to_numeric(df["y_um"]).astype(float)


def _check_layout_unique(df, path):
    """Raise InputError on a duplicate tile id (naming the lines) or a shared grid position."""
    dup = df["tile"][df["tile"].duplicated(keep=False)]
    if len(dup):
        lines = [int(i) + 2 for i in dup.index]
        raise InputError(f"{path}: duplicate tile id(s) {sorted(set(dup))} on lines {lines}; "
                         f"each tile needs a unique id")
    dup = df[df.duplicated(["row", "col"], keep=False)]
    if len(dup):
        raise InputError(f"{path}: tiles {list(dup['tile'])} share the grid position(s) "
                         f"{sorted(set(zip(dup['row'], dup['col'])))}; expected one tile per row, col")


def _check_tile_files(df, folder, path):
    """Decode every tile once; the common ``(shape, dtype)``, raising InputError on an odd one out."""
    kinds = []
    for rec in df.itertuples(index=False):
        f = folder / rec.file
        if not f.is_file():
            raise InputError(f"{f}: tile image of tile {rec.tile} not found "
                             f"(listed in {path})")
        img = load_tile(f)  # full decode: catches truncated files
        kinds.append((img.shape, str(img.dtype)))
        del img
    counts = {k: kinds.count(k) for k in dict.fromkeys(kinds)}
    shape, dtype = max(counts, key=counts.get)  # most common (ties: first listed)
    for rec, kind in zip(df.itertuples(index=False), kinds):
        if kind != (shape, dtype):
            ref = df["tile"][[k == (shape, dtype) for k in kinds]].iloc[0]
            raise InputError(f"{folder / rec.file}: tile {rec.tile} is {kind[0][0]}x{kind[0][1]} "
                             f"{kind[1]}; expected {shape[0]}x{shape[1]} {dtype} like tile {ref} "
                             f"({counts[(shape, dtype)]} of {len(df)} tiles)")
    return shape, dtype


def read_layout(folder, check_tiles=True):
    """Read and validate the ``layout.csv`` of a tile folder.

    Parameters
    ----------
    folder : path-like
        The tile folder, or the path of its ``layout.csv``. Columns:
        ``tile`` (str id), ``file`` (relative to the folder), ``row``,
        ``col`` (int), ``x_um``, ``y_um`` (nominal stage position of the
        tile's top-left pixel, um).
    check_tiles : bool
        Decode every tile once (one at a time) to check that it is readable
        and that all tiles share shape and dtype.

    Returns
    -------
    pandas.DataFrame
        The layout columns, ``tile`` and ``file`` as str, ``row``/``col``
        int, ``x_um``/``y_um`` float, sorted by ``row, col``. ``attrs``:
        ``folder`` (str), and with ``check_tiles`` ``tile_shape`` ``(H, W)``
        and ``dtype`` (str).

    Raises
    ------
    InputError
        Missing or unreadable ``layout.csv``, a missing column, an empty
        layout, a non-numeric or missing value (names the row), a duplicate
        tile id or grid position (names the tiles), a missing, truncated or
        corrupt tile file, or a tile whose shape or dtype differs from the
        first tile's (names the file and what was expected).
    """
    folder, path = _layout_path(folder)
    df = _read_layout_csv(path)
    _check_layout_rows(df, path)
    _typed_layout(df)
    _check_layout_unique(df, path)
    df = df.sort_values(["row", "col"], kind="stable").reset_index(drop=True)
    df.attrs["folder"] = str(folder)
    if check_tiles:
        shape, dtype = _check_tile_files(df, folder, path)
        df.attrs["tile_shape"] = tuple(int(s) for s in shape)
        df.attrs["dtype"] = dtype
    return df


def _tile_shape(layout, folder):
    """``(H, W)`` of the layout's tiles: its ``tile_shape`` attr, else the first tile's."""
    shape = layout.attrs.get("tile_shape")
    if shape is None:
        img = load_tile(Path(folder) / layout["file"].iloc[0])
        shape = img.shape
    return tuple(int(s) for s in shape)


class _TileCache:
    """Least-recently-used cache of decoded tiles, at most ``size`` held."""

    def __init__(self, folder, size=8, dtype=None):
        self.folder, self.size, self.dtype = Path(folder), max(1, int(size)), dtype
        self._cache = OrderedDict()
        self.loads = 0

    def get(self, file):
        if file in self._cache:
            self._cache.move_to_end(file)
            return self._cache[file]
        img = load_tile(self.folder / file)
        if self.dtype is not None:
            img = img.astype(self.dtype, copy=False)
        self.loads += 1
        self._cache[file] = img
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return img


def write_tile_set(folder, tiles, layout):
    """Write tiles (TIFF, or PNG by file suffix) and ``layout.csv`` into ``folder``.

    Parameters
    ----------
    folder : path-like
        Created if absent.
    tiles : list of numpy.ndarray
        In the order of ``layout``'s rows.
    layout : pandas.DataFrame
        With the columns of :data:`LAYOUT_COLUMNS`.

    Returns
    -------
    pathlib.Path
        Path of the written ``layout.csv``.
    """
    import tifffile

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for tile, name in zip(tiles, layout["file"]):
        if Path(name).suffix.lower() in _TIFF_SUFFIXES:
            tifffile.imwrite(folder / name, tile)
        else:
            from PIL import Image

            Image.fromarray(tile).save(folder / name)
    path = folder / "layout.csv"
    layout[list(LAYOUT_COLUMNS)].to_csv(path, index=False)
    return path
