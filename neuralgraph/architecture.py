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
from typing import Any, Iterable, Sequence

import torch
from torch import nn

__all__ = [
    "ACTIVATIONS",
    "NORM_KINDS",
    "Residual",
    "Sine",
    "ModuleSpec",
    "LayerSpec",
    "Architecture",
    "mlp_architecture",
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
        self.w0 = float(w0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.w0 * x)

    def extra_repr(self) -> str:
        return f"w0={self.w0}"


class Residual(nn.Sequential):
    """``x + body(x)``: a residual block whose body is a chain of layers of equal in/out width.

    In a neural graph the skip connection becomes one residual edge per neuron
    (``edge_type == EDGE_RESIDUAL``, constant weight 1) from the block's input
    neurons to its output neurons, and the two layers are permuted together.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + super().forward(x)


_BLOCK_START, _BLOCK_END = object(), object()


@dataclass(frozen=True)
class ModuleSpec:
    """A parameter-free module: ``kind`` plus its hyper-parameters."""

    kind: str
    args: tuple = ()

    @property
    def activation_id(self) -> int | None:
        return ACTIVATIONS.get(self.kind) if self.kind != "identity" else None

    @property
    def is_norm(self) -> bool:
        """Normalisation layers carry per-neuron parameters (stored in ``node_norm``)."""
        return self.kind in NORM_KINDS

    def build(self) -> nn.Module:
        k, a = self.kind, self.args
        if k == "relu":
            return nn.ReLU()
        if k == "gelu":
            return nn.GELU(approximate=a[0] if a else "none")
        if k == "silu":
            return nn.SiLU()
        if k == "tanh":
            return nn.Tanh()
        if k == "sigmoid":
            return nn.Sigmoid()
        if k == "leaky_relu":
            return nn.LeakyReLU(a[0] if a else 0.01)
        if k == "sine":
            return Sine(a[0] if a else 30.0)
        if k == "flatten":
            return nn.Flatten(*a)
        if k == "global_avg_pool1d":
            return nn.AdaptiveAvgPool1d(1)
        if k == "global_avg_pool2d":
            return nn.AdaptiveAvgPool2d(1)
        if k == "dropout":
            return nn.Dropout(a[0] if a else 0.5)
        if k == "identity":
            return nn.Identity()
        if k in ("batchnorm1d", "batchnorm2d"):
            n, eps, momentum, affine, track = a
            cls = nn.BatchNorm1d if k == "batchnorm1d" else nn.BatchNorm2d
            return cls(n, eps=eps, momentum=momentum, affine=affine, track_running_stats=track)
        if k == "layernorm":
            n, eps, affine, bias = a
            return nn.LayerNorm(n, eps=eps, elementwise_affine=affine, bias=bias)
        raise ValueError(f"unknown module kind {k!r}")

    @staticmethod
    def from_module(module: nn.Module, where: str) -> "ModuleSpec":
        """Describe a parameter-free module, or raise naming it and ``where``."""
        if isinstance(module, nn.ReLU):
            return ModuleSpec("relu")
        if isinstance(module, nn.GELU):
            return ModuleSpec("gelu", (module.approximate,))
        if isinstance(module, nn.SiLU):
            return ModuleSpec("silu")
        if isinstance(module, nn.Tanh):
            return ModuleSpec("tanh")
        if isinstance(module, nn.Sigmoid):
            return ModuleSpec("sigmoid")
        if isinstance(module, nn.LeakyReLU):
            return ModuleSpec("leaky_relu", (float(module.negative_slope),))
        if isinstance(module, Sine):
            return ModuleSpec("sine", (module.w0,))
        if isinstance(module, nn.Flatten):
            return ModuleSpec("flatten", (module.start_dim, module.end_dim))
        if isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
            size = module.output_size
            sizes = size if isinstance(size, tuple) else (size,)
            if any(s != 1 for s in sizes):
                raise ValueError(
                    f"{where}: {module} is supported only as global pooling "
                    f"(output_size=1), got output_size={size}"
                )
            dim = 1 if isinstance(module, nn.AdaptiveAvgPool1d) else 2
            return ModuleSpec(f"global_avg_pool{dim}d")
        if isinstance(module, nn.Dropout):
            return ModuleSpec("dropout", (float(module.p),))
        if isinstance(module, nn.Identity):
            return ModuleSpec("identity")
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            kind = "batchnorm1d" if isinstance(module, nn.BatchNorm1d) else "batchnorm2d"
            return ModuleSpec(kind, (module.num_features, module.eps, module.momentum, module.affine,
                                     module.track_running_stats))
        if isinstance(module, nn.LayerNorm):
            if len(module.normalized_shape) != 1:
                raise ValueError(f"{where}: LayerNorm over {tuple(module.normalized_shape)} is supported only "
                                 "over the neurons of one layer (a 1-d normalized_shape)")
            return ModuleSpec("layernorm", (module.normalized_shape[0], module.eps, module.elementwise_affine,
                                            module.bias is not None))
        raise ValueError(
            f"{where}: unsupported module {type(module).__name__} ({module}); "
            "neural graphs support Linear, Conv1d, Conv2d, elementwise "
            f"activations ({', '.join(a for a in ACTIVATIONS if a != 'identity')}), "
            "BatchNorm1d/2d, LayerNorm, Flatten, global average pooling, Dropout and Identity"
        )


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

    @property
    def taps(self) -> int:
        """Number of weights per (out, in) pair: 1 for Linear, kernel area for conv."""
        return math.prod(self.kernel_size) if self.kernel_size else 1

    @property
    def is_conv(self) -> bool:
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
        return (self.out_features, self.in_features, *self.kernel_size)

    def build(self) -> nn.Module:
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
        for start, end, _ in self.residuals:
            if not 0 <= start < end <= len(self.layers):
                raise ValueError(f"residual block ({start}, {end}) is outside layers 0..{len(self.layers)}")
            if self.widths[start] != self.widths[end]:
                raise ValueError(f"residual block from layer {start} ({self.widths[start]} neurons) to layer "
                                 f"{end} ({self.widths[end]} neurons) needs equal widths")
        for i in range(1, len(self.layers)):
            a, b = self.layers[i - 1], self.layers[i]
            if a.out_features != b.in_features:
                raise ValueError(
                    f"layer {i} ({b.kind}) expects {b.in_features} inputs but layer "
                    f"{i - 1} ({a.kind}) has {a.out_features} outputs"
                )

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
        return any(l.norm is not None for l in self.layers)

    @property
    def max_taps(self) -> int:
        return max(l.taps for l in self.layers)

    @property
    def num_nodes(self) -> int:
        return sum(self.widths)

    @property
    def num_edges(self) -> int:
        """Edges of the graph: one per weight (kernel) plus one per residual skip."""
        return (sum(l.in_features * l.out_features for l in self.layers)
                + sum(self.widths[s] for s, _, _ in self.residuals))

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
        """Describe ``model`` (an ``nn.Sequential``, nested ones are flattened)."""
        if not isinstance(model, nn.Sequential):
            raise ValueError(
                f"expected a torch.nn.Sequential, got {type(model).__name__}; "
                "wrap the modules in nn.Sequential"
            )
        pre: list[ModuleSpec] = []
        layers: list[dict[str, Any]] = []
        residuals: list[tuple[int, int, int]] = []
        block: tuple[str, int] | None = None  # (where, first layer) of the open residual block
        seen_pool = False
        for where, module in _leaves(model, "model"):
            if module is _BLOCK_START:
                if block is not None:
                    raise ValueError(f"{where}: nested residual blocks are not supported")
                block = (where, len(layers))
                continue
            if module is _BLOCK_END:
                start = block[1]
                end = len(layers)
                if end == start:
                    raise ValueError(f"{where}: residual block has no Linear/Conv layer")
                width_in = layers[start - 1]["out_features"] if start > 0 else layers[start]["in_features"]
                if width_in != layers[end - 1]["out_features"]:
                    raise ValueError(f"{where}: residual block maps {width_in} to {layers[end - 1]['out_features']} "
                                     "features; x + body(x) needs equal widths")
                residuals.append((start, end, len(layers[end - 1]["post"])))
                block = None
                continue
            if block is not None and block[1] == len(layers) and not isinstance(
                    module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                raise ValueError(f"{where}: a residual block must start with a Linear/Conv layer")
            if block is not None and isinstance(module, (nn.Flatten, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
                raise ValueError(f"{where}: pooling/flatten inside a residual block is not supported")
            if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                _check_parameters(module, where)
                if isinstance(module, nn.Linear):
                    if layers and layers[-1]["kind"] != "linear" and not seen_pool:
                        raise ValueError(
                            f"{where}: Linear after a convolution needs global average "
                            "pooling in between (AdaptiveAvgPool{1,2}d(1) + Flatten); "
                            "otherwise spatial positions would become neurons"
                        )
                    spec = dict(kind="linear", in_features=module.in_features,
                                out_features=module.out_features)
                else:
                    if layers and layers[-1]["kind"] == "linear":
                        raise ValueError(f"{where}: convolution after Linear is not supported")
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
                if layers and layers[-1]["out_features"] != spec["in_features"]:
                    prev = layers[-1]
                    raise ValueError(
                        f"{where}: shape mismatch, {type(module).__name__} expects "
                        f"{spec['in_features']} inputs but the previous {prev['kind']} layer "
                        f"has {prev['out_features']} outputs"
                    )
                spec["bias"] = module.bias is not None
                spec["post"] = []
                layers.append(spec)
                seen_pool = False
            else:
                m = ModuleSpec.from_module(module, where)
                if m.is_norm:
                    if not layers:
                        raise ValueError(f"{where}: {m.kind} before the first Linear/Conv layer is not supported")
                    if m.args[0] != layers[-1]["out_features"]:
                        raise ValueError(f"{where}: {type(module).__name__} normalises {m.args[0]} features but the "
                                         f"layer before it has {layers[-1]['out_features']} outputs")
                    if any(p.is_norm for p in layers[-1]["post"]):
                        raise ValueError(f"{where}: a second normalisation after one layer is not supported")
                    if m.kind == "layernorm" and layers[-1]["kind"] != "linear":
                        raise ValueError(f"{where}: LayerNorm after a convolution is not supported")
                    _check_parameters(module, where)
                if m.kind.startswith("global_avg_pool"):
                    seen_pool = True
                if m.kind == "flatten" and layers and layers[-1]["kind"] != "linear" and not seen_pool:
                    raise ValueError(
                        f"{where}: Flatten after a convolution without global average pooling "
                        "is not supported (spatial positions would become neurons)"
                    )
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
        def mod(m: Sequence) -> ModuleSpec:
            return ModuleSpec(m[0], tuple(m[1]))

        layers = []
        for l in d["layers"]:
            layers.append(LayerSpec(
                kind=l["kind"], in_features=int(l["in_features"]), out_features=int(l["out_features"]),
                kernel_size=tuple(l.get("kernel_size", ())), stride=tuple(l.get("stride", ())),
                padding=l["padding"] if isinstance(l.get("padding"), str) else tuple(l.get("padding", ())),
                dilation=tuple(l.get("dilation", ())), bias=bool(l.get("bias", True)),
                post=tuple(mod(m) for m in l.get("post", ())),
            ))
        return Architecture(layers=tuple(layers), pre=tuple(mod(m) for m in d.get("pre", ())),
                            residuals=tuple(tuple(int(v) for v in r) for r in d.get("residuals", ())))


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
    if len(widths) < 2 or any(int(w) < 1 for w in widths):
        raise ValueError(f"widths must have >= 2 positive entries, got {list(widths)}")
    act = ModuleSpec("sine", (float(w0),)) if activation == "sine" else ModuleSpec(activation)
    act.build()  # validates the kind
    layers = []
    for i in range(len(widths) - 1):
        last = i == len(widths) - 2
        layers.append(LayerSpec("linear", int(widths[i]), int(widths[i + 1]), bias=bias,
                                post=() if last else (act,)))
    return Architecture(tuple(layers))


def _leaves(model: nn.Sequential, prefix: str) -> Iterable[tuple[str, Any]]:
    """Leaf modules in order; a :class:`Residual` is announced by start/end markers."""
    for name, module in model.named_children():
        where = f"{prefix}[{name}]"
        if isinstance(module, Residual):
            yield where, _BLOCK_START
            yield from _leaves(module, where)
            yield where, _BLOCK_END
        elif isinstance(module, nn.Sequential):
            yield from _leaves(module, where)
        else:
            yield where, module


def _check_parameters(module: nn.Module, where: str) -> None:
    tensors = list(module.named_parameters(recurse=False))
    tensors += [(n, b) for n, b in module.named_buffers(recurse=False) if b.dtype.is_floating_point]
    for pname, p in tensors:
        if not p.dtype.is_floating_point:
            raise ValueError(f"{where}.{pname}: non-float parameter of dtype {p.dtype}")
        if not torch.isfinite(p).all():
            raise ValueError(f"{where}.{pname}: contains NaN or inf")
