"""Overview figures of an area: the BSE mosaic with the located indents, and the modulus map.

Positions follow the project convention: ``x`` right, ``y`` down, in um in
the before-mosaic frame (``x_um = x_px * pixel_size_nm / 1000``).
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ..errors import InputError
from ._common import DPI, FIGSIZE, _need, add_scale_bar, quantity_label, robust_limits


def mosaic_overview(mosaic, pixel_size_nm, located, quantity="E_GPa", title=None,
                    downsample_factor=1):
    """BSE overview of an area with the located indents coloured by a property.

    Parameters
    ----------
    mosaic : array-like, shape (H, W)
        The (downsampled) before mosaic, any numeric dtype.
    pixel_size_nm : float
        Pixel size of ``mosaic`` (after downsampling), nm.
    located : pandas.DataFrame
        ``x_um``, ``y_um`` (before-mosaic frame, pixel [0,0] at 0 um) and
        ``quantity``; an optional boolean ``detected`` column draws
        undetected (grid-model) positions as open markers.
    quantity : str
        Column that colours the markers (``E_GPa`` or ``H_GPa``).
    title : str, optional
    downsample_factor : int
        Block-mean factor by which ``mosaic`` was reduced from the full mosaic
        (:func:`microprop.io.downsample`); places the image so that its block
        edges fall on the full-resolution pixel edges (pixel [0, 0] of the
        full mosaic is centred at 0 um).

    Returns
    -------
    matplotlib.figure.Figure
        Size ``FIGSIZE["double"]`` at :data:`DPI`: (a) the BSE image alone,
        (b) the same faded, with the indents as dots a third of their
        spacing wide, coloured by ``quantity``.

    Raises
    ------
    InputError
        If the image is not 2D, the pixel size is not positive, or columns
        are missing.
    """
    img = np.asarray(mosaic, dtype=float)
    if img.ndim != 2:
        raise InputError(f"mosaic_overview: expected a 2D image, got shape {img.shape}")
    if not float(pixel_size_nm) > 0:
        raise InputError(f"mosaic_overview: pixel_size_nm must be > 0, got {pixel_size_nm}")
    _need(located, ["x_um", "y_um", quantity], "mosaic_overview located indents")
    ps_um = float(pixel_size_nm) / 1000.0
    h, w = img.shape
    edge = -0.5 * ps_um / max(int(downsample_factor), 1)  # left/top edge of full pixel 0
    extent = (edge, edge + w * ps_um, edge + h * ps_um, edge)
    fig = Figure(figsize=FIGSIZE["double"], dpi=DPI, layout="constrained")
    ax_bse, ax = fig.subplots(1, 2, sharex=True, sharey=True)
    glo, ghi = robust_limits(img, (0.5, 99.5))
    for a in (ax_bse, ax):
        a.imshow(img, cmap="gray", vmin=glo, vmax=ghi, extent=extent, interpolation="antialiased",
                 alpha=1.0 if a is ax_bse else 0.55)
        a.set_xlim(extent[0], extent[1])
        a.set_ylim(extent[2], extent[3])
        a.set_xlabel("x (um)")
    ax_bse.set_ylabel("y (um)")
    ax_bse.set_title(f"(a) {title or 'BSE overview'}: BSE before indentation", fontsize=9)
    add_scale_bar(ax_bse, w * ps_um)
    vmin, vmax = robust_limits(located[quantity])
    det = located["detected"].astype(bool).to_numpy() if "detected" in located else \
        np.ones(len(located), bool)
    nominal = not det.any()          # no after-image: positions from the stage alone
    x, y = located["x_um"].to_numpy(float), located["y_um"].to_numpy(float)
    sc = ax.scatter(x, y, c=located[quantity], cmap="viridis", vmin=vmin, vmax=vmax, s=4.0,
                    linewidths=0, label="nominal grid position" if nominal else "located indent")
    if (~det).any() and not nominal:
        ax.scatter(x[~det], y[~det], s=12.0, marker="o", facecolors="none", edgecolors="tab:red",
                   linewidths=0.5, label=f"grid-model position, mark not detected ({int((~det).sum())})")
    ax.legend(loc="upper right", fontsize=7, markerscale=2)
    ax.set_title(f"(b) {len(located)} indents coloured by {quantity.split('_')[0]}", fontsize=9)
    cb = fig.colorbar(sc, ax=[ax_bse, ax], shrink=0.85, extend="both", pad=0.02)
    cb.set_label(quantity_label(quantity))
    # markers a third of the indent spacing wide, so that the microstructure shows between them
    spacing = _grid_spacing(x, y)
    ax.apply_aspect()
    if np.isfinite(spacing) and spacing > 0:
        p0, p1 = ax.transData.transform([(0, 0), (spacing, 0)])
        side_pt = abs(p1[0] - p0[0]) * 72.0 / fig.dpi
        sc.set_sizes([float(np.clip(side_pt / 3.0, 0.8, 8.0)) ** 2])
    return fig


def _grid_spacing(x, y):
    """Median nearest-neighbour distance of points (um); NaN for < 2 points."""
    from scipy.spatial import cKDTree

    pts = np.column_stack([x, y])
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) < 2:
        return float("nan")
    d, _ = cKDTree(pts).query(pts, k=2)
    return float(np.median(d[:, 1]))


def modulus_map(located, quantity="E_GPa", title=None, spacing_um=None):
    """Property map on the indentation grid, one square per indent.

    Squares are as wide as the grid spacing (``spacing_um``, or the median
    nearest-neighbour distance of the indents), enlarged by 3 % so that the
    small scatter of located positions leaves no hairline gaps; the grey
    background shows only where there is no indent (between batches,
    rejected rows). Colours are limited to the 2nd-98th percentiles
    (colourbar extended both ways).

    Parameters
    ----------
    located : pandas.DataFrame
        ``x_um``, ``y_um`` and ``quantity``.
    quantity : str
        ``E_GPa`` or ``H_GPa``.
    title : str, optional
    spacing_um : float, optional
        The configured grid spacing (um); default estimated from the indents.

    Returns
    -------
    matplotlib.figure.Figure
        Size ``FIGSIZE["image"]`` at :data:`DPI`.

    Raises
    ------
    InputError
        If columns are missing or the table is empty.
    """
    _need(located, ["x_um", "y_um", quantity], "modulus_map located indents")
    if len(located) == 0:
        raise InputError("modulus_map: no indents to draw")
    x = located["x_um"].to_numpy(float)
    y = located["y_um"].to_numpy(float)
    v = located[quantity].to_numpy(float)
    configured = spacing_um is not None and float(spacing_um) > 0
    s = float(spacing_um) if configured else _grid_spacing(x, y)
    if not np.isfinite(s) or s <= 0:
        s = 1.0
    fig = Figure(figsize=FIGSIZE["image"], dpi=DPI)
    ax = fig.add_subplot()
    ax.set_aspect("equal")
    ax.set_xlim(np.nanmin(x) - s, np.nanmax(x) + s)
    ax.set_ylim(np.nanmax(y) + s, np.nanmin(y) - s)  # y down
    ax.set_xlabel("x (um)")
    ax.set_ylabel("y (um)")
    ax.set_facecolor("0.85")
    vmin, vmax = robust_limits(v)
    sc = ax.scatter(x, y, c=v, cmap="viridis", vmin=vmin, vmax=vmax, marker="s", linewidths=0)
    cb = fig.colorbar(sc, ax=ax, shrink=0.8, extend="both")
    cb.set_label(quantity_label(quantity))
    fig.tight_layout()
    # marker size (points^2) so that a square is `s` um wide at the final layout
    ax.apply_aspect()
    p0, p1 = ax.transData.transform([(0, 0), (1.03 * s, 0)])
    side_pt = abs(p1[0] - p0[0]) * 72.0 / fig.dpi
    sc.set_sizes([max(side_pt, 1.0) ** 2])
    ax.set_title(title or f"{quantity.split('_')[0]} on the indentation grid\n"
                 f"({len(located)} indents, spacing {s:.3g} um"
                 f"{'' if configured else ', estimated'})", fontsize=10)
    return fig
