"""Measured errors of the workflow's stages against a virtual specimen's truth.

The virtual-specimen generator records the true tile positions, indent
positions and phase statistics in the specimen frame (stage position / pixel
size, pixel [0, 0] at stage 0). A stitched mosaic is that frame up to one
constant offset (the gauge of the global solve), which these functions
estimate from the tiles and remove before measuring errors.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputError
from ..phases import PHASES, SOLID_PHASES


def _merge_tiles(truth: pd.DataFrame, placed: pd.DataFrame) -> pd.DataFrame:
    m = truth[["tile", "x_px", "y_px"]].merge(
        placed[["tile", "x_px", "y_px"]], on="tile", suffixes=("_true", "_placed"))
    if len(m) != len(truth):
        missing = sorted(set(truth["tile"].astype(str)) - set(placed["tile"].astype(str)))
        raise InputError(f"stitch table lacks tiles of the truth: {missing[:5]}")
    return m


def mosaic_offset_px(truth_tiles: pd.DataFrame, placed_tiles: pd.DataFrame) -> np.ndarray:
    """Offset ``g`` with specimen-frame px = mosaic px + g, from the tiles.

    Parameters
    ----------
    truth_tiles : DataFrame
        ``tile, x_px, y_px``: true tile positions in the specimen frame.
    placed_tiles : DataFrame
        ``tile, x_px, y_px``: positions placed by stitching (mosaic frame).

    Returns
    -------
    numpy.ndarray, shape (2,)
        ``(gx, gy)`` in px, the mean of true minus placed positions.
    """
    m = _merge_tiles(truth_tiles, placed_tiles)
    return np.array([(m.x_px_true - m.x_px_placed).mean(), (m.y_px_true - m.y_px_placed).mean()])


def stitching_errors(truth_tiles: pd.DataFrame, placed_tiles: pd.DataFrame) -> dict:
    """Tile-position errors of a stitched mosaic after removing the common offset.

    Returns
    -------
    dict
        ``median_px``, ``max_px`` (Euclidean), ``n_tiles``, per-tile errors.
    """
    m = _merge_tiles(truth_tiles, placed_tiles)
    g = mosaic_offset_px(truth_tiles, placed_tiles)
    err = np.hypot(m.x_px_placed + g[0] - m.x_px_true, m.y_px_placed + g[1] - m.y_px_true)
    return {"median_px": float(np.median(err)), "max_px": float(err.max()),
            "n_tiles": int(len(m)), "per_tile_px": dict(zip(m.tile.astype(str), err.round(3).tolist()))}


def location_errors(truth_indents: pd.DataFrame, located: pd.DataFrame, offset_px,
                    pixel_size_nm: float) -> dict:
    """Indent-position errors of micro-positioning, in the before-mosaic.

    Parameters
    ----------
    truth_indents : DataFrame
        ``batch, indent, x_px, y_px`` true positions in the specimen frame.
    located : DataFrame
        ``batch, indent, x_px, y_px`` located positions in the before-mosaic.
    offset_px : array-like, shape (2,)
        From :func:`mosaic_offset_px` of the before-mosaic.
    pixel_size_nm : float

    Returns
    -------
    dict
        ``rms_um`` overall, ``max_um``, ``n``, and ``per_batch_rms_um``.
    """
    t = truth_indents.astype({"batch": str})
    loc = located.astype({"batch": str})
    m = t[["batch", "indent", "x_px", "y_px"]].merge(
        loc[["batch", "indent", "x_px", "y_px"]], on=["batch", "indent"], suffixes=("_true", "_loc"))
    if m.empty:
        raise InputError("no located indent matches the truth (batch, indent)")
    dx = m.x_px_loc + offset_px[0] - m.x_px_true
    dy = m.y_px_loc + offset_px[1] - m.y_px_true
    err_um = np.hypot(dx, dy) * pixel_size_nm / 1000.0
    per_batch = (err_um ** 2).groupby(m.batch).mean() ** 0.5
    return {"rms_um": float(np.sqrt(np.mean(err_um ** 2))), "max_um": float(err_um.max()),
            "n": int(len(m)), "per_batch_rms_um": {k: float(v) for k, v in per_batch.items()}}


def calibration_errors(labels, calibrated, offset_px, phase_eta: dict, step=8) -> dict:
    """Calibrated eta of each phase against its Monte Carlo eta.

    Parameters
    ----------
    labels : array-like, shape (Hs, Ws), uint8
        The generator's phase map in the specimen frame (ids as
        :data:`PHASES`).
    calibrated : array-like, shape (H, W), float32
        The calibrated ``MulF`` eta map in the before-mosaic frame.
    offset_px : array-like, shape (2,)
        From :func:`mosaic_offset_px`: specimen px = mosaic px + offset.
    phase_eta : dict
        Phase -> the eta the generator rendered it with.
    step : int
        Sampling stride in px (the maps are large).

    Returns
    -------
    dict
        Per phase the median calibrated eta, the true eta and the absolute
        error; and the largest error.
    """
    gx, gy = (int(round(v)) for v in offset_px)
    h, w = calibrated.shape
    ys = np.arange(0, h, step)
    xs = np.arange(0, w, step)
    ok_y = (ys + gy >= 0) & (ys + gy < labels.shape[0])
    ok_x = (xs + gx >= 0) & (xs + gx < labels.shape[1])
    ys, xs = ys[ok_y], xs[ok_x]
    cal = np.asarray(calibrated[:, :])[np.ix_(ys, xs)]
    lab = np.asarray(labels)[np.ix_(ys + gy, xs + gx)]
    out, worst = {}, 0.0
    for i, phase in enumerate(PHASES):
        v = cal[lab == i]
        if v.size == 0 or phase not in phase_eta:
            continue
        med = float(np.median(v))
        err = abs(med - float(phase_eta[phase]))
        out[phase] = {"eta_calibrated_median": med, "eta_true": float(phase_eta[phase]),
                      "abs_error": err, "n_px": int(v.size)}
        worst = max(worst, err)
    return {"phases": out, "max_abs_error": worst}


def generated_phases(truth_indents: pd.DataFrame, phase_properties: pd.DataFrame,
                     phases=SOLID_PHASES) -> dict:
    """The phase statistics a deconvolution of the indents should recover.

    Parameters
    ----------
    truth_indents : DataFrame
        The generator's ``indents.csv`` with ``f_<phase>`` columns: volume
        fractions of each phase in an indent's interaction zone.
    phase_properties : DataFrame
        ``phase, E_mean_GPa, ...``: the distributions the generator drew the
        phase moduli from.
    phases : sequence of str
        Phases a GMM resolves; their fractions are renormalised to sum to 1
        (pores, a few per cent of the zones, are not a component).

    Returns
    -------
    dict
        phase -> ``{"fraction": f, "E_mean_GPa": m}`` for :func:`gmm_errors`.
    """
    cols = [f"f_{p}" for p in phases]
    missing = [c for c in cols if c not in truth_indents.columns]
    if missing:
        raise InputError(f"truth indents lack zone-fraction column(s) {missing}")
    f = truth_indents[cols].mean()
    f = f / f.sum()
    props = phase_properties.set_index("phase")
    return {p: {"fraction": float(f[f"f_{p}"]), "E_mean_GPa": float(props.loc[p, "E_mean_GPa"])}
            for p in phases}


def gmm_errors(truth_phases: dict, gmm: pd.DataFrame) -> dict:
    """Compare GMM components with the generated phase statistics.

    Parameters
    ----------
    truth_phases : dict
        phase -> ``{"fraction": f, "E_mean_GPa": m}``: fraction of indents
        whose interaction zone is dominated by the phase and their mean E.
    gmm : DataFrame
        ``phase, fraction, mean`` of the pooled deconvolution.

    Returns
    -------
    dict
        Per phase: true and fitted fraction and mean, absolute fraction error
        and relative mean error; and the worst of each.
    """
    out, worst_f, worst_m = {}, 0.0, 0.0
    for _, row in gmm.iterrows():
        phase = row["phase"]
        if phase not in truth_phases:
            continue
        t = truth_phases[phase]
        df = abs(float(row["fraction"]) - t["fraction"])
        dm = abs(float(row["mean"]) - t["E_mean_GPa"]) / t["E_mean_GPa"]
        out[phase] = {"fraction_true": t["fraction"], "fraction_fit": float(row["fraction"]),
                      "mean_true_GPa": t["E_mean_GPa"], "mean_fit_GPa": float(row["mean"]),
                      "fraction_abs_error": df, "mean_rel_error": dm}
        worst_f, worst_m = max(worst_f, df), max(worst_m, dm)
    return {"phases": out, "max_fraction_abs_error": worst_f, "max_mean_rel_error": worst_m}
