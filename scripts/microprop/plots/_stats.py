"""Figures of the statistics: histograms with mixture components, the table model, the BIC.
"""
from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from ..errors import InputError
from ..stats import component_curves, table_model_fit
from ._common import DPI, FIGSIZE, _need, quantity_label


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


def bic_plot(table, title=None, k_used=None, model="mixture", k_used_why="one per solid phase"):
    """BIC and AIC of Gaussian mixtures against the number of components.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`microprop.stats.bic_table` (``k``, ``bic``, ``aic``).
    title : str, optional
    k_used : int, optional
        The number of components the deconvolution uses; marked beside the
        minimum, so that a reader sees whether they agree.
    model : str
        What was fitted (e.g. ``"joint (E, H) mixture"``), for the title.
    k_used_why : str
        Why that k, for the legend.

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
    if k_used is not None:
        ax.axvline(int(k_used), color="0.4", ls=":", lw=1.5,
                   label=f"k used: {int(k_used)} ({k_used_why})")
    ax.set_xlabel("number of Gaussian components k (-)")
    ax.set_ylabel("information criterion (-)")
    ax.set_xticks(table["k"].astype(int))
    ax.legend()
    ax.set_title(title or f"Model selection for the {model}")
    fig.tight_layout()
    return fig


_STAT_LABELS = {"fraction": "fraction f (-)", "E_mean": "mean E (GPa)", "E_std": "sd of E (GPa)",
                "H_mean": "mean H (GPa)", "H_std": "sd of H (GPa)"}


def _compact(n):
    """100, 2k, 13k, 1.2M: tick labels of numbers of indents that do not run into each other."""
    n = int(n)
    for div, unit in ((1_000_000, "M"), (1000, "k")):
        if n >= div:
            v = n / div
            return f"{v:.0f}{unit}" if v >= 10 or v == int(v) else f"{v:.1f}{unit}"
    return str(n)


def _size_labels(sizes):
    """Compact labels of increasing sizes on a log axis; one closer than x1.6 to the next is left blank."""
    labels = [_compact(v) for v in sizes]
    for i in range(len(sizes) - 1):
        if sizes[i + 1] / sizes[i] < 1.6:
            labels[i] = ""
    return labels


def stability_plot(summary, title=None, tolerance=0.05):
    """Each phase's fraction, mean and sd against the number of indents, with subsample bands.

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`microprop.stats.deconvolution_stability` output (``size,
        phase, statistic, full, median, low, high``).
    title : str, optional
    tolerance : float
        Half-width of the grey band drawn around each phase's full-data
        fraction (e.g. +-0.05), so a reader sees from which size the
        intervals stay inside it.

    Returns
    -------
    matplotlib.figure.Figure
        Size 12 x 7 in (one row of 3 panels for one property, 2 rows for
        (E, H) pairs: fraction; mean and sd of E; mean and sd of H) at
        :data:`DPI`; log x axis (indents per subsample); per phase the median
        of the subsamples (line), their central interval (band) and the value
        of all indents (dotted).

    Raises
    ------
    InputError
        If columns are missing or there are no rows.
    """
    _need(summary, ["size", "phase", "statistic", "full", "median", "low", "high"],
          "stability_plot summary")
    if summary.empty:
        raise InputError("stability_plot: the summary has no rows")
    stats_present = list(dict.fromkeys(summary["statistic"]))
    props = [s.split("_")[0] for s in stats_present if s.endswith("_mean")]
    nrow = max(len(props), 1)
    fig = Figure(figsize=(12.0, 3.6 * nrow + 0.6), dpi=DPI)
    axes = fig.subplots(nrow, 3, squeeze=False)
    cells = {"fraction": axes[0, 0]}
    for i, p in enumerate(props):
        cells[f"{p}_mean"], cells[f"{p}_std"] = axes[i, 1], axes[i, 2]
    phases = list(dict.fromkeys(summary["phase"]))
    for stat, ax in cells.items():
        t = summary[summary["statistic"] == stat]
        for j, ph in enumerate(phases):
            r = t[t["phase"] == ph].sort_values("size")
            if r.empty:
                continue
            c = f"C{j}"
            ax.fill_between(r["size"], r["low"], r["high"], color=c, alpha=0.2, lw=0)
            ax.plot(r["size"], r["median"], "o-", color=c, ms=3, lw=1.5, label=ph)
            ax.axhline(r["full"].iloc[0], color=c, ls=":", lw=1)
            if stat == "fraction" and tolerance:
                f0 = r["full"].iloc[0]
                ax.axhspan(f0 - tolerance, f0 + tolerance, color="0.5", alpha=0.08, lw=0)
        ax.set_xscale("log")
        sizes = sorted(summary["size"].unique())
        ax.set_xticks(sizes, _size_labels(sizes), fontsize=8)
        ax.xaxis.set_minor_formatter(NullFormatter())
        if stat != "fraction" and (t["low"] > 0).all():
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("indents per subsample (-)")
        ax.set_ylabel(_STAT_LABELS.get(stat, stat))
        ax.grid(True, which="both", alpha=0.25)
    for ax in axes.ravel():
        if ax not in cells.values():
            ax.axis("off")
    level = summary.attrs.get("level", 0.95)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    where = axes[1, 0] if nrow > 1 else axes[0, 0]
    where.legend(handles, labels, loc="center" if nrow > 1 else "best", fontsize=9,
                 title=f"median, {100 * level:.0f} % interval\n(dotted: all indents)")
    n_boot = summary.attrs.get("n_boot")
    fig.suptitle(title or ("Deconvolution against the number of indents"
                           + (f" ({n_boot} random subsamples per size" if n_boot else "")
                           + (f"; grey: fraction +-{tolerance:g})" if n_boot else "")))
    fig.tight_layout()
    return fig


def validation_table(report, title=None):
    """The measured errors of a virtual specimen against its truth, with their limits, as a table.

    Parameters
    ----------
    report : dict
        The JSON of rule ``validate_virtual``: ``stitching`` (per stage
        ``median_px``, ``max_px``, ``n_tiles``), ``location`` (``rms_um``,
        ``max_um``, ``n``), ``calibration`` (``max_abs_error``), ``gmm_E``
        (``max_fraction_abs_error``, ``max_mean_rel_error``), ``limits`` and
        ``pass``.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        One row per check: what, measured, limit, PASS/FAIL (green/red).

    Raises
    ------
    InputError
        If a section is missing.
    """
    for key in ("stitching", "location", "gmm_E", "limits", "pass"):
        if key not in report:
            raise InputError(f"validation_table: the report lacks {key!r}")
    lim, ok = report["limits"], report["pass"]
    rows = []
    for stage, s in sorted(report["stitching"].items()):
        rows.append((f"stitching {stage}: tile position, median / max ({s['n_tiles']} tiles)",
                     f"{s['median_px']:.3f} / {s['max_px']:.3f} px",
                     f"{lim['tile_median_px']} / {lim['tile_max_px']} px",
                     s["median_px"] <= lim["tile_median_px"] and s["max_px"] <= lim["tile_max_px"]))
    loc = report["location"]
    rows.append((f"indent positions, RMS ({loc['n']} indents)", f"{loc['rms_um']:.3f} um",
                 f"{lim['indent_rms_um']} um", ok["location"]))
    if "calibration" in report:
        rows.append(("calibrated eta, largest error of a phase median",
                     f"{report['calibration']['max_abs_error']:.4f}", "(reported)", None))
    g = report["gmm_E"]
    rows.append(("mixture: largest fraction error", f"{g['max_fraction_abs_error']:.3f}",
                 f"{lim['gmm_fraction_abs']}", g["max_fraction_abs_error"] <= lim["gmm_fraction_abs"]))
    rows.append(("mixture: largest relative error of a mean", f"{g['max_mean_rel_error']:.3f}",
                 f"{lim['gmm_mean_rel']}", g["max_mean_rel_error"] <= lim["gmm_mean_rel"]))
    fig = Figure(figsize=(9.0, 0.45 * len(rows) + 1.0), dpi=DPI)
    ax = fig.add_subplot()
    ax.axis("off")
    cells = [[r[0], r[1], r[2], "-" if r[3] is None else ("PASS" if r[3] else "FAIL")] for r in rows]
    table = ax.table(cellText=cells, colLabels=["check against the generator's truth", "measured",
                                                "limit", ""], loc="center", cellLoc="left",
                     colWidths=[0.58, 0.17, 0.15, 0.1])
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.3)
    for i, r in enumerate(rows, start=1):
        if r[3] is not None:
            table[i, 3].set_facecolor("#c8e6c9" if r[3] else "#ffcdd2")
    ax.set_title(title or "Validation against the virtual specimen's truth", fontsize=10)
    return fig


def porosity_scatter(porosity, pore_size_nm, labels, classes, accuracies=None, title=None):
    """Porosity against average pore size of every local map, by class (the reference's Fig. 3c).

    Parameters
    ----------
    porosity, pore_size_nm : array-like, shape (N,)
        Descriptors of each map (-, nm).
    labels : array-like, shape (N,)
        Class of each map.
    classes : sequence of str
        Class order (colours, legend).
    accuracies : dict, optional
        Descriptor -> nearest-class-mean accuracy, shown in the title.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        Size ``FIGSIZE["single"]``; class means marked by crosses.
    """
    por = np.asarray(porosity, float)
    size = np.asarray(pore_size_nm, float)
    lab = np.asarray(labels)
    if not (por.shape == size.shape == lab.shape):
        raise InputError("porosity_scatter: porosity, pore size and labels differ in length")
    fig = Figure(figsize=FIGSIZE["single"], dpi=DPI)
    ax = fig.add_subplot()
    for i, c in enumerate(classes):
        m = lab == c
        color = f"C{i}"
        ax.scatter(por[m], size[m], s=6, alpha=0.5, color=color, linewidths=0, label=f"{c} ({int(m.sum())} maps)")
        ax.plot([np.nanmean(por[m])], [np.nanmean(size[m])], "x", color=color, ms=12, mew=2.5)
    ax.set_xlabel("porosity of the map (mean equivalent porosity n, -)")
    ax.set_ylabel("average pore size (nm)")
    ax.legend(fontsize=8, markerscale=2)
    acc = ""
    if accuracies:
        acc = "\nnearest class mean: " + ", ".join(
            f"{k.replace('_nm', '').replace('_', ' ')} {100 * v:.1f} %" for k, v in accuracies.items())
    ax.set_title((title or "Local maps by class (crosses: class means)") + acc, fontsize=9)
    fig.tight_layout()
    return fig
