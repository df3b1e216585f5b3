"""CentreNet (microprop.learning.models._centre): a fully convolutional trunk, Gaussian
pooling at the crop's centre, and its exact dense map.

Known answers:

* geometry and parameter count of the default layout (the demo's 250 px crops at 40 nm);
* pixels outside the central patch change nothing; with a narrow Gaussian the centre
  moves the output far more than the patch's border;
* with D4-symmetric convolution kernels the network is invariant under the 8
  symmetries of the square (its pooling kernels are symmetric), and not without;
* the dense map (trunk once over the map) equals per-window inference to 1e-4, NaN
  windows included, through ``dense_predict_map`` as ``map_area`` calls it;
* a checkpoint round trip through ``load_model`` gives the same network;
* on crops whose target is the grey level of a central disc, CentreNet learns it and a
  global-average model of the same trunk (no Gaussian pooling) cannot.
"""
import numpy as np
import pytest
import torch
from microprop import data as ds
from microprop import learning
from microprop.errors import InputError
from microprop.learning import _checkpoint, load_model, predict, train
from microprop.learning.models import (
    ARCHITECTURES,
    N_CENTRE_PARAMETERS,
    CentreNet,
    centre_arch_kwargs,
    count_parameters,
)
from scipy import ndimage
from snakemake.utils import validate
from test_config import SCHEMA, load


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: these networks are tiny, and on a shared 2-core machine a second
    thread costs more in contention than it gains (5x slower steps measured under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# float32 rounding over a few layers and ~100 summed features: ~1e-6 relative; 1e-4 of
# the output scale leaves a wide margin without hiding a shifted window (~1e-1).
TOL = 1e-4


def _random_bn(model, seed=0):
    """Random batch-norm statistics and affine parameters (eval mode), so BN is not identity."""
    g = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.copy_(0.1 * torch.randn(mod.num_features, generator=g))
            mod.running_var.copy_(0.5 + 1.5 * torch.rand(mod.num_features, generator=g))
            mod.weight.data.copy_(0.5 + torch.rand(mod.num_features, generator=g))
            mod.bias.data.copy_(0.1 * torch.randn(mod.num_features, generator=g))
    return model.eval()


def _small(seed=0, **kw):
    torch.manual_seed(seed)
    args = {"patch_px": 24, "pool": 2, "widths": (4, 8), "sigmas_px": (2.0, 5.0), "hidden": 8,
            "input_mean": 0.13, "input_std": 0.02}
    args.update(kw)
    return _random_bn(CentreNet(**args), seed)


def _texture(rng, shape, sigma=3.0):
    """A two-phase eta field: smooth noise thresholded (eta 0.10 / 0.16) plus pixel noise."""
    f = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
    return (np.where(f > 0, 0.16, 0.10) + 0.005 * rng.normal(size=shape)).astype(np.float32)


# ----------------------------------------------------------------------------- layout

def test_default_layout_shapes_and_parameter_count():
    kw = centre_arch_kwargs(40.0, 250)                   # the demo: 250 px crops at 40 nm
    assert (kw["patch_px"], kw["pool"]) == (108, 2)      # 4.32 um, trunk at 80 nm
    assert kw["sigmas_px"] == pytest.approx([3.75, 7.5, 15.0])
    model = CentreNet(**kw)
    assert model.n_feat == 108 // 2 - 2 * 4 == 46
    assert count_parameters(model) == N_CENTRE_PARAMETERS == 31_732
    out = model.eval()(torch.rand(3, 1, 250, 250))
    assert out.shape == (3,) and out.dtype == torch.float32
    assert model(torch.rand(2, 250, 250)).shape == (2,)  # (B, S, S) too
    np.testing.assert_allclose(model.sigmas_px(), kw["sigmas_px"], rtol=1e-6)
    maps = model.weight_maps()
    assert maps.shape == (4, 46, 46)                     # 3 Gaussians + the context mean
    np.testing.assert_allclose(maps.sum(dim=(1, 2)).detach().numpy(), 1.0, rtol=1e-5)
    assert ARCHITECTURES["centre"] is CentreNet

    # the real micrograph's coarse crops (20 px at 500 nm): full resolution, smallest patch
    assert centre_arch_kwargs(500.0, 20)["patch_px"] == 12
    assert centre_arch_kwargs(500.0, 20)["pool"] == 1
    with pytest.raises(ValueError, match="too small"):
        centre_arch_kwargs(40.0, 8)
    with pytest.raises(ValueError, match="even margin"):
        model(torch.rand(1, 1, 251, 251))


# ----------------------------------------------------------------------------- centre weighting

def test_centre_pixels_move_the_output_more_than_the_border(rng):
    """Narrow Gaussian, no context: the centre matters, the patch border barely, outside never."""
    model = _small(patch_px=32, pool=1, widths=(8, 8), sigmas_px=(2.0,), context=False)
    s = 48
    base = torch.from_numpy(_texture(rng, (20, s, s)))[:, None]
    c, o = s // 2, (s - 32) // 2                         # patch rows/cols o .. o + 31
    with torch.no_grad():
        y0 = model(base)

        def change(r, q):
            x = base.clone()
            x[:, :, r - 1:r + 2, q - 1:q + 2] += 0.05        # a 3 x 3 block, one phase step
            return (model(x) - y0).abs()

        d_centre = change(c, c)
        d_mid = change(c + 6, c + 6)                     # 8.5 px from the centre: 4.2 sigma
        d_border = change(o + 3, o + 3)                  # inside the patch, near its corner
        d_outside = change(3, 3)                          # in the crop, outside the patch
    assert torch.all(d_outside == 0)
    print(f"mean |change|: centre {d_centre.mean():.3g}, 8.5 px out {d_mid.mean():.3g}, "
          f"patch corner {d_border.mean():.3g}")
    assert d_centre.mean() > 10 * d_mid.mean()
    assert d_mid.mean() > d_border.mean()
    assert d_centre.min() > 0


# ----------------------------------------------------------------------------- symmetry

def _d4(x):
    out = [torch.rot90(x, k, dims=(-2, -1)) for k in range(4)]
    return out + [torch.flip(r, dims=(-1,)) for r in out]


def test_d4_symmetric_kernels_give_a_d4_invariant_network(rng):
    model = _small(patch_px=30, pool=1)
    x = torch.from_numpy(_texture(rng, (6, 40, 40)))[:, None]
    for w in model.weight_maps():                          # the pooling is symmetric
        for t in _d4(w):
            assert torch.allclose(t, w, atol=1e-7)
    with torch.no_grad():
        outs = torch.stack([model(t) for t in _d4(x)])
        assert (outs - outs[0]).abs().max() > 1e-3     # learnt kernels break the symmetry ...
        for mod in model.modules():                    # ... symmetrised ones keep it
            if isinstance(mod, torch.nn.Conv2d):
                mod.weight.copy_(torch.stack(_d4(mod.weight)).mean(0))
        outs = torch.stack([model(t) for t in _d4(x)])
    assert (outs - outs[0]).abs().max() < 1e-5


# ----------------------------------------------------------------------------- dense == exact

def test_dense_forward_equals_the_per_window_network():
    model = _small()
    tile = 0.13 + 0.02 * torch.randn(61, 70, generator=torch.Generator().manual_seed(3))
    dense = model.dense_forward(tile)                     # every patch origin, all 4 phases
    p = model.patch_px
    assert dense.shape == (61 - p + 1, 70 - p + 1)
    with torch.no_grad():
        ref = torch.stack([model(torch.stack([tile[r:r + p, q:q + p] for q in range(dense.shape[1])]))
                           for r in range(dense.shape[0])])
    assert (dense - ref).abs().max() < TOL * ref.std()
    rows, cols = np.array([0, 5, 6, 30]), np.array([1, 2, 40])
    part = model.dense_forward(tile, rows, cols)
    assert torch.allclose(part, dense[rows][:, cols], atol=1e-6)
    with pytest.raises(ValueError, match="rows"):
        model.dense_forward(tile, rows=[61 - p + 1])


def test_dense_map_of_an_ensemble_equals_exact_inference(rng):
    """Through dense_predict_map (the map_area dense mode): every window, NaN windows too."""
    s, step = 40, 7
    image = _texture(rng, (150, 171))
    image[100, 60] = np.nan
    members = []
    for seed in (0, 1):
        model = _small(seed=seed, patch_px=30 if seed else 24)
        members.append((model, {"crop_size_px": s, "input_px": None, "target_mean": 40.0 + seed,
                                "target_std": 20.0, "target": "E_GPa"}))
    grid, (cy, cx) = learning.dense_predict_map(image, members, s, step, device="cpu", tile_px=20)
    fn = learning.ensemble_mean_predictor([(None, m, mt) for m, mt in members], "cpu", 64)
    ref, centres = learning.predict_map(image, fn, s, step)
    assert np.array_equal(cy, centres[0]) and np.array_equal(cx, centres[1])
    assert np.array_equal(np.isnan(grid), np.isnan(ref)) and np.isnan(ref).sum() > 0
    ok = np.isfinite(ref)
    assert np.abs(grid[ok] - ref[ok]).max() < TOL * np.nanstd(ref)
    grid2, _ = learning.dense_predict_map(image, members, s, step, device="cpu", tile_px=256)
    np.testing.assert_allclose(grid2, grid, atol=1e-4)   # one tile or many: the same map
    agree = learning.dense_agreement(image, grid, (cy, cx), fn, s, n_windows=50)
    assert agree["r2"] > 0.9999
    with pytest.raises(InputError, match="mixes"):
        from microprop.learning.models import SeedResNet
        learning.dense_predict_map(image, members + [(SeedResNet(8, (8, 8, 8), 8), members[0][1])],
                                   s, step)


# ----------------------------------------------------------------------------- checkpoints

def test_checkpoint_round_trip_through_load_model(tmp_path, rng):
    model = _small()
    with torch.no_grad():
        model.log_sigma.add_(0.3)                         # a learnt width is kept too
    meta = {"arch": "CentreNet", "arch_kwargs": model.arch_kwargs, "target": "E_GPa",
            "target_mean": 40.0, "target_std": 20.0, "input_px": None, "crop_size_px": 32}
    path = tmp_path / "best.pt"
    _checkpoint._save({"model": model.state_dict(), "meta": meta}, path)
    back, meta2 = load_model(path, "cpu")
    assert isinstance(back, CentreNet) and meta2["arch"] == "CentreNet"
    x = _texture(rng, (5, 32, 32))
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).double().numpy() * 20 + 40
    np.testing.assert_array_equal(predict(back, meta2, x, "cpu"), ref)
    np.testing.assert_allclose(back.sigmas_px(), model.sigmas_px())


# ----------------------------------------------------------------------------- learning

def _centre_disc_dataset(path, rng, n=320, s=32, radius=4.0):
    """Crops of a random two-phase texture with a central disc of random grey level v;
    E = 40 + 500 (v - 0.13) GPa. The disc is 5 % of the crop, so the crop's mean hardly
    tells v (the texture's own mean varies far more)."""
    yy, xx = np.mgrid[:s, :s]
    c = (s - 1) / 2
    disc = (yy - c) ** 2 + (xx - c) ** 2 <= radius ** 2
    crops = _texture(rng, (n, s, s))
    v = rng.uniform(0.10, 0.16, n)
    for i in range(n):
        crops[i][disc] = v[i] + 0.005 * rng.normal(size=int(disc.sum()))
    e = 40 + 500 * (v - 0.13) + rng.normal(0, 0.5, n)
    side = int(np.ceil(np.sqrt(n)))
    import pandas as pd
    table = pd.DataFrame({"specimen": "syn", "area": "S1", "batch": "b01",
                          "indent": np.arange(1, n + 1), "x_um": (np.arange(n) % side) * 5.0,
                          "y_um": (np.arange(n) // side) * 5.0, "E_GPa": e, "H_GPa": e / 20})
    shard = path.with_name("shard.h5")
    ds.write_shard(shard, crops, table, {"pixel_size_nm": 40.0, "crop_size_px": s,
                                         "crop_size_um": s * 0.04, "quantity": "eta",
                                         "scale": "MulF", "sources": {}})
    ds.assemble([shard], path, seed=0, block_um=15.0)
    return path


def test_centre_model_learns_the_centre_a_global_average_cannot(tmp_path, rng):
    path = _centre_disc_dataset(tmp_path / "dataset.h5", rng)
    images, y, _ = ds.read_crops(path, "E_GPa", "random", "test")
    common = {"resolution_nm": 40.0, "patch_um": 0.96, "widths": (8, 8), "hidden": 16, "dropout": 0.0}
    r2 = {}
    for name, kw in (("centre", {"sigma_um": (0.06, 0.12), "context": True}),
                     ("global", {"sigma_um": (), "context": True})):
        out = tmp_path / name
        train(path, "E_GPa", out, epochs=12, batch_size=16, lr=3e-3, seed=0, log_every=0,
              architecture="centre", arch_kwargs={**common, **kw})
        model, meta = load_model(out / "best.pt", "cpu")
        assert meta["arch"] == "CentreNet" and meta["input_px"] is None
        assert meta["arch_kwargs"]["input_mean"] == pytest.approx(0.13, abs=0.01)
        pred = predict(model, meta, images, "cpu")
        r2[name] = 1 - np.mean((pred - y) ** 2) / np.var(y)
    print(f"test R2: CentreNet {r2['centre']:.3f}, global average {r2['global']:.3f}")
    assert r2["centre"] > 0.8
    assert r2["global"] < 0.3


def test_centre_training_refuses_downsampled_input_and_sets_aside_other_work(tmp_path, rng):
    path = _centre_disc_dataset(tmp_path / "dataset.h5", rng, n=60)
    with pytest.raises(InputError, match="input_px"):
        train(path, "E_GPa", tmp_path / "x", epochs=1, input_px=16, architecture="centre")
    with pytest.raises(InputError, match="architecture"):
        train(path, "E_GPa", tmp_path / "x", epochs=1, architecture="unet")
    work = tmp_path / "work"
    train(path, "E_GPa", work, epochs=1, batch_size=16, lr=1e-3, log_every=0, architecture="centre",
          arch_kwargs={"resolution_nm": 40.0, "patch_um": 0.96, "widths": (4,), "hidden": 8})
    assert learning.set_aside_stale_work(work, path, arch="CentreNet") is None
    moved = learning.set_aside_stale_work(work, path, arch="SeedResNet")
    assert moved is not None and moved.exists() and not work.exists()


def test_config_takes_the_architecture_and_centre_options():
    cfg = load("configs/demo_learning.yaml")
    lc = cfg["specimens"]["demo"]["learning"]
    validate(cfg, SCHEMA, set_default=True)
    assert lc["architecture"] == "seed_resnet"
    lc["architecture"] = "centre"
    lc["centre"] = {"patch_um": 3.0}
    validate(cfg, SCHEMA, set_default=True)
    assert lc["centre"]["sigma_um"] == [0.15, 0.3, 0.6]           # defaults filled in
    assert lc["centre"]["lr"] == 1e-3 and lc["centre"]["cpu_epochs"] is None
    run_keys = ("lr", "cpu_epochs")                                # train_model pops them
    options = {k: v for k, v in lc["centre"].items() if k not in run_keys}
    kw = centre_arch_kwargs(40.0, 250, **options)                  # every other key is an option
    assert kw["patch_px"] == 76
    lc["architecture"] = "unet"
    with pytest.raises(Exception, match="architecture"):
        validate(cfg, SCHEMA, set_default=True)


def test_train_model_script_trains_centre_net_with_its_cpu_epochs(tmp_path, rng):
    """Rule train_model with learning.architecture: centre: full-resolution crops (the
    reduced run's input_px is not applied), learning.centre.cpu_epochs on a CPU and its lr."""
    from script_runner import run_script

    path = _centre_disc_dataset(tmp_path / "dataset.h5", rng, n=60)
    work, out = tmp_path / "work", tmp_path / "out"
    job = {"input": {"dataset": str(path)},
           "output": {k: str(out / f"{k}.{'csv' if k == 'metrics' else 'pt'}")
                      for k in ("best", "last", "metrics")},
           "params": {"target": "E_GPa", "split": "random", "epochs": 100, "batch_size": 16,
                      "lr": 1e-5, "input_px": None, "augment": True, "device": "cpu",
                      "bf16": True, "compile": False, "seed": 0, "member": 0, "patience": 5,
                      "factor": 0.9, "work_dir": str(work),
                      "cpu": {"epochs": 1, "lr": 1e-3, "input_px": 16},
                      "architecture": "centre",
                      "centre": {"resolution_nm": 40.0, "patch_um": 0.96, "sigma_um": [0.1],
                                 "widths": [4], "hidden": 8, "cpu_epochs": 2, "lr": 2e-3}},
           "threads": 1}
    run_script("train_model", job, tmp_path)
    model, meta = load_model(out / "best.pt", "cpu")
    assert isinstance(model, CentreNet) and meta["input_px"] is None
    assert meta["config"]["epochs"] == 2 and meta["config"]["lr"] == 2e-3
    assert model.patch_px == 24
