"""The seed paper's residual network that regresses E or H from one crop.

Layout (blocks named as in the seed paper; ``C`` = channels, ``s`` = stride;
every convolution is followed by batch normalisation, convolutions carry no
bias because the batch norm that follows has one)::

    B1  input block   per-image standardisation (x - mean) / std,
                      then zero padding of 3 px on every edge        (1, H+6, W+6)
    B2  stem          3x3 conv 1 -> 128, s 1, "valid" + BN + ReLU    (128, H+4, W+4)
    stage 1  B3 identity block at 128 C       1x1, 3x3, 1x1 (all 128 C)
             B4 convolution block 128 -> 128  1x1 s2, 3x3, 1x1; shortcut 1x1 s2
    stage 2  B3 identity block at 128 C
             B4 convolution block 128 -> 256
    stage 3  B3 identity block at 256 C
             B4 convolution block 256 -> 256
    head     global average pooling -> 256-vector,
             dense 256 -> 1024 + ReLU, dropout 0.4, dense 1024 -> 1

The residual blocks are the Keras ResNet-50 "identity block" and
"convolutional block" (He et al. 2016, "Deep residual learning for image
recognition", CVPR, Fig. 5 right: 1x1 / 3x3 / 1x1 bottleneck; the
stride-2 convolution block has a stride-2 1x1 projection shortcut), with
the three filters of a block all equal to the block's output width (the
seed paper gives neither the filters nor the order within a stage beyond
"identity block, then convolution block"). Each block ends with
``ReLU(main path + shortcut)``.

Trainable parameters: **3,059,073** (:data:`N_PARAMETERS`) against the seed
paper's 3,060,161 (-1,088, -0.036 %). The head alone has 264,193. No
layout of this family with conventional widths (multiples of 16) reproduces
the paper's number exactly: an exhaustive search over stem/stage widths,
basic and bottleneck blocks, conv biases on/off and Keras' counting with or
without the batch-norm running statistics found exact hits only for
irregular widths (e.g. 128/96/192 with 16-channel bottlenecks), which we
judged less plausible than the regular layout above. Batch-norm running
mean/variance (3,072 values) are buffers, not trainable parameters.

Input ``(B, 1, H, W)`` float (any H, W >= 1; the crops are 250 px, or
downsampled, e.g. 64 px). Because of B1 the output is invariant to affine
grey-level changes ``a * x + b`` (a > 0) of an input image: the network sees
the *contrast pattern* of a crop, not its absolute backscatter level.
"""
from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn
from torch.nn import functional as F

#: Trainable parameters of ``SeedResNet()`` with default arguments.
N_PARAMETERS = 3_059_073


#: The seed paper's reported parameter count.
PAPER_N_PARAMETERS = 3_060_161


def _conv_bn(cin, cout, k, stride=1, padding=0):
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=False),
        nn.BatchNorm2d(cout))


class Standardise(nn.Module):
    """B1: standardise each image by its own mean and variance, then zero-pad.

    ``y = (x - mean(x)) / sqrt(var(x) + eps)`` over the pixels of each image
    and channel (computed in float32 outside autocast), then ``pad`` zero
    pixels on each edge. A constant image maps to zeros.

    Parameters
    ----------
    pad : int
        Zero padding on every edge, px (seed paper: 3).
    eps : float
        Added to the variance (units of the input squared). The calibrated
        eta crops have a variance of ~1e-4..1e-3, so the default 1e-12 leaves
        the standardisation exact to ~1e-8 relative.
    """

    def __init__(self, pad=3, eps=1e-12):
        super().__init__()
        self.pad = int(pad)
        self.eps = float(eps)

    def forward(self, x):
        dev = x.device.type
        ctx = (torch.autocast(device_type=dev, enabled=False) if dev in ("cpu", "cuda")
               else contextlib.nullcontext())
        with ctx:
            x = x.float()
            var, mean = torch.var_mean(x, dim=(-2, -1), keepdim=True, unbiased=False)
            x = (x - mean) * torch.rsqrt(var + self.eps)
            if self.pad:
                x = F.pad(x, (self.pad,) * 4)
        return x

    def extra_repr(self):
        return f"pad={self.pad}, eps={self.eps}"


class IdentityBlock(nn.Module):
    """B3: bottleneck residual block with an identity shortcut (C -> C).

    ``ReLU(BN(1x1) -> ReLU -> BN(3x3, pad 1) -> ReLU -> BN(1x1) + x)``.
    """

    def __init__(self, channels, mid=None):
        super().__init__()
        mid = channels if mid is None else mid
        self.conv1 = _conv_bn(channels, mid, 1)
        self.conv2 = _conv_bn(mid, mid, 3, padding=1)
        self.conv3 = _conv_bn(mid, channels, 1)

    def forward(self, x):
        y = F.relu(self.conv1(x))
        y = F.relu(self.conv2(y))
        return F.relu(self.conv3(y) + x)


class ConvBlock(nn.Module):
    """B4: bottleneck residual block, stride 2, 1x1 stride-2 projection shortcut.

    ``ReLU(BN(1x1, s2) -> ReLU -> BN(3x3, pad 1) -> ReLU -> BN(1x1)
    + BN(1x1 s2 shortcut))``; output ``ceil(H/2) x ceil(W/2)``.
    """

    def __init__(self, cin, cout, mid=None, stride=2):
        super().__init__()
        mid = cout if mid is None else mid
        self.conv1 = _conv_bn(cin, mid, 1, stride=stride)
        self.conv2 = _conv_bn(mid, mid, 3, padding=1)
        self.conv3 = _conv_bn(mid, cout, 1)
        self.shortcut = _conv_bn(cin, cout, 1, stride=stride)

    def forward(self, x):
        y = F.relu(self.conv1(x))
        y = F.relu(self.conv2(y))
        return F.relu(self.conv3(y) + self.shortcut(x))


class SeedResNet(nn.Module):
    """The seed paper's ResNet regressor (layout: see the module docstring).

    Parameters
    ----------
    stem_channels : int
        Output channels of B2.
    stage_channels : sequence of int
        Output channels of the convolution block (B4) of each stage; the
        identity block (B3) of a stage works at the stage's input width. The
        last one is the length of the pooled feature vector (paper: 256).
    hidden : int
        Neurons of the dense hidden layer (paper: 1024).
    dropout : float
        Dropout probability after the hidden layer (paper: 0.4).
    pad : int
        Zero padding of B1, px (paper: 3).

    Notes
    -----
    ``forward(x)``: ``x`` of shape ``(B, 1, H, W)`` (or ``(B, H, W)``), any
    float dtype and memory format (``channels_last`` supported); returns
    ``(B,)`` float32 predictions in the units the targets were scaled to
    (the training loop uses standardised targets).
    """

    def __init__(self, stem_channels=128, stage_channels=(128, 256, 256), hidden=1024,
                 dropout=0.4, pad=3):
        super().__init__()
        self.arch_kwargs = {"stem_channels": int(stem_channels),
                            "stage_channels": [int(c) for c in stage_channels],
                            "hidden": int(hidden), "dropout": float(dropout), "pad": int(pad)}
        self.b1 = Standardise(pad)
        self.b2 = nn.Sequential(nn.Conv2d(1, stem_channels, 3, bias=False),
                                nn.BatchNorm2d(stem_channels), nn.ReLU(inplace=True))
        blocks = []
        cin = stem_channels
        for cout in stage_channels:
            blocks += [IdentityBlock(cin), ConvBlock(cin, cout)]
            cin = cout
        self.stages = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Linear(cin, hidden), nn.ReLU(inplace=True),
                                  nn.Dropout(dropout), nn.Linear(hidden, 1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        if x.ndim == 3:
            x = x.unsqueeze(1)
        x = self.b1(x)
        if self.b2[0].weight.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.b2(x)
        x = self.stages(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.head(x).squeeze(1).float()


def count_parameters(model, trainable=True):
    """Number of (trainable) parameters of a module.

    Parameters
    ----------
    model : torch.nn.Module
    trainable : bool
        Count only parameters with ``requires_grad`` (Keras' "trainable
        params"); buffers such as batch-norm running statistics never count.

    Returns
    -------
    int
    """
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable))


def model_flops(model, input_px, batch=1):
    """Floating-point operations of one forward pass (2 x multiply-adds).

    Counted by :class:`torch.utils.flop_counter.FlopCounterMode` on a copy of
    the model on the ``meta`` device (no computation), which counts
    convolutions and matrix products (2 FLOPs per multiply-add) and ignores
    element-wise work (batch norm, ReLU, additions, pooling).

    Parameters
    ----------
    model : torch.nn.Module
        Taking ``(B, 1, input_px, input_px)``.
    input_px : int or (int, int)
        Input edge (or ``(H, W)``), px.
    batch : int
        Batch size counted (FLOPs scale linearly).

    Returns
    -------
    int
        FLOPs of a forward pass of ``batch`` images. A training step costs
        about 3x this (forward + backward), the usual MFU convention.
    """
    from torch.utils.flop_counter import FlopCounterMode

    h, w = (input_px, input_px) if isinstance(input_px, int) else input_px
    m = copy.deepcopy(model).to("meta").eval()
    x = torch.zeros((batch, 1, int(h), int(w)), device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        m(x)
    return int(counter.get_total_flops())
