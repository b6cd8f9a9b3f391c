"""Models <-> neural graphs, exactly.

:func:`to_graph` converts an ``nn.Sequential`` (or a state dict), :func:`stacked_to_batch` B networks of one
architecture at once; :func:`to_model` / :func:`to_models` / :func:`batch_to_stacked` read them back, bit-exact.
The format itself (fields, levels, node and edge kinds, :class:`NeuralGraph`) is :mod:`neuralgraph.schema`,
re-exported here.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch, Data

from .architecture import Architecture, leaf_modules
from .batching import uniform_batch
from .deprecation import forward_moved, renamed_keywords, warn_renamed
from .schema import (EDGE_FORWARD, EDGE_RESIDUAL, EDGE_REVERSE, IDENTITY_NORM, NODE_HIDDEN, NODE_INPUT, NODE_OUTPUT,
                     STRUCTURE_KEYS, NeuralGraph, batch_vector, num_graphs)

__all__ = [
    "NODE_INPUT", "NODE_HIDDEN", "NODE_OUTPUT", "EDGE_FORWARD", "EDGE_REVERSE", "EDGE_RESIDUAL",
    "STRUCTURE_KEYS",
    "NeuralGraph", "ModelState", "to_graph", "to_model", "to_models",
    "graph_from_params", "stacked_to_batch", "batch_to_stacked", "pad_edge_features", "IDENTITY_NORM",
    "read_params", "parameter_shapes", "group_graphs", "group_architectures", "batch_to_stacked_groups",
    "batch_vector", "num_graphs", "graph_archs",
]

#: Names renamed to explain themselves (kept for one release): ``taps`` is the edge-feature width
#: (``edge_dim``), a "parameter layout" is the layer kinds and shapes that decide what stacks together.
__getattr__ = forward_moved(__name__, {
    "pad_taps": "neuralgraph.graph:pad_edge_features",
    "parameter_layout": "neuralgraph.graph:parameter_shapes",
    "group_by_layout": "neuralgraph.graph:group_graphs",
    "stacked_by_layout": "neuralgraph.graph:batch_to_stacked_groups",
    "graph_index": "neuralgraph.schema:batch_vector",
})


@dataclass(frozen=True)
class ModelState:
    """What besides its parameters decides what a model computes.

    Args:
        training: the model's mode (``model.training``); ``False`` (eval) for
            graphs built from parameters alone.
        flipped: positions (in :func:`~neuralgraph.architecture.leaf_modules`
            order) of modules whose mode differs from ``training``, e.g. a
            BatchNorm frozen in eval mode while the model trains.
        batches_tracked: per parametric layer, ``num_batches_tracked`` of the
            BatchNorm after it (0 where there is none); it weights the running
            statistics when ``momentum=None``.
    """

    training: bool = False
    flipped: tuple[int, ...] = ()
    batches_tracked: tuple[int, ...] = ()

    @staticmethod
    def of(model: nn.Module) -> "ModelState":
        """The state of a supported ``nn.Sequential``."""
        leaves = [m for _, m in leaf_modules(model)]
        counts = tuple(_batches_tracked(norm) for _, norm in _layer_modules(model))
        return ModelState(
            training=bool(model.training),
            flipped=tuple(i for i, m in enumerate(leaves) if m.training != model.training),
            batches_tracked=counts if any(counts) else (),
        )

    def apply(self, model: nn.Module) -> None:
        """Put ``model`` (built from the same architecture) in this state."""
        model.train(self.training)
        leaves = [m for _, m in leaf_modules(model)]
        if any(not 0 <= i < len(leaves) for i in self.flipped):
            raise ValueError(f"model_state.flipped {self.flipped} names modules outside the {len(leaves)} of the model")
        for i in self.flipped:
            leaves[i].train(not self.training)
        norms = [norm for _, norm in _layer_modules(model)]
        if self.batches_tracked and len(self.batches_tracked) != len(norms):
            raise ValueError(f"model_state.batches_tracked has {len(self.batches_tracked)} entries, "
                             f"the architecture {len(norms)} layers")
        for norm, count in zip(norms, self.batches_tracked):
            if getattr(norm, "num_batches_tracked", None) is not None:
                norm.num_batches_tracked.fill_(count)


def _batches_tracked(norm: nn.Module | None) -> int:
    t = getattr(norm, "num_batches_tracked", None)
    return 0 if t is None else int(t)


def _layer_modules(model: nn.Module) -> list[tuple[nn.Module, nn.Module | None]]:
    """(parametric layer, normalisation after it or None) in the positional order of ``leaf_modules``."""
    out: list[list] = []
    for _, module in leaf_modules(model):
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            out.append([module, None])
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)) and out:
            out[-1][1] = module
    return [(layer, norm) for layer, norm in out]


# ----------------------------------------------------------------------------
# structure templates (shared by the single-graph and the stacked paths)
# ----------------------------------------------------------------------------

def _structure(arch: Architecture, device=None) -> dict[str, Tensor]:
    """Structure fields of one graph, each written once into its final tensor (no per-layer temporaries)."""
    widths, M = arch.widths, arch.num_layers
    starts = [0]
    for w in widths[:-1]:
        starts.append(starts[-1] + w)
    N, E = arch.num_nodes, arch.num_edges
    long = dict(dtype=torch.long, device=device)
    node_layer = torch.repeat_interleave(torch.arange(M + 1, **long), torch.tensor(widths, **long))
    node_pos = torch.cat([torch.arange(w, **long) for w in widths])
    node_type = torch.full((N,), NODE_HIDDEN, **long)
    node_type[: widths[0]] = NODE_INPUT
    node_type[starts[M]:] = NODE_OUTPUT
    acts = torch.tensor([0] + [l.activation_id for l in arch.layers], **long)
    edge_index = torch.empty(2, E, **long)
    edge_layer = torch.empty(E, **long)
    edge_type = torch.full((E,), EDGE_FORWARD, **long)
    e = 0
    for m, layer in enumerate(arch.layers, start=1):
        d_in, d_out = layer.in_features, layer.out_features
        n = d_in * d_out
        # W_m in row-major order: target i repeats d_in times, source j cycles
        edge_index[1, e:e + n].view(d_out, d_in).copy_((starts[m] + torch.arange(d_out, **long)).unsqueeze(1))
        edge_index[0, e:e + n].view(d_out, d_in).copy_((starts[m - 1] + torch.arange(d_in, **long)).unsqueeze(0))
        edge_layer[e:e + n] = m
        e += n
    for start, end, _ in arch.residuals:
        d = widths[start]
        edge_index[0, e:e + d] = starts[start] + torch.arange(d, **long)
        edge_index[1, e:e + d] = starts[end] + torch.arange(d, **long)
        edge_layer[e:e + d] = end
        edge_type[e:e + d] = EDGE_RESIDUAL
        e += d
    return dict(edge_index=edge_index, node_layer=node_layer, node_pos=node_pos, node_type=node_type,
                node_act=acts[node_layer], edge_layer=edge_layer, edge_type=edge_type)


def _edge_mask(arch: Architecture, edge_dim: int, device=None) -> Tensor:
    mask = torch.empty(arch.num_edges, edge_dim, dtype=torch.bool, device=device)
    real = lambda k: torch.arange(edge_dim, device=device) < k
    e = 0
    for l in arch.layers:
        n = l.in_features * l.out_features
        mask[e:e + n] = real(l.weights_per_edge)
        e += n
    mask[e:] = real(1)  # residual edges: one weight
    return mask


def _check_edge_dim(arch: Architecture, edge_dim: int | None) -> int:
    need = arch.edge_dim
    if edge_dim is None:
        return need
    _check_edge_dim_value(edge_dim)
    if edge_dim < need:
        raise ValueError(f"edge_dim={edge_dim} is smaller than the largest kernel ({need} weights per edge)")
    return edge_dim


def _check_edge_dim_value(edge_dim) -> None:
    if isinstance(edge_dim, bool) or not isinstance(edge_dim, int) or edge_dim < 1:
        raise ValueError(f"edge_dim must be a positive integer (edge features, one per kernel weight), "
                         f"got {edge_dim!r}")


# ----------------------------------------------------------------------------
# model -> graph
# ----------------------------------------------------------------------------

@renamed_keywords(taps="edge_dim")
def to_graph(
    model: nn.Module | Mapping[str, Tensor],
    arch: Architecture | None = None,
    *,
    edge_dim: int | None = None,
) -> NeuralGraph:
    """Convert an ``nn.Sequential`` (or a state dict plus ``arch``) to a :class:`NeuralGraph`.

    ``edge_dim`` is the width ``K`` of ``edge_attr``: a conv kernel's ``kh * kw`` weights are
    zero-padded to it, so that graphs of different CNNs batch together (default: the
    largest kernel of this model, :attr:`Architecture.edge_dim`).
    The graph keeps the model's :class:`ModelState` (train/eval mode and
    BatchNorm step counters); a state dict gives an eval-mode graph.
    Unsupported modules, shape mismatches, non-float, mixed-dtype or non-finite
    parameters raise ``ValueError`` naming the module.
    """
    if isinstance(model, Mapping):
        if arch is None:
            raise ValueError("converting a state dict needs arch=Architecture(...)")
        module = arch.build()
        try:
            module.load_state_dict(model, strict=True)
        except RuntimeError as e:
            raise ValueError(f"state dict does not match the architecture: {e}") from None
        model = module.eval()  # trained weights: eval mode, as documented
    if arch is not None and not isinstance(arch, Architecture):
        raise ValueError(f"arch must be an Architecture, got {type(arch).__name__}")
    if edge_dim is not None:
        _check_edge_dim_value(edge_dim)
    found = Architecture.from_module(model)
    if arch is not None and arch != found:
        raise ValueError("model does not match the given architecture")
    modules = _layer_modules(model)
    norms = [_norm_rows(norm, layer.weight.dtype) if norm is not None else None for layer, norm in modules]
    return graph_from_params(
        [layer.weight.detach() for layer, _ in modules],
        [None if layer.bias is None else layer.bias.detach() for layer, _ in modules],
        found,
        edge_dim=edge_dim,
        norms=norms if found.has_norm else None,
        state=ModelState.of(model),
    )


def _norm_rows(module: nn.Module, dtype: torch.dtype) -> Tensor:
    """``[n, 4]`` (weight, bias, running_mean, running_var) of a norm module, identity where absent."""
    n = module.weight.numel() if getattr(module, "weight", None) is not None else (
        module.num_features if hasattr(module, "num_features") else module.normalized_shape[0])
    cols = []
    for name, default in zip(("weight", "bias", "running_mean", "running_var"), IDENTITY_NORM):
        t = getattr(module, name, None)
        cols.append(t.detach() if t is not None else torch.full((n,), default, dtype=dtype, device=_module_device(module)))
    return torch.stack(cols, 1)


def _module_device(module: nn.Module) -> torch.device:
    t = next(iter([*module.parameters(), *module.buffers()]), None)
    return t.device if t is not None else torch.device("cpu")


@renamed_keywords(taps="edge_dim")
def graph_from_params(
    weights: Sequence[Tensor],
    biases: Sequence[Tensor | None],
    arch: Architecture,
    *,
    edge_dim: int | None = None,
    norms: Sequence[Tensor | None] | None = None,
    state: ModelState | None = None,
) -> NeuralGraph:
    """One graph from per-layer weights ``[out, in, *kernel]`` and biases ``[out]``.

    ``norms[m]`` (``[out, 4]``) holds the normalisation parameters after layer m, if any.
    ``state`` is the :class:`ModelState` to rebuild with (default: eval mode).
    """
    weights, biases, norms = _as_layer_lists(arch, weights, biases, norms)
    add = lambda t: None if t is None else t.unsqueeze(0)
    fields = _fields([add(w) for w in weights], [add(b) for b in biases], arch, edge_dim,
                     None if norms is None else [add(n) for n in norms])
    g = NeuralGraph(**fields)
    g.arch = arch
    g.model_state = _check_state(state)
    return g


def _check_state(state: ModelState | None) -> ModelState:
    if state is None:
        return ModelState()
    if not isinstance(state, ModelState):
        raise ValueError(f"state must be a ModelState, got {type(state).__name__}")
    return state


def _as_layer_lists(arch, weights, biases, norms):
    """Check the per-layer containers (not their shapes): lists of tensors, one per layer."""
    if not isinstance(arch, Architecture):
        raise ValueError(f"arch must be an Architecture, got {type(arch).__name__}")
    for name, seq, optional in (("weights", weights, False), ("biases", biases, True), ("norms", norms, True)):
        if seq is None and name == "norms":
            continue
        if isinstance(seq, (Tensor, str, bytes)) or not isinstance(seq, Sequence):
            raise ValueError(f"{name} must be a list with one tensor per layer ({arch.num_layers}), "
                             f"got {type(seq).__name__}")
        for m, t in enumerate(seq, start=1):
            if not (isinstance(t, Tensor) or (optional and t is None)):
                raise ValueError(f"{name}[{m - 1}] (layer {m}) must be a torch.Tensor, got {type(t).__name__}")
    if len(weights) != arch.num_layers or len(biases) != arch.num_layers:
        raise ValueError(f"expected {arch.num_layers} weight and bias tensors, "
                         f"got {len(weights)} and {len(biases)}")
    return list(weights), list(biases), None if norms is None else list(norms)


@renamed_keywords(taps="edge_dim")
def stacked_to_batch(
    weights: Sequence[Tensor],
    biases: Sequence[Tensor | None],
    arch: Architecture,
    *,
    edge_dim: int | None = None,
    norms: Sequence[Tensor | None] | None = None,
    state: ModelState | None = None,
) -> Batch:
    """B networks of one architecture -> a PyG ``Batch`` of B graphs, without a per-network loop.

    ``weights[m]`` is ``[B, out, in, *kernel]`` and ``biases[m]`` is ``[B, out]``
    (``None`` for a layer without bias). This is the fast path for INR datasets,
    where tens of thousands of networks share one architecture. For
    architectures with normalisation, ``norms[m]`` is ``[B, out, 4]`` (see ``node_norm``).
    All tensors must share one dtype and device. Every network gets ``state``
    (default: eval mode).
    """
    weights, biases, norms = _as_layer_lists(arch, weights, biases, norms)
    state = _check_state(state)
    fields = _fields(weights, biases, arch, edge_dim, norms)
    return _batch(fields, arch, weights[0].shape[0], state)


def _fields(weights: list[Tensor], biases: list[Tensor | None], arch: Architecture, edge_dim: int | None,
            norms: list[Tensor | None] | None) -> dict[str, Tensor]:
    """All tensor fields of B graphs of one architecture, each allocated once at its final size."""
    B = weights[0].shape[0]
    K = _check_edge_dim(arch, edge_dim)
    dtype, device = weights[0].dtype, weights[0].device
    if not dtype.is_floating_point:
        raise ValueError(f"weights must be floating point, got {dtype}")
    if device.type == "meta":
        raise ValueError("weights are on the meta device (no values); materialise them first")
    N, E = arch.num_nodes, arch.num_edges
    edge_attr = torch.empty(B, E, K, dtype=dtype, device=device)
    x = torch.zeros(B, N, dtype=dtype, device=device)
    e, node = 0, arch.widths[0]
    for m, (layer, w, b) in enumerate(zip(arch.layers, weights, biases), start=1):
        want = (B, *layer.weight_shape)
        if tuple(w.shape) != want:
            raise ValueError(f"layer {m} ({layer.kind}): weight has shape {tuple(w.shape)}, expected {want}")
        _same_kind(w, dtype, device, f"layer {m} ({layer.kind}): weight")
        n = layer.out_features * layer.in_features
        edge_attr[:, e:e + n, : layer.weights_per_edge] = w.reshape(B, n, layer.weights_per_edge)
        edge_attr[:, e:e + n, layer.weights_per_edge:] = 0
        e += n
        if layer.bias:
            if b is None or tuple(b.shape) != (B, layer.out_features):
                got = None if b is None else tuple(b.shape)
                raise ValueError(f"layer {m} ({layer.kind}): bias has shape {got}, expected {(B, layer.out_features)}")
            _same_kind(b, dtype, device, f"layer {m} ({layer.kind}): bias")
            x[:, node:node + layer.out_features] = b
        elif b is not None:
            raise ValueError(f"layer {m} ({layer.kind}) has no bias in the architecture but one was given")
        node += layer.out_features
    edge_attr[:, e:] = 0
    edge_attr[:, e:, 0] = 1.0  # residual skips: constant weight 1
    if not torch.isfinite(x).all() or not torch.isfinite(edge_attr).all():
        raise ValueError("parameters contain NaN or inf")
    s = _structure(arch, device)
    fields = dict(x=x.view(-1, 1), edge_index=s.pop("edge_index"), edge_attr=edge_attr.view(-1, K),
                  edge_mask=_edge_mask(arch, K, device), node_norm=_stack_norms(norms, arch, B, dtype, device), **s)
    if B != 1:
        offsets = torch.arange(B, device=device) * N
        fields["edge_index"] = (fields["edge_index"].unsqueeze(1) + offsets.view(1, B, 1)).reshape(2, -1)
        for k in ("edge_mask", *s):
            v = fields[k]
            fields[k] = v.repeat(B) if v.dim() == 1 else v.repeat(B, 1)
    return fields


def _same_kind(t: Tensor, dtype: torch.dtype, device: torch.device, what: str) -> None:
    if t.dtype != dtype:
        raise ValueError(f"{what} is {t.dtype} but layer 1's weight is {dtype}; "
                         "pass all parameters in one dtype (e.g. .float())")
    if t.device != device:
        raise ValueError(f"{what} is on {t.device} but layer 1's weight is on {device}; move them to one device")


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
            _same_kind(n, dtype, device, f"layer {m}: norms[{m - 1}]")
            rows.append(n)
    out = torch.cat(rows, 1).reshape(-1, 4)
    if not torch.isfinite(out).all():
        raise ValueError("normalisation parameters contain NaN or inf")
    return out


def _batch(fields: dict[str, Tensor], arch: Architecture, B: int, state: ModelState) -> Batch:
    """Wrap the fields of B graphs of one architecture as a PyG ``Batch`` (:func:`~neuralgraph.batching.uniform_batch`)."""
    return uniform_batch({**fields, "arch": [arch] * B, "model_state": [state] * B}, B, arch.num_nodes,
                         arch.num_edges)


# ----------------------------------------------------------------------------
# graph -> model
# ----------------------------------------------------------------------------

def _check_field_shapes(graph: Data, arch: Architecture, B: int, what: str) -> None:
    """Every field ``to_model``/``batch_to_stacked`` reads has the size the architecture implies."""
    N, E = B * arch.num_nodes, B * arch.num_edges
    need = {"x": (N, None), "node_layer": (N,), "node_pos": (N,), "edge_index": (2, E), "edge_attr": (E, None),
            "edge_layer": (E,), "edge_type": (E,)}
    if arch.has_norm:
        need["node_norm"] = (N, 4)
    for key, shape in need.items():
        value = getattr(graph, key, None)
        if not isinstance(value, Tensor):
            raise ValueError(f"{what}: the graph has no {key} tensor; it is not a neural graph")
        if value.dim() != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape)):
            want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
            raise ValueError(f"{what}: {key} has shape {list(value.shape)}, expected {want} for "
                             f"{B} x architecture {list(arch.widths)}")
    dtype = graph.edge_attr.dtype
    for key in ("x", "node_norm") if arch.has_norm else ("x",):
        if graph[key].dtype != dtype:
            raise ValueError(f"{what}: {key} is {graph[key].dtype} but edge_attr is {dtype}; use one dtype")
    if graph.x.size(1) < 1:
        raise ValueError(f"{what}: x has no feature column (the bias)")
    if E:
        lo, hi = graph.edge_index.aminmax()
        if int(lo) < 0 or int(hi) >= N:
            raise ValueError(f"{what}: edge_index has node ids outside 0..{N - 1}")


def graph_archs(graph: Data, what: str = "graph_archs") -> list[Architecture]:
    """The architecture of every graph of a neural graph or of a PyG batch of them.

    :func:`to_graph` and :func:`stacked_to_batch` store each graph's
    :class:`~neuralgraph.architecture.Architecture` as ``graph.arch``; PyG collates
    them into a list, one entry per graph.

    Args:
        graph: a neural graph or a batch of them.
        what: the caller's name, for the error messages.

    Returns:
        ``[num_graphs]`` architectures, in graph order.

    Raises:
        ValueError: no ``arch``, entries that are not ``Architecture`` objects, or a count
            other than the number of graphs.
    """
    if "arch" not in graph:
        raise ValueError(f"{what}: the graph has no arch (its Architecture); convert with to_graph / "
                         "stacked_to_batch, which store it")
    archs = list(graph.arch) if isinstance(graph.arch, (list, tuple)) else [graph.arch]
    if not all(isinstance(a, Architecture) for a in archs):
        raise ValueError(f"{what}: graph.arch must hold Architecture objects")
    B = num_graphs(graph)
    if len(archs) != B:
        raise ValueError(f"{what}: the batch has {B} graphs but {len(archs)} architectures")
    return archs


def _graph_arch(graph: Data, arch: Architecture | None, what: str) -> list[Architecture]:
    """``graph_archs``, or ``[arch]`` for a graph without one."""
    if arch is not None and not isinstance(arch, Architecture):
        raise ValueError(f"{what}: arch must be an Architecture, got {type(arch).__name__}")
    if "arch" not in graph:
        if arch is None:
            raise ValueError(f"{what}: the graph has no arch (its Architecture); pass arch=... or convert "
                             "with to_graph / stacked_to_batch, which store it")
        return [arch]
    return graph_archs(graph, what)


def _check_edges(graph: Data, arch: Architecture) -> None:
    """Per layer: the edge and neuron counts, weights per edge and endpoints the architecture implies."""
    pos = graph.node_pos
    src, dst = graph.edge_index
    for m, spec in enumerate(arch.layers, start=1):
        sel = (graph.edge_layer == m) & (graph.edge_type == EDGE_FORWARD)
        count = int(sel.sum())
        if count != spec.in_features * spec.out_features:
            raise ValueError(f"layer {m} ({spec.kind}): graph has {count} edges, expected "
                             f"{spec.out_features}x{spec.in_features}")
        if graph.edge_attr.size(-1) < spec.weights_per_edge:
            raise ValueError(f"layer {m}: edge features have {graph.edge_attr.size(-1)} columns, kernel needs "
                             f"{spec.weights_per_edge}")
        _check_layer_edges(graph, m, spec, sel, pos[dst[sel]], pos[src[sel]])
        neurons = int((graph.node_layer == m).sum())
        if neurons != spec.out_features:
            raise ValueError(f"layer {m}: graph has {neurons} neurons, expected {spec.out_features}")


def read_params(graph: Data, arch: Architecture, rows: Tensor, count: int, *, raw: bool = False,
                norms: bool = False) -> tuple[list[Tensor], list[Tensor | None], list[Tensor | None]]:
    """The one reader from neural graphs to parameters: graph ``g`` goes to row ``rows[g]``.

    Reads the graphs with ``rows[g] >= 0`` (all of ``arch``'s :func:`parameter_shapes`)
    through ``edge_index`` and ``node_pos``, so permuted and re-ordered graphs read
    right; vectorised over graphs. :func:`batch_to_stacked`, :func:`to_model`,
    :func:`batch_to_stacked_groups` and the probes of NG-GNN/NG-T all read through it.

    Args:
        graph: a neural graph or a PyG batch of them.
        arch: the architecture (parameter shapes) of the graphs read.
        rows: ``[num_graphs]`` row of each graph in the stacks, ``-1`` for graphs not read.
        count: number of rows.
        raw: read ``x_raw`` / ``edge_attr_raw`` where present (the real parameters of a
            standardised dataset batch) instead of ``x`` / ``edge_attr``.
        norms: also read ``node_norm`` of the layers with a normalisation.

    Shapes: ``weights[m] [count, *weight_shape]``, ``biases[m] [count, out]`` (``None`` for a
    layer without bias), ``norms[m] [count, out, 4]`` (``None`` without a normalisation, or
    when ``norms`` is False).
    """
    node_rows = rows[batch_vector(graph)]
    pos = graph.node_pos
    src, dst = graph.edge_index
    edge_rows = node_rows[dst]
    x = graph.x_raw if raw and "x_raw" in graph else graph.x
    w_all = graph.edge_attr_raw if raw and "edge_attr_raw" in graph else graph.edge_attr
    if x.dim() != 2 or x.size(1) < 1:
        raise ValueError(f"x has shape {list(x.shape)}: a neural graph's x is [N, 1+] (the bias first)")
    weights, biases, norm_rows = [], [], []
    for m, spec in enumerate(arch.layers, start=1):
        K = spec.weights_per_edge
        if w_all.dim() != 2 or w_all.size(-1) < K:
            raise ValueError(f"layer {m} ({spec.kind}): edge_attr has {w_all.size(-1) if w_all.dim() == 2 else 0} "
                             f"columns, the layer needs {K} (its kernel's weights); edge_attr is [E, edge_dim]")
        sel = ((graph.edge_layer == m) & (graph.edge_type == EDGE_FORWARD) & (edge_rows >= 0)).nonzero().view(-1)
        if sel.numel() != count * spec.in_features * spec.out_features:
            raise ValueError(f"layer {m} ({spec.kind}): {count} graph(s) have {sel.numel()} edges, expected "
                             f"{count}x{spec.out_features}x{spec.in_features}")
        w = w_all.new_zeros(count, spec.out_features, spec.in_features, K)
        w = w.index_put((edge_rows[sel], pos[dst[sel]], pos[src[sel]]), w_all[sel, :K])
        weights.append(w.reshape(count, *spec.weight_shape))
        nodes = ((graph.node_layer == m) & (node_rows >= 0)).nonzero().view(-1)
        at = (node_rows[nodes], pos[nodes])
        biases.append(x.new_zeros(count, spec.out_features).index_put(at, x[nodes, 0]) if spec.bias else None)
        if norms and spec.norm is not None:
            rows_ = graph.node_norm[nodes].to(w_all.dtype)
            norm_rows.append(rows_.new_zeros(count, spec.out_features, 4).index_put(at, rows_))
        else:
            norm_rows.append(None)
    return weights, biases, norm_rows


def _check_layer_edges(graph: Data, m: int, spec, sel: Tensor, i: Tensor, j: Tensor) -> None:
    """Layer m's edges go from layer m-1 to layer m and hit every (out, in) pair exactly once."""
    src, dst = graph.edge_index[:, sel]
    if not bool((graph.node_layer[dst] == m).all()) or not bool((graph.node_layer[src] == m - 1).all()):
        raise ValueError(f"layer {m}: some edges do not go from layer {m - 1} to layer {m} (edited edge_index?)")
    if not (bool((i >= 0).all()) and bool((i < spec.out_features).all())
            and bool((j >= 0).all()) and bool((j < spec.in_features).all())):
        raise ValueError(f"layer {m}: node_pos outside the layer's {spec.out_features}x{spec.in_features} neurons")
    hit = torch.zeros(spec.out_features * spec.in_features, dtype=torch.bool, device=i.device)
    hit[i * spec.in_features + j] = True
    if not bool(hit.all()):
        raise ValueError(f"layer {m}: some (out, in) weights have no edge and others several (edited edge_index?)")


def to_model(graph: Data, arch: Architecture | None = None) -> nn.Sequential:
    """Rebuild the ``nn.Sequential`` a single graph describes (bit-exact round trip).

    The model is in the graph's :class:`ModelState` (the source model's mode,
    eval for graphs built from parameters), so it computes the same function.
    Edited graphs (e.g. outputs of an equivariant processor written into ``x``
    and ``edge_attr``) become working models the same way; fields edited to a
    shape the architecture does not allow raise ``ValueError``, and so does a
    graph of standardised parameters (``INRDataset(normalize=True)``, which
    keeps the real ones as ``x_raw`` / ``edge_attr_raw``).

    **Biases of bias-free layers.** An edit never gets lost: a layer built
    without a bias (``Linear(..., bias=False)``, a conv before BatchNorm) whose
    neurons carry a non-zero ``x`` (the equivariant heads write every ``x``) is
    rebuilt *with* a bias holding those values; if they are all exactly zero it
    is rebuilt bias-free, as the source was. With an explicit ``arch`` that says
    the layer has no bias, such a graph is refused (``ValueError`` naming the
    layer) instead.

    Args:
        graph: one neural graph (a batch: :func:`to_models`).
        arch: the architecture to rebuild (default: ``graph.arch``).
    """
    archs = _graph_arch(graph, arch, "to_model")
    if len(archs) != 1:
        raise ValueError(f"to_model takes one graph, got a batch of {len(archs)}; use to_models")
    arch = _with_edited_biases(graph, arch, explicit=True) if arch is not None else \
        _with_edited_biases(graph, archs[0], explicit=False)
    if "x_raw" in graph or "edge_attr_raw" in graph:
        raise ValueError("to_model: this graph's x / edge_attr are standardised parameters (it carries x_raw / "
                         "edge_attr_raw, from INRDataset(normalize=True)), not the network's weights; rebuild from "
                         "dataset.batch(indices, normalize=False) or from the raw parameters")
    _check_field_shapes(graph, arch, 1, "to_model")
    state = _graph_state(graph)
    model = arch.build().to(dtype=graph.edge_attr.dtype, device=graph.edge_attr.device)
    _check_edges(graph, arch)
    one = torch.zeros(num_graphs(graph), dtype=torch.long, device=graph.x.device)
    weights, biases, norms = read_params(graph, arch, one, 1, norms=True)
    with torch.no_grad():
        for (module, norm), w, b, rows in zip(_layer_modules(model), weights, biases, norms):
            module.weight.copy_(w[0])
            if b is not None:
                module.bias.copy_(b[0])
            if norm is None:
                continue
            for k, name in enumerate(("weight", "bias", "running_mean", "running_var")):
                t = getattr(norm, name, None)
                if t is not None:
                    t.copy_(rows[0, :, k])
        state.apply(model)
    return model


def _with_edited_biases(graph: Data, arch: Architecture, explicit: bool) -> Architecture:
    """``arch`` with a bias on every bias-free layer whose neurons carry a non-zero ``x`` (an edit).

    With ``explicit`` (the caller gave ``arch``) such a layer is refused instead.
    """
    x, layer = getattr(graph, "x", None), getattr(graph, "node_layer", None)
    if not isinstance(x, Tensor) or not isinstance(layer, Tensor) or x.dim() != 2 or x.size(1) < 1 \
            or layer.shape != x.shape[:1]:
        return arch                                   # _check_field_shapes names what is wrong
    edited = [m for m, spec in enumerate(arch.layers, start=1)
              if not spec.bias and bool((x[layer == m, 0] != 0).any())]
    if not edited:
        return arch
    if explicit:
        m = edited[0]
        raise ValueError(f"to_model: layer {m} ({arch.layers[m - 1].kind}) has no bias in arch, but the graph's x "
                         f"holds non-zero biases for its neurons (an edit that would be lost); pass an arch with "
                         f"bias=True for it, or leave arch out to rebuild the layer with a bias")
    return replace(arch, layers=tuple(replace(l, bias=True) if m in edited else l
                                      for m, l in enumerate(arch.layers, start=1)))


def _graph_state(graph: Data) -> ModelState:
    state = getattr(graph, "model_state", None) if "model_state" in graph else None
    if isinstance(state, list):
        state = state[0] if len(state) == 1 else None
    return _check_state(state)


def to_models(batch: Data) -> list[nn.Sequential]:
    """One model per graph of a batch (a single graph gives a one-element list)."""
    if not isinstance(batch, Batch):
        return [to_model(batch)]
    return [to_model(batch.get_example(i)) for i in range(batch.num_graphs)]


def parameter_shapes(arch: Architecture) -> tuple:
    """What decides where an architecture's parameters sit: layer kinds, weight shapes, biases, norms,
    residual blocks.

    Architectures with equal parameter shapes (e.g. differing only in activations) stack together.
    """
    return (tuple((l.kind, l.weight_shape, l.bias, l.norm is not None) for l in arch.layers), arch.residuals)


def batch_to_stacked(batch: Batch, arch: Architecture | None = None, *, norms: bool = False):
    """Inverse of :func:`stacked_to_batch` for a batch of one set of parameter shapes, vectorised.

    Weights are read through node positions (:func:`read_params`), so permuted or
    re-ordered graphs are handled too. A single graph gives stacks of one. The graphs
    may differ in what does not change where parameters sit (activations, dropout
    rates), not in layer kinds, shapes, biases, normalisations or residual blocks; a
    mixed batch reads group by group with :func:`batch_to_stacked_groups`.

    Returns ``(weights, biases)``, or ``(weights, biases, norms)`` with ``norms=True``
    (shapes in :func:`read_params`).
    """
    archs = _graph_arch(batch, arch, "batch_to_stacked")
    arch = arch if arch is not None else archs[0]
    if any(a != arch and parameter_shapes(a) != parameter_shapes(arch) for a in archs):
        raise ValueError("batch_to_stacked needs graphs of one set of parameter shapes (layer kinds and shapes); "
                         "use batch_to_stacked_groups or to_models for mixed batches")
    B = len(archs)
    n = arch.num_nodes
    if batch.num_nodes != B * n:
        raise ValueError(f"batch has {batch.num_nodes} nodes, expected {B}x{n} for this architecture")
    _check_field_shapes(batch, arch, B, "batch_to_stacked")
    weights, biases, norm_rows = read_params(batch, arch, torch.arange(B, device=batch.x.device), B, norms=norms)
    return (weights, biases, norm_rows) if norms else (weights, biases)


def _grouping(by: str, who: str) -> str:
    """``by`` checked: ``"shapes"`` or ``"architecture"`` (``"layout"``: the deprecated name of ``"shapes"``)."""
    if by == "layout":
        warn_renamed(f"{who}(by='layout')", "by='shapes'", stacklevel=4)
        return "shapes"
    if by not in ("shapes", "architecture"):
        raise ValueError(f"{who}: by must be 'shapes' or 'architecture', got {by!r}")
    return by


def group_graphs(batch: Data, by: str = "shapes") -> list[tuple[Architecture, Tensor]]:
    """``[(arch, graph ids)]``: the graphs of a (mixed) batch grouped by :func:`parameter_shapes`
    (``by="shapes"``) or by equal :class:`Architecture` (``by="architecture"``: also the same
    activations), in order of first appearance; ``arch`` is the first graph's of each group."""
    by = _grouping(by, "group_graphs")
    return [(a, torch.as_tensor(ids, device=batch.x.device))
            for a, ids in group_architectures(_graph_arch(batch, None, "group_graphs"), by)]


def group_architectures(archs: Sequence[Architecture], by: str = "shapes") -> list[tuple[Architecture, list[int]]]:
    """``[(arch, positions)]``: positions in ``archs`` grouped as :func:`group_graphs` does."""
    by = _grouping(by, "group_architectures")
    first = archs[0]
    if all(a is first for a in archs):                  # one architecture object: no per-graph work
        return [(first, list(range(len(archs))))]
    key = parameter_shapes if by == "shapes" else (lambda a: a)
    groups: dict = {}
    for i, a in enumerate(archs):
        groups.setdefault(key(a), (a, []))[1].append(i)
    return list(groups.values())


def batch_to_stacked_groups(batch: Data, *, by: str = "shapes", raw: bool = False, norms: bool = False):
    """:func:`batch_to_stacked` of a mixed batch, group by group: ``[(arch, graph ids, weights, biases, norms)]``.

    One vectorised :func:`read_params` per group of :func:`group_graphs` (``by``).
    """
    out = []
    G = num_graphs(batch)
    for arch, ids in group_graphs(batch, _grouping(by, "batch_to_stacked_groups")):
        rows = torch.full((G,), -1, dtype=torch.long, device=batch.x.device)
        rows[ids] = torch.arange(ids.numel(), device=batch.x.device)
        out.append((arch, ids, *read_params(batch, arch, rows, ids.numel(), raw=raw, norms=norms)))
    return out


@renamed_keywords(taps="edge_dim")
def pad_edge_features(graph: Data, edge_dim: int) -> Data:
    """Zero-pad ``edge_attr`` (and ``edge_mask``) to ``edge_dim`` columns, so graphs of CNNs with
    different kernels batch together.

    Shapes: ``edge_attr [E, K]`` -> ``[E, edge_dim]`` (``edge_dim >= K``).
    """
    _check_edge_dim_value(edge_dim)
    K = graph.edge_attr.size(-1)
    if edge_dim < K:
        raise ValueError(f"cannot pad {K} edge features down to {edge_dim}")
    out = graph.clone()
    out.edge_attr = torch.nn.functional.pad(graph.edge_attr, (0, edge_dim - K))
    out.edge_mask = torch.nn.functional.pad(graph.edge_mask, (0, edge_dim - K), value=False)
    return out
