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
