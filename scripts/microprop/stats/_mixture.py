"""Gaussian-mixture deconvolution of grid-indentation data, with its information criteria.

* :func:`deconvolve` -- statistical deconvolution of a property histogram
  (indentation modulus ``E_GPa`` or hardness ``H_GPa``) into Gaussian
  components, one per mechanical phase (grid indentation technique:
  Constantinides, Ravi Chandran, Ulm & Van Vliet 2006, Mater. Sci. Eng. A 430;
  Ulm et al. 2007, J. Am. Ceram. Soc. 90). The mixture is fitted by maximum
  likelihood from many EM starts run as one numpy batch
  (:func:`fit_gmm`, :mod:`microprop.stats._em`), returned as scikit-learn's
  :class:`~sklearn.mixture.GaussianMixture` (whose likelihood, BIC and AIC
  are used), and the components are named by optimal assignment of their
  means to literature phase means (:data:`microprop.phases.E_PHASE_MEANS_GPA`).
* :func:`deconvolve_joint` -- one bivariate mixture of (E, H) pairs, with
  its E and H marginals (:func:`marginal`).
* :func:`bic_table` -- Bayesian/Akaike information criteria against the
  number of components (Schwarz 1978; Akaike 1974).
* :func:`gmm_tables`, :func:`mixture_fractions` -- the tables the
  ``deconvolve`` rule writes, pooled and per area.
"""
from __future__ import annotations

import copy
import hashlib
import logging
from collections import OrderedDict

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.mixture import GaussianMixture

from ..errors import InputError
from ..phases import E_PHASE_MEANS_GPA, H_PHASE_MEANS_GPA, PHASE_PROPERTIES
from ._em import REG_COVAR, multi_start_em, split_starts

log = logging.getLogger(__name__)

def phase_reference_means(quantity="E_GPa"):
    """Literature phase means used to name mixture components.

    Parameters
    ----------
    quantity : {"E_GPa", "H_GPa"}
        Indentation modulus or hardness.

    Returns
    -------
    dict
        Phase name -> mean in GPa, for ``LD-C-S-H``, ``HD-C-S-H``, ``CH``,
        ``ACC``. For ``H_GPa`` the column ``H_mean_GPa`` of
        ``microprop.phases.PHASE_PROPERTIES`` (indexed by phase) is
        used when that module provides it (the forward model of the virtual specimens),
        else :data:`H_PHASE_MEANS_GPA`; for ``E_GPa``, :data:`E_PHASE_MEANS_GPA`.

    Raises
    ------
    InputError
        For an unknown quantity.
    """
    if quantity == "E_GPa":
        return dict(E_PHASE_MEANS_GPA)
    if quantity != "H_GPa":
        raise InputError(f"quantity {quantity!r}: expected 'E_GPa' or 'H_GPa'")
    try:
        out = {ph: float(PHASE_PROPERTIES.loc[ph, "H_mean_GPa"]) for ph in H_PHASE_MEANS_GPA}
    except (KeyError, AttributeError, TypeError, ValueError) as exc:
        log.warning("phases.PHASE_PROPERTIES has no H_mean_GPa for every phase (%s); "
                    "using the literature H means", exc)
        return dict(H_PHASE_MEANS_GPA)
    if not all(v > 0 for v in out.values()):
        return dict(H_PHASE_MEANS_GPA)
    return out


def _clean_values(values, what, minimum):
    x = np.asarray(values, dtype=float).ravel()
    bad = ~np.isfinite(x)
    if bad.any():
        log.warning("%s: ignoring %d non-finite value(s) of %d", what, int(bad.sum()), x.size)
        x = x[~bad]
    if x.size < minimum:
        raise InputError(f"{what}: {x.size} finite value(s); at least {minimum} are needed")
    return x


def name_components(means, reference):
    """Name mixture components by optimal assignment to reference phase means.

    The cost of giving component ``i`` the name of phase ``j`` is
    ``log(mean_i / ref_j)**2`` (a ratio, since phase moduli span a decade;
    squared, a strictly convex cost, so the names keep the order of the means);
    the total cost is minimised with the Hungarian algorithm
    (:func:`scipy.optimize.linear_sum_assignment`). Components left over when
    there are more components than phases are named ``extra-<component>``.

    Parameters
    ----------
    means : array-like, shape (k,)
        Component means (same unit as ``reference``), positive.
    reference : dict
        Phase name -> reference mean.

    Returns
    -------
    list of str, length k
    """
    means = np.maximum(np.asarray(means, dtype=float), 1e-12)
    phases = list(reference)
    ref = np.array([reference[p] for p in phases], dtype=float)
    cost = np.log(means[:, None] / ref[None, :]) ** 2
    rows, cols = linear_sum_assignment(cost)
    names = [f"extra-{i}" for i in range(len(means))]
    for r, c in zip(rows, cols):
        names[r] = phases[c]
    return names


def _sklearn_restarts(X, n_components, seed=0, n_init=10):
    """The former fit: ``n_init`` k-means and ``n_init`` random-data scikit-learn EM runs to 1e-6.

    Kept as the fallback of :func:`fit_gmm` and as the reference its tests
    compare with (20 full EM runs; minutes at 26,000 indents).
    """
    best, best_score = None, -np.inf
    for init in ("kmeans", "random_from_data"):
        gmm = GaussianMixture(n_components=int(n_components), covariance_type="full",
                              init_params=init, n_init=max(int(n_init), 1),
                              random_state=int(seed), max_iter=2000, tol=1e-6).fit(X)
        score = gmm.score(X)
        if score > best_score:
            best, best_score = gmm, score
    return best


_FIT_CACHE = OrderedDict()
_FIT_CACHE_SIZE = 16


def _cache_key(X, n_components, seed, n_init, extra_starts, polish):
    h = hashlib.blake2b(np.ascontiguousarray(X).tobytes(), digest_size=16)
    h.update(repr((X.shape, int(n_components), int(seed), int(n_init), polish)).encode())
    for a in extra_starts or ():
        h.update(np.ascontiguousarray(a, dtype=float).tobytes())
    return h.hexdigest()


def _fitted_mixture(X, w, mu, cov, seed, info):
    """A fitted scikit-learn ``GaussianMixture`` holding the given optimum (data units).

    Its fitted attributes are set as scikit-learn's ``fit`` sets them
    (``precisions_cholesky_`` from the Cholesky factor of each covariance),
    so that ``score``, ``bic``, ``aic`` and ``predict`` are scikit-learn's own
    code. scikit-learn's EM warm started from it gains less than 1e-9 in
    log-likelihood per point and moves no fraction by 1e-4
    (``tests/test_deconvolution.py``).
    """
    k, d = mu.shape
    gmm = GaussianMixture(n_components=k, covariance_type="full", random_state=int(seed),
                          max_iter=2000, tol=1e-6)
    chol = np.linalg.cholesky(cov)
    prec_chol = np.linalg.inv(chol).transpose(0, 2, 1)   # upper: precision = U U^T
    gmm.weights_ = w / w.sum()
    gmm.means_ = mu
    gmm.covariances_ = cov
    gmm.precisions_cholesky_ = prec_chol
    gmm.precisions_ = prec_chol @ prec_chol.transpose(0, 2, 1)
    gmm.converged_ = True
    gmm.n_iter_ = int(sum(v.get("em_steps", 0) for v in info.values() if isinstance(v, dict)))
    gmm.n_features_in_ = d
    gmm.lower_bound_ = float(info["ll"])
    gmm.lower_bounds_ = [float(info["ll"])]
    return gmm


def fit_gmm(X, n_components, seed=0, n_init=10, extra_starts=None, cache=True, polish="newton"):
    """Maximum-likelihood Gaussian mixture of many EM starts, run together.

    scikit-learn's k-means starts alone often split a broad component (the
    clinker peak of E) and merge two narrow neighbours (LD/HD-C-S-H), and its
    default tolerance (1e-3) stops overlapping C-S-H components far from the
    optimum; so ``n_init`` starts from k-means solutions and ``3 n_init``
    from random data points (the two kinds of scikit-learn; the random ones
    reach the optima k-means solutions miss), plus ``extra_starts``,
    compete, and the best is brought to its optimum.
    They run as one numpy batch (:func:`microprop.stats._em.multi_start_em`,
    SQUAREM-accelerated EM): explored on a random subsample of 3000 points
    (2D data) or on a histogram of 2048 bins (1D data, when there are more
    than 4096 points), the starts whose log-likelihood cannot catch the best
    and those on the way to an optimum another start is reaching are
    dropped; the few distinct optima left are brought to their optimum on
    all points by scoring (Newton-type) steps, which do not crawl along the
    flat ridge of overlapping components as EM does (EM to scikit-learn's
    tolerance 1e-6 stops up to 0.03 in fraction short of it). The result is
    a fitted scikit-learn ``GaussianMixture`` (``reg_covar`` 1e-6), so that
    the likelihood, the BIC and the AIC are scikit-learn's; its own EM,
    warm started from it, stays put.

    Parameters
    ----------
    X : array-like, shape (N, d)
        Finite data (d = 1: one property; d = 2: (E, H) pairs), any units.
    n_components : int
        k >= 1.
    seed : int
        Random state of the starts and of the subsample.
    n_init : int
        k-means starts; three times as many random-data starts.
    extra_starts : tuple of array-like, optional
        ``(weights, means, covariances)`` of further starts, shapes (R, k),
        (R, k, d), (R, k, d, d), in the data's units (e.g.
        :func:`microprop.stats._em.split_starts` of a (k - 1)-component fit).
    cache : bool
        Look up and keep the fit in the cache (see Notes).
    polish : {"newton", "em"}
        How the winner is brought to its optimum on all points: scoring
        (Newton-type) steps to 1e-7 in every parameter (standardised units;
        default), or at most 20 SQUAREM cycles of EM in single precision
        with the log-likelihood then evaluated in double (an information
        criterion; cheaper for mixtures of more components than the data
        hold, where scoring steps get nowhere).

    Returns
    -------
    sklearn.mixture.GaussianMixture
        Fitted, ``covariance_type="full"``; ``multi_start_`` holds what the
        starts did (``ll`` per point, dropped starts by reason, EM steps).

    Raises
    ------
    InputError
        For ``polish`` other than ``"newton"`` or ``"em"``, or
        ``n_components < 1``.

    Notes
    -----
    The last 16 fits are cached by the bytes of ``X`` and the arguments, so
    that the rule's tables of E and H from one joint (E, H) mixture, or a
    single area equal to the pooled data, cost one fit; a copy is returned.
    Should every start degenerate (a singular covariance; e.g. fewer
    distinct values than components), the former 20 scikit-learn runs
    (:func:`_sklearn_restarts`) are used, with a warning.
    """
    if polish not in ("newton", "em"):
        raise InputError(f"fit_gmm: polish must be 'newton' or 'em', got {polish!r}")
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    k = int(n_components)
    if k < 1:
        raise InputError(f"fit_gmm: n_components must be >= 1, got {k}")
    key = _cache_key(X, k, seed, n_init, extra_starts, polish) if cache else None
    if key in _FIT_CACHE:
        _FIT_CACHE.move_to_end(key)
        return copy.deepcopy(_FIT_CACHE[key])
    try:
        w, mu, cov, info = multi_start_em(X, k, n_init=n_init, seed=seed, extra_starts=extra_starts,
                                          polish=polish)
        gmm = _fitted_mixture(X, w, mu, cov, seed, info)
    except (FloatingPointError, np.linalg.LinAlgError, ValueError) as exc:
        log.warning("batched EM of %d components failed (%s); running %d scikit-learn EM "
                    "starts instead", k, exc, 2 * max(int(n_init), 1))
        gmm = _sklearn_restarts(X, k, seed=seed, n_init=n_init)
        info = {"fallback": str(exc)}
    gmm.multi_start_ = info
    if not cache:
        return gmm
    _FIT_CACHE[key] = gmm
    while len(_FIT_CACHE) > _FIT_CACHE_SIZE:
        _FIT_CACHE.popitem(last=False)
    return copy.deepcopy(gmm)


def deconvolve(values, n_components=4, seed=0, n_init=10, quantity="E_GPa",
               reference=None, what="values", return_model=False):
    """Deconvolve a property histogram into Gaussian phase components.

    A 1D Gaussian mixture ``p(x) = sum_i f_i N(x; mu_i, s_i^2)`` is fitted by
    maximum likelihood (``n_init`` k-means and ``n_init`` random starts of
    EM, the best brought to its optimum, see :func:`fit_gmm`) -- the statistical
    deconvolution of grid nanoindentation (Constantinides et al. 2006,
    Mater. Sci. Eng. A 430, 189-202; Ulm et al. 2007, J. Am. Ceram. Soc. 90,
    2677-2692). Components are sorted by mean and named by
    :func:`name_components`. The fractions ``f_i`` are number fractions of
    indents; with a grid much larger than the microstructure they estimate the
    phases' surface (= volume) fractions.

    Parameters
    ----------
    values : array-like, shape (N,)
        Measured ``E_GPa`` or ``H_GPa``; non-finite values are dropped with a
        warning.
    n_components : int
        Number of Gaussian components (default 4: LD, HD, CH, clinker).
    seed : int
        Random state of the EM starts.
    n_init : int
        EM starts from k-means solutions (and three times as many from
        random data points, :func:`fit_gmm`).
    quantity : {"E_GPa", "H_GPa"}
        Selects the reference means (:func:`phase_reference_means`).
    reference : dict, optional
        Phase -> mean used instead of the literature values.
    what : str
        Name of the data in error messages (e.g. the file).
    return_model : bool
        Also return the fitted ``GaussianMixture``.

    Returns
    -------
    table : pandas.DataFrame
        One row per component, sorted by mean: ``component`` (0..k-1),
        ``phase`` (str), ``fraction`` (mixture weight, sums to 1), ``mean``,
        ``std`` (same unit as ``values``). ``table.attrs`` holds
        ``quantity``, ``n`` (values used), ``log_likelihood`` (total),
        ``bic`` and ``aic``.
    model : sklearn.mixture.GaussianMixture
        Only when ``return_model``.

    Raises
    ------
    InputError
        If fewer than ``max(3 * n_components, 10)`` finite values remain, or
        ``n_components < 1``.
    """
    n_components = int(n_components)
    if n_components < 1:
        raise InputError(f"{what}: n_components must be >= 1, got {n_components}")
    x = _clean_values(values, what, max(3 * n_components, 10))
    if reference is None:
        reference = phase_reference_means(quantity)
    X = x[:, None]
    gmm = fit_gmm(X, n_components, seed=seed, n_init=n_init)
    if not gmm.converged_:
        log.warning("%s: EM did not converge for k=%d", what, n_components)
    means = gmm.means_.ravel()
    stds = np.sqrt(gmm.covariances_.reshape(n_components))
    order = np.argsort(means)
    means, stds, weights = means[order], stds[order], gmm.weights_[order]
    table = pd.DataFrame({
        "component": np.arange(n_components),
        "phase": name_components(means, reference),
        "fraction": weights, "mean": means, "std": stds,
    })
    table.attrs.update(quantity=quantity, n=int(x.size),
                       log_likelihood=float(gmm.score(X) * x.size),
                       bic=float(gmm.bic(X)), aic=float(gmm.aic(X)))
    log.info("%s: %d-component GMM of %s on %d values: %s", what, n_components, quantity,
             x.size, ", ".join(f"{p} {f:.2f}@{m:.3g}" for p, f, m in
                               zip(table.phase, table.fraction, table["mean"])))
    return (table, gmm) if return_model else table


def deconvolve_joint(E_GPa, H_GPa, n_components=4, seed=0, n_init=10, reference=None,
                     what="indents", return_model=False):
    """Joint deconvolution of (E, H) pairs into bivariate Gaussian phases.

    The multivariate form of statistical grid-indentation deconvolution
    (Ulm et al. 2007, J. Am. Ceram. Soc. 90, 2677-2692; Vandamme et al. 2010,
    Cem. Concr. Res. 40, 14-26): each phase is a 2D Gaussian in the
    (modulus, hardness) plane, fitted by expectation-maximisation with full
    covariances (:func:`fit_gmm`). Phases whose moduli overlap (LD-C-S-H,
    HD-C-S-H, CH) separate much better in two dimensions than in the E
    histogram alone, because their hardnesses differ too.

    Parameters
    ----------
    E_GPa, H_GPa : array-like, shape (N,)
        Indentation modulus and hardness of the same indents, GPa; pairs with
        a non-finite value are dropped with a warning.
    n_components : int
        Number of phases (default 4: LD-C-S-H, HD-C-S-H, CH, ACC).
    seed, n_init : int
        Random state and number of k-means EM starts (:func:`fit_gmm`).
    reference : dict, optional
        Phase -> reference E mean (GPa) used to name the components
        (default :func:`phase_reference_means` of ``E_GPa``).
    what : str
        Name of the data in error messages.
    return_model : bool
        Also return the fitted ``GaussianMixture``.

    Returns
    -------
    table : pandas.DataFrame
        One row per component, sorted by mean E: ``component, phase,
        fraction, E_mean, E_std, H_mean, H_std, corr_EH``. ``attrs`` holds
        ``n``, ``log_likelihood``, ``bic``, ``aic``.

    Raises
    ------
    InputError
        If the arrays differ in length, or fewer than
        ``max(6 * n_components, 10)`` finite pairs remain.
    """
    n_components = int(n_components)
    E = np.asarray(E_GPa, dtype=float).ravel()
    H = np.asarray(H_GPa, dtype=float).ravel()
    if E.shape != H.shape:
        raise InputError(f"{what}: {E.size} E values but {H.size} H values")
    ok = np.isfinite(E) & np.isfinite(H)
    if (~ok).any():
        log.warning("%s: ignoring %d indent(s) with a non-finite E or H", what, int((~ok).sum()))
    X = np.c_[E[ok], H[ok]]
    if len(X) < max(6 * n_components, 10):
        raise InputError(f"{what}: {len(X)} finite (E, H) pair(s); at least "
                         f"{max(6 * n_components, 10)} are needed for {n_components} components")
    if reference is None:
        reference = phase_reference_means("E_GPa")
    gmm = fit_gmm(X, n_components, seed=seed, n_init=n_init)
    order = np.argsort(gmm.means_[:, 0])
    cov = gmm.covariances_[order]
    table = pd.DataFrame({
        "component": np.arange(n_components),
        "phase": name_components(gmm.means_[order, 0], reference),
        "fraction": gmm.weights_[order],
        "E_mean": gmm.means_[order, 0], "E_std": np.sqrt(cov[:, 0, 0]),
        "H_mean": gmm.means_[order, 1], "H_std": np.sqrt(cov[:, 1, 1]),
        "corr_EH": cov[:, 0, 1] / np.sqrt(cov[:, 0, 0] * cov[:, 1, 1]),
    })
    table.attrs.update(n=int(len(X)), log_likelihood=float(gmm.score(X) * len(X)),
                       bic=float(gmm.bic(X)), aic=float(gmm.aic(X)))
    log.info("%s: joint %d-component GMM of (E, H) on %d indents: %s", what, n_components,
             len(X), ", ".join(f"{p} {f:.2f}@{m:.3g} GPa" for p, f, m in
                               zip(table.phase, table.fraction, table.E_mean)))
    return (table, gmm) if return_model else table


def marginal(joint_table, quantity="E_GPa"):
    """One quantity's view of a joint (E, H) table, in :func:`deconvolve`'s layout.

    Parameters
    ----------
    joint_table : pandas.DataFrame
        From :func:`deconvolve_joint`.
    quantity : {"E_GPa", "H_GPa"}

    Returns
    -------
    pandas.DataFrame
        ``component, phase, fraction, mean, std`` (the marginal of a 2D
        Gaussian is the 1D Gaussian of its mean and standard deviation).
    """
    key = {"E_GPa": "E", "H_GPa": "H"}[quantity]
    out = joint_table[["component", "phase", "fraction"]].copy()
    out["mean"] = joint_table[f"{key}_mean"].to_numpy()
    out["std"] = joint_table[f"{key}_std"].to_numpy()
    out.attrs.update(joint_table.attrs, quantity=quantity)
    return out


def component_curves(x, table):
    """Weighted component densities ``f_i N(x; mu_i, s_i^2)`` of a GMM table.

    Parameters
    ----------
    x : array-like, shape (M,)
        Evaluation points (unit of the table's means).
    table : pandas.DataFrame
        Output of :func:`deconvolve` (``fraction``, ``mean``, ``std``).

    Returns
    -------
    numpy.ndarray, shape (k, M)
        Row ``i`` is component ``i``'s weighted density (1/unit); the column
        sum is the mixture density, which integrates to ``sum f_i = 1``.
    """
    from scipy.stats import norm

    x = np.asarray(x, dtype=float)
    f = table["fraction"].to_numpy(float)[:, None]
    mu = table["mean"].to_numpy(float)[:, None]
    sd = table["std"].to_numpy(float)[:, None]
    return f * norm.pdf(x[None, :], loc=mu, scale=sd)


def bic_table(values, k_range=range(1, 9), seed=0, n_init=5, what="values"):
    """Information criteria of Gaussian mixtures against the number of components.

    ``BIC = -2 ln L + p ln N`` (Schwarz 1978, Ann. Stat. 6) and
    ``AIC = -2 ln L + 2 p`` (Akaike 1974, IEEE TAC 19), as computed by
    scikit-learn, with ``p = k - 1 + k d + k d (d + 1) / 2`` free parameters
    of a k-component mixture in ``d`` dimensions with full covariances
    (``3k - 1`` for a 1D histogram, ``6k - 1`` for (E, H) pairs).

    The mixtures are fitted in increasing k; besides its ``2 n_init`` EM
    starts, each k starts from the (k - 1)-component optimum with one
    component split along its principal axis, once per component
    (:func:`microprop.stats._em.split_starts`): the warm starts find
    optima of mixtures with more components than the data hold that
    independent starts miss. Only the likelihood matters here, so the
    winner is run on by EM (``fit_gmm(polish="em")``), not to every
    parameter's optimum.

    Parameters
    ----------
    values : array-like, shape (N,) or (N, d)
        One value per indent (e.g. E), or one row per indent (e.g. (E, H)
        for the joint model). Rows with a non-finite entry are left out.
    k_range : iterable of int
        Numbers of components to try.
    seed : int
    n_init : int
        k-means EM starts per k (the rule's default 5; :func:`fit_gmm`).
    what : str
        Name of the data in error messages.

    Returns
    -------
    pandas.DataFrame
        Columns ``k``, ``bic``, ``aic``, ``best`` (bool, True on the row of
        minimum BIC); ``attrs["n_dims"]`` = d.

    Raises
    ------
    InputError
        If ``k_range`` is empty or there are fewer than ``3 * max(k)``
        (and 10) finite rows.
    """
    ks = sorted(int(k) for k in k_range)
    if not ks or ks[0] < 1:
        raise InputError(f"{what}: k_range must hold integers >= 1, got {ks}")
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 2 and arr.shape[1] > 1:
        ok = np.isfinite(arr).all(axis=1)
        if (~ok).any():
            log.warning("%s: ignoring %d row(s) with a non-finite value of %d", what, int((~ok).sum()),
                        len(arr))
        x = arr[ok]
        if len(x) < max(3 * ks[-1], 10):
            raise InputError(f"{what}: {len(x)} finite row(s); at least {max(3 * ks[-1], 10)} are needed")
    else:
        x = _clean_values(arr, what, max(3 * ks[-1], 10))[:, None]
    rows, prev = [], None
    for k in ks:
        extra = None
        if prev is not None and prev.n_components == k - 1:
            extra = split_starts(prev.weights_, prev.means_, prev.covariances_, REG_COVAR)
        gmm = fit_gmm(x, k, seed=seed, n_init=n_init, extra_starts=extra, polish="em")
        rows.append({"k": k, "bic": float(gmm.bic(x)), "aic": float(gmm.aic(x))})
        prev = gmm
    out = pd.DataFrame(rows)
    out["best"] = out["bic"] == out["bic"].min()
    out.attrs["n_dims"] = int(x.shape[1])
    log.info("%s: minimum BIC at k=%d", what, int(out.loc[out.best, "k"].iloc[0]))
    return out


def gmm_tables(data, quantity, n_components=4, seed=0, n_init=10, joint=False, phases=None):
    """Mixture tables of one quantity for all indents pooled and for each area.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per indent with ``area`` and ``quantity`` (and, with
        ``joint``, both ``E_GPa`` and ``H_GPa``) columns, GPa.
    quantity : {"E_GPa", "H_GPa"}
    n_components, seed, n_init
        As :func:`deconvolve`.
    joint : bool
        Report the ``quantity`` marginal of the bivariate (E, H) mixture
        (:func:`deconvolve_joint`, :func:`marginal`) instead of a 1D mixture
        of ``quantity``.
    phases : microprop.phases.PhaseSet, optional
        Names the components by its solid phases' literature means (default
        the cement set, :func:`phase_reference_means`).

    Returns
    -------
    pandas.DataFrame
        The component tables stacked, the ``area = "pooled"`` block first and
        then the areas in sorted order: ``area`` plus the columns of the
        table, ``n`` (values fitted) and ``method`` (``"joint E-H"`` or
        ``"<quantity> only"``). An area with too few indents for the mixture
        is left out with a warning.

    Raises
    ------
    InputError
        If the pooled values are too few for the mixture.
    """
    blocks = []
    ref = None if phases is None else phases.means("E_GPa" if joint else quantity)
    groups = [("pooled", data)] + list(data.groupby("area", sort=True))
    for area, part in groups:
        try:
            if joint:
                t = marginal(deconvolve_joint(
                    part["E_GPa"], part["H_GPa"], n_components=n_components, seed=seed,
                    n_init=n_init, reference=ref, what=f"(E, H) of area {area!r}"), quantity)
            else:
                t = deconvolve(part[quantity], n_components=n_components, seed=seed,
                               n_init=n_init, quantity=quantity, reference=ref,
                               what=f"{quantity} of area {area!r}")
        except InputError as exc:
            if area == "pooled":
                raise
            log.warning("skipping the per-area mixture: %s", exc)
            continue
        t.insert(0, "area", area)
        t["n"] = t.attrs["n"]
        t["method"] = "joint E-H" if joint else f"{quantity} only"
        blocks.append(t)
    return pd.concat(blocks, ignore_index=True)


def mixture_fractions(table, area="pooled"):
    """Phase -> summed fraction of the named components of one area of :func:`gmm_tables`.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`gmm_tables` output (``area``, ``phase``, ``fraction``).
    area : str
        Block of the table (``"pooled"`` or an area name).

    Returns
    -------
    dict
        Phase name -> fraction (0..1); ``extra-*`` components are left out.
    """
    t = table[(table["area"] == area) & ~table["phase"].str.startswith("extra")]
    return t.groupby("phase")["fraction"].sum().to_dict()
