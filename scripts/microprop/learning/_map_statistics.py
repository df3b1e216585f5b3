"""Phase statistics of a mapped area from predictive distributions (the seed's Table 1).

The seed paper's last check (its Sec. 5.4, Fig. 16-17 and Table 1) deconvolves
the ResNet map of an area that was never indented and sets the phase
statistics beside those of the indentation test. A map of the ensemble's
conditional means is narrower than a measured histogram: what the crop does
not explain (the indent-to-indent scatter of the phase properties, the
measurement noise, what the model has not learnt) is averaged out, so the
mixture components come out sharper and, where LD-C-S-H, HD-C-S-H and CH
overlap, shifted and renamed. The measurements are not conditional means but
draws: an indent at a window is one value from the distribution of what
could be measured there.

This module draws from each window's predictive distribution instead
(:func:`predictive_draws`), calibrated on held-out crops
(:func:`predictive_calibration`), and deconvolves the draws, jointly in E and
H where both are mapped (:func:`phase_statistics_table`); the mixture of
the windows' predictive distributions is what a grid of indents over the
area would measure, if the distributions are calibrated. On a virtual
specimen every row is set against the generator's truth
(:func:`true_area_fractions` for the mapped area; the indents' zone
fractions, :func:`microprop.virtual.generated_phases`, for the indentation)
and :func:`phase_statistics_summary` states the largest differences.

The predictive distribution of a window is built from held-out crops of
the evaluation (``val`` and ``test`` of the split whose models map,
:func:`predictive_calibration`); :func:`predictive_draws` offers three:

* ``"neighbours"`` (the default): the window's mean plus the error of a
  held-out crop whose predicted (E, H) is among the nearest to the window's:
  a local split-conformal predictive distribution. It keeps the
  multimodality a mean hides (a window predicted between LD- and HD-C-S-H
  is measured as one or the other) and the E-H dependence of the errors.
* ``"normal"``: a normal of sd ``q / z * max(s, floor)`` around the mean,
  with ``q`` and ``floor`` of the evaluation's split-conformal interval
  ``m +- q * max(s, floor)`` (:func:`microprop.learning.prediction_interval`),
  ``s`` the ensemble spread and ``z = Phi^-1((1 + level) / 2)`` (1.645 at
  90 %), so that its central ``level`` interval is the calibrated one; E and
  H correlated as the held-out normalised residuals are. Unimodal: on
  generated maps with windows between phases it blurs the phases further
  than the means do (``tests/test_map_statistics.py``).
* ``"residuals"``: ``m + r * max(s, floor)``, ``r`` the normalised residual
  of any held-out crop (global, the same crop for E and H).
"""
from __future__ import annotations

import logging
from math import sqrt

import numpy as np
import pandas as pd
from scipy.stats import norm

from ..errors import InputError
from ..phases import PHASES, SOLID_PHASES
from ..stats import deconvolve, deconvolve_joint

log = logging.getLogger(__name__)

#: Targets a map may have, in the order the joint fit takes them.
TARGETS = ("E_GPa", "H_GPa")

#: How :func:`predictive_draws` draws.
DRAW_METHODS = ("neighbours", "normal", "residuals")

#: Held-out splits of the evaluation whose crops calibrate the draws.
CALIBRATION_SPLITS = ("val", "test")

#: Columns of :func:`phase_statistics_table`.
TABLE1_COLUMNS = ("source", "values", "method", "component", "phase", "fraction", "E_mean",
                  "E_std", "H_mean", "H_std", "n", "truth", "fraction_truth",
                  "d_fraction_truth", "d_fraction_reference")

#: Tolerance of the fractions in :func:`phase_statistics_summary` (issue target, absolute).
FRACTION_TOLERANCE = 0.05


def predictive_calibration(predictions, intervals, splits=CALIBRATION_SPLITS):
    """Normalised residuals of held-out crops, paired across targets, and the interval scale.

    Parameters
    ----------
    predictions : dict
        Target (``"E_GPa"``, ``"H_GPa"``) -> table of the ``evaluate_model``
        rule's ``predictions.csv`` for the split scheme whose models map
        (columns ``index, split, y, mean, std``; GPa).
    intervals : dict
        Target -> the calibrated interval of that evaluation
        (``summary.json``'s ``interval.conformal``): ``q`` (conformal
        quantile of the normalised residuals), ``floor`` (GPa, the least
        spread) and ``level`` or ``z``.
    splits : sequence of str
        Splits whose crops give the residuals (default ``val`` and ``test``:
        both are held out from training; ``val`` alone is what ``q`` was
        calibrated on).

    Returns
    -------
    dict
        ``targets`` (list, the order of :data:`TARGETS`), ``residuals``
        (DataFrame indexed by crop ``index``, one column per target:
        ``(y - mean) / max(std, floor)``; for two targets only the crops both
        evaluations hold), ``q``, ``floor``, ``z`` (dicts per target),
        ``sd_factor`` (dict: ``q / z``, the normal's sd in units of
        ``max(spread, floor)``), ``correlation`` (Pearson correlation of the
        two targets' residuals on the paired crops; NaN for one target),
        ``n`` (crops), ``splits``.

    Raises
    ------
    InputError
        If no target is given, a target is not E_GPa/H_GPa, a table lacks a
        column, an interval lacks ``q`` or ``floor`` or has a non-finite or
        non-positive one, fewer than 10 held-out crops (paired, for two
        targets) remain.
    """
    targets = [t for t in TARGETS if t in predictions]
    unknown = sorted(set(predictions) - set(TARGETS))
    if unknown or not targets:
        raise InputError(f"predictive_calibration: targets must be among {list(TARGETS)}; "
                         f"got {sorted(predictions)}")
    splits = [str(s) for s in splits]
    cols, q, floor, z = {}, {}, {}, {}
    for t in targets:
        table = predictions[t]
        missing = [c for c in ("index", "split", "y", "mean", "std") if c not in table.columns]
        if missing:
            raise InputError(f"predictive_calibration: the {t} predictions lack column(s) "
                             f"{missing}; expected the evaluate_model rule's predictions.csv")
        info = intervals.get(t) or {}
        try:
            q[t], floor[t] = float(info["q"]), float(info["floor"])
        except (KeyError, TypeError, ValueError):
            raise InputError(f"predictive_calibration: the {t} interval lacks q or floor "
                             f"(summary.json's interval.conformal); got keys "
                             f"{sorted(info)}") from None
        if not (np.isfinite(q[t]) and q[t] > 0 and np.isfinite(floor[t]) and floor[t] > 0):
            raise InputError(f"predictive_calibration: the {t} interval has q = {q[t]} and "
                             f"floor = {floor[t]} GPa; both must be finite and > 0 (too few "
                             "calibration crops give q = inf)")
        z[t] = (float(info["z"]) if info.get("z")
                else float(norm.ppf(0.5 * (1.0 + float(info.get("level", 0.9))))))
        held = table[table["split"].astype(str).isin(splits)]
        idx = held["index"].to_numpy(np.int64)
        err = held["y"].to_numpy(float) - held["mean"].to_numpy(float)
        r = err / np.maximum(held["std"].to_numpy(float), floor[t])
        cols[t] = pd.Series(r, index=idx, name=t)
        cols[f"mean {t}"] = pd.Series(held["mean"].to_numpy(float), index=idx, name=f"mean {t}")
        cols[f"error {t}"] = pd.Series(err, index=idx, name=f"error {t}")
    paired = pd.concat(list(cols.values()), axis=1, join="inner").dropna()
    residuals = paired[targets]
    if len(residuals) < 10:
        raise InputError(f"predictive_calibration: {len(residuals)} held-out crop(s) of the "
                         f"splits {splits} with residuals of {targets}; at least 10 are needed")
    corr = (float(np.corrcoef(residuals[targets[0]], residuals[targets[1]])[0, 1])
            if len(targets) == 2 else float("nan"))
    out = {"targets": targets, "residuals": residuals,
           "means": paired[[f"mean {t}" for t in targets]].set_axis(targets, axis=1),
           "errors": paired[[f"error {t}" for t in targets]].set_axis(targets, axis=1),
           "q": q, "floor": floor, "z": z,
           "sd_factor": {t: q[t] / z[t] for t in targets}, "correlation": corr,
           "n": int(len(residuals)), "splits": splits}
    log.info("predictive calibration on %d held-out crops (%s): %s; residual correlation "
             "E-H %.3f", len(residuals), "+".join(splits),
             ", ".join(f"{t} q {q[t]:.3g} floor {floor[t]:.3g} GPa" for t in targets), corr)
    return out


def _neighbour_picks(window_means, calibration, n_neighbours, n_draws, rng):
    """Per window and draw, a calibration crop among the window's nearest in predicted values."""
    from scipy.spatial import cKDTree

    targets = list(calibration["targets"])
    cal = calibration["means"][targets].to_numpy(float)
    scale = cal.std(axis=0)
    scale[~(scale > 0)] = 1.0
    kk = max(1, min(int(n_neighbours), len(cal)))
    x = np.column_stack([window_means[t] for t in targets]) / scale
    _, nearest = cKDTree(cal / scale).query(x, k=kk)
    nearest = np.asarray(nearest).reshape(len(x), kk)
    col = rng.integers(0, kk, (len(x), int(n_draws)))
    return nearest[np.arange(len(x))[:, None], col].ravel()


def default_neighbours(n_crops):
    """Held-out crops per window of ``"neighbours"`` draws: ``ceil(4 sqrt(n))``, at most ``n``.

    A nearest-neighbour estimate of a conditional distribution needs ``k``
    growing with the sample but ``k / n`` shrinking; ``k ~ sqrt(n)``
    balances the two (Loftsgaarden & Quesenberry 1965, Ann. Math. Stat. 36,
    1049-1051). The factor 4 was chosen on generated maps (1200 held-out
    crops: fractions within 0.05 of the truth from k = 30 to 120, 0.06 at
    300) and on a boosting stand-in for the ResNet on the demo's A4 (240
    held-out crops: k = 30 missed by 0.08-0.09, 45-60 stayed within
    0.03-0.056, 90-120 fell onto the mixture's other optimum, LD-C-S-H
    near 0.6), so the demo's figure is not independent of this choice.

    Parameters
    ----------
    n_crops : int
        Held-out crops of the calibration (``>= 1``).

    Returns
    -------
    int
    """
    n = int(n_crops)
    return max(1, min(n, int(np.ceil(4.0 * np.sqrt(n)))))


def predictive_draws(means, spreads, calibration, n_draws=40, method="neighbours", seed=0,
                     n_neighbours=None):
    """Draws from every window's predictive distribution, jointly across targets.

    Parameters
    ----------
    means : dict
        Target -> map of the ensemble mean, GPa; any shape, the same for all
        targets (e.g. ``(ny, nx)`` grids of :func:`microprop.learning.predict_map`).
    spreads : dict or None
        Target -> map of the ensemble spread (members' sd, ddof 1), GPa, same
        shape; needed by ``"normal"`` and ``"residuals"``, not used by
        ``"neighbours"`` (None allowed there). Windows where any target's
        mean (or a given spread) is not finite are left out.
    calibration : dict
        From :func:`predictive_calibration`; its targets must be those of
        ``means``.
    n_draws : int
        Draws per window (``>= 1``).
    method : {"neighbours", "normal", "residuals"}
        ``"neighbours"`` (default): the window's mean plus the error ``y -
        mean`` of one of the ``n_neighbours`` held-out crops nearest to it in
        predicted values (E and H standardised by the crops' sd), the same
        crop for every target: a local split-conformal predictive
        distribution (Vovk et al. 2019, Machine Learning 108, 445-474; local
        conditioning as Lei & Wasserman 2014, J. R. Stat. Soc. B 76, 71-96).
        It keeps what the mean does not resolve -- a window predicted between
        LD- and HD-C-S-H is measured as one or the other -- and the E-H
        dependence of the errors; the mixture of the windows' distributions
        is the held-out crops' distribution of measurements reweighted to
        the map's distribution of predictions. ``"normal"``: a normal of sd
        ``q / z * max(spread, floor)`` (the calibrated interval as its central
        ``level`` interval), E and H with the held-out residual correlation;
        unimodal, so a window between two phases draws between them.
        ``"residuals"``: ``mean + r * max(spread, floor)`` with ``r`` the
        normalised residual of any held-out crop (global, not local).
    seed : int
        Seed of numpy's generator.
    n_neighbours : int, optional
        ``"neighbours"``: held-out crops each window draws from (capped at
        their number); default :func:`default_neighbours` of their number.

    Returns
    -------
    dict
        Target -> ``(n_windows * n_draws,)`` float64 draws, GPa; entry ``k``
        of every target belongs to the same window and draw (window
        ``k // n_draws`` of the finite windows in C order), so E and H pairs
        can be deconvolved jointly.

    Raises
    ------
    InputError
        On an unknown method, ``n_draws < 1`` or ``n_neighbours < 1``, targets
        that differ between ``means``, ``spreads`` and ``calibration``, maps of
        different shapes, a missing spread for ``"normal"``/``"residuals"``,
        a negative spread, or no window with finite values.
    """
    if method not in DRAW_METHODS:
        raise InputError(f"predictive_draws: method must be one of {list(DRAW_METHODS)}, "
                         f"got {method!r}")
    if n_neighbours is None:
        n_neighbours = default_neighbours(calibration["n"])
    for name, v in (("n_draws", n_draws), ("n_neighbours", n_neighbours)):
        if int(v) < 1 or int(v) != v:
            raise InputError(f"predictive_draws: {name} must be a positive integer, got {v}")
    targets = list(calibration["targets"])
    if spreads is None and method != "neighbours":
        raise InputError(f"predictive_draws: method {method!r} needs the spread maps")
    if sorted(means) != sorted(targets) or (spreads is not None
                                            and sorted(spreads) != sorted(targets)):
        raise InputError(f"predictive_draws: the maps are of {sorted(means)} (means) and "
                         f"{sorted(spreads or {})} (spreads), the calibration of "
                         f"{sorted(targets)}; they must be the same targets")
    m = {t: np.asarray(means[t], dtype=float) for t in targets}
    s = {t: np.asarray(spreads[t], dtype=float) for t in targets} if spreads is not None else {}
    shape = m[targets[0]].shape
    for t in targets:
        if m[t].shape != shape or (t in s and s[t].shape != shape):
            raise InputError(f"predictive_draws: the {t} maps ({m[t].shape}, spread "
                             f"{s[t].shape if t in s else None}) differ from {shape}; the "
                             "maps must share windows")
    ok = np.logical_and.reduce([np.isfinite(m[t]) & (np.isfinite(s[t]) if t in s else True)
                                for t in targets]).ravel()
    if not ok.any():
        raise InputError(f"predictive_draws: no window has finite values of {targets}")
    for t in s:
        if (s[t].ravel()[ok] < 0).any():
            raise InputError(f"predictive_draws: the {t} spread map has negative values")
    rng = np.random.default_rng(int(seed))
    n_w, k = int(ok.sum()), int(n_draws)
    centre = {t: np.repeat(m[t].ravel()[ok], k) for t in targets}
    if method == "neighbours":
        pick = _neighbour_picks({t: m[t].ravel()[ok] for t in targets}, calibration,
                                n_neighbours, k, rng)
        err = calibration["errors"]
        draws = {t: centre[t] + err[t].to_numpy(float)[pick] for t in targets}
        log.info("predictive draws (neighbours, k = %d): %d windows x %d draws of %s",
                 min(int(n_neighbours), len(err)), n_w, k, targets)
        return draws
    scale = {t: np.repeat(np.maximum(s[t].ravel()[ok], calibration["floor"][t]), k)
             for t in targets}
    if method == "normal":
        z = rng.standard_normal((n_w * k, len(targets)))
        if len(targets) == 2:
            rho = float(np.clip(calibration["correlation"], -0.999, 0.999))
            z[:, 1] = rho * z[:, 0] + sqrt(1.0 - rho * rho) * z[:, 1]
        r = {t: z[:, i] * calibration["sd_factor"][t] for i, t in enumerate(targets)}
    else:
        res = calibration["residuals"]
        pick = rng.integers(0, len(res), n_w * k)
        r = {t: res[t].to_numpy(float)[pick] for t in targets}
    draws = {t: centre[t] + r[t] * scale[t] for t in targets}
    log.info("predictive draws (%s): %d windows x %d draws of %s", method, n_w, k, targets)
    return draws


def true_area_fractions(labels, centres, offset_px=(0.0, 0.0), phases=SOLID_PHASES,
                        all_phases=PHASES):
    """The true phase fractions of the area a map's windows centre on (virtual specimens).

    A map value is the model's prediction for an indent at the window centre,
    whose interaction zone (a few contact depths, well under a micrometre) is
    nearly a point; so the truth of a map's phase fractions is the area
    fraction of each phase over the rectangle its window centres span, the
    map's counterpart of the mean zone fractions of indents
    (:func:`microprop.virtual.generated_phases`).

    Parameters
    ----------
    labels : array-like, shape (Hs, Ws), integer
        The generator's label map in the specimen frame (``phases.npy``; id
        ``i`` is ``all_phases[i]``), e.g. a memory map.
    centres : tuple of numpy.ndarray
        ``(cy, cx)`` of the map's windows in the mapped image's pixels
        (:func:`microprop.learning.window_centres`).
    offset_px : array-like, shape (2,)
        ``(gx, gy)`` with specimen px = image px + offset
        (:func:`microprop.virtual.mosaic_offset_px` for a stitched mosaic).
    phases : sequence of str
        Phases the mixture resolves; their fractions are renormalised to sum
        to 1 (the pores, a few per cent, are not a component).
    all_phases : sequence of str
        Phase of each label id.

    Returns
    -------
    dict
        Phase -> fraction (of ``phases``, summing to 1).

    Raises
    ------
    InputError
        If ``labels`` is not 2D, a phase is not in ``all_phases``, the
        rectangle misses the label map, or it holds none of ``phases``.
    """
    if len(getattr(labels, "shape", ())) != 2:
        raise InputError(f"true_area_fractions: labels must be a 2D label map, got shape "
                         f"{getattr(labels, 'shape', None)}")
    unknown = [p for p in phases if p not in all_phases]
    if unknown:
        raise InputError(f"true_area_fractions: phase(s) {unknown} not among the label "
                         f"map's {list(all_phases)}")
    cy, cx = (np.asarray(c, dtype=float) for c in centres)
    gx, gy = (float(v) for v in offset_px)
    h, w = labels.shape
    r0, r1 = int(round(cy.min() + gy)), int(round(cy.max() + gy)) + 1
    c0, c1 = int(round(cx.min() + gx)), int(round(cx.max() + gx)) + 1
    r0, c0, r1, c1 = max(r0, 0), max(c0, 0), min(r1, h), min(c1, w)
    if r1 <= r0 or c1 <= c0:
        raise InputError(f"true_area_fractions: the window centres (rows {cy.min():.0f}-"
                         f"{cy.max():.0f}, columns {cx.min():.0f}-{cx.max():.0f} + offset "
                         f"{gx:.1f}, {gy:.1f} px) miss the {h} x {w} px label map")
    counts = np.bincount(np.asarray(labels[r0:r1, c0:c1]).ravel(), minlength=len(all_phases))
    ids = [list(all_phases).index(p) for p in phases]
    solid = counts[ids].astype(float)
    if solid.sum() == 0:
        raise InputError(f"true_area_fractions: no pixel of {list(phases)} under the windows")
    return {p: float(v) for p, v in zip(phases, solid / solid.sum())}


def _pairs(source, max_values, rng):
    """Finite (E, H) of a source (either may be None), subsampled to ``max_values``."""
    e, h = (None if source.get(t) is None else np.asarray(source[t], dtype=float).ravel()
            for t in TARGETS)
    if e is None and h is None:
        raise InputError(f"phase_statistics_table: source {source.get('source')!r} has "
                         "neither E_GPa nor H_GPa values")
    if e is not None and h is not None and e.shape != h.shape:
        raise InputError(f"phase_statistics_table: {source['source']}: {e.size} E values "
                         f"but {h.size} H values; a joint fit needs pairs")
    ok = np.logical_and.reduce([np.isfinite(v) for v in (e, h) if v is not None])
    e, h = (None if v is None else v[ok] for v in (e, h))
    n = int(ok.sum())
    if max_values is not None and n > int(max_values):
        pick = np.sort(rng.choice(n, int(max_values), replace=False))
        e, h = (None if v is None else v[pick] for v in (e, h))
    return e, h


def _fit(e, h, joint, what, n_components, seed, n_init):
    """Mixture components of one source with E and H means and sds, and the method name."""
    if joint and e is not None and h is not None:
        t = deconvolve_joint(e, h, n_components=n_components, seed=seed, n_init=n_init,
                             what=what)
        return t[["component", "phase", "fraction", "E_mean", "E_std", "H_mean",
                  "H_std"]].copy(), "joint E-H", int(e.size)
    quantity, v = ("E_GPa", e) if e is not None else ("H_GPa", h)
    t = deconvolve(v, n_components=n_components, seed=seed, n_init=n_init, quantity=quantity,
                   what=what)
    q = quantity.split("_")[0]
    other = "H" if q == "E" else "E"
    out = t[["component", "phase", "fraction"]].copy()
    out[f"{q}_mean"], out[f"{q}_std"] = t["mean"].to_numpy(), t["std"].to_numpy()
    out[f"{other}_mean"], out[f"{other}_std"] = np.nan, np.nan
    return out, f"{quantity} only", int(v.size)


def phase_statistics_table(sources, truths=None, n_components=4, seed=0, n_init=10,
                           max_values=250000, reference=None):
    """Table 1: the phase statistics of every source, against the truth and a reference row.

    Each source is deconvolved into ``n_components`` Gaussian phases
    (grid-indentation deconvolution, Constantinides et al. 2006, Mater. Sci.
    Eng. A 430, 189-202; Ulm et al. 2007, J. Am. Ceram. Soc. 90, 2677-2692):
    jointly in (E, H) (:func:`microprop.stats.deconvolve_joint`) where a
    source has both, else the 1D mixture of the one it has
    (:func:`microprop.stats.deconvolve`). Components are named by the
    literature phase means, so rows of one phase compare across sources
    (the seed paper's Table 1: fraction, mean and sd per phase for the test,
    the ResNet map and the table-model map).

    Parameters
    ----------
    sources : sequence of dict
        In table order; each with ``source`` (str, e.g. ``"indentation"`` or
        ``"ResNet, step 10 um"``), ``values`` (str: what was fitted, e.g.
        ``"measured"``, ``"conditional mean"``, ``"predictive draws"``),
        ``E_GPa`` and/or ``H_GPa`` (array-like, GPa, any shape; pairs with a
        non-finite value are dropped), optional ``joint`` (bool, default
        True: set False to fit E alone although H is given) and ``truth``
        (a key of ``truths``, or None).
    truths : dict, optional
        Key -> ``{phase: true fraction}``; a source's ``fraction_truth`` and
        ``d_fraction_truth`` come from ``truths[source["truth"]]``.
    n_components : int
        Gaussian components per source.
    seed : int
        Random state of the EM starts and of the subsample.
    n_init : int
        EM restarts per start kind.
    max_values : int or None
        A source with more finite values is fitted on a seeded random
        subsample of this many (``None``: all).
    reference : tuple of str, optional
        ``(source, method)`` of the rows ``d_fraction_reference`` is taken
        against (default: the first source whose ``values`` is
        ``"measured"``, fitted jointly if it was: the indentation's joint
        fit).

    Returns
    -------
    pandas.DataFrame
        One row per source and component, columns :data:`TABLE1_COLUMNS`:
        ``source, values, method`` (``"joint E-H"`` or ``"E_GPa only"`` /
        ``"H_GPa only"``), ``component, phase, fraction, E_mean, E_std,
        H_mean, H_std`` (GPa; NaN for the quantity a 1D fit does not have),
        ``n`` (values fitted), ``truth`` (the key, or empty),
        ``fraction_truth``, ``d_fraction_truth`` (fitted minus true),
        ``d_fraction_reference`` (fitted minus the reference row of the same
        phase; NaN for the reference rows themselves and for phases the
        reference does not name). ``attrs["reference"]`` names the reference.

    Raises
    ------
    InputError
        If ``sources`` is empty, a source has no values or unpaired E and H,
        too few finite values for the mixture, a ``truth`` key missing from
        ``truths``, or ``reference`` matches no row.
    """
    if not sources:
        raise InputError("phase_statistics_table: no sources given")
    truths = truths or {}
    rng = np.random.default_rng(int(seed))
    blocks = []
    for src in sources:
        name = str(src["source"])
        e, h = _pairs(src, max_values, rng)
        t, method, n = _fit(e, h, bool(src.get("joint", True)), f"{name} ({src.get('values')})",
                            n_components, seed, n_init)
        key = src.get("truth")
        if key is not None and key not in truths:
            raise InputError(f"phase_statistics_table: {name}: truth {key!r} is not among "
                             f"{sorted(truths)}")
        t.insert(0, "method", method)
        t.insert(0, "values", str(src.get("values", "")))
        t.insert(0, "source", name)
        t["n"] = n
        t["truth"] = "" if key is None else str(key)
        frac = truths.get(key, {}) if key is not None else {}
        t["fraction_truth"] = t["phase"].map(lambda p, f=frac: f.get(p, np.nan)).astype(float)
        blocks.append(t)
    table = pd.concat(blocks, ignore_index=True)
    table["d_fraction_truth"] = table["fraction"] - table["fraction_truth"]
    if reference is None:
        measured = [b for b in blocks if (b["values"] == "measured").all()]
        first = measured[0] if measured else blocks[0]
        joint = [b for b in measured if (b["method"] == "joint E-H").all()]
        first = joint[0] if joint else first
        reference = (first["source"].iloc[0], first["method"].iloc[0])
    is_ref = ((table["source"] == reference[0]) & (table["method"] == reference[1])).to_numpy()
    if not is_ref.any():
        raise InputError(f"phase_statistics_table: reference {reference} matches no row; "
                         f"sources are {sorted(set(table['source']))}")
    ref = table[is_ref & ~table["phase"].str.startswith("extra")].set_index("phase")["fraction"]
    diff = table["fraction"].to_numpy(float) - table["phase"].map(ref).to_numpy(float)
    diff[is_ref] = np.nan
    table["d_fraction_reference"] = diff
    table = table[list(TABLE1_COLUMNS)]
    table.attrs["reference"] = f"{reference[0]} ({reference[1]})"
    return table


def phase_statistics_summary(table, tolerance=FRACTION_TOLERANCE):
    """The largest fraction differences of each row group of :func:`phase_statistics_table`.

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`phase_statistics_table`.
    tolerance : float
        Absolute tolerance of a fraction (0.05: the issue's target for the
        map of the demo's A4).

    Returns
    -------
    list of dict
        Per ``(source, values, method)`` in table order: ``source, values,
        method, n, truth``, ``max_abs_d_fraction_truth`` and
        ``max_abs_d_fraction_reference`` (over the named phases; None when
        not available), ``within_truth`` / ``within_reference`` (bool, or
        None when not available) and ``fractions`` (phase -> fitted fraction).

    Raises
    ------
    InputError
        If the table lacks a column of :data:`TABLE1_COLUMNS`.
    """
    missing = [c for c in TABLE1_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"phase_statistics_summary: table lacks column(s) {missing}")
    out = []
    for (source, values, method), g in table.groupby(["source", "values", "method"],
                                                       sort=False):
        named = g[~g["phase"].str.startswith("extra")]
        row = {"source": source, "values": values, "method": method, "n": int(g["n"].iloc[0]),
               "truth": str(g["truth"].iloc[0]),
               "fractions": {p: float(f) for p, f in zip(named["phase"], named["fraction"])}}
        for col, key in (("d_fraction_truth", "truth"), ("d_fraction_reference", "reference")):
            d = named[col].to_numpy(float)
            worst = float(np.nanmax(np.abs(d))) if np.isfinite(d).any() else None
            row[f"max_abs_d_fraction_{key}"] = worst
            row[f"within_{key}"] = None if worst is None else bool(worst <= tolerance)
        out.append(row)
    return out
