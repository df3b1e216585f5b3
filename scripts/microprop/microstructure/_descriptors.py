"""Microstructure descriptors of calibrated crops that need no correlation.

Grey classes: :func:`fit_thresholds` fits multi-level Otsu thresholds between
``n_classes`` local states on training pixels and :func:`segment` labels
each pixel with its class. Hand-made features: :func:`disc_mask` is the
central disc around the indent (crop pixel ``[S // 2, S // 2]``),
:func:`crop_features` the crop and disc mean, standard deviation and grey
quantiles (``QUANTILES``), :func:`class_fractions` the grey-class fractions
of a crop or of a masked region. Local-state fields: :func:`state_fields`
are the block-averaged one-hot class indicators (the "primitive basis" of
the materials knowledge systems, Fast, Niezgoda & Kalidindi 2011, Acta
Mater. 59, 699; Kalidindi, Niezgoda & Salem 2011, JOM 63, 34), with
:func:`block_factor` choosing the block size and :func:`central_window`
cutting the central window they are computed on. Their two-point
correlations are in ``_two_point``; the baseline ladder
(:mod:`microprop.learning`) regresses E and H on all of them.

All functions take crops ``(N, S, S)`` of any float grey scale (eta or
porosity) and ignore NaN pixels.
"""
from __future__ import annotations

import warnings

import numpy as np

from ..errors import InputError
from ..io import block_mean_stack

#: Grey-level quantiles (percent) of the hand-made features.
QUANTILES = (5, 25, 50, 75, 95)


def _as_crops(images, what="crops"):
    a = np.asarray(images)
    if a.ndim != 3 or a.shape[1] < 1 or a.shape[2] < 1:
        raise InputError(f"{what}: expected (N, S, S) crops, got shape {a.shape}")
    return a


def fit_thresholds(pixels, n_classes=4, what="training crops"):
    """Grey-level thresholds between ``n_classes`` local states (multi-level Otsu).

    The thresholds maximise the between-class variance of the grey histogram
    (Otsu 1979, IEEE Trans. SMC 9; multi-level form of Liao, Chen & Chung
    2001, J. Inf. Sci. Eng. 17), computed by
    :func:`skimage.filters.threshold_multiotsu` (256 bins).

    Parameters
    ----------
    pixels : array-like
        Grey values of the training crops (any shape; NaN ignored), e.g. a
        strided subsample of every training crop.
    n_classes : int
        Number of local states, >= 2 (4 for cement paste: pore, C-S-H, CH,
        clinker; they are grey classes, not named phases).
    what : str
        Name of the data in error messages.

    Returns
    -------
    numpy.ndarray, shape (n_classes - 1,), float64
        Increasing thresholds; class ``k`` holds greys in
        ``(t[k-1], t[k]]`` (see :func:`segment`).

    Raises
    ------
    InputError
        If ``n_classes < 2`` or the pixels have fewer distinct finite values
        than classes.
    """
    from skimage.filters import threshold_multiotsu

    n_classes = int(n_classes)
    if n_classes < 2:
        raise InputError(f"{what}: n_classes must be >= 2, got {n_classes}")
    p = np.asarray(pixels, dtype=np.float64).ravel()
    p = p[np.isfinite(p)]
    if np.unique(p).size < n_classes:
        raise InputError(f"{what}: fewer than {n_classes} distinct finite grey values; "
                         "cannot fit the class thresholds")
    if n_classes == 2:
        from skimage.filters import threshold_otsu

        return np.array([threshold_otsu(p)], dtype=np.float64)
    return np.asarray(threshold_multiotsu(p, classes=n_classes), dtype=np.float64)


def segment(images, thresholds):
    """Label each pixel with its grey class.

    Parameters
    ----------
    images : array-like, shape (..., H, W)
        Calibrated crops (float).
    thresholds : array-like, shape (L - 1,)
        Increasing thresholds (:func:`fit_thresholds`).

    Returns
    -------
    numpy.ndarray, same shape, int16
        Class ``0 .. L-1`` (``np.digitize(g, t, right=True)``: a grey equal to
        a threshold falls in the lower class); ``-1`` for NaN pixels.
    """
    a = np.asarray(images, dtype=np.float64)
    t = np.asarray(thresholds, dtype=np.float64).ravel()
    lab = np.digitize(np.nan_to_num(a, nan=-np.inf), t, right=True).astype(np.int16)
    lab[~np.isfinite(a)] = -1
    return lab


def disc_mask(size_px, radius_px):
    """Boolean disc of radius ``radius_px`` centred on pixel ``[S // 2, S // 2]``.

    That is where :func:`microprop.data.crop_indents` puts the indent.

    Parameters
    ----------
    size_px : int
        Crop edge ``S``.
    radius_px : float
        Disc radius in pixels (pixel centres within the radius are inside).

    Returns
    -------
    numpy.ndarray, shape (S, S), bool
        Never empty (the centre pixel is always inside).
    """
    s = int(size_px)
    yy, xx = np.mgrid[:s, :s]
    c = s // 2
    m = (yy - c) ** 2 + (xx - c) ** 2 <= float(radius_px) ** 2
    m[c, c] = True
    return m


def _quantiles(vals, q):
    # vals (N, P); percentiles along P; NaN-aware only when needed (faster)
    if np.isnan(vals).any():
        return np.nanpercentile(vals, q, axis=1).T
    return np.percentile(vals, q, axis=1).T


def crop_features(images, disc, quantiles=QUANTILES):
    """Grey-level features that need no class thresholds.

    Parameters
    ----------
    images : array-like, shape (N, S, S)
        Calibrated crops (float; NaN pixels ignored).
    disc : numpy.ndarray, shape (S, S), bool
        Central disc (:func:`disc_mask`), the indent's neighbourhood.
    quantiles : sequence of float
        Percentiles (0-100).

    Returns
    -------
    features : numpy.ndarray, shape (N, 4 + 2 * len(quantiles)), float64
        Per crop: ``mean``, ``std``, ``q<p>`` of the whole crop,
        ``disc_mean``, ``disc_std``, ``disc_q<p>`` of the disc (grey units).
        An all-NaN crop gives NaN features.
    names : list of str
    """
    a = _as_crops(images).astype(np.float64, copy=False)
    n, s, _ = a.shape
    disc = np.asarray(disc, dtype=bool)
    if disc.shape != (s, s):
        raise InputError(f"crop_features: disc mask {disc.shape} does not match crops {(s, s)}")
    flat = a.reshape(n, -1)
    inner = flat[:, disc.ravel()]
    q = list(quantiles)
    with warnings.catch_warnings():  # all-NaN crops: 'mean of empty slice'
        warnings.simplefilter("ignore", RuntimeWarning)
        cols = [np.nanmean(flat, axis=1), np.nanstd(flat, axis=1), _quantiles(flat, q),
                np.nanmean(inner, axis=1), np.nanstd(inner, axis=1), _quantiles(inner, q)]
    feats = np.column_stack(cols)
    names = (["mean", "std"] + [f"q{p:g}" for p in q]
             + ["disc_mean", "disc_std"] + [f"disc_q{p:g}" for p in q])
    return feats, names


def class_fractions(images, thresholds, mask=None):
    """Area fraction of each grey class in each crop (or in a masked region).

    Parameters
    ----------
    images : array-like, shape (N, S, S)
    thresholds : array-like, shape (L - 1,)
    mask : numpy.ndarray, shape (S, S), bool, optional
        Region to count (e.g. the central disc); default the whole crop.

    Returns
    -------
    numpy.ndarray, shape (N, L), float64
        Fractions of the finite pixels of the region; rows sum to 1 (NaN for
        a region without finite pixels).
    """
    a = _as_crops(images)
    lab = segment(a, thresholds).reshape(a.shape[0], -1)
    if mask is not None:
        lab = lab[:, np.asarray(mask, dtype=bool).ravel()]
    n_cls = np.asarray(thresholds).size + 1
    counts = np.stack([(lab == k).sum(axis=1) for k in range(n_cls)], axis=1).astype(np.float64)
    tot = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, counts / np.maximum(tot, 1), np.nan)


def block_factor(size_px, downsample):
    """Integer block-mean factor that brings a crop edge near ``downsample`` px.

    ``factor = max(1, round(S / downsample))``; ``None`` -> 1 (full
    resolution). E.g. S = 250, downsample = 64 -> factor 4 -> 62 px.
    """
    if downsample is None:
        return 1
    d = int(downsample)
    if d < 1:
        raise InputError(f"downsample must be a positive edge in pixels or None, got {downsample}")
    return max(1, int(round(int(size_px) / d)))


def state_fields(images, thresholds, factor=1):
    """Local-state (microstructure) functions of the crops, block-averaged.

    ``m[n, k, y, x]`` is the fraction of the pixels of coarse cell ``(y, x)``
    of crop ``n`` that fall in grey class ``k`` (the indicator "primitive
    basis" of the materials knowledge systems, Fast et al. 2011, averaged
    over ``factor x factor`` blocks); ``w[n, y, x]`` the fraction of finite
    pixels (1 without NaN). At ``factor = 1`` the fields are the 0/1
    indicators.

    Parameters
    ----------
    images : array-like, shape (N, S, S)
    thresholds : array-like, shape (L - 1,)
    factor : int
        Block size (:func:`block_factor`).

    Returns
    -------
    m : numpy.ndarray, shape (N, L, S', S'), float64, with S' = S // factor
    w : numpy.ndarray, shape (N, S', S'), float64
    """
    a = _as_crops(images)
    lab = segment(a, thresholds)
    n_cls = np.asarray(thresholds).size + 1
    f = int(factor)
    m = np.stack([block_mean_stack((lab == k).astype(np.float64), f) for k in range(n_cls)], axis=1)
    w = block_mean_stack((lab >= 0).astype(np.float64), f)
    return m, w


def central_window(images, size_px):
    """Central ``size_px x size_px`` window of each crop (around pixel ``S // 2``).

    Parameters
    ----------
    images : array-like, shape (N, S, S)
    size_px : int or None
        Window edge; ``None`` or ``>= S`` returns the crops unchanged.

    Returns
    -------
    numpy.ndarray, shape (N, w, w)
    """
    a = _as_crops(images)
    s = a.shape[1]
    if size_px is None or int(size_px) >= s:
        return a
    w = max(1, int(size_px))
    y0 = s // 2 - w // 2
    return a[:, y0:y0 + w, y0:y0 + w]
