"""Input encoding of neural graphs for the NG-GNN / NG-T processors (Kofinas et al., ICLR 2024).

Node features are a sum of
* a projection of the neuron's bias (``x``) and normalisation parameters (``node_norm``),
* a *positional* embedding that respects the symmetry group: input neuron at position p ->
  ``table_in[p]``, output neuron at position p -> ``table_out[p]``, and every hidden neuron
  of graph layer l -> ``table_layer[l]`` (one embedding shared by the whole hidden layer, so
  permuting a hidden layer leaves its embeddings unchanged),
* an embedding of the neuron's activation kind (``node_act``; the same for a whole layer),
* optionally, probe features (the neuron's activations on learned probe inputs, see
  :mod:`dws_equiv.ng.probe`).

Edge features are a projection of the weight (conv kernels: all ``K`` taps, zero-padded to
``max_taps``), optionally through random Fourier features, plus an embedding of the edge kind.
Processors pass messages both ways: :func:`bidirectional` adds one reverse copy per edge
(kind :data:`EDGE_REVERSE`, or :data:`EDGE_REVERSE_RESIDUAL` for a skip connection).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from neuralgraph.architecture import ACTIVATIONS
from neuralgraph.schema import EDGE_FORWARD, EDGE_RESIDUAL, EDGE_REVERSE, IDENTITY_NORM, NODE_INPUT, NODE_OUTPUT

from ..checks import renamed_argument
from ..reset import ResetChildren

__all__ = ["EDGE_REVERSE_RESIDUAL", "NUM_EDGE_KINDS", "NGEncoder", "FourierFeatures", "bidirectional"]

#: Kind id of the reverse copy of a residual (skip) edge; forward 0, reverse 1, residual 2.
EDGE_REVERSE_RESIDUAL = 3
NUM_EDGE_KINDS = 4


def bidirectional(edge_index: Tensor, edge_type: Tensor) -> tuple[Tensor, Tensor]:
    """Edges in both directions: the ``E`` forward edges, then their ``E`` reverse copies.

    Returns ``(edge_index [2, 2E], kind [2E])``. Reverse copy ``E + k`` belongs to edge ``k``,
    so per-edge results map back to the graph's edges by taking the first ``E`` rows.
    """
    rev_kind = torch.where(edge_type == EDGE_RESIDUAL, EDGE_REVERSE_RESIDUAL, EDGE_REVERSE)
    return torch.cat([edge_index, edge_index.flip(0)], 1), torch.cat([edge_type, rev_kind])


class FourierFeatures(nn.Module):
    """Fixed random Fourier features of scalars: ``[x, sin(2 pi f x), cos(2 pi f x)]``.

    Weights and biases are small numbers whose fine differences matter; Fourier features
    let a linear layer resolve them (as in the paper's optional RFF edge encoding).
    """

    def __init__(self, num: int, sigma: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("freq", torch.randn(num, generator=g) * sigma)

    @property
    def factor(self) -> int:
        """How many features one scalar becomes: ``1 + 2 * num``."""
        return 1 + 2 * self.freq.numel()

    def forward(self, x: Tensor) -> Tensor:
        """``[..., D] -> [..., D * (1 + 2 num)]``."""
        z = 2 * math.pi * x.unsqueeze(-1) * self.freq.to(x.dtype)
        return torch.cat([x.unsqueeze(-1), torch.sin(z), torch.cos(z)], -1).flatten(-2)


class NGEncoder(ResetChildren, nn.Module):
    """Initial node and edge features of a (possibly heterogeneous) batch of neural graphs.

    ``max_in``/``max_out`` bound the number of input/output neurons (positions get their own
    embedding), ``max_depth`` the largest depth M (graph layers 0..M), ``max_taps`` the edge feature size.
    Exceeding a bound raises ``ValueError`` naming it. Node features have width ``hidden``, edge
    features ``edge_hidden`` (default ``hidden``).
    """

    def __init__(
        self,
        hidden: int,
        *,
        max_in: int = 64,
        max_out: int = 64,
        max_depth: int = 31,
        max_taps: int = 9,       # the graphs' largest edge_dim; named so in saved runs' model_kwargs: kept
        rff_features: int = 0,
        rff_sigma: float = 1.0,
        n_probes: int = 0,
        max_layers: int | None = None,
        edge_hidden: int | None = None,
    ) -> None:
        super().__init__()
        max_depth = renamed_argument("NGEncoder", "max_layers", max_layers, "max_depth", max_depth, lambda v: v - 1)
        edge_hidden = hidden if edge_hidden is None else edge_hidden
        self.hidden, self.edge_hidden, self.max_in, self.max_out = hidden, edge_hidden, max_in, max_out
        self.max_depth, self.max_taps = max_depth, max_taps
        self.rff = FourierFeatures(rff_features, rff_sigma) if rff_features > 0 else None
        f = self.rff.factor if self.rff is not None else 1
        self.bias_proj = nn.Linear(f, hidden)
        self.norm_proj = nn.Linear(4, hidden)
        self.weight_proj = nn.Linear(max_taps * f, edge_hidden)
        self.table_in = nn.Embedding(max_in, hidden)
        self.table_out = nn.Embedding(max_out, hidden)
        self.table_layer = nn.Embedding(max_depth + 1, hidden)
        self.act_emb = nn.Embedding(len(ACTIVATIONS), hidden)
        self.edge_kind = nn.Embedding(NUM_EDGE_KINDS, edge_hidden)
        self.probe_proj = nn.Linear(n_probes, hidden) if n_probes > 0 else None

    def _check(self, graph: Data) -> None:
        ntype, pos = graph.node_type, graph.node_pos
        for kind, limit, name in ((NODE_INPUT, self.max_in, "max_in"), (NODE_OUTPUT, self.max_out, "max_out")):
            sel = ntype == kind
            if bool(sel.any()) and int(pos[sel].max()) >= limit:
                what = "input" if kind == NODE_INPUT else "output"
                raise ValueError(f"a graph has {int(pos[sel].max()) + 1} {what} neurons but the encoder was "
                                 f"built with {name}={limit}; raise {name}")
        if int(graph.node_layer.max()) > self.max_depth:
            raise ValueError(f"a graph has depth {int(graph.node_layer.max())} (parametric layers) but the "
                             f"encoder was built with max_depth={self.max_depth}; raise max_depth")
        if graph.edge_attr.size(-1) > self.max_taps:
            raise ValueError(f"edge features have {graph.edge_attr.size(-1)} taps but the encoder was built with "
                             f"max_taps={self.max_taps}; raise max_taps")

    def positional(self, graph: Data) -> Tensor:
        """``[N, hidden]`` positional embeddings, invariant under hidden permutations."""
        ntype, pos, layer = graph.node_type, graph.node_pos, graph.node_layer
        p_in = self.table_in(torch.where(ntype == NODE_INPUT, pos, 0))
        p_out = self.table_out(torch.where(ntype == NODE_OUTPUT, pos, 0))
        p_hid = self.table_layer(layer)
        return torch.where((ntype == NODE_INPUT).unsqueeze(-1), p_in,
                           torch.where((ntype == NODE_OUTPUT).unsqueeze(-1), p_out, p_hid))

    def forward(self, graph: Data, probe_values: Tensor | None = None,
                forward_only: bool = False) -> tuple[Tensor, Tensor]:
        """Initial node and edge features.

        Args:
            graph: a neural graph or a batch of them.
            probe_values: the neurons' probe features (required when built with ``n_probes > 0``).
            forward_only: the caller guarantees every edge is a forward edge, so the edge-kind
                embedding is one broadcast row (same values, no per-edge lookup).

        Shapes: ``probe_values [N, n_probes]`` -> node features ``[N, hidden]``, (forward) edge
        features ``[E, edge_hidden]``.
        """
        self._check(graph)
        dtype = self.bias_proj.weight.dtype
        bias = graph.x.to(dtype)
        w = graph.edge_attr.to(dtype)
        w = nn.functional.pad(w, (0, self.max_taps - w.size(-1)))
        if self.rff is not None:
            bias, w = self.rff(bias), self.rff(w)
        h = self.bias_proj(bias) + self.positional(graph) + self.act_emb(graph.node_act)
        norm = graph.node_norm.to(dtype) if "node_norm" in graph else None
        if norm is not None:
            h = h + self.norm_proj(norm)
        else:  # identity normalisation, as stored for layers without one
            h = h + self.norm_proj(torch.tensor(IDENTITY_NORM, dtype=dtype, device=h.device))
        if self.probe_proj is not None:
            if probe_values is None:
                raise ValueError("this encoder was built with probes (n_probes > 0): pass probe_values")
            h = h + self.probe_proj(probe_values.to(dtype))
        kind = self.edge_kind.weight[EDGE_FORWARD] if forward_only else self.edge_kind(graph.edge_type)
        e = self.weight_proj(w) + kind
        return h, e
