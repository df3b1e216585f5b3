"""Nanoindentation forward model: what an indenter measures on a phase map.

:func:`indent_properties` simulates the measurement of a virtual specimen at
given indent positions: phase properties drawn from their literature
distributions (:data:`microprop.phases.PHASE_PROPERTIES`), homogenised by a
Voigt-Reuss-Hill average (:func:`hill_average`, Hill 1952) over the indent's
interaction zone (:func:`zone_fractions`, a disc a few contact depths across,
Constantinides et al. 2006), then measurement noise, and the depth and
stiffness an instrument reports. The Oliver-Pharr relations it uses (Oliver &
Pharr 1992, J. Mater. Res. 7, 1564) are public on their own:

- Berkovich area function ``A = 24.5 h_c^2`` and ``H = P / A``
  (:func:`contact_depth_nm`);
- reduced modulus ``1/Er = (1 - nu^2)/E + (1 - nu_i^2)/E_i``
  (:func:`reduced_modulus_GPa`, diamond tip ``E_i = 1141 GPa``,
  ``nu_i = 0.07``);
- contact stiffness ``S = 2 beta Er sqrt(A / pi)``
  (:func:`contact_stiffness_N_per_m`, ``beta = 1.034``).

Where the indents land (the batch grid model) is
:func:`microprop.imaging.grid_positions`.

Units follow the names: ``x_px``, ``depth_nm``, ``load_mN``,
``stiffness_N_per_m``, ``E_GPa``, ``H_GPa``. Useful identity: with the load in
mN and the hardness in GPa, ``P / H`` is an area in um^2.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import InputError
from ..phases import PHASE_PROPERTIES, PHASES

#: Berkovich area function of a perfect tip, A = 24.5 h_c^2 (Oliver & Pharr 1992).
BERKOVICH_AREA_COEFF = 24.5


#: Oliver-Pharr correction factor beta for a Berkovich tip (Oliver & Pharr 1992).
BERKOVICH_BETA = 1.034


#: Diamond indenter: Young's modulus (GPa) and Poisson's ratio (Oliver & Pharr 1992).
DIAMOND_E_GPA = 1141.0


DIAMOND_NU = 0.07


#: Poisson's ratio assumed for cement paste phases when the instrument reports E.
SAMPLE_NU = 0.2


def contact_depth_nm(load_mN, H_GPa):
    """Contact depth of a Berkovich indent from load and hardness.

    ``H = P / A`` and ``A = 24.5 h^2`` (Oliver & Pharr 1992) give
    ``h = sqrt(P / (24.5 H))``; with P in mN and H in GPa, P/H is in um^2.

    Parameters
    ----------
    load_mN, H_GPa : float or array
        Peak load (mN) and hardness (GPa, > 0).

    Returns
    -------
    float or numpy.ndarray
        Contact depth ``h_c`` in nm.
    """
    area_um2 = np.asarray(load_mN, float) / np.asarray(H_GPa, float)
    return 1e3 * np.sqrt(area_um2 / BERKOVICH_AREA_COEFF)


def reduced_modulus_GPa(E_GPa, nu=SAMPLE_NU, E_indenter_GPa=DIAMOND_E_GPA, nu_indenter=DIAMOND_NU):
    """Reduced modulus ``1/Er = (1 - nu^2)/E + (1 - nu_i^2)/E_i`` (Oliver & Pharr 1992, eq. 2).

    Parameters
    ----------
    E_GPa : float or array
        Sample Young's modulus (GPa).
    nu : float
        Sample Poisson's ratio (0.2 for cement paste phases, an assumption).
    E_indenter_GPa, nu_indenter : float
        Diamond tip: 1141 GPa, 0.07.

    Returns
    -------
    float or numpy.ndarray
        ``Er`` in GPa.
    """
    return 1.0 / ((1.0 - nu ** 2) / np.asarray(E_GPa, float)
                  + (1.0 - nu_indenter ** 2) / E_indenter_GPa)


def contact_stiffness_N_per_m(E_GPa, depth_nm, nu=SAMPLE_NU, beta=BERKOVICH_BETA):
    """Unloading contact stiffness ``S = 2 beta Er sqrt(A / pi)`` (Oliver & Pharr 1992, eq. 1).

    Parameters
    ----------
    E_GPa : float or array
        Sample Young's modulus (GPa); ``Er`` from :func:`reduced_modulus_GPa`.
    depth_nm : float or array
        Contact depth ``h_c`` (nm); ``A = 24.5 h_c^2``.
    nu : float
        Sample Poisson's ratio.
    beta : float
        Tip shape factor (1.034, Berkovich).

    Returns
    -------
    float or numpy.ndarray
        ``S`` in N/m.
    """
    area_m2 = BERKOVICH_AREA_COEFF * (np.asarray(depth_nm, float) * 1e-9) ** 2
    return 2.0 * beta * reduced_modulus_GPa(E_GPa, nu) * 1e9 * np.sqrt(area_m2 / np.pi)


def hill_average(fractions, values):
    """Voigt-Reuss-Hill average of phase values (Hill, Proc. Phys. Soc. A 65 (1952) 349).

    Mean of the Voigt (arithmetic, ``sum f v``) and Reuss (harmonic,
    ``1 / sum f/v``) bounds, the simple composite estimate used for virtual
    indentation by Trtik, Muench & Lura, Cem. Concr. Compos. 31 (2009) 705-714.

    Parameters
    ----------
    fractions : numpy.ndarray, shape (N, P)
        Phase volume fractions (rows sum to 1).
    values : numpy.ndarray, shape (N, P) or (P,)
        Phase values (> 0).

    Returns
    -------
    numpy.ndarray, shape (N,)
    """
    f = np.asarray(fractions, float)
    v = np.broadcast_to(np.asarray(values, float), f.shape)
    return 0.5 * ((f * v).sum(axis=1) + 1.0 / (f / v).sum(axis=1))


def zone_fractions(labels, x_px, y_px, radius_px, n_phases=len(PHASES)):
    """Phase area fractions in discs (indent interaction zones) over a label map.

    The disc of radius ``radius_px`` about ``(x_px, y_px)`` is rasterised with
    sub-pixel sampling (up to 8 x 8 samples per pixel for small discs), so the
    fractions vary smoothly with position and radius. Pixels outside the
    image are left out (the zone is clipped to the field); a disc smaller
    than the sampling takes the nearest pixel.

    Parameters
    ----------
    labels : numpy.ndarray, shape (H, W), integer
        Label map, ids ``0 .. n_phases-1``; pixel centres at integer indices.
    x_px, y_px : array-like, shape (N,)
        Disc centres (px, x = column, y = row).
    radius_px : float or array-like, shape (N,)
        Disc radii (px, >= 0).
    n_phases : int
        Number of label ids.

    Returns
    -------
    numpy.ndarray, shape (N, n_phases), float64
        Fractions; each row sums to 1.
    """
    h, w = labels.shape
    x = np.atleast_1d(np.asarray(x_px, float))
    y = np.atleast_1d(np.asarray(y_px, float))
    r = np.broadcast_to(np.asarray(radius_px, float), x.shape)
    out = np.zeros((x.size, n_phases))
    for i in range(x.size):
        xi, yi, ri = x[i], y[i], max(float(r[i]), 0.0)
        s = int(np.clip(math.ceil(16.0 / ri), 1, 8)) if ri > 0 else 1
        x0, x1 = max(0, int(math.floor(xi - ri - 0.5))), min(w - 1, int(math.ceil(xi + ri + 0.5)))
        y0, y1 = max(0, int(math.floor(yi - ri - 0.5))), min(h - 1, int(math.ceil(yi + ri + 0.5)))
        weight = None
        if ri > 0 and x0 <= x1 and y0 <= y1:
            off = (np.arange(s) + 0.5) / s - 0.5
            dx2 = ((np.arange(x0, x1 + 1)[:, None] + off[None, :]) - xi) ** 2   # (nx, s)
            dy2 = ((np.arange(y0, y1 + 1)[:, None] + off[None, :]) - yi) ** 2   # (ny, s)
            inside = dy2[:, :, None, None] + dx2[None, None, :, :] <= ri * ri   # (ny, s, nx, s)
            weight = inside.sum(axis=(1, 3)).astype(float)
            if weight.sum() == 0:
                weight = None
        if weight is None:
            lab = labels[int(np.clip(round(yi), 0, h - 1)), int(np.clip(round(xi), 0, w - 1))]
            out[i, int(lab)] = 1.0
            continue
        counts = np.bincount(labels[y0:y1 + 1, x0:x1 + 1].ravel().astype(np.intp),
                             weights=weight.ravel(), minlength=n_phases)
        out[i] = counts[:n_phases] / counts.sum()
    return out


#: Phase property draws are truncated below at this fraction of the phase mean.
TRUNCATE_FRACTION = 0.05


def _truncated_normal(rng, mean, std, size):
    """Draw from N(mean, std) truncated to (TRUNCATE_FRACTION * mean, inf)."""
    if std <= 0:
        return np.full(size, float(mean))
    a = (TRUNCATE_FRACTION * mean - mean) / std
    return stats.truncnorm.rvs(a, np.inf, loc=mean, scale=std, size=size, random_state=rng)


def _check_phase_properties(phase_properties):
    """Phase-properties table (default :data:`PHASE_PROPERTIES`) checked: columns, means > 0, stds >= 0."""
    pp = PHASE_PROPERTIES if phase_properties is None else phase_properties
    need = ["E_mean_GPa", "E_std_GPa", "H_mean_GPa", "H_std_GPa"]
    missing = [c for c in need if c not in pp.columns]
    if missing:
        raise InputError(f"phase properties table lacks column(s) {missing}; found {list(pp.columns)}")
    bad = pp.index[(pp["E_mean_GPa"] <= 0) | (pp["H_mean_GPa"] <= 0)
                   | (pp["E_std_GPa"] < 0) | (pp["H_std_GPa"] < 0)].tolist()
    if bad:
        raise InputError(f"phase properties: phase(s) {bad} need positive means and non-negative stds")
    return pp


def _check_indent_inputs(labels, x_px, y_px, pixel_size_nm, load_mN, names):
    """Validated label map, indent centres x, y (px, float, shape (N,)) and loads (mN, shape (N,))."""
    n_ph = len(names)
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"label map: expected a 2D array, found shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_ph):
        raise InputError(f"label map: ids must be 0..{n_ph - 1} ({names}); found "
                         f"{int(labels.min())}..{int(labels.max())}")
    if not pixel_size_nm > 0:
        raise InputError(f"pixel_size_nm = {pixel_size_nm}: expected > 0")
    x = np.atleast_1d(np.asarray(x_px, float))
    y = np.atleast_1d(np.asarray(y_px, float))
    n = x.size
    if y.size != n:
        raise InputError(f"indent positions: {n} x values but {y.size} y values")
    h, w = labels.shape
    outside = np.flatnonzero(~((x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)))
    if outside.size:
        i = outside[0]
        raise InputError(f"indent {i} at ({x[i]:.1f}, {y[i]:.1f}) px lies outside the "
                         f"{w} x {h} px label map ({outside.size} indents outside)")
    load = np.broadcast_to(np.asarray(load_mN, float), (n,)).copy()
    if np.any(~(load > 0)):
        raise InputError(f"load_mN: expected > 0, found {load[~(load > 0)][:3]}")
    return labels, x, y, load


def _draw_phase_values(rng, pp, n):
    """Per-indent phase E and H (GPa), each shape (N, P): all E draws, then all H draws."""
    n_ph = len(pp.index)
    E_ph = np.column_stack([_truncated_normal(rng, pp["E_mean_GPa"].iloc[k], pp["E_std_GPa"].iloc[k], n)
                            for k in range(n_ph)]).reshape(n, n_ph)
    H_ph = np.column_stack([_truncated_normal(rng, pp["H_mean_GPa"].iloc[k], pp["H_std_GPa"].iloc[k], n)
                            for k in range(n_ph)]).reshape(n, n_ph)
    return E_ph, H_ph


def _contact_zone_fractions(labels, x, y, load, H_ph, pixel_size_nm, zone_factor):
    """Phase fractions (N, P) in the interaction zones after one fixed-point step on ``h_c``."""
    h, w = labels.shape
    n, n_ph = H_ph.shape
    centre = labels[np.clip(np.rint(y).astype(int), 0, h - 1), np.clip(np.rint(x).astype(int), 0, w - 1)]
    H0 = H_ph[np.arange(n), centre.astype(np.intp)]
    px_per_nm = 1.0 / float(pixel_size_nm)
    radius = zone_factor * contact_depth_nm(load, H0) * px_per_nm
    frac = zone_fractions(labels, x, y, radius, n_ph)
    H1 = hill_average(frac, H_ph)
    radius = zone_factor * contact_depth_nm(load, H1) * px_per_nm
    return zone_fractions(labels, x, y, radius, n_ph)


def _measure(rng, E_true, H_true, load, noise_rel):
    """Noisy measured E, H (GPa), and the depth (nm) and stiffness (N/m) an instrument reports."""
    n = E_true.size
    E = E_true * np.maximum(1.0 + rng.normal(0.0, noise_rel, n), 0.1)
    H = H_true * np.maximum(1.0 + rng.normal(0.0, noise_rel, n), 0.1)
    depth = contact_depth_nm(load, H)
    return E, H, depth, contact_stiffness_N_per_m(E, depth)


def indent_properties(labels, x_px, y_px, pixel_size_nm, rng, load_mN=2.0, phase_properties=None,
                      noise_rel=0.05, zone_factor=3.0):
    """Forward model: what a nanoindenter measures at given points of a phase map.

    Per indent:

    1. each phase's E and H are drawn from its literature distribution
       (normal truncated below at 5 % of the mean, so values stay positive and
       a soft pore cannot give an unbounded depth; ``phase_properties``, default
       :data:`PHASE_PROPERTIES`), i.e. the local properties vary indent to indent;
    2. the interaction zone is a disc of radius ``zone_factor * h_c`` (the
       probed volume is a few contact depths across; Constantinides et al.,
       Mater. Sci. Eng. A 430 (2006) 189-202). ``h_c`` is found by one
       fixed-point iteration: ``h_0`` from the centre pixel's phase H, zone
       fractions at ``zone_factor * h_0``, homogenised H, ``h_1`` from it
       (``A = 24.5 h^2 = P / H``), fractions again at ``zone_factor * h_1``;
    3. the true E and H are Voigt-Reuss-Hill averages of the phase values
       over those fractions (:func:`hill_average`);
    4. measurement noise: ``E = E_true (1 + N(0, noise_rel))``, likewise H
       (the factor is clipped at 0.1 so values stay positive);
    5. the reported depth follows from the *measured* H (``H = P / (24.5 h^2)``
       holds exactly in the output, as an instrument computes it) and the
       stiffness from the measured E and that depth by Oliver-Pharr
       (:func:`contact_stiffness_N_per_m`: Berkovich beta 1.034, diamond
       E_i 1141 GPa, nu_i 0.07, sample nu 0.2).

    Zones at the field edge are clipped to the image.

    Parameters
    ----------
    labels : numpy.ndarray, shape (H, W), integer
        Phase label map, ids 0..P-1 in the order of ``phase_properties``.
    x_px, y_px : array-like, shape (N,)
        Indent centres in pixels of ``labels`` (x = column, y = row); must lie
        within the image (``-0.5 .. W-0.5``).
    pixel_size_nm : float
        Pixel size of ``labels`` (nm).
    rng : numpy.random.Generator
    load_mN : float or array-like, shape (N,)
        Peak load (mN, > 0).
    phase_properties : pandas.DataFrame, optional
        Indexed by phase name, columns ``E_mean_GPa, E_std_GPa, H_mean_GPa,
        H_std_GPa``.
    noise_rel : float
        Relative standard deviation of the measurement noise.
    zone_factor : float
        Zone radius in units of the contact depth.

    Returns
    -------
    pandas.DataFrame
        N rows in input order: ``E_GPa, H_GPa, depth_nm, load_mN,
        stiffness_N_per_m, E_true_GPa, H_true_GPa``, ``f_<phase>`` for each
        phase and ``phase`` (the dominant phase's name).

    Raises
    ------
    InputError
        On a label outside ``0..P-1``, an indent outside the image, a
        non-positive pixel size or load, or a bad phase-properties table.
    """
    pp = _check_phase_properties(phase_properties)
    names = list(pp.index)
    labels, x, y, load = _check_indent_inputs(labels, x_px, y_px, pixel_size_nm, load_mN, names)
    E_ph, H_ph = _draw_phase_values(rng, pp, x.size)
    frac = _contact_zone_fractions(labels, x, y, load, H_ph, pixel_size_nm, zone_factor)
    E_true = hill_average(frac, E_ph)
    H_true = hill_average(frac, H_ph)
    E, H, depth, stiffness = _measure(rng, E_true, H_true, load, noise_rel)
    out = pd.DataFrame({"E_GPa": E, "H_GPa": H, "depth_nm": depth, "load_mN": load,
                        "stiffness_N_per_m": stiffness,
                        "E_true_GPa": E_true, "H_true_GPa": H_true})
    for k, name in enumerate(names):
        out[f"f_{name}"] = frac[:, k]
    out["phase"] = np.asarray(names, dtype=object)[np.argmax(frac, axis=1)]
    return out
