"""Grey-level normalisation of SEM images for differences in preparation and imaging.

The conductivity study (``../shared/references/cnn_conductivity_lto_ni_poster.txt``,
"Data & Processing", its Fig. 1) normalises its images so that polishing,
brightness and contrast settings do not reach the model. Here, per image:

1. optionally, contrast-limited adaptive histogram equalisation
   (``skimage.exposure.equalize_adapthist``), which evens out slow
   brightness changes across the field;
2. standardisation of the histogram: ``(x - mean) / sd`` of that image, so a
   gain or an offset of the detector leaves the result unchanged.

The bright-phase fraction of the baseline is taken on the raw image (its
automatic threshold does not need the normalisation).
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError

NORMALISATIONS = ("standardise", "none")


def normalise_images(images, method="standardise", clahe=False, clip_limit=0.01, kernel_px=None):
    """Normalise each image of a stack (see the module).

    Parameters
    ----------
    images : array-like, shape (N, H, W) or (H, W), uint8 or float
        Grey levels.
    method : {"standardise", "none"}
        ``standardise``: zero mean, unit standard deviation per image;
        ``none``: grey levels scaled to 0..1 only (uint8 / 255).
    clahe : bool
        Apply CLAHE first (on the image scaled to 0..1 by its own range).
    clip_limit : float
        CLAHE's clip limit (0..1).
    kernel_px : int, optional
        CLAHE's tile size, px (default: an eighth of the edge, skimage's).

    Returns
    -------
    numpy.ndarray, float32, the input's shape

    Raises
    ------
    InputError
        Not 2-D or 3-D, non-finite values, an unknown method, a constant
        image under ``standardise`` (its index is named).
    """
    x = np.asarray(images)
    single = x.ndim == 2
    if single:
        x = x[None]
    if x.ndim != 3:
        raise InputError(f"normalise_images: expected (N, H, W) or (H, W), got shape {x.shape}")
    if method not in NORMALISATIONS:
        raise InputError(f"normalise_images: method {method!r}; expected one of {NORMALISATIONS}")
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    x = x.astype(np.float64) / scale
    if not np.isfinite(x).all():
        raise InputError("normalise_images: non-finite grey levels")
    out = np.empty(x.shape, np.float32)
    for i, img in enumerate(x):
        if clahe:
            from skimage import exposure

            lo, hi = float(img.min()), float(img.max())
            img = exposure.equalize_adapthist((img - lo) / (hi - lo) if hi > lo else img * 0,
                                              kernel_size=kernel_px, clip_limit=float(clip_limit))
        if method == "standardise":
            sd = float(img.std())
            if not sd > 0:
                raise InputError(f"normalise_images: image {i} is constant; it cannot be standardised")
            img = (img - img.mean()) / sd
        out[i] = img
    return out[0] if single else out
