"""Pictures of neural graphs: networkx export and a layered matplotlib drawing."""
from __future__ import annotations

from pathlib import Path

import networkx as nx
import torch
from torch_geometric.data import Data

from .graph import EDGE_RESIDUAL
from .io import save_figure

__all__ = ["to_networkx", "draw", "colour_values"]


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


def colour_values(graph: Data, scale: str = "global") -> tuple[torch.Tensor, torch.Tensor]:
    """The numbers :func:`draw` colours by: per weight edge (conv: kernel mean) and per neuron (bias).

    ``scale="global"``: the raw values; ``scale="layer"``: each layer's weights and
    biases divided by that layer's largest magnitude (so every layer uses the whole
    colour range; layers of very different scales stay readable). Residual edges are
    left out of the edge values.

    Shapes:
        output: ``[E_weights]`` edge values (in edge order), ``[N]`` node values.
    """
    if scale not in ("global", "layer"):
        raise ValueError(f"scale must be 'global' or 'layer', got {scale!r}")
    keep = graph.edge_type != EDGE_RESIDUAL
    w = _edge_scalar(graph)[keep]
    b = graph.x[:, 0].detach().float().clone()
    if scale == "layer":
        layers = int(graph.node_layer.max()) + 1
        el, nl = graph.edge_layer[keep], graph.node_layer
        wmax = torch.zeros(layers).scatter_reduce(0, el, w.abs(), "amax")
        bmax = torch.zeros(layers).scatter_reduce(0, nl, b.abs(), "amax")
        w = w / torch.where(wmax > 0, wmax, torch.ones_like(wmax))[el]
        b = b / torch.where(bmax > 0, bmax, torch.ones_like(bmax))[nl]
    return w, b


def draw(graph: Data, ax=None, path: str | Path | None = None, title: str | None = None,
         node_size: float = 120.0, max_width: float = 3.0, colorbar: bool = True, legend: bool = True,
         scale: str = "global"):
    """Draw a graph layer by layer (layer = column).

    Edge colour and width follow the weight (conv: mean of the kernel), node
    colour follows the bias; input neurons are squares, outputs diamonds;
    residual connections are dashed grey arcs.

    Args:
        colorbar: colour bars of the weight and bias scales beside the drawing.
        legend: a legend of the neuron kinds (and residual connections).
        scale: ``"global"`` (one colour scale for all layers) or ``"layer"`` (each layer
            scaled by its largest magnitude, see :func:`colour_values`; the colour bars
            then read "/ layer max").

    Returns the matplotlib ``Axes``; with ``path`` the figure is also saved as PNG.
    """
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    edge_values, node_values = colour_values(graph, scale)
    G = to_networkx(graph)
    if ax is None:
        width = 1.6 + 1.4 * (int(graph.node_layer.max()) + 1) + (1.6 if colorbar else 0)
        height = 1.5 + 0.35 * int(torch.bincount(graph.node_layer).max())
        _, ax = plt.subplots(figsize=(width, min(max(height, 3.0 if colorbar or legend else 0), 12)))
    # layer = column; neurons in position order top to bottom, each column centred
    counts = torch.bincount(graph.node_layer).tolist()
    layout = {n: (d["layer"], (counts[d["layer"]] - 1) / 2 - d["pos"]) for n, d in G.nodes(data=True)}
    skips = [(u, v) for u, v, d in G.edges(data=True) if d["type"] == EDGE_RESIDUAL]
    weight_edges = [(u, v) for u, v, d in G.edges(data=True) if d["type"] != EDGE_RESIDUAL]
    weights = edge_values if len(weight_edges) else torch.zeros(1)
    wmax = float(weights.abs().max()) or 1.0
    if skips:  # residual connections: dashed arcs, weight 1
        nx.draw_networkx_edges(G, layout, edgelist=skips, ax=ax, style="dashed", edge_color="grey", arrows=True,
                               arrowstyle="-", connectionstyle="arc3,rad=0.25", width=1.0, alpha=0.7)
    bmax = float(node_values.abs().max()) or 1.0
    if weight_edges:
        nx.draw_networkx_edges(
            G, layout, edgelist=weight_edges, ax=ax, edge_color=plt.cm.coolwarm(Normalize(-wmax, wmax)(weights.numpy())), width=(0.3 + max_width * weights.abs() / wmax).tolist(), arrows=False,
            alpha=0.8,
        )
    names = {0: "input neuron", 1: "hidden neuron (colour: bias)", 2: "output neuron (colour: bias)"}
    handles = []
    for kind, marker in ((0, "s"), (1, "o"), (2, "D")):
        nodes = [n for n, d in G.nodes(data=True) if d["type"] == kind]
        if nodes:
            nx.draw_networkx_nodes(
                G, layout, nodelist=nodes, ax=ax, node_shape=marker, node_size=node_size,
                node_color=plt.cm.PiYG(Normalize(-bmax, bmax)(node_values[nodes].numpy())),
                edgecolors="black", linewidths=0.6,
            )
            handles.append(Line2D([], [], marker=marker, ls="", markerfacecolor="white", markeredgecolor="black",
                                  label=names[kind]))
    if skips:
        handles.append(Line2D([], [], ls="--", color="grey", label="residual (weight 1)"))
    ax.set_axis_off()
    if legend and handles:
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(4, len(handles)),
                  fontsize=7, frameon=False)
    if colorbar:
        per = " / layer max" if scale == "layer" else ""
        fig = ax.figure
        fig.colorbar(ScalarMappable(Normalize(-wmax, wmax), plt.cm.coolwarm), ax=ax, fraction=0.05, pad=0.02,
                     label=f"weight{per}")
        fig.colorbar(ScalarMappable(Normalize(-bmax, bmax), plt.cm.PiYG), ax=ax, fraction=0.05, pad=0.04,
                     label=f"bias{per}")
    if title:
        ax.set_title(title)
    if path is not None:
        fig = ax.figure
        fig.tight_layout()
        save_figure(fig, path, dpi=120)
    return ax
