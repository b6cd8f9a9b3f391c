"""PyG-style transforms of neural graphs (``BaseTransform``; compose with ``torch_geometric.transforms.Compose``).

They act on one :class:`~neuralgraph.NeuralGraph` or a batch of them and return a new
object (the input is not modified), so they fit ``dataset.transform``,
``INRDataset(path, transform=...)`` and PyG data pipelines::

    from torch_geometric.transforms import Compose
    from neuralgraph.transforms import PermuteHidden, WeightNoise
    t = Compose([PermuteHidden(), WeightNoise(0.01)])
    graph = t(ng.to_graph(model))

* :class:`PermuteHidden` - a random element of the symmetry group (the network's
  function is unchanged), :func:`neuralgraph.permute_hidden`;
* :class:`WeightNoise` - i.i.d. ``N(0, std^2)`` noise on every weight and bias,
  the graph form of :func:`neuralgraph.augment.gaussian_noise`;
* :class:`WeightDropout` - each weight zeroed with probability ``p``, the graph
  form of :func:`neuralgraph.augment.weight_dropout`.

Randomness comes from ``generator`` when given (reproducible), else from torch's global RNG.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from .graph import EDGE_FORWARD
from .symmetry import permute_hidden

__all__ = ["PermuteHidden", "WeightNoise", "WeightDropout"]


def _check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def _check_graph(data, what: str) -> None:
    if not isinstance(data, Data):
        raise ValueError(f"{what} transforms a neural graph (torch_geometric Data), got {type(data).__name__}")
    for key in ("x", "edge_attr", "edge_layer", "node_layer"):
        if not isinstance(getattr(data, key, None), Tensor):
            raise ValueError(f"{what}: the graph has no {key}; convert the model with ng.to_graph first")


def _randn(shape, like: Tensor, generator) -> Tensor:
    dev = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=dev, dtype=like.dtype).to(like.device)


def _rand(shape, like: Tensor, generator) -> Tensor:
    dev = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=dev).to(like.device)


def _weights_and_biases(data: Data) -> tuple[Tensor, Tensor]:
    """Masks of the real weight taps ``[E, K]`` (forward edges) and of the biases ``[N, 1]`` (non-input neurons)."""
    w = data.edge_mask.clone() if isinstance(getattr(data, "edge_mask", None), Tensor) else \
        torch.ones_like(data.edge_attr, dtype=torch.bool)
    if isinstance(getattr(data, "edge_type", None), Tensor):
        w &= (data.edge_type == EDGE_FORWARD).unsqueeze(-1)
    b = (data.node_layer > 0).unsqueeze(-1).expand(-1, 1)
    return w, b


class PermuteHidden(BaseTransform):
    """Apply a random hidden-neuron permutation (each hidden layer of each graph independently).

    Args:
        generator: ``torch.Generator`` for reproducible permutations (optional).
    """

    def __init__(self, generator: torch.Generator | None = None) -> None:
        _check_generator(generator)
        self.generator = generator

    def forward(self, data: Data) -> Data:
        """A copy of ``data`` with its hidden neurons permuted at random (the function it computes is unchanged)."""
        return permute_hidden(data, self.generator)[0]


class WeightNoise(BaseTransform):
    """Add i.i.d. ``N(0, std^2)`` noise to every weight (real kernel taps) and, if ``bias``, every bias.

    Args:
        std: noise standard deviation, ``>= 0``.
        bias: also perturb the biases (``x`` of non-input neurons).
        generator: ``torch.Generator`` (optional).

    Shapes:
        ``edge_attr`` ``[E, K]`` and ``x`` ``[N, 1]`` keep their shapes; padded taps, residual edges and
        input neurons are unchanged.
    """

    def __init__(self, std: float, bias: bool = True, generator: torch.Generator | None = None) -> None:
        if isinstance(std, bool) or not isinstance(std, (int, float)) or not std >= 0 or std == float("inf"):
            raise ValueError(f"WeightNoise: std must be a finite number >= 0, got {std!r}")
        _check_generator(generator)
        self.std, self.bias, self.generator = float(std), bool(bias), generator

    def forward(self, data: Data) -> Data:
        """A copy of ``data`` with noise added to its real weights (and biases when ``bias``)."""
        _check_graph(data, "WeightNoise")
        w, b = _weights_and_biases(data)
        out = data.clone()
        out.edge_attr = data.edge_attr + self.std * _randn(data.edge_attr.shape, data.edge_attr, self.generator) * w
        if self.bias:
            x = data.x.clone()
            x[:, :1] = data.x[:, :1] + self.std * _randn(b.shape, data.x, self.generator) * b
            out.x = x
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(std={self.std}, bias={self.bias})"


class WeightDropout(BaseTransform):
    """Zero each weight independently with probability ``p`` (biases kept, no rescaling).

    Args:
        p: drop probability in ``[0, 1)``.
        generator: ``torch.Generator`` (optional).
    """

    def __init__(self, p: float, generator: torch.Generator | None = None) -> None:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
            raise ValueError(f"WeightDropout: p must be in [0, 1), got {p!r}")
        _check_generator(generator)
        self.p, self.generator = float(p), generator

    def forward(self, data: Data) -> Data:
        """A copy of ``data`` with each real weight zeroed with probability ``p``."""
        _check_graph(data, "WeightDropout")
        w, _ = _weights_and_biases(data)
        drop = (_rand(data.edge_attr.shape, data.edge_attr, self.generator) < self.p) & w
        out = data.clone()
        out.edge_attr = data.edge_attr.masked_fill(drop, 0)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"
