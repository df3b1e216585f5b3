"""The detector-setting test of the porosity study: the same specimen at other gain and offset.

Real BSE images of different specimens differ in brightness and contrast as
much as in structure, so a classifier of raw grey could tell them apart by the
detector setting alone. The study classifies *calibrated* maps: the porosity
calibration reads the grey levels of C-S-H (n = 0) and of the metal (n = 1)
off each image's own histogram (rule ``porosity_calibrate``), so a change of
gain and offset should leave the maps, and the classes the trained DCNN gives
them, unchanged. :func:`reimage_calibrated` images a known porosity map at a
changed detector and calibrates it as the rule does; :func:`detector_setting_test`
classifies the same windows at each setting and counts the maps that keep
their class.

The change is applied as a microscope's brightness/contrast would be, to the
analogue signal before the 8-bit quantisation: ``grey' = gain * grey + offset``
with ``grey`` the reference detector's signal (:func:`render_porosity_bse`).
Every setting sees the same electrons (the same shot-noise draw), so what
differs is the detector alone: gain, offset, quantisation and saturation. A
last row images the reference setting again with a new noise draw: the share
of maps that change class between two acquisitions of one specimen, the floor
against which the detector rows are read.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .. import physics
from ..errors import InputError
from ..learning import classify_maps, load_classifier
from ._porosity import render_porosity_bse

log = logging.getLogger(__name__)

#: gain x offset (grey levels) of the test: the corners of the range a user meets
DETECTOR_SETTINGS = ((1.0, 0.0), (0.8, -20.0), (0.8, 20.0), (1.25, -20.0), (1.25, 20.0))


def reimage_calibrated(n, eta_table, rng, gain=1.0, offset=0.0, electrons_per_px=2000.0,
                       micf_sigma_px=10.0, grey_csh=60.0, grey_metal=180.0, work_dir=None):
    """Image an equivalent-porosity map at a changed detector and calibrate it back.

    Parameters
    ----------
    n : numpy.ndarray, shape (H, W)
        Equivalent porosity in [0, 1] (the truth).
    eta_table : pandas.DataFrame
        ``n``, ``eta``: the study's Monte Carlo table.
    rng : numpy.random.Generator
        Shot noise.
    gain, offset : float
        The detector change: ``grey' = gain * grey + offset`` (grey levels)
        on the reference detector's signal, before quantisation.
    electrons_per_px, grey_csh, grey_metal : float
        The reference detector (:func:`render_porosity_bse`).
    micf_sigma_px : float
        Gaussian sigma of MicF, px.
    work_dir : path-like, optional
        Where the calibrated zarr is written (a temporary folder by default).

    Returns
    -------
    mulf, micf : numpy.ndarray, shape (H, W), float32
        Calibrated equivalent porosity.
    info : dict
        ``gain``, ``offset``, ``reference_greys`` (the histogram modes the
        calibration used), ``saturated_fraction`` (pixels at 0 or 255).

    Raises
    ------
    InputError
        If the histogram holds one significant mode only.
    """
    import zarr

    _, det = render_porosity_bse(n[:2, :2], eta_table, rng, electrons_per_px=0, grey_csh=grey_csh,
                                 grey_metal=grey_metal)
    g, o = float(gain) * det["gain"], float(gain) * det["offset"] + float(offset)
    grey, _ = render_porosity_bse(n, eta_table, rng, gain=g, offset=o, electrons_per_px=electrons_per_px)
    modes = physics.find_reference_greys(grey, method="peaks")
    dark, bright = physics.darkest_mode(modes), physics.brightest_mode(modes)
    if dark == bright:
        raise InputError(f"gain {gain}, offset {offset}: one significant grey mode only ({dark:.1f})")
    tn, te = eta_table["n"].to_numpy(float), eta_table["eta"].to_numpy(float)
    eta_refs = [float(np.interp(0.0, tn, te)), float(np.interp(1.0, tn, te))]
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        out = Path(tmp) / "calibrated.zarr"
        physics.calibrate_mosaic(grey, out, "porosity", [dark, bright], eta_refs, eta_table=eta_table,
                                 micf_sigma_px=float(micf_sigma_px), chunk=1024,
                                 extra_attrs={"pixel_size_nm": 1.0})
        grp = zarr.open_group(str(out), mode="r")
        mulf, micf = np.asarray(grp["MulF"][:], np.float32), np.asarray(grp["MicF"][:], np.float32)
    info = {"gain": float(gain), "offset": float(offset), "reference_greys": [dark, bright],
            "saturated_fraction": float(np.mean((grey == 0) | (grey == 255)))}
    return mulf, micf, info


def detector_setting_test(model_path, truths, corners, eta_table, map_size_px, settings=DETECTOR_SETTINGS,
                          seed=0, electrons_per_px=2000.0, micf_sigma_px=10.0, device="cpu"):
    """Classify the same windows of known specimens imaged at several detector settings.

    Parameters
    ----------
    model_path : path-like
        ``best.pt`` of the trained classifier (:func:`microprop.learning.train_classifier`).
    truths : dict
        Class name -> equivalent-porosity map ``(H, W)`` of that specimen.
    corners : dict
        Class name -> ``(N, 2)`` int ``(x_px, y_px)`` of the windows to classify
        (e.g. the test maps' ``meta/x_px``, ``meta/y_px``).
    eta_table : pandas.DataFrame
    map_size_px : int
        Window edge at full resolution; the windows are area-averaged to the
        stored size of the model's maps (``meta["crop_size_px"]``).
    settings : sequence of (gain, offset)
        The first is the reference the others are compared with.
    seed : int
    electrons_per_px, micf_sigma_px : float

    Returns
    -------
    table : pandas.DataFrame
        One row per setting and a last one of the reference setting with a new
        noise draw: ``gain, offset, noise`` (``same`` or ``new``), ``n_maps``,
        ``accuracy``, ``same_class`` (fraction of maps whose predicted class
        equals that at the reference setting), ``saturated_fraction``,
        ``grey_n0``, ``grey_n1`` (the greys the calibration found for n = 0
        and n = 1).
    """
    from ..io import block_mean_stack

    model, meta = load_classifier(model_path, device)
    scale = meta["scale"]
    classes = list(meta["classes"])
    stored = int(meta["crop_size_px"])
    size = int(map_size_px)
    if size % stored:
        raise InputError(f"map_size_px {size} is no multiple of the model's stored maps ({stored} px)")
    rows, reference = [], None
    runs = [(g, o, "same") for g, o in settings] + [(settings[0][0], settings[0][1], "new")]
    for gain, offset, noise in runs:
        preds, labels, sat, greys = [], [], [], []
        for ci, name in enumerate(classes):
            if name not in truths:
                raise InputError(f"detector_setting_test: no truth of class {name!r} (have {sorted(truths)})")
            rng = np.random.default_rng([int(seed), ci] + ([1] if noise == "new" else []))
            mulf, micf, info = reimage_calibrated(truths[name], eta_table, rng, gain, offset,
                                                  electrons_per_px, micf_sigma_px)
            img = mulf if scale == "MulF" else micf
            win = np.stack([img[y:y + size, x:x + size] for x, y in np.asarray(corners[name], int)])
            if size != stored:
                win = block_mean_stack(win, size // stored)
            preds.append(classify_maps(model, meta, win, device=device).argmax(1))
            labels.append(np.full(len(win), ci))
            sat.append(info["saturated_fraction"])
            greys.append(info["reference_greys"])
        pred, lab = np.concatenate(preds), np.concatenate(labels)
        if reference is None:
            reference = pred
        rows.append({"gain": gain, "offset": offset, "noise": noise, "n_maps": int(len(pred)),
                     "accuracy": float(np.mean(pred == lab)), "same_class": float(np.mean(pred == reference)),
                     "saturated_fraction": float(np.mean(sat)),
                     "grey_n0": float(np.mean([g[0] for g in greys])),
                     "grey_n1": float(np.mean([g[1] for g in greys]))})
        log.info("gain %.2f, offset %+.0f, %s noise: accuracy %.3f, same class as reference %.3f, "
                 "saturated %.2f %%", gain, offset, noise, rows[-1]["accuracy"], rows[-1]["same_class"], 100 * rows[-1]["saturated_fraction"])
    return pd.DataFrame(rows)
