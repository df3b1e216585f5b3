"""Property maps of whole areas and their statistics against indentation.

The seed paper's out-of-bag test (its Fig. 15-17 and Table 1): a trained
model maps E over an area that was never indented, and the phase statistics
of the map (Gaussian-mixture deconvolution: fraction, mean, std per phase)
are compared with those of the grid-indentation test.

* :func:`window_centres` -- the crop centres of a sliding window at a step.
* :func:`predict_map` -- sliding-window inference with any crop predictor
  (a ResNet ensemble in the workflow, :func:`load_ensemble` and
  :func:`ensemble_mean_predictor`), read from the map in strips so that
  memory stays bounded (:func:`timed_predict_map` measures its throughput);
  :func:`dense_step_px` bounds the windows of a dense
  map, :func:`map_label` names a map by model and step, and
  :func:`first_centre_um` and :func:`map_geometry` place its windows
  (the approximate shared-trunk mode is :func:`microprop.learning.dense_predict_map`).
* :func:`window_means` / :func:`table_model_map` -- the same windows reduced
  to their mean grey (integral image), then the seed's table model.
* :func:`compare_statistics` -- Table-1-like comparison of GMM phase
  statistics of the indents and of the maps.
* the figures, :func:`microprop.plots.map_triptych` and
  :func:`microprop.plots.map_histograms` (Fig. 15 and Fig. 16-17), are in ``plots``.

Window convention (same as :func:`microprop.data.crop_indents`): a window
centred at pixel ``(cy, cx)`` covers rows ``cy - S//2 .. cy - S//2 + S - 1``
and the same columns, so that a map value at a window centre is what the
model predicts for an indent located at that pixel.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
from scipy.stats import wasserstein_distance

from ..errors import InputError
from ..progress import progress
from ..stats import deconvolve, deconvolve_joint, marginal, table_model_predict
from ._evaluate import _train_api

log = logging.getLogger(__name__)

#: Default height (rows of pixels) of the strips read from the map at once;
#: a float32 strip of the demo map (11353 px wide) is 46 MB.
STRIP_PX = 1024


#: Name of the indentation source in :func:`compare_statistics`.
INDENTATION = "indentation"


def _check_window(shape, crop_size_px, step_px, what="map"):
    if len(shape) != 2:
        raise InputError(f"{what}: expected a 2D (H, W) map, got shape {tuple(shape)}")
    s, step = int(crop_size_px), int(step_px)
    if s < 1 or s != crop_size_px:
        raise InputError(f"{what}: crop_size_px must be a positive integer, got {crop_size_px}")
    if step < 1 or step != step_px:
        raise InputError(f"{what}: step_px must be a positive integer, got {step_px}")
    h, w = (int(v) for v in shape)
    if h < s or w < s:
        raise InputError(f"{what}: map of {h} x {w} px is smaller than one "
                         f"{s} x {s} px crop")
    return s, step, h, w


def window_centres(shape, crop_size_px, step_px):
    """Centres of sliding windows that keep the whole crop inside the map.

    Along each axis the centres are ``c0 + k * step_px``, ``k = 0..n-1``,
    with ``n = (L - S) // step_px + 1`` (as many whole crops as fit) and the
    grid centred in the map: the uncovered margin ``(L - S) - (n - 1) step``
    is shared between both ends (the first end gets the smaller half).

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` of the map, pixels.
    crop_size_px : int
        Crop edge ``S``, pixels.
    step_px : int
        Distance between neighbouring centres, pixels (e.g. the indent
        spacing ``10 um / 40 nm = 250 px``, or ``S // 8`` for a dense map).

    Returns
    -------
    cy : numpy.ndarray, shape (ny,), int64
        Row index of the centre of each window row.
    cx : numpy.ndarray, shape (nx,), int64
        Column index of the centre of each window column. The window
        ``(i, j)`` covers rows ``cy[i] - S//2 ..`` ``cy[i] - S//2 + S - 1``
        and columns ``cx[j] - S//2 .. cx[j] - S//2 + S - 1``.

    Raises
    ------
    InputError
        If the map is not 2D, smaller than one crop, or the crop size or step
        is not a positive integer.
    """
    s, step, h, w = _check_window(shape, crop_size_px, step_px)

    def axis(length):
        n = (length - s) // step + 1
        first = (length - s - (n - 1) * step) // 2
        return (first + s // 2 + step * np.arange(n)).astype(np.int64)

    return axis(h), axis(w)


def dense_step_px(shape, crop_size_px, step_px, max_crops=None):
    """The smallest step from ``step_px`` up whose windows number at most ``max_crops``.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` of the map, pixels.
    crop_size_px : int
        Crop edge ``S``, pixels.
    step_px : int
        Wanted step of the dense map, pixels.
    max_crops : int, optional
        Upper bound on the windows of :func:`window_centres`; ``None`` or 0:
        no bound (``step_px`` is returned).

    Returns
    -------
    int
        The step, pixels; a warning is logged when it exceeds ``step_px``.

    Raises
    ------
    InputError
        As :func:`window_centres`.
    """
    step = int(step_px)
    if not max_crops:
        return step
    while np.prod([c.size for c in window_centres(shape, crop_size_px, step)]) > int(max_crops):
        step += 1
    if step != int(step_px):
        log.warning("dense step raised from %d to %d px to stay within dense_max_crops = %d",
                    int(step_px), step, int(max_crops))
    return step


def map_label(model, step_px, pixel_size_nm):
    """Source name of a map: ``"<model>, step <step> um"`` (step to 3 significant digits)."""
    return f"{model}, step {step_px * pixel_size_nm / 1000:.3g} um"


def first_centre_um(centres, crop_size_px, pixel_size_nm):
    """``[x, y]`` um of the centre of window ``[0, 0]`` (pixel ``[0, 0]`` centred at 0 um).

    The centre of a window of even edge ``S`` lies half a pixel before its
    centre pixel ``(cy, cx)``: the window covers ``c - S//2 .. c - S//2 + S - 1``.

    Parameters
    ----------
    centres : tuple of numpy.ndarray
        ``(cy, cx)`` of :func:`window_centres`, pixels.
    crop_size_px : int
        Crop edge ``S``, pixels.
    pixel_size_nm : float
        nm per pixel.

    Returns
    -------
    list of float
        ``[x_um, y_um]``, as :func:`microprop.plots.map_triptych` takes it.
    """
    s = int(crop_size_px)
    return [(int(centres[1][0]) - s // 2 + (s - 1) / 2) * pixel_size_nm / 1000,
            (int(centres[0][0]) - s // 2 + (s - 1) / 2) * pixel_size_nm / 1000]


def map_geometry(step_px, pixel_size_nm, grid, centres):
    """Window geometry of one map, as recorded in the ``map_area`` rule's meta JSON.

    Parameters
    ----------
    step_px : int
        Step between window centres, pixels.
    pixel_size_nm : float
        nm per pixel.
    grid : numpy.ndarray, shape (ny, nx)
        The map (:func:`predict_map`).
    centres : tuple of numpy.ndarray
        ``(cy, cx)`` of the map's windows.

    Returns
    -------
    dict
        ``step_px``, ``step_um``, ``shape`` (``[ny, nx]``) and
        ``first_centre_px`` (``[x, y]`` pixel of window ``[0, 0]``'s centre).
    """
    return {"step_px": int(step_px), "step_um": step_px * pixel_size_nm / 1000,
            "shape": list(grid.shape),
            "first_centre_px": [int(centres[1][0]), int(centres[0][0])]}


def load_ensemble(checkpoints, device, same=("target", "crop_size_px"), load_model=None):
    """Load the members of an ensemble and check that they agree.

    Parameters
    ----------
    checkpoints : sequence of path-like
        ``best.pt`` of the members (:func:`microprop.learning.load_model`).
    device : torch.device
        Where the models are put.
    same : sequence of str
        Checkpoint meta keys every member must share with the first.
    load_model : callable, optional
        Replacement of ``microprop.learning.load_model`` (same signature);
        default: the package's, looked up at call time.

    Returns
    -------
    models : list of tuple
        ``(path, model, meta)`` per member, in the order of ``checkpoints``.
    meta : dict
        The first member's checkpoint meta (``target``, ``crop_size_px``, ...).

    Raises
    ------
    InputError
        If no checkpoint is given or a member differs from the first in a
        key of ``same`` (the message names both files).
    """
    if not checkpoints:
        raise InputError("load_ensemble: no checkpoints given; expected at least one best.pt")
    load_model, _ = _train_api(load_model, None)
    models = [(p, *load_model(p, device)) for p in checkpoints]
    first = models[0][2]
    for p, _, meta in models[1:]:
        for key in same:
            if meta.get(key) != first.get(key):
                raise InputError(f"{p}: {key} = {meta.get(key)!r} differs from "
                                 f"{models[0][0]}'s {first.get(key)!r}; an ensemble needs one")
    return models, first


def ensemble_mean_predictor(models, device, batch_size, predict=None):
    """A ``predict_fn`` for :func:`predict_map`: the mean prediction of the members.

    Parameters
    ----------
    models : list of tuple
        ``(path, model, meta)`` from :func:`load_ensemble`.
    device : torch.device
    batch_size : int
        Crops per forward pass.
    predict : callable, optional
        Replacement of ``microprop.learning.predict`` (same signature);
        default: the package's, looked up when the predictor is made.

    Returns
    -------
    callable
        ``fn(crops)``, crops ``(n, S, S)`` float32, returns the members' mean
        prediction, shape ``(n,)`` float64 (GPa).
    """
    _, predict = _train_api(None, predict)

    def mean_prediction(crops):
        preds = [predict(m, mt, crops, device, batch_size) for _, m, mt in models]
        return np.mean(np.stack([np.asarray(p, dtype=np.float64).reshape(-1) for p in preds]),
                       axis=0)

    return mean_prediction


def ensemble_mean_spread_predictor(models, device, batch_size, predict=None):
    """A ``predict_fn`` for :func:`predict_map`: the members' mean and spread per crop.

    The spread is the members' standard deviation with ``ddof = 1`` (0 for
    one member), as :func:`microprop.learning.evaluate` computes it for the
    crops that calibrate the prediction interval, so that a map window's
    interval is ``mean +- q * max(spread, floor)`` with the evaluation's
    ``q`` and ``floor`` (the predictive distributions of
    :func:`microprop.learning.predictive_draws`).

    Parameters
    ----------
    models : list of tuple
        ``(path, model, meta)`` from :func:`load_ensemble`.
    device : torch.device
    batch_size : int
        Crops per forward pass.
    predict : callable, optional
        Replacement of ``microprop.learning.predict`` (same signature).

    Returns
    -------
    callable
        ``fn(crops)``, crops ``(n, S, S)`` float32, returns shape ``(n, 2)``
        float64: column 0 the mean, column 1 the spread (GPa). Pass
        ``outputs=2`` to :func:`predict_map`.
    """
    _, predict = _train_api(None, predict)

    def mean_spread(crops):
        preds = np.stack([np.asarray(predict(m, mt, crops, device, batch_size),
                                     dtype=np.float64).reshape(-1) for _, m, mt in models])
        spread = preds.std(axis=0, ddof=1) if len(models) > 1 else np.zeros(preds.shape[1])
        return np.column_stack([preds.mean(axis=0), spread])

    return mean_spread


def _strips(cy, s, step, strip_px):
    """Yield ``(k0, k1, r0, r1)``: window rows ``k0..k1-1`` need map rows ``r0..r1-1``."""
    per = max(1, (max(int(strip_px), s) - s) // step + 1)
    for k0 in range(0, cy.size, per):
        k1 = min(k0 + per, cy.size)
        yield k0, k1, int(cy[k0] - s // 2), int(cy[k1 - 1] - s // 2 + s)


def _read(calibrated, r0, r1, c0, c1):
    return np.asarray(calibrated[r0:r1, c0:c1], dtype=np.float32)


def predict_map(calibrated, predict_fn, crop_size_px, step_px, batch=64, strip_px=STRIP_PX,
                desc="map", outputs=1):
    """Sliding-window prediction of a property over a whole calibrated map.

    Every window of :func:`window_centres` is cut from the map and passed,
    ``batch`` crops at a time, to ``predict_fn``; its prediction is the map
    value at the window centre. The map is read in horizontal strips of at
    most ``max(strip_px, S)`` rows (plus the columns the windows need), so
    memory is one strip plus one batch of crops, never the whole map as
    windows; the crops of a batch are copied out of a strided
    (:func:`numpy.lib.stride_tricks.sliding_window_view`) view of the strip.

    Dense maps (``step_px < S``) use the same batched strided inference, so
    the value of every window is exactly the model's prediction for that
    crop. The fully convolutional shortcut (run the convolutional trunk once
    over the map, then pool its feature map per window) is
    :func:`microprop.learning.dense_predict_map`, an approximation: a crop's
    border features see zero padding where the map shows the neighbouring
    pixels, and each crop is standardised by its own statistics. Its
    difference to this function is measured by
    :func:`microprop.learning.dense_agreement` (on the demo's model it is
    large: README, "Dense maps").

    Parameters
    ----------
    calibrated : zarr.Array or numpy.ndarray, shape (H, W)
        Calibrated map (``MulF``, float32, eta or porosity); anything that
        slices like a numpy array.
    predict_fn : callable
        ``predict_fn(crops)`` with ``crops`` of shape ``(n, S, S)`` float32
        returns ``n`` predictions (e.g. GPa), array-like of shape ``(n,)``.
    crop_size_px : int
        Crop edge ``S`` the model was trained on, pixels.
    step_px : int
        Step between window centres, pixels.
    batch : int
        Crops per call of ``predict_fn``.
    strip_px : int
        Rows read from the map at once (default :data:`STRIP_PX`).
    desc : str
        Label of the progress bar.
    outputs : int
        Values ``predict_fn`` returns per crop: 1 (shape ``(n,)``) or more
        (shape ``(n, outputs)``, e.g. :func:`ensemble_mean_spread_predictor`).

    Returns
    -------
    grid : numpy.ndarray, shape (ny, nx) or (ny, nx, outputs), float32
        Prediction at each window; NaN where the crop holds a non-finite
        pixel (such crops are not passed to ``predict_fn``).
    centres : tuple of numpy.ndarray
        ``(cy, cx)`` from :func:`window_centres`: ``grid[i, j]`` belongs to
        the window centred at pixel ``(cy[i], cx[j])``.

    Raises
    ------
    InputError
        As :func:`window_centres`; if ``batch < 1``; or if ``predict_fn``
        returns a wrong number of values.
    """
    s, step, _, _ = _check_window(calibrated.shape, crop_size_px, step_px)
    if int(batch) < 1:
        raise InputError(f"predict_map: batch must be >= 1, got {batch}")
    if int(outputs) < 1 or int(outputs) != outputs:
        raise InputError(f"predict_map: outputs must be a positive integer, got {outputs}")
    batch = int(batch)
    cy, cx = window_centres(calibrated.shape, s, step)
    extra = () if int(outputs) == 1 else (int(outputs),)
    grid = np.full((cy.size, cx.size) + extra, np.nan, np.float32)
    c0, c1 = int(cx[0] - s // 2), int(cx[-1] - s // 2 + s)
    xs = cx - s // 2 - c0
    n_skipped = 0
    n_windows = cy.size * cx.size
    with progress(total=n_windows, desc=desc, unit="crop") as bar:
        for k0, k1, r0, r1 in _strips(cy, s, step, strip_px):
            strip = _read(calibrated, r0, r1, c0, c1)
            n_skipped += _predict_strip(grid, strip, k0, k1, cy[k0:k1] - s // 2 - r0, xs, s,
                                        predict_fn, batch, bar)
    if n_skipped:
        log.warning("%s: %d of %d windows hold non-finite pixels and are NaN", desc,
                    n_skipped, n_windows)
    log.info("%s: %d x %d windows of %d px at step %d px", desc, cy.size, cx.size, s, step)
    return grid, (cy, cx)


def _predict_strip(grid, strip, k0, k1, ys, xs, s, predict_fn, batch, bar):
    """Predict window rows ``k0..k1-1`` of ``grid`` from one strip; return the skipped count."""
    view = np.lib.stride_tricks.sliding_window_view(strip, (s, s))
    ii, jj = np.meshgrid(np.arange(k1 - k0), np.arange(xs.size), indexing="ij")
    ii, jj = ii.ravel(), jj.ravel()
    n_skipped = 0
    for b0 in range(0, ii.size, batch):
        bi, bj = ii[b0:b0 + batch], jj[b0:b0 + batch]
        crops = np.ascontiguousarray(view[ys[bi], xs[bj]])
        ok = np.isfinite(crops).all(axis=(1, 2))
        if ok.any():
            pred = np.asarray(predict_fn(crops[ok] if not ok.all() else crops),
                              dtype=np.float32)
            n_ok, per = int(ok.sum()), int(np.prod(grid.shape[2:], dtype=int))
            if pred.size != n_ok * per:
                raise InputError(f"predict_map: predict_fn returned {pred.size} "
                                 f"values for {n_ok} crops ({per} per crop expected)")
            grid[k0 + bi[ok], bj[ok]] = pred.reshape((n_ok,) + grid.shape[2:])
        n_skipped += int((~ok).sum())
        bar.update(bi.size)
    return n_skipped


def timed_predict_map(calibrated, predict_fn, crop_size_px, step_px, batch=64,
                      strip_px=STRIP_PX, desc="map", outputs=1):
    """:func:`predict_map`, timed: the map, its centres and its throughput.

    Parameters
    ----------
    calibrated, predict_fn, crop_size_px, step_px, batch, strip_px, desc, outputs
        As :func:`predict_map`.

    Returns
    -------
    grid : numpy.ndarray, shape (ny, nx), float32
        As :func:`predict_map`.
    centres : tuple of numpy.ndarray
        ``(cy, cx)``, as :func:`predict_map`.
    timing : dict
        ``seconds`` (wall time), ``crops`` (windows), ``crops_per_s`` and
        ``megapixels_per_s`` (map area over wall time); logged as well.

    Raises
    ------
    InputError
        As :func:`predict_map`.
    """
    t0 = time.perf_counter()
    grid, centres = predict_map(calibrated, predict_fn, crop_size_px, step_px, batch=batch,
                                strip_px=strip_px, desc=desc, outputs=outputs)
    dt = max(time.perf_counter() - t0, 1e-9)
    n_crops = int(grid.shape[0] * grid.shape[1])
    timing = {"seconds": dt, "crops": n_crops, "crops_per_s": n_crops / dt,
              "megapixels_per_s": calibrated.shape[0] * calibrated.shape[1] / 1e6 / dt}
    log.info("%s: %d crops in %.1f s: %.1f crops/s, %.2f megapixels/s", desc, n_crops, dt,
             timing["crops_per_s"], timing["megapixels_per_s"])
    return grid, centres, timing


def window_means(calibrated, crop_size_px, step_px, strip_px=STRIP_PX):
    """Mean of every window of :func:`window_centres`, by integral images.

    Per strip of rows, cumulative sums along y then x (summed-area table,
    Crow 1984, SIGGRAPH '84) give each window's sum with four look-ups;
    non-finite pixels are left out of both the sum and the count (as
    :func:`microprop.stats.crop_means` does). Cost is linear in the strip
    area whatever the step, and memory one strip in float64.

    Parameters
    ----------
    calibrated : zarr.Array or numpy.ndarray, shape (H, W)
    crop_size_px, step_px : int
        As :func:`window_centres`.
    strip_px : int
        Rows read at once.

    Returns
    -------
    means : numpy.ndarray, shape (ny, nx), float64
        NaN for a window without a finite pixel.
    centres : tuple of numpy.ndarray
        ``(cy, cx)``.
    """
    s, step, _, _ = _check_window(calibrated.shape, crop_size_px, step_px)
    cy, cx = window_centres(calibrated.shape, s, step)
    out = np.empty((cy.size, cx.size), np.float64)
    c0, c1 = int(cx[0] - s // 2), int(cx[-1] - s // 2 + s)
    xs = cx - s // 2 - c0

    def box(values, ys):
        col = np.zeros((values.shape[0] + 1, values.shape[1]), np.float64)
        np.cumsum(values, axis=0, out=col[1:])
        band = col[ys + s] - col[ys]                       # (rows, W): sums over y
        row = np.zeros((band.shape[0], band.shape[1] + 1), np.float64)
        np.cumsum(band, axis=1, out=row[:, 1:])
        return row[:, xs + s] - row[:, xs]

    for k0, k1, r0, r1 in _strips(cy, s, step, strip_px):
        strip = _read(calibrated, r0, r1, c0, c1)
        ys = cy[k0:k1] - s // 2 - r0
        finite = np.isfinite(strip)
        if finite.all():
            out[k0:k1] = box(strip, ys) / float(s * s)
        else:
            sums = box(np.where(finite, strip, 0.0), ys)
            counts = box(finite.astype(np.float64), ys)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[k0:k1] = np.where(counts > 0.5, sums / np.maximum(counts, 1.0), np.nan)
    return out, (cy, cx)


def table_model_map(calibrated, table, crop_size_px, step_px, strip_px=STRIP_PX):
    """Map of the seed's table model on the windows of :func:`window_centres`.

    Each window's mean grey (:func:`window_means`) is looked up in the
    table-model bins (:func:`microprop.stats.table_model_predict`: the mean
    property of the training crops in the same grey bin).

    Parameters
    ----------
    calibrated : zarr.Array or numpy.ndarray, shape (H, W)
        Calibrated map, same quantity (eta or porosity) as the table's grey.
    table : pandas.DataFrame
        Bins from :func:`microprop.stats.table_model_fit` (``grey_lo``,
        ``grey_hi``, ``y_mean``).
    crop_size_px, step_px : int
        As :func:`window_centres`.
    strip_px : int
        Rows read at once.

    Returns
    -------
    numpy.ndarray, shape (ny, nx), float32
        Predicted property (unit of the table's ``y_mean``, GPa); NaN for a
        window without a finite pixel.

    Raises
    ------
    InputError
        If the table lacks a bin column, or as :func:`window_centres`.
    """
    missing = [c for c in ("grey_lo", "grey_hi", "y_mean") if c not in table.columns]
    if missing or len(table) == 0:
        raise InputError(f"table_model_map: table-model bins lack column(s) {missing} or are "
                         f"empty; found {list(table.columns)}")
    means, _ = window_means(calibrated, crop_size_px, step_px, strip_px=strip_px)
    return table_model_predict(table, means.ravel()).reshape(means.shape).astype(np.float32)


def _finite(values):
    v = np.asarray(values, dtype=float).ravel()
    return v[np.isfinite(v)]


def compare_statistics(indent_E, map_grids, n_components=4, seed=0, n_init=10,
                       max_values=10000, indent_H=None, map_grids_H=None, quantity="E_GPa"):
    """Phase statistics of indentation and of property maps, side by side.

    Each source (the indents, then every map) is deconvolved into
    ``n_components`` Gaussian phases (grid-indentation deconvolution,
    Constantinides et al. 2006, Mater. Sci. Eng. A 430; Ulm et al. 2007,
    J. Am. Ceram. Soc. 90) with :func:`microprop.stats.deconvolve`, or with
    the joint (E, H) mixture :func:`microprop.stats.deconvolve_joint` (its
    ``quantity`` marginal is reported) when H values are given for that
    source too. Phases are named by the literature means, so rows of the
    same phase can be compared; the map values are the fraction of the
    area's windows, the indent values the fraction of indents (the seed
    paper's Table 1: fraction, mean, std per phase).

    Parameters
    ----------
    indent_E : array-like, shape (N,)
        Property of the indents (GPa); non-finite values dropped.
    map_grids : dict
        Source name -> map (any shape, e.g. ``(ny, nx)`` grid; NaN ignored).
    n_components : int
        Gaussian components per source.
    seed : int
        Random state of the EM starts and of the subsample.
    n_init : int
        EM restarts per start kind.
    max_values : int or None
        A map with more finite values is fitted on a seeded random subsample
        of this many (a dense map's neighbouring windows are strongly
        correlated, so the subsample loses little; ``None``: all values).
    indent_H : array-like, shape (N,), optional
        Hardness of the same indents (GPa), for a joint fit.
    map_grids_H : dict, optional
        Source name -> hardness map with the same shape as ``map_grids[name]``
        (joint fit for that source).
    quantity : {"E_GPa", "H_GPa"}
        Quantity of ``indent_E`` and ``map_grids`` (phase reference means and
        the reported marginal).

    Returns
    -------
    pandas.DataFrame
        One row per source and component, sources in input order with
        ``"indentation"`` first: ``source, component, phase, fraction, mean,
        std, n`` (values fitted), ``method`` and the differences to the
        indentation row of the same phase ``d_fraction, d_mean, d_std``
        (NaN for the indentation rows and for phases the indentation fit
        does not name), and ``w1_GPa``: the 1-Wasserstein (earth mover's)
        distance between the source's values and the indents' values
        (:func:`scipy.stats.wasserstein_distance`; GPa, 0 for the indents),
        a comparison of the whole histograms that does not depend on how the
        mixture components were fitted and named.

    Notes
    -----
    A map is a field of predicted conditional means, so its histogram is
    narrower than that of the measurements (the measurement scatter and what
    the crop does not explain are averaged out); its components come out
    sharper than the indents' and its phases can be named differently when
    components overlap. ``w1_GPa`` and the histograms show this directly.

    Raises
    ------
    InputError
        If a source has too few finite values for the mixture, or a hardness
        map differs in shape from its modulus map.
    """
    rng = np.random.default_rng(int(seed))
    sources = [(INDENTATION, indent_E, indent_H)]
    for name, grid in map_grids.items():
        grid_h = None if map_grids_H is None else map_grids_H.get(name)
        sources.append((str(name), grid, grid_h))
    blocks = []
    for name, values, values_h in sources:
        v, vh = _source_values(name, values, values_h, quantity, max_values, rng)
        t, method = _fit_source(v, vh, f"{quantity} of {name}", quantity, n_components, seed,
                                n_init)
        t.insert(0, "source", name)
        t["n"] = int(v.size)
        t["method"] = method
        if name == INDENTATION:
            indent_values = v
        t["w1_GPa"] = wasserstein_distance(v, indent_values)
        blocks.append(t)
    table = _with_differences(pd.concat(blocks, ignore_index=True))
    return table[[c for c in table.columns if c != "w1_GPa"] + ["w1_GPa"]]


def _source_values(name, values, values_h, quantity, max_values, rng):
    """Finite values (and H values, or None) of one source, a map's subsampled to ``max_values``."""
    v = np.asarray(values, dtype=float).ravel()
    vh = None
    if values_h is not None:
        vh = np.asarray(values_h, dtype=float).ravel()
        if vh.shape != v.shape:
            raise InputError(f"compare_statistics: {name}: {vh.size} H values for "
                             f"{v.size} {quantity} values")
        ok = np.isfinite(v) & np.isfinite(vh)
        v, vh = v[ok], vh[ok]
    else:
        v = v[np.isfinite(v)]
    if name != INDENTATION and max_values is not None and v.size > int(max_values):
        pick = np.sort(rng.choice(v.size, int(max_values), replace=False))
        v = v[pick]
        vh = vh[pick] if values_h is not None else None
    return v, vh


def _fit_source(v, vh, what, quantity, n_components, seed, n_init):
    """Mixture components of one source (joint E-H when ``vh`` is given) and the method name."""
    n_distinct = np.unique(v).size
    if n_distinct < 5 * int(n_components):
        log.warning("%s: only %d distinct values (a table-model map takes one value per "
                    "grey bin); its mixture components are degenerate", what, n_distinct)
    if vh is not None:
        e, h = (v, vh) if quantity == "E_GPa" else (vh, v)
        t = marginal(deconvolve_joint(e, h, n_components=n_components, seed=seed,
                                      n_init=n_init, what=what), quantity)
        method = "joint E-H"
    else:
        t = deconvolve(v, n_components=n_components, seed=seed, n_init=n_init,
                       quantity=quantity, what=what)
        method = f"{quantity} only"
    return t[["component", "phase", "fraction", "mean", "std"]].copy(), method


def _with_differences(table):
    """Add ``d_fraction, d_mean, d_std``: each row minus the indentation row of its phase."""
    ref = table[(table["source"] == INDENTATION) & ~table["phase"].str.startswith("extra")]
    ref = ref.set_index("phase")[["fraction", "mean", "std"]]
    for col in ("fraction", "mean", "std"):
        base = table["phase"].map(ref[col]).to_numpy(float)
        diff = table[col].to_numpy(float) - base
        diff[(table["source"] == INDENTATION).to_numpy()] = np.nan
        table[f"d_{col}"] = diff
    return table
