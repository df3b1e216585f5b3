"""The bright-fraction baseline of the composite study (``microprop.stats._bright_fraction``)."""
import numpy as np
import pytest
from microprop.errors import InputError
from microprop.stats._bright_fraction import (
    bright_fraction,
    fit_polynomial_glm,
    polynomial_glm_cv,
    predict_polynomial_glm,
)


def two_level(shape, fraction, rng, dark=80, bright=200, noise=8.0):
    """uint8 image with exactly round(fraction * size) bright pixels (at random places)."""
    n = int(np.prod(shape))
    k = round(fraction * n)
    level = np.full(n, dark, float)
    level[rng.permutation(n)[:k]] = bright
    img = level + noise * rng.standard_normal(n)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8).reshape(shape), k / n


def test_otsu_fraction_of_a_two_level_image(rng):
    img, f = two_level((128, 160), 0.37, rng)
    frac, thr = bright_fraction(img)
    assert frac == pytest.approx(f, abs=1e-4)          # the levels are 15 sd apart: no pixel misclassified
    assert 100 < thr < 180
    # a stack: one Otsu threshold per image, following a change of brightness and contrast
    img2, f2 = two_level((128, 160), 0.62, rng)
    brighter = np.clip(1.2 * img2.astype(float) + 25, 0, 255).astype(np.uint8)
    fr, th = bright_fraction(np.stack([img, brighter]))
    assert fr.shape == (2,) and th.shape == (2,)
    assert fr == pytest.approx([f, f2], abs=1e-4)
    assert th[1] > th[0]
    # a given threshold, scalar or per image; floats work too
    fr_fixed, th_fixed = bright_fraction(np.stack([img, img2]).astype(np.float32), threshold=140)
    assert fr_fixed == pytest.approx([f, f2], abs=1e-4)
    assert np.all(th_fixed == 140)


def cubic_data(rng, n_samples=60, per_sample=3, noise=0.05):
    f = rng.uniform(0.1, 0.7, n_samples)
    x = np.repeat(f, per_sample) + rng.normal(0, 0.005, n_samples * per_sample)
    truth = lambda v: -2 + 40 * (v - 0.4) ** 3 + 6 * (v - 0.4)
    y = np.repeat(truth(f), per_sample) + rng.normal(0, noise, n_samples * per_sample)
    sample = np.repeat(np.arange(n_samples), per_sample)
    fold = sample % 5
    return x, y, fold, truth


def test_a_known_cubic_is_recovered_and_chosen(rng):
    x, y, fold, truth = cubic_data(rng)
    cv = polynomial_glm_cv(x, y, fold)
    pd_ = cv["per_degree"].set_index("degree")
    assert cv["best_degree"] in (3, 4)
    assert pd_.loc[3, "mae_mean"] < 0.5 * pd_.loc[1, "mae_mean"]
    assert pd_.loc[3, "r2_mean"] > 0.99
    assert cv["oof_pred"].shape == x.shape
    assert set(cv["per_fold"]["fold"]) == set(range(5))
    # the full fit recovers the cubic's values
    model = fit_polynomial_glm(x, y, 3)
    grid = np.linspace(0.15, 0.65, 11)
    assert predict_polynomial_glm(model, grid) == pytest.approx(truth(grid), abs=0.05)


def test_the_cv_never_fits_on_the_held_out_fold(rng):
    x, y, fold, _ = cubic_data(rng)
    planted = y.copy()
    planted[fold == 2] += 50.0                              # an outlier fold
    cv = polynomial_glm_cv(x, planted, fold, degrees=(2,))
    # each fold's predictions are those of a manual fit on the other folds only
    for k in range(5):
        test = fold == k
        manual = predict_polynomial_glm(fit_polynomial_glm(x[~test], planted[~test], 2), x[test])
        assert cv["oof_pred"][test] == pytest.approx(manual, abs=1e-9)
    # the outlier fold is predicted from the clean folds: far below its planted values
    held = fold == 2
    assert np.all(planted[held] - cv["oof_pred"][held] > 45.0)
    row = cv["per_fold"].query("fold == 2").iloc[0]
    assert row["mae"] > 45.0 and row["n_train"] == int((~held).sum())


def test_bad_input_is_refused(rng):
    with pytest.raises(InputError, match="expected \\(H, W\\) or \\(N, H, W\\)"):
        bright_fraction(np.zeros(5))
    with pytest.raises(InputError, match="constant"):
        bright_fraction(np.full((4, 4), 7, np.uint8))
    with pytest.raises(InputError, match="non-finite"):
        bright_fraction(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(InputError, match="threshold has shape"):
        bright_fraction(np.zeros((3, 4, 4)), threshold=[1.0, 2.0])
    with pytest.raises(InputError, match="dtype"):
        bright_fraction(np.zeros((4, 4), bool))
    x, y, fold, _ = cubic_data(rng)
    with pytest.raises(InputError, match="equal length"):
        polynomial_glm_cv(x, y[:-1], fold)
    with pytest.raises(InputError, match="non-finite"):
        polynomial_glm_cv(np.where(np.arange(x.size) == 3, np.nan, x), y, fold)
    with pytest.raises(InputError, match="at least 2"):
        polynomial_glm_cv(x, y, np.zeros_like(fold))
    with pytest.raises(InputError, match="integer fold"):
        polynomial_glm_cv(x, y, fold.astype(float))
    with pytest.raises(InputError, match="degrees"):
        polynomial_glm_cv(x, y, fold, degrees=(0,))
    with pytest.raises(InputError, match="need at least"):
        fit_polynomial_glm(x[:4], y[:4], 4)
    with pytest.raises(InputError, match="lacks"):
        predict_polynomial_glm({"degree": 2}, x)
