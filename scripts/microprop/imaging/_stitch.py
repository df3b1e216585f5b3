"""Stitching of overlapping BSE tiles into one chunked mosaic.

After the tile set is read and validated (:func:`read_layout`, in
``_tiles``), stitching has three steps, each a function on tables and arrays:

1. :func:`register_pairs` measures the offset between each pair of
   neighbouring tiles (nominal footprints overlap, :func:`neighbour_pairs`)
   by normalised cross-correlation (NCC) of their overlap strips
   (:func:`register_pair`, with :func:`skimage.feature.match_template`),
   searched only within the stage error margin, with a parabolic sub-pixel
   refinement of the peak.
2. :func:`solve_positions` places all tiles by weighted linear least squares
   over the pairwise offsets (the global optimisation of Preibisch et al.
   2009, Bioinformatics 25:1463, and of MIST, Chalfoun et al. 2017, Sci. Rep.
   7:4988, without their non-linear parts), with robust (Cauchy)
   reweighting passes. The gauge is fixed per connected group of tiles: the
   mean placed position equals the mean nominal position.
3. :func:`write_mosaic` writes the mosaic chunk by chunk into a zarr store,
   reading only the tiles that overlap a chunk (a small LRU cache), placed at
   rounded integer positions and blended by linear feathering
   (:func:`feather_weights`).

:func:`stitch` runs all of it and writes the mosaic and the per-tile table
atomically.

Frames: a tile's nominal stage position ``(x_um, y_um)`` is the stage
position of its pixel ``[0, 0]``; ``x_um * 1000 / pixel_size_nm`` is the
same position in "stage pixels". The mosaic attribute ``origin_um`` is the
stage position of mosaic pixel ``[0, 0]``, so that
``stage_um = origin_um + p_px * pixel_size_nm / 1000``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..io import atomic_path, create_image_store, iter_chunks, write_table
from ..progress import progress
from ._tiles import _tile_shape, _TileCache, load_tile, read_layout

log = logging.getLogger(__name__)

TABLE_COLUMNS = ("tile", "row", "col", "x_px", "y_px", "nominal_x_px", "nominal_y_px",
                 "residual_px", "n_links", "x_um", "y_um", "placed_x_px", "placed_y_px", "group",
                 "placement")

#: Smallest template edge (px) that registration accepts: the overlap minus
#: the search margin must leave at least this many pixels.
MIN_TEMPLATE_PX = 8


LINK_COLUMNS = ("tile_a", "tile_b", "nominal_dx_px", "nominal_dy_px", "dx_px", "dy_px",
                "quality", "weight", "valid", "reason")


def _check_positive(value, name):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name}={value!r}: expected a positive number") from None
    if not np.isfinite(v) or v <= 0:
        raise InputError(f"{name}={value!r}: expected a positive number")
    return v


def _nominal_px(layout, pixel_size_nm):
    """Nominal tile positions in stage pixels, shape (n, 2) as (x, y)."""
    return layout[["x_um", "y_um"]].to_numpy(float) * 1000.0 / float(pixel_size_nm)


def _subpixel(c, i):
    """Parabolic vertex offset of 1D samples c around index i (in -0.5..0.5)."""
    if i <= 0 or i >= len(c) - 1:
        return 0.0
    a, b, d = c[i - 1], c[i], c[i + 1]
    den = a - 2 * b + d
    if not np.isfinite(den) or den >= 0:
        return 0.0
    return float(np.clip(0.5 * (a - d) / den, -0.5, 0.5))


def overlap_ncc(a, b, dx, dy):
    """Pearson correlation of two tiles over their overlap.

    Parameters
    ----------
    a, b : numpy.ndarray, shape (H, W)
        Tiles; ``b``'s pixel ``[0, 0]`` lies on ``a``'s pixel ``[dy, dx]``.
    dx, dy : int
        Integer offset of ``b`` relative to ``a`` in px.

    Returns
    -------
    float
        Correlation coefficient in [-1, 1]; 0 when the overlap is empty or
        flat.
    """
    ha, wa = a.shape
    hb, wb = b.shape
    x0, x1 = max(0, dx), min(wa, dx + wb)
    y0, y1 = max(0, dy), min(ha, dy + hb)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return 0.0
    pa = a[y0:y1, x0:x1].astype(np.float64).ravel()
    pb = b[y0 - dy:y1 - dy, x0 - dx:x1 - dx].astype(np.float64).ravel()
    pa -= pa.mean()
    pb -= pb.mean()
    den = np.sqrt((pa @ pa) * (pb @ pb))
    return float(pa @ pb / den) if den > 0 else 0.0


def register_pair(a, b, nominal_dx, nominal_dy, margin_px, min_template_px=8, refine="phase"):
    """Offset of tile ``b`` relative to tile ``a`` by NCC template matching.

    The part of ``b`` inside the nominal overlap (shrunk where the search
    would leave ``a``) is the template; it is searched in ``a`` over all
    shifts within ``margin_px`` of the nominal offset with
    :func:`skimage.feature.match_template` (normalised cross-correlation,
    Lewis 1995, "Fast normalized cross-correlation"), so tile brightness and
    contrast drift do not matter. The integer peak is refined to sub-pixel by
    a parabola through the peak and its neighbours along each axis.

    Parameters
    ----------
    a, b : numpy.ndarray, shape (H, W)
        Two tiles of the same shape (any real dtype).
    nominal_dx, nominal_dy : float
        Nominal position of ``b``'s pixel ``[0, 0]`` in ``a``'s pixels.
    margin_px : int
        Largest deviation searched from the nominal offset, per axis (px).
    min_template_px : int
        Smallest template edge; a smaller overlap returns ``None``.
    refine : {"phase", "parabola"}
        Sub-pixel estimate: ``parabola`` through the NCC peak and its
        neighbours; ``phase`` (default) then refines it by upsampled phase
        correlation of the overlap aligned at the integer peak
        (:func:`_refine_phase`), less biased on sharp microstructures.

    Returns
    -------
    dict or None
        ``dx, dy`` (measured offset of ``b`` relative to ``a``, px, float),
        ``quality`` (Pearson correlation of the two tiles over their overlap
        at the rounded measured offset), ``at_limit`` (bool: the peak lies on
        the border of the search range, so the true offset may lie beyond).
        ``None`` when the overlap is too small for the margin.
    """
    from skimage.feature import match_template

    h, w = a.shape
    m = int(max(0, np.ceil(margin_px)))
    ndx, ndy = int(round(nominal_dx)), int(round(nominal_dy))
    # template region in a's coordinates: inside b, and inside a with the margin
    tx0, tx1 = max(ndx, m), min(ndx + w, w - m)
    ty0, ty1 = max(ndy, m), min(ndy + h, h - m)
    if tx1 - tx0 < min_template_px or ty1 - ty0 < min_template_px:
        return None
    tmpl = b[ty0 - ndy:ty1 - ndy, tx0 - ndx:tx1 - ndx].astype(np.float32)
    search = a[ty0 - m:ty1 + m, tx0 - m:tx1 + m].astype(np.float32)
    if tmpl.std() == 0 or search.std() == 0:
        return {"dx": float(ndx), "dy": float(ndy), "quality": 0.0, "at_limit": False}
    ncc = match_template(search, tmpl)  # shape (2m+1, 2m+1); index m = nominal
    ncc = np.nan_to_num(ncc, nan=-1.0)
    iy, ix = np.unravel_index(int(np.argmax(ncc)), ncc.shape)
    ey = iy - m + _subpixel(ncc[:, ix], iy)
    ex = ix - m + _subpixel(ncc[iy, :], ix)
    at_limit = m > 0 and (iy in (0, 2 * m) or ix in (0, 2 * m))
    dx, dy = ndx + ex, ndy + ey
    if refine == "phase" and not at_limit:
        dx, dy = _refine_phase(a, b, int(ndx + ix - m), int(ndy + iy - m), dx, dy)
    q = overlap_ncc(a, b, int(round(dx)), int(round(dy)))
    return {"dx": float(dx), "dy": float(dy), "quality": q, "at_limit": bool(at_limit)}


def _refine_phase(a, b, dx, dy, fallback_dx, fallback_dy, upsample=50):
    """Sub-pixel offset by upsampled phase correlation of the overlap at the integer offset.

    :func:`skimage.registration.phase_cross_correlation` (Guizar-Sicairos et
    al. 2008, Opt. Lett. 33:156) on the two tiles' overlap, aligned at the
    integer NCC peak ``(dx, dy)``, mean-subtracted and Tukey-windowed; the
    residual shift it finds (within one pixel, else the parabolic estimate is
    kept) is added.
    """
    from skimage.registration import phase_cross_correlation

    h, w = a.shape
    x0, x1 = max(0, dx), min(w, dx + b.shape[1])
    y0, y1 = max(0, dy), min(h, dy + b.shape[0])
    if x1 - x0 < 8 or y1 - y0 < 8:
        return fallback_dx, fallback_dy
    pa = a[y0:y1, x0:x1].astype(np.float64)
    pb = b[y0 - dy:y1 - dy, x0 - dx:x1 - dx].astype(np.float64)
    # a Tukey window (cosine tapers over the outer eighth of each side): the strip's edges are no
    # periodic boundary, and their leakage biases the peak; a full Hann window loses too much of
    # a narrow strip (measured: benchmarks/stitch_accuracy.py and the demo's validation)
    from scipy.signal.windows import tukey

    win = np.outer(tukey(pa.shape[0], 0.25), tukey(pa.shape[1], 0.25))
    shift, _, _ = phase_cross_correlation((pa - pa.mean()) * win, (pb - pb.mean()) * win,
                                          upsample_factor=upsample, normalization=None)
    if not np.all(np.isfinite(shift)) or np.max(np.abs(shift)) > 1.0:
        return fallback_dx, fallback_dy
    return dx + float(shift[1]), dy + float(shift[0])


def neighbour_pairs(layout, tile_shape, pixel_size_nm, min_overlap_frac=0.02):
    """Pairs of tiles whose nominal footprints overlap.

    Parameters
    ----------
    layout : pandas.DataFrame
        From :func:`read_layout`.
    tile_shape : tuple of int
        ``(H, W)`` px.
    pixel_size_nm : float
    min_overlap_frac : float
        Smallest overlap area as a fraction of a tile's area; corner
        (diagonal) contacts below it are left out.

    Returns
    -------
    list of tuple (int, int, float, float)
        ``(i, j, dx, dy)``: row indices into ``layout`` with ``i < j`` and the
        nominal offset of tile ``j`` relative to tile ``i`` in px.
    """
    h, w = tile_shape
    pos = _nominal_px(layout, pixel_size_nm)
    pairs = []
    for i in range(len(pos)):
        d = pos[i + 1:] - pos[i]
        ox = w - np.abs(d[:, 0])
        oy = h - np.abs(d[:, 1])
        ok = (ox > 0) & (oy > 0) & (ox * oy >= min_overlap_frac * h * w)
        for k in np.nonzero(ok)[0]:
            pairs.append((i, i + 1 + int(k), float(d[k, 0]), float(d[k, 1])))
    return pairs


def register_pairs(layout, folder=None, pixel_size_nm=None, max_stage_error_um=5.0,
                   min_quality=0.25, min_overlap_frac=0.02, cache_size=8):
    """Measure the offsets between all neighbouring tiles.

    Parameters
    ----------
    layout : pandas.DataFrame
        From :func:`read_layout`.
    folder : path-like, optional
        Tile folder; defaults to ``layout.attrs["folder"]``.
    pixel_size_nm : float
        Pixel size (nm/px), same in x and y.
    max_stage_error_um : float
        Largest error (um, per axis) of the offset between two neighbouring
        tiles relative to the nominal layout. The search covers it; a link
        whose best match lies at its border is dropped.
    min_quality : float
        Links whose overlap correlation is below this are dropped.
    min_overlap_frac : float
        See :func:`neighbour_pairs`.
    cache_size : int
        Tiles held in memory at once.

    Returns
    -------
    pandas.DataFrame
        One row per neighbouring pair, columns ``tile_a, tile_b``,
        ``nominal_dx_px, nominal_dy_px`` (nominal offset of b relative to a),
        ``dx_px, dy_px`` (measured; NaN when not measured), ``quality``
        (overlap correlation), ``weight`` (least-squares weight, 0 for an
        invalid link), ``valid`` (bool), ``reason`` ("" or why dropped).

    Raises
    ------
    InputError
        If ``pixel_size_nm`` or ``max_stage_error_um`` is not positive/finite.
    """

    pixel_size_nm = _check_positive(pixel_size_nm, "pixel_size_nm")
    if not np.isfinite(max_stage_error_um) or max_stage_error_um < 0:
        raise InputError(f"max_stage_error_um={max_stage_error_um!r}: expected a finite value >= 0")
    folder = Path(folder if folder is not None else layout.attrs["folder"])
    shape = _tile_shape(layout, folder)
    margin = float(max_stage_error_um) * 1000.0 / pixel_size_nm
    pairs = neighbour_pairs(layout, shape, pixel_size_nm, min_overlap_frac)
    cache = _TileCache(folder, cache_size)
    files, ids = list(layout["file"]), list(layout["tile"])
    rows = []
    for i, j, ndx, ndy in progress(pairs, desc="register tiles", unit="pair"):
        rec = dict(tile_a=ids[i], tile_b=ids[j], nominal_dx_px=ndx, nominal_dy_px=ndy,
                   dx_px=np.nan, dy_px=np.nan, quality=0.0, weight=0.0, valid=False, reason="")
        a, b = cache.get(files[i]), cache.get(files[j])
        res = register_pair(a, b, ndx, ndy, margin, min_template_px=MIN_TEMPLATE_PX)
        if res is None:
            rec["reason"] = "overlap too small for the stage error margin"
        else:
            rec.update(dx_px=res["dx"], dy_px=res["dy"], quality=res["quality"])
            dev = max(abs(res["dx"] - ndx), abs(res["dy"] - ndy))
            if res["at_limit"] or dev > margin + 0.5:
                rec["reason"] = f"shift off nominal by >= {dev * pixel_size_nm / 1000:.2f} um"
            elif res["quality"] < min_quality:
                rec["reason"] = f"overlap correlation {res['quality']:.2f} < {min_quality}"
            else:
                rec.update(valid=True, weight=float(res["quality"]))
        if not rec["valid"]:
            log.info("link %s-%s dropped: %s", ids[i], ids[j], rec["reason"])
        rows.append(rec)
    links = pd.DataFrame(rows, columns=list(LINK_COLUMNS))
    links["valid"] = links["valid"].astype(bool)
    log.info("registered %d tile pairs: %d valid (pixel %.4g nm, margin %.1f px)",
             len(links), int(links["valid"].sum()), pixel_size_nm, margin)
    return links


def _lsq_positions(n, ia, ib, d, w, nominal):
    """Weighted least squares of p[ib] - p[ia] = d, gauge: mean per component."""
    from scipy import sparse
    from scipy.sparse.csgraph import connected_components
    from scipy.sparse.linalg import lsqr

    m = len(ia)
    graph = sparse.coo_matrix((np.ones(m), (ia, ib)), shape=(n, n))
    ncomp, comp = connected_components(graph, directed=False)
    sw = np.sqrt(w)
    rows = np.concatenate([np.repeat(np.arange(m), 2), m + comp])
    cols = np.concatenate([np.column_stack([ia, ib]).ravel(), np.arange(n)])
    counts = np.bincount(comp, minlength=ncomp)
    vals = np.concatenate([np.column_stack([-sw, sw]).ravel(), 1.0 / counts[comp]])
    A = sparse.csr_matrix((vals, (rows, cols)), shape=(m + ncomp, n))
    out = np.empty((n, 2))
    for k in range(2):
        gauge = np.bincount(comp, weights=nominal[:, k], minlength=ncomp) / counts
        rhs = np.concatenate([sw * d[:, k], gauge])
        out[:, k] = lsqr(A, rhs, atol=1e-12, btol=1e-12, iter_lim=20 * n + 100)[0]
    return out, comp


def solve_positions(layout, links, pixel_size_nm, robust_iter=5, robust_scale_px=1.5,
                    max_link_residual_px=2.0):
    """Place all tiles by weighted least squares over the pairwise offsets.

    Minimises ``sum_links w_ab |p_b - p_a - d_ab|^2`` over tile positions
    ``p`` (px), separately in x and y (Preibisch et al. 2009, eq. for the
    global optimisation with translation models). Each connected group of
    linked tiles has its mean placed position fixed to its mean nominal
    position; a tile without a valid link keeps its nominal position. Then
    ``robust_iter`` passes of iteratively reweighted least squares multiply
    each link's weight by the Cauchy factor ``1 / (1 + (r / robust_scale_px)^2)``
    of its current residual ``r`` (px), so that a wrong link that other
    links contradict loses its pull (a wrong link in no closed loop of links
    cannot be detected). A link whose residual still exceeds
    ``max_link_residual_px`` is then dropped (``valid`` False in ``links``,
    with its reason) and the tiles are solved again without it, so that the
    groups reported are those of the links the solution trusts.

    Positions are kept to sub-pixel precision: ``x_px, y_px`` are the
    estimates; ``placed_x_px, placed_y_px`` are the whole pixels where
    :func:`write_mosaic` puts each tile (the estimate rounded, so the mosaic
    shows each tile within 0.5 px of its estimate per axis).

    Parameters
    ----------
    layout : pandas.DataFrame
        From :func:`read_layout`.
    links : pandas.DataFrame
        From :func:`register_pairs`; only rows with ``valid`` are used. Links
        the solve drops are marked in place (``valid``, ``weight``, ``reason``).
    pixel_size_nm : float
    robust_iter : int
        Reweighting passes; 0 gives plain weighted least squares.
    robust_scale_px : float
        Residual scale of the Cauchy weights (px).
    max_link_residual_px : float or None
        Links whose residual after the robust passes exceeds this (px) are
        dropped; None keeps them all.

    Returns
    -------
    pandas.DataFrame
        One row per tile in layout order: ``tile, row, col``; ``x_px, y_px``
        (float, estimated position of the tile's pixel ``[0, 0]`` in the
        mosaic frame); ``nominal_x_px, nominal_y_px`` (float, nominal
        position in the same frame); ``residual_px`` (RMS length of the
        misfit vectors of the tile's valid links after the solve; NaN
        without links); ``n_links`` (int); ``x_um, y_um`` (estimated stage
        position of the tile's pixel ``[0, 0]``, um, = ``origin_um + x_px *
        pixel_size``); ``placed_x_px, placed_y_px`` (int, where the mosaic
        puts the tile; the top-left placed edge is 0); ``group`` (int,
        connected group of the trusted link graph, 0 the largest);
        ``placement`` (``"linked"``, or ``"nominal"`` for a tile without a
        trusted link). ``attrs["origin_um"]`` = ``[x, y]`` stage position of
        mosaic pixel ``[0, 0]``; ``attrs["n_groups"]``.
    """
    pixel_size_nm = _check_positive(pixel_size_nm, "pixel_size_nm")
    n = len(layout)
    nominal = _nominal_px(layout, pixel_size_nm)
    index = {t: k for k, t in enumerate(layout["tile"])}
    pos, comp, resid, nlinks = nominal.copy(), np.arange(n), np.full(n, np.nan), np.zeros(n, int)
    valid = links["valid"].astype(bool).to_numpy() if len(links) else np.zeros(0, bool)
    if valid.any():
        rows = np.nonzero(valid)[0]
        pos, comp, r, ia, ib = _robust_solve(links, valid, index, nominal, robust_iter, robust_scale_px)
        if max_link_residual_px is not None and (r > max_link_residual_px).any():
            bad = rows[r > max_link_residual_px]
            for k, rr in zip(bad, r[r > max_link_residual_px]):
                links.loc[links.index[k], ["valid", "weight", "reason"]] = [
                    False, 0.0, f"contradicted by the other links: residual {rr:.2f} px "
                    f"> {max_link_residual_px} px"]
                log.info("link %s-%s dropped: residual %.2f px", links["tile_a"].iloc[k],
                         links["tile_b"].iloc[k], rr)
            valid = links["valid"].astype(bool).to_numpy()
            if valid.any():
                pos, comp, r, ia, ib = _robust_solve(links, valid, index, nominal, robust_iter,
                                                     robust_scale_px)
            else:
                pos, comp, r = nominal.copy(), np.arange(n), np.zeros(0)
        if len(r):
            nlinks = np.bincount(ia, minlength=n) + np.bincount(ib, minlength=n)
            ss = np.bincount(ia, weights=r ** 2, minlength=n) + np.bincount(ib, weights=r ** 2, minlength=n)
            with np.errstate(invalid="ignore", divide="ignore"):
                resid = np.where(nlinks > 0, np.sqrt(ss / np.maximum(nlinks, 1)), np.nan)
            log.info("global solve: %d links, link residual RMS %.3f px, max %.3f px",
                     len(r), float(np.sqrt(np.mean(r ** 2))), float(r.max()))
    group = _rank_groups(comp)
    placed = np.rint(pos).astype(np.int64)
    origin = placed.min(axis=0)
    ps_um = pixel_size_nm / 1000.0
    out = pd.DataFrame({
        "tile": layout["tile"].to_numpy(), "row": layout["row"].to_numpy(), "col": layout["col"].to_numpy(),
        "x_px": np.round(pos[:, 0] - origin[0], 4), "y_px": np.round(pos[:, 1] - origin[1], 4),
        "nominal_x_px": nominal[:, 0] - origin[0], "nominal_y_px": nominal[:, 1] - origin[1],
        "residual_px": resid, "n_links": nlinks.astype(int),
        "x_um": np.round(pos[:, 0] * ps_um, 6), "y_um": np.round(pos[:, 1] * ps_um, 6),
        "placed_x_px": placed[:, 0] - origin[0], "placed_y_px": placed[:, 1] - origin[1],
        "group": group, "placement": np.where(nlinks > 0, "linked", "nominal"),
    })
    out.attrs["origin_um"] = [float(origin[0] * ps_um), float(origin[1] * ps_um)]
    out.attrs["n_groups"] = int(group.max()) + 1 if n else 0
    return out


def _robust_solve(links, valid, index, nominal, robust_iter, robust_scale_px):
    """Least squares over the valid links with Cauchy reweighting.

    Returns positions, groups, and per valid link (in the order of
    ``np.nonzero(valid)[0]``) its residual and tile indices ``ia, ib``.
    """
    n = len(nominal)
    rows = np.nonzero(valid)[0]
    ok = links.iloc[rows]
    ia = ok["tile_a"].map(index).to_numpy(int)
    ib = ok["tile_b"].map(index).to_numpy(int)
    d = ok[["dx_px", "dy_px"]].to_numpy(float)
    w = ok["weight"].to_numpy(float).clip(1e-6, None)
    pos, comp = _lsq_positions(n, ia, ib, d, w, nominal)
    r = np.linalg.norm(pos[ib] - pos[ia] - d, axis=1)
    for _ in range(int(robust_iter)):
        w2 = w / (1.0 + (r / robust_scale_px) ** 2)
        pos, comp = _lsq_positions(n, ia, ib, d, w2, nominal)
        r = np.linalg.norm(pos[ib] - pos[ia] - d, axis=1)
    return pos, comp, r, ia, ib


def _rank_groups(comp):
    """Relabel connected-component ids so that 0 is the largest group (ties: first tile)."""
    comp = np.asarray(comp)
    if not comp.size:
        return comp.astype(int)
    ids, first, counts = np.unique(comp, return_index=True, return_counts=True)
    order = sorted(range(len(ids)), key=lambda k: (-counts[k], first[k]))
    rank = {ids[k]: r for r, k in enumerate(order)}
    return np.array([rank[c] for c in comp], int)


def _describe_group(tiles):
    """Short text of a group of tiles: its size, rows and columns, and up to 6 tile ids."""
    rows, cols = tiles["row"], tiles["col"]
    names = list(tiles["tile"].astype(str))
    shown = ", ".join(names[:6]) + (f", ... ({len(names)} tiles)" if len(names) > 6 else "")
    return (f"{len(names)} tile(s) in rows {rows.min()}-{rows.max()}, cols {cols.min()}-{cols.max()}: "
            f"[{shown}]")


def check_link_graph(table, links, source="tile set", unlinked="error"):
    """Refuse (or report) a tile set whose trusted links do not connect all tiles.

    A connected group of tiles is placed only relative to itself; between
    groups nothing measured fixes the offset, so each group keeps its
    nominal (stage) position and the mosaic may be off by the whole stage
    error there. By default that is an error naming every group and the
    links dropped between groups with their reasons.

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`solve_positions` (``tile, row, col, group, placement``).
    links : pandas.DataFrame
        From :func:`register_pairs` after :func:`solve_positions`.
    source : str
        The tile set's folder, for the message.
    unlinked : {"error", "nominal"}
        ``error``: raise; ``nominal``: log a warning per group and place
        each group at its mean nominal position (the table's ``placement``
        column says which tiles have no trusted link).

    Raises
    ------
    InputError
        If ``unlinked == "error"`` and there is more than one group.
    ValueError
        If ``unlinked`` is not one of the two choices.
    """
    if unlinked not in ("error", "nominal"):
        raise ValueError(f"unlinked={unlinked!r}: expected 'error' or 'nominal'")
    n_groups = int(table["group"].max()) + 1 if len(table) else 0
    if n_groups <= 1:
        return
    groups = [table[table["group"] == g] for g in range(n_groups)]
    where = {t: g for t, g in zip(table["tile"], table["group"])}
    between = links[[where.get(a) != where.get(b) for a, b in zip(links["tile_a"], links["tile_b"])]]
    dropped = [f"{a}-{b}: {r or 'not measured'}" for a, b, r in
               zip(between["tile_a"], between["tile_b"], between["reason"])]
    text = (f"{source}: the trusted tile links fall apart into {n_groups} groups that cannot be "
            f"placed relative to each other:\n  " +
            "\n  ".join(f"group {g}: {_describe_group(t)}" for g, t in enumerate(groups)) +
            "\nlinks dropped between groups" + (f" ({len(dropped)}):\n  " + "\n  ".join(dropped[:12])
                                                 + ("\n  ..." if len(dropped) > 12 else "")
                                                 if dropped else ": none (the tiles do not overlap)"))
    if unlinked == "error":
        raise InputError(
            text + "\nWhat to change: check the overlap and stitching.max_stage_error_um (the links' "
            "reasons say which limit was hit), re-acquire the tiles between the groups, or set "
            "stitching.unlinked: nominal to place each group at its stage position (reported per "
            "tile in the stitch table's placement column).")
    log.warning("%s\nstitching.unlinked is 'nominal': each group keeps its mean stage position; "
                "the mosaic may be off by the stage error between groups.", text)


def check_margin(layout, tile_shape, pixel_size_nm, max_stage_error_um, source="tile set",
                 min_template_px=MIN_TEMPLATE_PX):
    """Check at start that the stage error margin leaves a template in every overlap.

    Registration searches each pairwise offset within ``max_stage_error_um``
    of the nominal one, so the part of the overlap it can match is the
    overlap minus the margin (:func:`register_pair`). The smallest nominal
    overlap of side-by-side neighbours must exceed the margin by at least
    ``min_template_px``.

    Parameters
    ----------
    layout : pandas.DataFrame
    tile_shape : tuple of int
        ``(H, W)`` px.
    pixel_size_nm, max_stage_error_um : float
    source : str
        The tile set, for the message.
    min_template_px : int

    Returns
    -------
    float or None
        The smallest overlap (px), None without neighbours.

    Raises
    ------
    InputError
        If the overlap minus the margin is below ``min_template_px``; the
        message gives the largest ``max_stage_error_um`` that works and the
        overlap the given margin would need.
    """
    pairs = neighbour_pairs(layout, tile_shape, pixel_size_nm)
    if not pairs:
        return None
    h, w = tile_shape
    overlaps = []
    for _, _, dx, dy in pairs:
        if abs(dx) >= abs(dy):        # side by side: the overlap is along x
            overlaps.append(w - abs(dx))
        else:
            overlaps.append(h - abs(dy))
    ov = float(min(overlaps))
    margin = float(max_stage_error_um) * 1000.0 / float(pixel_size_nm)
    if ov - margin < min_template_px:
        ps_um = float(pixel_size_nm) / 1000.0
        best = max(0.0, (ov - min_template_px) * ps_um)
        raise InputError(
            f"{source}: stitching.max_stage_error_um = {max_stage_error_um} um is a search margin of "
            f"{margin:.1f} px at {pixel_size_nm} nm/px, but neighbouring tiles overlap by only "
            f"{ov:.0f} px ({ov * ps_um:.3g} um): registration needs the overlap to exceed the margin "
            f"by at least {min_template_px} px. Lower max_stage_error_um to at most {best:.3g} um "
            f"(it bounds the error of the offset between two neighbours, per axis), or acquire the "
            f"tiles with an overlap of at least {margin + min_template_px:.0f} px "
            f"({(margin + min_template_px) * ps_um:.3g} um).")
    return ov


def feather_weights(shape):
    """Linear feathering weights of a tile.

    ``w[y, x] = min(y + 1, H - y) * min(x + 1, W - x)``: highest in the
    tile centre, falling linearly to 1 at its edges, so that overlapping
    tiles cross-fade over their overlap.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)``.

    Returns
    -------
    numpy.ndarray, shape (H, W), float32
    """
    h, w = shape
    wy = np.minimum(np.arange(h) + 1, h - np.arange(h)).astype(np.float32)
    wx = np.minimum(np.arange(w) + 1, w - np.arange(w)).astype(np.float32)
    return np.outer(wy, wx)


def _placed(positions):
    """Whole-pixel placement ``(x, y)`` int64 arrays: ``placed_x_px, placed_y_px``, else ``x_px, y_px`` rounded."""
    if "placed_x_px" in positions.columns:
        return (positions["placed_x_px"].to_numpy(np.int64), positions["placed_y_px"].to_numpy(np.int64))
    return (np.rint(positions["x_px"].to_numpy(float)).astype(np.int64),
            np.rint(positions["y_px"].to_numpy(float)).astype(np.int64))


def mosaic_shape(positions, tile_shape):
    """``(H, W)`` of the mosaic covering all placed tiles (whole-pixel placement, see :func:`write_mosaic`)."""
    h, w = tile_shape
    xs, ys = _placed(positions)
    return (int(ys.max()) + h, int(xs.max()) + w)


def _compose_chunk(cache, files, xs, ys, tile_shape, hit, box, blend, wmap, dtype, maxval):
    """One mosaic chunk ``box = (y0, y1, x0, x1)`` from the tiles ``hit`` (indices), in ``dtype``.

    ``feather``: weighted mean with ``wmap``, rounded and clipped to
    ``0..maxval``; ``last``: later tiles overwrite earlier ones.
    """
    th, tw = tile_shape
    y0, y1, x0, x1 = box
    if blend == "feather":
        acc = np.zeros((y1 - y0, x1 - x0), np.float64)
        wsum = np.zeros((y1 - y0, x1 - x0), np.float64)
    else:
        out = np.zeros((y1 - y0, x1 - x0), dtype)
    for k in hit:
        img = cache.get(files[k])
        cy0, cy1 = max(y0, ys[k]), min(y1, ys[k] + th)
        cx0, cx1 = max(x0, xs[k]), min(x1, xs[k] + tw)
        src = (slice(cy0 - ys[k], cy1 - ys[k]), slice(cx0 - xs[k], cx1 - xs[k]))
        dst = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
        if blend == "feather":
            wk = wmap[src]
            acc[dst] += wk * img[src]
            wsum[dst] += wk
        else:
            out[dst] = img[src]
    if blend == "feather":
        with np.errstate(invalid="ignore", divide="ignore"):
            val = np.where(wsum > 0, acc / np.where(wsum > 0, wsum, 1), 0)
        out = np.clip(np.rint(val), 0, maxval).astype(dtype)
    return out


def write_mosaic(layout, folder, positions, out_path, pixel_size_nm, chunk=1024,
                 blend="feather", cache_size=8):
    """Write the stitched mosaic into a chunked zarr array, chunk by chunk.

    For each output chunk only the tiles overlapping it are read (through an
    LRU cache of ``cache_size`` tiles), so memory is bounded by a few tiles
    and one chunk, not by the mosaic.

    Parameters
    ----------
    layout : pandas.DataFrame
        From :func:`read_layout` (``tile``, ``file``).
    folder : path-like or None
        Tile folder; defaults to ``layout.attrs["folder"]``.
    positions : pandas.DataFrame
        From :func:`solve_positions`: ``tile``, integer ``x_px, y_px`` in
        the mosaic, ``x_um, y_um``.
    out_path : path-like
        zarr store to create (overwritten). Use :func:`microprop.io.atomic_path`
        around it for an all-or-nothing write.
    pixel_size_nm : float
    chunk : int
        Square chunk edge (px).
    blend : {"feather", "last"}
        ``feather``: weighted mean with :func:`feather_weights` (cross-fade
        over the overlaps); ``last``: the tile later in the layout wins.
    cache_size : int

    Returns
    -------
    zarr.Array
        dtype of the tiles; pixels no tile covers are 0. attrs
        ``pixel_size_nm``, ``origin_um`` ([x, y] stage position of pixel
        ``[0, 0]``, um), ``n_tiles``, ``blend``.
    """

    if blend not in ("feather", "last"):
        raise ValueError(f"blend={blend!r}: expected 'feather' or 'last'")
    pixel_size_nm = _check_positive(pixel_size_nm, "pixel_size_nm")
    folder = Path(folder if folder is not None else layout.attrs["folder"])
    pos = positions.set_index("tile").loc[list(layout["tile"])]
    shape = _tile_shape(layout, folder)
    th, tw = shape
    dtype = load_tile(folder / layout["file"].iloc[0]).dtype
    H, W = mosaic_shape(pos, shape)
    # stage position of mosaic pixel [0, 0]: each tile's stage position minus its mosaic position
    ps_um = pixel_size_nm / 1000.0
    origin = [round(float(np.mean(pos["x_um"].to_numpy(float) - pos["x_px"].to_numpy(float) * ps_um)), 6),
              round(float(np.mean(pos["y_um"].to_numpy(float) - pos["y_px"].to_numpy(float) * ps_um)), 6)]
    if H * W > 10 * th * tw * len(layout):
        raise InputError(f"{folder}: the placed tiles span {W}x{H} px, more than 10x the total tile "
                         f"area; check the layout's x_um/y_um units and pixel_size_nm={pixel_size_nm}")
    arr = create_image_store(out_path, (H, W), dtype, chunk=chunk, attrs=dict(
        pixel_size_nm=pixel_size_nm, origin_um=origin, n_tiles=len(layout), blend=blend))
    xs, ys = _placed(pos)
    files = list(layout["file"])
    wmap = feather_weights(shape) if blend == "feather" else None
    cache = _TileCache(folder, cache_size)
    maxval = np.iinfo(dtype).max
    chunks = list(iter_chunks((H, W), chunk))
    for sy, sx in progress(chunks, desc="write mosaic", unit="chunk"):
        y0, y1, x0, x1 = sy.start, sy.stop, sx.start, sx.stop
        hit = np.nonzero((xs < x1) & (xs + tw > x0) & (ys < y1) & (ys + th > y0))[0]
        if not len(hit):
            continue
        arr[y0:y1, x0:x1] = _compose_chunk(cache, files, xs, ys, shape, hit, (y0, y1, x0, x1),
                                           blend, wmap, dtype, maxval)
    log.info("mosaic %dx%d px from %d tiles (%d tile reads, cache %d)", W, H, len(layout),
             cache.loads, cache_size)
    return arr


def stitch(folder, out_mosaic, out_table, pixel_size_nm, max_stage_error_um=5.0, chunk=1024,
           blend="feather", min_quality=0.25, cache_size=8, unlinked="error"):
    """Stitch a tile folder into a zarr mosaic and a per-tile table.

    Validates all tiles first (:func:`read_layout`), then registers
    (:func:`register_pairs`), solves (:func:`solve_positions`) and writes
    (:func:`write_mosaic`). Both outputs are written atomically: on an error
    neither is left behind.

    Parameters
    ----------
    folder : path-like
        Tile folder or its ``layout.csv``.
    out_mosaic : path-like
        zarr store (``*.zarr``).
    out_table : path-like
        CSV of :func:`solve_positions` (columns ``TABLE_COLUMNS``).
    pixel_size_nm : float
    max_stage_error_um : float
    chunk : int
    blend : {"feather", "last"}
    min_quality : float
    cache_size : int
    unlinked : {"error", "nominal"}
        What to do when the trusted links leave tiles or groups of tiles
        unconnected (:func:`check_link_graph`).

    Returns
    -------
    pandas.DataFrame
        The per-tile table (as written): sub-pixel estimates ``x_px, y_px``
        and the mosaic's whole-pixel ``placed_x_px, placed_y_px``.

    Raises
    ------
    InputError
        Bad layout or tiles (see :func:`read_layout`), bad parameters, a
        stage error margin the overlap cannot hold (:func:`check_margin`),
        a link graph that falls apart (:func:`check_link_graph`).
    """

    pixel_size_nm = _check_positive(pixel_size_nm, "pixel_size_nm")
    layout = read_layout(folder)
    folder = Path(layout.attrs["folder"])
    log.info("%s: %d tiles of %s %s", folder, len(layout), layout.attrs["tile_shape"],
             layout.attrs["dtype"])
    check_margin(layout, layout.attrs["tile_shape"], pixel_size_nm, max_stage_error_um, source=str(folder))
    links = register_pairs(layout, folder, pixel_size_nm, max_stage_error_um,
                           min_quality=min_quality, cache_size=cache_size)
    table = solve_positions(layout, links, pixel_size_nm)
    check_link_graph(table, links, source=str(folder), unlinked=unlinked)
    with atomic_path(out_mosaic) as tmp:
        write_mosaic(layout, folder, table, tmp, pixel_size_nm, chunk=chunk, blend=blend,
                     cache_size=cache_size)
        write_table(table[list(TABLE_COLUMNS)], out_table)
    return table
