"""Per-layer statistics of INR parameters, streamed chunk by chunk, and the standardisation they define."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torch_geometric.data import Batch

from ..batching import set_attr_like

__all__ = ["RunningMoments", "layer_stats", "normalize_params"]

_STAT_KEYS = ("weight_mean", "weight_std", "bias_mean", "bias_std")


class RunningMoments:
    """Per-layer mean/variance of weights and biases, merged chunk by chunk (Chan et al.).

    Each chunk contributes its own count, mean and centred sum of squares
    (computed in float64); merging is exact up to rounding, so the full stack
    never has to be in memory at once.
    """

    def __init__(self, num_layers: int) -> None:
        self.num_layers = num_layers
        z = lambda: torch.zeros(2 * num_layers, dtype=torch.float64)
        self.count, self.mean, self.m2 = z(), z(), z()

    def update(self, weights: Sequence[Tensor], biases: Sequence[Tensor]) -> "RunningMoments":
        """Merge one chunk of stacked networks into the running per-layer moments; returns ``self``.

        Args:
            weights: ``M`` tensors ``[n, ...]``, one per layer.
            biases: ``M`` tensors ``[n, ...]``, one per layer.
        """
        if len(weights) != self.num_layers or len(biases) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} layers, got {len(weights)} weights and {len(biases)} biases")
        for k, t in enumerate([*weights, *biases]):
            x = t.detach().reshape(-1).double()
            nb = x.numel()
            if nb == 0:
                continue
            mb = x.mean()
            m2b = (x - mb).square().sum()
            na = self.count[k]
            n = na + nb
            delta = mb - self.mean[k]
            self.mean[k] += delta * nb / n
            self.m2[k] += m2b + delta * delta * na * nb / n
            self.count[k] = n
        return self

    def result(self) -> dict[str, Tensor]:
        """``{weight_mean, weight_std, bias_mean, bias_std}``, each ``[M]`` float32 (unbiased std)."""
        var = self.m2 / (self.count - 1).clamp_min(1)
        std = var.sqrt().float()
        mean = self.mean.float()
        M = self.num_layers
        return {"weight_mean": mean[:M], "weight_std": std[:M], "bias_mean": mean[M:],
                "bias_std": std[M:], "count": self.count[:M].clone()}


def layer_stats(weights: Sequence[Tensor], biases: Sequence[Tensor], chunk: int = 4096) -> dict[str, Tensor]:
    """Per-layer statistics of stacked parameters, streamed over chunks of networks."""
    rm = RunningMoments(len(weights))
    n = weights[0].shape[0]
    for s in range(0, n, chunk):
        rm.update([w[s:s + chunk] for w in weights], [b[s:s + chunk] for b in biases])
    return rm.result()


def _scale(std: Tensor, eps: float) -> Tensor:
    """``std + eps``, or 1 for a layer without spread (``std <= eps``): such a layer is only centred.

    Dividing by ``~eps`` would blow any other split's deviation from the
    constant up by ``1 / eps`` (a bias layer that is zero over the train split
    and 0.01 on a validation INR would become 1e6).
    """
    return torch.where(std > eps, std + eps, torch.ones_like(std))


def normalize_params(weights: Sequence[Tensor], biases: Sequence[Tensor], stats: dict[str, Tensor],
                     eps: float = 1e-8) -> tuple[list[Tensor], list[Tensor]]:
    """Standardise each layer's weights and biases with the dataset statistics.

    A layer whose standard deviation is ``<= eps`` is centred only (see :func:`_scale`).
    """
    wm, bm = stats["weight_mean"], stats["bias_mean"]
    ws, bs = _scale(stats["weight_std"], eps), _scale(stats["bias_std"], eps)
    W = [(w - wm[m]) / ws[m] for m, w in enumerate(weights)]
    b = [(x - bm[m]) / bs[m] for m, x in enumerate(biases)]
    return W, b


def _normalize_batch(batch: Batch, stats: dict[str, Tensor], eps: float = 1e-8) -> None:
    """Standardise a batch's biases/weights per layer in place; keep the raw values beside them.

    Elementwise the same arithmetic as :func:`normalize_params` (bit-identical results).
    """
    wm, ws, bm, bs = (stats[k].to(batch.x.dtype) for k in _STAT_KEYS)
    ws, bs = _scale(ws, eps), _scale(bs, eps)
    layer = (batch.node_layer - 1).clamp(min=0)
    hasb = (batch.node_layer > 0).unsqueeze(-1)
    x = torch.where(hasb, (batch.x - bm[layer].unsqueeze(-1)) / bs[layer].unsqueeze(-1), batch.x)
    el = (batch.edge_layer - 1).view(-1, *([1] * (batch.edge_attr.dim() - 1)))
    edge_attr = (batch.edge_attr - wm[el]) / ws[el]
    if "edge_mask" in batch and batch.edge_mask is not None:
        edge_attr = edge_attr * batch.edge_mask.to(edge_attr.dtype)    # padded taps stay zero
    set_attr_like(batch, "x_raw", batch.x, "x")
    set_attr_like(batch, "edge_attr_raw", batch.edge_attr, "edge_attr")
    batch.x, batch.edge_attr = x, edge_attr
