"""Large virtual areas generated chunk by chunk, with their truth.

:func:`microprop.virtual.generate_area` holds the whole field in memory
(about 1.5 GB for 92 Mpx), which does not scale to gigapixel areas.
:func:`large_area` writes a calibrated-like eta map of a multi-phase cement
paste and its phase truth straight into a zarr group, one chunk at a time:
memory is a few chunks, whatever the area.

The field is defined globally, so that a chunk does not depend on the
chunking: two smooth random fields are sums of octaves of *lattice value
noise* -- seeded Gaussian values on square lattices of a given spacing (the
whole lattice is small: ``(H / spacing)**2`` values), interpolated at every
pixel by separable Catmull-Rom cubic convolution (Keys 1981, IEEE Trans.
ASSP 29; a chunk is two small matrix products per octave). Phases follow
from thresholds:

* ``g1`` above its ``1 - f_ACC`` quantile: clinker (ACC); the next
  ``f_HD`` below: HD C-S-H, a rim around the grains;
* elsewhere ``g2`` above its ``1 - f_CH`` quantile: CH; below its ``f_pore``
  quantile: pore; the rest LD C-S-H.

The thresholds are the quantiles of the fields on a seeded sample of
pixels, so the area fractions come out close to the asked ones. The map is
the phase's eta plus a smooth intra-phase texture (an octave of the same
noise) and white noise (the detector's shot noise; drawn per chunk from a
generator seeded by the seed and the chunk's position, so it depends on the
chunk size, the phases and the texture do not).
"""
from __future__ import annotations

import logging
import math

import numpy as np

from .. import io as mio
from ..errors import InputError
from ..phases import DEFAULT_FRACTIONS, PHASES, PHASE_PROPERTIES, check_fractions
from ..progress import progress

log = logging.getLogger(__name__)

#: Calibrated eta per phase of the demo's A4 (detector line of its
#: ``calibrated.zarr``, 2026-12-02): what a trained demo model has seen.
DEMO_CALIBRATED_ETA = {"pore": 0.0567, "LD-C-S-H": 0.1321, "HD-C-S-H": 0.1386, "CH": 0.1643,
                       "ACC": 0.1785}

#: Octaves ``(spacing_um, weight)`` of the grain field ``g1`` and of the CH/pore field ``g2``.
OCTAVES_G1 = ((6.0, 1.0), (2.0, 0.45), (0.7, 0.15))
OCTAVES_G2 = ((3.0, 1.0), (1.0, 0.5), (0.35, 0.2))


def _catmull_rom(t):
    """Weights of the 4 lattice nodes ``floor(t) - 1 .. floor(t) + 2`` for positions ``t``, (n, 4)."""
    u = t - np.floor(t)
    u2, u3 = u * u, u * u * u
    return np.stack([-0.5 * u3 + u2 - 0.5 * u, 1.5 * u3 - 2.5 * u2 + 1.0,
                     -1.5 * u3 + 2.0 * u2 + 0.5 * u, 0.5 * u3 - 0.5 * u2], axis=1)


def _interp_matrix(p0, p1, spacing, k0, k1):
    """``(p1 - p0, k1 - k0)`` matrix interpolating lattice nodes ``k0..k1-1`` at pixels p0..p1-1.

    Node ``k`` of a lattice of ``spacing`` px lies at pixel ``(k - 1) * spacing - 0.5``
    (one node before the area's first pixel).
    """
    t = (np.arange(p0, p1) + 0.5) / spacing + 1.0
    k = np.floor(t).astype(np.int64) - 1 - k0                   # first of the 4 nodes, local
    w = _catmull_rom(t)
    m = np.zeros((p1 - p0, k1 - k0), np.float64)
    rows = np.arange(p1 - p0)
    for j in range(4):
        m[rows, k + j] += w[:, j]
    return m


class _ValueNoise:
    """Sum of octaves of lattice value noise over an ``(H, W)`` pixel area."""

    def __init__(self, shape, octaves_px, rng):
        self.octaves = []
        for spacing, weight in octaves_px:
            n = (int(math.ceil(shape[0] / spacing)) + 4, int(math.ceil(shape[1] / spacing)) + 4)
            self.octaves.append((float(spacing), float(weight),
                                 rng.standard_normal(n, dtype=np.float32)))
        self.norm = 1.0 / math.sqrt(sum(w * w for _, w, _ in self.octaves))

    def block(self, r0, r1, c0, c1):
        """The field on rows ``r0:r1`` and columns ``c0:c1``, float64."""
        out = np.zeros((r1 - r0, c1 - c0), np.float64)
        for spacing, weight, lat in self.octaves:
            k0 = int(math.floor((r0 + 0.5) / spacing))               # nodes k0 .. k1-1
            k1 = int(math.floor((r1 - 0.5) / spacing)) + 4
            j0 = int(math.floor((c0 + 0.5) / spacing))
            j1 = int(math.floor((c1 - 0.5) / spacing)) + 4
            wy = _interp_matrix(r0, r1, spacing, k0, k1)
            wx = _interp_matrix(c0, c1, spacing, j0, j1)
            out += weight * (wy.astype(np.float32) @ lat[k0:k1, j0:j1] @ wx.T.astype(np.float32))
        return out * self.norm


def _thresholds(g1, g2, shape, fractions, rng, n_sample=64, edge=256):
    """Quantile thresholds of the phase rule from ``n_sample`` seeded blocks of the fields."""
    v1, v2 = [], []
    for _ in range(int(n_sample)):
        r = int(rng.integers(0, max(shape[0] - edge, 1)))
        c = int(rng.integers(0, max(shape[1] - edge, 1)))
        r1, c1 = min(r + edge, shape[0]), min(c + edge, shape[1])
        v1.append(g1.block(r, r1, c, c1).ravel())
        v2.append(g2.block(r, r1, c, c1).ravel())
    v1, v2 = np.concatenate(v1), np.concatenate(v2)
    t_acc = np.quantile(v1, 1 - fractions["ACC"])
    t_hd = np.quantile(v1, 1 - fractions["ACC"] - fractions["HD-C-S-H"])
    rest = v2[v1 <= t_hd]
    t_ch = np.quantile(rest, 1 - fractions["CH"] / max(1 - fractions["ACC"] - fractions["HD-C-S-H"],
                                                       1e-9))
    t_pore = np.quantile(rest, fractions["pore"] / max(1 - fractions["ACC"]
                                                       - fractions["HD-C-S-H"], 1e-9))
    return t_acc, t_hd, t_ch, t_pore


def large_area(path, shape, pixel_size_nm=40.0, seed=0, fractions=None, phase_eta=None,
               texture_rel=0.03, noise_eta=0.008, chunk=2048, zarr_chunk=1024):
    """Write a virtual calibrated area and its phase truth into a zarr group, chunk by chunk.

    Parameters
    ----------
    path : path-like
        Zarr group written (overwritten): arrays ``MulF`` (float32 eta, the
        calibrated map as :func:`microprop.io.open_calibrated` reads it) and
        ``truth_phase`` (uint8 phase id in :data:`microprop.phases.PHASES`
        order); attrs ``pixel_size_nm``, ``origin_um`` (0, 0), ``quantity``
        (``"eta"``), ``phases``, ``phase_eta``, ``E_mean_GPa`` and
        ``H_mean_GPa`` per phase, ``fractions`` (asked) and
        ``area_fractions`` (generated), ``seed``.
    shape : tuple of int
        ``(H, W)``, pixels.
    pixel_size_nm : float
        nm per pixel; the morphology's lengths are in um
        (:data:`OCTAVES_G1`, :data:`OCTAVES_G2`).
    seed : int
        Random state of the lattices, the thresholds' sample and the noise.
    fractions : dict, optional
        Phase -> area fraction (default :data:`microprop.phases.DEFAULT_FRACTIONS`).
    phase_eta : dict, optional
        Phase -> eta (default :data:`DEMO_CALIBRATED_ETA`).
    texture_rel : float
        Standard deviation of the smooth intra-phase texture, relative to eta.
    noise_eta : float
        Standard deviation of the white noise, eta units.
    chunk : int
        Edge of the blocks generated at once, pixels (a multiple of
        ``zarr_chunk`` keeps every zarr chunk written once).
    zarr_chunk : int
        Chunk edge of the stored arrays, pixels.

    Returns
    -------
    dict
        The group's attrs.

    Raises
    ------
    InputError
        If ``shape`` is not two positive integers, the fractions are invalid
        or a phase lacks an eta.
    """
    try:
        h, w = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise InputError(f"large_area: shape must be (H, W), got {shape!r}") from None
    if h < 1 or w < 1:
        raise InputError(f"large_area: shape must be positive, got {shape!r}")
    fractions = check_fractions(dict(fractions or DEFAULT_FRACTIONS))
    phase_eta = dict(phase_eta or DEMO_CALIBRATED_ETA)
    missing = [p for p in PHASES if p not in phase_eta]
    if missing:
        raise InputError(f"large_area: phase_eta lacks {missing}")
    um = 1000.0 / float(pixel_size_nm)
    rng = np.random.default_rng(int(seed))
    g1 = _ValueNoise((h, w), [(s * um, wt) for s, wt in OCTAVES_G1], rng)
    g2 = _ValueNoise((h, w), [(s * um, wt) for s, wt in OCTAVES_G2], rng)
    tex = _ValueNoise((h, w), [(0.25 * um, 1.0)], rng)
    t_acc, t_hd, t_ch, t_pore = _thresholds(g1, g2, (h, w), fractions, rng)
    eta = np.array([phase_eta[p] for p in PHASES], np.float64)

    group = mio.create_group(path)
    mulf = mio.create_group_array(group, "MulF", (h, w), np.float32, chunk=zarr_chunk,
                                  attrs={"pixel_size_nm": float(pixel_size_nm)})
    truth = mio.create_group_array(group, "truth_phase", (h, w), np.uint8, chunk=zarr_chunk)
    counts = np.zeros(len(PHASES), np.int64)
    chunk = int(chunk)
    n_blocks = math.ceil(h / chunk) * math.ceil(w / chunk)
    with progress(total=n_blocks, desc="large area", unit="chunk") as bar:
        for r0 in range(0, h, chunk):
            r1 = min(r0 + chunk, h)
            for c0 in range(0, w, chunk):
                c1 = min(c0 + chunk, w)
                a, b = g1.block(r0, r1, c0, c1), g2.block(r0, r1, c0, c1)
                lab = np.full(a.shape, PHASES.index("LD-C-S-H"), np.uint8)
                lab[b > t_ch] = PHASES.index("CH")
                lab[b < t_pore] = PHASES.index("pore")
                lab[a > t_hd] = PHASES.index("HD-C-S-H")
                lab[a > t_acc] = PHASES.index("ACC")
                noise = np.random.default_rng([int(seed), r0, c0]).standard_normal(a.shape)
                e = eta[lab]
                img = e * (1.0 + texture_rel * tex.block(r0, r1, c0, c1)) + noise_eta * noise
                mulf[r0:r1, c0:c1] = img.astype(np.float32)
                truth[r0:r1, c0:c1] = lab
                counts += np.bincount(lab.ravel(), minlength=len(PHASES))
                bar.update(1)
    props = PHASE_PROPERTIES
    attrs = {"pixel_size_nm": float(pixel_size_nm), "origin_um": [0.0, 0.0], "quantity": "eta",
             "units": "1", "phases": list(PHASES), "phase_eta": {p: float(phase_eta[p]) for p in PHASES},
             "E_mean_GPa": {p: float(props.loc[p, "E_mean_GPa"]) for p in PHASES},
             "H_mean_GPa": {p: float(props.loc[p, "H_mean_GPa"]) for p in PHASES},
             "fractions": {p: float(fractions[p]) for p in PHASES},
             "area_fractions": {p: float(c) / (h * w) for p, c in zip(PHASES, counts)},
             "seed": int(seed), "generator": "microprop.virtual.large_area"}
    group.attrs.update(mio.jsonable(attrs))
    log.info("large area %d x %d px written to %s; fractions %s", h, w, path,
             {p: round(v, 3) for p, v in attrs["area_fractions"].items()})
    return attrs
