"""Calibration of a BSE grey mosaic into backscatter-coefficient or porosity maps.

The backscattered-electron detector is taken as linear in the backscatter
coefficient ``eta`` over the grey range of a polished section, so two
reference phases of known ``eta`` fix the grey -> eta line
(:func:`grey_to_eta`). Their grey levels come from the modes of the grey
histogram (:func:`find_reference_greys`, :func:`darkest_mode`,
:func:`brightest_mode`), or the whole line is fitted to the histogram as a
mixture of one Gaussian per phase whose means lie on it
(:func:`fit_detector_line`); the reference ``eta`` come from the Monte Carlo
tables (:func:`reference_eta`).

For a specimen whose pores were intruded with Field's metal, ``eta`` of a
pixel grows monotonically with the metal-filled (nano)porosity ``n`` of the
C-S-H it samples, and a Monte Carlo table ``eta(n)`` inverts ``eta`` into
``n`` (:func:`eta_to_porosity`). This follows the calibration of
nanoporosity maps of graphene-oxide cement pastes intruded with Field's metal
in the supporting information (section 1) of the seed paper: grey levels are
referred to two phases of known backscatter coefficient, and the resulting
``eta`` is converted to an equivalent porosity with the simulated ``eta(n)``
of C-S-H/Field's metal mixtures (n = 0: solid C-S-H, n = 1: Field's metal).

Two map scales are produced (seed paper, "MulF" and "MicF" inputs) by
:func:`calibrate_mosaic`: the full-resolution map ``MulF`` and its Gaussian
blur ``MicF`` (standard deviation ``micf_sigma_px``), which mimics a coarser
interaction volume.
"""
from __future__ import annotations

import logging
import re

import numpy as np
from scipy import ndimage, signal

from .. import io as mio
from ..errors import InputError
from ..progress import progress

log = logging.getLogger(__name__)

#: Truncation of the Gaussian kernel, in standard deviations (scipy's default).
GAUSS_TRUNCATE = 4.0


def _sample_pixels(image, max_samples):
    """Flat float64 sample of ``image`` (strided, deterministic, bounded memory)."""
    shape = image.shape
    n = int(np.prod(shape))
    if n == 0:
        raise InputError("find_reference_greys: empty image")
    if isinstance(image, np.ndarray) and n <= max_samples:
        return image.astype(np.float64).ravel()
    step = max(1, int(np.ceil(np.sqrt(n / max_samples)))) if image.ndim == 2 else 1
    if image.ndim == 2:
        sample = np.asarray(image[::step, ::step])
    else:
        sample = np.asarray(image).ravel()
        sample = sample[:: max(1, sample.size // max_samples)]
    return sample.astype(np.float64).ravel()


def _mode_sample(image_or_sample, max_samples, exclude_values):
    """Finite float64 grey sample without ``exclude_values``, with its min and max.

    Raises InputError below 10 usable pixels or on a constant sample.
    """
    x = _sample_pixels(image_or_sample, max_samples)
    x = x[np.isfinite(x)]
    if exclude_values is not None:
        x = x[~np.isin(x, np.asarray(list(exclude_values), dtype=np.float64))]
    if x.size < 10:
        raise InputError(f"find_reference_greys: only {x.size} usable pixels; need at least 10")
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        raise InputError(f"find_reference_greys: constant image (all pixels {lo}); no modes")
    return x, lo, hi


def _padded_histogram(x, lo, hi, smooth_sigma):
    """Histogram of ``x`` (a bin per level for integer greys, else 512 bins), padded with empty bins.

    Returns ``(hist, centers, step)``: counts and bin centres, both padded by
    ``int(4 * smooth_sigma) + 2`` bins on each side, and the bin width.
    """
    integer = hi - lo <= 4096 and np.allclose(x, np.round(x))
    levels, counts = np.unique(x, return_counts=True) if integer else (None, None)
    if integer and (hi - lo) / max(levels.size - 1, 1) > 1.05:
        # a gain above 1 leaves empty levels between the populated ones: one bin per populated
        # level (the histogram the detector would have given at gain 1), centred on the level
        centers, hist = levels, counts
    else:
        edges = np.arange(lo - 0.5, hi + 1.5, 1.0) if integer else np.linspace(lo, hi, 513)
        hist, edges = np.histogram(x, bins=edges)
        centers = 0.5 * (edges[:-1] + edges[1:])
    # empty bins padded on both sides so that a mode at the end of the range
    # (saturated pores at 0, a fill value) is still a peak for find_peaks
    pad = int(4 * smooth_sigma) + 2
    step = (centers[-1] - centers[0]) / (centers.size - 1) if centers.size > 1 else 1.0
    centers = np.concatenate([centers[0] - step * np.arange(pad, 0, -1), centers,
                              centers[-1] + step * np.arange(1, pad + 1)])
    hist = np.pad(hist, pad)
    return hist, centers, step


def _prominent_peaks(hist, smooth_sigma, min_prominence):
    """Gaussian-smoothed histogram (float64) and its peak bins, most prominent first."""
    smooth = ndimage.gaussian_filter1d(hist.astype(np.float64), smooth_sigma, mode="constant")
    peaks, props = signal.find_peaks(smooth, prominence=min_prominence * smooth.max())
    order = np.argsort(props["prominences"])[::-1]
    return smooth, peaks[order]


def _peak_modes(x, peaks, smooth, centers, step, n_modes):
    """Modes at the smoothed-histogram peaks, refined by a parabola: ``(grey, sigma, weight)``.

    ``sigma`` is NaN; ``weight`` is the fraction of ``x`` nearest to each mode.
    """
    if n_modes is not None and peaks.size < n_modes:
        raise InputError(f"find_reference_greys: found {peaks.size} histogram peaks, "
                         f"expected {n_modes}; lower min_prominence or use method='gmm'")
    peaks = np.sort(peaks)
    grey = []
    for p in peaks:
        if 0 < p < smooth.size - 1:
            y0, y1, y2 = smooth[p - 1: p + 2]
            den = y0 - 2 * y1 + y2
            off = 0.5 * (y0 - y2) / den if den != 0 else 0.0
        else:
            off = 0.0
        grey.append(centers[p] + off * step)
    grey = np.asarray(grey)
    nearest = np.argmin(np.abs(x[:, None] - grey[None, :]), axis=1)
    weight = np.bincount(nearest, minlength=grey.size) / x.size
    sigma = np.full(grey.size, np.nan)
    return grey, sigma, weight


def _mixture_modes(x, peaks, centers, n_modes, gmm_samples, random_state):
    """Modes of a 1D Gaussian mixture started at the peaks: ``(grey, sigma, weight)``, dark to bright."""
    from sklearn.mixture import GaussianMixture

    n = n_modes if n_modes is not None else peaks.size
    init = list(centers[peaks])
    if len(init) < n:
        extra = np.quantile(x, (np.arange(n - len(init)) + 0.5) / (n - len(init)))
        init += list(extra)
    gmm = GaussianMixture(n_components=n, means_init=np.asarray(init)[:, None],
                          random_state=random_state, max_iter=200, tol=1e-4)
    # the mixture is fitted to at most gmm_samples pixels (cost bound; the
    # standard error of a mode's mean is sigma / sqrt(weight * gmm_samples))
    xs = x if x.size <= gmm_samples else np.random.default_rng(random_state).choice(
        x, int(gmm_samples), replace=False)
    gmm.fit(xs[:, None])
    if not gmm.converged_:
        log.warning("grey-mode mixture did not converge in %d iterations", gmm.n_iter_)
    grey = gmm.means_[:, 0]
    sigma = np.sqrt(gmm.covariances_.reshape(n))
    weight = gmm.weights_
    o = np.argsort(grey)
    return grey[o], sigma[o], weight[o]


def _unsaturated(x, lo, hi, spike=0.001, ratio=3.0):
    """``x`` without its range ends when they are spikes: saturated pixels.

    An end value is a spike when it holds more than ``spike`` of the sample
    and more than ``ratio`` times the median count of the five populated
    levels next to it. Returns ``(x, ends)``, ``ends`` the saturated end
    values left out.
    """
    keep = np.ones(x.size, bool)
    ends = []
    levels, counts = np.unique(x, return_counts=True)
    for end, nxt in ((lo, counts[1:6]), (hi, counts[-6:-1])):
        at = x == end
        if at.mean() > spike and nxt.size and at.sum() > ratio * np.median(nxt):
            keep &= ~at
            ends.append(end)
            log.warning("grey modes: %.1f %% of the pixels sit at %g (saturated detector); they are "
                        "left out of the mode positions", 100 * at.mean(), end)
    return (x[keep], ends) if keep.any() else (x, [])


def _mean_shift_modes(x, grey, sigma, saturated=(), max_iter=100):
    """Each mode moved to the local density maximum: mean-shift with a flat window of +-sigma.

    The mixture's means are pulled by the far tails of skewed or truncated
    (saturated) components; the mean of the pixels within one standard
    deviation, iterated, converges to the peak itself, and scales with the
    detector's gain and offset. Near a saturated end value the window is
    narrowed to stay symmetric about the mode inside the unsaturated range.
    """
    out = []
    for m, h0 in zip(np.asarray(grey, float), np.asarray(sigma, float)):
        if not np.isfinite(h0) or h0 <= 0:
            out.append(m)
            continue
        for _ in range(max_iter):
            h = h0
            for end in saturated:
                h = min(h, max(abs(end - m) - 1.0, 0.5))
            w = x[(x >= m - h) & (x <= m + h)]
            if w.size == 0:
                break
            m2 = float(w.mean())
            if abs(m2 - m) < 1e-3 * h:
                m = m2
                break
            m = m2
        out.append(m)
    return np.asarray(out)


def find_reference_greys(image_or_sample, n_modes=None, method="gmm", max_samples=400_000,
                         gmm_samples=50_000, smooth_sigma=2.0, min_prominence=0.02,
                         exclude_values=None, random_state=0):
    """Find the modes (phase peaks) of a grey-level histogram.

    Candidate modes are the peaks of the histogram smoothed with a Gaussian
    (``scipy.signal.find_peaks`` with a relative prominence threshold). With
    ``method="gmm"`` (default) they initialise a 1D Gaussian mixture
    (``sklearn.mixture.GaussianMixture``) fitted to a pixel subsample, whose
    standard deviations and weights are returned, and whose means are moved
    to the local density maximum by a mean-shift within one standard
    deviation (:func:`_mean_shift_modes`), leaving out saturated pixels at
    the ends of the range: so that a skewed or clipped phase peak does not
    pull its mode, and the modes follow a change of detector gain and
    offset. With ``method="peaks"`` the peak
    positions of the smoothed histogram are returned, refined to sub-bin
    precision by a parabola through the three highest bins.

    Parameters
    ----------
    image_or_sample : array-like
        Grey image ``(H, W)`` (numpy or zarr; a zarr array is read strided,
        so memory stays bounded) or a 1D sample of grey values. Any dtype.
    n_modes : int, optional
        Number of modes. ``None``: as many as significant histogram peaks.
        When fewer peaks than ``n_modes`` are found, the missing mixture
        components start at evenly spaced quantiles (``method="gmm"`` only).
    method : {"gmm", "peaks"}
    max_samples : int
        Maximum number of pixels in the histogram (strided subsample).
    gmm_samples : int
        Maximum number of those pixels the mixture is fitted to (a seeded
        random subset);
        bounds the cost (a few seconds at worst, on a histogram without clear
        modes).
    smooth_sigma : float
        Standard deviation of the histogram smoothing, in bins. Integer
        greys get one bin per level; when the populated levels are spaced
        more than one apart (an image recorded with a detector gain above 1
        and quantised to integers), one bin per populated level, as unit
        bins would give a comb histogram with spurious peaks.
    min_prominence : float
        Minimum peak prominence as a fraction of the highest smoothed bin.
    exclude_values : sequence of float, optional
        Grey values left out of the histogram (e.g. a mosaic's fill value in
        gaps between tiles).
    random_state : int
        Seed of the mixture fit (deterministic result).

    Returns
    -------
    dict
        ``grey`` (float64 array, modes sorted from dark to bright),
        ``sigma`` (their standard deviations, grey levels; NaN for
        ``method="peaks"``), ``weight`` (mixture weights, or the fraction of
        sampled pixels nearest to each peak for ``"peaks"``), ``method``,
        ``n_samples``, ``bin_centers`` and ``hist`` (the raw histogram of the
        sample, for plotting).

    Raises
    ------
    InputError
        If the sample is empty, constant, or no mode can be found.
    """
    x, lo, hi = _mode_sample(image_or_sample, int(max_samples), exclude_values)
    # saturated pixels: no grey information, and a spike of their own
    x, saturated = _unsaturated(x, lo, hi)
    hist, centers, step = _padded_histogram(x, float(x.min()), float(x.max()), smooth_sigma)
    smooth, peaks = _prominent_peaks(hist, smooth_sigma, min_prominence)
    if saturated:
        # a peak cut by the saturation ends in a cliff, not a maximum: no mode at that edge
        near = np.zeros(peaks.size, bool)
        for end in saturated:
            near |= np.abs(centers[peaks] - end) <= (2 * smooth_sigma + 1) * step
        peaks = peaks[~near]
    if n_modes is not None:
        n_modes = int(n_modes)
        if n_modes < 1:
            raise InputError(f"find_reference_greys: n_modes must be >= 1, got {n_modes}")
        peaks = peaks[:n_modes]
    if peaks.size == 0 and n_modes is None:
        raise InputError("find_reference_greys: no histogram peak above the prominence threshold")

    if method == "peaks":
        grey, sigma, weight = _peak_modes(x, peaks, smooth, centers, step, n_modes)
    elif method == "gmm":
        grey, sigma, weight = _mixture_modes(x, peaks, centers, n_modes, gmm_samples, random_state)
        grey = _mean_shift_modes(x, grey, sigma, saturated)
    else:
        raise InputError(f"find_reference_greys: method must be 'gmm' or 'peaks', got {method!r}")
    log.info("grey modes (%s): %s", method,
             ", ".join(f"{g:.1f} (w={w:.3f})" for g, w in zip(grey, weight)))
    return {"grey": np.asarray(grey, np.float64), "sigma": np.asarray(sigma, np.float64),
            "weight": np.asarray(weight, np.float64), "method": method,
            "n_samples": int(x.size), "bin_centers": centers, "hist": hist}


def _significant(modes, min_weight):
    grey = np.asarray(modes["grey"])
    weight = np.asarray(modes["weight"])
    keep = weight >= min_weight
    if not keep.any():
        raise InputError(f"no histogram mode with weight >= {min_weight}; "
                         f"weights {weight.tolist()}")
    return grey[keep]


def darkest_mode(modes, min_weight=0.02):
    """Grey level of the darkest mode holding at least ``min_weight`` of the pixels.

    Parameters
    ----------
    modes : dict
        Result of :func:`find_reference_greys`.
    min_weight : float
        Minimum mixture weight (pixel fraction) of a significant mode.

    Returns
    -------
    float
    """
    return float(_significant(modes, min_weight).min())


def brightest_mode(modes, min_weight=0.02):
    """Grey level of the brightest mode holding at least ``min_weight`` of the pixels.

    See :func:`darkest_mode`.
    """
    return float(_significant(modes, min_weight).max())


def _line_sample(image_or_sample, max_samples, n_fit, exclude_values, seed):
    """Finite float64 grey sample for the detector-line fit, at most ``n_fit`` values (seeded subset)."""
    x = _sample_pixels(image_or_sample, max_samples) if np.ndim(image_or_sample) != 1 \
        else np.asarray(image_or_sample, np.float64)
    if exclude_values is not None:
        x = x[~np.isin(x, np.asarray(exclude_values, np.float64))]
    x = x[np.isfinite(x)]
    if x.size > n_fit:
        x = np.random.default_rng(seed).choice(x, n_fit, replace=False)
    return x


def _initial_line(x, eta, init):
    """Starting ``(offset, gain)``: ``init``, or the 1st/99th grey percentiles on the eta extremes."""
    if init is None:
        lo, hi = np.percentile(x, [1, 99])
        gain = (hi - lo) / np.ptp(eta)
        offset = lo - gain * eta.min()
    else:
        offset, gain = (float(v) for v in init)
    return offset, gain


def _line_e_step(x, count, eta, offset, gain, weight, sigma):
    """Responsibilities ``r`` (U, K) of the phases for the distinct values ``x`` (U,), each
    seen ``count`` times, and the mean log-likelihood per sample."""
    mu = offset + gain * eta
    logp = (np.log(weight) - np.log(sigma) - 0.5 * np.log(2 * np.pi)
            - 0.5 * ((x[:, None] - mu) / sigma) ** 2)
    m = logp.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(logp - m).sum(axis=1))
    r = np.exp(logp - lse[:, None])
    return r, float((count * lse).sum() / count.sum())


def _line_m_step(x, count, eta, r, sigma):
    """Updated ``(offset, gain, weight, sigma)`` from responsibilities ``r`` (U, K) of the
    distinct values ``x`` seen ``count`` times (the samples' EM, in their multiplicity)."""
    rc = r * count[:, None]
    # weighted least squares of x ~ offset + gain * eta_k
    w = rc / sigma ** 2
    sw, swe, swe2 = w.sum(), (w * eta).sum(), (w * eta ** 2).sum()
    swx, swex = (w * x[:, None]).sum(), (w * eta * x[:, None]).sum()
    det = sw * swe2 - swe ** 2
    offset = (swe2 * swx - swe * swex) / det
    gain = (sw * swex - swe * swx) / det
    nk = rc.sum(axis=0) + 1e-12
    weight = np.maximum(nk / count.sum(), 1e-6)
    weight /= weight.sum()
    mu = offset + gain * eta
    sigma = np.sqrt(np.maximum((rc * (x[:, None] - mu) ** 2).sum(axis=0) / nk, 0.25))
    return offset, gain, weight, sigma


def fit_detector_line(image_or_sample, phase_eta, max_samples=400_000, n_fit=100_000,
                      init=None, max_iter=500, tol=1e-7, exclude_values=None, seed=0):
    """Fit the linear detector ``grey = offset + gain * eta`` to a BSE histogram.

    The grey histogram is modelled as a mixture of one Gaussian per phase
    whose mean is tied to the phase's Monte Carlo backscatter coefficient,
    ``mu_k = offset + gain * eta_k``; the mixture weights and widths are free.
    Expectation-maximisation alternates responsibilities with a weighted
    least-squares update of ``(offset, gain)`` (the means' constraint is
    linear, so the M-step is a 2 x 2 normal system) and the usual weight and
    variance updates. All phases inform the line, so phases whose modes merge
    in the histogram (CH and clinker, LD- and HD-C-S-H) still place it
    correctly, where the darkest and brightest modes alone would not.
    The linear detector is the assumption of the seed's supporting
    section 1 (grey proportional to eta through two reference phases).
    EM runs on the sample's distinct grey values weighted by their counts,
    which gives the iterates of EM on the samples themselves at the cost of
    the number of distinct values (at most 256 for an 8-bit detector).

    Parameters
    ----------
    image_or_sample : array-like
        2D grey image (numpy or zarr; strided subsample) or a 1D sample.
    phase_eta : dict
        Phase name -> eta (at least two phases with different eta).
    max_samples, n_fit : int
        Pixels read from the image, and pixels (random subset) used by EM.
    init : tuple of float, optional
        Initial ``(offset, gain)``; default from the 1st and 99th percentiles
        mapped onto the smallest and largest eta.
    max_iter : int
    tol : float
        Convergence on the mean log-likelihood.
    exclude_values : sequence of float, optional
        Grey values left out (e.g. the mosaic's fill value).
    seed : int

    Returns
    -------
    dict
        ``offset``, ``gain`` (grey per unit eta), ``phases``, ``eta``,
        ``weight``, ``sigma`` (grey), ``grey`` (fitted mean grey of each
        phase), ``log_likelihood``, ``n_iter``, ``n_samples``.

    Raises
    ------
    InputError
        With fewer than two phases, equal etas, or a non-positive fitted gain.
    """
    names = list(phase_eta)
    eta = np.array([float(phase_eta[n]) for n in names])
    if len(names) < 2 or np.ptp(eta) <= 0:
        raise InputError(f"fit_detector_line: need two or more phases of different eta, got {phase_eta}")
    x = _line_sample(image_or_sample, max_samples, n_fit, exclude_values, seed)
    offset, gain = _initial_line(x, eta, init)
    k = eta.size
    weight = np.full(k, 1.0 / k)
    sigma = np.full(k, max(np.std(x) / (2 * k), 1e-3))
    # EM on the distinct grey values with their counts: the same iterates as on
    # the samples (a detector's 8/16-bit greys take at most 256/65536 values,
    # so an iteration costs that much instead of n_fit samples)
    xu, count = np.unique(x, return_counts=True)
    count = count.astype(np.float64)
    prev = -np.inf
    for it in range(1, max_iter + 1):
        r, ll = _line_e_step(xu, count, eta, offset, gain, weight, sigma)
        offset, gain, weight, sigma = _line_m_step(xu, count, eta, r, sigma)
        if abs(ll - prev) < tol:
            break
        prev = ll
    if gain <= 0:
        raise InputError(f"fit_detector_line: fitted gain {gain:.3g} <= 0; the histogram does "
                         "not follow the phases' eta order; give calibration.reference_greys")
    return {"offset": float(offset), "gain": float(gain), "phases": names, "eta": eta.tolist(),
            "weight": weight.tolist(), "sigma": sigma.tolist(),
            "grey": (offset + gain * eta).tolist(), "log_likelihood": ll, "n_iter": it,
            "n_samples": int(x.size)}


def _check_refs(grey_refs, eta_refs):
    try:
        g1, g2 = (float(v) for v in grey_refs)
        e1, e2 = (float(v) for v in eta_refs)
    except (TypeError, ValueError) as exc:
        raise InputError(f"grey_refs and eta_refs must be two numbers each; got "
                         f"{grey_refs!r}, {eta_refs!r}") from exc
    if not np.all(np.isfinite([g1, g2, e1, e2])):
        raise InputError(f"non-finite reference: grey_refs={grey_refs}, eta_refs={eta_refs}")
    if g1 == g2:
        raise InputError(f"the two reference grey levels are equal ({g1}); "
                         "the detector line is undefined")
    if e1 == e2:
        raise InputError(f"the two reference eta values are equal ({e1}); "
                         "choose two phases of different backscatter coefficient")
    if (g2 - g1) * (e2 - e1) < 0:
        raise InputError(f"reference greys {grey_refs} and eta {eta_refs} are in opposite order: "
                         "the brighter phase must have the larger eta")
    return g1, g2, e1, e2


def grey_to_eta(grey, grey_refs, eta_refs, clip=True):
    """Convert grey levels to backscatter coefficient with a linear detector.

    ``eta = e1 + (grey - g1) * (e2 - e1) / (g2 - g1)``: two reference phases
    of known backscatter coefficient (``e1``, ``e2``) at grey levels ``g1``,
    ``g2`` fix the line (seed paper, supporting section 1; a BSE detector
    with fixed brightness/contrast is linear in eta).

    Parameters
    ----------
    grey : array-like, any shape
        Grey levels (uint8, uint16 or float).
    grey_refs : (float, float)
        Grey levels of the two reference phases.
    eta_refs : (float, float)
        Their backscatter coefficients (dimensionless, 0..1).
    clip : bool
        Clip the result to the physical range [0, 1] (extrapolated pixels,
        e.g. zero-filled gaps between tiles, would otherwise go negative).

    Returns
    -------
    numpy.ndarray, same shape, float32
        Backscatter coefficient (dimensionless).

    Raises
    ------
    InputError
        If the references are not two finite numbers each, the two greys or
        the two eta are equal, or their orders disagree.
    """
    g1, g2, e1, e2 = _check_refs(grey_refs, eta_refs)
    slope = (e2 - e1) / (g2 - g1)
    eta = e1 + (np.asarray(grey, dtype=np.float64) - g1) * slope
    if clip:
        np.clip(eta, 0.0, 1.0, out=eta)
    return eta.astype(np.float32)


def _table_arrays(eta_table):
    """(n, eta) float64 arrays from a DataFrame/dict with columns n, eta or an (N, 2) array."""
    try:
        if hasattr(eta_table, "columns") or isinstance(eta_table, dict):
            n = np.asarray(eta_table["n"], dtype=np.float64)
            eta = np.asarray(eta_table["eta"], dtype=np.float64)
        else:
            arr = np.asarray(eta_table, dtype=np.float64)
            n, eta = arr[:, 0], arr[:, 1]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise InputError(f"eta table must have columns 'n' and 'eta' ({exc})") from exc
    if n.size < 2:
        raise InputError(f"eta table has {n.size} row(s); need at least 2 (n = 0 and n = 1)")
    if not (np.all(np.isfinite(n)) and np.all(np.isfinite(eta))):
        raise InputError("eta table has non-finite n or eta values")
    o = np.argsort(n)
    return n[o], eta[o]


def eta_at_porosity(eta_table, n):
    """Backscatter coefficient of the table at porosity ``n`` (linear interpolation).

    Parameters
    ----------
    eta_table : DataFrame or dict with columns ``n``, ``eta``
    n : float or array-like, in [0, 1]

    Returns
    -------
    float or numpy.ndarray (float64)
    """
    tn, te = _table_arrays(eta_table)
    return np.interp(n, tn, te)


def eta_to_porosity(eta, eta_table, clinker_mask=None, monotone="raise"):
    """Invert the Monte Carlo table eta(n) into an equivalent porosity map.

    ``n(eta)`` is the piecewise-linear inverse of the tabulated, monotone
    ``eta(n)`` of C-S-H/Field's-metal mixtures (seed paper, supporting
    section 1). Pixels darker than ``eta(0)`` (solid C-S-H) get ``n = 0``,
    pixels brighter than ``eta(1)`` (Field's metal) get ``n = 1``; clinker
    pixels (``clinker_mask``), which are bright but not porous, get ``n = 0``.
    NaN eta stays NaN.

    Parameters
    ----------
    eta : array-like, any shape
        Backscatter coefficient map.
    eta_table : DataFrame or dict with columns ``n`` (0..1) and ``eta``
        (e.g. ``results/backscatter/eta_table.csv``).
    clinker_mask : array-like of bool, same shape as ``eta``, optional
        True on anhydrous clinker.
    monotone : {"raise", "isotonic"}
        What to do when the tabulated eta(n) is not strictly monotone (Monte
        Carlo noise): raise, or replace it by its isotonic (least-squares
        monotone, ``sklearn.isotonic.IsotonicRegression``) fit, weighted by
        ``1/eta_err**2`` when the table has ``eta_err``.

    Returns
    -------
    numpy.ndarray, same shape, float32
        Equivalent porosity in [0, 1].

    Raises
    ------
    InputError
        If the table lacks columns, has fewer than two rows, does not span
        n = 0..1 or is not monotone (``monotone="raise"``); if the mask's
        shape differs from the map's.
    """
    tn, te = _table_arrays(eta_table)
    if tn[0] > 0 or tn[-1] < 1 or tn[0] < 0 or tn[-1] > 1:
        raise InputError(f"eta table must span n = 0..1 exactly; it spans {tn[0]}..{tn[-1]}")
    d = np.diff(te)
    if not (np.all(d > 0) or np.all(d < 0)):
        if monotone == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            w = None
            if hasattr(eta_table, "columns") and "eta_err" in eta_table.columns:
                err = np.asarray(eta_table.sort_values("n")["eta_err"], dtype=np.float64)
                if np.all(err > 0):
                    w = 1.0 / err ** 2
            inc = te[-1] >= te[0]
            te = IsotonicRegression(increasing=inc).fit(tn, te, sample_weight=w).predict(tn)
            # isotonic fits are flat where the data disagree: one knot per flat run,
            # at the run's mean n (at n = 0 / n = 1 for the end runs)
            run = np.r_[0, np.cumsum(np.diff(te) != 0)]
            knots_n = np.array([tn[run == r].mean() for r in range(run[-1] + 1)])
            knots_n[0], knots_n[-1] = tn[0], tn[-1]
            te = np.array([te[run == r][0] for r in range(run[-1] + 1)])
            tn = knots_n
            if tn.size < 2:
                raise InputError("eta table: the isotonic fit of eta(n) is constant")
            log.warning("eta table not monotone: replaced by its isotonic fit (%d knots)", tn.size)
        else:
            raise InputError("eta table: eta(n) is not strictly monotone in n "
                             "(Monte Carlo noise?); "
                             "increase the electrons per point or use monotone='isotonic'")
    if te[-1] < te[0]:
        te, tn = te[::-1], tn[::-1]
    eta = np.asarray(eta, dtype=np.float64)
    n = np.interp(eta, te, tn)  # clamps to the end values outside the table
    n[np.isnan(eta)] = np.nan
    if clinker_mask is not None:
        clinker_mask = np.asarray(clinker_mask, dtype=bool)
        if clinker_mask.shape != eta.shape:
            raise InputError(f"clinker mask shape {clinker_mask.shape} != map shape {eta.shape}")
        n[clinker_mask] = 0.0
    return n.astype(np.float32)


def clinker_mask_from_grey(grey, window):
    """Boolean clinker mask from a grey window ``lo <= grey <= hi``.

    Parameters
    ----------
    grey : array-like, any shape
    window : (float, float) or None
        Inclusive grey window of anhydrous clinker; None gives None.

    Returns
    -------
    numpy.ndarray of bool or None

    Raises
    ------
    InputError
        If the window is not two numbers with ``lo <= hi``.
    """
    if window is None:
        return None
    try:
        lo, hi = (float(v) for v in window)
    except (TypeError, ValueError) as exc:
        raise InputError(f"clinker_grey_window must be null or [lo, hi]; got {window!r}") from exc
    if lo > hi:
        raise InputError(f"clinker_grey_window [{lo}, {hi}]: lo > hi")
    grey = np.asarray(grey)
    return (grey >= lo) & (grey <= hi)


def reference_eta(phases, phase_eta, eta_table=None, source="phase_eta.csv"):
    """Backscatter coefficients of the two named reference phases.

    A name is looked up in the ``phase`` column of ``phase_eta`` (e.g.
    ``pore``, ``ACC``, a ``Field's metal`` row); a name of the form
    ``n=<value>`` reads the C-S-H/Field's-metal table at that porosity
    (``n=0``: solid C-S-H, ``n=1``: Field's metal).

    Parameters
    ----------
    phases : sequence of str
        Reference phase names.
    phase_eta : DataFrame with columns ``phase``, ``eta``
    eta_table : DataFrame with columns ``n``, ``eta``, optional
    source : str
        File name used in error messages.

    Returns
    -------
    list of float

    Raises
    ------
    InputError
        If a name is in neither table.
    """
    out = []
    known = list(phase_eta["phase"]) if phase_eta is not None else []
    for name in phases:
        m = re.fullmatch(r"\s*n\s*=\s*([0-9.eE+-]+)\s*", str(name))
        if m is not None:
            if eta_table is None:
                raise InputError(f"reference phase {name!r} needs the eta table")
            val = float(m.group(1))
            if not 0 <= val <= 1:
                raise InputError(f"reference phase {name!r}: n must lie in [0, 1]")
            out.append(float(eta_at_porosity(eta_table, val)))
        elif name in known:
            rows = phase_eta[phase_eta["phase"] == name]
            out.append(float(rows["eta"].iloc[0]))
        else:
            raise InputError(f"{source}: reference phase {name!r} not found; available phases "
                             f"{known} or 'n=<porosity>' from the eta table")
    return out


def _calibrate_block(grey, mode, grey_refs, eta_refs, eta_table, clinker_grey_window):
    """``MulF`` values (float64) of one grey block: eta, or porosity with clinker at n = 0."""
    eta = grey_to_eta(grey, grey_refs, eta_refs)
    if mode == "eta":
        return eta.astype(np.float64)
    mask = clinker_mask_from_grey(grey, clinker_grey_window)
    return eta_to_porosity(eta, eta_table, clinker_mask=mask).astype(np.float64)


def _check_calibration(mosaic, mode, grey_refs, eta_refs, eta_table, micf_sigma_px):
    """Validated blur sigma (px) and references ``(g1, g2, e1, e2)``; raises InputError."""
    if mode not in ("eta", "porosity"):
        raise InputError(f"calibration mode must be 'eta' or 'porosity', got {mode!r}")
    if mode == "porosity" and eta_table is None:
        raise InputError("calibration mode 'porosity' needs the eta table (n, eta)")
    sigma = float(micf_sigma_px)
    if not sigma > 0:
        raise InputError(f"micf_sigma_px must be > 0, got {micf_sigma_px}")
    refs = _check_refs(grey_refs, eta_refs)
    if mosaic.ndim != 2:
        raise InputError(f"mosaic must be 2D, got shape {mosaic.shape}")
    return sigma, refs


def _block_layout(mosaic, chunk, sigma):
    """Output chunk edge, processing block edge (a multiple of it) and blur kernel radius, px."""
    out_chunk = int(getattr(mosaic, "chunks", (chunk, chunk))[0]) if not isinstance(
        mosaic, np.ndarray) else int(chunk)
    block = int(np.ceil(max(int(chunk), 1) / out_chunk)) * out_chunk
    radius = int(GAUSS_TRUNCATE * sigma + 0.5)  # scipy's kernel radius
    return out_chunk, block, radius


def _calibration_attrs(mosaic, mode, refs, sigma, clinker_grey_window, extra_attrs):
    """Attrs of the calibrated group: quantity, references, blur, source pixel size and origin."""
    g1, g2, e1, e2 = refs
    src_attrs = dict(getattr(mosaic, "attrs", {}) or {})
    attrs = {
        "quantity": mode, "units": "1",
        "grey_refs": [g1, g2], "eta_refs": [e1, e2],
        "sigma": sigma, "micf_sigma_px": sigma, "gauss_truncate": GAUSS_TRUNCATE,
        "clinker_grey_window": None if clinker_grey_window is None else
        [float(v) for v in clinker_grey_window],
        "pixel_size_nm": src_attrs.get("pixel_size_nm"),
        "origin_um": src_attrs.get("origin_um"),
    }
    if extra_attrs:
        attrs.update(extra_attrs)
    return attrs


def _create_calibrated_group(path, attrs, shape, out_chunk, sigma):
    """Create the zarr group with its empty float32 ``MulF`` and ``MicF`` arrays."""
    grp = mio.create_group(path)
    grp.attrs.update(mio.jsonable(attrs))
    arr_attrs = mio.jsonable(attrs)  # each array carries the calibration too
    mulf = mio.create_group_array(grp, "MulF", shape, np.float32, chunk=out_chunk,
                                  attrs={**arr_attrs, "scale": "MulF"})
    micf = mio.create_group_array(grp, "MicF", shape, np.float32, chunk=out_chunk,
                                  attrs={**arr_attrs, "scale": "MicF", "sigma": sigma})
    return mulf, micf


def _write_calibrated_block(mosaic, mulf, micf, sy, sx, radius, sigma, mode, refs, eta_table,
                            clinker_grey_window):
    """Calibrate block ``(sy, sx)`` read with a halo of ``radius`` px; write its MulF and MicF."""
    h, w = (int(s) for s in mosaic.shape)
    g1, g2, e1, e2 = refs
    y0, y1 = max(sy.start - radius, 0), min(sy.stop + radius, h)
    x0, x1 = max(sx.start - radius, 0), min(sx.stop + radius, w)
    grey = np.asarray(mosaic[y0:y1, x0:x1])
    val = _calibrate_block(grey, mode, (g1, g2), (e1, e2), eta_table, clinker_grey_window)
    iy = slice(sy.start - y0, sy.stop - y0)
    ix = slice(sx.start - x0, sx.stop - x0)
    mulf[sy, sx] = val[iy, ix].astype(np.float32)
    # a region clipped at the mosaic border reflects at the border itself;
    # elsewhere the halo covers the whole kernel, so the blur is exact.
    blur = ndimage.gaussian_filter(val, sigma, mode="reflect", truncate=GAUSS_TRUNCATE)
    micf[sy, sx] = blur[iy, ix].astype(np.float32)


def calibrate_mosaic(mosaic, out_group, mode, grey_refs, eta_refs, eta_table=None,
                     clinker_grey_window=None, micf_sigma_px=10.0, chunk=1024, extra_attrs=None, threads=1):
    """Calibrate a grey mosaic into ``MulF`` and ``MicF`` maps, chunk by chunk.

    ``MulF`` is :func:`grey_to_eta` (``mode="eta"``), or that followed by
    :func:`eta_to_porosity` (``mode="porosity"``). ``MicF`` is ``MulF``
    blurred with ``scipy.ndimage.gaussian_filter`` (standard deviation
    ``micf_sigma_px``, kernel truncated at 4 sigma, ``mode="reflect"`` at the
    mosaic border), computed per block with a halo equal to the kernel
    radius so that it equals the whole-image blur. Memory is bounded by
    ``(chunk + 2 * radius)**2`` float64 values.

    The output is written atomically (a temporary sibling renamed on
    success): a failure leaves no partial group.

    Parameters
    ----------
    mosaic : zarr.Array or numpy.ndarray, shape (H, W), uint8/uint16/float
        Grey mosaic; zarr attrs ``pixel_size_nm`` and ``origin_um`` are copied.
    out_group : path-like
        Zarr group to write (``calibrated.zarr``); overwritten.
    mode : {"eta", "porosity"}
    grey_refs, eta_refs : (float, float)
        See :func:`grey_to_eta`.
    eta_table : DataFrame with ``n``, ``eta``; required for ``mode="porosity"``.
    clinker_grey_window : (float, float) or None
        Grey window of clinker, set to n = 0 in porosity mode.
    micf_sigma_px : float
        Blur standard deviation in pixels (> 0).
    chunk : int
        Processing block edge in pixels; rounded up to a multiple of the
        output chunk edge (the mosaic's chunk edge, or ``chunk`` for numpy).
    extra_attrs : dict, optional
        More attrs for the group (e.g. reference phase names).
    threads : int
        Blocks calibrated at once, in threads (numpy, scipy's filter and
        zarr's codecs release the GIL). Each block writes whole output
        chunks of its own, so the result is the same for any count; memory
        grows to ``threads`` blocks.

    Returns
    -------
    dict
        The group attrs written.

    Raises
    ------
    InputError
        Bad mode, sigma, references, table or thread count.
    """
    sigma, refs = _check_calibration(mosaic, mode, grey_refs, eta_refs, eta_table, micf_sigma_px)
    if int(threads) < 1:
        raise InputError(f"calibrate_mosaic: threads={threads!r}; expected >= 1")
    h, w = (int(s) for s in mosaic.shape)
    out_chunk, block, radius = _block_layout(mosaic, chunk, sigma)
    attrs = _calibration_attrs(mosaic, mode, refs, sigma, clinker_grey_window, extra_attrs)
    with mio.atomic_path(out_group) as tmp:
        mulf, micf = _create_calibrated_group(tmp, attrs, (h, w), out_chunk, sigma)
        blocks = list(mio.iter_chunks((h, w), block))

        def one(b):
            _write_calibrated_block(mosaic, mulf, micf, b[0], b[1], radius, sigma, mode, refs,
                                    eta_table, clinker_grey_window)

        if int(threads) == 1 or len(blocks) == 1:
            for b in progress(blocks, desc="calibrate", unit="block"):
                one(b)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(int(threads)) as pool:
                # list() re-raises the first block's error here, inside the atomic write
                list(progress(pool.map(one, blocks), total=len(blocks), desc="calibrate", unit="block"))
    log.info("calibrated %dx%d mosaic (%s, sigma %.2f px, %d thread(s)) into %s", h, w, mode, sigma, int(threads),
             out_group)
    return attrs
