"""The DWS layer (Navon et al., ICML 2023) as gathers and scatter-reductions on neural graphs.

How every block of the affine equivariant layer is covered
-----------------------------------------------------------
Free layers (inputs, outputs) are never permuted, so their positions are folded
into channels (see :mod:`dws_equiv.index`): ``W_1`` becomes a ``[d_0*C]`` feature
``F`` of each layer-1 neuron, ``W_M`` a ``[d_M*C]`` feature ``L`` of each layer-(M-1)
neuron, ``b_M`` a ``[d_M*C]`` vector ``O`` per graph. A ``d x d`` position mixing is
then an ordinary channel mixing. What is left has only *set* indices: hidden-neuron
biases ``B``, middle weights ``E`` (edges between hidden neurons), ``F``, ``L``, ``O``.
For a pair of such objects, each shared hidden layer offers *same neuron* or
*pool then broadcast*; every other layer is pooled (input side) or broadcast
(output side). The layer computes all those terms with three kinds of messages:

* **edge self** – a middle edge reads itself (same neuron on both of its layers);
* **node terms** – all terms with *same neuron* on exactly one hidden layer ``h``: the
  neuron gathers ``[B, F, L, IN, OUT]`` (its bias, folded first/last weights, the
  reduction of its incoming and of its outgoing middle edges) and one matmul gives
  its new ``B, F, L`` and the messages ``U_dst``/``U_src`` its incident middle edges read;
* **anchor terms** – everything pooled: per graph and hidden layer one scatter
  gives the pooled ``B, F, L, E``; a per-(graph, layer) context vector is mapped to
  the broadcast part of every output object anchored at that layer.

Tying across depth (``tying``)
------------------------------
* ``"relation"`` (default): one parameter set whatever the depth; the pooled
  context of a target at layer ``a`` is (same layer, previous, next, the mean of
  the distant layers, the first layer ``F``, the last layer ``L``, the output
  biases ``O``). Serves any depth and any mix of depths in a batch.
* ``"full"``: a separate parameter block for every (depth, layer, layer) pair, for
  each depth in ``depths``. For a fixed architecture this is exactly the complete
  DWSNet layer: the number of weight parameters (``C = C' = 1``,
  ``pair_mixing="full"``, ``max_in = d_0``, ``max_out = d_M``) equals the dimension
  of the space of equivariant linear maps.

Free positions
--------------
Position-dependent blocks need a ``C' x C`` matrix per position (a vector or
functional over a free layer) or per position pair (free in both, e.g.
``W_1 -> W_1``): ``pair_mixing="full"`` (complete). ``"factorized"`` (default) uses
a per-position(-pair), per-output-channel scale times one shared ``C' x C``
matrix per block, so a block costs ``P*C' + C'*C`` instead of ``P*C'*C``
(with 64 positions and 32 channels the full form costs millions of parameters
per layer). Both forms are exactly equivariant; only ``"full"`` is complete
for ``C > 1``.

Reductions: ``"sum"`` gives exactly the characterised maps, ``"mean"`` scales
every pool by 1/width (same span for a fixed architecture, comparable magnitudes
across widths), ``"max"`` is a non-linear variant. Residual (skip) edges are not
weight space: they are ignored and get zero output; input neurons (no bias)
get zero output too.
"""
from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
import torch.nn.functional as Fn
from torch import Tensor, nn
from torch_geometric.utils import scatter

from .checks import check_positive_int
from .index import DWSIndex

__all__ = ["DWSLayer", "NODE_IN", "NODE_OUT", "ANCHOR_OUT", "relation_context_slots", "full_context_slots"]

# slot layouts: (name, kind) with kind "c" (C channels), "in" (d_in * C), "out" (d_out * C)
NODE_IN = (("B", "c"), ("F", "in"), ("L", "out"), ("IN", "c"), ("OUT", "c"))
NODE_OUT = (("B", "c"), ("F", "in"), ("L", "out"), ("Ud", "c"), ("Us", "c"))
ANCHOR_OUT = (("B", "c"), ("F", "in"), ("L", "out"), ("E", "c"), ("O", "out"))
_REL_CTX = tuple((n, "c") for n in ("Bs", "Es", "Bp", "Ep", "Bn", "En", "Bd", "Ed")) + (("F", "in"), ("L", "out"), ("O", "out"))


def relation_context_slots() -> tuple[tuple[str, str], ...]:
    return _REL_CTX


def full_context_slots(num_hidden: int) -> tuple[tuple[str, str], ...]:
    b = tuple((f"B{k}", "c") for k in range(1, num_hidden + 1))
    e = tuple((f"E{k}", "c") for k in range(1, num_hidden + 1))
    return b + e + (("F", "in"), ("L", "out"), ("O", "out"))


# -- which slots exist for a target at a given (depth, layer) ---------------------------------

def _node_present(M: int, h: int) -> tuple[set[str], set[str]]:
    ins, outs = {"B"}, {"B"}
    if h == 1:
        ins.add("F"); outs.add("F")
    if h == M - 1:
        ins.add("L"); outs.add("L")
    if h >= 2:
        ins.add("IN"); outs.add("Ud")
    if h <= M - 2:
        ins.add("OUT"); outs.add("Us")
    return ins, outs


def _anchor_outs(M: int, a: int) -> set[str]:
    outs = set()
    if a <= M - 1:
        outs.add("B")
    if a == 1:
        outs.add("F")
    if a == M - 1:
        outs.add("L")
    if 2 <= a <= M - 1:
        outs.add("E")
    if a == M:
        outs.add("O")
    return outs


def _anchor_ins(M: int, a: int, tying: str) -> set[str]:
    ins = {"F", "L", "O"}
    hidden = range(1, M)            # layers carrying B
    middle = range(2, M)            # layers carrying E
    if tying == "full":
        ins |= {f"B{k}" for k in hidden} | {f"E{k}" for k in middle}
        return ins
    for tag, k in (("s", a), ("p", a - 1), ("n", a + 1)):
        if k in hidden:
            ins.add("B" + tag)
        if k in middle:
            ins.add("E" + tag)
    if any(abs(k - a) >= 2 for k in hidden):
        ins.add("Bd")
    if any(abs(k - a) >= 2 for k in middle):
        ins.add("Ed")
    return ins


class DWSLayer(nn.Module):
    """Affine equivariant layer of weight space, as message passing on a batch of neural graphs.

    ``forward(x, edge_attr, index)`` maps node features ``[N, C]`` (biases; input
    neurons ignored) and edge features ``[E, C]`` (weights) to ``[N, C']`` and
    ``[E, C']``. ``index`` is a :class:`DWSIndex` (build it once per batch and
    share it between layers) or the batch itself. See the module docstring.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        reduce: Literal["mean", "sum", "max"] = "mean",
        tying: Literal["relation", "full"] = "relation",
        max_layers: int = 8,
        max_in: int = 64,
        max_out: int = 64,
        pair_mixing: Literal["full", "factorized"] = "factorized",
        depths: Sequence[int] | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        check_positive_int("DWSLayer", in_channels=in_channels, out_channels=out_channels, max_layers=max_layers,
                           max_in=max_in, max_out=max_out)
        if reduce not in ("mean", "sum", "max"):
            raise ValueError(f"reduce must be 'mean', 'sum' or 'max', got {reduce!r}")
        if tying not in ("relation", "full"):
            raise ValueError(f"tying must be 'relation' or 'full', got {tying!r}")
        if pair_mixing not in ("full", "factorized"):
            raise ValueError(f"pair_mixing must be 'full' or 'factorized', got {pair_mixing!r}")
        if max_layers < 2:
            raise ValueError(f"max_layers must be >= 2, got {max_layers}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.reduce, self.tying, self.pair_mixing = reduce, tying, pair_mixing
        self.max_layers, self.max_in, self.max_out = int(max_layers), int(max_in), int(max_out)
        if tying == "full":
            self.depths = tuple(sorted(set(int(d) for d in (depths if depths is not None else range(2, max_layers + 1)))))
            if not self.depths or min(self.depths) < 2:
                raise ValueError(f"depths must be >= 2, got {self.depths}")
            self.max_layers = max(self.depths)
        else:
            if depths is not None:
                raise ValueError("depths= only applies to tying='full'")
            self.depths = None
        self.weights = nn.ParameterDict()
        self.biases = nn.ParameterDict()
        self._valid: dict[str, set[tuple[str, str]]] = {}
        self._build(bias)

    # -- parameters ----------------------------------------------------------------------------

    def _positions(self, kind: str) -> int:
        return {"c": 1, "in": self.max_in, "out": self.max_out}[kind]

    def _configs(self):
        """(group names, depth, layer) for every configuration the parameters must serve."""
        depths = self.depths if self.tying == "full" else range(2, max(self.max_layers, 6) + 1)
        for M in depths:
            for h in range(1, M):
                yield ("node", self._key("n", M, h), M, h)
            for m in range(2, M):
                yield ("edge", self._key("e", M, m), M, m)
            for a in range(1, M + 1):
                yield ("anchor", self._key("a", M, a), M, a)

    def _key(self, prefix: str, M: int, a: int) -> str:
        return prefix if self.tying == "relation" else f"{prefix}{M}_{a}"

    def _build(self, bias: bool) -> None:
        pairs: dict[str, set[tuple[str, str]]] = {}
        outs: dict[str, set[str]] = {}
        kinds = dict(NODE_IN + NODE_OUT + ANCHOR_OUT + _REL_CTX)
        for role, key, M, a in self._configs():
            if role == "node":
                ins, o = _node_present(M, a)
            elif role == "edge":
                ins, o = {"self"}, {"self"}
            else:
                ins, o = _anchor_ins(M, a, self.tying), _anchor_outs(M, a)
            pairs.setdefault(key, set()).update((x, y) for y in o for x in ins)
            if role == "anchor":
                outs.setdefault(key, set()).update(o)
        self._valid = pairs
        C, Co = self.in_channels, self.out_channels
        for key, ps in sorted(pairs.items()):
            fan = {}
            for x, y in ps:
                fan[y] = fan.get(y, 0) + 1
            for x, y in sorted(ps):
                px = self._positions(kinds.get(x, "c"))
                py = self._positions(kinds.get(y, "c"))
                s = 1.0 / math.sqrt(fan[y] * C)
                name = f"{key}__{y}__{x}"
                if px * py > 1 and self.pair_mixing == "factorized":
                    self.weights[name + "__a"] = nn.Parameter(torch.empty(py, px, Co).uniform_(-1, 1) / math.sqrt(fan[y]))
                    self.weights[name + "__t"] = nn.Parameter(torch.empty(Co, C).uniform_(-1, 1) / math.sqrt(C))
                else:
                    self.weights[name] = nn.Parameter(torch.empty(py, Co, px, C).uniform_(-s, s))
        if bias:
            for key, o in sorted(outs.items()):
                for y in sorted(o):
                    self.biases[f"{key}__{y}"] = nn.Parameter(torch.zeros(self._positions(kinds[y]), Co))

    def _block(self, key: str, y: str, ky: str, x: str, kx: str, d_in: int, d_out: int, dtype) -> Tensor | None:
        py = {"c": 1, "in": d_in, "out": d_out}[ky]
        px = {"c": 1, "in": d_in, "out": d_out}[kx]
        name = f"{key}__{y}__{x}"
        C, Co = self.in_channels, self.out_channels
        if name in self.weights:
            w = self.weights[name][:py, :, :px, :]
        elif name + "__a" in self.weights:
            a = self.weights[name + "__a"][:py, :px]
            t = self.weights[name + "__t"]
            w = (a.unsqueeze(-1) * t).permute(0, 2, 1, 3)
        else:
            return None
        return w.reshape(py * Co, px * C).to(dtype)

    def _matrix(self, key: str, out_layout, in_layout, d_in: int, d_out: int, dtype, device) -> Tensor:
        """The group's weight matrix in the (padded) slot layout; absent blocks are zero."""
        C, Co = self.in_channels, self.out_channels
        width = {"c": 1, "in": d_in, "out": d_out}
        rows = []
        for y, ky in out_layout:
            cols = []
            for x, kx in in_layout:
                b = self._block(key, y, ky, x, kx, d_in, d_out, dtype)
                cols.append(b if b is not None else torch.zeros(width[ky] * Co, width[kx] * C, dtype=dtype, device=device))
            rows.append(torch.cat(cols, 1))
        return torch.cat(rows, 0)

    def _bias(self, key: str, out_layout, d_in: int, d_out: int, dtype, device) -> Tensor | None:
        if len(self.biases) == 0:
            return None
        width = {"c": 1, "in": d_in, "out": d_out}
        parts = []
        for y, ky in out_layout:
            name = f"{key}__{y}"
            if name in self.biases:
                parts.append(self.biases[name][: width[ky]].reshape(-1).to(dtype))
            else:
                parts.append(torch.zeros(width[ky] * self.out_channels, dtype=dtype, device=device))
        return torch.cat(parts)

    def weight_parameter_count(self) -> int:
        """Number of scalar weights (without affine biases): the dimension count of the spec in full mode."""
        return sum(p.numel() for p in self.weights.values())

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, reduce={self.reduce!r}, tying={self.tying!r}, "
                f"max_in={self.max_in}, max_out={self.max_out}, pair_mixing={self.pair_mixing!r}")

    # -- forward ---------------------------------------------------------------------------

    def _check_depth(self, M: int) -> None:
        if self.tying == "full" and M not in self.depths:
            raise ValueError(f"a graph has depth {M} but this DWS layer (tying='full') has parameters "
                             f"for depths {list(self.depths)}")

    def forward(self, x: Tensor, edge_attr: Tensor, index) -> tuple[Tensor, Tensor]:
        idx = index if isinstance(index, DWSIndex) else DWSIndex.from_batch(index, self.max_in, self.max_out)
        if idx.d_in > self.max_in or idx.d_out > self.max_out:
            raise ValueError(f"batch has {idx.d_in} input / {idx.d_out} output neurons; this DWS layer "
                             f"supports max_in={self.max_in}, max_out={self.max_out}")
        C, Co = self.in_channels, self.out_channels
        if x.dim() != 2 or x.size(1) != C or edge_attr.dim() != 2 or edge_attr.size(1) != C:
            raise ValueError(f"DWSLayer({C}, {Co}) expects x [N, {C}] and edge_attr [E, {C}], "
                             f"got {tuple(x.shape)} and {tuple(edge_attr.shape)}")
        if x.size(0) != idx.num_nodes or edge_attr.size(0) != idx.num_edges:
            raise ValueError("x / edge_attr do not match the index (built for another batch?)")
        r, dtype, device = self.reduce, x.dtype, x.device
        Di, Do, H, G, L = idx.d_in, idx.d_out, idx.H, idx.num_graphs, idx.L
        if self.tying == "full":
            for M in torch.unique(idx.depth).tolist():
                self._check_depth(M)

        # gather the set objects
        hB = x[idx.hid]
        Fm = x.new_zeros(H * Di, C).index_copy(0, idx.fe_flat, edge_attr[idx.fe]).view(H, Di * C)
        Lm = x.new_zeros(H * Do, C).index_copy(0, idx.le_flat, edge_attr[idx.le]).view(H, Do * C)
        he = edge_attr[idx.me]
        IN = scatter(he, idx.me_dst, 0, dim_size=H, reduce=r)
        OUT = scatter(he, idx.me_src, 0, dim_size=H, reduce=r)
        pool_part = torch.cat([hB, Fm, Lm, IN], 1)
        Xn = torch.cat([pool_part, OUT], 1)
        # one scatter pools B, F, L and the middle edges (via IN: equal in-degree per layer)
        pooled = scatter(pool_part, idx.hid_row, 0, dim_size=G * L, reduce=r)
        Bp = pooled[:, :C]
        Ep = pooled[:, -C:]
        Fp = pooled[idx.first_row, C: C + Di * C]
        Lp = pooled[idx.last_row, C + Di * C: C + (Di + Do) * C]
        O = x.new_zeros(G * Do, C).index_copy(0, idx.on_flat, x[idx.on]).view(G, Do * C)

        # node terms
        if self.tying == "relation":
            Yn = Xn @ self._matrix("n", NODE_OUT, NODE_IN, Di, Do, dtype, device).t()
        else:
            Yn = None
            for M, h, ids in idx.node_groups():
                y = Xn[ids] @ self._matrix(f"n{M}_{h}", NODE_OUT, NODE_IN, Di, Do, dtype, device).t()
                Yn = (y.new_zeros(H, y.size(1)) if Yn is None else Yn).index_copy(0, ids, y)
            if Yn is None:
                Yn = x.new_zeros(0, (3 + Di + Do) * Co)

        # anchor terms
        glob = torch.cat([Fp, Lp, O], 1)
        if self.tying == "relation":
            S = torch.cat([Bp, Ep], 1).view(G, L, 2 * C)
            Sp = Fn.pad(S, (0, 0, 1, 1))
            same, prev, nxt = Sp[:, 1:L + 1], Sp[:, :L], Sp[:, 2:]
            dist = S.sum(1, keepdim=True) - same - prev - nxt
            if r != "sum":
                k = torch.arange(1, L + 1, device=device)
                far = ((k.view(-1, 1) - k.view(1, -1)).abs() >= 2).to(dtype)          # [a, k]
                M1 = idx.depth.view(-1, 1) - 1
                vB = (k.view(1, -1) <= M1).to(dtype)
                vE = ((k.view(1, -1) >= 2) & (k.view(1, -1) <= M1)).to(dtype)
                cnt = torch.stack([vB @ far.t(), vE @ far.t()], -1).clamp(min=1)       # [G, a, 2]
                dist = (dist.view(G, L, 2, C) / cnt.unsqueeze(-1)).view(G, L, 2 * C)
            ctx = torch.cat([same, prev, nxt, dist, glob.unsqueeze(1).expand(G, L, glob.size(1))], 2).view(G * L, -1)
            Ya = ctx @ self._matrix("a", ANCHOR_OUT, _REL_CTX, Di, Do, dtype, device).t()
            b = self._bias("a", ANCHOR_OUT, Di, Do, dtype, device)
            if b is not None:
                Ya = Ya + b
        else:
            nh = L - 1
            ctxg = torch.cat([Bp.view(G, L, C)[:, :nh].reshape(G, nh * C), Ep.view(G, L, C)[:, :nh].reshape(G, nh * C), glob], 1)
            layout = full_context_slots(nh)
            Ya = None
            for M, a, rows in idx.anchor_groups():
                key = f"a{M}_{a}"
                y = ctxg[torch.div(rows, L, rounding_mode="floor")] @ self._matrix(key, ANCHOR_OUT, layout, Di, Do, dtype, device).t()
                b = self._bias(key, ANCHOR_OUT, Di, Do, dtype, device)
                if b is not None:
                    y = y + b
                Ya = (y.new_zeros(G * L, y.size(1)) if Ya is None else Ya).index_copy(0, rows, y)

        # combine: node terms + broadcast anchor terms
        w4 = (2 + Di + Do) * Co
        Z = Yn[:, :w4] + Ya[idx.hid_row, :w4]
        Bout = Z[:, :Co]
        Fout = Z[:, Co: Co + Di * Co].reshape(H * Di, Co)
        Lout = Z[:, Co + Di * Co: Co + (Di + Do) * Co].reshape(H * Do, Co)
        Ud = Z[:, w4 - Co:]
        Us = Yn[:, w4:]
        Oout = Ya[:, w4:].reshape(G * L * Do, Co)[idx.on_row_flat]

        # middle edges: self + messages from both end neurons
        if self.tying == "relation":
            Wself = self._block("e", "self", "c", "self", "c", Di, Do, dtype)
            mid = he @ Wself.t()
        else:
            mid = None
            for M, m, ids in idx.edge_groups():
                y = he[ids] @ self._block(f"e{M}_{m}", "self", "c", "self", "c", Di, Do, dtype).t()
                mid = (y.new_zeros(he.size(0), Co) if mid is None else mid).index_copy(0, ids, y)
            if mid is None:
                mid = he.new_zeros(0, Co)
        mid = mid + Ud[idx.me_dst] + Us[idx.me_src]

        # one scatter per output (residual edges and input neurons stay zero)
        edge_out = x.new_zeros(idx.num_edges, Co).index_copy(
            0, idx.edge_order, torch.cat([mid, Fout[idx.fe_flat], Lout[idx.le_flat]]))
        node_out = x.new_zeros(idx.num_nodes, Co).index_copy(0, idx.node_order, torch.cat([Bout, Oout]))
        return node_out, edge_out
