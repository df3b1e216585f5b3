"""Grey-level phase segmentation of a BSE micrograph.

:func:`segment_phases` labels each pixel with one of the cement-paste phases
(:data:`microprop.phases.PHASES`, darkest to brightest: pore, LD-C-S-H,
HD-C-S-H, CH, ACC) by a 1D Gaussian mixture of the grey levels and a median
filter. It is a contrast-only segmentation, good enough to simulate
indentation targets on a real micrograph (virtual indentation), not a phase
analysis.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy import ndimage

from ..errors import InputError
from ..phases import PHASES

log = logging.getLogger(__name__)

def segment_phases(image, n_phases=len(PHASES), seed=0, n_samples=50_000, smooth_px=1):
    """Grey-level Gaussian-mixture segmentation of a BSE micrograph.

    A 1D Gaussian mixture (``sklearn.mixture.GaussianMixture``, means
    started at evenly spaced quantiles) is fitted to a random subsample of
    grey values; components ordered by mean grey map to
    label ids 0.. (with 5 phases: pore, LD-C-S-H, HD-C-S-H, CH, ACC, darkest
    to brightest, following the BSE contrast of cement paste). Each pixel
    gets the most probable component; a median filter of size
    ``2 * smooth_px + 1`` then removes isolated pixels (labels are ordered by
    grey, so the median is meaningful).

    This is a crude, contrast-only segmentation (LD/HD C-S-H and CH overlap
    in grey level; on an image with two grey modes, hydrates and clinker,
    the mixture splits the modes and the ``CH`` class is partly bright
    clinker): good enough to simulate indentation targets, not a phase
    analysis.

    Parameters
    ----------
    image : numpy.ndarray, shape (H, W)
        Grey image (any real dtype).
    n_phases : int
        Number of mixture components (names are the phase names when 5).
    seed : int
        Random seed for the subsample and the mixture initialisation.
    n_samples : int
        Pixels used for the fit.
    smooth_px : int
        Median-filter half size (0: none).

    Returns
    -------
    labels : numpy.ndarray, shape (H, W), uint8
    info : pandas.DataFrame
        One row per label: ``label, phase, grey_mean, grey_std, weight``
        (mixture parameters) and ``area_fraction`` (after smoothing).

    Raises
    ------
    InputError
        If the image is not 2D or has fewer distinct grey values than phases.
    """
    from sklearn.mixture import GaussianMixture

    img = np.asarray(image)
    if img.ndim != 2:
        raise InputError(f"segment_phases: expected a 2D grey image, found shape {img.shape}")
    values, inverse = np.unique(img.ravel(), return_inverse=True)
    if values.size < n_phases:
        raise InputError(f"segment_phases: image has {values.size} grey levels, fewer than "
                         f"{n_phases} phases")
    rng = np.random.default_rng(seed)
    sample = img.ravel()[rng.choice(img.size, size=min(int(n_samples), img.size), replace=False)]
    sample = sample.astype(float).reshape(-1, 1)
    start = np.quantile(sample, (np.arange(n_phases) + 0.5) / n_phases).reshape(-1, 1)
    gmm = GaussianMixture(n_components=n_phases, random_state=seed, means_init=start)
    gmm.fit(sample)
    order = np.argsort(gmm.means_.ravel())
    rank = np.empty(n_phases, int)
    rank[order] = np.arange(n_phases)
    lut = rank[gmm.predict(values.astype(float).reshape(-1, 1))].astype(np.uint8)
    labels = lut[inverse].reshape(img.shape)
    if smooth_px > 0:
        labels = ndimage.median_filter(labels, size=2 * int(smooth_px) + 1, mode="nearest")
    names = list(PHASES) if n_phases == len(PHASES) else [f"class_{k}" for k in range(n_phases)]
    area = np.bincount(labels.ravel(), minlength=n_phases) / labels.size
    info = pd.DataFrame({
        "label": np.arange(n_phases), "phase": names,
        "grey_mean": gmm.means_.ravel()[order],
        "grey_std": np.sqrt(gmm.covariances_.reshape(n_phases, -1)[:, 0])[order],
        "weight": gmm.weights_[order], "area_fraction": area,
    })
    log.info("segmented %s image into %d phases: %s", img.shape, n_phases,
             ", ".join(f"{p} {a:.3f}" for p, a in zip(names, area)))
    return labels, info


def segment_eta(eta_map, phase_eta, smooth_px=1, phases=PHASES, blur_sigma_px=0.5):
    """Phases of a calibrated backscatter-coefficient map, by their Monte Carlo eta.

    The map is blurred with a Gaussian of ``blur_sigma_px`` (the detector's
    shot noise and the 8-bit quantisation, not the microstructure, decide
    single pixels), each pixel gets the phase whose Monte Carlo backscatter
    coefficient is nearest to its eta (thresholds halfway between
    neighbouring phases in eta order), then a median filter of size ``2 * smooth_px + 1``
    removes isolated pixels. Because the thresholds are physical values, not
    fitted to the image's histogram, the labels do not depend on the
    detector's gain and offset once the map is calibrated, and two images of
    the same paste get comparable phase fractions.

    Parameters
    ----------
    eta_map : array-like, shape (H, W), float
        Calibrated eta (``MulF`` of :mod:`calibrate` in ``eta`` mode).
    phase_eta : dict
        Phase name -> Monte Carlo eta (``results/backscatter/phase_eta.csv``);
        every name in ``phases`` is needed.
    smooth_px : int
        Median-filter half size (0: none).
    phases : sequence of str
        Phase names in label-id order (default :data:`microprop.phases.PHASES`).
    blur_sigma_px : float
        Standard deviation of the Gaussian blur before classification, px
        (0: none).

    Returns
    -------
    labels : numpy.ndarray, shape (H, W), uint8
        Label ids in the order of ``phases``; non-finite pixels get the phase
        of lowest eta.
    info : pandas.DataFrame
        One row per label: ``label, phase, eta`` (Monte Carlo), ``eta_lo,
        eta_hi`` (the band it was given) and ``area_fraction``.

    Raises
    ------
    InputError
        If the map is not 2D or a phase has no eta.
    """
    eta = np.asarray(eta_map, dtype=np.float32)
    if eta.ndim != 2:
        raise InputError(f"segment_eta: expected a 2D eta map, found shape {eta.shape}")
    missing = [p for p in phases if p not in phase_eta]
    if missing:
        raise InputError(f"segment_eta: no Monte Carlo eta for {missing}; phase_eta has {sorted(phase_eta)}")
    ref = np.array([float(phase_eta[p]) for p in phases])
    order = np.argsort(ref, kind="stable")
    cuts = 0.5 * (ref[order][1:] + ref[order][:-1])
    eta = np.nan_to_num(eta, nan=-np.inf)
    if blur_sigma_px and blur_sigma_px > 0:
        finite = np.isfinite(eta)
        eta = np.where(finite, ndimage.gaussian_filter(np.where(finite, eta, 0.0), float(blur_sigma_px),
                                                       mode="nearest"), -np.inf)
    band = np.digitize(eta, cuts)
    labels = order[band].astype(np.uint8)
    if smooth_px > 0:
        # median in eta order, so that it never invents a phase between two others
        rank = np.empty(len(phases), np.uint8)
        rank[order] = np.arange(len(phases))
        smoothed = ndimage.median_filter(rank[labels], size=2 * int(smooth_px) + 1, mode="nearest")
        labels = order[smoothed].astype(np.uint8)
    area = np.bincount(labels.ravel(), minlength=len(phases)) / labels.size
    lo = np.r_[-np.inf, cuts][np.argsort(order)]
    hi = np.r_[cuts, np.inf][np.argsort(order)]
    info = pd.DataFrame({"label": np.arange(len(phases)), "phase": list(phases), "eta": ref,
                         "eta_lo": lo, "eta_hi": hi, "area_fraction": area})
    log.info("segmented a %s eta map into %d phases: %s", eta.shape, len(phases),
             ", ".join(f"{p} {a:.3f}" for p, a in zip(phases, area)))
    return labels, info
