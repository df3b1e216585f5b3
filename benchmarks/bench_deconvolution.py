"""Time and agreement of the mixture deconvolution with its BIC table, printed.

Run from the repository root::

    .venv/bin/python benchmarks/bench_deconvolution.py [--n 26000] [--seed 0] [--before-json FILE]
    .venv/bin/python benchmarks/bench_deconvolution.py --n 1000 3000 5000   # small N
    .venv/bin/python benchmarks/bench_deconvolution.py --located results/demo/A1/located/b0*.csv
    .venv/bin/python benchmarks/bench_deconvolution.py --skip-before --stability DIR

On a generated set of ``--n`` (E, H) pairs (fixed ``--seed``) of the four
solid cement phases with the demo's fractions (``phases.DEFAULT_FRACTIONS``
without pores) and the demo's literature distributions
(``phases.PHASE_PROPERTIES``, widened by the forward model's 5 % measurement
noise, truncated at 5 % of the mean like it): LD-C-S-H, HD-C-S-H and CH
overlap in E as the demo's do. The work the rule ``deconvolve`` does on the
pooled indents is timed:

* the 1D mixtures of E and of H (:func:`microprop.stats.deconvolve`, k = 4),
* the joint (E, H) mixture (:func:`microprop.stats.deconvolve_joint`, k = 4),
* the BIC table of the joint model for k = 1..8 (:func:`microprop.stats.bic_table`,
  the rule's ``k_max`` and its ``n_init``),

once with the library as it is ("after") and once with the former fit, 20
scikit-learn EM runs to tolerance 1e-6 per mixture (10 k-means and 10 random
starts; 5 + 5 per k of the BIC table), kept here as :func:`legacy_fit_gmm`
("before"). Printed: the seconds of each, the largest difference of a
component's fraction (absolute) and mean (relative) between the two, the
largest difference of the log-likelihood per indent and of the BIC, and the
largest errors of the fractions against the generator's truth; for context
also scikit-learn's defaults (one k-means start, tolerance 1e-3).

Printed beside: the former fit's components run on by scikit-learn's EM to
tolerance 1e-13 ("before, converged"): EM to 1e-6 stops short of the
optimum on the flat ridge of overlapping phases (by up to 0.03 in
fraction), so this is the optimum the former fit was heading for.
``--located`` uses the (E, H) of located-indent tables (e.g. the demo's)
instead of the generated set; ``--stability DIR`` also writes the table and
figure of :func:`microprop.stats.deconvolution_stability` of the joint
mixture and prints the half-widths of the fractions' 95 % intervals by size
and the sizes from which they stay within 0.05, 0.02, 0.01.

The "before" run takes minutes at 26,000 indents; ``--before-json`` keeps its
results (and its time) in a file and reuses them when the file exists. No
timing limit is asserted anywhere. On a shared machine the times are
contended: compare them within one run (CPU seconds are printed too).
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import numpy as np  # noqa: E402
from microprop import stats  # noqa: E402
from microprop.phases import DEFAULT_FRACTIONS, PHASE_PROPERTIES, SOLID_PHASES  # noqa: E402
from microprop.stats import _mixture  # noqa: E402
legacy_fit_gmm = _mixture._sklearn_restarts  # the former fit_gmm: 2 x n_init scikit-learn EM runs to 1e-6
from sklearn.mixture import GaussianMixture  # noqa: E402

NOISE_REL = 0.05     # the forward model's measurement noise (config virtual.noise_rel)
TRUNCATE = 0.05      # the forward model truncates each phase's draws at 5 % of its mean


def generated_pairs(n, seed=0):
    """Fixed-seed (E, H) pairs of the four solid cement phases, GPa.

    Parameters
    ----------
    n : int
        Number of indents.
    seed : int

    Returns
    -------
    E, H : numpy.ndarray, shape (n,)
        GPa.
    labels : numpy.ndarray of int, shape (n,)
        Phase index into :data:`microprop.phases.SOLID_PHASES`.
    truth : dict
        ``fraction`` (the drawn label fractions), ``E_mean``, ``H_mean``,
        ``E_std``, ``H_std`` (the generator's), each a list in phase order.
    """
    rng = np.random.default_rng(seed)
    fr = np.array([DEFAULT_FRACTIONS[p] for p in SOLID_PHASES])
    fr = fr / fr.sum()
    pp = PHASE_PROPERTIES.loc[list(SOLID_PHASES)]
    labels = rng.choice(len(fr), size=n, p=fr)
    out = {}
    for q in ("E", "H"):
        mean = pp[f"{q}_mean_GPa"].to_numpy()
        sd = np.hypot(pp[f"{q}_std_GPa"].to_numpy(), NOISE_REL * mean)
        v = rng.normal(mean[labels], sd[labels])
        low = v < TRUNCATE * mean[labels]
        while low.any():                      # redraw below the truncation
            v[low] = rng.normal(mean[labels[low]], sd[labels[low]])
            low = v < TRUNCATE * mean[labels]
        out[q] = v
        out[f"{q}_mean"], out[f"{q}_std"] = mean.tolist(), sd.tolist()
    truth = {"fraction": (np.bincount(labels, minlength=len(fr)) / n).tolist(),
             **{k: out[k] for k in ("E_mean", "H_mean", "E_std", "H_std")}}
    return out["E"], out["H"], labels, truth


def rule_work(E, H, k=4, k_max=8, seed=0, n_init=10):
    """The pooled deconvolution of rule ``deconvolve``: tables of E, H, (E, H) and the BIC table."""
    t_e = stats.deconvolve(E, n_components=k, seed=seed, n_init=n_init, quantity="E_GPa")
    t_h = stats.deconvolve(H, n_components=k, seed=seed, n_init=n_init, quantity="H_GPa")
    t_j = stats.deconvolve_joint(E, H, n_components=k, seed=seed, n_init=n_init)
    bic = stats.bic_table(np.c_[E, H], k_range=range(1, k_max + 1), seed=seed)
    return {
        "E": {c: t_e[c].tolist() for c in ("phase", "fraction", "mean", "std")}
        | {"ll": t_e.attrs["log_likelihood"]},
        "H": {c: t_h[c].tolist() for c in ("phase", "fraction", "mean", "std")}
        | {"ll": t_h.attrs["log_likelihood"]},
        "joint": {c: t_j[c].tolist() for c in ("phase", "fraction", "E_mean", "H_mean",
                                                 "E_std", "H_std", "corr_EH")}
        | {"ll": t_j.attrs["log_likelihood"]},
        "bic": {"k": bic["k"].tolist(), "bic": bic["bic"].tolist()},
    }


def timed(fn, *args, **kw):
    """(wall seconds, CPU seconds of the process, result) of ``fn(*args, **kw)``, fit cache cleared."""
    _mixture._FIT_CACHE.clear()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kw)
    return time.perf_counter() - t0, time.process_time() - c0, out


def legacy_joint(E, H, k=4, seed=0, n_init=10):
    """The joint table of the former fit (deterministic: what "before" computed), for ``corr_EH``."""
    new = _mixture.fit_gmm
    _mixture.fit_gmm = legacy_fit_gmm
    try:
        t = stats.deconvolve_joint(E, H, n_components=k, seed=seed, n_init=n_init)
    finally:
        _mixture.fit_gmm = new
    return t["corr_EH"].tolist()


def converged(res, E, H):
    """The former fit's components run on to EM's fixed point (scikit-learn, tolerance 1e-13).

    The former fit stops when an EM iteration gains less than 1e-6 in
    log-likelihood per indent; on the flat ridge of overlapping components
    that is far from the optimum. Started from its components, EM to 1e-13
    gives the optimum it was heading for.
    """
    out = {}
    for key, X in (("E", E[:, None]), ("H", H[:, None]), ("joint", np.c_[E, H])):
        r = res[key]
        w = np.asarray(r["fraction"])
        if key == "joint":
            mu = np.c_[r["E_mean"], r["H_mean"]]
            sE, sH, c = (np.asarray(r[n]) for n in ("E_std", "H_std", "corr_EH"))
            cov = np.array([[[a * a, q * a * b], [q * a * b, b * b]] for a, b, q in zip(sE, sH, c)])
        else:
            mu = np.asarray(r["mean"])[:, None]
            cov = (np.asarray(r["std"]) ** 2)[:, None, None]
        g = GaussianMixture(len(w), covariance_type="full", weights_init=w / w.sum(), means_init=mu,
                            precisions_init=np.linalg.inv(cov), tol=1e-13, max_iter=100000).fit(X)
        o = np.argsort(g.means_[:, 0])
        sd = np.sqrt(np.diagonal(g.covariances_[o], axis1=1, axis2=2))
        if key == "joint":
            out[key] = {"fraction": g.weights_[o].tolist(), "E_mean": g.means_[o, 0].tolist(),
                        "H_mean": g.means_[o, 1].tolist(), "E_std": sd[:, 0].tolist(),
                        "H_std": sd[:, 1].tolist(), "phase": r["phase"]}
        else:
            out[key] = {"fraction": g.weights_[o].tolist(), "mean": g.means_[o, 0].tolist(),
                        "std": sd[:, 0].tolist(), "phase": r["phase"]}
        out[key]["ll"] = float(g.score(X) * len(X))
        out[key]["n_iter"] = int(g.n_iter_)
    return out


def run_before(E, H):
    """The rule's work with :func:`legacy_fit_gmm` in place of the library's fit: (wall, CPU, result)."""
    new = _mixture.fit_gmm
    _mixture.fit_gmm = legacy_fit_gmm
    try:
        return timed(rule_work, E, H)
    finally:
        _mixture.fit_gmm = new


def compare(a, b, n):
    """Largest differences of b against a: fraction (abs), mean (rel), ll per indent, BIC."""
    rows = {}
    for key, means in (("E", ["mean"]), ("H", ["mean"]), ("joint", ["E_mean", "H_mean"])):
        df = np.max(np.abs(np.subtract(a[key]["fraction"], b[key]["fraction"])))
        dm = max(np.max(np.abs(np.subtract(a[key][m], b[key][m]) / np.abs(a[key][m]))) for m in means)
        rows[key] = {"fraction_abs": float(df), "mean_rel": float(dm),
                     "ll_per_indent": (b[key]["ll"] - a[key]["ll"]) / n,
                     "same_names": a[key]["phase"] == b[key]["phase"]}
    if "bic" not in a or "bic" not in b:
        return rows
    db = np.subtract(b["bic"]["bic"], a["bic"]["bic"])
    rows["bic"] = {"max_abs": float(np.max(np.abs(db))), "per_k": db.tolist(),
                   "argmin_same": int(np.argmin(a["bic"]["bic"])) == int(np.argmin(b["bic"]["bic"]))}
    return rows


def truth_errors(res, truth):
    out = {}
    for key in ("E", "H", "joint"):
        out[key] = float(np.max(np.abs(np.subtract(res[key]["fraction"], truth["fraction"]))))
    return out


def sklearn_defaults(E, H, seed=0):
    """scikit-learn's defaults on the joint pairs: (seconds, largest fraction error vs a table)."""
    X = np.c_[E, H]
    t, _, g = timed(lambda: GaussianMixture(4, covariance_type="full", random_state=seed).fit(X))
    order = np.argsort(g.means_[:, 0])
    return t, g.weights_[order].tolist()


def stability(E, H, folder, n_boot, name):
    """The stability table of the joint mixture, its figure, and the sizes that pin fractions to 0.05."""
    import matplotlib

    matplotlib.use("Agg")
    from microprop import plots

    folder.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    s = stats.deconvolution_stability(np.c_[E, H], n_boot=n_boot, seed=0)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    s.to_csv(folder / f"stability_{name}.csv", index=False)
    plots.save_png(plots.stability_plot(s), folder / f"stability_{name}.png")
    fr = s[s["statistic"] == "fraction"].assign(half_width=lambda t: (t["high"] - t["low"]) / 2)
    print(f"stability ({n_boot} subsamples per size, {wall:.0f} s wall, {cpu:.0f} s CPU): "
          f"95 % half-width of each phase's fraction by size")
    print(fr.pivot(index="size", columns="phase", values="half_width")[
        list(dict.fromkeys(fr["phase"]))].round(3).to_string())
    for tol in (0.05, 0.02, 0.01):
        print(f"  every fraction within +-{tol} of all indents' from n = "
              f"{stats.stable_size(s, 'fraction', tol)}")
    for st in ("E_mean", "H_mean"):
        print(f"  every {st} within +-5 % from n = {stats.stable_size(s, st, 0.05, relative=True)}")


def _print_compare(label, c):
    for key in ("E", "H", "joint"):
        r = c[key]
        print(f"  {label} {key:5s}: |d fraction| <= {r['fraction_abs']:.1e}, |d mean|/mean <= "
              f"{100 * r['mean_rel']:.4f} %, after - before lnL/N = {r['ll_per_indent']:+.1e}, "
              f"same phase names: {r['same_names']}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[26000], help="numbers of indents")
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated set")
    ap.add_argument("--before-json", type=Path, default=None,
                    help="keep/reuse the 'before' results here (one entry per N and seed)")
    ap.add_argument("--skip-before", action="store_true", help="time the library only")
    ap.add_argument("--before-only", action="store_true",
                    help="only run (and keep, with --before-json) the 'before' fit")
    ap.add_argument("--located", type=Path, nargs="+", default=None,
                    help="located-indent CSVs (E_GPa, H_GPa) to use instead of the generated set, "
                         "e.g. the demo's results/demo/A1/located/b0*.csv")
    ap.add_argument("--stability", type=Path, default=None, metavar="DIR",
                    help="also write the stability table and figure of the joint deconvolution "
                         "against the number of indents (microprop.stats.deconvolution_stability) "
                         "into DIR, and print its headline")
    ap.add_argument("--stability-boot", type=int, default=30, help="subsamples per size")
    a = ap.parse_args(argv)
    cache = {}
    if a.before_json and a.before_json.exists():
        cache = json.loads(a.before_json.read_text())

    def save():
        if a.before_json:
            a.before_json.write_text(json.dumps(cache, indent=1))

    sets = []
    if a.located:
        import pandas as pd

        df = pd.concat([pd.read_csv(f) for f in a.located])
        sets.append(("located:" + ",".join(sorted(f.name for f in a.located)),
                     df["E_GPa"].to_numpy(float), df["H_GPa"].to_numpy(float), None))
    else:
        for n in a.n:
            E, H, _, truth = generated_pairs(n, a.seed)
            sets.append((f"{n}/{a.seed}", E, H, truth))
    for key, E, H, truth in sets:
        n = len(E)
        if truth is None:
            truth = {"fraction": [np.nan] * 4}
            print(f"\n=== {n} (E, H) pairs of {', '.join(map(str, a.located))}")
        else:
            print(f"\n=== {n} generated (E, H) pairs, seed {a.seed}; true fractions "
                  + ", ".join(f"{p} {f:.3f}" for p, f in zip(SOLID_PHASES, truth["fraction"])))
        if not a.skip_before and key not in cache:
            t_b, c_b, before = run_before(E, H)
            cache[key] = {"seconds": t_b, "cpu_seconds": c_b, "result": before}
            save()
            print(f"before: {t_b:7.2f} s wall, {c_b:7.2f} s CPU")
        if a.stability:
            stability(E, H, a.stability, a.stability_boot, key.replace("/", "_").replace(":", "_"))
        if a.before_only:
            continue
        runs = [timed(rule_work, E, H) for _ in range(2)]
        t_a, c_a, after = min(runs, key=lambda r: r[0])
        print(f"after : {t_a:7.2f} s wall, {c_a:6.2f} s CPU (best of 2; E, H, joint at k = 4 and "
              f"the joint BIC table k = 1..8); largest fraction error vs truth: "
              + ", ".join(f"{k} {v:.4f}" for k, v in truth_errors(after, truth).items()))
        t_sk, w_sk = sklearn_defaults(E, H)
        print(f"sklearn defaults (joint, 1 k-means start, tol 1e-3): {t_sk:.2f} s, fractions "
              + ", ".join(f"{w:.3f}" for w in w_sk)
              + f"; largest error vs truth {np.max(np.abs(np.subtract(w_sk, truth['fraction']))):.3f}")
        if a.skip_before:
            continue
        entry = cache[key]
        before = entry["result"]
        if "corr_EH" not in before["joint"]:        # kept by an earlier version of this script
            before["joint"]["corr_EH"] = legacy_joint(E, H)
            save()
        t_b = entry["seconds"]
        c_b = entry.get("cpu_seconds")
        print(f"before: {t_b:7.2f} s wall" + (f", {c_b:.2f} s CPU" if c_b else "")
              + (f" (kept in {a.before_json})" if a.before_json else "")
              + f"; speed-up x{t_b / t_a:.0f}; largest fraction error vs truth: "
              + ", ".join(f"{k} {v:.4f}" for k, v in truth_errors(before, truth).items()))
        c = compare(before, after, n)
        _print_compare("after vs before            ", c)
        print("  BIC after - before per k: " + ", ".join(f"{v:+.3g}" for v in c["bic"]["per_k"])
              + f"; same minimum: {c['bic']['argmin_same']}")
        if "converged" not in entry:
            entry["converged"] = converged(before, E, H)
            save()
        conv = entry["converged"]
        _print_compare("after vs before, converged ", compare(conv, after, n))
        print("  (before, converged: the former fit's components run on by EM to 1e-13: "
              + ", ".join(f"{k} {conv[k]['n_iter']} iterations" for k in ("E", "H", "joint")) + ")")


if __name__ == "__main__":
    main()
