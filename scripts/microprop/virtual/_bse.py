"""The ideal backscattered-electron (BSE) image of a virtual specimen's label map.

:func:`render_bse` renders the noise-free grey image a BSE detector would
give of a label map: ``grey = offset + gain * eta(x)``, with ``eta(x) =
eta(phase) * (1 + t(x))`` where ``t`` is an intra-phase texture (two-scale
smoothed Gaussian noise), blurred with a Gaussian point-spread function.
:func:`bse_gain_offset` sets the linear detector (gain, offset) that maps the
phases' eta range onto a grey range (BSE signal linear in the number of
backscattered electrons; Goldstein et al., Scanning Electron Microscopy and
X-ray Microanalysis, 4th ed., ch. 2). Shot noise and drifts are added per
tile (``_tiles``).

Images are ``(H, W)`` = ``(y, x)`` in the specimen frame (``docs/ARCHITECTURE.md``);
texture lengths are in micrometres, converted through ``pixel_size_nm``.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..phases import PHASES
from ._microstructure import (
    DEFAULT_TEXTURE_REL,
    _check_eta,
    _interp_index,
    _smooth_noise,
)


def bse_gain_offset(phase_eta, grey_range=(50.0, 205.0)):
    """Linear detector setting that maps the phases' eta range onto a grey range.

    Parameters
    ----------
    phase_eta : dict
        Phase name -> backscatter coefficient eta (0..1).
    grey_range : (float, float)
        Grey levels (8-bit scale) of the lowest and the highest eta.

    Returns
    -------
    gain, offset : float
        ``grey = offset + gain * eta`` (BSE detector signal linear in the
        number of backscattered electrons; Goldstein et al., Scanning Electron
        Microscopy and X-ray Microanalysis, 4th ed., ch. 2).
    """
    eta = _check_eta(phase_eta)
    lo_eta, hi_eta = min(eta.values()), max(eta.values())
    if hi_eta <= lo_eta:
        raise InputError("phase_eta: all phases have the same eta; no contrast to render")
    gain = (grey_range[1] - grey_range[0]) / (hi_eta - lo_eta)
    return float(gain), float(grey_range[0] - gain * lo_eta)


def render_bse(labels, phase_eta, rng=None, *, pixel_size_nm=40.0, gain=None, offset=None,
               grey_range=(50.0, 205.0), texture_rel=None, texture_um=(0.1, 1.0), psf_sigma_px=1.0):
    """Render the noise-free BSE grey image of a label map.

    ``grey = offset + gain * eta(x)``, with ``eta(x) = eta(phase) * (1 + t(x))``
    where ``t`` is an intra-phase texture (two-scale smoothed Gaussian noise of
    relative standard deviation ``texture_rel[phase]``), then blurred with a
    Gaussian point-spread function. Shot noise is added per tile
    (:func:`cut_tiles`).

    Parameters
    ----------
    labels : ndarray of uint8, shape (H, W)
        Label ids 0..4 (``PHASES``).
    phase_eta : dict
        Phase name -> backscatter coefficient eta (all phases present in
        ``labels``).
    rng : numpy.random.Generator or int, optional
    pixel_size_nm : float
        Pixel size; converts ``texture_um``.
    gain, offset : float, optional
        Detector setting (grey levels per unit eta, grey at eta 0); by default
        from :func:`bse_gain_offset` with ``grey_range``.
    grey_range : (float, float)
        8-bit grey levels of the darkest and brightest phase (when ``gain`` is None).
    texture_rel : float or dict, optional
        Relative texture amplitude, scalar or per phase; default
        ``DEFAULT_TEXTURE_REL``.
    texture_um : (float, float)
        Correlation lengths (um) of the fine and the coarse texture.
    psf_sigma_px : float
        Standard deviation (px) of the Gaussian point-spread function.

    Returns
    -------
    numpy.ndarray, shape (H, W), float32
        Ideal grey levels on the 8-bit scale (not clipped).

    Raises
    ------
    InputError
        If a phase present in ``labels`` has no eta, or labels are not 0..4.
    """
    labels = _check_labels(labels)
    eta = _check_eta(phase_eta, labels)
    if gain is None or offset is None:
        g, o = bse_gain_offset({p: v for p, v in eta.items() if np.isfinite(v)}, grey_range)
        gain = g if gain is None else gain
        offset = o if offset is None else offset
    rng = np.random.default_rng(rng)
    eta_lut, tex_lut = _lookup_tables(eta, texture_rel)
    px_um = pixel_size_nm / 1000.0

    out = eta_lut[labels]
    if tex_lut.any():
        fine = _texture_factor(labels, tex_lut, rng, texture_um, px_um)
        out *= fine
        del fine
    if psf_sigma_px > 0:
        out = ndimage.gaussian_filter(out, psf_sigma_px, output=np.float32)
    out *= np.float32(gain)
    out += np.float32(offset)
    return out


def _check_labels(labels):
    """Labels as a 2D array of ids ``0 .. len(PHASES) - 1`` (raises InputError otherwise)."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"render_bse: labels must be 2D, got shape {labels.shape}")
    if labels.size and (int(labels.max()) >= len(PHASES) or int(labels.min()) < 0):
        raise InputError(f"render_bse: label ids {int(labels.min())}..{int(labels.max())}, "
                         f"expected 0..{len(PHASES) - 1}")
    return labels


def _lookup_tables(eta, texture_rel):
    """Per-label float32 tables: eta (0 where unknown) and texture amplitude / sqrt(2) (two scales)."""
    if texture_rel is None:
        texture_rel = DEFAULT_TEXTURE_REL
    if np.isscalar(texture_rel):
        texture_rel = {p: float(texture_rel) for p in PHASES}
    eta_lut = np.array([eta[p] if np.isfinite(eta[p]) else 0.0 for p in PHASES], np.float32)
    tex_lut = np.array([texture_rel.get(p, 0.0) for p in PHASES], np.float32) * np.float32(1 / math.sqrt(2))
    return eta_lut, tex_lut


def _texture_factor(labels, tex_lut, rng, texture_um, px_um):
    """Texture factor ``1 + t(x)`` (H, W) float32: fine + coarse smoothed noise scaled by ``tex_lut[labels]``.

    The coarse texture is drawn on a grid reduced by about a quarter of its
    correlation length and interpolated bilinearly, 1024 rows at a time.
    """
    fine = _smooth_noise(rng, labels.shape, texture_um[0] / px_um)
    k = max(1, int(texture_um[1] / px_um / 4))  # coarse texture on a reduced grid
    small_shape = (-(-labels.shape[0] // k) + 1, -(-labels.shape[1] // k) + 1)
    coarse = _smooth_noise(rng, small_shape, texture_um[1] / px_um / k)
    y0, wy = _interp_index(labels.shape[0], k, small_shape[0])
    x0, wx = _interp_index(labels.shape[1], k, small_shape[1])
    for r0 in range(0, labels.shape[0], 1024):
        sl = slice(r0, r0 + 1024)
        a, b = y0[sl], wy[sl][:, None]
        rows = coarse[a] * (1 - b) + coarse[a + 1] * b
        fine[sl] += rows[:, x0] * (1 - wx) + rows[:, x0 + 1] * wx
    fine *= tex_lut[labels]
    fine += 1.0
    return fine
