"""The third study's baseline: conductivity from the bright (metal) pixel fraction alone.

In the ceramic-metal composite study (Li4Ti5O12 + Ni,
``../shared/references/cnn_conductivity_lto_ni_poster.txt``) the metal is
the bright phase of the SEM images, and the baseline ignores where it is:
the fraction of bright pixels of each image is the only predictor of the
sample's log10 conductivity, through generalised linear models that are
polynomials in that fraction; the reference found degree 4 best on its test
data.

* :func:`bright_fraction` thresholds each image (Otsu's threshold by
  default, Otsu, IEEE Trans. Syst. Man Cybern. 9, 62, 1979, computed per
  image, so that a change of brightness or contrast between images moves
  the threshold with them) and returns the fraction of pixels above it.
* :func:`fit_polynomial_glm` / :func:`predict_polynomial_glm` fit and apply
  a Gaussian-family, identity-link GLM (statsmodels; with these the GLM is
  ordinary least squares, McCullagh and Nelder, *Generalized Linear Models*,
  2nd ed., 1989, section 2.2) on the features ``1, z, z^2, ..., z^d`` of the
  *standardised* fraction ``z = (x - mean) / sd`` (mean and sd of the
  training data), which keeps the design matrix well conditioned at degree
  4 where raw powers of a fraction in [0, 1] are nearly collinear.
* :func:`polynomial_glm_cv` cross-validates each degree over folds given by
  the caller (all images of a sample in one fold: a sample's images share
  its conductivity, so splitting them would leak), fits on the other folds
  only, and scores the held-out fold with the mean absolute error and the
  coefficient of determination.

Everything is in log10 units of the property (for conductivity: decades,
log10 of S/cm).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputError


def bright_fraction(image, threshold=None):
    """Fraction of pixels brighter than a threshold, per image.

    Parameters
    ----------
    image : array_like, shape (H, W) or (N, H, W)
        Grey images (uint8 or float), all finite.
    threshold : float or array_like of shape (N,), optional
        Grey level; a pixel is bright where ``grey > threshold``. None: Otsu's
        threshold (``skimage.filters.threshold_otsu``, 256 bins) of each
        image separately.

    Returns
    -------
    fraction : float or numpy.ndarray of shape (N,), float64
        Bright area fraction in [0, 1] (float for one 2-D image).
    threshold : float or numpy.ndarray of shape (N,), float64
        The threshold(s) used, in grey levels.

    Raises
    ------
    InputError
        If ``image`` is not 2-D or 3-D, is empty, not numeric or not finite,
        an image is constant (Otsu has no threshold), or ``threshold`` has
        the wrong length or is not finite.
    """
    from skimage.filters import threshold_otsu

    try:
        arr = np.asarray(image)
    except (TypeError, ValueError) as exc:
        raise InputError(f"bright_fraction: image is not an array ({exc})") from None
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"bright_fraction: image has dtype {arr.dtype}; expected grey levels (uint8 or float)")
    if arr.ndim not in (2, 3):
        raise InputError(f"bright_fraction: image has shape {arr.shape}; expected (H, W) or (N, H, W)")
    single = arr.ndim == 2
    stack = arr[None] if single else arr
    if stack.size == 0 or stack.shape[1] == 0 or stack.shape[2] == 0:
        raise InputError(f"bright_fraction: image has shape {arr.shape}; expected non-empty images")
    if np.issubdtype(stack.dtype, np.floating) and not np.all(np.isfinite(stack)):
        raise InputError("bright_fraction: image has non-finite pixels; expected finite grey levels")
    n = stack.shape[0]
    if threshold is None:
        thr = np.empty(n)
        for i in range(n):
            im = stack[i]
            if im.min() == im.max():
                raise InputError(f"bright_fraction: image {i} is constant (all pixels {im.min()}); "
                                 "Otsu's threshold needs two grey levels")
            thr[i] = float(threshold_otsu(im))
    else:
        thr = np.asarray(threshold, dtype=np.float64)
        if thr.ndim == 0:
            thr = np.full(n, float(thr))
        if thr.shape != (n,):
            raise InputError(f"bright_fraction: threshold has shape {thr.shape}; expected a scalar or ({n},)")
        if not np.all(np.isfinite(thr)):
            raise InputError("bright_fraction: threshold is not finite")
    frac = np.array([np.count_nonzero(stack[i] > thr[i]) / stack[i].size for i in range(n)])
    if single:
        return float(frac[0]), float(thr[0])
    return frac, thr


def _check_xy(x, y, name):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or y.ndim != 1 or x.shape != y.shape:
        raise InputError(f"{name}: x and y must be 1-D of equal length; got shapes {x.shape} and {y.shape}")
    bad = ~(np.isfinite(x) & np.isfinite(y))
    if bad.any():
        raise InputError(f"{name}: {int(bad.sum())} non-finite value(s) in x or y (first at index "
                         f"{int(np.flatnonzero(bad)[0])}); expected finite fractions and log10 values")
    return x, y


def _features(z, degree):
    return np.vander(z, degree + 1, increasing=True)


def fit_polynomial_glm(x, y, degree):
    """Gaussian, identity-link GLM of ``y`` on a polynomial of the standardised ``x``.

    ``y = b0 + b1 z + ... + bd z^d + e``, ``z = (x - mean(x)) / sd(x)``,
    ``e`` normal (statsmodels ``GLM``, ``families.Gaussian()`` with its
    canonical identity link: least squares, McCullagh and Nelder 1989,
    section 2.2).

    Parameters
    ----------
    x : array_like, shape (N,), float
        Predictor, e.g. bright area fractions in [0, 1].
    y : array_like, shape (N,), float
        Response, e.g. log10 conductivity (log10 S/cm).
    degree : int
        Polynomial degree, >= 1; needs ``N > degree + 1`` points and at
        least ``degree + 1`` distinct ``x``.

    Returns
    -------
    model : dict
        ``degree`` (int), ``x_mean`` and ``x_sd`` (float, the
        standardisation, in the units of ``x``), ``params`` (numpy.ndarray,
        shape (degree + 1,), coefficients of ``z^0 .. z^d`` in the units of
        ``y``), ``result`` (the statsmodels results object), ``n`` (int).

    Raises
    ------
    InputError
        On shapes that differ, non-finite values, a degree < 1, or too few
        points or distinct ``x`` for the degree.
    """
    import statsmodels.api as sm

    x, y = _check_xy(x, y, "fit_polynomial_glm")
    if int(degree) != degree or degree < 1:
        raise InputError(f"fit_polynomial_glm: degree={degree!r}; expected an integer >= 1")
    degree = int(degree)
    if x.size <= degree + 1:
        raise InputError(f"fit_polynomial_glm: {x.size} points for degree {degree}; need at least {degree + 2}")
    if np.unique(x).size < degree + 1:
        raise InputError(f"fit_polynomial_glm: {np.unique(x).size} distinct x for degree {degree}; "
                         f"need at least {degree + 1}")
    mean, sd = float(x.mean()), float(x.std())
    X = _features((x - mean) / sd, degree)
    result = sm.GLM(y, X, family=sm.families.Gaussian()).fit()
    return {"degree": degree, "x_mean": mean, "x_sd": sd, "params": np.asarray(result.params),
            "result": result, "n": int(x.size)}


def predict_polynomial_glm(model, x):
    """Predictions of a :func:`fit_polynomial_glm` model.

    Parameters
    ----------
    model : dict
        From :func:`fit_polynomial_glm`.
    x : array_like, shape (M,), float
        Predictor, in the units it was fitted in.

    Returns
    -------
    numpy.ndarray, shape (M,), float64
        Predicted response, in the units of the fitted ``y`` (log10 units).

    Raises
    ------
    InputError
        If ``x`` is not 1-D and finite, or ``model`` lacks its keys.
    """
    missing = [k for k in ("degree", "x_mean", "x_sd", "params") if k not in model]
    if missing:
        raise InputError(f"predict_polynomial_glm: model lacks {missing}; expected fit_polynomial_glm's dict")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or not np.all(np.isfinite(x)):
        raise InputError(f"predict_polynomial_glm: x must be 1-D and finite; got shape {x.shape}")
    z = (x - model["x_mean"]) / model["x_sd"]
    return _features(z, model["degree"]) @ model["params"]


def _r2(y, pred):
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - pred) ** 2)) / ss_tot if ss_tot > 0 else np.nan


def polynomial_glm_cv(x, y, fold, degrees=(1, 2, 3, 4)):
    """Cross-validated polynomial GLMs of a log10 property on the bright fraction.

    For each degree and each fold ``k``: :func:`fit_polynomial_glm` on the
    images of all other folds (the standardisation too), prediction of fold
    ``k``, and its mean absolute error ``MAE = mean |y - yhat|`` and
    coefficient of determination ``R2 = 1 - sum (y - yhat)^2 / sum (y -
    mean_k(y))^2`` (mean over the held-out fold). The chosen degree has the
    lowest MAE averaged over the folds (the reference's criterion: the
    degree best on held-out data).

    Parameters
    ----------
    x : array_like, shape (N,), float
        Bright area fraction of each image, in [0, 1].
    y : array_like, shape (N,), float
        log10 of the sample's property for each image (log10 S/cm for
        conductivity; all images of a sample carry the sample's value).
    fold : array_like, shape (N,), int
        Fold of each image, given by the caller; the images of one sample
        must share a fold (e.g. ``sklearn.model_selection.GroupKFold`` on
        the sample ids). At least 2 folds.
    degrees : sequence of int
        Polynomial degrees to compare, each >= 1.

    Returns
    -------
    dict
        ``per_fold`` (pandas.DataFrame: ``degree``, ``fold``, ``n_train``,
        ``n_test``, ``mae``, ``r2``; MAE in log10 units, R2 dimensionless,
        NaN for a fold whose ``y`` is constant), ``per_degree``
        (pandas.DataFrame: ``degree``, ``mae_mean``, ``mae_sd``,
        ``r2_mean``, ``r2_sd`` over folds, sd with ddof 1, and the pooled
        out-of-fold ``mae_pooled``, ``r2_pooled``), ``best_degree`` (int),
        ``oof_pred`` (numpy.ndarray, shape (N,), float64: out-of-fold
        predictions of the best degree, log10 units), ``oof_pred_by_degree``
        (dict degree -> (N,) array).

    Raises
    ------
    InputError
        On shapes that differ, non-finite values, fewer than 2 folds, an
        invalid degree, or a training set too small for a degree.
    """
    x, y = _check_xy(x, y, "polynomial_glm_cv")
    fold = np.asarray(fold)
    if fold.shape != x.shape:
        raise InputError(f"polynomial_glm_cv: fold has shape {fold.shape}; expected {x.shape} (one per image)")
    if not np.issubdtype(fold.dtype, np.integer):
        raise InputError(f"polynomial_glm_cv: fold has dtype {fold.dtype}; expected integer fold indices")
    folds = np.unique(fold)
    if folds.size < 2:
        raise InputError(f"polynomial_glm_cv: {folds.size} fold(s); expected at least 2")
    degrees = [int(d) for d in degrees]
    if not degrees or any(d < 1 for d in degrees):
        raise InputError(f"polynomial_glm_cv: degrees={degrees!r}; expected integers >= 1")
    rows = []
    oof = {}
    for d in degrees:
        pred = np.empty_like(y)
        for k in folds:
            test = fold == k
            try:
                model = fit_polynomial_glm(x[~test], y[~test], d)
            except InputError as exc:
                raise InputError(f"polynomial_glm_cv: fold {k} held out, degree {d}: {exc}") from None
            pred[test] = predict_polynomial_glm(model, x[test])
            rows.append({"degree": d, "fold": int(k), "n_train": int((~test).sum()), "n_test": int(test.sum()),
                         "mae": float(np.mean(np.abs(y[test] - pred[test]))), "r2": _r2(y[test], pred[test])})
        oof[d] = pred
    per_fold = pd.DataFrame(rows)
    g = per_fold.groupby("degree", sort=False)
    per_degree = pd.DataFrame({
        "degree": degrees,
        "mae_mean": g["mae"].mean().to_numpy(),
        "mae_sd": g["mae"].std(ddof=1).to_numpy(),
        "r2_mean": g["r2"].mean().to_numpy(),
        "r2_sd": g["r2"].std(ddof=1).to_numpy(),
        "mae_pooled": [float(np.mean(np.abs(y - oof[d]))) for d in degrees],
        "r2_pooled": [_r2(y, oof[d]) for d in degrees],
    })
    best = int(per_degree.loc[per_degree["mae_mean"].idxmin(), "degree"])
    return {"per_fold": per_fold, "per_degree": per_degree, "best_degree": best,
            "oof_pred": oof[best].copy(), "oof_pred_by_degree": oof}
