"""Virtual metal-intruded cement pastes: equivalent-porosity maps of specimen classes, and their BSE images.

The second study's embedded default (the graphene-oxide cement study,
``../shared/references/dtd_nanoporosity_go_cement.txt``): pastes whose pores
are filled with Field's metal, imaged in BSE at 52 nm/px, where a pixel's
grey level gives its *equivalent porosity* n, the volume fraction of metal in
a homogeneous C-S-H/Field's-metal composite with the same backscatter
coefficient. Classes (S1, S2, S3 in the reference) differ in nanoscale pore
structure while their porosity ranges overlap.

:func:`porosity_map` builds one class's map ``n(x)`` in [0, 1] from five parts,
each a named parameter of :data:`DEMO_POROSITY_CLASSES`:

* the local porosity ``m(x)``: two Gaussian random fields around
  ``mean_porosity``, one at the scale of a whole local map (correlation
  ``meso_corr_um``, spread ``meso_sd``: regions of one specimen differ, so
  the classes' map statistics overlap) and one at the microscale
  (``micro_corr_um``, ``micro_sd``);
* nanoscale pore texture: a unit Gaussian random field of correlation
  ``pore_corr_nm`` (the pore size), of amplitude ``texture_amp *
  sqrt(m (1 - m))`` (binomial-like: no texture in solid or metal);
* clustering: that amplitude modulated by ``1 + clustering * g(x)``, ``g`` a
  field of correlation ``cluster_corr_um``, so pores gather in patches;
* unhydrated grains (n = 0; area fraction ``grain_fraction``, radii
  ``grain_radius_um``) with densified rims (width ``rim_um``, porosity times
  ``rim_factor``);
* metal-filled capillary pores (n = 1; area fraction ``capillary_fraction``).

:func:`render_porosity_bse` turns n into the grey image a detector records:
the Monte Carlo ``eta(n)`` table, a linear detector and shot noise, as the
first study's renderer does for its phases.

Everything is in the specimen frame, ``(H, W)`` = ``(y, x)``, pixel size
``pixel_size_nm``.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import InputError

#: The demo's three classes (S1, S2, S3: GO at 0, 0.01 and 0.02 wt % in the
#: reference). S2 is densified (lower porosity, finer pores, dense rims), S3
#: has the coarse pores of S1 but clustered; S1 and S3 have the same mean
#: porosity, as the reference's Tukey-Kramer test found. Tuned so that the
#: nearest-class-mean baseline on porosity or average pore size lands in the
#: reference's 55-61 %, not for the classifier (S2's mean porosity 0.13 and
#: pore correlation 72 nm: 57.0 % and 59.6 % on the demo's 768 maps).
DEMO_POROSITY_CLASSES = {
    "S1": dict(mean_porosity=0.22, meso_sd=0.05, meso_corr_um=10.0, micro_sd=0.07, micro_corr_um=1.5,
               pore_corr_nm=100.0,
               texture_amp=0.45, clustering=0.0, cluster_corr_um=1.0, grain_fraction=0.10,
               grain_radius_um=(0.6, 2.5), rim_um=0.0, rim_factor=1.0, capillary_fraction=0.06),
    "S2": dict(mean_porosity=0.13, meso_sd=0.05, meso_corr_um=10.0, micro_sd=0.07, micro_corr_um=1.5,
               pore_corr_nm=72.0,
               texture_amp=0.45, clustering=0.0, cluster_corr_um=1.0, grain_fraction=0.10,
               grain_radius_um=(0.6, 2.5), rim_um=0.4, rim_factor=0.4, capillary_fraction=0.06),
    "S3": dict(mean_porosity=0.22, meso_sd=0.05, meso_corr_um=10.0, micro_sd=0.07, micro_corr_um=1.5,
               pore_corr_nm=100.0,
               texture_amp=0.45, clustering=0.4, cluster_corr_um=0.8, grain_fraction=0.10,
               grain_radius_um=(0.6, 2.5), rim_um=0.0, rim_factor=1.0, capillary_fraction=0.06),
}

_REQUIRED = tuple(DEMO_POROSITY_CLASSES["S1"])


def gaussian_random_field(shape, corr_px, rng):
    """A stationary, periodic Gaussian random field of zero mean and unit variance.

    White noise filtered by a Gaussian of standard deviation ``corr_px`` in
    Fourier space (transfer function ``exp(-2 pi^2 corr_px^2 k^2)``, k in
    cycles/px: the periodic Gaussian blur, at O(N log N) whatever the
    correlation length), then standardised; its correlation function is a
    Gaussian of standard deviation ``sqrt(2) * corr_px``.

    Parameters
    ----------
    shape : (int, int)
    corr_px : float
        Filter standard deviation, px (> 0).
    rng : numpy.random.Generator

    Returns
    -------
    numpy.ndarray, shape ``shape``, float32
    """
    if not corr_px > 0:
        raise InputError(f"gaussian_random_field: corr_px={corr_px}; expected > 0")
    h, w = (int(v) for v in shape)
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    transfer = np.exp(-2.0 * np.pi ** 2 * float(corr_px) ** 2 * (ky ** 2 + kx ** 2))
    g = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((h, w))) * transfer, s=(h, w))
    g -= g.mean()
    sd = g.std()
    return (g / sd if sd > 0 else g).astype(np.float32)


def _check_class(params, name):
    missing = [k for k in _REQUIRED if k not in params]
    if missing:
        raise InputError(f"porosity class {name!r}: missing parameter(s) {missing}; expected {list(_REQUIRED)}")
    for k in ("mean_porosity", "grain_fraction", "capillary_fraction"):
        if not 0.0 <= float(params[k]) < 1.0:
            raise InputError(f"porosity class {name!r}: {k}={params[k]}; expected a fraction in [0, 1)")
    for k in ("meso_corr_um", "micro_corr_um", "pore_corr_nm", "cluster_corr_um"):
        if not float(params[k]) > 0:
            raise InputError(f"porosity class {name!r}: {k}={params[k]}; expected > 0")


def _grains(shape, px_um, fraction, radius_um, rng):
    """Boolean mask of random discs covering about ``fraction`` of the field."""
    mask = np.zeros(shape, bool)
    if fraction <= 0:
        return mask
    h, w = shape
    yy, xx = np.ogrid[:h, :w]
    r_lo, r_hi = (float(v) / px_um for v in radius_um)
    target = fraction * h * w
    covered = 0
    for _ in range(10_000_000):
        if covered >= target:
            break
        r = rng.uniform(r_lo, r_hi)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        y0, y1 = int(max(0, cy - r - 1)), int(min(h, cy + r + 2))
        x0, x1 = int(max(0, cx - r - 1)), int(min(w, cx + r + 2))
        disc = (yy[y0:y1] - cy) ** 2 + (xx[:, x0:x1] - cx) ** 2 <= r * r
        win = mask[y0:y1, x0:x1]
        covered += int(np.count_nonzero(disc & ~win))   # counted here, not by summing the whole mask
        win |= disc
    return mask


def porosity_map(shape, pixel_size_nm, params, rng, name="class"):
    """Equivalent-porosity map of one class of metal-intruded paste.

    Parameters
    ----------
    shape : (int, int)
        ``(H, W)`` px.
    pixel_size_nm : float
        nm per px (52 in the reference).
    params : dict
        The parameters of :data:`DEMO_POROSITY_CLASSES` (see the module
        docstring): fractions in [0, 1), lengths in um or nm as named.
    rng : numpy.random.Generator
    name : str
        The class, for messages.

    Returns
    -------
    n : numpy.ndarray, shape ``shape``, float32
        Equivalent porosity in [0, 1].
    regions : numpy.ndarray, shape ``shape``, uint8
        0 hydration products, 1 unhydrated grain (n = 0), 2 densified rim,
        3 metal-filled capillary pore (n = 1).

    Raises
    ------
    InputError
        On a missing or out-of-range parameter.
    """
    _check_class(params, name)
    px_um = float(pixel_size_nm) / 1000.0
    p = params
    m = (float(p["mean_porosity"])
         + float(p["meso_sd"]) * gaussian_random_field(shape, float(p["meso_corr_um"]) / px_um, rng)
         + float(p["micro_sd"]) * gaussian_random_field(shape, float(p["micro_corr_um"]) / px_um, rng))
    m = np.clip(m, 0.01, 0.99)
    amp = float(p["texture_amp"]) * np.sqrt(m * (1.0 - m))
    if float(p["clustering"]) > 0:
        amp *= np.clip(1.0 + float(p["clustering"]) * gaussian_random_field(
            shape, float(p["cluster_corr_um"]) / px_um, rng), 0.0, None)
    corr = float(p["pore_corr_nm"]) / float(pixel_size_nm)
    n = m + amp * gaussian_random_field(shape, corr, rng)
    regions = np.zeros(shape, np.uint8)
    grains = _grains(shape, px_um, float(p["grain_fraction"]), p["grain_radius_um"], rng)
    if float(p["rim_um"]) > 0 and grains.any():
        dist = ndimage.distance_transform_edt(~grains) * px_um
        rim = (~grains) & (dist <= float(p["rim_um"]))
        n = np.where(rim, n * float(p["rim_factor"]), n)
        regions[rim] = 2
    if float(p["capillary_fraction"]) > 0:
        cap = gaussian_random_field(shape, 0.6 / px_um, rng)
        cap = (cap > np.quantile(cap, 1.0 - float(p["capillary_fraction"]))) & ~grains
        n = np.where(cap, 1.0, n)
        regions[cap] = 3
    n = np.where(grains, 0.0, n)
    regions[grains] = 1
    return np.clip(n, 0.0, 1.0).astype(np.float32), regions


def render_porosity_bse(n, eta_table, rng, gain=None, offset=None, electrons_per_px=2000.0,
                        grey_csh=60.0, grey_metal=180.0):
    """The 8-bit BSE image of an equivalent-porosity map.

    ``eta = eta(n)`` by linear interpolation of the Monte Carlo table of
    C-S-H/Field's-metal mixtures; a linear detector ``grey = offset + gain *
    eta`` (by default the one that puts C-S-H, n = 0, at ``grey_csh`` and
    metal, n = 1, at ``grey_metal``); Poisson shot noise of
    ``electrons_per_px * eta`` counts (normal approximation); rounding and
    clipping to 0..255.

    Parameters
    ----------
    n : numpy.ndarray, shape (H, W)
        Equivalent porosity in [0, 1].
    eta_table : pandas.DataFrame
        ``n``, ``eta`` (``microprop.physics.eta_table``), n increasing.
    rng : numpy.random.Generator
    gain, offset : float, optional
        Detector (grey per unit eta, grey at eta 0).
    electrons_per_px : float
        0 for no noise.
    grey_csh, grey_metal : float
        The default detector's greys of n = 0 and n = 1. 60 and 180 leave
        the headroom a microscopist keeps: 25 % more gain and 20 grey levels
        more offset put them at 95 and 245, still below saturation (with
        220 for the metal, its peak went to 255 and the calibration lost it).

    Returns
    -------
    grey : numpy.ndarray, shape (H, W), uint8
    detector : dict
        ``gain``, ``offset``, ``eta_csh``, ``eta_metal``.

    Raises
    ------
    InputError
        If the table lacks ``n``/``eta`` or does not span n = 0..1.
    """
    if not {"n", "eta"} <= set(eta_table.columns):
        raise InputError(f"render_porosity_bse: the eta table needs columns n, eta; has {list(eta_table.columns)}")
    tn = eta_table["n"].to_numpy(float)
    te = eta_table["eta"].to_numpy(float)
    if tn.min() > 0 or tn.max() < 1:
        raise InputError(f"render_porosity_bse: the eta table spans n = {tn.min()}..{tn.max()}; expected 0..1")
    order = np.argsort(tn)
    tn, te = tn[order], te[order]
    eta = np.interp(np.asarray(n, float), tn, te)
    e0, e1 = float(te[0]), float(te[-1])
    if gain is None or offset is None:
        gain = (grey_metal - grey_csh) / (e1 - e0)
        offset = grey_csh - gain * e0
    if electrons_per_px:
        lam = eta * float(electrons_per_px)
        eta = (lam + np.sqrt(lam) * rng.standard_normal(lam.shape)) / float(electrons_per_px)
    grey = np.clip(np.rint(offset + gain * eta), 0, 255).astype(np.uint8)
    return grey, {"gain": float(gain), "offset": float(offset), "eta_csh": e0, "eta_metal": e1}
