"""Known answers of the finite-volume conduction solver (``microprop.physics._conduction``).

Laminates and a uniform image have exact answers in the scheme (harmonic-mean
face conductances, half-pixel electrodes); the checkerboard's continuum answer
``sqrt(s1 s2)`` (Keller 1964, Dykhne 1971) is approached as its squares are
resolved by more pixels; a dilute dispersion of discs follows the 2-D
Maxwell-Garnett formula.
"""
import numpy as np
import pytest
from microprop.errors import InputError
from microprop.physics._conduction import (
    CONSERVATION_RTOL,
    effective_conductivity,
    two_phase_conductivity,
)


def checkerboard(n_squares, square_px):
    i = np.arange(n_squares * square_px) // square_px
    return (i[:, None] + i[None, :]) % 2 == 0


def random_discs(n_px, radius, fraction, rng, gap=2.0):
    """Non-overlapping discs (centres at least 2 r + gap apart) up to ``fraction`` of the area."""
    yy, xx = np.mgrid[:n_px, :n_px] + 0.5
    mask = np.zeros((n_px, n_px), bool)
    centres = []
    while mask.mean() < fraction:
        c = rng.uniform(radius + 1, n_px - radius - 1, 2)
        if any(np.hypot(*(c - d)) < 2 * radius + gap for d in centres):
            continue
        centres.append(c)
        mask |= (yy - c[0]) ** 2 + (xx - c[1]) ** 2 <= radius * radius
    return mask


def test_uniform_sigma_is_returned_exactly():
    r = effective_conductivity(np.full((17, 29), 3.7), axis=1)
    assert r["sigma_eff"] == pytest.approx(3.7, rel=1e-12)
    r0 = effective_conductivity(np.full((17, 29), 3.7), axis=0)
    assert r0["sigma_eff"] == pytest.approx(3.7, rel=1e-12)
    assert r["conservation_error"] <= CONSERVATION_RTOL


@pytest.mark.parametrize("contrast", [10.0, 1e6])
def test_layers_parallel_to_the_flow_give_the_arithmetic_mean(contrast, rng):
    layers = rng.uniform(1.0, contrast, 40)
    sigma = np.repeat(layers[:, None], 50, axis=1)           # rows: layers along the flow (axis 1)
    r = effective_conductivity(sigma, axis=1, return_field=True)
    assert r["sigma_eff"] == pytest.approx(layers.mean(), rel=1e-9)
    # the potential falls linearly from 1 at the inlet face to 0 at the outlet face
    x = (np.arange(50) + 0.5) / 50
    assert np.allclose(r["phi"], 1 - x[None, :], atol=1e-9)
    # the same laminate turned a quarter: flow along axis 0
    r0 = effective_conductivity(sigma.T, axis=0)
    assert r0["sigma_eff"] == pytest.approx(layers.mean(), rel=1e-9)


@pytest.mark.parametrize("contrast", [10.0, 1e6])
def test_layers_in_series_give_the_harmonic_mean(contrast, rng):
    layers = np.exp(rng.uniform(0.0, np.log(contrast), 60))
    sigma = np.repeat(layers[None, :], 30, axis=0)            # columns: layers across the flow
    r = effective_conductivity(sigma, axis=1)
    assert r["sigma_eff"] == pytest.approx(1.0 / np.mean(1.0 / layers), rel=1e-9)
    assert abs(r["current_in"] - r["current_out"]) <= CONSERVATION_RTOL * r["current_in"]


def test_checkerboard_approaches_the_keller_dykhne_geometric_mean():
    # the continuum answer is sqrt(s1 s2); on the pixel grid the squares touch at corners
    # only through diagonal neighbours, which share no face, so both phases are slightly
    # less connected and the solve is low, by 10.8 %, 6.4 % and 3.8 % at contrast 10 for
    # squares of 8, 16 and 32 px (8 x 8 squares; 64 x 64 squares of 8 px: 12.1 %)
    ratios = []
    for square_px in (8, 16, 32):
        r = two_phase_conductivity(checkerboard(8, square_px), 10.0, 1.0)
        # the two directions agree (the board is symmetric under a quarter turn + swap)
        assert r["sigma_axis0"] == pytest.approx(r["sigma_axis1"], rel=1e-6)
        ratios.append(r["sigma_S_per_cm"] / np.sqrt(10.0))
    assert ratios[0] < ratios[1] < ratios[2] < 1.0
    assert ratios[2] == pytest.approx(1.0, abs=0.045)
    assert ratios[0] == pytest.approx(1.0, abs=0.12)


@pytest.mark.parametrize("contrast", [10.0, 100.0])
def test_dilute_discs_follow_maxwell_garnett(contrast):
    # 2-D Maxwell-Garnett (Maxwell 1873; Rayleigh 1892 for a square array, dilute limit):
    # s_eff = s_m (1 + f b) / (1 - f b), b = (s_p - s_m) / (s_p + s_m); measured: within
    # 0.1 % (contrast 10) and 0.3 % (contrast 100) for the geometric mean of both axes
    mask = random_discs(256, 6.0, 0.05, np.random.default_rng(0))
    f = mask.mean()
    b = (contrast - 1.0) / (contrast + 1.0)
    mg = (1 + f * b) / (1 - f * b)
    r = two_phase_conductivity(mask, contrast, 1.0)
    assert 0.045 < f < 0.06
    assert r["sigma_S_per_cm"] == pytest.approx(mg, rel=0.01)
    assert r["sigma_axis0"] == pytest.approx(mg, rel=0.02)
    assert r["sigma_axis1"] == pytest.approx(mg, rel=0.02)


def test_a_connected_path_conducts_orders_of_magnitude_more():
    h, w = 64, 96
    connected = np.zeros((h, w), bool)
    connected[30:34, :] = True                                  # a bright strip from inlet to outlet
    broken = connected.copy()
    broken[30:34, 47:49] = False                                # the same strip cut by a 2 px gap ...
    broken[0:4, 0:2] = True                                     # ... the same bright fraction
    assert connected.sum() == broken.sum()
    s_b, s_d = 1.4e5, 1.4e-2                                    # contrast 1e7
    on = effective_conductivity(np.where(connected, s_b, s_d), axis=1)
    off = effective_conductivity(np.where(broken, s_b, s_d), axis=1)
    assert on["sigma_eff"] == pytest.approx(s_b * 4 / h, rel=1e-3)   # the strip's share of the section
    assert on["sigma_eff"] / off["sigma_eff"] > 1e4
    for r in (on, off):
        assert r["conservation_error"] <= CONSERVATION_RTOL


def test_high_contrast_non_percolating_image_conserves_current(rng):
    from scipy import ndimage

    g = ndimage.gaussian_filter(rng.standard_normal((192, 192)), 2.0, mode="wrap")
    bright = g > np.quantile(g, 0.7)                            # 30 % metal, below percolation
    r = two_phase_conductivity(bright, 1.4e5, 5e-3)            # contrast 2.8e7
    assert r["conservation_error"] <= CONSERVATION_RTOL
    assert 5e-3 < r["sigma_S_per_cm"] < 5e-1                    # a few times the matrix
    assert r["fraction"] == pytest.approx(bright.mean())


def test_multigrid_and_lu_agree_on_a_graded_high_contrast_map(rng):
    from scipy import ndimage

    g = ndimage.gaussian_filter(rng.standard_normal((96, 80)), 2.0, mode="wrap")
    bright = g > np.quantile(g, 0.55)
    d = ndimage.distance_transform_edt(~bright)
    sigma = np.where(bright, 1.4e5, 5e-3 + 1e3 * np.exp(-2 * d))     # an interphase graded over 8 decades
    for axis in (0, 1):
        amg = effective_conductivity(sigma, axis=axis, maxiter=2000)
        lu = effective_conductivity(sigma, axis=axis, method="direct")
        assert amg["sigma_eff"] == pytest.approx(lu["sigma_eff"], rel=1e-6)
        assert lu["iterations"] == 0 and lu["conservation_error"] <= CONSERVATION_RTOL
    layers = np.repeat(rng.uniform(1.0, 1e6, 30)[None, :], 12, axis=0)
    r = effective_conductivity(layers, axis=1, method="direct")
    assert r["sigma_eff"] == pytest.approx(1.0 / np.mean(1.0 / layers[0]), rel=1e-9)


def test_bad_input_is_refused():
    good = np.ones((4, 4))
    with pytest.raises(InputError, match="expected a 2-D"):
        effective_conductivity(np.ones((4, 4, 2)))
    with pytest.raises(InputError, match="at least 2 x 2"):
        effective_conductivity(np.ones((1, 5)))
    with pytest.raises(InputError, match="<= 0"):
        effective_conductivity(np.where(np.eye(4, dtype=bool), 0.0, 1.0))
    with pytest.raises(InputError, match="<= 0"):
        effective_conductivity(-good)
    with pytest.raises(InputError, match="non-finite"):
        effective_conductivity(np.where(np.eye(4, dtype=bool), np.nan, 1.0))
    with pytest.raises(InputError, match="axis"):
        effective_conductivity(good, axis=2)
    with pytest.raises(InputError, match="rtol"):
        effective_conductivity(good, rtol=0.0)
    with pytest.raises(InputError, match="method"):
        effective_conductivity(good, method="jacobi")
    with pytest.raises(InputError, match="maxiter"):
        effective_conductivity(good, maxiter=0)
    with pytest.raises(InputError, match="boolean"):
        two_phase_conductivity(np.full((4, 4), 0.5), 1.0, 1.0)
    with pytest.raises(InputError, match="sigma_dark"):
        two_phase_conductivity(np.eye(4, dtype=bool), 1.0, 0.0)
    with pytest.raises(InputError, match="axes"):
        two_phase_conductivity(np.eye(4, dtype=bool), 1.0, 1.0, axes=())
