"""The symmetry group of neural graphs: independent permutations of every hidden layer."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch_geometric.data import Data

from .graph import EDGE_FORWARD, EDGE_RESIDUAL, NODE_HIDDEN, STRUCTURE_KEYS

__all__ = ["HiddenPermutation", "permute_hidden", "random_hidden_permutation", "apply_permutation"]


class HiddenPermutation(NamedTuple):
    """``new.x = old.x[node_perm]`` and ``new.edge_attr = old.edge_attr[edge_perm]``."""

    node_perm: Tensor
    edge_perm: Tensor


def _graph_index(graph: Data) -> Tensor:
    if "batch" in graph and graph.batch is not None:
        return graph.batch
    return torch.zeros(graph.num_nodes, dtype=torch.long, device=graph.x.device)


def random_hidden_permutation(graph: Data, generator: torch.Generator | None = None) -> Tensor:
    """A node permutation that shuffles each hidden layer of each graph independently.

    Vectorised over a whole batch: nodes are sorted by (graph, layer) with a
    random key inside hidden layers and their own position elsewhere.
    """
    n = graph.num_nodes
    device = graph.x.device
    rand = torch.rand(n, generator=generator, device=generator.device if generator is not None else "cpu").to(device)
    free = graph.node_type == NODE_HIDDEN
    tie = _residual_ties(graph)
    if tie is not None:
        # layers joined by skip connections share one permutation (the key of the
        # chain's first node), and a chain that reaches an input/output is fixed
        rand = rand[tie]
        fixed = torch.zeros(n, dtype=torch.long, device=device).scatter_reduce(0, tie, (~free).long(), "amax")
        free = fixed[tie] == 0
    key = torch.where(free, rand, torch.arange(n, device=device, dtype=rand.dtype) / n)
    group = _graph_index(graph) * (int(graph.node_layer.max()) + 1) + graph.node_layer
    order = torch.argsort(key)
    return order[torch.argsort(group[order], stable=True)]


def _residual_ties(graph: Data) -> Tensor | None:
    """For each node, the first node of its chain of residual skips (None without residuals)."""
    skip = graph.edge_type == EDGE_RESIDUAL
    if not bool(skip.any()):
        return None
    src, dst = graph.edge_index[:, skip]
    tie = torch.arange(graph.num_nodes, device=graph.x.device)
    while True:  # one pass per residual block in the longest chain
        new = tie.clone()
        new[dst] = tie[src]
        if torch.equal(new, tie):
            return tie
        tie = new


def _canonical_edge_order(graph: Data, edge_index: Tensor) -> Tensor:
    """Sort edges by target then source; residual edges after the weights of their graph."""
    n = graph.num_nodes
    order = torch.argsort(edge_index[1] * n + edge_index[0])
    residual = graph.edge_type != EDGE_FORWARD
    if not bool(residual.any()):
        return order
    order = order[torch.argsort(residual[order].long(), stable=True)]
    edge_graph = _graph_index(graph)[edge_index[1]]
    return order[torch.argsort(edge_graph[order], stable=True)]


def apply_permutation(graph: Data, node_perm: Tensor) -> tuple[Data, HiddenPermutation]:
    """Relabel nodes by ``node_perm`` (new node k is old node ``node_perm[k]``).

    ``node_perm`` must map every node to a node of the same graph and layer.
    Structural node attributes stay; edges are relabelled and re-sorted into
    the canonical (target, source) order so the result rebuilds with ``to_model``.
    """
    n = graph.num_nodes
    inverse = torch.empty_like(node_perm)
    inverse[node_perm] = torch.arange(n, device=node_perm.device)
    edge_index = inverse[graph.edge_index]
    edge_perm = _canonical_edge_order(graph, edge_index)
    out = graph.clone()
    for key, value in graph.items():
        if not isinstance(value, Tensor) or key in STRUCTURE_KEYS or key == "ptr":
            continue
        if key == "edge_index":
            out.edge_index = edge_index[:, edge_perm]
        elif graph.is_edge_attr(key):
            out[key] = value[edge_perm]
        elif graph.is_node_attr(key):
            out[key] = value[node_perm]
    return out, HiddenPermutation(node_perm, edge_perm)


def permute_hidden(graph: Data, generator: torch.Generator | None = None) -> tuple[Data, HiddenPermutation]:
    """Apply a random element of the symmetry group to a graph or a batch.

    Every hidden layer of every graph gets its own permutation; input and
    output neurons stay. The permuted network computes the same function.
    Returns the new graph and the permutation applied.
    """
    return apply_permutation(graph, random_hidden_permutation(graph, generator))
