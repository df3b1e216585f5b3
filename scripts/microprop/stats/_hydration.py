"""Degree of hydration and C-S-H ratio from the deconvolved phase fractions.

:func:`hydration` -- degree of hydration alpha from the volume fractions of
hydration products and clinker, and the LD-C-S-H ratio Mr, by eqs. 9 and 10
of the seed paper (Li et al., the ResNet nanoindentation study in
``../shared/references/resnet_cement_nanoindentation.txt``, following
Jennings' two-type C-S-H model); :func:`hydration_by_area` and
:func:`hydration_or_note` apply it per area of a deconvolution and say why
when it cannot be computed. Hydration applies to the ``cement`` phase set
only (:mod:`microprop.phases`).
"""
from __future__ import annotations

import logging

from ..errors import InputError
from ._mixture import mixture_fractions

log = logging.getLogger(__name__)

#: Volume ratio V of reaction products to reactant in eq. 9 of the seed paper
#: (2.2, the value it takes from its ref. [59]).
PRODUCT_TO_REACTANT_VOLUME = 2.2

#: The phases counted as hydration products (V_h of eq. 9): the seed paper
#: counts LD-C-S-H, HD-C-S-H and CH; the clinker ACC is V_a.
HYDRATION_PRODUCTS = ("LD-C-S-H", "HD-C-S-H", "CH")


#: The equations of :func:`hydration`, as reported with its results.
HYDRATION_EQUATIONS = {
    "alpha": "(V_h / V) / (V_h / V + V_a), V = 2.2 (seed paper eq. 9; V_h = f_LD + f_HD + f_CH, V_a = f_ACC)",
    "Mr_model": "3.017 (w/c) alpha - 1.347 alpha + 0.538 (seed paper eq. 10, after Tennis & Jennings 2000)",
    "Mr_measured": "f_LD / (f_LD + f_HD) (GMM volume fractions)",
}


def hydration(fractions, w_c, product_to_reactant_volume=PRODUCT_TO_REACTANT_VOLUME):
    """Degree of hydration and LD-C-S-H ratio from phase volume fractions (seed paper eqs. 9-10).

    Eq. 9: the hydration products occupy ``V_h`` and the remaining clinker
    ``V_a`` of the indented solid; a volume ``V_h`` of products came from
    ``V_h / V`` of reactant, ``V`` the volume ratio of reaction products to
    reactant (2.2), so the hydrated share of the original clinker is::

        alpha = (V_h / V) / (V_h / V + V_a)

    Eq. 10 (Jennings' two-type C-S-H model; Tennis & Jennings 2000, Cem.
    Concr. Res. 30, 855-863), the LD-C-S-H share of the C-S-H for a paste
    of water/cement mass ratio ``w/c``::

        Mr = 3.017 (w/c) alpha - 1.347 alpha + 0.538

    Beside it the measured ratio ``f_LD / (f_LD + f_HD)`` of the given
    fractions is reported (``Mr_measured``), a volume ratio, comparable to Mr
    when LD- and HD-C-S-H have similar densities. Known answer (the paper's
    40,000 indents): ``V_h = 0.90``, ``V_a = 0.10``, ``w/c = 0.4`` give
    alpha 0.8036 and Mr 0.4253.

    Parameters
    ----------
    fractions : dict
        Phase name -> volume fraction (0..1) of the indented solid, e.g. the
        GMM fractions; must contain ``ACC`` and at least one of
        :data:`HYDRATION_PRODUCTS`. Pores, which give no indentation result,
        are not counted.
    w_c : float
        Water/cement mass ratio (> 0).
    product_to_reactant_volume : float
        ``V`` of eq. 9 (> 0).

    Returns
    -------
    dict
        ``alpha``, ``Mr_model``, ``Mr_measured`` (or None), ``w_c``,
        ``V_h``, ``V_a``, ``V``, ``f_ACC``, ``f_LD``, ``f_HD``, ``notes``,
        ``equations``.

    Raises
    ------
    InputError
        If ``w_c <= 0``, ``ACC`` or every hydration product is missing, or a
        fraction is outside [0, 1].
    """
    w_c = float(w_c)
    v_ratio = float(product_to_reactant_volume)
    _check_hydration_input(fractions, w_c, v_ratio)
    v_a = float(fractions["ACC"])
    v_h = float(sum(float(fractions[p]) for p in HYDRATION_PRODUCTS if p in fractions))
    den = v_h / v_ratio + v_a
    alpha = (v_h / v_ratio) / den if den > 0 else float("nan")
    notes = _hydration_notes(w_c, [p for p in HYDRATION_PRODUCTS if p not in fractions])
    mr_model = 3.017 * w_c * alpha - 1.347 * alpha + 0.538
    f_ld = fractions.get("LD-C-S-H")
    f_hd = fractions.get("HD-C-S-H")
    mr_meas = None
    if f_ld is not None and f_hd is not None and float(f_ld) + float(f_hd) > 0:
        mr_meas = float(f_ld) / (float(f_ld) + float(f_hd))
    return {
        "alpha": alpha, "Mr_model": mr_model, "Mr_measured": mr_meas,
        "w_c": w_c, "V_h": v_h, "V_a": v_a, "V": v_ratio, "f_ACC": v_a,
        "f_LD": None if f_ld is None else float(f_ld),
        "f_HD": None if f_hd is None else float(f_hd),
        "notes": notes, "equations": dict(HYDRATION_EQUATIONS),
    }


def _check_hydration_input(fractions, w_c, v_ratio):
    """Raise unless ``w_c > 0``, ``V > 0``, ``ACC`` and a product are given and every fraction is in [0, 1]."""
    if not w_c > 0:
        raise InputError(f"hydration: w/c must be > 0, got {w_c}")
    if not v_ratio > 0:
        raise InputError(f"hydration: the product/reactant volume ratio must be > 0, got {v_ratio}")
    if "ACC" not in fractions:
        raise InputError(f"hydration: phase fractions lack 'ACC' (clinker); found {sorted(fractions)}")
    if not any(p in fractions for p in HYDRATION_PRODUCTS):
        raise InputError(f"hydration: phase fractions lack every hydration product {list(HYDRATION_PRODUCTS)}; "
                         f"found {sorted(fractions)}")
    for phase, f in fractions.items():
        if not (0.0 <= float(f) <= 1.0):
            raise InputError(f"hydration: fraction of {phase!r} is {f}; expected 0..1")


def _hydration_notes(w_c, missing_products):
    """Notes on missing hydration products and on a w/c outside the Tennis-Jennings range."""
    notes = []
    if missing_products:
        notes.append(f"no component named {missing_products}: V_h counts the other products only")
    if not 0.35 <= w_c <= 0.6:
        notes.append(f"w/c={w_c} outside the 0.35-0.6 range of the Tennis-Jennings fit (eq. 10)")
    return notes


def hydration_or_note(fractions, w_c):
    """:func:`hydration`, or, when it cannot be computed, None values and the reason.

    Parameters
    ----------
    fractions : dict
        Phase name -> volume fraction, as :func:`hydration`.
    w_c : float
        Water/cement mass ratio.

    Returns
    -------
    dict
        :func:`hydration`'s result; if it raises an :class:`InputError` (no
        ``ACC`` component, say), ``{"alpha": None, "Mr_model": None,
        "Mr_measured": None, "notes": [message]}`` with a warning logged.
    """
    try:
        return hydration(fractions, w_c)
    except InputError as exc:
        log.warning("no degree of hydration: %s", exc)
        return {"alpha": None, "Mr_model": None, "Mr_measured": None, "notes": [str(exc)]}


def hydration_by_area(table_E, table_H, w_c):
    """Degree of hydration from the mixture fractions of E, of H and of each area.

    Parameters
    ----------
    table_E, table_H : pandas.DataFrame
        :func:`microprop.stats.gmm_tables` of ``E_GPa`` and ``H_GPa`` (a
        ``"pooled"`` block and one per area).
    w_c : float
        Water/cement mass ratio.

    Returns
    -------
    dict
        :func:`hydration_or_note` of the pooled E fractions, plus
        ``from_H_GPa`` (the same from the pooled H fractions), ``per_area``
        (area -> the same from that area's E fractions) and ``fractions_E``
        (the pooled E fractions, phase -> fraction).
    """
    hyd = hydration_or_note(mixture_fractions(table_E), w_c)
    hyd["from_H_GPa"] = hydration_or_note(mixture_fractions(table_H), w_c)
    hyd["per_area"] = {a: hydration_or_note(mixture_fractions(table_E, a), w_c)
                       for a in table_E["area"].unique() if a != "pooled"}
    hyd["fractions_E"] = mixture_fractions(table_E)
    return hyd
