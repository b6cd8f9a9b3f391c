"""Index structure shared by every DWS layer of a model: computed once per batch.

The DWS layer never loops over graphs. It works on *set objects*: every tensor of
weight space is re-indexed by the hidden layers only, with free (input/output)
positions folded into channels:

* ``B``  bias of a hidden neuron (node of layer ``1..M-1``);
* ``F``  ``W_1`` folded: for a neuron of layer 1, its ``d_0`` incoming weights in
  input order (``[H, d_in * C]``, zero-padded to the batch's largest ``d_0``);
* ``L``  ``W_M`` folded: for a neuron of layer ``M-1``, its ``d_M`` outgoing weights
  in output order;
* ``E``  a *middle* weight ``W_m`` (``2 <= m <= M-1``): an edge between two hidden neurons;
* ``O``  ``b_M`` folded: one ``[d_out * C]`` vector per graph.

This module computes the gather/scatter indices for those objects.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch_geometric.utils import scatter

__all__ = ["DWSIndex"]

EDGE_FORWARD = 0


@dataclass
class DWSIndex:
    """Gather/scatter indices of one batch of neural graphs (see module docstring)."""

    num_nodes: int
    num_edges: int
    num_graphs: int
    depth: Tensor          # [G] M of each graph
    L: int                 # largest depth: anchor rows per graph (anchors 1..L)
    d_in: int              # largest d_0 in the batch
    d_out: int             # largest d_M in the batch
    hid: Tensor            # [H] node ids of hidden neurons
    hid_layer: Tensor      # [H] their layer h
    hid_row: Tensor        # [H] anchor row g*L + h-1
    hid_depth: Tensor      # [H] depth of their graph
    fe: Tensor             # first-layer edge ids
    fe_flat: Tensor        # hid(dst) * d_in + pos(src)
    le: Tensor             # last-layer edge ids
    le_flat: Tensor        # hid(src) * d_out + pos(dst)
    me: Tensor             # middle edge ids
    me_dst: Tensor         # hid(dst)
    me_src: Tensor         # hid(src)
    me_layer: Tensor       # m
    me_depth: Tensor       # depth of their graph
    on: Tensor             # output node ids
    on_flat: Tensor        # g * d_out + pos
    on_row_flat: Tensor    # (g*L + M-1) * d_out + pos (anchor row of b_M)
    first_row: Tensor      # [G] g*L + 0
    last_row: Tensor       # [G] g*L + M-2
    edge_order: Tensor     # cat(me, fe, le): where the layer's concatenated edge outputs go
    node_order: Tensor     # cat(hid, on): where its concatenated node outputs go
    _groups: dict = field(default_factory=dict, repr=False)

    @property
    def H(self) -> int:
        return self.hid.numel()

    @staticmethod
    def from_batch(batch, max_in: int | None = None, max_out: int | None = None) -> "DWSIndex":
        """Build the index of a ``NeuralGraph`` or a PyG ``Batch`` of them.

        Raises ``ValueError`` for a graph without a hidden layer, or with more input
        (output) neurons than ``max_in`` (``max_out``).
        """
        layer, pos = batch.node_layer, batch.node_pos
        device = layer.device
        N = layer.numel()
        if "batch" in batch and batch.batch is not None:
            gb = batch.batch
            G = int(batch.num_graphs)
        else:
            gb = torch.zeros(N, dtype=torch.long, device=device)
            G = 1
        depth = scatter(layer, gb, 0, dim_size=G, reduce="max")
        if bool((depth < 2).any()):
            g = int(torch.nonzero(depth < 2)[0])
            raise ValueError(f"graph {g} has depth {int(depth[g])}: DWS layers need at least one hidden layer "
                             "(NG-GNN / NG-T process networks without one)")
        L = int(depth.max())
        Mn = depth[gb]
        is_in = layer == 0
        is_out = layer == Mn
        d_in_g = scatter(is_in.long(), gb, 0, dim_size=G, reduce="sum")
        d_out_g = scatter(is_out.long(), gb, 0, dim_size=G, reduce="sum")
        d_in, d_out = int(d_in_g.max()), int(d_out_g.max())
        if max_in is not None and d_in > max_in:
            g = int(torch.argmax(d_in_g))
            raise ValueError(f"graph {g} has {d_in} input neurons but the DWS layer was built with max_in={max_in}")
        if max_out is not None and d_out > max_out:
            g = int(torch.argmax(d_out_g))
            raise ValueError(f"graph {g} has {d_out} output neurons but the DWS layer was built with max_out={max_out}")
        hidden = ~is_in & ~is_out
        hid = torch.nonzero(hidden).view(-1)
        node2hid = torch.full((N,), -1, dtype=torch.long, device=device)
        node2hid[hid] = torch.arange(hid.numel(), device=device)
        hid_layer = layer[hid]
        hid_row = gb[hid] * L + hid_layer - 1

        src, dst = batch.edge_index
        fwd = torch.ones(src.numel(), dtype=torch.bool, device=device)
        if "edge_type" in batch and batch.edge_type is not None:
            fwd = batch.edge_type == EDGE_FORWARD
        el = layer[dst]
        Me = Mn[dst]
        first = fwd & (el == 1)
        last = fwd & (el == Me)
        middle = fwd & ~first & ~last
        fe = torch.nonzero(first).view(-1)
        le = torch.nonzero(last).view(-1)
        me = torch.nonzero(middle).view(-1)
        on = torch.nonzero(is_out).view(-1)
        g_on = gb[on]
        garange = torch.arange(G, device=device)
        return DWSIndex(
            num_nodes=N, num_edges=src.numel(), num_graphs=G, depth=depth, L=L, d_in=d_in, d_out=d_out,
            hid=hid, hid_layer=hid_layer, hid_row=hid_row, hid_depth=Mn[hid],
            fe=fe, fe_flat=node2hid[dst[fe]] * d_in + pos[src[fe]],
            le=le, le_flat=node2hid[src[le]] * d_out + pos[dst[le]],
            me=me, me_dst=node2hid[dst[me]], me_src=node2hid[src[me]], me_layer=el[me], me_depth=Me[me],
            on=on, on_flat=g_on * d_out + pos[on],
            on_row_flat=(g_on * L + depth[g_on] - 1) * d_out + pos[on],
            first_row=garange * L, last_row=garange * L + depth - 2,
            edge_order=torch.cat([me, fe, le]), node_order=torch.cat([hid, on]),
        )

    # -- groups of rows sharing parameters in the per-layer ("full") tying -------------------

    def _group(self, name: str, depth: Tensor, pos: Tensor) -> list[tuple[int, int, Tensor]]:
        if name not in self._groups:
            code = depth * (self.L + 2) + pos
            keys, inverse = torch.unique(code, return_inverse=True)
            out = []
            for k, key in enumerate(keys.tolist()):
                out.append((key // (self.L + 2), key % (self.L + 2), torch.nonzero(inverse == k).view(-1)))
            self._groups[name] = out
        return self._groups[name]

    def node_groups(self) -> list[tuple[int, int, Tensor]]:
        """(M, h, indices into the hidden nodes) for every (depth, layer) present."""
        return self._group("node", self.hid_depth, self.hid_layer)

    def edge_groups(self) -> list[tuple[int, int, Tensor]]:
        """(M, m, indices into the middle edges) for every (depth, layer) present."""
        return self._group("edge", self.me_depth, self.me_layer)

    def anchor_groups(self) -> list[tuple[int, int, Tensor]]:
        """(M, a, anchor rows g*L + a-1) for every depth present and anchor a = 1..M."""
        if "anchor" not in self._groups:
            out = []
            for M in torch.unique(self.depth).tolist():
                graphs = torch.nonzero(self.depth == M).view(-1)
                for a in range(1, M + 1):
                    out.append((M, a, graphs * self.L + a - 1))
            self._groups["anchor"] = out
        return self._groups["anchor"]
