"""Virtual ceramic-metal composites (Li4Ti5O12 + Ni): microstructures, SEM images and solved conductivities.

The third study's embedded default (``../shared/references/cnn_conductivity_lto_ni_poster.txt``):
58 samples of an anode ceramic with metal particles, each with one measured
electrical conductivity (spread evenly in log10 over 1e-2..1e4 S/cm) and
three SEM images in which the metal is bright. Here each sample is generated
with a known microstructure, and its conductivity is *solved* on it
(:mod:`microprop.physics._conduction`), so that what decides the
conductivity (how much metal, and how it is connected) is known.

Microstructure (:func:`composite_microstructure`): a Boolean model of
overlapping discs (Matheron, *Random Sets and Integral Geometry*, 1975;
Stoyan, Kendall and Mecke, *Stochastic Geometry and its Applications*, 2nd
ed., 1995, ch. 3) of log-normal radii (median ``particle_px``, sd of ln r
:data:`RADIUS_LOG_SD`), whose centres are a log-Gaussian Cox process (Moller,
Syversveen and Waagepetersen, Scand. J. Stat. 25, 451, 1998): intensity
``exp(kappa g - kappa^2 / 2)``, ``g`` a unit Gaussian random field of
correlation ``cluster_scale * particle_px`` and ``kappa = kappa_max *
clustering``; clustering 0 is a Poisson process, 1 gathers the particles into
agglomerates with emptier matrix between them. The centre density follows
from the local Boolean coverage ``1 - exp(-lambda(x) pi E[r^2])``; the area
fraction is then met exactly (to a pixel) by thresholding ``D(x) = min_i |x -
c_i| / r_i`` at its ``fraction`` quantile, which grows or shrinks all discs
by one common factor (``radius_scale``, 0.8-1.3).

Conductivity (:func:`conductivity_map`): the metal is Ni, 1.4e5 S/cm (its
room-temperature resistivity, 6.9e-8 ohm m, CRC Handbook of Chemistry and
Physics). Pristine Li4Ti5O12 is an electronic insulator (commonly quoted
below 1e-13 S/cm), but the poster's lowest conductivities are 1e-2 S/cm, so
the demo's matrix carries an *effective* ``sigma_dark`` of 5e-3 S/cm
(partly reduced, Ti3+-containing LTO and metal finer than a pixel: a demo
choice fitted to the poster's floor, not a measured property). With a plain
two-phase map the solved conductivity is bimodal, at the matrix floor or
near the percolated metal's 1e4 S/cm, with little between (a 2-D section
percolates sharply); measured composites fill the six decades. So the matrix
near the metal conducts better: an interphase ``sigma_interphase *
exp(-2 d / interphase)`` at a distance ``d`` from the metal, which makes a
matrix gap of width ``g`` between two particles a junction of conductance
``~ exp(-g / interphase)``, the tunnelling-percolation picture (Balberg,
Phys. Rev. Lett. 59, 1305, 1987; Ambrosetti et al., Phys. Rev. B 81, 155434,
2010). Then gap widths, which scale with particle size and shrink inside
agglomerates, decide the conductivity between the floor and the percolated
network, and near percolation the connectivity, not only the metal
fraction, sets it. The solve is two-dimensional (per unit thickness) on the
section, a stand-in for the 3-D pellet (3-D networks percolate at lower
fractions).

SEM images (:func:`render_sem`): metal ~200, matrix ~80 grey, a fine texture
in each phase, a bright edge at phase boundaries, a slight blur, a shading
ramp, a per-image brightness and contrast change (preparation and imaging
differences, which image normalisation should remove) and noise; uint8.

Samples (:func:`composite_samples`): each sample draws its metal fraction,
clustering and median particle radius (uniform, uniform, log-uniform over
the ranges of :data:`DEMO_COMPOSITE`), then gets one microstructure of
``size_px x (images_per_sample * size_px)`` from which its images are cut
side by side. Its solved conductivity is the geometric mean over its images
and both axes (:func:`effective_conductivity` on each image's map, with
the interphase computed on the whole strip; a strip with an image under
``min_image_fraction`` metal is drawn again); the "measured" value adds a
log-normal measurement error (``measurement_sd_log10`` decades, 0.1 by
default: about 26 % in S/cm, for contacts and pellet geometry; the demo's
choice).

Lengths are physical (nm), converted with the pixel size ``field_um * 1000 /
size_px``, so that a sample looks the same, only sharper, at any image size:
``field_um`` = 12 um is about the width of a 10 000x SEM image.

The demo's tuning is recorded at DEMO_COMPOSITE.
"""
from __future__ import annotations

import logging
import time
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import ndimage, optimize

from ..errors import InputError
from ..physics._conduction import METHODS, effective_conductivity
from ..progress import progress
from ._porosity import gaussian_random_field

log = logging.getLogger(__name__)

#: log-normal spread of the particle radii (sd of ln r).
RADIUS_LOG_SD = 0.25
#: Largest log-intensity amplitude of the cluster field, reached at clustering = 1.
KAPPA_MAX = 2.5

#: The demo's defaults, tuned to the reference's baseline, not to a CNN: on the
#: demo (58 samples x 3 images, grouped 5-fold CV) the bright-fraction
#: polynomial GLM (``microprop.stats._bright_fraction.polynomial_glm_cv``)
#: reaches R2 0.60-0.69 at 256 px and 0.61-0.64 at 512 px (seeds 0-2 and
#: 0-1), the reference 0.63 (the tuning record is in the module docstring).
#: ``field_um``: image width, um; conductivities in S/cm; ``interphase_nm``:
#: decay length of the interphase; ``fraction``, ``clustering``: uniform
#: ranges; ``particle_radius_nm``: log-uniform range of the median radius,
#: nm; ``cluster_scale``: cluster correlation length in radii;
#: ``measurement_sd_log10``: sd of the log-normal measurement error, decades;
#: ``min_image_fraction``: a sample's microstructure is drawn again while one
#: of its images has less metal; ``solver``: the ``effective_conductivity``
#: method.
DEMO_COMPOSITE = {
    "field_um": 12.0,
    "sigma_bright": 1.4e5,
    "sigma_dark": 5e-3,
    "sigma_interphase": 1e3,
    "interphase_nm": 60.0,
    "fraction": (0.1, 0.7),
    "clustering": (0.0, 1.0),
    "particle_radius_nm": (80.0, 750.0),
    "cluster_scale": 4.0,
    "kappa_max": KAPPA_MAX,
    "measurement_sd_log10": 0.1,
    "min_image_fraction": 0.01,
    "solver": "direct",
}
#: Most redraws of a sample's microstructure for ``min_image_fraction``.
MAX_REDRAWS = 20


def _check_shape(shape, name):
    try:
        h, w = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise InputError(f"{name}: shape={shape!r}; expected (H, W)") from None
    if h < 8 or w < 8:
        raise InputError(f"{name}: shape={shape!r}; expected at least 8 x 8 px")
    return h, w


def _centre_density(intensity, fraction, mean_r2):
    """Scale ``s`` of the centre density ``s * intensity`` (centres/px^2) that covers ``fraction``.

    Local Boolean-model coverage ``1 - exp(-s lambda(x) pi E[r^2])`` (Matheron
    1975; Stoyan, Kendall and Mecke, *Stochastic Geometry*, section 3.1),
    averaged over the field, set to ``fraction`` (the intensity varies slowly
    on the particle scale).
    """
    lam = intensity.ravel()[::max(1, intensity.size // 200_000)]
    a = np.pi * mean_r2

    def cover(log_s):
        return np.mean(1.0 - np.exp(-np.exp(log_s) * lam * a)) - fraction

    s0 = -np.log1p(-fraction) / a
    lo, hi = np.log(s0) - 2.0, np.log(s0) + 2.0
    while cover(hi) < 0:
        hi += 2.0
    while cover(lo) > 0:
        lo -= 2.0
    return float(np.exp(optimize.brentq(cover, lo, hi, xtol=1e-6)))


def composite_microstructure(shape, fraction, particle_px, clustering, rng, *, cluster_scale=4.0,
                             kappa_max=KAPPA_MAX, radius_log_sd=RADIUS_LOG_SD, return_info=False):
    """A bright-metal-particle / dark-ceramic-matrix microstructure (True = metal).

    Overlapping discs with log-normal radii whose centres are a log-Gaussian
    Cox process (module docstring), thresholded to the exact area fraction.
    Centres are drawn over the image plus a margin, so discs cut by the
    border are as frequent there as inside.

    Parameters
    ----------
    shape : (int, int)
        ``(H, W)`` px, each >= 8.
    fraction : float
        Metal area fraction, 0 < fraction < 1; met to one pixel.
    particle_px : float
        Median disc radius, px (>= 1).
    clustering : float
        0 (Poisson centres) .. 1 (log-intensity amplitude ``kappa_max``).
    rng : numpy.random.Generator
    cluster_scale : float
        Correlation length of the cluster field, in median radii (> 0).
    kappa_max : float
        Log-intensity amplitude at ``clustering = 1`` (>= 0).
    radius_log_sd : float
        sd of ln(radius) (>= 0).
    return_info : bool
        Also return a dict ``n_particles`` (int), ``radius_scale`` (float:
        the common factor applied to the radii to meet ``fraction``) and
        ``centre_density`` (float, mean centres per px^2).

    Returns
    -------
    bright : numpy.ndarray, shape (H, W), bool
        True in the metal.
    info : dict
        Only with ``return_info``.

    Raises
    ------
    InputError
        On a shape under 8 x 8, a fraction outside (0, 1), a radius under 1
        px, clustering outside [0, 1], a non-positive ``cluster_scale``, a
        negative ``kappa_max`` or ``radius_log_sd``, or no Generator.
    """
    h, w = _check_shape(shape, "composite_microstructure")
    if not 0.0 < float(fraction) < 1.0:
        raise InputError(f"composite_microstructure: fraction={fraction!r}; expected 0 < fraction < 1")
    if not float(particle_px) >= 1.0:
        raise InputError(f"composite_microstructure: particle_px={particle_px!r}; expected a radius >= 1 px")
    if not 0.0 <= float(clustering) <= 1.0:
        raise InputError(f"composite_microstructure: clustering={clustering!r}; expected 0 (Poisson) .. 1")
    if not float(cluster_scale) > 0:
        raise InputError(f"composite_microstructure: cluster_scale={cluster_scale!r}; expected > 0")
    if not (float(kappa_max) >= 0 and float(radius_log_sd) >= 0):
        raise InputError(f"composite_microstructure: kappa_max={kappa_max!r}, radius_log_sd={radius_log_sd!r}; "
                         "expected >= 0")
    if rng is None or not hasattr(rng, "standard_normal"):
        raise InputError("composite_microstructure: rng must be a numpy.random.Generator")
    fraction, r0, c = float(fraction), float(particle_px), float(clustering)
    pad = int(np.ceil(3.0 * r0 * np.exp(3 * radius_log_sd))) + 1
    H, W = h + 2 * pad, w + 2 * pad
    kappa = float(kappa_max) * c
    if kappa > 0:
        g = gaussian_random_field((H, W), cluster_scale * r0, rng).astype(np.float64)
        intensity = np.exp(kappa * g - 0.5 * kappa ** 2)
    else:
        intensity = np.ones((H, W))
    mean_r2 = r0 ** 2 * np.exp(2 * radius_log_sd ** 2)          # E[r^2] of the log-normal radii
    s = _centre_density(intensity, fraction, mean_r2)
    if kappa > 0:
        # where the local coverage would exceed 1 - e^-7 more centres change nothing: cap them
        intensity = np.minimum(intensity, 7.0 / (s * np.pi * mean_r2))
        s = _centre_density(intensity, fraction, mean_r2)
    n = rng.poisson(s * intensity.sum())
    p = intensity.ravel() / intensity.sum()
    idx = rng.choice(H * W, size=n, p=p)
    cy = idx // W + rng.uniform(0, 1, n) - pad
    cx = idx % W + rng.uniform(0, 1, n) - pad
    radii = r0 * np.exp(radius_log_sd * rng.standard_normal(n))
    # D(x) = min_i |x - c_i| / r_i: the discs grown by t are {D <= t}
    D = np.full((h, w), np.inf)
    reach = 2.0
    for y0c, x0c, r in zip(cy, cx, radii):
        R = reach * r
        y0, y1 = max(0, int(np.floor(y0c - R))), min(h, int(np.ceil(y0c + R)) + 1)
        x0, x1 = max(0, int(np.floor(x0c - R))), min(w, int(np.ceil(x0c + R)) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        yy = (np.arange(y0, y1) + 0.5 - y0c)[:, None]
        xx = (np.arange(x0, x1) + 0.5 - x0c)[None, :]
        d = np.sqrt(yy * yy + xx * xx) / r
        win = D[y0:y1, x0:x1]
        np.minimum(win, d, out=win)
    k = round(fraction * h * w)
    flat = D.ravel()
    if k <= 0:
        t = -np.inf
    else:
        t = float(np.partition(flat, k - 1)[k - 1])
    if t == np.inf:
        raise InputError(f"composite_microstructure: the discs cover less than fraction={fraction} of the "
                         f"{h} x {w} px field even grown twofold (clustering={clustering}); lower the "
                         "clustering or the fraction")
    bright = D <= t
    if not return_info:
        return bright
    return bright, {"n_particles": int(n), "radius_scale": t, "centre_density": s}


def conductivity_map(bright, sigma_bright, sigma_dark, sigma_interphase=0.0, interphase_px=1.0):
    """Pixel conductivities of a metal/ceramic image with a conducting interphase in the ceramic.

    ``sigma = sigma_bright`` in the metal; in the matrix ``sigma = sigma_dark
    + sigma_interphase * exp(-2 d / interphase_px)``, ``d`` the distance (px)
    from the pixel to the metal surface (Euclidean distance transform to the
    nearest metal pixel centre, less half a pixel). Across a matrix gap of
    width ``g`` between two metal particles the smallest conductivity, at its
    middle, is ``sigma_interphase * exp(-g / interphase_px)``: the gap
    conducts as a tunnelling junction of decay length ``interphase_px``
    (Balberg, Phys. Rev. Lett. 59, 1305, 1987; Ambrosetti et al., Phys. Rev.
    B 81, 155434, 2010, for the tunnelling-percolation picture).

    Parameters
    ----------
    bright : array_like, shape (H, W), bool
        True in the metal.
    sigma_bright, sigma_dark : float
        S/cm, > 0.
    sigma_interphase : float
        S/cm at the metal surface, >= 0 (0: a plain two-phase map).
    interphase_px : float
        Decay length, px, > 0.

    Returns
    -------
    numpy.ndarray, shape (H, W), float64
        S/cm.

    Raises
    ------
    InputError
        On a mask that is not 2-D, or a conductivity or length out of range.
    """
    m = np.asarray(bright, dtype=bool)
    if m.ndim != 2:
        raise InputError(f"conductivity_map: bright has shape {m.shape}; expected (H, W)")
    if not (float(sigma_bright) > 0 and float(sigma_dark) > 0 and np.isfinite(sigma_bright)
            and np.isfinite(sigma_dark)):
        raise InputError(f"conductivity_map: sigma_bright={sigma_bright!r}, sigma_dark={sigma_dark!r}; "
                         "expected finite conductivities > 0 S/cm")
    if not (float(sigma_interphase) >= 0 and np.isfinite(sigma_interphase)):
        raise InputError(f"conductivity_map: sigma_interphase={sigma_interphase!r}; expected >= 0 S/cm")
    if not float(interphase_px) > 0:
        raise InputError(f"conductivity_map: interphase_px={interphase_px!r}; expected > 0 px")
    matrix = np.full(m.shape, float(sigma_dark))
    if float(sigma_interphase) > 0 and m.any():
        d = np.clip(ndimage.distance_transform_edt(~m) - 0.5, 0.0, None)
        matrix += float(sigma_interphase) * np.exp(-2.0 * d / float(interphase_px))
    return np.where(m, float(sigma_bright), matrix)


def render_sem(bright, rng, *, grey_bright=200.0, grey_dark=80.0, texture_sd=(10.0, 7.0), texture_px=1.5,
               edge_grey=15.0, blur_px=0.8, noise_sd=8.0, gain_sd=0.08, offset_sd=10.0, shading=10.0):
    """An 8-bit SEM-like image of a metal/ceramic mask (metal bright).

    ``grey = mid + gain (G - mid) + offset + noise``, with ``G`` the phase
    greys plus a texture (a Gaussian random field of correlation
    ``texture_px``, sd ``texture_sd`` per phase), an edge brightening
    ``edge_grey * 4 s (1 - s)`` (``s`` the mask blurred by 1 px: largest on
    the boundary, as the edge effect of secondary and backscattered
    electrons), a Gaussian blur (``blur_px``, the probe) and a linear shading
    ramp (``shading`` grey levels peak to peak, random direction);
    ``mid`` is the mean of the two phase greys; ``gain = exp(gain_sd N(0,
    1))`` and ``offset = offset_sd N(0, 1)`` are drawn per image; the noise
    is normal (sd ``noise_sd``); rounding and clipping to 0..255.

    Parameters
    ----------
    bright : array_like, shape (H, W), bool
        True in the metal.
    rng : numpy.random.Generator
    grey_bright, grey_dark : float
        Grey levels of metal and matrix before the per-image change,
        0 <= grey_dark < grey_bright <= 255.
    texture_sd : (float, float)
        Texture sd of (matrix, metal), grey levels.
    texture_px, edge_grey, blur_px, noise_sd, gain_sd, offset_sd, shading : float
        As above (px, grey levels, or dimensionless for ``gain_sd``), >= 0.

    Returns
    -------
    image : numpy.ndarray, shape (H, W), uint8
    look : dict
        ``gain``, ``offset`` (grey levels) and ``shading_angle`` (rad) drawn.

    Raises
    ------
    InputError
        On a mask that is not 2-D (at least 2 x 2) or an out-of-range setting.
    """
    m = np.asarray(bright, dtype=bool)
    if m.ndim != 2 or min(m.shape) < 2:
        raise InputError(f"render_sem: bright has shape {m.shape}; expected an (H, W) mask of at least 2 x 2")
    if not 0 <= grey_dark < grey_bright <= 255:
        raise InputError(f"render_sem: grey_dark={grey_dark!r}, grey_bright={grey_bright!r}; expected "
                         "0 <= grey_dark < grey_bright <= 255")
    for name, v in (("texture_px", texture_px), ("blur_px", blur_px), ("noise_sd", noise_sd),
                    ("gain_sd", gain_sd), ("offset_sd", offset_sd), ("shading", shading),
                    ("edge_grey", edge_grey)):
        if not (np.isfinite(v) and v >= 0):
            raise InputError(f"render_sem: {name}={v!r}; expected a finite value >= 0")
    h, w = m.shape
    td, tb = (float(v) for v in texture_sd)
    grey = np.where(m, float(grey_bright), float(grey_dark))
    if texture_px > 0 and (td > 0 or tb > 0):
        grey = grey + gaussian_random_field((h, w), texture_px, rng) * np.where(m, tb, td)
    if edge_grey > 0:
        s = ndimage.gaussian_filter(m.astype(np.float64), 1.0)
        grey = grey + float(edge_grey) * 4.0 * s * (1.0 - s)
    if blur_px > 0:
        grey = ndimage.gaussian_filter(grey, float(blur_px), mode="reflect")
    angle = rng.uniform(0, 2 * np.pi)
    yy = (np.arange(h) / max(h - 1, 1) - 0.5)[:, None]
    xx = (np.arange(w) / max(w - 1, 1) - 0.5)[None, :]
    grey = grey + float(shading) * (np.cos(angle) * xx + np.sin(angle) * yy)
    gain = float(np.exp(gain_sd * rng.standard_normal()))
    offset = float(offset_sd * rng.standard_normal())
    mid = 0.5 * (grey_bright + grey_dark)
    grey = mid + gain * (grey - mid) + offset
    if noise_sd > 0:
        grey = grey + float(noise_sd) * rng.standard_normal((h, w))
    img = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    return img, {"gain": gain, "offset": offset, "shading_angle": angle}


def _one_sample(job):
    """One sample of :func:`composite_samples`: its images, masks, image rows and sample row."""
    i, f, c, r_nm, noise, seed, p, size, k, solve = job
    t0 = time.perf_counter()
    name = f"C{i + 1:02d}"
    px_nm = float(p["field_um"]) * 1000.0 / size
    srng = np.random.default_rng(seed)
    # a microscopist images fields that show the metal: a strip with an image under
    # min_image_fraction metal is drawn again (a single-phase image has no Otsu
    # threshold to speak of: it splits the matrix's noise, about half the pixels)
    for attempt in range(MAX_REDRAWS + 1):
        strip = composite_microstructure((size, k * size), f, r_nm / px_nm, c, srng,
                                         cluster_scale=float(p["cluster_scale"]), kappa_max=float(p["kappa_max"]))
        least = min(strip[:, j * size:(j + 1) * size].mean() for j in range(k))
        if least >= float(p["min_image_fraction"]):
            break
    else:
        log.warning("composite sample %s: an image has %.3g metal after %d redraws (min_image_fraction %g)",
                    name, least, MAX_REDRAWS, p["min_image_fraction"])
    smap = conductivity_map(strip, p["sigma_bright"], p["sigma_dark"], p["sigma_interphase"],
                            float(p["interphase_nm"]) / px_nm)
    images = np.empty((k, size, size), np.uint8)
    masks = np.empty((k, size, size), bool)
    img_rows, logs = [], []
    for j in range(k):
        cut = np.s_[:, j * size:(j + 1) * size]
        masks[j] = strip[cut]
        images[j], look = render_sem(masks[j], srng)
        row = {"image": i * k + j, "sample": name, "fraction": float(masks[j].mean()), **look}
        if solve:
            sol = [effective_conductivity(smap[cut], axis=a, method=p["solver"]) for a in (0, 1)]
            lg = float(np.mean([np.log10(v["sigma_eff"]) for v in sol]))
            row.update(sigma_axis0=sol[0]["sigma_eff"], sigma_axis1=sol[1]["sigma_eff"], sigma_S_per_cm=10 ** lg,
                       conservation_error=max(v["conservation_error"] for v in sol))
            logs.append(lg)
        img_rows.append(row)
    row = {"sample": name, "fraction": float(strip.mean()), "fraction_target": f, "clustering": c,
           "particle_radius_nm": r_nm, "particle_px": r_nm / px_nm, "pixel_size_nm": px_nm, "redraws": attempt}
    if solve:
        solved = float(np.mean(logs))
        measured = solved + noise
        row.update(sigma_S_per_cm=10 ** measured, log10_sigma=measured,
                   sigma_solved_S_per_cm=10 ** solved, log10_sigma_solved=solved)
    row["seconds"] = time.perf_counter() - t0
    log.debug("composite sample %s: fraction %.3f, clustering %.2f, radius %.0f nm: log10 sigma %s (%.1f s)",
              name, f, c, r_nm, f"{row.get('log10_sigma', float('nan')):.2f}", row["seconds"])
    return images, masks, img_rows, row


class CompositeSamples(NamedTuple):
    """What :func:`composite_samples` returns (a tuple: unpack or use the names)."""

    samples: pd.DataFrame
    images: np.ndarray
    bright: np.ndarray
    image_sample: np.ndarray
    image_table: pd.DataFrame


def _range(params, key):
    lo, hi = (float(v) for v in params[key])
    if not lo <= hi:
        raise InputError(f"composite_samples: {key}={params[key]!r}; expected (low, high) with low <= high")
    return lo, hi


def composite_samples(n_samples=58, images_per_sample=3, size_px=1024, rng=None, *, sigma_bright=None,
                      sigma_dark=None, params=None, solve=True, workers=1, show_progress=False):
    """Virtual composite samples: SEM images, metal masks and solved, "measured" conductivities.

    See the module docstring for the model. All sample parameters are drawn
    from ``rng`` first, then each sample gets its own generator (seeded from
    ``rng``), so a sample keeps its fraction, clustering and particle size
    at any ``size_px``.

    Parameters
    ----------
    n_samples : int
        Number of samples (58 in the reference).
    images_per_sample : int
        Images cut from each sample's microstructure (3 in the reference).
    size_px : int
        Edge of a square image, px (1024 in the reference; >= 16, and the
        smallest particle radius must be >= 1 px at ``field_um * 1000 /
        size_px`` nm/px).
    rng : numpy.random.Generator, optional
        Default ``numpy.random.default_rng(0)``.
    sigma_bright, sigma_dark : float, optional
        Metal and matrix conductivities, S/cm (default
        :data:`DEMO_COMPOSITE`: 1.4e5, Ni, and 5e-3).
    params : dict, optional
        Overrides of :data:`DEMO_COMPOSITE`: ``field_um`` (image width, um),
        ``sigma_interphase`` (S/cm), ``interphase_nm``, ``fraction``,
        ``clustering`` and ``particle_radius_nm`` ((low, high) ranges;
        radius in nm, log-uniform), ``cluster_scale``, ``kappa_max``,
        ``measurement_sd_log10`` (decades), ``min_image_fraction`` (a
        sample's microstructure is drawn again, up to :data:`MAX_REDRAWS`
        times, while one of its images has less metal), ``solver`` (the
        ``effective_conductivity`` method).
    solve : bool
        Solve the conductivities (False: microstructures and images only).
    workers : int
        Processes generating and solving samples in parallel (the result
        does not depend on it).
    show_progress : bool
        A progress bar over the samples.

    Returns
    -------
    CompositeSamples
        A named tuple ``(samples, images, bright, image_sample,
        image_table)``:

        * ``samples``: pandas.DataFrame, one row per sample: ``sample`` (str,
          ``C01``..), ``sigma_S_per_cm`` and ``log10_sigma`` (the "measured"
          conductivity, S/cm, and its log10), ``sigma_solved_S_per_cm`` and
          ``log10_sigma_solved`` (before the measurement error),
          ``fraction`` (metal area fraction of the sample's microstructure),
          ``fraction_target``, ``particle_radius_nm``, ``particle_px``,
          ``clustering``, ``pixel_size_nm``, ``redraws`` (int, see
          ``min_image_fraction``), ``seconds`` (generation and solve);
          without ``solve`` no conductivity columns.
        * ``images``: numpy.ndarray, (n_samples * images_per_sample, H, W),
          uint8, sample by sample.
        * ``bright``: numpy.ndarray, same shape, bool: the metal (truth).
        * ``image_sample``: numpy.ndarray, (n_images,), str: each image's
          sample.
        * ``image_table``: pandas.DataFrame, one row per image: ``image``,
          ``sample``, ``fraction`` (true), ``gain``, ``offset``,
          ``shading_angle``, and with ``solve`` ``sigma_axis0``,
          ``sigma_axis1``, ``sigma_S_per_cm`` (their geometric mean, S/cm),
          ``conservation_error``.

    Raises
    ------
    InputError
        On an unknown parameter, a count or size out of range, a range that
        is not (low, high) or leaves (0, 1) (fractions) or [0, 1]
        (clustering), or particles under a pixel.
    """
    p = dict(DEMO_COMPOSITE)
    if params is not None:
        unknown = sorted(set(params) - set(p))
        if unknown:
            raise InputError(f"composite_samples: unknown parameter(s) {unknown}; expected keys of "
                             f"DEMO_COMPOSITE {sorted(p)}")
        p.update(params)
    if sigma_bright is not None:
        p["sigma_bright"] = sigma_bright
    if sigma_dark is not None:
        p["sigma_dark"] = sigma_dark
    if int(n_samples) != n_samples or n_samples < 1:
        raise InputError(f"composite_samples: n_samples={n_samples!r}; expected an integer >= 1")
    if int(images_per_sample) != images_per_sample or images_per_sample < 1:
        raise InputError(f"composite_samples: images_per_sample={images_per_sample!r}; expected an integer >= 1")
    if int(size_px) != size_px or size_px < 16:
        raise InputError(f"composite_samples: size_px={size_px!r}; expected an integer >= 16")
    n_samples, k, size = int(n_samples), int(images_per_sample), int(size_px)
    f_lo, f_hi = _range(p, "fraction")
    c_lo, c_hi = _range(p, "clustering")
    r_lo, r_hi = _range(p, "particle_radius_nm")
    if not (0 < f_lo and f_hi < 1):
        raise InputError(f"composite_samples: fraction={p['fraction']!r}; expected within (0, 1)")
    if not (0 <= c_lo and c_hi <= 1):
        raise InputError(f"composite_samples: clustering={p['clustering']!r}; expected within [0, 1]")
    if not r_lo > 0:
        raise InputError(f"composite_samples: particle_radius_nm={p['particle_radius_nm']!r}; expected > 0")
    if not float(p["measurement_sd_log10"]) >= 0:
        raise InputError(f"composite_samples: measurement_sd_log10={p['measurement_sd_log10']!r}; expected >= 0")
    if rng is None:
        rng = np.random.default_rng(0)
    px_nm = float(p["field_um"]) * 1000.0 / size
    if r_lo / px_nm < 1.0:
        raise InputError(f"composite_samples: particle radius {r_lo} nm is {r_lo / px_nm:.2f} px at "
                         f"{size} px ({px_nm:.1f} nm/px); expected >= 1 px: use more pixels")
    if p["solver"] not in METHODS:
        raise InputError(f"composite_samples: solver={p['solver']!r}; expected one of {METHODS}")
    if int(workers) != workers or workers < 1:
        raise InputError(f"composite_samples: workers={workers!r}; expected an integer >= 1")
    # every sample's parameters first, then one child generator per sample: a
    # sample keeps its parameters (and its own random stream) at any image size
    # and whatever the number of workers
    fr = rng.uniform(f_lo, f_hi, n_samples)
    cl = rng.uniform(c_lo, c_hi, n_samples)
    rad = np.exp(rng.uniform(np.log(r_lo), np.log(r_hi), n_samples))
    noise = float(p["measurement_sd_log10"]) * rng.standard_normal(n_samples)
    seeds = rng.integers(0, 2 ** 63 - 1, n_samples)
    jobs = [(i, float(fr[i]), float(cl[i]), float(rad[i]), float(noise[i]), int(seeds[i]), p, size, k, solve)
            for i in range(n_samples)]
    if int(workers) > 1:
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(int(workers))
        results = pool.map(_one_sample, jobs)
    else:
        pool = None
        results = map(_one_sample, jobs)
    if show_progress:
        results = progress(results, total=n_samples, desc="composite samples", unit="sample")
    rows, img_rows = [], []
    images = np.empty((n_samples * k, size, size), np.uint8)
    masks = np.empty((n_samples * k, size, size), bool)
    try:
        for i, (imgs, msk, irows, row) in enumerate(results):
            images[i * k:(i + 1) * k] = imgs
            masks[i * k:(i + 1) * k] = msk
            img_rows += irows
            rows.append(row)
    finally:
        if pool is not None:
            pool.shutdown()
    image_sample = np.array([r["sample"] for r in img_rows], dtype=str)
    samples = pd.DataFrame(rows)
    cols = ["sample", "sigma_S_per_cm", "log10_sigma", "sigma_solved_S_per_cm", "log10_sigma_solved",
            "fraction", "fraction_target", "particle_radius_nm", "particle_px", "clustering", "pixel_size_nm",
            "redraws", "seconds"]
    samples = samples[[c_ for c_ in cols if c_ in samples.columns]]
    return CompositeSamples(samples, images, masks, image_sample, pd.DataFrame(img_rows))
