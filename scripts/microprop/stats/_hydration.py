"""Degree of hydration and C-S-H ratio from the deconvolved phase fractions.

:func:`hydration` -- degree of hydration from the clinker volume fraction
(Powers' model) and the LD/(LD+HD) C-S-H ratio Mr (Tennis & Jennings 2000,
Cem. Concr. Res. 30), which stand in for the seed paper's eqs. 9-10;
:func:`hydration_by_area` and :func:`hydration_or_note` apply it per area
of a deconvolution and say why when it cannot be computed.
"""
from __future__ import annotations

import logging

import numpy as np

from ..errors import InputError
from ._mixture import mixture_fractions

log = logging.getLogger(__name__)

#: Specific volume ratio rho_w / rho_c of Powers' model: water 1.0 g/cm^3,
#: Portland cement 3.15 g/cm^3, so 1/3.15 = 0.317 ~ 0.32.
POWERS_CEMENT_VOLUME = 0.32


#: The equations of :func:`hydration`, as reported with its results.
HYDRATION_EQUATIONS = {
    "alpha": "1 - f_ACC (w/c + 0.32)/0.32 (Powers & Brownyard 1947; Hansen 1986)",
    "Mr_model": "3.017 (w/c) alpha - 1.347 alpha + 0.538 (Tennis & Jennings 2000)",
    "Mr_measured": "f_LD / (f_LD + f_HD) (GMM volume fractions)",
}


def hydration(fractions, w_c, clip=True):
    """Degree of hydration and LD/(LD+HD) ratio from phase volume fractions.

    These standard forms stand in for the seed paper's eqs. 9-10.

    Degree of hydration (Powers & Brownyard 1947; Hansen 1986, Cem. Concr.
    Res. 16): a paste of water/cement mass ratio ``w/c`` initially holds the
    cement volume fraction ``p_c = 0.32 / (w/c + 0.32)`` (``0.32 ~ 1/3.15``,
    cement specific gravity 3.15, water 1.0). Assuming the paste volume
    stays constant (no chemical shrinkage voids counted apart; sealed
    curing), a degree of hydration ``alpha`` leaves
    ``f_ACC = (1 - alpha) p_c`` of unhydrated clinker, so::

        alpha = 1 - f_ACC (w/c + 0.32) / 0.32

    The C-S-H mass ratio of Tennis & Jennings (2000, Cem. Concr. Res. 30,
    855-863, eq. for M_r of LD-C-S-H to total C-S-H), fitted for
    Portland cement pastes with 0.35 <= w/c <= 0.6 over the measured range of
    alpha::

        Mr = 3.017 (w/c) alpha - 1.347 alpha + 0.538

    Beside it the measured ratio ``f_LD / (f_LD + f_HD)`` of the given
    fractions is reported (``Mr_measured``); it is a volume (number) ratio and
    equals the mass ratio only if LD- and HD-C-S-H have equal density, and it
    is comparable to Mr only when the C-S-H phases are resolved as two
    components.

    Parameters
    ----------
    fractions : dict
        Phase name -> volume fraction (0..1) in the paste, e.g. the GMM
        fractions; must contain ``ACC``. ``LD-C-S-H`` and ``HD-C-S-H`` are
        needed for ``Mr_measured``. The GMM fractions are fractions of the
        indented solid; pores that gave no indentation result are not counted.
    w_c : float
        Water/cement mass ratio (> 0).
    clip : bool
        Clip alpha to [0, 1] (``alpha_raw`` keeps the unclipped value).

    Returns
    -------
    dict
        ``alpha``, ``alpha_raw``, ``Mr_model`` (Tennis-Jennings, from
        ``alpha`` and ``w_c``), ``Mr_measured`` (or None), ``w_c``,
        ``f_ACC``, ``f_LD``, ``f_HD``, ``cement_volume_fraction_initial``,
        ``notes``.

    Raises
    ------
    InputError
        If ``w_c <= 0``, ``ACC`` is missing, or a fraction is outside [0, 1].
    """
    w_c = float(w_c)
    _check_hydration_input(fractions, w_c)
    f_acc = float(fractions["ACC"])
    p_c = POWERS_CEMENT_VOLUME / (w_c + POWERS_CEMENT_VOLUME)
    alpha_raw = 1.0 - f_acc / p_c
    alpha = float(np.clip(alpha_raw, 0.0, 1.0)) if clip else alpha_raw
    notes = _hydration_notes(alpha, alpha_raw, f_acc, p_c, w_c)
    mr_model = 3.017 * w_c * alpha - 1.347 * alpha + 0.538
    f_ld = fractions.get("LD-C-S-H")
    f_hd = fractions.get("HD-C-S-H")
    mr_meas = None
    if f_ld is not None and f_hd is not None and float(f_ld) + float(f_hd) > 0:
        mr_meas = float(f_ld) / (float(f_ld) + float(f_hd))
    return {
        "alpha": alpha, "alpha_raw": alpha_raw, "Mr_model": mr_model, "Mr_measured": mr_meas,
        "w_c": w_c, "f_ACC": f_acc,
        "f_LD": None if f_ld is None else float(f_ld),
        "f_HD": None if f_hd is None else float(f_hd),
        "cement_volume_fraction_initial": p_c, "notes": notes,
        "equations": dict(HYDRATION_EQUATIONS),
    }


def _check_hydration_input(fractions, w_c):
    """Raise unless ``w_c > 0``, ``ACC`` is given and every fraction is in [0, 1]."""
    if not w_c > 0:
        raise InputError(f"hydration: w/c must be > 0, got {w_c}")
    if "ACC" not in fractions:
        raise InputError(f"hydration: phase fractions lack 'ACC' (clinker); found {sorted(fractions)}")
    for phase, f in fractions.items():
        if not (0.0 <= float(f) <= 1.0):
            raise InputError(f"hydration: fraction of {phase!r} is {f}; expected 0..1")


def _hydration_notes(alpha, alpha_raw, f_acc, p_c, w_c):
    """Notes on a clipped alpha and on a w/c outside the Tennis-Jennings range."""
    notes = []
    if alpha != alpha_raw:
        notes.append(f"alpha clipped from {alpha_raw:.3f}: f_ACC={f_acc:.3f} is outside "
                     f"0..{p_c:.3f} for w/c={w_c}")
        log.warning("hydration: %s", notes[-1])
    if not 0.35 <= w_c <= 0.6:
        notes.append(f"w/c={w_c} outside the 0.35-0.6 range of the Tennis-Jennings fit")
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
