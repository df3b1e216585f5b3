"""Nanoindentation: forward model, export reader/writer, virtual indentation.

Three jobs live here:

1. The forward model of a virtual specimen (:func:`grid_positions`,
   :func:`indent_properties`): where the indenter lands (the batch grid model
   of the seed paper, eq. 3a/3b) and what it measures there (phase properties
   from the literature, homogenised over the indent's interaction zone,
   Oliver-Pharr stiffness, measurement noise).
2. The instrument export (:func:`write_export`, :func:`read_export`): a
   KLA Express/NanoBlitz-like CSV, read with a column map and a unit map into
   the standard columns; bad rows go into a rejection table with a reason.
3. Virtual indentation of a real micrograph (:func:`segment_phases`,
   :func:`virtual_indentation`): the targets are *simulated* from a grey-level
   segmentation, not measured.

Units follow the names: ``x_um``, ``depth_nm``, ``load_mN``,
``stiffness_N_per_m``, ``E_GPa``, ``H_GPa``. Useful identity: with the load in
mN and the hardness in GPa, ``P / H`` is an area in um^2.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage, stats

from .errors import InputError
from .io import atomic_path
from .specimen import PHASES  # phase names in label-id order (0 pore ... 4 ACC)

log = logging.getLogger(__name__)


#: Berkovich area function of a perfect tip, A = 24.5 h_c^2 (Oliver & Pharr 1992).
BERKOVICH_AREA_COEFF = 24.5
#: Oliver-Pharr correction factor beta for a Berkovich tip (Oliver & Pharr 1992).
BERKOVICH_BETA = 1.034
#: Diamond indenter: Young's modulus (GPa) and Poisson's ratio (Oliver & Pharr 1992).
DIAMOND_E_GPA = 1141.0
DIAMOND_NU = 0.07
#: Poisson's ratio assumed for cement paste phases when the instrument reports E.
SAMPLE_NU = 0.2

_REF_CU = ("Constantinides & Ulm, Cem. Concr. Res. 34 (2004) 67-80; "
           "Constantinides & Ulm, J. Mech. Phys. Solids 55 (2007) 64-90")
PHASE_PROPERTIES = pd.DataFrame(
    {
        "E_mean_GPa": [5.0, 26.5, 34.8, 52.0, 122.0],
        "E_std_GPa": [2.0, 4.1, 6.8, 17.0, 27.0],
        "H_mean_GPa": [0.2, 0.93, 1.22, 1.6, 8.0],
        "H_std_GPa": [0.1, 0.11, 0.15, 0.4, 2.0],
        "source": [
            "ASSUMPTION: epoxy-filled pore, soft (no literature value used)",
            f"E and H: values of the project spec, in the range reported for LD C-S-H by {_REF_CU}",
            f"E and H: values of the project spec, in the range reported for HD C-S-H by {_REF_CU}",
            "E: project spec (portlandite, wide scatter); H: mid of the 1.3-2 GPa range "
            f"reported for CH, e.g. {_REF_CU}",
            "E and H: anhydrous clinker phases (C3S, C2S, C3A, C4AF), Velez et al., "
            "Cem. Concr. Res. 31 (2001) 555-561 (E 125-145 GPa, H 8-11 GPa)",
        ],
    },
    index=pd.Index(list(PHASES), name="phase"),
)
"""Literature distributions of the phases' indentation properties.

Indexed by phase name in label-id order. Columns ``E_mean_GPa, E_std_GPa,
H_mean_GPa, H_std_GPa`` (GPa) and ``source``. The pore row is an assumption
(epoxy-impregnated pore), not a measurement.
"""

STANDARD_COLUMNS = ["batch", "indent", "x_um", "y_um", "depth_nm", "load_mN",
                    "stiffness_N_per_m", "H_GPa", "E_GPa", "source_row"]

#: Default header names of a KLA Express/NanoBlitz-like export.
KLA_COLUMNS = {"indent": "INDENT", "x": "X", "y": "Y", "depth": "DEPTH", "load": "LOAD",
               "stiffness": "STIFFNESS", "hardness": "HARDNESS", "modulus": "MODULUS"}
#: Default units of that export.
KLA_UNITS = {"x": "um", "y": "um", "depth": "nm", "load": "mN", "stiffness": "N/m",
             "hardness": "GPa", "modulus": "GPa"}

# export key -> (standard column, {unit: factor to the standard unit})
_LEN_UM = {"um": 1.0, "nm": 1e-3, "mm": 1e3, "m": 1e6}
_LEN_NM = {u: f * 1e3 for u, f in _LEN_UM.items()}
_PRESSURE_GPA = {"GPa": 1.0, "MPa": 1e-3, "kPa": 1e-6, "Pa": 1e-9}
_QUANTITIES = {
    "x": ("x_um", _LEN_UM),
    "y": ("y_um", _LEN_UM),
    "depth": ("depth_nm", _LEN_NM),
    "load": ("load_mN", {"mN": 1.0, "uN": 1e-3, "N": 1e3}),
    # 1 mN/nm = 1e-3 N / 1e-9 m = 1e6 N/m; 1 uN/nm = 1e3 N/m
    "stiffness": ("stiffness_N_per_m", {"N/m": 1.0, "kN/m": 1e3, "MN/m": 1e6, "mN/nm": 1e6,
                                        "uN/nm": 1e3, "mN/um": 1e3, "N/um": 1e6}),
    "hardness": ("H_GPa", _PRESSURE_GPA),
    "modulus": ("E_GPa", _PRESSURE_GPA),
}
_REQUIRED_KEYS = ("indent", "x", "y", "hardness", "modulus")
_OPTIONAL_KEYS = ("depth", "load", "stiffness")


# ----------------------------------------------------------------------------
# Grid model
# ----------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------
# Forward model
# ----------------------------------------------------------------------------

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

    E_ph = np.column_stack([_truncated_normal(rng, pp["E_mean_GPa"].iloc[k], pp["E_std_GPa"].iloc[k], n)
                            for k in range(n_ph)]).reshape(n, n_ph)
    H_ph = np.column_stack([_truncated_normal(rng, pp["H_mean_GPa"].iloc[k], pp["H_std_GPa"].iloc[k], n)
                            for k in range(n_ph)]).reshape(n, n_ph)

    centre = labels[np.clip(np.rint(y).astype(int), 0, h - 1), np.clip(np.rint(x).astype(int), 0, w - 1)]
    H0 = H_ph[np.arange(n), centre.astype(np.intp)]
    px_per_nm = 1.0 / float(pixel_size_nm)
    radius = zone_factor * contact_depth_nm(load, H0) * px_per_nm
    frac = zone_fractions(labels, x, y, radius, n_ph)
    H1 = hill_average(frac, H_ph)
    radius = zone_factor * contact_depth_nm(load, H1) * px_per_nm
    frac = zone_fractions(labels, x, y, radius, n_ph)
    E_true = hill_average(frac, E_ph)
    H_true = hill_average(frac, H_ph)

    E = E_true * np.maximum(1.0 + rng.normal(0.0, noise_rel, n), 0.1)
    H = H_true * np.maximum(1.0 + rng.normal(0.0, noise_rel, n), 0.1)
    depth = contact_depth_nm(load, H)
    out = pd.DataFrame({"E_GPa": E, "H_GPa": H, "depth_nm": depth, "load_mN": load,
                        "stiffness_N_per_m": contact_stiffness_N_per_m(E, depth),
                        "E_true_GPa": E_true, "H_true_GPa": H_true})
    for k, name in enumerate(names):
        out[f"f_{name}"] = frac[:, k]
    out["phase"] = np.asarray(names, dtype=object)[np.argmax(frac, axis=1)]
    return out


# ----------------------------------------------------------------------------
# Export writer and reader
# ----------------------------------------------------------------------------

def _norm_unit(unit):
    u = str(unit).strip().replace("\u00b5", "u").replace("\u03bc", "u")
    return {"micron": "um", "microns": "um"}.get(u, u)


def _unit_factor(key, unit, path):
    """Factor from ``unit`` to the standard unit of export key ``key``."""
    table = _QUANTITIES[key][1]
    u = _norm_unit(unit)
    if u not in table:
        raise InputError(f"{path}: unknown unit {unit!r} for {key}; expected one of {sorted(table)}")
    return table[u]


def write_export(df, path, style="kla", units=None, sep=",", header_lines=()):
    """Write indents as a KLA Express/NanoBlitz-like export (atomically).

    Parameters
    ----------
    df : pandas.DataFrame
        Columns ``indent, x_um, y_um, depth_nm, load_mN, stiffness_N_per_m,
        H_GPa, E_GPa``.
    path : path-like
        Output file.
    style : {"kla"}
        Column names ``INDENT, X, Y, DEPTH, LOAD, STIFFNESS, HARDNESS, MODULUS``.
    units : dict, optional
        Units to write, keyed like :data:`KLA_UNITS` (default those units,
        um, nm, mN, N/m, GPa); e.g. ``{"load": "uN", "modulus": "MPa"}``.
    sep : str
        Field separator (``","``, ``"\\t"`` or ``";"``).
    header_lines : sequence of str
        Metadata lines written before the header (as instruments do).

    Raises
    ------
    InputError
        On an unknown style or unit, or a missing column.
    """
    if style != "kla":
        raise InputError(f"{path}: unknown export style {style!r}; expected 'kla'")
    units = {**KLA_UNITS, **(units or {})}
    missing = [std for std, _table in _QUANTITIES.values() if std not in df.columns]
    if "indent" not in df.columns:
        missing.insert(0, "indent")
    if missing:
        raise InputError(f"{path}: cannot write export, table lacks {missing}")
    out = pd.DataFrame({KLA_COLUMNS["indent"]: df["indent"].astype(int).to_numpy()})
    for key, (std, _table) in _QUANTITIES.items():
        out[KLA_COLUMNS[key]] = df[std].to_numpy(float) / _unit_factor(key, units[key], path)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            for line in header_lines:
                fh.write(f"{line}\n")
            out.to_csv(fh, index=False, sep=sep, float_format="%.10g", lineterminator="\n")


def _read_text(path):
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: indentation export not found")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read indentation export ({exc})") from exc
    for enc in ("utf-8-sig", "latin-1"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    raise InputError(f"{path}: indentation export is not text")  # pragma: no cover (latin-1 decodes all)


def _split(line, sep):
    return [f.strip().strip('"').strip() for f in line.split(sep)]


def _find_header(lines, wanted, path, max_lines=200):
    """Locate the header line and separator: the first line holding all ``wanted`` names."""
    wanted_l = {w.lower() for w in wanted}
    best = (0, None, None)  # score, line index, fields of the best partial match
    first = None            # fields of the first non-empty line, split the widest way
    for i, line in enumerate(lines[:max_lines]):
        if not line.strip():
            continue
        for sep in (",", "\t", ";"):
            fields = _split(line, sep)
            score = len(wanted_l & {f.lower() for f in fields})
            if score == len(wanted_l):
                return i, sep, fields
            if score > best[0]:
                best = (score, i, fields)
        if first is None:
            first = (i, max((_split(line, s) for s in (",", "\t", ";")), key=len))
    if best[1] is None:
        best = (0, *(first or (None, [])))
    found = best[2]
    present = {f.lower() for f in found}
    missing = [w for w in wanted if w.lower() not in present]
    raise InputError(f"{path}: indentation export lacks column(s) {missing}; "
                     f"found columns {found} (on line {best[1] + 1 if best[1] is not None else '?'}); "
                     "set the column map of this area in the config")


def _parse_rows(lines, sep):
    """Split the header line and the data lines under it (blank lines skipped).

    Returns the header names, the data rows padded/truncated to the header
    width (stripped strings), and per row the count of non-empty fields
    beyond the header (trailing empty fields, as some instruments write, are
    ignored).
    """
    import csv

    reader = csv.reader(lines, delimiter=sep, quotechar='"', skipinitialspace=True)
    header = [f.strip() for f in next(reader)]
    width = len(header)
    rows, extra = [], []
    for rec in reader:
        rec = [f.strip() for f in rec]
        if not any(rec):
            continue
        extra.append(sum(1 for f in rec[width:] if f))
        rows.append((rec + [""] * width)[:width])
    return header, rows, extra


def read_export(path, batch, columns=None, units=None):
    """Read one batch's indentation export into the standard indents table.

    The separator (comma, tab or semicolon) is sniffed, and the header is the
    first line (within the first 200) that holds all mapped column names
    (case-insensitive), so metadata lines before it are skipped. A line right
    under the header whose mapped fields are all non-numeric (some of them
    non-empty, e.g. ``,um,um,nm,...``) is taken as a units line and skipped. With a semicolon separator a decimal comma is
    accepted.

    Parameters
    ----------
    path : path-like
        Export file (CSV/TSV/TXT).
    batch : str
        Batch name written into the ``batch`` column.
    columns : dict, optional
        Standard key -> header name in the file, keys ``indent, x, y, depth,
        load, stiffness, hardness, modulus`` (defaults :data:`KLA_COLUMNS`).
        ``depth``, ``load`` and ``stiffness`` may be mapped to ``None`` when
        the file lacks them (their columns are then NaN and not checked).
    units : dict, optional
        Key -> unit of that column in the file (defaults :data:`KLA_UNITS`):
        lengths ``um, nm, mm, m``; load ``mN, uN, N``; stiffness ``N/m,
        kN/m, MN/m, mN/nm (= 1e6 N/m), uN/nm (= 1e3 N/m), mN/um, N/um``;
        H and E ``GPa, MPa, kPa, Pa``. ``µ`` is accepted for ``u``.

    Returns
    -------
    accepted : pandas.DataFrame
        Columns ``batch, indent, x_um, y_um, depth_nm, load_mN,
        stiffness_N_per_m, H_GPa, E_GPa, source_row`` (``source_row``: the
        1-based data row in the file, counted after the header and a units
        line), in file order.
    rejected : pandas.DataFrame
        Same columns (values converted where readable) plus ``reason``:
        rows with a missing or non-numeric value, a non-integer INDENT,
        non-empty fields beyond the header (trailing empty ones are fine), or a
        non-physical value (E outside (0, 500] GPa, H outside (0, 50] GPa,
        depth outside (0, 10000] nm, load <= 0, stiffness <= 0). Never
        silently dropped.

    Raises
    ------
    InputError
        If the file is missing or unreadable, a mapped column is missing (the
        message names the file, the column and the columns found), a unit or
        column key is unknown, or INDENT ids repeat (the message names the
        ids and their rows).
    """
    path = Path(path)
    columns = {**KLA_COLUMNS, **(columns or {})}
    units = {**KLA_UNITS, **(units or {})}
    unknown = sorted(set(columns) - set(KLA_COLUMNS)) + sorted(set(units) - set(KLA_UNITS))
    if unknown:
        raise InputError(f"{path}: unknown column/unit key(s) {unknown}; expected {list(KLA_COLUMNS)}")
    for key in _REQUIRED_KEYS:
        if columns.get(key) is None:
            raise InputError(f"{path}: column map must name the file's {key!r} column")
    present_keys = [k for k in KLA_COLUMNS if columns.get(k) is not None]
    factors = {k: _unit_factor(k, units[k], path) for k in present_keys if k != "indent"}

    text = _read_text(path)
    lines = text.splitlines()
    wanted = [columns[k] for k in present_keys]
    hdr, sep, _ = _find_header(lines, wanted, path)
    header, rows, extra = _parse_rows(lines[hdr:], sep)
    raw = pd.DataFrame(rows, columns=header, dtype=object) if rows else pd.DataFrame(columns=header)
    lower = {c.lower(): c for c in reversed(header)}      # first occurrence wins
    cols = {k: lower[columns[k].lower()] for k in present_keys}
    raw = pd.DataFrame({c: raw[c].astype(str) for c in dict.fromkeys(cols.values())})

    def numeric(series):
        s = series.str.replace(",", ".", regex=False) if sep == ";" else series
        return pd.to_numeric(s, errors="coerce")

    if len(raw):
        first = raw.iloc[0][[cols[k] for k in present_keys]]
        if numeric(first).isna().all() and (first != "").any():
            log.info("%s: skipping units line under the header: %s", path, list(first))
            raw = raw.iloc[1:].reset_index(drop=True)
            extra = extra[1:]

    n = len(raw)
    reasons = [[f"{e} field(s) beyond the header"] if e else [] for e in extra]
    out = pd.DataFrame({"batch": [str(batch)] * n})
    for key in KLA_COLUMNS:
        std = "indent" if key == "indent" else _QUANTITIES[key][0]
        if key not in cols:
            out[std] = np.nan
            continue
        name = cols[key]
        vals = numeric(raw[name])
        for i in np.flatnonzero(vals.isna().to_numpy()):
            txt = raw[name].iat[i]
            reasons[i].append(f"missing {name}" if txt == "" or txt.lower() in ("nan", "na", "n/a")
                              else f"non-numeric {name} {txt!r}")
        out[std] = vals.to_numpy(float) * (1.0 if key == "indent" else factors[key])
    out["source_row"] = np.arange(1, n + 1)

    ind = out["indent"].to_numpy(float)
    for i in np.flatnonzero(np.isfinite(ind) & (ind != np.round(ind))):
        reasons[i].append(f"{cols['indent']} {ind[i]:g} is not an integer")
    checks = [("E_GPa", 0.0, 500.0, "modulus", "GPa"), ("H_GPa", 0.0, 50.0, "hardness", "GPa"),
              ("depth_nm", 0.0, 10000.0, "depth", "nm"), ("load_mN", 0.0, np.inf, "load", "mN"),
              ("stiffness_N_per_m", 0.0, np.inf, "stiffness", "N/m")]
    for std, lo, hi, key, unit in checks:
        if key not in cols:
            continue
        v = out[std].to_numpy(float)
        bad = np.isfinite(v) & ~((v > lo) & (v <= hi))
        rng_txt = f"(0, {hi:g}] {unit}" if np.isfinite(hi) else f"> 0 {unit}"
        for i in np.flatnonzero(bad):
            reasons[i].append(f"{cols[key]} = {v[i]:g} {unit} outside {rng_txt}")

    # duplicate ids are an inconsistent file, not a bad row: refuse the file
    ids = pd.Series(ind, index=out["source_row"]).dropna()
    dup = ids[ids.duplicated(keep=False)]
    if len(dup):
        groups = {int(k): list(v.index) for k, v in dup.groupby(dup)}
        shown = dict(list(groups.items())[:5])
        raise InputError(f"{path}: duplicate {cols['indent']} id(s) {list(groups)[:10]} "
                         f"({len(groups)} in all) at data rows {shown}; each indent needs a unique id")

    reason = np.array(["; ".join(r) for r in reasons], dtype=object)
    bad = reason != ""
    accepted = out.loc[~bad, STANDARD_COLUMNS].reset_index(drop=True)
    accepted["indent"] = accepted["indent"].astype(np.int64)
    rejected = out.loc[bad, STANDARD_COLUMNS].reset_index(drop=True)
    rejected["reason"] = reason[bad]
    log.info("%s: batch %s, %d data rows: %d accepted, %d rejected", path, batch, n,
             len(accepted), len(rejected))
    if len(rejected):
        log.warning("%s: rejected rows (first 5): %s", path,
                    "; ".join(f"row {r}: {m}" for r, m in zip(rejected["source_row"][:5], rejected["reason"][:5])))
    return accepted, rejected


# ----------------------------------------------------------------------------
# Segmentation and virtual indentation of a real micrograph
# ----------------------------------------------------------------------------

def segment_phases(image, n_phases=len(PHASES), seed=0, n_samples=50_000, smooth_px=1):
    """Grey-level Gaussian-mixture segmentation of a BSE micrograph.

    A 1D Gaussian mixture (``sklearn.mixture.GaussianMixture``, means
    started at evenly spaced quantiles) is fitted to a random subsample of
    grey values; components ordered by mean grey map to
    label ids 0.. (with 5 phases: pore, LD-C-S-H, HD-C-S-H, CH, ACC, darkest
    to brightest, following the BSE contrast of cement paste). Each pixel
    gets the most probable component; a median filter of size
    ``2 * smooth_px + 1`` then removes isolated pixels (labels are ordered by
    grey, so the median is meaningful).

    This is a crude, contrast-only segmentation (LD/HD C-S-H and CH overlap
    in grey level; on an image with two grey modes, hydrates and clinker,
    the mixture splits the modes and the ``CH`` class is partly bright
    clinker): good enough to simulate indentation targets, not a phase
    analysis.

    Parameters
    ----------
    image : numpy.ndarray, shape (H, W)
        Grey image (any real dtype).
    n_phases : int
        Number of mixture components (names are the phase names when 5).
    seed : int
        Random seed for the subsample and the mixture initialisation.
    n_samples : int
        Pixels used for the fit.
    smooth_px : int
        Median-filter half size (0: none).

    Returns
    -------
    labels : numpy.ndarray, shape (H, W), uint8
    info : pandas.DataFrame
        One row per label: ``label, phase, grey_mean, grey_std, weight``
        (mixture parameters) and ``area_fraction`` (after smoothing).

    Raises
    ------
    InputError
        If the image is not 2D or has fewer distinct grey values than phases.
    """
    from sklearn.mixture import GaussianMixture

    img = np.asarray(image)
    if img.ndim != 2:
        raise InputError(f"segment_phases: expected a 2D grey image, found shape {img.shape}")
    values, inverse = np.unique(img.ravel(), return_inverse=True)
    if values.size < n_phases:
        raise InputError(f"segment_phases: image has {values.size} grey levels, fewer than "
                         f"{n_phases} phases")
    rng = np.random.default_rng(seed)
    sample = img.ravel()[rng.choice(img.size, size=min(int(n_samples), img.size), replace=False)]
    sample = sample.astype(float).reshape(-1, 1)
    start = np.quantile(sample, (np.arange(n_phases) + 0.5) / n_phases).reshape(-1, 1)
    gmm = GaussianMixture(n_components=n_phases, random_state=seed, means_init=start)
    gmm.fit(sample)
    order = np.argsort(gmm.means_.ravel())
    rank = np.empty(n_phases, int)
    rank[order] = np.arange(n_phases)
    lut = rank[gmm.predict(values.astype(float).reshape(-1, 1))].astype(np.uint8)
    labels = lut[inverse].reshape(img.shape)
    if smooth_px > 0:
        labels = ndimage.median_filter(labels, size=2 * int(smooth_px) + 1, mode="nearest")
    names = list(PHASES) if n_phases == len(PHASES) else [f"class_{k}" for k in range(n_phases)]
    area = np.bincount(labels.ravel(), minlength=n_phases) / labels.size
    info = pd.DataFrame({
        "label": np.arange(n_phases), "phase": names,
        "grey_mean": gmm.means_.ravel()[order],
        "grey_std": np.sqrt(gmm.covariances_.reshape(n_phases, -1)[:, 0])[order],
        "weight": gmm.weights_[order], "area_fraction": area,
    })
    log.info("segmented %s image into %d phases: %s", img.shape, n_phases,
             ", ".join(f"{p} {a:.3f}" for p, a in zip(names, area)))
    return labels, info


def regular_grid_px(shape, pixel_size_nm, spacing_um, margin_um):
    """A regular grid of nominal indent positions centred on an image.

    Positions keep at least ``margin_um`` from the outermost pixel centres
    (``0`` and ``W-1``), so that a crop of size ``2 * margin_um`` around
    every indent fits in the image.

    Parameters
    ----------
    shape : (int, int)
        Image ``(H, W)``.
    pixel_size_nm, spacing_um, margin_um : float
        Pixel size (nm), grid spacing (um), margin (um).

    Returns
    -------
    pandas.DataFrame
        Row-major ``indent`` (1-based), ``row``, ``col``, ``x_um``, ``y_um``
        (specimen frame: pixel (0, 0) at (0, 0) um), ``x_px``, ``y_px``.

    Raises
    ------
    InputError
        If no indent fits.
    """
    p_um = float(pixel_size_nm) / 1e3
    h, w = shape
    counts, starts = [], []
    for extent in ((w - 1) * p_um, (h - 1) * p_um):
        free = extent - 2.0 * margin_um
        if free < 0:
            raise InputError(f"image of {w} x {h} px at {pixel_size_nm} nm/px is too small for a "
                             f"margin of {margin_um} um on each side")
        k = int(math.floor(free / spacing_um + 1e-9)) + 1
        counts.append(k)
        starts.append(margin_um + 0.5 * (free - (k - 1) * spacing_um))
    grid = grid_positions(counts[1], counts[0], spacing_um, origin_um=(starts[0], starts[1]))
    grid["x_px"] = grid["x_um"] / p_um
    grid["y_px"] = grid["y_um"] / p_um
    return grid


def virtual_indentation(image, pixel_size_nm, spacing_um, rng, load_mN=2.0, margin_um=None,
                        noise_rel=0.05, phase_properties=None, zone_factor=3.0, labels=None):
    """Virtual grid indentation of a real micrograph: SIMULATED targets.

    The E and H this returns are **not measurements**: the image is segmented
    by grey level (:func:`segment_phases`), a regular grid of nominal
    positions (no drift) is laid over it, and the forward model
    (:func:`indent_properties`) draws literature phase properties and
    homogenises them over each indent's zone. They serve to exercise and test
    the learning pipeline on real microstructure.

    Parameters
    ----------
    image : numpy.ndarray, shape (H, W)
        Grey BSE micrograph.
    pixel_size_nm : float
        Pixel size (nm).
    spacing_um : float
        Grid spacing (um).
    rng : numpy.random.Generator
    load_mN : float
        Peak load (mN).
    margin_um : float, optional
        Least distance of an indent from the field edge, normally half the
        crop size; default half the spacing.
    noise_rel, phase_properties, zone_factor
        As in :func:`indent_properties`.
    labels : numpy.ndarray, shape (H, W), optional
        A label map to use instead of segmenting ``image``.

    Returns
    -------
    indents : pandas.DataFrame
        Row-major: ``indent, row, col, x_um, y_um, x_px, y_px`` (specimen
        frame), ``E_GPa, H_GPa, depth_nm, load_mN, stiffness_N_per_m,
        E_true_GPa, H_true_GPa, f_<phase>..., phase``.
    labels : numpy.ndarray, shape (H, W), uint8
        The segmentation used.

    Raises
    ------
    InputError
        If the image is not 2D, or no indent fits within the margin.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise InputError(f"virtual_indentation: expected a 2D grey image, found shape {image.shape}")
    if labels is None:
        labels, _ = segment_phases(image, seed=int(rng.integers(2 ** 31)))
    elif labels.shape != image.shape:
        raise InputError(f"label map shape {labels.shape} differs from image shape {image.shape}")
    margin_um = 0.5 * spacing_um if margin_um is None else float(margin_um)
    grid = regular_grid_px(image.shape, pixel_size_nm, spacing_um, margin_um)
    props = indent_properties(labels, grid["x_px"], grid["y_px"], pixel_size_nm, rng, load_mN=load_mN,
                              phase_properties=phase_properties, noise_rel=noise_rel,
                              zone_factor=zone_factor)
    indents = pd.concat([grid.reset_index(drop=True), props.reset_index(drop=True)], axis=1)
    log.info("virtual indentation (SIMULATED targets): %d indents (%d x %d) at %.3g um spacing",
             len(indents), grid["row"].max() + 1, grid["col"].max() + 1, spacing_um)
    return indents, labels
