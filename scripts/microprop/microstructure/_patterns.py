"""Shared characteristic patterns: similar relevance patterns found by reordering their difference matrix.

The graphene-oxide cement study (``../shared/references/dtd_nanoporosity_go_cement.txt``,
Supporting Information section 4, Fig. S34, and Fig. 7 of the manuscript)
looks for maps taken at different places of a sample whose characteristic
patterns look alike, and superimposes them:

1. The *characteristic pattern* ``R^m`` of map ``m`` is its positive relevance
   inside its characteristic region (the fewest pixels carrying 70 % of the
   positive relevance, :func:`microprop.microstructure.characteristic_region`).
   Here each pattern is normalised to sum 1 so that maps of different total
   relevance compare (:func:`characteristic_patterns`).
2. The difference of two patterns is ``Delta R_{m,n} = sum_ij |R^m_ij - R^n_ij|``
   (SI section 4, first equation), an ``N x N`` matrix
   (:func:`difference_matrix`, Fig. S34a).
3. The rows and columns of that matrix are put in the order that minimises its
   *total gradient* ``GR_t`` (:func:`total_gradient`), by simulated annealing
   (:func:`anneal_order`, Fig. S34b-d): similar patterns then sit next to each
   other, and groups of them show as dark blocks on the diagonal (the red
   rectangles of Fig. S34c), found by :func:`pattern_groups`.
4. The patterns of one group are superimposed into a *shared pattern*
   ``sR = exp(-60 sigma / sum R) x sum n R`` (SI section 4, second equation;
   :func:`shared_pattern`), and the share of the map where ``sR`` passes a
   contour level (``3e-6`` in Fig. 7, for 384 x 384 px maps) is the fraction
   of shared pore patterns (44.6 %, 49.3 % and 40.9 % for S1, S2 and S3 in the
   reference; :func:`shared_fraction`, :func:`default_level`).

Total gradient. The reference does not say which gradient of the difference
map it sums. We take the anisotropic total variation with forward
differences, ``sum |B[i+1, j] - B[i, j]| + sum |B[i, j+1] - B[i, j]|`` of the
reordered matrix ``B = D[o][:, o]``. Because ``o`` permutes the columns as a
whole, the first sum is ``sum_i E[o_i, o_{i+1}]`` with
``E[a, b] = sum_k |D[a, k] - D[b, k]|`` (the L1 distance of two rows, whatever
the column order), and likewise for the second with columns. So
``GR_t(o) = sum_i W[o_i, o_{i+1}]`` with ``W = E_rows + E_cols`` (symmetric):
minimising it is a shortest open path through the maps with edge weights
``W``, and a move that changes a few neighbours of the order changes ``GR_t``
by a few entries of ``W`` -- O(1) per move once ``W`` is computed
(O(N^3), chunked), instead of O(N^2) for a full recompute.

Annealing moves: with probability 1/2 the swap of two positions, else the
reversal of the segment between them (a 2-opt move of the path, which keeps
runs of similar patterns together; only its two end edges change).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError

#: contour level of the shared patterns in the reference (Fig. 7), for 384 x 384 px maps
REFERENCE_LEVEL = 3e-6
#: map size (px) the reference's contour level is for
REFERENCE_SHAPE = (384, 384)
#: coefficient of sigma / sum R in the reference's normalisation of a shared pattern
SIGMA_FACTOR = 60.0
#: default largest number of float64 elements of a temporary array (32 MiB)
DEFAULT_CHUNK = 2**22

_SWAP, _REVERSE = 0, 1


def _finite_stack(x, name, func, ndim=3, min_len=1):
    """``x`` as a float64 array of ``ndim`` dimensions, finite, at least ``min_len`` long on axis 0."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != ndim:
        raise InputError(f"{func}: {name} must have {ndim} dimensions, got shape {a.shape}")
    if a.shape[0] < min_len:
        raise InputError(f"{func}: {name} holds {a.shape[0]} maps, at least {min_len} needed")
    if not np.isfinite(a).all():
        raise InputError(f"{func}: {name} holds non-finite values")
    return a


def _square(D, func, min_len=2):
    """``D`` as a finite float64 (N, N) array with N >= ``min_len``."""
    a = np.asarray(D, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise InputError(f"{func}: the difference matrix must be square (N, N), got shape {a.shape}")
    if a.shape[0] < min_len:
        raise InputError(f"{func}: the difference matrix has {a.shape[0]} maps, at least {min_len} needed")
    if not np.isfinite(a).all():
        raise InputError(f"{func}: the difference matrix holds non-finite values")
    return a


def _check_chunk(chunk, func):
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise InputError(f"{func}: chunk must be a positive integer (elements), got {chunk!r}")
    return int(chunk)


def _pairwise_l1(X, chunk=DEFAULT_CHUNK):
    """L1 distances of all pairs of rows, ``out[m, n] = sum_k |X[m, k] - X[n, k]|``.

    Row ``m`` is compared only with the rows after it and only on its own
    support ``S_m`` (its nonzero entries), since outside it
    ``|X[m, k] - X[n, k]| = |X[n, k]|``:
    ``out[m, n] = sum_{k in S_m} (|X[m, k] - X[n, k]| - |X[n, k]|) + sum_k |X[n, k]|``.
    For sparse rows (characteristic patterns cover a few % of a map) this is
    many times faster than the dense sum; the temporaries never exceed
    ``chunk`` elements.

    Parameters
    ----------
    X : numpy.ndarray, shape (N, M), float64
    chunk : int
        Largest number of elements of a temporary array.

    Returns
    -------
    numpy.ndarray, shape (N, N), float64
        Symmetric, zero diagonal.
    """
    n, _ = X.shape
    out = np.zeros((n, n))
    abs_sum = np.abs(X).sum(axis=1)
    for i in range(n - 1):
        rest = X[i + 1:]
        acc = abs_sum[i + 1:].copy()
        support = np.flatnonzero(X[i])
        step = max(1, chunk // rest.shape[0])
        for s0 in range(0, support.size, step):
            cols = support[s0:s0 + step]
            other = np.take(rest, cols, axis=1)
            acc += (np.abs(other - X[i, cols]) - np.abs(other)).sum(axis=1)
        out[i, i + 1:] = acc
    out += out.T
    return out


def characteristic_patterns(relevance, region):
    """The characteristic pattern of each map: its positive relevance inside its region, summing to 1.

    Parameters
    ----------
    relevance : array-like, shape (N, H, W), float
        Relevance maps (any unit; negative values carry nothing).
    region : array-like, shape (N, H, W), bool
        The characteristic region of each map (the fewest pixels that carry
        70 % of its positive relevance, from
        :func:`microprop.microstructure.characteristic_region`). 0/1 integers
        are accepted as well.

    Returns
    -------
    numpy.ndarray, shape (N, H, W), float64
        ``R^m = max(relevance, 0) * region / sum(...)``: non-negative, each map
        sums to 1 (dimensionless), zero outside its region. The patterns ``R``
        of the reference (SI section 4), normalised per map.

    Raises
    ------
    InputError
        Arrays that are not 3-D or differ in shape, non-finite relevance, a
        region that is not boolean (or 0/1), or a map whose pattern is all
        zero (no positive relevance inside its region); the message names the
        maps.
    """
    func = "characteristic_patterns"
    r = _finite_stack(relevance, "relevance", func)
    m = np.asarray(region)
    if m.shape != r.shape:
        raise InputError(f"{func}: region has shape {m.shape}, relevance has shape {r.shape}; they must match")
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            raise InputError(f"{func}: region must be boolean (or 0/1), got dtype {m.dtype} with other values")
        m = m.astype(bool)
    pattern = np.where(m, np.clip(r, 0.0, None), 0.0)
    total = pattern.reshape(len(pattern), -1).sum(axis=1)
    empty = np.flatnonzero(~(total > 0))
    if empty.size:
        shown = ", ".join(str(i) for i in empty[:10]) + (" ..." if empty.size > 10 else "")
        raise InputError(f"{func}: the pattern of map(s) {shown} is all zero "
                         "(no positive relevance inside the characteristic region)")
    return pattern / total[:, None, None]


def difference_matrix(patterns, chunk=DEFAULT_CHUNK):
    """Differences of all pairs of patterns, ``D[m, n] = sum_ij |R^m_ij - R^n_ij|``.

    The reference's ``Delta R_{m,n}`` (SI section 4, first equation; Fig. S34a).

    Parameters
    ----------
    patterns : array-like, shape (N, H, W), float
        Characteristic patterns (:func:`characteristic_patterns`); N >= 2.
    chunk : int
        Largest number of float64 elements of one temporary array (about
        three such arrays live at once, so the extra memory is about
        ``24 x chunk`` bytes beyond the input and the output, whatever N;
        96 MiB by default); it does not change the result beyond rounding.

    Returns
    -------
    numpy.ndarray, shape (N, N), float64
        Symmetric, zero diagonal, in the unit of the patterns (for patterns
        that sum to 1 each, values lie in 0..2).

    Raises
    ------
    InputError
        Not 3-D, fewer than 2 maps, non-finite values or a bad chunk.
    """
    func = "difference_matrix"
    chunk = _check_chunk(chunk, func)
    p = _finite_stack(patterns, "patterns", func, min_len=2)
    return _pairwise_l1(p.reshape(len(p), -1), chunk)


def total_gradient(D):
    """Total gradient ``GR_t`` of a (reordered) difference matrix: its anisotropic total variation.

    ``GR_t = sum_ij |D[i+1, j] - D[i, j]| + sum_ij |D[i, j+1] - D[i, j]|``
    (forward differences, nothing across the edges). The reference (SI
    section 4, Fig. S34b,d) sums "the gradient of the difference map" without
    saying which; this is our choice, because the swap of two indices then
    changes it by a few row and column distances (see the module docstring),
    which makes annealing cheap.

    Parameters
    ----------
    D : array-like, shape (N, N), float
        A difference matrix, in any order (``D[o][:, o]``).

    Returns
    -------
    float
        In the unit of ``D``.

    Raises
    ------
    InputError
        Not square (N >= 1) or non-finite values.
    """
    d = _square(D, "total_gradient", min_len=1)
    return float(np.abs(np.diff(d, axis=0)).sum() + np.abs(np.diff(d, axis=1)).sum())


def _edge_weights(D, chunk=DEFAULT_CHUNK):
    """``W[a, b]``: what maps ``a`` and ``b`` side by side add to the total gradient.

    ``W = E_rows + E_cols`` with ``E_rows[a, b] = sum_k |D[a, k] - D[b, k]|``
    and ``E_cols[a, b] = sum_k |D[k, a] - D[k, b]|``; then
    ``total_gradient(D[o][:, o]) == sum_i W[o[i], o[i + 1]]`` for every
    permutation ``o``. Symmetric, zero diagonal, (N, N) float64.
    """
    w = _pairwise_l1(D, chunk)
    if not np.array_equal(D, D.T):
        w += _pairwise_l1(np.ascontiguousarray(D.T), chunk)
    else:
        w *= 2.0
    return w


def _path_length(W, order):
    """``sum_i W[order[i], order[i + 1]]``."""
    o = np.asarray(order)
    return float(W[o[:-1], o[1:]].sum())


def _move_delta(W, order, kind, lo, hi):
    """Change of the total gradient when a move is applied to ``order`` (O(1)).

    Parameters
    ----------
    W : sequence of sequences (list of lists or numpy array), (N, N)
        Edge weights (:func:`_edge_weights`), symmetric.
    order : sequence of int, length N
        The current order (a permutation).
    kind : int
        ``_SWAP`` (exchange the maps at positions ``lo`` and ``hi``) or
        ``_REVERSE`` (reverse ``order[lo:hi + 1]``).
    lo, hi : int
        Positions, ``0 <= lo < hi < N``.

    Returns
    -------
    float
        ``GR_t(after) - GR_t(before)``. Only the edges at the moved positions
        change: four for a swap, the two end edges for a reversal (and a swap of
        neighbours is the reversal of the pair).
    """
    n = len(order)
    a, b = order[lo], order[hi]
    d = 0.0
    if lo > 0:
        p = order[lo - 1]
        d += W[p][b] - W[p][a]
    if hi < n - 1:
        q = order[hi + 1]
        d += W[a][q] - W[b][q]
    if kind == _SWAP and hi > lo + 1:
        q = order[lo + 1]
        p = order[hi - 1]
        d += W[b][q] - W[a][q] + W[p][a] - W[p][b]
    return d


def _apply_move(order, kind, lo, hi):
    """Apply a move to the list ``order`` in place."""
    if kind == _SWAP:
        order[lo], order[hi] = order[hi], order[lo]
    else:
        order[lo:hi + 1] = order[lo:hi + 1][::-1]


def _draw_moves(rng, n, size, p_reverse=0.5):
    """``size`` random moves: kinds, and positions ``lo < hi`` (two distinct positions)."""
    i = rng.integers(0, n, size)
    k = rng.integers(0, n - 1, size)
    k += k >= i
    kind = (rng.random(size) < p_reverse).astype(np.int64)
    return kind, np.minimum(i, k), np.maximum(i, k)


@dataclass(frozen=True)
class AnnealResult:
    """Outcome of :func:`anneal_order`.

    Attributes
    ----------
    order : numpy.ndarray, shape (N,), int64
        The best permutation found; the reordered matrix is ``D[order][:, order]``.
    total_gradient_start, total_gradient_end : float
        ``GR_t`` of ``D`` as given and of the reordered matrix (both
        recomputed in full by :func:`total_gradient`).
    history : numpy.ndarray, float64
        ``GR_t`` of the current (not the best) order at ``history_steps``.
    history_steps : numpy.ndarray, int64
        Steps of ``history`` (0 = before the first move, ``n_steps`` = the end).
    t_start, t_end : float
        First and last temperature (unit of ``D``).
    n_steps : int
        Moves proposed.
    acceptance : float
        Share of the proposed moves accepted.
    """

    order: np.ndarray
    total_gradient_start: float
    total_gradient_end: float
    history: np.ndarray = field(repr=False)
    history_steps: np.ndarray = field(repr=False)
    t_start: float = 0.0
    t_end: float = 0.0
    n_steps: int = 0
    acceptance: float = 0.0


def anneal_order(D, rng, n_steps=None, t_start=None, t_end=None, n_history=200, p_reverse=0.5):
    """Order of the maps that minimises the total gradient of the difference matrix, by simulated annealing.

    The reference (SI section 4, Fig. S34c) minimises ``GR_t`` with
    simulated annealing (its ref. 8) without giving moves or schedule; ours:

    * state: a permutation ``o``, applied to rows and columns alike,
      ``GR_t(o) = total_gradient(D[o][:, o])``; start: the given order;
    * moves: with probability ``p_reverse`` the reversal of the segment
      between two random positions, else the swap of the maps at them; the
      change of ``GR_t`` is computed from the few neighbours that change, in
      O(1) (module docstring);
    * Metropolis acceptance, ``P = min(1, exp(-delta / T))``;
    * geometric cooling from ``t_start`` to ``t_end`` over ``n_steps``;
    * the best order seen is returned.

    Parameters
    ----------
    D : array-like, shape (N, N), float
        Difference matrix (:func:`difference_matrix`); N >= 2. Need not be
        symmetric.
    rng : numpy.random.Generator
        The only source of randomness: the same generator state gives the same
        result.
    n_steps : int, optional
        Moves proposed; default ``200 N``.
    t_start : float, optional
        Default: the median of the nonzero ``|delta|`` of ``min(1000, 20 N)``
        random moves from the start order (a typical uphill move is then
        accepted with probability 1/e at the start). Unit of ``D``.
    t_end : float, optional
        Default ``t_start / 1000``; must lie in (0, t_start].
    n_history : int
        About how many points ``history`` holds.
    p_reverse : float
        Probability that a move is a segment reversal (0..1).

    Returns
    -------
    AnnealResult
        ``order``, ``total_gradient_start``, ``total_gradient_end``,
        ``history`` and the schedule used.

    Raises
    ------
    InputError
        A matrix that is not square with N >= 2 or holds non-finite values,
        ``rng`` not a numpy Generator, or bad parameters.
    """
    func = "anneal_order"
    d = _square(D, func)
    if not isinstance(rng, np.random.Generator):
        raise InputError(f"{func}: rng must be a numpy.random.Generator, got {type(rng).__name__}")
    n = d.shape[0]
    if n_steps is None:
        n_steps = 200 * n
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 0:
        raise InputError(f"{func}: n_steps must be a non-negative integer, got {n_steps!r}")
    n_steps = int(n_steps)
    if not 0.0 <= float(p_reverse) <= 1.0:
        raise InputError(f"{func}: p_reverse {p_reverse} outside 0..1")
    if isinstance(n_history, bool) or not isinstance(n_history, (int, np.integer)) or n_history < 1:
        raise InputError(f"{func}: n_history must be a positive integer, got {n_history!r}")
    for name, t in (("t_start", t_start), ("t_end", t_end)):
        if t is not None and not (math.isfinite(float(t)) and float(t) > 0):
            raise InputError(f"{func}: {name} must be a finite temperature > 0, got {t!r}")

    w_arr = _edge_weights(d)
    w = w_arr.tolist()
    order = list(range(n))
    start = total_gradient(d)

    if t_start is None:
        kinds, los, his = _draw_moves(rng, n, min(1000, 20 * n), p_reverse)
        deltas = np.abs([_move_delta(w, order, kd, lo, hi)
                         for kd, lo, hi in zip(kinds.tolist(), los.tolist(), his.tolist())])
        deltas = deltas[deltas > 1e-12 * max(float(w_arr.max()), 1e-300)]
        t_start = float(np.median(deltas)) if deltas.size else max(float(w_arr.max()), 1.0)
    t_start = float(t_start)
    t_end = t_start / 1000.0 if t_end is None else float(t_end)
    if t_end > t_start:
        raise InputError(f"{func}: t_end {t_end} is above t_start {t_start}")

    cur = _path_length(w_arr, order)
    best, best_order = cur, order.copy()
    tol = 1e-12 * max(cur, 1.0)
    stride = max(1, n_steps // int(n_history))
    history, history_steps = [cur], [0]
    accepted = 0
    ratio = math.log(t_end / t_start) / max(n_steps - 1, 1)
    block = 65536
    for b0 in range(0, n_steps, block):
        size = min(block, n_steps - b0)
        kinds, los, his = _draw_moves(rng, n, size, p_reverse)
        temps = t_start * np.exp(ratio * np.arange(b0, b0 + size))
        # accept when delta <= -T ln u, u uniform in (0, 1]: Metropolis without an exp per step
        limits = (-temps * np.log1p(-rng.random(size))).tolist()
        for s, (kd, lo, hi, lim) in enumerate(zip(kinds.tolist(), los.tolist(), his.tolist(), limits)):
            delta = _move_delta(w, order, kd, lo, hi)
            if delta <= lim:
                _apply_move(order, kd, lo, hi)
                cur += delta
                accepted += 1
                if cur < best - tol:
                    best, best_order = cur, order.copy()
            step = b0 + s + 1
            if step % stride == 0 and step != n_steps:
                history.append(cur)
                history_steps.append(step)
    if n_steps > 0:
        history.append(cur)
        history_steps.append(n_steps)

    best_order = np.asarray(best_order, dtype=np.int64)
    return AnnealResult(
        order=best_order,
        total_gradient_start=start,
        total_gradient_end=total_gradient(d[np.ix_(best_order, best_order)]),
        history=np.asarray(history, dtype=np.float64),
        history_steps=np.asarray(history_steps, dtype=np.int64),
        t_start=t_start,
        t_end=t_end,
        n_steps=n_steps,
        acceptance=accepted / n_steps if n_steps else 0.0,
    )


def _check_order(order, n, func):
    o = np.asarray(order)
    if o.shape != (n,) or not np.issubdtype(o.dtype, np.integer) or not np.array_equal(np.sort(o), np.arange(n)):
        raise InputError(f"{func}: order must be a permutation of 0..{n - 1} (integers), got shape {o.shape}")
    return o.astype(np.int64)


def mean_pair_difference(D):
    """Mean of the off-diagonal entries of a difference matrix (all pairs of distinct maps).

    Parameters
    ----------
    D : array-like, shape (N, N), float, N >= 2

    Returns
    -------
    float
        Unit of ``D``; the yardstick for a group's ``mean_difference``.

    Raises
    ------
    InputError
        Not square with N >= 2, or non-finite values.
    """
    d = _square(D, "mean_pair_difference")
    n = d.shape[0]
    return float((d.sum() - np.trace(d)) / (n * (n - 1)))


def pattern_groups(D, order, n_groups=3, min_size=3, max_size=None, criterion="contrast"):
    """Groups of similar patterns: contiguous diagonal blocks of the reordered difference matrix.

    The red rectangles of the reference's Fig. S34c. In ``B = D[order][:, order]``
    every block ``[a, b)`` of ``min_size..max_size`` positions is scored, and
    up to ``n_groups`` non-overlapping blocks are taken greedily, the best
    score first. Each block's sums come in O(1) from summed-area tables of
    ``B`` (and of its diagonal and its row sums), so all O(N^2) blocks are
    scored at once.

    Scores (the reference gives no rule):

    * ``"contrast"`` (default): ``mean_difference / mean_outside_difference``,
      the mean over the block's off-diagonal pairs divided by the mean
      difference between its members and all other maps. A block that covers
      exactly one group of alike patterns scores lowest: a part of the group
      has the same within-mean but is less far from the rest (its other
      members are outside), and a block that takes in a foreign map has a
      higher within-mean.
    * ``"mean"``: ``mean_difference`` alone. This favours the smallest blocks
      (any ``min_size`` maps of one group have about the same mean as the whole
      group), so it splits one group into several blocks and is kept only for
      comparison.

    Parameters
    ----------
    D : array-like, shape (N, N), float
        Difference matrix in the original order; N >= 3.
    order : array-like of int, shape (N,)
        The permutation from :func:`anneal_order`.
    n_groups : int
        At most this many groups (fewer when no block fits any more).
    min_size : int
        Smallest group (>= 2, so that a block has off-diagonal pairs).
    max_size : int, optional
        Largest group; default ``max(min_size, N // 2)`` (a group of alike
        patterns is taken to be a minority of the maps), and at most ``N - 1``
        (a block needs maps outside it for its contrast).
    criterion : {"contrast", "mean"}

    Returns
    -------
    list of dict
        Best first, each with ``members`` (numpy int64 array: the original map
        indices, in the new order), ``start``, ``stop`` (positions in
        ``order``, ``stop`` excluded), ``size``, ``mean_difference`` (mean over
        the block's off-diagonal pairs), ``mean_outside_difference`` (mean
        between members and non-members), ``contrast`` (their ratio; inf
        when the outside mean is 0), ``relative_difference``
        (``mean_difference / mean_difference_all``; nan when that is 0) and
        ``mean_difference_all`` (:func:`mean_pair_difference`).

    Raises
    ------
    InputError
        A bad matrix, an order that is not a permutation, or bad sizes or
        criterion.
    """
    func = "pattern_groups"
    d = _square(D, func, min_len=3)
    n = d.shape[0]
    o = _check_order(order, n, func)
    for name, v in (("n_groups", n_groups), ("min_size", min_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InputError(f"{func}: {name} must be a positive integer, got {v!r}")
    if min_size < 2:
        raise InputError(f"{func}: min_size must be at least 2 (a block needs off-diagonal pairs), got {min_size}")
    if max_size is None:
        max_size = max(int(min_size), n // 2)
    if isinstance(max_size, bool) or not isinstance(max_size, (int, np.integer)):
        raise InputError(f"{func}: max_size must be an integer, got {max_size!r}")
    max_size = min(int(max_size), n - 1)
    if max_size < min_size:
        raise InputError(f"{func}: no block size fits: min_size {min_size} > max_size {max_size} "
                         f"(at most N - 1 = {n - 1})")
    if criterion not in ("contrast", "mean"):
        raise InputError(f"{func}: criterion must be 'contrast' or 'mean', got {criterion!r}")

    b = d[np.ix_(o, o)]
    sat = np.zeros((n + 1, n + 1))
    sat[1:, 1:] = b.cumsum(axis=0).cumsum(axis=1)
    diag = np.concatenate(([0.0], np.cumsum(np.diag(b))))
    rows = np.concatenate(([0.0], np.cumsum(b.sum(axis=1))))
    cols = np.concatenate(([0.0], np.cumsum(b.sum(axis=0))))

    starts, sizes = [], []
    for s in range(int(min_size), max_size + 1):
        a = np.arange(n - s + 1)
        starts.append(a)
        sizes.append(np.full(a.size, s))
    a = np.concatenate(starts)
    s = np.concatenate(sizes)
    e = a + s
    inner = sat[e, e] - sat[a, e] - sat[e, a] + sat[a, a]
    within = (inner - (diag[e] - diag[a])) / (s * (s - 1))
    # member-to-outsider differences, both directions (D need not be symmetric)
    outside = ((rows[e] - rows[a]) + (cols[e] - cols[a]) - 2 * inner) / (2 * s * (n - s))
    with np.errstate(divide="ignore", invalid="ignore"):
        contrast = np.where(outside > 0, within / outside, np.where(within > 0, np.inf, 1.0))
    score = contrast if criterion == "contrast" else within
    overall = mean_pair_difference(d)

    free = np.ones(a.size, bool)
    groups = []
    for _ in range(int(n_groups)):
        if not free.any():
            break
        idx = np.flatnonzero(free)[np.argmin(score[free])]
        lo, hi = int(a[idx]), int(e[idx])
        groups.append({
            "members": o[lo:hi].copy(),
            "start": lo,
            "stop": hi,
            "size": hi - lo,
            "mean_difference": float(within[idx]),
            "mean_outside_difference": float(outside[idx]),
            "contrast": float(contrast[idx]),
            "relative_difference": float(within[idx] / overall) if overall > 0 else float("nan"),
            "mean_difference_all": overall,
        })
        free &= (e <= lo) | (a >= hi)
    return groups


def shared_pattern(patterns, porosity, sigma_factor=SIGMA_FACTOR):
    """Superposition of one group of patterns, ``sR = exp(-60 sigma / sum R) x sum n R``.

    The reference's normalisation of a shared characteristic pattern (SI
    section 4, last equation; Fig. 7). It names sigma "the standard deviation
    of the selected characteristic pattern" and n "the original porosity
    map"; our reading, per pixel ``x`` over the ``K`` patterns of the group:

    * ``sigma(x)``: population standard deviation (ddof = 0) of ``R^k(x)``;
    * ``sum R(x) = sum_k R^k(x)``;
    * ``sum n R(x) = sum_k n^k(x) R^k(x)``, ``n^k`` the porosity map (0..1)
      the pattern ``R^k`` came from;

    so the factor ``exp(-60 sigma / sum R)`` (``= exp(-60 CV / K)``, CV the
    coefficient of variation of the pixel over the group) weights down the
    pixels where the patterns disagree, and is 1 where they agree. Where
    ``sum R(x) == 0``, ``sR(x) = 0``.

    Parameters
    ----------
    patterns : array-like, shape (K, H, W), float
        The characteristic patterns of one group (non-negative,
        :func:`characteristic_patterns`); K >= 2.
    porosity : array-like, shape (K, H, W), float
        Equivalent porosity (0..1) of the maps the patterns came from.
    sigma_factor : float
        The reference's 60; >= 0.

    Returns
    -------
    numpy.ndarray, shape (H, W), float64
        ``sR``, in the unit of the patterns (times porosity, dimensionless);
        non-negative.

    Raises
    ------
    InputError
        Arrays not 3-D or of different shapes, fewer than 2 patterns,
        non-finite values, negative patterns, porosity outside 0..1, or a
        bad ``sigma_factor``.
    """
    func = "shared_pattern"
    r = _finite_stack(patterns, "patterns", func, min_len=2)
    n = _finite_stack(porosity, "porosity", func, min_len=2)
    if n.shape != r.shape:
        raise InputError(f"{func}: porosity has shape {n.shape}, patterns have shape {r.shape}; they must match")
    if (r < 0).any():
        raise InputError(f"{func}: patterns hold negative values (characteristic patterns are >= 0)")
    if (n < 0).any() or (n > 1).any():
        raise InputError(f"{func}: porosity outside 0..1 (range {n.min():g}..{n.max():g}; a fraction, not %)")
    if not (math.isfinite(float(sigma_factor)) and float(sigma_factor) >= 0):
        raise InputError(f"{func}: sigma_factor must be finite and >= 0, got {sigma_factor!r}")
    total = r.sum(axis=0)
    sigma = r.std(axis=0)
    ratio = np.divide(sigma, total, out=np.zeros_like(total), where=total > 0)
    out = np.exp(-float(sigma_factor) * ratio) * (n * r).sum(axis=0)
    out[~(total > 0)] = 0.0
    return out


def default_level(shape):
    """Contour level of a shared pattern for maps of ``shape``: the reference's 3e-6 scaled by area.

    Fig. 7 of the reference draws the contour at ``3e-6`` for 384 x 384 px
    maps. A pattern normalised per map (sum 1) has values of order
    ``1 / (H W)``, so the level scales as ``3e-6 x 384^2 / (H W)``. (``sR``
    also grows with the number of patterns superimposed and their porosity,
    which the reference does not state; this scaling keeps only the area.)

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` in pixels, both positive.

    Returns
    -------
    float

    Raises
    ------
    InputError
        Not two positive integers.
    """
    try:
        h, w = (int(v) for v in shape)
        ok = all(float(v) == int(v) for v in shape) and h > 0 and w > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError(f"default_level: shape must be two positive integers (H, W), got {shape!r}")
    return REFERENCE_LEVEL * (REFERENCE_SHAPE[0] * REFERENCE_SHAPE[1]) / (h * w)


def shared_fraction(sR, level):
    """Share of the map where the shared pattern exceeds the contour level.

    The fraction of shared pore patterns of Fig. 7 of the reference (the
    regions inside the contour lines at ``3e-6``; 44.6 %, 49.3 % and 40.9 % for
    S1, S2 and S3). See :func:`default_level` for other map sizes.

    Parameters
    ----------
    sR : array-like, shape (H, W), float
        A shared pattern (:func:`shared_pattern`).
    level : float
        Contour level, unit of ``sR``; finite.

    Returns
    -------
    float
        ``mean(sR > level)``, in 0..1.

    Raises
    ------
    InputError
        Not 2-D, empty, non-finite values or level.
    """
    func = "shared_fraction"
    a = np.asarray(sR, dtype=np.float64)
    if a.ndim != 2 or a.size == 0:
        raise InputError(f"{func}: sR must be a non-empty 2-D map, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputError(f"{func}: sR holds non-finite values")
    try:
        lev = float(level)
    except (TypeError, ValueError):
        lev = float("nan")
    if not math.isfinite(lev):
        raise InputError(f"{func}: level must be a finite number, got {level!r}")
    return float((a > lev).mean())
