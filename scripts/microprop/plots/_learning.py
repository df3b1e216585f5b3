"""Figures of the learning stage: training history, predicted against measured, test crops, the baseline ladder.

Each function takes tables or arrays and returns a fixed-size
:class:`matplotlib.figure.Figure` (:mod:`microprop.plots._common`: size,
DPI, units on every axis).
"""
from __future__ import annotations

import logging
import math

import numpy as np
from matplotlib.figure import Figure

from .. import stats as stats
from ..errors import InputError
from ..learning import MODELS, empirical_coverage, pick_examples, regression_metrics
from . import _common as mfig
from ._common import FIGSIZE, quantity_label

log = logging.getLogger(__name__)

#: size (inches) of the example-crops figure at :data:`microprop.plots.DPI`
CROPS_FIGSIZE = (12.0, 10.0)


_HISTORY_COLUMNS = ("epoch", "train_loss", "train_mae_GPa", "val_loss", "val_mse_GPa2",
                    "val_mae_GPa")


def _train_mse(table, what):
    """Training MSE in GPa^2 from a metrics table.

    ``train_mse_GPa2`` when the table has it; else ``train_loss`` times the
    ratio ``val_mse_GPa2 / val_loss`` when that ratio is the same in every
    epoch (the loss is then an MSE in standardised units, the ratio the
    target variance); else None.
    """
    if "train_mse_GPa2" in table:
        return table["train_mse_GPa2"].to_numpy(float)
    ratio = table["val_mse_GPa2"].to_numpy(float) / table["val_loss"].to_numpy(float)
    ratio = ratio[np.isfinite(ratio)]
    if ratio.size and np.ptp(ratio) <= 1e-3 * abs(np.median(ratio)) and np.median(ratio) > 0:
        return table["train_loss"].to_numpy(float) * float(np.median(ratio))
    log.warning("%s: train_loss is not an MSE in standardised units (val_mse_GPa2 / val_loss "
                "varies); the training MSE is left out of the history figure", what)
    return None


def training_history(tables, labels=None, quantity="E_GPa", title=None):
    """Training and validation MSE and MAE against epoch, for every member.

    Parameters
    ----------
    tables : sequence of pandas.DataFrame
        One ``metrics.csv`` per member: ``epoch``, ``train_loss``,
        ``train_mae_GPa``, ``val_loss``, ``val_mse_GPa2``, ``val_mae_GPa``
        (and optionally ``train_mse_GPa2``). The training MSE in GPa^2 is
        ``train_mse_GPa2`` or, when the loss is an MSE of standardised
        targets (``val_mse_GPa2 / val_loss`` constant), ``train_loss`` times
        that ratio. Training values are epoch averages with dropout and
        augmentation active; validation values are computed after the epoch.
    labels : sequence of str, optional
        Member names (default ``member 0``, ...).
    quantity : str
        ``E_GPa`` or ``H_GPa`` (title).

    Returns
    -------
    matplotlib.figure.Figure
        Size ``FIGSIZE["double"]`` at :data:`microprop.plots.DPI`: left MSE
        (GPa^2, log scale), right MAE (GPa); blue training, orange
        validation, one line style per member; a star marks each member's
        lowest validation MSE.

    Raises
    ------
    InputError
        No table, or a table lacking a column.
    """
    if not len(tables):
        raise InputError("training_history: no metrics tables given")
    labels = list(labels) if labels is not None else [f"member {i}" for i in range(len(tables))]
    fig = Figure(figsize=mfig.FIGSIZE["double"], dpi=mfig.DPI)
    ax1, ax2 = fig.subplots(1, 2)
    styles = ["-", "--", ":", "-."]
    for i, (t, lab) in enumerate(zip(tables, labels)):
        mfig._need(t, _HISTORY_COLUMNS, f"training_history {lab}")
        if len(t) == 0:
            raise InputError(f"training_history: {lab} has no epochs")
        ls = styles[i % len(styles)]
        first = i == 0
        ep = t["epoch"].to_numpy(float)
        tr_mse = _train_mse(t, lab)
        if tr_mse is not None:
            ax1.plot(ep, tr_mse, ls, color="tab:blue", lw=1.2,
                     label="training" if first else None)
        val = t["val_mse_GPa2"].to_numpy(float)
        ax1.plot(ep, val, ls, color="tab:orange", lw=1.2, label="validation" if first else None)
        b = int(np.nanargmin(val))
        ax1.plot(ep[b], val[b], "*", color="k", ms=10,
                 label="lowest validation MSE" if first else None)
        ax2.plot(ep, t["train_mae_GPa"].to_numpy(float), ls, color="tab:blue", lw=1.2,
                 label="training" if first else None)
        ax2.plot(ep, t["val_mae_GPa"].to_numpy(float), ls, color="tab:orange", lw=1.2,
                 label="validation" if first else None)
        ax2.plot(ep[b], t["val_mae_GPa"].to_numpy(float)[b], "*", color="k", ms=10)
        if len(tables) > 1:  # line style key for the members
            ax2.plot([], [], ls, color="0.3", label=lab)
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch (-)")
    ax1.set_ylabel("mean squared error (GPa²)")
    ax1.set_title("MSE")
    ax2.set_xlabel("epoch (-)")
    ax2.set_ylabel("mean absolute error (GPa)")
    ax2.set_title("MAE")
    ax1.legend(fontsize=9)
    ax2.legend(fontsize=8, ncol=2)
    sym = quantity.split("_")[0]
    fig.suptitle(title or f"Training history of the {sym} network ({len(tables)} member"
                 f"{'s' if len(tables) != 1 else ''})")
    fig.tight_layout()
    return fig


def predicted_vs_measured(predictions, quantity="E_GPa", level=0.9, title=None):
    """Ensemble prediction against measurement, training and test samples.

    Parameters
    ----------
    predictions : pandas.DataFrame
        The ``predictions`` of :func:`evaluate`: ``split``, ``y`` (measured),
        ``mean`` (predicted), ``lo``, ``hi`` (interval), GPa.
    quantity : str
        ``E_GPa`` or ``H_GPa`` (axis labels).
    level : float
        Nominal coverage of ``lo``..``hi`` (legend).

    Returns
    -------
    matplotlib.figure.Figure
        Size ``FIGSIZE["double"]``: left training, right test samples, each
        with the 1:1 line and R^2 and MAE in the legend; test points carry
        their interval as error bars (infinite bounds drawn to the axis edge).

    Raises
    ------
    InputError
        If columns are missing or the train or test split has < 2 samples.
    """
    mfig._need(predictions, ["split", "y", "mean", "lo", "hi"], "predicted_vs_measured")
    sym, unit = quantity.split("_")[0], "GPa"
    fig = Figure(figsize=mfig.FIGSIZE["double"], dpi=mfig.DPI)
    axes = fig.subplots(1, 2)
    finite = np.concatenate([predictions[c].to_numpy(float) for c in ("y", "mean")])
    finite = finite[np.isfinite(finite)]
    lo_lim, hi_lim = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    pad = 0.05 * (hi_lim - lo_lim or 1.0)
    lim = (lo_lim - pad, hi_lim + pad)
    for ax, s, colour in zip(axes, ("train", "test"), ("tab:blue", "tab:orange")):
        d = predictions[predictions["split"] == s]
        if len(d) < 2:
            raise InputError(f"predicted_vs_measured: {len(d)} {s} samples; need >= 2")
        y, m = d["y"].to_numpy(float), d["mean"].to_numpy(float)
        met = regression_metrics(y, m)
        lab = f"{s} (N={len(d)}): R² = {met['R2']:.3f}, MAE = {met['MAE']:.3g} {unit}"
        if s == "test":
            lo = d["lo"].to_numpy(float)
            hi = d["hi"].to_numpy(float)
            err = np.vstack([np.clip(m - lo, 0, lim[1] - lim[0]), np.clip(hi - m, 0, lim[1] - lim[0])])
            cov = empirical_coverage(y, lo, hi)
            ax.errorbar(y, m, yerr=err, fmt="o", ms=3, color=colour, ecolor=colour,
                        elinewidth=0.6, alpha=0.6, capsize=0, label=lab)
            ax.plot([], [], color=colour, lw=0.8,
                    label=f"{100 * level:.0f}% conformal interval (coverage {cov:.2f})")
        else:
            ax.scatter(y, m, s=8, alpha=0.5, color=colour, label=lab)
        ax.plot(lim, lim, "k--", lw=1, label="1:1")
        ax.set_xlim(lim)
        ax.set_ylim(lim)
        ax.set_aspect("equal")
        ax.set_xlabel(f"measured {sym} ({unit})")
        ax.set_ylabel(f"predicted {sym} ({unit}), ensemble mean")
        ax.set_title(f"{s} samples")
        ax.legend(fontsize=8, loc="upper left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def example_crops(images, predictions, pixel_size_nm, n=12, seed=0, quantity="E_GPa",
                  grey_label="backscatter coefficient eta (-)", title=None):
    """A grid of random test crops titled with measured and predicted value.

    Parameters
    ----------
    images : array-like, shape (N, S, S)
        The dataset's ``/images`` (numpy array or ``h5py`` dataset); row
        ``predictions["index"]`` is read.
    predictions : pandas.DataFrame
        ``index``, ``split``, ``y``, ``mean``, ``lo``, ``hi`` (GPa).
    pixel_size_nm : float
        Crop pixel size (dataset attr ``pixel_size_nm``).
    n : int
        Number of crops (12 fill the 3 x 4 grid).
    seed : int
        Seed of the random choice.
    quantity : str
    grey_label : str
        Colourbar label (the calibrated quantity with its unit).

    Returns
    -------
    matplotlib.figure.Figure
        Size :data:`CROPS_FIGSIZE` at :data:`microprop.plots.DPI`; crops
        in um (indent at the centre, marked +), one grey scale for all
        (2nd-98th percentile), a scale bar in um; each title gives the
        measured value and the prediction +- half the interval width.

    Raises
    ------
    InputError
        No test sample, bad pixel size, or images not (N, S, S).
    """
    if pixel_size_nm is None or not float(pixel_size_nm) > 0:
        raise InputError(f"example_crops: pixel_size_nm must be > 0 (dataset attr), "
                         f"got {pixel_size_nm}")
    if len(getattr(images, "shape", ())) != 3:
        raise InputError(f"example_crops: images must be (N, S, S), got "
                         f"{getattr(images, 'shape', None)}")
    mfig._need(predictions, ["index", "split", "y", "mean", "lo", "hi"], "example_crops")
    rows = pick_examples(predictions, n, seed).sort_values("index")
    idx = rows["index"].to_numpy(np.int64)
    crops = np.asarray(images[idx], dtype=float)  # increasing indices (h5py)
    s_px = crops.shape[-1]
    width_um = s_px * float(pixel_size_nm) / 1000.0
    vmin, vmax = mfig.robust_limits(crops)
    ncols = 4
    nrows = max(1, math.ceil(len(rows) / ncols))
    fig = Figure(figsize=CROPS_FIGSIZE, dpi=mfig.DPI)
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    sym, unit = quantity.split("_")[0], "GPa"
    im = None
    for ax, crop, r in zip(axes, crops, rows.itertuples()):
        im = ax.imshow(crop, cmap="gray", vmin=vmin, vmax=vmax,
                       extent=(0.0, width_um, width_um, 0.0), interpolation="antialiased")
        ax.plot([width_um / 2], [width_um / 2], "+", color="tab:red", ms=10, mew=1.2)
        mfig.add_scale_bar(ax, width_um)
        half = 0.5 * (r.hi - r.lo)
        ax.set_title(f"#{r.index}: measured {r.y:.3g} {unit}\npredicted {r.mean:.3g} ± "
                     f"{half:.2g} {unit}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(rows):]:
        ax.axis("off")
    fig.tight_layout(rect=(0, 0, 0.9, 0.95))
    if im is not None:
        cax = fig.add_axes((0.91, 0.15, 0.02, 0.7))
        fig.colorbar(im, cax=cax).set_label(grey_label)
    fig.suptitle(title or f"{len(rows)} random test crops ({width_um:.3g} um wide): measured "
                 f"and predicted {sym}")
    return fig


def r2_figure(table, title=None):
    """Grouped bars of test R^2 per rung, random vs blocked split, one panel per target.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`ladder`.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        12 x 5 in (``microprop.plots.FIGSIZE["double"]``).
    """
    from matplotlib.figure import Figure


    need = {"model", "target", "split", "R2"}
    if not need <= set(table.columns):
        raise InputError(f"ladder table lacks column(s) {sorted(need - set(table.columns))}")
    tgts = list(dict.fromkeys(table["target"]))
    schemes = list(dict.fromkeys(table["split"]))
    mods = [m for m in MODELS if m in set(table["model"])] + \
        [m for m in dict.fromkeys(table["model"]) if m not in MODELS]
    fig = Figure(figsize=FIGSIZE["double"])
    axes = fig.subplots(1, max(1, len(tgts)), squeeze=False)[0]
    width = 0.8 / max(1, len(schemes))
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    lo = min(0.0, float(np.nanmin(table["R2"])) - 0.05) if len(table) else 0.0
    for ax, t in zip(axes, tgts):
        sub = table[table["target"] == t]
        for k, sc in enumerate(schemes):
            vals = [sub.loc[(sub["model"] == m) & (sub["split"] == sc), "R2"].mean() for m in mods]
            x = np.arange(len(mods)) + (k - (len(schemes) - 1) / 2) * width
            bars = ax.bar(x, vals, width, label=f"{sc} split", color=colours[k % len(colours)])
            ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
        ax.set_xticks(np.arange(len(mods)), mods)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_ylim(max(lo, -1.0), 1.05)
        ax.set_ylabel("test R² (1 = perfect, 0 = predicting the mean)")
        ax.set_title(quantity_label(t))
        ax.legend(loc="upper left", fontsize=9)
    fig.suptitle(title or "Baseline ladder: test R² per model")
    fig.tight_layout()
    return fig


#: size (inches) of the learning-summary figure
SUMMARY_FIGSIZE = (12.0, 9.0)


def summary_figure(table, title=None):
    """Every model's test R^2 with its 95 % interval, the ceilings and the ResNet's members.

    One panel per split scheme (rows) and target (columns). Each model is a
    point with its bootstrap interval (``R2_ci95_lo`` .. ``R2_ci95_hi``);
    a ResNet row also shows the range of its members' R^2 (grey bar) and
    its interval coverage in the label. Where the truth is known, the
    attainable R^2 (boosting on the true zone fractions) is a green band
    (its interval) with a line, and the noise-only ceiling a dashed line.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`microprop.learning.summary_table`.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        :data:`SUMMARY_FIGSIZE`.

    Raises
    ------
    InputError
        If the table lacks ``model, target, split, R2, R2_ci95_lo, R2_ci95_hi``.
    """
    need = {"model", "target", "split", "R2", "R2_ci95_lo", "R2_ci95_hi"}
    if not need <= set(table.columns):
        raise InputError(f"learning summary lacks column(s) {sorted(need - set(table.columns))}")
    tgts = list(dict.fromkeys(table["target"]))
    schemes = list(dict.fromkeys(table["split"]))
    fig = Figure(figsize=SUMMARY_FIGSIZE)
    axes = fig.subplots(max(1, len(schemes)), max(1, len(tgts)), squeeze=False)
    lo_all = np.nanmin(np.r_[table["R2_ci95_lo"].to_numpy(float), table["R2"].to_numpy(float)])
    xmin = max(-0.5, min(0.0, float(lo_all) - 0.05)) if len(table) else 0.0
    for i, sc in enumerate(schemes):
        for j, t in enumerate(tgts):
            ax = axes[i, j]
            sub = table[(table["target"] == t) & (table["split"] == sc)].sort_values("R2")
            _summary_panel(ax, sub)
            ax.set_xlim(xmin, 1.02)
            ax.set_xlabel(f"test R² of {quantity_label(t).rsplit(' (', 1)[0]}")
            unit = sub["bootstrap_unit"].iloc[0] if "bootstrap_unit" in sub and len(sub) else "crop"
            n_units = int(sub["n_units"].iloc[0]) if "n_units" in sub and len(sub) else 0
            extra = ""
            if len(sub) and np.isfinite(sub["R2_attainable"]).any():
                extra = (f"\nattainable R² {sub['R2_attainable'].iloc[0]:.2f}, noise-only ceiling "
                         f"{sub['R2_noise_ceiling'].iloc[0]:.2f}")
            ax.set_title(f"{sc} split, intervals over {n_units} test {unit}s{extra}", fontsize=9)
    fig.suptitle(title or "Test R² of every model with its bootstrap 95 % interval, "
                          "against the attainable R²")
    handles = {}
    for ax in axes.ravel():
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(list(handles.values()), list(handles.keys()), loc="lower center",
                   ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.03 if handles else 0, 1, 1))
    return fig


def _summary_panel(ax, sub):
    """One panel of :func:`summary_figure`: models as rows, R^2 on x."""
    y = np.arange(len(sub))
    labels = []
    for k, (_, r) in enumerate(sub.iterrows()):
        colour = "tab:green" if str(r["model"]).startswith("attainable") else (
            "tab:red" if str(r["model"]).startswith("resnet") else "tab:blue")
        if np.isfinite(r.get("members_R2_min", np.nan)) and r.get("n_members", 0) > 1:
            ax.plot([r["members_R2_min"], r["members_R2_max"]], [k, k], color="0.6", lw=6,
                    solid_capstyle="butt", zorder=1,
                    label="range of the members' R² (seeds)" if "range of the members' R² (seeds)" not in
                    ax.get_legend_handles_labels()[1] else None)
        err = np.array([[r["R2"] - r["R2_ci95_lo"]], [r["R2_ci95_hi"] - r["R2"]]])
        ax.errorbar([r["R2"]], [k], xerr=np.where(np.isfinite(err), np.maximum(err, 0), 0),
                    fmt="o", color=colour, capsize=3, zorder=3)
        lab = str(r["model"])
        if np.isfinite(r.get("frac_of_attainable", np.nan)):
            lab += f"\n{r['frac_of_attainable']:.0%} of attainable"
        if np.isfinite(r.get("coverage", np.nan)):
            lab += (f"\n{100 * r['interval_level']:.0f} % interval covers {r['coverage']:.2f}"
                    f" ({r['coverage_ci95_lo']:.2f}-{r['coverage_ci95_hi']:.2f})")
        labels.append(lab)
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_ylim(-0.7, len(sub) - 0.3)
    if len(sub) and np.isfinite(sub["R2_attainable"]).any():
        r = sub.iloc[0]
        ax.axvspan(r["R2_attainable_ci95_lo"], r["R2_attainable_ci95_hi"], color="tab:green",
                   alpha=0.15, zorder=0)
        ax.axvline(r["R2_attainable"], color="tab:green", lw=1.2,
                   label="attainable R² (boosting on the true zone fractions) and its interval")
        ax.axvline(r["R2_noise_ceiling"], color="k", ls="--", lw=1.0,
                   label="noise-only ceiling")
    ax.axvline(0, color="k", lw=0.6)
    ax.grid(axis="x", alpha=0.3)
