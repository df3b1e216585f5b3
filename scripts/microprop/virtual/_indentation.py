"""Virtual indentation of a real micrograph: SIMULATED targets on real microstructure.

:func:`regular_grid_px` lays a regular grid of nominal indent positions
centred on an image; :func:`virtual_indentation` segments the micrograph by
grey level (:func:`microprop.imaging.segment_phases`), lays that grid over it
and applies the forward model of a virtual specimen
(:func:`microprop.physics.indent_properties`: literature phase properties
homogenised over each indent's interaction zone, Oliver-Pharr stiffness,
measurement noise). The E and H it returns are not measurements; they serve
to exercise and test the learning pipeline on real microstructure.

Units follow the names: ``x_um``, ``depth_nm``, ``load_mN``,
``stiffness_N_per_m``, ``E_GPa``, ``H_GPa``.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from ..errors import InputError
from ..imaging import grid_positions, segment_phases
from ..physics import indent_properties

log = logging.getLogger(__name__)

def regular_grid_px(shape, pixel_size_nm, spacing_um, margin_um):
    """A regular grid of nominal indent positions centred on an image.

    Positions keep at least ``margin_um`` from the outermost pixel centres
    (``0`` and ``W-1``), so that a crop of size ``2 * margin_um`` around
    every indent fits in the image.

    Parameters
    ----------
    shape : (int, int)
        Image ``(H, W)``.
    pixel_size_nm, spacing_um, margin_um : float
        Pixel size (nm), grid spacing (um), margin (um).

    Returns
    -------
    pandas.DataFrame
        Row-major ``indent`` (1-based), ``row``, ``col``, ``x_um``, ``y_um``
        (specimen frame: pixel (0, 0) at (0, 0) um), ``x_px``, ``y_px``.

    Raises
    ------
    InputError
        If no indent fits.
    """
    p_um = float(pixel_size_nm) / 1e3
    h, w = shape
    counts, starts = [], []
    for extent in ((w - 1) * p_um, (h - 1) * p_um):
        free = extent - 2.0 * margin_um
        if free < 0:
            raise InputError(f"image of {w} x {h} px at {pixel_size_nm} nm/px is too small for a "
                             f"margin of {margin_um} um on each side")
        k = int(math.floor(free / spacing_um + 1e-9)) + 1
        counts.append(k)
        starts.append(margin_um + 0.5 * (free - (k - 1) * spacing_um))
    grid = grid_positions(counts[1], counts[0], spacing_um, origin_um=(starts[0], starts[1]))
    grid["x_px"] = grid["x_um"] / p_um
    grid["y_px"] = grid["y_um"] / p_um
    return grid


def virtual_indentation(image, pixel_size_nm, spacing_um, rng, load_mN=2.0, margin_um=None,
                        noise_rel=0.05, phase_properties=None, zone_factor=3.0, labels=None):
    """Virtual grid indentation of a real micrograph: SIMULATED targets.

    The E and H this returns are **not measurements**: the image is segmented
    by grey level (:func:`segment_phases`), a regular grid of nominal
    positions (no drift) is laid over it, and the forward model
    (:func:`indent_properties`) draws literature phase properties and
    homogenises them over each indent's zone. They serve to exercise and test
    the learning pipeline on real microstructure.

    Parameters
    ----------
    image : numpy.ndarray, shape (H, W)
        Grey BSE micrograph.
    pixel_size_nm : float
        Pixel size (nm).
    spacing_um : float
        Grid spacing (um).
    rng : numpy.random.Generator
    load_mN : float
        Peak load (mN).
    margin_um : float, optional
        Least distance of an indent from the field edge, normally half the
        crop size; default half the spacing.
    noise_rel, phase_properties, zone_factor
        As in :func:`indent_properties`.
    labels : numpy.ndarray, shape (H, W), optional
        A label map to use instead of segmenting ``image``.

    Returns
    -------
    indents : pandas.DataFrame
        Row-major: ``indent, row, col, x_um, y_um, x_px, y_px`` (specimen
        frame), ``E_GPa, H_GPa, depth_nm, load_mN, stiffness_N_per_m,
        E_true_GPa, H_true_GPa, f_<phase>..., phase``.
    labels : numpy.ndarray, shape (H, W), uint8
        The segmentation used.

    Raises
    ------
    InputError
        If the image is not 2D, or no indent fits within the margin.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise InputError(f"virtual_indentation: expected a 2D grey image, found shape {image.shape}")
    if labels is None:
        labels, _ = segment_phases(image, seed=int(rng.integers(2 ** 31)))
    elif labels.shape != image.shape:
        raise InputError(f"label map shape {labels.shape} differs from image shape {image.shape}")
    margin_um = 0.5 * spacing_um if margin_um is None else float(margin_um)
    grid = regular_grid_px(image.shape, pixel_size_nm, spacing_um, margin_um)
    props = indent_properties(labels, grid["x_px"], grid["y_px"], pixel_size_nm, rng, load_mN=load_mN,
                              phase_properties=phase_properties, noise_rel=noise_rel,
                              zone_factor=zone_factor)
    indents = pd.concat([grid.reset_index(drop=True), props.reset_index(drop=True)], axis=1)
    log.info("virtual indentation (SIMULATED targets): %d indents (%d x %d) at %.3g um spacing",
             len(indents), grid["row"].max() + 1, grid["col"].max() + 1, spacing_um)
    return indents, labels
