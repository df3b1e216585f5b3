"""How many indents a stable deconvolution needs: random subsamples of growing size.

:func:`deconvolution_stability` draws, for each subsample size ``n``,
``n_boot`` random subsamples of ``n`` distinct indents of the ``N`` measured
(without replacement, as a smaller grid would have given them), deconvolves
each as the rule ``deconvolve`` does (:func:`microprop.stats.fit_gmm`,
components sorted by mean E and named by
:func:`microprop.stats.name_components`) and returns per size and phase the
median and the central interval of each phase's fraction, mean and standard
deviation, beside the deconvolution of all indents. :func:`stable_size`
reads from it the smallest number of indents from which every phase's
interval stays within a given distance of the full-data value.

Why not with replacement: a bootstrap sample repeats indents, and a
Gaussian component shrunk onto a few repeated values (down to ``reg_covar``)
gains more likelihood than it loses elsewhere, so the replicates of a
mixture find spurious spikes (fractions of 0.005-0.01 at 800 indents). The
subsamples' spread is that of ``n`` indents drawn from this set: close to
``N`` it shrinks by the finite-population factor ``sqrt(1 - n / N)``, which
is why the default sizes stop at ``N / 2``.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..errors import InputError
from ._mixture import fit_gmm, name_components, phase_reference_means

log = logging.getLogger(__name__)

#: Default subsample sizes (those below the number of indents, then that number).
SIZE_SERIES = (100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 200000, 500000)


def default_sizes(n, minimum=1):
    """Subsample sizes for ``n`` indents: the 1-2-5 series from 100 below ``n / 2``, then ``n // 2``.

    Parameters
    ----------
    n : int
        Number of indents.
    minimum : int
        Sizes below this are left out.

    Returns
    -------
    list of int
        Increasing; ends with ``n // 2`` (or ``minimum`` if that is larger).
    """
    half = max(int(n) // 2, int(minimum))
    return [s for s in SIZE_SERIES if minimum <= s < half] + [half]


def _tidy_fit(gmm, reference, quantities):
    """Rows ``phase, statistic, value`` of one fit, components sorted by their first mean."""
    order = np.argsort(gmm.means_[:, 0])
    means, cov = gmm.means_[order], gmm.covariances_[order]
    names = name_components(means[:, 0], reference)
    rows = []
    for i, phase in enumerate(names):
        rows.append((phase, "fraction", float(gmm.weights_[order][i])))
        for j, q in enumerate(quantities):
            key = q.split("_")[0]
            rows.append((phase, f"{key}_mean", float(means[i, j])))
            rows.append((phase, f"{key}_std", float(np.sqrt(cov[i, j, j]))))
    return rows


def deconvolution_stability(values, sizes=None, n_boot=50, seed=0, n_components=4,
                            n_init=10, reference=None, quantity="E_GPa", level=0.95,
                            what="indents", return_replicates=False):
    """Each phase's fraction, mean and sd against the number of indents, with subsample intervals.

    For each size ``n`` of ``sizes``, ``n_boot`` subsamples of ``n`` distinct
    indents are drawn at random from all ``N`` (without replacement; see the
    module's notes) and each is deconvolved
    into ``n_components`` Gaussian phases by :func:`microprop.stats.fit_gmm`
    with ``n_init`` starts per kind (the robust fit of the rule
    ``deconvolve``); components are sorted by their (first) mean and named by
    :func:`microprop.stats.name_components`. The full data are deconvolved
    once too (``full``). A size below the fit's minimum (``3 k`` values,
    ``6 k`` pairs, at least 10) or above ``N`` is left out with a warning;
    so is a subsample whose fit fails (counted in ``n_fits``).

    Parameters
    ----------
    values : array-like, shape (N,) or (N, 2)
        One property per indent (``quantity``, GPa), or (E, H) pairs (GPa)
        for the joint mixture; rows with a non-finite value are dropped.
    sizes : sequence of int, optional
        Subsample sizes (default :func:`default_sizes`: 100, 200, 500, ...
        up to N / 2).
    n_boot : int
        Subsamples per size, >= 2.
    seed : int
        Random state of the subsamples (and of the fits' starts).
    n_components : int
        Gaussian components k.
    n_init : int
        EM starts per kind of each fit.
    reference : dict, optional
        Phase -> reference mean (GPa, of E for pairs, else of ``quantity``)
        naming the components (default :func:`phase_reference_means`).
    quantity : {"E_GPa", "H_GPa"}
        The property of 1D ``values`` (ignored for pairs).
    level : float
        Probability of the central interval (default 0.95: the 2.5 % and
        97.5 % quantiles of the subsamples).
    what : str
        Name of the data in messages.
    return_replicates : bool
        Also return the value of every subsample.

    Returns
    -------
    summary : pandas.DataFrame
        Tidy, one row per size, phase and statistic: ``size`` (indents per
        subsample), ``phase``, ``statistic`` (``fraction``; ``E_mean,
        E_std, H_mean, H_std`` for pairs, ``<E|H>_mean, <E|H>_std`` of
        ``quantity`` otherwise), ``unit`` (``-`` or ``GPa``), ``full`` (the
        fit of all indents), ``median``, ``low``, ``high`` (the central
        ``level`` interval of the subsamples), ``n_fits`` (subsamples in
        which the phase was found). Sorted by size, then the phases in the
        order of their full-data means. ``attrs``: ``n`` (indents), ``n_boot``,
        ``level``, ``n_components``, ``method`` (``"joint E-H"`` or
        ``"<quantity> only"``).
    replicates : pandas.DataFrame
        Only with ``return_replicates``: ``size, replicate, phase,
        statistic, value``.

    Raises
    ------
    InputError
        If ``values`` has another shape, ``n_boot < 2``, ``level`` is not in
        (0, 1), or the full data are too few for the mixture.
    """
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] not in (1, 2):
        raise InputError(f"{what}: expected values of shape (N,) or (N, 2), got {np.shape(values)}")
    joint = arr.shape[1] == 2
    ok = np.isfinite(arr).all(axis=1)
    if (~ok).any():
        log.warning("%s: ignoring %d row(s) with a non-finite value", what, int((~ok).sum()))
    X = arr[ok]
    k = int(n_components)
    minimum = max((6 if joint else 3) * k, 10)
    if len(X) < minimum:
        raise InputError(f"{what}: {len(X)} finite row(s); at least {minimum} are needed for "
                         f"{k} components")
    if int(n_boot) < 2:
        raise InputError(f"{what}: n_boot must be >= 2, got {n_boot}")
    if not 0.0 < float(level) < 1.0:
        raise InputError(f"{what}: level must lie in (0, 1), got {level}")
    quantities = ("E_GPa", "H_GPa") if joint else (quantity,)
    if reference is None:
        reference = phase_reference_means("E_GPa" if joint else quantity)
    n = len(X)
    if sizes is None:
        sizes = default_sizes(n)
    sizes = sorted({int(s) for s in sizes})
    small = [s for s in sizes if s < minimum]
    if small:
        log.warning("%s: subsample size(s) %s below the %d rows a %d-component mixture needs "
                    "are left out", what, small, minimum, k)
    large = [s for s in sizes if s > n]
    if large:
        log.warning("%s: subsample size(s) %s above the %d indents are left out", what, large, n)
    sizes = [s for s in sizes if minimum <= s <= n]
    if not sizes:
        raise InputError(f"{what}: no subsample size of at least {minimum}")

    full = pd.DataFrame(_tidy_fit(fit_gmm(X, k, seed=seed, n_init=n_init), reference, quantities),
                        columns=["phase", "statistic", "full"])
    rng = np.random.default_rng(int(seed))
    rows, failed = [], 0
    for s in sizes:
        for b in range(int(n_boot)):
            idx = np.sort(rng.choice(n, size=s, replace=False))
            try:
                gmm = fit_gmm(X[idx], k, seed=int(seed) + b, n_init=n_init, cache=False)
            except (InputError, ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
                failed += 1
                log.warning("%s: the fit of subsample %d of %d indents failed: %s",
                            what, b, s, exc)
                continue
            rows += [(s, b, *r) for r in _tidy_fit(gmm, reference, quantities)]
        log.info("%s: %d subsamples of %d of the %d indents deconvolved", what, int(n_boot), s, n)
    reps = pd.DataFrame(rows, columns=["size", "replicate", "phase", "statistic", "value"])
    a = (1.0 - float(level)) / 2.0
    g = reps.groupby(["size", "phase", "statistic"], sort=False)["value"]
    summary = pd.DataFrame({"median": g.median(), "low": g.quantile(a), "high": g.quantile(1 - a),
                            "n_fits": g.size()}).reset_index()
    summary = summary.merge(full, on=["phase", "statistic"], how="left")
    summary["unit"] = np.where(summary["statistic"] == "fraction", "-", "GPa")
    phase_order = {p: i for i, p in enumerate(dict.fromkeys(full["phase"]))}
    stat_order = {st: i for i, st in enumerate(dict.fromkeys(full["statistic"]))}
    summary = summary.assign(
        _p=summary["phase"].map(phase_order).fillna(len(phase_order)),
        _s=summary["statistic"].map(stat_order).fillna(len(stat_order)),
    ).sort_values(["size", "_p", "phase", "_s"]).drop(columns=["_p", "_s"]).reset_index(drop=True)
    summary = summary[["size", "phase", "statistic", "unit", "full", "median", "low", "high",
                       "n_fits"]]
    summary.attrs.update(n=int(n), n_boot=int(n_boot), level=float(level), n_components=k,
                         method="joint E-H" if joint else f"{quantity} only", failed=int(failed))
    return (summary, reps) if return_replicates else summary


def stable_size(summary, statistic="fraction", tolerance=0.05, relative=False):
    """The smallest subsample size from which every phase's interval lies within a tolerance.

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`deconvolution_stability` output.
    statistic : str
        E.g. ``"fraction"``, ``"E_mean"``.
    tolerance : float
        Largest distance of the interval's ends from the full-data value
        (absolute, e.g. 0.05 in fraction; with ``relative``, a fraction of
        the full-data value, e.g. 0.05 = 5 %).
    relative : bool

    Returns
    -------
    int or None
        The size from which on (at it and every larger size of the table)
        ``low`` and ``high`` of every phase lie within ``full +- tolerance``;
        None if even the largest size does not.

    Raises
    ------
    InputError
        If the table has no row of ``statistic``.
    """
    t = summary[summary["statistic"] == statistic]
    if t.empty:
        raise InputError(f"stable_size: no {statistic!r} rows; found {sorted(summary['statistic'].unique())}")
    tol = tolerance * t["full"].abs() if relative else tolerance
    inside = ((t["high"] - t["full"]).abs() <= tol) & ((t["low"] - t["full"]).abs() <= tol)
    by_size = inside.groupby(t["size"]).all().sort_index()
    if not by_size.iloc[-1]:
        return None
    bad = by_size[~by_size]
    later = by_size.index if bad.empty else by_size.index[by_size.index > bad.index.max()]
    return int(later.min())
