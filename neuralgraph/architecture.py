"""Architecture descriptions: what a neural graph needs to rebuild its model.

A supported model is a chain of *parametric layers* (Linear, Conv1d, Conv2d),
each followed by parameter-free modules (activations, pooling, flatten,
dropout). An :class:`Architecture` records exactly that, is hashable (so
identical architectures can be grouped for fast batched paths) and can be
serialised to plain dicts for dataset files.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .deprecation import warn_renamed

__all__ = [
    "ACTIVATIONS",
    "NORM_KINDS",
    "Residual",
    "Sine",
    "Offset",
    "Reorder",
    "ModuleSpec",
    "ModuleKind",
    "MODULE_KINDS",
    "norm_functional",
    "LayerSpec",
    "Architecture",
    "mlp_architecture",
    "leaf_modules",
]

#: Activation kind -> integer id stored per node (``node_act``); 0 = none.
ACTIVATIONS: dict[str, int] = {
    "identity": 0,
    "relu": 1,
    "gelu": 2,
    "silu": 3,
    "tanh": 4,
    "sigmoid": 5,
    "leaky_relu": 6,
    "sine": 7,
}


#: Normalisation modules: their per-neuron (weight, bias, running_mean, running_var) become node features.
NORM_KINDS = ("batchnorm1d", "batchnorm2d", "layernorm")


class Sine(nn.Module):
    """``sin(w0 * x)``, the SIREN activation (Sitzmann et al., 2020)."""

    def __init__(self, w0: float = 30.0) -> None:
        super().__init__()
        self.w0 = _finite(w0, "Sine w0")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``sin(w0 * x)``, elementwise.

        Shapes: ``x [*]`` -> ``[*]``.
        """
        return torch.sin(self.w0 * x)

    def extra_repr(self) -> str:
        """``w0=...`` in the module's ``repr``."""
        return f"w0={self.w0}"


# Named as its module kind "offset", which dataset and checkpoint files store, and the INR fits' ``offset``.
class Offset(nn.Module):
    """``x + value``: a constant added to every output, e.g. the ``+0.5`` that maps a SIREN's output to pixel values.

    Parameter-free (the value is part of the architecture, like ``Sine``'s ``w0``),
    so an INR rebuilt from its neural graph renders the image itself.
    """

    def __init__(self, value: float = 0.5) -> None:
        super().__init__()
        self.value = _finite(value, "Offset value")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x + value``, elementwise.

        Shapes: ``x [*]`` -> ``[*]``.
        """
        return x + self.value

    def extra_repr(self) -> str:
        """``value=...`` in the module's ``repr``."""
        return f"value={self.value}"


class Residual(nn.Sequential):
    """``x + body(x)``: a residual block whose body is a chain of layers of equal in/out width.

    In a neural graph the skip connection becomes one residual edge per neuron
    (``edge_type == EDGE_RESIDUAL``, constant weight 1) from the block's input
    neurons to its output neurons, and the two layers are permuted together.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x + body(x)``, the body being the block's layers in order.

        Shapes: ``x [*, d]`` -> ``[*, d]`` (the body keeps the width).
        """
        return x + super().forward(x)


class Reorder(nn.Module):
    """``x[..., order]``: a network that reads its inputs in another order.

    The coordinate convention of an INR: this library's image INRs take ``(row, col)``
    coordinates (:func:`neuralgraph.inr.image_grid`), DWSNets' / neural-graphs' take
    ``(x, y) = (col, row)``. An INR imported in their convention is stored with
    ``Reorder((1, 0))`` before its first layer (``Architecture.pre``), so the model that
    :func:`neuralgraph.to_model` rebuilds takes ``(row, col)`` and renders their image,
    while its graph keeps their weights and input neurons as they are. Allowed only before
    the first layer, a Linear one, with one entry per input (``Architecture`` refuses it
    anywhere else: after a layer it would permute neurons the graph does not permute).

    Args:
        order: a permutation of ``0 .. d-1`` (``d`` inputs); output ``j`` is input ``order[j]``.
    """

    def __init__(self, order: Sequence[int] = (1, 0)) -> None:
        super().__init__()
        self.order = _permutation(order, "Reorder order")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x[..., order]``.

        Shapes: ``x [*, d]`` -> ``[*, d]``.
        """
        if x.shape[-1] != len(self.order):
            raise ValueError(f"Reorder{self.order} reorders {len(self.order)} inputs, got a tensor of shape "
                             f"{tuple(x.shape)}")
        return x[..., list(self.order)]

    def extra_repr(self) -> str:
        """``order=(...)`` in the module's ``repr``."""
        return f"order={self.order}"


def _permutation(order: Any, what: str) -> tuple[int, ...]:
    """``order`` as a tuple of ints, or a ``ValueError`` naming ``what`` unless it permutes ``0 .. d-1``."""
    if isinstance(order, (str, bytes)) or not isinstance(order, Sequence) or not all(_is_int(i) for i in order) \
            or sorted(int(i) for i in order) != list(range(len(order))) or not order:
        raise ValueError(f"{what} must be a permutation of 0 .. d-1 (e.g. (1, 0)), got {order!r}")
    return tuple(int(i) for i in order)


_BLOCK_START, _BLOCK_END = object(), object()


@dataclass(frozen=True)
class ModuleSpec:
    """A parameter-free module: ``kind`` plus its hyper-parameters."""

    kind: str
    args: tuple = ()

    @property
    def activation_id(self) -> int | None:
        """The activation's id in :data:`ACTIVATIONS` (stored per neuron in the graph), or ``None`` when this
        module is not an activation (``identity`` included).
        """
        return ACTIVATIONS.get(self.kind) if self.kind != "identity" else None

    @property
    def is_norm(self) -> bool:
        """Normalisation layers carry per-neuron parameters (stored in ``node_norm``)."""
        return self.kind in NORM_KINDS

    def build(self) -> nn.Module:
        """The ``nn.Module`` this spec describes."""
        if self.kind not in MODULE_KINDS:
            raise ValueError(f"unknown module kind {self.kind!r}")
        return MODULE_KINDS[self.kind].build(self.args)

    def functional(self) -> Callable[[Tensor], Tensor]:
        """The module as a function of its input (eval mode: dropout is the identity).

        Normalisations have per-neuron parameters: use :func:`norm_functional`.
        """
        kind = MODULE_KINDS.get(self.kind)
        if kind is None or kind.functional is None:
            raise ValueError(f"{self.kind!r} has no parameter-free functional form")
        return kind.functional(self.args)

    @staticmethod
    def from_module(module: nn.Module, where: str) -> "ModuleSpec":
        """Describe a parameter-free module, or raise naming it and ``where``."""
        for name, kind in MODULE_KINDS.items():
            if isinstance(module, kind.classes):
                return ModuleSpec(name, kind.args(module, where))
        raise ValueError(
            f"{where}: unsupported module {type(module).__name__} ({module}); "
            "neural graphs support Linear, Conv1d, Conv2d, elementwise "
            f"activations ({', '.join(a for a in ACTIVATIONS if a != 'identity')}), "
            "BatchNorm1d/2d, LayerNorm, Flatten, global average pooling, Dropout, Identity and ng.Offset"
        )


@dataclass(frozen=True)
class ModuleKind:
    """One row of :data:`MODULE_KINDS`: how a parameter-free module kind is read, built and run.

    Args:
        classes: the ``nn.Module`` classes of the kind.
        args: ``(module, where) -> args`` (validated; ``ValueError`` naming ``where``).
        build: ``args -> nn.Module``.
        functional: ``args -> (Tensor -> Tensor)``, or ``None`` for normalisations
            (their per-neuron parameters live in ``node_norm``; see :func:`norm_functional`).
    """

    classes: tuple[type, ...]
    args: Callable[[nn.Module, str], tuple]
    build: Callable[[tuple], nn.Module]
    functional: Callable[[tuple], Callable[[Tensor], Tensor]] | None


def _global_pool_args(module: nn.Module, where: str) -> tuple:
    size = module.output_size
    sizes = size if isinstance(size, tuple) else (size,)
    if any(s != 1 for s in sizes):
        raise ValueError(f"{where}: {module} is supported only as global pooling (output_size=1), "
                         f"got output_size={size}")
    return ()


def _layernorm_args(module: nn.LayerNorm, where: str) -> tuple:
    if len(module.normalized_shape) != 1:
        raise ValueError(f"{where}: LayerNorm over {tuple(module.normalized_shape)} is supported only "
                         "over the neurons of one layer (a 1-d normalized_shape)")
    return (module.normalized_shape[0], module.eps, module.elementwise_affine, module.bias is not None)


def _batchnorm_args(module: nn.Module, where: str) -> tuple:
    return (module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)


def _no_args(module: nn.Module, where: str) -> tuple:
    return ()


def _identity(h: Tensor) -> Tensor:
    return h


#: Every parameter-free module kind a neural graph describes: kind -> :class:`ModuleKind`.
#: Conversion (``ModuleSpec.from_module``), rebuilding (``ModuleSpec.build``) and the
#: functional interpreter (:mod:`neuralgraph.functional`: probes, zoo training) read it.
#: Parametric layers (Linear, Conv1d, Conv2d) are :class:`LayerSpec`; residual blocks are
#: ``Architecture.residuals``.
MODULE_KINDS: dict[str, ModuleKind] = {
    "relu": ModuleKind((nn.ReLU,), _no_args, lambda a: nn.ReLU(), lambda a: F.relu),
    "gelu": ModuleKind((nn.GELU,), lambda m, w: (m.approximate,),
                       lambda a: nn.GELU(approximate=a[0] if a else "none"),
                       lambda a: partial(F.gelu, approximate=a[0] if a else "none")),
    "silu": ModuleKind((nn.SiLU,), _no_args, lambda a: nn.SiLU(), lambda a: F.silu),
    "tanh": ModuleKind((nn.Tanh,), _no_args, lambda a: nn.Tanh(), lambda a: torch.tanh),
    "sigmoid": ModuleKind((nn.Sigmoid,), _no_args, lambda a: nn.Sigmoid(), lambda a: torch.sigmoid),
    "leaky_relu": ModuleKind(
        (nn.LeakyReLU,), lambda m, w: (_finite(m.negative_slope, f"{w}: LeakyReLU negative_slope"),),
        lambda a: nn.LeakyReLU(_finite(a[0], "LeakyReLU negative_slope") if a else 0.01),
        lambda a: partial(F.leaky_relu, negative_slope=a[0] if a else 0.01)),
    "sine": ModuleKind((Sine,), lambda m, w: (_finite(m.w0, f"{w}: Sine w0"),), lambda a: Sine(a[0] if a else 30.0),
                       lambda a: (lambda h, w0=(a[0] if a else 30.0): torch.sin(w0 * h))),
    "offset": ModuleKind((Offset,), lambda m, w: (_finite(m.value, f"{w}: Offset value"),),
                         lambda a: Offset(a[0] if a else 0.5), lambda a: (lambda h, v=(a[0] if a else 0.5): h + v)),
    "reorder": ModuleKind((Reorder,), lambda m, w: _permutation(m.order, f"{w}: Reorder order"),
                          lambda a: Reorder(a or (1, 0)),
                          lambda a: (lambda h, o=list(_permutation(a or (1, 0), "reorder")): h[..., o])),
    "flatten": ModuleKind((nn.Flatten,), lambda m, w: (m.start_dim, m.end_dim), lambda a: nn.Flatten(*a),
                          lambda a: (lambda h, s=(a[0] if a else 1), e=(a[1] if len(a) > 1 else -1):
                                     h.flatten(s, e))),
    "global_avg_pool1d": ModuleKind((nn.AdaptiveAvgPool1d,), _global_pool_args, lambda a: nn.AdaptiveAvgPool1d(1),
                                    lambda a: (lambda h: h.mean(-1, keepdim=True))),
    "global_avg_pool2d": ModuleKind((nn.AdaptiveAvgPool2d,), _global_pool_args, lambda a: nn.AdaptiveAvgPool2d(1),
                                    lambda a: (lambda h: h.mean((-2, -1), keepdim=True))),
    "dropout": ModuleKind((nn.Dropout,), lambda m, w: (float(m.p),), lambda a: nn.Dropout(a[0] if a else 0.5),
                          lambda a: _identity),
    "identity": ModuleKind((nn.Identity,), _no_args, lambda a: nn.Identity(), lambda a: _identity),
    "batchnorm1d": ModuleKind((nn.BatchNorm1d,), _batchnorm_args,
                              lambda a: nn.BatchNorm1d(a[0], eps=a[1], momentum=a[2], affine=a[3],
                                                       track_running_stats=a[4]), None),
    "batchnorm2d": ModuleKind((nn.BatchNorm2d,), _batchnorm_args,
                              lambda a: nn.BatchNorm2d(a[0], eps=a[1], momentum=a[2], affine=a[3],
                                                       track_running_stats=a[4]), None),
    "layernorm": ModuleKind((nn.LayerNorm,), _layernorm_args,
                            lambda a: nn.LayerNorm(a[0], eps=a[1], elementwise_affine=a[2], bias=a[3]), None),
}


def norm_functional(spec: ModuleSpec, h: Tensor, norm: Tensor) -> Tensor:
    """A normalisation in eval mode from its ``node_norm`` rows ``norm [C, 4]`` (weight, bias, mean, var).

    BatchNorm uses the running statistics; LayerNorm normalises over the neurons (dim -1).
    Shapes: ``h [n, C, *spatial]`` (BatchNorm) or ``[n, C]`` (LayerNorm), same out.
    """
    if spec.kind in ("batchnorm1d", "batchnorm2d"):
        eps = spec.args[1]
        shape = (-1,) + (1,) * (h.dim() - 2)
        w, b, mean, var = (norm[:, k].reshape(shape) for k in range(4))
        return (h - mean) / torch.sqrt(var + eps) * w + b
    if spec.kind == "layernorm":
        eps = spec.args[1]
        mu = h.mean(-1, keepdim=True)
        var = h.var(-1, unbiased=False, keepdim=True)
        return (h - mu) / torch.sqrt(var + eps) * norm[:, 0] + norm[:, 1]
    raise ValueError(f"{spec.kind!r} is not a normalisation")


#: Parametric layer kinds and their number of spatial dimensions.
_LAYER_DIMS = {"linear": 0, "conv1d": 1, "conv2d": 2}


def _is_int(value: Any) -> bool:
    """An integer (Python or numpy), not a bool, a float or a string."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class LayerSpec:
    """A parametric layer and the parameter-free modules that follow it."""

    kind: str  # "linear" | "conv1d" | "conv2d"
    in_features: int
    out_features: int
    kernel_size: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] | str = ()
    dilation: tuple[int, ...] = ()
    bias: bool = True
    post: tuple[ModuleSpec, ...] = ()

    def __post_init__(self) -> None:
        who = f"LayerSpec ({self.kind})"
        dims = _LAYER_DIMS.get(self.kind)
        if dims is None:
            raise ValueError(f"LayerSpec: kind must be one of {', '.join(_LAYER_DIMS)}, got {self.kind!r}")
        for name in ("in_features", "out_features"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{who}: {name} must be an integer >= 1, got {value!r}")
            object.__setattr__(self, name, int(value))         # numpy integers become ints (hash, ==)
        sizes = [("kernel_size", 1), ("stride", 1), ("dilation", 1)]
        if not isinstance(self.padding, str):
            sizes.append(("padding", 0))
        elif not dims or self.padding not in ("same", "valid"):
            raise ValueError(f"{who}: padding must be 'same', 'valid' or {dims} integers >= 0, got {self.padding!r}")
        for name, low in sizes:
            value = getattr(self, name)
            if not isinstance(value, tuple) or len(value) != dims or not all(_is_int(v) and v >= low for v in value):
                raise ValueError(f"{who}: {name} must be a tuple of {dims} integer{'s' if dims != 1 else ''} "
                                 f">= {low}, got {value!r}")
            object.__setattr__(self, name, tuple(int(v) for v in value))
        if not isinstance(self.bias, bool):
            raise ValueError(f"{who}: bias must be a bool, got {self.bias!r}")
        if not isinstance(self.post, tuple) or not all(isinstance(m, ModuleSpec) for m in self.post):
            raise ValueError(f"{who}: post must be a tuple of ModuleSpec, got {self.post!r}")

    @property
    def weights_per_edge(self) -> int:
        """Number of weights per (out, in) pair, i.e. per edge of the graph: 1 for Linear, kernel area for conv."""
        return math.prod(self.kernel_size) if self.kernel_size else 1

    @property
    def taps(self) -> int:
        """Deprecated name of :attr:`weights_per_edge`."""
        warn_renamed("LayerSpec.taps", "LayerSpec.weights_per_edge")
        return self.weights_per_edge

    @property
    def is_conv(self) -> bool:
        """Whether the layer is a convolution (``conv1d`` / ``conv2d``) rather than ``linear``."""
        return self.kind != "linear"

    @property
    def activation_id(self) -> int:
        """Id of the first activation after this layer (0 when there is none)."""
        for m in self.post:
            if m.activation_id is not None:
                return m.activation_id
        return 0

    @property
    def norm(self) -> ModuleSpec | None:
        """The normalisation module after this layer, if any."""
        return next((m for m in self.post if m.is_norm), None)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """Shape of the layer's weight: ``(out, in)`` for Linear, ``(out, in, *kernel_size)`` for conv."""
        return (self.out_features, self.in_features, *self.kernel_size)

    def build(self) -> nn.Module:
        """A freshly initialised ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d`` of this spec (without the post-modules)."""
        if self.kind == "linear":
            return nn.Linear(self.in_features, self.out_features, bias=self.bias)
        conv = {"conv1d": nn.Conv1d, "conv2d": nn.Conv2d}[self.kind]
        return conv(
            self.in_features,
            self.out_features,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            bias=self.bias,
        )


@dataclass(frozen=True)
class Architecture:
    """A chain of :class:`LayerSpec` (plus parameter-free modules before the first)."""

    layers: tuple[LayerSpec, ...]
    pre: tuple[ModuleSpec, ...] = field(default=())
    #: residual blocks as (start, end, split): the skip goes from graph layer ``start``
    #: to graph layer ``end``; the block holds ``layers[start:end]`` and the first
    #: ``split`` post-modules of ``layers[end - 1]`` (the rest follow the block).
    residuals: tuple[tuple[int, int, int], ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("an architecture needs at least one Linear/Conv layer")
        if not all(isinstance(l, LayerSpec) for l in self.layers):
            raise ValueError(f"Architecture: layers must be LayerSpec objects, got {self.layers!r}")
        for block in self.residuals:
            if len(block) != 3 or not all(_is_int(v) for v in block):
                raise ValueError(f"residual block {block!r} must be three integers (start, end, split)")
            start, end, _ = block
            if not 0 <= start < end <= len(self.layers):
                raise ValueError(f"residual block ({start}, {end}) is outside layers 0..{len(self.layers)}")
            if self.widths[start] != self.widths[end]:
                raise ValueError(f"residual block from layer {start} ({self.widths[start]} neurons) to layer "
                                 f"{end} ({self.widths[end]} neurons) needs equal widths")
            problem = _spatial_change([(f"layer {m}: {l.kind}", l) for m, l in
                                       enumerate(self.layers[start:end], start=start + 1)])
            if problem:
                raise ValueError(f"residual block ({start}, {end}) changes the spatial size ({problem}), so "
                                 f"x + body(x) cannot add; {_SAME_SIZE}")
        self._check_reorders()
        for i in range(1, len(self.layers)):
            a, b = self.layers[i - 1], self.layers[i]
            if a.out_features != b.in_features:
                raise ValueError(
                    f"layer {i} ({b.kind}) expects {b.in_features} inputs but layer "
                    f"{i - 1} ({a.kind}) has {a.out_features} outputs"
                )

    def _check_reorders(self) -> None:
        """:class:`Reorder` only before the first layer, a Linear one, with one entry per input."""
        for m, l in enumerate(self.layers, start=1):
            if any(p.kind == "reorder" for p in l.post):
                raise ValueError(f"layer {m}: Reorder after a layer is not supported (it would permute neurons that "
                                 "the graph does not permute); a Reorder belongs before the first layer")
        for p in self.pre:
            if p.kind != "reorder":
                continue
            first = self.layers[0]
            if first.kind != "linear":
                raise ValueError(f"a Reorder before a {first.kind} layer is not supported; it reorders the inputs "
                                 "of a Linear first layer (e.g. an INR's coordinates)")
            if len(p.args) != first.in_features:
                raise ValueError(f"Reorder{tuple(p.args)} reorders {len(p.args)} inputs but the first layer has "
                                 f"{first.in_features}")

    @property
    def input_order(self) -> tuple[int, ...]:
        """Which of its inputs the first layer reads at each input neuron: ``(0, 1, ..., d_0 - 1)``
        unless ``pre`` holds a :class:`Reorder` (``(1, 0)``: an INR of (x = col, y = row) coordinates
        given this library's (row, col) ones). Input neuron ``i`` of the graph is input
        ``input_order[i]`` of the model :meth:`build` returns.
        """
        order = tuple(range(self.layers[0].in_features))
        for p in self.pre:
            if p.kind == "reorder":
                order = tuple(order[i] for i in p.args)
        return order

    @property
    def widths(self) -> tuple[int, ...]:
        """Neurons per graph layer: ``(d_0, d_1, ..., d_M)``."""
        return (self.layers[0].in_features, *(l.out_features for l in self.layers))

    @property
    def num_layers(self) -> int:
        """M, the number of parametric layers (graph layers are 0..M)."""
        return len(self.layers)

    @property
    def has_norm(self) -> bool:
        """Whether any layer is followed by a normalisation module (BatchNorm / LayerNorm)."""
        return any(l.norm is not None for l in self.layers)

    @property
    def edge_dim(self) -> int:
        """Edge features of its graphs unpadded (``to_graph``'s default ``edge_dim``): the largest
        :attr:`LayerSpec.weights_per_edge` over the layers (1 for an MLP, the largest kernel area for a CNN)."""
        return max(l.weights_per_edge for l in self.layers)

    @property
    def max_taps(self) -> int:
        """Deprecated name of :attr:`edge_dim`."""
        warn_renamed("Architecture.max_taps", "Architecture.edge_dim")
        return self.edge_dim

    @property
    def num_nodes(self) -> int:
        """Neurons of the graph: ``sum(widths)`` (inputs, hidden and outputs)."""
        return sum(self.widths)

    @property
    def num_edges(self) -> int:
        """Edges of the graph: one per weight (kernel) plus one per residual skip."""
        return (sum(l.in_features * l.out_features for l in self.layers)
                + sum(self.widths[s] for s, _, _ in self.residuals))

    def difference(self, other: "Architecture", here: str = "here", there: str = "in the other") -> str:
        """What first differs from ``other``, e.g. ``"layer 1 post relu() here, sine(30.0) in train.pt"``
        (``""`` when equal); ``here`` / ``there`` name the two sides in the text.
        """
        def show(v: Any) -> str:
            if isinstance(v, tuple) and v and all(isinstance(m, ModuleSpec) for m in v):
                return ", ".join(f"{m.kind}({', '.join(map(repr, m.args))})" for m in v)
            return "nothing" if v == () else repr(v)

        if self.num_layers != other.num_layers:
            return f"{self.num_layers} layers {here}, {other.num_layers} {there}"
        for m, (a, b) in enumerate(zip(self.layers, other.layers), start=1):
            for f in ("kind", "in_features", "out_features", "kernel_size", "stride", "padding", "dilation", "bias",
                      "post"):
                if getattr(a, f) != getattr(b, f):
                    return f"layer {m} {f} {show(getattr(a, f))} {here}, {show(getattr(b, f))} {there}"
        if self.input_order != other.input_order:
            a, b = self.input_order, other.input_order
            return (f"input order {a} {here}, {b} {there}: the networks read their inputs in another order"
                    + (f" (image INRs of {_COORDS.get(a, a)} coordinates {here}, {_COORDS.get(b, b)} {there}; "
                       f"neuralgraph.inr.coords.convert_coordinates converts one into the other exactly)"
                       if len(a) == 2 else ""))
        for f in ("pre", "residuals"):
            if getattr(self, f) != getattr(other, f):
                return f"{f} {show(getattr(self, f))} {here}, {show(getattr(other, f))} {there}"
        return ""

    def build(self) -> nn.Sequential:
        """A freshly initialised ``nn.Sequential`` of this architecture."""
        modules: list[nn.Module] = [m.build() for m in self.pre]
        blocks = {start: (end, split) for start, end, split in self.residuals}
        j = 0
        while j < len(self.layers):
            if j in blocks:
                end, split = blocks[j]
                body: list[nn.Module] = []
                for k in range(j, end):
                    body.append(self.layers[k].build())
                    post = self.layers[k].post if k < end - 1 else self.layers[k].post[:split]
                    body.extend(m.build() for m in post)
                modules.append(Residual(*body))
                modules.extend(m.build() for m in self.layers[end - 1].post[split:])
                j = end
            else:
                modules.append(self.layers[j].build())
                modules.extend(m.build() for m in self.layers[j].post)
                j += 1
        return nn.Sequential(*modules)

    @staticmethod
    def from_module(model: nn.Module) -> "Architecture":
        """Describe ``model`` (an ``nn.Sequential``, nested ones are flattened).

        The Sequential is walked by position, as its ``forward`` runs it: a
        parameter-free module used at several positions counts at each of them,
        while a parametric layer used twice (tied weights) is refused. The chain
        must be runnable on a batched input (``[B, features]`` for Linear,
        ``[B, C, L]`` / ``[B, C, H, W]`` for Conv1d / Conv2d): the rank of the
        tensor flowing through each module is checked. All parameters and float
        buffers must share one dtype.
        """
        leaves = leaf_modules(model, markers=True)
        _check_one_dtype(leaves)
        pre: list[ModuleSpec] = []
        layers: list[dict[str, Any]] = []
        wheres: list[str] = []                # where each layer sits in the model, e.g. model[2][0]
        residuals: list[tuple[int, int, int]] = []
        block: tuple[str, int] | None = None  # (where, first layer) of the open residual block
        flow = _Flow()
        for where, module in leaves:
            if module is _BLOCK_START:
                if block is not None:
                    raise ValueError(f"{where}: nested residual blocks are not supported")
                block = (where, len(layers))
                continue
            if module is _BLOCK_END:
                residuals.append(_close_block(where, block[1], layers, wheres))
                block = None
                continue
            if block is not None and block[1] == len(layers) and not isinstance(module, _PARAMETRIC):
                raise ValueError(f"{where}: a residual block must start with a Linear/Conv layer")
            if block is not None and isinstance(module, (nn.Flatten, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
                raise ValueError(f"{where}: pooling/flatten inside a residual block is not supported")
            if isinstance(module, _PARAMETRIC):
                _check_parameters(module, where)
                spec = _layer_dict(module, where)
                flow.layer(spec["kind"], where)
                if layers and layers[-1]["out_features"] != spec["in_features"]:
                    prev = layers[-1]
                    raise ValueError(
                        f"{where}: shape mismatch, {type(module).__name__} expects "
                        f"{spec['in_features']} inputs but the previous {prev['kind']} layer "
                        f"has {prev['out_features']} outputs"
                    )
                layers.append(spec)
                wheres.append(where)
                continue
            m = ModuleSpec.from_module(module, where)
            if m.is_norm:
                if not layers:
                    raise ValueError(f"{where}: {m.kind} before the first Linear/Conv layer is not supported")
                if m.args[0] != layers[-1]["out_features"]:
                    raise ValueError(f"{where}: {type(module).__name__} normalises {m.args[0]} features but the "
                                     f"layer before it has {layers[-1]['out_features']} outputs")
                if any(p.is_norm for p in layers[-1]["post"]):
                    raise ValueError(f"{where}: a second normalisation after one layer is not supported")
                _check_parameters(module, where)
            if layers:
                flow.module(m, where)
            (layers[-1]["post"] if layers else pre).append(m)
        if not layers:
            raise ValueError("model has no Linear or Conv layer")
        return Architecture(
            layers=tuple(LayerSpec(**{**l, "post": tuple(l["post"])}) for l in layers),
            pre=tuple(pre),
            residuals=tuple(residuals),
        )

    def to_dict(self) -> dict:
        """Plain-Python form (for dataset files and checkpoints)."""
        def mod(m: ModuleSpec) -> list:
            return [m.kind, list(m.args)]

        return {
            "pre": [mod(m) for m in self.pre],
            "layers": [
                {
                    "kind": l.kind, "in_features": l.in_features, "out_features": l.out_features,
                    "kernel_size": list(l.kernel_size), "stride": list(l.stride),
                    "padding": l.padding if isinstance(l.padding, str) else list(l.padding),
                    "dilation": list(l.dilation), "bias": l.bias, "post": [mod(m) for m in l.post],
                }
                for l in self.layers
            ],
            "residuals": [list(r) for r in self.residuals],
        }

    @staticmethod
    def from_dict(d: dict) -> "Architecture":
        """The architecture :meth:`to_dict` wrote (inverse of it: ``from_dict(a.to_dict()) == a``).

        Args:
            d: a dict in :meth:`to_dict`'s format (e.g. read from a dataset file or checkpoint).
        """
        def mod(m: Sequence) -> ModuleSpec:
            return ModuleSpec(m[0], tuple(m[1]))

        layers = []
        for l in d["layers"]:
            layers.append(LayerSpec(
                kind=l["kind"], in_features=l["in_features"], out_features=l["out_features"],
                kernel_size=tuple(l.get("kernel_size", ())), stride=tuple(l.get("stride", ())),
                padding=l["padding"] if isinstance(l.get("padding"), str) else tuple(l.get("padding", ())),
                dilation=tuple(l.get("dilation", ())), bias=bool(l.get("bias", True)),
                post=tuple(mod(m) for m in l.get("post", ())),
            ))
        return Architecture(layers=tuple(layers), pre=tuple(mod(m) for m in d.get("pre", ())),
                            residuals=tuple(tuple(r) for r in d.get("residuals", ())))


def mlp_architecture(
    widths: Sequence[int],
    activation: str = "relu",
    w0: float = 30.0,
    bias: bool = True,
) -> Architecture:
    """An MLP ``widths[0] -> ... -> widths[-1]`` with ``activation`` between layers.

    ``mlp_architecture([2, 32, 32, 1], "sine", w0=30)`` is the SIREN of the
    DWSNets INR protocol.
    """
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or len(widths) < 2:
        raise ValueError(f"widths must be a sequence of >= 2 integers >= 1, got {widths!r}")
    for i, w in enumerate(widths):
        if not _is_int(w) or w < 1:
            raise ValueError(f"mlp_architecture: widths must be integers >= 1, got {w!r} at index {i} of "
                             f"{list(widths)}")
    act = ModuleSpec("sine", (float(w0),)) if activation == "sine" else ModuleSpec(activation)
    act.build()  # validates the kind
    layers = []
    for i in range(len(widths) - 1):
        last = i == len(widths) - 2
        layers.append(LayerSpec("linear", widths[i], widths[i + 1], bias=bias,
                                post=() if last else (act,)))
    return Architecture(tuple(layers))


_PARAMETRIC = (nn.Linear, nn.Conv1d, nn.Conv2d)

#: Every module class a neural graph can describe; a subclass must not override their ``forward``.
_SUPPORTED = _PARAMETRIC + tuple(c for kind in MODULE_KINDS.values() for c in kind.classes) + (Residual, nn.Sequential)


def _finite(value: float, what: str) -> float:
    """``float(value)``, or a ``ValueError`` naming ``what`` if it is NaN or infinite."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value}")
    return value


def leaf_modules(model: nn.Module, markers: bool = False) -> list[tuple[str, Any]]:
    """The modules ``model`` runs, in order and by position, with where each sits (``model[2][0]``).

    Walks ``_modules`` (not ``named_children``, which skips a module seen
    before), so a module used at two positions is listed twice, as ``forward``
    runs it. Nested ``nn.Sequential`` are flattened; with ``markers=True`` a
    :class:`Residual` block is announced by start/end markers. Raises
    ``ValueError`` for what the walk cannot describe faithfully: a container
    subclass with its own ``forward``, forward hooks, a ``None`` entry, and a
    parametric layer (Linear, Conv, normalisation) used at two positions.
    """
    if not isinstance(model, nn.Sequential):
        raise ValueError(
            f"expected a torch.nn.Sequential, got {type(model).__name__}; "
            "wrap the modules in nn.Sequential"
        )
    _check_plain(model, "model")
    out: list[tuple[str, Any]] = []
    _walk(model, "model", {}, out)
    return out if markers else [(w, m) for w, m in out if m is not _BLOCK_START and m is not _BLOCK_END]


def _walk(container: nn.Sequential, prefix: str, seen: dict[int, str], out: list) -> None:
    for name, module in container._modules.items():
        where = f"{prefix}[{name}]"
        if module is None:
            raise ValueError(f"{where}: is None; nn.Sequential cannot run it")
        _check_plain(module, where)
        if isinstance(module, Residual):
            out.append((where, _BLOCK_START))
            _walk(module, where, seen, out)
            out.append((where, _BLOCK_END))
        elif isinstance(module, nn.Sequential):
            _walk(module, where, seen, out)
        else:
            has_state = any(True for _ in module.parameters()) or any(True for _ in module.buffers())
            if has_state and id(module) in seen:
                raise ValueError(
                    f"{where} and {seen[id(module)]} are the same {type(module).__name__} object (tied weights): "
                    "a neural graph has its own weights per layer; use separate modules (e.g. copy.deepcopy)"
                )
            seen.setdefault(id(module), where)
            out.append((where, module))


def _check_plain(module: nn.Module, where: str) -> None:
    """Refuse a module whose computation is not what its supported base class computes."""
    if isinstance(module, nn.modules.lazy.LazyModuleMixin) and module.has_uninitialized_params():
        raise ValueError(f"{where}: {type(module).__name__} is not initialised (its shapes are unknown); "
                         "run one forward pass before converting")
    base = next((c for c in type(module).__mro__ if c in _SUPPORTED), None)
    if base is not None and type(module).forward is not base.forward:
        raise ValueError(
            f"{where}: {type(module).__name__} subclasses {base.__name__} but overrides forward; a neural graph "
            f"would describe a plain {base.__name__}. Use plain modules (or a subclass without its own forward)"
        )
    if module._forward_hooks or module._forward_pre_hooks:
        raise ValueError(
            f"{where}: {type(module).__name__} has forward hooks (e.g. from weight_norm/spectral_norm), which "
            "change what it computes; remove them (torch.nn.utils.remove_weight_norm, or use "
            "torch.nn.utils.parametrize, whose weights are read as computed)"
        )


def _check_one_dtype(leaves: list[tuple[str, Any]]) -> None:
    """All parameters and float buffers of the model share one dtype (a graph holds one)."""
    first: tuple[str, torch.dtype] | None = None
    for where, module in leaves:
        if not isinstance(module, nn.Module):
            continue
        for name, t in [*module.named_parameters(), *module.named_buffers()]:
            if not t.dtype.is_floating_point or torch.nn.parameter.is_lazy(t):
                continue
            if first is None:
                first = (f"{where}.{name}", t.dtype)
            elif t.dtype != first[1]:
                raise ValueError(
                    f"{where}.{name} is {_dtype_name(t.dtype)} but {first[0]} is {_dtype_name(first[1])}; "
                    "a neural graph holds one dtype: call model.float() (or model.to(dtype)) first"
                )


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _layer_dict(module: nn.Module, where: str) -> dict[str, Any]:
    """The :class:`LayerSpec` fields of a Linear/Conv module (``post`` still empty)."""
    if isinstance(module, nn.Linear):
        spec = dict(kind="linear", in_features=module.in_features, out_features=module.out_features)
    else:
        if module.groups != 1:
            raise ValueError(f"{where}: grouped convolution (groups={module.groups}) is not supported")
        if module.padding_mode != "zeros":
            raise ValueError(f"{where}: padding_mode={module.padding_mode!r} is not supported")
        spec = dict(
            kind="conv1d" if isinstance(module, nn.Conv1d) else "conv2d",
            in_features=module.in_channels,
            out_features=module.out_channels,
            kernel_size=tuple(module.kernel_size),
            stride=tuple(module.stride),
            padding=module.padding if isinstance(module.padding, str) else tuple(module.padding),
            dilation=tuple(module.dilation),
        )
    spec["bias"] = module.bias is not None
    spec["post"] = []
    return spec


def _close_block(where: str, start: int, layers: list[dict[str, Any]], wheres: list[str]) -> tuple[int, int, int]:
    """``(start, end, split)`` of a residual block that ends here, checking it is ``x + body(x)``-able
    (equal widths, spatial size kept); ``wheres[i]`` is the position of ``layers[i]`` in the model."""
    end = len(layers)
    if end == start:
        raise ValueError(f"{where}: residual block has no Linear/Conv layer")
    width_in = layers[start - 1]["out_features"] if start > 0 else layers[start]["in_features"]
    if width_in != layers[end - 1]["out_features"]:
        raise ValueError(f"{where}: residual block maps {width_in} to {layers[end - 1]['out_features']} "
                         "features; x + body(x) needs equal widths")
    problem = _spatial_change([(f"{w}: {_LAYER_NAMES[l['kind']]}", LayerSpec(**{**l, "post": ()}))
                               for w, l in zip(wheres[start:end], layers[start:end])])
    if problem:
        raise ValueError(f"{where}: residual block changes the spatial size ({problem}), so x + body(x) cannot "
                         f"add; {_SAME_SIZE}")
    return start, end, len(layers[end - 1]["post"])


#: How a 2-input INR reads its coordinates, by :attr:`Architecture.input_order` (named in messages).
_COORDS = {(0, 1): "(row, col)", (1, 0): "(x = col, y = row)"}

_LAYER_NAMES = {"linear": "Linear", "conv1d": "Conv1d", "conv2d": "Conv2d"}
_SAME_SIZE = ("convolutions in a residual block need stride 1 and paddings that make up for their kernels "
              "(padding = dilation * (kernel_size - 1) / 2 keeps the size)")


def _spatial_change(layers: Sequence[tuple[str, LayerSpec]]) -> str | None:
    """Why a residual body of these ``(name, layer)`` does not keep the spatial size of every input, or None.

    ``x + body(x)`` adds for every input size only if each convolution has stride 1 and the
    paddings make up for the kernels: per dimension, ``sum(2 * padding - dilation * (kernel - 1)) == 0``.
    """
    grow = None
    for name, l in layers:
        if not l.is_conv:
            continue
        if any(s != 1 for s in l.stride):
            return f"{name} stride {l.stride}"
        reach = [d * (k - 1) for d, k in zip(l.dilation, l.kernel_size)]
        pad = reach if l.padding == "same" else [0] * len(reach) if l.padding == "valid" else [2 * p for p in l.padding]
        step = [p - r for p, r in zip(pad, reach)]
        grow = step if grow is None else [g + s for g, s in zip(grow, step)]
    if grow is not None and any(grow):
        where = ", ".join(name for name, l in layers if l.is_conv)
        return f"{where}: padding and kernel change the size by {tuple(grow)}"
    return None


class _Flow:
    """The layout of the tensor flowing through the chain, to refuse chains that cannot run.

    ``None`` before the first layer (the input is not known), ``"features"``
    (``[B, F]``) after a Linear or a flattening, ``(d, pooled)`` (``[B, C, *d
    spatial]``) after a ``Conv{d}d``, ``pooled`` once global pooling made the
    spatial size 1.
    """

    def __init__(self) -> None:
        self.state: str | tuple[int, bool] | None = None

    def layer(self, kind: str, where: str) -> None:
        s = self.state
        if kind == "linear":
            if isinstance(s, tuple):
                if s[1]:
                    raise ValueError(f"{where}: Linear after global average pooling needs nn.Flatten() in between "
                                     f"(the pooled tensor is [B, C{', 1' * s[0]}])")
                raise ValueError(
                    f"{where}: Linear after a convolution needs global average "
                    "pooling in between (AdaptiveAvgPool{1,2}d(1) + Flatten); "
                    "otherwise spatial positions would become neurons"
                )
            self.state = "features"
            return
        d = int(kind[-2])
        if s == "features":
            raise ValueError(f"{where}: convolution after Linear is not supported")
        if isinstance(s, tuple) and s[0] != d:
            raise ValueError(f"{where}: Conv{d}d after a Conv{s[0]}d cannot run: it expects a {d + 2}-d input "
                             f"but gets the {s[0] + 2}-d output of the Conv{s[0]}d")
        self.state = (d, False)

    def module(self, m: "ModuleSpec", where: str) -> None:
        s = self.state
        if m.kind.startswith("global_avg_pool"):
            d = int(m.kind[-2])
            if not isinstance(s, tuple):
                raise ValueError(f"{where}: global average pooling after a Linear layer would average over "
                                 "its neurons; pooling is supported only after a convolution")
            if s[0] != d:
                raise ValueError(f"{where}: AdaptiveAvgPool{d}d after a Conv{s[0]}d cannot run on its "
                                 f"{s[0] + 2}-d output; use AdaptiveAvgPool{s[0]}d")
            self.state = (d, True)
        elif m.kind == "flatten":
            self._flatten(m, where)
        elif m.kind in ("batchnorm1d", "batchnorm2d"):
            ok = {"batchnorm1d": ("features", (1, False), (1, True)), "batchnorm2d": ((2, False), (2, True))}[m.kind]
            if s not in ok:
                after = "a Linear layer" if s == "features" else f"a Conv{s[0]}d"
                raise ValueError(f"{where}: {'BatchNorm1d' if m.kind == 'batchnorm1d' else 'BatchNorm2d'} "
                                 f"cannot run after {after} (wrong input rank)")
        elif m.kind == "layernorm" and s != "features":
            raise ValueError(f"{where}: LayerNorm after a convolution is not supported")

    def _flatten(self, m: "ModuleSpec", where: str) -> None:
        s = self.state
        start, end = m.args
        if isinstance(s, tuple) and not s[1]:
            raise ValueError(
                f"{where}: Flatten after a convolution without global average pooling "
                "is not supported (spatial positions would become neurons)"
            )
        rank = 2 if s == "features" else s[0] + 2
        if not (-rank <= start < rank and -rank <= end < rank) or (start % rank, end % rank) != (1, rank - 1):
            raise ValueError(f"{where}: Flatten(start_dim={start}, end_dim={end}) on the {rank}-d tensor "
                             f"[B, C{', 1' * (rank - 2)}] must give [B, C]; use nn.Flatten() (start_dim=1, end_dim=-1)")
        self.state = "features"


def _check_parameters(module: nn.Module, where: str) -> None:
    tensors = list(module.named_parameters(recurse=False))
    tensors += [(n, b) for n, b in module.named_buffers(recurse=False) if b.dtype.is_floating_point]
    for pname, p in tensors:
        if torch.nn.parameter.is_lazy(p):
            raise ValueError(f"{where}: {type(module).__name__} is not initialised ({pname} is lazy); "
                             "run one forward pass (or give its input size) before converting")
        if p.device.type == "meta":
            raise ValueError(f"{where}.{pname}: is on the meta device (no values); materialise the model "
                             "(model.to_empty(device=...) and load its weights) before converting")
        if not p.dtype.is_floating_point:
            raise ValueError(f"{where}.{pname}: non-float parameter of dtype {p.dtype}")
        if not torch.isfinite(p).all():
            raise ValueError(f"{where}.{pname}: contains NaN or inf")
