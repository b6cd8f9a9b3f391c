"""NG-T: a relational transformer on neural graphs (attention over each neuron's incoming edges)."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter, softmax

from ..checks import check_positive_int, renamed_argument
from ..reset import ResetChildren
from ..uniform import UniformBlocks
from .base import DirectedEdgeProjection, EdgeUpdate, NGProcessor
from .heads import mlp

__all__ = ["NGTLayer", "NGTransformer"]


class NGTLayer(ResetChildren, nn.Module):
    """One pre-norm relational-attention layer with an edge update.

    For the directed edge ``j -> i`` (both directions of every weight):
    ``q_ij = Q h_i + Q_e e_ij``, ``k_ij = K h_j + K_e e_ij``, ``v_ij = V h_j + V_e e_ij``
    (edge parts per direction, plus an edge-kind embedding), attention weights are a softmax
    of ``q_ij . k_ij / sqrt(d)`` over the incoming edges of ``i`` (per head,
    :func:`torch_geometric.utils.softmax`), and ``h_i <- h_i + O sum_j a_ij v_ij``, then a
    feed-forward block and ``e <- e + MLP(LN(e), h_src, h_dst)``. Sparse: no padding, so a
    graph's result does not depend on its batch-mates.
    """

    def __init__(self, hidden: int, attn_heads: int = 4, update_edges: bool = True,
                 edge_hidden: int | None = None) -> None:
        super().__init__()
        edge_hidden = hidden if edge_hidden is None else edge_hidden
        check_positive_int("NGTLayer", hidden=hidden, attn_heads=attn_heads, edge_hidden=edge_hidden)
        if hidden % attn_heads:
            raise ValueError(f"hidden={hidden} is not divisible by attn_heads={attn_heads}")
        self.attn_heads = attn_heads
        self.norm1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.edge_qkv = DirectedEdgeProjection(edge_hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden)
        self.ffn = mlp(hidden, 2 * hidden, hidden)
        self.edge_mlp = EdgeUpdate(hidden, edge_hidden) if update_edges else None

    def forward(self, h: Tensor, e: Tensor, edge_index2: Tensor | None, kind2: Tensor | None,
                edge_index: Tensor, blocks: UniformBlocks | None = None) -> tuple[Tensor, Tensor]:
        """One layer: relational attention over incoming edges, feed-forward block, then the edge update.

        Args:
            h: node features.
            e: forward-edge features.
            edge_index2, kind2: both directions of every edge and their kinds (:func:`bidirectional`);
                unused (may be ``None``) when ``blocks`` is given.
            edge_index: the forward edges ``[2, E]`` (for the edge update).
            blocks: the dense blocks of a uniform batch (:class:`~dws_equiv.uniform.UniformBlocks`):
                the same attention, computed by broadcasting within each block.

        Shapes: ``h [N, H]``, ``e [E, H_e]``, ``edge_index2 [2, 2E]``, ``kind2 [2E]`` ->
        ``(h [N, H], e [E, H_e])`` (``e`` unchanged when ``update_edges=False``).
        """
        n, hidden = h.shape
        d = hidden // self.attn_heads
        qn, kn, vn = self.qkv(self.norm1(h)).chunk(3, -1)
        if blocks is None:
            src, dst = edge_index2
            qe, ke, ve = self.edge_qkv(e, kind2).chunk(3, -1)
            q = (qn[dst] + qe).view(-1, self.attn_heads, d)
            k = (kn[src] + ke).view(-1, self.attn_heads, d)
            v = (vn[src] + ve).view(-1, self.attn_heads, d)
            alpha = softmax((q * k).sum(-1) / math.sqrt(d), dst, num_nodes=n)  # [2E, attn_heads]
            att = scatter((alpha.unsqueeze(-1) * v).view(-1, hidden), dst, dim=0, dim_size=n, reduce="sum")
        else:
            att = self._attend_uniform(blocks, qn, kn, vn, e)
        h = h + self.out(att)
        h = h + self.ffn(self.norm2(h))
        if self.edge_mlp is not None:
            e = self.edge_mlp(h, e, edge_index, blocks)
        return h, e


    def _attend_uniform(self, blocks: UniformBlocks, qn: Tensor, kn: Tensor, vn: Tensor, e: Tensor) -> Tensor:
        """The attention of :meth:`forward` on a uniform batch, by broadcasting within each edge block.

        Block ``m`` (layer ``m-1`` -> layer ``m``) sends forward messages to layer ``m`` (its
        axis 1; the softmax runs over the source axis 2) and reverse messages to layer ``m-1``
        (axis 2; softmax over axis 1). A neuron's softmax spans both of its blocks, as in
        :func:`torch_geometric.utils.softmax` (shift by the detached maximum, ``1e-16`` added to
        the denominator).

        Shapes: ``qn, kn, vn [N, H]``, ``e [E, H_e]`` -> ``[N, H]``.
        """
        heads = self.attn_heads
        d = qn.size(-1) // heads
        edge = [[blocks.edge_blocks(t) for t in half] for half in self.edge_qkv.directions(e, chunks=3)]
        layers = {name: blocks.node_blocks(t) for name, t in (("q", qn), ("k", kn), ("v", vn))}
        incoming: list[list[tuple[Tensor, Tensor, int]]] = [[] for _ in blocks.widths]
        for m in range(1, blocks.depth + 1):
            node = {name: (t[m].unsqueeze(2), t[m - 1].unsqueeze(1)) for name, t in layers.items()}
            for (qe, ke, ve), (t, s), target, dim in ((edge[0], (0, 1), m, 2), (edge[1], (1, 0), m - 1, 1)):
                qe, ke, ve = qe[m - 1], ke[m - 1], ve[m - 1]
                q = (node["q"][t] + qe).unflatten(-1, (heads, d))
                k = (node["k"][s] + ke).unflatten(-1, (heads, d))
                v = (node["v"][s] + ve).unflatten(-1, (heads, d))
                incoming[target].append(((q * k).sum(-1) / math.sqrt(d), v, dim))
        out = []
        for parts in incoming:
            top = parts[0][0].detach().amax(parts[0][2])
            for logit, _, dim in parts[1:]:
                top = torch.maximum(top, logit.detach().amax(dim))
            weights = [(logit - top.unsqueeze(dim)).exp() for logit, _, dim in parts]
            denom = sum(w.sum(dim) for w, (_, _, dim) in zip(weights, parts)) + 1e-16
            att = sum((w / denom.unsqueeze(dim)).unsqueeze(-1).mul(v).sum(dim)
                      for w, (_, v, dim) in zip(weights, parts))
            out.append(att.flatten(-2))
        return blocks.node_tensor(out)


class NGTransformer(NGProcessor):
    """NG-T processor (Kofinas et al., ICLR 2024) on (heterogeneous) batches of neural graphs.

    ``NGTransformer(out_dim=10, hidden=64, num_layers=4, attn_heads=4, head='invariant')``; same
    heads (``head``) and encoder options as :class:`~dws_equiv.ng.NGGNN`. ``attn_heads`` is the
    number of attention heads (``heads=`` is its deprecated name).
    """

    def __init__(self, out_dim: int = 1, hidden: int = 64, num_layers: int = 4, head: str | None = "invariant",
                 *, attn_heads: int = 4, heads: int | None = None, **kwargs) -> None:
        attn_heads = renamed_argument("NGTransformer", "heads", heads, "attn_heads", attn_heads)
        check_positive_int("NGTransformer", hidden=hidden, attn_heads=attn_heads)
        if hidden % attn_heads:
            raise ValueError(f"NGTransformer: hidden={hidden} is not divisible by attn_heads={attn_heads}")
        super().__init__(out_dim, hidden, num_layers, head, **kwargs)
        self.layers = nn.ModuleList(
            NGTLayer(hidden, attn_heads, update_edges=(i < num_layers - 1) or self.updates_last_edges,
                     edge_hidden=self.edge_hidden)
            for i in range(num_layers))
