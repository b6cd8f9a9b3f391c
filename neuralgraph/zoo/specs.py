"""What a zoo samples: architectures and training hyper-parameters of each network.

Three families, all built from :class:`~neuralgraph.architecture.Architecture`
so every network converts with :func:`neuralgraph.to_graph`:

* ``small_cnn`` -- the Small CNN Zoo of Unterthiner et al. (2020, "Predicting
  Neural Network Accuracy from Weights"): 3 convolutions of 16 3x3 filters with
  stride 2, global average pooling and a linear classifier (4,970 parameters
  for 1-channel inputs and 10 classes). Sampled per network, as in the paper:
  activation (ReLU / tanh), weight initialisation (Glorot normal / uniform,
  He normal, orthogonal, normal and truncated normal with a std drawn
  log-uniformly from [1e-3, 0.5]; biases start at 0), optimiser (Adam /
  SGD / RMSProp), learning rate log-uniform in [5e-4, 5e-2], L2 coefficient
  log-uniform in [1e-8, 1e-2], dropout in [0, 0.7] and the fraction of the
  training data in [0.1, 1].
* ``wild_park`` -- heterogeneous CNNs in the spirit of the CNN Wild Park of
  Kofinas et al. (2024): 2-5 convolutions with kernels 3/5/7 and 8-32 channels,
  ReLU / GELU / SiLU / tanh, optional residual blocks (:class:`~neuralgraph.Residual`)
  and BatchNorm, then global average pooling and a linear classifier; the
  training hyper-parameters are sampled as for ``small_cnn``.
* ``mlp`` -- MLP classifiers (``Flatten``, then one or two hidden layers, 32
  neurons by default), for the domain-adaptation task; same hyper-parameters.

Deviations from the papers (all deliberate, for 2-core CPU budgets):

* Convolutions use padding 1 (``k // 2`` in the Wild Park), so 14x14 inputs
  (MNIST downsampled by 2x2 averaging, see :mod:`neuralgraph.zoo.files`)
  still leave a 2x2 map before pooling; the parameter count is unchanged.
* The Wild Park draws each network's architecture from a pool of
  ``num_architectures`` sampled architectures (8 by default) instead of a fresh
  one per network, so networks of one architecture train together, vectorised.
* Dropout (after every hidden layer's activation, or after a residual block)
  is a training hyper-parameter: the stored :class:`Architecture` is the
  eval-mode network without Dropout modules (Dropout is the identity there),
  so networks with different rates share an architecture group.
* L2 is added to the gradient of the weights (not the biases) as
  ``l2 * w`` (``torch.optim``'s ``weight_decay``; Keras' ``l2`` would be half of it).
* Adam and RMSProp use ``eps = 1e-7`` and RMSProp ``alpha = 0.9`` (the Keras
  defaults the paper ran with); SGD has no momentum. Batch size 32.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ..architecture import Architecture, LayerSpec, ModuleSpec
from ..graph import IDENTITY_NORM

__all__ = [
    "FAMILIES", "ACTIVATION_CHOICES", "INITS", "OPTIMIZERS", "HPARAM_RANGES",
    "small_cnn_architecture", "mlp_classifier_architecture", "sample_wild_park_architecture",
    "sample_zoo", "init_params",
]

FAMILIES = ("small_cnn", "wild_park", "mlp")
#: Activations each family draws from.
ACTIVATION_CHOICES = {"small_cnn": ("relu", "tanh"), "mlp": ("relu", "tanh"),
                      "wild_park": ("relu", "gelu", "silu", "tanh")}
INITS = ("glorot_normal", "glorot_uniform", "he_normal", "orthogonal", "normal", "truncated_normal")
OPTIMIZERS = ("sgd", "adam", "rmsprop")
#: (low, high) of the continuous hyper-parameters; ``log`` ones are drawn log-uniformly.
HPARAM_RANGES = {"lr": (5e-4, 5e-2, "log"), "l2": (1e-8, 1e-2, "log"), "dropout": (0.0, 0.7, "linear"),
                 "train_fraction": (0.1, 1.0, "linear"), "init_std": (1e-3, 0.5, "log")}


def _act(kind: str) -> ModuleSpec:
    return ModuleSpec("gelu", ("none",)) if kind == "gelu" else ModuleSpec(kind)


def small_cnn_architecture(activation: str = "relu", in_channels: int = 1, channels: int = 16,
                           num_layers: int = 3, num_classes: int = 10) -> Architecture:
    """The Small CNN Zoo network: ``num_layers`` x (Conv 3x3 stride 2 padding 1, activation), GAP, Linear.

    Shapes: input ``[n, in_channels, H, W]``, output ``[n, num_classes]``.
    """
    act = _act(activation)
    layers = []
    for i in range(num_layers):
        post = (act,) if i < num_layers - 1 else (act, ModuleSpec("global_avg_pool2d"), ModuleSpec("flatten", (1, -1)))
        layers.append(LayerSpec("conv2d", in_channels if i == 0 else channels, channels, (3, 3), (2, 2), (1, 1),
                                 (1, 1), True, post))
    layers.append(LayerSpec("linear", channels, num_classes))
    return Architecture(tuple(layers))


def mlp_classifier_architecture(in_features: int, hidden: Sequence[int] = (32,), activation: str = "relu",
                                num_classes: int = 10) -> Architecture:
    """``Flatten`` then ``in_features -> hidden... -> num_classes`` with ``activation`` between layers.

    Shapes: input ``[n, C, H, W]`` with ``C * H * W == in_features`` (or ``[n, in_features]``),
    output ``[n, num_classes]``.
    """
    widths = [in_features, *hidden, num_classes]              # sizes checked by LayerSpec (4.7 is refused)
    act = _act(activation)
    layers = tuple(LayerSpec("linear", widths[i], widths[i + 1], post=(act,) if i < len(widths) - 2 else ())
                   for i in range(len(widths) - 1))
    return Architecture(layers, pre=(ModuleSpec("flatten", (1, -1)),))


def sample_wild_park_architecture(rng: np.random.Generator, in_channels: int = 1, num_classes: int = 10,
                                  activation: str | None = None) -> Architecture:
    """One heterogeneous CNN: depth 2-5, kernels 3/5/7, channels 8-32, optional residual blocks and BatchNorm.

    The first two plain convolutions have stride 2, later ones stride 1;
    convolutions followed by BatchNorm have no bias; a residual block is ``Residual(Conv(c, c, k, padding k // 2), [BatchNorm], act)``.
    """
    depth = int(rng.integers(2, 6))
    act = _act(activation or str(rng.choice(ACTIVATION_CHOICES["wild_park"])))
    use_bn = bool(rng.random() < 0.5)
    use_res = bool(rng.random() < 0.5)
    layers: list[LayerSpec] = []
    residuals: list[tuple[int, int, int]] = []
    c_in, strided = in_channels, 0
    for i in range(depth):
        k = int(rng.choice((3, 5, 7)))
        residual = use_res and i > 0 and rng.random() < 0.6
        c_out = c_in if residual else int(rng.choice((8, 16, 24, 32)))
        stride = 1 if residual or strided >= 2 else 2
        strided += stride == 2
        post = [ModuleSpec("batchnorm2d", (c_out, 1e-5, 0.1, True, True))] if use_bn else []
        post.append(act)
        split = len(post)
        if i == depth - 1:
            post += [ModuleSpec("global_avg_pool2d"), ModuleSpec("flatten", (1, -1))]
        layers.append(LayerSpec("conv2d", c_in, c_out, (k, k), (stride, stride), (k // 2, k // 2), (1, 1),
                                not use_bn, tuple(post)))  # a bias before BatchNorm is redundant (and unlearnable)
        if residual:
            residuals.append((i, i + 1, split))
        c_in = c_out
    layers.append(LayerSpec("linear", c_in, num_classes))
    return Architecture(tuple(layers), residuals=tuple(residuals))


def _draw(rng: np.random.Generator, name: str, n: int) -> np.ndarray:
    lo, hi, scale = HPARAM_RANGES[name]
    if scale == "log":
        return np.exp(rng.uniform(math.log(lo), math.log(hi), n))
    return rng.uniform(lo, hi, n)


def sample_zoo(family: str, n: int, seed: int = 0, *, in_channels: int = 1, image_size: int = 14,
               num_classes: int = 10, hidden_choices: Sequence[Sequence[int]] = ((32,), (32, 32)),
               num_architectures: int = 8) -> tuple[list[Architecture], list[dict]]:
    """Architectures and per-network hyper-parameters of a zoo of ``n`` networks.

    Returns ``(archs, hparams)``: ``hparams[i]`` is a JSON-able dict with
    ``arch`` (index into ``archs``), ``seed`` (of its initialisation and data
    subset), ``activation``, ``init``, ``init_std``, ``optimizer``, ``lr``,
    ``l2``, ``dropout`` and ``train_fraction``. Deterministic in ``seed``;
    network ``i``'s draws do not depend on ``n`` beyond position ``i``.
    """
    if family not in FAMILIES:
        raise ValueError(f"zoo family must be one of {FAMILIES}, got {family!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"zoo size must be an integer >= 1, got {n!r}")
    rng = np.random.default_rng([int(seed), 12])
    if family == "small_cnn":
        archs = [small_cnn_architecture(a, in_channels, num_classes=num_classes) for a in ACTIVATION_CHOICES[family]]
        keys = list(ACTIVATION_CHOICES[family])
    elif family == "mlp":
        if not hidden_choices or any(len(h) < 1 or any(isinstance(w, (bool, np.bool_)) or not isinstance(
                w, (int, np.integer)) or w < 1 for w in h) for h in hidden_choices):
            raise ValueError(f"mlp hidden_choices must be non-empty lists of integer widths >= 1, got "
                             f"{hidden_choices!r}")
        keys = [(a, tuple(int(w) for w in h)) for h in hidden_choices for a in ACTIVATION_CHOICES[family]]
        archs = [mlp_classifier_architecture(in_channels * image_size ** 2, h, a, num_classes) for a, h in keys]
    else:
        if isinstance(num_architectures, bool) or not isinstance(num_architectures, (int, np.integer)) \
                or num_architectures < 1:
            raise ValueError(f"num_architectures must be an integer >= 1, got {num_architectures!r}")
        arng = np.random.default_rng([int(seed), 13])
        archs, seen = [], set()
        for _ in range(100 * num_architectures):
            a = sample_wild_park_architecture(arng, in_channels, num_classes)
            if a not in seen:
                seen.add(a)
                archs.append(a)
            if len(archs) == num_architectures:
                break
        keys = None
    # one draw per quantity for all networks (vectorised; network i only depends on position i)
    arch_id = rng.integers(0, len(archs), n)
    init = rng.integers(0, len(INITS), n)
    opt = rng.integers(0, len(OPTIMIZERS), n)
    draws = {k: _draw(rng, k, n) for k in HPARAM_RANGES}
    seeds = rng.integers(0, 2 ** 31 - 1, n)
    hparams = []
    for i in range(n):
        a = archs[int(arch_id[i])]
        hparams.append({
            "arch": int(arch_id[i]), "seed": int(seeds[i]),
            "activation": _activation_of(a),
            "init": INITS[int(init[i])], "init_std": float(draws["init_std"][i]),
            "optimizer": OPTIMIZERS[int(opt[i])], "lr": float(draws["lr"][i]), "l2": float(draws["l2"][i]),
            "dropout": float(draws["dropout"][i]), "train_fraction": float(draws["train_fraction"][i]),
        })
    return archs, hparams


def _activation_of(arch: Architecture) -> str:
    for layer in arch.layers:
        for m in layer.post:
            if m.activation_id is not None:
                return m.kind
    return "identity"


def init_params(arch: Architecture, hparams: Sequence[dict], dtype: torch.dtype = torch.float32) -> dict[str, list]:
    """Initial stacked parameters of networks of one architecture (each from its own ``hparams["seed"]``).

    Returns ``{"weights": [W_m [B, out, in, *k]], "biases": [b_m [B, out]],
    "norms": [None or [B, out, 4]]}`` on CPU; ``norms`` holds BatchNorm's
    (weight 1, bias 0, running mean 0, running var 1). Network ``i`` depends only
    on its own hyper-parameters (one generator per network: initialisation is
    not a hot path).
    """
    B = len(hparams)
    weights = [torch.empty(B, *l.weight_shape, dtype=dtype) for l in arch.layers]
    biases = [torch.zeros(B, l.out_features, dtype=dtype) for l in arch.layers]
    for i, hp in enumerate(hparams):
        g = torch.Generator().manual_seed(int(hp["seed"]))
        for w in weights:
            _init_(w[i], hp["init"], float(hp["init_std"]), g)
    norms = [None if l.norm is None else
             torch.tensor(IDENTITY_NORM, dtype=dtype).repeat(B, l.out_features, 1) for l in arch.layers]
    return {"weights": weights, "biases": biases, "norms": norms}


def _init_(w: Tensor, kind: str, std: float, g: torch.Generator) -> None:
    nn_init = torch.nn.init
    if kind == "glorot_normal":
        nn_init.xavier_normal_(w, generator=g)
    elif kind == "glorot_uniform":
        nn_init.xavier_uniform_(w, generator=g)
    elif kind == "he_normal":
        nn_init.kaiming_normal_(w, nonlinearity="relu", generator=g)
    elif kind == "orthogonal":
        nn_init.orthogonal_(w, generator=g)
    elif kind == "normal":
        nn_init.normal_(w, 0.0, std, generator=g)
    elif kind == "truncated_normal":
        nn_init.trunc_normal_(w, 0.0, std, -2 * std, 2 * std, generator=g)
    else:
        raise ValueError(f"unknown initialisation {kind!r}; expected one of {INITS}")
