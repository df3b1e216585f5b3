"""The sample study's data and learning pieces: tables, grouped folds, symmetry augmentation,
normalisation, the CNN's activation maps."""
import numpy as np
import pandas as pd
import pytest
from microprop.data import load_sample_images, read_sample_tables, sample_folds
from microprop.errors import InputError
from microprop.imaging import normalise_images
from microprop.learning import fold_parts, symmetry_augment


def _tables(tmp_path, samples, images):
    s, i = tmp_path / "samples.csv", tmp_path / "images.csv"
    pd.DataFrame(samples, columns=["sample", "value"]).to_csv(s, index=False)
    pd.DataFrame(images, columns=["sample", "image"]).to_csv(i, index=False)
    return s, i


def test_sample_tables_are_joined_and_bad_ones_refused(tmp_path):
    from PIL import Image

    for name in ("a1.png", "a2.png", "b1.png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / name)
    s, i = _tables(tmp_path, [("A", 1e-2), ("B", 3e3)], [("A", "a1.png"), ("A", "a2.png"), ("B", "b1.png")])
    t = read_sample_tables(s, i)
    assert list(t["sample"]) == ["A", "A", "B"] and list(t["value"]) == [1e-2, 1e-2, 3e3]
    s, i = _tables(tmp_path, [("A", 1.0), ("B", 2.0), ("C", 3.0)], [("A", "a1.png"), ("B", "b1.png")])
    with pytest.raises(InputError, match=r"samples without an image.*\['C'\]"):
        read_sample_tables(s, i)
    s, i = _tables(tmp_path, [("A", 1.0)], [("A", "a1.png"), ("Z", "b1.png")])
    with pytest.raises(InputError, match=r"images of samples not in.*\['Z'\]"):
        read_sample_tables(s, i)
    s, i = _tables(tmp_path, [("A", 1.0), ("B", 0.0)], [("A", "a1.png"), ("B", "b1.png")])
    with pytest.raises(InputError, match=r"<= 0 cannot be learned as log10.*\['B'\]"):
        read_sample_tables(s, i)
    assert len(read_sample_tables(s, i, log10=False)) == 2          # zero is fine on a linear scale
    s, i = _tables(tmp_path, [("A", 1.0)], [("A", "missing.png")])
    with pytest.raises(InputError, match="line 2: image missing.png not found"):
        read_sample_tables(s, i)
    Image.fromarray(np.zeros((8, 10), np.uint8)).save(tmp_path / "b1.png")
    s, i = _tables(tmp_path, [("A", 1.0), ("B", 2.0)], [("A", "a1.png"), ("B", "b1.png")])
    with pytest.raises(InputError, match=r"b1.png \(sample B\): 10 x 8 px, the study's first image is 8 x 8"):
        load_sample_images(read_sample_tables(s, i), lambda p: np.asarray(Image.open(p)))


def test_no_sample_is_in_two_folds_or_two_parts(rng):
    samples = np.repeat(np.arange(23), 3)
    fold = sample_folds(samples, 5, seed=3)
    for s in np.unique(samples):
        assert len(set(fold[samples == s])) == 1                  # all images of a sample: one fold
    counts = np.bincount([fold[samples == s][0] for s in np.unique(samples)])
    assert counts.max() - counts.min() <= 1                       # balanced by samples
    data = {"fold": fold, "sample": samples}
    for k in range(5):
        tr, va, te = fold_parts(data, k, val_fraction=0.2, seed=0)
        parts = [set(samples[p]) for p in (tr, va, te)]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert len(tr) + len(va) + len(te) == len(samples) and set(samples[te]) == set(samples[fold == k])
    with pytest.raises(InputError, match="6 folds for 5 samples"):
        sample_folds(np.arange(5), 6)


def test_symmetry_augmentation_is_exact_distinct_and_needs_isotropy(rng):
    img = rng.integers(0, 255, size=(2, 6, 6), dtype=np.uint8)
    sym = np.zeros((6, 6), np.uint8)
    sym[2:4, 2:4] = 200                                          # invariant under all of D4
    half = np.zeros((6, 6), np.uint8)
    half[:, :3] = 100                                            # invariant under one mirror and ...
    out, src, elem = symmetry_augment(np.concatenate([img, sym[None], half[None]]), isotropic=True)
    assert (np.bincount(src) == [8, 8, 1, 4]).all()
    for o, s, g in zip(out, src, elem):
        x = [*img, sym, half][s]
        expected = np.rot90(x, g % 4)
        expected = np.flip(expected, 1) if g >= 4 else expected
        assert np.array_equal(o, expected)                       # on the grid: no interpolation
        assert np.array_equal(np.sort(o.ravel()), np.sort(x.ravel()))
    for s in range(4):                                           # no two views of one image alike
        views = out[src == s].reshape(int((src == s).sum()), -1)
        assert len(np.unique(views, axis=0)) == len(views)
    with pytest.raises(InputError, match="not declared isotropic"):
        symmetry_augment(img, isotropic=False)
    rect, src, _ = symmetry_augment(rng.random((1, 4, 6)), isotropic=True)
    assert rect.shape == (4, 4, 6)                               # a rectangle keeps its shape under 4 elements


def test_normalisation_removes_gain_and_offset(rng):
    img = rng.integers(40, 200, size=(32, 32)).astype(np.float64)
    a = normalise_images(np.stack([img, 1.7 * img + 30]))
    np.testing.assert_allclose(a[0], a[1], atol=1e-5)
    np.testing.assert_allclose([a[0].mean(), a[0].std()], [0, 1], atol=1e-5)
    c = normalise_images(img.astype(np.uint8), clahe=True)
    assert c.shape == (32, 32) and abs(c.mean()) < 1e-5
    with pytest.raises(InputError, match="image 1 is constant"):
        normalise_images(np.stack([img, np.full_like(img, 3)]))


def test_activation_maps_sum_to_the_prediction():
    import torch
    from microprop.learning.models import ConductivityCNN

    torch.manual_seed(0)
    for hidden in (None, 8):
        m = ConductivityCNN(widths=(4, 8, 8), hidden=hidden, dropout=0.3).eval()
        x = torch.randn(3, 1, 32, 32)
        ram, bias, pred = m.activation_maps(x)
        assert ram.shape == (3, 8, 8)
        torch.testing.assert_close(ram.mean(dim=(1, 2)) + bias, pred, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(pred, m(x))
    with pytest.raises(RuntimeError, match="eval"):
        m.train().activation_maps(x)


def test_symmetry_averaged_prediction_is_invariant_on_the_grid():
    import torch
    from microprop.learning import predict_symmetric
    from microprop.learning.models import ConductivityCNN

    torch.manual_seed(1)
    m = ConductivityCNN(widths=(4, 8, 8), hidden=8).eval()
    x = torch.randn(2, 1, 24, 24)
    views = predict_symmetric(m, x)
    assert views.shape == (8, 2) and views.dtype == torch.float64
    plain = predict_symmetric(m, x, symmetries=False)
    torch.testing.assert_close(plain[0], m(x).double())
    # the network alone is not invariant, so the test below can fail
    assert (m(torch.rot90(x, 1, (2, 3))) - m(x)).abs().max() > 1e-4
    for t in (torch.rot90(x, 1, (2, 3)), torch.flip(x, (2,)), torch.rot90(torch.flip(x, (3,)), 3, (2, 3))):
        torch.testing.assert_close(predict_symmetric(m, t).mean(0), views.mean(0), atol=1e-6, rtol=1e-6)
    # a non-square image has the 4 symmetries of the rectangle
    r = torch.randn(1, 1, 16, 24)
    rv = predict_symmetric(m, r)
    assert rv.shape == (4, 1)
    torch.testing.assert_close(predict_symmetric(m, torch.flip(r, (2,))).mean(0), rv.mean(0), atol=1e-6, rtol=1e-6)
