"""The virtual specimen: phase microstructure, BSE rendering and SEM tiling.

The embedded default input of the workflow is a *virtual* hydrated cement
paste whose truth is known: a label map of the five phases (``PHASES``), an
"ideal" backscattered-electron (BSE) image rendered from it with the phases'
backscatter coefficients eta, and the overlapping SEM tiles a microscope
would record of it (stage errors, brightness/contrast drift, shot noise).

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

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import ConvexHull
from skimage.draw import polygon as draw_polygon

from .errors import InputError

log = logging.getLogger(__name__)

#: Phase names; the index is the label id in label maps.
PHASES = ("pore", "LD-C-S-H", "HD-C-S-H", "CH", "ACC")
PHASE_IDS = {name: i for i, name in enumerate(PHASES)}
PORE, LD, HD, CH, ACC = range(5)

#: Default area fractions of the demo specimen (w/c ~ 0.45, a few weeks old).
DEFAULT_FRACTIONS = {"pore": 0.05, "LD-C-S-H": 0.38, "HD-C-S-H": 0.25, "CH": 0.15, "ACC": 0.17}

#: Rough backscatter coefficients at 20 keV (epoxy-filled pore, C-S-H, CH,
#: C3S), for tests and examples only; the workflow uses the Monte Carlo table
#: of ``microprop.backscatter`` (``phase_eta.csv``).
DEFAULT_PHASE_ETA = {"pore": 0.075, "LD-C-S-H": 0.125, "HD-C-S-H": 0.14, "CH": 0.15, "ACC": 0.175}

#: Relative intra-phase grey texture (standard deviation / eta) of the render.
DEFAULT_TEXTURE_REL = {"pore": 0.03, "LD-C-S-H": 0.06, "HD-C-S-H": 0.035, "CH": 0.02, "ACC": 0.03}


# --------------------------------------------------------------------------
# input checks


def check_fractions(fractions, where="fractions"):
    """Validate phase area fractions.

    Parameters
    ----------
    fractions : dict
        Phase name -> area fraction (0..1). All five ``PHASES`` are required.
    where : str
        Name of the input (file or config key) used in error messages.

    Returns
    -------
    dict
        The fractions as floats in ``PHASES`` order, normalised to sum 1.

    Raises
    ------
    InputError
        On an unknown or missing phase, a value outside [0, 1], or a sum that
        differs from 1 by more than 0.01.
    """
    if not isinstance(fractions, dict):
        raise InputError(f"{where}: expected a mapping phase -> area fraction, got {type(fractions).__name__}")
    unknown = [k for k in fractions if k not in PHASE_IDS]
    if unknown:
        raise InputError(f"{where}: unknown phase(s) {unknown}; expected the phases {list(PHASES)}")
    missing = [p for p in PHASES if p not in fractions]
    if missing:
        raise InputError(f"{where}: missing area fraction(s) for {missing}; all of {list(PHASES)} are required")
    out = {}
    for p in PHASES:
        try:
            v = float(fractions[p])
        except (TypeError, ValueError):
            raise InputError(f"{where}: fraction of {p!r} is {fractions[p]!r}, expected a number") from None
        if not 0.0 <= v <= 1.0:
            raise InputError(f"{where}: fraction of {p!r} is {v}, expected a value in [0, 1]")
        out[p] = v
    total = sum(out.values())
    if abs(total - 1.0) > 0.01:
        raise InputError(f"{where}: area fractions sum to {total:.4f}, expected 1")
    return {p: v / total for p, v in out.items()}


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


# --------------------------------------------------------------------------
# geometry helpers (coarse grid)


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


# --------------------------------------------------------------------------
# microstructure


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
    px_um = pixel_size_nm / 1000.0
    f = max(1, int(round(coarse_um / px_um)))
    step = f * px_um  # coarse pixel size (um)
    hc, wc = -(-h // f) + 1, -(-w // f) + 1
    # coarse pixels whose centre lies in the field (for counting fractions)
    in_field = np.zeros((hc, wc), bool)
    in_field[: max(1, int(round(h / f))), : max(1, int(round(w / f)))] = True
    n_field = int(in_field.sum())
    um2 = 1.0 / step ** 2  # coarse px per um^2
    log.info("microstructure %dx%d px at %.1f nm/px on a %dx%d grid of %.3f um", h, w, pixel_size_nm, hc, wc, step)

    def area_px(d_um):
        return np.pi / 4 * np.asarray(d_um) ** 2 * um2

    tol = max(2, int(0.001 * n_field))

    # --- anhydrous clinker: angular convex grains, largest first, no contact
    def sample(n, lo, hi, q):
        return _power_law_sizes(rng, n, lo, hi, q)

    target = int(round(fr["ACC"] * n_field))
    d_acc = np.full((hc, wc), -1e3, np.float32)
    acc = np.zeros((hc, wc), bool)
    if target > 0:
        sizes = _sizes_for_area(lambda n: area_px(sample(n, *clinker_size_um, clinker_size_exponent)), target)
        make = lambda a, asp: _angular_polygon(rng, a, asp, rng.uniform(0, np.pi), rng.integers(4, 10),
                                               r_jitter=0.4)
        counted = in_field.copy()
        occupied = np.zeros((hc, wc), bool)
        acc, got = _place_polygons(rng, (hc, wc), sizes, make, target, counted, occupied,
                                   gap_frac=0.15, tol=tol)
        if got < target - tol:  # crowded: fill up with small grains anywhere free
            small = area_px(rng.uniform(clinker_size_um[0], 2 * clinker_size_um[0], 4000))
            acc, more = _place_polygons(rng, (hc, wc), small, make, target - got, counted, occupied,
                                        drawn=acc, tol=tol, max_tries=200)
            got += more
        log.info("ACC: %.4f of the field before the level-set shift", got / n_field)
        d_acc = _shift_to_fraction(_signed_distance(acc, step), in_field, fr["ACC"], "ACC")
    acc_c = d_acc > 0

    # --- HD-C-S-H: rims of smoothly varying thickness + fully hydrated grains
    target = int(round(fr["HD-C-S-H"] * n_field))
    d_hd = np.full((hc, wc), -1e3, np.float32)
    if target > 0:
        t = ndimage.gaussian_filter(rng.uniform(0, 1, (hc, wc)).astype(np.float32), 5.0 / step)
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        d_rim = d_acc + np.float32(rim_um[0]) + np.float32(rim_um[1] - rim_um[0]) * t
        hd = (d_rim > 0) & ~acc_c
        have = int((hd & in_field).sum())
        if have < target - tol:
            sizes = _sizes_for_area(lambda n: area_px(rng.uniform(*inner_grain_size_um, n)), target - have)
            make = lambda a, asp: _angular_polygon(rng, a, asp, rng.uniform(0, np.pi), rng.integers(5, 10))
            counted = in_field & ~hd & ~acc_c
            occupied = ndimage.binary_dilation(acc_c, iterations=max(1, int(round(0.3 / step))))
            grains, _ = _place_polygons(rng, (hc, wc), sizes, make, target - have, counted, occupied,
                                        gap_frac=0.1, tol=tol)
            d_rim = np.maximum(d_rim, _signed_distance(grains, step))
        d_hd = _shift_to_fraction(d_rim, in_field & ~acc_c, fr["HD-C-S-H"], "HD-C-S-H")
    free = ~acc_c & ~(d_hd > 0)

    # --- CH: angular plates and massive crystals in the outer product
    target = int(round(fr["CH"] * n_field))
    d_ch = np.full((hc, wc), -1e3, np.float32)
    if target > 0:
        def ch_crystals(n, lo, hi):
            lengths = rng.uniform(lo, hi, n)
            aspects = np.where(rng.uniform(size=n) < 0.5, rng.uniform(2.5, 5.0, n), rng.uniform(1.2, 2.0, n))
            # a polygon inscribed in the ellipse of axes L, L/aspect has ~0.7 of its area
            return 0.7 * np.pi / 4 * lengths ** 2 / aspects * um2, aspects

        areas, aspects = ch_crystals(4096, *ch_size_um)
        k = int(np.searchsorted(np.cumsum(areas), 1.3 * target)) + 1  # some are cut by grains
        make = lambda a, asp: _angular_polygon(rng, a, asp, rng.uniform(0, np.pi), rng.integers(5, 9),
                                               r_jitter=0.15)
        counted = in_field & free
        occupied = np.zeros((hc, wc), bool)
        ch, got = _place_polygons(rng, (hc, wc), areas[:k], make, target, counted, occupied,
                                  aspects=aspects[:k], centre_ok=free, gap_frac=0.1, tol=tol, max_tries=60)
        if got < target - tol:
            areas, aspects = ch_crystals(4096, ch_size_um[0], 1.5 * ch_size_um[0])
            ch, more = _place_polygons(rng, (hc, wc), areas, make, target - got, counted, occupied,
                                       aspects=aspects, drawn=ch, centre_ok=free, tol=tol, max_tries=60)
            got += more
        if got < target - tol:
            log.warning("CH: placed %.4f of the field, %.4f requested; the level-set shift makes up the rest",
                        got / n_field, fr["CH"])
        d_ch = _shift_to_fraction(_signed_distance(ch, step), in_field & free, fr["CH"], "CH")
    outer = free & ~(d_ch > 0)

    # --- capillary pores: level set of a two-scale random field in the outer product
    d_pore = np.full((hc, wc), -1e3, np.float32)
    if fr["pore"] > 0:
        g = (_smooth_noise(rng, (hc, wc), pore_size_um[0] / step)
             + 0.7 * _smooth_noise(rng, (hc, wc), pore_size_um[1] / step))
        d_pore = _shift_to_fraction(g, in_field & outer, fr["pore"], "pore")

    # --- full resolution: bilinear interpolation of the fields, strip by strip
    fields = np.stack([d_pore, d_ch, d_hd, d_acc]).astype(np.float32)
    del d_pore, d_ch, d_hd, d_acc
    _calibrate_levels(fields, fr, (h, w), f, rng)
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


# --------------------------------------------------------------------------
# BSE rendering


def bse_gain_offset(phase_eta, grey_range=(50.0, 205.0)):
    """Linear detector setting that maps the phases' eta range onto a grey range.

    Parameters
    ----------
    phase_eta : dict
        Phase name -> backscatter coefficient eta (0..1).
    grey_range : (float, float)
        Grey levels (8-bit scale) of the lowest and the highest eta.

    Returns
    -------
    gain, offset : float
        ``grey = offset + gain * eta`` (BSE detector signal linear in the
        number of backscattered electrons; Goldstein et al., Scanning Electron
        Microscopy and X-ray Microanalysis, 4th ed., ch. 2).
    """
    eta = _check_eta(phase_eta)
    lo_eta, hi_eta = min(eta.values()), max(eta.values())
    if hi_eta <= lo_eta:
        raise InputError("phase_eta: all phases have the same eta; no contrast to render")
    gain = (grey_range[1] - grey_range[0]) / (hi_eta - lo_eta)
    return float(gain), float(grey_range[0] - gain * lo_eta)


def render_bse(labels, phase_eta, rng=None, *, pixel_size_nm=40.0, gain=None, offset=None,
               grey_range=(50.0, 205.0), texture_rel=None, texture_um=(0.1, 1.0), psf_sigma_px=1.0):
    """Render the noise-free BSE grey image of a label map.

    ``grey = offset + gain * eta(x)``, with ``eta(x) = eta(phase) * (1 + t(x))``
    where ``t`` is an intra-phase texture (two-scale smoothed Gaussian noise of
    relative standard deviation ``texture_rel[phase]``), then blurred with a
    Gaussian point-spread function. Shot noise is added per tile
    (:func:`cut_tiles`).

    Parameters
    ----------
    labels : ndarray of uint8, shape (H, W)
        Label ids 0..4 (``PHASES``).
    phase_eta : dict
        Phase name -> backscatter coefficient eta (all phases present in
        ``labels``).
    rng : numpy.random.Generator or int, optional
    pixel_size_nm : float
        Pixel size; converts ``texture_um``.
    gain, offset : float, optional
        Detector setting (grey levels per unit eta, grey at eta 0); by default
        from :func:`bse_gain_offset` with ``grey_range``.
    grey_range : (float, float)
        8-bit grey levels of the darkest and brightest phase (when ``gain`` is None).
    texture_rel : float or dict, optional
        Relative texture amplitude, scalar or per phase; default
        ``DEFAULT_TEXTURE_REL``.
    texture_um : (float, float)
        Correlation lengths (um) of the fine and the coarse texture.
    psf_sigma_px : float
        Standard deviation (px) of the Gaussian point-spread function.

    Returns
    -------
    numpy.ndarray, shape (H, W), float32
        Ideal grey levels on the 8-bit scale (not clipped).

    Raises
    ------
    InputError
        If a phase present in ``labels`` has no eta, or labels are not 0..4.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"render_bse: labels must be 2D, got shape {labels.shape}")
    if labels.size and (int(labels.max()) >= len(PHASES) or int(labels.min()) < 0):
        raise InputError(f"render_bse: label ids {int(labels.min())}..{int(labels.max())}, "
                         f"expected 0..{len(PHASES) - 1}")
    eta = _check_eta(phase_eta, labels)
    if gain is None or offset is None:
        g, o = bse_gain_offset({p: v for p, v in eta.items() if np.isfinite(v)}, grey_range)
        gain = g if gain is None else gain
        offset = o if offset is None else offset
    rng = np.random.default_rng(rng)
    if texture_rel is None:
        texture_rel = DEFAULT_TEXTURE_REL
    if np.isscalar(texture_rel):
        texture_rel = {p: float(texture_rel) for p in PHASES}
    eta_lut = np.array([eta[p] if np.isfinite(eta[p]) else 0.0 for p in PHASES], np.float32)
    tex_lut = np.array([texture_rel.get(p, 0.0) for p in PHASES], np.float32) * np.float32(1 / math.sqrt(2))
    px_um = pixel_size_nm / 1000.0

    out = eta_lut[labels]
    if tex_lut.any():
        fine = _smooth_noise(rng, labels.shape, texture_um[0] / px_um)
        k = max(1, int(texture_um[1] / px_um / 4))  # coarse texture on a reduced grid
        small_shape = (-(-labels.shape[0] // k) + 1, -(-labels.shape[1] // k) + 1)
        coarse = _smooth_noise(rng, small_shape, texture_um[1] / px_um / k)
        y0, wy = _interp_index(labels.shape[0], k, small_shape[0])
        x0, wx = _interp_index(labels.shape[1], k, small_shape[1])
        for r0 in range(0, labels.shape[0], 1024):
            sl = slice(r0, r0 + 1024)
            a, b = y0[sl], wy[sl][:, None]
            rows = coarse[a] * (1 - b) + coarse[a + 1] * b
            fine[sl] += rows[:, x0] * (1 - wx) + rows[:, x0 + 1] * wx
        fine *= tex_lut[labels]
        fine += 1.0
        out *= fine
        del fine
    if psf_sigma_px > 0:
        out = ndimage.gaussian_filter(out, psf_sigma_px, output=np.float32)
    out *= np.float32(gain)
    out += np.float32(offset)
    return out


# --------------------------------------------------------------------------
# SEM tiles


def tile_grid(field_shape_px, tile_shape, overlap_frac):
    """Number of tiles and step that cover a field with a given overlap.

    Parameters
    ----------
    field_shape_px : (int, int)
        ``(H, W)`` of the field to cover.
    tile_shape : (int, int)
        ``(h, w)`` of one tile.
    overlap_frac : float
        Overlap of neighbouring tiles as a fraction of the tile size, in [0, 1).

    Returns
    -------
    n_rows, n_cols, step_y, step_x : int
        The tiles' nominal top-left corners are ``(row * step_y, col * step_x)``
        and cover at least ``field_shape_px``.
    """
    if not 0 <= overlap_frac < 1:
        raise InputError(f"tile_grid: overlap_frac={overlap_frac}, expected a value in [0, 1)")
    out = []
    for n_field, n_tile in zip(field_shape_px, tile_shape):
        step = max(1, int(round(n_tile * (1 - overlap_frac))))
        n = 1 if n_field <= n_tile else int(math.ceil((n_field - n_tile) / step)) + 1
        out.append((n, step))
    (nr, sy), (nc, sx) = out
    return nr, nc, sy, sx


def cut_tiles(image, tile_shape, overlap_frac, stage_error_um, pixel_size_nm, rng=None, *,
              field_origin_px=(0, 0), field_shape_px=None, offset_um=(0.0, 0.0),
              brightness_drift=0.01, contrast_drift=0.02, electrons_per_px=5000.0,
              gain=None, offset=None, dtype=np.uint8, file_pattern="{tile}.tif"):
    """Cut overlapping SEM tiles from an ideal grey image, as a stage would record them.

    Nominal tile corners form a regular grid with the requested overlap that
    covers the field; each tile is cut at its true position, nominal +
    ``offset_um`` + N(0, ``stage_error_um``) per axis (rounded to whole
    pixels), then gets its own contrast and brightness drift and shot noise::

        counts ~ Poisson(electrons_per_px * eta),   eta = (grey - offset) / gain
        tile = (1 + c) * (offset + gain * counts / electrons_per_px) + b * full_scale

    with ``c ~ N(0, contrast_drift)``, ``b ~ N(0, brightness_drift)``; for
    means above 50 counts the Poisson draw uses its normal approximation.
    Values are rounded and clipped to ``dtype``'s range (the image's 8-bit
    scale is multiplied by 257 for ``uint16``).

    Parameters
    ----------
    image : ndarray, shape (H, W), float
        Ideal grey image on the 8-bit scale (:func:`render_bse`), in the
        specimen frame; it must hold the jittered tiles (generate it with a
        margin). Tiles that would leave it are clipped to its edge, with a
        warning (their truth records where they were cut).
    tile_shape : (int, int)
        ``(h, w)`` of a tile in px.
    overlap_frac : float
        Nominal overlap of neighbours, fraction of the tile size.
    stage_error_um : float
        Standard deviation of the stage positioning error per axis (um).
    pixel_size_nm : float
    rng : numpy.random.Generator or int, optional
    field_origin_px : (int, int)
        ``(x, y)`` of the nominal top-left corner of the tile grid in ``image``.
    field_shape_px : (int, int), optional
        ``(H, W)`` of the nominal field to cover; default the image minus the origin.
    offset_um : (float, float)
        ``(x, y)`` common shift of the whole set (e.g. the after-indentation
        set of a remounted specimen), um.
    brightness_drift, contrast_drift : float
        Standard deviations of the per-tile brightness (fraction of full
        scale) and contrast (relative gain) changes.
    electrons_per_px : float
        Primary electrons per pixel dwell; sets the shot noise. Zero or None:
        no shot noise.
    gain, offset : float, optional
        Detector setting used by the render (grey per unit eta, grey at eta 0);
        default ``bse_gain_offset(DEFAULT_PHASE_ETA)``.
    dtype : numpy dtype
        ``uint8`` or ``uint16``.
    file_pattern : str
        File name of a tile, formatted with ``tile``, ``row``, ``col``.

    Returns
    -------
    tiles : list of ndarray, each ``tile_shape``, ``dtype``
        In the order of ``layout``.
    layout : pandas.DataFrame
        ``tile, file, row, col, x_um, y_um``: nominal stage position of each
        tile's top-left pixel (um, specimen frame).
    truth : pandas.DataFrame
        ``tile, x_px, y_px``: where each tile was actually cut (specimen frame).

    Raises
    ------
    InputError
        If the image is not 2D, smaller than a tile, or the nominal field does
        not fit in it.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise InputError(f"cut_tiles: image must be 2D, got shape {image.shape}")
    th, tw = (int(s) for s in tile_shape)
    H, W = image.shape
    if th > H or tw > W:
        raise InputError(f"cut_tiles: tile shape {(th, tw)} is larger than the image {image.shape}")
    ox, oy = (int(v) for v in field_origin_px)
    fh, fw = (H - oy, W - ox) if field_shape_px is None else (int(v) for v in field_shape_px)
    nr, nc, sy, sx = tile_grid((fh, fw), (th, tw), overlap_frac)
    if ox < 0 or oy < 0 or oy + (nr - 1) * sy + th > H or ox + (nc - 1) * sx + tw > W:
        raise InputError(
            f"cut_tiles: the nominal tile grid ({nr} x {nc} tiles of {th} x {tw} px from origin "
            f"x={ox}, y={oy}) does not fit in the image {image.shape}; generate the field with a margin")
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        raise InputError(f"cut_tiles: dtype {dtype} not supported; use uint8 or uint16")
    scale = 1.0 if dtype == np.uint8 else 257.0
    full = float(np.iinfo(dtype).max)
    if gain is None or offset is None:
        g, o = bse_gain_offset(DEFAULT_PHASE_ETA)
        gain = g if gain is None else gain
        offset = o if offset is None else offset
    rng = np.random.default_rng(rng)
    px_per_um = 1000.0 / pixel_size_nm

    rows, cols = np.meshgrid(np.arange(nr), np.arange(nc), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    nom_x = ox + cols * sx
    nom_y = oy + rows * sy
    err = rng.normal(0.0, stage_error_um, (rows.size, 2)) if stage_error_um > 0 else np.zeros((rows.size, 2))
    true_x = np.rint(nom_x + (offset_um[0] + err[:, 0]) * px_per_um).astype(int)
    true_y = np.rint(nom_y + (offset_um[1] + err[:, 1]) * px_per_um).astype(int)
    cx, cy = np.clip(true_x, 0, W - tw), np.clip(true_y, 0, H - th)
    if (cx != true_x).any() or (cy != true_y).any():
        log.warning("cut_tiles: %d tile(s) left the image and were clipped to its edge; "
                    "generate the field with a larger margin", int(((cx != true_x) | (cy != true_y)).sum()))
    contrast = 1.0 + rng.normal(0.0, contrast_drift, rows.size)
    bright = rng.normal(0.0, brightness_drift, rows.size) * 255.0

    tiles, names, files = [], [], []
    for k in range(rows.size):
        name = f"r{rows[k]:03d}_c{cols[k]:03d}"
        names.append(name)
        files.append(file_pattern.format(tile=name, row=int(rows[k]), col=int(cols[k])))
        t = np.array(image[cy[k]: cy[k] + th, cx[k]: cx[k] + tw], dtype=np.float32)
        if electrons_per_px:
            lam = np.clip((t - np.float32(offset)) * np.float32(electrons_per_px / gain), 0, None)
            if float(lam.min()) > 50:
                noise = rng.standard_normal(lam.shape, dtype=np.float32)
                noise *= np.sqrt(lam)
                lam += noise
            else:
                lam = rng.poisson(lam).astype(np.float32)
            t = lam
            t *= np.float32(gain / electrons_per_px)
            t += np.float32(offset)
        t *= np.float32(contrast[k])
        t += np.float32(bright[k])
        t *= np.float32(scale)
        np.rint(t, out=t)
        np.clip(t, 0, full, out=t)
        tiles.append(t.astype(dtype))
    px_um = pixel_size_nm / 1000.0
    layout = pd.DataFrame({"tile": names, "file": files, "row": rows, "col": cols,
                           "x_um": np.round(nom_x * px_um, 6), "y_um": np.round(nom_y * px_um, 6)})
    truth = pd.DataFrame({"tile": names, "x_px": cx, "y_px": cy})
    return tiles, layout, truth


# --------------------------------------------------------------------------
# one area of a virtual specimen: geometry and the whole forward simulation


def area_geometry(pixel_size_nm, n_batches=(2, 1), batch_shape=(20, 20), spacing_um=10.0, margin_um=15.0,
                  tile_shape_px=(2048, 2048), overlap_frac=0.1, stage_error_um=1.5,
                  after_offset_um=(0.0, 0.0), batch_origin_error_um=1.0, grid_drift_um=0.1):
    """Layout of a virtual area: field, tile grid and nominal batch origins.

    The nominal field holds ``n_batches = [nx, ny]`` batches of
    ``batch_shape = [n_rows, n_cols]`` indents at ``spacing_um``, each batch
    occupying ``n_cols * s`` x ``n_rows * s`` um with its first indent at
    ``s / 2`` from its corner, plus ``margin_um`` all round. The tile grid
    (:func:`tile_grid`) covers it; the generated image adds a pad for the
    stage errors (5 sigma plus the batch errors) and the after-set offset, so
    that jittered tiles stay inside. Specimen frame: generated pixel ``p`` is
    at stage ``p * pixel_size_nm / 1000`` um.

    Parameters
    ----------
    pixel_size_nm : float
    n_batches : (int, int)
        Batches along x and y.
    batch_shape : (int, int)
        Indents per batch, rows x columns.
    spacing_um, margin_um : float
    tile_shape_px : (int, int)
        ``(h, w)`` of a tile.
    overlap_frac, stage_error_um : float
    after_offset_um : (float, float)
        ``(x, y)`` shift of the after-indentation tile set.
    batch_origin_error_um, grid_drift_um : float
        Only used to keep indents inside the generated field.

    Returns
    -------
    dict
        ``shape`` (H, W) of the generated field (px); ``tile_origin_px``
        (x, y) of the nominal top-left tile; ``tile_grid`` (n_rows, n_cols,
        step_y, step_x); ``field_origin_px`` (x, y) and ``field_shape_px``
        (H, W) of the nominal field; ``batch_origins_um``: list of nominal
        (x, y) stage positions of each batch's first indent, batches in
        row-major order over (y, x).

    Raises
    ------
    InputError
        On non-positive sizes.
    """
    if not pixel_size_nm > 0:
        raise InputError(f"virtual specimen: pixel_size_nm={pixel_size_nm}, expected > 0")
    nbx, nby = (int(v) for v in n_batches)
    nrow, ncol = (int(v) for v in batch_shape)
    if min(nbx, nby, nrow, ncol) < 1 or not spacing_um > 0 or margin_um < 0:
        raise InputError(f"virtual specimen: n_batches={n_batches}, batch_shape={batch_shape}, "
                         f"spacing_um={spacing_um}, margin_um={margin_um}: expected positive sizes")
    th, tw = (int(v) for v in tile_shape_px)
    px_um = pixel_size_nm / 1000.0
    field_um = (2 * margin_um + nby * nrow * spacing_um, 2 * margin_um + nbx * ncol * spacing_um)
    field_px = tuple(int(math.ceil(v / px_um)) for v in field_um)
    nr, nc, sy, sx = tile_grid(field_px, (th, tw), overlap_frac)
    cover = ((nr - 1) * sy + th, (nc - 1) * sx + tw)
    pad = [int(math.ceil((abs(float(o)) + 5 * stage_error_um) / px_um)) + 2 for o in after_offset_um]
    shape = (cover[0] + 2 * pad[1], cover[1] + 2 * pad[0])
    tile_origin = (pad[0], pad[1])
    field_origin = (tile_origin[0] + (cover[1] - field_px[1]) // 2, tile_origin[1] + (cover[0] - field_px[0]) // 2)
    slack = 5 * batch_origin_error_um + 5 * grid_drift_um * math.sqrt(max(nrow, ncol))
    if slack > margin_um + spacing_um / 2:
        log.warning("margin_um=%.1f is small for the batch origin error and drift; indents may reach the "
                    "field edge", margin_um)
    origins = []
    for by in range(nby):
        for bx in range(nbx):
            origins.append((field_origin[0] * px_um + margin_um + (bx * ncol + 0.5) * spacing_um,
                            field_origin[1] * px_um + margin_um + (by * nrow + 0.5) * spacing_um))
    return {"shape": shape, "tile_origin_px": tile_origin, "tile_grid": (nr, nc, sy, sx),
            "field_origin_px": field_origin, "field_shape_px": field_px, "batch_origins_um": origins}


def generate_area(phase_eta, *, pixel_size_nm=40.0, fractions=None, n_batches=(2, 1), batch_shape=(20, 20),
                  spacing_um=10.0, margin_um=15.0, batch_origin_error_um=1.0, grid_drift_um=0.1,
                  tile_shape_px=(2048, 2048), overlap_frac=0.1, stage_error_um=1.5,
                  after_offset_um=(3.0, -2.0), indenter_offset_um=(0.0, 0.0), indenter_axes=(1, 1),
                  load_mN=2.0, noise_rel=0.05, electrons_per_px=5000.0, brightness_drift=0.01,
                  contrast_drift=0.02, batches=None, seed=0, tile_dtype=np.uint8,
                  file_pattern="{tile}.tif"):
    """Simulate one imaged and indented area of a virtual cement paste specimen.

    Flow: :func:`area_geometry`; phase labels
    (:func:`generate_microstructure`); per batch the true indent positions
    from the grid model (``microprop.nanoindentation.grid_positions``, seed
    paper eq. 3a/3b) with origin = nominal + N(0, ``batch_origin_error_um``)
    and increment drift ``grid_drift_um``; measured E/H from the forward
    model (``nanoindentation.indent_properties``) on the labels; the BSE
    image (:func:`render_bse`); Berkovich marks at the true positions
    (``microprop.locate.render_berkovich_marks``) for the after image; the
    before and after tile sets (:func:`cut_tiles`, independent stage errors,
    the after set shifted by ``after_offset_um``).

    The exports list the NOMINAL positions in indenter coordinates,
    ``X = sx * (stage_x - dx)``, ``Y = sy * (stage_y - dy)`` with
    ``indenter_offset_um = [dx, dy]`` and ``indenter_axes = [sx, sy]``
    (so that stage = (sx X + dx, sy Y + dy)); columns ``j`` run along stage
    +x and rows ``i`` along stage +y; indents numbered row-major from 1.

    Parameters
    ----------
    phase_eta : dict
        Phase name -> backscatter coefficient eta.
    pixel_size_nm, fractions, n_batches, batch_shape, spacing_um, margin_um,
    batch_origin_error_um, grid_drift_um, tile_shape_px, overlap_frac,
    stage_error_um, after_offset_um, indenter_offset_um, indenter_axes,
    load_mN, noise_rel, electrons_per_px, brightness_drift, contrast_drift
        See the workflow's ``virtual`` config (units in the names; errors and
        drifts are standard deviations).
    batches : list of str, optional
        Batch names, one per batch (default ``b01, b02, ...``).
    seed : int
        Seed of the one random stream all draws come from (deterministic).
    tile_dtype : numpy dtype
        ``uint8`` or ``uint16``.

    Returns
    -------
    dict
        ``labels`` (H, W) uint8; ``before``, ``after``: each a dict with
        ``tiles`` (list of arrays), ``layout`` and ``truth`` tables
        (:func:`cut_tiles`); ``exports``: batch -> export table (``indent,
        x_um, y_um, depth_nm, load_mN, stiffness_N_per_m, H_GPa, E_GPa`` in
        indenter coordinates); ``indents``: truth table (``batch, indent, row,
        col, x_px, y_px`` true in the specimen frame, ``x_um, y_um`` true stage,
        ``nominal_x_um, nominal_y_um``, measured and true E/H, ``depth_nm``,
        ``f_<phase>``, ``phase``); ``summary``: dict for ``truth.json``.

    Raises
    ------
    InputError
        On bad fractions, eta table, sizes, or batch names.
    """
    from . import locate, nanoindentation

    rng = np.random.default_rng(seed)
    fr = check_fractions(DEFAULT_FRACTIONS if fractions is None else fractions)
    eta = _check_eta(phase_eta)
    nbx, nby = (int(v) for v in n_batches)
    names = list(batches) if batches is not None else [f"b{i + 1:02d}" for i in range(nbx * nby)]
    if len(names) != nbx * nby or len(set(names)) != len(names):
        raise InputError(f"virtual specimen: {len(names)} batch names {names} for n_batches={list(n_batches)} "
                         f"({nbx * nby} batches); expected as many unique names")
    sx_ax, sy_ax = (int(v) for v in indenter_axes)
    if sx_ax not in (-1, 1) or sy_ax not in (-1, 1):
        raise InputError(f"virtual specimen: indenter_axes={list(indenter_axes)}, expected each +1 or -1")
    dx, dy = (float(v) for v in indenter_offset_um)
    px_um = pixel_size_nm / 1000.0
    geo = area_geometry(pixel_size_nm, n_batches, batch_shape, spacing_um, margin_um, tile_shape_px,
                        overlap_frac, stage_error_um, after_offset_um, batch_origin_error_um, grid_drift_um)
    H, W = geo["shape"]
    log.info("virtual area: field %d x %d px (%.1f x %.1f um), %d x %d tiles per set",
             W, H, W * px_um, H * px_um, geo["tile_grid"][1], geo["tile_grid"][0])

    labels = generate_microstructure((H, W), pixel_size_nm, fr, rng)

    nrow, ncol = (int(v) for v in batch_shape)
    tables, exports, batch_info = [], {}, {}
    for name, (ox, oy) in zip(names, geo["batch_origins_um"]):
        err = rng.normal(0.0, batch_origin_error_um, 2) if batch_origin_error_um > 0 else np.zeros(2)
        true = nanoindentation.grid_positions(nrow, ncol, spacing_um, origin_um=(ox + err[0], oy + err[1]),
                                              drift_um=grid_drift_um, rng=rng)
        t = true.copy()
        t.insert(0, "batch", name)
        t["x_px"] = t["x_um"] / px_um
        t["y_px"] = t["y_um"] / px_um
        t["nominal_x_um"] = ox + t["col"] * spacing_um
        t["nominal_y_um"] = oy + t["row"] * spacing_um
        tables.append(t)
        batch_info[name] = {"nominal_origin_um": [ox, oy], "true_origin_um": [ox + err[0], oy + err[1]],
                            "origin_error_um": err}
    indents = pd.concat(tables, ignore_index=True)
    props = nanoindentation.indent_properties(labels, indents["x_px"].to_numpy(), indents["y_px"].to_numpy(),
                                              pixel_size_nm, rng, load_mN=load_mN, noise_rel=noise_rel)
    indents = pd.concat([indents, props.reset_index(drop=True)], axis=1)
    for name in names:
        b = indents[indents["batch"] == name]
        exports[name] = pd.DataFrame({
            "indent": b["indent"].to_numpy(int),
            "x_um": sx_ax * (b["nominal_x_um"].to_numpy() - dx),
            "y_um": sy_ax * (b["nominal_y_um"].to_numpy() - dy),
            **{c: b[c].to_numpy() for c in ("depth_nm", "load_mN", "stiffness_N_per_m", "H_GPa", "E_GPa")}})

    gain, offset = bse_gain_offset(eta)
    before = render_bse(labels, eta, rng, pixel_size_nm=pixel_size_nm, gain=gain, offset=offset)
    after = locate.render_berkovich_marks(before, indents["x_px"].to_numpy(), indents["y_px"].to_numpy(),
                                          indents["depth_nm"].to_numpy(), pixel_size_nm, rng)
    sets = {}
    for stage, img, shift in (("before", before, (0.0, 0.0)), ("after", after, after_offset_um)):
        tiles, layout, truth = cut_tiles(
            img, tile_shape_px, overlap_frac, stage_error_um, pixel_size_nm, rng,
            field_origin_px=geo["tile_origin_px"], field_shape_px=tuple(
                (n - 1) * s + t for n, s, t in zip(geo["tile_grid"][:2], geo["tile_grid"][2:], tile_shape_px)),
            offset_um=shift, brightness_drift=brightness_drift, contrast_drift=contrast_drift,
            electrons_per_px=electrons_per_px, gain=gain, offset=offset, dtype=tile_dtype,
            file_pattern=file_pattern)
        sets[stage] = {"tiles": tiles, "layout": layout, "truth": truth}
    del before, after

    fy, fx = geo["field_origin_px"][1], geo["field_origin_px"][0]
    fh, fw = geo["field_shape_px"]
    per_phase = {}
    for p in PHASES:
        sel = indents["phase"] == p
        per_phase[p] = {
            "n_indents": int(sel.sum()), "indent_fraction": float(sel.mean()),
            **{f"{q}_{s}": (float(getattr(indents.loc[sel, q], s)()) if sel.sum() > 1 else None)
               for q in ("E_GPa", "H_GPa", "E_true_GPa", "H_true_GPa") for s in ("mean", "std")}}
    summary = {
        "area_fractions": phase_fractions(labels),
        "area_fractions_nominal_field": phase_fractions(labels[fy: fy + fh, fx: fx + fw]),
        "requested_fractions": fr,
        "dominant_phase": per_phase,
        "phase_eta": eta,
        "detector": {"gain_grey_per_eta": gain, "offset_grey": offset},
        "geometry": {**geo, "pixel_size_nm": pixel_size_nm, "frame": (
            "specimen frame: pixel p of phases.npy is at stage p * pixel_size_nm / 1000 um")},
        "batches": batch_info,
        "parameters": {
            "pixel_size_nm": pixel_size_nm, "fractions": fr, "n_batches": list(n_batches),
            "batch_shape": list(batch_shape), "spacing_um": spacing_um, "margin_um": margin_um,
            "batch_origin_error_um": batch_origin_error_um, "grid_drift_um": grid_drift_um,
            "tile_shape_px": list(tile_shape_px), "overlap_frac": overlap_frac,
            "stage_error_um": stage_error_um, "after_offset_um": list(after_offset_um),
            "indenter_offset_um": list(indenter_offset_um), "indenter_axes": list(indenter_axes),
            "load_mN": load_mN, "noise_rel": noise_rel, "electrons_per_px": electrons_per_px,
            "brightness_drift": brightness_drift, "contrast_drift": contrast_drift,
            "batches": names, "seed": seed, "tile_dtype": np.dtype(tile_dtype).name},
    }
    return {"labels": labels, "before": sets["before"], "after": sets["after"], "exports": exports,
            "indents": indents, "summary": summary}
