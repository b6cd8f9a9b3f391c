"""Non-equivariant baselines: an MLP on the flattened weight vector.

The flat MLP sees ``[W_1, b_1, W_2, b_2, ...]`` in the stored neuron order, so
it has to *learn* that permuting hidden neurons does not change the network.
``permute_augment=True`` helps it by showing a fresh random symmetry of every
training network on every step (the "MLP + permutation augmentation" baseline
of DWSNets); at evaluation time the stored order is used.
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

from ..architecture import Architecture
from ..augment import permute_hidden_stacked
from ..graph import batch_to_stacked

__all__ = ["FlatMLP", "flat_params", "num_params"]


def num_params(arch: Architecture) -> int:
    """Length of the flat weight vector of one network of ``arch`` (weights and biases)."""
    return sum(math.prod(spec.weight_shape) + (spec.out_features if spec.bias else 0) for spec in arch.layers)


def _flatten(weights: Sequence[Tensor], biases: Sequence[Tensor | None]) -> Tensor:
    B = weights[0].shape[0]
    parts = []
    for w, b in zip(weights, biases):
        parts.append(w.reshape(B, -1))
        if b is not None:
            parts.append(b.reshape(B, -1))
    return torch.cat(parts, 1)


def flat_params(batch: Batch, permute: bool = False, generator: torch.Generator | None = None) -> Tensor:
    """``[num_graphs, P]`` weight vectors of a batch of one architecture (vectorised).

    With ``permute=True`` every network's hidden neurons are first permuted
    independently (the function each network computes is unchanged).
    """
    weights, biases = batch_to_stacked(batch)
    if permute:
        if any(w.dim() != 3 for w in weights) or any(b is None for b in biases):
            raise ValueError("permutation augmentation of the flat MLP supports bias-carrying MLPs only")
        weights, biases = permute_hidden_stacked(weights, biases, generator)
    return _flatten(weights, biases)


class FlatMLP(nn.Module):
    """MLP classifier on the concatenated weight vector of a fixed architecture.

    ``arch`` fixes the input length; a batch of another architecture gives a
    ``ValueError``. ``permute_augment`` permutes hidden neurons of each input
    network at random in training mode (uses the global torch RNG, which the
    trainer checkpoints).
    """

    def __init__(self, out_dim: int, arch: Architecture, hidden: Sequence[int] = (256, 256, 256),
                 dropout: float = 0.0, permute_augment: bool = False) -> None:
        super().__init__()
        if out_dim < 1:
            raise ValueError(f"FlatMLP: out_dim must be >= 1, got {out_dim}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"FlatMLP: dropout must be in [0, 1), got {dropout}")
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
            raise ValueError(f"FlatMLP: hidden must be a sequence of layer widths such as (256, 256), got {hidden!r}")
        if any(isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1 for h in hidden):
            raise ValueError(f"FlatMLP: hidden widths must be ints >= 1, got {tuple(hidden)}")
        self.arch = arch
        self.in_dim = num_params(arch)
        self.permute_augment = bool(permute_augment)
        dims = [self.in_dim, *[int(h) for h in hidden]]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(dims[-1], out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, batch: Batch) -> Tensor:
        archs = batch.arch if isinstance(batch.arch, list) else [batch.arch]
        if any(a != self.arch for a in archs):
            raise ValueError(f"FlatMLP was built for {self.arch.widths}; the batch holds another architecture")
        x = flat_params(batch, permute=self.permute_augment and self.training)
        return self.net(x)
