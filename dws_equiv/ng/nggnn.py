"""NG-GNN: PNA-style message passing on neural graphs with FiLM-modulated messages and edge updates."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.aggr import DegreeScalerAggregation

from .base import DirectedEdgeProjection, EdgeUpdate, NGProcessor
from .heads import mlp

__all__ = ["NGGNNLayer", "NGGNN"]


def degree_histogram(avg_degree: float) -> Tensor:
    """A one-bin in-degree histogram; PNA scalers only use its mean (log) degree."""
    d = max(1, int(round(avg_degree)))
    hist = torch.zeros(d + 1)
    hist[d] = 1.0
    return hist


class NGGNNLayer(MessagePassing):
    """One NG-GNN layer (pre-norm, residual).

    Message along edge ``j -> i`` (both directions of every weight):
    ``m_ij = W_m silu((1 + gamma_ij) * (A h_i + B h_j) + beta_ij)`` with ``(gamma, beta)`` a
    per-direction linear map of the edge state (FiLM). Messages are aggregated by
    :class:`DegreeScalerAggregation` (PNA aggregators x degree scalers; degrees come from the
    actual ``edge_index``, the normaliser from ``avg_degree``), then
    ``h_i <- h_i + MLP([LN(h_i), agg_i])`` and ``e <- e + MLP(LN(e), h_src, h_dst)``.
    """

    def __init__(self, hidden: int, aggregators: Sequence[str] = ("mean", "min", "max", "std"),
                 scalers: Sequence[str] = ("identity", "amplification", "attenuation"),
                 avg_degree: float = 32.0, update_edges: bool = True) -> None:
        super().__init__(aggr=DegreeScalerAggregation(list(aggregators), list(scalers),
                                                      degree_histogram(avg_degree)))
        self.norm = nn.LayerNorm(hidden)
        self.lin_dst = nn.Linear(hidden, hidden)
        self.lin_src = nn.Linear(hidden, hidden, bias=False)
        self.film = DirectedEdgeProjection(hidden, 2 * hidden)
        self.msg_out = nn.Linear(hidden, hidden)
        self.post = mlp((1 + len(aggregators) * len(scalers)) * hidden, hidden, hidden)
        self.edge_mlp = EdgeUpdate(hidden) if update_edges else None

    def forward(self, h: Tensor, e: Tensor, edge_index2: Tensor, kind2: Tensor,
                edge_index: Tensor) -> tuple[Tensor, Tensor]:
        hn = self.norm(h)
        gamma, beta = self.film(e, kind2).chunk(2, -1)
        n = h.size(0)
        agg = self.propagate(edge_index2, a=self.lin_dst(hn), b=self.lin_src(hn), gamma=gamma, beta=beta,
                             size=(n, n))
        h = h + self.post(torch.cat([hn, agg], -1))
        if self.edge_mlp is not None:
            e = self.edge_mlp(h, e, edge_index)
        return h, e

    def message(self, a_i: Tensor, b_j: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        return self.msg_out(nn.functional.silu((1 + gamma) * (a_i + b_j) + beta))


class NGGNN(NGProcessor):
    """NG-GNN processor (Kofinas et al., ICLR 2024) on (heterogeneous) batches of neural graphs.

    ``NGGNN(out_dim=10, hidden=64, num_layers=4, head='invariant', use_probes=True)``;
    ``forward(batch)`` returns ``[num_graphs, out_dim]`` (invariant head), an edited clone of the
    batch (``head='equivariant'``) or ``(h, e)`` (``head=None``). See :class:`NGProcessor` and
    :class:`NGGNNLayer` for the other hyper-parameters.
    """

    def __init__(self, out_dim: int = 1, hidden: int = 64, num_layers: int = 4, head: str | None = "invariant",
                 *, aggregators: Sequence[str] = ("mean", "min", "max", "std"),
                 scalers: Sequence[str] = ("identity", "amplification", "attenuation"),
                 avg_degree: float = 32.0, **kwargs) -> None:
        super().__init__(out_dim, hidden, num_layers, head, **kwargs)
        self.layers = nn.ModuleList(
            NGGNNLayer(hidden, aggregators, scalers, avg_degree,
                       update_edges=(i < num_layers - 1) or self.updates_last_edges)
            for i in range(num_layers))
