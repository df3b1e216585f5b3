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
is one 3-D FFT, a product and an inverse FFT (the sum over level pairs is a
correlation along the level axis, done in the same pass). The level axis is
zero-padded (no wrap between the darkest and brightest levels); the image
axes are zero-padded by ``max_r_px`` (pairs that leave the map are not
counted: the study's convention is non-periodic, since a map is a window of
a larger specimen) and each displacement is normalised by its number of
pairs. :func:`level_correlation` returns that per displacement.

``S2(r, delta)`` pools the pairs of the displacements of each ring
``round(|d|) = r``. :func:`radial_s2` computes it without the per-displacement
volume, in three steps that each use an exact identity:

* the level axis of the indicator's transform is known in closed form: at
  level frequency ``k`` it is the 2-D field ``exp(-2 pi i k l(x) / L')`` (zero
  outside the mask), so only the 2-D FFTs of the ``L'/2 + 1`` non-negative
  ``k`` are taken (the rest are their conjugates);
* a ring is unchanged by the reflections ``dy -> -dy`` and ``dx -> -dx``, so
  its pair count is that of the correlation averaged over the four
  reflections, whose spectrum is the power spectrum averaged over the four
  reflected frequencies; that average is even along every axis (levels
  included), so its inverse is a 3-D type-I discrete cosine transform of one
  octant (``scipy.fft.dct``), evaluated for ``0 <= dy, dx <= R`` only, and the
  pooled ``S2(r, delta)`` is even in ``delta``;
* the ring sums are one sparse product over the quarter plane (each
  off-axis displacement stands for its mirror images).

On a CUDA device (``device=``) the same sums come from torch's FFTs of the
whole volume (memory is not the constraint there).

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


def _checked(levels, n_levels, max_r_px, mask):
    """The level map, its mask and ``R`` after the checks every S2 function makes."""
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
    return lev, h, w, L, R, m


def _pair_counts(levels, n_levels, max_r_px=None, mask=None, workers=None, dtype=np.float32):
    """Pair counts ``C[dy, dx, delta]`` and pairs ``N[dy, dx]`` of a level map (see the module).

    ``dtype``: of the FFT (float32 by default; float64 to check it).
    """
    from scipy import fft

    lev, h, w, L, R, m = _checked(levels, n_levels, max_r_px, mask)
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


def _even_fast_len(n):
    """The smallest even FFT-friendly length >= n (a type-I DCT needs an even period)."""
    from scipy import fft

    return 2 * fft.next_fast_len((int(n) + 1) // 2)


def _ring_geometry(R):
    """Ring index and mirror-image weight of every displacement of the quarter plane ``0 <= dy, dx <= R``."""
    d = np.arange(R + 1)
    ring = np.rint(np.hypot(d[:, None], d[None, :])).astype(np.int64).ravel()
    mult = np.where(d == 0, 1.0, 2.0)
    weight = (mult[:, None] * mult[None, :]).ravel()
    keep = ring <= R
    return ring, weight, keep


def _ring_counts_numpy(rel, m, span, h, w, R, workers, dtype, chunk=4):
    """Ring pair counts ``(R + 1, span)`` for ``delta = 0..span-1`` (see the module), scipy on the CPU."""
    from concurrent.futures import ThreadPoolExecutor

    from scipy import fft, sparse

    Lp = _even_fast_len(2 * span - 1)
    Hp, Wp = _even_fast_len(h + R), _even_fast_len(w + R)
    K, qh, qw = Lp // 2 + 1, Hp // 2 + 1, Wp // 2 + 1
    complex_t = np.complex64 if dtype == np.float32 else np.complex128
    idx = np.where(m, rel, span).ravel()          # pixels outside the mask read the table's zero column
    octant = np.empty((K, qh, qw), dtype)
    lv = np.arange(span)
    threads = max(1, int(workers or 1))

    def fold(a, axis, out):                       # out[q] = a[q] + a[-q], q = 0..n/2, period n = a.shape[axis]
        n = a.shape[axis]
        q = n // 2 + 1

        def at(x):
            sl = [slice(None)] * a.ndim
            sl[axis] = x
            return tuple(sl)

        np.add(a[at(slice(1, q - 1))], a[at(slice(n - 1, q - 1, -1))], out=out[at(slice(1, q - 1))])
        np.multiply(a[at(slice(0, 1))], 2, out=out[at(slice(0, 1))])
        np.multiply(a[at(slice(q - 1, q))], 2, out=out[at(slice(q - 1, q))])

    def work(first):                              # level frequencies first, first + threads * chunk, ...
        table = np.zeros((chunk, span + 1), complex_t)
        bx = np.zeros((chunk, h, Wp), complex_t)
        by = np.zeros((chunk, Hp, Wp), complex_t)
        power = np.empty((chunk, Hp, Wp), dtype)
        tmp = np.empty((chunk, Hp, Wp), dtype)
        fx = np.empty((chunk, Hp, qw), dtype)
        for a in range(first * chunk, K, chunk * threads):
            c = min(K, a + chunk) - a
            table[:c, :span] = np.exp(-2j * np.pi * np.outer(np.arange(a, a + c), lv) / Lp)
            bx[:c, :, :w] = np.take(table[:c], idx, axis=1).reshape(c, h, w)
            bx[:c, :, w:] = 0
            by[:c, :h] = fft.fft(bx[:c], axis=-1, workers=1, overwrite_x=True)
            by[:c, h:] = 0
            f = fft.fft(by[:c], axis=-2, workers=1, overwrite_x=True)
            np.multiply(f.real, f.real, out=power[:c])
            np.multiply(f.imag, f.imag, out=tmp[:c])
            power[:c] += tmp[:c]
            fold(power[:c], 2, fx[:c])
            fold(fx[:c], 1, octant[a:a + c])

    with ThreadPoolExecutor(threads) as ex:       # numpy and pocketfft release the GIL
        list(ex.map(work, range(threads)))
    c3 = fft.dct(octant, type=1, axis=2, workers=workers)[:, :, :R + 1]
    c3 = fft.dct(c3, type=1, axis=1, workers=workers)[:, :R + 1]
    c3 = fft.dct(c3.astype(np.float64), type=1, axis=0, workers=workers)[:span]
    c3 *= 0.25 / (Lp * Hp * Wp)                   # the four reflections' mean; the inverse DFT's 1/N
    ring, weight, keep = _ring_geometry(R)
    pool = sparse.csr_matrix((weight[keep], (np.nonzero(keep)[0], ring[keep])), shape=(len(ring), R + 1))
    return np.asarray(pool.T @ c3.reshape(span, -1).T)


def _ring_counts_torch(rel, m, span, h, w, R, device, dtype):
    """The same ring counts as :func:`_ring_counts_numpy`, from torch's FFTs of the whole volume on ``device``."""
    import torch

    Lp = _even_fast_len(2 * span - 1)
    Hp, Wp = _even_fast_len(h + R), _even_fast_len(w + R)
    K = Lp // 2 + 1
    real = torch.float32 if dtype == np.float32 else torch.float64
    cplx = torch.complex64 if dtype == np.float32 else torch.complex128
    mm = torch.as_tensor(m, device=device)
    idx = torch.as_tensor(np.where(m, rel, 0), device=device)
    k = torch.arange(K, device=device, dtype=real)
    phase = torch.outer(k, torch.arange(span, device=device, dtype=real)) * (-2 * math.pi / Lp)
    table = torch.polar(torch.ones_like(phase), phase).to(cplx)              # (K, span)
    g = table[:, idx] * mm                                                  # (K, h, w)
    spec = torch.fft.fft2(g, s=(Hp, Wp))
    del g
    power = (spec.real ** 2 + spec.imag ** 2).to(cplx)
    del spec
    corr = torch.fft.irfftn(power, s=(Hp, Wp, Lp), dim=(1, 2, 0))          # C[delta, dy, dx], wrapped
    del power
    d = torch.arange(-R, R + 1, device=device)
    block = corr[:span][:, d % Hp][:, :, d % Wp]                            # delta = 0..span-1, |dy|, |dx| <= R
    ring = torch.round(torch.hypot(d[:, None].to(real), d[None, :].to(real))).long().ravel()
    keep = ring <= R
    out = torch.zeros((span, R + 1), dtype=torch.float64, device=device)
    out.index_add_(1, ring[keep], block.reshape(span, -1)[:, keep].to(torch.float64))
    return out.T.cpu().numpy()


def radial_s2(levels, n_levels=256, max_r_px=None, mask=None, workers=None, device=None, dtype=np.float32):
    """S2(r, delta) of one level map, pooled over the displacements of each ring.

    Pairs leave no map: the convention is non-periodic (the map is a window
    of a larger specimen; see the module). Computed without the
    per-displacement volume (type-I DCT of the reflection-averaged spectrum;
    see the module); exact to the FFT's rounding.

    Parameters
    ----------
    levels : array-like of int, shape (H, W)
    n_levels : int
    max_r_px : int, optional
        Largest distance, px (default: half the shorter edge).
    mask : array-like of bool, shape (H, W), optional
        Only pairs within the mask (:func:`level_correlation`).
    workers : int, optional
        CPU threads (one per level-frequency chunk, and of ``scipy.fft``).
    device : str or torch.device, optional
        Run the FFTs in torch on this device (``"cuda"``: the GPU); default
        ``None``: scipy on the CPU, which needs less memory (one octant).
    dtype : numpy.float32 or numpy.float64
        Precision of the transforms (float32: about 1e-7 of a ring's pairs;
        ``benchmarks/bench_correlation.py`` measures it against float64).

    Returns
    -------
    r_px : numpy.ndarray, shape (R + 1,)
        Distances 0..R px (ring ``round(|d|) = r``).
    delta : numpy.ndarray, shape (2 L - 1,), int
        Level differences ``-(L-1)..(L-1)``; the porosity difference is
        ``delta (hi - lo) / (L - 1)`` for :func:`quantize_levels`' range.
    S2 : numpy.ndarray, shape (R + 1, 2 L - 1), float64
        The pair counts of each ring over its pairs: each row sums to 1 (NaN
        for a ring without pairs); even in ``delta``, since a ring holds each
        pair from both ends.
    level_fractions : numpy.ndarray, shape (L,)
        Fraction of the (masked) pixels at each level (``sum f_l^2`` is
        ``S2(inf, 0)`` for uncorrelated pixels).

    Raises
    ------
    InputError
        As :func:`level_correlation`, or ``dtype`` not float32/float64.
    """
    lev, h, w, L, R, m = _checked(levels, n_levels, max_r_px, mask)
    dt = np.dtype(dtype).type
    if dt not in (np.float32, np.float64):
        raise InputError(f"radial_s2: dtype {dtype!r}; expected numpy.float32 or numpy.float64")
    used = lev[m]
    lo, span = int(used.min()), int(used.max()) - int(used.min()) + 1
    rel = (lev - lo).astype(np.int64)
    if device is not None:
        half = _ring_counts_torch(rel, m, span, h, w, R, device, dt)
    else:
        half = _ring_counts_numpy(rel, m, span, h, w, R, workers, dt)
    half = np.clip(half, 0.0, None)
    ring_counts = np.zeros((R + 1, 2 * L - 1))
    c = L - 1
    ring_counts[:, c:c + span] = half                     # delta = 0..span-1
    ring_counts[:, c - span + 1:c] = half[:, :0:-1]       # and its mirror
    ring_pairs = ring_counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        radial = ring_counts / ring_pairs[:, None]
    frac = np.bincount(used, minlength=L) / used.size
    return np.arange(R + 1), np.arange(-(L - 1), L), radial, frac


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
