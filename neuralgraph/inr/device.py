"""How many INRs the device path fits at once in a device's memory (devices are named as in
:func:`neuralgraph.device.resolve_device`, re-exported here)."""
from __future__ import annotations

from typing import Sequence

import torch

from ..device import resolve_device

__all__ = ["resolve_device", "device_batch_size"]


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
