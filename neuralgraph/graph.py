"""Models <-> neural graphs, exactly.

Layout of a :class:`NeuralGraph` with layers ``0..M`` and widths ``d_0..d_M``:

* nodes are ordered by layer, then by position in the layer;
* ``x``           ``[N, 1]``  bias of the neuron (0 for input neurons);
* ``node_layer``  ``[N]``     layer index ``l``;
* ``node_pos``    ``[N]``     position of the neuron inside its layer;
* ``node_type``   ``[N]``     0 input, 1 hidden, 2 output (:data:`NODE_INPUT` ...);
* ``node_act``    ``[N]``     id of the activation applied to the neuron (``ACTIVATIONS``);
* ``edge_index``  ``[2, E]``  source (layer ``m-1``) -> target (layer ``m``);
  edges sorted by target then source, so layer ``m``'s edges are ``W_m`` in
  row-major (torch ``out x in``) order; residual edges (if any) come after all
  weight edges of their graph, sorted by target;
* ``edge_attr``   ``[E, K]``  weight; a conv kernel is flattened and zero-padded
  to ``K`` taps;
* ``edge_mask``   ``[E, K]``  which of the ``K`` taps are real;
* ``edge_layer``  ``[E]``     ``m``, the layer of the target;
* ``edge_type``   ``[E]``     :data:`EDGE_FORWARD` for a weight, :data:`EDGE_RESIDUAL` for a
  skip connection of a :class:`~neuralgraph.architecture.Residual` block (neuron
  i of layer a -> neuron i of layer b, feature 1 in tap 0);
* ``node_norm``   ``[N, 4]``  the neuron's (weight, bias, running_mean, running_var)
  of a BatchNorm/LayerNorm after its layer, :data:`IDENTITY_NORM` = (1, 0, 0, 1)
  where there is none (the paper's "normalisation = node features"); always
  present, so graphs with and without normalisation batch together;
* ``arch``        the :class:`~neuralgraph.architecture.Architecture` (a list
  of them in a batch).

Everything a processor may change is in ``x`` and ``edge_attr``; the rest is
structure, which the symmetry group leaves unchanged.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch, Data

from .architecture import Architecture

__all__ = [
    "NODE_INPUT", "NODE_HIDDEN", "NODE_OUTPUT", "EDGE_FORWARD", "EDGE_REVERSE", "EDGE_RESIDUAL",
    "STRUCTURE_KEYS",
    "NeuralGraph", "to_graph", "to_model", "to_models",
    "graph_from_params", "stacked_to_batch", "batch_to_stacked", "pad_taps", "IDENTITY_NORM",
]

#: ``node_norm`` row of a neuron without normalisation: weight 1, bias 0, mean 0, var 1.
IDENTITY_NORM = (1.0, 0.0, 0.0, 1.0)

NODE_INPUT, NODE_HIDDEN, NODE_OUTPUT = 0, 1, 2
#: Edge kinds: a weight, a reverse copy (added by processors that pass messages both ways),
#: and a residual (skip) connection with constant weight 1.
EDGE_FORWARD, EDGE_REVERSE, EDGE_RESIDUAL = 0, 1, 2

#: Node attributes that describe structure, not parameters (invariant under the symmetry group).
STRUCTURE_KEYS = ("node_layer", "node_pos", "node_type", "node_act", "batch")


class NeuralGraph(Data):
    """A PyG ``Data`` holding one network; see the module docstring for the fields."""

    @property
    def num_layers(self) -> int:
        """M: parametric layers (graph layers are 0..M). For a batch, the maximum."""
        return int(self.node_layer.max())

    @property
    def num_taps(self) -> int:
        return self.edge_attr.size(-1)


# ----------------------------------------------------------------------------
# structure templates (shared by the single-graph and the stacked paths)
# ----------------------------------------------------------------------------

def _structure(arch: Architecture, device=None) -> dict[str, Tensor]:
    widths = torch.tensor(arch.widths, device=device)
    M = arch.num_layers
    layer_of_node = torch.repeat_interleave(torch.arange(M + 1, device=device), widths)
    starts = torch.cumsum(widths, 0) - widths
    node_pos = torch.arange(int(widths.sum()), device=device) - starts[layer_of_node]
    node_type = torch.full_like(layer_of_node, NODE_HIDDEN)
    node_type[layer_of_node == 0] = NODE_INPUT
    node_type[layer_of_node == M] = NODE_OUTPUT
    acts = torch.tensor([0] + [l.activation_id for l in arch.layers], device=device)
    src, dst, elayer, etype = [], [], [], []
    for m, layer in enumerate(arch.layers, start=1):
        d_in, d_out = layer.in_features, layer.out_features
        i = torch.arange(d_out, device=device).repeat_interleave(d_in)
        j = torch.arange(d_in, device=device).repeat(d_out)
        dst.append(starts[m] + i)
        src.append(starts[m - 1] + j)
        elayer.append(torch.full((d_out * d_in,), m, device=device))
        etype.append(torch.full((d_out * d_in,), EDGE_FORWARD, device=device))
    for start, end, _ in arch.residuals:
        d = arch.widths[start]
        src.append(starts[start] + torch.arange(d, device=device))
        dst.append(starts[end] + torch.arange(d, device=device))
        elayer.append(torch.full((d,), end, device=device))
        etype.append(torch.full((d,), EDGE_RESIDUAL, device=device))
    return dict(
        edge_index=torch.stack([torch.cat(src), torch.cat(dst)]),
        node_layer=layer_of_node,
        node_pos=node_pos,
        node_type=node_type,
        node_act=acts[layer_of_node],
        edge_layer=torch.cat(elayer),
        edge_type=torch.cat(etype),
    )


def _edge_mask(arch: Architecture, taps: int, device=None) -> Tensor:
    rows = [
        (torch.arange(taps, device=device) < l.taps).expand(l.in_features * l.out_features, taps)
        for l in arch.layers
    ]
    rows += [(torch.arange(taps, device=device) < 1).expand(arch.widths[s], taps) for s, _, _ in arch.residuals]
    return torch.cat(rows)


def _check_taps(arch: Architecture, taps: int | None) -> int:
    need = arch.max_taps
    if taps is None:
        return need
    if taps < need:
        raise ValueError(f"taps={taps} is smaller than the largest kernel ({need} taps)")
    return taps


# ----------------------------------------------------------------------------
# model -> graph
# ----------------------------------------------------------------------------

def to_graph(
    model: nn.Module | Mapping[str, Tensor],
    arch: Architecture | None = None,
    *,
    taps: int | None = None,
) -> NeuralGraph:
    """Convert an ``nn.Sequential`` (or a state dict plus ``arch``) to a :class:`NeuralGraph`.

    ``taps`` pads edge features to a common kernel size so that graphs of
    different CNNs batch together (default: the largest kernel of this model).
    Unsupported modules, shape mismatches, non-float or non-finite parameters
    raise ``ValueError`` naming the module.
    """
    if isinstance(model, Mapping):
        if arch is None:
            raise ValueError("converting a state dict needs arch=Architecture(...)")
        module = arch.build()
        try:
            module.load_state_dict(model, strict=True)
        except RuntimeError as e:
            raise ValueError(f"state dict does not match the architecture: {e}") from None
        model = module
    found = Architecture.from_module(model)
    if arch is not None and arch != found:
        raise ValueError("model does not match the given architecture")
    params = [m for m in _parametric(model)]
    norms = _norm_params(model, found) if found.has_norm else None
    return graph_from_params(
        [m.weight.detach() for m in params],
        [None if m.bias is None else m.bias.detach() for m in params],
        found,
        taps=taps,
        norms=norms,
    )


def _norm_modules(model: nn.Module, arch: Architecture) -> list[nn.Module | None]:
    """The normalisation module after each parametric layer (None where there is none)."""
    found = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm))]
    it = iter(found)
    return [next(it) if layer.norm is not None else None for layer in arch.layers]


def _norm_params(model: nn.Module, arch: Architecture) -> list[Tensor | None]:
    rows = []
    for layer, module in zip(arch.layers, _norm_modules(model, arch)):
        if module is None:
            rows.append(None)
            continue
        n = layer.out_features
        ref = next(model.parameters())
        cols = []
        for name, default in zip(("weight", "bias", "running_mean", "running_var"), IDENTITY_NORM):
            t = getattr(module, name, None)
            cols.append(t.detach().to(ref.dtype) if t is not None else torch.full((n,), default, dtype=ref.dtype))
        rows.append(torch.stack(cols, 1))
    return rows


def _parametric(model: nn.Module):
    return (m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)))


def graph_from_params(
    weights: Sequence[Tensor],
    biases: Sequence[Tensor | None],
    arch: Architecture,
    *,
    taps: int | None = None,
    norms: Sequence[Tensor | None] | None = None,
) -> NeuralGraph:
    """One graph from per-layer weights ``[out, in, *kernel]`` and biases ``[out]``.

    ``norms[m]`` (``[out, 4]``) holds the normalisation parameters after layer m, if any.
    """
    add = lambda t: None if t is None else t.unsqueeze(0)
    batch = stacked_to_batch([add(w) for w in weights], [add(b) for b in biases], arch, taps=taps,
                             norms=None if norms is None else [add(n) for n in norms])
    g = NeuralGraph(**{k: batch[k] for k in batch.keys() if k not in ("batch", "ptr")})
    g.arch = arch
    return g


def stacked_to_batch(
    weights: Sequence[Tensor],
    biases: Sequence[Tensor | None],
    arch: Architecture,
    *,
    taps: int | None = None,
    norms: Sequence[Tensor | None] | None = None,
) -> Batch:
    """B networks of one architecture -> a PyG ``Batch`` of B graphs, without a per-network loop.

    ``weights[m]`` is ``[B, out, in, *kernel]`` and ``biases[m]`` is ``[B, out]``
    (``None`` for a layer without bias). This is the fast path for INR datasets,
    where tens of thousands of networks share one architecture. For
    architectures with normalisation, ``norms[m]`` is ``[B, out, 4]`` (see ``node_norm``).
    """
    if len(weights) != arch.num_layers or len(biases) != arch.num_layers:
        raise ValueError(f"expected {arch.num_layers} weight and bias tensors, "
                         f"got {len(weights)} and {len(biases)}")
    B = weights[0].shape[0]
    K = _check_taps(arch, taps)
    dtype, device = weights[0].dtype, weights[0].device
    if not dtype.is_floating_point:
        raise ValueError(f"weights must be floating point, got {dtype}")
    cols, bias_cols = [], [torch.zeros(B, arch.widths[0], dtype=dtype, device=device)]
    for m, (layer, w, b) in enumerate(zip(arch.layers, weights, biases), start=1):
        want = (B, *layer.weight_shape)
        if tuple(w.shape) != want:
            raise ValueError(f"layer {m} ({layer.kind}): weight has shape {tuple(w.shape)}, expected {want}")
        w = w.reshape(B, layer.out_features * layer.in_features, layer.taps).to(dtype)
        cols.append(torch.nn.functional.pad(w, (0, K - layer.taps)))
        if layer.bias:
            if b is None or tuple(b.shape) != (B, layer.out_features):
                got = None if b is None else tuple(b.shape)
                raise ValueError(f"layer {m} ({layer.kind}): bias has shape {got}, expected {(B, layer.out_features)}")
            bias_cols.append(b.to(dtype))
        else:
            if b is not None:
                raise ValueError(f"layer {m} ({layer.kind}) has no bias in the architecture but one was given")
            bias_cols.append(torch.zeros(B, layer.out_features, dtype=dtype, device=device))
    for start, _, _ in arch.residuals:
        skip = torch.zeros(B, arch.widths[start], K, dtype=dtype, device=device)
        skip[..., 0] = 1.0
        cols.append(skip)
    x = torch.cat(bias_cols, 1).reshape(-1, 1)
    edge_attr = torch.cat(cols, 1).reshape(-1, K)
    if not torch.isfinite(x).all() or not torch.isfinite(edge_attr).all():
        raise ValueError("parameters contain NaN or inf")
    node_norm = _stack_norms(norms, arch, B, dtype, device)
    return _replicate(_structure(arch, device), _edge_mask(arch, K, device), x, edge_attr, arch, B, node_norm)


def _stack_norms(norms, arch: Architecture, B: int, dtype, device) -> Tensor:
    identity = torch.tensor(IDENTITY_NORM, dtype=dtype, device=device)
    if norms is None and not arch.has_norm:
        return identity.repeat(B * arch.num_nodes, 1)
    if norms is None or len(norms) != arch.num_layers:
        raise ValueError(f"this architecture has normalisation layers: pass norms= with {arch.num_layers} entries")
    rows = [identity.expand(B, arch.widths[0], 4)]
    for m, (layer, n) in enumerate(zip(arch.layers, norms), start=1):
        want = (B, layer.out_features, 4)
        if layer.norm is None:
            if n is not None:
                raise ValueError(f"layer {m} ({layer.kind}) has no normalisation but norms[{m - 1}] was given")
            rows.append(identity.expand(*want))
        elif n is None or tuple(n.shape) != want:
            raise ValueError(f"layer {m}: norms[{m - 1}] has shape {None if n is None else tuple(n.shape)}, expected {want}")
        else:
            rows.append(n.to(dtype))
    out = torch.cat(rows, 1).reshape(-1, 4)
    if not torch.isfinite(out).all():
        raise ValueError("normalisation parameters contain NaN or inf")
    return out


def _replicate(s: dict[str, Tensor], mask: Tensor, x: Tensor, edge_attr: Tensor,
               arch: Architecture, B: int, node_norm: Tensor) -> Batch:
    n, e = arch.num_nodes, s["edge_layer"].numel()
    device = x.device
    node_offsets = torch.arange(B, device=device) * n
    edge_index = (s["edge_index"].unsqueeze(1) + node_offsets.view(1, B, 1)).reshape(2, -1)
    tile = lambda t: t.repeat(B) if t.dim() == 1 else t.repeat(B, 1)
    node_slices = torch.arange(B + 1) * n
    edge_slices = torch.arange(B + 1) * e
    batch = Batch(
        _base_cls=NeuralGraph,
        x=x, edge_index=edge_index, edge_attr=edge_attr, edge_mask=tile(mask), node_norm=node_norm,
        **{k: tile(v) for k, v in s.items() if k != "edge_index"},
        arch=[arch] * B,
        batch=torch.arange(B, device=device).repeat_interleave(n),
        ptr=torch.arange(B + 1, device=device) * n,
    )
    batch._num_graphs = B
    batch._slice_dict = {
        "x": node_slices, "edge_index": edge_slices, "edge_attr": edge_slices,
        "edge_mask": edge_slices, "node_layer": node_slices, "node_pos": node_slices,
        "node_type": node_slices, "node_act": node_slices, "edge_layer": edge_slices,
        "edge_type": edge_slices, "node_norm": node_slices, "arch": torch.arange(B + 1),
    }
    zeros = torch.zeros(B, dtype=torch.long)
    batch._inc_dict = {k: zeros for k in batch._slice_dict if k not in ("edge_index", "arch")}
    batch._inc_dict["edge_index"] = torch.arange(B) * n
    batch._inc_dict["arch"] = None
    return batch


# ----------------------------------------------------------------------------
# graph -> model
# ----------------------------------------------------------------------------

def _layer_params(graph: Data, arch: Architecture) -> tuple[list[Tensor], list[Tensor | None]]:
    """Dense per-layer weights/biases of one graph, read through ``edge_index``.

    Reading through indices (not edge order) means any graph with the right
    structure rebuilds, whatever order its edges are stored in.
    """
    pos, layer = graph.node_pos, graph.node_layer
    src, dst = graph.edge_index
    weights, biases = [], []
    for m, spec in enumerate(arch.layers, start=1):
        sel = (graph.edge_layer == m) & (graph.edge_type == EDGE_FORWARD)
        count = int(sel.sum())
        if count != spec.in_features * spec.out_features:
            raise ValueError(f"layer {m} ({spec.kind}): graph has {count} edges, expected "
                             f"{spec.out_features}x{spec.in_features}")
        if graph.edge_attr.size(-1) < spec.taps:
            raise ValueError(f"layer {m}: edge features have {graph.edge_attr.size(-1)} taps, kernel needs {spec.taps}")
        w = graph.edge_attr.new_zeros(spec.out_features, spec.in_features, spec.taps)
        w[pos[dst[sel]], pos[src[sel]]] = graph.edge_attr[sel, : spec.taps]
        weights.append(w.reshape(spec.weight_shape))
        biases.append(graph.x[layer == m, 0].clone() if spec.bias else None)
    return weights, biases


def to_model(graph: Data, arch: Architecture | None = None) -> nn.Sequential:
    """Rebuild the ``nn.Sequential`` a single graph describes (bit-exact round trip).

    Edited graphs (e.g. outputs of an equivariant processor written into ``x``
    and ``edge_attr``) become working models the same way.
    """
    arch = arch if arch is not None else graph.arch
    if isinstance(arch, list):
        if len(arch) != 1:
            raise ValueError(f"to_model takes one graph, got a batch of {len(arch)}; use to_models")
        arch = arch[0]
    model = arch.build().to(dtype=graph.edge_attr.dtype, device=graph.edge_attr.device)
    weights, biases = _layer_params(graph, arch)
    with torch.no_grad():
        for module, w, b in zip(_parametric(model), weights, biases):
            module.weight.copy_(w)
            if b is not None:
                module.bias.copy_(b)
        if arch.has_norm:
            for m, module in enumerate(_norm_modules(model, arch), start=1):
                if module is None:
                    continue
                rows = graph.node_norm[graph.node_layer == m]
                for k, name in enumerate(("weight", "bias", "running_mean", "running_var")):
                    t = getattr(module, name, None)
                    if t is not None:
                        t.copy_(rows[:, k])
    return model


def to_models(batch: Batch) -> list[nn.Sequential]:
    """One model per graph of a batch."""
    return [to_model(batch.get_example(i)) for i in range(batch.num_graphs)]


def batch_to_stacked(batch: Batch, arch: Architecture | None = None) -> tuple[list[Tensor], list[Tensor | None]]:
    """Inverse of :func:`stacked_to_batch` for a batch of one architecture, vectorised.

    Weights are read through node positions, so permuted or re-ordered graphs
    are handled too.
    """
    archs = batch.arch if isinstance(batch.arch, list) else [batch.arch]
    arch = arch if arch is not None else archs[0]
    if any(a != arch for a in archs):
        raise ValueError("batch_to_stacked needs graphs of one architecture; use to_models for mixed batches")
    B = len(archs)
    n = arch.num_nodes
    gb = batch.batch if "batch" in batch else torch.zeros(batch.num_nodes, dtype=torch.long, device=batch.x.device)
    if batch.num_nodes != B * n:
        raise ValueError(f"batch has {batch.num_nodes} nodes, expected {B}x{n} for this architecture")
    src, dst = batch.edge_index
    g = gb[dst]
    weights, biases = [], []
    for m, spec in enumerate(arch.layers, start=1):
        sel = (batch.edge_layer == m) & (batch.edge_type == EDGE_FORWARD)
        w = batch.edge_attr.new_zeros(B, spec.out_features, spec.in_features, spec.taps)
        w[g[sel], batch.node_pos[dst[sel]], batch.node_pos[src[sel]]] = batch.edge_attr[sel, : spec.taps]
        weights.append(w.reshape(B, *spec.weight_shape))
        biases.append(batch.x[batch.node_layer == m, 0].reshape(B, spec.out_features) if spec.bias else None)
    return weights, biases


def pad_taps(graph: Data, taps: int) -> Data:
    """Zero-pad edge features (and mask) to ``taps``, so CNNs of different kernels batch."""
    K = graph.edge_attr.size(-1)
    if taps < K:
        raise ValueError(f"cannot pad {K} taps down to {taps}")
    out = graph.clone()
    out.edge_attr = torch.nn.functional.pad(graph.edge_attr, (0, taps - K))
    out.edge_mask = torch.nn.functional.pad(graph.edge_mask, (0, taps - K), value=False)
    return out
