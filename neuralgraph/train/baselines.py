"""Non-equivariant baselines: an MLP on the flattened weight vector.

The flat MLP sees ``[W_1, b_1, W_2, b_2, ...]`` in the stored neuron order, so
it has to *learn* that permuting hidden neurons does not change the network.
``permute_augment=True`` helps it by showing a fresh random symmetry of every
training network on every step (the "MLP + permutation augmentation" baseline
of DWSNets); at evaluation time the stored order is used. With
``head="equivariant"`` it predicts a delta of the whole weight vector and
returns the edited batch (the "MLP" baseline of weight-space editing tasks).
"""
from __future__ import annotations

import copy
import math
import numbers
from typing import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

from ..architecture import Architecture
from ..augment import permute_hidden_stacked
from ..graph import EDGE_FORWARD, batch_to_stacked, batch_vector, graph_archs, parameter_shapes

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


def _flat_positions(batch: Batch, arch: Architecture) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Where each neuron's bias and each edge's taps sit in its network's flat vector (``-1``: nowhere).

    Returns ``(node_index [N], edge_index [E, K])`` into ``[num_graphs * P]`` and the masks of the
    nodes / edge taps that have one. Read through ``node_pos``, so any node order works.
    """
    P = num_params(arch)
    offsets_w, offsets_b, o = [], [], 0
    for spec in arch.layers:
        offsets_w.append(o)
        o += math.prod(spec.weight_shape)
        offsets_b.append(o if spec.bias else -1)
        o += spec.out_features if spec.bias else 0
    device = batch.x.device
    gb = batch_vector(batch)
    ow, ob = torch.tensor([0, *offsets_w], device=device), torch.tensor([-1, *offsets_b], device=device)
    d_in = torch.tensor([0, *(s.in_features for s in arch.layers)], device=device)
    taps = torch.tensor([1, *(s.weights_per_edge for s in arch.layers)], device=device)
    layer = batch.node_layer
    has_b = ob[layer] >= 0
    node_at = gb * P + ob[layer] + batch.node_pos
    src, dst = batch.edge_index
    el = batch.edge_layer
    K = batch.edge_attr.size(-1)
    k = torch.arange(K, device=device)
    base = gb[dst] * P + ow[el] + (batch.node_pos[dst] * d_in[el] + batch.node_pos[src]) * taps[el]
    edge_at = base.unsqueeze(1) + k
    has_w = (batch.edge_type == EDGE_FORWARD).unsqueeze(1) & (k < taps[el].unsqueeze(1))
    return node_at, edge_at, has_b, has_w


def write_flat(batch: Batch, flat: Tensor, arch: Architecture) -> Batch:
    """A shallow copy of ``batch`` whose biases and weights are read from ``flat`` ``[num_graphs, P]``
    (the layout of :func:`flat_params`); differentiable w.r.t. ``flat``."""
    node_at, edge_at, has_b, has_w = _flat_positions(batch, arch)
    values = flat.reshape(-1)
    out = copy.copy(batch)
    out.x = torch.where(has_b.unsqueeze(-1), values[node_at.clamp(min=0)].unsqueeze(-1), batch.x.to(flat.dtype))
    out.edge_attr = torch.where(has_w, values[edge_at.clamp(min=0, max=values.numel() - 1)],
                                batch.edge_attr.to(flat.dtype))
    return out


class FlatMLP(nn.Module):
    """MLP classifier on the concatenated weight vector of a fixed architecture.

    ``arch`` fixes the input length; a batch of another architecture gives a
    ``ValueError``. ``permute_augment`` permutes hidden neurons of each input
    network at random in training mode (uses the global torch RNG, which the
    trainer checkpoints).
    """

    def __init__(self, out_dim: int | None = None, arch: Architecture | None = None,
                 hidden: Sequence[int] = (256, 256, 256), dropout: float = 0.0, permute_augment: bool = False,
                 head: str = "invariant") -> None:
        super().__init__()
        if arch is None:
            raise ValueError("FlatMLP needs the architecture of its networks (arch=)")
        if head not in ("invariant", "equivariant"):
            raise ValueError(f"FlatMLP: head must be 'invariant' or 'equivariant', got {head!r}")
        if head == "equivariant":
            if permute_augment:
                raise ValueError("FlatMLP: permute_augment with the equivariant head would write deltas into the "
                                 "wrong neurons; augment the data instead (--augment permute=true)")
            out_dim = num_params(arch)
        if isinstance(out_dim, bool) or not isinstance(out_dim, int) or out_dim < 1:
            raise ValueError(f"FlatMLP: out_dim must be >= 1, got {out_dim}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"FlatMLP: dropout must be in [0, 1), got {dropout}")
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
            raise ValueError(f"FlatMLP: hidden must be a sequence of layer widths such as (256, 256), got {hidden!r}")
        if any(isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1 for h in hidden):
            raise ValueError(f"FlatMLP: hidden widths must be ints >= 1, got {tuple(hidden)}")
        self.arch, self.head = arch, head
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

    def reset_parameters(self) -> None:
        """Re-initialise every linear layer."""
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()

    def forward(self, batch: Batch) -> Tensor:
        """The MLP on each network's flattened parameters.

        Args:
            batch: a PyG batch of neural graphs of the architecture the model was built for
                (other parameter shapes raise ``ValueError``).

        Shapes: invariant head: ``[num_graphs, out_dim]``; equivariant head: a batch with
        edited ``x`` / ``edge_attr`` (parameters plus the MLP's output).
        """
        archs = graph_archs(batch, "FlatMLP")
        if any(parameter_shapes(a) != parameter_shapes(self.arch) for a in archs):
            raise ValueError(f"FlatMLP was built for {self.arch.widths}; the batch holds networks of other "
                             f"parameter shapes")
        x = flat_params(batch, permute=self.permute_augment and self.training)
        out = self.net(x)
        if self.head == "invariant":
            return out
        return write_flat(batch, x + out, self.arch)
