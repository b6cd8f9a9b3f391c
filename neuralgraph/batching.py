"""Batches of neural graphs built without a per-graph loop, and the batch contract.

``Batch.from_data_list`` collates graph by graph. The library builds batches of many
networks directly (:func:`neuralgraph.stacked_to_batch`), adds per-graph attributes
(labels, dataset indices) and concatenates batches of different architectures
(:func:`concat_batches`). For PyG's ``Batch.get_example``, ``index_select`` and
``to_data_list`` to work on such batches, a batch needs the per-attribute slices and
increments PyG records while collating; PyG keeps them in ``Batch._slice_dict`` and
``Batch._inc_dict`` and offers no public setter. **This module is the only place that
writes them**; everything else builds batches through it.

The attributes a neural-graph batch may carry, by level (a *node* attribute has one
row per node, an *edge* attribute one row per edge, a *graph* attribute one entry per
graph; ``edge_index`` is incremented by the node offset of its graph):

================  =======  ==============================================================
attribute         level    meaning
================  =======  ==============================================================
x                 node     ``[N, 1]`` bias of each neuron (0 for input neurons)
node_layer        node     layer 0..M of each neuron
node_pos          node     position of the neuron in its layer
node_type         node     NODE_INPUT / NODE_HIDDEN / NODE_OUTPUT
node_act          node     activation id after the neuron (``neuralgraph.ACTIVATIONS``)
node_norm         node     ``[N, 4]`` normalisation after the neuron (IDENTITY_NORM if none)
x_raw             node     the real biases of a standardised batch (``normalize=True``)
edge_index        edge     ``[2, E]`` source, target (incremented by node offsets)
edge_attr         edge     ``[E, K]`` weight (``K`` kernel taps, zero-padded)
edge_mask         edge     ``[E, K]`` which taps are real
edge_layer        edge     layer m of the weight ``W_m`` (1..M)
edge_type         edge     EDGE_FORWARD / EDGE_RESIDUAL
edge_attr_raw     edge     the real weights of a standardised batch
arch              graph    the :class:`~neuralgraph.Architecture` of each graph (a list)
model_state       graph    the :class:`~neuralgraph.ModelState` of each graph (a list)
y                 graph    label or regression target of each graph
inr_index         graph    index of the network in its dataset file
net_index         graph    index of the network in its zoo file
================  =======  ==============================================================
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Batch

__all__ = ["FIELD_LEVELS", "uniform_batch", "set_graph_attr", "set_attr_like", "concat_batches"]

#: Level of every attribute of the batch contract (see the module docstring).
FIELD_LEVELS: dict[str, str] = {
    "x": "node", "node_layer": "node", "node_pos": "node", "node_type": "node", "node_act": "node",
    "node_norm": "node", "x_raw": "node",
    "edge_index": "edge", "edge_attr": "edge", "edge_mask": "edge", "edge_layer": "edge", "edge_type": "edge",
    "edge_attr_raw": "edge",
    "arch": "graph", "model_state": "graph", "y": "graph", "inr_index": "graph", "net_index": "graph",
}


def uniform_batch(fields: dict[str, Any], num_graphs: int, nodes_per_graph: int, edges_per_graph: int) -> Batch:
    """A PyG ``Batch`` of ``num_graphs`` graphs of equal size from concatenated fields.

    Args:
        fields: every attribute at its level (:data:`FIELD_LEVELS`): node and edge tensors
            concatenated over graphs (``edge_index`` with global node ids), graph
            attributes as lists or tensors of one entry per graph.
        num_graphs, nodes_per_graph, edges_per_graph: the sizes.
    """
    from .graph import NeuralGraph

    B, n, e = num_graphs, nodes_per_graph, edges_per_graph
    unknown = sorted(set(fields) - set(FIELD_LEVELS))
    if unknown:
        raise ValueError(f"uniform_batch: no level for {unknown}; add them to FIELD_LEVELS")
    device = fields["x"].device
    batch = Batch(_base_cls=NeuralGraph, **fields, batch=torch.arange(B, device=device).repeat_interleave(n),
                  ptr=torch.arange(B + 1, device=device) * n)
    batch._num_graphs = B
    per = {"node": torch.arange(B + 1) * n, "edge": torch.arange(B + 1) * e, "graph": torch.arange(B + 1)}
    zeros = torch.zeros(B, dtype=torch.long)
    batch._slice_dict = {key: per[FIELD_LEVELS[key]] for key in fields}
    batch._inc_dict = {key: (torch.arange(B) * n if key == "edge_index" else
                             None if isinstance(value, list) else zeros) for key, value in fields.items()}
    return batch


def set_graph_attr(batch: Batch, key: str, value: Tensor) -> None:
    """Set a per-graph attribute ``value [num_graphs, ...]`` (kept by ``get_example``)."""
    if value.size(0) != batch.num_graphs:
        raise ValueError(f"set_graph_attr: {key} has {value.size(0)} rows for {batch.num_graphs} graphs")
    batch[key] = value
    batch._slice_dict[key] = torch.arange(value.size(0) + 1)
    batch._inc_dict[key] = torch.zeros(value.size(0), dtype=torch.long)


def set_attr_like(batch: Batch, key: str, value: Tensor, like: str) -> None:
    """Set ``key`` with the level and slices of the existing attribute ``like`` (e.g. ``x_raw`` like ``x``)."""
    if value.size(0) != batch[like].size(0):
        raise ValueError(f"set_attr_like: {key} has {value.size(0)} rows, {like} has {batch[like].size(0)}")
    batch[key] = value
    batch._slice_dict[key] = batch._slice_dict[like]
    batch._inc_dict[key] = batch._inc_dict[like]


def concat_batches(batches: Sequence[Batch]) -> Batch:
    """One PyG ``Batch`` holding the graphs of several (e.g. one per architecture), without a per-graph loop.

    Every batch must have the same keys and edge-feature width (pad with ``taps=``).
    """
    from .graph import NeuralGraph

    if len(batches) == 1:
        return batches[0]
    keys = set(batches[0]._slice_dict)
    for b in batches[1:]:
        if set(b._slice_dict) != keys:
            raise ValueError(f"cannot concatenate batches with different fields: {sorted(keys ^ set(b._slice_dict))}")
        if b.edge_attr.size(-1) != batches[0].edge_attr.size(-1):
            raise ValueError(f"cannot concatenate batches with {batches[0].edge_attr.size(-1)} and "
                             f"{b.edge_attr.size(-1)} taps per edge; build them with the same taps=")
    node_off, graph_off = [0], [0]
    for b in batches:
        node_off.append(node_off[-1] + b.num_nodes)
        graph_off.append(graph_off[-1] + b.num_graphs)
    fields: dict[str, Any] = {}
    slices: dict[str, Tensor] = {}
    incs: dict[str, Any] = {}
    for key in keys:
        vals = [b[key] for b in batches]
        if isinstance(vals[0], list):
            fields[key] = [v for vs in vals for v in vs]
        elif key == "edge_index":
            fields[key] = torch.cat([v + node_off[j] for j, v in enumerate(vals)], 1)
        else:
            fields[key] = torch.cat(vals, 0)
        sl = [b._slice_dict[key] for b in batches]
        offs = [0]
        for s in sl:
            offs.append(offs[-1] + int(s[-1]))
        slices[key] = torch.cat([s[:-1] + offs[j] for j, s in enumerate(sl)] + [sl[-1][-1:] + offs[-2]])
        inc = [b._inc_dict[key] for b in batches]
        if inc[0] is None:
            incs[key] = None
        elif key == "edge_index":
            incs[key] = torch.cat([v + node_off[j] for j, v in enumerate(inc)])
        else:
            incs[key] = torch.cat(inc)
    device = batches[0].x.device
    out = Batch(_base_cls=NeuralGraph, **fields,
                batch=torch.cat([b.batch + graph_off[j] for j, b in enumerate(batches)]),
                ptr=torch.cat([batches[0].ptr[:1]] + [b.ptr[1:] + node_off[j] for j, b in enumerate(batches)]).to(device))
    out._num_graphs = graph_off[-1]
    out._slice_dict = slices
    out._inc_dict = incs
    return out
