"""NG-GNN: PNA-style message passing on neural graphs with FiLM-modulated messages and edge updates."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.aggr import DegreeScalerAggregation

from ..reset import ResetChildren
from .base import DirectedEdgeProjection, EdgeUpdate, NGProcessor
from .heads import mlp

__all__ = ["NGGNNLayer", "NGGNN", "PNAAggregation"]


def degree_histogram(avg_degree: float) -> Tensor:
    """A one-bin in-degree histogram; PNA scalers only use its mean (log) degree."""
    d = max(1, int(round(avg_degree)))
    hist = torch.zeros(d + 1)
    hist[d] = 1.0
    return hist


class _ScatterExtremum(torch.autograd.Function):
    """Per-node ``amax``/``amin`` of edge messages with a cheap backward.

    Same values as ``scatter_reduce(include_self=False)`` (0 for nodes without messages), and
    the same gradient rule (split evenly between tied messages), but the backward is one gather
    and one multiply by a saved ``[2E, H]`` bool mask, instead of PyTorch's generic
    ``scatter_reduce`` backward (several gathers, comparisons and a scatter of ``[2E, H]``).
    """

    @staticmethod
    def forward(ctx, x: Tensor, index: Tensor, dim_size: int, reduce: str) -> Tensor:
        out = x.new_zeros(dim_size, x.size(1)).scatter_reduce_(
            0, index.view(-1, 1).expand_as(x), x, reduce, include_self=False)
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(index, x == out.index_select(0, index))
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        index, hit = ctx.saved_tensors
        count = grad.new_zeros(grad.shape).index_add_(0, index, hit.to(grad.dtype)).clamp_(min=1)
        return (grad / count).index_select(0, index).mul_(hit), None, None, None


_FUSED = {"sum", "mean", "min", "max", "var", "std"}


class PNAAggregation(DegreeScalerAggregation):
    """:class:`DegreeScalerAggregation` with the sum/mean/min/max/var/std aggregators fused.

    Same outputs and parameters (so checkpoints are interchangeable), computed in one pass
    over shared intermediates: the degree and the sum are computed once, min/max use
    :class:`_ScatterExtremum`, and the variance is the two-pass ``mean((x - mean)^2)`` (exact
    0 for a single message) rather than ``mean(x^2) - mean^2``, whose cancellation in float32
    made the std (clamped at 1e-5 and zeroed below) flip under a mere reordering of messages.
    Other aggregator names fall back to PyG's implementation.
    """

    def __init__(self, aggregators: Sequence[str], scalers: Sequence[str], deg: Tensor) -> None:
        super().__init__(list(aggregators), list(scalers), deg)
        self.names = list(aggregators)
        self.fused = all(a in _FUSED for a in self.names)

    def forward(self, x: Tensor, index: Tensor | None = None, ptr: Tensor | None = None,
                dim_size: int | None = None, dim: int = -2) -> Tensor:
        """Aggregate messages per target with every aggregator, then apply every degree scaler.

        Args:
            x: messages.
            index: target of each message (``None``, or inputs other than 2-d, fall back to PyG's path).
            ptr, dim_size, dim: as in :class:`torch_geometric.nn.aggr.Aggregation`.

        Shapes: ``x [M, F]``, ``index [M]`` -> ``[dim_size, F * len(aggregators) * len(scalers)]``.
        """
        if not self.fused or x.dim() != 2 or index is None:
            return super().forward(x, index, ptr, dim_size, dim)
        n = dim_size
        deg = x.new_zeros(n).index_add_(0, index, x.new_ones(index.numel()))
        cnt = deg.clamp(min=1).unsqueeze(-1)
        total = mean = var = None
        if {"sum", "mean", "var", "std"} & set(self.names):
            total = x.new_zeros(n, x.size(1)).index_add(0, index, x)
            mean = total / cnt
        if {"var", "std"} & set(self.names):
            dev = x - mean.index_select(0, index)
            var = x.new_zeros(n, x.size(1)).index_add(0, index, dev * dev) / cnt
        outs = []
        for name in self.names:
            if name == "sum":
                outs.append(total)
            elif name == "mean":
                outs.append(mean)
            elif name in ("min", "max"):
                outs.append(_ScatterExtremum.apply(x, index, n, "a" + name))
            elif name == "var":
                outs.append(var)
            else:  # std, exactly as PyG's StdAggregation on the variance
                std = var.clamp(min=1e-5).sqrt()
                outs.append(std.masked_fill(std <= math.sqrt(1e-5), 0.0))
        out = torch.cat(outs, -1) if len(outs) > 1 else outs[0]
        deg = deg.unsqueeze(-1)
        scaled = []
        for scaler in self.scaler:
            if scaler == "identity":
                scaled.append(out)
            elif scaler == "amplification":
                scaled.append(out * (torch.log(deg + 1) / self.avg_deg_log))
            elif scaler == "attenuation":
                scaled.append(out * (self.avg_deg_log / torch.log(deg.clamp(min=1) + 1)))
            elif scaler == "linear":
                scaled.append(out * (deg / self.avg_deg_lin))
            elif scaler == "inverse_linear":
                scaled.append(out * (self.avg_deg_lin / deg.clamp(min=1)))
            else:
                raise ValueError(f"Unknown scaler '{scaler}'")
        return torch.cat(scaled, -1) if len(scaled) > 1 else scaled[0]


class NGGNNLayer(ResetChildren, MessagePassing):
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
        super().__init__(aggr=PNAAggregation(aggregators, scalers, degree_histogram(avg_degree)))
        self.norm = nn.LayerNorm(hidden)
        self.lin_dst = nn.Linear(hidden, hidden)
        self.lin_src = nn.Linear(hidden, hidden, bias=False)
        self.film = DirectedEdgeProjection(hidden, 2 * hidden)
        self.msg_out = nn.Linear(hidden, hidden)
        self.post = mlp((1 + len(aggregators) * len(scalers)) * hidden, hidden, hidden)
        self.edge_mlp = EdgeUpdate(hidden) if update_edges else None

    def forward(self, h: Tensor, e: Tensor, edge_index2: Tensor, kind2: Tensor,
                edge_index: Tensor) -> tuple[Tensor, Tensor]:
        """One layer: FiLM-conditioned messages, PNA aggregation, node update, then the edge update.

        Args:
            h: node features.
            e: forward-edge features.
            edge_index2, kind2: both directions of every edge and their kinds (:func:`bidirectional`).
            edge_index: the forward edges ``[2, E]`` (for the edge update).

        Shapes: ``h [N, H]``, ``e [E, H]``, ``edge_index2 [2, 2E]``, ``kind2 [2E]`` ->
        ``(h [N, H], e [E, H])`` (``e`` unchanged when ``update_edges=False``).
        """
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
        """``W_m silu((1 + gamma_ij) * (A h_i + B h_j) + beta_ij)`` for each directed edge ``j -> i``.

        Shapes: all inputs ``[2E, H]`` -> ``[2E, H]``.
        """
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
