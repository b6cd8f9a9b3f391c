"""Where INRs are fitted: the device a name means here, and how many INRs fit in its memory at once."""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["resolve_device", "device_batch_size"]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"`` -> ``cuda`` when available, else ``cpu``; anything else checked to be usable here.

    ``ValueError`` naming the device when it is not a device string, or CUDA is asked for but absent.
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r}: CUDA is not available on this machine (use 'cpu' or 'auto')")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device={str(device)!r}: only {torch.cuda.device_count()} CUDA device(s)")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
    return dev


def _bytes_per_inr(widths: Sequence[int], P: int, grid: tuple[int, int] | None) -> int:
    """Device memory one INR of the device path needs (float32 buffers of :func:`~neuralgraph.inr.kernels.fit_stack`)."""
    hid = widths[1:-1]
    C = widths[-1]
    n_params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    act = P * (2 * sum(hid) + sum(hid[1:]) + 2 * C)            # A, Cb, tmp, out/target
    first = 0 if grid is None else 6 * (grid[0] + grid[1]) * (hid[0] if hid else 0)
    return 4 * (act + first + 6 * n_params)                     # params, grads, 2 moments, denom, scaled copies


def device_batch_size(device: torch.device, widths: Sequence[int], P: int, grid: tuple[int, int] | None = None,
                      fraction: float = 0.5, cpu_batch: int = 256) -> int:
    """How many INRs the device path fits at once: ``fraction`` of free memory on CUDA.

    Uses ``torch.cuda.mem_get_info`` (free bytes now, so other processes on the
    card are respected); on CPU a cache-friendly ``cpu_batch``.
    """
    if device.type != "cuda":
        return cpu_batch
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, int(free * fraction) // _bytes_per_inr(widths, P, grid))
