"""Phase names, label ids and literature properties: the bottom layer every module may use.

A label map holds phase ids ``0..4`` in the order of :data:`PHASES`
(``pore``, ``LD-C-S-H``, ``HD-C-S-H``, ``CH``, ``ACC`` = anhydrous cement
clinker); :data:`PHASE_PROPERTIES` holds the literature distributions of
their indentation modulus and hardness (Constantinides & Ulm 2004, 2007;
Velez et al. 2001), which the forward model draws from and the mixture
deconvolution names its components by. The backscatter composition of each
phase is physics and lives in :mod:`microprop.physics` (``DEFAULT_PHASES``).

This module imports no other microprop module but :mod:`microprop.errors`.
"""
from __future__ import annotations

import pandas as pd

from .errors import InputError

#: Phase names; the index is the label id in label maps.
PHASES = ("pore", "LD-C-S-H", "HD-C-S-H", "CH", "ACC")
PHASE_IDS = {name: i for i, name in enumerate(PHASES)}
PORE, LD, HD, CH, ACC = range(5)


#: Default area fractions of the demo specimen (w/c ~ 0.45, a few weeks old).
DEFAULT_FRACTIONS = {"pore": 0.05, "LD-C-S-H": 0.38, "HD-C-S-H": 0.25, "CH": 0.15, "ACC": 0.17}


SOLID_PHASES = ("LD-C-S-H", "HD-C-S-H", "CH", "ACC")


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


#: Literature phase means of the indentation modulus, GPa (Constantinides &
#: Ulm 2004, Cem. Concr. Res. 34: LD-C-S-H 21.7, HD-C-S-H 29.4; Ulm et al.
#: 2007 / Vandamme 2008: LD 26.5, HD 34.8 (grid indentation of cement paste);
#: CH ~ 38-52 (Constantinides & Ulm 2004; Wittmann); clinker ~ 120-130
#: (Velez et al. 2001, Cem. Concr. Res. 31)). These are the reference values of
#: the issue; the phase naming depends only on their order and ratios.
E_PHASE_MEANS_GPA = {"LD-C-S-H": 26.5, "HD-C-S-H": 34.8, "CH": 52.0, "ACC": 122.0}


#: Fallback literature hardness means, GPa (Constantinides & Ulm 2007,
#: J. Mech. Phys. Solids 55: LD 0.8-0.9, HD 1.2; CH ~1.8; clinker ~8 (Velez
#: et al. 2001)), used when :mod:`microprop.phases` does not provide
#: ``PHASE_PROPERTIES``.
H_PHASE_MEANS_GPA = {"LD-C-S-H": 0.9, "HD-C-S-H": 1.2, "CH": 1.8, "ACC": 8.0}


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


# ----------------------------------------------------------------- phase sets

_PROPERTY_COLUMNS = ("E_mean_GPa", "E_std_GPa", "H_mean_GPa", "H_std_GPa")


class PhaseSet:
    """The phases of a study: names, which ones indentation resolves, their priors, hydration.

    Parameters
    ----------
    name : str
        Preset or study name (``"cement"``, ``"metal_ceramic"``, ...).
    properties : pandas.DataFrame
        Indexed by phase name, in label-id order; columns ``E_mean_GPa,
        E_std_GPa, H_mean_GPa, H_std_GPa`` (GPa, the literature priors the
        forward model draws from and the mixture deconvolution names its
        components by) and ``source``.
    solid : sequence of str
        The phases an indent can measure: the components of the mixture
        deconvolution (pores, which give no result, are not).
    hydration : {"cement", None}
        ``cement``: the degree of hydration and Mr of the seed paper's eqs.
        9-10 apply (:func:`microprop.stats.hydration`); None: no hydration
        output at all.

    Raises
    ------
    InputError
        On duplicate phase names, a solid phase not in the table, missing or
        non-positive means, negative standard deviations, or an unknown
        hydration model.
    """

    def __init__(self, name, properties, solid, hydration=None):
        props = pd.DataFrame(properties).copy()
        where = f"phase set {name!r}"
        if props.index.has_duplicates:
            raise InputError(f"{where}: duplicate phase names {list(props.index[props.index.duplicated()])}")
        missing = [c for c in _PROPERTY_COLUMNS if c not in props.columns]
        if missing:
            raise InputError(f"{where}: the phases lack {missing} (GPa)")
        for c in _PROPERTY_COLUMNS:
            vals = pd.to_numeric(props[c], errors="coerce")
            bad = vals.isna() | (vals <= 0 if c.endswith("mean_GPa") else vals < 0)
            if bad.any():
                raise InputError(f"{where}: {c} of {list(props.index[bad])} is {list(props[c][bad])}; "
                                 f"expected a {'positive' if c.endswith('mean_GPa') else 'non-negative'} "
                                 f"number in GPa")
            props[c] = vals.astype(float)
        if "source" not in props.columns:
            props["source"] = "given in the study's config"
        solid = tuple(solid)
        unknown = [p for p in solid if p not in props.index]
        if unknown or not solid:
            raise InputError(f"{where}: solid phases {unknown or '[]'} are not among its phases "
                             f"{list(props.index)}")
        if hydration not in (None, "cement"):
            raise InputError(f"{where}: hydration {hydration!r}: expected 'cement' or none")
        if hydration == "cement" and not {"ACC", "LD-C-S-H"} <= set(solid):
            raise InputError(f"{where}: cement hydration needs the solid phases ACC and LD-C-S-H, "
                             f"got {list(solid)}")
        self.name = str(name)
        self.properties = props
        self.phases = tuple(props.index)
        self.solid = solid
        self.hydration = hydration

    def means(self, quantity="E_GPa"):
        """Solid phase -> literature mean of ``E_GPa`` or ``H_GPa`` (GPa), in the set's order."""
        col = {"E_GPa": "E_mean_GPa", "H_GPa": "H_mean_GPa"}.get(quantity)
        if col is None:
            raise InputError(f"quantity {quantity!r}: expected 'E_GPa' or 'H_GPa'")
        return {p: float(self.properties.loc[p, col]) for p in self.solid}

    def to_dict(self):
        """A JSON-ready description (name, phases with their priors, solid, hydration)."""
        return {"name": self.name, "solid": list(self.solid), "hydration": self.hydration,
                "phases": [{"name": p, **{c: float(self.properties.loc[p, c]) for c in _PROPERTY_COLUMNS},
                            "source": str(self.properties.loc[p, "source"])} for p in self.phases]}

    def __repr__(self):
        return f"PhaseSet({self.name!r}, phases={list(self.phases)}, solid={list(self.solid)}, " \
               f"hydration={self.hydration!r})"


_METAL_CERAMIC = pd.DataFrame(
    {
        "E_mean_GPa": [5.0, 200.0, 380.0],
        "E_std_GPa": [2.0, 20.0, 35.0],
        "H_mean_GPa": [0.2, 2.5, 20.0],
        "H_std_GPa": [0.1, 0.5, 3.0],
        "source": [
            "ASSUMPTION: epoxy-filled pore, soft (no literature value used)",
            "ASSUMPTION: typical values for polycrystalline nickel (Young's modulus ~200 GPa; "
            "nanoindentation hardness of annealed Ni a few GPa); replace by your own priors",
            "ASSUMPTION: typical values for dense polycrystalline alumina (E ~350-400 GPa, "
            "H ~18-22 GPa); replace by your own priors",
        ],
    },
    index=pd.Index(["pore", "Ni", "Al2O3"], name="phase"),
)

#: Built-in phase sets. ``cement`` (the default): :data:`PHASES` with
#: :data:`PHASE_PROPERTIES` and the seed paper's hydration. ``metal_ceramic``:
#: a two-phase Ni-alumina composite (with pores), no hydration; its priors are
#: marked as assumptions in ``source``.
PHASE_SET_PRESETS = {
    "cement": dict(properties=PHASE_PROPERTIES, solid=SOLID_PHASES, hydration="cement"),
    "metal_ceramic": dict(properties=_METAL_CERAMIC, solid=("Ni", "Al2O3"), hydration=None),
}


def phase_set(spec=None, where="phases"):
    """The phase set a study configures: a preset name, or its own phases.

    Parameters
    ----------
    spec : None, str or dict
        None or ``"cement"``: the default cement set. Another preset name of
        :data:`PHASE_SET_PRESETS`. Or a mapping ``{"name": str, "phases":
        [{"name", "E_mean_GPa", "E_std_GPa", "H_mean_GPa", "H_std_GPa",
        "solid": bool (default True), "source": str}, ...], "hydration":
        "cement" | "none" | None}``, or ``{"preset": name}``.
    where : str
        The config key, for messages.

    Returns
    -------
    PhaseSet

    Raises
    ------
    InputError
        For an unknown preset or a malformed phase list (the message names
        ``where``).
    """
    if spec is None:
        spec = "cement"
    if isinstance(spec, dict) and "preset" in spec and "phases" not in spec:
        spec = spec["preset"]
    if isinstance(spec, str):
        if spec not in PHASE_SET_PRESETS:
            raise InputError(f"{where}: unknown phase set {spec!r}; expected one of "
                             f"{sorted(PHASE_SET_PRESETS)} or a list of phases")
        return PhaseSet(spec, **PHASE_SET_PRESETS[spec])
    if not isinstance(spec, dict) or not isinstance(spec.get("phases"), list) or not spec["phases"]:
        raise InputError(f"{where}: expected a preset name or a mapping with a non-empty list 'phases'")
    rows, solid = [], []
    for k, ph in enumerate(spec["phases"]):
        if not isinstance(ph, dict) or "name" not in ph:
            raise InputError(f"{where}.phases[{k}]: expected a mapping with a 'name'")
        rows.append({"phase": str(ph["name"]), **{c: ph.get(c) for c in _PROPERTY_COLUMNS},
                     "source": ph.get("source", "given in the study's config")})
        if ph.get("solid", True):
            solid.append(str(ph["name"]))
    hyd = spec.get("hydration")
    return PhaseSet(spec.get("name", "custom"), pd.DataFrame(rows).set_index("phase"), solid,
                    None if hyd in (None, "none") else hyd)
