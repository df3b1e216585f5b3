"""Berkovich indent marks: their geometry, rendering and detection in a micrograph.

The mark geometry follows the ideal Berkovich tip area function
``A = 24.5 h^2`` (Oliver & Pharr 1992, J. Mater. Res. 7, 1564): the projected
mark is an equilateral triangle of side ``a = sqrt(4 A / sqrt(3)) ~ 7.52 h``
(:func:`berkovich_side_px`).

:func:`render_berkovich_marks` draws marks with facet shading as in
topographic BSE/SE contrast (virtual after-indentation images);
:func:`detect_marks` finds them in an after-indentation image by masked
normalised cross-correlation with templates rendered the same way (Lewis
1995, "Fast normalized cross-correlation"; Padfield 2012, IEEE TIP 21, 2706,
for masks), with sub-pixel refinement of the score peaks. The grid fit that
uses the detections is in ``_grid``.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
from skimage.feature import peak_local_max

from ..errors import InputError

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
    """Grey of white: the integer dtype's maximum, else 255 (or 1 for an image within [0, 1])."""
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
    """Vertex offset (clipped to -0.5..0.5) of the parabola through three samples; 0 where not a peak."""
    denom = fm - 2.0 * f0 + fp
    off = np.where(denom < 0, 0.5 * (fm - fp) / np.where(denom == 0, 1, denom), 0.0)
    return np.clip(off, -0.5, 0.5)


def _scaled_templates(side_px, scales):
    """Template sides (px, > 2), their ``(template, mask)`` pairs, and the largest template half-size."""
    sides = [float(side_px) * s for s in scales if float(side_px) * s > 2]
    templs = [_mark_template(sd) for sd in sides]
    th = max(t[0].shape[0] for t in templs) // 2
    return sides, templs, th


def _marks_in_block(image, by, bx, block_px, halo, sides, templs, th, min_distance_px, threshold):
    """Marks whose score peak lies in the core block at ``(by, bx)``, read with a ``halo``.

    Returns an array (M, 4) of ``x_px, y_px, score, side_px`` in image
    pixels, or None when the block holds no mark.
    """
    H, W = image.shape
    y0, y1 = max(0, by - halo), min(H, by + block_px + halo)
    x0, x1 = max(0, bx - halo), min(W, bx + block_px + halo)
    block = np.asarray(image[y0:y1, x0:x1], dtype=np.float32)
    if min(block.shape) < 3 or np.ptp(block) == 0:
        return None
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
        return None
    gy, gx = pk[:, 0] + y0, pk[:, 1] + x0
    core = (gy >= by) & (gy < min(H, by + block_px)) & (gx >= bx) & (gx < min(W, bx + block_px))
    pk = pk[core]
    if pk.size == 0:
        return None
    py, px = pk[:, 0], pk[:, 1]
    k = best[py, px]
    pad = np.pad(nccs, ((0, 0), (1, 1), (1, 1)), mode="edge")
    f0 = pad[k, py + 1, px + 1]
    ox = _parabolic_offset(pad[k, py + 1, px], f0, pad[k, py + 1, px + 2])
    oy = _parabolic_offset(pad[k, py, px + 1], f0, pad[k, py + 2, px + 1])
    return np.column_stack([px + x0 + ox, py + y0 + oy, f0, np.asarray(sides)[k]])


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
    sides, templs, th = _scaled_templates(side_px, scales)
    if min_distance_px is None:
        min_distance_px = max(2, int(round(1.5 * side_px)))
    min_distance_px = int(min_distance_px)
    H, W = image.shape
    halo = th + min_distance_px + 2
    rows = []
    for by in range(0, H, block_px):
        for bx in range(0, W, block_px):
            marks = _marks_in_block(image, by, bx, block_px, halo, sides, templs, th,
                                    min_distance_px, threshold)
            if marks is not None:
                rows.append(marks)
    arr = np.concatenate(rows) if rows else np.empty((0, 4))
    df = pd.DataFrame(arr, columns=["x_px", "y_px", "score", "side_px"])
    df = df.sort_values("score", ascending=False, ignore_index=True)
    log.debug("detect_marks: %d marks above NCC %.2f in a %dx%d image", len(df), threshold, H, W)
    return df
