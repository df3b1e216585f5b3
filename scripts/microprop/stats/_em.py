"""Batched expectation-maximisation of full-covariance Gaussian mixtures in numpy.

Many EM starts of one mixture run at once: the data are standardised and
lifted to the features ``phi(z) = (z_a z_b for a <= b, z_a, 1)`` (6 for
``d = 2``, 3 for ``d = 1``), so that the log-density of every component of
every start is a short sum of outer products and the M-step's sufficient
statistics one matrix product ``resp @ phi``. :func:`multi_start_em`:

1. explores all starts together (:func:`run_starts`: SQUAREM-accelerated EM,
   Varadhan & Roland 2008, Scand. J. Stat. 35, 335-353, in single
   precision) on a subsample of the points (2D) or a fine histogram (1D),
   dropping the starts whose log-likelihood cannot catch the best and those
   on the way to an optimum another start is reaching;
2. brings the few distinct optima left to their optimum on all points by
   scoring steps (:func:`newton_polish`, BHHH), which do not crawl along the
   flat ridge of overlapping components as EM does.

Large E-steps run in a fixed number of chunks of the points on threads
(numpy releases the GIL), so the result does not depend on the number of
threads. The likelihood is scikit-learn's (``reg_covar`` added to the
diagonal of each covariance, in the data's units), so that its
``GaussianMixture`` holding the result scores it identically
(:func:`microprop.stats.fit_gmm`).

Private: used by :mod:`microprop.stats._mixture` only.
"""
from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)

#: scikit-learn's default ``reg_covar`` (added to each covariance's diagonal, data units^2).
REG_COVAR = 1e-6
_LOG_2PI = np.log(2.0 * np.pi)
_EPS10 = 10.0 * np.finfo(float).eps      # scikit-learn adds this to each component's weight sum
#: Random-data starts per k-means start: the k-means solutions of overlapping phases lead to
#: one optimum; random points reach the others (13 % of them, on a ridge of 3000 E values where
#: a better optimum lies 3.7e-5 per point above the one all k-means starts reach).
RANDOM_PER_KMEANS = 3
#: Log-density ratios to the most probable component are clipped here (exp(-200) ~ 1e-87
#: instead of 0 or a subnormal number): no change to a likelihood in double precision.
_LOG_TINY = -200.0


class Standardised:
    """Data shifted and scaled to zero mean and unit variance per column, with its features.

    Parameters
    ----------
    X : numpy.ndarray, shape (N, d)
        Data, finite, in their own units.

    Attributes
    ----------
    Z : numpy.ndarray, shape (N, d)
        ``(X - shift) / scale``.
    phi : numpy.ndarray, shape (N, F)
        Features ``(z_a z_b for a <= b, z_a, 1)``, ``F = d (d + 1) / 2 + d + 1``;
        ``phi_w`` the same times the points' weights.
    weight : numpy.ndarray, shape (N,)
        Weight of each point, mean 1 (all 1 but for :meth:`binned` data);
        ``mean_weights = weight / N``.
    shift, scale : numpy.ndarray, shape (d,)
    reg : numpy.ndarray, shape (d,)
        :data:`REG_COVAR` in standardised units (``REG_COVAR / scale**2``).
    log_jacobian : float
        ``sum(log(scale))``: the log-likelihood per point of ``X`` is that of
        ``Z`` minus this.
    n_points : int
        The points these stand for (of :meth:`binned` data: all, not the bins).
    """

    def __init__(self, X):
        X = np.asarray(X, dtype=float)
        self.N, self.d = X.shape
        self.shift = X.mean(axis=0)
        sd = X.std(axis=0)
        self.scale = np.where(sd > 0, sd, 1.0)
        self.pairs = [(a, b) for a in range(self.d) for b in range(a, self.d)]
        self.reg = REG_COVAR / self.scale ** 2
        self.log_jacobian = float(np.sum(np.log(self.scale)))
        self._set_points((X - self.shift) / self.scale, None)
        self.n_points = self.N

    def _set_points(self, Z, weight):
        self.Z, self.N = Z, len(Z)
        cols = [Z[:, a] * Z[:, b] for a, b in self.pairs] + [Z[:, a] for a in range(self.d)]
        cols.append(np.ones(self.N))
        self.phi = np.ascontiguousarray(np.column_stack(cols))
        self.phiT = np.ascontiguousarray(self.phi.T)
        # weights of the points, mean 1 (counts of a histogram's bins, rescaled)
        self.weight = np.ones(self.N) if weight is None else weight * (self.N / weight.sum())
        self.mean_weights = self.weight / self.N
        self.phi_w = self.phi if weight is None else self.phi * self.weight[:, None]

    def _copy(self, Z, weight):
        out = object.__new__(Standardised)
        out.__dict__.update({key: v for key, v in self.__dict__.items() if key != "_chunk_cache"})
        out._set_points(Z, weight)
        return out

    def subset(self, index):
        """The same standardisation of the rows ``index`` (shape (n,))."""
        out = self._copy(self.Z[index], None)
        out.n_points = out.N
        return out

    def binned(self, n_bins):
        """1D data as the centres of ``n_bins`` equal bins, weighted by their counts (empty ones left out).

        The likelihood of the binned data differs from that of the points by
        about ``h**2 / (24 s**2)`` per point (bin width h, component sd s),
        nearly alike for every mixture: enough to rank the starts and bring
        them near their optima.
        """
        if self.d != 1:
            raise ValueError("only 1D data are binned")
        z = self.Z[:, 0]
        counts, edges = np.histogram(z, bins=int(n_bins))
        centres = 0.5 * (edges[1:] + edges[:-1])
        keep = counts > 0
        return self._copy(centres[keep, None], counts[keep].astype(float))

    def to_data_units(self, w, mu, cov):
        """Parameters of standardised data (shapes (R, k), (R, k, d), (R, k, d, d)) in data units."""
        s = self.scale
        return w, mu * s + self.shift, cov * s[:, None] * s[None, :]

    def from_data_units(self, w, mu, cov):
        """Parameters in data units to standardised units (inverse of :meth:`to_data_units`)."""
        s = self.scale
        return (np.asarray(w, float), (np.asarray(mu, float) - self.shift) / s,
                np.asarray(cov, float) / (s[:, None] * s[None, :]))


def _valid(w, cov):
    """(R,) bool: all weights positive and every covariance positive definite."""
    ok = np.all(w > 0, axis=1) & np.all(np.isfinite(cov), axis=(1, 2, 3))
    d = cov.shape[-1]
    if d == 1:
        ok &= np.all(cov[..., 0, 0] > 0, axis=1)
    elif d == 2:
        a, b, c = cov[..., 0, 0], cov[..., 0, 1], cov[..., 1, 1]
        ok &= np.all((a > 0) & (a * c - b * b > 0), axis=1)
    else:
        safe = np.where(np.isfinite(cov), cov, 0.0)
        ok &= np.all(np.linalg.eigvalsh(safe)[..., 0] > 0, axis=1)
    return ok


def min_points(d):
    """Least effective number of points of a component: its parameters ``d (d + 3) / 2``, plus one.

    The likelihood of a Gaussian mixture has no maximum: a component shrunk
    onto one indent (down to ``reg_covar``) gains more than it costs the
    others, and a thorough search of small samples finds such spikes (a
    fraction of 1/n). Solutions with a component of fewer points than it has
    parameters (+1) are not phases; their starts are dropped.
    """
    return d * (d + 3) / 2 + 1


def _populated(data, w):
    """(R,) bool: every component of the weights (R, k) holds at least :func:`min_points` points."""
    return np.all(w * data.n_points >= min_points(data.d), axis=1)


def _inv_logdet(cov):
    """Inverses and log-determinants of (..., d, d) covariances; closed forms for d <= 2."""
    d = cov.shape[-1]
    if d == 1:
        return 1.0 / cov, np.log(cov[..., 0, 0])
    if d == 2:
        a, b, c = cov[..., 0, 0], cov[..., 0, 1], cov[..., 1, 1]
        det = a * c - b * b
        P = np.empty_like(cov)
        P[..., 0, 0], P[..., 1, 1] = c / det, a / det
        P[..., 0, 1] = P[..., 1, 0] = -b / det
        return P, np.log(det)
    return np.linalg.inv(cov), np.linalg.slogdet(cov)[1]


def _log_weighted_densities(data, w, mu, cov):
    """``log w_j N(z_n; mu_j, cov_j)`` of R starts, shape (k, R, N): one product ``W @ phi.T``."""
    R, k, d = mu.shape
    with np.errstate(divide="ignore", invalid="ignore"):         # invalid starts give NaN: dropped
        P, logdet = _inv_logdet(cov)                              # (R, k, d, d), (R, k)
    Pmu = np.einsum("rkab,rkb->rka", P, mu)
    W = np.empty((k, R, len(data.pairs) + d + 1))
    for i, (a, b) in enumerate(data.pairs):
        W[..., i] = (-0.5 * P[..., a, a] if a == b else -P[..., a, b]).T
    W[..., len(data.pairs):-1] = np.swapaxes(Pmu, 0, 1)
    W[..., -1] = (np.log(w) - 0.5 * np.einsum("rka,rka->rk", mu, Pmu) - 0.5 * logdet
                  - 0.5 * d * _LOG_2PI).T
    W = W.reshape(k * R, -1)
    # a sum of outer products, not a matrix product: BLAS is slow for so few features
    L = np.multiply(W[:, -1:], data.phiT[-1])
    tmp = np.empty_like(L)
    for f in range(W.shape[1] - 1):
        np.multiply(W[:, f:f + 1], data.phiT[f], out=tmp)
        L += tmp
    return L.reshape(k, R, data.N)


def _log_likelihood(data, w, mu, cov):
    """Log-likelihood per point (R,) of R starts (standardised data)."""
    L = _log_weighted_densities(data, w, mu, cov)
    m = L.max(axis=0)
    np.subtract(L, m, out=L)
    np.maximum(L, _LOG_TINY, out=L)
    np.exp(L, out=L)
    return (m + np.log(L.sum(axis=0))) @ data.mean_weights


def _estep_stats(data, w, mu, cov, single=False):
    """E-step of R starts on (a chunk of) the data: ``(ll, S)``.

    ``ll`` (R,) is the log-likelihood summed with the weights
    ``mean_weights`` (per point over all the data), ``S`` (k R, F) the
    responsibility-weighted sums of the features (the M-step's sufficient
    statistics).
    """
    R, k, d = mu.shape
    L = _log_weighted_densities(data, w, mu, cov)                 # (k, R, N)
    m = L.max(axis=0)
    np.subtract(L, m, out=L)
    np.maximum(L, _LOG_TINY, out=L)       # no subnormal numbers: they slow exp and the products
    if single:
        L = L.astype(np.float32)
        np.exp(L, out=L)
        s = L.sum(axis=0, dtype=np.float64)
        ll = (m + np.log(s)) @ data.mean_weights
        np.divide(L, s.astype(np.float32), out=L)
        return ll, (L.reshape(k * R, data.N) @ data.phi_w.astype(np.float32)).astype(float)
    np.exp(L, out=L)
    s = L.sum(axis=0)
    ll = (m + np.log(s)) @ data.mean_weights
    np.divide(L, s, out=L)
    return ll, L.reshape(k * R, data.N) @ data.phi_w


#: Points x components x starts from which the E-step runs in parallel chunks of the points.
PARALLEL_MIN_SIZE = 100_000
#: The points of a large E-step are split into this many chunks, whatever the number of threads.
N_CHUNKS = 4
_POOL = {}


def em_threads():
    """Threads of the E-steps: ``OMP_NUM_THREADS`` (what a rule's ``threads`` set), else the CPUs, at most 8."""
    try:
        n = int(os.environ.get("OMP_NUM_THREADS", "") or len(os.sched_getaffinity(0)))
    except (ValueError, AttributeError):
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def _chunks(data, n):
    """The data split into n contiguous chunks (kept on the data), weights per point of all."""
    cache = data.__dict__.setdefault("_chunk_cache", {})
    if n not in cache:
        parts = []
        for idx in np.array_split(np.arange(data.N), n):
            c = object.__new__(Standardised)
            c.__dict__.update({key: v for key, v in data.__dict__.items() if key != "_chunk_cache"})
            c.Z, c.N = data.Z[idx], idx.size
            c.phi = data.phi[idx]
            c.phiT = np.ascontiguousarray(data.phiT[:, idx])
            c.phi_w = np.ascontiguousarray(data.phi_w[idx])
            c.weight, c.mean_weights = data.weight[idx], data.mean_weights[idx]
            parts.append(c)
        cache[n] = parts
    return cache[n]


def _in_chunks(data, fn, w, *args):
    """``fn(data, w, *args)`` summed over :data:`N_CHUNKS` chunks of the points, on threads.

    numpy releases the GIL in its loops, so the chunks run in parallel on
    :func:`em_threads` threads. The chunks (and the order of their sum) do
    not depend on the number of threads, so neither do the results. Small
    problems run in one piece.
    """
    if data.N * np.size(w) < PARALLEL_MIN_SIZE or data.N < 4 * N_CHUNKS:
        return fn(data, w, *args)
    n = min(em_threads(), N_CHUNKS)
    chunks = _chunks(data, N_CHUNKS)
    if n == 1:
        parts = [fn(c, w, *args) for c in chunks]
    else:
        if n not in _POOL:
            _POOL[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="microprop-em")
        parts = list(_POOL[n].map(lambda c: fn(c, w, *args), chunks))
    if isinstance(parts[0], tuple):
        return tuple(_ordered_sum([p[i] for p in parts]) for i in range(len(parts[0])))
    return _ordered_sum(parts)


def _ordered_sum(parts):
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    return total


def em_step(data, w, mu, cov, single=False):
    """One EM iteration of R starts at once.

    Parameters
    ----------
    data : Standardised
        N points.
    w, mu, cov : numpy.ndarray, shapes (R, k), (R, k, d), (R, k, d, d)
        Current parameters (standardised units), valid (:func:`_valid`).
    single : bool
        Responsibilities and sufficient statistics in single precision
        (exp three times faster; the log-likelihood to about 1e-8 per point):
        for exploring starts, not for the optimum.

    Returns
    -------
    ll : numpy.ndarray, shape (R,)
        Log-likelihood per point of the *given* parameters (standardised
        data; subtract ``data.log_jacobian`` for data units).
    w, mu, cov : numpy.ndarray
        The parameters after the M-step (scikit-learn's estimates, with
        ``reg_covar`` on the diagonal).
    """
    R, k, d = mu.shape
    ll, S = _in_chunks(data, _estep_stats, w, mu, cov, single)
    S = np.swapaxes(S.reshape(k, R, -1), 0, 1)                    # (R, k, F)
    nk = S[..., -1] + _EPS10
    w_new = nk / nk.sum(axis=1, keepdims=True)
    npair = len(data.pairs)
    mu_new = S[..., npair:-1] / nk[..., None]                     # (R, k, d)
    cov_new = np.empty((R, k, d, d))
    for i, (a, b) in enumerate(data.pairs):
        c = S[..., i] / nk - mu_new[..., a] * mu_new[..., b]
        cov_new[..., a, b] = c
        cov_new[..., b, a] = c
    idx = np.arange(d)
    cov_new[..., idx, idx] += data.reg
    return ll, w_new, mu_new, cov_new


def _flat(w, mu, cov):
    R = w.shape[0]
    return np.concatenate([w, mu.reshape(R, -1), cov.reshape(R, -1)], axis=1)


def _unflat(theta, k, d):
    R = theta.shape[0]
    w = theta[:, :k]
    mu = theta[:, k:k + k * d].reshape(R, k, d)
    cov = theta[:, k + k * d:].reshape(R, k, d, d)
    return w, mu, cov


def _sorted_key(w, mu):
    """(R, k * (d + 1)) parameters with the components sorted by their first mean, for duplicates."""
    order = np.argsort(mu[..., 0], axis=1)
    ws = np.take_along_axis(w, order, axis=1)
    ms = np.take_along_axis(mu, order[..., None], axis=1)
    return np.concatenate([ws, ms.reshape(len(w), -1)], axis=1)


def _squarem_cycle(data, theta, k, d, single=False):
    """One SQUAREM cycle (scheme SqS3) of R starts: (ll of theta (R,), new theta, valid (R,))."""
    ll0, *p1 = em_step(data, *_unflat(theta, k, d), single=single)
    t1 = _flat(*p1)
    ll1, *p2 = em_step(data, *p1, single=single)
    t2 = _flat(*p2)
    r = t1 - theta
    v = t2 - 2.0 * t1 + theta
    nr, nv = np.linalg.norm(r, axis=1), np.linalg.norm(v, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = np.minimum(-nr / nv, -1.0)
    alpha = np.where(np.isfinite(alpha), alpha, -1.0)
    for _ in range(40):                       # halve the step towards theta2 until valid
        tx = theta - 2.0 * alpha[:, None] * r + (alpha ** 2)[:, None] * v
        wx, _, cx = _unflat(tx, k, d)
        ok = _valid(wx, cx)
        if ok.all() or np.all(alpha[~ok] == -1.0):
            break
        alpha = np.where(ok, alpha, (alpha - 1.0) / 2.0)
        alpha = np.where(alpha > -1.0 - 1e-3, -1.0, alpha)
    okx = _valid(wx, cx)
    tx = np.where(okx[:, None], tx, t2)
    llx, *p3 = em_step(data, *_unflat(tx, k, d), single=single)
    t3 = _flat(*p3)
    take = np.isfinite(llx) & (llx >= ll1) & _valid(p3[0], p3[2])
    new = np.where(take[:, None], t3, t2)
    w_new, _, c_new = _unflat(new, k, d)
    return ll0, new, _valid(w_new, c_new) & np.isfinite(ll0)


def run_starts(data, w, mu, cov, tol=1e-6, xtol=None, max_cycles=1000, prune=True, min_cycles=3,
               same_basin=1e-2, margin=1e-6, single=False, remaining=None):
    """SQUAREM-accelerated batched EM of many starts, with early stopping of those that cannot win.

    Each cycle is two EM steps, the squared extrapolation of their
    differences (``alpha = min(-|r| / |v|, -1)`` per start, halved towards
    the plain EM point until the weights are positive and the covariances
    positive definite) and one EM step from it, kept only when the
    extrapolated point is no worse than the first EM step (Varadhan & Roland
    2008, scheme SqS3): the log-likelihood never decreases.

    A start stops when one cycle gains less than ``tol`` in log-likelihood
    per point and, with ``xtol``, the distance its parameters have still to
    go (the geometric extrapolation of its last two steps, largest entry of
    the standardised weights, means and covariances) is below ``xtol``:
    on the flat ridge of overlapping components a small gain alone stops
    far from the optimum. A start is dropped when it degenerates (a weight
    of 0, a singular covariance) and, from ``min_cycles`` cycles on, when a
    component holds fewer points than :func:`min_points`. With ``prune``,
    after ``min_cycles`` cycles a start is also dropped when it lies within ``same_basin`` (sorted weights and
    means) of a better start (it is on the way to the same optimum), or when
    it cannot catch the best: its log-likelihood plus 100 times the larger
    of its last two gains (what a linear convergence at rate 0.99 per cycle
    has still to give) stays ``margin`` below the best.

    Parameters
    ----------
    data : Standardised
    w, mu, cov : numpy.ndarray, shapes (R, k), (R, k, d), (R, k, d, d)
        Starts, standardised units.
    tol, xtol : float
    max_cycles : int
    prune : bool
    min_cycles : int
    same_basin, margin : float
    single : bool
        EM steps in single precision (:func:`em_step`), for exploring.
    remaining : float, optional
        Also stop a start when the geometric extrapolation of its last two
        gains says that less than this is left to gain (log-likelihood per
        point): enough for an information criterion.

    Returns
    -------
    w, mu, cov : numpy.ndarray
        The surviving starts, best first.
    ll : numpy.ndarray, shape (R',)
        Their log-likelihoods per point (standardised data).
    info : dict
        ``n_starts``, ``cycles``, ``em_steps`` (start-iterations computed),
        ``converged`` (count), ``dropped`` (count per reason).
    """
    R, k, d = mu.shape
    theta = _flat(w, mu, cov)
    valid = _valid(w, cov)
    ll = np.full(R, -np.inf)
    gain = np.full(R, np.inf)
    prev_gain = np.full(R, np.inf)
    step = np.full(R, np.inf)
    prev_step = np.full(R, np.inf)
    active, alive = valid.copy(), valid.copy()
    dropped = {"invalid": int((~valid).sum()), "duplicate": 0, "cannot_win": 0}
    steps, cycle, n_conv = 0, 0, 0
    for cycle in range(1, max_cycles + 1):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        steps += 3 * idx.size
        ll0, new, ok = _squarem_cycle(data, theta[idx], k, d, single)
        prev_gain[idx], prev_step[idx] = gain[idx], step[idx]
        gain[idx] = ll0 - ll[idx]
        ll[idx] = ll0                         # of theta before this cycle
        step[idx] = np.max(np.abs(new - theta[idx]), axis=1)
        if cycle >= min_cycles:               # a component may gather its points at first
            ok &= _populated(data, new[:, :k])
        theta[idx[ok]] = new[ok]
        bad = idx[~ok]
        active[bad] = alive[bad] = False
        dropped["invalid"] += bad.size
        done = ok & (gain[idx] < tol)
        if remaining is not None:
            # what a geometric convergence of the gains has still to give
            with np.errstate(divide="ignore", invalid="ignore"):
                rho = gain[idx] / prev_gain[idx]
                rest = np.where((rho >= 0) & (rho < 1), gain[idx] * rho / (1 - rho), np.inf)
            done |= ok & (rest < remaining)
        if xtol is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                q = step[idx] / prev_step[idx]
                left = np.where(q < 1, step[idx] * q / (1 - q), np.inf)
            done &= (left < xtol) | (step[idx] < 1e-3 * xtol)
        active[idx[done]] = False
        n_conv += int(done.sum())
        if not prune or cycle < min_cycles:
            continue
        best = np.max(ll[alive]) if alive.any() else -np.inf
        run = np.flatnonzero(active)
        reach = ll[run] + 100.0 * np.maximum(gain[run], prev_gain[run])
        lose = run[reach < best - margin]
        active[lose] = alive[lose] = False
        dropped["cannot_win"] += lose.size
        cand = np.flatnonzero(alive)
        if cand.size > 1:
            cand = cand[np.argsort(-ll[cand])]
            wc, muc, _ = _unflat(theta[cand], k, d)
            key = _sorted_key(wc, muc)
            close = np.max(np.abs(key[:, None, :] - key[None, :, :]), axis=2) < same_basin
            kept = np.ones(cand.size, bool)
            for i in range(1, cand.size):
                if np.any(close[i, :i] & kept[:i]):
                    kept[i] = False
            gone = cand[~kept]
            active[gone] = alive[gone] = False
            dropped["duplicate"] += gone.size
    keep = np.flatnonzero(alive & _populated(data, theta[:, :k]))
    w, mu, cov = _unflat(theta[keep], k, d)
    ll_keep = _in_chunks(data, _log_likelihood, w, mu, cov) if keep.size else np.empty(0)
    order = np.argsort(-ll_keep)
    info = {"n_starts": R, "cycles": cycle, "em_steps": steps, "converged": n_conv,
            "dropped": dropped}
    return w[order], mu[order], cov[order], ll_keep[order], info


def _score_stats(data, w, mu, cov):
    """Sums over the points of one mixture's scores: ``(F, g, ll)``.

    ``g`` (P,) is the weighted sum of the per-point scores, ``F`` (P, P) that
    of their outer products, ``ll`` the log-likelihood summed with the
    weights ``mean_weights`` (per point: over a chunk, a part of it). The
    parameters: the logits of the first k - 1 weights (the last fixed at 0),
    the means, and the covariances' entries on and above the diagonal
    (``P = k - 1 + k d + k d (d + 1) / 2``); standardised units.
    """
    k, d = mu.shape
    P, _ = _inv_logdet(cov)
    L = _log_weighted_densities(data, w[None], mu[None], cov[None])[:, 0, :]   # (k, N)
    m = L.max(axis=0)
    np.subtract(L, m, out=L)
    np.maximum(L, _LOG_TINY, out=L)
    np.exp(L, out=L)
    s = L.sum(axis=0)
    ll = float((m + np.log(s)) @ data.mean_weights)
    r = (L / s).T                                                 # (N, k)
    cols = [r[:, :-1] - w[:-1]]
    diff = data.Z[:, None, :] - mu[None]                          # (N, k, d)
    u = np.zeros_like(diff)                                       # P_j (z - mu_j)
    for a in range(d):
        for b in range(d):
            u[..., a] += P[None, :, a, b] * diff[..., b]
    cols.append((r[..., None] * u).reshape(data.N, k * d))
    for a, b in data.pairs:
        f = 0.5 if a == b else 1.0
        cols.append(f * r * (u[..., a] * u[..., b] - P[:, a, b][None, :]))
    G = np.concatenate(cols, axis=1)
    Gw = G * data.weight[:, None]
    return Gw.T @ G, Gw.sum(axis=0), ll


def _with_step(w, mu, cov, step, pairs):
    k, d = mu.shape
    logit = np.r_[np.log(w[:-1] / w[-1]) + step[:k - 1], 0.0]
    w2 = np.exp(logit - logit.max())
    w2 /= w2.sum()
    mu2 = mu + step[k - 1:k - 1 + k * d].reshape(k, d)
    cov2 = cov.copy()
    rest = step[k - 1 + k * d:].reshape(len(pairs), k)
    for i, (a, b) in enumerate(pairs):
        cov2[:, a, b] += rest[i]
        if a != b:
            cov2[:, b, a] += rest[i]
    return w2, mu2, cov2


def newton_polish(data, w, mu, cov, xtol=1e-7, max_iter=30):
    """Polish one mixture to its optimum by scoring steps with a line search (BHHH).

    EM crawls along the flat ridge of overlapping components; the outer
    product of the per-point scores estimates the information (Berndt, Hall,
    Hall & Hausman 1974), and its Newton step reaches the optimum in a few
    iterations. Each step is halved (up to 8 times) until the log-likelihood
    rises and the weights and covariances stay valid; the iteration stops
    when a step changes no parameter by more than ``xtol`` (standardised
    units), when none raises the log-likelihood, or after two steps in a row
    cut below a fifth (no well-defined optimum nearby: a mixture of more
    components than the data hold). The log-likelihood never decreases.

    Parameters
    ----------
    data : Standardised
    w, mu, cov : numpy.ndarray, shapes (k,), (k, d), (k, d, d)
        Standardised units.
    xtol : float
    max_iter : int

    Returns
    -------
    w, mu, cov : numpy.ndarray
    ll : float
        Log-likelihood per point (standardised data).
    n_iter : int
    """
    F, g, ll = _in_chunks(data, _score_stats, w, mu, cov)
    it, short = 0, 0
    for it in range(1, max_iter + 1):
        scale = np.sqrt(np.maximum(np.diag(F), 1e-300))
        try:
            step = np.linalg.solve(F / np.outer(scale, scale) + 1e-12 * np.eye(len(g)), g / scale) / scale
        except np.linalg.LinAlgError:
            break
        t, accepted = 1.0, False
        for _ in range(8):
            w2, mu2, cov2 = _with_step(w, mu, cov, t * step, data.pairs)
            if _valid(w2[None], cov2[None])[0] and _populated(data, w2[None])[0]:
                ll2 = float(_in_chunks(data, _log_likelihood, w2[None], mu2[None], cov2[None])[0])
                if ll2 >= ll:
                    accepted = True
                    break
            t /= 2
        if not accepted:
            break
        F2, g2, ll2 = _in_chunks(data, _score_stats, w2, mu2, cov2)
        change = np.max(np.abs(np.r_[w2 - w, (mu2 - mu).ravel(), (cov2 - cov).ravel()]))
        gain = ll2 - ll
        w, mu, cov, F, g, ll = w2, mu2, cov2, F2, g2, ll2
        if change < xtol or gain < 1e-15:
            break
        # short steps twice in a row: not near a well-defined optimum (e.g. too many components)
        short = short + 1 if t < 0.2 else 0
        if short >= 2:
            break
    return w, mu, cov, ll, it


# --------------------------------------------------------------------- starts

def _hard_start(data, labels, k, rng):
    """Weights, means and covariances of hard assignments (R, N) of standardised data."""
    R = labels.shape[0]
    resp = np.zeros((data.N, R * k))
    resp[np.arange(data.N)[None, :].repeat(R, 0).ravel(),
         (labels + k * np.arange(R)[:, None]).ravel()] = 1.0
    S = (data.phi.T @ resp).reshape(-1, R, k)
    nk = S[-1]
    # an empty cluster gets one random point (and the covariance of all points below)
    empty = nk < 1
    npair = len(data.pairs)
    mu = np.moveaxis(S[npair:-1] / np.maximum(nk, 1), 0, -1)
    if empty.any():
        rr, kk = np.nonzero(empty)
        mu[rr, kk] = data.Z[rng.integers(0, data.N, rr.size)]
    d = data.d
    cov = np.empty((R, k, d, d))
    for i, (a, b) in enumerate(data.pairs):
        c = S[i] / np.maximum(nk, 1) - mu[..., a] * mu[..., b]
        cov[..., a, b] = cov[..., b, a] = c
    idx = np.arange(d)
    small = (nk < d + 1)[..., None, None]
    cov = np.where(small, np.eye(d) / k ** 2, cov)   # too few points: a broad start
    cov[..., idx, idx] += data.reg
    w = (np.maximum(nk, 1) / np.maximum(nk, 1).sum(axis=1, keepdims=True))
    return w, mu, cov


def _nearest(data, centres, metric):
    """Labels (R, N) of the nearest of centres (R, k, d) in the metric (d,) of squared distances."""
    dist = np.zeros(centres.shape[:2] + (data.N,))
    for a in range(data.d):
        diff = data.Z[None, None, :, a] - centres[:, :, a, None]
        dist += metric[a] * diff * diff
    return dist.argmin(axis=1)


def kmeans_starts(data, k, n, rng, metric, max_iter=30):
    """``n`` k-means solutions (k-means++ seeding with greedy trials, then Lloyd), as hard starts.

    As scikit-learn's ``GaussianMixture(init_params="kmeans")``: k-means in
    the data's own units (``metric`` = ``scale**2`` gives squared Euclidean
    distances of the data), its labels as hard responsibilities.

    Returns
    -------
    w, mu, cov : numpy.ndarray, shapes (n, k), (n, k, d), (n, k, d, d)
    """
    Z, N = data.Z, data.N
    trials = 2 + int(np.log(k))
    centres = np.empty((n, k, data.d))
    first = rng.integers(0, N, n)
    centres[:, 0] = Z[first]
    d2 = ((Z[None] - centres[:, :1]) ** 2 @ metric)                # (n, N)
    for j in range(1, k):
        p = d2 / d2.sum(axis=1, keepdims=True)
        cum = np.cumsum(p, axis=1)
        u = rng.random((n, trials))
        cand = np.minimum(np.array([np.searchsorted(cum[i], u[i]) for i in range(n)]), N - 1)
        cd = ((Z[None, None] - Z[cand][:, :, None, :]) ** 2 @ metric)   # (n, trials, N)
        pot = np.minimum(cd, d2[:, None, :]).sum(axis=2)
        best = np.argmin(pot, axis=1)
        centres[:, j] = Z[cand[np.arange(n), best]]
        d2 = np.minimum(d2, cd[np.arange(n), best])
    labels = _nearest(data, centres, metric)
    offset = (k * np.arange(n))[:, None]
    for _ in range(max_iter):
        idx = (labels + offset).ravel()
        cnt = np.bincount(idx, minlength=n * k).reshape(n, k)
        sums = np.stack([np.bincount(idx, weights=np.tile(Z[:, a], n), minlength=n * k)
                         for a in range(data.d)], axis=-1).reshape(n, k, data.d)
        centres = np.where((cnt > 0)[..., None], sums / np.maximum(cnt, 1)[..., None], centres)
        new_labels = _nearest(data, centres, metric)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
    return _hard_start(data, labels, k, rng)


def random_data_starts(data, k, n, rng, metric):
    """``n`` starts at ``k`` distinct random points, as scikit-learn's ``init_params="random_from_data"``.

    scikit-learn puts a component of covariance ``reg_covar`` on each chosen
    point, so its first E-step assigns every point to the nearest one; that
    hard assignment (in the data's own units) is the start here.

    Returns
    -------
    w, mu, cov : numpy.ndarray, shapes (n, k), (n, k, d), (n, k, d, d)
    """
    pick = np.array([rng.choice(data.N, size=k, replace=False) for _ in range(n)])
    labels = _nearest(data, data.Z[pick], metric)
    return _hard_start(data, labels, k, rng)


def split_starts(w, mu, cov, reg=REG_COVAR):
    """Starts of ``k + 1`` components from one ``k``-component solution, one per component split.

    Component ``j`` is replaced by two of half its weight at ``mu_j +- sqrt(l) u``
    along its principal axis (eigenvalue ``l``, eigenvector ``u``), each with
    the covariance shrunk along that axis (``cov_j - 0.75 l u u^T``, plus
    ``reg`` on the diagonal). Any units (those of the inputs).

    Parameters
    ----------
    w, mu, cov : numpy.ndarray, shapes (k,), (k, d), (k, d, d)
    reg : float or numpy.ndarray, shape (d,)

    Returns
    -------
    w, mu, cov : numpy.ndarray, shapes (k, k + 1), (k, k + 1, d), (k, k + 1, d, d)
    """
    w, mu, cov = (np.asarray(a, float) for a in (w, mu, cov))
    k, d = mu.shape
    out_w, out_mu, out_cov = [], [], []
    for j in range(k):
        lam, vec = np.linalg.eigh(cov[j])
        lam_max, u = lam[-1], vec[:, -1]
        step = np.sqrt(max(lam_max, 0.0)) * u
        shrunk = cov[j] - 0.75 * lam_max * np.outer(u, u) + np.diag(np.broadcast_to(reg, (d,)))
        out_w.append(np.r_[np.delete(w, j), w[j] / 2, w[j] / 2])
        out_mu.append(np.r_[np.delete(mu, j, axis=0), [mu[j] - step], [mu[j] + step]])
        out_cov.append(np.r_[np.delete(cov, j, axis=0), [shrunk], [shrunk]])
    return np.array(out_w), np.array(out_mu), np.array(out_cov)


def multi_start_em(X, k, n_init=10, seed=0, extra_starts=None, explore_n=3000, n_bins=2048,
                   keep_within=0.02, max_keep=4, tol=1e-9, xtol=1e-7, polish="newton",
                   max_em_cycles=20):
    """The maximum-likelihood mixture of many EM starts, fast.

    1. Starts: ``n_init`` k-means solutions and ``3 n_init`` random-data
       starts (the two kinds of scikit-learn, in the data's units; computed
       on a random subsample of ``explore_n`` points when there are more),
       plus ``extra_starts`` (e.g. a smaller mixture's solution with one
       component split, :func:`split_starts`).
    2. Exploration (:func:`run_starts`): all starts in one batch to
       scikit-learn's tolerance 1e-6, dropping the starts that cannot win
       and those on the way to an optimum a better start is reaching. 1D
       data of more than ``2 n_bins`` points are explored as a histogram of
       ``n_bins`` weighted bins (all points, binned), on which scoring steps
       also bring the candidates to their optima and rank them (those within
       1e-4 of the best go on); 2D data of more than ``explore_n`` points on
       the subsample.
    3. The distinct optima within ``keep_within`` in log-likelihood per point
       of the best (at most ``max_keep``; the sampling error of a
       subsample's log-likelihood difference is about 0.01 at 3000 points)
       run on all points: a few EM cycles (2D), then scoring steps
       (:func:`newton_polish`) to ``xtol``; the best is returned.

    Parameters
    ----------
    X : numpy.ndarray, shape (N, d)
        Finite data.
    k : int
    n_init : int
        k-means starts (and a third of the random-data starts).
    seed : int
        Random state of the starts and of the subsample.
    extra_starts : tuple of numpy.ndarray, optional
        ``(w, mu, cov)`` of shapes (R, k), (R, k, d), (R, k, d, d), data units.
    explore_n, n_bins, keep_within, max_keep
        As above.
    tol : float
        Log-likelihood gain per point below which EM stops (all-point stage).
    xtol : float
        Parameter change (standardised units) below which the scoring steps stop.
    polish : {"newton", "em"}
        ``newton``: step 3 by :func:`newton_polish` (every parameter at its
        optimum); ``em``: at most ``max_em_cycles`` SQUAREM cycles of EM on
        all points for the best (and a second within 0.002) -- enough for
        the log-likelihood of an information criterion.
    max_em_cycles : int

    Returns
    -------
    w, mu, cov : numpy.ndarray, shapes (k,), (k, d), (k, d, d)
        Data units; the covariances hold ``reg_covar`` on the diagonal, as
        scikit-learn's.
    info : dict
        ``ll`` (log-likelihood per point, data units), the stages' info
        (``explore``, ``prepolish`` for binned data, ``polish``; each with
        its ``cpu_s``), ``n_candidates``, ``explored_on`` (points or bins).

    Raises
    ------
    FloatingPointError
        If every start degenerates.
    """
    # the products here are small: BLAS threads only wait for each other (x30 on 2 busy cores)
    with threadpool_limits(1, user_api="blas"):
        return _multi_start_em(X, k, n_init, seed, extra_starts, explore_n, n_bins, keep_within,
                               max_keep, tol, xtol, polish, max_em_cycles)


def _multi_start_em(X, k, n_init, seed, extra_starts, explore_n, n_bins, keep_within, max_keep,
                    tol, xtol, polish, max_em_cycles):
    if polish not in ("newton", "em"):
        raise ValueError(f"polish must be 'newton' or 'em', got {polish!r}")
    X = np.asarray(X, dtype=float)
    rng = np.random.default_rng(int(seed))
    full = Standardised(X)
    sub = full
    if full.N > explore_n:
        sub = full.subset(np.sort(rng.choice(full.N, size=int(explore_n), replace=False)))
    metric = full.scale ** 2
    if k == 1:
        starts = [_hard_start(full, np.zeros((1, full.N), int), 1, rng)]
    else:
        starts = [kmeans_starts(sub, k, max(int(n_init), 1), rng, metric),
                  random_data_starts(sub, k, RANDOM_PER_KMEANS * max(int(n_init), 1), rng, metric)]
    if extra_starts is not None:
        starts.append(full.from_data_units(*extra_starts))
    w, mu, cov = (np.concatenate([s[i] for s in starts]) for i in range(3))
    binned = full.d == 1 and full.N > 2 * n_bins
    where = full.binned(n_bins) if binned else sub
    info = {"explored_on": int(where.N)}
    t0 = time.process_time()

    def stage(name, data, params, **kw):
        out = run_starts(data, *params, **kw)
        if len(out[0]) == 0:
            raise FloatingPointError(f"all {len(params[0])} EM starts of {k} components degenerated")
        spent = sum(v["cpu_s"] for v in info.values() if isinstance(v, dict))
        info[name] = out[4]
        info[name]["cpu_s"] = time.process_time() - t0 - spent
        return out

    w, mu, cov, ll, _ = stage("explore", where, (w, mu, cov), tol=1e-6, single=True)
    keep = np.flatnonzero(ll >= ll[0] - keep_within)[:max_keep]
    w, mu, cov = w[keep], mu[keep], cov[keep]
    if polish == "em":
        # the log-likelihood only (an information criterion): EM cycles on all points for the
        # best (and a second within 0.002 of it) suffice
        near = max(1, int(np.sum(ll[:2] >= ll[0] - 0.1 * keep_within)))
        w, mu, cov, ll, _ = stage("polish", full, (w[:near], mu[:near], cov[:near]), tol=tol,
                                  max_cycles=max_em_cycles, same_basin=1e-3, single=True)
        w, mu, cov = full.to_data_units(w[:1], mu[:1], cov[:1])
        info.update(ll=float(ll[0] - full.log_jacobian), n_candidates=int(keep.size))
        return w[0], mu[0], cov[0], info
    if binned:
        # the candidates to their optima on the histogram; the best few on to all points
        t1 = time.process_time()
        pre = [newton_polish(where, w[i], mu[i], cov[i], xtol=xtol) for i in range(len(w))]
        ll = np.array([p[3] for p in pre])
        order = np.argsort(-ll)
        keep = order[ll[order] >= ll[order[0]] - 1e-4]
        w, mu, cov = (np.array([pre[i][j] for i in keep]) for j in range(3))
        key = _sorted_key(w, mu)                  # one of each optimum reached
        dup = np.array([np.any(np.max(np.abs(key[:i] - key[i]), axis=1) < 1e-4)
                        for i in range(len(key))])
        w, mu, cov = w[~dup], mu[~dup], cov[~dup]
        keep = keep[~dup]
        info["prepolish"] = {"newton_iter": [pre[i][4] for i in range(len(pre))],
                             "cpu_s": time.process_time() - t1}
    else:
        # a few EM cycles on all points: the subsample's optimum is not theirs
        w, mu, cov, ll, _ = stage("polish", full, (w, mu, cov), tol=1e-9, max_cycles=8,
                                  same_basin=1e-3)
    t1 = time.process_time()
    best, n_newton = None, []
    for i in range(len(w)):
        out = newton_polish(full, w[i], mu[i], cov[i], xtol=xtol)
        n_newton.append(out[4])
        if best is None or out[3] > best[3]:
            best = out
    info.setdefault("polish", {"cpu_s": 0.0})
    info["polish"]["newton_iter"] = n_newton
    info["polish"]["cpu_s"] += time.process_time() - t1
    w, mu, cov = full.to_data_units(best[0][None], best[1][None], best[2][None])
    info.update(ll=float(best[3] - full.log_jacobian), n_candidates=int(keep.size))
    return w[0], mu[0], cov[0], info
