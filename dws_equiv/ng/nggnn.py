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
from ..uniform import UniformBlocks
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
        stats = {}
        if {"sum", "mean", "var", "std"} & set(self.names):
            stats["sum"] = x.new_zeros(n, x.size(1)).index_add(0, index, x)
            stats["mean"] = stats["sum"] / cnt
        if {"var", "std"} & set(self.names):
            dev = x - stats["mean"].index_select(0, index)
            stats["var"] = x.new_zeros(n, x.size(1)).index_add(0, index, dev * dev) / cnt
        for name in {"min", "max"} & set(self.names):
            stats[name] = _ScatterExtremum.apply(x, index, n, "a" + name)
        return self._combine(stats, deg)

    def forward_uniform(self, blocks: UniformBlocks, incoming: list[list[tuple[Tensor, int]]]) -> Tensor:
        """The same aggregation on a uniform batch, from dense blocks of messages.

        Args:
            blocks: the batch's :class:`~dws_equiv.uniform.UniformBlocks`.
            incoming: for each layer ``l``, the message blocks that reach its neurons as
                ``(messages, dim)``: ``messages`` is ``[B, d_m, d_{m-1}, F]`` and the neurons of
                layer ``l`` are its axis ``3 - dim``, so reducing over ``dim`` gives ``[B, d_l, F]``.

        Shapes: -> ``[N, F * len(aggregators) * len(scalers)]``, equal (up to float summation
        order) to :meth:`forward` on the same messages listed by target.
        """
        if not self.fused:
            raise ValueError(f"PNAAggregation: the uniform path needs fused aggregators, got {self.names}")
        names = set(self.names)
        per_layer: dict[str, list[Tensor]] = {name: [] for name in ("sum", "mean", "var", "min", "max")}
        degrees = []
        for parts in incoming:
            counts = [m.size(dim) for m, dim in parts]
            count = sum(counts)
            mean = _fold(torch.add, [m.sum(dim) for m, dim in parts]) / count
            per_layer["mean"].append(mean)
            per_layer["sum"].append(mean * count)
            want_var, want_ext = bool({"var", "std"} & names), bool({"min", "max"} & names)
            if want_var or want_ext:
                stats = [_BlockStatistics.apply(m, mean, dim, want_var, want_ext) for m, dim in parts]
            if want_var:  # two-pass variance, as in forward: exact 0 for equal messages
                per_layer["var"].append(_fold(torch.add, [ssq for ssq, _, _ in stats]) / count)
            if want_ext:
                per_layer["min"].append(_fold(torch.minimum, [lo for _, lo, _ in stats]))
                per_layer["max"].append(_fold(torch.maximum, [hi for _, _, hi in stats]))
            degrees.append(count)
        stats = {k: blocks.node_tensor(v) for k, v in per_layer.items() if v and (k in names or k == "var")}
        ref = stats["var"] if "var" in stats else next(iter(stats.values()))
        deg = torch.tensor(degrees, dtype=ref.dtype, device=ref.device)
        deg = deg.repeat_interleave(torch.tensor(blocks.widths, device=ref.device)).repeat(blocks.num_graphs)
        return self._combine(stats, deg)

    def _combine(self, stats: dict[str, Tensor], deg: Tensor) -> Tensor:
        """Aggregator outputs from per-node statistics, then every degree scaler.

        Shapes: ``stats[name] [N, F]`` (``sum``, ``mean``, ``var``, ``min``, ``max`` as needed),
        ``deg [N]`` -> ``[N, F * len(aggregators) * len(scalers)]``.
        """
        outs = []
        for name in self.names:
            if name == "std":  # exactly as PyG's StdAggregation on the variance
                std = stats["var"].clamp(min=1e-5).sqrt()
                outs.append(std.masked_fill(std <= math.sqrt(1e-5), 0.0))
            else:
                outs.append(stats[name])
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


class _BlockStatistics(torch.autograd.Function):
    """Sum of squared deviations from a given mean, minimum and maximum of a message block along ``dim``.

    The fused form of ``(x - mean).square().sum(dim)``, ``x.amin(dim)``, ``x.amax(dim)`` with
    one backward pass over the block. ``mean`` is the mean over all of a neuron's messages
    (this block and its other one), so the total gradient through it, ``-2 sum_j (x_j - mean)``
    summed over all its messages, is zero: it is not propagated. Ties of the extrema share
    the gradient evenly, as in :class:`_ScatterExtremum`.
    """

    @staticmethod
    def forward(ctx, x: Tensor, mean: Tensor, dim: int, want_var: bool, want_ext: bool):
        ssq = lo = hi = None
        dev = None
        if want_var:
            dev = x - mean.unsqueeze(dim)
            ssq = torch.linalg.vecdot(dev, dev, dim=dim)
        if want_ext:
            lo, hi = torch.aminmax(x, dim=dim)
        ctx.dim = dim
        ctx.save_for_backward(x, dev, lo, hi)
        return ssq, lo, hi

    @staticmethod
    @once_differentiable
    def backward(ctx, g_ssq, g_lo, g_hi):
        x, dev, lo, hi = ctx.saved_tensors
        dim = ctx.dim
        grad = dev * (2 * g_ssq).unsqueeze(dim) if dev is not None and g_ssq is not None else torch.zeros_like(x)
        for g, value in ((g_lo, lo), (g_hi, hi)):
            if g is not None and value is not None:
                # 1.0 where x is the extremum, written as x's dtype: the sum and the product below then need
                # no conversion of a bool block (2.3x faster backward of a [128, 32, 32, 32] block; same bits)
                hit = torch.eq(x, value.unsqueeze(dim), out=torch.empty_like(x))
                share = g / hit.sum(dim)
                grad.addcmul_(hit, share.unsqueeze(dim))
        return grad, None, None, None, None


def _fold(op, parts: list[Tensor]) -> Tensor:
    return parts[0] if len(parts) == 1 else op(parts[0], parts[1])


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
                 avg_degree: float = 32.0, update_edges: bool = True, edge_hidden: int | None = None) -> None:
        super().__init__(aggr=PNAAggregation(aggregators, scalers, degree_histogram(avg_degree)))
        edge_hidden = hidden if edge_hidden is None else edge_hidden
        self.norm = nn.LayerNorm(hidden)
        self.lin_dst = nn.Linear(hidden, hidden)
        self.lin_src = nn.Linear(hidden, hidden, bias=False)
        self.film = DirectedEdgeProjection(edge_hidden, 2 * hidden)
        self.msg_out = nn.Linear(hidden, hidden)
        self.post = mlp((1 + len(aggregators) * len(scalers)) * hidden, hidden, hidden)
        self.edge_mlp = EdgeUpdate(hidden, edge_hidden) if update_edges else None

    def forward(self, h: Tensor, e: Tensor, edge_index2: Tensor | None, kind2: Tensor | None,
                edge_index: Tensor, blocks: UniformBlocks | None = None) -> tuple[Tensor, Tensor]:
        """One layer: FiLM-conditioned messages, PNA aggregation, node update, then the edge update.

        Args:
            h: node features.
            e: forward-edge features.
            edge_index2, kind2: both directions of every edge and their kinds (:func:`bidirectional`);
                unused (may be ``None``) when ``blocks`` is given.
            edge_index: the forward edges ``[2, E]`` (for the edge update).
            blocks: the dense blocks of a uniform batch (:class:`~dws_equiv.uniform.UniformBlocks`):
                the same messages, computed by broadcasting within each block.

        Shapes: ``h [N, H]``, ``e [E, H_e]``, ``edge_index2 [2, 2E]``, ``kind2 [2E]`` ->
        ``(h [N, H], e [E, H_e])`` (``e`` unchanged when ``update_edges=False``).
        """
        hn = self.norm(h)
        a, b = self.lin_dst(hn), self.lin_src(hn)
        if blocks is None:
            gamma, beta = self.film(e, kind2).chunk(2, -1)
            n = h.size(0)
            agg = self.propagate(edge_index2, a=a, b=b, gamma=gamma, beta=beta, size=(n, n))
        else:
            agg = self._aggregate_uniform(blocks, a, b, e)
        h = h + self.post(torch.cat([hn, agg], -1))
        if self.edge_mlp is not None:
            e = self.edge_mlp(h, e, edge_index, blocks)
        return h, e

    def _aggregate_uniform(self, blocks: UniformBlocks, a: Tensor, b: Tensor, e: Tensor) -> Tensor:
        """:meth:`propagate` on a uniform batch: each block's messages in both directions, by broadcasting.

        Block ``m`` holds the edges from layer ``m-1`` (source) to layer ``m`` (target). Its forward
        messages reach layer ``m`` (reduced over the source axis 2), its reverse messages reach
        layer ``m-1`` (reduced over the target axis 1).

        Shapes: ``a, b [N, H]``, ``e [E, H]`` -> ``[N, H * len(aggregators) * len(scalers)]``.
        """
        directions = self.film.directions(e, chunks=2, offset=(1.0, 0.0))
        incoming: list[list[tuple[Tensor, int]]] = [[] for _ in blocks.widths]
        for (scale, beta), dim in ((directions[0], 2), (directions[1], 1)):
            # a_i + b_j of every edge of this direction: a of its target, b of its source
            z = blocks.broadcast_nodes(*((a, b) if dim == 2 else (b, a)))
            msg = self.msg_out(nn.functional.silu(scale * z + beta))
            for m, block in enumerate(blocks.edge_blocks(msg), 1):
                incoming[m if dim == 2 else m - 1].append((block, dim))
        return self.aggr_module.forward_uniform(blocks, incoming)

    def message(self, a_i: Tensor, b_j: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        """``W_m silu((1 + gamma_ij) * (A h_i + B h_j) + beta_ij)`` for each directed edge ``j -> i``.

        Shapes: all inputs ``[2E, H]`` -> ``[2E, H]`` (or any shapes that broadcast to one, as in the
        uniform path's ``[B, d_m, d_{m-1}, H]`` blocks).
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
                       update_edges=(i < num_layers - 1) or self.updates_last_edges, edge_hidden=self.edge_hidden)
            for i in range(num_layers))

    @property
    def supports_uniform_path(self) -> bool:
        """Dense blocks need the fused aggregators (sum, mean, min, max, var, std); others use scatters."""
        return all(layer.aggr_module.fused for layer in self.layers)
