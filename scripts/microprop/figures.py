"""Figures for the Snakemake report (matplotlib, Agg backend).

Each function takes arrays/tables and returns a :class:`matplotlib.figure.Figure`
of a fixed size (``FIGSIZE`` inches at ``DPI``), so that the saved PNG has a
known pixel size; :func:`save_png` writes one atomically. Every axis carries
its unit, colourbars are labelled, and images have a scale bar in um.
Positions follow the project convention: ``x`` right, ``y`` down, in um in
the before-mosaic frame (``x_um = x_px * pixel_size_nm / 1000``).
"""
from __future__ import annotations

import logging
import math

import numpy as np
from matplotlib.figure import Figure
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

from .errors import InputError
from .io import atomic_path
from .stats import component_curves, table_model_fit

log = logging.getLogger(__name__)

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
        Size ``FIGSIZE["image"]`` at :data:`DPI`.

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
    fig = Figure(figsize=FIGSIZE["image"], dpi=DPI)
    ax = fig.add_subplot()
    glo, ghi = robust_limits(img, (0.5, 99.5))
    ax.imshow(img, cmap="gray", vmin=glo, vmax=ghi, extent=extent, interpolation="antialiased")
    vmin, vmax = robust_limits(located[quantity])
    det = located["detected"].astype(bool).to_numpy() if "detected" in located else \
        np.ones(len(located), bool)
    nominal = not det.any()          # no after-image: positions from the stage alone
    marker_size = max(3.0, min(25.0, 1.5e4 / max(len(located), 1)))
    sc = ax.scatter(located["x_um"], located["y_um"], c=located[quantity],
                    cmap="viridis", vmin=vmin, vmax=vmax, s=marker_size, edgecolors="k",
                    linewidths=0.3,
                    label="nominal grid position" if nominal else "located indent")
    if (~det).any() and not nominal:
        ax.scatter(located["x_um"][~det], located["y_um"][~det], s=marker_size * 2.5,
                   marker="o", facecolors="none", edgecolors="tab:red", linewidths=0.6,
                   label="grid-model position (mark not detected)")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xlabel("x (um)")
    ax.set_ylabel("y (um)")
    add_scale_bar(ax, w * ps_um)
    cb = fig.colorbar(sc, ax=ax, shrink=0.8, extend="both")
    cb.set_label(quantity_label(quantity))
    ax.set_title(title or f"BSE overview with {len(located)} indents")
    fig.tight_layout()
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


def modulus_map(located, quantity="E_GPa", title=None):
    """Property map on the indentation grid, one square per indent.

    Squares are as wide as the median nearest-neighbour spacing of the
    indents, so a regular grid tiles the plane; colours are limited to the
    2nd-98th percentiles (colourbar extended both ways).

    Parameters
    ----------
    located : pandas.DataFrame
        ``x_um``, ``y_um`` and ``quantity``.
    quantity : str
        ``E_GPa`` or ``H_GPa``.
    title : str, optional

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
    s = _grid_spacing(x, y)
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
    p0, p1 = ax.transData.transform([(0, 0), (s, 0)])
    side_pt = abs(p1[0] - p0[0]) * 72.0 / fig.dpi
    sc.set_sizes([max(side_pt, 1.0) ** 2])
    ax.set_title(title or f"{quantity.split('_')[0]} on the indentation grid "
                 f"({len(located)} indents, spacing {s:.3g} um)")
    return fig


def draw_components(ax, grid, table, quantity="E_GPa", lw=1.8):
    """Draw each weighted Gaussian component and their sum on ``ax``.

    Labels give phase, fraction and mean +- std (two significant digits of
    the std set the decimals); axis labels carry the unit.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    grid : numpy.ndarray, shape (M,)
        Abscissae, in the unit of ``quantity``.
    table : pandas.DataFrame
        ``phase, fraction, mean, std`` (:func:`microprop.stats.deconvolve`).
    quantity : str
    lw : float
        Line width of the components (the mixture is drawn thinner, dashed).

    Returns
    -------
    numpy.ndarray, shape (k, M)
        The plotted component densities.
    """
    curves = component_curves(grid, table)
    unit = "GPa" if quantity.endswith("GPa") else ""
    for i, row in enumerate(table.itertuples()):
        dec = max(0, 1 - math.floor(math.log10(row.std))) if row.std > 0 else 2
        ax.plot(grid, curves[i], lw=lw, label=(
            f"{row.phase}: f={row.fraction:.2f}, {row.mean:.{dec}f} ± {row.std:.{dec}f} {unit}"))
    ax.plot(grid, curves.sum(axis=0), "k--", lw=lw * 0.82, label="mixture")
    ax.set_xlabel(quantity_label(quantity))
    ax.set_ylabel(f"probability density (1/{unit})" if unit else "probability density")
    return curves


def histogram_components(values, table, quantity="E_GPa", bins=None, title=None):
    """Density histogram with the fitted Gaussian components and their sum.

    Parameters
    ----------
    values : array-like, shape (N,)
        Measured property (GPa); non-finite values are ignored.
    table : pandas.DataFrame
        Output of :func:`microprop.stats.deconvolve` (``phase``,
        ``fraction``, ``mean``, ``std``).
    quantity : str
        ``E_GPa`` or ``H_GPa`` (axis label).
    bins : int, optional
        Number of equal-width bins; default ``N // 10`` clipped to 30..150
        (narrow C-S-H peaks beside the broad clinker peak need many).
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Size ``FIGSIZE["single"]`` at :data:`DPI`; component ``i``'s curve is
        ``fraction_i * N(x; mean_i, std_i)`` (see
        :func:`microprop.stats.component_curves`), the black curve their sum.
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise InputError(f"histogram_components: no finite {quantity} values")
    _need(table, ["phase", "fraction", "mean", "std"], "histogram_components GMM table")
    if bins is None:
        bins = int(np.clip(x.size // 10, 30, 150))
    fig = Figure(figsize=FIGSIZE["single"], dpi=DPI)
    ax = fig.add_subplot()
    ax.hist(x, bins=bins, density=True, color="0.75", edgecolor="0.6", label=f"measured (N={x.size})")
    lo = min(x.min(), (table["mean"] - 4 * table["std"]).min())
    hi = max(x.max(), (table["mean"] + 4 * table["std"]).max())
    draw_components(ax, np.linspace(lo, hi, 1000), table, quantity)
    ax.set_xlim(lo, hi)
    ax.legend(fontsize=8)
    ax.set_title(title or f"Gaussian mixture deconvolution of {quantity.split('_')[0]}")
    fig.tight_layout()
    return fig


def table_model_scatter(mean_grey, measured, predicted, metrics, quantity="E_GPa",
                        table=None, grey_label="mean crop grey (eta)", model="table model",
                        title=None):
    """Predicted against measured property, and the bin means against grey.

    Parameters
    ----------
    mean_grey, measured, predicted : array-like, shape (N,)
        Test samples: crop mean grey, measured and predicted property (GPa).
    metrics : dict
        ``R2``, ``MAE`` (and ``MSE``) of the predictions
        (:func:`microprop.stats.metrics`).
    quantity : str
    table : pandas.DataFrame, optional
        Bins of :func:`microprop.stats.table_model_fit` (``grey_lo``,
        ``grey_hi``, ``y_mean``) drawn as steps in the second panel; computed
        from the given samples (10 equal-count bins) if omitted.
    grey_label : str
        Axis label of the grey (with its unit or "(eta)"/"(porosity)").
    model : str
        Name in the legend.

    Returns
    -------
    matplotlib.figure.Figure
        Size ``FIGSIZE["double"]`` at :data:`DPI`.
    """
    g = np.asarray(mean_grey, dtype=float).ravel()
    m = np.asarray(measured, dtype=float).ravel()
    p = np.asarray(predicted, dtype=float).ravel()
    if not (g.shape == m.shape == p.shape):
        raise InputError("table_model_scatter: mean_grey, measured and predicted differ in length")
    fig = Figure(figsize=FIGSIZE["double"], dpi=DPI)
    ax1, ax2 = fig.subplots(1, 2)
    unit = "GPa" if quantity.endswith("GPa") else ""
    ax1.scatter(m, p, s=8, alpha=0.5, label=(
        f"{model}: R² = {metrics['R2']:.3f}, MAE = {metrics['MAE']:.3g} {unit}"))
    finite = np.concatenate([m[np.isfinite(m)], p[np.isfinite(p)]])
    lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    ax1.plot([lo, hi], [lo, hi], "k--", lw=1, label="1:1")
    sym = quantity.split("_")[0]
    ax1.set_xlabel(f"measured {sym} ({unit})")
    ax1.set_ylabel(f"predicted {sym} ({unit})")
    ax1.legend(fontsize=9, loc="upper left")
    ax1.set_title("test samples")
    if table is None:
        ok = np.isfinite(g) & np.isfinite(m)
        table = table_model_fit(g[ok], m[ok], n_bins=10)
    ax2.scatter(g, m, s=6, alpha=0.3, color="0.5", label="measured")
    edges = np.append(table["grey_lo"].to_numpy(float), table["grey_hi"].to_numpy(float)[-1])
    ax2.stairs(table["y_mean"].to_numpy(float), edges, baseline=None, color="tab:red", lw=2,
               label="bin mean (table model)")
    ax2.set_xlabel(grey_label)
    ax2.set_ylabel(quantity_label(quantity))
    ax2.legend(fontsize=9)
    ax2.set_title("table model bins")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def bic_plot(table, title=None):
    """BIC and AIC of Gaussian mixtures against the number of components.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`microprop.stats.bic_table` (``k``, ``bic``, ``aic``).

    Returns
    -------
    matplotlib.figure.Figure
        Size ``FIGSIZE["single"]`` at :data:`DPI`; the minimum BIC is marked.
    """
    _need(table, ["k", "bic", "aic"], "bic_plot table")
    fig = Figure(figsize=FIGSIZE["single"], dpi=DPI)
    ax = fig.add_subplot()
    ax.plot(table["k"], table["bic"], "o-", label="BIC")
    ax.plot(table["k"], table["aic"], "s--", label="AIC")
    best = table.loc[table["bic"].idxmin()]
    ax.plot([best["k"]], [best["bic"]], "r*", ms=16, label=f"minimum BIC: k = {int(best['k'])}")
    ax.set_xlabel("number of Gaussian components k (-)")
    ax.set_ylabel("information criterion (-)")
    ax.set_xticks(table["k"].astype(int))
    ax.legend()
    ax.set_title(title or "Model selection for the mixture")
    fig.tight_layout()
    return fig
