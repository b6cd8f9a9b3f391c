"""Weight-space augmentations, vectorised over a stack of networks of one architecture.

All functions take per-layer ``weights[m]`` ``[B, out, in]`` and ``biases[m]``
``[B, out]`` (the layout of :func:`neuralgraph.stacked_to_batch`), never modify
their inputs (dataset tensors may be memory-mapped) and draw independent
randomness per network from ``generator``.

* :func:`permute_hidden_stacked` - a random symmetry of the network (the
  function is unchanged); the canonical augmentation for weight-space models.
* :func:`gaussian_noise`, :func:`weight_dropout` - generic perturbations
  (they change the function slightly).
* :func:`relative_noise_stacked` - noise and dropout relative to each network's
  layer scale, for layers of any shape (convolutions too).
* :func:`inr_affine` - INR-specific: translate / rotate / scale the input
  coordinates, folded exactly into the first layer, so the INR represents a
  transformed image.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

__all__ = [
    "Augment", "permute_hidden_stacked", "gaussian_noise", "weight_dropout", "relative_noise_stacked",
    "inr_affine", "random_affine", "random_permutations",
]

Params = tuple[list[Tensor], list[Tensor]]


def _check(weights: Sequence[Tensor], biases: Sequence[Tensor]) -> int:
    if len(weights) != len(biases) or not weights:
        raise ValueError(f"need one bias per weight, got {len(weights)} weights and {len(biases)} biases")
    B = weights[0].shape[0]
    for m, (w, b) in enumerate(zip(weights, biases), start=1):
        if w.dim() != 3 or b.dim() != 2 or w.shape[0] != B or b.shape[0] != B or b.shape[1] != w.shape[1]:
            raise ValueError(f"layer {m}: expected weight [B, out, in] and bias [B, out] with B={B}, "
                             f"got {tuple(w.shape)} and {tuple(b.shape)}")
        if m > 1 and w.shape[2] != weights[m - 2].shape[1]:
            raise ValueError(f"layer {m}: weight has {w.shape[2]} inputs, layer {m - 1} has "
                             f"{weights[m - 2].shape[1]} outputs")
    return B


def random_permutations(B: int, n: int, generator: torch.Generator | None = None,
                        device: torch.device | None = None) -> Tensor:
    """``[B, n]``: an independent uniform permutation of ``range(n)`` per row."""
    return torch.rand(B, n, generator=generator, device=device).argsort(dim=1)


def permute_hidden_stacked(weights: Sequence[Tensor], biases: Sequence[Tensor],
                           generator: torch.Generator | None = None,
                           return_perms: bool = False
                           ) -> Params | tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """Permute the hidden neurons of every network independently (function unchanged).

    For hidden layer ``l`` with permutation ``p``: ``W_l <- W_l[p, :]``,
    ``b_l <- b_l[p]``, ``W_{l+1} <- W_{l+1}[:, p]``. With ``return_perms`` also
    returns the ``[B, d_l]`` permutations (new position ``i`` holds old neuron ``p[i]``).
    """
    B = _check(weights, biases)
    W = list(weights)
    b = list(biases)
    perms = []
    for l in range(len(W) - 1):                       # hidden layers 1..M-1 (0-based output of layer l)
        d = W[l].shape[1]
        p = random_permutations(B, d, generator)
        perms.append(p)
        W[l] = torch.gather(W[l], 1, p[:, :, None].expand(-1, -1, W[l].shape[2]))
        b[l] = torch.gather(b[l], 1, p)
        W[l + 1] = torch.gather(W[l + 1], 2, p[:, None, :].expand(-1, W[l + 1].shape[1], -1))
    return (W, b, perms) if return_perms else (W, b)


def _add_noise(t: Tensor, std: float | Tensor, generator: torch.Generator | None) -> Tensor:
    """``t`` plus ``N(0, std^2)`` noise (``std`` a number, or a tensor broadcasting against ``t``)."""
    return t + std * torch.randn(t.shape, generator=generator, dtype=t.dtype, device=t.device)


def _drop(t: Tensor, p: float, generator: torch.Generator | None, rescale: bool = False) -> Tensor:
    """``t`` with each entry zeroed with probability ``p`` (``rescale``: survivors divided by ``1 - p``)."""
    kept = t * (torch.rand(t.shape, generator=generator, device=t.device) >= p).to(t.dtype)
    return kept / (1.0 - p) if rescale else kept


def gaussian_noise(weights: Sequence[Tensor], biases: Sequence[Tensor], sigma: float,
                   generator: torch.Generator | None = None, include_bias: bool = True) -> Params:
    """Add i.i.d. ``N(0, sigma^2)`` noise to every weight (and bias)."""
    _check(weights, biases)
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    return ([_add_noise(w, sigma, generator) for w in weights],
            [_add_noise(b, sigma, generator) if include_bias else b.clone() for b in biases])


def weight_dropout(weights: Sequence[Tensor], biases: Sequence[Tensor], p: float,
                   generator: torch.Generator | None = None, include_bias: bool = False,
                   rescale: bool = False) -> Params:
    """Zero each weight independently with probability ``p``.

    No ``1/(1-p)`` rescaling by default: the goal is a nearby network, not an
    unbiased activation estimate.
    """
    _check(weights, biases)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    return ([_drop(w, p, generator, rescale) for w in weights],
            [_drop(b, p, generator, rescale) if include_bias else b.clone() for b in biases])


def relative_noise_stacked(tensors: Sequence[Tensor | None], noise: float = 0.0, dropout: float = 0.0,
                           generator: torch.Generator | None = None) -> list[Tensor | None]:
    """Perturb stacked parameter tensors of any shape, relative to each network's own scale.

    Each network's tensor ``t`` (row ``i`` of a stack ``[B, ...]``) gets
    ``N(0, (noise * std(t))^2)`` noise (population std over the whole tensor, so a
    single-entry tensor gets none), then each entry is zeroed with probability
    ``dropout`` and the rest scaled by ``1 / (1 - dropout)``. This is the
    accuracy-prediction augmentation of the neural-graphs paper (``noise=0.1``,
    ``dropout=0.01``); unlike :func:`gaussian_noise` it suits convolution kernels
    and layers of any scale. ``None`` entries (absent biases) pass through.

    Shapes: every tensor ``[B, ...]`` -> the same shape.
    """
    if noise < 0 or not 0.0 <= dropout < 1.0:
        raise ValueError(f"need noise >= 0 and 0 <= dropout < 1, got {noise} and {dropout}")
    out = []
    for t in tensors:
        if t is not None and noise:
            std = t.flatten(1).std(1, unbiased=False).reshape(-1, *([1] * (t.dim() - 1)))
            t = _add_noise(t, noise * std, generator)
        if t is not None and dropout:
            t = _drop(t, dropout, generator, rescale=True)
        out.append(t)
    return out


def inr_affine(weights: Sequence[Tensor], biases: Sequence[Tensor], matrix: Tensor,
               shift: Tensor) -> Params:
    """Fold an input transform into the first layer: the new INR is ``f'(x) = f(A x + t)``.

    ``matrix`` ``[B, d, d]`` (or ``[d, d]``), ``shift`` ``[B, d]`` (or ``[d]``).
    ``W_1 <- W_1 A`` and ``b_1 <- b_1 + W_1 t``; exact, other layers untouched.
    For an image INR, the new image at ``x`` shows the old image at ``A x + t``.
    """
    B = _check(weights, biases)
    W1, b1 = weights[0], biases[0]
    d = W1.shape[2]
    A = matrix.to(W1.dtype).expand(B, d, d) if matrix.dim() == 2 else matrix.to(W1.dtype)
    t = shift.to(W1.dtype).expand(B, d) if shift.dim() == 1 else shift.to(W1.dtype)
    if A.shape != (B, d, d) or t.shape != (B, d):
        raise ValueError(f"matrix must be [B, {d}, {d}] and shift [B, {d}] with B={B}, "
                         f"got {tuple(matrix.shape)} and {tuple(shift.shape)}")
    new_w1 = torch.bmm(W1, A)
    new_b1 = b1 + torch.bmm(W1, t.unsqueeze(-1)).squeeze(-1)
    return [new_w1, *weights[1:]], [new_b1, *biases[1:]]


def random_affine(B: int, translate: float = 0.0, rotate: float = 0.0, scale: float = 0.0,
                  generator: torch.Generator | None = None,
                  dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Random 2-D ``(A [B,2,2], t [B,2])``: ``A = s R(theta)``.

    ``theta ~ U(-rotate, rotate)`` degrees, ``s ~ U(1 - scale, 1 + scale)``,
    each coordinate of ``t ~ U(-translate, translate)`` (coordinates live in
    ``[-1, 1]``).
    """
    if translate < 0 or rotate < 0 or not 0 <= scale < 1:
        raise ValueError(f"need translate >= 0, rotate >= 0, 0 <= scale < 1; got {translate}, {rotate}, {scale}")
    u = torch.rand(B, 4, generator=generator, dtype=torch.float64) * 2 - 1
    theta = u[:, 0] * math.radians(rotate)
    s = 1.0 + u[:, 1] * scale
    cos, sin = torch.cos(theta) * s, torch.sin(theta) * s
    A = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    t = u[:, 2:] * translate
    return A.to(dtype), t.to(dtype)


@dataclass(frozen=True)
class Augment:
    """A composable augmentation config for INR datasets (all off by default).

    Applied in this order: INR affine (``translate``/``rotate``/``scale``, only
    for 2-input networks), hidden permutation, weight dropout, Gaussian noise.
    Noise and dropout act on the raw (unnormalised) parameters.
    """

    permute: bool = False
    noise_std: float = 0.0
    dropout: float = 0.0
    translate: float = 0.0
    rotate: float = 0.0
    scale: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.permute, bool):
            raise ValueError(f"Augment permute={self.permute!r}: expected a bool (True or False)")
        for name in ("noise_std", "dropout", "translate", "rotate", "scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"Augment {name}={value!r}: expected a finite float")
        if self.noise_std < 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"need noise_std >= 0 and 0 <= dropout < 1, got {self.noise_std}, {self.dropout}")
        random_affine(0, self.translate, self.rotate, self.scale)  # validates

    @property
    def active(self) -> bool:
        """Whether any augmentation is switched on (otherwise the batch is used as it is)."""
        return bool(self.permute or self.noise_std or self.dropout or self.translate
                    or self.rotate or self.scale)

    def __call__(self, weights: Sequence[Tensor], biases: Sequence[Tensor],
                 generator: torch.Generator | None = None) -> Params:
        B = _check(weights, biases)
        W, b = list(weights), list(biases)
        if self.translate or self.rotate or self.scale:
            if W[0].shape[2] != 2:
                raise ValueError(f"translate/rotate/scale need 2-D input coordinates, "
                                 f"the first layer has {W[0].shape[2]} inputs")
            A, t = random_affine(B, self.translate, self.rotate, self.scale, generator, W[0].dtype)
            W, b = inr_affine(W, b, A, t)
        if self.permute:
            W, b = permute_hidden_stacked(W, b, generator)
        if self.dropout:
            W, b = weight_dropout(W, b, self.dropout, generator)
        if self.noise_std:
            W, b = gaussian_noise(W, b, self.noise_std, generator)
        return W, b
