"""DWSNet: a stack of DWS layers with an invariant or an equivariant head."""
from __future__ import annotations

import copy
import warnings
from typing import Literal, Sequence

import torch
from torch import Tensor, nn

from neuralgraph.schema import EDGE_FORWARD

from .checks import check_graph_batch, check_positive_int, check_probability, renamed_argument
from .dense import DenseFeatures, resolve_layout
from .index import DWSIndex
from .layers import DWSLayer
from .readout import DWSReadout
from .uniform import UniformBlocks

from .reset import ResetChildren
__all__ = ["DWSNet"]



class DWSNet(ResetChildren, nn.Module):
    """Deep Weight Space network on (possibly heterogeneous) batches of neural graphs.

    ``num_layers`` DWS layers of ``hidden`` channels, each followed by a
    per-element LayerNorm over channels (``norm=True``; a graph's output never
    depends on its batch-mates), ReLU and dropout. Inputs: node features ``x``
    (biases, ``in_node`` channels) and edge features ``edge_attr`` (weights,
    ``in_edge`` taps), zero-padded to a common channel count and cast to the
    model's dtype (float64 graphs run through a float32 model, as in NG-GNN/NG-T).
    Every graph needs a hidden layer (DWS layers are defined on hidden neurons);
    NG-GNN / NG-T also take networks without one.

    * ``head="invariant"``: ``forward(batch) -> Tensor[num_graphs, out_dim]``; the
      :class:`DWSReadout` vector goes through a 2-layer MLP (``mlp_hidden``).
    * ``head="equivariant"``: ``forward(batch) ->`` a shallow copy of the batch whose
      ``x`` ``[N, out_node]`` and ``edge_attr`` ``[E, out_edge]`` are the head's output
      (defaults ``out_node = in_node``, ``out_edge = in_edge``: new biases and weights,
      which ``neuralgraph.to_models`` rebuilds), as NG-GNN / NG-T do. With
      ``edit_residual=True`` they are ``input + delta``. Input neurons and residual
      edges get zeros (resp. keep their value under ``edit_residual``).
      :meth:`edits` gives the two tensors themselves.
    * ``head=None``: ``forward(batch) -> (node [N, hidden], edge [E, hidden])``, the
      equivariant features of the last layer (embeddings).

    ``tying`` / ``reduce`` / ``max_in`` / ``max_out`` / ``pair_mixing`` / ``max_depth`` /
    ``depths`` are passed to every :class:`DWSLayer`. The default ``tying="relation"``
    serves any depth and mixed-depth batches with one parameter set. ``max_in`` /
    ``max_out`` size the position tables of the free layers (one slot per input / output
    neuron), so they follow the data: left ``None`` (the default), each is set from the
    **first batch** the model sees (its largest input / output width), as
    ``torch.nn.LazyLinear`` sizes itself; until then the model has no parameters (run one
    batch, or load a state dict, whose shapes size it, before making the optimizer).
    :meth:`for_data` sizes it at construction from a batch, a graph, a dataset or an
    ``Architecture``, and the trainer's ``build_model`` from the dataset's architecture. A
    later batch with wider inputs or outputs than the sizes is refused naming both. (A fixed
    64 would cost 32x the parameters of ``max_in=2, max_out=1`` for INRs and refuse a
    784-input MLP.) The sized model is built on the device and in the dtype given to
    ``.to()`` before.

    Two paths compute the same function with the same parameters: on a *uniform* batch (every
    graph of one fully connected architecture, stored in canonical order, as INR datasets
    and ``neuralgraph.stacked_to_batch`` give; see :class:`~dws_equiv.uniform.UniformBlocks`)
    the layers, norms and readout run on per-layer tensors ``[B, d_l, C]`` and per-block
    weight tensors ``[B, d_m, d_{m-1}, C]`` with no index at all
    (:meth:`DWSLayer.forward_dense`); any other batch (mixed architectures, residual
    edges, another order) takes the gather/scatter path through a :class:`DWSIndex`.
    :attr:`dense_path` ``= False`` forces the latter.
    """

    def __init__(
        self,
        out_dim: int | None = None,
        *,
        in_node: int = 1,
        in_edge: int = 1,
        hidden: int = 32,
        num_layers: int = 4,
        head: Literal["invariant", "equivariant"] | None = "invariant",
        reduce: Literal["mean", "sum", "max"] = "mean",
        tying: Literal["relation", "full"] = "relation",
        dropout: float = 0.0,
        norm: bool = True,
        max_depth: int = 8,
        max_in: int | None = None,
        max_out: int | None = None,
        pair_mixing: Literal["full", "factorized"] = "factorized",
        depths: Sequence[int] | None = None,
        mlp_hidden: int | None = None,
        out_node: int | None = None,
        out_edge: int | None = None,
        edit_residual: bool = True,
        max_layers: int | None = None,
    ) -> None:
        super().__init__()
        max_depth = renamed_argument("DWSNet", "max_layers", max_layers, "max_depth", max_depth)
        if head not in ("invariant", "equivariant", None):
            raise ValueError(f"head must be 'invariant', 'equivariant' or None, got {head!r}")
        if head == "invariant" and (out_dim is None or out_dim < 1):
            raise ValueError("an invariant DWSNet needs out_dim >= 1")
        check_positive_int("DWSNet", in_node=in_node, in_edge=in_edge, hidden=hidden, num_layers=num_layers)
        for name, value in (("max_in", max_in), ("max_out", max_out), ("mlp_hidden", mlp_hidden),
                            ("out_node", out_node), ("out_edge", out_edge)):
            if value is not None:
                check_positive_int("DWSNet", **{name: value})
        check_probability("DWSNet", dropout=dropout)
        self.head, self.in_node, self.in_edge = head, int(in_node), int(in_edge)
        self.max_in = None if max_in is None else int(max_in)
        self.max_out = None if max_out is None else int(max_out)
        self.edit_residual = bool(edit_residual)
        self.dropout = nn.Dropout(dropout)
        if head == "invariant":
            self.out_dim = int(out_dim)
        elif head == "equivariant":
            self.out_node = int(out_node) if out_node is not None else self.in_node
            self.out_edge = int(out_edge) if out_edge is not None else self.in_edge
            if edit_residual and (self.out_node != self.in_node or self.out_edge != self.in_edge):
                raise ValueError("edit_residual=True needs out_node == in_node and out_edge == in_edge")
        self._config = dict(hidden=int(hidden), num_layers=int(num_layers), norm=bool(norm), dropout=dropout,
                            mlp_hidden=mlp_hidden,
                            layer=dict(reduce=reduce, tying=tying, max_depth=max_depth, pair_mixing=pair_mixing,
                                       depths=depths))
        if self.max_in is not None and self.max_out is not None:
            self._build()
        else:                   # sized by the first batch: this empty buffer follows .to(device, dtype) until then
            self.register_buffer("_unsized", torch.empty(0), persistent=False)
            DWSLayer(1, 1, max_in=1, max_out=1, **self._config["layer"])        # the layer arguments, checked now

    @classmethod
    def for_data(cls, data, out_dim: int | None = None, **kwargs) -> "DWSNet":
        """A DWSNet sized to ``data``: ``max_in`` / ``max_out`` its largest input / output widths, ``in_edge``
        its largest kernel (taps), unless given in ``kwargs``.

        Args:
            data: an ``Architecture``, a neural graph or batch, a dataset with an ``arch``
                (``INRDataset``), or a list of any of these.
            out_dim, kwargs: as for the constructor.
        """
        from neuralgraph.architecture import Architecture
        from neuralgraph.graph import graph_archs

        items = list(data) if isinstance(data, (list, tuple)) else [data]
        archs = []
        for item in items:
            if isinstance(item, Architecture):
                archs.append(item)
            elif isinstance(getattr(item, "arch", None), Architecture) and not hasattr(item, "edge_index"):
                archs.append(item.arch)                              # a dataset
            else:
                archs.extend(graph_archs(item, "DWSNet.for_data"))
        if not archs:
            raise ValueError("DWSNet.for_data: no networks to size the model from")
        kwargs.setdefault("max_in", max(a.widths[0] for a in archs))
        kwargs.setdefault("max_out", max(a.widths[-1] for a in archs))
        kwargs.setdefault("in_edge", max(a.edge_dim for a in archs))
        return cls(out_dim, **kwargs)

    def _build(self) -> None:
        """The layers, norms and head at ``max_in`` / ``max_out`` (at construction, or once sized by the data)."""
        c = self._config
        hidden, num_layers = c["hidden"], c["num_layers"]
        kw = dict(max_in=self.max_in, max_out=self.max_out, **c["layer"])
        c0 = max(self.in_node, self.in_edge)
        self.layers = nn.ModuleList(DWSLayer(c0 if i == 0 else hidden, hidden, **kw) for i in range(num_layers))
        self.node_norms = nn.ModuleList(nn.LayerNorm(hidden) if c["norm"] else nn.Identity() for _ in range(num_layers))
        self.edge_norms = nn.ModuleList(nn.LayerNorm(hidden) if c["norm"] else nn.Identity() for _ in range(num_layers))
        if self.head == "invariant":
            self.readout = DWSReadout(hidden, reduce=c["layer"]["reduce"], max_in=self.max_in, max_out=self.max_out)
            mh = c["mlp_hidden"] if c["mlp_hidden"] is not None else 4 * hidden
            self.mlp = nn.Sequential(nn.Linear(self.readout.out_features, mh), nn.ReLU(), nn.Dropout(c["dropout"]),
                                     nn.Linear(mh, self.out_dim))
        elif self.head == "equivariant":
            self.node_proj = nn.Linear(hidden, self.out_node)
            self.edge_proj = nn.Linear(hidden, self.out_edge)

    @property
    def sized(self) -> bool:
        """Whether ``max_in`` / ``max_out`` are set and the parameters exist (see the class docstring)."""
        return "_unsized" not in self._buffers

    def _size(self, max_in: int, max_out: int) -> None:
        """Fix the sizes left ``None`` and build the parameters on the device / dtype the model was moved to."""
        probe = self._buffers.pop("_unsized")
        self.max_in = max_in if self.max_in is None else self.max_in
        self.max_out = max_out if self.max_out is None else self.max_out
        self._build()
        for name in ("layers", "node_norms", "edge_norms", "readout", "mlp", "node_proj", "edge_proj"):
            if hasattr(self, name):
                getattr(self, name).to(device=probe.device, dtype=probe.dtype)

    def _size_from(self, batch) -> None:
        """Size an unsized model from ``batch`` (its largest input / output widths)."""
        if self.sized:
            return
        check_graph_batch(batch, "DWSNet")
        blocks = UniformBlocks.detect(batch)
        if blocks is not None and blocks.depth >= 2:
            d_in, d_out = blocks.widths[0], blocks.widths[-1]
        else:
            idx = DWSIndex.from_batch(batch)
            d_in, d_out = idx.max_inputs, idx.max_outputs
        self._size(d_in, d_out)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        """An unsized model takes its sizes from the state dict (the position tables of its first layer)."""
        if not self.sized:
            sizes = {}
            for key, value in state_dict.items():
                if key.startswith(f"{prefix}layers.0.biases."):
                    slot = key.rsplit("__", 1)[-1]
                    if slot in ("F", "L", "O"):
                        sizes["max_in" if slot == "F" else "max_out"] = int(value.shape[0])
            if len(sizes) == 2:
                self._size(sizes["max_in"], sizes["max_out"])
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    #: Take the dense path on uniform batches (see the class docstring). ``False`` forces the
    #: gather/scatter path everywhere (a reference for tests and benchmarks); both compute the
    #: same function.
    dense_path: bool = True

    def index(self, batch) -> DWSIndex:
        """The gather/scatter indices of a batch (computed once per forward, shared by all layers)."""
        self._size_from(batch)
        return DWSIndex.from_batch(batch, self.max_in, self.max_out)

    def layout(self, batch) -> UniformBlocks | DWSIndex:
        """How this model processes ``batch``: its :class:`~dws_equiv.uniform.UniformBlocks` when it is
        uniform (one fully connected architecture in canonical order, with a hidden layer) and
        :attr:`dense_path` is on, else its :class:`DWSIndex`."""
        self._size_from(batch)
        if not self.dense_path:
            return self.index(batch)
        return resolve_layout(batch, self.max_in, self.max_out, "this DWSNet")

    def features(self, batch, index: DWSIndex | UniformBlocks | None = None
                 ) -> tuple[Tensor, Tensor, DWSIndex | UniformBlocks]:
        """Equivariant hidden features ``(node [N, hidden], edge [E, hidden], layout)``.

        ``index`` (default :meth:`layout`) picks the path: a :class:`DWSIndex` the gather/scatter
        path, a :class:`~dws_equiv.uniform.UniformBlocks` the dense one.
        """
        check_graph_batch(batch, "DWSNet")
        self._size_from(batch)
        layout = index if index is not None else self.layout(batch)
        x, e = self._inputs(batch)
        if isinstance(layout, UniformBlocks):
            x, e = self._dense_features(x, e, layout).to_flat()
            return x, e, layout
        return (*self._scatter_features(x, e, layout), layout)

    def _inputs(self, batch) -> tuple[Tensor, Tensor]:
        """The batch's ``x`` / ``edge_attr`` in the model's dtype, zero-padded to the first layer's channels."""
        dtype = next(self.parameters()).dtype
        x, e = batch.x.to(dtype), batch.edge_attr.to(dtype)      # as the NG processors: the model's dtype
        if x.size(-1) != self.in_node or e.size(-1) != self.in_edge:
            raise ValueError(f"DWSNet built with in_node={self.in_node}, in_edge={self.in_edge}, got x "
                             f"{tuple(x.shape)} and edge_attr {tuple(e.shape)}; build it with "
                             f"in_node={x.size(-1)}, in_edge={e.size(-1)} (in_edge = kernel taps of the graphs)")
        c0 = max(self.in_node, self.in_edge)
        x = nn.functional.pad(x, (0, c0 - x.size(-1)))
        e = nn.functional.pad(e, (0, c0 - e.size(-1)))
        return x, e

    def _scatter_features(self, x: Tensor, e: Tensor, idx: DWSIndex) -> tuple[Tensor, Tensor]:
        for layer, nn_, en in zip(self.layers, self.node_norms, self.edge_norms):
            x, e = layer(x, e, idx)
            x = self.dropout(torch.relu(nn_(x)))
            e = self.dropout(torch.relu(en(e)))
        return x, e

    def _dense_features(self, x: Tensor, e: Tensor, blocks: UniformBlocks) -> DenseFeatures:
        """Every layer, norm and activation on the per-layer tensors of a uniform batch.

        The norms act per element over channels, so per-layer tensors give the scatter path's
        values; with dropout the random masks are drawn per tensor (same distribution, other draws).
        """
        feats = DenseFeatures.from_flat(x, e, blocks)
        for layer, nn_, en in zip(self.layers, self.node_norms, self.edge_norms):
            feats = layer.forward_dense(feats)
            feats = feats.map(lambda t, n=nn_: self._activate(n, t), lambda t, n=en: self._activate(n, t))
        return feats

    def _activate(self, norm: nn.Module, t: Tensor) -> Tensor:
        """``dropout(relu(norm(t)))``; the ReLU is in place on a norm's fresh output (not saved for its backward)."""
        h = norm(t)
        return self.dropout(torch.relu_(h) if h is not t else torch.relu(h))

    def forward(self, batch):
        """Logits ``[num_graphs, out_dim]``, an edited batch, or ``(node, edge)`` features (see the class)."""
        if self.head == "equivariant":
            node, edge = self.edits(batch)
            out = copy.copy(batch)                       # shallow: structure tensors are shared, not copied
            out.x, out.edge_attr = node, edge
            return out
        if self.head == "invariant":
            check_graph_batch(batch, "DWSNet")
            layout = self.layout(batch)
            x, e = self._inputs(batch)
            if isinstance(layout, UniformBlocks):
                return self.mlp(self.readout.forward_dense(self._dense_features(x, e, layout)))
            return self.mlp(self.readout(*self._scatter_features(x, e, layout), layout))
        x, e, _ = self.features(batch)
        return x, e

    def edits(self, batch) -> tuple[Tensor, Tensor]:
        """The equivariant head's new ``x`` ``[N, out_node]`` and ``edge_attr`` ``[E, out_edge]``."""
        if self.head != "equivariant":
            raise ValueError("edits() needs head='equivariant'")
        x, e, _ = self.features(batch)
        node = self.node_proj(x)
        edge = self.edge_proj(e)
        keep_n = (batch.node_layer > 0).unsqueeze(-1).to(node.dtype)      # hidden and output neurons
        is_w = batch.edge_type == EDGE_FORWARD
        node = node * keep_n
        edge = edge * is_w.unsqueeze(-1).to(edge.dtype)
        if "edge_mask" in batch and batch.edge_mask is not None and batch.edge_mask.shape == edge.shape:
            edge = edge * batch.edge_mask.to(edge.dtype)          # padded kernel taps stay zero
        if self.edit_residual:
            node = node + batch.x.to(node.dtype)
            edge = edge + batch.edge_attr.to(edge.dtype)
        return node, edge

    @torch.no_grad()
    def edit(self, batch):
        """Deprecated: ``forward`` of an equivariant DWSNet returns the edited batch itself.

        Kept for old code: the edited batch, computed without gradients.
        """
        warnings.warn("DWSNet.edit(batch) is deprecated: an equivariant DWSNet's forward(batch) returns the edited "
                      "batch (as NG-GNN / NG-T do)", DeprecationWarning, stacklevel=2)
        if self.head != "equivariant":
            raise ValueError("edit() needs head='equivariant'")
        return self(batch)
