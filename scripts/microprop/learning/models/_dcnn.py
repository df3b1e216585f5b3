"""The porosity-map classifier of the graphene-oxide cement study (DCNN).

The reference (``../shared/references/dtd_nanoporosity_go_cement.txt``,
section 2.2 and its Fig. 2) classifies 384 x 384 px equivalent-porosity maps
with a network of seven convolutional layers, each followed by batch
normalisation and ReLU, then a classification head. It gives neither the
filter counts nor the pooling; this layout is ours::

    input    (x - input_mean) / input_std, fixed numbers of the training
             maps (the porosity *level* carries information, so no per-map
             standardisation as in the seed ResNet)
    L1..L7   3x3 conv (pad 1, no bias) + BN + ReLU, widths ``widths``;
             a 2x2 max pool after each of the first ``n_pool`` layers
    head     global average pooling -> dense ``widths[-1]`` -> ``n_classes``
             (the logits; softmax in the loss)

Only convolutions, batch norms, ReLUs, max/average pooling and one dense
layer: the layer types deep Taylor decomposition has rules for (zennit's
z+ after ReLUs, z^B at the input, batch norm merged into the convolution by
a canonizer), which the next step of the study applies.

Input ``(B, 1, H, W)`` float32 equivalent porosity (any ``H, W >= 2**n_pool``).
"""
from __future__ import annotations

import torch
from torch import nn

#: the default filter counts of the seven convolutional layers
DCNN_WIDTHS = (16, 32, 32, 64, 64, 128, 128)


class PorosityDCNN(nn.Module):
    """Seven conv + BN + ReLU layers and a linear classification head.

    Parameters
    ----------
    n_classes : int
        Number of specimen classes (>= 2).
    widths : sequence of int
        Filters of the convolutional layers (the reference: seven layers).
    n_pool : int
        A 2 x 2 max pool after each of the first ``n_pool`` layers (5 turns a
        192 px map into 6 x 6 px features, a 384 px one into 12 x 12).
    input_mean, input_std : float
        Fixed input standardisation (equivalent porosity, dimensionless);
        the training loop sets them from the training maps.

    Raises
    ------
    ValueError
        Fewer than 2 classes, no layer, a non-positive ``input_std`` or more
        pools than layers.
    """

    def __init__(self, n_classes=3, widths=DCNN_WIDTHS, n_pool=5, input_mean=0.0, input_std=1.0):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if int(n_classes) < 2 or not widths or not float(input_std) > 0 or not 0 <= int(n_pool) <= len(widths):
            raise ValueError(f"PorosityDCNN: n_classes={n_classes}, widths={widths}, n_pool={n_pool}, "
                             f"input_std={input_std}: expected >= 2 classes, >= 1 layer, "
                             "0 <= n_pool <= layers, input_std > 0")
        self.arch_kwargs = {"n_classes": int(n_classes), "widths": list(widths), "n_pool": int(n_pool),
                            "input_mean": float(input_mean), "input_std": float(input_std)}
        self.register_buffer("input_mean", torch.tensor(float(input_mean)))
        self.register_buffer("input_std", torch.tensor(float(input_std)))
        layers, cin = [], 1
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            if i < int(n_pool):
                layers.append(nn.MaxPool2d(2))
            cin = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(cin, int(n_classes))

    def forward(self, x):
        """Logits ``(B, n_classes)`` of maps ``x`` ``(B, 1, H, W)``."""
        x = (x - self.input_mean) / self.input_std
        return self.head(torch.flatten(self.pool(self.features(x)), 1))
