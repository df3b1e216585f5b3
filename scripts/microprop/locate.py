"""Micro-positioning of nanoindents: Berkovich marks, batch grid model, after->before mapping.

An indentation batch is an ``n_rows x n_cols`` grid at nominal spacing ``s``.
The indenter's export lists the *nominal* positions; the true positions carry
a per-batch origin error (~1-3 um) and a small per-row/column drift. This
module finds the marks the indenter tip left in the after-indentation
micrograph, fits the seed paper's grid model (eqs. 3a/3b)::

    x_ij = x0 + sum_{k=1..j} dx_k      (column j, image x)
    y_ij = y0 + sum_{k=1..i} dy_k      (row i, image y)

to them, and maps the fitted positions into the before-indentation mosaic,
where the crops for learning are taken.

Frames (see ``docs/ARCHITECTURE.md``):

- indenter -> SEM stage: ``stage = (sx * X + dx, sy * Y + dy)`` (um), with
  ``indenter_offset_um = [dx, dy]`` and ``indenter_axes = [sx, sy]``;
- stage -> mosaic pixel: ``p_px = (stage_um - origin_um) * 1000 / pixel_size_nm``;
- after -> before: ``p_before = p_after + (dx_px, dy_px)``
  (:func:`register_mosaics`).

The Berkovich mark geometry follows the ideal tip area function
``A = 24.5 h^2`` (Oliver & Pharr 1992, J. Mater. Res. 7, 1564): the projected
mark is an equilateral triangle of side ``a = sqrt(4 A / sqrt(3)) ~ 7.52 h``.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree
from skimage.feature import peak_local_max
from skimage.registration import phase_cross_correlation

from . import io as mio
from .errors import InputError

log = logging.getLogger(__name__)

#: Projected area factor of an ideal Berkovich tip, A = BERKOVICH_AREA_FACTOR * h^2
#: (Oliver & Pharr 1992).
BERKOVICH_AREA_FACTOR = 24.5
#: Side of the projected equilateral triangle per unit depth, sqrt(4 * 24.5 / sqrt(3)).
BERKOVICH_SIDE_PER_DEPTH = math.sqrt(4.0 * BERKOVICH_AREA_FACTOR / math.sqrt(3.0))

# Facet shading of a mark in topographic (BSE/SE) contrast. The three facets
# of an apex-up mark are left (between apex and lower-left corner), right and
# bottom; a facet pulls a pixel's grey towards black (factor < 0) or white
# (factor > 0) by that fraction of its headroom. The rim (pile-up, edges) darkens.
_FACET_SHADE = {"left": -0.45, "right": 0.45, "bottom": -0.15}
_RIM_DARKEN = 0.30
_RIM_WIDTH_FRAC = 0.06  # rim band width as a fraction of the side
_SUPERSAMPLE = 5

LOCATED_COLUMNS = ["batch", "indent", "row", "col", "x_px", "y_px", "x_um", "y_um",
                   "detected", "residual_px", "inside", "E_GPa", "H_GPa"]


# ---------------------------------------------------------------------------
# Berkovich marks
# ---------------------------------------------------------------------------

def berkovich_side_px(depth_nm, pixel_size_nm):
    """Side of the projected Berkovich mark in pixels.

    ``a = sqrt(4 A / sqrt(3))`` with ``A = 24.5 h^2`` (ideal Berkovich area
    function, Oliver & Pharr 1992), i.e. ``a ~ 7.52 h``.

    Parameters
    ----------
    depth_nm : float or array-like
        (Contact) depth ``h`` in nm.
    pixel_size_nm : float
        Pixel size in nm per pixel.

    Returns
    -------
    float or numpy.ndarray
        Side length in pixels (same shape as ``depth_nm``).

    Raises
    ------
    InputError
        If ``pixel_size_nm`` is not positive.
    """
    if not pixel_size_nm or pixel_size_nm <= 0:
        raise InputError(f"pixel_size_nm must be positive, got {pixel_size_nm!r}")
    side = BERKOVICH_SIDE_PER_DEPTH * np.asarray(depth_nm, dtype=float) / float(pixel_size_nm)
    return float(side) if side.ndim == 0 else side


def _white_level(image):
    if np.issubdtype(image.dtype, np.integer):
        return float(np.iinfo(image.dtype).max)
    vmax = float(np.nanmax(image)) if image.size else 1.0
    return 255.0 if vmax > 1.0 else 1.0


def _mark_coverage(cx, cy, side, y0, x0, ny, nx, ss=_SUPERSAMPLE):
    """Per-pixel area fractions of the three facets and the rim of one mark.

    The mark is an apex-up equilateral triangle with centroid ``(cx, cy)``
    (pixel coordinates, pixel centres at integers). Returns an array
    ``(4, ny, nx)``: left, right, bottom facet, rim, for the patch whose pixel
    ``[0, 0]`` is image pixel ``[y0, x0]``.
    """
    r_in = side / (2.0 * math.sqrt(3.0))  # inradius
    rim = max(1.0, _RIM_WIDTH_FRAC * side)
    off = (np.arange(ss) + 0.5) / ss - 0.5
    ys = (y0 + np.arange(ny)[:, None] + off[None, :]).ravel() - cy
    xs = (x0 + np.arange(nx)[:, None] + off[None, :]).ravel() - cx
    X, Y = np.meshgrid(xs, ys)
    c30 = math.sqrt(3.0) / 2.0
    # signed distance to each edge, positive inside (outward normals: left
    # edge (-c30, -1/2), right edge (+c30, -1/2), bottom edge (0, +1))
    d = np.stack([r_in - (-c30 * X - 0.5 * Y), r_in - (c30 * X - 0.5 * Y), r_in - Y])
    dmin = d.min(axis=0)
    facet = d.argmin(axis=0)
    inside = dmin >= 0
    masks = [(inside & (facet == k)) for k in range(3)]
    masks.append((dmin > -rim) & (dmin < 0.25 * rim))
    cov = np.stack(masks).astype(np.float32)
    return cov.reshape(4, ny, ss, nx, ss).mean(axis=(2, 4))


def render_berkovich_marks(image, x_px, y_px, depth_nm, pixel_size_nm, rng=None):
    """Draw residual Berkovich indent marks into a copy of a grey image.

    Each mark is an apex-up equilateral triangle (a fixed Berkovich tip
    orientation) centred (centroid) at ``(x_px, y_px)`` with side
    :func:`berkovich_side_px` of its depth. Its three facets are shaded as in
    topographic BSE/SE contrast: the left facet pulls the local grey 45 %
    of the way to black, the right facet 45 % of the way to white, the bottom
    facet 15 % towards black; a thin band along the edges (pile-up rim) is
    darkened by a further 30 %. Shading is relative to each pixel's grey, so
    texture under the mark survives and 8-bit values never saturate. Marks are
    anti-aliased by 5 x 5 supersampling, so that sub-pixel positions are
    rendered faithfully; marks partly outside the image are clipped.

    Parameters
    ----------
    image : numpy.ndarray, shape (H, W)
        Grey image (uint8, uint16 or float). The white level is the dtype
        maximum for integers, 255 (or 1 for images within [0, 1]) for floats.
    x_px, y_px : array-like, shape (N,)
        Mark centroids in pixels (x rightwards, y downwards).
    depth_nm : float or array-like, shape (N,)
        Indentation (contact) depth in nm, sets the side (~7.52 h).
    pixel_size_nm : float
        Pixel size in nm.
    rng : numpy.random.Generator, optional
        When given, each mark's facet contrast is jittered by +-15 %
        (variations of tip wear, detector geometry, local slope).

    Returns
    -------
    numpy.ndarray, shape (H, W), float32
        The image with the marks drawn (grey values on the input's scale).

    Raises
    ------
    InputError
        If the image is not 2D or the position/depth arrays disagree in length.
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise InputError(f"render_berkovich_marks: expected a 2D image, got shape {img.shape}")
    white = _white_level(img)
    out = img.astype(np.float32, copy=True)
    x = np.atleast_1d(np.asarray(x_px, float))
    y = np.atleast_1d(np.asarray(y_px, float))
    depth = np.broadcast_to(np.asarray(depth_nm, float), x.shape) if np.ndim(depth_nm) == 0 \
        else np.atleast_1d(np.asarray(depth_nm, float))
    if not (x.shape == y.shape == depth.shape):
        raise InputError(
            f"render_berkovich_marks: x_px, y_px, depth_nm lengths differ "
            f"({x.size}, {y.size}, {depth.size})")
    sides = np.atleast_1d(berkovich_side_px(depth, pixel_size_nm))
    H, W = out.shape
    shades = np.array([_FACET_SHADE["left"], _FACET_SHADE["right"], _FACET_SHADE["bottom"]])
    for cx, cy, side in zip(x, y, sides):
        if not (np.isfinite(cx) and np.isfinite(cy) and np.isfinite(side)) or side <= 0:
            continue
        half = side / math.sqrt(3.0) + max(1.0, _RIM_WIDTH_FRAC * side) + 2.0
        x0, x1 = max(0, int(math.floor(cx - half))), min(W, int(math.ceil(cx + half)) + 1)
        y0, y1 = max(0, int(math.floor(cy - half))), min(H, int(math.ceil(cy + half)) + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        cov = _mark_coverage(cx, cy, side, y0, x0, y1 - y0, x1 - x0)
        k = shades if rng is None else shades * rng.uniform(0.85, 1.15, size=3)
        patch = out[y0:y1, x0:x1]
        shaded = np.zeros_like(patch)
        for f in range(3):
            target = patch * (1.0 + k[f]) if k[f] < 0 else patch + k[f] * (white - patch)
            shaded += cov[f] * target
        patch = shaded + (1.0 - cov[:3].sum(axis=0)) * patch
        patch *= 1.0 - _RIM_DARKEN * cov[3]
        out[y0:y1, x0:x1] = patch
    return out


def _mark_template(side_px, grow=0.1):
    """Template and mask of one mark, centroid at the centre pixel.

    The template is the mark rendered on flat mid-grey; the mask is the mark
    triangle grown by ``grow`` times the side on each edge, so that the
    score compares the facets with a thin ring of surrounding material only
    (texture further away does not dilute it).
    """
    r_in = side_px / (2.0 * math.sqrt(3.0))
    margin = max(1.0, _RIM_WIDTH_FRAC * side_px, grow * side_px)
    half = int(math.ceil(2 * (r_in + margin) + 2))
    n = 2 * half + 1
    flat = np.full((n, n), 128.0, np.float32)
    # at a pixel size of 1 nm, a depth of side / 7.52 nm gives a side of side_px
    templ = render_berkovich_marks(flat, [half], [half], side_px / BERKOVICH_SIDE_PER_DEPTH, 1.0)
    grown_side = 2.0 * math.sqrt(3.0) * (r_in + margin)
    mask = _mark_coverage(half, half, grown_side, 0, 0, n, n)[:3].sum(axis=0) > 0.5
    return templ, mask


class _MaskedNCC:
    """Masked normalised cross-correlation of one image block with several templates.

    ``ncc(u) = sum_M t'(k) I(u + k) / sqrt(sum_M t'^2 * (sum_M I^2 - (sum_M I)^2 / n))``
    with ``t'`` the template minus its mean over the mask ``M`` (zero
    outside), i.e. the Pearson correlation of template and image over the
    mask only (Lewis 1995; Padfield 2012, IEEE TIP 21, 2706, for masks).
    Sums are FFT correlations; the image's transforms are shared by all
    templates. The block is padded by reflection, so the output has the
    block's shape and index ``[y, x]`` is the template centre at ``(x, y)``.
    """

    def __init__(self, block, half):
        from scipy import fft

        self._fft = fft
        self.shape = block.shape
        self.half = half
        p = np.pad(block.astype(np.float64), half, mode="reflect")
        self.fshape = tuple(fft.next_fast_len(s + 2 * half, real=True) for s in p.shape)
        self.fi = fft.rfft2(p, self.fshape)
        self.fi2 = fft.rfft2(p * p, self.fshape)

    def _corr(self, fimg, kernel):
        fft = self._fft
        k = kernel[::-1, ::-1]
        full = fft.irfft2(fimg * fft.rfft2(k, self.fshape), self.fshape)
        # full[y] = sum_k p[y - k] kflip[k]; the template centre (offset kh) sits at image y - kh
        kh, kw = kernel.shape[0] // 2, kernel.shape[1] // 2
        y0, x0 = self.half + kh, self.half + kw
        return full[y0:y0 + self.shape[0], x0:x0 + self.shape[1]]

    def __call__(self, templ, mask):
        m = mask.astype(np.float64)
        n = m.sum()
        t = (templ - templ[mask].mean()) * m
        num = self._corr(self.fi, t)
        s1 = self._corr(self.fi, m)
        s2 = self._corr(self.fi2, m)
        var = np.maximum(s2 - s1 * s1 / n, 1e-6 * n)
        return num / np.sqrt(var * (t * t).sum())


def _parabolic_offset(fm, f0, fp):
    denom = fm - 2.0 * f0 + fp
    off = np.where(denom < 0, 0.5 * (fm - fp) / np.where(denom == 0, 1, denom), 0.0)
    return np.clip(off, -0.5, 0.5)


def detect_marks(image, side_px, threshold=0.6, min_distance_px=None, scales=(0.8, 0.9, 1.0, 1.12, 1.25),
                 block_px=1024):
    """Find Berkovich marks in an after-indentation image by template matching.

    Templates of the mark (same shading as :func:`render_berkovich_marks`) at
    a few sizes around ``side_px`` are matched by normalised cross-correlation
    restricted to the mark and a thin ring around it (masked NCC, Lewis 1995
    "Fast normalized cross-correlation", Padfield 2012 IEEE TIP 21:2706; a
    square template as in ``skimage.feature.match_template`` lets the
    surrounding texture dilute the score); the score is the maximum over
    sizes. Local maxima
    above ``threshold`` (``skimage.feature.peak_local_max``) are refined to
    sub-pixel precision by a parabola through the score peak (of the
    best-matching size) along x and y. The image is processed in overlapping
    blocks, so memory stays bounded by ``block_px`` rather than by the image.

    Parameters
    ----------
    image : array-like, shape (H, W)
        Grey image region (uint8/uint16/float; a zarr array is read
        block-wise).
    side_px : float
        Expected mark side in pixels (:func:`berkovich_side_px` of the
        batch's median depth).
    threshold : float
        Minimum masked normalised cross-correlation (-1..1) of a detection.
        Marks rendered on BSE-like texture with shot noise score 0.6-0.9;
        plain cement-paste texture (real BSE image) reaches up to ~0.6.
    min_distance_px : int, optional
        Minimum distance between two detections; default 1.5 sides (a
        template partly overlapping a mark gives weaker side peaks there).
    scales : sequence of float
        Template sizes relative to ``side_px`` (indent depths within a
        batch vary by tens of percent; a mark matched by a template of the
        wrong size is found with a bias towards its base).
    block_px : int
        Core edge of the processing blocks.

    Returns
    -------
    pandas.DataFrame
        Columns ``x_px, y_px`` (float, mark centroid in the image's pixel
        coordinates), ``score`` (normalised cross-correlation) and
        ``side_px`` (the best-matching template side), sorted by decreasing
        score.

    Raises
    ------
    InputError
        If the image is not 2D or ``side_px`` is not larger than 2 px.
    """
    if len(getattr(image, "shape", ())) != 2:
        raise InputError(f"detect_marks: expected a 2D image, got shape {getattr(image, 'shape', None)}")
    if not np.isfinite(side_px) or side_px <= 2:
        raise InputError(f"detect_marks: mark side must be > 2 px, got {side_px!r}")
    sides = [float(side_px) * s for s in scales if float(side_px) * s > 2]
    templs = [_mark_template(sd) for sd in sides]
    th = max(t[0].shape[0] for t in templs) // 2
    if min_distance_px is None:
        min_distance_px = max(2, int(round(1.5 * side_px)))
    min_distance_px = int(min_distance_px)
    H, W = image.shape
    halo = th + min_distance_px + 2
    rows = []
    for by in range(0, H, block_px):
        for bx in range(0, W, block_px):
            y0, y1 = max(0, by - halo), min(H, by + block_px + halo)
            x0, x1 = max(0, bx - halo), min(W, bx + block_px + halo)
            block = np.asarray(image[y0:y1, x0:x1], dtype=np.float32)
            if min(block.shape) < 3 or np.ptp(block) == 0:
                continue
            if min(block.shape) <= th:
                block = np.pad(block, [(0, max(0, th + 1 - block.shape[0])),
                                       (0, max(0, th + 1 - block.shape[1]))], mode="edge")
            corr = _MaskedNCC(block, th)
            nccs = np.stack([np.nan_to_num(corr(t, m), nan=-1.0) for t, m in templs])
            best = nccs.argmax(axis=0)
            ncc = np.take_along_axis(nccs, best[None], axis=0)[0]
            pk = peak_local_max(ncc, min_distance=min_distance_px, threshold_abs=threshold,
                                exclude_border=False)
            if pk.size == 0:
                continue
            gy, gx = pk[:, 0] + y0, pk[:, 1] + x0
            core = (gy >= by) & (gy < min(H, by + block_px)) & (gx >= bx) & (gx < min(W, bx + block_px))
            pk = pk[core]
            if pk.size == 0:
                continue
            py, px = pk[:, 0], pk[:, 1]
            k = best[py, px]
            pad = np.pad(nccs, ((0, 0), (1, 1), (1, 1)), mode="edge")
            f0 = pad[k, py + 1, px + 1]
            ox = _parabolic_offset(pad[k, py + 1, px], f0, pad[k, py + 1, px + 2])
            oy = _parabolic_offset(pad[k, py, px + 1], f0, pad[k, py + 2, px + 1])
            rows.append(np.column_stack([px + x0 + ox, py + y0 + oy, f0, np.asarray(sides)[k]]))
    arr = np.concatenate(rows) if rows else np.empty((0, 4))
    df = pd.DataFrame(arr, columns=["x_px", "y_px", "score", "side_px"])
    df = df.sort_values("score", ascending=False, ignore_index=True)
    log.debug("detect_marks: %d marks above NCC %.2f in a %dx%d image", len(df), threshold, H, W)
    return df


# ---------------------------------------------------------------------------
# Batch grid model
# ---------------------------------------------------------------------------

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
    radius = float(search_radius_px)
    if np.isfinite(spacing):
        if radius >= 0.5 * spacing:
            log.warning("search radius %.1f px clamped below half the spacing (%.1f px): a larger "
                        "batch shift is ambiguous on a grid that neighbouring batches continue",
                        radius, 0.5 * spacing)
            radius = 0.49 * spacing
        vote_tol, match_tol = 0.25 * spacing, spacing / 3.0
    else:
        vote_tol = match_tol = max(radius, 1.0)
    tree = cKDTree(dxy) if len(dxy) else None

    # (a) translation by voting
    shift = np.zeros(2)
    if tree is not None and n:
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

    cols = nom["col"].to_numpy()
    rows = nom["row"].to_numpy()

    def fit(matched):
        mask = matched >= 0
        det = np.full((n, 2), np.nan)
        det[mask] = dxy[matched[mask]]
        base = nxy + shift
        cl, cx = _per_axis_fit(cols, base[:, 0], np.nan_to_num(det[:, 0]), mask)
        rl, ry = _per_axis_fit(rows, base[:, 1], np.nan_to_num(det[:, 1]), mask)
        px = cx[np.searchsorted(cl, cols)]
        py = ry[np.searchsorted(rl, rows)]
        return (cl, cx, rl, ry), np.column_stack([px, py]), det

    def reject(matched, pred, det):
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

    matched = _match(nxy + shift, tree, match_tol)  # (b)
    params, pred, det = fit(matched)  # (c)
    matched = reject(matched, pred, det)  # (d)
    params, pred, det = fit(matched)
    matched = _match(pred, tree, match_tol)  # re-match to the model, refit once
    params, pred, det = fit(matched)
    matched = reject(matched, pred, det)
    params, pred, det = fit(matched)

    mask = matched >= 0
    resid = np.full(n, np.nan)
    resid[mask] = np.hypot(*(det[mask] - pred[mask]).T)
    located = pd.DataFrame({
        "indent": nom["indent"].to_numpy(), "row": rows, "col": cols,
        "x_px": pred[:, 0], "y_px": pred[:, 1], "detected": mask, "residual_px": resid,
    })
    cl, cx, rl, ry = params
    rms = float(np.sqrt(np.mean(resid[mask] ** 2))) if mask.any() else float("nan")
    model = {
        "x0": float(cx[0]) if len(cx) else float("nan"),
        "y0": float(ry[0]) if len(ry) else float("nan"),
        "cols": [int(c) for c in cl], "column_x_px": [float(v) for v in cx],
        "rows": [int(r) for r in rl], "row_y_px": [float(v) for v in ry],
        "translation_px": [float(shift[0]), float(shift[1])],
        "rms_residual_px": rms, "n_detected": int(mask.sum()), "n_indents": int(n),
        "spacing_px": spacing,
    }
    log.info("grid fit: %d/%d indents detected, shift (%.1f, %.1f) px, residual RMS %.2f px",
             model["n_detected"], n, shift[0], shift[1], rms)
    return located, model


# ---------------------------------------------------------------------------
# After -> before registration
# ---------------------------------------------------------------------------

def _hann2d(shape):
    return np.outer(np.hanning(shape[0]), np.hanning(shape[1])).astype(np.float32)


def _phase_correlation(ref, mov, max_shift):
    """Integer-plus-parabola shift ``t`` (dy, dx) with ``ref(p) ~ mov(p - t)``, ``|t| <= max_shift``.

    Phase correlation (Kuglin & Hines 1975) of Hann-windowed, mean-removed
    images; the peak search is restricted to ``max_shift`` (px) per axis.
    """
    w = _hann2d(ref.shape)
    fa = np.fft.rfft2((ref - ref.mean()) * w)
    fb = np.fft.rfft2((mov - mov.mean()) * w)
    cross = fa * np.conj(fb)
    cross /= np.abs(cross) + 1e-12 * np.abs(cross).max() + 1e-30
    corr = np.fft.irfft2(cross, s=ref.shape)
    corr = np.fft.fftshift(corr)
    cy, cx = ref.shape[0] // 2, ref.shape[1] // 2
    m = int(math.ceil(max_shift))
    sub = corr[max(0, cy - m): cy + m + 1, max(0, cx - m): cx + m + 1]
    iy, ix = np.unravel_index(np.argmax(sub), sub.shape)
    py, px = iy + max(0, cy - m), ix + max(0, cx - m)
    pad = np.pad(corr, 1, mode="wrap")
    oy = _parabolic_offset(pad[py, px + 1], pad[py + 1, px + 1], pad[py + 2, px + 1])
    ox = _parabolic_offset(pad[py + 1, px], pad[py + 1, px + 1], pad[py + 1, px + 2])
    return np.array([py - cy + float(oy), px - cx + float(ox)])


def _overlap(shape_b, shape_a, s):
    """Before-frame box ``(y0, y1, x0, x1)`` covered by both images for integer shift ``s`` (dy, dx)."""
    y0, x0 = max(0, s[0]), max(0, s[1])
    y1, x1 = min(shape_b[0], shape_a[0] + s[0]), min(shape_b[1], shape_a[1] + s[1])
    return int(y0), int(y1), int(x0), int(x1)


def _pearson(a, b):
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


def register_mosaics(before, after, before_origin_um, after_origin_um, pixel_size_nm,
                     max_shift_um=20.0, downsample=8, window_px=512, n_windows=5):
    """Shift that maps after-mosaic pixels onto before-mosaic pixels.

    The stage origins give the starting shift ``(after_origin - before_origin)
    / pixel size``; the remaining stage error is found by phase correlation
    (Kuglin & Hines 1975) of block-mean downsampled mosaics
    (:func:`microprop.io.downsample`, chunk rows at a time), restricted to
    ``max_shift_um``, then refined at full resolution on the ``n_windows``
    most textured windows of the overlap with
    ``skimage.registration.phase_cross_correlation`` (upsampled DFT,
    Guizar-Sicairos et al. 2008, upsample factor 10); the median window shift
    is returned. Phase correlation whitens the spectrum, so the small indent
    marks present only in the after-mosaic barely affect it.

    Parameters
    ----------
    before, after : array-like, shape (Hb, Wb) and (Ha, Wa)
        Mosaics (zarr arrays or numpy), same pixel size.
    before_origin_um, after_origin_um : sequence of 2 float
        Stage position ``(x, y)`` in um of each mosaic's pixel ``[0, 0]``.
    pixel_size_nm : float
        Pixel size in nm.
    max_shift_um : float
        Largest stage error (per axis) searched, in um.
    downsample : int
        Block-mean factor of the coarse step.
    window_px : int
        Edge of the full-resolution refinement windows.
    n_windows : int
        Number of refinement windows.

    Returns
    -------
    dict
        ``dx_px, dy_px`` (float): after pixel ``p`` + shift = before pixel;
        ``score`` (Pearson correlation of the overlapping downsampled mosaics
        at the found shift, -1..1); ``coarse_dx_px, coarse_dy_px``,
        ``n_windows`` (windows that agreed), ``window_spread_px`` (median
        absolute deviation of the window shifts).

    Raises
    ------
    InputError
        If the mosaics do not overlap at the starting shift or the pixel
        size is not positive.
    """
    if not pixel_size_nm or pixel_size_nm <= 0:
        raise InputError(f"register_mosaics: pixel_size_nm must be positive, got {pixel_size_nm!r}")
    ps_um = float(pixel_size_nm) / 1000.0
    s0 = (np.asarray(after_origin_um, float)[::-1] - np.asarray(before_origin_um, float)[::-1]) / ps_um
    f = max(1, int(downsample))
    b_ds, a_ds = mio.downsample(before, f), mio.downsample(after, f)
    s0i = np.round(s0 / f).astype(int)
    y0, y1, x0, x1 = _overlap(b_ds.shape, a_ds.shape, s0i)
    if y1 - y0 < 8 or x1 - x0 < 8:
        raise InputError(
            f"register_mosaics: before {tuple(before.shape)} and after {tuple(after.shape)} mosaics "
            f"do not overlap at the stage-origin shift ({s0[1]:.0f}, {s0[0]:.0f}) px; check origin_um")
    b_c = b_ds[y0:y1, x0:x1]
    a_c = a_ds[y0 - s0i[0]:y1 - s0i[0], x0 - s0i[1]:x1 - s0i[1]]
    max_ds = max_shift_um / ps_um / f + np.abs(s0 / f - s0i).max() + 1
    r = _phase_correlation(b_c, a_c, min(max_ds, min(b_c.shape) / 2 - 1))
    coarse = (s0i + r) * f
    log.info("register: stage-origin shift (%.1f, %.1f) px, coarse (%.1f, %.1f) px",
             s0[1], s0[0], coarse[1], coarse[0])

    # score: correlation of the overlap at the coarse shift
    ri = np.round(s0i + r).astype(int)
    oy0, oy1, ox0, ox1 = _overlap(b_ds.shape, a_ds.shape, ri)
    score = _pearson(b_ds[oy0:oy1, ox0:ox1], a_ds[oy0 - ri[0]:oy1 - ri[0], ox0 - ri[1]:ox1 - ri[1]])

    # refinement on full-resolution windows
    si = np.round(coarse).astype(int)
    margin = 2 * f + 2
    y0, y1, x0, x1 = _overlap(before.shape, after.shape, si)
    y0, y1, x0, x1 = y0 + margin, y1 - margin, x0 + margin, x1 - margin
    win = int(min(window_px, y1 - y0, x1 - x0))
    shifts = []
    if win >= 32:
        # half-overlapping windows, at most 4 x 4 candidates
        ny = int(np.clip(math.ceil(2 * (y1 - y0) / win) - 1, 1, 4))
        nx = int(np.clip(math.ceil(2 * (x1 - x0) / win) - 1, 1, 4))
        cands = []
        for wy in np.linspace(y0, y1 - win, ny).astype(int):
            for wx in np.linspace(x0, x1 - win, nx).astype(int):
                tex = b_ds[wy // f:(wy + win) // f, wx // f:(wx + win) // f]
                cands.append((float(tex.var()) if tex.size else 0.0, wy, wx))
        cands.sort(reverse=True)
        hann = _hann2d((win, win))
        for _, wy, wx in cands[:n_windows]:
            bw = np.asarray(before[wy:wy + win, wx:wx + win], np.float32)
            aw = np.asarray(after[wy - si[0]:wy - si[0] + win, wx - si[1]:wx - si[1] + win], np.float32)
            t, _, _ = phase_cross_correlation((bw - bw.mean()) * hann, (aw - aw.mean()) * hann,
                                              upsample_factor=10)
            if np.abs(t).max() <= 2 * f:
                shifts.append(si + np.asarray(t, float))
    if shifts:
        shifts = np.array(shifts)
        final = np.median(shifts, axis=0)
        spread = float(np.median(np.abs(shifts - final)))
    else:
        log.warning("register: no full-resolution window agreed; keeping the coarse shift")
        final, spread = coarse, float("nan")
    log.info("register: shift (%.2f, %.2f) px from %d windows, score %.3f",
             final[1], final[0], len(shifts), score)
    return {"dx_px": float(final[1]), "dy_px": float(final[0]), "score": float(score),
            "coarse_dx_px": float(coarse[1]), "coarse_dy_px": float(coarse[0]),
            "n_windows": int(len(shifts)), "window_spread_px": spread}


# ---------------------------------------------------------------------------
# Batches: indenter frame -> mosaic
# ---------------------------------------------------------------------------

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
        raise InputError(f"batch {name}: indents {list(ids)} fall on the same grid node at spacing "
                         f"{spacing_um:.3f} um; the export is not a regular grid (set spacing_um)")
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
    if isinstance(after_to_before, dict):
        sx, sy = float(after_to_before["dx_px"]), float(after_to_before["dy_px"])
    else:
        sx, sy = (float(v) for v in after_to_before)
    bx, by = indenter_to_pixels(indents["x_um"], indents["y_um"], ps, before_origin_um,
                                indenter_offset_um, indenter_axes)
    nx, ny = bx - sx, by - sy  # nominal after-mosaic px
    depth = float(np.nanmedian(indents["depth_nm"].to_numpy(float)))
    if not np.isfinite(depth) or depth <= 0:
        raise InputError(f"batch {name}: no valid depth_nm to size the indent marks")
    side = berkovich_side_px(depth, ps)
    search_px = float(search_radius_um) * 1000.0 / ps
    spacing_px = spacing_um * 1000.0 / ps if np.isfinite(spacing_um) else None
    margin = search_px + side + 10.0
    H, W = after.shape
    x0, x1 = max(0, int(np.floor(nx.min() - margin))), min(W, int(np.ceil(nx.max() + margin)) + 1)
    y0, y1 = max(0, int(np.floor(ny.min() - margin))), min(H, int(np.ceil(ny.max() + margin)) + 1)
    if x1 - x0 < side or y1 - y0 < side:
        raise InputError(
            f"batch {name}: nominal positions (x {nx.min():.0f}..{nx.max():.0f}, y {ny.min():.0f}.."
            f"{ny.max():.0f} px) lie outside the after-mosaic ({W} x {H} px); "
            "check indenter_offset_um / indenter_axes")
    region = np.asarray(after[y0:y1, x0:x1])
    min_dist = 1.5 * side if spacing_px is None else min(1.5 * side, 0.6 * spacing_px)
    det = detect_marks(region, side, threshold=threshold, min_distance_px=max(2, int(min_dist)))
    det["x_px"] += x0
    det["y_px"] += y0
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
        "pixel_size_nm": ps, "n_inside": n_inside, "n_marks_found": int(len(det)),
        "roi_after_px": [x0, y0, x1, y1],
    })
    return located, model
