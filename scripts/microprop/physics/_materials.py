"""Target materials of the backscatter Monte Carlo, and empirical eta references.

- Elements: :data:`ELEMENTS` (Z, IUPAC 2013 conventional atomic weight,
  CRC Handbook density) for Z = 1..83.
- :class:`Material`: a homogeneous target (element mass fractions and a
  density), built from a chemical formula (:func:`parse_formula`,
  :func:`material_from_formula`; mass fraction
  :math:`w_i = n_i A_i / \\sum_j n_j A_j`), from mass fractions
  (:func:`material_from_mass_fractions`), as a pure element
  (:func:`element`) or as a volume mixture of two materials
  (:func:`mix_by_volume`: :math:`\\rho = (1-f)\\rho_a + f\\rho_b`, mass
  fraction of ``b`` :math:`m_b = f\\rho_b/\\rho`), e.g. the "equivalent
  porosity" ``n`` of a cement-paste solid whose pores are filled with Field's
  metal.
- Empirical backscatter coefficients to check the Monte Carlo against:
  Reuter's (1972) fit :math:`\\eta(Z)` for pure elements at normal incidence
  (:func:`reuter_eta`, :data:`REFERENCE_ETA_20KEV`) and Castaing's rule
  :math:`\\eta = \\sum_i w_i \\eta_i` for compounds (:func:`castaing_eta`).
- The materials of a Field's-metal-intruded cement paste: C-S-H with its gel
  water (:data:`CSH`, Tennis & Jennings 2000) and without it
  (:data:`CSH_SOLID`, Allen, Thomas & Jennings 2007), :data:`FIELDS_METAL`,
  the embedding :data:`EPOXY`, the C-S-H packing densities
  (:data:`PACKING_LD`, :data:`PACKING_HD`; Constantinides & Ulm 2007) and
  the five phases as BSE targets (:data:`DEFAULT_PHASES`).

The Monte Carlo itself is in ``_montecarlo``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError

# (symbol, Z, standard atomic weight g/mol, density g/cm3 of the element at
# room temperature; NaN for gases). Atomic weights: IUPAC 2013 conventional
# values (CIAAW); densities: CRC Handbook of Chemistry and Physics, 97th ed.
# (solids at 20-25 C; Br and Hg liquids; C graphite; P white; Sn white).
_ELEMENT_DATA = [
    ("H", 1, 1.008, np.nan), ("He", 2, 4.0026, np.nan), ("Li", 3, 6.94, 0.534),
    ("Be", 4, 9.0122, 1.85), ("B", 5, 10.81, 2.34), ("C", 6, 12.011, 2.26),
    ("N", 7, 14.007, np.nan), ("O", 8, 15.999, np.nan), ("F", 9, 18.998, np.nan),
    ("Ne", 10, 20.180, np.nan), ("Na", 11, 22.990, 0.971), ("Mg", 12, 24.305, 1.738),
    ("Al", 13, 26.982, 2.699), ("Si", 14, 28.085, 2.33), ("P", 15, 30.974, 1.82),
    ("S", 16, 32.06, 2.07), ("Cl", 17, 35.45, np.nan), ("Ar", 18, 39.948, np.nan),
    ("K", 19, 39.098, 0.862), ("Ca", 20, 40.078, 1.55), ("Sc", 21, 44.956, 2.989),
    ("Ti", 22, 47.867, 4.506), ("V", 23, 50.942, 6.11), ("Cr", 24, 51.996, 7.19),
    ("Mn", 25, 54.938, 7.21), ("Fe", 26, 55.845, 7.874), ("Co", 27, 58.933, 8.90),
    ("Ni", 28, 58.693, 8.908), ("Cu", 29, 63.546, 8.96), ("Zn", 30, 65.38, 7.134),
    ("Ga", 31, 69.723, 5.91), ("Ge", 32, 72.630, 5.323), ("As", 33, 74.922, 5.727),
    ("Se", 34, 78.971, 4.81), ("Br", 35, 79.904, 3.12), ("Kr", 36, 83.798, np.nan),
    ("Rb", 37, 85.468, 1.532), ("Sr", 38, 87.62, 2.64), ("Y", 39, 88.906, 4.469),
    ("Zr", 40, 91.224, 6.506), ("Nb", 41, 92.906, 8.57), ("Mo", 42, 95.95, 10.22),
    ("Tc", 43, 98.0, 11.5), ("Ru", 44, 101.07, 12.37), ("Rh", 45, 102.91, 12.41),
    ("Pd", 46, 106.42, 12.02), ("Ag", 47, 107.87, 10.49), ("Cd", 48, 112.41, 8.65),
    ("In", 49, 114.82, 7.31), ("Sn", 50, 118.71, 7.287), ("Sb", 51, 121.76, 6.685),
    ("Te", 52, 127.60, 6.24), ("I", 53, 126.90, 4.93), ("Xe", 54, 131.29, np.nan),
    ("Cs", 55, 132.91, 1.873), ("Ba", 56, 137.33, 3.51), ("La", 57, 138.91, 6.146),
    ("Ce", 58, 140.12, 6.77), ("Pr", 59, 140.91, 6.77), ("Nd", 60, 144.24, 7.01),
    ("Pm", 61, 145.0, 7.26), ("Sm", 62, 150.36, 7.52), ("Eu", 63, 151.96, 5.244),
    ("Gd", 64, 157.25, 7.90), ("Tb", 65, 158.93, 8.23), ("Dy", 66, 162.50, 8.55),
    ("Ho", 67, 164.93, 8.80), ("Er", 68, 167.26, 9.07), ("Tm", 69, 168.93, 9.32),
    ("Yb", 70, 173.05, 6.90), ("Lu", 71, 174.97, 9.84), ("Hf", 72, 178.49, 13.31),
    ("Ta", 73, 180.95, 16.65), ("W", 74, 183.84, 19.25), ("Re", 75, 186.21, 21.02),
    ("Os", 76, 190.23, 22.59), ("Ir", 77, 192.22, 22.56), ("Pt", 78, 195.08, 21.45),
    ("Au", 79, 196.97, 19.32), ("Hg", 80, 200.59, 13.53), ("Tl", 81, 204.38, 11.85),
    ("Pb", 82, 207.2, 11.34), ("Bi", 83, 208.98, 9.78),
]


#: symbol -> (Z, atomic weight g/mol, density g/cm3 or NaN)
ELEMENTS = {s: (z, a, d) for s, z, a, d in _ELEMENT_DATA}


AVOGADRO = 6.02214076e23  # 1/mol (SI 2019, exact)


def reuter_eta(Z):
    """Backscatter coefficient of a pure element from Reuter's fit.

    :math:`\\eta(Z) = -0.0254 + 0.016 Z - 1.86\\times10^{-4} Z^2 + 8.3\\times10^{-7} Z^3`
    (W. Reuter 1972, Proc. 6th Int. Conf. on X-ray Optics and Microanalysis,
    Univ. Tokyo Press, p. 121; fit to measurements at normal incidence, valid
    for about 10-50 keV; also quoted by Goldstein et al., *Scanning Electron
    Microscopy and X-ray Microanalysis*, and Reimer, *Scanning Electron
    Microscopy*, eq. 4.34).

    Parameters
    ----------
    Z : int or array_like
        Atomic number(s).

    Returns
    -------
    float or numpy.ndarray
        eta (dimensionless).
    """
    z = np.asarray(Z, dtype=float)
    out = -0.0254 + 0.016 * z - 1.86e-4 * z ** 2 + 8.3e-7 * z ** 3
    return float(out) if out.ndim == 0 else out


#: Reference eta at 20 keV, normal incidence, from Reuter's (1972) fit to
#: measured backscatter coefficients (see :func:`reuter_eta`). For comparison,
#: measurements collected in Joy's "Database of electron-solid interactions"
#: at 20 keV lie close to these (C ~0.06, Al ~0.15, Cu ~0.30, Au ~0.49-0.50).
REFERENCE_ETA_20KEV = {s: round(reuter_eta(ELEMENTS[s][0]), 4)
                       for s in ("C", "Al", "Si", "Ti", "Cu", "Ag", "In", "Sn", "Au", "Bi")}


_TOKEN = re.compile(r"\s*(?:([A-Z][a-z]?)|(\()|(\))|(\d+(?:\.\d*)?|\.\d+))")


def parse_formula(formula: str) -> dict[str, float]:
    """Parse a chemical formula into atoms per formula unit.

    Elements are a capital letter and an optional small letter; counts may be
    decimal; parentheses nest; a ``·`` or ``*`` separates hydrate parts, each
    optionally led by a multiplier (``CaSO4·2H2O``).

    Parameters
    ----------
    formula : str
        e.g. ``"(CaO)1.7(SiO2)(H2O)4"``, ``"Ca(OH)2"``, ``"Ca3SiO5"``.

    Returns
    -------
    dict of str to float
        Element symbol -> number of atoms, in order of first appearance.

    Raises
    ------
    InputError
        On an unknown element, unbalanced parentheses, a stray character or
        an empty formula.
    """
    if not isinstance(formula, str) or not formula.strip():
        raise InputError(f"formula {formula!r}: expected a non-empty chemical formula")
    parts = re.split(r"[·*]", formula)
    total: dict[str, float] = {}
    for part in parts:
        m = re.match(r"\s*(\d+(?:\.\d*)?|\.\d+)?(.*)$", part)
        mult = float(m.group(1)) if m.group(1) else 1.0
        for sym, n in _parse_part(m.group(2), formula).items():
            total[sym] = total.get(sym, 0.0) + mult * n
    if not total:
        raise InputError(f"formula {formula!r}: no element found")
    return total


def _parse_part(text: str, formula: str) -> dict[str, float]:
    stack: list[dict[str, float]] = [{}]
    pos = 0
    last: dict[str, float] | None = None  # the group a following count multiplies
    last_sym: str | None = None
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise InputError(f"formula {formula!r}: unexpected character {text[pos]!r} "
                             f"at position {pos}; expected an element, a count or parentheses")
        pos = m.end()
        sym, opn, cls, num = m.groups()
        if sym:
            if sym not in ELEMENTS:
                raise InputError(f"formula {formula!r}: unknown element {sym!r} "
                                 f"(supported: Z = 1..83)")
            stack[-1][sym] = stack[-1].get(sym, 0.0) + 1.0
            last, last_sym = None, sym
        elif opn:
            stack.append({})
            last = last_sym = None
        elif cls:
            if len(stack) == 1:
                raise InputError(f"formula {formula!r}: unbalanced ')'")
            group = stack.pop()
            for s, n in group.items():
                stack[-1][s] = stack[-1].get(s, 0.0) + n
            last, last_sym = group, None
        elif num:
            count = float(num)
            if last_sym is not None:
                stack[-1][last_sym] += count - 1.0
            elif last is not None:
                for s, n in last.items():
                    stack[-1][s] += (count - 1.0) * n
            else:
                raise InputError(f"formula {formula!r}: count {num!r} does not follow an "
                                 f"element or a parenthesised group")
            last = last_sym = None
    if len(stack) != 1:
        raise InputError(f"formula {formula!r}: unbalanced '('")
    return stack[0]


@dataclass(frozen=True)
class Material:
    """A homogeneous target material.

    Attributes
    ----------
    name : str
        Label, e.g. ``"Cu"`` or ``"LD-C-S-H"``.
    symbols : tuple of str
        Element symbols, shape (n,).
    Z : tuple of int
        Atomic numbers, shape (n,).
    atomic_weights : tuple of float
        Atomic weights, g/mol, shape (n,).
    mass_fractions : tuple of float
        Mass fractions, sum 1, shape (n,).
    density_g_cm3 : float
        Density, g/cm3.
    formula : str
        Chemical formula or a description of a mixture (provenance only).
    """

    name: str
    symbols: tuple
    Z: tuple
    atomic_weights: tuple
    mass_fractions: tuple
    density_g_cm3: float
    formula: str = field(default="")

    def atoms_per_cm3(self) -> np.ndarray:
        """Number density of each element, atoms/cm3, shape (n,) float64."""
        return (self.density_g_cm3 * AVOGADRO * np.asarray(self.mass_fractions)
                / np.asarray(self.atomic_weights))

    def as_dict(self) -> dict:
        """JSON-friendly description (name, formula, density, mass fractions)."""
        return {"name": self.name, "formula": self.formula,
                "density_g_cm3": float(self.density_g_cm3),
                "mass_fractions": {s: float(w) for s, w in zip(self.symbols, self.mass_fractions)}}


def material_from_mass_fractions(mass_fractions: dict, density_g_cm3: float, name=None,
                                 formula="") -> Material:
    """Build a :class:`Material` from element mass fractions.

    Parameters
    ----------
    mass_fractions : dict of str to float
        Element symbol -> mass fraction. Fractions that sum to 1 within 1 %
        are renormalised to sum exactly to 1.
    density_g_cm3 : float
        Density, g/cm3, > 0.
    name : str, optional
        Defaults to the symbols joined.

    Returns
    -------
    Material

    Raises
    ------
    InputError
        On an unknown element, a negative fraction, fractions not summing to 1
        (within 1 %), or a non-positive density.
    """
    if not mass_fractions:
        raise InputError(f"material {name!r}: no elements given")
    for s, w in mass_fractions.items():
        if s not in ELEMENTS:
            raise InputError(f"material {name!r}: unknown element {s!r}")
        if not np.isfinite(w) or w < 0:
            raise InputError(f"material {name!r}: mass fraction of {s} is {w}; expected >= 0")
    total = float(sum(mass_fractions.values()))
    if abs(total - 1.0) > 0.01:
        raise InputError(f"material {name!r}: mass fractions sum to {total:.4f}; expected 1")
    if not (np.isfinite(density_g_cm3) and density_g_cm3 > 0):
        raise InputError(f"material {name!r}: density {density_g_cm3} g/cm3; expected > 0")
    items = [(s, w / total) for s, w in mass_fractions.items() if w > 0]
    symbols = tuple(s for s, _ in items)
    return Material(
        name=name or "".join(symbols), symbols=symbols,
        Z=tuple(int(ELEMENTS[s][0]) for s in symbols),
        atomic_weights=tuple(float(ELEMENTS[s][1]) for s in symbols),
        mass_fractions=tuple(float(w) for _, w in items),
        density_g_cm3=float(density_g_cm3), formula=formula)


def material_from_formula(formula: str, density_g_cm3: float, name=None) -> Material:
    """Build a :class:`Material` from a chemical formula (see :func:`parse_formula`).

    Mass fraction of element i: :math:`w_i = n_i A_i / \\sum_j n_j A_j`.

    Raises
    ------
    InputError
        On a bad formula or a non-positive density.
    """
    atoms = parse_formula(formula)
    mass = {s: n * ELEMENTS[s][1] for s, n in atoms.items()}
    total = sum(mass.values())
    return material_from_mass_fractions({s: m / total for s, m in mass.items()},
                                        density_g_cm3, name=name or formula, formula=formula)


def element(symbol: str, density_g_cm3=None) -> Material:
    """A pure element; the density defaults to the built-in table (CRC Handbook).

    Raises
    ------
    InputError
        On an unknown symbol, or a gaseous element without ``density_g_cm3``.
    """
    if symbol not in ELEMENTS:
        raise InputError(f"element {symbol!r}: unknown symbol (supported: Z = 1..83)")
    rho = ELEMENTS[symbol][2] if density_g_cm3 is None else density_g_cm3
    if not np.isfinite(rho):
        raise InputError(f"element {symbol!r}: no solid density in the table; "
                         f"pass density_g_cm3")
    return material_from_mass_fractions({symbol: 1.0}, rho, name=symbol, formula=symbol)


def mix_by_volume(a: Material, b: Material, volume_fraction_b: float, name=None) -> Material:
    """Homogeneous mixture of two materials by volume.

    Density :math:`\\rho = (1-f)\\rho_a + f\\rho_b`; mass fraction of ``b``
    :math:`m_b = f\\rho_b/\\rho`; element mass fractions
    :math:`w = (1-m_b) w^a + m_b w^b`.

    Parameters
    ----------
    a, b : Material
    volume_fraction_b : float
        Volume fraction of ``b`` in [0, 1] (e.g. the pore volume fraction
        filled by ``b``).
    name : str, optional

    Returns
    -------
    Material

    Raises
    ------
    InputError
        If ``volume_fraction_b`` is outside [0, 1].
    """
    f = float(volume_fraction_b)
    if not (0.0 <= f <= 1.0):
        raise InputError(f"mix_by_volume({a.name}, {b.name}): volume fraction {f}; "
                         f"expected a value in [0, 1]")
    rho = (1.0 - f) * a.density_g_cm3 + f * b.density_g_cm3
    mb = f * b.density_g_cm3 / rho
    w: dict[str, float] = {}
    for mat, scale in ((a, 1.0 - mb), (b, mb)):
        for s, x in zip(mat.symbols, mat.mass_fractions):
            w[s] = w.get(s, 0.0) + scale * x
    label = name or f"{a.name}+{f:g}{b.name}"
    return material_from_mass_fractions(
        w, rho, name=label, formula=f"{1 - f:g} vol {a.formula or a.name} + {f:g} vol {b.formula or b.name}")


def castaing_eta(material: Material, element_eta: dict) -> float:
    """Castaing's rule: mass-fraction average of the elements' eta.

    :math:`\\eta = \\sum_i w_i \\eta_i` (Castaing 1951, thesis, Univ. Paris;
    see Goldstein et al., *Scanning Electron Microscopy and X-ray
    Microanalysis*).

    Parameters
    ----------
    material : Material
    element_eta : dict of str to float
        eta of each element of ``material``.

    Raises
    ------
    InputError
        If an element of ``material`` is missing from ``element_eta``.
    """
    missing = [s for s in material.symbols if s not in element_eta]
    if missing:
        raise InputError(f"castaing_eta({material.name}): no eta given for {missing}")
    return float(sum(w * float(element_eta[s]) for s, w in zip(material.symbols, material.mass_fractions)))


#: C-S-H with its gel water, (CaO)1.7(SiO2)(H2O)4 at 2.12 g/cm3 (saturated
#: C-S-H as in the Jennings colloid model; Tennis & Jennings 2000, Cem. Concr.
#: Res. 30:855) -- the solid of the eta(n) calibration.
CSH = material_from_formula("(CaO)1.7(SiO2)(H2O)4", 2.12, name="C-S-H")


#: Field's metal, the low-melting alloy intruded into the pores: Bi 32.5,
#: In 51, Sn 16.5 wt%, 7.88 g/cm3 (manufacturer data; eutectic, mp 62 C).
FIELDS_METAL = material_from_mass_fractions({"Bi": 0.325, "In": 0.51, "Sn": 0.165}, 7.88,
                                            name="Field's metal", formula="Bi32.5In51Sn16.5 (wt%)")


#: Embedding epoxy: DGEBA (C21H24O4) cured with diethylenetriamine (C4H13N3)
#: at the stoichiometric ratio of 5 DGEBA (10 epoxide groups) to 2 DETA
#: (10 amine hydrogens); 1.15 g/cm3, typical of cured low-viscosity
#: embedding resins.
EPOXY = material_from_formula("(C21H24O4)5(C4H13N3)2", 1.15, name="epoxy")


#: Solid C-S-H without gel water: (CaO)1.7(SiO2)(H2O)1.8 at 2.604 g/cm3
#: (Allen, Thomas & Jennings 2007, Nature Materials 6:311, SANS/SAXS).
CSH_SOLID = material_from_formula("(CaO)1.7(SiO2)(H2O)1.8", 2.604, name="C-S-H solid")


#: Packing densities of the C-S-H gel: LD 0.64 (random close packing) and
#: HD 0.74 (ordered) (Constantinides & Ulm 2007, J. Mech. Phys. Solids 55:64;
#: Jennings 2000, Cem. Concr. Res. 30:101).
PACKING_LD, PACKING_HD = 0.64, 0.74


#: The five cement-paste phases as BSE targets, keyed by the phase names of
#: :data:`microprop.phases.PHASES` (label ids 0..4).
DEFAULT_PHASES = {
    # pore: an impregnated pore is epoxy (see EPOXY)
    "pore": EPOXY,
    # LD-C-S-H: solid C-S-H (Allen et al. 2007) with its gel pores (1 - 0.64)
    # filled with epoxy (Constantinides & Ulm 2007 packing density)
    "LD-C-S-H": mix_by_volume(CSH_SOLID, EPOXY, 1.0 - PACKING_LD, name="LD-C-S-H"),
    # HD-C-S-H: same with packing density 0.74
    "HD-C-S-H": mix_by_volume(CSH_SOLID, EPOXY, 1.0 - PACKING_HD, name="HD-C-S-H"),
    # CH: portlandite Ca(OH)2, 2.24 g/cm3 (CRC Handbook; Taylor, Cement Chemistry)
    "CH": material_from_formula("Ca(OH)2", 2.24, name="CH"),
    # ACC: anhydrous clinker represented by alite C3S, Ca3SiO5, 3.15 g/cm3
    # (Taylor, Cement Chemistry, 2nd ed. 1997)
    "ACC": material_from_formula("Ca3SiO5", 3.15, name="ACC"),
}
