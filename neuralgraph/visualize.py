"""Pictures of neural graphs: networkx export, a layered matplotlib drawing, a permutation picture
and a one-call report of an INR dataset (:func:`dataset_report`)."""
from __future__ import annotations

from pathlib import Path

import networkx as nx
import torch
from torch_geometric.data import Batch, Data

from .architecture import ACTIVATIONS
from .graph import EDGE_RESIDUAL, NODE_HIDDEN, num_graphs
from .io import save_figure

__all__ = ["to_networkx", "draw", "one_graph", "colour_values", "edge_value_kind", "layer_labels",
           "draw_permutation", "dataset_report"]

#: Activation id (``node_act``) -> name.
ACTIVATION_NAMES = {i: name for name, i in ACTIVATIONS.items()}


def one_graph(graph: Data, index: int | None = None, who: str = "draw") -> Data:
    """The graph to draw: ``graph`` itself, or graph ``index`` of a PyG batch.

    A batch of several graphs needs ``index`` (its graphs would otherwise be drawn on top of each
    other, with the summed widths as labels); ``ValueError`` naming ``who`` otherwise.

    Args:
        graph: a neural graph or a PyG batch of them.
        index: which graph of a batch (negative counts from the end); ``None`` for a single graph.
        who: the caller's name, for the message.
    """
    n = num_graphs(graph)
    if index is None:
        if n != 1:
            raise ValueError(f"{who}: the batch holds {n} graphs; pass index= (0..{n - 1}) to draw one "
                             f"(or batch.get_example(i))")
        index = 0
    if isinstance(index, bool) or not isinstance(index, int) or not -n <= index < n:
        raise ValueError(f"{who}: index={index!r} is outside the batch's {n} graphs")
    return graph.get_example(index) if isinstance(graph, Batch) else graph


def _edge_scalar(graph: Data) -> torch.Tensor:
    """One number per edge: the weight, or the mean of a conv kernel's real taps."""
    attr = graph.edge_attr.detach().float()
    if attr.size(1) == 1:
        return attr[:, 0]
    mask = graph.edge_mask
    return (attr * mask).sum(1) / mask.sum(1).clamp(min=1)


def _has_kernels(graph: Data) -> bool:
    """Whether some edge holds more than one real tap (a conv kernel)."""
    mask = getattr(graph, "edge_mask", None)
    return graph.edge_attr.size(1) > 1 and mask is not None and bool((mask.sum(1) > 1).any())


def _kernel_norm(graph: Data) -> torch.Tensor:
    """One number per edge: the L2 norm of its real taps (``edge_mask``); ``|w|`` for a one-tap edge."""
    attr = graph.edge_attr.detach().float()
    return (attr * graph.edge_mask).square().sum(1).sqrt()


def edge_value_kind(graph: Data) -> str:
    """What :func:`colour_values` gives per edge: ``"weight"`` (signed) or ``"kernel norm"``.

    Graphs with conv kernels (some edge with more than one real tap) are coloured by the
    L2 norm of each kernel's real taps: the mean of a kernel's taps is near zero for most
    trained kernels and hides them. One-tap edges of such graphs (a final ``Linear``) then
    show ``|w|``, the same norm of one tap.
    """
    return "kernel norm" if _has_kernels(graph) else "weight"


def to_networkx(graph: Data) -> nx.DiGraph:
    """A ``networkx.DiGraph`` with ``layer``, ``pos``, ``type``, ``bias`` on nodes and ``weight`` on edges.

    Conv edges also carry their whole ``kernel`` (the real taps, as a list). One graph: a batch of
    several is refused (:func:`one_graph` picks one).
    """
    graph = one_graph(graph, who="to_networkx")
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
    """The numbers :func:`draw` colours by: per weight edge and per neuron (bias).

    Per edge: the weight, or for graphs with conv kernels the L2 norm of each kernel's
    real taps (see :func:`edge_value_kind`).

    ``scale="global"``: the raw values; ``scale="layer"``: each layer's weights and
    biases divided by that layer's largest magnitude (so every layer uses the whole
    colour range; layers of very different scales stay readable). Residual edges are
    left out of the edge values.

    Shapes:
        output: ``[E_weights]`` edge values (in edge order), ``[N]`` node values.
    """
    if scale not in ("global", "layer"):
        raise ValueError(f"scale must be 'global' or 'layer', got {scale!r}")
    graph = one_graph(graph, who="colour_values")
    keep = graph.edge_type != EDGE_RESIDUAL
    w = (_kernel_norm(graph) if _has_kernels(graph) else _edge_scalar(graph))[keep]
    b = graph.x[:, 0].detach().float().clone()
    if scale == "layer":
        layers = int(graph.node_layer.max()) + 1
        el, nl = graph.edge_layer[keep], graph.node_layer
        wmax = torch.zeros(layers).scatter_reduce(0, el, w.abs(), "amax")
        bmax = torch.zeros(layers).scatter_reduce(0, nl, b.abs(), "amax")
        w = w / torch.where(wmax > 0, wmax, torch.ones_like(wmax))[el]
        b = b / torch.where(bmax > 0, bmax, torch.ones_like(bmax))[nl]
    return w, b


def layer_labels(graph: Data) -> list[tuple[str, str]]:
    """Per graph layer ``m = 0..M``: (a header, an activation label) as :func:`draw` writes them.

    The header is the layer index, its width and (with ``graph.arch``) the kind of the
    layer that computes it, e.g. ``"layer 2\n32 neurons\nconv2d 3x3"``; the activation label
    names the activation applied to the layer's neurons (``node_act``), ``"input"`` for layer 0.
    """
    graph = one_graph(graph, who="layer_labels")
    counts = torch.bincount(graph.node_layer).tolist()
    act = torch.zeros(len(counts), dtype=torch.long).scatter_reduce(
        0, graph.node_layer, graph.node_act.long(), "amax", include_self=False) if hasattr(graph, "node_act") \
        else torch.zeros(len(counts), dtype=torch.long)
    arch = getattr(graph, "arch", None)
    out = []
    for m, width in enumerate(counts):
        head = f"layer {m}\n{width} neuron{'s' if width != 1 else ''}"
        if arch is not None and 1 <= m <= len(getattr(arch, "layers", ())):
            spec = arch.layers[m - 1]
            head += f"\n{spec.kind}" + (" " + "x".join(map(str, spec.kernel_size)) if spec.kernel_size else "")
        if m == 0:
            label = "input"
        else:
            label = ACTIVATION_NAMES.get(int(act[m]), f"act {int(act[m])}")
            label = "no activation" if label == "identity" else label
        out.append((head, label))
    return out


def _layout(graph: Data) -> dict[int, tuple[float, float]]:
    """Layer = column; neurons in position order top to bottom, each column centred."""
    counts = torch.bincount(graph.node_layer).tolist()
    layer, pos = graph.node_layer.tolist(), graph.node_pos.tolist()
    return {n: (layer[n], (counts[layer[n]] - 1) / 2 - pos[n]) for n in range(graph.num_nodes)}


def _write_layer_labels(ax, graph: Data) -> None:
    """Layer headers above and activation names below the columns (the y limits are widened for them)."""
    counts = torch.bincount(graph.node_layer).tolist()
    top = (max(counts) - 1) / 2
    for m, (head, act) in enumerate(layer_labels(graph)):
        ax.text(m, top + 0.7, head, ha="center", va="bottom", fontsize=7)
        ax.text(m, -top - 0.7, act, ha="center", va="top", fontsize=7, style="italic", color="dimgray")
    ax.set_ylim(-top - 0.7 - 0.09 * max(counts) - 1.0, top + 0.7 + 0.12 * max(counts) + 1.6)
    ax.set_xlim(-0.6, len(counts) - 0.4)


def _colour_bars(ax, weights, biases, norms: bool, scale: str) -> None:
    """The weight (or kernel-norm) and bias colour bars of :func:`draw` beside ``ax``."""
    per = " / layer max" if scale == "layer" else ""
    # the first bar sits rightmost; its pad is the gap the second bar's tick labels need
    ax.figure.colorbar(weights, ax=ax, fraction=0.05, pad=0.16,
                       label=(f"kernel L2 norm (real taps){per}" if norms else f"weight{per}"))
    ax.figure.colorbar(biases, ax=ax, fraction=0.05, pad=0.03, label=f"bias{per}")


def draw(graph: Data, ax=None, path: str | Path | None = None, title: str | None = None,
         node_size: float = 120.0, max_width: float = 3.0, colorbar: bool = True, legend: bool = True,
         scale: str = "global", labels: bool = True, index: int | None = None):
    """Draw a graph layer by layer (layer = column).

    Edge colour and width follow the weight (graphs with conv kernels: the L2 norm of each
    kernel's real taps, see :func:`edge_value_kind`), node colour follows the bias; input
    neurons are squares, outputs diamonds; residual connections are dashed grey arcs.

    Args:
        colorbar: colour bars of the weight (or kernel norm) and bias scales beside the drawing.
        legend: a legend of the neuron kinds (and residual connections).
        scale: ``"global"`` (one colour scale for all layers) or ``"layer"`` (each layer
            scaled by its largest magnitude, see :func:`colour_values`; the colour bars
            then read "/ layer max").
        labels: above each column the layer index, width and kind; below it the activation
            of its neurons (:func:`layer_labels`).
        index: which graph of a PyG batch to draw; a batch of several graphs needs it (``ValueError``
            otherwise; they would be drawn on top of each other).

    Returns the matplotlib ``Axes``; with ``path`` the figure is also saved as PNG.
    """
    graph = one_graph(graph, index, "draw")
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    edge_values, node_values = colour_values(graph, scale)
    norms = edge_value_kind(graph) == "kernel norm"
    G = to_networkx(graph)
    if ax is None:
        width = 1.6 + 1.4 * (int(graph.node_layer.max()) + 1) + (1.6 if colorbar else 0)
        height = 1.5 + 0.35 * int(torch.bincount(graph.node_layer).max()) + (1.0 if labels else 0)
        _, ax = plt.subplots(figsize=(width, min(max(height, 3.0 if colorbar or legend else 0), 12)))
    layout = _layout(graph)
    skips = [(u, v) for u, v, d in G.edges(data=True) if d["type"] == EDGE_RESIDUAL]
    weight_edges = [(u, v) for u, v, d in G.edges(data=True) if d["type"] != EDGE_RESIDUAL]
    weights = edge_values if len(weight_edges) else torch.zeros(1)
    wmax = float(weights.abs().max()) or 1.0
    wnorm, wcmap = (Normalize(0, wmax), plt.cm.viridis) if norms else (Normalize(-wmax, wmax), plt.cm.coolwarm)
    if skips:  # residual connections: dashed arcs, weight 1
        nx.draw_networkx_edges(G, layout, edgelist=skips, ax=ax, style="dashed", edge_color="grey", arrows=True,
                               arrowstyle="-", connectionstyle="arc3,rad=0.25", width=1.0, alpha=0.7)
    bmax = float(node_values.abs().max()) or 1.0
    if weight_edges:
        nx.draw_networkx_edges(
            G, layout, edgelist=weight_edges, ax=ax, edge_color=wcmap(wnorm(weights.numpy())),
            width=(0.3 + max_width * weights.abs() / wmax).tolist(), arrows=False, alpha=0.8,
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
    if labels:
        _write_layer_labels(ax, graph)
    ax.set_axis_off()
    if legend and handles:
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(4, len(handles)),
                  fontsize=7, frameon=False)
    if colorbar:
        _colour_bars(ax, ScalarMappable(wnorm, wcmap), ScalarMappable(Normalize(-bmax, bmax), plt.cm.PiYG),
                     norms, scale)
    if title:
        ax.set_title(title)
    if path is not None:
        fig = ax.figure
        fig.tight_layout()
        save_figure(fig, path, dpi=120)
    return ax


def _check_permutation(graph: Data, permuted: Data, perm) -> torch.Tensor:
    """``perm.node_perm`` as a checked long tensor (``ValueError`` naming what does not fit)."""
    node_perm = getattr(perm, "node_perm", None)
    if not isinstance(node_perm, torch.Tensor):
        raise ValueError(f"draw_permutation: perm must be the HiddenPermutation permute_hidden returns, got "
                         f"{type(perm).__name__}")
    N = graph.num_nodes
    if node_perm.shape != (N,) or permuted.num_nodes != N:
        raise ValueError(f"draw_permutation: graph has {N} nodes, permuted {permuted.num_nodes}, perm.node_perm "
                         f"shape {tuple(node_perm.shape)}; they must agree")
    node_perm = node_perm.long().cpu()
    if not torch.equal(node_perm.sort().values, torch.arange(N)):
        raise ValueError("draw_permutation: perm.node_perm is not a permutation of the graph's nodes")
    if not torch.equal(graph.node_layer.cpu()[node_perm], graph.node_layer.cpu()):
        raise ValueError("draw_permutation: perm.node_perm moves neurons across layers")
    if not torch.allclose(permuted.x.detach().cpu().float(), graph.x.detach().cpu().float()[node_perm]):
        raise ValueError("draw_permutation: permuted.x != graph.x[perm.node_perm]; pass the graph and permutation "
                         "that ng.permute_hidden(graph) returned")
    return node_perm


def draw_permutation(graph: Data, permuted: Data, perm, path: str | Path, title: str | None = None,
                     node_size: float = 160.0) -> Path:
    """The graph before and after a hidden-neuron permutation, side by side.

    Every hidden neuron keeps one colour (and, in narrow layers, the number of its original
    position) on both sides, so one sees where each neuron went; neurons that moved have a
    thick outline. Edges are grey, their width following ``|weight|`` (kernel norm for conv),
    so the moved weights are visible too. Inputs and outputs never move.

    Args:
        graph: a single neural graph.
        permuted, perm: what :func:`neuralgraph.permute_hidden` returned for ``graph``
            (``permuted.x == graph.x[perm.node_perm]``).
        path: the PNG to write.

    Returns the path written.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    node_perm = _check_permutation(graph, permuted, perm)
    hidden = graph.node_type.cpu() == NODE_HIDDEN
    counts = torch.bincount(graph.node_layer.cpu())
    ident = graph.node_pos.cpu().float().add(0.5) / counts[graph.node_layer.cpu()].float()   # (0, 1) per layer
    cmap = colormaps["turbo"]
    moved = (node_perm != torch.arange(graph.num_nodes)) & hidden
    layers = int(graph.node_layer.max()) + 1
    width = 2.0 + 2.4 * layers
    height = 2.2 + 0.35 * int(counts.max())
    fig = Figure(figsize=(width, min(max(height, 4.0), 14)))
    axes = fig.subplots(1, 2)
    for ax, g, origin, name in ((axes[0], graph, torch.arange(graph.num_nodes), "before"),
                                (axes[1], permuted, node_perm, "after permute_hidden")):
        G = to_networkx(g)
        layout = _layout(g)
        values = (_kernel_norm(g) if _has_kernels(g) else _edge_scalar(g).abs())
        keep = (g.edge_type != EDGE_RESIDUAL).tolist()
        edges = [e for e, k in zip(g.edge_index.t().tolist(), keep) if k]
        if edges:
            keep_t = torch.tensor(keep)
            v, el = values[keep_t], g.edge_layer.cpu()[keep_t]
            vmax = torch.zeros(layers).scatter_reduce(0, el, v, "amax")      # widths scaled per layer
            v = v / torch.where(vmax > 0, vmax, torch.ones_like(vmax))[el]
            nx.draw_networkx_edges(G, layout, edgelist=[tuple(e) for e in edges], ax=ax, edge_color="grey",
                                   width=(0.2 + 2.0 * v).tolist(), alpha=0.5, arrows=False)
        is_hidden = (g.node_type.cpu() == NODE_HIDDEN)
        colours = [cmap(float(ident[o])) if h else (1, 1, 1, 1) for o, h in zip(origin.tolist(), is_hidden.tolist())]
        was_moved = moved if name != "before" else torch.zeros_like(moved)
        for kind, marker in ((0, "s"), (1, "o"), (2, "D")):
            nodes = (g.node_type.cpu() == kind).nonzero().reshape(-1).tolist()
            if nodes:
                nx.draw_networkx_nodes(G, layout, nodelist=nodes, ax=ax, node_shape=marker, node_size=node_size,
                                       node_color=[colours[n] for n in nodes], edgecolors="black",
                                       linewidths=[2.2 if was_moved[n] else 0.6 for n in nodes])
        numbered = int(counts[1:-1].max() if layers > 2 else 0) <= 24
        if numbered:   # original positions, where they fit
            pos = graph.node_pos.cpu()
            nx.draw_networkx_labels(G, layout, ax=ax, font_size=6,
                                    labels={n: str(int(pos[o])) for n, o in enumerate(origin.tolist())
                                            if is_hidden[n]})
        _write_layer_labels(ax, g)
        ax.set_axis_off()
        n_hidden = int(hidden.sum())
        ax.set_title(name if name == "before" else f"{name}: {int(moved.sum())} of {n_hidden} hidden neurons moved",
                     fontsize=9)
    handles = [Line2D([], [], marker="o", ls="", markerfacecolor=cmap(0.3), markeredgecolor="black",
                      label="hidden neuron (colour" + (", number" if numbered else "") + ": original position)"),
               Line2D([], [], marker="o", ls="", markerfacecolor=cmap(0.7), markeredgecolor="black",
                      markeredgewidth=2.2, label="moved by the permutation"),
               Line2D([], [], color="grey", label="edge (width: |weight| / layer max)")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle(title or "hidden-neuron permutation: same colour = same neuron (the network's function is "
                          "unchanged)", fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    return save_figure(fig, path, dpi=120)


def _originals(dataset, idx: torch.Tensor, root: str | Path | None) -> torch.Tensor | None:
    """The images the selected INRs were fitted to, where the file says where they came from (else ``None``)."""
    from .data import load_digits, load_mnist

    meta = dataset.meta
    source, split = meta.get("source"), meta.get("source_split")
    src = dataset.source_index[idx]
    if source == "digits":
        return load_digits()[0][src]
    if source in ("mnist", "fashion_mnist") and root is not None and split in ("train", "test"):
        return load_mnist(root, split, limit=int(src.max()) + 1)[0][src]
    return None


def dataset_report(data_dir: str | Path, out_dir: str | Path | None = None, n_images: int = 8,
                   root: str | Path | None = None, upsample: int = 4) -> list[Path]:
    """Pictures of an INR dataset's training split (``data_dir/train.pt``).

    Writes into ``out_dir`` (default ``data_dir``): ``layer_histograms.png`` (per-layer weight
    and bias histograms), ``fit_psnr.png`` (histogram of the fit PSNR) and, for image INRs
    (``meta["fit"]["image_shape"]``), ``reconstructions_4x.png`` (the first ``n_images``
    originals beside their INRs at the original and ``upsample`` x resolution, with PSNR).

    Args:
        data_dir: a directory of INR splits (``neuralgraph fit-inrs`` / ``import-inrs``), or a split file.
        root: the IDX directory of MNIST / Fashion-MNIST INRs, to show their originals
            (digits need none; without it the INR rows are drawn alone).

    Returns the paths written.
    """
    from .inr import INRDataset
    from .inr.coords import row_col_params
    from .train.plots import plot_layer_histograms, plot_psnr_histogram, plot_reconstructions_with_originals

    data_dir = Path(data_dir)
    path = data_dir / "train.pt" if data_dir.is_dir() else data_dir
    if not path.is_file():
        raise FileNotFoundError(f"dataset_report: no INR split {path} (make one with `neuralgraph fit-inrs`)")
    out = Path(out_dir) if out_dir is not None else (data_dir if data_dir.is_dir() else data_dir.parent)
    dataset = INRDataset(path)
    if len(dataset) == 0:
        raise ValueError(f"dataset_report: {path} holds no INRs")
    name = f"{dataset.meta.get('source', path.parent.name)} {dataset.meta.get('split', path.stem)}"
    written = [plot_layer_histograms(dataset, out / "layer_histograms.png", title=f"{name} INRs ({path})"),
               plot_psnr_histogram(dataset.psnr, out / "fit_psnr.png", title=f"{name} INRs",
                                   target=dataset.meta.get("fit", {}).get("target_psnr"))]
    fit = dataset.meta.get("fit", {})
    shape = fit.get("image_shape")
    if shape and len(shape) >= 2 and dataset.arch.widths[-1] == 1:
        idx = torch.arange(min(n_images, len(dataset)))
        weights, biases = row_col_params(dataset.arch, *dataset.params(idx))   # rendered on (row, col)
        written.append(plot_reconstructions_with_originals(
            _originals(dataset, idx, root), (weights, biases), dataset.psnr[idx], out / "reconstructions_4x.png",
            upsample=upsample, w0=fit.get("w0"), offset=fit.get("offset"), image_shape=shape[:2],
            title=f"{name} INRs"))
    return written
