"""What a neural graph is: its fields, their levels, the node and edge kinds, and :class:`NeuralGraph`.

This is the one description of the format; the converters (:mod:`neuralgraph.graph`), the batch
builders (:mod:`neuralgraph.batching`) and the processors (:mod:`dws_equiv`) import it, and it
imports nothing of the library but :mod:`neuralgraph.deprecation` (which imports nothing of it).

A network with parametric layers ``1..M`` and widths ``d_0..d_M`` is a graph with one node per
neuron (layer ``0`` is the input) and one edge per weight:

* nodes are ordered by layer, then by position in the layer;
* edges are sorted by target then source, so layer ``m``'s edges are ``W_m`` in row-major
  (torch ``out x in``) order; residual edges (if any) come after all weight edges of their
  graph, sorted by target: neuron ``i`` of layer ``a`` -> neuron ``i`` of layer ``b``, weight 1
  in tap 0, for a :class:`~neuralgraph.architecture.Residual` block;
* a conv kernel is flattened into the edge's ``K`` taps, zero-padded to the widest kernel;
* ``node_norm`` always exists (:data:`IDENTITY_NORM` where a neuron has no normalisation after
  its layer: the paper's "normalisation = node features"), so graphs with and without
  normalisation batch together;
* ``model_state`` (train/eval mode, BatchNorm step counters) fixes, with the parameters, what the
  rebuilt model computes. Graphs converted from a model keep its state; graphs built from
  parameters alone are in **eval mode**, as trained weights are meant to be used.

Everything a processor may change is in ``x`` and ``edge_attr``; the rest is structure, which the
symmetry group leaves unchanged.

Every attribute a graph or a batch of graphs may carry, with its *level* (a node attribute has one
row per node, an edge attribute one row per edge, a graph attribute one entry per graph;
``edge_index`` is incremented by the node offset of its graph when batched):
"""
from __future__ import annotations

import contextvars
from typing import NamedTuple

import torch
from torch import Tensor
from torch_geometric.data import Data

from .deprecation import forward_moved, warn_renamed

__all__ = [
    "NODE_INPUT", "NODE_HIDDEN", "NODE_OUTPUT", "EDGE_FORWARD", "EDGE_REVERSE", "EDGE_RESIDUAL", "IDENTITY_NORM",
    "Field", "FIELDS", "FIELD_LEVELS", "STRUCTURE_KEYS", "PROCESSOR_FIELDS", "NeuralGraph", "batch_vector",
    "num_graphs",
]

#: Node kinds (``node_type``).
NODE_INPUT, NODE_HIDDEN, NODE_OUTPUT = 0, 1, 2
#: Edge kinds (``edge_type``): a weight, a reverse copy (added by processors that pass messages both
#: ways), and a residual (skip) connection with constant weight 1.
EDGE_FORWARD, EDGE_REVERSE, EDGE_RESIDUAL = 0, 1, 2
#: ``node_norm`` row of a neuron without normalisation: weight 1, bias 0, mean 0, var 1.
IDENTITY_NORM = (1.0, 0.0, 0.0, 1.0)


class Field(NamedTuple):
    """One attribute of the format: its level (``"node"``, ``"edge"`` or ``"graph"``), shape and meaning."""

    level: str
    shape: str
    meaning: str


#: Every attribute of the format, in the order of the table above.
FIELDS: dict[str, Field] = {
    "x": Field("node", "[N, 1]", "bias of the neuron (0 for input neurons)"),
    "node_layer": Field("node", "[N]", "layer 0..M of the neuron"),
    "node_pos": Field("node", "[N]", "position of the neuron inside its layer"),
    "node_type": Field("node", "[N]", "NODE_INPUT / NODE_HIDDEN / NODE_OUTPUT"),
    "node_act": Field("node", "[N]", "id of the activation applied to the neuron (ACTIVATIONS)"),
    "node_norm": Field("node", "[N, 4]", "(weight, bias, running_mean, running_var) of the norm after the "
                                         "neuron's layer, IDENTITY_NORM if none"),
    "x_raw": Field("node", "[N, 1]", "the real biases of a standardised batch (normalize=True)"),
    "edge_index": Field("edge", "[2, E]", "source (layer m-1) -> target (layer m)"),
    "edge_attr": Field("edge", "[E, K]", "the weight; a conv kernel's kh*kw weights, zero-padded to K (edge_dim)"),
    "edge_mask": Field("edge", "[E, K]", "which of the K columns are real weights"),
    "edge_layer": Field("edge", "[E]", "m, the layer of the target (the weight belongs to W_m)"),
    "edge_type": Field("edge", "[E]", "EDGE_FORWARD (a weight) / EDGE_RESIDUAL (a skip connection)"),
    "edge_attr_raw": Field("edge", "[E, K]", "the real weights of a standardised batch"),
    "arch": Field("graph", "list", "the Architecture of each graph"),
    "model_state": Field("graph", "list", "the ModelState of each graph"),
    "y": Field("graph", "[B, ...]", "label or regression target of each graph"),
    "inr_index": Field("graph", "[B]", "index of the network in its dataset file"),
    "net_index": Field("graph", "[B]", "index of the network in its zoo file"),
}

#: Level of every attribute (``"node"``, ``"edge"`` or ``"graph"``), from :data:`FIELDS`.
FIELD_LEVELS: dict[str, str] = {key: field.level for key, field in FIELDS.items()}

#: Node attributes that describe structure, not parameters (invariant under the symmetry group).
STRUCTURE_KEYS = ("node_layer", "node_pos", "node_type", "node_act", "batch")

#: Fields every processor reads; made by ``to_graph`` / ``stacked_to_batch``.
PROCESSOR_FIELDS = ("x", "edge_index", "edge_attr", "node_layer", "node_pos", "node_type", "edge_layer",
                    "edge_type")

#: Per-edge-feature keys whose width (``edge_dim``) and dtype must agree across graphs batched together.
_EDGE_FEATURE_KEYS = ("edge_attr", "edge_mask")
#: Width and dtype of the first graph's edge features while PyG collates a batch. Why a context
#: variable: PyG's collate asks the *first* graph for ``__cat_dim__`` of a key and then *every* graph
#: for its ``__inc__``, and gives no graph a view of the others; without this, ``torch.cat`` would
#: fail with a bare size error, or silently promote float32 and float64 edge features to one dtype.
#: It is per thread / task, and every collate overwrites it (``__cat_dim__`` comes first, per key).
_COLLATING: contextvars.ContextVar[dict] = contextvars.ContextVar("neuralgraph_collating", default={})


class NeuralGraph(Data):
    """A PyG ``Data`` holding one network; its fields are :data:`FIELDS` (see the module docstring).

    Batching graphs whose edge features differ in width (``edge_dim``) or dtype raises a
    ``ValueError`` that says how to make them agree.
    """

    @property
    def num_layers(self) -> int:
        """M: parametric layers (graph layers are 0..M). For a batch, the maximum."""
        return int(self.node_layer.max())

    @property
    def num_taps(self) -> int:
        """Deprecated: PyG's ``num_edge_features`` (K, the width of ``edge_attr``)."""
        warn_renamed("NeuralGraph.num_taps", "NeuralGraph.num_edge_features (PyG's)")
        return self.edge_attr.size(-1)

    def __cat_dim__(self, key, value, *args, **kwargs):
        if key in _EDGE_FEATURE_KEYS and isinstance(value, Tensor) and value.dim() == 2:
            _COLLATING.set({**_COLLATING.get(), key: (value.size(-1), value.dtype)})
        return super().__cat_dim__(key, value, *args, **kwargs)

    def __inc__(self, key, value, *args, **kwargs):
        first = _COLLATING.get().get(key) if key in _EDGE_FEATURE_KEYS else None
        if first is not None and isinstance(value, Tensor) and value.dim() == 2:
            if value.size(-1) != first[0]:
                raise ValueError(
                    f"cannot batch neural graphs with {first[0]} and {value.size(-1)} features per edge ({key}): "
                    f"convert with to_graph(..., edge_dim=K) or pad with "
                    f"neuralgraph.graph.pad_edge_features(graph, K), K >= "
                    f"{max(first[0], value.size(-1))}"
                )
            if value.dtype != first[1]:
                raise ValueError(f"cannot batch neural graphs of dtypes {first[1]} and {value.dtype} ({key}): "
                                 "convert the models (or graphs) to one dtype first")
        return super().__inc__(key, value, *args, **kwargs)


# Pickled (ng.save, torch.save) under the name it has always had: neuralgraph.graph re-exports it,
# so files saved before this module existed load, and files saved now are byte for byte the same.
NeuralGraph.__module__ = "neuralgraph.graph"

#: ``graph_index`` is PyG's batch vector: named so (kept for one release).
__getattr__ = forward_moved(__name__, {"graph_index": "neuralgraph.schema:batch_vector"})


def batch_vector(graph: Data) -> Tensor:
    """PyG's batch vector: the graph id of every node ``[N]`` of a PyG batch of neural graphs
    (``batch.batch``), or zeros for one graph."""
    if "batch" in graph and graph.batch is not None:
        return graph.batch
    return torch.zeros(graph.num_nodes, dtype=torch.long, device=graph.x.device)


def num_graphs(graph: Data) -> int:
    """Number of graphs of a neural graph (1) or of a PyG batch of them."""
    return int(graph.num_graphs) if "batch" in graph and graph.batch is not None else 1


def _field_table() -> str:
    rows = [(key, f.level, f.shape, f.meaning) for key, f in FIELDS.items()]
    widths = [max(len(r[i]) for r in rows + [("attribute", "level", "shape", "meaning")]) for i in range(4)]
    rule = "  ".join("=" * w for w in widths)
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()   # noqa: E731
    return "\n".join(["", rule, line(("attribute", "level", "shape", "meaning")), rule, *map(line, rows), rule, ""])


__doc__ += _field_table()
