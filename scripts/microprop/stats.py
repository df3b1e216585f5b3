"""Statistics of grid nanoindentation: deconvolution, hydration, baselines.

* :func:`deconvolve` -- statistical deconvolution of a property histogram
  (indentation modulus ``E_GPa`` or hardness ``H_GPa``) into Gaussian
  components, one per mechanical phase (grid indentation technique:
  Constantinides, Ravi Chandran, Ulm & Van Vliet 2006, Mater. Sci. Eng. A 430;
  Ulm et al. 2007, J. Am. Ceram. Soc. 90). The mixture is fitted by maximum
  likelihood with scikit-learn's :class:`~sklearn.mixture.GaussianMixture`
  (EM) and the components are named by optimal assignment of their means to
  literature phase means.
* :func:`bic_table` -- Bayesian/Akaike information criteria against the
  number of components (Schwarz 1978; Akaike 1974).
* :func:`hydration` -- degree of hydration from the clinker volume fraction
  (Powers' model) and the LD/(LD+HD) C-S-H ratio (Tennis & Jennings 2000).
* :func:`table_model_fit` / :func:`table_model_predict` /
  :func:`table_model` -- the seed's "table model": mean grey of a crop, binned,
  and the mean property of each bin as the prediction.
* :func:`linear_model` -- ordinary least squares of the property on the mean
  grey, the other baseline; :func:`metrics` -- MSE, MAE, R^2.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import train_test_split

from .errors import InputError

log = logging.getLogger(__name__)

#: Literature phase means of the indentation modulus, GPa (Constantinides &
#: Ulm 2004, Cem. Concr. Res. 34: LD-C-S-H 21.7, HD-C-S-H 29.4; Ulm et al.
#: 2007 / Vandamme 2008: LD 26.5, HD 34.8 (grid indentation of cement paste);
#: CH ~ 38-52 (Constantinides & Ulm 2004; Wittmann); clinker ~ 120-130
#: (Velez et al. 2001, Cem. Concr. Res. 31)). These are the reference values of
#: the issue; the phase naming depends only on their order and ratios.
E_PHASE_MEANS_GPA = {"LD-C-S-H": 26.5, "HD-C-S-H": 34.8, "CH": 52.0, "ACC": 122.0}

#: Fallback literature hardness means, GPa (Constantinides & Ulm 2007,
#: J. Mech. Phys. Solids 55: LD 0.8-0.9, HD 1.2; CH ~1.8; clinker ~8 (Velez
#: et al. 2001)), used when :mod:`microprop.nanoindentation` does not provide
#: ``PHASE_PROPERTIES``.
H_PHASE_MEANS_GPA = {"LD-C-S-H": 0.9, "HD-C-S-H": 1.2, "CH": 1.8, "ACC": 8.0}

#: Specific volume ratio rho_w / rho_c of Powers' model: water 1.0 g/cm^3,
#: Portland cement 3.15 g/cm^3, so 1/3.15 = 0.317 ~ 0.32.
POWERS_CEMENT_VOLUME = 0.32


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
        ``microprop.nanoindentation.PHASE_PROPERTIES`` (indexed by phase) is
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
        from .nanoindentation import PHASE_PROPERTIES  # the virtual specimens' forward model
    except ImportError:
        return dict(H_PHASE_MEANS_GPA)
    try:
        out = {ph: float(PHASE_PROPERTIES.loc[ph, "H_mean_GPa"]) for ph in H_PHASE_MEANS_GPA}
    except (KeyError, AttributeError, TypeError, ValueError) as exc:
        log.warning("nanoindentation.PHASE_PROPERTIES has no H_mean_GPa for every phase (%s); "
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


def fit_gmm(X, n_components, seed=0, n_init=10):
    """Maximum-likelihood Gaussian mixture with two kinds of EM starts.

    scikit-learn's k-means starts alone often split a broad component (the
    clinker peak of E) and merge two narrow neighbours (LD/HD-C-S-H); so
    ``n_init`` EM runs are started from k-means and ``n_init`` from random
    data points, and the fit of highest likelihood is kept. EM runs to a
    tight tolerance (1e-6 in mean log-likelihood; scikit-learn's default 1e-3
    stops overlapping C-S-H components far from the optimum).

    Parameters
    ----------
    X : numpy.ndarray, shape (N, 1)
    n_components : int
    seed : int
    n_init : int

    Returns
    -------
    sklearn.mixture.GaussianMixture
        Fitted, ``covariance_type="full"``.
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


def deconvolve(values, n_components=4, seed=0, n_init=10, quantity="E_GPa",
               reference=None, what="values", return_model=False):
    """Deconvolve a property histogram into Gaussian phase components.

    A 1D Gaussian mixture ``p(x) = sum_i f_i N(x; mu_i, s_i^2)`` is fitted by
    expectation-maximisation (scikit-learn ``GaussianMixture``; ``n_init``
    k-means and ``n_init`` random starts, best likelihood kept, see
    :func:`fit_gmm`) -- the statistical
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
        Number of EM restarts.
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
        Random state and number of EM restarts per start kind.
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
    ``AIC = -2 ln L + 2 p`` (Akaike 1974, IEEE TAC 19), with ``p = 3k - 1``
    free parameters of a 1D k-component mixture, as computed by scikit-learn.

    Parameters
    ----------
    values : array-like, shape (N,)
    k_range : iterable of int
        Numbers of components to try.
    seed : int
    n_init : int
        EM restarts per k.
    what : str
        Name of the data in error messages.

    Returns
    -------
    pandas.DataFrame
        Columns ``k``, ``bic``, ``aic``, ``best`` (bool, True on the row of
        minimum BIC).

    Raises
    ------
    InputError
        If ``k_range`` is empty or there are fewer than ``3 * max(k)``
        (and 10) finite values.
    """
    ks = sorted(int(k) for k in k_range)
    if not ks or ks[0] < 1:
        raise InputError(f"{what}: k_range must hold integers >= 1, got {ks}")
    x = _clean_values(values, what, max(3 * ks[-1], 10))[:, None]
    rows = []
    for k in ks:
        gmm = fit_gmm(x, k, seed=seed, n_init=n_init)
        rows.append({"k": k, "bic": float(gmm.bic(x)), "aic": float(gmm.aic(x))})
    out = pd.DataFrame(rows)
    out["best"] = out["bic"] == out["bic"].min()
    log.info("%s: minimum BIC at k=%d", what, int(out.loc[out.best, "k"].iloc[0]))
    return out


def hydration(fractions, w_c, clip=True):
    """Degree of hydration and LD/(LD+HD) ratio from phase volume fractions.

    These standard forms stand in for the seed paper's eqs. 9-10.

    Degree of hydration (Powers & Brownyard 1947; Hansen 1986, Cem. Concr.
    Res. 16): a paste of water/cement mass ratio ``w/c`` initially holds the
    cement volume fraction ``p_c = 0.32 / (w/c + 0.32)`` (``0.32 ~ 1/3.15``,
    cement specific gravity 3.15, water 1.0). Assuming the paste volume
    stays constant (no chemical shrinkage voids counted apart; sealed
    curing), a degree of hydration ``alpha`` leaves
    ``f_ACC = (1 - alpha) p_c`` of unhydrated clinker, so::

        alpha = 1 - f_ACC (w/c + 0.32) / 0.32

    The C-S-H mass ratio of Tennis & Jennings (2000, Cem. Concr. Res. 30,
    855-863, eq. for M_r of LD-C-S-H to total C-S-H), fitted for
    Portland cement pastes with 0.35 <= w/c <= 0.6 over the measured range of
    alpha::

        Mr = 3.017 (w/c) alpha - 1.347 alpha + 0.538

    Beside it the measured ratio ``f_LD / (f_LD + f_HD)`` of the given
    fractions is reported (``Mr_measured``); it is a volume (number) ratio and
    equals the mass ratio only if LD- and HD-C-S-H have equal density, and it
    is comparable to Mr only when the C-S-H phases are resolved as two
    components.

    Parameters
    ----------
    fractions : dict
        Phase name -> volume fraction (0..1) in the paste, e.g. the GMM
        fractions; must contain ``ACC``. ``LD-C-S-H`` and ``HD-C-S-H`` are
        needed for ``Mr_measured``. The GMM fractions are fractions of the
        indented solid; pores that gave no indentation result are not counted.
    w_c : float
        Water/cement mass ratio (> 0).
    clip : bool
        Clip alpha to [0, 1] (``alpha_raw`` keeps the unclipped value).

    Returns
    -------
    dict
        ``alpha``, ``alpha_raw``, ``Mr_model`` (Tennis-Jennings, from
        ``alpha`` and ``w_c``), ``Mr_measured`` (or None), ``w_c``,
        ``f_ACC``, ``f_LD``, ``f_HD``, ``cement_volume_fraction_initial``,
        ``notes``.

    Raises
    ------
    InputError
        If ``w_c <= 0``, ``ACC`` is missing, or a fraction is outside [0, 1].
    """
    w_c = float(w_c)
    if not w_c > 0:
        raise InputError(f"hydration: w/c must be > 0, got {w_c}")
    if "ACC" not in fractions:
        raise InputError(f"hydration: phase fractions lack 'ACC' (clinker); found {sorted(fractions)}")
    for phase, f in fractions.items():
        if not (0.0 <= float(f) <= 1.0):
            raise InputError(f"hydration: fraction of {phase!r} is {f}; expected 0..1")
    f_acc = float(fractions["ACC"])
    p_c = POWERS_CEMENT_VOLUME / (w_c + POWERS_CEMENT_VOLUME)
    alpha_raw = 1.0 - f_acc / p_c
    alpha = float(np.clip(alpha_raw, 0.0, 1.0)) if clip else alpha_raw
    notes = []
    if alpha != alpha_raw:
        notes.append(f"alpha clipped from {alpha_raw:.3f}: f_ACC={f_acc:.3f} is outside "
                     f"0..{p_c:.3f} for w/c={w_c}")
        log.warning("hydration: %s", notes[-1])
    if not 0.35 <= w_c <= 0.6:
        notes.append(f"w/c={w_c} outside the 0.35-0.6 range of the Tennis-Jennings fit")
    mr_model = 3.017 * w_c * alpha - 1.347 * alpha + 0.538
    f_ld = fractions.get("LD-C-S-H")
    f_hd = fractions.get("HD-C-S-H")
    mr_meas = None
    if f_ld is not None and f_hd is not None and float(f_ld) + float(f_hd) > 0:
        mr_meas = float(f_ld) / (float(f_ld) + float(f_hd))
    return {
        "alpha": alpha, "alpha_raw": alpha_raw, "Mr_model": mr_model, "Mr_measured": mr_meas,
        "w_c": w_c, "f_ACC": f_acc,
        "f_LD": None if f_ld is None else float(f_ld),
        "f_HD": None if f_hd is None else float(f_hd),
        "cement_volume_fraction_initial": p_c, "notes": notes,
        "equations": {
            "alpha": "1 - f_ACC (w/c + 0.32)/0.32 (Powers & Brownyard 1947; Hansen 1986)",
            "Mr_model": "3.017 (w/c) alpha - 1.347 alpha + 0.538 (Tennis & Jennings 2000)",
            "Mr_measured": "f_LD / (f_LD + f_HD) (GMM volume fractions)",
        },
    }


def metrics(y_true, y_pred):
    """Regression metrics (scikit-learn).

    Parameters
    ----------
    y_true, y_pred : array-like, shape (N,)

    Returns
    -------
    dict
        ``MSE`` (unit^2), ``MAE`` (unit), ``R2`` (coefficient of
        determination, 1 - SS_res/SS_tot; 0 for predicting the mean).

    Raises
    ------
    InputError
        If the shapes differ or fewer than 2 values are given.
    """
    y_true = np.asarray(y_true, dtype=float).ravel()
    y_pred = np.asarray(y_pred, dtype=float).ravel()
    if y_true.shape != y_pred.shape or y_true.size < 2:
        raise InputError(f"metrics: need two equal-length arrays of >= 2 values, got "
                         f"{y_true.shape} and {y_pred.shape}")
    return {"MSE": float(mean_squared_error(y_true, y_pred)),
            "MAE": float(mean_absolute_error(y_true, y_pred)),
            "R2": float(r2_score(y_true, y_pred))}


def _paired(mean_grey, y, what):
    g = np.asarray(mean_grey, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if g.shape != y.shape:
        raise InputError(f"{what}: mean grey ({g.size}) and target ({y.size}) differ in length")
    ok = np.isfinite(g) & np.isfinite(y)
    if not ok.all():
        log.warning("%s: dropping %d sample(s) with non-finite grey or target", what, int((~ok).sum()))
    return g, y, ok


def table_model_fit(mean_grey, y, n_bins=10, binning="quantile", what="table model"):
    """Fit the seed's table model: mean target per bin of crop mean grey.

    Parameters
    ----------
    mean_grey : array-like, shape (N,)
        Mean calibrated grey value of each crop (eta or porosity).
    y : array-like, shape (N,)
        Target (``E_GPa`` or ``H_GPa``).
    n_bins : int
        Number of bins.
    binning : {"quantile", "uniform"}
        ``quantile`` (default): equal-count bins (edges at grey quantiles;
        tied edges merged, so fewer bins may result); ``uniform``: equal-width
        bins between the minimum and maximum grey. An empty uniform bin takes
        the value of the nearest non-empty bin.
    what : str
        Name of the data in error messages.

    Returns
    -------
    pandas.DataFrame
        One row per bin: ``bin``, ``grey_lo``, ``grey_hi`` (edges),
        ``grey_mean``, ``y_mean``, ``y_std``, ``n``.

    Raises
    ------
    InputError
        If ``n_bins < 1``, an unknown binning, or fewer than 2 usable samples.
    """
    g, y, ok = _paired(mean_grey, y, what)
    g, y = g[ok], y[ok]
    n_bins = int(n_bins)
    if n_bins < 1:
        raise InputError(f"{what}: n_bins must be >= 1, got {n_bins}")
    if g.size < 2:
        raise InputError(f"{what}: {g.size} usable sample(s); at least 2 are needed")
    if binning == "quantile":
        edges = np.unique(np.quantile(g, np.linspace(0, 1, n_bins + 1)))
    elif binning == "uniform":
        edges = np.linspace(g.min(), g.max(), n_bins + 1)
    else:
        raise InputError(f"{what}: binning {binning!r}; expected 'quantile' or 'uniform'")
    if edges.size < 2:
        edges = np.array([g.min(), g.max()])
    idx = _bin_index(g, edges)
    nb = edges.size - 1
    df = pd.DataFrame({"bin": idx, "g": g, "y": y}).groupby("bin").agg(
        grey_mean=("g", "mean"), y_mean=("y", "mean"), y_std=("y", "std"), n=("y", "size"))
    df = df.reindex(range(nb))
    df["n"] = df["n"].fillna(0).astype(int)
    centres = 0.5 * (edges[:-1] + edges[1:])
    filled = df["y_mean"].notna().to_numpy()
    if not filled.all():
        src = np.flatnonzero(filled)
        nearest = src[np.abs(centres[:, None] - centres[src][None, :]).argmin(axis=1)]
        df["y_mean"] = df["y_mean"].to_numpy()[nearest]
    df.insert(0, "grey_hi", edges[1:])
    df.insert(0, "grey_lo", edges[:-1])
    df.insert(0, "bin", np.arange(nb))
    return df.reset_index(drop=True)


def _bin_index(g, edges):
    # inner edges only: values below/above the range fall in the end bins
    return np.searchsorted(edges[1:-1], g, side="right")


def table_model_predict(table, mean_grey):
    """Predict with the table model: the bin mean of each crop's grey bin.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`table_model_fit`.
    mean_grey : array-like, shape (N,)

    Returns
    -------
    numpy.ndarray, shape (N,), float
        Greys outside the fitted range take the end bins' values; a
        non-finite grey gives NaN.
    """
    g = np.asarray(mean_grey, dtype=float).ravel()
    edges = np.append(table["grey_lo"].to_numpy(float), table["grey_hi"].to_numpy(float)[-1])
    pred = table["y_mean"].to_numpy(float)[_bin_index(np.nan_to_num(g), edges)]
    pred[~np.isfinite(g)] = np.nan
    return pred


def split_indices(n, seed=0, test_fraction=0.2):
    """Seeded random train/test split of ``n`` samples (scikit-learn).

    Returns
    -------
    train, test : numpy.ndarray of int64
    """
    if not 0 < test_fraction < 1:
        raise InputError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if n < 2:
        raise InputError(f"split: {n} sample(s); at least 2 are needed")
    train, test = train_test_split(np.arange(n), test_size=test_fraction, random_state=int(seed))
    return np.sort(train).astype(np.int64), np.sort(test).astype(np.int64)


def _resolve_split(n, ok, seed, test_fraction, train_index, test_index):
    if (train_index is None) != (test_index is None):
        raise InputError("give both train_index and test_index, or neither")
    if train_index is None:
        train_index, test_index = split_indices(n, seed, test_fraction)
    train_index = np.asarray(train_index, dtype=np.int64)
    test_index = np.asarray(test_index, dtype=np.int64)
    for name, ix in (("train_index", train_index), ("test_index", test_index)):
        if ix.size and (ix.min() < 0 or ix.max() >= n):
            raise InputError(f"{name}: indices outside 0..{n - 1}")
    train_index = train_index[ok[train_index]]
    test_index = test_index[ok[test_index]]
    if train_index.size < 2 or test_index.size < 2:
        raise InputError(f"split: {train_index.size} train / {test_index.size} test usable "
                         "samples; at least 2 of each are needed")
    return train_index, test_index


def table_model(mean_grey, y, n_bins=10, binning="quantile", seed=0, test_fraction=0.2,
                train_index=None, test_index=None):
    """Fit the table model on a train split and score it on the test split.

    Parameters
    ----------
    mean_grey, y : array-like, shape (N,)
    n_bins, binning : see :func:`table_model_fit`.
    seed, test_fraction : seeded random split (:func:`split_indices`) used
        when no indices are given.
    train_index, test_index : array-like of int, optional
        An explicit split (e.g. the dataset's ``/splits/random``).

    Returns
    -------
    dict
        ``table`` (bins), ``metrics`` (on the test split), ``n_train``,
        ``n_test``, ``test_index``, ``y_pred`` (test predictions, aligned with
        ``test_index``).
    """
    g, yv, ok = _paired(mean_grey, y, "table model")
    tr, te = _resolve_split(g.size, ok, seed, test_fraction, train_index, test_index)
    table = table_model_fit(g[tr], yv[tr], n_bins=n_bins, binning=binning)
    pred = table_model_predict(table, g[te])
    return {"table": table, "metrics": metrics(yv[te], pred), "n_train": int(tr.size),
            "n_test": int(te.size), "test_index": te, "y_pred": pred}


def linear_model(mean_grey, y, seed=0, test_fraction=0.2, train_index=None, test_index=None):
    """Ordinary least squares ``y = a + b * grey`` fitted on a train split.

    Parameters
    ----------
    mean_grey, y : array-like, shape (N,)
    seed, test_fraction : seeded random split (default 80/20) when no indices
        are given.
    train_index, test_index : array-like of int, optional
        An explicit split.

    Returns
    -------
    dict
        ``intercept``, ``slope`` (unit of y per unit grey), ``metrics`` (on
        the test split), ``n_train``, ``n_test``, ``test_index``, ``y_pred``.
    """
    g, yv, ok = _paired(mean_grey, y, "linear model")
    tr, te = _resolve_split(g.size, ok, seed, test_fraction, train_index, test_index)
    reg = LinearRegression().fit(g[tr, None], yv[tr])
    pred = reg.predict(g[te, None])
    return {"intercept": float(reg.intercept_), "slope": float(reg.coef_[0]),
            "metrics": metrics(yv[te], pred), "n_train": int(tr.size), "n_test": int(te.size),
            "test_index": te, "y_pred": pred}


def crop_means(images):
    """Mean value of each crop, ignoring NaN pixels.

    Parameters
    ----------
    images : array-like, shape (N, S, S)
        Calibrated crops (float32).

    Returns
    -------
    numpy.ndarray, shape (N,), float64
        NaN for an all-NaN crop.
    """
    a = np.asarray(images, dtype=np.float64)
    if a.ndim != 3:
        raise InputError(f"crop_means: expected (N, S, S) crops, got shape {a.shape}")
    flat = a.reshape(a.shape[0], -1)
    n = np.isfinite(flat).sum(axis=1)
    s = np.where(np.isfinite(flat), flat, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)

