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


def relevance_panels(maps, relevance, high, boundary, region, labels, pixel_size_nm, share=0.7, title=None):
    """Maps and their deep Taylor relevance, one row per map (the reference's Fig. 5).

    Parameters
    ----------
    maps : numpy.ndarray, shape (K, P, P)
        Equivalent porosity (-) as the network saw it.
    relevance : numpy.ndarray, shape (K, P, P)
        Relevance for the explained class.
    high, boundary, region : numpy.ndarray of bool, shape (K, P, P)
        High-porosity pixels (isodata), boundary features, characteristic region.
    labels : sequence of str, length K
        Row titles (the true class).
    pixel_size_nm : float
        Of ``maps`` (scale bar).
    share : float
        The characteristic region's share of the relevance (title).

    Returns
    -------
    matplotlib.figure.Figure
        ``FIGSIZE["image"]``-wide, four columns: (a) the map; (b) positive
        relevance, red on high-porosity and blue on low-porosity pixels (the
        colour's strength: relevance over the map's 99th percentile); (c)
        boundary features; (d) the characteristic region over the map, with
        its area fraction.
    """
    maps = np.asarray(maps)
    k = len(maps)
    if not (len(relevance) == len(high) == len(boundary) == len(region) == len(labels) == k) or k == 0:
        raise InputError("relevance_panels: maps, relevance, masks and labels must have the same, non-zero length")
    fig = Figure(figsize=(FIGSIZE["image"][0] + 2, 2.4 * k + 0.8), dpi=DPI)
    axes = fig.subplots(k, 4, squeeze=False)
    width_um = maps.shape[-1] * float(pixel_size_nm) / 1000
    ext = (0, width_um, width_um, 0)
    for i in range(k):
        pos = np.clip(np.asarray(relevance[i], float), 0, None)
        scale = np.quantile(pos, 0.99) or 1.0
        a = np.clip(pos / scale, 0, 1)
        rgb = np.ones(maps.shape[1:] + (3,))
        h = np.asarray(high[i], bool)
        rgb[..., 1] -= a
        rgb[..., 2] -= a * h            # red where high porosity
        rgb[..., 0] -= a * ~h           # blue where low porosity
        panels = [(maps[i], "magma", f"{labels[i]}: map"),
                  (rgb, None, "relevance (red: high n, blue: low n)"),
                  (np.asarray(boundary[i], float), "Greys", "boundary features"),
                  (maps[i], "magma", f"region carrying {100 * share:.0f} %: "
                                     f"{100 * np.mean(region[i]):.1f} % of the map")]
        for j, (img, cmap, name) in enumerate(panels):
            ax = axes[i, j]
            ax.imshow(img, cmap=cmap, extent=ext, vmin=0 if cmap else None, vmax=1 if cmap else None)
            if j == 3:
                ax.contour(np.asarray(region[i], float), levels=[0.5], colors="cyan", linewidths=0.6,
                           extent=(0, width_um, 0, width_um), origin="upper")
            ax.set_title(name, fontsize=7)
            ax.set_axis_off()
            if j == 0:
                add_scale_bar(ax, width_um)
    fig.suptitle(title or "Deep Taylor relevance", fontsize=10)
    return fig


def s2_panels(r_um, delta_n, pooled, classes, title=None):
    """S2(r, delta n) per class, whole maps and characteristic regions (the reference's Fig. 6).

    Parameters
    ----------
    r_um : numpy.ndarray, shape (R + 1,)
    delta_n : numpy.ndarray, shape (2 L - 1,)
        Porosity difference of the pair (second minus first point).
    pooled : dict
        ``(class, part) -> S2 (R + 1, 2 L - 1)``, ``part`` ``"whole"`` or ``"region"``.
    classes : sequence of str

    Returns
    -------
    matplotlib.figure.Figure
        One column per class and a last one of curves; rows: whole maps,
        characteristic regions. Heat maps: log10 of the probability of a pair
        at distance r with porosity difference delta n; curves: the
        same-porosity probability ``S2(r, 0)`` per class.
    """
    parts = [p for p in ("whole", "region") if any((c, p) in pooled for c in classes)]
    if not parts:
        raise InputError("s2_panels: nothing to draw")
    fig = Figure(figsize=(3.4 * (len(classes) + 1) + 1.0, 3.6 * len(parts) + 0.8), dpi=DPI,
                 layout="constrained")
    axes = fig.subplots(len(parts), len(classes) + 1, squeeze=False)
    centre = len(delta_n) // 2
    im = None
    for i, part in enumerate(parts):
        for j, c in enumerate(classes):
            ax = axes[i, j]
            s = pooled.get((c, part))
            if s is None:
                ax.set_axis_off()
                continue
            with np.errstate(divide="ignore"):
                im = ax.imshow(np.log10(np.clip(s.T, 1e-7, None)), origin="lower", aspect="auto", cmap="viridis",
                               vmin=-5, vmax=-1, extent=(r_um[0], r_um[-1], delta_n[0], delta_n[-1]))
            ax.set_ylim(-0.6, 0.6)
            ax.set_xlabel("distance r (um)")
            if j == 0:
                ax.set_ylabel("porosity difference delta n (-)")
            ax.set_title(f"{c}, {'whole maps' if part == 'whole' else 'characteristic regions'}", fontsize=8)
            axes[i, -1].plot(r_um[1:], s[1:, centre], label=c, color=f"C{j}")
        ax = axes[i, -1]
        ax.set_xlabel("distance r (um)")
        ax.set_ylabel("S2(r, delta n = 0) (-), r > 0")
        ax.set_yscale("log")
        ax.set_title("same porosity at distance r", fontsize=8)
        ax.legend(fontsize=7)
    if im is not None:
        fig.colorbar(im, ax=axes[:, :-1].ravel().tolist(), label="log10 probability of the pair", shrink=0.8,
                     location="left")
    fig.suptitle(title or "Two-point correlation S2(r, delta n)", fontsize=10)
    return fig


def pattern_search_panels(differences, classes, title=None):
    """Difference matrices of the characteristic patterns before and after reordering (the reference's Fig. S34).

    Parameters
    ----------
    differences : dict
        Class -> dict with ``D`` (N, N) the difference matrix (sum of absolute
        differences of two normalised patterns, 0..2), ``order`` (N,) the
        annealed order, ``groups`` (list of dicts with ``start``, ``stop``:
        positions in the order), ``total_gradient_start`` and
        ``total_gradient_end``.
    classes : sequence of str

    Returns
    -------
    matplotlib.figure.Figure
        One row per class; columns: (a) the matrix in the maps' order, (b) the
        sum of its absolute forward differences along both axes (what the
        total gradient ``GR_t`` adds up), (c) the matrix in the annealed order
        with the groups as rectangles, (d) its differences. The diagonal (a
        map against itself) is left blank and the colours span the 1st to
        99th percentile of the other cells. Dark: similar patterns.
    """
    rows = [c for c in classes if c in differences]
    if not rows:
        raise InputError("pattern_search_panels: nothing to draw")
    fig = Figure(figsize=(12.0, 3.0 * len(rows) + 0.8), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(rows), 4, squeeze=False)
    for i, c in enumerate(rows):
        e = differences[c]
        D = np.asarray(e["D"], float)
        o = np.asarray(e["order"])
        n = len(D)
        off = ~np.eye(n, dtype=bool)
        lo, hi = np.quantile(D[off], [0.01, 0.99]) if n > 1 else (0.0, 1.0)
        for j, (M, name) in enumerate(((D, "difference, maps' order"), (None, "its gradient"),
                                       (D[np.ix_(o, o)], "annealed order"), (None, "its gradient"))):
            ax = axes[i, j]
            if M is None:
                src = D if j == 1 else D[np.ix_(o, o)]
                g = np.zeros_like(src)          # |forward differences| along both axes: what GR_t sums
                g[:-1] += np.abs(np.diff(src, axis=0))
                g[:, :-1] += np.abs(np.diff(src, axis=1))
                band = np.abs(np.subtract.outer(np.arange(n), np.arange(n))) > 1
                im = ax.imshow(np.where(band, g, np.nan), cmap="magma", vmin=0,
                               vmax=float(np.quantile(g[band], 0.99)) if band.any() else None)
            else:
                im = ax.imshow(np.where(off, M, np.nan), cmap="viridis_r", vmin=lo, vmax=hi)
            if j == 2:
                for grp in e["groups"]:
                    a, b = grp["start"] - 0.5, grp["stop"] - 0.5
                    ax.add_patch(_group_box((a, a), b - a, b - a))
            gr = e["total_gradient_start"] if j < 2 else e["total_gradient_end"]
            ax.set_title(f"{c}: {name}" + (f"\nGR_t {gr:.3g}" if j in (1, 3) else ""), fontsize=8)
            ax.set_xlabel("map")
            if j == 0:
                ax.set_ylabel("map")
            fig.colorbar(im, ax=ax, shrink=0.75)
    fig.suptitle(title or "Search for shared characteristic patterns", fontsize=10)
    return fig


def _group_box(xy, w, h):
    """An unfilled red rectangle patch (a group on the reordered difference matrix)."""
    from matplotlib.patches import Rectangle

    return Rectangle(xy, w, h, fill=False, edgecolor="red", linewidth=1.2)


def shared_pattern_panels(shared, classes, pixel_size_nm, title=None):
    """Shared characteristic patterns, up to three per class, with their contour (the reference's Fig. 7).

    Parameters
    ----------
    shared : dict
        Class -> list of dicts with ``sR`` (P, P) the shared pattern
        (:func:`microprop.microstructure.shared_pattern`), ``nR`` the plain
        superposition ``sum n R`` (optional; default ``sR``), ``level`` the
        contour level, ``fraction`` the area share above it and ``size`` the
        number of maps in the group.
    classes : sequence of str
    pixel_size_nm : float
        Of the patterns (scale bar).

    Returns
    -------
    matplotlib.figure.Figure
        One row per class, one column per group: grey, the superposition
        ``sum n R`` on a log scale from its median (where the group's relevance
        piles up); red, the pixels where ``sR`` passes the contour level (where
        the group's patterns agree: the shared pattern).
    """
    rows = [c for c in classes if shared.get(c)]
    if not rows:
        raise InputError("shared_pattern_panels: nothing to draw")
    ncol = max(len(shared[c]) for c in rows)
    fig = Figure(figsize=(3.2 * ncol + 1.2, 3.0 * len(rows) + 0.8), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(rows), ncol, squeeze=False)
    from matplotlib.colors import LogNorm

    for i, c in enumerate(rows):
        for j in range(ncol):
            ax = axes[i, j]
            ax.set_axis_off()
            if j >= len(shared[c]):
                continue
            g = shared[c][j]
            s = np.asarray(g["sR"], float)
            width_um = s.shape[-1] * float(pixel_size_nm) / 1000
            lvl = float(g["level"])
            nR = np.asarray(g.get("nR", s), float)
            pos = nR[nR > 0]
            bottom = float(np.quantile(pos, 0.5)) if pos.size else lvl
            top = max(float(nR.max()), bottom * 10)
            im = ax.imshow(np.where(nR > bottom, nR, np.nan), cmap="Greys", norm=LogNorm(bottom, top),
                           extent=(0, width_um, width_um, 0))
            ax.contourf(s, levels=[lvl, np.inf], colors=["tab:red"], alpha=0.8,
                        extent=(0, width_um, 0, width_um), origin="upper")
            ax.set_title(f"{c}, group {j + 1} ({g['size']} maps): {100 * g['fraction']:.1f} % shared", fontsize=8)
            add_scale_bar(ax, width_um)
            if j == len(shared[c]) - 1:
                fig.colorbar(im, ax=ax, shrink=0.75, label="sum n R (-)")
    fig.suptitle(title or "Shared characteristic patterns", fontsize=10)
    return fig
