"""A ladder of baselines for crop -> (E, H): table, linear, 2-point + PCA + ridge, boosting.

Every rung predicts the indentation modulus ``E_GPa`` and the hardness
``H_GPa`` of an indent from its calibrated crop (``/images`` of the dataset,
backscatter coefficient eta or porosity), is fitted on the dataset's
``train`` + ``val`` indices (no rung uses early stopping, so the validation
crops are simply more training data; hyper-parameters are chosen by
cross-validation inside the fit set) and is scored on ``test`` -- on both the
``random`` and the spatially ``blocked`` split, the splits the ResNet is judged
on. Metrics: MSE (GPa^2), MAE (GPa), R^2 (:func:`microprop.stats.metrics`).

Rungs
-----
``table``
    The seed's table model (:func:`microprop.stats.table_model_fit`): the
    crop mean, 20 equal-count bins, the mean target of the bin.
``linear``
    Ordinary least squares on the crop mean (scikit-learn).
``two_point``
    Materials-knowledge-systems style structure-property model (Fast,
    Niezgoda & Kalidindi 2011, Acta Mater. 59, 699; Kalidindi, Niezgoda &
    Salem 2011, JOM 63, 34): each crop is segmented into ``n_classes`` grey
    classes by multi-level Otsu thresholds fitted on the fit-set crops
    (:func:`fit_thresholds`), the one-hot local-state fields of the central
    ``window_um`` square are block-averaged (:func:`state_fields`), their
    non-periodic two-point auto- and cross-correlations are computed by FFT
    up to a shift of ``max_shift_um`` (:func:`two_point`), flattened, reduced
    by PCA and regressed by ridge regression (:func:`fit_pca_ridge`).
``boosting``
    scikit-learn ``HistGradientBoostingRegressor`` (seeded, fixed number of
    iterations) on hand-made features (:func:`crop_features`,
    :func:`class_fractions`): crop mean/std, grey quantiles 5/25/50/75/95 %
    of the whole crop and of a central disc of radius ``disc_radius_um``
    around the indent, and the grey-class fractions of both.

Why not the ``pymks`` package: its latest release (0.4.1, 2021) requires
``dask``, ``toolz``, ``Deprecated`` and even ``pytest``/``pytest-cov``/``nbval``
at run time, none of which this project uses, and still calls ``np.complex``
(removed in numpy 1.24) in its localization code; the correlations themselves
are a few lines of ``scipy.fft`` (:func:`two_point`).

The dataset is read in chunks of crops (:func:`ladder` makes two passes over
``/images``), so memory stays bounded by the chunk and the small per-crop
feature arrays.
"""
from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.fft
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression, RidgeCV
from threadpoolctl import threadpool_limits

from . import io as mio
from .errors import InputError
from .stats import metrics, table_model_fit, table_model_predict
from .workflow import progress

log = logging.getLogger(__name__)

#: Rung names, in ladder order.
MODELS = ("table", "linear", "two_point", "boosting")
TARGETS = ("E_GPa", "H_GPa")
SCHEMES = ("random", "blocked")
#: Grey-level quantiles (percent) of the hand-made features.
QUANTILES = (5, 25, 50, 75, 95)
#: Candidate numbers of PCA components of the two-point rung.
N_COMPONENTS = (1, 2, 3, 5, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
#: Candidate ridge penalties (on PCA scores of the correlations).
ALPHAS = tuple(np.logspace(-8, 2, 21))


# --------------------------------------------------------------------------
# Segmentation and features
# --------------------------------------------------------------------------
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

    That is where :func:`microprop.dataset.crop_indents` puts the indent.

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


def _block_mean(a, factor):
    # a (N, S, S) -> (N, S // f, S // f); the S % f leftover pixels are dropped
    # evenly from both sides so that the crop centre stays central.
    if factor == 1:
        return a
    n, s, _ = a.shape
    m = s // factor
    lead = (s - m * factor) // 2
    a = a[:, lead:lead + m * factor, lead:lead + m * factor]
    return a.reshape(n, m, factor, m, factor).mean(axis=(2, 4))


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
    m = np.stack([_block_mean((lab == k).astype(np.float64), f) for k in range(n_cls)], axis=1)
    w = _block_mean((lab >= 0).astype(np.float64), f)
    return m, w


# --------------------------------------------------------------------------
# Two-point statistics
# --------------------------------------------------------------------------
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
    if mask is None:
        mask = np.ones((n, h, w), np.float64)
    mask = np.asarray(mask, dtype=np.float64)
    if mask.shape != (n, h, w):
        raise InputError(f"two_point: mask shape {mask.shape}; expected {(n, h, w)}")
    pairs = correlation_pairs(n_states) if pairs is None else [tuple(p) for p in pairs]
    for i, j in pairs:
        if not (0 <= i < n_states and 0 <= j < n_states):
            raise InputError(f"two_point: pair {(i, j)} outside the {n_states} states")
    rmax = (min(h, w) - 1) // 2 if periodic else min(h, w) - 1
    r = rmax if max_shift is None else int(max_shift)
    if r < 0:
        raise InputError(f"two_point: max_shift must be >= 0, got {max_shift}")
    r = min(r, rmax)
    if periodic:
        shape = (h, w)
    else:
        shape = (scipy.fft.next_fast_len(h + r, real=True), scipy.fft.next_fast_len(w + r, real=True))
    iy = np.arange(-r, r + 1) % shape[0]
    ix = np.arange(-r, r + 1) % shape[1]
    used = sorted({k for p in pairs for k in p})
    if batch is None:
        per_crop = (len(used) + 1) * shape[0] * (shape[1] // 2 + 1) * 16
        batch = max(1, int(64e6 // per_crop))
    out = np.empty((n, len(pairs), 2 * r + 1, 2 * r + 1), np.float64)
    for b0 in range(0, n, batch):
        b1 = min(n, b0 + batch)
        spec = {k: scipy.fft.rfft2(m[b0:b1, k], s=shape) for k in used}
        wf = scipy.fft.rfft2(mask[b0:b1], s=shape)
        norm = scipy.fft.irfft2(np.conj(wf) * wf, s=shape)[:, iy][:, :, ix]
        # pair counts (weighted by the valid fraction of coarse cells): a real pair adds
        # >= 1/f^4 (block factor f); shifts without pairs come out as FFT round-off
        norm = np.where(norm > 1e-6, norm, np.nan)
        for p, (i, j) in enumerate(pairs):
            c = scipy.fft.irfft2(np.conj(spec[i]) * spec[j], s=shape)[:, iy][:, :, ix]
            out[b0:b1, p] = c / norm
    return out


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


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------
def fit_pca_ridge(X, y, n_components=N_COMPONENTS, alphas=ALPHAS, seed=0, n_threads=1):
    """PCA of the features, then ridge regression on the leading scores.

    PCA (scikit-learn, full SVD, fitted once on the fit set, which is
    unsupervised) gives the scores; for each candidate number ``k`` of
    components a :class:`~sklearn.linear_model.RidgeCV` picks the penalty by
    efficient leave-one-out cross-validation, and the ``k`` of lowest
    leave-one-out MSE is kept (the PCA + linear-regression protocol of Fast
    et al. 2011 / PyMKS, with the number of components chosen by CV).

    Parameters
    ----------
    X : numpy.ndarray, shape (N, F)
    y : numpy.ndarray, shape (N,)
    n_components : sequence of int
        Candidates; values above ``min(N - 1, F)`` are dropped.
    alphas : sequence of float
        Ridge penalties.
    seed : int
        PCA random state (only used by randomized solvers; kept for symmetry).
    n_threads : int
        BLAS threads (threadpoolctl; 1 is fastest for these small problems
        on a shared machine).

    Returns
    -------
    dict
        ``pca`` (fitted PCA with the largest candidate), ``ridge`` (RidgeCV on
        the first ``k`` scores), ``k``, ``alpha``, ``loo_mse``,
        ``explained_variance`` (fraction explained by ``k`` components).

    Raises
    ------
    InputError
        If fewer than 3 samples are given.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    if X.shape[0] < 3 or X.shape[0] != y.size:
        raise InputError(f"fit_pca_ridge: need >= 3 samples and matching X {X.shape} / y {y.shape}")
    with threadpool_limits(limits=max(1, int(n_threads))):
        return _fit_pca_ridge(X, y, n_components, alphas, seed)


def _fit_pca_ridge(X, y, n_components, alphas, seed):
    kmax = min(X.shape[0] - 1, X.shape[1])
    cands = sorted({min(int(k), kmax) for k in n_components if int(k) >= 1})
    pca = PCA(n_components=max(cands), svd_solver="full", random_state=int(seed)).fit(X)
    Z = pca.transform(X)
    best = None
    for k in cands:
        rcv = RidgeCV(alphas=list(alphas), scoring=None, store_cv_results=True).fit(Z[:, :k], y)
        ai = list(rcv.alphas).index(rcv.alpha_)
        loo = float(np.mean(rcv.cv_results_[:, ai]))
        if best is None or loo < best["loo_mse"] - 1e-12 * max(loo, 1.0):
            best = {"k": k, "ridge": rcv, "alpha": float(rcv.alpha_), "loo_mse": loo}
    best["pca"] = pca
    best["explained_variance"] = float(pca.explained_variance_ratio_[:best["k"]].sum())
    return best


def predict_pca_ridge(model, X):
    """Predict with :func:`fit_pca_ridge`'s model. Returns shape (N,)."""
    Z = model["pca"].transform(np.asarray(X, dtype=np.float64))[:, :model["k"]]
    return model["ridge"].predict(Z)


def fit_boosting(X, y, seed=0, n_threads=1):
    """Seeded gradient-boosted trees (scikit-learn ``HistGradientBoostingRegressor``).

    Least-squares loss, 300 iterations at learning rate 0.05, leaves of at
    least 10 samples, L2 penalty 1; no early stopping (so the whole fit set
    trains and the result depends only on ``seed``). NaN features are handled
    natively by the trees.

    Parameters
    ----------
    X : numpy.ndarray, shape (N, F)
    y : numpy.ndarray, shape (N,)
    seed : int
    n_threads : int
        OpenMP threads (threadpoolctl). For hundreds of samples one thread is
        fastest; on a busy 2-core machine two threads were ~60x slower.

    Returns
    -------
    sklearn.ensemble.HistGradientBoostingRegressor
    """
    with threadpool_limits(limits=max(1, int(n_threads))):
        return HistGradientBoostingRegressor(
            max_iter=300, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=10,
            l2_regularization=1.0, early_stopping=False, random_state=int(seed),
        ).fit(np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64).ravel())


# --------------------------------------------------------------------------
# Dataset reading
# --------------------------------------------------------------------------
def _attr(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


def read_split(h5, scheme, path="dataset"):
    """Fit (train + val) and test indices of split ``scheme`` of an open dataset.

    Returns
    -------
    fit, test : numpy.ndarray of int64 (sorted)

    Raises
    ------
    InputError
        If ``/splits/<scheme>/{train,val,test}`` is missing, an index is out of
        range, or fit and test overlap.
    """
    n = h5["images"].shape[0]
    parts = {}
    for s in ("train", "val", "test"):
        key = f"splits/{scheme}/{s}"
        if key not in h5:
            raise InputError(f"{path}: lacks /{key} (split scheme {scheme!r})")
        ix = np.asarray(h5[key], dtype=np.int64).ravel()
        if ix.size and (ix.min() < 0 or ix.max() >= n):
            raise InputError(f"{path}: /{key} has indices outside 0..{n - 1}")
        parts[s] = ix
    fit = np.unique(np.concatenate([parts["train"], parts["val"]]))
    test = np.unique(parts["test"])
    if np.intersect1d(fit, test).size:
        raise InputError(f"{path}: /splits/{scheme}: test indices also in train/val")
    if fit.size < 3 or test.size < 2:
        raise InputError(f"{path}: /splits/{scheme}: {fit.size} train+val and {test.size} test "
                         "crops; at least 3 and 2 are needed")
    return fit, test


def _chunks(n, chunk):
    return [(i, min(n, i + chunk)) for i in range(0, n, chunk)]


def ladder(dataset_path, targets=TARGETS, splits=SCHEMES, seed=0, downsample=None,
           n_classes=4, disc_radius_um=1.0, max_shift_um=1.5, periodic=False, n_bins=20,
           chunk=64, pixel_stride=5, models=MODELS, n_threads=1, window_um=5.0):
    """Fit and score the baseline ladder on a dataset's splits.

    Two passes over ``/images`` in chunks of ``chunk`` crops: the first
    computes the threshold-free features (:func:`crop_features`) and keeps a
    strided pixel subsample (every ``pixel_stride``-th row and column) from
    which the class thresholds are fitted per split on its train + val crops
    (:func:`fit_thresholds`); the second computes class fractions and the
    two-point correlations with those thresholds.

    Parameters
    ----------
    dataset_path : path-like
        ``results/{specimen}/dataset.h5`` (``docs/ARCHITECTURE.md``).
    targets : sequence of str
        Among ``E_GPa``, ``H_GPa``.
    splits : sequence of str
        Split schemes under ``/splits`` (``random``, ``blocked``).
    seed : int
        Random state of the boosted trees and the PCA.
    downsample : int, optional
        Approximate crop edge (px) for the two-point statistics: crops are
        block-mean downsampled by ``round(S / downsample)`` (e.g. factor 4,
        250 -> 62 px for 64; the factor is set by the whole crop edge ``S``
        also when a ``window_um`` is used) to keep the FFTs and the feature
        matrix small; ``None``: full resolution (the features then grow as
        ``L (L + 1) / 2 (2 r + 1)^2`` per crop: mind the memory). The other
        rungs always use full resolution.
    n_classes : int
        Grey classes (local states) of the two-point and boosting rungs.
    disc_radius_um : float
        Radius of the central disc (indent neighbourhood), um.
    max_shift_um : float
        Largest correlation shift kept, um (converted with the effective
        pixel size ``pixel_size_nm * factor``).
    window_um : float, optional
        The two-point statistics are computed on the central ``window_um``
        square of each crop (default 5 um, i.e. +-2.5 um around the indent);
        ``None``: the whole crop. Two-point statistics are translation
        invariant, so on the whole 10 um crop they cannot tell the indent's
        neighbourhood from the crop's edge; on the demo the 5 um window
        raised the test R^2 of E from 0.58 to 0.70 (random split).
    periodic : bool
        Periodic instead of non-periodic (default) correlations.
    n_bins : int
        Equal-count bins of the table model.
    chunk : int
        Crops read per HDF5 chunk.
    pixel_stride : int
        Stride of the threshold-fitting pixel subsample.
    models : sequence of str
        Subset of :data:`MODELS`.
    n_threads : int
        BLAS/OpenMP threads of the whole computation (threadpoolctl). The
        fits are small (hundreds of crops): on a shared machine one thread is
        much faster than OpenMP threads waiting for a busy core.

    Returns
    -------
    pandas.DataFrame
        One row per (split, target, model): ``model, target, split, MSE,
        MAE, R2, n_train, n_test, fit_s, fit_on, notes`` (MSE GPa^2, MAE
        GPa; ``n_train`` counts train + val; ``fit_s`` the wall time of
        fitting, features excluded; ``notes`` the chosen hyper-parameters).
        ``attrs`` holds ``thresholds`` per split, ``factor``,
        ``max_shift_px``, ``window_px``, ``disc_radius_px`` and ``feature_s`` (wall time of
        the two reading passes).

    Raises
    ------
    InputError
        If the file is missing or unreadable, lacks ``/images``, a target or
        a split, or a name is unknown.
    """
    with threadpool_limits(limits=max(1, int(n_threads))):
        return _ladder(Path(dataset_path), list(targets), list(splits), seed, downsample,
                       n_classes, disc_radius_um, max_shift_um, periodic, n_bins, chunk,
                       pixel_stride, list(models), window_um)


def _ladder(path, targets, splits, seed, downsample, n_classes, disc_radius_um, max_shift_um,
            periodic, n_bins, chunk, pixel_stride, models, window_um):
    for t in targets:
        if t not in TARGETS:
            raise InputError(f"{path}: unknown target {t!r}; expected one of {TARGETS}")
    for m in models:
        if m not in MODELS:
            raise InputError(f"{path}: unknown model {m!r}; expected one of {MODELS}")
    h5 = mio.open_hdf5(path, "dataset")
    t0 = time.perf_counter()
    with h5:
        if "images" not in h5 or h5["images"].ndim != 3:
            raise InputError(f"{path}: lacks /images of shape (N, S, S)")
        images = h5["images"]
        n, s = images.shape[0], images.shape[1]
        if images.shape[2] != s:
            raise InputError(f"{path}: /images crops are {images.shape[1:]}; expected square")
        ys = {}
        for t in targets:
            if f"targets/{t}" not in h5:
                raise InputError(f"{path}: lacks /targets/{t}")
            ys[t] = np.asarray(h5[f"targets/{t}"], dtype=np.float64).ravel()
            if ys[t].size != n:
                raise InputError(f"{path}: /targets/{t} has {ys[t].size} values; expected {n}")
        idx = {sc: read_split(h5, sc, path) for sc in splits}
        pixel_nm = float(_attr(h5.attrs.get("pixel_size_nm", np.nan)))
        if not (np.isfinite(pixel_nm) and pixel_nm > 0):
            raise InputError(f"{path}: file attr pixel_size_nm missing or not positive")
        disc_px = float(disc_radius_um) * 1000.0 / pixel_nm
        disc = disc_mask(s, disc_px)
        win = None if window_um is None else int(round(float(window_um) * 1000.0 / pixel_nm))
        factor = block_factor(s, downsample)
        max_shift_px = max(0, int(round(float(max_shift_um) * 1000.0 / (pixel_nm * factor))))

        # pass 1: threshold-free features + pixel subsample
        base, sub = [], []
        stride = max(1, int(pixel_stride))
        for i0, i1 in progress(_chunks(n, chunk), desc="ladder features", unit="chunk"):
            a = np.asarray(images[i0:i1], dtype=np.float64)
            f, base_names = crop_features(a, disc)
            base.append(f)
            sub.append(a[:, ::stride, ::stride].reshape(i1 - i0, -1).astype(np.float32))
        base = np.concatenate(base)
        sub = np.concatenate(sub)
        means = crop_means_from(base, base_names)
        thr = {sc: fit_thresholds(sub[idx[sc][0]], n_classes, what=f"{path} {sc} train+val")
               for sc in splits}
        del sub
        for sc in splits:
            log.info("%s split: class thresholds %s", sc, np.round(thr[sc], 5).tolist())

        # pass 2: class fractions and two-point correlations per split's thresholds
        frac = {sc: [] for sc in splits}
        corr = {sc: [] for sc in splits}
        need_2pt = "two_point" in models
        need_frac = "boosting" in models
        if need_2pt or need_frac:
            for i0, i1 in progress(_chunks(n, chunk), desc="ladder 2-point", unit="chunk"):
                a = np.asarray(images[i0:i1], dtype=np.float64)
                for sc in splits:
                    if need_frac:
                        frac[sc].append(np.hstack([class_fractions(a, thr[sc]),
                                                   class_fractions(a, thr[sc], disc)]))
                    if need_2pt:
                        corr[sc].append(two_point_features(central_window(a, win), thr[sc],
                                                           factor, max_shift_px,
                                                           periodic))
    feature_s = time.perf_counter() - t0
    log.info("%s: %d crops of %d px; features in %.1f s (2-point: factor %d, shift <= %d px)",
             path, n, s, feature_s, factor, max_shift_px)

    rows = []
    for sc in splits:
        fit, test = idx[sc]
        X2 = np.concatenate(corr[sc]) if corr[sc] else None
        Xb = np.hstack([base, np.concatenate(frac[sc])]) if frac[sc] else None
        for t in targets:
            y = ys[t]
            ok = np.isfinite(y) & np.isfinite(means)
            tr, te = fit[ok[fit]], test[ok[test]]
            for model in models:
                t1 = time.perf_counter()
                if model == "table":
                    tab = table_model_fit(means[tr], y[tr], n_bins=n_bins, binning="quantile",
                                          what=f"{path} {sc} table model")
                    fit_s = time.perf_counter() - t1
                    pred = table_model_predict(tab, means[te])
                    notes = f"{len(tab)} equal-count bins of the crop mean"
                elif model == "linear":
                    reg = LinearRegression().fit(means[tr, None], y[tr])
                    fit_s = time.perf_counter() - t1
                    pred = reg.predict(means[te, None])
                    notes = f"y = {reg.intercept_:.4g} + {reg.coef_[0]:.4g} * mean"
                elif model == "two_point":
                    mdl = fit_pca_ridge(X2[tr], y[tr], seed=seed)
                    fit_s = time.perf_counter() - t1
                    pred = predict_pca_ridge(mdl, X2[te])
                    notes = (f"{n_classes} classes, {X2.shape[1]} correlations, "
                             f"k={mdl['k']} PCs ({mdl['explained_variance']:.3f} var), "
                             f"alpha={mdl['alpha']:.2g}")
                else:
                    gb = fit_boosting(Xb[tr], y[tr], seed=seed)
                    fit_s = time.perf_counter() - t1
                    pred = gb.predict(Xb[te])
                    notes = f"{Xb.shape[1]} features, {gb.n_iter_} iterations"
                met = metrics(y[te], pred)
                rows.append({"model": model, "target": t, "split": sc, **met,
                             "n_train": int(tr.size), "n_test": int(te.size),
                             "fit_s": float(fit_s), "fit_on": "train+val", "notes": notes})
                log.info("%s split, %s, %s: R2 %.3f, MAE %.4g GPa (%s)", sc, t, model,
                         met["R2"], met["MAE"], notes)
    table = pd.DataFrame(rows, columns=["model", "target", "split", "MSE", "MAE", "R2", "n_train",
                                        "n_test", "fit_s", "fit_on", "notes"])
    table.attrs.update(thresholds={sc: thr[sc].tolist() for sc in splits}, factor=factor,
                       max_shift_px=max_shift_px, window_px=win, disc_radius_px=disc_px, feature_s=feature_s,
                       feature_names=base_names + [f"frac{k}" for k in range(n_classes)]
                       + [f"disc_frac{k}" for k in range(n_classes)])
    return table


def crop_means_from(features, names):
    """The ``mean`` column of :func:`crop_features` output (NaN-aware crop mean)."""
    return np.asarray(features[:, list(names).index("mean")], dtype=np.float64)


def r2_figure(table, title=None):
    """Grouped bars of test R^2 per rung, random vs blocked split, one panel per target.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`ladder`.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        12 x 5 in (``microprop.figures.FIGSIZE["double"]``).
    """
    from matplotlib.figure import Figure

    from .figures import FIGSIZE, quantity_label

    need = {"model", "target", "split", "R2"}
    if not need <= set(table.columns):
        raise InputError(f"ladder table lacks column(s) {sorted(need - set(table.columns))}")
    tgts = list(dict.fromkeys(table["target"]))
    schemes = list(dict.fromkeys(table["split"]))
    mods = [m for m in MODELS if m in set(table["model"])] + \
        [m for m in dict.fromkeys(table["model"]) if m not in MODELS]
    fig = Figure(figsize=FIGSIZE["double"])
    axes = fig.subplots(1, max(1, len(tgts)), squeeze=False)[0]
    width = 0.8 / max(1, len(schemes))
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    lo = min(0.0, float(np.nanmin(table["R2"])) - 0.05) if len(table) else 0.0
    for ax, t in zip(axes, tgts):
        sub = table[table["target"] == t]
        for k, sc in enumerate(schemes):
            vals = [sub.loc[(sub["model"] == m) & (sub["split"] == sc), "R2"].mean() for m in mods]
            x = np.arange(len(mods)) + (k - (len(schemes) - 1) / 2) * width
            bars = ax.bar(x, vals, width, label=f"{sc} split", color=colours[k % len(colours)])
            ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
        ax.set_xticks(np.arange(len(mods)), mods)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_ylim(max(lo, -1.0), 1.05)
        ax.set_ylabel("test R² (1 = perfect, 0 = predicting the mean)")
        ax.set_title(quantity_label(t))
        ax.legend(loc="upper left", fontsize=9)
    fig.suptitle(title or "Baseline ladder: test R² per model")
    fig.tight_layout()
    return fig
