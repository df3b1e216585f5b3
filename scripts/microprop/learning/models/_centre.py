"""CentreNet: a network built for what an indent probes.

An indent measures the homogenised property of a small interaction zone, a
disc a few contact depths across at the indent's position (the forward model
:func:`microprop.physics.indent_properties`, after Constantinides et al.
2006), not of the whole crop. The seed's ResNet pools its features evenly
over the crop (global average pooling) and standardises each crop by its own
statistics, so it must learn where the centre is from the frame its padding
draws, and it cannot see the absolute backscatter level that tells phases
apart. CentreNet instead::

    input     (x - input_mean) / input_std, fixed numbers of the training crops
              (the calibrated eta level is information; no per-crop standardisation)
    patch     the central ``patch_px`` x ``patch_px`` pixels of the crop
    pool      area average by an integer ``pool`` (stride ``pool``)
    trunk     3x3 convolutions, no padding ("valid") + BN + ReLU, widths ``widths``
              -> features (C, n, n), n = patch_px / pool - 2 len(widths)
    centre    K Gaussian-weighted sums over the feature map, centred on the
              crop's centre, learnable widths ``sigma`` (initialised at the
              interaction-zone size); each weight map sums to 1
    context   (optional) the plain mean over the feature map
    head      dense (K + context) C -> ``hidden`` + ReLU, dropout, dense -> 1

Total stride: ``pool`` (the convolutions have stride 1). Because nothing is
padded and every pooling is a fixed weighted sum, the feature at a pixel
depends on the map around it alone, not on where a crop was cut: a dense map
(every window of an area) is the trunk once over the area, then the
(separable) Gaussian and mean kernels slid over its feature map, then the
head at each window -- *exactly* what the per-window network computes
(:meth:`CentreNet.dense_forward`, tested to float32 rounding), unlike the
seed ResNet (``microprop.learning._dense``).

Geometry (the crop's centre): the patch is the crop's central square, which
needs ``crop - patch_px`` even; the Gaussians are centred on the feature
map's centre ``((n - 1) / 2, (n - 1) / 2)``, the crop's geometric centre.
Every pooling kernel is therefore symmetric under the 8 symmetries of the
square, and the network is D4-invariant whenever its convolution kernels are.

:func:`centre_arch_kwargs` turns physical sizes (nm, um) into these pixel
arguments for a dataset's pixel size and crop size.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

#: default convolution widths of the trunk
CENTRE_WIDTHS = (16, 32, 32, 32)


#: Trainable parameters of ``CentreNet()`` with default arguments.
N_CENTRE_PARAMETERS = 31_732


def _check(cond, msg):
    if not cond:
        raise ValueError(f"CentreNet: {msg}")


class CentreNet(nn.Module):
    """Fully convolutional trunk, Gaussian pooling at the crop's centre, small head.

    Parameters
    ----------
    patch_px : int
        Edge of the central patch the trunk sees, input pixels; a multiple of
        ``pool``. The crops given to ``forward`` must be at least this large,
        with ``crop - patch_px`` even.
    pool : int
        Area-average factor before the trunk (the total stride), >= 1.
    widths : sequence of int
        Output channels of the 3x3 "valid" convolutions (each + BN + ReLU).
    sigmas_px : sequence of float
        Initial standard deviations of the Gaussian weight maps, input
        pixels (learnt; stored as log of feature pixels). May be empty when
        ``context`` is on (a global-average model).
    context : bool
        Also pool the plain mean over the feature map.
    hidden : int
        Neurons of the head's hidden layer.
    dropout : float
        Dropout after the hidden layer.
    input_mean, input_std : float
        Fixed input standardisation (units of the crops, e.g. eta); the
        training loop sets them from the training crops.

    Raises
    ------
    ValueError
        A patch that is not a multiple of ``pool`` or leaves no feature, no
        pooling at all, a non-positive width, sigma or ``input_std``.

    Notes
    -----
    ``forward(x)``: ``x`` of shape ``(B, 1, S, S)`` (or ``(B, S, S)``),
    ``S >= patch_px`` and ``S - patch_px`` even; returns ``(B,)`` float32
    (the standardised target in training).
    """

    #: window rows pooled at once by :meth:`dense_forward` (bounds its memory)
    DENSE_ROWS = 16

    def __init__(self, patch_px=108, pool=2, widths=CENTRE_WIDTHS, sigmas_px=(3.75, 7.5, 15.0),
                 context=True, hidden=64, dropout=0.1, input_mean=0.0, input_std=1.0):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        sigmas = tuple(float(s) for s in sigmas_px)
        patch_px, pool = int(patch_px), int(pool)
        _check(pool >= 1 and patch_px % pool == 0, f"patch_px {patch_px} must be a multiple of pool {pool}")
        _check(widths and min(widths) >= 1, f"widths {widths} must be positive")
        n = patch_px // pool - 2 * len(widths)
        _check(n >= 1, f"patch_px {patch_px} / pool {pool} leaves no feature after "
                       f"{len(widths)} valid 3x3 convolutions")
        _check(sigmas or context, "no pooling: give sigmas_px or context")
        _check(all(s > 0 for s in sigmas), f"sigmas_px {sigmas} must be positive")
        _check(float(input_std) > 0, f"input_std {input_std} must be positive")
        self.arch_kwargs = {"patch_px": patch_px, "pool": pool, "widths": list(widths),
                            "sigmas_px": list(sigmas), "context": bool(context),
                            "hidden": int(hidden), "dropout": float(dropout),
                            "input_mean": float(input_mean), "input_std": float(input_std)}
        self.patch_px, self.pool, self.n_feat, self.context = patch_px, pool, n, bool(context)
        self.register_buffer("input_mean", torch.tensor(float(input_mean)))
        self.register_buffer("input_std", torch.tensor(float(input_std)))
        layers, cin = [], 1
        for w in widths:
            layers += [nn.Conv2d(cin, w, 3, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            cin = w
        self.trunk = nn.Sequential(*layers)
        self.channels = cin
        self.log_sigma = nn.Parameter(torch.log(torch.tensor(sigmas, dtype=torch.float32) / pool))
        n_pool = len(sigmas) + int(context)
        self.head = nn.Sequential(nn.Linear(n_pool * cin, int(hidden)), nn.ReLU(inplace=True),
                                  nn.Dropout(float(dropout)), nn.Linear(int(hidden), 1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    # -- geometry

    @property
    def reach(self):
        """Receptive radius of a feature, pooled pixels (one per 3x3 convolution)."""
        return len(self.arch_kwargs["widths"])

    def sigmas_px(self):
        """The current Gaussian standard deviations, input pixels (numpy array)."""
        return (torch.exp(self.log_sigma.detach()).cpu().numpy() * self.pool).astype(np.float64)

    def kernels_1d(self):
        """``(K', n)`` float32: the 1-D pooling weights (each row sums to 1).

        Row ``k < K`` is the Gaussian ``exp(-u**2 / (2 sigma_k**2))`` at the
        feature positions ``u = i - (n - 1) / 2`` normalised to sum 1 (its
        outer product with itself is the 2-D weight map, which then sums to
        1); the last row, with ``context``, is the uniform ``1 / n``.
        """
        n = self.n_feat
        u = torch.arange(n, device=self.log_sigma.device, dtype=torch.float32) - (n - 1) / 2.0
        rows = []
        if self.log_sigma.numel():
            sigma = torch.exp(self.log_sigma.float())[:, None]
            g = torch.exp(-0.5 * (u[None, :] / sigma) ** 2)
            rows.append(g / g.sum(dim=1, keepdim=True))
        if self.context:
            rows.append(torch.full((1, n), 1.0 / n, device=u.device))
        return torch.cat(rows)

    def weight_maps(self):
        """``(K', n, n)`` float32: the 2-D pooling weight maps (outer products)."""
        k = self.kernels_1d()
        return k[:, :, None] * k[:, None, :]

    def _standardise(self, x):
        return (x.float() - self.input_mean) / self.input_std

    def _pooled_input(self, x):
        """The central patch of crops ``x`` ``(B, 1, S, S)``, standardised and area-averaged."""
        s = x.shape[-1]
        p = self.patch_px
        if x.shape[-2] != s or s < p or (s - p) % 2:
            raise ValueError(f"CentreNet: crops of {tuple(x.shape[-2:])} px; expected square "
                             f"crops of at least patch_px = {p} px with an even margin")
        o = (s - p) // 2
        x = self._standardise(x[..., o:o + p, o:o + p])
        return F.avg_pool2d(x, self.pool) if self.pool > 1 else x

    def features(self, x):
        """Trunk features of crops ``x``: ``(B, C, n, n)``."""
        if x.ndim == 3:
            x = x.unsqueeze(1)
        return self.trunk(self._pooled_input(x))

    def pooled(self, feats):
        """``(B, K' C)``: each weight map's sum over ``feats`` ``(B, C, n, n)``, kernel-major."""
        k = self.kernels_1d().to(feats.dtype)
        v = torch.einsum("bcij,ki,kj->bkc", feats, k, k)
        return v.reshape(v.shape[0], -1)

    def forward(self, x):
        return self.head(self.pooled(self.features(x))).squeeze(1).float()

    # -- dense

    @torch.no_grad()
    def dense_forward(self, tile, rows=None, cols=None):
        """The network's output for every patch position of a map tile, computed once.

        ``out[i, j]`` is ``forward`` of a crop whose central patch has its
        top-left pixel at ``tile[rows[i], cols[j]]`` (the crop itself may
        reach beyond the tile: only its patch is seen). Per phase
        ``(ry, rx)`` of the pool grid the tile is standardised and
        area-averaged with stride ``pool`` from that offset, the trunk runs
        once over it, and the pooling kernels are applied to its features
        where a patch starts (separable: rows, then columns; ``DENSE_ROWS``
        window rows at a time); then the head. The arithmetic is that of
        ``forward`` in another order, so the two agree to float32 rounding.

        Parameters
        ----------
        tile : torch.Tensor, shape (H, W) or (1, 1, H, W)
            Map values, same units as the crops (not standardised); finite.
        rows, cols : array-like of int, optional
            Patch origins wanted, ``0 .. H - patch_px`` (and ``W``); default
            every one.

        Returns
        -------
        torch.Tensor, shape (len(rows), len(cols)), float32
            Standardised outputs (as ``forward``; eval mode assumed).
        """
        x = tile.reshape(1, 1, *tile.shape[-2:])
        h, w = x.shape[-2:]
        p, k = self.patch_px, self.pool
        rows = np.arange(h - p + 1) if rows is None else np.asarray(rows, np.int64)
        cols = np.arange(w - p + 1) if cols is None else np.asarray(cols, np.int64)
        if rows.size and (rows.min() < 0 or rows.max() > h - p):
            raise ValueError(f"dense_forward: rows outside 0..{h - p}")
        if cols.size and (cols.min() < 0 or cols.max() > w - p):
            raise ValueError(f"dense_forward: cols outside 0..{w - p}")
        out = torch.empty((rows.size, cols.size), dtype=torch.float32, device=x.device)
        kern = self.kernels_1d()
        kp, c, n = kern.shape[0], self.channels, self.n_feat
        x = self._standardise(x)
        u = np.arange(n)
        for ry in np.unique(rows % k):
            for rx in np.unique(cols % k):
                ri, ci = np.flatnonzero(rows % k == ry), np.flatnonzero(cols % k == rx)
                a, b = (rows[ri] - ry) // k, (cols[ci] - rx) // k      # feature-grid origins
                sub = x[..., ry:, rx:]
                sub = F.avg_pool2d(sub, k) if k > 1 else sub
                f = self.trunk(sub)[0]                                   # (C, h', w')
                kf = kern.to(f.dtype)
                jb = torch.as_tensor(b[:, None] + u[None, :], device=f.device)   # (nb, n)
                for i0 in range(0, a.size, self.DENSE_ROWS):
                    ia = a[i0:i0 + self.DENSE_ROWS]
                    ja = torch.as_tensor(ia[:, None] + u[None, :], device=f.device)
                    v = torch.einsum("cinw,kn->ckiw", f[:, ja, :], kf)  # rows pooled: (C, K', na, w')
                    v = torch.einsum("ckijn,kn->ijkc", v[..., jb], kf)   # columns: (na, nb, K', C)
                    z = self.head(v.reshape(ia.size * b.size, kp * c)).float()
                    ti = torch.as_tensor(ri[i0:i0 + ia.size], device=out.device)[:, None]
                    out[ti, torch.as_tensor(ci, device=out.device)[None, :]] = z.reshape(ia.size,
                                                                                         b.size)
        return out


def centre_arch_kwargs(pixel_size_nm, crop_px, resolution_nm=80.0, patch_um=4.32,
                       sigma_um=(0.15, 0.3, 0.6), widths=CENTRE_WIDTHS, context=True, hidden=64,
                       dropout=0.1):
    """:class:`CentreNet` arguments (pixels) from physical sizes.

    Parameters
    ----------
    pixel_size_nm : float
        Pixel size of the crops, nm.
    crop_px : int
        Crop edge, px.
    resolution_nm : float
        Wanted pixel size of the trunk's input, nm: ``pool =
        max(1, round(resolution_nm / pixel_size_nm))``.
    patch_um : float
        Wanted edge of the central patch, um. The patch is rounded to a
        multiple of ``pool`` with an even margin to the crop (the nearest
        such edge), at least ``2 len(widths) + 3`` pooled pixels (a 3 x 3
        feature map) and at most the crop; ``pool`` is lowered where the
        crop is too small for it.
    sigma_um : sequence of float
        Initial Gaussian standard deviations, um. An indent's interaction
        zone is a disc of radius about three contact depths (0.3-0.75 um for
        the demo's 100-250 nm); a disc of radius ``R`` has the standard
        deviation ``R / 2`` along each axis, hence the defaults, one below,
        one at and one above that size.
    widths, context, hidden, dropout
        As :class:`CentreNet`.

    Returns
    -------
    dict
        ``patch_px, pool, widths, sigmas_px, context, hidden, dropout``.

    Raises
    ------
    ValueError
        Non-positive sizes, or a crop too small for the trunk.
    """
    ps = float(pixel_size_nm)
    s = int(crop_px)
    _check(ps > 0 and s >= 1 and float(resolution_nm) > 0 and float(patch_um) > 0,
           "pixel size, crop, resolution and patch must be positive")
    pool = max(1, round(float(resolution_nm) / ps))
    widths = [int(w) for w in widths]
    m_min = 2 * len(widths) + 3
    # a coarser pool than the crop holds, or an even pool on an odd crop (no even margin), is cut
    while pool > 1 and (pool * m_min > s or (pool % 2 == 0 and s % 2)):
        pool -= 1
    want = max(float(patch_um) * 1000.0 / (ps * pool), m_min)
    fits = [m for m in range(m_min, s // pool + 1) if (s - m * pool) % 2 == 0]
    _check(fits, f"crops of {s} px at {ps} nm are too small for {len(widths)} valid convolutions")
    m = min(fits, key=lambda v: (abs(v - want), -v))
    sig = [float(v) * 1000.0 / ps for v in sigma_um]
    return {"patch_px": m * pool, "pool": pool, "widths": widths, "sigmas_px": sig,
            "context": bool(context), "hidden": int(hidden), "dropout": float(dropout)}
