"""Deep Taylor decomposition of the porosity-map classifier: relevance per pixel.

The graphene-oxide cement study (``../shared/references/dtd_nanoporosity_go_cement.txt``,
section 2.2, "Revealing microstructure modifications via DTD") explains each
decision of the DCNN by deep Taylor decomposition (Montavon et al., Pattern
Recognition 65 (2017) 211): the score of the predicted class is passed back
layer by layer, the relevance of a neuron shared among its inputs in
proportion to their positive contributions (the z+ rule, alpha1-beta0,
for layers after ReLUs), and at the input by the z^B rule, whose bounds are
the lowest and highest values a pixel can take (equivalent porosity 0 and 1,
standardised as the network standardises its input).

Done with zennit (Anders et al. 2021, arXiv:2106.13200): batch normalisation
merged into the preceding convolution by ``SequentialMergeBatchNorm``, ZBox
on the first convolution, ZPlus on the other convolutions and the linear
head, and zennit's defaults for the rest (ReLU passes the relevance, average
pooling distributes it by the Norm rule, max pooling follows the gradient).
The relevance of a map sums to the score it explains, less what the
networks' biases absorb (conservation, tested without biases).

zennit imports torchvision; both are pinned in ``requirements.txt``.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError
from ._augment import downsample_images
from ._device import resolve_device


def _composite(low, high):
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import SpecialFirstLayerMapComposite, layer_map_base
    from zennit.rules import ZBox, ZPlus
    from zennit.types import Convolution, Linear

    return SpecialFirstLayerMapComposite(
        layer_map=layer_map_base() + [(Convolution, ZPlus()), (Linear, ZPlus())],
        first_map=[(Convolution, ZBox(low=low, high=high))],
        canonizers=[SequentialMergeBatchNorm()])


def relevance_maps(model, meta, maps, target=None, batch_size=32, device="cpu", n_range=(0.0, 1.0)):
    """Deep Taylor relevance of every pixel of local maps for one class each.

    Parameters
    ----------
    model, meta
        A trained classifier and its meta (:func:`microprop.learning.load_classifier`),
        in eval mode.
    maps : numpy.ndarray, shape (N, S, S), float32
        Equivalent porosity at the stored resolution (area-averaged to the
        model's ``input_px`` here when it has one).
    target : array-like of int, shape (N,), optional
        The class explained for each map; default the predicted class.
    batch_size : int
    device : str
    n_range : (float, float)
        The physical range of the input (equivalent porosity), the bounds of
        the z^B rule.

    Returns
    -------
    relevance : numpy.ndarray, shape (N, P, P), float32
        Relevance per pixel of the network's input (``P``: ``input_px`` or
        ``S``); positive where the pixel speaks for the class.
    score : numpy.ndarray, shape (N,), float64
        The explained logit of each map.
    target : numpy.ndarray, shape (N,), int64

    Raises
    ------
    InputError
        A target outside the classes, or zennit missing.
    """
    try:
        from zennit.attribution import Gradient
    except ImportError as err:  # pragma: no cover - zennit is pinned
        raise InputError(f"relevance needs zennit (and torchvision): {err}") from err
    dev = resolve_device(device)
    model = model.to(dev).eval()
    x_all = downsample_images(np.asarray(maps, np.float32), meta.get("input_px"))
    k = int(meta["arch_kwargs"]["n_classes"])
    mean, sd = float(model.input_mean), float(model.input_std)
    # the z^B bounds where the first convolution sees them: after the fixed standardisation
    low, high = (float(n_range[0]) - mean) / sd, (float(n_range[1]) - mean) / sd
    composite = _composite(low, high)
    rel, scores, targets = [], [], []
    with Gradient(model=model, composite=composite) as attributor:
        for i in range(0, len(x_all), int(batch_size)):
            xb = x_all[i:i + int(batch_size)].to(dev).requires_grad_(True)
            with torch.no_grad():
                logits = model(xb)
            t = logits.argmax(1) if target is None else torch.as_tensor(
                np.asarray(target)[i:i + int(batch_size)], dtype=torch.long, device=dev)
            if (t < 0).any() or (t >= k).any():
                raise InputError(f"relevance_maps: target classes {t.tolist()} outside 0..{k - 1}")
            onehot = torch.nn.functional.one_hot(t, k).to(logits.dtype)
            # the relevance that enters at the top is the explained logit itself
            out, r = attributor(xb, onehot * logits)
            # zennit's relevance arrives at the first convolution's input, in the standardised
            # space; the gradient then passes (x - mean) / sd and gains 1 / sd: undo it, so that
            # each pixel keeps the relevance its standardised value received
            rel.append((r[:, 0] * sd).detach().cpu().numpy().astype(np.float32))
            scores.append((out * onehot).sum(1).detach().cpu().numpy().astype(np.float64))
            targets.append(t.cpu().numpy())
    if not rel:
        p = x_all.shape[-1]
        return np.zeros((0, p, p), np.float32), np.zeros(0), np.zeros(0, np.int64)
    return np.concatenate(rel), np.concatenate(scores), np.concatenate(targets).astype(np.int64)
