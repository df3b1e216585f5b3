"""From relevance maps to regions: porosity regions, boundary features, characteristic regions.

The graphene-oxide cement study (``../shared/references/dtd_nanoporosity_go_cement.txt``,
section 3 and Fig. 5) reads a relevance map against its porosity map:

* low- and high-porosity regions, split at the isodata threshold of the map
  (Ridler and Calvard 1978, ``skimage.filters.threshold_isodata``);
* boundary features, the pixels where the magnitude of the relevance
  gradient passes a threshold;
* the characteristic region of a map, the fewest pixels that carry a given
  share (70 % in the reference) of its total positive relevance; its area
  fraction per map and per class is one of the study's figures (3.6-5.4 %
  in the reference).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError

#: share of the total positive relevance the characteristic region carries (the reference: 70 %)
CHARACTERISTIC_SHARE = 0.70


def characteristic_region(relevance, share=CHARACTERISTIC_SHARE):
    """The fewest pixels carrying ``share`` of a map's total positive relevance.

    Parameters
    ----------
    relevance : array-like, shape (H, W)
        Relevance per pixel (negative values carry no share).
    share : float
        In (0, 1].

    Returns
    -------
    mask : numpy.ndarray, shape (H, W), bool
        The pixels of highest relevance, in decreasing order, until their sum
        reaches ``share`` of the positive total (ties at the last value are
        broken by position). All False when no pixel is positive.
    area_fraction : float
        ``mask.mean()``.

    Raises
    ------
    InputError
        A share outside (0, 1] or a non-finite relevance.
    """
    r = np.asarray(relevance, np.float64)
    if not 0 < float(share) <= 1:
        raise InputError(f"characteristic_region: share {share} outside (0, 1]")
    if not np.isfinite(r).all():
        raise InputError("characteristic_region: the relevance map holds non-finite values")
    pos = np.clip(r.ravel(), 0, None)
    total = pos.sum()
    mask = np.zeros(r.size, bool)
    if total > 0:
        order = np.argsort(-pos, kind="stable")
        cum = np.cumsum(pos[order])
        k = int(np.searchsorted(cum, float(share) * total * (1 - 1e-12))) + 1
        mask[order[:k]] = True
    mask = mask.reshape(r.shape)
    return mask, float(mask.mean())


def porosity_regions(porosity_map):
    """High-porosity pixels of a map, split at its isodata threshold.

    Parameters
    ----------
    porosity_map : array-like, shape (H, W)
        Equivalent porosity.

    Returns
    -------
    high : numpy.ndarray, shape (H, W), bool
        Pixels above the threshold (the rest is the low-porosity region).
    threshold : float
        The isodata threshold (equivalent porosity).
    """
    from skimage.filters import threshold_isodata

    n = np.asarray(porosity_map, np.float64)
    if np.ptp(n) == 0:
        return np.zeros(n.shape, bool), float(n.flat[0])
    t = float(threshold_isodata(n))
    return n > t, t


def boundary_features(relevance, threshold=None, quantile=None):
    """Pixels where the relevance changes fast: ``|grad R| > threshold``.

    Parameters
    ----------
    relevance : array-like, shape (H, W)
    threshold : float, optional
        In relevance per pixel (the reference: 1.5e-5 for its relevance scale).
    quantile : float, optional
        Instead of ``threshold``: that quantile of the map's own gradient
        magnitudes (relevance scales differ between networks).

    Returns
    -------
    numpy.ndarray, shape (H, W), bool

    Raises
    ------
    InputError
        Neither or both of ``threshold`` and ``quantile``.
    """
    if (threshold is None) == (quantile is None):
        raise InputError("boundary_features: give either threshold or quantile")
    gy, gx = np.gradient(np.asarray(relevance, np.float64))
    grad = np.hypot(gy, gx)
    t = float(threshold) if threshold is not None else float(np.quantile(grad, float(quantile)))
    return grad > t
