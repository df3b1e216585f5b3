"""Indent grids: the batch grid model, its fit to detected marks, and indent location.

An indentation batch is an ``n_rows x n_cols`` grid at nominal spacing ``s``.
The indenter's export lists the *nominal* positions; the true positions carry
a per-batch origin error (~1-3 um) and a small per-row/column drift. The
seed paper's grid model (eqs. 3a/3b)::

    x_ij = x0 + sum_{k=1..j} dx_k      (column j, image x)
    y_ij = y0 + sum_{k=1..i} dy_k      (row i, image y)

generates true positions of a virtual batch (:func:`grid_positions`) and is
fitted robustly to the marks found in the after-indentation micrograph
(:func:`fit_batch_grid`). :func:`locate_batch` runs the whole location of
one batch: nominal positions from the export, mark detection
(:func:`detect_marks`), grid fit, and the mapping of the
fitted positions into the before-indentation mosaic, where the crops for
learning are taken. Without an after-image, :func:`locate_nominal` places
the indents by the frame mapping alone; :func:`grid_indices` gives each
indent its row and column.

Frames (see ``docs/ARCHITECTURE.md``):

- indenter -> SEM stage: ``stage = (sx * X + dx, sy * Y + dy)`` (um), with
  ``indenter_offset_um = [dx, dy]`` and ``indenter_axes = [sx, sy]``;
- stage -> mosaic pixel: ``p_px = (stage_um - origin_um) * 1000 / pixel_size_nm``
  (:func:`indenter_to_pixels`);
- after -> before: ``p_before = p_after + (dx_px, dy_px)``
  (:func:`register_mosaics`).
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from ..errors import InputError
from ._marks import berkovich_side_px, detect_marks

log = logging.getLogger(__name__)

def grid_positions(n_rows, n_cols, spacing_um, origin_um=(0.0, 0.0), drift_um=0.0, rng=None):
    """True positions of a batch of grid indents (seed paper eq. 3a/3b).

    ``x_ij = x0 + sum_{k=1..j} dx_k`` and ``y_ij = y0 + sum_{k=1..i} dy_k`` with
    per-column increments ``dx_k = s + N(0, drift_um)`` (shared by all rows)
    and per-row increments ``dy_k = s + N(0, drift_um)`` (shared by all
    columns). ``i`` is the row (y), ``j`` the column (x).

    Parameters
    ----------
    n_rows, n_cols : int
        Grid size (>= 1).
    spacing_um : float
        Nominal spacing ``s`` (um).
    origin_um : (float, float)
        ``(x0, y0)`` position of indent (row 0, col 0), um. Add the batch
        origin error here to model it.
    drift_um : float
        Standard deviation of each increment about ``s`` (um); 0 gives the
        nominal grid.
    rng : numpy.random.Generator, optional
        Needed when ``drift_um > 0``.

    Returns
    -------
    pandas.DataFrame
        ``n_rows * n_cols`` rows in row-major order with ``indent`` (1-based),
        ``row``, ``col`` (int) and ``x_um``, ``y_um`` (float, um).

    Raises
    ------
    InputError
        If a size is < 1, the spacing is not positive, the drift is negative,
        or ``rng`` is missing while ``drift_um > 0``.
    """
    n_rows, n_cols = int(n_rows), int(n_cols)
    if n_rows < 1 or n_cols < 1:
        raise InputError(f"grid of {n_rows} x {n_cols} indents: expected at least 1 x 1")
    if not spacing_um > 0:
        raise InputError(f"grid spacing {spacing_um} um: expected > 0")
    if drift_um < 0:
        raise InputError(f"grid drift {drift_um} um: expected >= 0")
    dx = np.full(n_cols - 1, float(spacing_um))
    dy = np.full(n_rows - 1, float(spacing_um))
    if drift_um > 0:
        if rng is None:
            raise InputError("grid_positions: drift_um > 0 needs an rng")
        dx = dx + rng.normal(0.0, drift_um, n_cols - 1)
        dy = dy + rng.normal(0.0, drift_um, n_rows - 1)
    xs = float(origin_um[0]) + np.concatenate([[0.0], np.cumsum(dx)])
    ys = float(origin_um[1]) + np.concatenate([[0.0], np.cumsum(dy)])
    row, col = np.divmod(np.arange(n_rows * n_cols), n_cols)
    return pd.DataFrame({"indent": np.arange(1, n_rows * n_cols + 1), "row": row, "col": col,
                         "x_um": xs[col], "y_um": ys[row]})


LOCATED_COLUMNS = ["batch", "indent", "row", "col", "x_px", "y_px", "x_um", "y_um",
                   "detected", "residual_px", "inside", "E_GPa", "H_GPa"]


def _spacing_from_nominal(nominal):
    """Nominal grid spacing in px from per-column x and per-row y medians."""
    steps = []
    for idx, coord in (("col", "x_px"), ("row", "y_px")):
        med = nominal.groupby(idx)[coord].median().sort_index()
        if len(med) > 1:
            steps.append(np.abs(np.diff(med.to_numpy()) / np.diff(med.index.to_numpy())))
    if not steps:
        return float("nan")
    return float(np.median(np.concatenate(steps)))


def _match(pred, tree, tol):
    """Nearest detection of each predicted position within ``tol`` (one-to-one)."""
    if tree is None:
        return np.full(len(pred), -1)
    dist, idx = tree.query(pred, distance_upper_bound=tol)
    idx = np.where(np.isfinite(dist), idx, -1)
    # keep only the closest claimant of a detection
    order = np.argsort(dist)
    taken = set()
    out = np.full(len(pred), -1)
    for i in order:
        j = idx[i]
        if j >= 0 and j not in taken:
            taken.add(j)
            out[i] = j
    return out


def _per_axis_fit(index, base_coord, det_coord, mask):
    """Per-column (or per-row) position of the grid model.

    A level (column or row) with matched detections sits at their median;
    the offsets from ``base_coord`` (nominal + batch shift) of the levels
    without detections are interpolated linearly over the level index
    (constant beyond the ends), so missing columns/rows follow their
    neighbours' drift.
    """
    levels = np.unique(index)
    base = np.array([np.median(base_coord[index == lv]) for lv in levels])
    off = np.full(len(levels), np.nan)
    for k, lv in enumerate(levels):
        sel = mask & (index == lv)
        if sel.any():
            off[k] = np.median(det_coord[sel]) - base[k]
    good = np.isfinite(off)
    if good.any():
        off = np.interp(levels, levels[good], off[good])
    else:
        off = np.zeros(len(levels))
    return levels, base + off


def _grid_tolerances(spacing, radius):
    """Search radius clamped below half the spacing, and the vote and match tolerances (px)."""
    if np.isfinite(spacing):
        if radius >= 0.5 * spacing:
            log.warning("search radius %.1f px clamped below half the spacing (%.1f px): a larger "
                        "batch shift is ambiguous on a grid that neighbouring batches continue",
                        radius, 0.5 * spacing)
            radius = 0.49 * spacing
        vote_tol, match_tol = 0.25 * spacing, spacing / 3.0
    else:
        vote_tol = match_tol = max(radius, 1.0)
    return radius, vote_tol, match_tol


def _vote_translation(nxy, dxy, tree, radius, vote_tol):
    """Batch shift ``[dx, dy]`` (px) that brings the most nominal indents onto detections.

    Candidates are the nominal -> detection vectors within ``radius``; the
    winner is refined to the median offset of the indents it matches.
    """
    shift = np.zeros(2)
    if tree is not None and len(nxy):
        pairs = cKDTree(nxy).query_ball_tree(tree, r=radius)
        cands = [dxy[j] - nxy[i] for i, js in enumerate(pairs) for j in js]
        if cands:
            cands = np.unique(np.round(np.array(cands), 1), axis=0)
            best = (-1, np.inf, np.inf)
            for v in cands:
                dist, _ = tree.query(nxy + v, distance_upper_bound=vote_tol)
                ok = np.isfinite(dist)
                key = (int(ok.sum()), float(dist[ok].sum()), float(np.hypot(*v)))
                if key[0] > best[0] or (key[0] == best[0] and key[1:] < best[1:]):
                    best, shift = key, v
            m = _match(nxy + shift, tree, vote_tol)
            if (m >= 0).any():
                shift = np.median(dxy[m[m >= 0]] - nxy[m >= 0], axis=0)
    return shift


def _fit_grid(matched, nxy, dxy, shift, cols, rows):
    """Grid model fitted to the matched detections.

    Returns ``(params, pred, det)``: ``(col levels, column x, row levels,
    row y)``, the model position of each indent (N, 2) and its matched
    detection (N, 2, NaN where unmatched).
    """
    n = len(nxy)
    mask = matched >= 0
    det = np.full((n, 2), np.nan)
    det[mask] = dxy[matched[mask]]
    base = nxy + shift
    cl, cx = _per_axis_fit(cols, base[:, 0], np.nan_to_num(det[:, 0]), mask)
    rl, ry = _per_axis_fit(rows, base[:, 1], np.nan_to_num(det[:, 1]), mask)
    px = cx[np.searchsorted(cl, cols)]
    py = ry[np.searchsorted(rl, rows)]
    return (cl, cx, rl, ry), np.column_stack([px, py]), det


def _reject_outliers(matched, pred, det, outlier_k):
    """``matched`` with matches beyond ``outlier_k`` robust SDs (1.4826 MAD, floor 0.5 px) set to -1."""
    mask = matched >= 0
    if mask.sum() < 3:
        return matched
    r = det[mask] - pred[mask]
    sig = 1.4826 * np.median(np.abs(r - np.median(r, axis=0)), axis=0)
    sig = np.maximum(sig, 0.5)
    bad = np.any(np.abs(r) > outlier_k * sig, axis=1)
    out = matched.copy()
    out[np.flatnonzero(mask)[bad]] = -1
    return out


def _grid_model(params, shift, resid, mask, n, spacing):
    """The model dict of :func:`fit_batch_grid` from the fitted levels and the residuals (px)."""
    cl, cx, rl, ry = params
    rms = float(np.sqrt(np.mean(resid[mask] ** 2))) if mask.any() else float("nan")
    return {
        "x0": float(cx[0]) if len(cx) else float("nan"),
        "y0": float(ry[0]) if len(ry) else float("nan"),
        "cols": [int(c) for c in cl], "column_x_px": [float(v) for v in cx],
        "rows": [int(r) for r in rl], "row_y_px": [float(v) for v in ry],
        "translation_px": [float(shift[0]), float(shift[1])],
        "rms_residual_px": rms, "n_detected": int(mask.sum()), "n_indents": int(n),
        "spacing_px": spacing,
    }


def fit_batch_grid(nominal, detections, search_radius_px, spacing_px=None, outlier_k=4.0):
    """Fit the batch grid model to detected marks.

    (a) The batch translation is found by voting: every vector from a nominal
    indent to a detection within ``search_radius_px`` is a candidate; the
    candidate that brings the most nominal indents within a quarter spacing of
    a detection wins (ties: the smallest summed distance). The search radius
    is clamped below half the spacing, so that the vote cannot jump to a
    neighbouring batch that continues the grid. (b) Each indent is matched to
    the nearest detection within a third of the spacing (one-to-one).
    (c) The grid model of the seed paper (eqs. 3a/3b), ``x_ij = x0 +
    sum_{k<=j} dx_k``, ``y_ij = y0 + sum_{k<=i} dy_k``, is fitted robustly:
    each column's x (row's y) is the median over its matched detections;
    columns/rows without any are interpolated linearly (constant offset
    beyond the ends). (d) Matches whose residual exceeds ``outlier_k`` robust
    standard deviations (1.4826 MAD, floor 0.5 px) are rejected, indents are
    re-matched to the model and the model is refitted once.

    Parameters
    ----------
    nominal : pandas.DataFrame
        One row per indent: ``indent, row, col`` (int) and ``x_px, y_px``
        (nominal position, image pixels).
    detections : pandas.DataFrame
        Columns ``x_px, y_px`` (detected mark centroids, same pixel frame).
    search_radius_px : float
        Largest batch translation (origin error) to consider, in px.
    spacing_px : float, optional
        Nominal grid spacing in px; estimated from ``nominal`` if omitted.
    outlier_k : float
        Rejection threshold in robust standard deviations.

    Returns
    -------
    located : pandas.DataFrame
        ``indent, row, col, x_px, y_px`` (grid-model position, all indents),
        ``detected`` (bool: a detection was matched and kept),
        ``residual_px`` (distance detection - model, NaN if not detected).
    model : dict
        ``x0, y0`` (px, model position of column 0 / row 0 as listed),
        ``cols``, ``column_x_px``, ``rows``, ``row_y_px`` (lists),
        ``translation_px`` ([dx, dy], the voted batch shift),
        ``rms_residual_px``, ``n_detected``, ``n_indents``, ``spacing_px``.

    Raises
    ------
    InputError
        If ``nominal`` lacks a required column.
    """
    need = ["indent", "row", "col", "x_px", "y_px"]
    missing = [c for c in need if c not in nominal.columns]
    if missing:
        raise InputError(f"fit_batch_grid: nominal table lacks column(s) {missing}")
    nom = nominal.reset_index(drop=True)
    n = len(nom)
    nxy = nom[["x_px", "y_px"]].to_numpy(float)
    dxy = detections[["x_px", "y_px"]].to_numpy(float) if len(detections) else np.empty((0, 2))
    spacing = float(spacing_px) if spacing_px else _spacing_from_nominal(nom)
    radius, vote_tol, match_tol = _grid_tolerances(spacing, float(search_radius_px))
    tree = cKDTree(dxy) if len(dxy) else None

    shift = _vote_translation(nxy, dxy, tree, radius, vote_tol)  # (a)
    cols = nom["col"].to_numpy()
    rows = nom["row"].to_numpy()
    matched = _match(nxy + shift, tree, match_tol)  # (b)
    params, pred, det = _fit_grid(matched, nxy, dxy, shift, cols, rows)  # (c)
    matched = _reject_outliers(matched, pred, det, outlier_k)  # (d)
    params, pred, det = _fit_grid(matched, nxy, dxy, shift, cols, rows)
    matched = _match(pred, tree, match_tol)  # re-match to the model, refit once
    params, pred, det = _fit_grid(matched, nxy, dxy, shift, cols, rows)
    matched = _reject_outliers(matched, pred, det, outlier_k)
    params, pred, det = _fit_grid(matched, nxy, dxy, shift, cols, rows)

    mask = matched >= 0
    resid = np.full(n, np.nan)
    resid[mask] = np.hypot(*(det[mask] - pred[mask]).T)
    located = pd.DataFrame({
        "indent": nom["indent"].to_numpy(), "row": rows, "col": cols,
        "x_px": pred[:, 0], "y_px": pred[:, 1], "detected": mask, "residual_px": resid,
    })
    model = _grid_model(params, shift, resid, mask, n, spacing)
    log.info("grid fit: %d/%d indents detected, shift (%.1f, %.1f) px, residual RMS %.2f px",
             model["n_detected"], n, shift[0], shift[1], model["rms_residual_px"])
    return located, model


def indenter_to_pixels(x_um, y_um, pixel_size_nm, origin_um, indenter_offset_um, indenter_axes):
    """Mosaic pixel of indenter coordinates.

    ``stage = (sx * X + dx, sy * Y + dy)``; ``p = (stage - origin) * 1000 / pixel_size_nm``.

    Parameters
    ----------
    x_um, y_um : array-like, shape (N,)
        Indenter coordinates in um.
    pixel_size_nm : float
    origin_um : sequence of 2 float
        Stage position of the mosaic's pixel [0, 0].
    indenter_offset_um : sequence of 2 float
        ``[dx, dy]``.
    indenter_axes : sequence of 2 int
        ``[sx, sy]``, each +1 or -1.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``x_px, y_px``, float.

    Raises
    ------
    InputError
        If the axes are not +-1 or the offset/origin are not pairs.
    """
    axes = np.asarray(indenter_axes, float).ravel()
    off = np.asarray(indenter_offset_um, float).ravel()
    org = np.asarray(origin_um, float).ravel()
    if axes.size != 2 or not np.all(np.isin(axes, (-1.0, 1.0))):
        raise InputError(f"indenter_axes must be [sx, sy] with each +1 or -1, got {indenter_axes!r}")
    if off.size != 2 or org.size != 2:
        raise InputError(f"indenter_offset_um and origin_um must be [x, y] pairs, got "
                         f"{indenter_offset_um!r}, {origin_um!r}")
    k = 1000.0 / float(pixel_size_nm)
    x = (axes[0] * np.asarray(x_um, float) + off[0] - org[0]) * k
    y = (axes[1] * np.asarray(y_um, float) + off[1] - org[1]) * k
    return x, y


def _batch_name(indents, batch):
    if batch is not None:
        return str(batch)
    if "batch" in indents.columns and len(indents):
        return str(indents["batch"].iloc[0])
    return "?"


def grid_indices(indents, spacing_um=None, batch=None):
    """Row and column of each indent from its nominal indenter coordinates.

    ``col = round((X - min X) / s)``, ``row = round((Y - min Y) / s)``
    (export convention ``X = X0 + j s``, ``Y = Y0 + i s``).

    Parameters
    ----------
    indents : pandas.DataFrame
        Standard indent table with ``x_um, y_um`` (indenter coordinates).
    spacing_um : float, optional
        Nominal spacing; if omitted, the median nearest-neighbour distance.
    batch : str, optional
        Batch name for messages.

    Returns
    -------
    row, col : numpy.ndarray of int
    spacing_um : float
        NaN for a single indent.

    Raises
    ------
    InputError
        If two indents fall on the same grid node (the export is not a grid
        at that spacing) or the spacing is not positive.
    """
    name = _batch_name(indents, batch)
    xy = indents[["x_um", "y_um"]].to_numpy(float)
    if len(xy) < 2:
        return np.zeros(len(xy), int), np.zeros(len(xy), int), float(spacing_um or np.nan)
    if spacing_um is None:
        d, _ = cKDTree(xy).query(xy, k=2)
        spacing_um = float(np.median(d[:, 1]))
    if not np.isfinite(spacing_um) or spacing_um <= 0:
        raise InputError(f"batch {name}: indent spacing must be positive, got {spacing_um!r} "
                         "(duplicate X, Y positions in the export?)")
    fx = (xy[:, 0] - xy[:, 0].min()) / spacing_um
    fy = (xy[:, 1] - xy[:, 1].min()) / spacing_um
    col, row = np.round(fx).astype(int), np.round(fy).astype(int)
    off = max(np.abs(fx - col).max(), np.abs(fy - row).max())
    if off > 0.25:
        log.warning("batch %s: nominal positions deviate up to %.2f spacings from a regular grid "
                    "at %.3f um", name, off, spacing_um)
    node = pd.Series(list(zip(row, col)))
    dup = node.duplicated(keep=False)
    if dup.any():
        ids = indents["indent"].to_numpy()[dup.to_numpy()][:6] if "indent" in indents else np.flatnonzero(dup)[:6]
        d, _ = cKDTree(xy).query(xy, k=2)
        nn = float(np.median(d[:, 1]))
        raise InputError(
            f"batch {name}: indents {[v.item() if hasattr(v, 'item') else v for v in ids]} fall on "
            f"the same grid node at a spacing of {spacing_um:.3g} um, while the median distance "
            f"between neighbouring indents in the export is {nn:.3g} um. If the export's X, Y are "
            "not in um (e.g. mm), set the config's `indentation.units` for x and y; otherwise set "
            "`indentation.spacing_um` to the grid's spacing")
    return row, col, float(spacing_um)


def _check_indents(indents, name, need):
    missing = [c for c in need if c not in indents.columns]
    if missing:
        raise InputError(f"batch {name}: indent table lacks column(s) {missing}; "
                         f"found {list(indents.columns)}")
    if len(indents) == 0:
        raise InputError(f"batch {name}: indent table is empty")


def _finish(indents, row, col, x_px, y_px, detected, residual, pixel_size_nm, shape, name):
    ps_um = float(pixel_size_nm) / 1000.0
    out = pd.DataFrame({
        "batch": name, "indent": indents["indent"].to_numpy(), "row": row, "col": col,
        "x_px": x_px, "y_px": y_px, "x_um": x_px * ps_um, "y_um": y_px * ps_um,
        "detected": detected, "residual_px": residual,
    })
    if shape is None:
        out["inside"] = True
    else:
        out["inside"] = (x_px >= 0) & (y_px >= 0) & (x_px <= shape[1] - 1) & (y_px <= shape[0] - 1)
    for c in ("E_GPa", "H_GPa"):
        out[c] = indents[c].to_numpy(float) if c in indents.columns else np.nan
    return out[LOCATED_COLUMNS]


def locate_nominal(indents, pixel_size_nm, origin_um, indenter_offset_um, indenter_axes,
                   spacing_um=None, shape=None, batch=None):
    """Indent positions from the nominal frame mapping alone (no after-image).

    For a single-image input with virtual indentation: each indent sits at
    :func:`indenter_to_pixels` of its export position.

    Parameters
    ----------
    indents : pandas.DataFrame
        Standard indent table (``indent, x_um, y_um``, optionally
        ``batch, E_GPa, H_GPa``).
    pixel_size_nm : float
    origin_um : sequence of 2 float
        Stage position of the image's pixel [0, 0].
    indenter_offset_um, indenter_axes : sequence of 2
        Frame mapping (see module docstring).
    spacing_um : float, optional
        Grid spacing for ``row, col`` (estimated if omitted).
    shape : tuple of int, optional
        ``(H, W)`` of the image, for the ``inside`` flag.
    batch : str, optional

    Returns
    -------
    pandas.DataFrame
        Columns ``LOCATED_COLUMNS``; ``detected`` False, ``residual_px`` NaN.

    Raises
    ------
    InputError
        On missing columns or a bad frame mapping.
    """
    name = _batch_name(indents, batch)
    _check_indents(indents, name, ["indent", "x_um", "y_um"])
    row, col, _ = grid_indices(indents, spacing_um, name)
    x, y = indenter_to_pixels(indents["x_um"], indents["y_um"], pixel_size_nm, origin_um,
                              indenter_offset_um, indenter_axes)
    n = len(indents)
    return _finish(indents, row, col, x, y, np.zeros(n, bool), np.full(n, np.nan),
                   pixel_size_nm, shape, name)


def _shift_px(after_to_before):
    """``(dx, dy)`` (px, float) of an after -> before shift given as a dict or a pair."""
    if isinstance(after_to_before, dict):
        return float(after_to_before["dx_px"]), float(after_to_before["dy_px"])
    sx, sy = (float(v) for v in after_to_before)
    return sx, sy


def _mark_side_px(indents, pixel_size_nm, name):
    """Expected mark side (px) from the batch's median ``depth_nm``; raises InputError without one."""
    depth = float(np.nanmedian(indents["depth_nm"].to_numpy(float)))
    if not np.isfinite(depth) or depth <= 0:
        raise InputError(f"batch {name}: no valid depth_nm to size the indent marks")
    return berkovich_side_px(depth, pixel_size_nm)


def _region_of_interest(nx, ny, margin, shape, side, name):
    """Box ``(x0, y0, x1, y1)`` (px) of the nominal positions grown by ``margin``, clipped to ``shape``.

    Raises InputError when less than a mark side of it lies in the mosaic.
    """
    H, W = shape
    x0, x1 = max(0, int(np.floor(nx.min() - margin))), min(W, int(np.ceil(nx.max() + margin)) + 1)
    y0, y1 = max(0, int(np.floor(ny.min() - margin))), min(H, int(np.ceil(ny.max() + margin)) + 1)
    if x1 - x0 < side or y1 - y0 < side:
        raise InputError(
            f"batch {name}: nominal positions (x {nx.min():.0f}..{nx.max():.0f}, y {ny.min():.0f}.."
            f"{ny.max():.0f} px) lie outside the after-mosaic ({W} x {H} px); "
            "check indenter_offset_um / indenter_axes")
    return x0, y0, x1, y1


def _marks_in_region(after, roi, side, spacing_px, threshold):
    """Marks detected in the ``roi`` of ``after``, positions in after-mosaic px."""
    x0, y0, x1, y1 = roi
    region = np.asarray(after[y0:y1, x0:x1])
    min_dist = 1.5 * side if spacing_px is None else min(1.5 * side, 0.6 * spacing_px)
    det = detect_marks(region, side, threshold=threshold, min_distance_px=max(2, int(min_dist)))
    det["x_px"] += x0
    det["y_px"] += y0
    return det


def _before_frame_model(model, name, sx, sy, ps, side, spacing_um, n_inside, n_marks, roi):
    """Update the grid model (after-mosaic px) in place into before-mosaic px, with batch facts."""
    ps_um = ps / 1000.0
    model.update({
        "batch": name,
        "x0": model["x0"] + sx, "y0": model["y0"] + sy,
        "column_x_px": [v + sx for v in model["column_x_px"]],
        "row_y_px": [v + sy for v in model["row_y_px"]],
        "frame": "before-mosaic px",
        "rms_residual_um": model["rms_residual_px"] * ps_um,
        "translation_um": [v * ps_um for v in model["translation_px"]],
        "after_to_before_px": [sx, sy], "side_px": float(side), "spacing_um": spacing_um,
        "pixel_size_nm": ps, "n_inside": n_inside, "n_marks_found": int(n_marks),
        "roi_after_px": list(roi),
    })


def locate_batch(after, indents, pixel_size_nm, before_origin_um, indenter_offset_um, indenter_axes,
                 after_to_before, search_radius_um=4.0, spacing_um=None, before_shape=None,
                 threshold=0.6, min_detected_fraction=0.5, batch=None):
    """Locate one indentation batch from its marks in the after-mosaic.

    Nominal positions follow from the export and the frame mapping
    (:func:`indenter_to_pixels`) in the before-mosaic's stage frame, the
    reference frame of ``indenter_offset_um``; they are carried into the
    after-mosaic by the measured ``after_to_before`` shift, so that the
    after-mosaic's own stage error does not add to the batch origin error.
    The region of interest (batch bounding box + search radius + mark size)
    is read from ``after``;
    marks are found with :func:`detect_marks` (side from the batch's median
    depth), the grid model is fitted with :func:`fit_batch_grid`, and the
    fitted positions are mapped to the before-mosaic by ``after_to_before``.

    Parameters
    ----------
    after : array-like, shape (Ha, Wa)
        After-indentation mosaic (zarr array; only the region of interest
        is read).
    indents : pandas.DataFrame
        Standard indent table of one batch: ``indent, x_um, y_um`` (nominal
        indenter coordinates, um), ``depth_nm``; ``batch, E_GPa, H_GPa``
        are carried along.
    pixel_size_nm : float
    before_origin_um : sequence of 2 float
        Stage position of the before-mosaic's pixel [0, 0].
    indenter_offset_um, indenter_axes : sequence of 2
        Indenter -> stage mapping (stage frame of the before-mosaic).
    after_to_before : dict or sequence
        ``{"dx_px": .., "dy_px": ..}`` (or ``(dx, dy)``) from
        :func:`register_mosaics`.
    search_radius_um : float
        Largest batch origin error searched.
    spacing_um : float, optional
        Nominal spacing (estimated from the export if omitted).
    before_shape : tuple of int, optional
        ``(H, W)`` of the before-mosaic for the ``inside`` flag.
    threshold : float
        Detection threshold (masked normalised cross-correlation, see
        :func:`detect_marks`).
    min_detected_fraction : float
        Fewest detected indents, as a fraction, for the batch to be accepted.
    batch : str, optional
        Batch name (default: the ``batch`` column).

    Returns
    -------
    located : pandas.DataFrame
        ``LOCATED_COLUMNS``: positions in before-mosaic px and
        ``x_um = x_px * pixel_size_nm / 1000``; ``inside`` False where the
        position falls outside the before-mosaic.
    model : dict
        :func:`fit_batch_grid`'s model in before-mosaic px, plus ``batch``,
        ``rms_residual_um``, ``translation_um``, ``after_to_before_px``,
        ``side_px``, ``spacing_um``, ``n_inside``, ``n_marks_found``.

    Raises
    ------
    InputError
        On missing columns, if the batch lies outside the after-mosaic, if
        fewer than ``min_detected_fraction`` of the indents are detected, or
        if no located indent lies inside the before-mosaic.
    """
    name = _batch_name(indents, batch)
    _check_indents(indents, name, ["indent", "x_um", "y_um", "depth_nm"])
    indents = indents.reset_index(drop=True)
    ps = float(pixel_size_nm)
    row, col, spacing_um = grid_indices(indents, spacing_um, name)
    sx, sy = _shift_px(after_to_before)
    bx, by = indenter_to_pixels(indents["x_um"], indents["y_um"], ps, before_origin_um,
                                indenter_offset_um, indenter_axes)
    nx, ny = bx - sx, by - sy  # nominal after-mosaic px
    side = _mark_side_px(indents, ps, name)
    search_px = float(search_radius_um) * 1000.0 / ps
    spacing_px = spacing_um * 1000.0 / ps if np.isfinite(spacing_um) else None
    roi = _region_of_interest(nx, ny, search_px + side + 10.0, after.shape, side, name)
    det = _marks_in_region(after, roi, side, spacing_px, threshold)
    nominal = pd.DataFrame({"indent": indents["indent"].to_numpy(), "row": row, "col": col,
                            "x_px": nx, "y_px": ny})
    fitted, model = fit_batch_grid(nominal, det, search_px, spacing_px=spacing_px)
    n = len(indents)
    if model["n_detected"] < min_detected_fraction * n:
        raise InputError(
            f"batch {name}: only {model['n_detected']} of {n} indent marks found in the after-mosaic "
            f"(need {min_detected_fraction:.0%}); check the after-image, indenter_offset_um, "
            f"search_radius_um ({search_radius_um} um) and the depths (mark side {side:.0f} px)")
    located = _finish(indents, row, col, fitted["x_px"].to_numpy() + sx,
                      fitted["y_px"].to_numpy() + sy, fitted["detected"].to_numpy(),
                      fitted["residual_px"].to_numpy(), ps, before_shape, name)
    n_inside = int(located["inside"].sum())
    if n_inside == 0:
        raise InputError(f"batch {name}: the fitted batch lies outside the before-mosaic "
                         f"({before_shape}); check the after->before shift and the frame mapping")
    if n_inside < n:
        log.warning("batch %s: %d of %d indents fall outside the before-mosaic", name, n - n_inside, n)
    _before_frame_model(model, name, sx, sy, ps, side, spacing_um, n_inside, len(det), roi)
    return located, model
