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

Slots and the paper's blocks
----------------------------
Weight space is ``(W_1..W_M, b_1..b_M)``; the paper's layer is a block matrix with one block
per (input tensor, output tensor) pair (``W->W``, ``W->b``, ``b->W``, ``b->b``). Slots name
those tensors: ``B`` = ``b_1..b_{M-1}``, ``F`` = ``W_1``, ``L`` = ``W_M``, ``E`` = ``W_2..W_{M-1}``,
``O`` = ``b_M``. Each block is computed where its *same neuron* terms live:

====================  ===========================  ==============================================
input -> output        paper block                  computed by
====================  ===========================  ==============================================
B, F, L -> B, F, L     b->b, W_1/W_M <-> b, W_1<->W_M  node terms (same neuron) + anchor terms
E -> B, F, L           W_m -> b, W_1, W_M (middle)  node terms through ``IN``/``OUT`` (incoming /
                                                    outgoing pools) + anchor terms
B, F, L -> E           b, W_1, W_M -> W_m           node terms' messages ``Ud``/``Us`` read by the
                                                    middle edges at their target / source
E -> E                 W_m -> W_l                   edge self term + ``Ud``/``Us`` + anchor ``E``
anything -> O          -> b_M                       anchor terms at anchor layer M (``O`` slot)
O -> anything          b_M ->                       ``O`` in every anchor's pooled context
====================  ===========================  ==============================================

Slot layouts (``NODE_IN``, ``NODE_OUT``, ``ANCHOR_OUT``, ``POOLED``, ``RELATION_CONTEXT``)
are read through :class:`Slots`, never through numeric offsets. The forward is four
steps: :meth:`DWSLayer._gather` (set objects and their pools), :meth:`DWSLayer._node_terms`,
:meth:`DWSLayer._anchor_terms`, :meth:`DWSLayer._scatter_outputs`.

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

Two paths, one function
-----------------------
On a *uniform* batch (one fully connected architecture, canonical order: INR datasets,
``neuralgraph.stacked_to_batch``; :class:`~dws_equiv.uniform.UniformBlocks`) the forward
takes :meth:`DWSLayer.forward_dense`: the same terms on per-layer tensors ``[B, d_l, C]`` and
per-block weight tensors ``[B, d_m, d_{m-1}, C]`` (:class:`~dws_equiv.dense.DenseFeatures`),
where a gather is a broadcast and a scatter-reduction a reduction over one axis, with no
index at all. Any other batch, or an explicit :class:`DWSIndex`, takes the gather/scatter
path described above. Both use the same parameters and agree to float rounding.

Reductions: ``"sum"`` gives exactly the characterised maps, ``"mean"`` scales
every pool by 1/width (same span for a fixed architecture, comparable magnitudes
across widths), ``"max"`` is a non-linear variant. Residual (skip) edges are not
weight space: they are ignored and get zero output; input neurons (no bias)
get zero output too.
"""
from __future__ import annotations

import math
from typing import Literal, NamedTuple, Sequence

import torch
import torch.nn.functional as Fn
from torch import Tensor, nn
from torch_geometric.utils import scatter

from .checks import check_positive_int, renamed_argument
from .dense import DenseFeatures, check_uniform_sizes, mix_and_pool, reduce_dim, resolve_layout
from .index import DWSIndex
from .uniform import UniformBlocks

__all__ = ["DWSLayer", "NODE_IN", "NODE_OUT", "ANCHOR_OUT", "POOLED", "RELATION_CONTEXT", "Slots",
           "relation_context_slots", "full_context_slots"]

# Slot layouts: rows of (name, kind); kind "c" is C channels, "in" is d_in * C (one block per
# input position), "out" is d_out * C (one block per output position).
#: What a hidden neuron gathers for the node terms.
NODE_IN = (("B", "c"), ("F", "in"), ("L", "out"), ("IN", "c"), ("OUT", "c"))
#: What the node terms give a hidden neuron: its new B, F, L and the messages its incoming (Ud)
#: and outgoing (Us) middle edges read.
NODE_OUT = (("B", "c"), ("F", "in"), ("L", "out"), ("Ud", "c"), ("Us", "c"))
#: What an anchor row (graph, layer) gives the objects anchored there.
ANCHOR_OUT = (("B", "c"), ("F", "in"), ("L", "out"), ("E", "c"), ("O", "out"))
#: What is pooled per anchor row: the first four slots of NODE_IN (E pooled through IN).
POOLED = (("B", "c"), ("F", "in"), ("L", "out"), ("E", "c"))
#: The pooled context of an anchor under ``tying="relation"``: B and E of the same layer (s), the
#: previous (p), the next (n), the mean of the distant layers (d), then F, L and O.
RELATION_CONTEXT = tuple((n, "c") for n in ("Bs", "Es", "Bp", "Ep", "Bn", "En", "Bd", "Ed")) + \
    (("F", "in"), ("L", "out"), ("O", "out"))
#: ``tying="relation"``: parameters are made for every (depth, layer) configuration up to this
#: depth (or ``max_depth`` if larger). Every (context slot, output slot) pair occurs by depth 5,
#: so deeper configurations add no parameter (checked by tests/test_dws_layer.py).
ALL_RELATIONS_DEPTH = 5


class Slots:
    """A slot layout at concrete widths: which columns of a row each named slot occupies.

    ``Slots(NODE_OUT, C, d_in, d_out)["F"]`` is the ``slice`` of the ``F`` slot;
    ``span("B", "Ud")`` the slice from the start of ``B`` to the end of ``Ud``.
    """

    def __init__(self, layout: Sequence[tuple[str, str]], channels: int, d_in: int, d_out: int) -> None:
        widths = {"c": 1, "in": d_in, "out": d_out}
        self.layout, self.spans, start = tuple(layout), {}, 0
        for name, kind in self.layout:
            self.spans[name] = (start, start + widths[kind] * channels)
            start += widths[kind] * channels
        self.width = start

    def __getitem__(self, name: str) -> slice:
        return slice(*self.spans[name])

    def span(self, first: str | None = None, last: str | None = None) -> slice:
        """The slice from the start of slot ``first`` to the end of slot ``last`` (default: the first and
        the last slot of the layout, i.e. the whole row).
        """
        first = first or self.layout[0][0]
        last = last or self.layout[-1][0]
        return slice(self.spans[first][0], self.spans[last][1])


class SetObjects(NamedTuple):
    """What :meth:`DWSLayer._gather` collects from a batch (``H`` hidden neurons, ``G`` graphs)."""

    node_input: Tensor       # [H, NODE_IN]: bias, folded W_1 / W_M rows, pooled incoming / outgoing middle edges
    middle: Tensor           # [E_mid, C] middle-edge features
    output_bias: Tensor      # [G, d_out * C] folded b_M
    pooled_bias: Tensor      # [G * L, C] hidden biases pooled per (graph, layer)
    pooled_middle: Tensor    # [G * L, C] middle edges pooled per (graph, layer of their target)
    pooled_first: Tensor     # [G, d_in * C] W_1 pooled over layer-1 neurons
    pooled_last: Tensor      # [G, d_out * C] W_M pooled over layer-(M-1) neurons


class _Gather(NamedTuple):
    """How :meth:`DWSLayer._assemble` builds a weight matrix or bias vector from a layer's parameters."""

    names: tuple[str, ...]       # parameters concatenated (flattened) in this order, then a 0 and a 1
    first: Tensor                # [R * K] position of each entry (or of its first factor) in that vector
    second: Tensor | None        # [R * K] position of its second factor (factorized blocks), None if none
    shape: tuple[int, ...]


def _weight_name(key: str, y: str, x: str) -> str:
    """Name of the block mapping input slot ``x`` to output slot ``y`` in parameter group ``key``.

    Groups: ``n`` / ``e`` / ``a`` (node, edge-self, anchor terms) under ``tying="relation"``,
    ``n{M}_{h}`` / ``e{M}_{m}`` / ``a{M}_{a}`` per depth and layer under ``tying="full"``. A
    factorized block is stored as ``<name>__a`` (per-position scales) and ``<name>__t`` (a
    shared ``C' x C`` matrix). These names are the checkpoint keys.
    """
    return f"{key}__{y}__{x}"


def _bias_name(key: str, y: str) -> str:
    """Name of the affine bias of output slot ``y`` in anchor group ``key``."""
    return f"{key}__{y}"


def relation_context_slots() -> tuple[tuple[str, str], ...]:
    """The slot layout of an anchor's pooled context under ``tying="relation"``
    (:data:`RELATION_CONTEXT`; the same for every depth).
    """
    return RELATION_CONTEXT


def full_context_slots(num_hidden: int) -> tuple[tuple[str, str], ...]:
    """The pooled context of an anchor under ``tying="full"``: B and E of every hidden layer, F, L, O."""
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
        max_depth: int = 8,
        max_in: int = 64,
        max_out: int = 64,
        pair_mixing: Literal["full", "factorized"] = "factorized",
        depths: Sequence[int] | None = None,
        bias: bool = True,
        max_layers: int | None = None,
    ) -> None:
        super().__init__()
        max_depth = renamed_argument("DWSLayer", "max_layers", max_layers, "max_depth", max_depth)
        check_positive_int("DWSLayer", in_channels=in_channels, out_channels=out_channels, max_depth=max_depth,
                           max_in=max_in, max_out=max_out)
        if reduce not in ("mean", "sum", "max"):
            raise ValueError(f"reduce must be 'mean', 'sum' or 'max', got {reduce!r}")
        if tying not in ("relation", "full"):
            raise ValueError(f"tying must be 'relation' or 'full', got {tying!r}")
        if pair_mixing not in ("full", "factorized"):
            raise ValueError(f"pair_mixing must be 'full' or 'factorized', got {pair_mixing!r}")
        if max_depth < 2:
            raise ValueError(f"max_depth must be >= 2, got {max_depth}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.reduce, self.tying, self.pair_mixing = reduce, tying, pair_mixing
        self.max_depth, self.max_in, self.max_out = int(max_depth), int(max_in), int(max_out)
        if tying == "full":
            self.depths = tuple(sorted(set(int(d) for d in (depths if depths is not None else range(2, max_depth + 1)))))
            if not self.depths or min(self.depths) < 2:
                raise ValueError(f"depths must be >= 2, got {self.depths}")
            self.max_depth = max(self.depths)
        else:
            if depths is not None:
                raise ValueError("depths= only applies to tying='full'")
            self.depths = None
        self.weights = nn.ParameterDict()
        self.biases = nn.ParameterDict()
        self._valid: dict[str, set[tuple[str, str]]] = {}
        self._init: dict[str, tuple[float, float]] = {}     # weight name -> (bound, divisor) of its init
        self._build(bias)

    # -- parameters ----------------------------------------------------------------------------

    def _positions(self, kind: str) -> int:
        return {"c": 1, "in": self.max_in, "out": self.max_out}[kind]

    def _configs(self):
        """(group names, depth, layer) for every configuration the parameters must serve."""
        depths = self.depths if self.tying == "full" else range(2, max(self.max_depth, ALL_RELATIONS_DEPTH) + 1)
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
        kinds = dict(NODE_IN + NODE_OUT + ANCHOR_OUT + RELATION_CONTEXT)
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
                name = _weight_name(key, y, x)
                if px * py > 1 and self.pair_mixing == "factorized":
                    self._add_weight(name + "__a", (py, px, Co), 1.0, math.sqrt(fan[y]))
                    self._add_weight(name + "__t", (Co, C), 1.0, math.sqrt(C))
                else:
                    self._add_weight(name, (py, Co, px, C), s, 1.0)
        if bias:
            for key, o in sorted(outs.items()):
                for y in sorted(o):
                    self.biases[_bias_name(key, y)] = nn.Parameter(torch.empty(self._positions(kinds[y]), Co))
        self.reset_parameters()

    def _add_weight(self, name: str, shape: tuple[int, ...], bound: float, divisor: float) -> None:
        self.weights[name] = nn.Parameter(torch.empty(shape))
        self._init[name] = (bound, divisor)

    def reset_parameters(self) -> None:
        """Weights uniform in ``[-bound, bound] / divisor`` (fan-in scaled per output slot), biases zero."""
        with torch.no_grad():
            for name, w in self.weights.items():
                bound, divisor = self._init[name]
                w.uniform_(-bound, bound)
                if divisor != 1.0:
                    w.div_(divisor)
            for b in self.biases.values():
                b.zero_()

    def _block(self, key: str, y: str, ky: str, x: str, kx: str, d_in: int, d_out: int, dtype) -> Tensor | None:
        py = {"c": 1, "in": d_in, "out": d_out}[ky]
        px = {"c": 1, "in": d_in, "out": d_out}[kx]
        name = _weight_name(key, y, x)
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
        """The group's weight matrix in the (padded) slot layout; absent blocks are zero.

        Block ``(y, x)`` of rows ``y`` and columns ``x`` holds :meth:`_block`'s matrix; the whole
        matrix is gathered from the group's parameters in one step (see :meth:`_assemble`).

        Shapes: ``[sum_y width(y) * C', sum_x width(x) * C]`` with ``width`` 1, ``d_in`` or ``d_out``.
        """
        plan = self._plan(("w", key, tuple(out_layout), tuple(in_layout), d_in, d_out, str(device)),
                          lambda: self._plan_matrix(key, out_layout, in_layout, d_in, d_out, device))
        return self._assemble(plan, self.weights, dtype)

    def _bias(self, key: str, out_layout, d_in: int, d_out: int, dtype, device) -> Tensor | None:
        """The affine biases of the output slots of anchor group ``key`` as one vector (absent slots zero),
        or ``None`` for a layer built with ``bias=False``."""
        if len(self.biases) == 0:
            return None
        plan = self._plan(("b", key, tuple(out_layout), d_in, d_out, str(device)),
                          lambda: self._plan_bias(key, out_layout, d_in, d_out, device))
        return self._assemble(plan, self.biases, dtype)

    # -- assembling weight matrices from parameters (two gathers instead of one op per block) --

    def _plan(self, cache_key: tuple, make) -> "_Gather":
        plans = self.__dict__.setdefault("_plans", {})      # not state: rebuilt after unpickling
        if cache_key not in plans:
            plans[cache_key] = make()
        return plans[cache_key]

    @staticmethod
    def _assemble(plan: "_Gather", params: nn.ParameterDict, dtype) -> Tensor:
        """``plan`` applied: the concatenated parameters (then a 0 and a 1) gathered at ``plan.first``,
        times the entries at ``plan.second`` (factorized blocks: scale x shared matrix) if any."""
        table = params._parameters           # the ParameterDict's own name -> Parameter map (no getattr per name)
        ref = table[plan.names[0]] if plan.names else next(iter(table.values()))
        parts = [table[n].reshape(-1) for n in plan.names]
        flat = torch.cat(parts + [torch.tensor([0.0, 1.0], dtype=ref.dtype, device=ref.device)])
        out = flat.index_select(0, plan.first)
        if plan.second is not None:
            out = out * flat.index_select(0, plan.second)
        return out.view(plan.shape).to(dtype)

    def _plan_matrix(self, key: str, out_layout, in_layout, d_in: int, d_out: int, device) -> "_Gather":
        """Where every entry of :meth:`_matrix` lives in the concatenated parameters of group ``key``."""
        C, Co = self.in_channels, self.out_channels
        width = {"c": 1, "in": d_in, "out": d_out}
        R = sum(width[k] for _, k in out_layout) * Co
        K = sum(width[k] for _, k in in_layout) * C
        offsets: dict[str, int] = {}

        def at(name: str) -> int:                            # offset of a parameter in the concatenation
            if name not in offsets:
                offsets[name] = sum(self.weights[n].numel() for n in offsets)
            return offsets[name]

        ZERO, ONE = -1, -2                                   # placeholders, resolved once the total is known
        first = torch.full((R, K), ZERO, dtype=torch.long)
        second = torch.full((R, K), ONE, dtype=torch.long)
        r0 = 0
        for y, ky in out_layout:
            py, c0 = width[ky], 0
            i, o = torch.arange(py).view(-1, 1, 1, 1), torch.arange(Co).view(1, -1, 1, 1)
            for x, kx in in_layout:
                px = width[kx]
                j, c = torch.arange(px).view(1, 1, -1, 1), torch.arange(C).view(1, 1, 1, -1)
                rows, cols, shape = slice(r0, r0 + py * Co), slice(c0, c0 + px * C), (py, Co, px, C)
                name = _weight_name(key, y, x)
                if name in self.weights:                     # [P_y, C', P_x, C]
                    Px = self.weights[name].shape[2]
                    first[rows, cols] = (at(name) + ((i * Co + o) * Px + j) * C + c).reshape(py * Co, px * C)
                elif name + "__a" in self.weights:           # a [P_y, P_x, C'] times t [C', C]
                    Px = self.weights[name + "__a"].shape[1]
                    first[rows, cols] = (at(name + "__a") + (i * Px + j) * Co + o).expand(shape).reshape(py * Co, -1)
                    second[rows, cols] = (at(name + "__t") + o * C + c).expand(shape).reshape(py * Co, -1)
                c0 += px * C
            r0 += py * Co
        total = sum(self.weights[n].numel() for n in offsets)
        factorized = bool((second != ONE).any())
        first[first == ZERO] = total
        second[second == ONE] = total + 1
        return _Gather(tuple(offsets), first.view(-1).to(device),
                       second.view(-1).to(device) if factorized else None, (R, K))

    def _plan_bias(self, key: str, out_layout, d_in: int, d_out: int, device) -> "_Gather":
        """Where every entry of :meth:`_bias` lives in the concatenated biases of group ``key``."""
        Co, width = self.out_channels, {"c": 1, "in": d_in, "out": d_out}
        names, parts, total = [], [], 0
        for y, ky in out_layout:
            n = width[ky] * Co
            name = _bias_name(key, y)
            if name in self.biases:                          # [P, C']: its first width(y) rows
                parts.append(total + torch.arange(n))
                names.append(name)
                total += self.biases[name].numel()
            else:
                parts.append(torch.full((n,), -1, dtype=torch.long))
        first = torch.cat(parts)
        first[first == -1] = total
        return _Gather(tuple(names), first.to(device), None, (first.numel(),))

    def weight_parameter_count(self) -> int:
        """Number of scalar weights (without affine biases): the dimension count of the spec in full mode."""
        return sum(p.numel() for p in self.weights.values())

    def extra_repr(self) -> str:
        """Channels and the layer's options in the module's ``repr``."""
        return (f"{self.in_channels}, {self.out_channels}, reduce={self.reduce!r}, tying={self.tying!r}, "
                f"max_in={self.max_in}, max_out={self.max_out}, pair_mixing={self.pair_mixing!r}")

    # -- forward ---------------------------------------------------------------------------

    def _check_depth(self, M: int) -> None:
        if self.tying == "full" and M not in self.depths:
            raise ValueError(f"a graph has depth {M} but this DWS layer (tying='full') has parameters "
                             f"for depths {list(self.depths)}")

    def _check_channels(self, x: Tensor, edge_attr: Tensor) -> None:
        C, Co = self.in_channels, self.out_channels
        if x.dim() != 2 or x.size(1) != C or edge_attr.dim() != 2 or edge_attr.size(1) != C:
            raise ValueError(f"DWSLayer({C}, {Co}) expects x [N, {C}] and edge_attr [E, {C}], "
                             f"got {tuple(x.shape)} and {tuple(edge_attr.shape)}")

    def _index(self, index, x: Tensor, edge_attr: Tensor) -> DWSIndex:
        idx = DWSIndex.resolve(index, self.max_in, self.max_out, "this DWS layer")
        self._check_channels(x, edge_attr)
        if x.size(0) != idx.num_nodes or edge_attr.size(0) != idx.num_edges:
            raise ValueError("x / edge_attr do not match the index (built for another batch?)")
        if self.tying == "full":
            for M in torch.unique(idx.depth).tolist():
                self._check_depth(M)
        return idx

    def forward(self, x: Tensor, edge_attr: Tensor, index) -> tuple[Tensor, Tensor]:
        """New node and edge features of a batch of neural graphs.

        Args:
            x: node features (biases); input neurons are ignored.
            edge_attr: edge features (weights); residual edges are ignored.
            index: a :class:`DWSIndex` of the batch (build it once, share it between layers;
                always takes the gather/scatter path), a :class:`~dws_equiv.uniform.UniformBlocks`
                (takes the dense path, :meth:`forward_dense`) or the batch itself (dense path when
                :meth:`UniformBlocks.detect` finds it uniform, else its :class:`DWSIndex`). Both
                paths compute the same function with the same parameters.

        Shapes: ``x [N, C]``, ``edge_attr [E, C]`` -> ``([N, C'], [E, C'])``; input neurons
        and residual edges get zeros.
        """
        layout = resolve_layout(index, self.max_in, self.max_out, "this DWS layer")
        if isinstance(layout, UniformBlocks):
            self._check_channels(x, edge_attr)
            return self.forward_dense(DenseFeatures.from_flat(x, edge_attr, layout)).to_flat()
        idx = self._index(layout, x, edge_attr)
        objects = self._gather(x, edge_attr, idx)
        node_terms = self._node_terms(objects, idx)
        anchor_terms = self._anchor_terms(objects, idx)
        return self._scatter_outputs(objects, node_terms, anchor_terms, idx)

    # -- the four steps of the forward -----------------------------------------------------------

    def _gather(self, x: Tensor, edge_attr: Tensor, idx: DWSIndex) -> SetObjects:
        """The set objects of the batch (module docstring of :mod:`dws_equiv.index`), pooled too."""
        C, H, r = self.in_channels, idx.num_hidden, self.reduce
        Di, Do, G = idx.max_inputs, idx.max_outputs, idx.num_graphs
        bias = x[idx.hidden_nodes]
        first = x.new_zeros(H * Di, C).index_copy(0, idx.first_edge_slot, edge_attr[idx.first_edges])
        last = x.new_zeros(H * Do, C).index_copy(0, idx.last_edge_slot, edge_attr[idx.last_edges])
        middle = edge_attr[idx.middle_edges]
        incoming = scatter(middle, idx.middle_edge_target, 0, dim_size=H, reduce=r)
        outgoing = scatter(middle, idx.middle_edge_source, 0, dim_size=H, reduce=r)
        node_input = torch.cat([bias, first.view(H, Di * C), last.view(H, Do * C), incoming, outgoing], 1)
        # one scatter pools B, F, L and the middle edges (through ``incoming``: every neuron of a
        # layer has the same in-degree, so pooling the per-neuron pools pools the edges)
        pool_slots = Slots(POOLED, C, Di, Do)
        pooled = scatter(node_input[:, pool_slots.span()], idx.hidden_anchor, 0,
                         dim_size=G * idx.max_depth, reduce=r)
        output_bias = x.new_zeros(G * Do, C).index_copy(0, idx.output_slot, x[idx.output_nodes]).view(G, Do * C)
        return SetObjects(
            node_input=node_input, middle=middle, output_bias=output_bias,
            pooled_bias=pooled[:, pool_slots["B"]], pooled_middle=pooled[:, pool_slots["E"]],
            pooled_first=pooled[idx.first_anchor, pool_slots["F"]],
            pooled_last=pooled[idx.last_anchor, pool_slots["L"]])

    def _node_terms(self, objects: SetObjects, idx: DWSIndex) -> Tensor:
        """Terms with *same neuron* on one hidden layer: ``[H, NODE_OUT]`` from ``[H, NODE_IN]``."""
        Di, Do, dtype, device = idx.max_inputs, idx.max_outputs, objects.middle.dtype, objects.middle.device
        X = objects.node_input
        if self.tying == "relation":
            return X @ self._matrix("n", NODE_OUT, NODE_IN, Di, Do, dtype, device).t()
        out = X.new_zeros(idx.num_hidden, Slots(NODE_OUT, self.out_channels, Di, Do).width)
        for M, h, rows in idx.node_groups():
            out = out.index_copy(0, rows, X[rows] @ self._matrix(f"n{M}_{h}", NODE_OUT, NODE_IN, Di, Do, dtype,
                                                                 device).t())
        return out

    def _anchor_terms(self, objects: SetObjects, idx: DWSIndex) -> Tensor:
        """Pooled terms, one row per (graph, anchor layer): ``[G * max_depth, ANCHOR_OUT]``."""
        C, r = self.in_channels, self.reduce
        Di, Do, G, L = idx.max_inputs, idx.max_outputs, idx.num_graphs, idx.max_depth
        dtype, device = objects.middle.dtype, objects.middle.device
        free = torch.cat([objects.pooled_first, objects.pooled_last, objects.output_bias], 1)   # F, L, O
        if self.tying == "relation":
            per_layer = torch.cat([objects.pooled_bias, objects.pooled_middle], 1).view(G, L, 2 * C)
            counts = _distant_layer_counts(idx.depth, L, dtype) if r != "sum" else None
            context = _relation_context(per_layer, free, counts)
            out = context.view(G * L, -1) @ self._matrix("a", ANCHOR_OUT, RELATION_CONTEXT, Di, Do, dtype, device).t()
            bias = self._bias("a", ANCHOR_OUT, Di, Do, dtype, device)
            return out if bias is None else out + bias
        hidden = L - 1
        context = torch.cat([objects.pooled_bias.view(G, L, C)[:, :hidden].reshape(G, hidden * C),
                             objects.pooled_middle.view(G, L, C)[:, :hidden].reshape(G, hidden * C), free], 1)
        layout = full_context_slots(hidden)
        out = context.new_zeros(G * L, Slots(ANCHOR_OUT, self.out_channels, Di, Do).width)
        for M, a, graphs in idx.anchor_groups():
            key = f"a{M}_{a}"
            y = context[graphs] @ self._matrix(key, ANCHOR_OUT, layout, Di, Do, dtype, device).t()
            bias = self._bias(key, ANCHOR_OUT, Di, Do, dtype, device)
            out = out.index_copy(0, graphs * L + a - 1, y if bias is None else y + bias)
        return out

    def _scatter_outputs(self, objects: SetObjects, node_terms: Tensor, anchor_terms: Tensor,
                         idx: DWSIndex) -> tuple[Tensor, Tensor]:
        """Node terms + broadcast anchor terms, written back to the nodes and edges of the batch."""
        Co, H, G, L = self.out_channels, idx.num_hidden, idx.num_graphs, idx.max_depth
        Di, Do = idx.max_inputs, idx.max_outputs
        node_out, anchor_out = Slots(NODE_OUT, Co, Di, Do), Slots(ANCHOR_OUT, Co, Di, Do)
        # B, F, L and the message to incoming edges (Ud) line up with the anchor's B, F, L and E:
        # a neuron receives the broadcast of its own layer's anchor, and its incoming edges read it
        shared = node_out.span("B", "Ud")
        assert shared == anchor_out.span("B", "E")
        Z = node_terms[:, shared] + anchor_terms[idx.hidden_anchor, shared]
        bias_out = Z[:, node_out["B"]]
        first_out = Z[:, node_out["F"]].reshape(H * Di, Co)
        last_out = Z[:, node_out["L"]].reshape(H * Do, Co)
        to_incoming = Z[:, node_out["Ud"]]
        to_outgoing = node_terms[:, node_out["Us"]]
        output_out = anchor_terms[:, anchor_out["O"]].reshape(G * L * Do, Co)[idx.output_anchor_slot]
        middle_out = self._edge_self(objects.middle, idx) + to_incoming[idx.middle_edge_target] \
            + to_outgoing[idx.middle_edge_source]
        edge_out = objects.middle.new_zeros(idx.num_edges, Co).index_copy(
            0, idx.edge_order,
            torch.cat([middle_out, first_out[idx.first_edge_slot], last_out[idx.last_edge_slot]]))
        node = objects.middle.new_zeros(idx.num_nodes, Co).index_copy(0, idx.node_order,
                                                                       torch.cat([bias_out, output_out]))
        return node, edge_out

    def _edge_self(self, middle: Tensor, idx: DWSIndex) -> Tensor:
        """A middle edge reading itself (same neuron on both of its layers)."""
        Di, Do, dtype = idx.max_inputs, idx.max_outputs, middle.dtype
        if self.tying == "relation":
            return middle @ self._block("e", "self", "c", "self", "c", Di, Do, dtype).t()
        out = middle.new_zeros(middle.size(0), self.out_channels)
        for M, m, ids in idx.edge_groups():
            out = out.index_copy(0, ids, middle[ids] @ self._block(f"e{M}_{m}", "self", "c", "self", "c", Di, Do,
                                                                   dtype).t())
        return out


    # -- the dense path (uniform batches) ---------------------------------------------------

    def forward_dense(self, feats: DenseFeatures) -> DenseFeatures:
        """The layer on the per-layer tensors of a uniform batch: the function :meth:`forward` computes.

        Every term of the gather/scatter path, with "gather the target's (source's) features" a
        broadcast over one axis of a weight block and "pool a neuron's edges" a reduction over
        the other; no index tensors, no padding to ``max_in`` / ``max_out``. Slots that are zero
        in the scatter path by structure (``F`` off layer 1, ``L`` off layer ``M-1``, ``IN`` at
        layer 1, ``OUT`` at layer ``M-1``) are left out, and only the outputs that the scatter
        path writes back are formed. Reductions run in the scatter path's order (a neuron's
        edges first, then the layer's neurons), so ``reduce="max"`` routes gradients alike.

        Args:
            feats: node and edge features of a uniform batch with ``C`` channels.

        Shapes: ``nodes[l] [B, d_l, C]``, ``edges[m-1] [B, d_m, d_{m-1}, C]`` -> the same with
        ``C'`` channels; input neurons get zeros.
        """
        M, C = feats.depth, self.in_channels
        self._check_depth(M)
        check_uniform_sizes(feats.blocks, self.max_in, self.max_out, "this DWS layer")
        if any(t.size(-1) != C for t in feats.nodes + feats.edges):
            raise ValueError(f"DWSLayer({C}, {self.out_channels}) expects {C} channels, got node features "
                             f"{[tuple(t.shape) for t in feats.nodes]} and edge features "
                             f"{[tuple(t.shape) for t in feats.edges]}")
        inputs, mixes = self._dense_inputs(feats)
        anchors = self._dense_anchor_terms(feats, inputs)
        shared = None
        if self.tying == "relation":            # one matrix for every layer: built once, sliced per layer
            Di, Do, x = feats.widths[0], feats.widths[-1], feats.nodes[1]
            shared = self._matrix("n", NODE_OUT, NODE_IN, Di, Do, x.dtype, x.device)
        terms = [self._dense_node_terms(M, h, inputs[h - 1], feats.widths, shared) for h in range(1, M)]
        return self._dense_outputs(feats, terms, anchors, mixes)

    def _dense_inputs(self, feats: DenseFeatures) -> tuple[list[dict[str, Tensor]], list[Tensor]]:
        """Per hidden layer ``h = 1..M-1`` its :data:`NODE_IN` slots that exist there (``[B, d_h, k]`` each),
        and every middle block's edge-self term (its channel mixing, :func:`mix_and_pool`)."""
        M, W, r = feats.depth, feats.edges, self.reduce
        Di, Do = feats.widths[0], feats.widths[-1]
        mixes, to_target, to_source = [], {}, {}
        for m in range(2, M):                                         # middle blocks W_2 .. W_{M-1}
            E = self._block(self._key("e", M, m), "self", "c", "self", "c", Di, Do, W[m - 1].dtype)
            mix, to_target[m], to_source[m - 1] = mix_and_pool(W[m - 1], E, r)
            mixes.append(mix)
        out = []
        for h in range(1, M):
            slots = {"B": feats.nodes[h]}
            if h == 1:
                slots["F"] = W[0].flatten(2)                          # W_1 rows, input position major
            if h == M - 1:
                slots["L"] = W[M - 1].transpose(1, 2).flatten(2)      # W_M columns, output position major
            if h >= 2:
                slots["IN"] = to_target[h]                            # pooled incoming middle edges
            if h <= M - 2:
                slots["OUT"] = to_source[h]                           # pooled outgoing middle edges
            out.append(slots)
        return out, mixes

    def _dense_node_terms(self, M: int, h: int, inputs: dict[str, Tensor], widths,
                          shared: Tensor | None) -> dict[str, Tensor]:
        """Node terms of hidden layer ``h``: its :data:`NODE_OUT` slots that are read, ``[B, d_h, k]`` each.

        ``shared`` is the full ``NODE_OUT x NODE_IN`` matrix under ``tying="relation"`` (sliced
        here, so every parameter stays in the autograd graph, with a zero gradient where a slot is
        absent, as in the scatter path); ``None`` under ``tying="full"``, whose group ``n{M}_{h}``
        holds exactly the blocks of the slots present.
        """
        Di, Do = widths[0], widths[-1]
        present_in, present_out = _node_present(M, h)
        in_layout = tuple(s for s in NODE_IN if s[0] in present_in)
        out_layout = tuple(s for s in NODE_OUT if s[0] in present_out)
        X = torch.cat([inputs[name] for name, _ in in_layout], -1)
        if shared is None:
            W = self._matrix(self._key("n", M, h), out_layout, in_layout, Di, Do, X.dtype, X.device)
        else:
            rows = Slots(NODE_OUT, self.out_channels, Di, Do)
            cols = Slots(NODE_IN, self.in_channels, Di, Do)
            W = torch.cat([shared[:, cols[name]] for name, _ in in_layout], 1)
            W = torch.cat([W[rows[name]] for name, _ in out_layout], 0)
        Y = X @ W.t()
        slots = Slots(out_layout, self.out_channels, Di, Do)
        return {name: Y[..., slots[name]] for name, _ in out_layout}

    def _dense_anchor_terms(self, feats: DenseFeatures, inputs: list[dict[str, Tensor]]) -> Tensor:
        """Pooled terms of every anchor layer ``a = 1..M``: ``[B, M, ANCHOR_OUT]``."""
        M, C, r = feats.depth, self.in_channels, self.reduce
        B, Di, Do = feats.blocks.num_graphs, feats.widths[0], feats.widths[-1]
        dtype, device = feats.nodes[1].dtype, feats.nodes[1].device
        pooled = [{k: reduce_dim(v, 1, r) for k, v in s.items() if k != "OUT"} for s in inputs]
        zero = feats.nodes[1].new_zeros(B, C)
        pb = [p["B"] for p in pooled]
        pe = [p.get("IN", zero) for p in pooled]                      # layer 1 has no incoming middle edge
        free = torch.cat([pooled[0]["F"], pooled[-1]["L"], feats.nodes[M].reshape(B, Do * C)], 1)
        if self.tying == "relation":
            per_layer = torch.stack([torch.cat([b, e], 1) for b, e in zip(pb, pe)]
                                    + [feats.nodes[1].new_zeros(B, 2 * C)], 1)          # layer M pools nothing
            counts = None if r == "sum" else _distant_layer_counts(torch.full((1,), M, device=device), M, dtype)
            context = _relation_context(per_layer, free, counts)
            out = context @ self._matrix("a", ANCHOR_OUT, RELATION_CONTEXT, Di, Do, dtype, device).t()
            bias = self._bias("a", ANCHOR_OUT, Di, Do, dtype, device)
            return out if bias is None else out + bias
        context, layout, rows = torch.cat(pb + pe + [free], 1), full_context_slots(M - 1), []
        for a in range(1, M + 1):
            y = context @ self._matrix(f"a{M}_{a}", ANCHOR_OUT, layout, Di, Do, dtype, device).t()
            bias = self._bias(f"a{M}_{a}", ANCHOR_OUT, Di, Do, dtype, device)
            rows.append(y if bias is None else y + bias)
        return torch.stack(rows, 1)

    def _dense_outputs(self, feats: DenseFeatures, terms: list[dict[str, Tensor]], anchors: Tensor,
                       mixes: list[Tensor]) -> DenseFeatures:
        """Node terms plus the broadcast anchor terms (and the middle blocks' edge-self terms ``mixes``),
        as new per-layer / per-block tensors."""
        M, B, Co, widths = feats.depth, feats.blocks.num_graphs, self.out_channels, feats.widths
        Di, Do = widths[0], widths[-1]
        slots = Slots(ANCHOR_OUT, Co, Di, Do)

        def anchor(a: int, name: str) -> Tensor:                      # [B, 1, k]: broadcast over layer a
            return anchors[:, a - 1, slots[name]].unsqueeze(1)

        nodes = [feats.nodes[1].new_zeros(B, Di, Co)]
        nodes += [terms[h - 1]["B"] + anchor(h, "B") for h in range(1, M)]
        nodes.append(anchors[:, M - 1, slots["O"]].reshape(B, Do, Co))
        first = (terms[0]["F"] + anchor(1, "F")).view(B, widths[1], Di, Co)
        last = (terms[M - 2]["L"] + anchor(M - 1, "L")).view(B, widths[M - 1], Do, Co).transpose(1, 2)
        middle = []
        for m, out in zip(range(2, M), mixes):                        # W_m: self + target's Ud + source's Us
            out.add_((terms[m - 1]["Ud"] + anchor(m, "E")).unsqueeze(2))
            middle.append(out.add_(terms[m - 2]["Us"].unsqueeze(1)))
        if M == 2 and self.tying == "relation":
            # no middle edge: the scatter path's edge-self matmul runs on zero rows, which still gives
            # its parameter a (zero) gradient; DistributedDataParallel needs every parameter to get one
            E = self._block("e", "self", "c", "self", "c", Di, Do, anchors.dtype)
            first = first + (anchors.new_zeros(0, E.size(1)) @ E.t()).sum()
        return DenseFeatures(feats.blocks, tuple(nodes), (first, *middle, last))


def _relation_context(per_layer: Tensor, free: Tensor, counts: Tensor | None) -> Tensor:
    """The pooled context of every anchor row under ``tying="relation"`` (:data:`RELATION_CONTEXT`).

    Args:
        per_layer: pooled ``(B, E)`` of every layer ``1..L`` of every graph.
        free: pooled ``F``, ``L`` and the output biases ``O`` of every graph.
        counts: from :func:`_distant_layer_counts` (the distant layers are averaged), or ``None``
            (summed, ``reduce="sum"``).

    Shapes: ``per_layer [G, L, 2C]``, ``free [G, k]``, ``counts [G or 1, L, 2]`` ->
    ``[G, L, 8C + k]``.
    """
    G, L, C2 = per_layer.shape
    padded = Fn.pad(per_layer, (0, 0, 1, 1))
    same, prev, nxt = padded[:, 1:L + 1], padded[:, :L], padded[:, 2:]
    distant = per_layer.sum(1, keepdim=True) - same - prev - nxt
    if counts is not None:                       # mean over the distant layers that exist in each graph
        distant = (distant.view(G, L, 2, C2 // 2) / counts.unsqueeze(-1)).view(G, L, C2)
    return torch.cat([same, prev, nxt, distant, free.unsqueeze(1).expand(G, L, free.size(1))], 2)


def _distant_layer_counts(depth: Tensor, L: int, dtype) -> Tensor:
    """``[G, L, 2]``: for anchor layer a of each graph, how many hidden layers (B) and middle
    layers (E) of that graph lie two or more layers away (at least 1, to divide by)."""
    k = torch.arange(1, L + 1, device=depth.device)
    far = ((k.view(-1, 1) - k.view(1, -1)).abs() >= 2).to(dtype)          # [a, k]
    last_hidden = depth.view(-1, 1) - 1
    has_bias = (k.view(1, -1) <= last_hidden).to(dtype)
    has_middle = ((k.view(1, -1) >= 2) & (k.view(1, -1) <= last_hidden)).to(dtype)
    return torch.stack([has_bias @ far.t(), has_middle @ far.t()], -1).clamp(min=1)
