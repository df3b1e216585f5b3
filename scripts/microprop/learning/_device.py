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
