"""Figures of the sample study: the bright-fraction baseline, observed against predicted, activation maps, training.

The conductivity poster (``../shared/references/cnn_conductivity_lto_ni_poster.txt``)
shows the property against the bright (metal) pixel fraction with the GLM
fits (its Figs. 2-3), observed against predicted for the CNN (Fig. 6) and a
regression activation map (Fig. 7). Each function returns a fixed-size
:class:`matplotlib.figure.Figure` (:mod:`microprop.plots._common`).
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ..errors import InputError
from ._common import DPI, FIGSIZE


def _target_label(name):
    """``log10_sigma_S_per_cm`` -> ``log10 sigma (S/cm)``."""
    base = name[6:] if name.startswith("log10_") else name
    for suffix, unit in (("_S_per_cm", "S/cm"), ("_S_per_m", "S/m"), ("_GPa", "GPa"), ("_W_per_mK", "W/(m K)")):
        if base.endswith(suffix):
            base = f"{base[:-len(suffix)]} ({unit})"
            break
    return ("log10 " if name.startswith("log10_") else "") + base.replace("_", " ")


def bright_fraction_figure(fraction, target, cv, predictions, target_name):
    """The target against the bright-pixel fraction with each degree's GLM, and the chosen degree's held-out fit.

    Parameters
    ----------
    fraction, target : array-like, shape (N,)
        Bright fraction (0..1) and the learned target of each image.
    cv : dict
        ``best_degree`` and ``per_degree``: degree (str) -> ``mae_mean``,
        ``mae_sd``, ``r2_mean`` of the held-out folds (rule sample_baseline's summary).
    predictions : pandas.DataFrame
        ``observed``, ``predicted`` (held out, chosen degree), ``fold``.
    target_name : str

    Returns
    -------
    matplotlib.figure.Figure
        ``FIGSIZE["double"]``: (a) the images' points and each degree's fit
        on all images, (b) observed against held-out predicted, 1:1 line.
    """
    from ..stats import fit_polynomial_glm, predict_polynomial_glm

    x, y = np.asarray(fraction, float), np.asarray(target, float)
    if len(x) != len(y) or not len(x):
        raise InputError("bright_fraction_figure: fraction and target must have the same, non-zero length")
    fig = Figure(figsize=FIGSIZE["double"], dpi=DPI, layout="constrained")
    a, b = fig.subplots(1, 2)
    a.scatter(x, y, s=10, color="0.4", label="images")
    grid = np.linspace(x.min(), x.max(), 200)
    for k, v in cv["per_degree"].items():
        model = fit_polynomial_glm(x, y, int(k))
        lw = 2.0 if int(k) == int(cv["best_degree"]) else 1.0
        a.plot(grid, predict_polynomial_glm(model, grid), lw=lw,
               label=f"degree {k}: MAE {v['mae_mean']:.2f} +- {v['mae_sd']:.2f}, R2 {v['r2_mean']:.2f}")
    a.set_xlabel("bright-pixel fraction (-), automatic threshold")
    a.set_ylabel(_target_label(target_name))
    a.legend(fontsize=7, title="GLM fits (held-out MAE, R2 over folds)", title_fontsize=7)
    o, p = predictions["observed"].to_numpy(float), predictions["predicted"].to_numpy(float)
    b.scatter(o, p, s=10, c=predictions["fold"], cmap="tab10")
    lo, hi = float(min(o.min(), p.min())), float(max(o.max(), p.max()))
    b.plot([lo, hi], [lo, hi], color="k", lw=1)
    b.set_xlabel(f"observed {_target_label(target_name)}")
    b.set_ylabel(f"predicted (held-out fold, degree {cv['best_degree']})")
    b.set_title("colour: fold", fontsize=8)
    fig.suptitle("Bright-fraction baseline", fontsize=10)
    return fig


def observed_predicted_figure(cnn, glm, cnn_metrics, glm_metrics, target_name):
    """Observed against held-out predicted, the CNN beside the bright-fraction GLM (the poster's Fig. 6).

    Parameters
    ----------
    cnn, glm : pandas.DataFrame
        ``observed``, ``predicted``, ``fold`` per held-out image.
    cnn_metrics, glm_metrics : dict
        :func:`microprop.learning.fold_metrics` of each.
    target_name : str

    Returns
    -------
    matplotlib.figure.Figure
        ``FIGSIZE["double"]``: two panels, 1:1 line (black) and the least-squares
        line of predicted on observed (blue); colour: fold.
    """
    fig = Figure(figsize=FIGSIZE["double"], dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    allv = np.concatenate([t[c].to_numpy(float) for t in (cnn, glm) for c in ("observed", "predicted")])
    lo, hi = float(allv.min()), float(allv.max())
    for ax, t, m, name in ((axes[0], cnn, cnn_metrics, "CNN"), (axes[1], glm, glm_metrics, "bright-fraction GLM")):
        o, p = t["observed"].to_numpy(float), t["predicted"].to_numpy(float)
        ax.scatter(o, p, s=12, c=t["fold"], cmap="tab10")
        ax.plot([lo, hi], [lo, hi], color="k", lw=1, label="perfect prediction")
        if len(o) > 1 and np.ptp(o) > 0:
            k, c = np.polyfit(o, p, 1)
            ax.plot([lo, hi], [k * lo + c, k * hi + c], color="tab:blue", lw=1, label="linear fit")
        ax.set_title(f"{name}: MAE {m['mae_mean']:.2f} +- {m['mae_sd']:.2f}, R2 {m['r2_mean']:.2f} +- "
                     f"{m['r2_sd']:.2f} (over {len(m['per_fold'])} folds)", fontsize=8)
        ax.set_xlabel(f"observed {_target_label(target_name)}")
        ax.legend(fontsize=7)
    axes[0].set_ylabel(f"predicted {_target_label(target_name)}, held out")
    fig.suptitle("Held-out predictions, folds grouped by sample", fontsize=10)
    return fig


def activation_map_panels(images, ram, titles, target_name):
    """Regression activation maps over their images (the poster's Fig. 7), one row per image.

    Parameters
    ----------
    images : numpy.ndarray, shape (K, S, S), uint8
        The images (as stored, before normalisation).
    ram : numpy.ndarray, shape (K, S, S)
        Activation maps in target units per pixel (:func:`microprop.learning.activation_maps`).
    titles : sequence of str
    target_name : str

    Returns
    -------
    matplotlib.figure.Figure
        Two columns: the image; the map over it (diverging colours centred on
        0: red raises the prediction, blue lowers it).
    """
    k = len(images)
    if not (len(ram) == len(titles) == k) or k == 0:
        raise InputError("activation_map_panels: images, maps and titles must have the same, non-zero length")
    fig = Figure(figsize=(8.0, 3.6 * k + 0.6), dpi=DPI, layout="constrained")
    axes = fig.subplots(k, 2, squeeze=False)
    for i in range(k):
        axes[i, 0].imshow(images[i], cmap="gray", vmin=0, vmax=255)
        axes[i, 0].set_title(titles[i], fontsize=8)
        axes[i, 1].imshow(images[i], cmap="gray", vmin=0, vmax=255)
        v = float(np.quantile(np.abs(ram[i]), 0.99)) or 1.0
        im = axes[i, 1].imshow(ram[i], cmap="RdBu_r", vmin=-v, vmax=v, alpha=0.55)
        axes[i, 1].set_title("regression activation map", fontsize=8)
        for ax in axes[i]:
            ax.set_axis_off()
        fig.colorbar(im, ax=axes[i, 1], shrink=0.8, label=f"contribution to {_target_label(target_name)}")
    fig.suptitle("Where the CNN's prediction comes from", fontsize=10)
    return fig


def sample_training_curves(histories, target_name):
    """Training and validation MAE per epoch of every fold.

    Parameters
    ----------
    histories : dict
        Fold -> ``metrics.csv`` of its run (``epoch``, ``train_mae``, ``val_mae``).

    Returns
    -------
    matplotlib.figure.Figure
        ``FIGSIZE["single"]``: solid training, dashed validation, one colour per fold.
    """
    if not histories:
        raise InputError("sample_training_curves: no history")
    fig = Figure(figsize=FIGSIZE["single"], dpi=DPI, layout="constrained")
    ax = fig.subplots()
    for j, (k, h) in enumerate(sorted(histories.items())):
        ax.plot(h["epoch"], h["train_mae"], color=f"C{j}", label=f"fold {k} train")
        ax.plot(h["epoch"], h["val_mae"], color=f"C{j}", ls="--", label=f"fold {k} val")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"MAE of {_target_label(target_name)}")
    ax.legend(fontsize=6, ncol=2)
    ax.set_title("CNN training per fold (val: samples held out of training)", fontsize=9)
    return fig
