"""Figures for the Snakemake report (matplotlib, Agg backend).

Each function takes arrays/tables and returns a :class:`matplotlib.figure.Figure`
of a fixed size (``FIGSIZE`` inches at ``DPI``), so that the saved PNG has a
known pixel size; :func:`save_png` writes one atomically. Every axis carries
its unit, colourbars are labelled, and images have a scale bar in um.
Positions follow the project convention: ``x`` right, ``y`` down, in um in
the before-mosaic frame (``x_um = x_px * pixel_size_nm / 1000``).
"""
from __future__ import annotations

import math

import numpy as np
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

from ..errors import InputError
from ..io import atomic_path

DPI = 100


FIGSIZE = {"image": (8.0, 7.0), "single": (7.0, 5.0), "double": (12.0, 5.0)}


_LABELS = {"E_GPa": "indentation modulus E (GPa)", "H_GPa": "hardness H (GPa)"}


def quantity_label(quantity):
    """Axis label with unit for a property column name (``E_GPa`` -> ``... (GPa)``)."""
    return _LABELS.get(quantity, quantity.replace("_", " "))


def save_png(fig, path, dpi=DPI):
    """Save ``fig`` as PNG at ``dpi`` atomically (no partial file on failure).

    The pixel size is ``figsize * dpi`` exactly (no tight bounding box).
    """
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)


def nice_length(span, target_fraction=0.2):
    """A 1-2-5 round length at most ``target_fraction * span`` (scale bars).

    Parameters
    ----------
    span : float
        Width of the image in um.

    Returns
    -------
    float
        e.g. ``nice_length(730) == 100.0``.
    """
    if not span > 0:
        return 1.0
    raw = span * target_fraction
    exp = math.floor(math.log10(raw))
    for m in (5, 2, 1):
        if m * 10 ** exp <= raw * (1 + 1e-9):
            return float(m * 10 ** exp)
    return float(10 ** exp)


def add_scale_bar(ax, width_um, color="white"):
    """Add a scale bar to an image axes whose data unit is um."""
    length = nice_length(width_um)
    label = f"{length:g} um"
    bar = AnchoredSizeBar(ax.transData, length, label, "lower right", pad=0.5,
                          color=color, frameon=False, size_vertical=width_um / 150,
                          fontproperties={"size": 11, "weight": "bold"})
    ax.add_artist(bar)
    return length


def robust_limits(values, percentiles=(2, 98)):
    """Colour limits at robust percentiles of the finite values.

    Returns
    -------
    (float, float)
        ``(vmin, vmax)``; widened by 1 if all values are equal; ``(0, 1)``
        if none is finite.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(v, percentiles)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return float(lo), float(hi)


def _need(df, cols, what):
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(f"{what}: table lacks column(s) {missing}; found {list(df.columns)}")
