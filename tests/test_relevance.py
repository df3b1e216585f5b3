"""Deep Taylor decomposition of the porosity classifier (zennit): conservation and location."""
import numpy as np
import pytest
import torch
from microprop import data, learning
from microprop.learning._relevance import relevance_maps
from microprop.learning.models import PorosityDCNN


def test_relevance_is_conserved_through_a_network_without_biases():
    torch.manual_seed(0)
    m = PorosityDCNN(3, widths=[4, 8, 8, 8, 8, 8, 8], n_pool=3, input_mean=0.5, input_std=0.05).eval()
    with torch.no_grad():
        m.head.bias.zero_()          # fresh batch norms (mean 0, var 1, no shift) merge without biases
    meta = {"arch_kwargs": m.arch_kwargs, "input_px": None}
    x = np.random.default_rng(0).random((4, 32, 32)).astype(np.float32)
    r, score, target = relevance_maps(m, meta, x)
    assert r.shape == (4, 32, 32) and (target == m(torch.as_tensor(x)[:, None]).argmax(1).numpy()).all()
    # z+ and z^B conserve: the relevance of the pixels adds up to the explained logit
    np.testing.assert_allclose(r.sum(axis=(1, 2)), score, rtol=2e-3)
    # explaining another class gives that class's logit
    r1, s1, t1 = relevance_maps(m, meta, x, target=[1, 1, 1, 1])
    assert (t1 == 1).all()
    np.testing.assert_allclose(r1.sum(axis=(1, 2)), s1, rtol=2e-3)
    # the model itself is left as it was (the canonizer undoes its merge)
    assert sum(isinstance(k, torch.nn.BatchNorm2d) for k in m.modules()) == 7


def test_relevance_sits_on_the_feature_that_decides(tmp_path):
    """Two classes of the same noise; class B has a bright 8 x 8 px square somewhere.
    For maps of B, the relevance of B concentrates on the square (1/16 of the map)."""
    rng = np.random.default_rng(1)
    size, k = 32, 8
    big = {}
    squares = np.zeros((k * size, k * size), bool)
    for c in ("A", "B"):
        m = (0.3 + 0.05 * rng.standard_normal((k * size, k * size))).astype(np.float32)
        if c == "B":
            for wy in range(k):
                for wx in range(k):
                    y, x = wy * size + rng.integers(2, 22), wx * size + rng.integers(2, 22)
                    m[y:y + 8, x:x + 8] = 0.9
                    squares[y:y + 8, x:x + 8] = True
        big[c] = {"mulf": m, "micf": m, "source": c}
    path = tmp_path / "maps.h5"
    data.write_map_dataset(path, big, 52.0, size, n_train=48, seed=0)
    res = learning.train_classifier(path, "MulF", tmp_path / "m", epochs=4, batch_size=16, lr=3e-3, seed=0,
                                    arch_kwargs={"widths": [8, 8, 16, 16, 16, 16, 16], "n_pool": 3},
                                    device="cpu", num_threads=2)
    model, meta = learning.load_classifier(res["best"])
    x, y, idx, _ = data.read_maps(path, "MulF", "random", "test")
    b = y == 1
    r, score, target = relevance_maps(model, meta, x[b], target=np.ones(int(b.sum()), int))
    import h5py

    with h5py.File(path) as f:
        xs, ys = f["meta/x_px"][:][idx[b]], f["meta/y_px"][:][idx[b]]
    inside = np.stack([squares[yy:yy + size, xx:xx + size] for xx, yy in zip(xs, ys)])
    pos = np.clip(r, 0, None)
    share = (pos * inside).sum() / pos.sum()
    print(f"positive relevance on the squares: {share:.3f} (area {inside.mean():.3f})")
    assert inside.mean() == pytest.approx(1 / 16, rel=0.01)
    assert share > 0.5
