"""Device names: the one resolver of ``"cpu"``, ``"cuda"``, ``"cuda:N"`` and ``"auto"`` for the whole library."""
from __future__ import annotations

import re

import torch

__all__ = ["check_device_name", "resolve_device"]

_NAME = re.compile(r"cpu|auto|cuda(:\d+)?")


def check_device_name(device: str | torch.device | None) -> None:
    """``ValueError`` unless ``device`` is ``cpu``, ``cuda``, ``cuda:N``, ``auto`` (or ``None``: auto), or a
    ``torch.device`` of type cpu or cuda. Only the name is checked, not this machine (see :func:`resolve_device`)."""
    if device is None or (isinstance(device, torch.device) and device.type in ("cpu", "cuda")):
        return
    if not isinstance(device, str) or not _NAME.fullmatch(device):
        raise ValueError(f"device {device!r} is not supported; use cpu, cuda, cuda:N or auto (the device must be one "
                         f"of these)")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device ``device`` names, checked against this machine: ``auto`` (or ``None``) is ``cuda`` when
    available, else ``cpu``.

    Raises:
        ValueError: a name other than ``cpu``, ``cuda``, ``cuda:N``, ``auto`` (``mps``, ``meta``, a typo),
            CUDA asked for on a machine without it, or ``cuda:N`` beyond the visible GPUs; the message names
            the device.
    """
    check_device_name(device)
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} requested but CUDA is not available on this machine; use cpu "
                             f"or auto")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {str(device)!r} requested but only {count} CUDA device(s) are visible "
                             f"(cuda:0..cuda:{count - 1})")
    return dev
