"""Telling classes apart by one descriptor: nearest class mean, one-way ANOVA and Tukey-Kramer.

The graphene-oxide cement study's baseline (``../shared/references/dtd_nanoporosity_go_cement.txt``,
sections 2.4 and 3, Table 2): each local map is assigned to the class whose
mean descriptor (over all maps of that class) is nearest, and the class means
are compared by one-way ANOVA and the Tukey-Kramer procedure (Tukey's HSD for
unequal group sizes, :func:`statsmodels.stats.multicomp.pairwise_tukeyhsd`).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import InputError


def _clean(values, labels, what):
    v = np.asarray(values, float).ravel()
    lab = np.asarray(labels).ravel()
    if v.shape != lab.shape:
        raise InputError(f"{what}: {v.size} values but {lab.size} labels")
    ok = np.isfinite(v)
    if not ok.any():
        raise InputError(f"{what}: no finite value")
    return v[ok], lab[ok]


def nearest_class_mean(values, labels, what="descriptor", train=None):
    """Accuracy of assigning each sample to the class of nearest mean descriptor.

    Parameters
    ----------
    values : array-like, shape (N,)
        One descriptor per sample (non-finite values are left out).
    labels : array-like, shape (N,)
        Class of each sample.
    what : str
        The descriptor, for messages.
    train : array-like of bool, shape (N,), optional
        The samples whose class means are taken; the accuracy and the
        confusion are then of the others (a held-out test). Default: the
        means and the accuracy of all samples, as the reference reports it.

    Returns
    -------
    dict
        ``accuracy`` (fraction of the evaluated samples whose nearest class
        mean is their own class), ``class_means`` (class -> mean), ``predicted`` (array of
        the assigned classes, for the samples kept), ``confusion``
        (DataFrame, true classes as rows, predicted as columns, counts) and
        ``n`` (samples used).

    Raises
    ------
    InputError
        If fewer than two classes are present, the lengths differ, or
        ``train`` leaves a class without a sample or nothing to evaluate.
    """
    v, lab = _clean(values, labels, what)
    classes = list(pd.unique(lab))
    if len(classes) < 2:
        raise InputError(f"{what}: {len(classes)} class(es); at least 2 are needed")
    fit = np.ones(v.size, bool)
    if train is not None:
        t = np.asarray(train, bool).ravel()
        if t.shape != np.asarray(values).ravel().shape:
            raise InputError(f"{what}: {t.size} train flags for {np.asarray(values).size} values")
        fit = t[np.isfinite(np.asarray(values, float).ravel())]
        missing = [c for c in classes if not (fit & (lab == c)).any()]
        if missing or fit.all():
            raise InputError(f"{what}: the training share leaves classes {missing} without a sample "
                             f"or no sample to evaluate ({int((~fit).sum())})")
    means = np.array([v[fit & (lab == c)].mean() for c in classes])
    if train is not None:
        v, lab = v[~fit], lab[~fit]
    pred = np.asarray(classes, dtype=object)[np.argmin(np.abs(v[:, None] - means[None, :]), axis=1)]
    conf = pd.crosstab(pd.Series(lab, name="true"), pd.Series(pred, name="predicted")).reindex(
        index=classes, columns=classes, fill_value=0)
    return {"accuracy": float(np.mean(pred == lab)), "class_means": dict(zip(classes, means.tolist())),
            "predicted": pred, "confusion": conf, "n": int(v.size)}


def anova_tukey(values, labels, alpha=0.10, what="descriptor"):
    """One-way ANOVA and the Tukey-Kramer procedure on one descriptor.

    Parameters
    ----------
    values, labels : array-like, shape (N,)
    alpha : float
        Family-wise error rate (0.10: the reference's 90 % confidence).
    what : str

    Returns
    -------
    anova : dict
        ``F``, ``p_value`` (:func:`scipy.stats.f_oneway`), ``n_per_class``.
    table : pandas.DataFrame
        One row per pair of classes: ``descriptor, group1, group2,
        meandiff, p_adj, lower, upper, reject`` (reject = the means differ
        at ``1 - alpha`` confidence).

    Raises
    ------
    InputError
        If fewer than two classes have two or more finite values.
    """
    from scipy.stats import f_oneway
    from statsmodels.stats.multicomp import pairwise_tukeyhsd

    v, lab = _clean(values, labels, what)
    classes = [c for c in pd.unique(lab) if (lab == c).sum() >= 2]
    if len(classes) < 2:
        raise InputError(f"{what}: fewer than two classes with two or more values")
    keep = np.isin(lab, classes)
    v, lab = v[keep], lab[keep]
    F, p = f_oneway(*[v[lab == c] for c in classes])
    res = pairwise_tukeyhsd(v, lab.astype(str), alpha=float(alpha))
    rows = res.summary().data[1:]
    table = pd.DataFrame(rows, columns=["group1", "group2", "meandiff", "p_adj", "lower", "upper", "reject"])
    table.insert(0, "descriptor", what)
    table["reject"] = table["reject"].astype(bool)
    return ({"F": float(F), "p_value": float(p),
             "n_per_class": {str(c): int((lab == c).sum()) for c in classes}}, table)


def wilson_interval(k, n, z=1.96):
    """Wilson score interval of a proportion ``k / n`` (Wilson 1927, JASA 22, 209).

    Returns ``(low, high)``; ``(nan, nan)`` for ``n == 0``.
    """
    if n <= 0:
        return float("nan"), float("nan")
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return float(c - h), float(c + h)
