"""A ladder of baselines for crop -> (E, H): table, linear, 2-point + PCA + ridge, boosting.

Every rung predicts the indentation modulus ``E_GPa`` and the hardness
``H_GPa`` of an indent from its calibrated crop (``/images`` of the dataset,
backscatter coefficient eta or porosity), is fitted on the dataset's
``train`` + ``val`` indices (no rung uses early stopping, so the validation
crops are simply more training data; hyper-parameters are chosen by
cross-validation inside the fit set) and is scored on ``test`` -- on both the
``random`` and the spatially ``blocked`` split, the splits the ResNet is judged
on. Metrics: MSE (GPa^2), MAE (GPa), R^2 (:func:`microprop.stats.metrics`).

Rungs
-----
``table``
    The seed's table model (:func:`microprop.stats.table_model_fit`): the
    crop mean, 20 equal-count bins, the mean target of the bin.
``linear``
    Ordinary least squares on the crop mean (scikit-learn).
``two_point``
    Materials-knowledge-systems style structure-property model (Fast,
    Niezgoda & Kalidindi 2011, Acta Mater. 59, 699; Kalidindi, Niezgoda &
    Salem 2011, JOM 63, 34): each crop is segmented into ``n_classes`` grey
    classes by multi-level Otsu thresholds fitted on the fit-set crops
    (:func:`fit_thresholds`), the one-hot local-state fields of the central
    ``window_um`` square are block-averaged (:func:`state_fields`), their
    non-periodic two-point auto- and cross-correlations are computed by FFT
    up to a shift of ``max_shift_um`` (:func:`two_point`), flattened, reduced
    by PCA and regressed by ridge regression (:func:`fit_pca_ridge`).
``boosting``
    scikit-learn ``HistGradientBoostingRegressor`` (seeded, fixed number of
    iterations) on hand-made features (:func:`crop_features`,
    :func:`class_fractions`): crop mean/std, grey quantiles 5/25/50/75/95 %
    of the whole crop and of a central disc of radius ``disc_radius_um``
    around the indent, and the grey-class fractions of both.

Why not the ``pymks`` package: its latest release (0.4.1, 2021) requires
``dask``, ``toolz``, ``Deprecated`` and even ``pytest``/``pytest-cov``/``nbval``
at run time, none of which this project uses, and still calls ``np.complex``
(removed in numpy 1.24) in its localization code; the correlations themselves
are a few lines of ``scipy.fft`` (:func:`two_point`).

The dataset is read in chunks of crops (:func:`ladder` makes two passes over
``/images``), so memory stays bounded by the chunk and the small per-crop
feature arrays.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression, RidgeCV
from threadpoolctl import threadpool_limits

from ..data import (
    SPLIT_SCHEMES,
    TARGETS,
    open_dataset,
    read_attrs,
    read_split,
    read_targets,
)
from ..errors import InputError
from ..microstructure import (
    block_factor,
    central_window,
    class_fractions,
    crop_features,
    disc_mask,
    fit_thresholds,
    two_point_features,
)
from ..progress import progress
from ..stats import metrics, table_model_fit, table_model_predict

log = logging.getLogger(__name__)

#: Rung names, in ladder order.
MODELS = ("table", "linear", "two_point", "boosting")


#: Candidate numbers of PCA components of the two-point rung.
N_COMPONENTS = (1, 2, 3, 5, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


#: Candidate ridge penalties (on PCA scores of the correlations).
ALPHAS = tuple(np.logspace(-8, 2, 21))


def fit_pca_ridge(X, y, n_components=N_COMPONENTS, alphas=ALPHAS, seed=0, n_threads=1):
    """PCA of the features, then ridge regression on the leading scores.

    PCA (scikit-learn, full SVD, fitted once on the fit set, which is
    unsupervised) gives the scores; for each candidate number ``k`` of
    components a :class:`~sklearn.linear_model.RidgeCV` picks the penalty by
    efficient leave-one-out cross-validation, and the ``k`` of lowest
    leave-one-out MSE is kept (the PCA + linear-regression protocol of Fast
    et al. 2011 / PyMKS, with the number of components chosen by CV).

    Parameters
    ----------
    X : numpy.ndarray, shape (N, F)
    y : numpy.ndarray, shape (N,)
    n_components : sequence of int
        Candidates; values above ``min(N - 1, F)`` are dropped.
    alphas : sequence of float
        Ridge penalties.
    seed : int
        PCA random state (only used by randomized solvers; kept for symmetry).
    n_threads : int
        BLAS threads (threadpoolctl; 1 is fastest for these small problems
        on a shared machine).

    Returns
    -------
    dict
        ``pca`` (fitted PCA with the largest candidate), ``ridge`` (RidgeCV on
        the first ``k`` scores), ``k``, ``alpha``, ``loo_mse``,
        ``explained_variance`` (fraction explained by ``k`` components).

    Raises
    ------
    InputError
        If fewer than 3 samples are given.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    if X.shape[0] < 3 or X.shape[0] != y.size:
        raise InputError(f"fit_pca_ridge: need >= 3 samples and matching X {X.shape} / y {y.shape}")
    with threadpool_limits(limits=max(1, int(n_threads))):
        return _fit_pca_ridge(X, y, n_components, alphas, seed)


def _fit_pca_ridge(X, y, n_components, alphas, seed):
    kmax = min(X.shape[0] - 1, X.shape[1])
    cands = sorted({min(int(k), kmax) for k in n_components if int(k) >= 1})
    pca = PCA(n_components=max(cands), svd_solver="full", random_state=int(seed)).fit(X)
    Z = pca.transform(X)
    best = None
    for k in cands:
        rcv = RidgeCV(alphas=list(alphas), scoring=None, store_cv_results=True).fit(Z[:, :k], y)
        ai = list(rcv.alphas).index(rcv.alpha_)
        loo = float(np.mean(rcv.cv_results_[:, ai]))
        if best is None or loo < best["loo_mse"] - 1e-12 * max(loo, 1.0):
            best = {"k": k, "ridge": rcv, "alpha": float(rcv.alpha_), "loo_mse": loo}
    best["pca"] = pca
    best["explained_variance"] = float(pca.explained_variance_ratio_[:best["k"]].sum())
    return best


def predict_pca_ridge(model, X):
    """Predict with :func:`fit_pca_ridge`'s model. Returns shape (N,)."""
    Z = model["pca"].transform(np.asarray(X, dtype=np.float64))[:, :model["k"]]
    return model["ridge"].predict(Z)


def fit_boosting(X, y, seed=0, n_threads=1):
    """Seeded gradient-boosted trees (scikit-learn ``HistGradientBoostingRegressor``).

    Least-squares loss, 300 iterations at learning rate 0.05, leaves of at
    least 10 samples, L2 penalty 1; no early stopping (so the whole fit set
    trains and the result depends only on ``seed``). NaN features are handled
    natively by the trees.

    Parameters
    ----------
    X : numpy.ndarray, shape (N, F)
    y : numpy.ndarray, shape (N,)
    seed : int
    n_threads : int
        OpenMP threads (threadpoolctl). For hundreds of samples one thread is
        fastest; on a busy 2-core machine two threads were ~60x slower.

    Returns
    -------
    sklearn.ensemble.HistGradientBoostingRegressor
    """
    with threadpool_limits(limits=max(1, int(n_threads))):
        return HistGradientBoostingRegressor(
            max_iter=300, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=10,
            l2_regularization=1.0, early_stopping=False, random_state=int(seed),
        ).fit(np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64).ravel())


def _fit_test_split(h5, scheme, path="dataset"):
    """Fit (train + val) and test indices of split ``scheme`` of an open dataset.

    Returns
    -------
    fit, test : numpy.ndarray of int64 (sorted)

    Raises
    ------
    InputError
        As :func:`microprop.data.read_split` (a part missing, an index out of
        range or in two parts); if fewer than 3 fit or 2 test crops remain.
    """
    parts = read_split(h5, scheme)
    fit = np.unique(np.concatenate([parts["train"], parts["val"]]))
    test = np.unique(parts["test"])
    if fit.size < 3 or test.size < 2:
        raise InputError(f"{path}: /splits/{scheme}: {fit.size} train+val and {test.size} test "
                         "crops; at least 3 and 2 are needed")
    return fit, test


def _chunks(n, chunk):
    return [(i, min(n, i + chunk)) for i in range(0, n, chunk)]


def ladder(dataset_path, targets=TARGETS, splits=SPLIT_SCHEMES, seed=0, downsample=None,
           n_classes=4, disc_radius_um=1.0, max_shift_um=1.5, periodic=False, n_bins=20,
           chunk=64, pixel_stride=5, models=MODELS, n_threads=1, window_um=5.0,
           return_predictions=False):
    """Fit and score the baseline ladder on a dataset's splits.

    Two passes over ``/images`` in chunks of ``chunk`` crops: the first
    computes the threshold-free features (:func:`crop_features`) and keeps a
    strided pixel subsample (every ``pixel_stride``-th row and column) from
    which the class thresholds are fitted per split on its train + val crops
    (:func:`fit_thresholds`); the second computes class fractions and the
    two-point correlations with those thresholds.

    Parameters
    ----------
    dataset_path : path-like
        ``results/{specimen}/dataset.h5`` (``docs/ARCHITECTURE.md``).
    targets : sequence of str
        Among ``E_GPa``, ``H_GPa``.
    splits : sequence of str
        Split schemes under ``/splits`` (``random``, ``blocked``).
    seed : int
        Random state of the boosted trees and the PCA.
    downsample : int, optional
        Approximate crop edge (px) for the two-point statistics: crops are
        block-mean downsampled by ``round(S / downsample)`` (e.g. factor 4,
        250 -> 62 px for 64; the factor is set by the whole crop edge ``S``
        also when a ``window_um`` is used) to keep the FFTs and the feature
        matrix small; ``None``: full resolution (the features then grow as
        ``L (L + 1) / 2 (2 r + 1)^2`` per crop: mind the memory). The other
        rungs always use full resolution.
    n_classes : int
        Grey classes (local states) of the two-point and boosting rungs.
    disc_radius_um : float
        Radius of the central disc (indent neighbourhood), um.
    max_shift_um : float
        Largest correlation shift kept, um (converted with the effective
        pixel size ``pixel_size_nm * factor``).
    window_um : float, optional
        The two-point statistics are computed on the central ``window_um``
        square of each crop (default 5 um, i.e. +-2.5 um around the indent);
        ``None``: the whole crop. Two-point statistics are translation
        invariant, so on the whole 10 um crop they cannot tell the indent's
        neighbourhood from the crop's edge; on the demo the 5 um window
        raised the test R^2 of E from 0.58 to 0.70 (random split).
    periodic : bool
        Periodic instead of non-periodic (default) correlations.
    n_bins : int
        Equal-count bins of the table model.
    chunk : int
        Crops read per HDF5 chunk.
    pixel_stride : int
        Stride of the threshold-fitting pixel subsample.
    models : sequence of str
        Subset of :data:`MODELS`.
    n_threads : int
        BLAS/OpenMP threads of the whole computation (threadpoolctl). The
        fits are small (hundreds of crops): on a shared machine one thread is
        much faster than OpenMP threads waiting for a busy core.
    return_predictions : bool
        Also return every rung's test predictions (for bootstrap intervals,
        :func:`microprop.learning.bootstrap_metrics`).

    Returns
    -------
    table : pandas.DataFrame
        One row per (split, target, model): ``model, target, split, MSE,
        MAE, R2, n_train, n_test, fit_s, fit_on, notes`` (MSE GPa^2, MAE
        GPa; ``n_train`` counts train + val; ``fit_s`` the wall time of
        fitting, features excluded; ``notes`` the chosen hyper-parameters).
        ``attrs`` holds ``thresholds`` per split, ``factor``,
        ``max_shift_px``, ``window_px``, ``disc_radius_px`` and ``feature_s`` (wall time of
        the two reading passes).
    predictions : pandas.DataFrame
        Only with ``return_predictions``: one row per (model, target, split,
        test crop): ``model, target, split, index`` (dataset row), ``y``,
        ``pred`` (GPa).

    Raises
    ------
    InputError
        If the file is missing or unreadable, lacks ``/images``, a target or
        a split, or a name is unknown.
    """
    with threadpool_limits(limits=max(1, int(n_threads))):
        table, preds = _ladder(Path(dataset_path), list(targets), list(splits), seed, downsample,
                               n_classes, disc_radius_um, max_shift_um, periodic, n_bins, chunk,
                               pixel_stride, list(models), window_um)
    return (table, preds) if return_predictions else table


def _ladder(path, targets, splits, seed, downsample, n_classes, disc_radius_um, max_shift_um,
            periodic, n_bins, chunk, pixel_stride, models, window_um):
    for t in targets:
        if t not in TARGETS:
            raise InputError(f"{path}: unknown target {t!r}; expected one of {TARGETS}")
    for m in models:
        if m not in MODELS:
            raise InputError(f"{path}: unknown model {m!r}; expected one of {MODELS}")
    t0 = time.perf_counter()
    with open_dataset(path) as h5:
        images = h5["images"]
        n, s = images.shape[0], images.shape[1]
        ys = read_targets(h5, targets)
        idx = {sc: _fit_test_split(h5, sc, path) for sc in splits}
        geo = _geometry(path, read_attrs(h5).get("pixel_size_nm", np.nan), s, disc_radius_um,
                        window_um, downsample, max_shift_um)
        base, base_names, thr = _base_features(images, idx, splits, geo["disc"], n_classes, chunk,
                                               pixel_stride, path)
        frac, corr = _split_features(images, splits, thr, geo, chunk, periodic,
                                     need_2pt="two_point" in models,
                                     need_frac="boosting" in models)
    feature_s = time.perf_counter() - t0
    log.info("%s: %d crops of %d px; features in %.1f s (2-point: factor %d, shift <= %d px)",
             path, n, s, feature_s, geo["factor"], geo["max_shift_px"])
    means = crop_means_from(base, base_names)
    rows, preds = [], []
    for sc in splits:
        X2 = np.concatenate(corr[sc]) if corr[sc] else None
        Xb = np.hstack([base, np.concatenate(frac[sc])]) if frac[sc] else None
        for t in targets:
            y = ys[t]
            ok = np.isfinite(y) & np.isfinite(means)
            fit, test = idx[sc]
            tr, te = fit[ok[fit]], test[ok[test]]
            for model in models:
                row, pred = _score_rung(model, means, X2, Xb, y, tr, te, seed, n_bins, n_classes,
                                        f"{path} {sc}")
                rows.append(row)
                rows[-1].update(target=t, split=sc)
                preds.append(pd.DataFrame({"model": model, "target": t, "split": sc,
                                           "index": te.astype(np.int64), "y": y[te],
                                           "pred": np.asarray(pred, np.float64)}))
                log.info("%s split, %s, %s: R2 %.3f, MAE %.4g GPa (%s)", sc, t, model,
                         rows[-1]["R2"], rows[-1]["MAE"], rows[-1]["notes"])
    table = pd.DataFrame(rows, columns=["model", "target", "split", "MSE", "MAE", "R2", "n_train",
                                        "n_test", "fit_s", "fit_on", "notes"])
    table.attrs.update(thresholds={sc: thr[sc].tolist() for sc in splits}, factor=geo["factor"],
                       max_shift_px=geo["max_shift_px"], window_px=geo["win"],
                       disc_radius_px=geo["disc_px"], feature_s=feature_s,
                       feature_names=base_names + [f"frac{k}" for k in range(n_classes)]
                       + [f"disc_frac{k}" for k in range(n_classes)])
    predictions = (pd.concat(preds, ignore_index=True) if preds else
                   pd.DataFrame(columns=["model", "target", "split", "index", "y", "pred"]))
    return table, predictions


def _geometry(path, pixel_nm, s, disc_radius_um, window_um, downsample, max_shift_um):
    """Pixel geometry of the features: disc, window, 2-point block factor and shift, in px."""
    pixel_nm = float(pixel_nm)
    if not (np.isfinite(pixel_nm) and pixel_nm > 0):
        raise InputError(f"{path}: file attr pixel_size_nm missing or not positive")
    disc_px = float(disc_radius_um) * 1000.0 / pixel_nm
    factor = block_factor(s, downsample)
    return {"disc_px": disc_px, "disc": disc_mask(s, disc_px),
            "win": None if window_um is None else int(round(float(window_um) * 1000.0 / pixel_nm)),
            "factor": factor,
            "max_shift_px": max(0, int(round(float(max_shift_um) * 1000.0 / (pixel_nm * factor))))}


def _base_features(images, idx, splits, disc, n_classes, chunk, pixel_stride, path):
    """Pass 1: threshold-free features of every crop and the class thresholds per split."""
    n = images.shape[0]
    base, sub = [], []
    stride = max(1, int(pixel_stride))
    for i0, i1 in progress(_chunks(n, chunk), desc="ladder features", unit="chunk"):
        a = np.asarray(images[i0:i1], dtype=np.float64)
        f, base_names = crop_features(a, disc)
        base.append(f)
        sub.append(a[:, ::stride, ::stride].reshape(i1 - i0, -1).astype(np.float32))
    base = np.concatenate(base)
    sub = np.concatenate(sub)
    thr = {sc: fit_thresholds(sub[idx[sc][0]], n_classes, what=f"{path} {sc} train+val")
           for sc in splits}
    del sub
    for sc in splits:
        log.info("%s split: class thresholds %s", sc, np.round(thr[sc], 5).tolist())
    return base, base_names, thr


def _split_features(images, splits, thr, geo, chunk, periodic, need_2pt, need_frac):
    """Pass 2: class fractions and two-point correlations with each split's thresholds."""
    frac = {sc: [] for sc in splits}
    corr = {sc: [] for sc in splits}
    if not (need_2pt or need_frac):
        return frac, corr
    for i0, i1 in progress(_chunks(images.shape[0], chunk), desc="ladder 2-point", unit="chunk"):
        a = np.asarray(images[i0:i1], dtype=np.float64)
        for sc in splits:
            if need_frac:
                frac[sc].append(np.hstack([class_fractions(a, thr[sc]),
                                           class_fractions(a, thr[sc], geo["disc"])]))
            if need_2pt:
                corr[sc].append(two_point_features(central_window(a, geo["win"]), thr[sc],
                                                   geo["factor"], geo["max_shift_px"], periodic))
    return frac, corr


def _score_rung(model, means, X2, Xb, y, tr, te, seed, n_bins, n_classes, what):
    """Fit one rung on ``tr``, score it on ``te``: a row of the ladder table (no target/split)
    and the test predictions (GPa)."""
    t1 = time.perf_counter()
    if model == "table":
        tab = table_model_fit(means[tr], y[tr], n_bins=n_bins, binning="quantile",
                              what=f"{what} table model")
        fit_s = time.perf_counter() - t1
        pred = table_model_predict(tab, means[te])
        notes = f"{len(tab)} equal-count bins of the crop mean"
    elif model == "linear":
        reg = LinearRegression().fit(means[tr, None], y[tr])
        fit_s = time.perf_counter() - t1
        pred = reg.predict(means[te, None])
        notes = f"y = {reg.intercept_:.4g} + {reg.coef_[0]:.4g} * mean"
    elif model == "two_point":
        mdl = fit_pca_ridge(X2[tr], y[tr], seed=seed)
        fit_s = time.perf_counter() - t1
        pred = predict_pca_ridge(mdl, X2[te])
        notes = (f"{n_classes} classes, {X2.shape[1]} correlations, "
                 f"k={mdl['k']} PCs ({mdl['explained_variance']:.3f} var), "
                 f"alpha={mdl['alpha']:.2g}")
    else:
        gb = fit_boosting(Xb[tr], y[tr], seed=seed)
        fit_s = time.perf_counter() - t1
        pred = gb.predict(Xb[te])
        notes = f"{Xb.shape[1]} features, {gb.n_iter_} iterations"
    met = metrics(y[te], pred)
    return {"model": model, **met, "n_train": int(tr.size), "n_test": int(te.size),
            "fit_s": float(fit_s), "fit_on": "train+val", "notes": notes}, pred


def crop_means_from(features, names):
    """The ``mean`` column of :func:`crop_features` output (NaN-aware crop mean)."""
    return np.asarray(features[:, list(names).index("mean")], dtype=np.float64)
