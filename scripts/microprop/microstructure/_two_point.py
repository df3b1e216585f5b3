"""Two-point auto- and cross-correlations of local-state fields, by FFT.

:func:`two_point` computes ``f_ij(r) = sum_x m_i(x) m_j(x + r) / sum_x w(x)
w(x + r)`` (Torquato 2002, Random Heterogeneous Materials, ch. 2; the FFT
form of Fast, Niezgoda & Kalidindi 2011, Acta Mater. 59, 699, eqs. 5-7) of
the local-state fields of crops (:func:`state_fields`), periodic or (the
default, crops being cut out of a larger field) zero-padded with the
non-periodic normalisation of PyMKS, up to a largest shift;
:func:`correlation_pairs` lists the auto- and cross-correlations and
:func:`two_point_features` flattens the correlations of segmented,
block-averaged crops into the feature vectors of the baseline ladder's
``two_point`` rung (materials-knowledge-systems style structure-property
model; Kalidindi, Niezgoda & Salem 2011, JOM 63, 34).

Why not the ``pymks`` package: its latest release (0.4.1, 2021) requires
``dask``, ``toolz``, ``Deprecated`` and even ``pytest``/``pytest-cov``/``nbval``
at run time, none of which this project uses, and still calls ``np.complex``
(removed in numpy 1.24) in its localization code; the correlations themselves
are a few lines of ``scipy.fft`` (:func:`two_point`).
"""
from __future__ import annotations

import numpy as np
import scipy.fft

from ..errors import InputError
from ._descriptors import state_fields


def correlation_pairs(n_states):
    """All auto- and cross-correlation pairs ``(i, j)``, ``i <= j``."""
    return [(i, j) for i in range(int(n_states)) for j in range(i, int(n_states))]


def two_point(fields, mask=None, max_shift=None, periodic=False, pairs=None, batch=None):
    """Two-point auto- and cross-correlations of local-state fields, by FFT.

    ``f_ij(r) = sum_x m_i(x) m_j(x + r) / sum_x w(x) w(x + r)`` (Torquato
    2002, Random Heterogeneous Materials, ch. 2; the FFT form of Fast,
    Niezgoda & Kalidindi 2011, Acta Mater. 59, 699, eqs. 5-7), with ``r =
    (dy, dx)`` in pixels. ``periodic=False`` (default; crops are cut out of a
    larger field, not periodic): the fields are zero-padded to at least
    ``S + max_shift`` so that no wrap-around reaches the kept shifts, and the
    denominator counts the pixel pairs inside the crop (``(S-|dy|)(S-|dx|)``
    without NaN) -- the non-periodic normalisation of PyMKS.
    ``periodic=True``: circular shifts, denominator ``S^2``. For 0/1
    indicator fields, ``f_ii(0)`` is the volume fraction of state ``i``.

    Parameters
    ----------
    fields : array-like, shape (N, L, H, W)
        Local-state fields (:func:`state_fields`).
    mask : array-like, shape (N, H, W), optional
        Weight of valid pixels (1 = valid, 0 = NaN/outside; default all 1).
        State fields must already be 0 where the mask is 0.
    max_shift : int, optional
        Keep shifts ``|dy|, |dx| <= max_shift`` px. Default: all shifts
        (``min(H, W) - 1``; periodic: ``(min(H, W) - 1) // 2``).
    periodic : bool
    pairs : list of (int, int), optional
        Correlations to compute; default :func:`correlation_pairs` (all
        ``L (L + 1) / 2``).
    batch : int, optional
        Crops per FFT batch (default: about 64 MB of spectra).

    Returns
    -------
    numpy.ndarray, shape (N, P, 2 r + 1, 2 r + 1), float64
        ``out[n, p, r + dy, r + dx]``; the centre ``[r, r]`` is zero shift.
        Shifts without any valid pixel pair give NaN.

    Raises
    ------
    InputError
        For a wrong shape, a pair index out of range, or a negative
        ``max_shift``.
    """
    m = np.asarray(fields, dtype=np.float64)
    if m.ndim != 4:
        raise InputError(f"two_point: expected fields of shape (N, L, H, W), got {m.shape}")
    n, n_states, h, w = m.shape
    mask = _valid_mask(mask, (n, h, w))
    pairs = _checked_pairs(pairs, n_states)
    r = _kept_shift(h, w, max_shift, periodic)
    shape = _fft_shape(h, w, r, periodic)
    iy = np.arange(-r, r + 1) % shape[0]
    ix = np.arange(-r, r + 1) % shape[1]
    used = sorted({k for p in pairs for k in p})
    if batch is None:
        per_crop = (len(used) + 1) * shape[0] * (shape[1] // 2 + 1) * 16
        batch = max(1, int(64e6 // per_crop))
    out = np.empty((n, len(pairs), 2 * r + 1, 2 * r + 1), np.float64)
    for b0 in range(0, n, batch):
        b1 = min(n, b0 + batch)
        _correlate_batch(m[b0:b1], mask[b0:b1], pairs, used, shape, iy, ix, out[b0:b1])
    return out


def _valid_mask(mask, shape):
    """Valid-pixel weights as float64 of ``shape`` (N, H, W); all 1 when None (InputError on a wrong shape)."""
    if mask is None:
        mask = np.ones(shape, np.float64)
    mask = np.asarray(mask, dtype=np.float64)
    if mask.shape != shape:
        raise InputError(f"two_point: mask shape {mask.shape}; expected {shape}")
    return mask


def _checked_pairs(pairs, n_states):
    """Correlation pairs as tuples (default all, :func:`correlation_pairs`); InputError for a state outside."""
    pairs = correlation_pairs(n_states) if pairs is None else [tuple(p) for p in pairs]
    for i, j in pairs:
        if not (0 <= i < n_states and 0 <= j < n_states):
            raise InputError(f"two_point: pair {(i, j)} outside the {n_states} states")
    return pairs


def _kept_shift(h, w, max_shift, periodic):
    """Largest kept shift ``r`` (px): ``max_shift`` capped at what the fields allow (default that cap)."""
    rmax = (min(h, w) - 1) // 2 if periodic else min(h, w) - 1
    r = rmax if max_shift is None else int(max_shift)
    if r < 0:
        raise InputError(f"two_point: max_shift must be >= 0, got {max_shift}")
    return min(r, rmax)


def _fft_shape(h, w, r, periodic):
    """FFT shape: the fields' own when periodic, else zero-padded to a fast length >= ``(h + r, w + r)``."""
    if periodic:
        return (h, w)
    return (scipy.fft.next_fast_len(h + r, real=True), scipy.fft.next_fast_len(w + r, real=True))


def _correlate_batch(m, mask, pairs, used, shape, iy, ix, out):
    """Fill ``out`` (B, P, 2r+1, 2r+1) with the normalised correlations of one batch of fields (B, L, H, W)."""
    spec = {k: scipy.fft.rfft2(m[:, k], s=shape) for k in used}
    wf = scipy.fft.rfft2(mask, s=shape)
    norm = scipy.fft.irfft2(np.conj(wf) * wf, s=shape)[:, iy][:, :, ix]
    # pair counts (weighted by the valid fraction of coarse cells): a real pair adds
    # >= 1/f^4 (block factor f); shifts without pairs come out as FFT round-off
    norm = np.where(norm > 1e-6, norm, np.nan)
    for p, (i, j) in enumerate(pairs):
        c = scipy.fft.irfft2(np.conj(spec[i]) * spec[j], s=shape)[:, iy][:, :, ix]
        out[:, p] = c / norm


def two_point_features(images, thresholds, factor, max_shift, periodic=False):
    """Flattened two-point correlations of crops (segment, block-average, correlate).

    Parameters
    ----------
    images : array-like, shape (N, S, S)
    thresholds : array-like, shape (L - 1,)
    factor : int
        Block-mean factor (:func:`block_factor`).
    max_shift : int
        Largest kept shift in coarse pixels.
    periodic : bool

    Returns
    -------
    numpy.ndarray, shape (N, L (L + 1) / 2 * (2 r + 1)^2), float32
        NaN (no valid pair) replaced by 0.
    """
    m, w = state_fields(images, thresholds, factor)
    c = two_point(m, mask=w, max_shift=max_shift, periodic=periodic)
    return np.nan_to_num(c.reshape(c.shape[0], -1)).astype(np.float32)
