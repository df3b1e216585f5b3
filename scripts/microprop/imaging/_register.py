"""Registration of the after-indentation mosaic onto the before-indentation mosaic.

:func:`register_mosaics` measures the shift ``(dx_px, dy_px)`` with
``p_before = p_after + (dx_px, dy_px)``: the stage origins give the starting
shift, phase correlation (Kuglin & Hines 1975) of downsampled mosaics the
coarse correction, and upsampled-DFT phase correlation
(``skimage.registration.phase_cross_correlation``, Guizar-Sicairos et al.
2008) of textured full-resolution windows the final one. Located indents are
carried into the before-mosaic by this shift (``_grid``).
"""
from __future__ import annotations

import logging
import math

import numpy as np
from skimage.registration import phase_cross_correlation

from .. import io as mio
from ..errors import InputError
from ._marks import _parabolic_offset

log = logging.getLogger(__name__)

def _hann2d(shape):
    """Separable 2D Hann window of ``shape``, float32."""
    return np.outer(np.hanning(shape[0]), np.hanning(shape[1])).astype(np.float32)


def _phase_correlation(ref, mov, max_shift):
    """Integer-plus-parabola shift ``t`` (dy, dx) with ``ref(p) ~ mov(p - t)``, ``|t| <= max_shift``.

    Phase correlation (Kuglin & Hines 1975) of Hann-windowed, mean-removed
    images; the peak search is restricted to ``max_shift`` (px) per axis.
    """
    w = _hann2d(ref.shape)
    fa = np.fft.rfft2((ref - ref.mean()) * w)
    fb = np.fft.rfft2((mov - mov.mean()) * w)
    cross = fa * np.conj(fb)
    cross /= np.abs(cross) + 1e-12 * np.abs(cross).max() + 1e-30
    corr = np.fft.irfft2(cross, s=ref.shape)
    corr = np.fft.fftshift(corr)
    cy, cx = ref.shape[0] // 2, ref.shape[1] // 2
    m = int(math.ceil(max_shift))
    sub = corr[max(0, cy - m): cy + m + 1, max(0, cx - m): cx + m + 1]
    iy, ix = np.unravel_index(np.argmax(sub), sub.shape)
    py, px = iy + max(0, cy - m), ix + max(0, cx - m)
    pad = np.pad(corr, 1, mode="wrap")
    oy = _parabolic_offset(pad[py, px + 1], pad[py + 1, px + 1], pad[py + 2, px + 1])
    ox = _parabolic_offset(pad[py + 1, px], pad[py + 1, px + 1], pad[py + 1, px + 2])
    return np.array([py - cy + float(oy), px - cx + float(ox)])


def _overlap(shape_b, shape_a, s):
    """Before-frame box ``(y0, y1, x0, x1)`` covered by both images for integer shift ``s`` (dy, dx)."""
    y0, x0 = max(0, s[0]), max(0, s[1])
    y1, x1 = min(shape_b[0], shape_a[0] + s[0]), min(shape_b[1], shape_a[1] + s[1])
    return int(y0), int(y1), int(x0), int(x1)


def _pearson(a, b):
    """Pearson correlation of two equal-shape arrays; 0 when either is flat."""
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


def _coarse_shift(b_ds, a_ds, s0, f, ps_um, max_shift_um, before_shape, after_shape):
    """Downsampled phase-correlation shift ``(s0i, r)``: integer start and residual (dy, dx), ds px.

    ``s0`` is the stage-origin shift (dy, dx) in full-resolution px; raises
    InputError when the downsampled mosaics do not overlap at it.
    """
    s0i = np.round(s0 / f).astype(int)
    y0, y1, x0, x1 = _overlap(b_ds.shape, a_ds.shape, s0i)
    if y1 - y0 < 8 or x1 - x0 < 8:
        raise InputError(
            f"register_mosaics: before {tuple(before_shape)} and after {tuple(after_shape)} mosaics "
            f"do not overlap at the stage-origin shift ({s0[1]:.0f}, {s0[0]:.0f}) px; check origin_um")
    b_c = b_ds[y0:y1, x0:x1]
    a_c = a_ds[y0 - s0i[0]:y1 - s0i[0], x0 - s0i[1]:x1 - s0i[1]]
    max_ds = max_shift_um / ps_um / f + np.abs(s0 / f - s0i).max() + 1
    r = _phase_correlation(b_c, a_c, min(max_ds, min(b_c.shape) / 2 - 1))
    return s0i, r


def _overlap_score(b_ds, a_ds, shift):
    """Pearson correlation of the downsampled mosaics over their overlap at integer ``shift`` (dy, dx)."""
    oy0, oy1, ox0, ox1 = _overlap(b_ds.shape, a_ds.shape, shift)
    return _pearson(b_ds[oy0:oy1, ox0:ox1],
                    a_ds[oy0 - shift[0]:oy1 - shift[0], ox0 - shift[1]:ox1 - shift[1]])


def _refinement_windows(b_ds, overlap, win, f, n_windows):
    """Top-left corners ``(wy, wx)`` of the ``n_windows`` most textured half-overlapping windows."""
    y0, y1, x0, x1 = overlap
    # half-overlapping windows, at most 4 x 4 candidates
    ny = int(np.clip(math.ceil(2 * (y1 - y0) / win) - 1, 1, 4))
    nx = int(np.clip(math.ceil(2 * (x1 - x0) / win) - 1, 1, 4))
    cands = []
    for wy in np.linspace(y0, y1 - win, ny).astype(int):
        for wx in np.linspace(x0, x1 - win, nx).astype(int):
            tex = b_ds[wy // f:(wy + win) // f, wx // f:(wx + win) // f]
            cands.append((float(tex.var()) if tex.size else 0.0, wy, wx))
    cands.sort(reverse=True)
    return [(wy, wx) for _, wy, wx in cands[:n_windows]]


def _window_shifts(before, after, b_ds, coarse, f, window_px, n_windows):
    """Full-resolution shifts (dy, dx) of the refinement windows that agree with ``coarse``."""
    si = np.round(coarse).astype(int)
    margin = 2 * f + 2
    y0, y1, x0, x1 = _overlap(before.shape, after.shape, si)
    y0, y1, x0, x1 = y0 + margin, y1 - margin, x0 + margin, x1 - margin
    win = int(min(window_px, y1 - y0, x1 - x0))
    shifts = []
    if win >= 32:
        hann = _hann2d((win, win))
        for wy, wx in _refinement_windows(b_ds, (y0, y1, x0, x1), win, f, n_windows):
            bw = np.asarray(before[wy:wy + win, wx:wx + win], np.float32)
            aw = np.asarray(after[wy - si[0]:wy - si[0] + win, wx - si[1]:wx - si[1] + win], np.float32)
            t, _, _ = phase_cross_correlation((bw - bw.mean()) * hann, (aw - aw.mean()) * hann,
                                              upsample_factor=10)
            if np.abs(t).max() <= 2 * f:
                shifts.append(si + np.asarray(t, float))
    return shifts


def register_mosaics(before, after, before_origin_um, after_origin_um, pixel_size_nm,
                     max_shift_um=20.0, downsample=8, window_px=512, n_windows=5):
    """Shift that maps after-mosaic pixels onto before-mosaic pixels.

    The stage origins give the starting shift ``(after_origin - before_origin)
    / pixel size``; the remaining stage error is found by phase correlation
    (Kuglin & Hines 1975) of block-mean downsampled mosaics
    (:func:`microprop.io.downsample`, chunk rows at a time), restricted to
    ``max_shift_um``, then refined at full resolution on the ``n_windows``
    most textured windows of the overlap with
    ``skimage.registration.phase_cross_correlation`` (upsampled DFT,
    Guizar-Sicairos et al. 2008, upsample factor 10); the median window shift
    is returned. Phase correlation whitens the spectrum, so the small indent
    marks present only in the after-mosaic barely affect it.

    Parameters
    ----------
    before, after : array-like, shape (Hb, Wb) and (Ha, Wa)
        Mosaics (zarr arrays or numpy), same pixel size.
    before_origin_um, after_origin_um : sequence of 2 float
        Stage position ``(x, y)`` in um of each mosaic's pixel ``[0, 0]``.
    pixel_size_nm : float
        Pixel size in nm.
    max_shift_um : float
        Largest stage error (per axis) searched, in um.
    downsample : int
        Block-mean factor of the coarse step.
    window_px : int
        Edge of the full-resolution refinement windows.
    n_windows : int
        Number of refinement windows.

    Returns
    -------
    dict
        ``dx_px, dy_px`` (float): after pixel ``p`` + shift = before pixel;
        ``score`` (Pearson correlation of the overlapping downsampled mosaics
        at the found shift, -1..1); ``coarse_dx_px, coarse_dy_px``,
        ``n_windows`` (windows that agreed), ``window_spread_px`` (median
        absolute deviation of the window shifts).

    Raises
    ------
    InputError
        If the mosaics do not overlap at the starting shift or the pixel
        size is not positive.
    """
    if not pixel_size_nm or pixel_size_nm <= 0:
        raise InputError(f"register_mosaics: pixel_size_nm must be positive, got {pixel_size_nm!r}")
    ps_um = float(pixel_size_nm) / 1000.0
    s0 = (np.asarray(after_origin_um, float)[::-1] - np.asarray(before_origin_um, float)[::-1]) / ps_um
    f = max(1, int(downsample))
    b_ds, a_ds = mio.downsample(before, f), mio.downsample(after, f)
    s0i, r = _coarse_shift(b_ds, a_ds, s0, f, ps_um, max_shift_um, before.shape, after.shape)
    coarse = (s0i + r) * f
    log.info("register: stage-origin shift (%.1f, %.1f) px, coarse (%.1f, %.1f) px",
             s0[1], s0[0], coarse[1], coarse[0])
    score = _overlap_score(b_ds, a_ds, np.round(s0i + r).astype(int))
    shifts = _window_shifts(before, after, b_ds, coarse, f, window_px, n_windows)
    if shifts:
        shifts = np.array(shifts)
        final = np.median(shifts, axis=0)
        spread = float(np.median(np.abs(shifts - final)))
    else:
        log.warning("register: no full-resolution window agreed; keeping the coarse shift")
        final, spread = coarse, float("nan")
    log.info("register: shift (%.2f, %.2f) px from %d windows, score %.3f",
             final[1], final[0], len(shifts), score)
    return {"dx_px": float(final[1]), "dy_px": float(final[0]), "score": float(score),
            "coarse_dx_px": float(coarse[1]), "coarse_dy_px": float(coarse[0]),
            "n_windows": int(len(shifts)), "window_spread_px": spread}
