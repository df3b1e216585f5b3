"""One imaged and indented area of a virtual specimen: its layout and its simulation.

:func:`area_geometry` lays out an area: the nominal field of indentation
batches plus a margin, the tile grid that covers it, and a pad for the stage
errors and the after-set offset. :func:`generate_area` simulates what a
microscope and a nanoindenter give a user of that area: the phase labels
(``_microstructure``), per batch the true indent positions of the grid model
of the seed paper (eq. 3a/3b, :func:`microprop.imaging.grid_positions`) and
the E/H the forward model measures there
(:func:`microprop.physics.indent_properties`), the BSE image (``_bse``) with
Berkovich marks for the after image, the before and after tile sets
(``_tiles``), the instrument exports at the NOMINAL positions in indenter
coordinates, and the truth (tile and indent positions, phase statistics,
every parameter).

Geometry follows ``docs/ARCHITECTURE.md``: images are ``(H, W)`` =
``(y, x)``; a pixel ``p`` of the generated field lies at stage position
``p * pixel_size_nm / 1000`` um (the "specimen frame").
"""
from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from ..errors import InputError
from ..imaging import grid_positions, render_berkovich_marks
from ..phases import DEFAULT_FRACTIONS, PHASES, check_fractions
from ..physics import indent_properties
from ._bse import bse_gain_offset, render_bse
from ._microstructure import _check_eta, generate_microstructure, phase_fractions
from ._tiles import cut_tiles, tile_grid

log = logging.getLogger(__name__)


def area_geometry(pixel_size_nm, n_batches=(2, 1), batch_shape=(20, 20), spacing_um=10.0, margin_um=15.0,
                  tile_shape_px=(2048, 2048), overlap_frac=0.1, stage_error_um=1.5,
                  after_offset_um=(0.0, 0.0), batch_origin_error_um=1.0, grid_drift_um=0.1):
    """Layout of a virtual area: field, tile grid and nominal batch origins.

    The nominal field holds ``n_batches = [nx, ny]`` batches of
    ``batch_shape = [n_rows, n_cols]`` indents at ``spacing_um``, each batch
    occupying ``n_cols * s`` x ``n_rows * s`` um with its first indent at
    ``s / 2`` from its corner, plus ``margin_um`` all round. The tile grid
    (:func:`tile_grid`) covers it; the generated image adds a pad for the
    stage errors (5 sigma plus the batch errors) and the after-set offset, so
    that jittered tiles stay inside. Specimen frame: generated pixel ``p`` is
    at stage ``p * pixel_size_nm / 1000`` um.

    Parameters
    ----------
    pixel_size_nm : float
    n_batches : (int, int)
        Batches along x and y.
    batch_shape : (int, int)
        Indents per batch, rows x columns.
    spacing_um, margin_um : float
    tile_shape_px : (int, int)
        ``(h, w)`` of a tile.
    overlap_frac, stage_error_um : float
    after_offset_um : (float, float)
        ``(x, y)`` shift of the after-indentation tile set.
    batch_origin_error_um, grid_drift_um : float
        Only used to keep indents inside the generated field.

    Returns
    -------
    dict
        ``shape`` (H, W) of the generated field (px); ``tile_origin_px``
        (x, y) of the nominal top-left tile; ``tile_grid`` (n_rows, n_cols,
        step_y, step_x); ``field_origin_px`` (x, y) and ``field_shape_px``
        (H, W) of the nominal field; ``batch_origins_um``: list of nominal
        (x, y) stage positions of each batch's first indent, batches in
        row-major order over (y, x).

    Raises
    ------
    InputError
        On non-positive sizes.
    """
    if not pixel_size_nm > 0:
        raise InputError(f"virtual specimen: pixel_size_nm={pixel_size_nm}, expected > 0")
    nbx, nby = (int(v) for v in n_batches)
    nrow, ncol = (int(v) for v in batch_shape)
    if min(nbx, nby, nrow, ncol) < 1 or not spacing_um > 0 or margin_um < 0:
        raise InputError(f"virtual specimen: n_batches={n_batches}, batch_shape={batch_shape}, "
                         f"spacing_um={spacing_um}, margin_um={margin_um}: expected positive sizes")
    th, tw = (int(v) for v in tile_shape_px)
    px_um = pixel_size_nm / 1000.0
    field_um = (2 * margin_um + nby * nrow * spacing_um, 2 * margin_um + nbx * ncol * spacing_um)
    field_px = tuple(int(math.ceil(v / px_um)) for v in field_um)
    nr, nc, sy, sx = tile_grid(field_px, (th, tw), overlap_frac)
    cover = ((nr - 1) * sy + th, (nc - 1) * sx + tw)
    pad = [int(math.ceil((abs(float(o)) + 5 * stage_error_um) / px_um)) + 2 for o in after_offset_um]
    shape = (cover[0] + 2 * pad[1], cover[1] + 2 * pad[0])
    tile_origin = (pad[0], pad[1])
    field_origin = (tile_origin[0] + (cover[1] - field_px[1]) // 2, tile_origin[1] + (cover[0] - field_px[0]) // 2)
    slack = 5 * batch_origin_error_um + 5 * grid_drift_um * math.sqrt(max(nrow, ncol))
    if slack > margin_um + spacing_um / 2:
        log.warning("margin_um=%.1f is small for the batch origin error and drift; indents may reach the "
                    "field edge", margin_um)
    origins = []
    for by in range(nby):
        for bx in range(nbx):
            origins.append((field_origin[0] * px_um + margin_um + (bx * ncol + 0.5) * spacing_um,
                            field_origin[1] * px_um + margin_um + (by * nrow + 0.5) * spacing_um))
    return {"shape": shape, "tile_origin_px": tile_origin, "tile_grid": (nr, nc, sy, sx),
            "field_origin_px": field_origin, "field_shape_px": field_px, "batch_origins_um": origins}


def generate_area(phase_eta, *, pixel_size_nm=40.0, fractions=None, n_batches=(2, 1), batch_shape=(20, 20),
                  spacing_um=10.0, margin_um=15.0, batch_origin_error_um=1.0, grid_drift_um=0.1,
                  tile_shape_px=(2048, 2048), overlap_frac=0.1, stage_error_um=1.5,
                  after_offset_um=(3.0, -2.0), indenter_offset_um=(0.0, 0.0), indenter_axes=(1, 1),
                  load_mN=2.0, noise_rel=0.05, electrons_per_px=5000.0, brightness_drift=0.01,
                  contrast_drift=0.02, batches=None, seed=0, tile_dtype=np.uint8,
                  file_pattern="{tile}.tif"):
    """Simulate one imaged and indented area of a virtual cement paste specimen.

    Flow: :func:`area_geometry`; phase labels
    (:func:`generate_microstructure`); per batch the true indent positions
    from the grid model (``microprop.imaging.grid_positions``, seed
    paper eq. 3a/3b) with origin = nominal + N(0, ``batch_origin_error_um``)
    and increment drift ``grid_drift_um``; measured E/H from the forward
    model (``indent_properties``) on the labels; the BSE
    image (:func:`render_bse`); Berkovich marks at the true positions
    (``microprop.imaging.render_berkovich_marks``) for the after image; the
    before and after tile sets (:func:`cut_tiles`, independent stage errors,
    the after set shifted by ``after_offset_um``).

    The exports list the NOMINAL positions in indenter coordinates,
    ``X = sx * (stage_x - dx)``, ``Y = sy * (stage_y - dy)`` with
    ``indenter_offset_um = [dx, dy]`` and ``indenter_axes = [sx, sy]``
    (so that stage = (sx X + dx, sy Y + dy)); columns ``j`` run along stage
    +x and rows ``i`` along stage +y; indents numbered row-major from 1.

    Parameters
    ----------
    phase_eta : dict
        Phase name -> backscatter coefficient eta.
    pixel_size_nm, fractions, n_batches, batch_shape, spacing_um, margin_um,
    batch_origin_error_um, grid_drift_um, tile_shape_px, overlap_frac,
    stage_error_um, after_offset_um, indenter_offset_um, indenter_axes,
    load_mN, noise_rel, electrons_per_px, brightness_drift, contrast_drift
        See the workflow's ``virtual`` config (units in the names; errors and
        drifts are standard deviations).
    batches : list of str, optional
        Batch names, one per batch (default ``b01, b02, ...``).
    seed : int
        Seed of the one random stream all draws come from (deterministic).
    tile_dtype : numpy dtype
        ``uint8`` or ``uint16``.

    Returns
    -------
    dict
        ``labels`` (H, W) uint8; ``before``, ``after``: each a dict with
        ``tiles`` (list of arrays), ``layout`` and ``truth`` tables
        (:func:`cut_tiles`); ``exports``: batch -> export table (``indent,
        x_um, y_um, depth_nm, load_mN, stiffness_N_per_m, H_GPa, E_GPa`` in
        indenter coordinates); ``indents``: truth table (``batch, indent, row,
        col, x_px, y_px`` true in the specimen frame, ``x_um, y_um`` true stage,
        ``nominal_x_um, nominal_y_um``, measured and true E/H, ``depth_nm``,
        ``f_<phase>``, ``phase``); ``summary``: dict for ``truth.json``.

    Raises
    ------
    InputError
        On bad fractions, eta table, sizes, or batch names.
    """

    rng = np.random.default_rng(seed)
    fr = check_fractions(DEFAULT_FRACTIONS if fractions is None else fractions)
    eta = _check_eta(phase_eta)
    names = _batch_names(batches, n_batches)
    axes = _indenter_axes(indenter_axes)
    dx, dy = (float(v) for v in indenter_offset_um)
    px_um = pixel_size_nm / 1000.0
    geo = area_geometry(pixel_size_nm, n_batches, batch_shape, spacing_um, margin_um, tile_shape_px,
                        overlap_frac, stage_error_um, after_offset_um, batch_origin_error_um, grid_drift_um)
    H, W = geo["shape"]
    log.info("virtual area: field %d x %d px (%.1f x %.1f um), %d x %d tiles per set",
             W, H, W * px_um, H * px_um, geo["tile_grid"][1], geo["tile_grid"][0])

    labels = generate_microstructure((H, W), pixel_size_nm, fr, rng)

    indents, batch_info = _true_indents(names, geo["batch_origins_um"], batch_shape, spacing_um,
                                        batch_origin_error_um, grid_drift_um, px_um, rng)
    props = indent_properties(labels, indents["x_px"].to_numpy(), indents["y_px"].to_numpy(),
                              pixel_size_nm, rng, load_mN=load_mN, noise_rel=noise_rel)
    indents = pd.concat([indents, props.reset_index(drop=True)], axis=1)
    exports = _exports(indents, names, axes, (dx, dy))

    gain, offset = bse_gain_offset(eta)
    before = render_bse(labels, eta, rng, pixel_size_nm=pixel_size_nm, gain=gain, offset=offset)
    after = render_berkovich_marks(before, indents["x_px"].to_numpy(), indents["y_px"].to_numpy(),
                                   indents["depth_nm"].to_numpy(), pixel_size_nm, rng)
    sets = _tile_sets(before, after, geo, tile_shape_px, overlap_frac, stage_error_um, pixel_size_nm, rng,
                      after_offset_um=after_offset_um, brightness_drift=brightness_drift,
                      contrast_drift=contrast_drift, electrons_per_px=electrons_per_px, gain=gain,
                      offset=offset, tile_dtype=tile_dtype, file_pattern=file_pattern)
    del before, after

    parameters = {
        "pixel_size_nm": pixel_size_nm, "fractions": fr, "n_batches": list(n_batches),
        "batch_shape": list(batch_shape), "spacing_um": spacing_um, "margin_um": margin_um,
        "batch_origin_error_um": batch_origin_error_um, "grid_drift_um": grid_drift_um,
        "tile_shape_px": list(tile_shape_px), "overlap_frac": overlap_frac,
        "stage_error_um": stage_error_um, "after_offset_um": list(after_offset_um),
        "indenter_offset_um": list(indenter_offset_um), "indenter_axes": list(indenter_axes),
        "load_mN": load_mN, "noise_rel": noise_rel, "electrons_per_px": electrons_per_px,
        "brightness_drift": brightness_drift, "contrast_drift": contrast_drift,
        "batches": names, "seed": seed, "tile_dtype": np.dtype(tile_dtype).name}
    summary = _summary(labels, indents, geo, pixel_size_nm, fr, eta, gain, offset, batch_info, parameters)
    return {"labels": labels, "before": sets["before"], "after": sets["after"], "exports": exports,
            "indents": indents, "summary": summary}


def _batch_names(batches, n_batches):
    """Batch names, one per batch (default ``b01, b02, ...``); raises InputError unless unique and as many."""
    nbx, nby = (int(v) for v in n_batches)
    names = list(batches) if batches is not None else [f"b{i + 1:02d}" for i in range(nbx * nby)]
    if len(names) != nbx * nby or len(set(names)) != len(names):
        raise InputError(f"virtual specimen: {len(names)} batch names {names} for n_batches={list(n_batches)} "
                         f"({nbx * nby} batches); expected as many unique names")
    return names


def _indenter_axes(indenter_axes):
    """Indenter axis signs ``(sx, sy)``, each +1 or -1 (raises InputError otherwise)."""
    sx_ax, sy_ax = (int(v) for v in indenter_axes)
    if sx_ax not in (-1, 1) or sy_ax not in (-1, 1):
        raise InputError(f"virtual specimen: indenter_axes={list(indenter_axes)}, expected each +1 or -1")
    return sx_ax, sy_ax


def _true_indents(names, origins_um, batch_shape, spacing_um, batch_origin_error_um, grid_drift_um, px_um,
                  rng):
    """True indent grid of every batch (grid model, origin error, drift) and the per-batch truth.

    Returns the table (``batch``, :func:`grid_positions` columns, ``x_px,
    y_px`` specimen frame, ``nominal_x_um, nominal_y_um``) in batch order,
    and batch -> nominal/true origin and origin error (um).
    """
    nrow, ncol = (int(v) for v in batch_shape)
    tables, batch_info = [], {}
    for name, (ox, oy) in zip(names, origins_um):
        err = rng.normal(0.0, batch_origin_error_um, 2) if batch_origin_error_um > 0 else np.zeros(2)
        true = grid_positions(nrow, ncol, spacing_um, origin_um=(ox + err[0], oy + err[1]),
                              drift_um=grid_drift_um, rng=rng)
        t = true.copy()
        t.insert(0, "batch", name)
        t["x_px"] = t["x_um"] / px_um
        t["y_px"] = t["y_um"] / px_um
        t["nominal_x_um"] = ox + t["col"] * spacing_um
        t["nominal_y_um"] = oy + t["row"] * spacing_um
        tables.append(t)
        batch_info[name] = {"nominal_origin_um": [ox, oy], "true_origin_um": [ox + err[0], oy + err[1]],
                            "origin_error_um": err}
    return pd.concat(tables, ignore_index=True), batch_info


def _exports(indents, names, axes, offset_um):
    """Batch -> export table at the NOMINAL positions in indenter coordinates, ``X = sx (x - dx)``."""
    sx_ax, sy_ax = axes
    dx, dy = offset_um
    exports = {}
    for name in names:
        b = indents[indents["batch"] == name]
        exports[name] = pd.DataFrame({
            "indent": b["indent"].to_numpy(int),
            "x_um": sx_ax * (b["nominal_x_um"].to_numpy() - dx),
            "y_um": sy_ax * (b["nominal_y_um"].to_numpy() - dy),
            **{c: b[c].to_numpy() for c in ("depth_nm", "load_mN", "stiffness_N_per_m", "H_GPa", "E_GPa")}})
    return exports


def _tile_sets(before, after, geo, tile_shape_px, overlap_frac, stage_error_um, pixel_size_nm, rng, *,
               after_offset_um, brightness_drift, contrast_drift, electrons_per_px, gain, offset, tile_dtype,
               file_pattern):
    """The before and after tile sets (:func:`cut_tiles`, in that order), the after set shifted."""
    sets = {}
    for stage, img, shift in (("before", before, (0.0, 0.0)), ("after", after, after_offset_um)):
        tiles, layout, truth = cut_tiles(
            img, tile_shape_px, overlap_frac, stage_error_um, pixel_size_nm, rng,
            field_origin_px=geo["tile_origin_px"], field_shape_px=tuple(
                (n - 1) * s + t for n, s, t in zip(geo["tile_grid"][:2], geo["tile_grid"][2:], tile_shape_px)),
            offset_um=shift, brightness_drift=brightness_drift, contrast_drift=contrast_drift,
            electrons_per_px=electrons_per_px, gain=gain, offset=offset, dtype=tile_dtype,
            file_pattern=file_pattern)
        sets[stage] = {"tiles": tiles, "layout": layout, "truth": truth}
    return sets


def _dominant_phase_stats(indents):
    """Per phase: indents it dominates, their fraction, and mean/std of measured and true E/H (GPa)."""
    per_phase = {}
    for p in PHASES:
        sel = indents["phase"] == p
        per_phase[p] = {
            "n_indents": int(sel.sum()), "indent_fraction": float(sel.mean()),
            **{f"{q}_{s}": (float(getattr(indents.loc[sel, q], s)()) if sel.sum() > 1 else None)
               for q in ("E_GPa", "H_GPa", "E_true_GPa", "H_true_GPa") for s in ("mean", "std")}}
    return per_phase


def _summary(labels, indents, geo, pixel_size_nm, fr, eta, gain, offset, batch_info, parameters):
    """The dict for ``truth.json``: area fractions, dominant-phase statistics, geometry, parameters."""
    fy, fx = geo["field_origin_px"][1], geo["field_origin_px"][0]
    fh, fw = geo["field_shape_px"]
    per_phase = _dominant_phase_stats(indents)
    return {
        "area_fractions": phase_fractions(labels),
        "area_fractions_nominal_field": phase_fractions(labels[fy: fy + fh, fx: fx + fw]),
        "requested_fractions": fr,
        "dominant_phase": per_phase,
        "phase_eta": eta,
        "detector": {"gain_grey_per_eta": gain, "offset_grey": offset},
        "geometry": {**geo, "pixel_size_nm": pixel_size_nm, "frame": (
            "specimen frame: pixel p of phases.npy is at stage p * pixel_size_nm / 1000 um")},
        "batches": batch_info,
        "parameters": parameters,
    }
