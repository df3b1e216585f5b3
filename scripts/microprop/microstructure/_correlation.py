"""Two-point correlation of a grey-level (many-phase) map, S2(r, delta n), through FFTs.

The graphene-oxide cement study (``../shared/references/dtd_nanoporosity_go_cement.txt``,
section 2.3 and Fig. 6) treats an 8-bit porosity map as a 256-phase random
medium: phase ``i`` is grey level ``i`` with porosity ``n_i``, and
``S2^(ij)(x_i, x_j) = <I^(i)(x_i) I^(j)(x_j)>`` (Torquato, *Random
Heterogeneous Materials*, 2002, ch. 2) depends only on the distance ``r`` of the
two points and the porosity difference ``delta n = n_j - n_i``. Summed over
the pairs of phases with the same level difference,

    S2(d, delta) = P(level(x) = l, level(x + d) = l + delta), summed over l,

is, for each displacement ``d``, a probability distribution over ``delta``
(it sums to 1), and ``S2(0, delta)`` is 1 at ``delta = 0`` only.

For all displacements and level differences at once: the one-hot indicator
volume ``I[l, y, x]`` (levels x pixels) correlated with itself along all
three axes, ``C[delta, d] = sum over l, x of I[l, x] I[l + delta, x + d]``,
is one real 3-D FFT, a product and an inverse FFT (the sum over level pairs
is a correlation along the level axis, done in the same pass). The level
axis is zero-padded (no wrap between the darkest and brightest levels); the
image axes are zero-padded by ``max_r_px`` (pairs that leave the map are not
counted) and each displacement is normalised by its number of pairs.
``S2(r, delta)`` pools the pairs of the displacements of each ring
``round(|d|) = r``. A mask (a characteristic region) keeps only the pairs
whose two pixels both lie in it.

From ``S2(r, .)`` and ``p0(r) = S2(r, delta = 0)``, the probability that
two points at distance ``r`` have the same porosity:

* the *correlation length* (decay length): where the distance of the pair
  distribution ``S2(r, .)`` from that of uncorrelated points first falls to
  ``1/e`` of its value at r = 0 (:func:`correlation_lengths`);
* the *characteristic length*: the ``r`` where ``p0(r)`` is lowest (the
  reference's definition; related to the size of clusters).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import InputError


def quantize_levels(maps, n_levels=256, lo=0.0, hi=1.0):
    """Porosity maps as integer levels ``0..n_levels-1`` (level ``l`` is ``n = lo + l (hi - lo) / (n_levels - 1)``).

    Parameters
    ----------
    maps : array-like, shape (..., H, W)
        Equivalent porosity (values outside ``lo..hi`` are clipped).
    n_levels : int
        256 for the reference's 8-bit maps; fewer bins are faster.

    Returns
    -------
    numpy.ndarray, int16, same shape

    Raises
    ------
    InputError
        ``n_levels`` < 2 or a non-finite value.
    """
    x = np.asarray(maps, np.float64)
    if int(n_levels) < 2 or not hi > lo:
        raise InputError(f"quantize_levels: n_levels={n_levels}, range {lo}..{hi}; expected >= 2 levels, hi > lo")
    if not np.isfinite(x).all():
        raise InputError("quantize_levels: the map holds non-finite values")
    q = np.rint((np.clip(x, lo, hi) - lo) / (hi - lo) * (int(n_levels) - 1))
    return q.astype(np.int16)


def _pair_counts(levels, n_levels, max_r_px=None, mask=None, workers=None, dtype=np.float32):
    """Pair counts ``C[dy, dx, delta]`` and pairs ``N[dy, dx]`` of a level map (see the module).

    ``dtype``: of the FFT (float32 by default; float64 to check it).
    """
    from scipy import fft

    lev = np.asarray(levels)
    if lev.ndim != 2:
        raise InputError(f"level_correlation: a 2-D map expected, got shape {lev.shape}")
    h, w = lev.shape
    L = int(n_levels)
    if lev.min() < 0 or lev.max() >= L:
        raise InputError(f"level_correlation: levels {lev.min()}..{lev.max()} outside 0..{L - 1}")
    R = min(h, w) // 2 if max_r_px is None else int(max_r_px)
    if not 0 <= R < min(h, w):
        raise InputError(f"level_correlation: max_r_px {R} must be below the map's edges ({h} x {w})")
    m = np.ones((h, w), bool) if mask is None else np.asarray(mask, bool)
    if m.shape != lev.shape:
        raise InputError(f"level_correlation: mask {m.shape} and map {lev.shape} differ in shape")
    if not m.any():
        raise InputError("level_correlation: the mask selects no pixel")
    used = lev[m]
    lo, span = int(used.min()), int(used.max()) - int(used.min()) + 1
    shape = (fft.next_fast_len(2 * span - 1), fft.next_fast_len(h + R), fft.next_fast_len(w + R, real=True))
    vol = np.zeros(shape, dtype)
    yy, xx = np.nonzero(m)
    vol[lev[yy, xx] - lo, yy, xx] = 1.0
    spec = fft.rfftn(vol, workers=workers)
    del vol
    corr = fft.irfftn(np.conj(spec) * spec, s=shape, workers=workers)   # C[delta, dy, dx], wrapped
    del spec
    di = np.arange(-(span - 1), span) % shape[0]
    dy = np.arange(-R, R + 1) % shape[1]
    dx = np.arange(-R, R + 1) % shape[2]
    # whole pair counts: rounding removes the float32 FFT's error (well under half a count for a
    # 384 x 384 map; benchmarks/bench_correlation.py checks it against float64)
    c = np.clip(np.rint(corr[np.ix_(di, dy, dx)].astype(np.float64)), 0.0, None)
    del corr
    counts = np.zeros((2 * R + 1, 2 * R + 1, 2 * L - 1))
    counts[:, :, (L - 1) - (span - 1):(L - 1) + span] = np.moveaxis(c, 0, -1)
    if mask is None:
        pairs = np.outer(h - np.abs(np.arange(-R, R + 1)), w - np.abs(np.arange(-R, R + 1))).astype(np.float64)
    else:
        pairs = counts.sum(axis=-1)          # every pair of region pixels has one level difference
    return counts, pairs


def level_correlation(levels, n_levels, max_r_px=None, mask=None, workers=None):
    """S2 for every displacement and level difference of one level map.

    Parameters
    ----------
    levels : array-like of int, shape (H, W)
        Levels ``0..n_levels-1`` (:func:`quantize_levels`).
    n_levels : int
    max_r_px : int, optional
        Largest displacement per axis, px (default: half the shorter edge).
    mask : array-like of bool, shape (H, W), optional
        Count only the pairs whose two pixels both lie in the mask (e.g. a
        characteristic region); default every pixel.
    workers : int, optional
        Threads of ``scipy.fft``.

    Returns
    -------
    S2 : numpy.ndarray, shape (2 R + 1, 2 R + 1, 2 L - 1), float64
        ``S2[dy + R, dx + R, delta + L - 1]``: the probability that a pixel
        and the pixel ``(dy, dx)`` from it differ by ``delta`` levels (the
        second minus the first). Each ``S2[dy, dx, :]`` sums to 1 (NaN where
        a mask leaves no pair at that displacement).

    Raises
    ------
    InputError
        Levels outside ``0..n_levels-1``, ``max_r_px`` not below the edges,
        or a mask of another shape or without a pixel.
    """
    counts, pairs = _pair_counts(levels, n_levels, max_r_px, mask, workers)
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts / pairs[..., None]


def radial_s2(levels, n_levels=256, max_r_px=None, mask=None, workers=None):
    """S2(r, delta) of one level map, pooled over the displacements of each ring.

    Parameters
    ----------
    levels : array-like of int, shape (H, W)
    n_levels : int
    max_r_px : int, optional
        Largest distance, px (default: half the shorter edge).
    mask : array-like of bool, shape (H, W), optional
        Only pairs within the mask (:func:`level_correlation`).

    Returns
    -------
    r_px : numpy.ndarray, shape (R + 1,)
        Distances 0..R px (ring ``round(|d|) = r``).
    delta : numpy.ndarray, shape (2 L - 1,), int
        Level differences ``-(L-1)..(L-1)``; the porosity difference is
        ``delta (hi - lo) / (L - 1)`` for :func:`quantize_levels`' range.
    S2 : numpy.ndarray, shape (R + 1, 2 L - 1), float64
        The pair counts of each ring over its pairs: each row sums to 1 (NaN
        for a ring without pairs).
    level_fractions : numpy.ndarray, shape (L,)
        Fraction of the (masked) pixels at each level (``sum f_l^2`` is
        ``S2(inf, 0)`` for uncorrelated pixels).
    """
    counts, pairs = _pair_counts(levels, n_levels, max_r_px, mask, workers)
    R = (counts.shape[0] - 1) // 2
    d = np.arange(-R, R + 1)
    ring = np.rint(np.hypot(d[:, None], d[None, :])).astype(int)
    keep = ring <= R
    rk = ring[keep]
    ring_pairs = np.bincount(rk, weights=pairs[keep], minlength=R + 1)
    flat = counts[keep]
    ring_counts = np.zeros((R + 1, flat.shape[1]))
    np.add.at(ring_counts, rk, flat)
    with np.errstate(invalid="ignore", divide="ignore"):
        radial = ring_counts / ring_pairs[:, None]
    lev = np.asarray(levels)
    sel = lev.ravel() if mask is None else lev[np.asarray(mask, bool)]
    frac = np.bincount(sel, minlength=int(n_levels)) / sel.size
    return np.arange(R + 1), np.arange(-(int(n_levels) - 1), int(n_levels)), radial, frac


def correlation_lengths(r, s2, level_fractions):
    """Correlation (decay) length and characteristic length from S2(r, delta).

    Parameters
    ----------
    r : array-like, shape (R + 1,)
        Distances (any unit; the lengths come back in it), ``r[0] = 0``.
    s2 : array-like, shape (R + 1, 2 L - 1)
        :func:`radial_s2`'s S2; the centre column is ``delta = 0``.
    level_fractions : array-like, shape (L,)

    Returns
    -------
    dict
        ``correlation_length``: the decay length of the correlation, the
        first r where ``D(r)`` falls to ``1/e`` of ``D(0)``, linearly
        interpolated (nan if it does not within ``r``). ``D(r)`` is the
        total-variation distance ``0.5 sum_delta |S2(r, delta) - S2_inf(delta)|``
        of the pair distribution at r from that of uncorrelated points,
        ``S2_inf(delta) = sum_l f_l f_(l + delta)``; a distance between
        distributions, so it does not depend on how finely the levels are
        binned as the same-level probability alone would (at 256 levels
        that falls below 1/e within one pixel for any map).
        ``characteristic_length``: the r > 0 where ``p0(r) = S2(r, 0)``,
        the probability of the same porosity, is lowest (the reference's
        definition). Also ``p0``, ``p0_inf`` (``sum f_l^2``) and ``distance``
        (``D``).
    """
    r = np.asarray(r, float)
    s2 = np.nan_to_num(np.asarray(s2, float))
    f = np.asarray(level_fractions, float)
    s2_inf = np.correlate(f, f, mode="full")              # sum_l f_l f_(l + delta), delta = -(L-1)..(L-1)
    p0 = s2[:, s2.shape[1] // 2]
    dist = 0.5 * np.abs(s2 - s2_inf[None, :]).sum(axis=1)
    target = dist[0] / math.e
    below = np.nonzero(dist <= target)[0]
    if len(below) and below[0] > 0:
        k = below[0]
        t = (dist[k - 1] - target) / (dist[k - 1] - dist[k])
        corr_len = float(r[k - 1] + t * (r[k] - r[k - 1]))
    else:
        corr_len = float("nan")
    char_len = float(r[1:][np.argmin(p0[1:])]) if len(r) > 1 else float("nan")
    return {"correlation_length": corr_len, "characteristic_length": char_len, "p0": p0,
            "p0_inf": float(np.sum(f ** 2)), "distance": dist}
