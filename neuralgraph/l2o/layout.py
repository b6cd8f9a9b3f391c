"""Where an optimizee's parameters sit: one flat vector per network, and its neural-graph slots.

A learned optimizer works on a flat parameter vector ``theta [B, P]`` of B networks of one
architecture (weights then bias of every parametric layer, in the model's order). Its
processor reads the same numbers as a neural graph: the bias of neuron ``i`` is node ``i``'s
feature, tap ``k`` of the kernel between neurons ``j`` and ``i`` is column ``k`` of edge
``j -> i``. :class:`ParamLayout` holds the two maps between them, computed once per
architecture by the library's own conversion (:func:`neuralgraph.graph_from_params` on
parameters whose values are their flat indices), so the graph the optimizer sees is, by
construction, the graph :func:`neuralgraph.to_graph` makes of the optimizee.

Shapes: ``N`` nodes and ``E`` edges per graph, ``K`` taps per edge (the processor's), ``P``
parameters per network.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

from ..architecture import Architecture, leaf_modules
from ..graph import graph_from_params, stacked_to_batch
from ..schema import EDGE_FORWARD, NeuralGraph

__all__ = ["ParamLayout", "model_parameters", "optimizee_architecture"]

_PARAMETRIC = (nn.Linear, nn.Conv1d, nn.Conv2d)


def optimizee_architecture(model: nn.Module) -> Architecture:
    """The :class:`~neuralgraph.Architecture` of a model a learned optimizer can train.

    ``ValueError`` starting with ``l2o:`` when the model cannot be a neural graph (an
    unsupported module, not an ``nn.Sequential``) or has parameters the optimizer does not
    update (normalisation layers: their scale and shift are node features, not weights).
    """
    try:
        arch = Architecture.from_module(model)
    except ValueError as e:
        raise ValueError(f"l2o: the optimizee cannot be represented as a neural graph: {e}") from None
    _check_supported(arch)
    return arch


def _check_supported(arch: Architecture) -> None:
    if not isinstance(arch, Architecture):
        raise ValueError(f"l2o: expected an Architecture, got {type(arch).__name__}")
    for m, layer in enumerate(arch.layers, start=1):
        if layer.norm is not None:
            raise ValueError(f"l2o: layer {m} ({layer.kind}) is followed by {layer.norm.kind}; learned optimizers "
                             "here update the weights and biases of Linear / Conv layers only, so optimizees "
                             "with normalisation layers are not supported")


def model_parameters(model: nn.Module, arch: Architecture) -> list[nn.Parameter]:
    """The parameters of ``model`` in flat-layout order: weight then bias of each parametric layer.

    ``ValueError`` when the model holds parameters outside those layers, or a parameter does not
    require gradients (the optimizer would silently leave it, or the update would be lost).
    """
    params: list[nn.Parameter] = []
    for where, module in leaf_modules(model):
        if isinstance(module, _PARAMETRIC):
            params.append(module.weight)
            if module.bias is not None:
                params.append(module.bias)
    known = {id(p) for p in params}
    for name, p in model.named_parameters():
        if id(p) not in known:
            raise ValueError(f"l2o: parameter {name} {tuple(p.shape)} is not a Linear / Conv weight or bias; "
                             "the learned optimizer cannot update it")
        if not p.requires_grad:
            raise ValueError(f"l2o: parameter {name} does not require gradients; unfreeze it or leave the "
                             "layer out of the optimizee")
    want = sum(2 if l.bias else 1 for l in arch.layers)
    if len(params) != want:
        raise ValueError(f"l2o: found {len(params)} weight/bias tensors, the architecture has {want}")
    return params


@dataclass(frozen=True, eq=False)
class ParamLayout:
    """The flat layout of an architecture's parameters and their slots in its neural graph.

    Build with :meth:`of`. Parameter ``p`` of the flat vector is tensor ``tensor_id[p]``
    (``W_1, b_1, W_2, ...``; layers without bias have no bias tensor).

    Attributes:
        arch: the optimizee's architecture.
        taps: ``K``, edge feature taps of the graphs (at least the largest kernel).
        shapes: shape of every parameter tensor, in flat order.
        offsets: start of every tensor in the flat vector.
        tensor_id: ``[P]`` the tensor of each parameter.
        node_param: ``[N]`` the flat index of each node's bias, ``P`` for nodes without one.
        edge_param: ``[E, K]`` the flat index of each edge tap's weight, ``P`` for padded taps
            and residual edges.
        param_slot: ``[P]`` where each parameter sits among ``N + E * K`` slots (nodes first,
            then edge ``e`` tap ``k`` at ``N + e * K + k``).
        graph: the optimizee's neural graph (structure; ``x`` / ``edge_attr`` hold ``index + 1``).
    """

    arch: Architecture
    taps: int
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]
    tensor_id: Tensor
    node_param: Tensor
    edge_param: Tensor
    param_slot: Tensor
    graph: NeuralGraph
    _batches: dict = field(default_factory=dict, repr=False)

    @staticmethod
    def of(arch: Architecture, taps: int | None = None) -> "ParamLayout":
        """The layout of ``arch``, with graphs padded to ``taps`` kernel taps (default: its largest kernel).

        ``ValueError`` for architectures a learned optimizer cannot train (see
        :func:`optimizee_architecture`) and for ``taps`` below the largest kernel.
        """
        _check_supported(arch)
        if taps is not None and (isinstance(taps, bool) or not isinstance(taps, int) or taps < arch.edge_dim):
            raise ValueError(f"l2o: the optimizee has {arch.edge_dim}-tap kernels but the optimizer reads "
                             f"{taps!r} taps per edge; kernels larger than the meta-trained ones are not supported")
        shapes, offsets, weights, biases = [], [], [], []
        P = 0

        def ids(shape: tuple[int, ...]) -> Tensor:
            nonlocal P
            shapes.append(tuple(shape))
            offsets.append(P)
            n = int(torch.Size(shape).numel())
            out = torch.arange(P + 1, P + n + 1, dtype=torch.float64).view(shape)   # index + 1: 0 marks "none"
            P += n
            return out

        for layer in arch.layers:
            weights.append(ids(layer.weight_shape))
            biases.append(ids((layer.out_features,)) if layer.bias else None)
        graph = graph_from_params(weights, biases, arch, edge_dim=taps)
        tensor_id = torch.repeat_interleave(torch.arange(len(shapes)),
                                            torch.tensor([int(torch.Size(s).numel()) for s in shapes]))
        node_param = graph.x[:, 0].long() - 1
        node_param[node_param < 0] = P
        real = (graph.edge_type == EDGE_FORWARD).unsqueeze(-1) & graph.edge_mask
        none = torch.full_like(graph.edge_attr, P, dtype=torch.long)
        edge_param = torch.where(real, graph.edge_attr.long() - 1, none)
        N, K = graph.num_nodes, graph.edge_attr.size(-1)
        slot = torch.full((P + 1,), -1, dtype=torch.long)
        slot[node_param] = torch.arange(N)
        slot[edge_param.reshape(-1)] = N + torch.arange(edge_param.numel())
        slot = slot[:P]
        held = int((node_param < P).sum()) + int((edge_param < P).sum())
        if held != P or bool((slot < 0).any()):
            raise ValueError("l2o: internal error, the neural graph does not hold every parameter exactly once")
        return ParamLayout(arch, K, tuple(shapes), tuple(offsets), tensor_id, node_param, edge_param, slot, graph)

    @property
    def numel(self) -> int:
        """``P``, parameters per network."""
        return int(self.tensor_id.numel())

    @property
    def num_tensors(self) -> int:
        """Parameter tensors per network (weights and biases)."""
        return len(self.shapes)

    def split(self, theta: Tensor) -> tuple[list[Tensor], list[Tensor | None]]:
        """Per-layer views of a flat parameter stack: weights ``[B, out, in, *k]`` and biases ``[B, out]``.

        Shapes: ``theta [B, P]``.
        """
        self._check_flat(theta, "theta")
        views = [theta[:, o:o + int(torch.Size(s).numel())].view(theta.shape[0], *s)
                 for o, s in zip(self.offsets, self.shapes)]
        weights, biases, i = [], [], 0
        for layer in self.arch.layers:
            weights.append(views[i])
            biases.append(views[i + 1] if layer.bias else None)
            i += 2 if layer.bias else 1
        return weights, biases

    def flatten(self, tensors: Sequence[Tensor]) -> Tensor:
        """``[B, P]`` from the parameter tensors in flat order, each ``[B, *shape]``."""
        if len(tensors) != self.num_tensors:
            raise ValueError(f"l2o: expected {self.num_tensors} parameter tensors, got {len(tensors)}")
        B = tensors[0].shape[0]
        for t, s in zip(tensors, self.shapes):
            if tuple(t.shape) != (B, *s):
                raise ValueError(f"l2o: parameter tensor of shape {tuple(t.shape)}, expected {(B, *s)}")
        return torch.cat([t.reshape(B, -1) for t in tensors], 1)

    def batch(self, B: int, device: torch.device | str = "cpu") -> Batch:
        """The structure of B copies of the optimizee's graph as one uniform PyG batch (cached).

        Its ``x`` / ``edge_attr`` are placeholders: :meth:`graph_features` gives the values.
        """
        key = (int(B), str(torch.device(device)))
        if key not in self._batches:
            weights = [torch.zeros(1, *l.weight_shape, device=device).expand(B, *l.weight_shape)
                       for l in self.arch.layers]
            biases = [torch.zeros(1, l.out_features, device=device).expand(B, -1) if l.bias else None
                      for l in self.arch.layers]
            self._batches[key] = stacked_to_batch(weights, biases, self.arch, edge_dim=self.taps)
        return self._batches[key]

    def graph_features(self, feats: Tensor) -> tuple[Tensor, Tensor]:
        """Per-parameter features placed on the graph: node ``[B * N, F]`` and edge ``[B * E, K * F]``.

        Nodes without a bias and padded taps get zeros. Shapes: ``feats [B, P, F]``.
        """
        B, P, F = feats.shape
        if P != self.numel:
            raise ValueError(f"l2o: features for {P} parameters, the optimizee has {self.numel}")
        padded = torch.cat([feats, feats.new_zeros(B, 1, F)], 1)
        node = padded[:, self.node_param].reshape(-1, F)
        edge = padded[:, self.edge_param.reshape(-1)].reshape(-1, self.taps * F)
        return node, edge

    def parameter_values(self, node: Tensor, edge: Tensor, B: int) -> Tensor:
        """The inverse of :meth:`graph_features`: per-slot outputs back to ``[B, P, C]``.

        Shapes: ``node [B * N, C]``, ``edge [B * E, K * C]``.
        """
        C = node.shape[-1]
        slots = torch.cat([node.reshape(B, -1, C), edge.reshape(B, -1, C)], 1)
        return slots[:, self.param_slot]

    def _check_flat(self, theta: Tensor, name: str) -> None:
        if not isinstance(theta, Tensor) or theta.dim() != 2 or theta.shape[1] != self.numel:
            got = tuple(theta.shape) if isinstance(theta, Tensor) else type(theta).__name__
            raise ValueError(f"l2o: {name} must be [B, {self.numel}] (B networks' flat parameters), got {got}")
