"""The ceiling a model of a virtual specimen is judged by: attainable and noise-only R^2.

On a virtual specimen the generator knows what each indent probed: the phase
volume fractions ``f`` of its interaction zone (``f_<phase>`` of the truth's
``indents.csv``). The measured property is not a function of them, because
the generator draws each phase's E and H afresh for every indent and adds
measurement noise (:func:`microprop.physics.indent_properties`). Two figures
follow:

``R2_attainable``
    The test R^2 of gradient-boosted trees on the true fractions
    (:func:`fit_attainable`; fitted on the same train + val crops, scored on
    the same test crops as the models it is set beside). No image model can
    know more about an indent than its zone's composition, so this is what a
    model can be expected to reach with the data at hand.

``R2_noise_ceiling``
    What the generator's random draws leave to predict at best: with the
    Bayes predictor ``m(f) = E[y | f]``, the expected test R^2 is

    .. math::

        R^2_{noise} = 1 - \\frac{\\sum_{i \\in test} Var(y | f_i)}
                               {\\sum_{i \\in test} (y_i - \\bar y)^2}

    (:func:`noise_ceiling`). For the forward model, ``y = h(f, p) (1 + e)``
    with ``h`` the Voigt-Reuss-Hill average (:func:`microprop.physics.hill_average`)
    of the phase values ``p`` (independent normals truncated below at
    :data:`microprop.physics.TRUNCATE_FRACTION` of the mean) and ``e ~ N(0,
    noise_rel)`` independent of ``p``, so

    .. math::

        E[y | f] = E_p[h], \\qquad
        Var(y | f) = (1 + \\sigma_n^2) Var_p[h] + \\sigma_n^2 E_p[h]^2,

    ``sigma_n = noise_rel`` (the clip of ``1 + e`` at 0.1, 18 sd away at
    ``noise_rel = 0.05``, is neglected); ``E_p[h]`` and ``Var_p[h]`` are
    Monte Carlo averages over draws from the generator's distributions
    (:func:`generator_moments`). ``R2_oracle`` is the realised test R^2 of
    ``m(f)`` itself.

Both condition on the realised zone fractions. In the generator the zone's
radius depends on the drawn hardness (three contact depths), so the
fractions carry a little information about the draws that the image alone
does not: on the demo (120 indents, 200 draws each) the noise variance
given the label map around the indent was 0.4 % (E) and 2 % (H) larger
than given the fractions, about 0.002 in R^2. The ceilings are therefore a
hair optimistic for an image model.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.model_selection import KFold
from threadpoolctl import threadpool_limits

from .. import io as mio
from ..data import SPLITS
from ..errors import InputError
from ..physics import TRUNCATE_FRACTION

log = logging.getLogger(__name__)

#: prefix of the zone-fraction columns of the generator's indents table
ZONE_PREFIX = "f_"

#: key columns joining the truth to the dataset's samples
TRUTH_KEYS = ("area", "batch", "indent")

#: Monte Carlo draws of the phase properties per indent (noise variance to ~2 % per indent)
N_DRAWS = 4000

#: columns of :func:`ceiling_table`'s table
CEILING_COLUMNS = ("target", "split", "n_fit", "n_test", "R2_attainable", "MAE_attainable",
                   "R2_attainable_cv", "n_iter", "R2_noise_ceiling", "R2_oracle",
                   "R2_attainable_cv_all", "R2_noise_ceiling_all", "noise_var_mean",
                   "y_var_test")


def zone_columns(phases):
    """The zone-fraction column of each phase: ``f_<phase>``."""
    return [f"{ZONE_PREFIX}{p}" for p in phases]


def read_generator(path):
    """The generator's noise model of a truth source: phase properties and ``noise_rel``.

    Parameters
    ----------
    path : path-like
        A virtual specimen's truth folder ``resources/truth/<specimen>/<area>``
        (``phase_properties.csv``: ``phase, E_mean_GPa, E_std_GPa, H_mean_GPa,
        H_std_GPa``; ``truth.json``: ``parameters.noise_rel``), or the note of
        a virtual indentation ``<batch>_SIMULATED.json`` (``parameters.noise_rel``
        and ``phase_properties``, one record per phase).

    Returns
    -------
    phase_properties : pandas.DataFrame
        Indexed by phase name, the columns above.
    noise_rel : float
        Relative sd of the measurement noise.

    Raises
    ------
    InputError
        A file missing or unreadable, or without the keys or columns named
        above (the message names the file and what is missing).
    """
    path = Path(path)
    need = ["phase", "E_mean_GPa", "E_std_GPa", "H_mean_GPa", "H_std_GPa"]
    if path.is_dir():
        pp = mio.read_table(path / "phase_properties.csv", need, what="phase properties table")
        meta_path = path / "truth.json"
    else:
        meta_path = path
    if not meta_path.exists():
        raise InputError(f"{meta_path}: generator parameters not found")
    try:
        meta = mio.read_json(meta_path)
    except ValueError as exc:
        raise InputError(f"{meta_path}: cannot read the generator parameters as JSON ({exc})") from exc
    noise = (meta.get("parameters") or {}).get("noise_rel")
    if noise is None or not np.isfinite(float(noise)) or float(noise) < 0:
        raise InputError(f"{meta_path}: no valid parameters.noise_rel (the generator's relative "
                         f"measurement noise); found {noise!r}")
    if not path.is_dir():
        recs = meta.get("phase_properties")
        if not recs:
            raise InputError(f"{meta_path}: no phase_properties records (the generator's phase "
                             "distributions)")
        pp = pd.DataFrame(recs)
        missing = [c for c in need if c not in pp.columns]
        if missing:
            raise InputError(f"{meta_path}: phase_properties lack column(s) {missing}; found "
                             f"{list(pp.columns)}")
    return pp.set_index("phase")[need[1:]].astype(float), float(noise)


def read_truth_indents(paths, areas, phases):
    """The generator's per-indent truth of several files, with an ``area`` column.

    Parameters
    ----------
    paths : sequence of path-like
        ``indents.csv`` of ``resources/truth/<specimen>/<area>/`` or the
        ``<batch>_truth.csv`` of a virtual indentation: ``batch, indent``
        and ``f_<phase>`` for every phase.
    areas : sequence of str
        The area of each file, same order.
    phases : sequence of str
        Phase names, in the order of the phase-properties table.

    Returns
    -------
    pandas.DataFrame
        ``area, batch`` (str), ``indent`` (int), the ``f_<phase>`` columns
        and every other column of the files; the file of each row in
        ``source``.

    Raises
    ------
    InputError
        A file missing or unreadable, or lacking a column (the message names
        the file and the columns); a key ``(area, batch, indent)`` twice.
    """
    paths, areas = [Path(p) for p in paths], [str(a) for a in areas]
    if len(paths) != len(areas) or not paths:
        raise InputError(f"read_truth_indents: {len(paths)} truth files for {len(areas)} areas; "
                         "expected as many, at least one")
    need = ["batch", "indent", *zone_columns(phases)]
    parts = []
    for p, a in zip(paths, areas):
        t = mio.read_table(p, need, what="truth indents table (interaction-zone fractions)")
        t.insert(0, "area", a)
        t["batch"] = t["batch"].astype(str)
        t["indent"] = t["indent"].astype(np.int64)
        t["source"] = str(p)
        parts.append(t)
    truth = pd.concat(parts, ignore_index=True)
    dup = truth.duplicated(list(TRUTH_KEYS), keep=False)
    if dup.any():
        first = truth.loc[dup, list(TRUTH_KEYS)].iloc[0].tolist()
        raise InputError(f"{sorted(set(truth.loc[dup, 'source']))}: truth key (area, batch, "
                         f"indent) = {first} appears {int(dup.sum())} times")
    return truth


def align_truth(samples, truth, phases, return_source=False):
    """Zone fractions of the dataset's samples, row by row.

    Parameters
    ----------
    samples : pandas.DataFrame, N rows
        The dataset's samples (``area, batch, indent``), e.g. the table of
        :func:`microprop.data.read_shard`.
    truth : pandas.DataFrame
        :func:`read_truth_indents`.
    phases : sequence of str
    return_source : bool
        Also return the truth file of each sample.

    Returns
    -------
    numpy.ndarray, shape (N, P), float64
        ``f_<phase>`` of each sample's indent (rows sum to 1).
    numpy.ndarray, shape (N,), object
        Only with ``return_source``: the truth file (``source``) of each sample.

    Raises
    ------
    InputError
        If a sample has no truth row (the message names the first missing
        keys and the truth files) or its fractions are not finite.
    """
    cols = zone_columns(phases)
    key = samples[list(TRUTH_KEYS)].astype({"area": str, "batch": str}).copy()
    key["indent"] = key["indent"].astype(np.int64)
    key["_row"] = np.arange(len(key))
    m = key.merge(truth[[*TRUTH_KEYS, *cols, "source"]], on=list(TRUTH_KEYS),
                  how="left").sort_values("_row")
    missing = m[cols[0]].isna().to_numpy()
    if missing.any():
        first = m.loc[missing, list(TRUTH_KEYS)].head(3).to_numpy().tolist()
        raise InputError(f"{sorted(set(truth['source']))}: no truth row for {int(missing.sum())} "
                         f"of {len(key)} dataset samples, e.g. (area, batch, indent) = {first}")
    f = m[cols].to_numpy(np.float64)
    if not np.isfinite(f).all():
        raise InputError(f"{sorted(set(truth['source']))}: non-finite zone fractions {cols}")
    return (f, m["source"].to_numpy(object)) if return_source else f


def _phase_moments(pp, target):
    """Means, sds and the truncation bound (a, standardised) of each phase for ``target``."""
    q = {"E_GPa": "E", "H_GPa": "H"}.get(target)
    if q is None:
        raise InputError(f"generator_moments: unknown target {target!r}; expected E_GPa or H_GPa")
    need = [f"{q}_mean_GPa", f"{q}_std_GPa"]
    missing = [c for c in need if c not in pp.columns]
    if missing:
        raise InputError(f"phase properties table lacks column(s) {missing}; found "
                         f"{list(pp.columns)}")
    mu = pp[need[0]].to_numpy(float)
    sd = pp[need[1]].to_numpy(float)
    if (mu <= 0).any() or (sd < 0).any() or not (np.isfinite(mu).all() and np.isfinite(sd).all()):
        raise InputError(f"phase properties: {need} need positive means and non-negative sds")
    return mu, sd


def generator_moments(fractions, phase_properties, noise_rel, target, n_draws=N_DRAWS, seed=0,
                      chunk=512):
    """Mean and variance of a measured property given the zone fractions, per indent.

    Parameters
    ----------
    fractions : array-like, shape (N, P)
        Zone fractions (rows sum to 1), phases in the order of
        ``phase_properties``.
    phase_properties : pandas.DataFrame, P rows
        ``E_mean_GPa, E_std_GPa, H_mean_GPa, H_std_GPa`` per phase (the
        truth's ``phase_properties.csv``).
    noise_rel : float
        Relative sd of the measurement noise (``>= 0``).
    target : str
        ``E_GPa`` or ``H_GPa``.
    n_draws : int
        Monte Carlo draws of the phase values, shared by all indents (common
        random numbers; the relative error of one indent's variance is about
        ``sqrt(2 / n_draws)``).
    seed : int
    chunk : int
        Indents per block of the ``(chunk, n_draws)`` work arrays.

    Returns
    -------
    mean, var : numpy.ndarray, shape (N,), float64
        ``E[y | f]`` (GPa) and ``Var(y | f)`` (GPa^2), the module's equations.

    Raises
    ------
    InputError
        On a fractions array of the wrong shape or with negative or
        non-finite entries, a bad phase-properties table, a negative
        ``noise_rel`` or ``n_draws < 2``.
    """
    f = np.asarray(fractions, dtype=np.float64)
    mu, sd = _phase_moments(phase_properties, target)
    if f.ndim != 2 or f.shape[1] != mu.size:
        raise InputError(f"generator_moments: fractions {f.shape}, expected (N, {mu.size}) for "
                         f"phases {list(phase_properties.index)}")
    if not np.isfinite(f).all() or (f < -1e-12).any():
        raise InputError("generator_moments: fractions must be finite and >= 0")
    if not float(noise_rel) >= 0:
        raise InputError(f"generator_moments: noise_rel must be >= 0, got {noise_rel}")
    if int(n_draws) < 2:
        raise InputError(f"generator_moments: n_draws must be >= 2, got {n_draws}")
    rng = np.random.default_rng(int(seed))
    draws = np.empty((int(n_draws), mu.size))
    for k in range(mu.size):
        if sd[k] == 0:
            draws[:, k] = mu[k]
        else:
            a = (TRUNCATE_FRACTION * mu[k] - mu[k]) / sd[k]
            draws[:, k] = sps.truncnorm.rvs(a, np.inf, loc=mu[k], scale=sd[k], size=int(n_draws),
                                            random_state=rng)
    inv = 1.0 / draws
    mean_h = np.empty(f.shape[0])
    var_h = np.empty(f.shape[0])
    for i0 in range(0, f.shape[0], max(1, int(chunk))):
        fi = f[i0:i0 + chunk]
        h = 0.5 * (fi @ draws.T + 1.0 / (fi @ inv.T))      # Voigt-Reuss-Hill, (chunk, n_draws)
        mean_h[i0:i0 + chunk] = h.mean(axis=1)
        var_h[i0:i0 + chunk] = h.var(axis=1, ddof=1)
    s2 = float(noise_rel) ** 2
    return mean_h, (1.0 + s2) * var_h + s2 * mean_h ** 2


def noise_ceiling(y, noise_var):
    """Expected R^2 of the Bayes predictor: ``1 - sum Var(y | f) / sum (y - mean y)^2``.

    Parameters
    ----------
    y : array-like, shape (N,)
        Measured property of the crops scored (GPa), ``N >= 2``.
    noise_var : array-like, shape (N,)
        ``Var(y | f)`` of each (GPa^2), :func:`generator_moments`.

    Returns
    -------
    float

    Raises
    ------
    InputError
        On mismatched or too short arrays, or no spread of ``y``.
    """
    y = np.asarray(y, dtype=float).ravel()
    v = np.asarray(noise_var, dtype=float).ravel()
    if y.shape != v.shape or y.size < 2:
        raise InputError(f"noise_ceiling: y {y.shape} and noise_var {v.shape}; expected equal, >= 2")
    ss = float(np.sum((y - y.mean()) ** 2))
    if not ss > 0:
        raise InputError("noise_ceiling: the measured values have no spread")
    return 1.0 - float(np.sum(v)) / ss


def _boosting(n_iter, seed):
    # the ladder's boosting rung (microprop.learning.fit_boosting) with the number of iterations free
    return HistGradientBoostingRegressor(
        max_iter=int(n_iter), learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=10,
        l2_regularization=1.0, early_stopping=False, random_state=int(seed))


#: largest number of boosting iterations the attainable model's CV tries (the demo chose 96-114)
MAX_ITER = 250


def fit_attainable(X, y, seed=0, cv=5, max_iter=MAX_ITER, n_threads=1, refit=True):
    """Gradient-boosted trees on the true zone fractions, iterations chosen by K-fold CV.

    The ladder's boosting settings (least squares, learning rate 0.05, 15
    leaves, >= 10 samples per leaf, L2 1; scikit-learn
    ``HistGradientBoostingRegressor``); the number of iterations is the one
    of lowest out-of-fold squared error (``staged_predict`` of each fold's
    fit), and the model is refitted on all of ``X`` with it.

    Parameters
    ----------
    X : array-like, shape (N, P)
        Zone fractions.
    y : array-like, shape (N,)
        Measured property (GPa).
    seed : int
        Seed of the folds and the trees.
    cv : int
        Folds (``2 <= cv <= N``).
    max_iter : int
        Largest number of iterations tried (a warning is logged when the
        CV picks it: the optimum may lie beyond).
    n_threads : int
        OpenMP threads (threadpoolctl; 1 is fastest for these small fits).
    refit : bool
        Refit on all of ``X`` (False: only the CV, ``model`` is None).

    Returns
    -------
    model : sklearn.ensemble.HistGradientBoostingRegressor or None
    info : dict
        ``n_iter`` (chosen), ``cv_r2`` (out-of-fold R^2 at ``n_iter``,
        pooled over folds), ``cv`` (folds).

    Raises
    ------
    InputError
        If fewer than ``max(cv, 10)`` samples are given, or shapes differ.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    cv = int(cv)
    if X.ndim != 2 or X.shape[0] != y.size or y.size < max(cv, 10) or cv < 2:
        raise InputError(f"fit_attainable: X {X.shape}, y {y.shape}, cv {cv}: need >= max(cv, 10) "
                         "samples and cv >= 2")
    with threadpool_limits(limits=max(1, int(n_threads))):
        sse = np.zeros(int(max_iter))
        for tr, te in KFold(cv, shuffle=True, random_state=int(seed)).split(X):
            gb = _boosting(max_iter, seed).fit(X[tr], y[tr])
            for k, pred in enumerate(gb.staged_predict(X[te])):
                sse[k] += float(np.sum((y[te] - pred) ** 2))
        best = int(np.argmin(sse)) + 1
        model = _boosting(best, seed).fit(X, y) if refit else None
    if best == int(max_iter):
        log.warning("fit_attainable: the CV chose the largest number of iterations tried (%d); "
                    "the attainable R2 may be a little low", best)
    ss = float(np.sum((y - y.mean()) ** 2))
    return model, {"n_iter": best, "cv_r2": 1.0 - sse[best - 1] / ss if ss > 0 else float("nan"),
                   "cv": cv}


def _r2(y, pred):
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    ss = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - pred) ** 2)) / ss if ss > 0 else float("nan")


def ceiling_table(targets, parts, fractions, oracle_mean, noise_var, seed=0, cv=5, n_threads=1,
                  max_iter=MAX_ITER):
    """Attainable and noise-only R^2 of every target on every split scheme.

    Parameters
    ----------
    targets : dict of str -> array-like, shape (N,)
        Measured property of every dataset sample (GPa), e.g. ``{"E_GPa":
        ..., "H_GPa": ...}``.
    parts : dict of str -> dict of str -> array of int
        Split scheme -> ``{"train", "val", "test"}`` -> dataset rows
        (:func:`microprop.data.read_split`).
    fractions : array-like, shape (N, P)
        True zone fractions of every sample (:func:`align_truth`).
    oracle_mean, noise_var : dict of str -> array-like, shape (N,)
        Per target, ``E[y | f]`` (GPa) and ``Var(y | f)`` (GPa^2) of every
        sample (:func:`generator_moments`).
    seed, cv, n_threads, max_iter
        See :func:`fit_attainable`.

    Returns
    -------
    table : pandas.DataFrame
        One row per (target, split): :data:`CEILING_COLUMNS`. ``n_fit``
        counts train + val (the attainable model's fit set, as the
        ladder's), ``R2_attainable``/``MAE_attainable`` its test figures,
        ``R2_attainable_cv`` its out-of-fold R^2 on the fit set, ``n_iter``
        its iterations; ``R2_noise_ceiling`` and ``R2_oracle`` on the same
        test crops; ``R2_attainable_cv_all`` (``cv``-fold over all samples)
        and ``R2_noise_ceiling_all`` over all samples; ``noise_var_mean``
        (GPa^2) and ``y_var_test`` (GPa^2, ddof 0) on test.
    predictions : pandas.DataFrame
        One row per (target, split, test sample): ``target, split, index``
        (dataset row), ``y``, ``attainable``, ``oracle`` (GPa),
        ``noise_var`` (GPa^2).

    Raises
    ------
    InputError
        On arrays of different lengths or a split without test samples.
    """
    X = np.asarray(fractions, dtype=np.float64)
    rows, preds = [], []
    for t, yv in targets.items():
        y = np.asarray(yv, dtype=np.float64).ravel()
        m = np.asarray(oracle_mean[t], dtype=np.float64).ravel()
        v = np.asarray(noise_var[t], dtype=np.float64).ravel()
        if not (y.size == m.size == v.size == X.shape[0]):
            raise InputError(f"ceiling_table: {t}: {y.size} targets, {m.size} oracle means, "
                             f"{v.size} noise variances, {X.shape[0]} fraction rows")
        _, all_info = fit_attainable(X, y, seed=seed, cv=cv, n_threads=n_threads,
                                     max_iter=max_iter, refit=False)
        r2_noise_all = noise_ceiling(y, v)
        for scheme, pt in parts.items():
            fit = np.unique(np.concatenate([np.asarray(pt[s], np.int64) for s in SPLITS
                                            if s != "test"]))
            test = np.unique(np.asarray(pt["test"], np.int64))
            if test.size < 2:
                raise InputError(f"ceiling_table: split {scheme!r} has {test.size} test samples")
            model, info = fit_attainable(X[fit], y[fit], seed=seed, cv=cv, n_threads=n_threads,
                                         max_iter=max_iter)
            pred = model.predict(X[test])
            rows.append({
                "target": t, "split": scheme, "n_fit": int(fit.size), "n_test": int(test.size),
                "R2_attainable": _r2(y[test], pred),
                "MAE_attainable": float(np.mean(np.abs(y[test] - pred))),
                "R2_attainable_cv": info["cv_r2"], "n_iter": info["n_iter"],
                "R2_noise_ceiling": noise_ceiling(y[test], v[test]),
                "R2_oracle": _r2(y[test], m[test]),
                "R2_attainable_cv_all": all_info["cv_r2"], "R2_noise_ceiling_all": r2_noise_all,
                "noise_var_mean": float(np.mean(v[test])), "y_var_test": float(np.var(y[test]))})
            preds.append(pd.DataFrame({"target": t, "split": scheme, "index": test, "y": y[test],
                                       "attainable": pred, "oracle": m[test],
                                       "noise_var": v[test]}))
            r = rows[-1]
            log.info("%s, %s split: attainable R2 %.3f (true zone fractions, %d iterations; CV "
                     "on train+val %.3f), noise-only ceiling %.3f, oracle %.3f on %d test crops",
                     t, scheme, r["R2_attainable"], r["n_iter"], r["R2_attainable_cv"],
                     r["R2_noise_ceiling"], r["R2_oracle"], r["n_test"])
    return pd.DataFrame(rows, columns=list(CEILING_COLUMNS)), pd.concat(preds, ignore_index=True)
