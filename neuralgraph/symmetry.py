"""The symmetry group of neural graphs: independent permutations of every hidden layer."""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor
from torch_geometric.data import Data

from .graph import EDGE_FORWARD, EDGE_RESIDUAL, NODE_HIDDEN, STRUCTURE_KEYS, batch_vector

__all__ = ["HiddenPermutation", "permute_hidden", "random_hidden_permutation", "apply_permutation"]


class HiddenPermutation(NamedTuple):
    """``new.x = old.x[node_perm]`` and ``new.edge_attr = old.edge_attr[edge_perm]``."""

    # spelled torch.Tensor: pdoc resolves a NamedTuple's field annotations outside this module
    node_perm: torch.Tensor
    edge_perm: torch.Tensor


def random_hidden_permutation(graph: Data, generator: torch.Generator | None = None) -> Tensor:
    """A node permutation that shuffles each hidden layer of each graph independently.

    Vectorised over a whole batch: nodes are sorted by (graph, layer) with a
    random key inside hidden layers and their own position elsewhere.
    """
    _check_graph(graph, "random_hidden_permutation")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
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
    group = batch_vector(graph) * (int(graph.node_layer.max()) + 1) + graph.node_layer
    order = torch.argsort(key)
    return order[torch.argsort(group[order], stable=True)]


def _check_graph(graph: Data, what: str) -> None:
    """The structure fields the symmetry action reads are there and agree in size."""
    if not isinstance(graph, Data):
        raise ValueError(f"{what} needs a neural graph (torch_geometric Data), got {type(graph).__name__}")
    for key in ("x", "node_layer", "node_type", "edge_index", "edge_type"):
        if not isinstance(getattr(graph, key, None), Tensor):
            raise ValueError(f"{what}: the graph has no {key}; convert the model with ng.to_graph first")
    n, e = graph.x.size(0), graph.edge_index.size(1)
    for key, size in (("node_layer", n), ("node_type", n), ("edge_type", e)):
        if graph[key].shape != (size,):
            raise ValueError(f"{what}: {key} has shape {list(graph[key].shape)}, expected [{size}] "
                             f"({'nodes' if size == n else 'edges'} of the graph)")


def _check_node_perm(graph: Data, node_perm: Tensor) -> None:
    """``node_perm`` is a permutation of the nodes that keeps every node in its graph and layer."""
    n = graph.num_nodes
    if not isinstance(node_perm, Tensor) or node_perm.dtype != torch.long or node_perm.shape != (n,):
        got = f"{node_perm.dtype} {list(node_perm.shape)}" if isinstance(node_perm, Tensor) else type(node_perm).__name__
        raise ValueError(f"node_perm must be an int64 tensor of shape [{n}] (one entry per node), got {got}")
    if not torch.equal(torch.sort(node_perm).values, torch.arange(n, device=node_perm.device)):
        raise ValueError("node_perm is not a permutation of the nodes (repeated or out-of-range entries)")
    group = batch_vector(graph) * (int(graph.node_layer.max()) + 1) + graph.node_layer
    if not torch.equal(group[node_perm], group):
        raise ValueError("node_perm moves nodes to another layer or graph; the symmetry group only "
                         "permutes neurons inside one hidden layer")


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
    edge_graph = batch_vector(graph)[edge_index[1]]
    return order[torch.argsort(edge_graph[order], stable=True)]


def apply_permutation(graph: Data, node_perm: Tensor) -> tuple[Data, HiddenPermutation]:
    """Relabel nodes by ``node_perm`` (new node k is old node ``node_perm[k]``).

    ``node_perm`` must map every node to a node of the same graph and layer.
    Structural node attributes stay; edges are relabelled and re-sorted into
    the canonical (target, source) order so the result rebuilds with ``to_model``.
    """
    _check_graph(graph, "apply_permutation")
    _check_node_perm(graph, node_perm)
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
