"""Two-point correlation of grey-level maps, S2(r, delta n), against brute force and known limits."""
import numpy as np
import pytest
from microprop.errors import InputError
from microprop.microstructure._correlation import (
    correlation_lengths,
    level_correlation,
    quantize_levels,
    radial_s2,
)


def _brute_force(lev, L, R):
    """S2[dy, dx, delta] by counting every pair of the map (no FFT)."""
    h, w = lev.shape
    out = np.zeros((2 * R + 1, 2 * R + 1, 2 * L - 1))
    for dy in range(-R, R + 1):
        for dx in range(-R, R + 1):
            a = lev[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
            b = lev[max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)]
            d = (b - a).ravel() + L - 1
            out[dy + R, dx + R] = np.bincount(d, minlength=2 * L - 1) / d.size
    return out


def test_fft_correlation_equals_counting_every_pair(rng):
    lev = rng.integers(1, 6, size=(13, 11))            # levels 1..5 of 7 (0 and 6 empty)
    fast = level_correlation(lev, 7, max_r_px=4)
    np.testing.assert_allclose(fast, _brute_force(lev, 7, 4), atol=1e-9)
    np.testing.assert_allclose(fast.sum(axis=-1), 1.0, atol=1e-12)          # a distribution per displacement
    centre = fast[4, 4]
    assert centre[6] == pytest.approx(1.0) and centre.sum() == pytest.approx(1.0)   # d = 0: same level
    # the pair (x, x + d) seen from the other end: S2(-d, -delta) = S2(d, delta)
    np.testing.assert_allclose(fast[::-1, ::-1, ::-1], fast, atol=1e-9)


def test_white_noise_decorrelates_at_one_pixel_and_fields_at_their_scale(rng):
    from scipy import ndimage

    noise = quantize_levels(rng.random((128, 128)), 16)
    r, delta, s2, frac = radial_s2(noise, 16, max_r_px=20)
    lengths = correlation_lengths(r, s2, frac)
    # uncorrelated pixels: p0(r > 0) is sum f_l^2 (= 1/16 for uniform levels)
    assert lengths["p0_inf"] == pytest.approx(1 / 16, rel=0.05)
    np.testing.assert_allclose(lengths["p0"][1:], lengths["p0_inf"], rtol=0.1)
    assert lengths["correlation_length"] < 1.0
    # a Gaussian field blurred at sigma: decay length grows in proportion (Gaussian correlation)
    out = []
    for sigma in (4.0, 8.0):
        g = ndimage.gaussian_filter(rng.standard_normal((256, 256)), sigma, mode="wrap")
        lev = quantize_levels(0.5 + 0.15 * g / g.std(), 8)
        r, _, s2, frac = radial_s2(lev, 8, max_r_px=60)
        out.append(correlation_lengths(r, s2, frac)["correlation_length"])
    assert out[1] / out[0] == pytest.approx(2.0, rel=0.15)


def test_characteristic_length_of_a_periodic_pattern():
    # stripes of period 12 px along x and 12 px along y (a checkerboard of two levels): two points
    # are least likely at the same level at half the period
    yy, xx = np.mgrid[:96, :96]
    lev = (((xx // 6) + (yy // 6)) % 2).astype(int)
    r, _, s2, frac = radial_s2(lev, 2, max_r_px=10)
    assert 5.0 <= correlation_lengths(r, s2, frac)["characteristic_length"] <= 7.0


def test_bad_input_is_refused():
    with pytest.raises(InputError, match="outside"):
        level_correlation(np.array([[0, 3]]), 3)
    with pytest.raises(InputError, match="max_r_px"):
        level_correlation(np.zeros((4, 4), int), 2, max_r_px=4)
    with pytest.raises(InputError, match="non-finite"):
        quantize_levels(np.array([np.nan]))


def test_masked_correlation_counts_only_pairs_inside_the_region(rng):
    lev = rng.integers(0, 4, size=(12, 12))
    mask = np.zeros((12, 12), bool)
    mask[2:9, 1:7] = True
    fast = level_correlation(lev, 4, max_r_px=3, mask=mask)
    # brute force: the same count on the sub-map, since the region is a rectangle
    np.testing.assert_allclose(fast, _brute_force(lev[2:9, 1:7], 4, 3), atol=1e-12)
    r, _, s2, frac = radial_s2(lev, 4, max_r_px=3, mask=mask)
    np.testing.assert_allclose(np.nansum(s2, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(frac, np.bincount(lev[mask], minlength=4) / mask.sum())
    with pytest.raises(InputError, match="no pixel"):
        level_correlation(lev, 4, mask=np.zeros_like(mask))


def test_characteristic_region_and_porosity_regions():
    from microprop.microstructure._regions import boundary_features, characteristic_region, porosity_regions

    rel = np.zeros((10, 10))
    rel.flat[[3, 14, 25, 36, 47, 58, 69, 70, 81, 92]] = 1.0     # ten equal pixels carry all the relevance
    rel[0, 0] = -5.0                                              # negative relevance carries no share
    mask, frac = characteristic_region(rel, 0.7)
    assert mask.sum() == 7 and frac == 0.07 and not mask[0, 0] and (rel[mask] == 1).all()
    rel[5, 5] = 7.0                                               # one pixel with 7/17 of the total
    mask, _ = characteristic_region(rel, 0.4)
    assert mask.sum() == 1 and mask[5, 5]
    with pytest.raises(InputError, match="share"):
        characteristic_region(rel, 1.5)
    n = np.full((20, 20), 0.1)
    n[:, 12:] = 0.6
    high, t = porosity_regions(n)
    assert 0.1 < t < 0.6 and high[:, 12:].all() and not high[:, :12].any()
    step = np.zeros((8, 8))
    step[:, 4:] = 1.0
    b = boundary_features(step, 0.25)
    assert b[:, 3:5].all() and not b[:, :3].any() and not b[:, 5:].any()
    # a quantile of the map's own gradients instead of a threshold: the same pixels here
    assert (boundary_features(step, quantile=0.5) == b).all()
    with pytest.raises(InputError, match="either"):
        boundary_features(step)


def test_ring_pooled_s2_equals_counting_every_pair_at_256_levels(rng):
    """radial_s2 (octant DCT, no per-displacement volume) against a direct pair count, 256 levels."""
    lev = rng.integers(0, 256, size=(21, 18))
    mask = rng.random(lev.shape) > 0.3
    R = 7
    d = np.arange(-R, R + 1)
    ring = np.rint(np.hypot(d[:, None], d[None, :])).astype(int)
    for m in (None, mask):
        # brute force: every pair (x, x + d) with both pixels in the mask, pooled by ring
        counts = np.zeros((R + 1, 2 * 256 - 1))
        h, w = lev.shape
        mm = np.ones_like(lev, bool) if m is None else m
        for dy in range(-R, R + 1):
            for dx in range(-R, R + 1):
                if ring[dy + R, dx + R] > R:
                    continue
                ys, xs = np.nonzero(mm)
                y2, x2 = ys + dy, xs + dx
                ok = (y2 >= 0) & (y2 < h) & (x2 >= 0) & (x2 < w)
                ok[ok] &= mm[y2[ok], x2[ok]]
                diff = lev[y2[ok], x2[ok]] - lev[ys[ok], xs[ok]] + 255
                counts[ring[dy + R, dx + R]] += np.bincount(diff, minlength=511)
        expected = counts / counts.sum(axis=1, keepdims=True)
        r, delta, s2, _ = radial_s2(lev, 256, max_r_px=R, mask=m, dtype=np.float64, workers=2)
        np.testing.assert_allclose(s2, expected, atol=1e-12)
        np.testing.assert_allclose(s2, s2[:, ::-1], atol=1e-12)        # a ring holds each pair from both ends
        # the float32 default, and torch's whole-volume path (the CUDA one, run here on the CPU)
        np.testing.assert_allclose(radial_s2(lev, 256, max_r_px=R, mask=m)[2], expected, atol=2e-6)
        np.testing.assert_allclose(radial_s2(lev, 256, max_r_px=R, mask=m, device="cpu", dtype=np.float64)[2],
                                   expected, atol=1e-12)
    with pytest.raises(InputError, match="dtype"):
        radial_s2(lev, 256, dtype=np.int32)


def test_binary_s2_agrees_with_porespy(rng):
    """porespy 3.2's two_point_correlation (zero-padded, per-lag pair normalisation, the mean over
    the lags of each bin [r, r + 1)) against our level S2 of the same binary image: for two
    levels, the probability that a pair has the same level is S2 of the pores plus S2 of the solid."""
    import porespy
    from scipy import ndimage

    im = ndimage.gaussian_filter(rng.standard_normal((48, 40)), 2.5) > 0.2
    R = min(im.shape) // 2
    ours = level_correlation(im.astype(int), 2, max_r_px=R, workers=1)[:, :, 1]   # delta = 0, per (dy, dx)
    d = np.arange(-R, R + 1)
    dist = np.hypot(d[:, None], d[None, :])
    binned = np.array([ours[(dist >= b) & (dist < b + 1)].mean() for b in range(R)])
    theirs = sum(porespy.metrics.two_point_correlation(phase).probability_scaled for phase in (im, ~im))
    assert len(theirs) == R
    np.testing.assert_allclose(binned, theirs, atol=1e-6)
