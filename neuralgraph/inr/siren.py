"""The SIREN an INR is: its architecture, initialisation, forward pass and rendering.

Protocol (DWSNets): a SIREN ``2 -> 32 -> 32 -> 1`` with ``sin(w0 * (W x + b))``
activations (``w0 = 30``), SIREN initialisation with zero biases, coordinates on
a grid in ``[-1, 1]^2`` and the network output plus ``0.5`` as the pixel value
(pixels in ``[0, 1]``). The stored weights are exactly those of
``siren_architecture(widths, w0, offset).build()`` (the offset is an
:class:`~neuralgraph.Offset` module at its end), so a fitted INR is a plain
``nn.Sequential`` that renders the image, and a neural graph.

Fitting is :mod:`neuralgraph.inr.fit` (the public API), :mod:`~neuralgraph.inr.settings`
(:class:`~neuralgraph.inr.settings.FitSettings`), :mod:`~neuralgraph.inr.runner` (batches, threads,
devices) and :mod:`~neuralgraph.inr.kernels` (the hand-written fit kernels); PSNR is
:mod:`~neuralgraph.inr.psnr`, device sizing :mod:`~neuralgraph.inr.device`. The names this module
had before it was split by concern still resolve here for one release, with a ``DeprecationWarning``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import torch
from torch import Tensor

from ..architecture import Architecture, ModuleSpec, mlp_architecture
from ..deprecation import forward_moved

__all__ = [
    "DEFAULT_WIDTHS", "DEFAULT_W0", "DEFAULT_STEPS", "DEFAULT_LR", "DEFAULT_OFFSET", "SIREN_INITS",
    "siren_architecture", "siren_init", "siren_forward", "image_grid", "render", "check_widths",
]

DEFAULT_WIDTHS: tuple[int, ...] = (2, 32, 32, 1)
DEFAULT_W0: float = 30.0
DEFAULT_STEPS: int = 200
DEFAULT_LR: float = 1e-3
DEFAULT_OFFSET: float = 0.5


def siren_architecture(widths: Sequence[int] = DEFAULT_WIDTHS, w0: float = DEFAULT_W0,
                       offset: float = 0.0) -> Architecture:
    """The architecture a fitted INR is stored as (for ``stacked_to_batch`` and ``build``).

    A non-zero ``offset`` ends the network with :class:`~neuralgraph.Offset` (``x + offset``), so the
    module ``to_model`` rebuilds *is* the INR: image INRs (fitted with the DWSNets ``+0.5``) render
    pixel values in ``[0, 1]`` directly.
    """
    arch = mlp_architecture(list(widths), "sine", w0=w0)
    if not offset:
        return arch
    last = arch.layers[-1]
    shifted = dataclasses.replace(last, post=(*last.post, ModuleSpec("offset", (float(offset),))))
    return dataclasses.replace(arch, layers=(*arch.layers[:-1], shifted))


def image_grid(height: int, width: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Pixel coordinates ``[H*W, 2]`` in ``[-1, 1]^2``, row-major (``(row, col)`` order).

    Entry ``i * W + j`` is ``(linspace(-1,1,H)[i], linspace(-1,1,W)[j])``: the
    first input of the INR moves down the rows, the second along a row.
    """
    u = torch.linspace(-1.0, 1.0, height, dtype=dtype)
    v = torch.linspace(-1.0, 1.0, width, dtype=dtype)
    return torch.stack(torch.meshgrid(u, v, indexing="ij"), dim=-1).reshape(-1, 2)


#: Initialisations of :func:`siren_init`: this library's (Sitzmann et al.) and the DWSNets datasets' own.
SIREN_INITS = ("siren", "dwsnets")


def siren_init(
    n: int,
    widths: Sequence[int] = DEFAULT_WIDTHS,
    w0: float = DEFAULT_W0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    init: str = "siren",
) -> tuple[list[Tensor], list[Tensor]]:
    """Initial parameters of ``n`` SIRENs.

    * ``init="siren"`` (default; Sitzmann et al., 2020): first layer ``U(-1/in, 1/in)``, later
      layers ``U(-sqrt(6/in)/w0, sqrt(6/in)/w0)``, zero biases; keeps the pre-activations of
      ``sin(w0 .)`` well spread at every depth.
    * ``init="dwsnets"``: the initialisation of the INRs of the DWSNets / neural-graphs MNIST and
      Fashion-MNIST datasets (``nn/inr.py`` of the DWSNets repository, whose ``INR`` never marks
      its first layer as first): every sine layer ``U(-sqrt(6/in)/w0, sqrt(6/in)/w0)`` with zero
      bias, the first one included, so the first layer starts at a low frequency; the last
      (linear) layer as ``torch.nn.Linear`` does, weight and bias ``U(-1/sqrt(in), 1/sqrt(in))``.
      Fitted networks move far from this small start (the datasets' first-layer weights have
      std 0.063 against 0.29 for ``"siren"``), which is what lets weight-space models read them.

    Shapes: -> ``weights[m] [n, out, in]``, ``biases[m] [n, out]``.
    """
    check_widths(widths)
    if init not in SIREN_INITS:
        raise ValueError(f"init must be one of {SIREN_INITS}, got {init!r}")
    weights, biases = [], []
    last = len(widths) - 2
    for m, (d_in, d_out) in enumerate(zip(widths[:-1], widths[1:])):
        if init == "dwsnets" and m == last:
            bound = 1.0 / math.sqrt(d_in)
        elif init == "siren" and m == 0:
            bound = 1.0 / d_in
        else:
            bound = math.sqrt(6.0 / d_in) / w0
        w = torch.rand(n, d_out, d_in, generator=generator, dtype=dtype).mul_(2 * bound).sub_(bound)
        weights.append(w)
        if init == "dwsnets" and m == last:
            biases.append(torch.rand(n, d_out, generator=generator, dtype=dtype).mul_(2 * bound).sub_(bound))
        else:
            biases.append(torch.zeros(n, d_out, dtype=dtype))
    return weights, biases


def siren_forward(weights: Sequence[Tensor], biases: Sequence[Tensor], coords: Tensor,
                  w0: float = DEFAULT_W0) -> Tensor:
    """Evaluate ``n`` stacked SIRENs at shared (``[P, d]``) or per-network (``[n, P, d]``) coordinates.

    Returns ``[n, P, out]`` (without the output offset). Matches
    ``siren_architecture(widths, w0).build()`` loaded with the same parameters
    (``siren_architecture(widths, w0, offset)`` adds the offset).
    """
    h = coords
    M = len(weights)
    for m, (w, b) in enumerate(zip(weights, biases)):
        h = torch.matmul(h, w.transpose(-1, -2)) + b.unsqueeze(-2)
        if m < M - 1:
            h = torch.sin(w0 * h)
    return h


def render(weights: Sequence[Tensor], biases: Sequence[Tensor], height: int, width: int,
           w0: float = DEFAULT_W0, offset: float = DEFAULT_OFFSET) -> Tensor:
    """Images the INRs encode: ``[n, H, W]`` (or ``[n, H, W, C]`` for ``C > 1`` outputs)."""
    coords = image_grid(height, width, dtype=weights[0].dtype)
    out = siren_forward(weights, biases, coords, w0) + offset
    n, C = out.shape[0], out.shape[-1]
    return out.reshape(n, height, width) if C == 1 else out.reshape(n, height, width, C)


def check_widths(widths: Sequence[int]) -> None:
    """``ValueError`` unless ``widths`` has at least two entries, all positive."""
    if len(widths) < 2 or any(int(w) < 1 for w in widths):
        raise ValueError(f"widths must have >= 2 positive entries, got {list(widths)}")


#: Names that moved when this module was split by concern: name -> the module that has it now.
_MOVED = {
    "FitResult": "neuralgraph.inr.fit", "fit_sirens": "neuralgraph.inr.fit",
    "fit_sirens_to_signals": "neuralgraph.inr.fit", "check_fit_settings": "neuralgraph.inr.settings",
    "psnr": "neuralgraph.inr.psnr", "psnr_from_mse": "neuralgraph.inr.psnr",
    "resolve_device": "neuralgraph.inr.device", "device_batch_size": "neuralgraph.inr.device",
    "derive_seed": "neuralgraph.seeding",
}


__getattr__ = forward_moved(__name__, _MOVED)
