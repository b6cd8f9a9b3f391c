"""Batches of neural graphs built without a per-graph loop, and the batch contract.

``Batch.from_data_list`` collates graph by graph. The library builds batches of many
networks directly (:func:`neuralgraph.stacked_to_batch`), adds per-graph attributes
(labels, dataset indices) and concatenates batches of different architectures
(:func:`concat_batches`). For PyG's ``Batch.get_example``, ``index_select`` and
``to_data_list`` to work on such batches, a batch needs the per-attribute slices and
increments PyG records while collating; PyG keeps them in ``Batch._slice_dict`` and
``Batch._inc_dict`` and offers no public setter. **This module is the only place that
writes them**; everything else builds batches through it.

The attributes a batch may carry and their levels are the format's, :data:`~neuralgraph.schema.FIELD_LEVELS`
(a node attribute has one row per node, an edge attribute one per edge, a graph attribute one per graph).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Batch

from .schema import FIELD_LEVELS, NeuralGraph

__all__ = ["FIELD_LEVELS", "uniform_batch", "set_graph_attr", "set_attr_like", "concat_batches"]


def uniform_batch(fields: dict[str, Any], num_graphs: int, nodes_per_graph: int, edges_per_graph: int) -> Batch:
    """A PyG ``Batch`` of ``num_graphs`` graphs of equal size from concatenated fields.

    Args:
        fields: every attribute at its level (:data:`FIELD_LEVELS`): node and edge tensors
            concatenated over graphs (``edge_index`` with global node ids), graph
            attributes as lists or tensors of one entry per graph.
        num_graphs, nodes_per_graph, edges_per_graph: the sizes.
    """
    B, n, e = num_graphs, nodes_per_graph, edges_per_graph
    unknown = sorted(set(fields) - set(FIELD_LEVELS))
    if unknown:
        raise ValueError(f"uniform_batch: no level for {unknown}; add them to neuralgraph.schema.FIELDS")
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

    Every batch must have the same keys and edge-feature width (pad with ``edge_dim=``).
    """
    if len(batches) == 1:
        return batches[0]
    keys = set(batches[0]._slice_dict)
    for b in batches[1:]:
        if set(b._slice_dict) != keys:
            raise ValueError(f"cannot concatenate batches with different fields: {sorted(keys ^ set(b._slice_dict))}")
        if b.edge_attr.size(-1) != batches[0].edge_attr.size(-1):
            raise ValueError(f"cannot concatenate batches with {batches[0].edge_attr.size(-1)} and "
                             f"{b.edge_attr.size(-1)} features per edge; build them with the same edge_dim=")
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
