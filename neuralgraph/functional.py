"""The functional interpreter of an :class:`~neuralgraph.Architecture`.

:func:`forward` runs one network of an architecture on explicit parameters, with
every module kind read from :data:`neuralgraph.architecture.MODULE_KINDS` (its
functional form) and normalisations from their ``node_norm`` rows. It is pure tensor
code, so ``torch.func.vmap`` runs it over stacked parameters: the probes of NG-GNN /
NG-T (:mod:`dws_equiv.ng.probe`) and the reference forward of zoo training
(:func:`neuralgraph.zoo.forward_vmap`) use it. ``Architecture.build`` gives the same
function as ``nn.Module``\\ s (tests/test_functional.py checks they agree); the SIREN
fitter and the grouped zoo trainer keep their own fused forwards for speed and are
tested against this one.
"""
from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor

from .architecture import Architecture, LayerSpec, norm_functional

__all__ = ["layer_forward", "forward", "network_values"]


def layer_forward(spec: LayerSpec, h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """One parametric layer (Linear, Conv1d or Conv2d) on ``h`` with explicit parameters."""
    if spec.kind == "linear":
        out = h @ weight.transpose(0, 1)
        return out if bias is None else out + bias
    conv = F.conv1d if spec.kind == "conv1d" else F.conv2d
    return conv(h, weight, bias, stride=spec.stride, padding=spec.padding, dilation=spec.dilation)


def _post(module, h: Tensor, norm: Tensor | None) -> Tensor:
    if module.is_norm:
        return norm_functional(module, h, norm)
    return module.functional()(h)


def forward(arch: Architecture, weights: Sequence[Tensor], biases: Sequence[Tensor | None],
            norms: Sequence[Tensor | None] | None, x: Tensor, *, record: bool = False):
    """Run one network of ``arch`` on ``x`` (eval mode).

    Args:
        weights: per layer, the weight ``[out, in, *kernel]``.
        biases: per layer, ``[out]`` or ``None``.
        norms: per layer, ``[out, 4]`` node_norm rows of the normalisation after it (or ``None``).
        record: also return the value of every neuron, layer by layer.

    Shapes: ``x [P, *input]`` -> ``[P, *output]``; with ``record``, also a list of
    ``[P, d_m]`` for ``m = 0..M`` (spatial means for convolution channels).
    """
    h = x
    for module in arch.pre:
        h = _post(module, h, None)
    values = [_neuron_values(h)] if record else None
    blocks = {start: (end, split) for start, end, split in arch.residuals}
    skip, close = None, None
    for j, spec in enumerate(arch.layers):
        if j in blocks:
            skip, close = h, blocks[j]
        h = layer_forward(spec, h, weights[j], biases[j])
        norm = norms[j] if norms is not None else None
        for k, module in enumerate(spec.post):
            if skip is not None and j == close[0] - 1 and k == close[1]:
                h, skip = h + skip, None
            h = _post(module, h, norm)
        if skip is not None and j == close[0] - 1:
            h, skip = h + skip, None
        if record:
            values.append(_neuron_values(h))
    return (h, values) if record else h


def network_values(arch: Architecture, weights: Sequence[Tensor], biases: Sequence[Tensor | None],
                   norms: Sequence[Tensor | None] | None, x: Tensor) -> list[Tensor]:
    """The value of every neuron of one network on ``x``, layer by layer: ``[P, d_m]`` for ``m = 0..M``."""
    return forward(arch, weights, biases, norms, x, record=True)[1]


def _neuron_values(h: Tensor) -> Tensor:
    """``[P, C, *spatial] -> [P, C]``: spatial mean of each channel."""
    return h.flatten(2).mean(-1) if h.dim() > 2 else h
