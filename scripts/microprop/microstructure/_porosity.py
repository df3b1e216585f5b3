"""Porosity descriptors of equivalent-porosity maps: the statistical baseline of the second study.

The graphene-oxide cement study (``../shared/references/dtd_nanoporosity_go_cement.txt``,
section 2.4) describes each local map by its porosity and its average pore
size. Definitions used here:

* **porosity** of a map: the mean of its equivalent porosity n (the volume
  fraction of intruded metal, MulF map), as in the reference;
* **average pore size**: the mean equivalent-circle diameter (nm) of the
  connected regions (8-connectivity, :func:`skimage.measure.label`) where
  ``n >= pore_threshold`` (default 0.5: pixels more metal than C-S-H) of at
  least ``min_pore_px`` pixels (default 4: smaller specks are detector noise
  at the resolution limit, not pores). The reference does not state its
  definition; this one is stated with every result.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError

#: Equivalent porosity at and above which a pixel counts as pore.
PORE_THRESHOLD = 0.5

#: Smallest pore counted by the average pore size, px.
MIN_PORE_PX = 4


def average_pore_size_nm(n_map, pixel_size_nm, pore_threshold=PORE_THRESHOLD, min_pore_px=MIN_PORE_PX):
    """Mean equivalent-circle diameter of the pores of one map, nm.

    Parameters
    ----------
    n_map : array-like, shape (H, W)
        Equivalent porosity in [0, 1].
    pixel_size_nm : float
    pore_threshold : float
        Pixels with ``n >= pore_threshold`` are pore.
    min_pore_px : int
        Regions smaller than this (px) are not counted.

    Returns
    -------
    float
        ``mean(2 sqrt(A_i / pi)) * pixel_size_nm`` over the connected pore
        regions ``i`` of area ``A_i >= min_pore_px`` px; NaN when there is none.
    """
    from skimage import measure

    n = np.asarray(n_map, float)
    if n.ndim != 2:
        raise InputError(f"average_pore_size_nm: expected a 2D map, got shape {n.shape}")
    lab = measure.label(n >= float(pore_threshold), connectivity=2)
    if lab.max() == 0:
        return float("nan")
    areas = np.bincount(lab.ravel())[1:]
    areas = areas[areas >= int(min_pore_px)]
    if not areas.size:
        return float("nan")
    return float(np.mean(2.0 * np.sqrt(areas / np.pi)) * float(pixel_size_nm))


def porosity_descriptors(maps, pixel_size_nm, pore_threshold=PORE_THRESHOLD, min_pore_px=MIN_PORE_PX):
    """Porosity and average pore size of each local map.

    Parameters
    ----------
    maps : array-like, shape (N, H, W)
        Equivalent-porosity maps (MulF).
    pixel_size_nm : float
        Pixel size of the maps, nm.
    pore_threshold : float
    min_pore_px : int
        See :func:`average_pore_size_nm`.

    Returns
    -------
    numpy.ndarray, shape (N, 2), float64
        Columns: porosity (-), average pore size (nm).

    Raises
    ------
    InputError
        If ``maps`` is not 3D.
    """
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise InputError(f"porosity_descriptors: expected maps of shape (N, H, W), got {maps.shape}")
    out = np.empty((len(maps), 2))
    for i, m in enumerate(maps):
        m = np.asarray(m, float)
        out[i] = (m.mean(), average_pore_size_nm(m, pixel_size_nm, pore_threshold, min_pore_px))
    return out
