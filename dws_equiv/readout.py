"""Invariant readouts of DWS features: one fixed-size vector per graph."""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as Fn
from torch_geometric.utils import scatter

from .checks import check_positive_int
from .dense import DenseFeatures, check_uniform_sizes, reduce_dim, resolve_layout
from .uniform import UniformBlocks

__all__ = ["DWSReadout"]


class DWSReadout(nn.Module):
    """Pool node/edge features of every graph into a vector invariant to hidden permutations.

    The vector (size :attr:`out_features`) concatenates, each pooled with ``reduce``:

    * ``b_1``, the mean over layers ``2..M-1`` of ``b_m``, ``b_{M-1}``: pooled hidden biases;
    * the mean over middle layers of the pooled middle weights;
    * ``W_1`` pooled over layer-1 neurons, *per input position* (``max_in * C``);
    * ``W_M`` pooled over layer-(M-1) neurons, *per output position* (``max_out * C``);
    * the output-neuron features ``b_M`` per output position (``max_out * C``): outputs
      are never permuted, so they are read as they are.

    Positions beyond a graph's width are zero, so graphs of any widths and depths
    give vectors of one size, and a graph's vector does not depend on its batch-mates.
    Parameter-free.
    """

    def __init__(self, channels: int, reduce: Literal["mean", "sum", "max"] = "mean",
                 max_in: int = 64, max_out: int = 64) -> None:
        super().__init__()
        check_positive_int("DWSReadout", channels=channels, max_in=max_in, max_out=max_out)
        if reduce not in ("mean", "sum", "max"):
            raise ValueError(f"reduce must be 'mean', 'sum' or 'max', got {reduce!r}")
        self.channels, self.reduce, self.max_in, self.max_out = int(channels), reduce, int(max_in), int(max_out)

    @property
    def out_features(self) -> int:
        """Size of the pooled vector: ``C * (4 + max_in + 2 * max_out)``."""
        return self.channels * (4 + self.max_in + 2 * self.max_out)

    def forward(self, x: Tensor, edge_attr: Tensor, index) -> Tensor:
        """The invariant vector of every graph of the batch (see the class docstring for its parts).

        Args:
            x: node features; input neurons are ignored.
            edge_attr: edge features; residual edges are ignored.
            index: a :class:`DWSIndex` of the batch (gather/scatter path), a
                :class:`~dws_equiv.uniform.UniformBlocks` (dense path) or the batch itself (dense
                when uniform); both paths give the same vector.

        Shapes: ``x [N, C]``, ``edge_attr [E, C]`` -> ``[num_graphs, out_features]``.
        """
        layout = resolve_layout(index, self.max_in, self.max_out, "the readout")
        C, r = self.channels, self.reduce
        if x.size(-1) != C or edge_attr.size(-1) != C:
            raise ValueError(f"DWSReadout({C}) got x {tuple(x.shape)} and edge_attr {tuple(edge_attr.shape)}")
        if isinstance(layout, UniformBlocks):
            return self.forward_dense(DenseFeatures.from_flat(x, edge_attr, layout))
        idx = layout
        G, L = idx.num_graphs, idx.max_depth
        Pi, Po = self.max_in, self.max_out
        # W_1 / W_M per free position, pooled over the hidden neurons (one scatter each)
        first_graph = idx.hidden_graph[idx.first_edge_neuron]
        last_graph = idx.hidden_graph[idx.last_edge_neuron]
        Fp = scatter(edge_attr[idx.first_edges], first_graph * Pi + idx.first_edge_input, 0, dim_size=G * Pi,
                     reduce=r).view(G, Pi * C)
        Lp = scatter(edge_attr[idx.last_edges], last_graph * Po + idx.last_edge_output, 0, dim_size=G * Po,
                     reduce=r).view(G, Po * C)
        O = x.new_zeros(G * Po, C).index_copy(0, idx.output_graph * Po + idx.output_position,
                                              x[idx.output_nodes]).view(G, Po * C)
        # hidden biases and middle weights per (graph, layer)
        Bp = scatter(x[idx.hidden_nodes], idx.hidden_anchor, 0, dim_size=G * L, reduce=r).view(G, L, C)
        Ep = scatter(edge_attr[idx.middle_edges], idx.hidden_anchor[idx.middle_edge_target], 0, dim_size=G * L,
                     reduce=r).view(G, L, C)
        k = torch.arange(1, L + 1, device=x.device).view(1, -1)
        M = idx.depth.view(-1, 1)
        mid = ((k >= 2) & (k <= M - 1)).to(x.dtype)                  # layers 2..M-1
        denom = mid.sum(1, keepdim=True).clamp(min=1)
        B_first = Bp[:, 0]
        B_last = Bp[torch.arange(G, device=x.device), idx.depth - 2]
        B_mid = (Bp * mid.unsqueeze(-1)).sum(1) / denom
        E_mid = (Ep * mid.unsqueeze(-1)).sum(1) / denom
        return torch.cat([B_first, B_mid, B_last, E_mid, Fp, Lp, O], 1)

    def forward_dense(self, feats: DenseFeatures) -> Tensor:
        """The invariant vector of every graph of a uniform batch, from its per-layer tensors.

        The same vector as :meth:`forward` (positions beyond the batch's ``d_0`` / ``d_M`` up to
        ``max_in`` / ``max_out`` are zero), with reductions over axes instead of scatters.

        Args:
            feats: node and edge features of a uniform batch with ``C`` channels.

        Shapes: ``nodes[l] [B, d_l, C]``, ``edges[m-1] [B, d_m, d_{m-1}, C]`` -> ``[B, out_features]``.
        """
        M, B, C, r = feats.depth, feats.blocks.num_graphs, self.channels, self.reduce
        check_uniform_sizes(feats.blocks, self.max_in, self.max_out, "the readout")
        if feats.nodes[1].size(-1) != C or feats.edges[0].size(-1) != C:
            raise ValueError(f"DWSReadout({C}) got {feats.nodes[1].size(-1)} node and {feats.edges[0].size(-1)} "
                             "edge channels")
        W = feats.edges

        def positions(t: Tensor, size: int) -> Tensor:              # [B, d, C] -> [B, size * C], zero-padded
            return Fn.pad(t, (0, 0, 0, size - t.size(1))).reshape(B, size * C)

        Fp = positions(reduce_dim(W[0], 1, r), self.max_in)          # W_1 pooled over layer-1 neurons
        Lp = positions(reduce_dim(W[M - 1], 2, r), self.max_out)     # W_M pooled over layer-(M-1) neurons
        O = positions(feats.nodes[M], self.max_out)
        Bp = [reduce_dim(feats.nodes[h], 1, r) for h in range(1, M)]
        if M > 2:                                                   # means over the middle layers 2..M-1
            B_mid = torch.stack(Bp[1:]).sum(0) / (M - 2)
            E_mid = torch.stack([reduce_dim(W[m - 1].flatten(1, 2), 1, r) for m in range(2, M)]).sum(0) / (M - 2)
        else:
            B_mid = E_mid = Bp[0].new_zeros(B, C)
        return torch.cat([Bp[0], B_mid, Bp[-1], E_mid, Fp, Lp, O], 1)
