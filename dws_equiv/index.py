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

Pooled terms live on *anchor rows*: one row per (graph, layer), row ``g * max_depth + a - 1``
for anchor layer ``a = 1..M`` of graph ``g``.

This module computes the gather/scatter indices for those objects. Hidden neurons are
numbered ``0..H-1`` in node order (their *hidden row*); the index stores, for every
edge and node it touches, plain rows and positions, and derives the flat slots of the
folded tables (``row * width + position``) as cached properties.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import Tensor
from torch_geometric.utils import scatter

from neuralgraph.schema import EDGE_FORWARD, batch_vector, num_graphs

__all__ = ["DWSIndex"]


@dataclass(eq=False)
class DWSIndex:
    """Gather/scatter indices of one batch of neural graphs (see the module docstring).

    Build it with :meth:`from_batch` once per batch; every DWS layer and readout of a
    model shares it. Sizes below: ``G`` graphs, ``H`` hidden neurons.
    """

    num_nodes: int
    num_edges: int
    num_graphs: int
    depth: Tensor                 # [G] number of layers M of each graph
    max_depth: int                # largest M: anchor rows per graph
    max_inputs: int               # largest d_0 of the batch (width of the folded F)
    max_outputs: int              # largest d_M of the batch (width of the folded L and O)
    hidden_nodes: Tensor          # [H] node ids of the hidden neurons
    hidden_layer: Tensor          # [H] their layer 1..M-1
    hidden_graph: Tensor          # [H] their graph
    hidden_depth: Tensor          # [H] depth of their graph
    first_edges: Tensor           # edge ids of W_1 (input -> layer 1)
    first_edge_neuron: Tensor     # hidden row of their target neuron
    first_edge_input: Tensor      # position of their source input neuron
    last_edges: Tensor            # edge ids of W_M (layer M-1 -> output)
    last_edge_neuron: Tensor      # hidden row of their source neuron
    last_edge_output: Tensor      # position of their target output neuron
    middle_edges: Tensor          # edge ids of W_2..W_{M-1} (hidden -> hidden)
    middle_edge_target: Tensor    # hidden row of their target
    middle_edge_source: Tensor    # hidden row of their source
    middle_edge_layer: Tensor     # layer m of their weight W_m
    middle_edge_depth: Tensor     # depth of their graph
    output_nodes: Tensor          # node ids of the output neurons
    output_graph: Tensor          # their graph
    output_position: Tensor       # their position 0..d_M-1
    edge_order: Tensor            # cat(middle, first, last edges): where a layer's edge outputs go
    node_order: Tensor            # cat(hidden, output nodes): where a layer's node outputs go
    _groups: dict = field(default_factory=dict, repr=False)

    # -- derived rows and slots --------------------------------------------------------------

    @property
    def num_hidden(self) -> int:
        """H, the number of hidden neurons in the batch (all graphs together)."""
        return self.hidden_nodes.numel()

    @cached_property
    def hidden_anchor(self) -> Tensor:
        """``[H]`` anchor row of each hidden neuron's own layer."""
        return self.hidden_graph * self.max_depth + self.hidden_layer - 1

    @cached_property
    def first_anchor(self) -> Tensor:
        """``[G]`` anchor row of layer 1 of each graph."""
        return torch.arange(self.num_graphs, device=self.depth.device) * self.max_depth

    @cached_property
    def last_anchor(self) -> Tensor:
        """``[G]`` anchor row of layer M-1 of each graph."""
        return self.first_anchor + self.depth - 2

    @cached_property
    def first_edge_slot(self) -> Tensor:
        """Row of each W_1 edge in the folded ``[H * max_inputs]`` table."""
        return self.first_edge_neuron * self.max_inputs + self.first_edge_input

    @cached_property
    def last_edge_slot(self) -> Tensor:
        """Row of each W_M edge in the folded ``[H * max_outputs]`` table."""
        return self.last_edge_neuron * self.max_outputs + self.last_edge_output

    @cached_property
    def output_slot(self) -> Tensor:
        """Row of each output neuron in the folded ``[G * max_outputs]`` table of ``O``."""
        return self.output_graph * self.max_outputs + self.output_position

    @cached_property
    def output_anchor_slot(self) -> Tensor:
        """Row of each output neuron in ``[G * max_depth * max_outputs]`` (anchor layer M)."""
        anchor = self.output_graph * self.max_depth + self.depth[self.output_graph] - 1
        return anchor * self.max_outputs + self.output_position

    # -- construction ------------------------------------------------------------------------

    @staticmethod
    def resolve(index, max_in: int, max_out: int, who: str) -> "DWSIndex":
        """``index`` itself, or the index of a batch, checked against ``max_in`` / ``max_out`` of ``who``."""
        idx = index if isinstance(index, DWSIndex) else DWSIndex.from_batch(index, max_in, max_out)
        if idx.max_inputs > max_in or idx.max_outputs > max_out:
            raise ValueError(f"batch has {idx.max_inputs} input / {idx.max_outputs} output neurons; {who} "
                             f"supports max_in={max_in}, max_out={max_out}")
        return idx

    @staticmethod
    def from_batch(batch, max_in: int | None = None, max_out: int | None = None) -> "DWSIndex":
        """Build the index of a ``NeuralGraph`` or a PyG ``Batch`` of them.

        Raises ``ValueError`` for a graph without a hidden layer, or with more input
        (output) neurons than ``max_in`` (``max_out``).
        """
        layer, pos = batch.node_layer, batch.node_pos
        device = layer.device
        N = layer.numel()
        node_graph, G = batch_vector(batch), num_graphs(batch)
        depth = scatter(layer, node_graph, 0, dim_size=G, reduce="max")
        if bool((depth < 2).any()):
            g = int(torch.nonzero(depth < 2)[0])
            raise ValueError(f"graph {g} has depth {int(depth[g])}: DWS layers need at least one hidden layer "
                             "(NG-GNN / NG-T process networks without one)")
        node_depth = depth[node_graph]
        is_in = layer == 0
        is_out = layer == node_depth
        inputs = scatter(is_in.long(), node_graph, 0, dim_size=G, reduce="sum")
        outputs = scatter(is_out.long(), node_graph, 0, dim_size=G, reduce="sum")
        d_in, d_out = int(inputs.max()), int(outputs.max())
        for name, count, limit, arg in (("input", inputs, max_in, "max_in"), ("output", outputs, max_out, "max_out")):
            if limit is not None and int(count.max()) > limit:
                g = int(torch.argmax(count))
                raise ValueError(f"graph {g} has {int(count[g])} {name} neurons but the DWS layer was built with "
                                 f"{arg}={limit} (build it with {arg} >= {int(count[g])}, or let the sizes follow the "
                                 f"data: DWSNet.for_data(batch, ...) or DWSNet(..., {arg}=None), sized by its first "
                                 f"batch)")
        hidden_nodes = torch.nonzero(~is_in & ~is_out).view(-1)
        hidden_row = torch.full((N,), -1, dtype=torch.long, device=device)   # node id -> hidden row
        hidden_row[hidden_nodes] = torch.arange(hidden_nodes.numel(), device=device)

        src, dst = batch.edge_index
        forward = torch.ones(src.numel(), dtype=torch.bool, device=device)
        if "edge_type" in batch and batch.edge_type is not None:
            forward = batch.edge_type == EDGE_FORWARD      # residual edges are not weight space
        edge_layer = layer[dst]
        edge_depth = node_depth[dst]
        first = torch.nonzero(forward & (edge_layer == 1)).view(-1)
        last = torch.nonzero(forward & (edge_layer == edge_depth)).view(-1)
        middle = torch.nonzero(forward & (edge_layer > 1) & (edge_layer < edge_depth)).view(-1)
        output_nodes = torch.nonzero(is_out).view(-1)
        return DWSIndex(
            num_nodes=N, num_edges=src.numel(), num_graphs=G, depth=depth, max_depth=int(depth.max()),
            max_inputs=d_in, max_outputs=d_out,
            hidden_nodes=hidden_nodes, hidden_layer=layer[hidden_nodes], hidden_graph=node_graph[hidden_nodes],
            hidden_depth=node_depth[hidden_nodes],
            first_edges=first, first_edge_neuron=hidden_row[dst[first]], first_edge_input=pos[src[first]],
            last_edges=last, last_edge_neuron=hidden_row[src[last]], last_edge_output=pos[dst[last]],
            middle_edges=middle, middle_edge_target=hidden_row[dst[middle]],
            middle_edge_source=hidden_row[src[middle]], middle_edge_layer=edge_layer[middle],
            middle_edge_depth=edge_depth[middle],
            output_nodes=output_nodes, output_graph=node_graph[output_nodes], output_position=pos[output_nodes],
            edge_order=torch.cat([middle, first, last]), node_order=torch.cat([hidden_nodes, output_nodes]),
        )

    # -- groups of rows sharing parameters in the per-layer ("full") tying -------------------

    def _group(self, name: str, depth: Tensor, layer: Tensor) -> list[tuple[int, int, Tensor]]:
        if name not in self._groups:
            base = self.max_depth + 2
            keys, inverse = torch.unique(depth * base + layer, return_inverse=True)
            self._groups[name] = [(key // base, key % base, torch.nonzero(inverse == k).view(-1))
                                  for k, key in enumerate(keys.tolist())]
        return self._groups[name]

    def node_groups(self) -> list[tuple[int, int, Tensor]]:
        """(M, h, hidden rows) for every (depth, layer) present."""
        return self._group("node", self.hidden_depth, self.hidden_layer)

    def edge_groups(self) -> list[tuple[int, int, Tensor]]:
        """(M, m, indices into the middle edges) for every (depth, layer) present."""
        return self._group("edge", self.middle_edge_depth, self.middle_edge_layer)

    def anchor_groups(self) -> list[tuple[int, int, Tensor]]:
        """(M, a, graphs) for every depth M present and anchor layer a = 1..M (anchor rows:
        ``graphs * max_depth + a - 1``)."""
        if "anchor" not in self._groups:
            out = []
            for M in torch.unique(self.depth).tolist():
                graphs = torch.nonzero(self.depth == M).view(-1)
                out.extend((M, a, graphs) for a in range(1, M + 1))
            self._groups["anchor"] = out
        return self._groups["anchor"]
