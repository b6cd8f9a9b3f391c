"""How INRs are fitted, as one checked object (:class:`FitSettings`) that travels from the public API to the kernels."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .device import resolve_device
from .siren import DEFAULT_LR, DEFAULT_OFFSET, DEFAULT_STEPS, DEFAULT_W0, DEFAULT_WIDTHS, SIREN_INITS, check_widths

__all__ = ["FitSettings", "METHODS", "check_fit_settings"]

#: Fit implementations (see :mod:`neuralgraph.inr.fit`).
METHODS = ("fast", "device", "autograd")


def check_fit_settings(*, steps: int, lr: float, w0: float, min_steps: int = 0) -> None:
    """``ValueError`` naming every bad setting: ``steps`` an integer >= ``min_steps``, ``lr``/``w0`` finite > 0.

    Settings that pass can still make a fit diverge (``w0 = 1e30``); the fit
    itself raises ``FloatingPointError`` then (see :func:`~neuralgraph.inr.fit_sirens`).
    """
    bad = []
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < min_steps:
        bad.append(f"steps={steps!r} (an integer >= {min_steps})")
    for name, value in (("lr", lr), ("w0", w0)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not (
                math.isfinite(value) and value > 0):
            bad.append(f"{name}={value!r} (a finite number > 0)")
    if bad:
        raise ValueError("invalid SIREN fit settings: " + ", ".join(bad))


def _is_count(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value >= 1


@dataclass(frozen=True)
class FitSettings:
    """Everything that says how a batch of SIRENs is fitted, checked once when made.

    The first group of fields is the protocol (what is fitted: it decides the networks); the
    second says where and in what batches (the networks are the same up to float rounding).
    A ``FitSettings`` that exists is valid: the fit functions build one from their keyword
    arguments and pass it down, so nothing is checked twice.

    Args:
        widths: layer widths of the SIREN, ``(2, 32, 32, 1)`` for a grey image.
        w0: the sine frequency.
        steps: Adam steps per INR (the maximum with ``target_psnr``); an integer >= 0.
        lr: Adam's learning rate.
        offset: added to the network's output (``0.5``: pixels in ``[0, 1]``).
        init: ``"siren"`` or ``"dwsnets"`` (see :func:`~neuralgraph.inr.siren_init`).
        target_psnr: per-INR early stopping in dB, or ``None`` (fixed ``steps``).
        betas, eps: Adam's.
        batch_size: INRs per batch on CPU (``None``: 32 on the threaded paths, 256 on the device path).
        device_batch_size: INRs per batch on a GPU (``None``: as many as fit in half its free memory,
            see :func:`~neuralgraph.inr.device_batch_size`).
        method: ``"fast"``, ``"device"``, ``"autograd"`` or ``None`` (``fast`` on CPU, else ``device``).
        workers: threads of the CPU paths (``None``: torch's thread count).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``; stored resolved (a ``torch.device``).
        check_every: device path: steps between host synchronisations.

    Raises:
        ValueError: naming the bad settings (``invalid SIREN fit settings: lr=inf ...``).
    """

    widths: tuple[int, ...] = DEFAULT_WIDTHS
    w0: float = DEFAULT_W0
    steps: int = DEFAULT_STEPS
    lr: float = DEFAULT_LR
    offset: float = DEFAULT_OFFSET
    init: str = "siren"
    target_psnr: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    batch_size: int | None = None
    device_batch_size: int | None = None
    method: str | None = None
    workers: int | None = None
    device: torch.device | str = "cpu"
    check_every: int = 25

    def __post_init__(self) -> None:
        check_widths(self.widths)
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "device", resolve_device(self.device))
        method = self.method if self.method is not None else "fast" if self.device.type == "cpu" else "device"
        if method not in METHODS:
            raise ValueError(f"method must be 'fast', 'device' or 'autograd', got {self.method!r}")
        if method == "fast" and self.device.type != "cpu":
            raise ValueError(f"method='fast' runs on CPU only (threads); use method='device' (the default on "
                             f"{self.device})")
        object.__setattr__(self, "method", method)
        check_fit_settings(steps=self.steps, lr=self.lr, w0=self.w0)
        if self.target_psnr is not None and (isinstance(self.target_psnr, bool) or not isinstance(
                self.target_psnr, (int, float, np.number)) or not math.isfinite(self.target_psnr)):
            raise ValueError(f"target_psnr must be a finite number (dB) or None, got {self.target_psnr!r}")
        if method == "autograd" and self.target_psnr is not None:
            raise ValueError("target_psnr needs method='fast' or 'device' (the autograd baseline runs fixed steps)")
        if self.init not in SIREN_INITS:
            raise ValueError(f"init must be one of {SIREN_INITS}, got {self.init!r}")
        for name in ("batch_size", "device_batch_size"):
            value = getattr(self, name)
            if value is not None and not _is_count(value):
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not _is_count(self.check_every):
            raise ValueError(f"check_every must be an integer >= 1, got {self.check_every!r}")

    @property
    def target_mse(self) -> float | None:
        """The loss at which an INR stops (``target_psnr`` as a mean squared error), or ``None``."""
        return None if self.target_psnr is None else 10.0 ** (-float(self.target_psnr) / 10.0)

    @property
    def run_batch_size(self) -> int | None:
        """INRs per batch on this fit's device (``batch_size`` on CPU, ``device_batch_size`` elsewhere)."""
        return self.batch_size if self.device.type == "cpu" else self.device_batch_size

    def protocol(self, **run: Any) -> dict[str, Any]:
        """The settings that decide the networks, as a dataset file records them (``meta["fit"]``),
        with the writer's own ``run`` entries (seed, chunking) after the SIREN's.

        Keys that are absent at their default (``target_psnr``, ``init``) stay absent, so the
        fingerprints of files fitted before those settings existed stay valid.
        """
        config = {"widths": list(self.widths), "w0": float(self.w0), "steps": int(self.steps),
                  "lr": float(self.lr), "offset": float(self.offset), **run}
        if self.target_psnr is not None:
            config["target_psnr"] = float(self.target_psnr)
        if self.init != "siren":
            config["init"] = str(self.init)
        return config
