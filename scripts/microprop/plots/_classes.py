"""Figures of the porosity-map classifier: confusion matrices, training curves, example maps.

The reference's Fig. 4 (``../shared/references/dtd_nanoporosity_go_cement.txt``):
one confusion matrix per scale (MulF, MicF) of the test maps. Each function
returns a fixed-size :class:`matplotlib.figure.Figure`
(:mod:`microprop.plots._common`).
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ..errors import InputError
from ._common import DPI, FIGSIZE, add_scale_bar


def confusion_matrices(confusions, metrics, baseline=None, title=None):
    """One confusion matrix per scale, counts and row shares (the reference's Fig. 4).

    Parameters
    ----------
    confusions : dict
        Scale (``"MulF"``, ``"MicF"``) -> :class:`pandas.DataFrame` of counts,
        true classes as rows, predicted as columns, the same classes in both.
    metrics : dict
        Scale -> dict with ``accuracy`` and ``accuracy_ci95`` (fractions) and
        ``n_maps``.
    baseline : dict, optional
        Descriptor -> nearest-class-mean accuracy (fraction), for the title.
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        ``FIGSIZE["double"]``; cell colour: share of the true class's test
        maps (0-100 %), text: share and count.

    Raises
    ------
    InputError
        No scale, or a matrix that is not square.
    """
    if not confusions:
        raise InputError("confusion_matrices: no scale given")
    fig = Figure(figsize=FIGSIZE["double"], dpi=DPI)
    axes = fig.subplots(1, len(confusions), squeeze=False)[0]
    im = None
    for ax, (scale, conf) in zip(axes, confusions.items()):
        counts = np.asarray(conf, float)
        if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
            raise InputError(f"confusion_matrices: {scale}: a {counts.shape} matrix, expected square")
        share = 100 * counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        im = ax.imshow(share, cmap="Blues", vmin=0, vmax=100)
        for i in range(share.shape[0]):
            for j in range(share.shape[1]):
                ax.text(j, i, f"{share[i, j]:.1f} %\n({int(counts[i, j])})", ha="center", va="center",
                        fontsize=8, color="white" if share[i, j] > 60 else "black")
        names = [str(c) for c in conf.columns]
        ax.set_xticks(range(len(names)), names)
        ax.set_yticks(range(len(names)), [str(c) for c in conf.index])
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        m = metrics.get(scale, {})
        lo, hi = m.get("accuracy_ci95", (np.nan, np.nan))
        ax.set_title(f"{scale}: test accuracy {100 * m.get('accuracy', np.nan):.1f} % "
                     f"(95 % CI {100 * lo:.1f}-{100 * hi:.1f}, {m.get('n_maps', 0)} maps)", fontsize=9)
    fig.colorbar(im, ax=list(axes), label="share of the true class's test maps (%)", shrink=0.85)
    sub = ""
    if baseline:
        sub = " | nearest class mean: " + ", ".join(
            f"{k.replace('_nm', '').replace('_', ' ')} {100 * v:.1f} %" for k, v in baseline.items())
    fig.suptitle((title or "DCNN on local porosity maps") + sub, fontsize=10)
    return fig


def classifier_history(tables, title=None):
    """Loss and accuracy per epoch of the classifiers (one line per scale).

    Parameters
    ----------
    tables : dict
        Scale -> ``metrics.csv`` table (:data:`microprop.learning.CLASS_METRIC_COLUMNS`).
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
        ``FIGSIZE["double"]``: (a) cross-entropy, train solid and val dashed;
        (b) accuracy (%).

    Raises
    ------
    InputError
        A table without the columns.
    """
    fig = Figure(figsize=FIGSIZE["double"], dpi=DPI)
    ax_l, ax_a = fig.subplots(1, 2)
    for i, (scale, t) in enumerate(tables.items()):
        missing = {"epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy"} - set(t.columns)
        if missing:
            raise InputError(f"classifier_history: {scale}: columns {sorted(missing)} missing")
        c = f"C{i}"
        ax_l.plot(t["epoch"], t["train_loss"], color=c, label=f"{scale} train")
        ax_l.plot(t["epoch"], t["val_loss"], color=c, ls="--", label=f"{scale} validation")
        ax_a.plot(t["epoch"], 100 * t["train_accuracy"], color=c, label=f"{scale} train")
        ax_a.plot(t["epoch"], 100 * t["val_accuracy"], color=c, ls="--", label=f"{scale} validation")
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("cross-entropy (nats per map)")
    ax_l.set_yscale("log")
    ax_a.set_xlabel("epoch")
    ax_a.set_ylabel("accuracy (%)")
    ax_a.set_ylim(0, 101)
    for ax, tag in ((ax_l, "(a)"), (ax_a, "(b)")):
        ax.legend(fontsize=8)
        ax.set_title(tag, loc="left", fontsize=9)
    fig.suptitle(title or "Classifier training", fontsize=10)
    fig.tight_layout()
    return fig


def example_maps(maps, labels, predicted, classes, pixel_size_nm, per_class=3, title=None):
    """A few test maps per class with their true and predicted class.

    Parameters
    ----------
    maps : numpy.ndarray, shape (N, S, S)
        Equivalent porosity (-).
    labels, predicted : sequence of str, length N
    classes : sequence of str
    pixel_size_nm : float
        Of the stored maps (scale bar).
    per_class : int

    Returns
    -------
    matplotlib.figure.Figure
        ``FIGSIZE["image"]``; one row per class, colour scale 0-1 (n).
    """
    maps = np.asarray(maps)
    fig = Figure(figsize=FIGSIZE["image"], dpi=DPI)
    axes = fig.subplots(len(classes), per_class, squeeze=False)
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    im = None
    width_um = maps.shape[-1] * float(pixel_size_nm) / 1000
    for r, c in enumerate(classes):
        idx = np.nonzero(labels == c)[0][:per_class]
        for k in range(per_class):
            ax = axes[r, k]
            ax.set_axis_off()
            if k < len(idx):
                im = ax.imshow(maps[idx[k]], cmap="magma", vmin=0, vmax=1,
                               extent=(0, width_um, width_um, 0))
                ok = predicted[idx[k]] == c
                ax.set_title(f"{c} -> {predicted[idx[k]]}", fontsize=8, color="black" if ok else "red")
                if k == 0:
                    add_scale_bar(ax, width_um)
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), label="equivalent porosity n (-)", shrink=0.8)
    fig.suptitle(title or "Test maps: true -> predicted class (red: wrong)", fontsize=10)
    return fig
