"""Interoperability: other libraries' weight layouts, order-matched state dicts, mixed batches, safe loading.

* :func:`from_weights_biases` - stacked per-layer weights/biases in the layout of
  DWSNets (``[B, in, out, 1]`` / ``[B, out, 1]``), NFN (``[B, 1, out, in]`` /
  ``[B, 1, out]``, conv ``[B, 1, out, in, kh, kw]``) or torch (``[B, out, in, *kernel]`` /
  ``[B, out]``) -> a PyG batch through :func:`neuralgraph.stacked_to_batch`;
  :func:`to_weights_biases` is its inverse. The activation (or the whole architecture)
  must be given: weights do not say it.
* :func:`from_state_dict` / :func:`rename_state_dict` - state dicts whose key
  names differ from the architecture's (DWSNets' INRs use ``seq.0.weight``, ...),
  matched by position and shape.
* :func:`batch_models` - a batch of graphs from a list of ``nn.Sequential`` models
  of any architectures (edge features padded to a common width, ``edge_dim``).
* :func:`register_safe_globals` - run at ``import neuralgraph``: lets plain
  ``torch.load(path)`` (``weights_only=True``) read saved graphs, batches,
  architectures and dataset files.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

from .architecture import Architecture, LayerSpec, ModuleSpec, mlp_architecture
from .deprecation import forward_moved, renamed_keywords
from .graph import ModelState, NeuralGraph, graph_archs, pad_edge_features, stacked_to_batch, to_graph

__all__ = ["LAYOUTS", "from_weights_biases", "to_weights_biases", "mlp_from_shapes", "rename_state_dict",
           "from_state_dict", "mlp_state_dict_params", "batch_models", "register_safe_globals"]

#: Names renamed to say what they do (kept for one release).
__getattr__ = forward_moved(__name__, {"state_dict_by_order": "neuralgraph.interop:rename_state_dict",
                                       "to_graph_by_order": "neuralgraph.interop:from_state_dict"})

#: Layouts :func:`from_weights_biases` reads and :func:`to_weights_biases` writes: weight / bias shapes
#: per layer (a conv layer's kernel ``*kernel`` = ``kh, kw`` follows ``in``; DWSNets' layout has none).
LAYOUTS = {
    "dwsnets": ("[B, in, out, 1]", "[B, out, 1]"),
    "nfn": ("[B, 1, out, in, *kernel]", "[B, 1, out]"),
    "torch": ("[B, out, in, *kernel]", "[B, out]"),
}


def _as_list(seq, name: str) -> list[Tensor]:
    if isinstance(seq, (Tensor, str, bytes)) or not isinstance(seq, Sequence) or not seq:
        raise ValueError(f"{name} must be a non-empty list/tuple with one tensor per layer, got {type(seq).__name__}")
    for m, t in enumerate(seq):
        if not isinstance(t, Tensor):
            raise ValueError(f"{name}[{m}] must be a torch.Tensor, got {type(t).__name__}")
    return list(seq)


def _to_torch_layout(weights: list[Tensor], biases: list[Tensor], layout: str) -> tuple[list[Tensor], list[Tensor]]:
    """Per-layer ``[B, out, in, *kernel]`` / ``[B, out]`` views of the given layout (no copies)."""
    want_w, want_b = LAYOUTS[layout]
    W, b = [], []
    for m, (w, x) in enumerate(zip(weights, biases)):
        if layout == "dwsnets":
            ok = w.dim() == 4 and w.shape[-1] == 1 and x.dim() == 3 and x.shape[-1] == 1
            w2, x2 = (w[..., 0].transpose(1, 2), x[..., 0]) if ok else (None, None)
        elif layout == "nfn":
            ok = w.dim() in (4, 5, 6) and x.dim() == 3 and w.shape[1] == 1 and x.shape[1] == 1
            if w.dim() in (4, 5, 6) and x.dim() == 3 and (w.shape[1] != 1 or x.shape[1] != 1):
                raise ValueError(f"layer {m}: nfn weights have {w.shape[1]} / biases {x.shape[1]} channels; "
                                 "a network has C=1 (one value per weight)")
            w2, x2 = (w[:, 0], x[:, 0]) if ok else (None, None)
        else:
            ok = w.dim() in (3, 4, 5) and x.dim() == 2
            w2, x2 = w, x
        if not ok:
            raise ValueError(f"layer {m}: {layout} layout expects weight {want_w} and bias {want_b}, got "
                             f"{list(w.shape)} and {list(x.shape)}")
        W.append(w2)
        b.append(x2)
    return W, b


def mlp_from_shapes(weights: Sequence[Tensor], activation: str, w0: float | None = None) -> Architecture:
    """The MLP :class:`Architecture` of per-layer weights ``[B, out, in]`` (or ``[out, in]``).

    Args:
        weights: one tensor per layer, torch layout.
        activation: between layers (a kind of :data:`neuralgraph.ACTIVATIONS`, e.g. ``"relu"``;
            ``"sine"`` for SIRENs / INRs). Required: shapes do not tell it.
        w0: SIREN frequency, required with ``activation="sine"`` (DWSNets' / neural-graphs' INRs: 30).
    """
    if not isinstance(activation, str):
        raise ValueError(f"activation must be the name of an activation (e.g. 'relu', or 'sine' for SIRENs), "
                         f"got {activation!r}")
    if activation == "sine" and w0 is None:
        raise ValueError("activation='sine' needs w0= (the SIREN frequency: sin(w0 * x); DWSNets' and "
                         "neural-graphs' INRs use 30)")
    widths = [int(weights[0].shape[-1])]
    for m, w in enumerate(weights):
        if w.dim() not in (2, 3):
            raise ValueError(f"layer {m}: weight of shape {list(w.shape)} is not a Linear layer's; pass arch= (the "
                             "architecture of convolutional networks: strides, paddings, pooling) ")
        if int(w.shape[-1]) != widths[-1]:
            raise ValueError(f"layer {m}: weight has {int(w.shape[-1])} inputs but layer {m - 1} has "
                             f"{widths[-1]} outputs")
        widths.append(int(w.shape[-2]))
    return mlp_architecture(widths, activation, w0=30.0 if w0 is None else w0)


def from_weights_biases(
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    layout: str = "torch",
    arch: Architecture | None = None,
    *,
    activation: str | None = None,
    w0: float | None = None,
    state: ModelState | None = None,
) -> Batch:
    """B networks given as stacked per-layer weights and biases in another library's layout -> a PyG batch.

    Args:
        weights: one tensor per layer, ``[B, in, out, 1]`` (``"dwsnets"``), ``[B, 1, out, in]`` /
            conv ``[B, 1, out, in, kh, kw]`` (``"nfn"``, one channel: what nfn's
            ``state_dict_to_tensors`` gives per network, stacked) or ``[B, out, in, *kernel]``
            (``"torch"``). A conv layer's kernel becomes the ``kh * kw`` features of its edges.
        biases: one tensor per layer, ``[B, out, 1]``, ``[B, 1, out]`` or ``[B, out]``.
        layout: ``"dwsnets"``, ``"nfn"`` or ``"torch"`` (see :data:`LAYOUTS`).
        arch: the architecture (required for convolutional networks, whose strides, paddings
            and pooling the shapes do not tell); ``None`` infers an MLP from the shapes with
            ``activation`` between layers.
        activation: the MLP's activation when ``arch`` is ``None``: required, since a wrong one
            changes what the network computes (e.g. ``"relu"``; ``"sine"`` with ``w0=`` for SIRENs).
        w0: SIREN frequency with ``activation="sine"`` (required there).
        state: the graphs' :class:`ModelState` (default: eval mode).

    Shapes:
        output: a ``Batch`` of B :class:`NeuralGraph` (``x`` ``[B*N, 1]``, ``edge_attr`` ``[B*E, K]``),
        identical to ``stacked_to_batch`` of the torch-layout tensors.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    weights, biases = _as_list(weights, "weights"), _as_list(biases, "biases")
    if len(weights) != len(biases):
        raise ValueError(f"got {len(weights)} weight and {len(biases)} bias tensors; need one of each per layer")
    W, b = _to_torch_layout(weights, biases, layout)
    sizes = {int(t.shape[0]) for t in (*W, *b)}
    if len(sizes) != 1:
        raise ValueError(f"weights and biases disagree on the number of networks B: {sorted(sizes)}")
    if arch is None:
        if activation is None:
            raise ValueError("from_weights_biases: pass activation= (e.g. 'relu', or 'sine' with w0= for SIRENs) or "
                             "arch=; weights do not say which activation the network applies, and a wrong one "
                             "changes what it computes")
        arch = mlp_from_shapes(W, activation, w0)
    elif not isinstance(arch, Architecture):
        raise ValueError(f"arch must be an Architecture, got {type(arch).__name__}")
    elif activation is not None or w0 is not None:
        raise ValueError("from_weights_biases: pass either arch= or activation= / w0=, not both (the architecture "
                         "already holds the activations)")
    return stacked_to_batch(W, b, arch, state=state)


def to_weights_biases(batch: Batch, layout: str = "torch", arch: Architecture | None = None
                      ) -> tuple[list[Tensor], list[Tensor]]:
    """The inverse of :func:`from_weights_biases`: a batch of networks of one set of parameter shapes -> stacked
    tensors in another library's layout.

    Args:
        batch: a batch (or one graph) of networks of one set of parameter shapes, e.g. from
            :func:`from_weights_biases`, :func:`~neuralgraph.stacked_to_batch` or a dataset.
        layout: ``"dwsnets"`` (MLPs only), ``"nfn"`` or ``"torch"`` (see :data:`LAYOUTS`).
        arch: read the graphs as this architecture (default: theirs).

    Returns ``(weights, biases)``, one tensor per layer, so that
    ``from_weights_biases(*to_weights_biases(b, layout), layout, arch=...)`` gives ``b`` back
    bit for bit (and the other way round). Raw parameters: a batch normalised by a dataset
    is refused (denormalise it first). Bias-free layers are refused (the layouts have a
    bias per layer).

    Shapes:
        weights: ``[B, in, out, 1]`` / ``[B, 1, out, in, *kernel]`` / ``[B, out, in, *kernel]``;
        biases: ``[B, out, 1]`` / ``[B, 1, out]`` / ``[B, out]``.
    """
    from .graph import batch_to_stacked

    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if "x_raw" in batch:
        raise ValueError("to_weights_biases: the batch holds standardised parameters (a normalised dataset's "
                         "batch); take the raw ones (INRDataset(normalize=False) or dataset.batch(i, normalize="
                         "False))")
    W, b = batch_to_stacked(batch, arch)
    archs = graph_archs(batch, "to_weights_biases") if arch is None else [arch]
    for m, (layer, x) in enumerate(zip(archs[0].layers, b)):
        if x is None:
            raise ValueError(f"to_weights_biases: layer {m} has no bias; the {layout} layout holds one per layer")
        if layout == "dwsnets" and layer.kind != "linear":
            raise ValueError(f"to_weights_biases: layer {m} is a {layer.kind}; the dwsnets layout holds MLPs only "
                             f"(use layout='nfn' or 'torch')")
    if layout == "dwsnets":
        return [w.transpose(1, 2).unsqueeze(-1) for w in W], [x.unsqueeze(-1) for x in b]
    if layout == "nfn":
        return [w.unsqueeze(1) for w in W], [x.unsqueeze(1) for x in b]
    return list(W), list(b)


def rename_state_dict(state_dict: Mapping[str, Tensor], arch: Architecture) -> dict[str, Tensor]:
    """Rename ``state_dict``'s tensors to ``arch``'s keys, matched by position and shape.

    For state dicts of the same network saved under other module names (e.g. DWSNets'
    INRs: ``seq.0.weight``, ``seq.0.bias``, ``seq.1.weight``, ...). The i-th tensor
    must have the shape of the i-th entry of ``arch.build().state_dict()``;
    ``num_batches_tracked`` counters may be absent. Any mismatch raises
    ``ValueError`` naming both keys and shapes.
    """
    if not isinstance(arch, Architecture):
        raise ValueError(f"arch must be an Architecture, got {type(arch).__name__}")
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"state_dict must be a mapping of names to tensors, got {type(state_dict).__name__}")
    ours = arch.build().state_dict()
    given = list(state_dict.items())
    for k, v in given:
        if not isinstance(k, str):
            raise ValueError(f"state_dict key {k!r} is a {type(k).__name__}, not a name (str)")
        if not isinstance(v, Tensor):
            raise ValueError(f"state_dict[{k!r}] is a {type(v).__name__}, not a tensor")
    if not any(k.endswith("num_batches_tracked") for k, _ in given):
        ours = {k: v for k, v in ours.items() if not k.endswith("num_batches_tracked")}
    if len(given) != len(ours):
        raise ValueError(f"state dict has {len(given)} tensors, the architecture {list(arch.widths)} needs "
                         f"{len(ours)} ({', '.join(ours)})")
    out = {}
    for i, ((theirs, v), (key, like)) in enumerate(zip(given, ours.items())):
        if tuple(v.shape) != tuple(like.shape):
            raise ValueError(f"state dict tensor {i} ({theirs!r}) has shape {list(v.shape)}, the architecture's "
                             f"{key!r} has {list(like.shape)}")
        out[key] = v
    return out


@renamed_keywords(taps="edge_dim")
def from_state_dict(state_dict: Mapping[str, Tensor], arch: Architecture, *, edge_dim: int | None = None
                    ) -> NeuralGraph:
    """A neural graph from another library's state dict of the network ``arch`` describes: its tensors
    are matched to ``arch``'s keys by position and shape (:func:`rename_state_dict`), whatever their
    names, then converted by :func:`neuralgraph.to_graph` (which needs ``arch``'s own key names)."""
    return to_graph(rename_state_dict(state_dict, arch), arch, edge_dim=edge_dim)


def mlp_state_dict_params(state_dict: Mapping[str, Tensor], where: str = "state dict"
                          ) -> tuple[list[Tensor], list[Tensor]]:
    """Per-layer ``(weights [out, in], biases [out])`` of an MLP state dict, by key order.

    Keys containing ``weight`` are weights and ``bias`` biases (the DWSNets /
    neural-graphs INR convention); they must alternate in one-to-one order.
    """
    if not isinstance(state_dict, Mapping):
        raise ValueError(f"{where}: expected a state dict (mapping of names to tensors), got "
                         f"{type(state_dict).__name__}")
    weights = [v for k, v in state_dict.items() if "weight" in k]
    biases = [v for k, v in state_dict.items() if "bias" in k]
    if not weights or len(weights) != len(biases):
        raise ValueError(f"{where}: expected one 'bias' per 'weight' tensor, got {len(weights)} weights and "
                         f"{len(biases)} biases (keys {list(state_dict)[:6]})")
    for m, (w, b) in enumerate(zip(weights, biases)):
        if not isinstance(w, Tensor) or not isinstance(b, Tensor) or w.dim() != 2 or b.dim() != 1 \
                or b.shape[0] != w.shape[0]:
            raise ValueError(f"{where}: layer {m} is not a Linear layer (weight {getattr(w, 'shape', w)}, "
                             f"bias {getattr(b, 'shape', b)}); expected [out, in] and [out]")
    return weights, biases


@renamed_keywords(taps="edge_dim")
def batch_models(models: Sequence[nn.Module | NeuralGraph], edge_dim: int | None = None) -> Batch:
    """A PyG batch of the neural graphs of ``models`` (any mix of supported architectures).

    Args:
        models: ``nn.Sequential`` models (MLPs, CNNs, ...) and/or their neural graphs
            (:func:`~neuralgraph.to_graph`); an empty list is refused with a clear message
            (PyG's ``Batch.from_data_list([])`` fails with an ``IndexError``).
        edge_dim: edge-feature width ``K``; default: the largest kernel among the models, so
            Linear and Conv layers of any kernel size batch together.

    Shapes:
        output: ``Batch`` of ``len(models)`` graphs, ``edge_attr`` ``[sum E, K]``; ``batch.arch`` lists the
        architectures, ``to_models(batch)`` rebuilds the models.
    """
    if isinstance(models, (nn.Module, Batch)) or not isinstance(models, Sequence) or not models:
        what = "an empty list" if isinstance(models, Sequence) and not models else type(models).__name__
        raise ValueError(f"batch_models: models must be a non-empty list of nn.Sequential models or neural graphs, "
                         f"got {what}")
    for i, m in enumerate(models):
        if isinstance(m, Batch) or not isinstance(m, (nn.Module, NeuralGraph)):
            raise ValueError(f"models[{i}] is a {type(m).__name__}, not an nn.Module or a neural graph"
                             + (" (pass a batch's graphs: batch.to_data_list())" if isinstance(m, Batch) else ""))
    archs = []
    for i, m in enumerate(models):
        try:
            archs.append(graph_archs(m, f"models[{i}]")[0] if isinstance(m, NeuralGraph)
                         else Architecture.from_module(m))
        except ValueError as e:
            raise ValueError(f"models[{i}]: {e}") from None
    K = max(a.edge_dim for a in archs) if edge_dim is None else edge_dim
    return Batch.from_data_list([pad_edge_features(m, K) if isinstance(m, NeuralGraph) else to_graph(m, a, edge_dim=K)
                                 for m, a in zip(models, archs)])


def _batch_class(base: type) -> type:
    """PyG's batch class of ``base`` (``NeuralGraphBatch``), created once and cached by PyG."""
    return type(Batch(_base_cls=base))


def _new_neural_graph_batch() -> Batch:
    """An empty ``NeuralGraphBatch`` whose fields the unpickler fills (see :func:`register_safe_globals`)."""
    cls = _batch_class(NeuralGraph)
    return cls.__new__(cls)


def _reduce_neural_graph_batch(batch: Batch):
    return _new_neural_graph_batch, (), batch.__dict__.copy()


def register_safe_globals() -> None:
    """Allow the library's classes in ``torch.load(weights_only=True)`` (torch's default since 2.6).

    Saved :class:`NeuralGraph` objects, PyG batches of them, architectures and
    model states then load with a plain ``torch.load(path)``. PyG pickles a batch
    through a callable object that the safe unpickler refuses, so batches of
    neural graphs are pickled through :func:`_new_neural_graph_batch` instead
    (registered with ``copyreg``; the file's content is the same fields).
    """
    import copyreg

    from torch_geometric.data.data import DataEdgeAttr, DataTensorAttr
    from torch_geometric.data.storage import EdgeStorage, GlobalStorage, NodeStorage

    from .symmetry import HiddenPermutation

    batch_cls = _batch_class(NeuralGraph)
    copyreg.pickle(batch_cls, _reduce_neural_graph_batch)
    torch.serialization.add_safe_globals([
        NeuralGraph, Architecture, LayerSpec, ModuleSpec, ModelState, HiddenPermutation,
        batch_cls, _new_neural_graph_batch, DataEdgeAttr, DataTensorAttr, GlobalStorage, NodeStorage, EdgeStorage,
    ])
