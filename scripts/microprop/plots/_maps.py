"""Figures of the mapped areas: the seed paper's Fig. 15 (BSE | ResNet map | table-model map) and Fig. 16-17 (histograms with mixture components).

Window convention (same as :func:`microprop.data.crop_indents`): a map value
at a window centre is what the model predicts for an indent located at that
pixel; :func:`grid_extent` places the map's pixels in um.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..errors import InputError
from ..learning import INDENTATION
from ..learning._mapping import _finite
from ._common import DPI, add_scale_bar, quantity_label, robust_limits
from ._stats import draw_components

#: Figure sizes in inches (at :data:`microprop.plots.DPI`).
FIGSIZE_TRIPTYCH = (16.0, 5.5)


FIGSIZE_PANEL = (5.5, 4.5)


def grid_extent(shape, step_um, first_centre_um):
    """imshow extent (left, right, bottom, top) of a window grid, um, y down.

    Cell ``(i, j)`` is a ``step_um`` square centred at
    ``first_centre_um + (j, i) * step_um``.
    """
    ny, nx = shape
    x0, y0 = (float(v) for v in first_centre_um)
    st = float(step_um)
    return (x0 - st / 2, x0 + (nx - 0.5) * st, y0 + (ny - 0.5) * st, y0 - st / 2)


def map_triptych(bse_downsampled, pixel_size_nm, resnet_grid, table_grid, step_um,
                 first_centre_um=None, downsample_factor=1, quantity="E_GPa",
                 names=("ResNet", "table model"), vlim=None, title=None):
    """BSE image beside the model maps of the same area (seed paper Fig. 15).

    Three panels share the um axes of the before-mosaic frame (pixel
    ``[0, 0]`` of the full-resolution map centred at 0 um, x right, y down);
    the two maps share one colour scale (2nd-98th percentile of both,
    unless ``vlim`` is given) and one colourbar.

    Parameters
    ----------
    bse_downsampled : array-like, shape (h, w)
        BSE mosaic block-mean downsampled by ``downsample_factor``
        (:func:`microprop.io.downsample`).
    pixel_size_nm : float
        Pixel size of ``bse_downsampled``, nm.
    resnet_grid : array-like, shape (ny, nx)
        Model map (GPa), NaN drawn as background.
    table_grid : array-like, shape (ny, nx), or None
        Table-model map on the same windows; ``None`` draws two panels.
    step_um : float
        Window step of the grids, um (cell width).
    first_centre_um : (float, float), optional
        ``(x, y)`` um of the centre of window ``[0, 0]``; default
        ``(step_um / 2, step_um / 2)`` less half a full-resolution pixel.
    downsample_factor : int
        Factor by which ``bse_downsampled`` was reduced (places its block
        edges on full-resolution pixel edges).
    quantity : str
        ``E_GPa`` or ``H_GPa`` (colourbar label).
    names : (str, str)
        Panel titles of the two maps.
    vlim : (float, float), optional
        Colour limits, GPa.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Size :data:`FIGSIZE_TRIPTYCH` at :data:`microprop.plots.DPI`.

    Raises
    ------
    InputError
        If an image is not 2D, the grids differ in shape, or the pixel size or
        step is not positive.
    """
    img, grids = _triptych_arrays(bse_downsampled, resnet_grid, table_grid, pixel_size_nm, step_um)
    ps_um = float(pixel_size_nm) / 1000.0
    half_full = 0.5 * ps_um / max(int(downsample_factor), 1)
    h, w = img.shape
    bse_extent = (-half_full, -half_full + w * ps_um, -half_full + h * ps_um, -half_full)
    if first_centre_um is None:
        first_centre_um = (step_um / 2 - half_full, step_um / 2 - half_full)
    extent = grid_extent(grids[0].shape, step_um, first_centre_um)
    vmin, vmax = vlim if vlim is not None else robust_limits(np.concatenate(
        [g.ravel() for g in grids]))
    fig = Figure(figsize=FIGSIZE_TRIPTYCH, dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 1 + len(grids), sharex=True, sharey=True)
    glo, ghi = robust_limits(img, (0.5, 99.5))
    axes[0].imshow(img, cmap="gray", vmin=glo, vmax=ghi, extent=bse_extent,
                   interpolation="antialiased")
    axes[0].set_title("BSE image\n(before indentation)")
    add_scale_bar(axes[0], w * ps_um)
    im = _draw_maps(axes[1:], grids, names, quantity, step_um, extent, (vmin, vmax))
    for ax in axes:
        ax.set_xlim(bse_extent[0], bse_extent[1])
        ax.set_ylim(bse_extent[2], bse_extent[3])
        ax.set_aspect("equal")
        ax.set_xlabel("x (um)")
    axes[0].set_ylabel("y (um)")
    cb = fig.colorbar(im, ax=list(axes), shrink=0.9, extend="both", pad=0.01)
    cb.set_label(quantity_label(quantity))
    if title:
        fig.suptitle(title)
    return fig


def _triptych_arrays(bse_downsampled, resnet_grid, table_grid, pixel_size_nm, step_um):
    """The BSE image and the grids as float arrays, checked (2D, same shape, positive sizes)."""
    img = np.asarray(bse_downsampled, dtype=float)
    grids = [np.asarray(resnet_grid, dtype=float)]
    if table_grid is not None:
        grids.append(np.asarray(table_grid, dtype=float))
    if img.ndim != 2 or any(g.ndim != 2 for g in grids):
        raise InputError("map_triptych: the BSE image and the grids must be 2D")
    if len(grids) == 2 and grids[0].shape != grids[1].shape:
        raise InputError(f"map_triptych: grids differ in shape {grids[0].shape} vs "
                         f"{grids[1].shape}")
    if not float(pixel_size_nm) > 0 or not float(step_um) > 0:
        raise InputError(f"map_triptych: pixel_size_nm ({pixel_size_nm}) and step_um "
                         f"({step_um}) must be > 0")
    return img, grids


def _draw_maps(axes, grids, names, quantity, step_um, extent, vlim):
    """Draw each grid on its axes with one colour scale; return the last image (colourbar)."""
    sym = quantity.split("_")[0]
    for ax, g, name in zip(axes, grids, names):
        ax.set_facecolor("0.85")
        im = ax.imshow(np.ma.masked_invalid(g), cmap="viridis", vmin=vlim[0], vmax=vlim[1],
                       extent=extent, interpolation="nearest")
        ax.set_title(f"{name} map of {sym}\n{g.shape[0]} x {g.shape[1]} windows, "
                     f"step {step_um:.3g} um")
    return im


def _components_table(tables, source):
    if isinstance(tables, pd.DataFrame):
        if "source" not in tables.columns:
            raise InputError(f"map_histograms: the statistics table lacks a 'source' column; "
                             f"found {list(tables.columns)}")
        t = tables[tables["source"] == source]
    else:
        t = tables.get(source)
    if t is None or len(t) == 0:
        raise InputError(f"map_histograms: no mixture components for source {source!r}")
    return t


def _draw_histogram(ax, x, table, quantity, bins, xlim, label):
    """Density histogram, weighted Gaussian components and their sum on one axes.

    The components are drawn by :func:`microprop.plots.draw_components`,
    as in :func:`microprop.plots.histogram_components`, on a given axes so
    that several sources fit one figure.
    """
    # density relative to all N values (values beyond xlim are counted, not drawn)
    width = (xlim[1] - xlim[0]) / bins
    ax.hist(x, bins=bins, range=xlim, weights=np.full(x.size, 1.0 / (x.size * width)),
            color="0.75", edgecolor="0.6", label=f"{label} (N={x.size})")
    draw_components(ax, np.linspace(xlim[0], xlim[1], 800), table, quantity, lw=1.6)
    ax.set_xlim(*xlim)
    ax.legend(fontsize=7)


def map_histograms(indent_E, grids, tables, quantity="E_GPa", bins=60, title=None):
    """Histograms with GMM components, one panel per source (seed Fig. 16-17).

    Panel order: the indents, then the maps in ``grids`` order; all panels
    share the x range (0.5th-99.5th percentile of all values, widened to
    the components' mean +- 3 std) and the bin edges, so that the peaks can
    be compared by eye. Each panel draws what
    :func:`microprop.plots.histogram_components` draws for one source.

    Parameters
    ----------
    indent_E : array-like, shape (N,)
        Property of the indents (GPa).
    grids : dict
        Source name -> map values (any shape).
    tables : pandas.DataFrame or dict
        :func:`compare_statistics` output (rows selected by ``source``), or
        source name -> a :func:`microprop.stats.deconvolve` table.
    quantity : str
        ``E_GPa`` or ``H_GPa``.
    bins : int
        Number of equal-width bins over the shared range.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Panels of :data:`FIGSIZE_PANEL` each, at most 3 per row.

    Raises
    ------
    InputError
        If a source has no finite value or no components in ``tables``.
    """
    sources = [(INDENTATION, _finite(indent_E))] + [(str(k), _finite(v)) for k, v in grids.items()]
    for name, x in sources:
        if x.size == 0:
            raise InputError(f"map_histograms: no finite {quantity} values for {name!r}")
    comps = {name: _components_table(tables, name) for name, _ in sources}
    allv = np.concatenate([x for _, x in sources])
    lo, hi = np.percentile(allv, [0.5, 99.5])
    for t in comps.values():
        lo = min(lo, float((t["mean"] - 3 * t["std"]).min()))
        hi = max(hi, float((t["mean"] + 3 * t["std"]).max()))
    lo = max(lo, float(allv.min()))
    hi = min(hi, float(allv.max()))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    n = len(sources)
    ncol = min(n, 3)
    nrow = math.ceil(n / ncol)
    fig = Figure(figsize=(FIGSIZE_PANEL[0] * ncol, FIGSIZE_PANEL[1] * nrow), dpi=DPI)
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
    for ax, (name, x) in zip(axes, sources):
        _draw_histogram(ax, x, comps[name], quantity, int(bins), (lo, hi),
                        "indents" if name == INDENTATION else "map windows")
        w1 = comps[name]["w1_GPa"].iloc[0] if "w1_GPa" in comps[name].columns else None
        if name != INDENTATION and w1 is not None and np.isfinite(w1):
            ax.set_title(f"{name}\n(Wasserstein distance to the indents: {w1:.1f} GPa)")
        else:
            ax.set_title(name)
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(title or f"Gaussian mixture deconvolution of {quantity.split('_')[0]}: "
                 "indentation and maps")
    fig.tight_layout()
    return fig


#: Figure size of :func:`map_phase_fractions`, inches.
FIGSIZE_FRACTIONS = (15.0, 5.5)


def map_phase_fractions(table, clouds=None, max_points=3000, seed=0, title=None):
    """Table 1 as a figure: phase fractions of every row against the truth, and the (E, H) clouds.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`microprop.learning.phase_statistics_table` output
        (``source, values, method, phase, fraction, truth, fraction_truth``).
    clouds : dict, optional
        Label -> ``(E, H)`` arrays (GPa) drawn in a second panel as point
        clouds (e.g. the indents, the map's conditional means and its
        predictive draws), at most ``max_points`` each (a seeded subsample).
    max_points : int
        Points per cloud.
    seed : int
        Seed of the subsample.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        :data:`FIGSIZE_FRACTIONS`: grouped bars (one group per phase, one bar
        per row of the table), the true fractions as markers (``x``: the
        mapped area, ``+``: the indents' zones); with ``clouds`` a log-H
        scatter beside.

    Raises
    ------
    InputError
        If the table lacks a column or has no rows.
    """
    need = ["source", "values", "method", "phase", "fraction", "truth", "fraction_truth"]
    missing = [c for c in need if c not in table.columns]
    if missing or len(table) == 0:
        raise InputError(f"map_phase_fractions: table lacks column(s) {missing} or is empty")
    named = table[~table["phase"].astype(str).str.startswith("extra")]
    phases = list(dict.fromkeys(named["phase"]))
    groups = list(dict.fromkeys(zip(named["source"], named["values"], named["method"])))
    fig = Figure(figsize=FIGSIZE_FRACTIONS if clouds else (FIGSIZE_FRACTIONS[0] * 0.6,
                                                            FIGSIZE_FRACTIONS[1]), dpi=DPI)
    axes = fig.subplots(1, 2 if clouds else 1, squeeze=False,
                        gridspec_kw={"width_ratios": [1.6, 1]} if clouds else None).ravel()
    ax = axes[0]
    width = 0.8 / max(len(groups), 1)
    x = np.arange(len(phases))
    for i, (src, val, meth) in enumerate(groups):
        g = named[(named["source"] == src) & (named["values"] == val) & (named["method"] == meth)]
        f = g.set_index("phase")["fraction"].reindex(phases).to_numpy(float)
        ax.bar(x - 0.4 + (i + 0.5) * width, f, width, label=f"{src}: {val}, {meth}")
    for key, marker in (("map area", "x"), ("indents", "+")):
        t = named[named["truth"] == key].drop_duplicates("phase").set_index("phase")
        if len(t):
            ax.plot(x, t["fraction_truth"].reindex(phases).to_numpy(float), marker,
                    color="black", markersize=12, mew=2, ls="none", label=f"truth ({key})")
    ax.set_xticks(x, phases)
    ax.set_ylabel("fraction (of the solid phases)")
    ax.legend(fontsize="x-small", loc="upper right")
    ax.set_title("phase fractions")
    if clouds:
        ax2 = axes[1]
        rng = np.random.default_rng(int(seed))
        for label, (e, h) in clouds.items():
            e, h = np.asarray(e, float).ravel(), np.asarray(h, float).ravel()
            ok = np.isfinite(e) & np.isfinite(h) & (h > 0)
            e, h = e[ok], h[ok]
            if e.size > max_points:
                pick = rng.choice(e.size, int(max_points), replace=False)
                e, h = e[pick], h[pick]
            ax2.scatter(e, h, s=3, alpha=0.4, label=label)
        ax2.set_yscale("log")
        ax2.set_xlabel(quantity_label("E_GPa"))
        ax2.set_ylabel(quantity_label("H_GPa"))
        ax2.legend(fontsize="x-small", markerscale=4)
        ax2.set_title("(E, H) of the indents and the map")
    fig.suptitle(title or "Phase statistics of the indentation and of the map (Table 1)")
    fig.tight_layout()
    return fig
