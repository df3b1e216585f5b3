"""The phase microstructure of a virtual specimen: a label map of a hydrated cement paste.

:func:`generate_microstructure` draws a label map of the five phases
(``PHASES``) with requested area fractions; :func:`phase_fractions` measures
them. The module also holds the rough backscatter coefficients and texture
amplitudes of tests and examples (``DEFAULT_PHASE_ETA``,
``DEFAULT_TEXTURE_REL``) and the helpers the BSE render shares (the eta table
check, smoothed Gaussian noise, the bilinear interpolation index).

Geometry follows ``docs/ARCHITECTURE.md``: images are ``(H, W)`` =
``(y, x)``; a pixel ``p`` of the generated field lies at stage position
``p * pixel_size_nm / 1000`` um (the "specimen frame"). All morphological
lengths are given in micrometres and converted through ``pixel_size_nm``, so
that the look of a specimen does not depend on the pixel size.

Morphology (after Scrivener, "Backscattered electron imaging of cementitious
microstructures", Cem. Concr. Compos. 26 (2004) 935-945, and Richardson,
Cem. Concr. Res. 29 (1999) 1131-1147, for inner/outer product): angular
anhydrous clinker grains (ACC) with a hydration rim of inner product
(HD-C-S-H), fully hydrated small grains of inner product, portlandite (CH) as
angular plates and massive crystals in the outer product, porous outer
product (LD-C-S-H) with capillary pores.

The microstructure is built as level sets: for each phase a smooth field is
computed on a coarse grid (``coarse_um``, default 0.2 um) whose positive part
is the phase; the fields are interpolated bilinearly to full resolution strip
by strip and thresholded, so that boundaries are smooth at any pixel size and
memory stays at a few label images. Each threshold is set from the fields'
quantiles so that the requested area fractions are met.
"""
from __future__ import annotations

import logging
import math
from typing import NamedTuple

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull
from skimage.draw import polygon as draw_polygon

from ..errors import InputError
from ..phases import ACC, CH, DEFAULT_FRACTIONS, HD, LD, PHASES, PORE, check_fractions

log = logging.getLogger(__name__)

#: Rough backscatter coefficients at 20 keV (epoxy-filled pore, C-S-H, CH,
#: C3S), for tests and examples only; the workflow uses the Monte Carlo table
#: of ``microprop.physics`` (``phase_eta.csv``).
DEFAULT_PHASE_ETA = {"pore": 0.075, "LD-C-S-H": 0.125, "HD-C-S-H": 0.14, "CH": 0.15, "ACC": 0.175}


#: Relative intra-phase grey texture (standard deviation / eta) of the render.
DEFAULT_TEXTURE_REL = {"pore": 0.03, "LD-C-S-H": 0.06, "HD-C-S-H": 0.035, "CH": 0.02, "ACC": 0.03}


def _check_eta(phase_eta, labels=None, where="phase_eta"):
    if not isinstance(phase_eta, dict):
        raise InputError(f"{where}: expected a mapping phase -> eta, got {type(phase_eta).__name__}")
    if labels is None:
        needed = PHASES
    else:
        present = np.flatnonzero(np.bincount(np.asarray(labels, np.intp).ravel() if labels.dtype.kind != 'u'
                                             else labels.ravel(), minlength=len(PHASES)))
        needed = [PHASES[i] for i in present if i < len(PHASES)]
    missing = [p for p in needed if p not in phase_eta]
    if missing:
        raise InputError(f"{where}: no backscatter coefficient eta for phase(s) {missing}")
    out = {}
    for p in PHASES:
        v = float(phase_eta.get(p, np.nan))
        if p in needed and not (0.0 < v < 1.0):
            raise InputError(f"{where}: eta of {p!r} is {v}, expected a value in (0, 1)")
        out[p] = v
    return out


def _smooth_noise(rng, shape, sigma_px, mode="reflect"):
    """Unit-variance Gaussian random field with correlation length ``sigma_px``."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    if sigma_px > 0.3:
        noise = ndimage.gaussian_filter(noise, sigma_px, mode=mode, output=np.float32)
    sd = float(noise.std())
    if sd > 0:
        noise /= sd
    return noise


def _signed_distance(mask, step_um, smooth_px=0.7):
    """Signed distance (um) to the boundary of ``mask``: > 0 inside, < 0 outside.

    The zero level sits half a pixel outside the outermost inside pixels, so
    that ``sd > 0`` reproduces ``mask``; a light Gaussian smoothing removes the
    staircase before the field is interpolated.
    """
    if not mask.any():
        return np.full(mask.shape, -1e3, np.float32)
    if mask.all():
        return np.full(mask.shape, 1e3, np.float32)
    inside = ndimage.distance_transform_edt(mask).astype(np.float32)
    outside = ndimage.distance_transform_edt(~mask).astype(np.float32)
    sd = np.where(mask, inside - 0.5, 0.5 - outside) * np.float32(step_um)
    if smooth_px > 0:
        sd = ndimage.gaussian_filter(sd, smooth_px, output=np.float32)
    return sd


def _angular_polygon(rng, area, aspect, angle, n_vertices, r_jitter=0.25):
    """Random convex polygon of given area (coarse px^2), centred on 0.

    Vertices at jittered angles on an ellipse of axis ratio ``aspect`` with
    jittered radii; the convex hull of them is an angular grain.

    Returns
    -------
    (y, x) : tuple of ndarray
        Vertex coordinates (rows, columns) relative to the centre.
    """
    n = int(n_vertices)
    theta = (np.arange(n) + rng.uniform(-0.4, 0.4, n)) * (2 * np.pi / n) + rng.uniform(0, 2 * np.pi)
    r = rng.uniform(1.0 - r_jitter, 1.0, n)
    a = math.sqrt(aspect)
    pts = np.column_stack([r * np.cos(theta) * a, r * np.sin(theta) / a])
    pts = pts[ConvexHull(pts).vertices]
    x, y = pts[:, 0], pts[:, 1]
    poly_area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
    s = math.sqrt(area / poly_area)
    c, si = math.cos(angle), math.sin(angle)
    xr = s * (c * x - si * y)
    yr = s * (si * x + c * y)
    return yr, xr


def _power_law_sizes(rng, n, lo, hi, q):
    """``n`` sizes on [lo, hi] with number density proportional to size**-q (inverse CDF)."""
    u = rng.uniform(0, 1, n)
    e = 1.0 - q
    return (lo ** e + u * (hi ** e - lo ** e)) ** (1.0 / e)


def _sizes_for_area(draw, total, batch=256):
    """Draw sizes (px^2) from ``draw(n)`` until they add up to ``total``.

    Drawn sequentially, so that the sizes keep their distribution; the last
    one is trimmed off when it overshoots by more than half of itself.
    """
    out, acc = [], 0.0
    while acc < total:
        s = np.asarray(draw(batch), float)
        c = acc + np.cumsum(s)
        k = int(np.searchsorted(c, total)) + 1
        out.append(s[:k])
        acc = float(c[min(k, s.size) - 1])
    return np.concatenate(out) if out else np.zeros(0)


def _place_polygons(rng, shape, sizes_px2, make_poly, target, counted, occupied, *, aspects=None,
                    drawn=None, centre_ok=None, gap_frac=0.0, tol=0, max_tries=40):
    """Place random polygons, largest first, until ``target`` counted pixels are covered.

    Parameters
    ----------
    shape : (int, int)
        Coarse grid shape.
    sizes_px2 : ndarray
        Polygon areas (coarse px^2), placed in descending order.
    make_poly : callable(area, aspect) -> (y, x)
        Vertex offsets of one polygon.
    target : int
        Number of ``counted`` pixels to cover.
    counted : bool ndarray
        Pixels that count towards the target (not yet covered); updated in place.
    occupied : bool ndarray
        Pixels a new polygon may not overlap; updated in place with each
        polygon grown by ``gap_frac`` of its radius.
    drawn : bool ndarray, optional
        Output mask; a new one when None.
    centre_ok : bool ndarray, optional
        A polygon's centre must fall on a True pixel.
    aspects : ndarray, optional
        Axis ratio passed to ``make_poly`` with each size (default random in 1..1.8).
    tol : int
        A polygon that would overshoot the target by more than ``tol`` pixels
        is skipped for a smaller one.

    Returns
    -------
    drawn : bool ndarray
    covered : int
        Counted pixels covered.
    """
    h, w = shape
    drawn = np.zeros(shape, bool) if drawn is None else drawn
    covered = 0
    sizes_px2 = np.asarray(sizes_px2, float)
    if aspects is None:
        aspects = rng.uniform(1.0, 2.2, sizes_px2.size)
    order = np.argsort(sizes_px2)[::-1]
    for area, aspect in zip(sizes_px2[order], np.asarray(aspects, float)[order]):
        if covered >= target - tol:
            break
        radius = math.sqrt(area / math.pi)
        for _ in range(max_tries):
            cy = rng.uniform(-0.5 * radius, h - 1 + 0.5 * radius)
            cx = rng.uniform(-0.5 * radius, w - 1 + 0.5 * radius)
            if centre_ok is not None:
                iy, ix = int(round(cy)), int(round(cx))
                if not (0 <= iy < h and 0 <= ix < w and centre_ok[iy, ix]):
                    continue
            py, px = make_poly(area, aspect)
            rr, cc = draw_polygon(py + cy, px + cx, shape)
            if rr.size == 0 or occupied[rr, cc].any():
                continue
            new = int(counted[rr, cc].sum())
            if covered + new > target + tol:
                break  # too big for what is left: try the next, smaller one
            drawn[rr, cc] = True
            counted[rr, cc] = False
            covered += new
            if gap_frac > 0:
                g = 1.0 + gap_frac
                rr, cc = draw_polygon(py * g + cy, px * g + cx, shape)
            occupied[rr, cc] = True
            break
    return drawn, covered


def _shift_to_fraction(field, region, fraction, where):
    """Subtract the threshold that makes ``field > 0`` cover ``fraction`` of ``region``'s pixels."""
    n_region = int(region.sum())
    if n_region == 0 or fraction <= 0:
        return np.full_like(field, -1e3)
    q = 1.0 - fraction * region.size / n_region
    if q <= 0:
        log.warning("%s: requested fraction %.3f exceeds the space left; phase fills it", where, fraction)
        return np.where(region, 1e3, -1e3).astype(field.dtype)
    tau = np.float32(np.quantile(field[region], q))
    return field - tau


def generate_microstructure(shape, pixel_size_nm=40.0, fractions=None, rng=None, *,
                            clinker_size_um=(3.0, 30.0), clinker_size_exponent=2.5,
                            rim_um=(1.0, 3.0), inner_grain_size_um=(1.5, 8.0),
                            ch_size_um=(5.0, 20.0), pore_size_um=(0.25, 1.2),
                            coarse_um=0.2, strip_rows=512):
    """Generate a label map of a hydrated cement paste with given phase area fractions.

    Parameters
    ----------
    shape : (int, int)
        ``(H, W)`` of the field in pixels.
    pixel_size_nm : float
        Pixel size (nm/px); all lengths below are in um and converted with it.
    fractions : dict, optional
        Area fraction per phase name (all of ``PHASES``; sum 1). Default
        ``DEFAULT_FRACTIONS``. LD-C-S-H fills what the others leave.
    rng : numpy.random.Generator or int, optional
        Random source (or seed).
    clinker_size_um : (float, float)
        Range of equivalent diameters of anhydrous clinker grains (ACC),
        number density proportional to ``D**-clinker_size_exponent``.
    rim_um : (float, float)
        Range of the inner-product (HD-C-S-H) rim thickness around clinker
        grains; the local thickness varies smoothly within it (then shifted
        uniformly to meet the HD-C-S-H fraction).
    inner_grain_size_um : (float, float)
        Equivalent diameters of fully hydrated small grains (HD-C-S-H without
        a clinker core), added when rims alone do not reach the fraction.
    ch_size_um : (float, float)
        Range of the longest dimension of portlandite (CH) crystals; half are
        elongated plates (aspect 2.5-5), half massive crystals (aspect 1.2-2).
    pore_size_um : (float, float)
        Correlation lengths of the two Gaussian random fields whose level set
        gives the capillary pores in the outer product.
    coarse_um : float
        Grid step (um) on which the level-set fields are built; at most the
        pixel size is used when that is coarser.
    strip_rows : int
        Rows per strip of the full-resolution thresholding (memory bound).

    Returns
    -------
    labels : numpy.ndarray, shape (H, W), uint8
        Label ids 0..4 in ``PHASES`` order.

    Raises
    ------
    InputError
        On bad fractions or a non-positive shape or pixel size.

    Notes
    -----
    Fractions are met on the coarse grid (grains are placed largest first until
    the count is reached, then each level set is shifted to the exact
    quantile); at full resolution they agree within a few 1e-3 on fields of
    more than ~50 um.
    """
    fr = check_fractions(DEFAULT_FRACTIONS if fractions is None else fractions)
    h, w = (int(s) for s in shape)
    if h < 1 or w < 1:
        raise InputError(f"generate_microstructure: shape {shape} must be positive")
    if not pixel_size_nm > 0:
        raise InputError(f"generate_microstructure: pixel_size_nm={pixel_size_nm} must be > 0")
    rng = np.random.default_rng(rng)
    grid = _coarse_grid(h, w, pixel_size_nm / 1000.0, coarse_um)
    hc, wc = grid.shape
    log.info("microstructure %dx%d px at %.1f nm/px on a %dx%d grid of %.3f um", h, w, pixel_size_nm, hc, wc,
             grid.step)

    d_acc = _clinker_field(rng, grid, fr["ACC"], clinker_size_um, clinker_size_exponent)
    acc_c = d_acc > 0
    d_hd = _inner_product_field(rng, grid, d_acc, acc_c, fr["HD-C-S-H"], rim_um, inner_grain_size_um)
    free = ~acc_c & ~(d_hd > 0)
    d_ch = _portlandite_field(rng, grid, free, fr["CH"], ch_size_um)
    outer = free & ~(d_ch > 0)
    d_pore = _pore_field(rng, grid, outer, fr["pore"], pore_size_um)

    # --- full resolution: bilinear interpolation of the fields, strip by strip
    fields = np.stack([d_pore, d_ch, d_hd, d_acc]).astype(np.float32)
    del d_pore, d_ch, d_hd, d_acc
    _calibrate_levels(fields, fr, (h, w), grid.f, rng)
    return _label_strips(fields, (h, w), grid.f, strip_rows)


class _CoarseGrid(NamedTuple):
    """The coarse grid on which the level-set fields are built."""

    f: int                #: full-resolution px per coarse px (per axis)
    step: float           #: coarse pixel size, um
    shape: tuple          #: (hc, wc)
    in_field: np.ndarray  #: (hc, wc) bool, coarse pixels whose centre lies in the field (for counting fractions)
    n_field: int          #: number of True pixels of ``in_field``
    um2: float            #: coarse px per um^2
    tol: int              #: pixel tolerance of the placement targets


def _coarse_grid(h, w, px_um, coarse_um):
    """The coarse grid of an ``(h, w)`` field at ``px_um`` um/px, step ``coarse_um`` rounded to whole px."""
    f = max(1, int(round(coarse_um / px_um)))
    step = f * px_um  # coarse pixel size (um)
    hc, wc = -(-h // f) + 1, -(-w // f) + 1
    # coarse pixels whose centre lies in the field (for counting fractions)
    in_field = np.zeros((hc, wc), bool)
    in_field[: max(1, int(round(h / f))), : max(1, int(round(w / f)))] = True
    n_field = int(in_field.sum())
    um2 = 1.0 / step ** 2  # coarse px per um^2
    tol = max(2, int(0.001 * n_field))
    return _CoarseGrid(f, step, (hc, wc), in_field, n_field, um2, tol)


def _disc_area_px(d_um, um2):
    """Area (coarse px^2) of discs of diameter ``d_um`` (um), at ``um2`` coarse px per um^2."""
    return np.pi / 4 * np.asarray(d_um) ** 2 * um2


def _clinker_field(rng, grid, fraction, size_um, size_exponent):
    """Level set (um, coarse grid) of anhydrous clinker (ACC): angular convex grains, largest first, no contact."""
    target = int(round(fraction * grid.n_field))
    d_acc = np.full(grid.shape, -1e3, np.float32)
    if target > 0:
        sizes = _sizes_for_area(
            lambda n: _disc_area_px(_power_law_sizes(rng, n, *size_um, size_exponent), grid.um2), target)
        make = lambda a, asp: _angular_polygon(rng, a, asp, rng.uniform(0, np.pi), rng.integers(4, 10),
                                               r_jitter=0.4)
        counted = grid.in_field.copy()
        occupied = np.zeros(grid.shape, bool)
        acc, got = _place_polygons(rng, grid.shape, sizes, make, target, counted, occupied,
                                   gap_frac=0.15, tol=grid.tol)
        if got < target - grid.tol:  # crowded: fill up with small grains anywhere free
            small = _disc_area_px(rng.uniform(size_um[0], 2 * size_um[0], 4000), grid.um2)
            acc, more = _place_polygons(rng, grid.shape, small, make, target - got, counted, occupied,
                                        drawn=acc, tol=grid.tol, max_tries=200)
            got += more
        log.info("ACC: %.4f of the field before the level-set shift", got / grid.n_field)
        d_acc = _shift_to_fraction(_signed_distance(acc, grid.step), grid.in_field, fraction, "ACC")
    return d_acc


def _inner_product_field(rng, grid, d_acc, acc_c, fraction, rim_um, grain_size_um):
    """Level set (um, coarse grid) of HD-C-S-H: rims of smoothly varying thickness + fully hydrated grains."""
    target = int(round(fraction * grid.n_field))
    d_hd = np.full(grid.shape, -1e3, np.float32)
    if target > 0:
        t = ndimage.gaussian_filter(rng.uniform(0, 1, grid.shape).astype(np.float32), 5.0 / grid.step)
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        d_rim = d_acc + np.float32(rim_um[0]) + np.float32(rim_um[1] - rim_um[0]) * t
        hd = (d_rim > 0) & ~acc_c
        have = int((hd & grid.in_field).sum())
        if have < target - grid.tol:
            sizes = _sizes_for_area(lambda n: _disc_area_px(rng.uniform(*grain_size_um, n), grid.um2),
                                    target - have)
            make = lambda a, asp: _angular_polygon(rng, a, asp, rng.uniform(0, np.pi), rng.integers(5, 10))
            counted = grid.in_field & ~hd & ~acc_c
            occupied = ndimage.binary_dilation(acc_c, iterations=max(1, int(round(0.3 / grid.step))))
            grains, _ = _place_polygons(rng, grid.shape, sizes, make, target - have, counted, occupied,
                                        gap_frac=0.1, tol=grid.tol)
            d_rim = np.maximum(d_rim, _signed_distance(grains, grid.step))
        d_hd = _shift_to_fraction(d_rim, grid.in_field & ~acc_c, fraction, "HD-C-S-H")
    return d_hd


def _ch_crystals(rng, n, lo, hi, um2):
    """``n`` CH crystals of longest dimension in [lo, hi] um: areas (coarse px^2) and aspects, half plates."""
    lengths = rng.uniform(lo, hi, n)
    aspects = np.where(rng.uniform(size=n) < 0.5, rng.uniform(2.5, 5.0, n), rng.uniform(1.2, 2.0, n))
    # a polygon inscribed in the ellipse of axes L, L/aspect has ~0.7 of its area
    return 0.7 * np.pi / 4 * lengths ** 2 / aspects * um2, aspects


def _portlandite_field(rng, grid, free, fraction, size_um):
    """Level set (um, coarse grid) of CH: angular plates and massive crystals centred in the ``free`` space."""
    target = int(round(fraction * grid.n_field))
    d_ch = np.full(grid.shape, -1e3, np.float32)
    if target > 0:
        areas, aspects = _ch_crystals(rng, 4096, *size_um, grid.um2)
        k = int(np.searchsorted(np.cumsum(areas), 1.3 * target)) + 1  # some are cut by grains
        make = lambda a, asp: _angular_polygon(rng, a, asp, rng.uniform(0, np.pi), rng.integers(5, 9),
                                               r_jitter=0.15)
        counted = grid.in_field & free
        occupied = np.zeros(grid.shape, bool)
        ch, got = _place_polygons(rng, grid.shape, areas[:k], make, target, counted, occupied,
                                  aspects=aspects[:k], centre_ok=free, gap_frac=0.1, tol=grid.tol, max_tries=60)
        if got < target - grid.tol:
            areas, aspects = _ch_crystals(rng, 4096, size_um[0], 1.5 * size_um[0], grid.um2)
            ch, more = _place_polygons(rng, grid.shape, areas, make, target - got, counted, occupied,
                                       aspects=aspects, drawn=ch, centre_ok=free, tol=grid.tol, max_tries=60)
            got += more
        if got < target - grid.tol:
            log.warning("CH: placed %.4f of the field, %.4f requested; the level-set shift makes up the rest",
                        got / grid.n_field, fraction)
        d_ch = _shift_to_fraction(_signed_distance(ch, grid.step), grid.in_field & free, fraction, "CH")
    return d_ch


def _pore_field(rng, grid, outer, fraction, pore_size_um):
    """Level set (coarse grid) of the capillary pores: two-scale Gaussian random field in the ``outer`` product."""
    d_pore = np.full(grid.shape, -1e3, np.float32)
    if fraction > 0:
        g = (_smooth_noise(rng, grid.shape, pore_size_um[0] / grid.step)
             + 0.7 * _smooth_noise(rng, grid.shape, pore_size_um[1] / grid.step))
        d_pore = _shift_to_fraction(g, grid.in_field & outer, fraction, "pore")
    return d_pore


def _label_strips(fields, shape, f, strip_rows):
    """Labels (H, W) uint8: the coarse fields (pore, CH, HD, ACC) interpolated strip by strip, ``> 0`` wins.

    Bilinear interpolation to full resolution, ``strip_rows`` rows at a time;
    a pixel is LD-C-S-H unless a field is positive there, later fields
    (higher precedence) overriding earlier ones.
    """
    h, w = shape
    _, hc, wc = fields.shape
    x0, wx = _interp_index(w, f, wc)
    labels = np.empty((h, w), np.uint8)
    for r0 in range(0, h, strip_rows):
        r1 = min(h, r0 + strip_rows)
        y0, wy = _interp_index(r1 - r0, f, hc, start=r0)
        wy = wy[None, :, None]
        rows = fields[:, y0] * (1 - wy) + fields[:, y0 + 1] * wy
        v = rows[:, :, x0] * (1 - wx) + rows[:, :, x0 + 1] * wx
        lab = np.full((r1 - r0, w), LD, np.uint8)
        for phase, fld in zip((PORE, CH, HD, ACC), v):  # increasing precedence
            lab[fld > 0] = phase
        labels[r0:r1] = lab
    return labels


def phase_fractions(labels):
    """Area fraction of each phase in a label map.

    Parameters
    ----------
    labels : ndarray of int, shape (H, W)
        Label ids 0..4.

    Returns
    -------
    dict
        Phase name -> area fraction (floats summing to 1 over known labels).
    """
    counts = np.bincount(np.asarray(labels).ravel(), minlength=len(PHASES))[: len(PHASES)]
    return {p: float(c) / labels.size for p, c in zip(PHASES, counts)}


def _calibrate_levels(fields, fr, shape, f, rng, n_samples=500_000):
    """Shift the level sets so that the fractions hold after interpolation.

    Bilinear interpolation of a rough field (the pores) changes the area of
    its level set; the thresholds are therefore re-set on the interpolated
    values at ``n_samples`` random full-resolution pixels (sampling error of
    a fraction < 1e-3), in order of precedence (ACC, HD-C-S-H, CH, pore).
    ``fields`` (pore, CH, HD, ACC) is modified in place.
    """
    h, w = shape
    n = int(min(n_samples, h * w))
    yy = np.clip((rng.integers(0, h, n) + 0.5) / f - 0.5, 0, fields.shape[1] - 1.000001)
    xx = np.clip((rng.integers(0, w, n) + 0.5) / f - 0.5, 0, fields.shape[2] - 1.000001)
    y0, x0 = np.floor(yy).astype(np.intp), np.floor(xx).astype(np.intp)
    wy, wx = (yy - y0).astype(np.float32), (xx - x0).astype(np.float32)
    region = np.ones(n, bool)
    for k, name in ((3, "ACC"), (2, "HD-C-S-H"), (1, "CH"), (0, "pore")):
        fld = fields[k]
        v = ((fld[y0, x0] * (1 - wx) + fld[y0, x0 + 1] * wx) * (1 - wy)
             + (fld[y0 + 1, x0] * (1 - wx) + fld[y0 + 1, x0 + 1] * wx) * wy)
        n_region = int(region.sum())
        if fr[name] <= 0 or n_region == 0:
            continue
        q = 1.0 - fr[name] * n / n_region
        if q <= 0:
            continue
        tau = np.float32(np.quantile(v[region], q))
        fields[k] -= tau
        region &= ~(v - tau > 0)


def _interp_index(n, f, n_coarse, start=0):
    """Lower coarse index and weight for full-resolution indices ``start .. start+n-1``.

    Full pixel ``i`` sits at coarse coordinate ``(i + 0.5) / f - 0.5``.
    """
    c = (np.arange(start, start + n, dtype=np.float64) + 0.5) / f - 0.5
    c = np.clip(c, 0, n_coarse - 1.000001)
    i0 = np.floor(c).astype(np.intp)
    return i0, (c - i0).astype(np.float32)
