"""Pictures of neural graphs: networkx export and a layered matplotlib drawing."""
from __future__ import annotations

from pathlib import Path

import networkx as nx
import torch
from torch_geometric.data import Data

from .graph import EDGE_RESIDUAL
from .io import save_figure

__all__ = ["to_networkx", "draw"]


def _edge_scalar(graph: Data) -> torch.Tensor:
    """One number per edge: the weight, or the mean of a conv kernel's real taps."""
    attr = graph.edge_attr.detach().float()
    if attr.size(1) == 1:
        return attr[:, 0]
    mask = graph.edge_mask
    return (attr * mask).sum(1) / mask.sum(1).clamp(min=1)


def to_networkx(graph: Data) -> nx.DiGraph:
    """A ``networkx.DiGraph`` with ``layer``, ``pos``, ``type``, ``bias`` on nodes and ``weight`` on edges.

    Conv edges also carry their whole ``kernel`` (the real taps, as a list).
    """
    G = nx.DiGraph()
    layer, pos, kind = graph.node_layer.tolist(), graph.node_pos.tolist(), graph.node_type.tolist()
    bias = graph.x[:, 0].detach().tolist()
    for n in range(graph.num_nodes):
        G.add_node(n, layer=layer[n], pos=pos[n], type=kind[n], bias=bias[n])
    weight = _edge_scalar(graph).tolist()
    conv = graph.edge_attr.size(1) > 1
    for e, (s, t) in enumerate(graph.edge_index.t().tolist()):
        attrs = {"weight": weight[e], "layer": int(graph.edge_layer[e]), "type": int(graph.edge_type[e])}
        if conv:
            attrs["kernel"] = graph.edge_attr[e][graph.edge_mask[e]].tolist()
        G.add_edge(s, t, **attrs)
    return G


def draw(graph: Data, ax=None, path: str | Path | None = None, title: str | None = None,
         node_size: float = 120.0, max_width: float = 3.0):
    """Draw a graph layer by layer (layer = column).

    Edge colour and width follow the weight (conv: mean of the kernel), node
    colour follows the bias; input neurons are squares, outputs diamonds;
    residual connections are dashed grey arcs.
    Returns the matplotlib ``Axes``; with ``path`` the figure is also saved as PNG.
    """
    import matplotlib.pyplot as plt

    G = to_networkx(graph)
    if ax is None:
        width = 1.6 + 1.4 * (int(graph.node_layer.max()) + 1)
        height = 1.5 + 0.35 * int(torch.bincount(graph.node_layer).max())
        _, ax = plt.subplots(figsize=(width, min(height, 12)))
    # layer = column; neurons in position order top to bottom, each column centred
    counts = torch.bincount(graph.node_layer).tolist()
    layout = {n: (d["layer"], (counts[d["layer"]] - 1) / 2 - d["pos"]) for n, d in G.nodes(data=True)}
    skips = [(u, v) for u, v, d in G.edges(data=True) if d["type"] == EDGE_RESIDUAL]
    G_weights = G.edge_subgraph([(u, v) for u, v, d in G.edges(data=True) if d["type"] != EDGE_RESIDUAL])
    weights = torch.tensor([d["weight"] for *_, d in G_weights.edges(data=True)]) if G_weights.number_of_edges() else torch.zeros(1)
    wmax = float(weights.abs().max()) or 1.0
    if skips:  # residual connections: dashed arcs, weight 1
        nx.draw_networkx_edges(G, layout, edgelist=skips, ax=ax, style="dashed", edge_color="grey", arrows=True,
                               arrowstyle="-", connectionstyle="arc3,rad=0.25", width=1.0, alpha=0.7)
    biases = torch.tensor([d["bias"] for _, d in G.nodes(data=True)])
    bmax = float(biases.abs().max()) or 1.0
    nx.draw_networkx_edges(
        G_weights, layout, ax=ax, edge_color=weights.tolist(), edge_cmap=plt.cm.coolwarm, edge_vmin=-wmax, edge_vmax=wmax,
        width=(0.3 + max_width * weights.abs() / wmax).tolist(), arrows=False, alpha=0.8,
    )
    for kind, marker in ((0, "s"), (1, "o"), (2, "D")):
        nodes = [n for n, d in G.nodes(data=True) if d["type"] == kind]
        if nodes:
            nx.draw_networkx_nodes(
                G, layout, nodelist=nodes, ax=ax, node_shape=marker, node_size=node_size,
                node_color=[G.nodes[n]["bias"] for n in nodes], cmap=plt.cm.PiYG, vmin=-bmax, vmax=bmax,
                edgecolors="black", linewidths=0.6,
            )
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    if path is not None:
        fig = ax.figure
        fig.tight_layout()
        save_figure(fig, path, dpi=120)
    return ax
