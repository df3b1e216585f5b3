"""Tensor preparation for the network: D4 augmentation, downsampling, resident crops.

- :func:`d4_index_maps` / :func:`d4_apply`: the 8 symmetries of the square
  (dihedral group D4) as flat pixel-index maps, applied per sample to a batch
  in one gather;
- :func:`downsample_images`: area averaging to the input size, done once at
  load;
- :func:`quantize_uint8`: the affine 8-bit copy of the crops kept resident on
  CUDA;
- ``_gather`` / ``_to_device``: a batch of the resident crops as float32 on
  the device (dequantised), and where the resident crops live (GPU when they
  fit, else pinned CPU memory).
"""
from __future__ import annotations

import logging

import torch
from torch.nn import functional as F

from ..errors import InputError

log = logging.getLogger(__name__)


def d4_index_maps(size, device=None):
    """Flat pixel-index maps of the 8 symmetries of a square image (group D4).

    Element ``g = 4 * flip + k`` is "rotate by ``k`` x 90 degrees
    (``torch.rot90`` over the last two axes), then, if ``flip``, mirror left-right".
    For an image ``x`` of shape ``(S, S)``,
    ``x.flatten()[maps[g]].view(S, S)`` is the transformed image.

    Parameters
    ----------
    size : int
        Image edge ``S``, px.
    device : torch.device, optional

    Returns
    -------
    torch.Tensor, shape (8, S*S), int64
    """
    base = torch.arange(size * size, device=device).view(size, size)
    maps = []
    for flip in (0, 1):
        for k in range(4):
            m = torch.rot90(base, k, dims=(0, 1))
            if flip:
                m = torch.flip(m, dims=(1,))
            maps.append(m.reshape(-1))
    return torch.stack(maps)


def d4_apply(x, choice, maps):
    """Apply a per-sample D4 symmetry to a batch, in one vectorised gather.

    Parameters
    ----------
    x : torch.Tensor, shape (B, C, S, S)
    choice : torch.Tensor, shape (B,), int64 in 0..7, on ``x.device``
        Group element per sample (see :func:`d4_index_maps`).
    maps : torch.Tensor, shape (8, S*S), int64, on ``x.device``

    Returns
    -------
    torch.Tensor, shape (B, C, S, S), contiguous
        The pixel values of each image permuted, so their multiset is kept.
    """
    b, c, h, w = x.shape
    if h != w:
        raise InputError(f"D4 augmentation needs square images, got {h} x {w}")
    idx = maps[choice].unsqueeze(1).expand(b, c, h * w)
    return torch.gather(x.reshape(b, c, h * w), 2, idx).view(b, c, h, w)


def downsample_images(images, input_px, device=None, chunk=256):
    """Area-average square images to ``input_px`` x ``input_px`` (done once at load).

    Uses ``F.adaptive_avg_pool2d`` (the same area averaging as
    ``F.interpolate(mode="area")``), which averages each output pixel over the
    input pixels its window covers; non-integer factors are allowed.

    Parameters
    ----------
    images : numpy.ndarray or torch.Tensor, shape (N, S, S)
    input_px : int or None
        Output edge, px; ``None`` or ``S`` returns the images unchanged
        (as a float32 tensor).
    device : torch.device, optional
        Where the work is done and the result lives.
    chunk : int
        Images per pooling call (bounds the temporary memory).

    Returns
    -------
    torch.Tensor, shape (N, 1, P, P), float32
    """
    x = torch.as_tensor(images)
    if device is not None:
        x = x.to(device)
    x = x.float().unsqueeze(1)
    if input_px is None or int(input_px) == x.shape[-1]:
        return x
    out = [F.adaptive_avg_pool2d(x[i:i + chunk], int(input_px)) for i in range(0, len(x), chunk)]
    return torch.cat(out) if out else x.new_empty((0, 1, int(input_px), int(input_px)))


def quantize_uint8(x, lo=None, hi=None):
    """Affine 8-bit quantisation of float images, for a compact resident copy.

    The calibrated crops (eta or porosity) come from 8- or 16-bit detector
    grey through a linear calibration, so 256 levels over the data's range
    lose little: the error is at most half a step, ``(hi - lo) / 510``
    (0.0006 in eta for a 0.05-0.35 range), below the shot noise of a BSE
    pixel. The seed network standardises every crop (B1), so the offset and
    scale do not matter, only the rounding.

    Parameters
    ----------
    x : torch.Tensor, float
        Images, any shape.
    lo, hi : float, optional
        The range mapped onto 0..255 (default: ``x.min()``, ``x.max()``);
        values outside are clipped.

    Returns
    -------
    q : torch.Tensor, uint8, shape of ``x``
    lo : float
    step : float
        ``x ~= q * step + lo``.
    """
    lo = float(x.min()) if lo is None else float(lo)
    hi = float(x.max()) if hi is None else float(hi)
    step = (hi - lo) / 255.0 if hi > lo else 1.0
    q = torch.round((x - lo) / step).clamp_(0, 255).to(torch.uint8)
    return q, lo, step


def _gather(x, idx, dev, dequant):
    """Rows ``idx`` of the resident ``x`` as float32 on ``dev``."""
    xb = x[idx].to(dev, non_blocking=True)
    if dequant is not None:
        lo, step = dequant
        xb = xb.float().mul_(step).add_(lo)
    return xb


def _to_device(x, dev):
    """Keep ``x`` resident on a CUDA device when it fits, else in pinned CPU memory."""
    if dev.type != "cuda":
        return x
    free, _ = torch.cuda.mem_get_info(dev)
    if x.numel() * x.element_size() < 0.5 * free:
        return x.to(dev)
    log.warning("%.2f GB of crops do not fit the GPU comfortably: kept in pinned CPU memory",
                x.numel() * x.element_size() / 1e9)
    return x.pin_memory()


def symmetry_augment(images, isotropic, unique=True):
    """The images under the symmetries of the square that keep the pixel grid (no interpolation).

    Rotations by multiples of 90 degrees and mirror images (the dihedral
    group D4, 8 elements; 4 for a non-square image: identity, the two mirrors
    and the half turn), applied with ``numpy.rot90``/``numpy.flip``, so every
    pixel is moved, none resampled. Allowed only for an isotropic material:
    a rotated image of an anisotropic one shows a microstructure the sample
    does not have (the reference: ``../shared/references/cnn_conductivity_lto_ni_poster.txt``,
    "Data & Processing").

    Parameters
    ----------
    images : array-like, shape (N, H, W)
    isotropic : bool
        The config's declaration; False raises.
    unique : bool
        Drop a transformed image equal to an earlier one of the same source
        (a symmetric image gives fewer distinct views).

    Returns
    -------
    augmented : numpy.ndarray, shape (M, H, W), the input's dtype
    source : numpy.ndarray, shape (M,), int
        The input image each view comes from.
    element : numpy.ndarray, shape (M,), int
        ``4 * flip + k``: rotation by ``k`` x 90 degrees, then a left-right
        mirror if ``flip`` (as :func:`d4_index_maps`).

    Raises
    ------
    InputError
        ``isotropic`` false, or not a 3-D stack.
    """
    import numpy as np

    if not isotropic:
        raise InputError("symmetry_augment: the material is not declared isotropic (config: isotropic: true); "
                         "rotated or mirrored images would show a microstructure it does not have")
    x = np.asarray(images)
    if x.ndim != 3:
        raise InputError(f"symmetry_augment: expected (N, H, W), got shape {x.shape}")
    square = x.shape[1] == x.shape[2]
    elements = [4 * f + k for f in (0, 1) for k in range(4) if square or k % 2 == 0]
    out, src, elem = [], [], []
    for i, img in enumerate(x):
        seen = []
        for g in elements:
            v = np.rot90(img, g % 4)
            if g >= 4:
                v = np.flip(v, axis=1)
            if unique and any(np.array_equal(v, s) for s in seen):
                continue
            seen.append(v)
            out.append(np.ascontiguousarray(v))
            src.append(i)
            elem.append(g)
    return np.stack(out), np.asarray(src), np.asarray(elem)
