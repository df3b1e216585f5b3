"""Dense property maps that share the computation of overlapping windows.

Exact mapping (:func:`microprop.learning.predict_map`) cuts every window out
of the map, area-averages it to the network's input size, standardises it
and runs the whole network on it. At a 1 um step the windows of a 10 um
crop overlap 99 %, so most of that work is repeated. The dense mode runs the
convolutional trunk of the seed ResNet once over the whole (resampled) map
and pools its feature map over each window's footprint:

1. **Resampling.** The map is area-averaged once onto a global grid of pixels
   ``f = S / P`` map pixels wide (``S`` = crop, ``P`` = ``input_px``;
   :func:`area_downsample`): down pixel ``i`` covers map pixels
   ``[i f, (i + 1) f)``, with fractional weights at its edges. A window whose
   crop starts at map pixel ``x0`` is *snapped* to the down pixel
   ``m = round(x0 / f)``: its dense footprint lies at most ``f / 2`` map
   pixels from the exact crop (the exact crop is pooled by
   ``torch.nn.functional.adaptive_avg_pool2d``, whose bins are aligned to the
   crop and overlap by a pixel where ``f`` is not an integer).
2. **Standardisation.** The network standardises every crop by its own mean
   and standard deviation (block B1), a different affine map per window, so
   the first ReLU already makes the trunk's activations window-specific. The
   dense trunk instead sees the map standardised *locally*: each down pixel by
   the mean and standard deviation of the ``b x b`` box of down pixels
   centred on it (``b = P`` by default: the statistics of the window centred
   there; :func:`local_standardise`). Outside the map and at non-finite
   pixels the standardised map is 0, the value B1's zero padding has.
3. **Trunk.** The trunk (stem, identity and convolution blocks) runs over
   tiles of the standardised map in *polyphase* form (shift-and-stitch,
   Long et al. 2015, CVPR, "Fully convolutional networks", sec. 3.2): at each
   stride-2 block the feature map is split into its 2 x 2 sub-grids, which
   run on as a batch with stride 1, so that after ``L`` such blocks the
   ``4**L`` sub-grids hold the final features at *every* down pixel, each
   computed exactly as the strided network computes it on a crop whose grid
   contains that pixel. Only the sub-grids a window needs are computed after
   the last split.
4. **Pooling and head.** The network's global average pooling over a crop's
   ``n x n`` final features becomes the mean of the dense final features at
   the ``n x n`` positions ``m + o + 2**L k`` (``o = 1 - pad``: the crop
   position of the first stem output); the dense head is the model's head.

What is not reproduced, and why the result differs from exact inference:

* the crop's zero padding (B1 and every 3x3 convolution): in the dense trunk
  a feature near a window's edge sees the neighbouring map, in the exact one
  zeros (for the seed ResNet at 32 px every final feature's receptive field,
  45 px, reaches past the crop);
* the per-window standardisation (replaced by the local one);
* the snapping of the window (at most ``f / 2`` map pixels) and the bins of
  the area average.

The difference is therefore *measured* (:func:`dense_agreement`) against
exact inference on a random sample of the same windows, and reported with
the map. On the demo's model (seed ResNet, 250 px crops area-averaged to
32 px, CPU-reduced training) it is large: R2 0.27 on 10,000 windows of A4
at a 1 um step, largest difference 155 GPa, mean 15.5 GPa. Measured on
sampled windows, the snapping and resampling alone keep R2 at 0.986; the
local standardisation (with each crop's zero padding kept) brings it to
0.66, and the missing zero frame does the rest: with the crop's own
statistics but the neighbouring map in place of the padding R2 is -1.2.
The network has learnt to use the frame its padding puts around every
crop (its final features' receptive field, 45 px, is wider than the
crop), which no shared computation over the map reproduces. The mode is
therefore not the default (``learning.map_mode: exact``).

**CentreNet is exact.** For an ensemble of
:class:`~microprop.learning.models.CentreNet` the dense map takes another
path (``_centre_dense_map``): that network pads nothing, standardises with
fixed numbers and pools with fixed weights, so running its trunk once over a
tile of the map and sliding its pooling kernels over the features
(:meth:`~microprop.learning.models.CentreNet.dense_forward`, per phase of its
integer area average) gives every window's value as the per-window network
computes it, at any step: no resampling, no snapping, float32 rounding only
(tested to 1e-4; :func:`dense_agreement` measures it on the map).

* :func:`dense_predict_map` -- the dense map (same windows and return
  contract as :func:`microprop.learning.predict_map`).
* :func:`dense_agreement` -- R2, largest and mean absolute difference between
  the dense map and exact per-window inference on sampled windows.
* :class:`DenseTrunk` -- a SeedResNet in polyphase form (its geometry).
"""
from __future__ import annotations

import copy
import logging
import math
import time

import numpy as np
import torch
from scipy import sparse
from torch.nn import functional as F

from ..errors import InputError
from ..progress import progress
from ._device import resolve_device
from ._mapping import STRIP_PX, _check_window, _read, _strips, window_centres
from .models import CentreNet, ConvBlock, IdentityBlock, SeedResNet

log = logging.getLogger(__name__)

#: Default edge of the trunk's tiles, in window origins (down pixels) per tile.
TILE_PX = 256


#: Windows drawn by default for :func:`dense_agreement`.
CHECK_WINDOWS = 10_000


# --------------------------------------------------------------------------
# resampling and local standardisation
# --------------------------------------------------------------------------

def _area_weights(n_out, factor, n_src, src0=0, out0=0):
    """Sparse ``(n_out, n_src)`` area weights: output ``i`` covers ``[(out0+i) f, (out0+i+1) f)``.

    Source pixel ``k`` covers ``[src0 + k, src0 + k + 1)``; each weight is the
    overlap length over ``f`` clipped to the source range, so a row sums to 1
    only where the output pixel lies wholly inside the source.
    """
    f = float(factor)
    rows, cols, vals = [], [], []
    for i in range(int(n_out)):
        lo, hi = (out0 + i) * f - src0, (out0 + i + 1) * f - src0
        k0, k1 = max(int(math.floor(lo)), 0), min(int(math.ceil(hi)), int(n_src))
        for k in range(k0, k1):
            w = min(hi, k + 1) - max(lo, k)
            if w > 1e-12:
                rows.append(i)
                cols.append(k)
                vals.append(w / f)
    return sparse.csr_matrix((np.asarray(vals, np.float64), (rows, cols)),
                             shape=(int(n_out), int(n_src)))


def down_shape(shape, factor):
    """Shape ``(Hd, Wd)`` of :func:`area_downsample`: ``ceil(L / f)`` per axis (int)."""
    return tuple(int(math.ceil(int(v) / float(factor) - 1e-9)) for v in shape)


def area_downsample(calibrated, factor, strip_px=STRIP_PX, desc="resample"):
    """Area-average a map onto a global grid of ``factor``-pixel-wide pixels.

    Down pixel ``(i, j)`` is the mean of the map over rows ``[i f, (i+1) f)``
    and columns ``[j f, (j+1) f)`` (fractional pixels weighted by their
    overlap; the last row and column average over the part inside the map).
    The map is read in strips of about ``strip_px`` rows, each row once.

    Parameters
    ----------
    calibrated : zarr.Array or numpy.ndarray, shape (H, W)
        Calibrated map (float); anything that slices like a numpy array.
    factor : float
        ``f >= 1``, map pixels per down pixel (``crop_size_px / input_px``).
    strip_px : int
        Map rows read at once.
    desc : str
        Label of the progress bar.

    Returns
    -------
    numpy.ndarray, shape (ceil(H / f), ceil(W / f)), float32
        NaN where a contributing map pixel is not finite.

    Raises
    ------
    InputError
        If the map is not 2D or ``factor < 1``.
    """
    if len(calibrated.shape) != 2:
        raise InputError(f"area_downsample: expected a 2D map, got shape {tuple(calibrated.shape)}")
    f = float(factor)
    if not f >= 1.0:
        raise InputError(f"area_downsample: factor must be >= 1, got {factor}")
    h, w = (int(v) for v in calibrated.shape)
    hd, wd = down_shape((h, w), f)
    wx = _area_weights(wd, f, w).T.tocsr().astype(np.float32)        # (W, Wd)
    out = np.empty((hd, wd), np.float32)
    per = max(1, int(max(int(strip_px), f) // f))                     # down rows per strip
    with progress(total=hd, desc=desc, unit="row") as bar:
        for i0 in range(0, hd, per):
            i1 = min(i0 + per, hd)
            r0, r1 = int(math.floor(i0 * f)), min(int(math.ceil(i1 * f)), h)
            strip = _read(calibrated, r0, r1, 0, w)
            wy = _area_weights(i1 - i0, f, r1 - r0, src0=r0, out0=i0).astype(np.float32)
            rows = wy @ strip                                          # (i1-i0, W)
            out[i0:i1] = (wx.T @ rows.T).T
            bar.update(i1 - i0)
    # fractional weights of the last row / column sum to less than one: renormalise
    for axis, n in ((0, hd), (1, wd)):
        covered = (min((n) * f, (h, w)[axis]) - (n - 1) * f) / f
        if covered < 1 - 1e-9:
            idx = (slice(n - 1, n), slice(None)) if axis == 0 else (slice(None), slice(n - 1, n))
            out[idx] /= np.float32(covered)
    return out


def _box_bounds(length, b):
    """First index of the ``b``-pixel box of every position, centred and kept inside ``[0, L)``."""
    lo = np.arange(int(length)) - b // 2
    return np.clip(lo, 0, max(int(length) - b, 0))


def local_standardise(down, box_px, eps=1e-12, block=1024):
    """Standardise each pixel by the mean and variance of the box centred on it.

    ``y = (x - mean_b(x)) / sqrt(var_b(x) + eps)`` with the mean and
    (population) variance over the finite pixels of the ``b x b`` box around
    the pixel (rows ``v - b//2 .. v - b//2 + b - 1``, the same for columns):
    the statistics of the window of edge ``b`` centred there. Near the map's
    edges the box is moved inside the map (as the windows are), so that an
    edge pixel gets the statistics of the nearest whole window. Non-finite
    pixels give 0 and are left out of the statistics. Sums by integral
    images in float64, in row blocks of ``block`` rows.

    Parameters
    ----------
    down : numpy.ndarray, shape (Hd, Wd), float
        The resampled map (:func:`area_downsample`).
    box_px : int
        Box edge ``b``, pixels of ``down`` (cut to the map's size).
    eps : float
        Added to the variance (the network's B1 epsilon).
    block : int
        Rows per block.

    Returns
    -------
    numpy.ndarray, shape (Hd, Wd), float32

    Raises
    ------
    InputError
        If ``box_px < 1`` or ``down`` is not 2D.
    """
    if np.ndim(down) != 2:
        raise InputError(f"local_standardise: expected a 2D map, got shape {np.shape(down)}")
    hd, wd = down.shape
    if int(box_px) < 1:
        raise InputError(f"local_standardise: box_px must be >= 1, got {box_px}")
    by, bx = min(int(box_px), hd), min(int(box_px), wd)
    ly, lx = _box_bounds(hd, by), _box_bounds(wd, bx)
    out = np.empty(down.shape, np.float32)
    finite = np.isfinite(down)
    shift = float(np.mean(down[finite])) if finite.any() else 0.0     # against cancellation

    def box(values, rows):
        c = np.zeros((values.shape[0] + 1, wd + 1), np.float64)
        np.cumsum(np.cumsum(values, 0), 1, out=c[1:, 1:])
        y0, x0 = rows, lx
        return (c[y0 + by][:, x0 + bx] - c[y0][:, x0 + bx] - c[y0 + by][:, x0]
                + c[y0][:, x0])

    for r0 in range(0, hd, int(block)):
        r1 = min(r0 + int(block), hd)
        a0, a1 = int(ly[r0]), int(ly[r1 - 1]) + by
        ok = finite[a0:a1]
        xz = np.where(ok, np.asarray(down[a0:a1], np.float64) - shift, 0.0)
        rows = ly[r0:r1] - a0
        n = box(ok.astype(np.float64), rows)
        s1, s2 = box(xz, rows), box(xz * xz, rows)
        x = xz[r0 - a0:r1 - a0]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = s1 / n
            var = np.maximum(s2 / n - mean * mean, 0.0)
            y = np.where(ok[r0 - a0:r1 - a0] & (n > 0), (x - mean) / np.sqrt(var + float(eps)),
                         0.0)
        out[r0:r1] = y
    return out


# --------------------------------------------------------------------------
# the trunk in polyphase form
# --------------------------------------------------------------------------

def _unstrided(block):
    """Copy of a ConvBlock with its stride-2 1x1 convolutions at stride 1."""
    b = copy.deepcopy(block)
    for conv in (b.conv1[0], b.shortcut[0]):
        if conv.kernel_size != (1, 1):
            raise InputError("DenseTrunk: a convolution block's strided convolutions must be "
                             f"1x1, got {conv.kernel_size}")
        conv.stride = (1, 1)
    return b


def _split(x, offsets, spacing, keep):
    """Split every sub-grid of ``x`` into its 2 x 2 sub-grids; keep those ``keep`` accepts.

    ``x`` is ``(B, C, H, W)`` with ``offsets[b] = (oy, ox)``: element ``b``'s
    pixel ``(i, j)`` lies at tile position ``(oy + spacing i, ox + spacing j)``.
    """
    parts, new = [], []
    for ry in (0, 1):
        for rx in (0, 1):
            sel = [b for b, (oy, ox) in enumerate(offsets)
                   if keep(oy + ry * spacing, ox + rx * spacing)]
            if not sel:
                continue
            parts.append(x[sel, :, ry::2, rx::2])
            new += [(offsets[b][0] + ry * spacing, offsets[b][1] + rx * spacing) for b in sel]
    return torch.cat(parts), new


class DenseTrunk(torch.nn.Module):
    """A :class:`~microprop.learning.models.SeedResNet` in polyphase form.

    Parameters
    ----------
    model : SeedResNet
        Trained network (eval mode); copied, not changed.
    input_px : int
        Edge ``P`` of the network's input crops, px.

    Attributes
    ----------
    levels : int
        ``L``, stride-2 blocks; final features every ``2**L`` pixels of a crop.
    first : int
        ``o = 1 - pad``: crop position of the first stem output (and of the
        first final feature), px.
    n_final : int
        ``n``: final features per axis of a ``P``-pixel crop.
    reach : int
        Receptive radius of a final feature, px (input pixels on either side).

    Raises
    ------
    InputError
        If ``model`` is not a SeedResNet of the known layout or ``input_px``
        is smaller than one pixel.

    Notes
    -----
    ``forward(x, need_y, need_x)``: ``x`` of shape ``(1, 1, N, M)`` (``N, M``
    multiples of ``2**L``), the locally standardised map of a tile (no B1);
    ``need_y`` / ``need_x`` are the residues (mod ``2**L``) of the tile
    positions whose final features are needed. Returns ``(feats, offsets)``:
    ``feats`` of shape ``(K, C, N / 2**L, M / 2**L)`` and ``offsets[k] =
    (oy, ox)``, so that ``feats[k, :, i, j]`` is the final feature at tile
    position ``(oy + 2**L i, ox + 2**L j)``.
    """

    def __init__(self, model, input_px):
        super().__init__()
        if not isinstance(model, SeedResNet):
            raise InputError(f"DenseTrunk: expected a SeedResNet, got {type(model).__name__}")
        p = int(input_px)
        if p < 1:
            raise InputError(f"DenseTrunk: input_px must be >= 1, got {input_px}")
        stem = model.b2[0]
        if stem.kernel_size != (3, 3) or stem.padding != (0, 0) or stem.stride != (1, 1):
            raise InputError("DenseTrunk: expected a 3x3 'valid' stride-1 stem")
        m = copy.deepcopy(model).eval()
        self.stem = torch.nn.Sequential(
            torch.nn.Conv2d(1, stem.out_channels, 3, padding=1, bias=False), *list(m.b2)[1:])
        self.stem[0].weight = m.b2[0].weight
        self.head = m.head
        self.pad = int(model.b1.pad)
        self.first = 1 - self.pad
        n = p + 2 * self.pad - 2
        level, reach = 0, 1
        blocks = []
        for blk in m.stages:
            if isinstance(blk, ConvBlock):
                if blk.conv1[0].stride != (2, 2):
                    raise InputError("DenseTrunk: expected stride-2 convolution blocks")
                blocks.append(("split", _unstrided(blk)))
                level += 1
                n = -(-n // 2)
            elif isinstance(blk, IdentityBlock):
                blocks.append(("same", blk))
            else:
                raise InputError(f"DenseTrunk: unknown block {type(blk).__name__}")
            reach += 2 ** level        # the block's 3x3 convolution, dilated at this level
        self.blocks = torch.nn.ModuleList([b for _, b in blocks])
        self.kinds = [k for k, _ in blocks]
        self.levels, self.n_final, self.reach, self.input_px = level, n, reach, p
        self.channels_last = m.b2[0].weight.is_contiguous(memory_format=torch.channels_last)

    @property
    def period(self):
        """``2**L``: tile sizes and offsets are counted modulo this."""
        return 2 ** self.levels

    def forward(self, x, need_y, need_x):
        need_y, need_x = set(int(v) for v in need_y), set(int(v) for v in need_x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.stem(x)
        offsets, spacing = [(0, 0)], 1
        for kind, blk in zip(self.kinds, self.blocks):
            if kind == "split":
                mod = 2 * spacing

                def keep(oy, ox, mod=mod):
                    return (any((r - oy) % mod == 0 for r in need_y)
                            and any((r - ox) % mod == 0 for r in need_x))

                x, offsets = _split(x, offsets, spacing, keep)
                spacing = mod
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
            x = blk(x)
        return x, offsets


# --------------------------------------------------------------------------
# the dense map
# --------------------------------------------------------------------------

def _snap(centres, s, factor):
    """Down-pixel origin ``round((c - S//2) / f)`` of each window, int64."""
    return np.floor((np.asarray(centres, np.float64) - s // 2) / float(factor) + 0.5).astype(np.int64)


def _groups(origins, tile):
    """Split sorted window origins into runs spanning fewer than ``tile`` pixels: ``[(k0, k1)]``."""
    out, k0 = [], 0
    for k in range(1, origins.size + 1):
        if k == origins.size or origins[k] - origins[k0] >= tile:
            out.append((k0, k))
            k0 = k
    return out


def _invalid_windows(down, my, mx, p):
    """``(ny, nx)`` bool: the window's ``P x P`` down footprint holds a non-finite pixel."""
    bad = ~np.isfinite(down)
    if not bad.any():
        return np.zeros((my.size, mx.size), bool)
    c = np.zeros((bad.shape[0] + 1, bad.shape[1] + 1), np.int64)
    c[1:, 1:] = np.cumsum(np.cumsum(bad, 0), 1)
    y0, x0 = np.clip(my, 0, bad.shape[0]), np.clip(mx, 0, bad.shape[1])
    y1, x1 = np.clip(my + p, 0, bad.shape[0]), np.clip(mx + p, 0, bad.shape[1])
    n = c[y1][:, x1] - c[y0][:, x1] - c[y1][:, x0] + c[y0][:, x0]
    return n > 0


def _tile_input(std, y0, x0, n, m):
    """``std[y0:y0+n, x0:x0+m]`` with zeros where the range leaves the map, float32."""
    out = np.zeros((n, m), np.float32)
    hd, wd = std.shape
    a0, a1, b0, b1 = max(y0, 0), min(y0 + n, hd), max(x0, 0), min(x0 + m, wd)
    if a1 > a0 and b1 > b0:
        out[a0 - y0:a1 - y0, b0 - x0:b1 - x0] = std[a0:a1, b0:b1]
    return out


def _members(models):
    """``[(trunk_model, meta)]`` from ``load_ensemble``'s ``(path, model, meta)`` or ``(model, meta)``."""
    out = []
    for item in models:
        model, meta = (item[1], item[2]) if len(item) == 3 else (item[0], item[1])
        out.append((model, meta))
    if not out:
        raise InputError("dense_predict_map: no models given")
    return out


def _window_features(std, trunks, my, mx, tile_px, dev, autocast):
    """Yield ``((ky0, ky1, kx0, kx1), [vec per trunk])`` tile by tile.

    ``vec`` is the ``((ky1 - ky0) * (kx1 - kx0), C)`` float32 tensor of the
    pooled final features of windows ``ky0..ky1-1`` x ``kx0..kx1-1`` (row-major),
    the input of the model's head.
    """
    geo = trunks[0]
    period, reach, n, o = geo.period, geo.reach, geo.n_final, geo.first
    span = period * (n - 1)
    for ky0, ky1 in _groups(my, tile_px):
        ty = int(my[ky0]) + o - reach
        ny = -(-(int(my[ky1 - 1]) - int(my[ky0]) + span + 2 * reach + 1) // period) * period
        ry = (my[ky0:ky1] + o - ty).astype(np.int64)
        for kx0, kx1 in _groups(mx, tile_px):
            tx = int(mx[kx0]) + o - reach
            nx = -(-(int(mx[kx1 - 1]) - int(mx[kx0]) + span + 2 * reach + 1) // period) * period
            rx = (mx[kx0:kx1] + o - tx).astype(np.int64)
            x = torch.from_numpy(_tile_input(std, ty, tx, ny, nx))[None, None].to(dev)
            iy = torch.from_numpy(np.repeat(ry // period, rx.size)).to(dev)
            ix = torch.from_numpy(np.tile(rx // period, ry.size)).to(dev)
            vecs = []
            for trunk in trunks:
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
                    feats, offsets = trunk(x, np.unique(ry % period), np.unique(rx % period))
                pooled = F.avg_pool2d(feats.float(), n, stride=1)             # (K, C, h, w)
                index = {off: k for k, off in enumerate(offsets)}
                ks = [index.get((int(a % period), int(b % period)), -1) for a in ry for b in rx]
                if min(ks) < 0:
                    raise RuntimeError("dense map: a needed sub-grid was not computed")
                kk = torch.as_tensor(ks, device=dev)
                vecs.append(pooled.permute(0, 2, 3, 1)[kk, iy, ix])
            yield (ky0, ky1, kx0, kx1), vecs


@torch.no_grad()
def dense_predict_map(calibrated, models, crop_size_px, step_px, device="cpu", tile_px=TILE_PX,
                      stats_px=None, bf16=None, strip_px=STRIP_PX, desc="dense map"):
    """Dense sliding-window map of an ensemble's mean prediction, sharing the trunk.

    Same windows and return contract as :func:`microprop.learning.predict_map`
    (the window ``(i, j)`` centred at ``(cy[i], cx[j])`` of
    :func:`~microprop.learning.window_centres`), computed as described in
    the module docstring: resample by ``f = S / P``, standardise locally, run
    each member's trunk once per tile in polyphase form, pool each window's
    final features and apply the member's head; the map is the members' mean.

    Parameters
    ----------
    calibrated : zarr.Array or numpy.ndarray, shape (H, W)
        Calibrated map (float32, eta or porosity).
    models : list of tuple
        ``(path, model, meta)`` of :func:`~microprop.learning.load_ensemble`
        (or ``(model, meta)``): SeedResNets with their checkpoint meta
        (``crop_size_px``, ``input_px``, ``target_mean``, ``target_std``);
        all members must share ``input_px``.
    crop_size_px : int
        Crop edge ``S`` the models were trained on, map pixels.
    step_px : int
        Step between window centres, map pixels.
    device : str or torch.device
        Where the trunk and head run.
    tile_px : int
        Window origins per tile edge, down pixels; a tile's input is
        ``tile_px + 2**L (n - 1) + 2 reach`` pixels wide (332 for the
        default and the seed ResNet at 32 px; mapping added 0.7 GB to the
        peak RSS of the benchmark). Larger tiles recompute less halo
        (``(332 / 256)**2 = 1.7`` times the pixels at the default).
    stats_px : int, optional
        Box of the local standardisation, down pixels (default ``P``).
    bf16 : bool or None
        bf16 autocast of the trunk; ``None``: on CUDA only.
    strip_px : int
        Map rows read at once while resampling.
    desc : str
        Label of the progress bar and the log.

    Returns
    -------
    grid : numpy.ndarray, shape (ny, nx), float32
        Mean prediction (units of the target, e.g. GPa); NaN where the
        window's snapped footprint holds a non-finite pixel.
    centres : tuple of numpy.ndarray
        ``(cy, cx)``, int64, as :func:`~microprop.learning.window_centres`.

    Raises
    ------
    InputError
        As :func:`~microprop.learning.window_centres`; if no model is given,
        the members differ in ``input_px``, a model is not a SeedResNet, the
        checkpoint's ``crop_size_px`` differs from ``crop_size_px``, or
        ``tile_px < 1``.

    Notes
    -----
    An ensemble of :class:`~microprop.learning.models.CentreNet` is mapped
    exactly (module docstring): its trunk runs over tiles of
    ``tile_px`` x ``tile_px`` of its own input pixels of window origins (plus
    one patch), at full resolution; ``stats_px`` does not apply to it.
    """
    s, step, _, _ = _check_window(calibrated.shape, crop_size_px, step_px, what=desc)
    members = _members(models)
    centre = [isinstance(m, CentreNet) for m, _ in members]
    if any(centre):
        if not all(centre):
            raise InputError(f"{desc}: an ensemble mixes CentreNet with other networks")
        if int(tile_px) < 1:
            raise InputError(f"{desc}: tile_px must be >= 1, got {tile_px}")
        return _centre_dense_map(calibrated, members, s, step, device, int(tile_px), bf16, desc)
    inputs = {m.get("input_px") or s for _, m in members}
    if len(inputs) != 1:
        raise InputError(f"{desc}: ensemble members differ in input_px {sorted(inputs)}")
    for _, meta in members:
        if meta.get("crop_size_px") not in (None, s):
            raise InputError(f"{desc}: model crop_size_px {meta['crop_size_px']} != {s}")
    p = int(inputs.pop())
    if int(tile_px) < 1:
        raise InputError(f"{desc}: tile_px must be >= 1, got {tile_px}")
    dev = resolve_device(device)
    autocast = dev.type == "cuda" if bf16 is None else bool(bf16)
    trunks = [(DenseTrunk(model, p).to(dev).eval(), meta) for model, meta in members]
    factor = s / p
    cy, cx = window_centres(calibrated.shape, s, step)
    my, mx = _snap(cy, s, factor), _snap(cx, s, factor)

    t0 = time.perf_counter()
    down = area_downsample(calibrated, factor, strip_px=strip_px, desc=f"{desc}: resample")
    std = local_standardise(down, stats_px or p, eps=float(members[0][0].b1.eps))
    invalid = _invalid_windows(down, my, mx, p)
    del down
    log.info("%s: map %s resampled by %.4g to %s and standardised in %.1f s", desc,
             tuple(calibrated.shape), factor, std.shape, time.perf_counter() - t0)

    grid = np.full((cy.size, cx.size), np.nan, np.float32)
    with progress(total=grid.size, desc=desc, unit="window") as bar:
        for (ky0, ky1, kx0, kx1), vecs in _window_features(std, [t for t, _ in trunks], my, mx,
                                                          int(tile_px), dev, autocast):
            total = 0.0
            for (trunk, meta), vec in zip(trunks, vecs):
                z = trunk.head(vec).squeeze(1).double().cpu().numpy()
                total = total + z * float(meta["target_std"]) + float(meta["target_mean"])
            grid[ky0:ky1, kx0:kx1] = (total / len(trunks)).reshape(ky1 - ky0, kx1 - kx0)
            bar.update((ky1 - ky0) * (kx1 - kx0))
    grid[invalid] = np.nan
    if invalid.any():
        log.warning("%s: %d of %d windows hold non-finite pixels and are NaN", desc,
                    int(invalid.sum()), grid.size)
    log.info("%s: %d x %d windows of %d px at step %d px (dense, %d member(s))", desc,
             cy.size, cx.size, s, step, len(trunks))
    return grid, (cy, cx)


def _footprint_invalid(bad, y0, x0, s):
    """``(ny, nx)`` bool: the ``s x s`` footprint at ``(y0[i], x0[j])`` of ``bad`` holds a True."""
    if not bad.any():
        return np.zeros((y0.size, x0.size), bool)
    c = np.zeros((bad.shape[0] + 1, bad.shape[1] + 1), np.int64)
    c[1:, 1:] = np.cumsum(np.cumsum(bad, 0), 1)
    n = c[y0 + s][:, x0 + s] - c[y0][:, x0 + s] - c[y0 + s][:, x0] + c[y0][:, x0]
    return n > 0


def _centre_dense_map(calibrated, members, s, step, device, tile_px, bf16, desc):
    """The exact dense map of a CentreNet ensemble (:func:`dense_predict_map`'s contract).

    Windows are taken in tiles of at most ``tile_px * pool`` map pixels of
    crop origins per axis; each tile's crops are read once (their whole
    footprint, so that a window with a non-finite pixel anywhere in its crop
    is NaN, as :func:`~microprop.learning.predict_map` makes it), and each
    member's trunk runs over the part its patches cover.
    """
    for _, meta in members:
        if meta.get("crop_size_px") not in (None, s):
            raise InputError(f"{desc}: model crop_size_px {meta['crop_size_px']} != {s}")
        if meta.get("input_px") not in (None, s):
            raise InputError(f"{desc}: a CentreNet checkpoint with input_px {meta['input_px']}")
    dev = resolve_device(device)
    autocast = dev.type == "cuda" if bf16 is None else bool(bf16)
    nets = [(model.to(dev).eval(), meta) for model, meta in members]
    for net, _ in nets:
        if net.patch_px > s:
            raise InputError(f"{desc}: CentreNet patch {net.patch_px} px > crop {s} px")
    cy, cx = window_centres(calibrated.shape, s, step)
    y0s, x0s = cy - s // 2, cx - s // 2
    span = int(tile_px) * max(net.pool for net, _ in nets)
    grid = np.full((cy.size, cx.size), np.nan, np.float32)
    n_bad = 0
    with progress(total=grid.size, desc=desc, unit="window") as bar:
        for ky0, ky1 in _groups(y0s, span):
            r0, r1 = int(y0s[ky0]), int(y0s[ky1 - 1]) + s
            for kx0, kx1 in _groups(x0s, span):
                c0, c1 = int(x0s[kx0]), int(x0s[kx1 - 1]) + s
                region = _read(calibrated, r0, r1, c0, c1)
                bad = ~np.isfinite(region)
                ry, rx = y0s[ky0:ky1] - r0, x0s[kx0:kx1] - c0
                invalid = _footprint_invalid(bad, ry, rx, s)
                if bad.any():
                    region = np.where(bad, np.float32(0), region)
                t = torch.from_numpy(np.ascontiguousarray(region)).to(dev)
                total = 0.0
                for net, meta in nets:
                    p, o = net.patch_px, (s - net.patch_px) // 2
                    sub = t[o + int(ry[0]):o + int(ry[-1]) + p, o + int(rx[0]):o + int(rx[-1]) + p]
                    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
                        z = net.dense_forward(sub, ry - ry[0], rx - rx[0])
                    total = total + (z.double().cpu().numpy() * float(meta["target_std"])
                                     + float(meta["target_mean"]))
                g = (total / len(nets)).astype(np.float32)
                g[invalid] = np.nan
                n_bad += int(invalid.sum())
                grid[ky0:ky1, kx0:kx1] = g
                bar.update(g.size)
    if n_bad:
        log.warning("%s: %d of %d windows hold non-finite pixels and are NaN", desc, n_bad,
                    grid.size)
    log.info("%s: %d x %d windows of %d px at step %d px (CentreNet, exact dense, %d member(s))",
             desc, cy.size, cx.size, s, step, len(nets))
    return grid, (cy, cx)


def timed_dense_predict_map(calibrated, models, crop_size_px, step_px, **kwargs):
    """:func:`dense_predict_map`, timed (as :func:`~microprop.learning.timed_predict_map`).

    Parameters
    ----------
    calibrated, models, crop_size_px, step_px, **kwargs
        As :func:`dense_predict_map`.

    Returns
    -------
    grid, centres
        As :func:`dense_predict_map`.
    timing : dict
        ``seconds`` (wall, resampling included), ``crops`` (windows),
        ``crops_per_s``, ``megapixels_per_s`` and ``mode = "dense"``.
    """
    t0 = time.perf_counter()
    grid, centres = dense_predict_map(calibrated, models, crop_size_px, step_px, **kwargs)
    dt = max(time.perf_counter() - t0, 1e-9)
    timing = {"seconds": dt, "crops": int(grid.size), "crops_per_s": grid.size / dt,
              "megapixels_per_s": calibrated.shape[0] * calibrated.shape[1] / 1e6 / dt,
              "mode": "dense"}
    log.info("%s: %d windows in %.1f s: %.1f windows/s, %.2f megapixels/s",
             kwargs.get("desc", "dense map"), grid.size, dt, timing["crops_per_s"],
             timing["megapixels_per_s"])
    return grid, centres, timing


# --------------------------------------------------------------------------
# agreement with exact inference
# --------------------------------------------------------------------------

def dense_agreement(calibrated, grid, centres, predict_fn, crop_size_px, n_windows=CHECK_WINDOWS,
                    seed=0, batch=64, strip_px=STRIP_PX):
    """Difference between a dense map and exact per-window inference on sampled windows.

    ``n_windows`` windows with a finite dense value are drawn (seeded,
    without replacement; all of them when the map has fewer), cut from the
    map exactly as :func:`~microprop.learning.predict_map` cuts them (read
    strip by strip) and passed to ``predict_fn``.

    Parameters
    ----------
    calibrated : zarr.Array or numpy.ndarray, shape (H, W)
        The map the dense grid was computed from.
    grid : numpy.ndarray, shape (ny, nx)
        Dense map (:func:`dense_predict_map`), target units (GPa).
    centres : tuple of numpy.ndarray
        ``(cy, cx)`` of the grid's windows, map pixels.
    predict_fn : callable
        Exact predictor, ``fn(crops)`` with crops ``(n, S, S)`` float32 ->
        ``(n,)`` (e.g. :func:`~microprop.learning.ensemble_mean_predictor`).
    crop_size_px : int
        Crop edge ``S``, map pixels.
    n_windows : int
        Windows compared.
    seed : int
        Random state of the draw.
    batch : int
        Crops per call of ``predict_fn``.
    strip_px : int
        Map rows read at once.

    Returns
    -------
    dict
        ``n_windows``, ``r2`` (coefficient of determination of the dense
        values as predictions of the exact ones: ``1 - SS(dense - exact) /
        SS(exact - mean)``), ``pearson_r``, ``max_abs_diff``,
        ``mean_abs_diff``, ``rmse``, ``bias`` (mean of dense - exact),
        ``p99_abs_diff`` (all in target units), ``exact_mean``,
        ``exact_std``, ``seconds`` (exact inference) and ``seed``.

    Raises
    ------
    InputError
        If the grid does not match the centres, no window is finite, or
        ``predict_fn`` returns a wrong number of values.
    """
    s = int(crop_size_px)
    cy, cx = (np.asarray(c, np.int64) for c in centres)
    grid = np.asarray(grid)
    if grid.shape != (cy.size, cx.size):
        raise InputError(f"dense_agreement: grid {grid.shape} does not match "
                         f"{cy.size} x {cx.size} centres")
    finite = np.flatnonzero(np.isfinite(grid).ravel())
    if finite.size == 0:
        raise InputError("dense_agreement: the dense map has no finite value")
    rng = np.random.default_rng(int(seed))
    pick = np.sort(rng.choice(finite, min(int(n_windows), finite.size), replace=False))
    pi, pj = np.divmod(pick, cx.size)
    exact = np.empty(pick.size, np.float64)
    c0, c1 = int(cx[0] - s // 2), int(cx[-1] - s // 2 + s)
    t0 = time.perf_counter()
    with progress(total=pick.size, desc="exact check", unit="crop") as bar:
        for k0, k1, r0, r1 in _strips(cy, s, int(cy[1] - cy[0]) if cy.size > 1 else 1,
                                      strip_px):
            sel = np.flatnonzero((pi >= k0) & (pi < k1))
            if sel.size == 0:
                continue
            strip = _read(calibrated, r0, r1, c0, c1)
            for b0 in range(0, sel.size, int(batch)):
                b = sel[b0:b0 + int(batch)]
                ys = cy[pi[b]] - s // 2 - r0
                xs = cx[pj[b]] - s // 2 - c0
                crops = np.stack([strip[y:y + s, x:x + s] for y, x in zip(ys, xs)])
                pred = np.asarray(predict_fn(crops), np.float64).reshape(-1)
                if pred.size != b.size:
                    raise InputError(f"dense_agreement: predict_fn returned {pred.size} values "
                                     f"for {b.size} crops")
                exact[b] = pred
                bar.update(b.size)
    seconds = time.perf_counter() - t0
    dense = grid.ravel()[pick].astype(np.float64)
    ok = np.isfinite(exact)
    dense, exact = dense[ok], exact[ok]
    d = dense - exact
    ss = float(np.sum((exact - exact.mean()) ** 2))
    r2 = 1.0 - float(np.sum(d * d)) / ss if ss > 0 else float("nan")
    r = float(np.corrcoef(dense, exact)[0, 1]) if dense.size > 1 and ss > 0 else float("nan")
    out = {"n_windows": int(exact.size), "r2": r2, "pearson_r": r,
           "max_abs_diff": float(np.max(np.abs(d))), "mean_abs_diff": float(np.mean(np.abs(d))),
           "p99_abs_diff": float(np.quantile(np.abs(d), 0.99)),
           "rmse": float(np.sqrt(np.mean(d * d))), "bias": float(np.mean(d)),
           "exact_mean": float(exact.mean()), "exact_std": float(exact.std()),
           "seconds": seconds, "exact_crops_per_s": exact.size / max(seconds, 1e-9),
           "seed": int(seed)}
    log.info("dense vs exact on %d windows: R2 %.4f, max |diff| %.3g, mean |diff| %.3g",
             out["n_windows"], r2, out["max_abs_diff"], out["mean_abs_diff"])
    return out
