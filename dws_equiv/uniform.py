"""Dense block views of a batch whose graphs all share one fully connected layered architecture.

INR datasets (and most model zoos) batch networks of a single architecture. Their neural
graphs are stored in a canonical order: graph by graph, nodes by (layer, position) and
edges by (target, source). Then the edges of layer ``m`` of every graph form a dense
``[B, d_m, d_{m-1}]`` block of the edge tensor, and the nodes of layer ``l`` a dense
``[B, d_l]`` block of the node tensor. On such a batch, "gather the target's features"
is a broadcast over the source axis and "reduce the messages of each target" a reduction
over that axis, with no index tensors at all. The processors use :class:`UniformBlocks`
to take that path and keep their scatter/gather path for everything else (mixed
architectures, residual edges, graphs in another order): both compute the same function.

:meth:`UniformBlocks.detect` decides from the batch's own index tensors, never from a
flag: it compares ``node_layer``, ``edge_index`` and ``edge_type`` with the canonical
template of the architecture it reads off the first graph, so a batch in any other order
or with any missing or extra edge falls back to the general path.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor
from torch_geometric.data import Data

from neuralgraph.schema import EDGE_FORWARD, num_graphs

__all__ = ["UniformBlocks"]


@dataclass(frozen=True)
class UniformBlocks:
    """Where the layers and edge blocks of a uniform batch sit (offsets within one graph).

    Attributes:
        num_graphs: ``B``.
        widths: ``(d_0, ..., d_M)``, neurons per layer.
        node_offsets: first node of each layer ``0..M`` within a graph.
        edge_offsets: first edge of each block ``1..M`` within a graph (index ``m - 1``).
    """

    num_graphs: int
    widths: tuple[int, ...]
    node_offsets: tuple[int, ...]
    edge_offsets: tuple[int, ...]

    @property
    def depth(self) -> int:
        """``M``, the number of edge blocks (parametric layers)."""
        return len(self.widths) - 1

    @property
    def nodes_per_graph(self) -> int:
        """Neurons of one graph, ``sum(d_l)``."""
        return sum(self.widths)

    @property
    def edges_per_graph(self) -> int:
        """Weights (edges) of one graph, ``sum(d_{m-1} d_m)``."""
        return sum(a * b for a, b in zip(self.widths[:-1], self.widths[1:]))

    def nodes(self, t: Tensor, layer: int) -> Tensor:
        """The rows of layer ``layer`` of a node tensor, as a view (prefer :meth:`node_blocks` under autograd).

        Shapes: ``t [N, *F]`` -> ``[B, d_layer, *F]``.
        """
        o, d = self.node_offsets[layer], self.widths[layer]
        return t.view(self.num_graphs, self.nodes_per_graph, *t.shape[1:])[:, o:o + d]

    def edges(self, t: Tensor, m: int) -> Tensor:
        """The rows of edge block ``m`` (layer ``m-1`` -> layer ``m``), as a view (prefer :meth:`edge_blocks`).

        Shapes: ``t [E, *F]`` -> ``[B, d_m, d_{m-1}, *F]`` (target, source).
        """
        o, dt, ds = self.edge_offsets[m - 1], self.widths[m], self.widths[m - 1]
        v = t.view(self.num_graphs, self.edges_per_graph, *t.shape[1:])[:, o:o + dt * ds]
        return v.unflatten(1, (dt, ds))

    def node_blocks(self, t: Tensor) -> list[Tensor]:
        """A node tensor split into its layers (views; one ``split``, so one backward pass).

        Shapes: ``t [N, *F]`` -> ``[B, d_l, *F]`` for each layer ``l = 0..M``.
        """
        return list(t.view(self.num_graphs, self.nodes_per_graph, *t.shape[1:]).split(self.widths, 1))

    def edge_blocks(self, t: Tensor) -> list[Tensor]:
        """An edge tensor split into its blocks (views; index ``m - 1`` holds block ``m``).

        Block ``m`` joins layer ``m-1`` (sources) to layer ``m`` (targets). Splitting once,
        rather than slicing per block, keeps the backward one pass over ``E`` rows.

        Shapes: ``t [E, *F]`` -> ``[B, d_m, d_{m-1}, *F]`` for each block ``m = 1..M``.
        """
        sizes = [a * b for a, b in zip(self.widths[:-1], self.widths[1:])]
        parts = t.view(self.num_graphs, self.edges_per_graph, *t.shape[1:]).split(sizes, 1)
        return [p.unflatten(1, (dt, ds)) for p, ds, dt in zip(parts, self.widths[:-1], self.widths[1:])]

    def node_tensor(self, per_layer: list[Tensor]) -> Tensor:
        """Inverse of :meth:`nodes`: ``[B, d_l, *F]`` for every layer -> ``[N, *F]``."""
        return torch.cat(per_layer, 1).flatten(0, 1)

    def broadcast_nodes(self, target: Tensor | None, source: Tensor | None) -> Tensor:
        """Every edge's ``target[i] + source[j]`` (``i`` its target neuron, ``j`` its source), written once.

        The gather-free form of ``target[dst] + source[src]``: each block gets the broadcast sum
        of its two layers' rows, written straight into the ``[E, F]`` result (one pass; the
        backward is one reduction per layer and operand). Either operand may be ``None`` (0).

        Shapes: ``target, source [N, F]`` -> ``[E, F]``.
        """
        return _BroadcastNodes.apply(self, target, source)

    def edge_tensor(self, per_block: list[Tensor]) -> Tensor:
        """Inverse of :meth:`edges`: ``[B, d_m, d_{m-1}, *F]`` for every block -> ``[E, *F]``."""
        return torch.cat([t.flatten(1, 2) for t in per_block], 1).flatten(0, 1)

    @staticmethod
    def detect(graph: Data) -> "UniformBlocks | None":
        """The block structure of ``graph`` if it is a uniform, canonically ordered batch, else ``None``.

        Uniform means: every graph has the same number of neurons per layer, every edge is a
        forward edge (no residual edges), every pair of neurons in consecutive layers is joined,
        and nodes and edges are stored graph by graph in the canonical order (nodes by layer,
        edges by target then source). Checked on the index tensors in ``O(N + E)``.
        """
        layer, edge_index, edge_type = graph.node_layer, graph.edge_index, graph.edge_type
        B, N, E = num_graphs(graph), layer.numel(), edge_index.size(1)
        if B < 1 or N % B or E % B or E == 0:
            return None
        n = N // B
        first = layer[:n]
        if n and bool((first[1:] < first[:-1]).any()):
            return None
        widths = tuple(int(c) for c in torch.bincount(first).tolist())
        if len(widths) < 2 or 0 in widths or sum(a * b for a, b in zip(widths[:-1], widths[1:])) * B != E:
            return None
        blocks = _blocks(widths, B)
        layer_t, index_t = _template(widths, B, str(layer.device))
        if not (torch.equal(layer, layer_t) and torch.equal(edge_index, index_t)
                and bool((edge_type == EDGE_FORWARD).all())):
            return None
        return blocks


def _blocks(widths: tuple[int, ...], B: int) -> UniformBlocks:
    node_off, edge_off, o, q = [], [], 0, 0
    for d in widths:
        node_off.append(o)
        o += d
    for ds, dt in zip(widths[:-1], widths[1:]):
        edge_off.append(q)
        q += ds * dt
    return UniformBlocks(B, widths, tuple(node_off), tuple(edge_off))


@lru_cache(maxsize=8)
def _template(widths: tuple[int, ...], B: int, device: str) -> tuple[Tensor, Tensor]:
    """Canonical ``node_layer [N]`` and ``edge_index [2, E]`` of ``B`` graphs of these widths (cached)."""
    blocks = _blocks(widths, B)
    n = blocks.nodes_per_graph
    layer = torch.repeat_interleave(torch.arange(len(widths)), torch.tensor(widths))
    dst, src = [], []
    for m in range(1, len(widths)):
        dt, ds = widths[m], widths[m - 1]
        dst.append(blocks.node_offsets[m] + torch.arange(dt).repeat_interleave(ds))
        src.append(blocks.node_offsets[m - 1] + torch.arange(ds).repeat(dt))
    one = torch.stack([torch.cat(src), torch.cat(dst)])
    shift = (torch.arange(B) * n).repeat_interleave(one.size(1))
    index = one.repeat(1, B) + shift
    return layer.repeat(B).to(device), index.to(device)


class _BroadcastNodes(torch.autograd.Function):
    """:meth:`UniformBlocks.broadcast_nodes` with a backward that reduces each block once per operand."""

    @staticmethod
    def forward(ctx, blocks: UniformBlocks, target: Tensor | None, source: Tensor | None) -> Tensor:
        ref = target if target is not None else source
        out = ref.new_empty(blocks.num_graphs * blocks.edges_per_graph, *ref.shape[1:])
        tgt = blocks.node_blocks(target) if target is not None else None
        src = blocks.node_blocks(source) if source is not None else None
        for m, block in enumerate(blocks.edge_blocks(out), 1):
            if tgt is not None and src is not None:
                torch.add(tgt[m].unsqueeze(2), src[m - 1].unsqueeze(1), out=block)
            elif tgt is not None:
                block.copy_(tgt[m].unsqueeze(2).expand_as(block))
            else:
                block.copy_(src[m - 1].unsqueeze(1).expand_as(block))
        ctx.blocks, ctx.has = blocks, (target is not None, source is not None)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        blocks = ctx.blocks
        grads = blocks.edge_blocks(grad)
        out = []
        for present, dim, layers in ((ctx.has[0], 2, range(1, blocks.depth + 1)), (ctx.has[1], 1, range(blocks.depth))):
            if not present or not ctx.needs_input_grad[1 if dim == 2 else 2]:
                out.append(None)
                continue
            per_layer = [grad.new_zeros(blocks.num_graphs, d, *grad.shape[1:]) for d in blocks.widths]
            for g, layer in zip(grads, layers):
                per_layer[layer] = g.sum(dim)
            out.append(blocks.node_tensor(per_layer))
        return None, out[0], out[1]
