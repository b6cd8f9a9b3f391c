"""Hypothesis strategies for random supported architectures (MLPs and CNNs)."""
from __future__ import annotations

import torch
from hypothesis import strategies as st
from torch import nn

import neuralgraph as ng

ACTIVATION_MODULES = [nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, lambda: nn.LeakyReLU(0.1), lambda: ng.Sine(3.0)]


def _randomise_norm(norm: nn.Module, generator: torch.Generator) -> nn.Module:
    """Give a norm layer non-trivial affine parameters and running statistics (as after training)."""
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean"):
            t = getattr(norm, name, None)
            if t is not None:
                t.copy_(torch.randn(t.shape, generator=generator))
        if getattr(norm, "running_var", None) is not None:
            norm.running_var.copy_(torch.rand(norm.running_var.shape, generator=generator) + 0.5)
    return norm.eval()


@st.composite
def mlps(draw, max_layers: int = 5, max_width: int = 16, norms: bool = False) -> nn.Sequential:
    """A random MLP: 1-5 Linear layers, widths 1-16, random activations and bias flags.

    With ``norms=True`` hidden layers may be followed by BatchNorm1d or LayerNorm, and the model
    is in train or eval mode. One activation object may be shared by every hidden layer (as
    ``act = nn.Tanh()`` used twice), which the conversion must see at each position.
    """
    n_layers = draw(st.integers(1, max_layers))
    widths = draw(st.lists(st.integers(1, max_width), min_size=n_layers + 1, max_size=n_layers + 1))
    seed = draw(st.integers(0, 2**31 - 1))
    torch.manual_seed(seed)
    shared = draw(st.sampled_from(ACTIVATION_MODULES))() if draw(st.booleans()) else None
    modules: list[nn.Module] = []
    for i in range(n_layers):
        modules.append(nn.Linear(widths[i], widths[i + 1], bias=draw(st.booleans()) or i == 0))
        if i < n_layers - 1:
            kind = draw(st.sampled_from(["none", "batch", "layer"])) if norms else "none"
            if kind != "none":
                norm = nn.BatchNorm1d(widths[i + 1]) if kind == "batch" else nn.LayerNorm(widths[i + 1])
                modules.append(_randomise_norm(norm, torch.Generator().manual_seed(seed + i)))
            modules.append(shared if shared is not None else draw(st.sampled_from(ACTIVATION_MODULES))())
    return nn.Sequential(*modules).train(norms and draw(st.booleans()))


@st.composite
def cnns(draw, max_convs: int = 3, max_width: int = 8) -> nn.Sequential:
    """A random CNN: 1-3 Conv2d (or Conv1d) with random kernels/stride/padding, global pool, 1-2 Linear."""
    dim = draw(st.sampled_from([1, 2]))
    conv = nn.Conv1d if dim == 1 else nn.Conv2d
    pool = nn.AdaptiveAvgPool1d if dim == 1 else nn.AdaptiveAvgPool2d
    n_convs = draw(st.integers(1, max_convs))
    channels = draw(st.lists(st.integers(1, max_width), min_size=n_convs + 1, max_size=n_convs + 1))
    torch.manual_seed(draw(st.integers(0, 2**31 - 1)))
    modules: list[nn.Module] = []
    for i in range(n_convs):
        k = draw(st.integers(1, 3)) if dim == 1 else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        modules.append(conv(channels[i], channels[i + 1], k, stride=draw(st.integers(1, 2)),
                            padding=draw(st.integers(0, 1))))
        modules.append(draw(st.sampled_from(ACTIVATION_MODULES))())
    modules += [pool(1), nn.Flatten()]
    n_lin = draw(st.integers(1, 2))
    widths = [channels[-1]] + draw(st.lists(st.integers(1, max_width), min_size=n_lin, max_size=n_lin))
    for i in range(n_lin):
        modules.append(nn.Linear(widths[i], widths[i + 1]))
        if i < n_lin - 1:
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)


def model_input(model: nn.Sequential, batch: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random input of the right shape for ``model`` (spatial size 32 for convs: enough for three stride-2 kernels)."""
    first = next(m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)))
    if isinstance(first, nn.Linear):
        shape = (batch, first.in_features)
    elif isinstance(first, nn.Conv1d):
        shape = (batch, first.in_channels, 32)
    else:
        shape = (batch, first.in_channels, 32, 32)
    return torch.randn(shape, generator=generator)


@st.composite
def resnets(draw, max_blocks: int = 3, max_width: int = 8) -> nn.Sequential:
    """A random residual MLP or CNN: stem layer, 1-3 Residual blocks of 1-2 layers, head."""
    conv = draw(st.booleans())
    torch.manual_seed(draw(st.integers(0, 2**31 - 1)))
    width = draw(st.integers(1, max_width))
    d_in = draw(st.integers(1, 4))
    act = lambda: draw(st.sampled_from(ACTIVATION_MODULES))()
    layer = (lambda i, o: nn.Conv2d(i, o, 3, padding=1)) if conv else nn.Linear
    modules: list[nn.Module] = [layer(d_in, width), act()]
    for _ in range(draw(st.integers(1, max_blocks))):
        inner = draw(st.integers(1, max_width))
        body = [layer(width, width)] if draw(st.booleans()) else [layer(width, inner), act(), layer(inner, width)]
        modules += [ng.Residual(*body), act()]
    if conv:
        modules += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    modules.append(nn.Linear(width, draw(st.integers(1, 4))))
    return nn.Sequential(*modules).eval()
