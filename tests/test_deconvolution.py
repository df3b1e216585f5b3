"""The fast multi-start mixture fit: the same optimum as the former 20 scikit-learn EM runs.

Known answers: the former fit (``_mixture._sklearn_restarts``: 10 k-means
and 10 random-data starts of scikit-learn's EM to tolerance 1e-6) and its
components run on by EM to its fixed point; the generator's truth; and
scikit-learn's defaults, which stop in a wrong optimum at these sizes.
No timing is asserted. The comparisons with the former fit that take
longer than ~20 s (its 20 scikit-learn runs) are marked slow.
"""
import numpy as np
import pandas as pd
import pytest
from microprop import stats
from microprop.errors import InputError
from microprop.phases import DEFAULT_FRACTIONS, PHASE_PROPERTIES, SOLID_PHASES
from microprop.stats import _em, _mixture
from sklearn.mixture import GaussianMixture

PHASES = list(SOLID_PHASES)


def demo_like_pairs(n, seed=0):
    """(E, H) GPa of the four solid cement phases with the demo's fractions and spreads.

    The distributions of ``phases.PHASE_PROPERTIES`` widened by the forward
    model's 5 % measurement noise: LD-C-S-H, HD-C-S-H and CH overlap in E as
    the demo's do (``benchmarks/bench_deconvolution.py`` draws the same).
    """
    rng = np.random.default_rng(seed)
    fr = np.array([DEFAULT_FRACTIONS[p] for p in PHASES])
    fr /= fr.sum()
    pp = PHASE_PROPERTIES.loc[PHASES]
    lab = rng.choice(4, size=n, p=fr)
    out = []
    for q in ("E", "H"):
        mean = pp[f"{q}_mean_GPa"].to_numpy()
        sd = np.hypot(pp[f"{q}_std_GPa"].to_numpy(), 0.05 * mean)
        v = rng.normal(mean[lab], sd[lab])
        low = v < 0.05 * mean[lab]
        while low.any():
            v[low] = rng.normal(mean[lab[low]], sd[lab[low]])
            low = v < 0.05 * mean[lab]
        out.append(v)
    return out[0], out[1], np.bincount(lab, minlength=4) / n


def sorted_params(g):
    o = np.argsort(g.means_[:, 0])
    return g.weights_[o], g.means_[o], g.covariances_[o]


def run_on(g, X, tol=1e-12):
    """scikit-learn's EM warm started from ``g``, to ``tol``: the optimum ``g`` was heading for."""
    w, mu, cov = sorted_params(g)
    return GaussianMixture(len(w), covariance_type="full", weights_init=w / w.sum(), means_init=mu,
                           precisions_init=np.linalg.inv(cov), tol=tol, max_iter=100000).fit(X)


@pytest.fixture(scope="module")
def small_sets():
    return {n: demo_like_pairs(n, seed=0) for n in (1000, 3000)}


@pytest.mark.parametrize("n, which", [
    (1000, "E"),
    pytest.param(1000, "joint", marks=pytest.mark.slow),   # the former fit: 20 runs, ~30-150 s
    pytest.param(3000, "E", marks=pytest.mark.slow),
])
def test_fit_gmm_reaches_the_former_fits_optimum(small_sets, n, which):
    """At N <= 3000, where scikit-learn's defaults fail: a likelihood at least the former
    fit's, and the components of its optimum (the former fit run on to EM's fixed point)
    within 1e-3 in fraction and 0.1 % in mean."""
    E, H, _ = small_sets[n]
    X = E[:, None] if which == "E" else np.c_[E, H]
    new = stats.fit_gmm(X, 4, seed=0, n_init=10, cache=False)
    old = _mixture._sklearn_restarts(X, 4, seed=0, n_init=10)
    assert new.score(X) >= old.score(X) - 1e-9
    ref = run_on(old, X)
    assert new.score(X) == pytest.approx(ref.score(X), abs=1e-7)
    w, mu, _ = sorted_params(new)
    w0, mu0, _ = sorted_params(ref)
    np.testing.assert_allclose(w, w0, atol=1e-3)
    np.testing.assert_allclose(mu, mu0, rtol=1e-3)


def test_scikit_learns_defaults_fail_where_fit_gmm_does_not(small_sets):
    """3000 demo-like pairs: one k-means start to tolerance 1e-3 merges LD/HD-C-S-H
    (fractions off by > 0.1); the multi-start fit recovers the truth within 0.04."""
    E, H, truth = small_sets[3000]
    X = np.c_[E, H]
    default = GaussianMixture(4, covariance_type="full", random_state=0).fit(X)
    assert np.abs(sorted_params(default)[0] - truth).max() > 0.1
    table = stats.deconvolve_joint(E, H, n_components=4, seed=0)
    assert list(table.phase) == PHASES
    np.testing.assert_allclose(table.fraction, truth, atol=0.04)


def test_fit_gmm_is_a_fixed_point_of_scikit_learns_em():
    """5000 points of E alone, the flattest ridge (LD, HD, CH overlap): scikit-learn's EM
    started from the result gains < 1e-9 per point and moves no fraction by 1e-4; the
    model's own score is the log-likelihood the batched EM computed."""
    E, _, _ = demo_like_pairs(5000, seed=1)
    X = E[:, None]
    g = stats.fit_gmm(X, 4, seed=0, cache=False)
    assert g.score(X) == pytest.approx(g.multi_start_["ll"], abs=1e-10)
    ref = run_on(g, X)
    assert ref.score(X) - g.score(X) < 1e-9
    np.testing.assert_allclose(sorted_params(g)[0], sorted_params(ref)[0], atol=1e-4)


def test_joint_deconvolution_of_26000_indents_recovers_the_truth():
    """The benchmark's size: fractions within 0.01 and E means within 2 % of the generator's."""
    E, H, truth = demo_like_pairs(26000, seed=0)
    table = stats.deconvolve_joint(E, H, n_components=4, seed=0)
    assert list(table.phase) == PHASES
    np.testing.assert_allclose(table.fraction, truth, atol=0.01)
    np.testing.assert_allclose(table.E_mean, PHASE_PROPERTIES.loc[PHASES, "E_mean_GPa"], rtol=0.02)
    # E alone: binned exploration, scoring steps on all points; the optimum is a fixed point
    t = stats.deconvolve(E, n_components=4, seed=0)
    ref = run_on(stats.fit_gmm(E[:, None], 4, seed=0), E[:, None], tol=1e-10)
    np.testing.assert_allclose(t.fraction, sorted_params(ref)[0], atol=1e-3)


@pytest.mark.slow
def test_bic_table_is_at_least_as_good_as_the_former_fits():
    """1000 (E, H) pairs, k = 1..5: every BIC at most the former fit's (+0.5), the same minimum."""
    E, H, _ = demo_like_pairs(1000, seed=0)
    X = np.c_[E, H]
    new = stats.bic_table(X, k_range=range(1, 6), seed=0)
    old = []
    for k in range(1, 6):
        old.append(_mixture._sklearn_restarts(X, k, seed=0, n_init=5).bic(X))
    assert np.all(new["bic"].to_numpy() <= np.array(old) + 0.5), (new["bic"].tolist(), old)
    assert int(new.loc[new["best"], "k"].iloc[0]) == int(np.argmin(old)) + 1
    # BIC - AIC = p (ln N - 2), p = 6k - 1: scikit-learn's definitions
    p = 6 * new["k"] - 1
    np.testing.assert_allclose(new["bic"] - new["aic"], p * (np.log(1000) - 2), rtol=1e-9)


def test_fit_gmm_cache_returns_copies_and_rejects_bad_arguments():
    E, H, _ = demo_like_pairs(600, seed=2)
    X = np.c_[E, H]
    a = stats.fit_gmm(X, 3, seed=0)
    a.weights_[:] = 0.0                        # a caller's change does not reach the cache
    b = stats.fit_gmm(X, 3, seed=0)
    assert b.weights_.sum() == pytest.approx(1.0)
    with pytest.raises(InputError, match="polish"):
        stats.fit_gmm(X, 3, polish="lbfgs")
    with pytest.raises(InputError, match="n_components"):
        stats.fit_gmm(X, 0)


# --- the batched EM itself ---

def test_batched_em_never_loses_likelihood_and_starts_agree():
    """SQUAREM cycles of many starts: each start's log-likelihood never decreases; 20
    starts of a well-separated mixture end at one optimum, the others dropped as duplicates."""
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(0, 1, 700), rng.normal(6, 1, 300)][:, None]
    data = _em.Standardised(x)
    w, mu, cov = _em.random_data_starts(data, 2, 20, rng, data.scale ** 2)
    theta = _em._flat(w, mu, cov)
    prev = np.full(20, -np.inf)
    for _ in range(10):
        ll, theta, ok = _em._squarem_cycle(data, theta, 2, 1)
        assert ok.all() and np.all(ll >= prev - 1e-12)
        prev = ll
    w, mu, cov, ll, info = _em.run_starts(data, *_em.random_data_starts(data, 2, 20, rng,
                                                                         data.scale ** 2))
    assert info["dropped"]["duplicate"] + info["dropped"]["cannot_win"] >= 15
    wd, mud, _ = data.to_data_units(w[:1], mu[:1], cov[:1])
    o = np.argsort(mud[0, :, 0])
    np.testing.assert_allclose(wd[0][o], [0.7, 0.3], atol=0.03)
    np.testing.assert_allclose(mud[0][o, 0], [0, 6], atol=0.15)


def test_chunked_e_step_does_not_depend_on_the_threads(monkeypatch):
    """A large E-step runs in 4 chunks on 1 or 2 threads: bitwise the same sums."""
    E, H, _ = demo_like_pairs(30000, seed=3)
    data = _em.Standardised(np.c_[E, H])
    rng = np.random.default_rng(1)
    w, mu, cov = _em.random_data_starts(data, 4, 3, rng, data.scale ** 2)
    out = []
    for threads in ("1", "2"):
        monkeypatch.setenv("OMP_NUM_THREADS", threads)
        out.append(_em.em_step(data, w, mu, cov))
    for a, b in zip(*out):
        assert np.array_equal(a, b)
    monkeypatch.setattr(_em, "PARALLEL_MIN_SIZE", 10 ** 12)   # one piece: the same to rounding
    one = _em.em_step(data, w, mu, cov)
    for a, b in zip(out[0], one):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_split_starts_and_binned_data():
    w = np.array([0.6, 0.4])
    mu = np.array([[0.0, 0.0], [5.0, 1.0]])
    cov = np.array([[[4.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])
    sw, smu, scov = _em.split_starts(w, mu, cov)
    assert sw.shape == (2, 3) and smu.shape == (2, 3, 2) and scov.shape == (2, 3, 2, 2)
    np.testing.assert_allclose(sw.sum(axis=1), 1.0)
    # component 0 split along its long (first) axis, +-2 from its mean
    np.testing.assert_allclose(smu[0, 1:], [[-2.0, 0.0], [2.0, 0.0]])
    assert np.all(np.linalg.eigvalsh(scov) > 0)
    x = np.random.default_rng(0).normal(size=(10000, 1))
    full = _em.Standardised(x)
    b = full.binned(256)
    assert b.N <= 256 and b.weight.mean() == pytest.approx(1.0)
    assert b.weight.sum() * 10000 / b.N == pytest.approx(10000)
    with pytest.raises(ValueError):
        _em.Standardised(np.c_[x, x]).binned(10)


# --- stability against the number of indents ---

def test_deconvolution_stability_table_and_stable_size():
    """Subsamples of 200 and 1000 of 2000 pairs: tidy rows per size, phase and statistic;
    ``full`` is the deconvolution of all pairs; the intervals narrow with N; no subsample
    repeats an indent (a repeated one draws spurious spikes)."""
    E, H, truth = demo_like_pairs(2000, seed=4)
    s, reps = stats.deconvolution_stability(np.c_[E, H], sizes=[200, 1000, 5000], n_boot=6, seed=0,
                                            n_init=3, return_replicates=True)
    assert list(s.columns) == ["size", "phase", "statistic", "unit", "full", "median", "low",
                               "high", "n_fits"]
    assert sorted(s["size"].unique()) == [200, 1000]                # 5000 > N: left out
    assert set(s["statistic"]) == {"fraction", "E_mean", "E_std", "H_mean", "H_std"}
    assert list(s.loc[s["size"] == 1000, "phase"].unique()) == PHASES
    assert reps.query("statistic == 'fraction'")["value"].min() > 0.05   # no spike components
    assert (s["low"] <= s["median"]).all() and (s["median"] <= s["high"]).all()
    assert set(s.loc[s.statistic == "fraction", "unit"]) == {"-"}
    full = stats.deconvolve_joint(E, H, n_components=4, seed=0, n_init=3)
    got = s[(s["size"] == 1000) & (s["statistic"] == "fraction")].set_index("phase")["full"]
    np.testing.assert_allclose(got[PHASES], full.set_index("phase").loc[PHASES, "fraction"],
                               atol=1e-9)
    fr = s[s.statistic == "fraction"].assign(width=lambda t: t.high - t.low)
    wide = fr.groupby("size")["width"].max()
    assert wide[1000] < wide[200]
    assert s.attrs["n"] == 2000 and s.attrs["n_boot"] == 6 and s.attrs["method"] == "joint E-H"
    # 1D values and too-small sizes
    s1 = stats.deconvolution_stability(E, sizes=[5, 500], n_boot=3, seed=0, n_init=2)
    assert sorted(s1["size"].unique()) == [500]
    assert set(s1["statistic"]) == {"fraction", "E_mean", "E_std"}
    with pytest.raises(InputError):
        stats.deconvolution_stability(E, n_boot=1)
    assert stats.default_sizes(26000) == [100, 200, 500, 1000, 2000, 5000, 10000, 13000]
    assert stats.default_sizes(800) == [100, 200, 400] and stats.default_sizes(150) == [75]


def test_stable_size_reads_the_table():
    rows = []
    for size, half in ((100, 0.2), (200, 0.04), (500, 0.06), (1000, 0.03), (2000, 0.01)):
        for ph in ("a", "b"):
            rows.append({"size": size, "phase": ph, "statistic": "fraction", "full": 0.5,
                         "median": 0.5, "low": 0.5 - half, "high": 0.5 + half})
    t = pd.DataFrame(rows)
    assert stats.stable_size(t, "fraction", 0.05) == 1000     # 200 is inside, 500 is not
    assert stats.stable_size(t, "fraction", 0.005) is None
    assert stats.stable_size(t, "fraction", 0.5) == 100
    with pytest.raises(InputError):
        stats.stable_size(t, "E_mean")


def test_deconvolution_stability_script(tmp_path):
    from pathlib import Path

    from script_runner import run_script

    E, H, _ = demo_like_pairs(900, seed=5)
    df = pd.DataFrame({"batch": "b1", "indent": np.arange(1, 901), "x_um": 0.0, "y_um": 0.0,
                       "E_GPa": E, "H_GPa": H})
    f = tmp_path / "results" / "S" / "A1" / "located" / "b1.csv"
    f.parent.mkdir(parents=True)
    df.to_csv(f, index=False)
    out = {"table": str(tmp_path / "stab.csv"), "fig": str(tmp_path / "stab.png")}
    job = {"input": {"located": [str(f)]}, "output": out,
           "params": {"n_components": None, "method": "joint", "seed": 0, "n_boot": 4,
                      "sizes": [100, 400], "n_init": 2},
           "log": [str(tmp_path / "log.txt")]}
    run_script("deconvolution_stability", job, tmp_path)
    t = pd.read_csv(out["table"])
    assert sorted(t["size"].unique()) == [100, 400]
    assert set(t["phase"]) == set(PHASES)
    assert Path(out["fig"]).stat().st_size > 20_000
    assert "fraction within +-0.05" in Path(job["log"][0]).read_text()
