"""Monte Carlo backscattered-electron coefficient of homogeneous targets.

A single-scattering Monte Carlo of electron trajectories in a homogeneous,
semi-infinite, flat target at normal incidence, following D. C. Joy,
*Monte Carlo Modeling for Electron Microscopy and Microanalysis* (Oxford
University Press, 1995), chapter 3 -- the method that CASINO (Hovington,
Drouin & Gauvin 1997, Scanning 19:1) implements with more refined
cross-sections:

* elastic scattering: screened Rutherford cross-section with the screening
  parameter of Bishop as used by Joy (1995, eq. 3.1-3.3),

  .. math:: \\alpha = 3.4\\times10^{-3} Z^{0.67} / E,\\qquad
            \\sigma_E = 5.21\\times10^{-21} \\frac{Z^2}{E^2}
            \\frac{4\\pi}{\\alpha(1+\\alpha)}
            \\left(\\frac{E+511}{E+1024}\\right)^2 \\ \\mathrm{cm^2},

  with ``E`` in keV; polar angle :math:`\\cos\\phi = 1 - 2\\alpha R/(1+\\alpha-R)`
  and uniform azimuth (Joy 1995, eq. 3.6-3.7);
* step lengths drawn from the exponential distribution of the elastic mean
  free path, :math:`s = -\\lambda \\ln R`, :math:`1/\\lambda = \\sum_i N_i \\sigma_i`
  (``N_i`` atoms of element ``i`` per cm\\ :sup:`3`);
* continuous slowing down with the Bethe stopping power with the low-energy
  correction of Joy & Luo (1989, Scanning 11:176),

  .. math:: \\frac{dE}{ds} = -78500 \\frac{\\rho}{E} \\sum_i \\frac{w_i Z_i}{A_i}
            \\ln\\left(\\frac{1.166 (E + k_i J_i)}{J_i}\\right)\\ \\mathrm{keV/cm},

  mean ionisation potential :math:`J = (9.76 Z + 58.5 Z^{-0.19})\\,\\mathrm{eV}`
  (Berger & Seltzer 1964, NASA SP-3012) and
  :math:`k = 0.731 + 0.0688 \\log_{10} Z` (Joy & Luo 1989); for a compound the
  mass-fraction-weighted sum of the elements' mass stopping powers (Bragg's
  additivity rule);
* for a compound, the scattering atom of each elastic event is drawn with
  probability :math:`N_i\\sigma_i / \\sum_j N_j\\sigma_j`.

An electron is backscattered when a step carries it through the surface
(``z < 0``); it is absorbed when its energy falls below a cut-off
(``cutoff_keV``, default 0.5 keV). The backscatter coefficient
:math:`\\eta` is the backscattered fraction.

The trajectory loop is compiled with numba (``parallel=True``, ``cache=True``)
and parallel over electrons. Every electron draws its random numbers from its
own SplitMix64 stream seeded from ``numpy.random.SeedSequence(seed)``, so a
result depends on the seed only, not on the number of threads.

Targets are :class:`Material` objects (``_materials``). :func:`simulate_eta`
gives eta of one target with its binomial error, :func:`eta_table` the
``eta(n)`` of volume mixtures of two materials (the "equivalent porosity"
``n`` of a cement-paste solid whose pores are filled with Field's metal) and
:func:`phase_eta_table` eta of named phases, both with common random numbers
so that differences between rows are precise.
"""
from __future__ import annotations

import logging
import math

import numba
import numpy as np
import pandas as pd

from ..errors import InputError
from ..progress import progress
from ._materials import DEFAULT_PHASES, Material, mix_by_volume

log = logging.getLogger(__name__)

def _element_arrays(material: Material):
    Z = np.asarray(material.Z, dtype=np.float64)
    A = np.asarray(material.atomic_weights, dtype=np.float64)
    w = np.asarray(material.mass_fractions, dtype=np.float64)
    J = (9.76 * Z + 58.5 * Z ** -0.19) * 1e-3          # keV, Berger & Seltzer 1964
    k = 0.731 + 0.0688 * np.log10(Z)                   # Joy & Luo 1989
    return Z, A, w, J, k


def stopping_power_keV_per_cm(material: Material, energy_keV):
    """Joy-Luo modified Bethe stopping power of a material.

    :math:`-dE/ds = 78500 (\\rho/E) \\sum_i (w_i Z_i/A_i) \\ln(1.166 (E + k_i J_i)/J_i)`
    (Joy & Luo 1989, Scanning 11:176; J from Berger & Seltzer 1964).

    Parameters
    ----------
    material : Material
    energy_keV : float or array_like
        Electron energy, keV.

    Returns
    -------
    float or numpy.ndarray
        :math:`-dE/ds`, keV/cm (positive).
    """
    Z, A, w, J, k = _element_arrays(material)
    E = np.asarray(energy_keV, dtype=float)[..., None]
    s = 78500.0 * material.density_g_cm3 / E[..., 0] * np.sum(
        w * Z / A * np.log(1.166 * (E + k * J) / J), axis=-1)
    return float(s) if s.ndim == 0 else s


def csda_range_cm(material: Material, beam_energy_keV: float, cutoff_keV: float = 0.5) -> float:
    """Path length to slow from ``beam_energy_keV`` to ``cutoff_keV``, cm.

    :math:`R = \\int_{E_c}^{E_0} dE / |dE/ds|` with the stopping power of
    :func:`stopping_power_keV_per_cm` (continuous-slowing-down approximation).
    """
    from scipy.integrate import quad

    val, _ = quad(lambda e: 1.0 / stopping_power_keV_per_cm(material, e),
                  cutoff_keV, beam_energy_keV, limit=200)
    return float(val)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


_MIX1 = np.uint64(0xBF58476D1CE4E5B9)


_MIX2 = np.uint64(0x94D049BB133111EB)


_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)


_INV53 = 1.0 / 9007199254740992.0  # 2**-53


@numba.njit(inline="always")
def _uniform(state):
    """SplitMix64 (Steele, Lea & Flood 2014) step; returns (u in (0, 1), state)."""
    state = state + _GOLDEN
    z = state
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    z = z ^ (z >> _S31)
    return ((z >> _S11) + 0.5) * _INV53, state


#: Elastic cross-section models of the kernel: ``rutherford`` (screened
#: Rutherford, Joy 1995) and ``browning`` (the empirical fit of Mott cross
#: sections by Browning et al. 1994, J. Appl. Phys. 76, 2016).
CROSS_SECTIONS = {"rutherford": 0, "browning": 1}

#: Default elastic cross-section (see ``benchmarks/backscatter_accuracy.py``).
DEFAULT_CROSS_SECTION = "browning"


@numba.njit(parallel=True, cache=True, fastmath=False)
def _trajectories(Z, A, w, J, k, n_atoms, rho, E0, E_cut, seeds, max_steps, model=0):
    """Single-scattering trajectories (Joy 1995, ch. 3); see the module docstring.

    Lengths in cm, energies in keV. Returns per electron: status (1
    backscattered, 0 absorbed, 2 hit max_steps), energy at exit/stop, path
    length (cm), deepest z (cm), number of steps.
    """
    n = seeds.shape[0]
    m = Z.shape[0]
    status = np.zeros(n, np.int8)
    e_out = np.zeros(n)
    path = np.zeros(n)
    zmax = np.zeros(n)
    steps = np.zeros(n, np.int64)
    # per-element constants
    z2 = Z * Z
    zscr = 3.4e-3 * Z ** 0.67          # screening parameter times E (keV)
    z17 = Z ** 1.7                     # Browning et al. (1994)
    z3 = Z * Z * Z
    spw = w * Z / A                    # stopping-power weights
    twopi = 2.0 * np.pi
    for i in numba.prange(n):
        state = seeds[i]
        E = E0
        x = 0.0
        y = 0.0
        z = 0.0
        cx = 0.0
        cy = 0.0
        cz = 1.0
        s_tot = 0.0
        deepest = 0.0
        st = 2
        nstep = 0
        # per-electron scratch, padded to 2 x 128 bytes beyond its m used values so
        # that two threads' arrays never share a cache line (written every step)
        scratch = np.empty(2 * (m + 16))
        sig = scratch[:m]
        alpha = scratch[m + 16:2 * m + 16]
        while nstep < max_steps:
            nstep += 1
            # elastic cross-sections (cm2/atom) and macroscopic total (1/cm)
            rel = (E + 511.0) / (E + 1024.0)
            rel *= rel
            tot = 0.0
            for j in range(m):
                if model == 1:
                    # Browning et al. 1994: fit of Mott total cross-sections, 0.1-30 keV
                    re = np.sqrt(E)
                    sj = 3.0e-18 * z17[j] / (E + 0.005 * z17[j] * re + 0.0007 * z2[j] / re)
                    alpha[j] = 7.0e-3 / E
                else:
                    a = zscr[j] / E
                    alpha[j] = a
                    sj = 5.21e-21 * z2[j] / (E * E) * (4.0 * np.pi / (a * (1.0 + a))) * rel
                sig[j] = n_atoms[j] * sj
                tot += sig[j]
            u, state = _uniform(state)
            step = -np.log(u) / tot
            zn = z + step * cz
            if zn < 0.0:
                # leaves through the surface: path up to the surface
                s_tot += -z / cz
                st = 1
                break
            x += step * cx
            y += step * cy
            z = zn
            s_tot += step
            if z > deepest:
                deepest = z
            # continuous slowing down over the step (Joy & Luo 1989)
            dedx = 0.0
            for j in range(m):
                dedx += spw[j] * np.log(1.166 * (E + k[j] * J[j]) / J[j])
            E -= step * 78500.0 * rho / E * dedx
            if E <= E_cut:
                st = 0
                break
            # choose the scattering atom, then the deflection
            u, state = _uniform(state)
            target = u * tot
            jj = m - 1
            acc = 0.0
            for j in range(m):
                acc += sig[j]
                if target <= acc:
                    jj = j
                    break
            a = alpha[jj]
            u, state = _uniform(state)
            if model == 1:
                # Browning et al. 1994: screened-Rutherford-like forward lobe with
                # probability r / (1 + r), else isotropic
                rr = 300.0 * E / Z[jj] + z3[jj] / (3.0e5 * E)
                u2, state = _uniform(state)
                if u <= rr / (1.0 + rr):
                    cphi = 1.0 - 2.0 * a * u2 / (1.0 + a - u2)
                else:
                    cphi = 1.0 - 2.0 * u2
            else:
                cphi = 1.0 - 2.0 * a * u / (1.0 + a - u)
            if cphi < -1.0:
                cphi = -1.0
            sphi = np.sqrt(max(0.0, 1.0 - cphi * cphi))
            u, state = _uniform(state)
            psi = twopi * u
            cpsi = np.cos(psi)
            spsi = np.sin(psi)
            # rotate the direction cosines (Joy 1995, eq. 3.10)
            if abs(cz) > 0.99999:
                cx = sphi * cpsi
                cy = sphi * spsi
                cz = cphi if cz > 0 else -cphi
            else:
                r = np.sqrt(1.0 - cz * cz)
                ncx = cx * cphi + sphi * (cx * cz * cpsi - cy * spsi) / r
                ncy = cy * cphi + sphi * (cy * cz * cpsi + cx * spsi) / r
                ncz = cz * cphi - r * sphi * cpsi
                nrm = np.sqrt(ncx * ncx + ncy * ncy + ncz * ncz)
                cx = ncx / nrm
                cy = ncy / nrm
                cz = ncz / nrm
        status[i] = st
        e_out[i] = E
        path[i] = s_tot
        zmax[i] = deepest
        steps[i] = nstep
    return status, e_out, path, zmax, steps


def n_threads() -> int:
    """Number of threads the numba kernel runs on."""
    import numba

    return int(numba.get_num_threads())


def _check_run(material, beam_energy_keV, n_electrons, cutoff_keV):
    if not isinstance(material, Material):
        raise InputError(f"expected a Material, got {type(material).__name__}")
    if not (np.isfinite(beam_energy_keV) and 0.5 < beam_energy_keV <= 100.0):
        raise InputError(f"material {material.name}: beam energy {beam_energy_keV} keV; "
                         f"expected 0.5 < E0 <= 100 keV")
    if not (0.05 <= cutoff_keV < beam_energy_keV):
        raise InputError(f"material {material.name}: cut-off {cutoff_keV} keV; expected "
                         f"0.05 <= cut-off < beam energy {beam_energy_keV} keV")
    if int(n_electrons) != n_electrons or n_electrons < 1:
        raise InputError(f"material {material.name}: n_electrons {n_electrons}; "
                         f"expected a positive integer")


def simulate_electrons(material: Material, beam_energy_keV: float = 20.0, n_electrons: int = 20000,
                       seed: int = 0, cutoff_keV: float = 0.5, max_steps: int = 1_000_000,
                       cross_section: str = DEFAULT_CROSS_SECTION) -> pd.DataFrame:
    """Follow ``n_electrons`` trajectories in a semi-infinite target.

    Parameters
    ----------
    material : Material
    beam_energy_keV : float
        Incident energy E0, keV (normal incidence at the origin, travelling +z).
    n_electrons : int
    seed : int
        Seed of ``numpy.random.SeedSequence``; the result is a function of the
        seed only (not of the thread count).
    cutoff_keV : float
        Energy below which an electron is absorbed.
    max_steps : int
        Safety limit on elastic events per electron (an electron reaching it
        counts as absorbed and is logged).
    cross_section : {"browning", "rutherford"}
        Elastic scattering model: ``browning``, the empirical fit of Mott
        cross-sections by Browning et al. (1994, J. Appl. Phys. 76, 2016):
        ``sigma = 3.0e-18 Z^1.7 / (E + 0.005 Z^1.7 E^0.5 + 0.0007 Z^2 / E^0.5)``
        cm^2 (E in keV), deflection by a screened-Rutherford lobe
        (``alpha = 7e-3 / E``) with probability ``r / (1 + r)``,
        ``r = 300 E / Z + Z^3 / (3e5 E)``, else isotropic, as in NIST's
        MONSEL/NISTMonte; ``rutherford``, the screened Rutherford model of the
        module docstring (Joy 1995), which overestimates eta of heavy elements.

    Returns
    -------
    pandas.DataFrame, n_electrons rows
        ``backscattered`` (bool), ``exit_energy_keV`` (energy when leaving
        the surface; the final energy, below the cut-off, when absorbed),
        ``path_length_nm`` (total path in the target), ``max_depth_nm``
        (deepest z reached), ``n_steps`` (int).

    Raises
    ------
    InputError
        On a bad energy, cut-off, electron count, material or cross-section.
    """
    _check_run(material, beam_energy_keV, n_electrons, cutoff_keV)
    if cross_section not in CROSS_SECTIONS:
        raise InputError(f"cross_section {cross_section!r}: expected one of {sorted(CROSS_SECTIONS)}")
    Z, A, w, J, k = _element_arrays(material)
    n_atoms = material.atoms_per_cm3()
    seeds = np.random.SeedSequence(int(seed)).generate_state(int(n_electrons), dtype=np.uint64)
    status, e_out, path, zmax, steps = _trajectories(
        Z, A, w, J, k, n_atoms, float(material.density_g_cm3), float(beam_energy_keV),
        float(cutoff_keV), seeds, int(max_steps), CROSS_SECTIONS[cross_section])
    n_stuck = int(np.sum(status == 2))
    if n_stuck:
        log.warning("%s: %d electrons reached max_steps=%d", material.name, n_stuck, max_steps)
    return pd.DataFrame({
        "backscattered": status == 1, "exit_energy_keV": e_out,
        "path_length_nm": path * 1e7, "max_depth_nm": zmax * 1e7, "n_steps": steps})


def simulate_eta(material: Material, beam_energy_keV: float = 20.0, n_electrons: int = 20000,
                 seed: int = 0, cutoff_keV: float = 0.5,
                 cross_section: str = DEFAULT_CROSS_SECTION) -> tuple[float, float]:
    """Backscatter coefficient of a homogeneous target by Monte Carlo.

    Parameters
    ----------
    material : Material
    beam_energy_keV : float
        Incident energy, keV.
    n_electrons : int
    seed : int
    cutoff_keV : float
        Absorption cut-off energy, keV.
    cross_section : {"browning", "rutherford"}
        See :func:`simulate_electrons`.

    Returns
    -------
    eta : float
        Backscattered fraction.
    eta_err : float
        Binomial standard error :math:`\\sqrt{\\eta(1-\\eta)/N}`.

    Raises
    ------
    InputError
        See :func:`simulate_electrons`.
    """
    res = simulate_electrons(material, beam_energy_keV, n_electrons, seed, cutoff_keV,
                             cross_section=cross_section)
    eta = float(res["backscattered"].mean())
    err = math.sqrt(eta * (1.0 - eta) / n_electrons)
    log.debug("%s at %g keV: eta = %.4f +- %.4f (N=%d)", material.name, beam_energy_keV,
              eta, err, n_electrons)
    return eta, err


def eta_table(material_a: Material, material_b: Material, n_values, beam_energy_keV: float = 20.0,
              n_electrons: int = 20000, seed: int = 0, cutoff_keV: float = 0.5,
              cross_section: str = DEFAULT_CROSS_SECTION) -> pd.DataFrame:
    """eta of volume mixtures of ``material_a`` with a fraction ``n`` of ``material_b``.

    With ``b`` = Field's metal filling the pores of ``a``, ``n`` is the
    "equivalent porosity" of a pixel. All ``n`` use the same random streams
    (common random numbers, seed ``seed``): each value is an unbiased
    estimate with the stated binomial error, while the differences between
    neighbouring ``n`` carry much less noise, so the curve is smooth.

    Parameters
    ----------
    material_a, material_b : Material
    n_values : array_like, shape (m,)
        Volume fractions of ``b`` in [0, 1].
    beam_energy_keV, n_electrons, seed, cutoff_keV, cross_section
        As in :func:`simulate_eta`.

    Returns
    -------
    pandas.DataFrame, m rows
        Columns ``n``, ``eta``, ``eta_err``.

    Raises
    ------
    InputError
        On ``n`` outside [0, 1] or an empty ``n_values``.
    """

    n_values = np.atleast_1d(np.asarray(n_values, dtype=float))
    if n_values.size == 0 or np.any(~np.isfinite(n_values)) or np.any((n_values < 0) | (n_values > 1)):
        raise InputError(f"eta_table({material_a.name}, {material_b.name}): n values "
                         f"{n_values.tolist()}; expected a non-empty list in [0, 1]")
    rows = []
    for n in progress(n_values, desc="eta(n)", unit="mix"):
        mat = mix_by_volume(material_a, material_b, n)
        eta, err = simulate_eta(mat, beam_energy_keV, n_electrons, seed, cutoff_keV, cross_section)
        log.info("n = %.3f: eta = %.4f +- %.4f", n, eta, err)
        rows.append((float(n), eta, err))
    return pd.DataFrame(rows, columns=["n", "eta", "eta_err"])


def phase_eta_table(phases=None, beam_energy_keV: float = 20.0, n_electrons: int = 20000,
                    seed: int = 0, cutoff_keV: float = 0.5,
                    cross_section: str = DEFAULT_CROSS_SECTION) -> pd.DataFrame:
    """eta of each named phase.

    Parameters
    ----------
    phases : dict of str to Material, optional
        Defaults to :data:`DEFAULT_PHASES`.
    beam_energy_keV, n_electrons, seed, cutoff_keV, cross_section
        As in :func:`simulate_eta`; all phases use the same random streams
        (common random numbers), which makes the differences between phases
        more precise than the per-phase errors suggest.

    Returns
    -------
    pandas.DataFrame
        Columns ``phase, formula, density_g_cm3, eta, eta_err``, one row per
        phase in the order given.
    """
    phases = DEFAULT_PHASES if phases is None else phases
    rows = []
    for name, mat in phases.items():
        eta, err = simulate_eta(mat, beam_energy_keV, n_electrons, seed, cutoff_keV, cross_section)
        log.info("phase %s: eta = %.4f +- %.4f", name, eta, err)
        rows.append((name, mat.formula, mat.density_g_cm3, eta, err))
    return pd.DataFrame(rows, columns=["phase", "formula", "density_g_cm3", "eta", "eta_err"])
