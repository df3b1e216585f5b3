"""SEM tiles of a virtual specimen: the overlapping tile set a microscope records.

:func:`tile_grid` lays a regular grid of tiles with a given overlap over a
field; :func:`cut_tiles` cuts them from an ideal grey image (``_bse``) at
their true positions (nominal + a common offset + a stage positioning error
per tile), with a per-tile contrast and brightness drift and Poisson shot
noise, and returns the tiles, their nominal ``layout`` (the table a
microscope writes, ``layout.csv``) and the ``truth`` (where each tile was
cut).

Images are ``(H, W)`` = ``(y, x)``; a pixel ``p`` lies at stage position
``p * pixel_size_nm / 1000`` um (the specimen frame, ``docs/ARCHITECTURE.md``).
"""
from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from ..errors import InputError
from ._bse import bse_gain_offset
from ._microstructure import DEFAULT_PHASE_ETA

log = logging.getLogger(__name__)


def tile_grid(field_shape_px, tile_shape, overlap_frac):
    """Number of tiles and step that cover a field with a given overlap.

    Parameters
    ----------
    field_shape_px : (int, int)
        ``(H, W)`` of the field to cover.
    tile_shape : (int, int)
        ``(h, w)`` of one tile.
    overlap_frac : float
        Overlap of neighbouring tiles as a fraction of the tile size, in [0, 1).

    Returns
    -------
    n_rows, n_cols, step_y, step_x : int
        The tiles' nominal top-left corners are ``(row * step_y, col * step_x)``
        and cover at least ``field_shape_px``.
    """
    if not 0 <= overlap_frac < 1:
        raise InputError(f"tile_grid: overlap_frac={overlap_frac}, expected a value in [0, 1)")
    out = []
    for n_field, n_tile in zip(field_shape_px, tile_shape):
        step = max(1, int(round(n_tile * (1 - overlap_frac))))
        n = 1 if n_field <= n_tile else int(math.ceil((n_field - n_tile) / step)) + 1
        out.append((n, step))
    (nr, sy), (nc, sx) = out
    return nr, nc, sy, sx


def cut_window(image, x, y, shape, pad=16):
    """The window of an image whose pixel ``[0, 0]`` lies at a sub-pixel position.

    ``out[i, j] = image(y + i, x + j)``, with the image continued between
    pixels by its band-limited (Fourier) interpolation: the whole-pixel part
    of ``(x, y)`` is a slice, the fractional part a Fourier shift
    (:func:`scipy.ndimage.fourier_shift`) of the window padded by ``pad``
    pixels on each side (by reflection where it leaves the image), so the
    periodic wrap of the FFT stays in the padding. This is how a stage
    that does not stop on the pixel grid records a tile.

    Parameters
    ----------
    image : numpy.ndarray, shape (H, W), real
    x, y : float
        Position (px) of the window's pixel ``[0, 0]`` in ``image``.
    shape : (int, int)
        ``(h, w)`` px.
    pad : int
        Padding (px) that absorbs the FFT's wrap-around.

    Returns
    -------
    numpy.ndarray, shape ``(h, w)``, float32
        A copy; exact image pixels when ``x`` and ``y`` are whole numbers.

    Raises
    ------
    InputError
        If the window (without its padding) leaves the image.
    """
    from scipy import ndimage as ndi

    h, w = (int(v) for v in shape)
    H, W = image.shape
    ix, iy = int(np.floor(x)), int(np.floor(y))
    fx, fy = float(x) - ix, float(y) - iy
    if ix < 0 or iy < 0 or ix + w + (fx > 0) > W or iy + h + (fy > 0) > H:
        raise InputError(f"cut_window: a {h} x {w} px window at x={x:.2f}, y={y:.2f} px leaves the "
                         f"image of {H} x {W} px")
    if fx == 0 and fy == 0:
        return np.array(image[iy:iy + h, ix:ix + w], dtype=np.float32)
    y0, y1, x0, x1 = iy - pad, iy + h + pad, ix - pad, ix + w + pad
    win = image[max(0, y0):min(H, y1), max(0, x0):min(W, x1)].astype(np.float64)
    win = np.pad(win, ((max(0, -y0), max(0, y1 - H)), (max(0, -x0), max(0, x1 - W))), mode="reflect")
    shifted = np.fft.ifft2(ndi.fourier_shift(np.fft.fft2(win), (-fy, -fx))).real
    return shifted[pad:pad + h, pad:pad + w].astype(np.float32)


def cut_tiles(image, tile_shape, overlap_frac, stage_error_um, pixel_size_nm, rng=None, *,
              field_origin_px=(0, 0), field_shape_px=None, offset_um=(0.0, 0.0),
              brightness_drift=0.01, contrast_drift=0.02, electrons_per_px=5000.0,
              gain=None, offset=None, dtype=np.uint8, file_pattern="{tile}.tif"):
    """Cut overlapping SEM tiles from an ideal grey image, as a stage would record them.

    Nominal tile corners form a regular grid with the requested overlap that
    covers the field; each tile is cut at its true position, nominal +
    ``offset_um`` + N(0, ``stage_error_um``) per axis, to sub-pixel precision
    (:func:`cut_window`), then gets its own contrast and brightness drift and
    shot noise::

        counts ~ Poisson(electrons_per_px * eta),   eta = (grey - offset) / gain
        tile = (1 + c) * (offset + gain * counts / electrons_per_px) + b * full_scale

    with ``c ~ N(0, contrast_drift)``, ``b ~ N(0, brightness_drift)``; for
    means above 50 counts the Poisson draw uses its normal approximation.
    Values are rounded and clipped to ``dtype``'s range (the image's 8-bit
    scale is multiplied by 257 for ``uint16``).

    Parameters
    ----------
    image : ndarray, shape (H, W), float
        Ideal grey image on the 8-bit scale (:func:`render_bse`), in the
        specimen frame; it must hold the jittered tiles (generate it with a
        margin). Tiles that would leave it are clipped to its edge, with a
        warning (their truth records where they were cut).
    tile_shape : (int, int)
        ``(h, w)`` of a tile in px.
    overlap_frac : float
        Nominal overlap of neighbours, fraction of the tile size.
    stage_error_um : float
        Standard deviation of the stage positioning error per axis (um).
    pixel_size_nm : float
    rng : numpy.random.Generator or int, optional
    field_origin_px : (int, int)
        ``(x, y)`` of the nominal top-left corner of the tile grid in ``image``.
    field_shape_px : (int, int), optional
        ``(H, W)`` of the nominal field to cover; default the image minus the origin.
    offset_um : (float, float)
        ``(x, y)`` common shift of the whole set (e.g. the after-indentation
        set of a remounted specimen), um.
    brightness_drift, contrast_drift : float
        Standard deviations of the per-tile brightness (fraction of full
        scale) and contrast (relative gain) changes.
    electrons_per_px : float
        Primary electrons per pixel dwell; sets the shot noise. Zero or None:
        no shot noise.
    gain, offset : float, optional
        Detector setting used by the render (grey per unit eta, grey at eta 0);
        default ``bse_gain_offset(DEFAULT_PHASE_ETA)``.
    dtype : numpy dtype
        ``uint8`` or ``uint16``.
    file_pattern : str
        File name of a tile, formatted with ``tile``, ``row``, ``col``.

    Returns
    -------
    tiles : list of ndarray, each ``tile_shape``, ``dtype``
        In the order of ``layout``.
    layout : pandas.DataFrame
        ``tile, file, row, col, x_um, y_um``: nominal stage position of each
        tile's top-left pixel (um, specimen frame).
    truth : pandas.DataFrame
        ``tile, x_px, y_px``: where each tile was actually cut (specimen
        frame, float px).

    Raises
    ------
    InputError
        If the image is not 2D, smaller than a tile, or the nominal field does
        not fit in it.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise InputError(f"cut_tiles: image must be 2D, got shape {image.shape}")
    (th, tw), (ox, oy), (nr, nc, sy, sx) = _nominal_grid(image.shape, tile_shape, overlap_frac, field_origin_px,
                                                         field_shape_px)
    dtype, scale, full = _tile_dtype(dtype)
    gain, offset = _detector_setting(gain, offset)
    rng = np.random.default_rng(rng)
    px_per_um = 1000.0 / pixel_size_nm

    rows, cols = np.meshgrid(np.arange(nr), np.arange(nc), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    nom_x = ox + cols * sx
    nom_y = oy + rows * sy
    cx, cy = _cut_corners(nom_x, nom_y, image.shape, (th, tw), stage_error_um, offset_um, px_per_um, rng)
    contrast = 1.0 + rng.normal(0.0, contrast_drift, rows.size)
    bright = rng.normal(0.0, brightness_drift, rows.size) * 255.0

    names, files = _tile_names(rows, cols, file_pattern)
    tiles = [_record_tile(cut_window(image, cx[k], cy[k], (th, tw)), rng, electrons_per_px, gain, offset,
                          contrast[k], bright[k], scale, full, dtype)
             for k in range(rows.size)]
    px_um = pixel_size_nm / 1000.0
    layout = pd.DataFrame({"tile": names, "file": files, "row": rows, "col": cols,
                           "x_um": np.round(nom_x * px_um, 6), "y_um": np.round(nom_y * px_um, 6)})
    truth = pd.DataFrame({"tile": names, "x_px": np.round(cx, 4), "y_px": np.round(cy, 4)})
    return tiles, layout, truth


def _nominal_grid(image_shape, tile_shape, overlap_frac, field_origin_px, field_shape_px):
    """Tile shape ``(th, tw)``, grid origin ``(ox, oy)`` and :func:`tile_grid` of the nominal field (px).

    Raises InputError when a tile is larger than the image or the nominal
    grid does not fit in it.
    """
    th, tw = (int(s) for s in tile_shape)
    H, W = image_shape
    if th > H or tw > W:
        raise InputError(f"cut_tiles: tile shape {(th, tw)} is larger than the image {image_shape}")
    ox, oy = (int(v) for v in field_origin_px)
    fh, fw = (H - oy, W - ox) if field_shape_px is None else (int(v) for v in field_shape_px)
    nr, nc, sy, sx = tile_grid((fh, fw), (th, tw), overlap_frac)
    if ox < 0 or oy < 0 or oy + (nr - 1) * sy + th > H or ox + (nc - 1) * sx + tw > W:
        raise InputError(
            f"cut_tiles: the nominal tile grid ({nr} x {nc} tiles of {th} x {tw} px from origin "
            f"x={ox}, y={oy}) does not fit in the image {image_shape}; generate the field with a margin")
    return (th, tw), (ox, oy), (nr, nc, sy, sx)


def _tile_dtype(dtype):
    """Tile dtype (uint8 or uint16, else InputError), its factor on the 8-bit scale and its full scale."""
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        raise InputError(f"cut_tiles: dtype {dtype} not supported; use uint8 or uint16")
    scale = 1.0 if dtype == np.uint8 else 257.0
    full = float(np.iinfo(dtype).max)
    return dtype, scale, full


def _detector_setting(gain, offset):
    """``gain, offset`` with each missing one from ``bse_gain_offset(DEFAULT_PHASE_ETA)``."""
    if gain is None or offset is None:
        g, o = bse_gain_offset(DEFAULT_PHASE_ETA)
        gain = g if gain is None else gain
        offset = o if offset is None else offset
    return gain, offset


def _cut_corners(nom_x, nom_y, image_shape, tile_shape, stage_error_um, offset_um, px_per_um, rng):
    """Where each tile is cut (top-left ``x, y`` px): nominal + offset + stage error, clipped to the image."""
    H, W = image_shape
    th, tw = tile_shape
    n = nom_x.size
    err = rng.normal(0.0, stage_error_um, (n, 2)) if stage_error_um > 0 else np.zeros((n, 2))
    # sub-pixel positions, as a stage records them; 4 decimals, as the truth table keeps them
    true_x = np.round(nom_x + (offset_um[0] + err[:, 0]) * px_per_um, 4)
    true_y = np.round(nom_y + (offset_um[1] + err[:, 1]) * px_per_um, 4)
    cx, cy = np.clip(true_x, 0, W - tw), np.clip(true_y, 0, H - th)
    if (cx != true_x).any() or (cy != true_y).any():
        log.warning("cut_tiles: %d tile(s) left the image and were clipped to its edge; "
                    "generate the field with a larger margin", int(((cx != true_x) | (cy != true_y)).sum()))
    return cx, cy


def _tile_names(rows, cols, file_pattern):
    """Tile names ``r<row>_c<col>`` and their file names from ``file_pattern``."""
    names, files = [], []
    for r, c in zip(rows, cols):
        name = f"r{r:03d}_c{c:03d}"
        names.append(name)
        files.append(file_pattern.format(tile=name, row=int(r), col=int(c)))
    return names, files


def _record_tile(window, rng, electrons_per_px, gain, offset, contrast, bright, scale, full, dtype):
    """One recorded tile from its window of the ideal image: shot noise, contrast/brightness drift, rounding."""
    t = np.array(window, dtype=np.float32)
    if electrons_per_px:
        t = _shot_noise(t, rng, electrons_per_px, gain, offset)
    t *= np.float32(contrast)
    t += np.float32(bright)
    t *= np.float32(scale)
    np.rint(t, out=t)
    np.clip(t, 0, full, out=t)
    return t.astype(dtype)


def _shot_noise(t, rng, electrons_per_px, gain, offset):
    """Grey float32 tile with Poisson shot noise of ``electrons_per_px * eta`` counts (normal above 50)."""
    lam = np.clip((t - np.float32(offset)) * np.float32(electrons_per_px / gain), 0, None)
    if float(lam.min()) > 50:
        noise = rng.standard_normal(lam.shape, dtype=np.float32)
        noise *= np.sqrt(lam)
        lam += noise
    else:
        lam = rng.poisson(lam).astype(np.float32)
    t = lam
    t *= np.float32(gain / electrons_per_px)
    t += np.float32(offset)
    return t
