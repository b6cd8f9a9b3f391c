"""Heads of the neural-graph processors.

* :class:`InvariantHead`: output-neuron features in their fixed order (zero-padded to
  ``max_out`` slots, so the size never depends on the batch) concatenated with the mean of the
  hidden-neuron features of the graph, then an MLP -> ``[num_graphs, out_dim]``. Invariant
  because output neurons are never permuted and the mean forgets the hidden order.
* :class:`EquivariantHead`: per-neuron bias deltas and per-edge weight deltas, added to the
  graph's ``x`` and ``edge_attr`` of a clone of the input; the result rebuilds with
  :func:`neuralgraph.to_model`. Input neurons (no bias) and residual edges (constant weight 1)
  are left unchanged, and padded kernel taps (``edge_mask`` False) stay zero.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.utils import scatter

from neuralgraph.schema import EDGE_FORWARD, NODE_HIDDEN, NODE_INPUT, NODE_OUTPUT, batch_vector, num_graphs

from ..reset import ResetChildren

__all__ = ["InvariantHead", "EquivariantHead", "mlp"]


def mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    """``Linear(d_in, d_hidden) -> SiLU -> Linear(d_hidden, d_out)``, the MLP of the heads and layers."""
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.SiLU(), nn.Linear(d_hidden, d_out))


class InvariantHead(ResetChildren, nn.Module):
    """``[N, H]`` node features -> ``[num_graphs, out_dim]``, invariant to hidden permutations."""

    def __init__(self, hidden: int, out_dim: int, max_out: int = 64) -> None:
        super().__init__()
        self.max_out = max_out
        self.mlp = mlp(hidden * (max_out + 1), hidden, out_dim)

    def forward(self, graph: Data, h: Tensor) -> Tensor:
        """One vector per graph from its output-neuron features (by position) and its mean hidden feature.

        Args:
            graph: the batch (reads ``node_type``, ``node_pos`` and the graph index).
            h: node features.

        Shapes: ``h [N, H]`` -> ``[num_graphs, out_dim]``. A graph with more than ``max_out`` output
        neurons raises ``ValueError``.
        """
        B = num_graphs(graph)
        gb = batch_vector(graph)
        out = graph.node_type == NODE_OUTPUT
        idx = out.nonzero().squeeze(1)
        pos = graph.node_pos[idx]
        if idx.numel() and int(pos.max()) >= self.max_out:
            raise ValueError(f"a graph has {int(pos.max()) + 1} output neurons but the head was built with "
                             f"max_out={self.max_out}; raise max_out")
        slots = h.new_zeros(B, self.max_out, h.size(-1)).index_put((gb[idx], pos), h[idx])
        hid = (graph.node_type == NODE_HIDDEN).nonzero().squeeze(1)
        pooled = scatter(h[hid], gb[hid], dim=0, dim_size=B, reduce="mean")
        return self.mlp(torch.cat([slots.flatten(1), pooled], 1))


class EquivariantHead(ResetChildren, nn.Module):
    """Node/edge features -> a clone of the graph with ``x += dx`` and ``edge_attr += dw``."""

    def __init__(self, hidden: int, max_taps: int = 9, edge_hidden: int | None = None) -> None:
        super().__init__()
        edge_hidden = hidden if edge_hidden is None else edge_hidden
        self.node = mlp(hidden, hidden, 1)
        self.edge = mlp(2 * hidden + edge_hidden, hidden, max_taps)

    def deltas(self, graph: Data, h: Tensor, e: Tensor) -> tuple[Tensor, Tensor]:
        """``dx [N, 1]`` and ``dw [E, K]`` (``K`` = the graph's taps), masked as documented."""
        src, dst = graph.edge_index
        dx = self.node(h) * (graph.node_type != NODE_INPUT).unsqueeze(-1)
        K = graph.edge_attr.size(-1)
        dw = self.edge(torch.cat([e, h[src], h[dst]], 1))[:, :K]
        keep = (graph.edge_type == EDGE_FORWARD).unsqueeze(-1)
        if "edge_mask" in graph:
            keep = keep & graph.edge_mask.bool()
        return dx, dw * keep

    def forward(self, graph: Data, h: Tensor, e: Tensor) -> Data:
        """A shallow clone of ``graph`` with the deltas of :meth:`deltas` added to ``x`` and ``edge_attr``.

        Shapes: ``h [N, H]``, ``e [E, H_e]`` -> a graph with ``x [N, 1]`` and ``edge_attr [E, K]`` (dtypes kept).
        """
        dx, dw = self.deltas(graph, h, e)
        out = copy.copy(graph)                     # shallow: structure tensors are shared, not copied
        out.x = graph.x + dx.to(graph.x.dtype)
        out.edge_attr = graph.edge_attr + dw.to(graph.edge_attr.dtype)
        return out
