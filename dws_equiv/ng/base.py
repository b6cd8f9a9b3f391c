"""Shared skeleton of NG-GNN and NG-T: encode, process both edge directions, apply a head."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from ..checks import (check_graph_batch, check_nonnegative_int, check_positive_float, check_positive_int,
                      renamed_argument)
from neuralgraph.schema import EDGE_FORWARD, EDGE_REVERSE

from ..reset import ResetChildren
from ..uniform import UniformBlocks
from .encoding import NUM_EDGE_KINDS, NGEncoder, bidirectional
from .heads import EquivariantHead, InvariantHead
from .probe import ProbeFeatures

__all__ = ["NGProcessor", "EdgeUpdate", "DirectedEdgeProjection"]


class DirectedEdgeProjection(ResetChildren, nn.Module):
    """Per-direction linear maps of the edge state, plus an embedding of the edge kind.

    The processors keep one state per graph edge (``[E, d_in]``); messages flow along both
    directions (``[2E]``, see :func:`bidirectional`), so each direction reads the state through
    its own linear map. Returns ``[2E, d_out]``.
    """

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.fwd = nn.Linear(d_in, d_out)
        self.rev = nn.Linear(d_in, d_out, bias=False)
        self.kind = nn.Embedding(NUM_EDGE_KINDS, d_out)

    def forward(self, e: Tensor, kind: Tensor) -> Tensor:
        """The per-direction projections of the edge state plus the kind embedding.

        Args:
            e: state of the ``E`` forward edges.
            kind: edge kinds of both directions (from :func:`bidirectional`).

        Shapes: ``e [E, d_in]``, ``kind [2E]`` -> ``[2E, d_out]`` (forward edges first, then their
        reverses).
        """
        return torch.cat([self.fwd(e), self.rev(e)], 0) + self.kind(kind)

    def directions(self, e: Tensor, chunks: int = 1,
                   offset: tuple[float, ...] | None = None) -> list[list[Tensor]]:
        """:meth:`forward` for a batch of forward edges only (no residual edges), by direction and chunk.

        Every forward edge has kind :data:`~neuralgraph.schema.EDGE_FORWARD` and every reverse copy
        :data:`~neuralgraph.schema.EDGE_REVERSE`, so the kind embedding is one row per direction. Each
        of the ``chunks`` equal parts of the output is its own product (no copy to split it),
        plus ``offset[c]`` (e.g. ``1`` for a FiLM scale ``1 + gamma``), folded into its bias.
        Equal to ``forward(e, kind).chunk(chunks, -1)`` (plus the offsets) up to float rounding.

        Shapes: ``e [E, d_in]`` -> ``[[E, d_out / chunks] x chunks]`` for the forward, then the
        reverse direction.
        """
        out = []
        for lin, kind in ((self.fwd, EDGE_FORWARD), (self.rev, EDGE_REVERSE)):
            bias = self.kind.weight[kind] if lin.bias is None else lin.bias + self.kind.weight[kind]
            ws, bs = lin.weight.chunk(chunks, 0), bias.chunk(chunks, 0)
            out.append([nn.functional.linear(e, w, b + (offset[c] if offset else 0.0))
                        for c, (w, b) in enumerate(zip(ws, bs))])
        return out


class EdgeUpdate(ResetChildren, nn.Module):
    """``e <- e + MLP(LN(e), LN(h)_src, LN(h)_dst)`` on forward edges (residual, per-edge LayerNorm).

    The MLP's inner width is the node width ``hidden``; it reads and writes edge states of width
    ``edge_hidden`` (default ``hidden``). The first linear map of the MLP is split into an edge part
    and two node parts applied on the ``N`` nodes before gathering, which saves a
    ``[E, 2H + H_e] x [2H + H_e, H]`` product.
    """

    def __init__(self, hidden: int, edge_hidden: int | None = None) -> None:
        super().__init__()
        edge_hidden = hidden if edge_hidden is None else edge_hidden
        self.norm = nn.LayerNorm(edge_hidden)
        self.node_norm = nn.LayerNorm(hidden)
        self.lin_e = nn.Linear(edge_hidden, hidden)
        self.lin_src = nn.Linear(hidden, hidden, bias=False)
        self.lin_dst = nn.Linear(hidden, hidden, bias=False)
        self.out = nn.Linear(hidden, edge_hidden)

    def forward(self, h: Tensor, e: Tensor, edge_index: Tensor, blocks: UniformBlocks | None = None) -> Tensor:
        """The residual edge update ``e + MLP(LN(e), LN(h)_src, LN(h)_dst)``.

        Args:
            h: node features.
            e: forward-edge features.
            edge_index: the graph's forward edges ``[2, E]`` (source, target).
            blocks: the batch's dense blocks (:class:`~dws_equiv.uniform.UniformBlocks`) when it is
                uniform: node terms are then broadcast over each block instead of gathered.

        Shapes: ``h [N, H]``, ``e [E, H_e]`` -> ``[E, H_e]``.
        """
        h = self.node_norm(h)
        s, d = self.lin_src(h), self.lin_dst(h)
        if blocks is None:
            src, dst = edge_index
            z = self.lin_e(self.norm(e)) + s[src] + d[dst]
        else:  # node terms (and lin_e's bias) broadcast within each block, added inside the product
            nodes = blocks.broadcast_nodes(d, s + self.lin_e.bias)
            z = torch.addmm(nodes, self.norm(e), self.lin_e.weight.t())
        return e + self.out(nn.functional.silu(z))


class NGProcessor(ResetChildren, nn.Module):
    """Base class: subclasses provide ``self.layers`` with ``layer(h, e, edge_index2, kind2, edge_index, blocks)``.

    A batch whose graphs share one fully connected architecture in canonical order (INR datasets,
    most zoos; :meth:`~dws_equiv.uniform.UniformBlocks.detect`) is processed on dense per-layer
    blocks (``blocks``, with ``edge_index2 = kind2 = None``); any other batch through gathers and
    scatters along ``edge_index2``. Both paths compute the same function with the same parameters;
    ``uniform_path = False`` forces the general one.

    ``head='invariant'``: ``forward(batch) -> [num_graphs, out_dim]``.
    ``head='equivariant'``: ``forward(batch) ->`` a clone of the batch with edited ``x``/``edge_attr``.
    ``head=None``: ``forward(batch) -> (h [N, hidden], e [E, edge_hidden])``.

    ``edge_hidden`` is the width of the edge states (default ``hidden``). Most of a step's work is
    per edge, so a narrower edge state (the neural-graphs NG-T keeps 32 against 64 per node) makes
    the processor cheaper; the edge update's inner width stays ``hidden``.
    """

    def __init__(
        self,
        out_dim: int = 1,
        hidden: int = 64,
        num_layers: int = 4,
        head: str | None = "invariant",
        use_probes: bool = True,
        n_probes: int = 16,
        probe_image_size: int = 16,
        max_in: int = 64,
        max_out: int = 64,
        max_depth: int = 31,
        max_taps: int = 9,       # the graphs' largest edge_dim; named so in saved runs' model_kwargs: kept
        rff_features: int = 0,
        rff_sigma: float = 1.0,
        max_layers: int | None = None,
        edge_hidden: int | None = None,
    ) -> None:
        super().__init__()
        max_depth = renamed_argument(type(self).__name__, "max_layers", max_layers, "max_depth", max_depth,
                                     lambda v: v - 1)
        if head not in ("invariant", "equivariant", None):
            raise ValueError(f"head must be 'invariant', 'equivariant' or None, got {head!r}")
        who = type(self).__name__
        check_positive_int(who, hidden=hidden, num_layers=num_layers, max_in=max_in, max_out=max_out,
                           max_depth=max_depth, max_taps=max_taps, probe_image_size=probe_image_size)
        check_nonnegative_int(who, rff_features=rff_features)
        check_positive_float(who, rff_sigma=rff_sigma)
        if use_probes:
            check_positive_int(who, n_probes=n_probes)
        if head == "invariant":
            check_positive_int(who, out_dim=out_dim)
        edge_hidden = hidden if edge_hidden is None else edge_hidden
        check_positive_int(who, edge_hidden=edge_hidden)
        self.hidden, self.edge_hidden, self.num_layers, self.head_kind = hidden, edge_hidden, num_layers, head
        self.uniform_path = True
        self.probes = ProbeFeatures(n_probes, max_in, probe_image_size) if use_probes else None
        self.encoder = NGEncoder(hidden, max_in=max_in, max_out=max_out, max_depth=max_depth,
                                 max_taps=max_taps, rff_features=rff_features, rff_sigma=rff_sigma,
                                 n_probes=n_probes if use_probes else 0, edge_hidden=edge_hidden)
        self.final_norm = nn.LayerNorm(hidden)
        if head == "invariant":
            self.head: nn.Module | None = InvariantHead(hidden, out_dim, max_out)
        elif head == "equivariant":
            self.head = EquivariantHead(hidden, max_taps, edge_hidden)
            self.final_edge_norm = nn.LayerNorm(edge_hidden)
        else:
            self.head = None
            self.final_edge_norm = nn.LayerNorm(edge_hidden)

    @property
    def updates_last_edges(self) -> bool:
        """The invariant head reads nodes only, so the last edge update would be dead weight."""
        return self.head_kind != "invariant"

    @property
    def supports_uniform_path(self) -> bool:
        """Whether every layer can run on dense blocks (subclasses say when some cannot)."""
        return True

    def embed(self, graph: Data) -> tuple[Tensor, Tensor]:
        """Final node ``[N, hidden]`` and forward-edge ``[E, edge_hidden]`` features."""
        check_graph_batch(graph, type(self).__name__, extra=("arch",) if self.probes is not None else ())
        probe = self.probes(graph) if self.probes is not None else None
        blocks = UniformBlocks.detect(graph) if self.uniform_path and self.supports_uniform_path else None
        h, e = self.encoder(graph, probe, forward_only=blocks is not None)
        edge_index2 = kind2 = None
        if blocks is None:
            edge_index2, kind2 = bidirectional(graph.edge_index, graph.edge_type)
        for layer in self.layers:
            h, e = layer(h, e, edge_index2, kind2, graph.edge_index, blocks)
        h = self.final_norm(h)
        if self.head_kind != "invariant":
            e = self.final_edge_norm(e)
        return h, e

    def forward(self, graph: Data):
        """Process a batch of neural graphs: encode, run the layers, apply the head.

        Args:
            graph: a PyG batch of neural graphs (from :func:`neuralgraph.to_graph` / the datasets);
                with probe features it needs ``arch``.

        Shapes: ``head="invariant"``: ``[num_graphs, out_dim]``; ``head="equivariant"``: a shallow
        clone of ``graph`` with ``x [N, 1]`` and ``edge_attr [E, K]`` edited; ``head=None``: the
        tuple ``(h [N, hidden], e [E, hidden])`` of :meth:`embed`.
        """
        h, e = self.embed(graph)
        if self.head_kind == "invariant":
            return self.head(graph, h)
        if self.head_kind == "equivariant":
            return self.head(graph, h, e)
        return h, e
