"""The choice of the torch device (:func:`resolve_device`: ``"auto"``, ``"cpu"``,
``"cuda[:i]"``), with an :class:`InputError` when CUDA is asked for but absent.
"""
from __future__ import annotations

import torch

from ..errors import InputError


def resolve_device(device="auto"):
    """Choose the torch device once: ``"auto"`` -> CUDA when available, else CPU.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...

    Raises
    ------
    InputError
        If CUDA is asked for but not available, or the name is unknown.
    """
    if isinstance(device, torch.device):
        return device
    name = str(device or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"device {device!r}: expected 'auto', 'cpu' or 'cuda[:i]'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r}: CUDA is not available on this machine")
    return dev


def cpu_reduced_run(device, epochs, lr, input_px, cpu=None, where="learning.cpu"):
    """The epochs, learning rate and input size of a run, reduced when it lands on a CPU.

    Parameters
    ----------
    device : str or torch.device
        Where the run goes (:func:`resolve_device`).
    epochs, lr, input_px
        The configured run.
    cpu : dict, optional
        ``epochs``, ``lr``, ``input_px`` that replace those on a CPU (the
        config's reduced run); None or empty: no change.
    where : str
        The config key of ``cpu``, for the log.

    Returns
    -------
    (int, float, int or None)
        ``epochs``, ``lr``, ``input_px``; a reduced run is logged as a warning.
    """
    import logging

    epochs, lr = int(epochs), float(lr)
    if cpu and resolve_device(device).type == "cpu":
        over = dict(cpu)
        epochs, lr = int(over.get("epochs", epochs)), float(over.get("lr", lr))
        input_px = over.get("input_px", input_px)
        logging.getLogger(__name__).warning(
            "training on a CPU: reduced run with epochs=%d, lr=%g, input_px=%s (%s of the config)",
            epochs, lr, input_px, where)
    return epochs, lr, input_px
