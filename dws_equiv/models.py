"""DWSNet: a stack of DWS layers with an invariant or an equivariant head."""
from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import Tensor, nn

from .checks import check_graph_batch, check_positive_int, check_probability
from .index import DWSIndex
from .layers import DWSLayer
from .readout import DWSReadout

__all__ = ["DWSNet"]

_FORWARD = 0


class DWSNet(nn.Module):
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
    * ``head="equivariant"``: ``forward(batch) -> (node_out [N, out_node], edge_out [E, out_edge])``
      (defaults ``out_node = in_node``, ``out_edge = in_edge``: new biases and weights).
      With ``edit_residual=True`` they are ``input + delta``. Input neurons and
      residual edges get zeros (resp. keep their value under ``edit_residual``).
      :meth:`edit` writes them into a copy of the batch that ``neuralgraph.to_model``
      / ``to_models`` rebuild.

    ``tying`` / ``reduce`` / ``max_in`` / ``max_out`` / ``pair_mixing`` / ``max_layers`` /
    ``depths`` are passed to every :class:`DWSLayer`. The default ``tying="relation"``
    serves any depth and mixed-depth batches with one parameter set.
    """

    def __init__(
        self,
        out_dim: int | None = None,
        *,
        in_node: int = 1,
        in_edge: int = 1,
        hidden: int = 32,
        num_layers: int = 4,
        head: Literal["invariant", "equivariant"] = "invariant",
        reduce: Literal["mean", "sum", "max"] = "mean",
        tying: Literal["relation", "full"] = "relation",
        dropout: float = 0.0,
        norm: bool = True,
        max_layers: int = 8,
        max_in: int = 64,
        max_out: int = 64,
        pair_mixing: Literal["full", "factorized"] = "factorized",
        depths: Sequence[int] | None = None,
        mlp_hidden: int | None = None,
        out_node: int | None = None,
        out_edge: int | None = None,
        edit_residual: bool = True,
    ) -> None:
        super().__init__()
        if head not in ("invariant", "equivariant"):
            raise ValueError(f"head must be 'invariant' or 'equivariant', got {head!r}")
        if head == "invariant" and (out_dim is None or out_dim < 1):
            raise ValueError("an invariant DWSNet needs out_dim >= 1")
        check_positive_int("DWSNet", in_node=in_node, in_edge=in_edge, hidden=hidden, num_layers=num_layers,
                           max_in=max_in, max_out=max_out)
        check_probability("DWSNet", dropout=dropout)
        for name, value in (("mlp_hidden", mlp_hidden), ("out_node", out_node), ("out_edge", out_edge)):
            if value is not None:
                check_positive_int("DWSNet", **{name: value})
        self.head, self.in_node, self.in_edge = head, int(in_node), int(in_edge)
        self.max_in, self.max_out = int(max_in), int(max_out)
        self.edit_residual = bool(edit_residual)
        c0 = max(self.in_node, self.in_edge)
        kw = dict(reduce=reduce, tying=tying, max_layers=max_layers, max_in=max_in, max_out=max_out,
                  pair_mixing=pair_mixing, depths=depths)
        self.layers = nn.ModuleList(DWSLayer(c0 if i == 0 else hidden, hidden, **kw) for i in range(num_layers))
        self.node_norms = nn.ModuleList(nn.LayerNorm(hidden) if norm else nn.Identity() for _ in range(num_layers))
        self.edge_norms = nn.ModuleList(nn.LayerNorm(hidden) if norm else nn.Identity() for _ in range(num_layers))
        self.dropout = nn.Dropout(dropout)
        if head == "invariant":
            self.readout = DWSReadout(hidden, reduce=reduce, max_in=max_in, max_out=max_out)
            mh = mlp_hidden if mlp_hidden is not None else 4 * hidden
            self.mlp = nn.Sequential(nn.Linear(self.readout.out_features, mh), nn.ReLU(), nn.Dropout(dropout),
                                     nn.Linear(mh, out_dim))
            self.out_dim = int(out_dim)
        else:
            self.out_node = int(out_node) if out_node is not None else self.in_node
            self.out_edge = int(out_edge) if out_edge is not None else self.in_edge
            if edit_residual and (self.out_node != self.in_node or self.out_edge != self.in_edge):
                raise ValueError("edit_residual=True needs out_node == in_node and out_edge == in_edge")
            self.node_proj = nn.Linear(hidden, self.out_node)
            self.edge_proj = nn.Linear(hidden, self.out_edge)

    def index(self, batch) -> DWSIndex:
        """The gather/scatter indices of a batch (computed once per forward, shared by all layers)."""
        return DWSIndex.from_batch(batch, self.max_in, self.max_out)

    def features(self, batch, index: DWSIndex | None = None) -> tuple[Tensor, Tensor, DWSIndex]:
        """Equivariant hidden features ``(node [N, hidden], edge [E, hidden], index)``."""
        check_graph_batch(batch, "DWSNet")
        idx = index if index is not None else self.index(batch)
        dtype = self.node_proj.weight.dtype if self.head == "equivariant" else self.mlp[0].weight.dtype
        x, e = batch.x.to(dtype), batch.edge_attr.to(dtype)      # as the NG processors: the model's dtype
        if x.size(-1) != self.in_node or e.size(-1) != self.in_edge:
            raise ValueError(f"DWSNet built with in_node={self.in_node}, in_edge={self.in_edge}, got x "
                             f"{tuple(x.shape)} and edge_attr {tuple(e.shape)}; build it with "
                             f"in_node={x.size(-1)}, in_edge={e.size(-1)} (in_edge = kernel taps of the graphs)")
        c0 = max(self.in_node, self.in_edge)
        x = nn.functional.pad(x, (0, c0 - x.size(-1)))
        e = nn.functional.pad(e, (0, c0 - e.size(-1)))
        for layer, nn_, en in zip(self.layers, self.node_norms, self.edge_norms):
            x, e = layer(x, e, idx)
            x = self.dropout(torch.relu(nn_(x)))
            e = self.dropout(torch.relu(en(e)))
        return x, e, idx

    def forward(self, batch) -> Tensor | tuple[Tensor, Tensor]:
        x, e, idx = self.features(batch)
        if self.head == "invariant":
            return self.mlp(self.readout(x, e, idx))
        node = self.node_proj(x)
        edge = self.edge_proj(e)
        keep_n = torch.zeros(node.size(0), 1, dtype=node.dtype, device=node.device)
        keep_n[idx.hid] = 1
        keep_n[idx.on] = 1
        is_w = (batch.edge_type == _FORWARD) if "edge_type" in batch and batch.edge_type is not None \
            else torch.ones(edge.size(0), dtype=torch.bool, device=edge.device)
        node = node * keep_n
        edge = edge * is_w.unsqueeze(-1).to(edge.dtype)
        if "edge_mask" in batch and batch.edge_mask is not None and batch.edge_mask.shape == edge.shape:
            edge = edge * batch.edge_mask.to(edge.dtype)          # padded kernel taps stay zero
        if self.edit_residual:
            node = node + batch.x
            edge = edge + batch.edge_attr
        return node, edge

    @torch.no_grad()
    def edit(self, batch):
        """A copy of ``batch`` whose ``x``/``edge_attr`` are the equivariant head's output.

        ``neuralgraph.to_model(result.get_example(i))`` / ``to_models(result)`` rebuild the edited networks.
        """
        if self.head != "equivariant":
            raise ValueError("edit() needs head='equivariant'")
        if self.out_node != 1 or self.out_edge != batch.edge_attr.size(-1):
            raise ValueError("edit() needs out_node=1 and out_edge equal to the number of taps")
        node, edge = self(batch)
        out = batch.clone()
        out.x, out.edge_attr = node, edge
        return out
