"""The sample-level regression CNN of the ceramic-metal conductivity study.

The reference (``../shared/references/cnn_conductivity_lto_ni_poster.txt``,
"Deep Learning" and its Fig. 4) regresses the log10 conductivity of a sample
from one SEM image with alternating convolution (padded) and max-pooling
layers, global average pooling and dense layers to a single value. It gives
no filter counts; this layout is ours::

    stages   ``len(widths)`` x [3x3 conv (pad 1, no bias) + BN + ReLU,
             2x2 max pool], the last stage without its pool
    pool     global average pooling of the last feature maps A (C channels)
    head     dense C -> ``hidden`` + ReLU (+ dropout) -> dense -> 1
             (the standardised target; the training loop keeps its mean and sd)

Regression activation maps (:meth:`ConductivityCNN.activation_maps`). With
dropout off (eval), the head is piecewise linear: for one image, with ``a``
the set of hidden units its pooled features switch on, the prediction is
``w_eff . GAP(A) + b_eff`` with ``w_eff = W1^T (w2 * [a])`` and ``b_eff =
w2 . (b1 * [a]) + b2``. So ``RAM(x) = sum_c w_eff,c A_c(x)`` is the last
feature maps weighted by the head's weights after the pooling, and its mean
over the map plus ``b_eff`` is the prediction, exactly (the regression
activation map of Wang & Yang 2017, arXiv:1703.10757, which has a single
linear layer after the pooling, is the case ``hidden = None``).

Input ``(B, 1, H, W)`` float32 images normalised per image
(:func:`microprop.imaging.normalise_images`), any ``H, W >= 2**(stages - 1)``.
"""
from __future__ import annotations

import torch
from torch import nn

#: the default filter counts of the convolutional stages (narrow early stages: on the CPU a
#: step costs a third of (16, 32, 64, 64, 96)'s, and it did better on the demo's first fold)
CONDUCTIVITY_WIDTHS = (8, 16, 32, 64, 64)


class ConductivityCNN(nn.Module):
    """Conv + BN + ReLU + max-pool stages, global average pooling, dense head to one value.

    Parameters
    ----------
    widths : sequence of int
        Filters per stage (a 2x2 max pool after every stage but the last).
    hidden : int or None
        Units of the hidden dense layer; None: one linear layer after the
        pooling.
    dropout : float
        Dropout before the last dense layer (training only).

    Raises
    ------
    ValueError
        No stage, a non-positive width or hidden size, or dropout outside [0, 1).
    """

    def __init__(self, widths=CONDUCTIVITY_WIDTHS, hidden=32, dropout=0.2):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if not widths or min(widths) < 1 or (hidden is not None and int(hidden) < 1) or not 0 <= float(dropout) < 1:
            raise ValueError(f"ConductivityCNN: widths={widths}, hidden={hidden}, dropout={dropout}: expected "
                             ">= 1 positive width, hidden >= 1 or None, 0 <= dropout < 1")
        self.arch_kwargs = {"widths": list(widths), "hidden": None if hidden is None else int(hidden),
                            "dropout": float(dropout)}
        layers, cin = [], 1
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        if hidden is None:
            self.hidden = None
            self.drop = nn.Dropout(float(dropout))
            self.out = nn.Linear(cin, 1)
        else:
            self.hidden = nn.Linear(cin, int(hidden))
            self.drop = nn.Dropout(float(dropout))
            self.out = nn.Linear(int(hidden), 1)

    def head(self, g):
        """The dense head on pooled features ``g`` ``(B, C)`` -> ``(B,)``."""
        if self.hidden is not None:
            g = torch.relu(self.hidden(g))
        return self.out(self.drop(g)).squeeze(1)

    def forward(self, x):
        """The standardised target ``(B,)`` of images ``x`` ``(B, 1, H, W)``."""
        return self.head(torch.flatten(self.pool(self.features(x)), 1))

    @torch.no_grad()
    def activation_maps(self, x):
        """Regression activation maps of images ``x`` (see the module), eval mode.

        Parameters
        ----------
        x : torch.Tensor, shape (B, 1, H, W), float32

        Returns
        -------
        ram : torch.Tensor, shape (B, h, w), float32
            In standardised-target units per feature-map pixel; its mean over
            ``(h, w)`` plus ``bias`` is the prediction.
        bias : torch.Tensor, shape (B,)
        pred : torch.Tensor, shape (B,)
            The network's prediction (standardised), for the check.

        Raises
        ------
        RuntimeError
            Called in training mode (dropout would break the identity).
        """
        if self.training:
            raise RuntimeError("ConductivityCNN.activation_maps: call model.eval() first")
        a = self.features(x)                                   # (B, C, h, w)
        g = a.mean(dim=(2, 3))
        w2, b2 = self.out.weight[0], self.out.bias[0]
        if self.hidden is None:
            w_eff = w2.expand(len(g), -1)
            b_eff = b2.expand(len(g))
        else:
            on = (self.hidden(g) > 0).to(g.dtype)              # (B, hidden): the units this image switches on
            w_eff = (on * w2) @ self.hidden.weight             # (B, C)
            b_eff = (on * w2 * self.hidden.bias).sum(1) + b2
        ram = torch.einsum("bc,bchw->bhw", w_eff, a)
        return ram, b_eff, self.head(g)
