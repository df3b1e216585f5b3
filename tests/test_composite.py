"""Virtual ceramic-metal composites (``microprop.virtual._composite``): microstructure, SEM render, samples."""
import numpy as np
import pytest
from microprop.errors import InputError
from microprop.physics._conduction import effective_conductivity
from microprop.virtual._composite import (
    DEMO_COMPOSITE,
    composite_microstructure,
    composite_samples,
    conductivity_map,
    render_sem,
)
from scipy import ndimage


@pytest.mark.parametrize("fraction", [0.08, 0.35, 0.6])
@pytest.mark.parametrize("clustering", [0.0, 1.0])
def test_the_area_fraction_is_hit(fraction, clustering, rng):
    bright, info = composite_microstructure((80, 96), fraction, 4.0, clustering, rng, return_info=True)
    assert bright.dtype == bool and bright.shape == (80, 96)
    assert bright.mean() == pytest.approx(fraction, abs=1.0 / bright.size)
    # the centre density is chosen so that the discs need little growing or shrinking
    assert 0.75 < info["radius_scale"] < 1.3


def _largest_cluster_share(bright):
    lab, n = ndimage.label(bright)
    sizes = np.bincount(lab.ravel())[1:]
    return sizes.max() / bright.sum(), n


def test_clustering_changes_connectivity():
    # at equal fraction and particle size, clustered centres gather the metal in fewer,
    # larger agglomerates with emptier matrix between them
    shares, counts, sd_local = [], [], []
    for c in (0.0, 1.0):
        s_, n_, l_ = [], [], []
        for seed in range(4):
            b = composite_microstructure((96, 96), 0.3, 3.0, c, np.random.default_rng(seed))
            share, n = _largest_cluster_share(b)
            s_.append(share)
            n_.append(n)
            l_.append(ndimage.uniform_filter(b.astype(float), 24).std())
        shares.append(np.mean(s_))
        counts.append(np.mean(n_))
        sd_local.append(np.mean(l_))
    assert counts[1] < 0.7 * counts[0]
    assert sd_local[1] > 2.0 * sd_local[0]
    assert shares[1] > shares[0]


def test_the_interphase_map_and_its_gap_conduction():
    bright = np.zeros((8, 20), bool)
    bright[:, :8] = True
    bright[:, 12:] = True                                       # a 4 px matrix gap, columns 8..11
    smap = conductivity_map(bright, 1e5, 1e-3, 1e2, 1.0)
    assert np.all(smap[bright] == 1e5)
    # distance to the metal surface 0.5 and 1.5 px on each side of the gap
    assert smap[0, 8] == pytest.approx(1e-3 + 1e2 * np.exp(-1.0))
    assert smap[0, 9] == pytest.approx(1e-3 + 1e2 * np.exp(-3.0))
    assert smap[0, 10] == smap[0, 9] and smap[0, 11] == smap[0, 8]
    # in series across the gap: the harmonic mean of the columns
    cols = smap[0]
    sol = effective_conductivity(smap, axis=1)
    assert sol["sigma_eff"] == pytest.approx(1.0 / np.mean(1.0 / cols), rel=1e-9)
    plain = conductivity_map(bright, 1e5, 1e-3)
    assert np.all(plain[~bright] == 1e-3)


def test_sem_images_are_uint8_with_the_metal_brighter(rng):
    bright = composite_microstructure((64, 64), 0.4, 4.0, 0.5, rng)
    img, look = render_sem(bright, rng)
    assert img.dtype == np.uint8 and img.shape == bright.shape
    inner = ndimage.binary_erosion(bright, iterations=2)
    outer = ndimage.binary_erosion(~bright, iterations=2)
    assert img[inner].mean() > img[outer].mean() + 80
    assert set(look) == {"gain", "offset", "shading_angle"}
    # each image gets its own brightness and contrast
    _, look2 = render_sem(bright, rng)
    assert look2["gain"] != look["gain"] and look2["offset"] != look["offset"]


SMALL = {"field_um": 3.0, "particle_radius_nm": (120.0, 300.0)}


def test_samples_are_consistent_and_deterministic():
    a = composite_samples(4, 2, 64, np.random.default_rng(7), params=SMALL)
    b = composite_samples(4, 2, 64, np.random.default_rng(7), params=SMALL)
    samples, images, bright, image_sample, table = a
    assert len(samples) == 4 and list(samples["sample"]) == ["C01", "C02", "C03", "C04"]
    assert images.shape == (8, 64, 64) and images.dtype == np.uint8
    assert bright.shape == (8, 64, 64) and bright.dtype == bool
    assert list(image_sample) == ["C01", "C01", "C02", "C02", "C03", "C03", "C04", "C04"]
    assert list(table["sample"]) == list(image_sample)
    assert np.array_equal(images, b.images) and np.array_equal(bright, b.bright)
    assert samples.drop(columns="seconds").equals(b.samples.drop(columns="seconds"))
    # the same with two worker processes
    c = composite_samples(4, 2, 64, np.random.default_rng(7), params=SMALL, workers=2)
    assert np.array_equal(images, c.images)
    assert samples.drop(columns="seconds").equals(c.samples.drop(columns="seconds"))
    assert table.equals(c.image_table)
    # the sample's solved conductivity is the geometric mean over its images (and axes)
    for name, grp in table.groupby("sample"):
        row = samples.set_index("sample").loc[name]
        assert row["log10_sigma_solved"] == pytest.approx(np.log10(grp["sigma_S_per_cm"]).mean())
        assert row["sigma_S_per_cm"] == pytest.approx(10 ** row["log10_sigma"])
        # the "measurement" is the solve plus a small log-normal error
        assert abs(row["log10_sigma"] - row["log10_sigma_solved"]) < 5 * DEMO_COMPOSITE["measurement_sd_log10"]
        # images are cut from the sample's strip: their fractions average to the sample's
        assert grp["fraction"].mean() == pytest.approx(row["fraction"])
    assert np.all(table["conservation_error"] <= 1e-6)
    lo, hi = DEMO_COMPOSITE["fraction"]
    assert samples["fraction"].between(lo - 0.01, hi + 0.01).all()
    sigma_b = DEMO_COMPOSITE["sigma_bright"]
    assert (samples["sigma_solved_S_per_cm"] < sigma_b).all()
    assert (samples["sigma_solved_S_per_cm"] > DEMO_COMPOSITE["sigma_dark"]).all()


def test_a_sample_keeps_its_parameters_at_any_size():
    small = composite_samples(3, 1, 48, np.random.default_rng(3), params=SMALL, solve=False)
    large = composite_samples(3, 1, 96, np.random.default_rng(3), params=SMALL, solve=False)
    for col in ("fraction_target", "clustering", "particle_radius_nm"):
        assert np.allclose(small.samples[col], large.samples[col])
    assert "sigma_S_per_cm" not in small.samples
    assert np.allclose(large.samples["particle_px"], 2 * small.samples["particle_px"])


def test_more_metal_conducts_more():
    lo = composite_samples(2, 1, 64, np.random.default_rng(1), params=dict(SMALL, fraction=(0.1, 0.12)))
    hi = composite_samples(2, 1, 64, np.random.default_rng(1), params=dict(SMALL, fraction=(0.68, 0.7)))
    assert hi.samples["log10_sigma_solved"].min() > lo.samples["log10_sigma_solved"].max() + 2


def test_bad_input_is_refused(rng):
    with pytest.raises(InputError, match="fraction"):
        composite_microstructure((64, 64), 1.2, 4.0, 0.0, rng)
    with pytest.raises(InputError, match="clustering"):
        composite_microstructure((64, 64), 0.3, 4.0, 1.5, rng)
    with pytest.raises(InputError, match="particle_px"):
        composite_microstructure((64, 64), 0.3, 0.2, 0.0, rng)
    with pytest.raises(InputError, match="shape"):
        composite_microstructure((4, 64), 0.3, 2.0, 0.0, rng)
    with pytest.raises(InputError, match="Generator"):
        composite_microstructure((64, 64), 0.3, 2.0, 0.0, None)
    with pytest.raises(InputError, match="grey_dark"):
        render_sem(np.eye(8, dtype=bool), rng, grey_bright=50, grey_dark=80)
    with pytest.raises(InputError, match="expected an"):
        render_sem(np.zeros((3, 8, 8), bool), rng)
    with pytest.raises(InputError, match="sigma_interphase"):
        conductivity_map(np.eye(8, dtype=bool), 1.0, 1.0, -1.0)
    with pytest.raises(InputError, match="unknown parameter"):
        composite_samples(2, 1, 64, rng, params={"fracton": (0.2, 0.3)})
    with pytest.raises(InputError, match="fraction"):
        composite_samples(2, 1, 64, rng, params=dict(SMALL, fraction=(0.0, 0.5)))
    with pytest.raises(InputError, match="low <= high"):
        composite_samples(2, 1, 64, rng, params=dict(SMALL, clustering=(0.8, 0.2)))
    with pytest.raises(InputError, match="px at"):
        composite_samples(2, 1, 64, rng)                        # 80 nm at 188 nm/px: under a pixel
    with pytest.raises(InputError, match="n_samples"):
        composite_samples(0, 1, 64, rng, params=SMALL)
