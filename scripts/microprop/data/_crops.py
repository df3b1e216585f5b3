"""Crops around located indents: the samples of the dataset.

:func:`crop_size_px` converts the crop edge from micrometres to pixels;
:func:`crop_indents` cuts one square crop of edge ``S`` around each located
indent of a calibrated map (``MulF``/``MicF``, before-mosaic frame), the
indent at crop pixel ``[S // 2, S // 2]``, and sets aside, each with its
reason (``SKIP_NO_POSITION``, ``SKIP_OUTSIDE``, ``SKIP_NO_TARGET``), the
indents without a finite position, whose crop leaves the mosaic, or without
a finite target. The crops of one batch go into one shard (``_shards``).
"""
from __future__ import annotations

import logging

import numpy as np

from ..errors import InputError
from ..progress import progress
from ._shards import TARGETS

log = logging.getLogger(__name__)

SKIP_OUTSIDE = "crop outside mosaic"


SKIP_NO_POSITION = "no position"


SKIP_NO_TARGET = "missing target"


def crop_size_px(crop_size_um, pixel_size_nm):
    """Crop edge in pixels, ``S = round(crop_size_um * 1000 / pixel_size_nm)``.

    Parameters
    ----------
    crop_size_um : float
        Crop edge in micrometres.
    pixel_size_nm : float
        Pixel size in nanometres.

    Returns
    -------
    int
        ``S >= 1`` (may be even or odd; see :func:`crop_indents`).

    Raises
    ------
    InputError
        If either value is not positive.
    """
    if not (crop_size_um and crop_size_um > 0 and pixel_size_nm and pixel_size_nm > 0):
        raise InputError(f"crop_size_um ({crop_size_um}) and pixel_size_nm ({pixel_size_nm}) "
                         "must be positive")
    return max(1, int(np.floor(crop_size_um * 1000.0 / pixel_size_nm + 0.5)))


def crop_indents(image, located, crop_size_px, pixel_size_nm=None, source="located"):
    """Cut square crops centred on located indents.

    The indent at ``(x_px, y_px)`` (rounded half-up to the nearest pixel
    ``(cx, cy)``) lands on crop pixel ``[S // 2, S // 2]``: the crop covers
    rows ``cy - S//2 .. cy - S//2 + S - 1`` and the same for columns. For odd
    ``S`` this is the exact centre; for even ``S`` the indent is the
    lower-right of the four central pixels.

    Indents are skipped, with a reason, when the crop leaves the mosaic
    (``"crop outside mosaic"``), when the position is not finite
    (``"no position"``), or when ``E_GPa`` or ``H_GPa`` is not finite
    (``"missing target"``).

    Parameters
    ----------
    image : zarr.Array or numpy.ndarray, shape (H, W)
        Calibrated map (``MulF``/``MicF``) in the before-mosaic frame.
    located : pandas.DataFrame
        Columns ``indent``, ``x_px``, ``y_px``, ``E_GPa``, ``H_GPa``;
        ``x_um``, ``y_um`` are used when present, else computed from
        ``pixel_size_nm`` (``x_um = x_px * pixel_size_nm / 1000``). Other
        columns are carried along.
    crop_size_px : int
        Crop edge ``S`` in pixels.
    pixel_size_nm : float, optional
        Needed only when ``located`` lacks ``x_um``/``y_um``.
    source : str
        Name of the located table, for error messages.

    Returns
    -------
    crops : numpy.ndarray, shape (N, S, S), float32
    kept : pandas.DataFrame
        The N kept rows (index reset), in input order, with ``x_um``/``y_um``.
    skipped : pandas.DataFrame
        The skipped rows with a ``reason`` column.

    Raises
    ------
    InputError
        If a required column is missing or ``crop_size_px < 1``.
    """
    s = int(crop_size_px)
    if s < 1:
        raise InputError(f"crop size must be >= 1 px, got {crop_size_px}")
    table = _located_table(located, pixel_size_nm, source)
    h, w = (int(v) for v in image.shape)
    reason, x0, y0 = _skip_reasons(table, (h, w), s)
    keep = reason == ""
    crops = _cut_crops(image, np.flatnonzero(keep), x0, y0, s)
    kept = table.loc[keep].reset_index(drop=True)
    skipped = table.loc[~keep].assign(reason=reason[~keep]).reset_index(drop=True)
    if len(skipped):
        log.warning("%s: %d of %d indents skipped (%s)", source, len(skipped), len(table),
                    skipped["reason"].value_counts().to_dict())
    return crops, kept, skipped


def _located_table(located, pixel_size_nm, source):
    """Copy of ``located`` (index reset) with ``x_um, y_um`` (from ``x_px, y_px`` when absent); checks columns."""
    missing = [c for c in ("indent", "x_px", "y_px", *TARGETS) if c not in located.columns]
    if missing:
        raise InputError(f"{source}: lacks column(s) {missing}; found {list(located.columns)}")
    table = located.reset_index(drop=True).copy()
    if "x_um" not in table.columns or "y_um" not in table.columns:
        if pixel_size_nm is None:
            raise InputError(f"{source}: lacks x_um/y_um and no pixel_size_nm was given")
        table["x_um"] = table["x_px"].astype(float) * float(pixel_size_nm) / 1000.0
        table["y_um"] = table["y_px"].astype(float) * float(pixel_size_nm) / 1000.0
    return table


def _skip_reasons(table, shape, s):
    """Skip reason of each indent (``""`` when kept) and the crops' top-left pixel ``x0, y0`` (int64).

    Reasons in order of precedence: no finite position, crop outside the
    ``(H, W)`` mosaic, missing target.
    """
    h, w = shape
    x = table["x_px"].to_numpy(dtype=np.float64)
    y = table["y_px"].to_numpy(dtype=np.float64)
    reason = np.full(len(table), "", dtype=object)
    finite = np.isfinite(x) & np.isfinite(y)
    reason[~finite] = SKIP_NO_POSITION
    cx = np.floor(np.where(finite, x, 0) + 0.5).astype(np.int64)
    cy = np.floor(np.where(finite, y, 0) + 0.5).astype(np.int64)
    x0, y0 = cx - s // 2, cy - s // 2
    outside = finite & ((x0 < 0) | (y0 < 0) | (x0 + s > w) | (y0 + s > h))
    reason[outside] = SKIP_OUTSIDE
    no_target = (reason == "") & ~(np.isfinite(table["E_GPa"].to_numpy(dtype=np.float64))
                                   & np.isfinite(table["H_GPa"].to_numpy(dtype=np.float64)))
    reason[no_target] = SKIP_NO_TARGET
    return reason, x0, y0


def _cut_crops(image, idx, x0, y0, s):
    """Crops ``(len(idx), s, s)`` float32 of ``image`` at top-left ``(x0[i], y0[i])`` for ``i`` in ``idx``."""
    crops = np.empty((idx.size, s, s), np.float32)
    for k, i in enumerate(progress(idx, desc="crop", unit="indent")):
        crops[k] = np.asarray(image[y0[i]:y0[i] + s, x0[i]:x0[i] + s], dtype=np.float32)
    return crops
