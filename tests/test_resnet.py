"""SeedResNet: parameter count, shapes, per-image standardisation, FLOP count."""
import numpy as np
import pytest
import torch
from microprop.learning.models import (
    N_PARAMETERS,
    PAPER_N_PARAMETERS,
    SeedResNet,
    Standardise,
    count_parameters,
    model_flops,
)
from torch import nn

torch.set_num_threads(2)
TINY = dict(stem_channels=8, stage_channels=(8, 16, 16), hidden=32)


def _conv_params(cin, cout, k):
    return cin * cout * k * k + 2 * cout  # weight + batch-norm gamma, beta


def test_parameter_count_matches_documented_layout():
    model = SeedResNet()
    n = count_parameters(model)
    print(f"SeedResNet trainable parameters: {n:,} (paper {PAPER_N_PARAMETERS:,}, "
          f"{n - PAPER_N_PARAMETERS:+,})")
    # independent count from the layout in the module docstring
    expected = _conv_params(1, 128, 3)
    for cin, cout in ((128, 128), (128, 256), (256, 256)):
        expected += 2 * _conv_params(cin, cin, 1) + _conv_params(cin, cin, 3)  # B3
        expected += (_conv_params(cin, cout, 1) + _conv_params(cout, cout, 3)
                     + _conv_params(cout, cout, 1) + _conv_params(cin, cout, 1))  # B4
    expected += 256 * 1024 + 1024 + 1024 + 1
    assert n == expected == N_PARAMETERS == 3_059_073
    assert abs(n - PAPER_N_PARAMETERS) / PAPER_N_PARAMETERS < 1e-3
    # batch-norm running statistics are buffers, not parameters
    assert count_parameters(model, trainable=False) == n


@pytest.mark.parametrize("shape", [(3, 1, 16, 16), (2, 1, 40, 24), (2, 16, 17)])
def test_output_shape(shape):
    model = SeedResNet(**TINY).eval()
    y = model(torch.rand(shape))
    assert y.shape == (shape[0],) and y.dtype == torch.float32


def test_channels_last_gives_same_output():
    torch.manual_seed(0)
    model = SeedResNet(**TINY).eval()
    x = torch.rand(4, 1, 24, 24)
    ref = model(x)
    model = model.to(memory_format=torch.channels_last)
    out = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_standardise_layer_known_answer(rng):
    x = torch.as_tensor(rng.normal(0.15, 0.02, (2, 1, 10, 12)), dtype=torch.float32)
    y = Standardise(pad=3)(x)
    assert y.shape == (2, 1, 16, 18)
    inner = y[..., 3:-3, 3:-3].double()
    torch.testing.assert_close(inner.mean(dim=(-2, -1)), torch.zeros(2, 1, dtype=torch.float64),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(inner.std(dim=(-2, -1), unbiased=False),
                               torch.ones(2, 1, dtype=torch.float64), atol=1e-5, rtol=0)
    border = y.clone()
    border[..., 3:-3, 3:-3] = 0
    assert torch.count_nonzero(border) == 0
    assert torch.count_nonzero(Standardise()(torch.full((1, 1, 8, 8), 0.2))) == 0


def test_output_invariant_to_affine_grey_change(rng):
    torch.manual_seed(1)
    model = SeedResNet(**TINY).eval()
    with torch.no_grad():  # a non-trivial head so that outputs differ between images
        model.head[-1].bias.fill_(0.0)
    x = torch.as_tensor(rng.normal(0.15, 0.02, (4, 1, 32, 32)), dtype=torch.float32)
    with torch.no_grad():
        y = model(x)
        for a, b in ((2.5, 0.3), (0.4, -0.05), (1.0, 10.0)):
            torch.testing.assert_close(model(a * x + b), y, rtol=1e-3, atol=1e-4 * y.abs().max())
        # not trivially constant: other images give other outputs
        y2 = model(torch.as_tensor(rng.normal(0.15, 0.02, (4, 1, 32, 32)), dtype=torch.float32))
    assert (y2 - y).abs().max() > 100 * 1e-4 * y.abs().max()
    assert y.std() > 0


def test_model_flops_match_layer_by_layer_count():
    model = SeedResNet()
    px = 40
    # independent count: 2 x multiply-adds of every Conv2d and Linear, from hooks
    macs = []

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            k = mod.kernel_size[0] * mod.kernel_size[1]
            macs.append(out.numel() * mod.in_channels * k)
        else:
            macs.append(out.numel() * mod.in_features)

    hooks = [m.register_forward_hook(hook) for m in model.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.rand(1, 1, px, px))
    for h in hooks:
        h.remove()
    flops = model_flops(model, px)
    assert flops == 2 * sum(macs)
    assert model_flops(model, px, batch=3) == 3 * flops
    # the stem alone: (px + 6 - 2)^2 outputs x 128 channels x 9 taps x 2
    assert 2 * macs[0] == (px + 4) ** 2 * 128 * 9 * 2
    print(f"forward GFLOP per image: {model_flops(model, 64) / 1e9:.2f} at 64 px, "
          f"{model_flops(model, 250) / 1e9:.1f} at 250 px")
    assert np.isclose(model_flops(model, 250) / 1e9, 48.98, atol=0.01)
