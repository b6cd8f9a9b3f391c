"""Per-layer dense features of a uniform batch: what the DWS layers' dense path works on.

A batch of one fully connected layered architecture in canonical order (see
:class:`~dws_equiv.uniform.UniformBlocks`) is, feature by feature, a list of per-layer
node tensors ``[B, d_l, C]`` and per-block edge tensors ``[B, d_m, d_{m-1}, C]`` (target,
source): the stacked form of the weight space, with channels last. :class:`DenseFeatures`
holds that form. A model converts the flat ``[N, C]`` / ``[E, C]`` features of the batch
to it once (views, no copy), runs every layer, norm and readout on it, and converts back
only where flat features are asked for.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import Tensor

from .index import DWSIndex
from .uniform import UniformBlocks

__all__ = ["DenseFeatures", "reduce_dim", "resolve_layout", "check_uniform_sizes", "mix_and_pool"]


def check_uniform_sizes(blocks: UniformBlocks, max_in: int, max_out: int, who: str) -> UniformBlocks:
    """``blocks`` itself if its input / output widths fit ``max_in`` / ``max_out``; a ``ValueError``
    naming the numbers otherwise (as :meth:`DWSIndex.from_batch` does for the scatter path)."""
    d_in, d_out = blocks.widths[0], blocks.widths[-1]
    for name, count, limit, arg in (("input", d_in, max_in, "max_in"), ("output", d_out, max_out, "max_out")):
        if count > limit:
            raise ValueError(f"the graphs have {count} {name} neurons but {who} was built with {arg}={limit} "
                             f"(build it with {arg} >= {count}, or let the sizes follow the data: DWSNet.for_data("
                             f"batch, ...) or DWSNet(..., {arg}=None), sized by its first batch)")
    return blocks


def resolve_layout(index, max_in: int, max_out: int, who: str) -> "UniformBlocks | DWSIndex":
    """How a DWS layer or readout processes a batch: dense blocks or gather/scatter indices.

    Args:
        index: a :class:`DWSIndex` (the scatter path, always honoured), a
            :class:`~dws_equiv.uniform.UniformBlocks` (the dense path), or a batch of neural
            graphs: dense when :meth:`UniformBlocks.detect` finds it uniform with a hidden layer,
            else its :class:`DWSIndex`.
        max_in: largest input width the caller supports.
        max_out: largest output width the caller supports.
        who: the caller, named in errors.
    """
    if isinstance(index, UniformBlocks):
        return check_uniform_sizes(index, max_in, max_out, who)
    if not isinstance(index, DWSIndex):
        blocks = UniformBlocks.detect(index)
        if blocks is not None and blocks.depth >= 2:
            return check_uniform_sizes(blocks, max_in, max_out, who)
    return DWSIndex.resolve(index, max_in, max_out, who)


def reduce_dim(t: Tensor, dim: int, reduce: Literal["mean", "sum", "max"]) -> Tensor:
    """``t`` reduced over ``dim`` with ``reduce`` (the dense twin of a scatter-reduction).

    Args:
        t: any tensor.
        dim: the axis to reduce (removed).
        reduce: ``"mean"``, ``"sum"`` or ``"max"``.
    """
    if reduce == "mean":            # sum, then scale the small result: the backward is an expand, not a copy
        return t.sum(dim) / t.size(dim)
    if reduce == "sum":
        return t.sum(dim)
    if reduce == "max":
        return t.amax(dim)
    raise ValueError(f"reduce must be 'mean', 'sum' or 'max', got {reduce!r}")


@dataclass(frozen=True)
class DenseFeatures:
    """Node and edge features of a uniform batch, one tensor per layer and per weight block.

    Attributes:
        blocks: the batch's :class:`~dws_equiv.uniform.UniformBlocks` (widths ``d_0..d_M``).
        nodes: ``M + 1`` tensors, ``nodes[l]`` of shape ``[B, d_l, C]`` (``nodes[0]``: input neurons).
        edges: ``M`` tensors, ``edges[m - 1]`` of shape ``[B, d_m, d_{m-1}, C]`` (weights ``W_m``,
            target then source).
    """

    blocks: UniformBlocks
    nodes: tuple[Tensor, ...]
    edges: tuple[Tensor, ...]

    @property
    def depth(self) -> int:
        """``M``, the number of weight blocks."""
        return self.blocks.depth

    @property
    def widths(self) -> tuple[int, ...]:
        """``(d_0, ..., d_M)``."""
        return self.blocks.widths

    @staticmethod
    def from_flat(x: Tensor, edge_attr: Tensor, blocks: UniformBlocks) -> "DenseFeatures":
        """Views of flat batch features as per-layer / per-block tensors (no copy).

        Shapes: ``x [N, C]``, ``edge_attr [E, C]`` -> ``nodes[l] [B, d_l, C]``,
        ``edges[m - 1] [B, d_m, d_{m-1}, C]``.
        """
        B, n, e = blocks.num_graphs, blocks.nodes_per_graph, blocks.edges_per_graph
        if x.dim() != 2 or edge_attr.dim() != 2 or x.size(0) != B * n or edge_attr.size(0) != B * e:
            raise ValueError(f"features {tuple(x.shape)} / {tuple(edge_attr.shape)} do not fit a uniform batch of "
                             f"{B} graphs of widths {list(blocks.widths)} ([{B * n}, C] / [{B * e}, C])")
        w = blocks.widths
        nodes = tuple(x.view(B, n, x.size(1)).split(w, 1))            # one split: one backward pass
        parts = edge_attr.view(B, e, edge_attr.size(1)).split([a * b for a, b in zip(w[:-1], w[1:])], 1)
        edges = tuple(p.unflatten(1, (dt, ds)) for p, ds, dt in zip(parts, w[:-1], w[1:]))
        return DenseFeatures(blocks, nodes, edges)

    def to_flat(self) -> tuple[Tensor, Tensor]:
        """The flat ``(x [N, C], edge_attr [E, C])`` of the batch, in its canonical order (one copy each)."""
        B = self.blocks.num_graphs
        x = torch.cat(self.nodes, 1).flatten(0, 1)
        e = torch.cat([w.reshape(B, -1, w.size(-1)) for w in self.edges], 1).flatten(0, 1)
        return x, e

    def map(self, fn: Callable[[Tensor], Tensor], edge_fn: Callable[[Tensor], Tensor] | None = None
            ) -> "DenseFeatures":
        """``fn`` applied to every node tensor and ``edge_fn`` (default ``fn``) to every edge tensor.

        Both must act on the channel axis only (per element), as norms and activations do.
        """
        edge_fn = fn if edge_fn is None else edge_fn
        return DenseFeatures(self.blocks, tuple(fn(t) for t in self.nodes), tuple(edge_fn(t) for t in self.edges))


def mix_and_pool(W: Tensor, E: Tensor, reduce: Literal["mean", "sum", "max"]) -> tuple[Tensor, Tensor, Tensor]:
    """A weight block's channel mixing and its two pools, the three things a DWS layer reads from it.

    Returns ``(W @ E^T, reduce over sources, reduce over targets)``. For ``"mean"`` and ``"sum"``
    one autograd node computes all three, and its backward writes the block's gradient once
    (``grad_mix @ E`` plus both pools' gradients broadcast in place) instead of three full-size
    gradients summed by autograd; ``"max"`` uses the plain ops.

    Args:
        W: a weight block (target, source, channels).
        E: the ``C' x C`` channel mixing.
        reduce: ``"mean"``, ``"sum"`` or ``"max"``.

    Shapes: ``W [B, d_t, d_s, C]``, ``E [C', C]`` -> ``([B, d_t, d_s, C'], [B, d_t, C], [B, d_s, C])``.
    """
    if reduce == "max":
        return torch.matmul(W, E.t()), W.amax(2), W.amax(1)
    return _MixAndPool.apply(W, E, reduce == "mean")


class _MixAndPool(torch.autograd.Function):
    """:func:`mix_and_pool` for sum / mean pools (first derivatives only)."""

    @staticmethod
    def forward(ctx, W: Tensor, E: Tensor, mean: bool) -> tuple[Tensor, Tensor, Tensor]:
        ctx.save_for_backward(W, E)
        ctx.mean = mean
        to_target, to_source = W.sum(2), W.sum(1)
        if mean:
            to_target, to_source = to_target / W.size(2), to_source / W.size(1)
        return torch.matmul(W, E.t()), to_target, to_source

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_mix: Tensor | None, g_target: Tensor | None, g_source: Tensor | None):
        W, E = ctx.saved_tensors
        g_W = g_E = None
        # under autocast the mixing ran in a lower precision; its backward runs in the block's dtype
        g_mix, g_target, g_source = (None if g is None else g.to(W.dtype) for g in (g_mix, g_target, g_source))
        E = E.to(W.dtype)
        if ctx.needs_input_grad[0]:
            g_W = torch.matmul(g_mix, E) if g_mix is not None else torch.zeros_like(W)
            if g_target is not None:
                g_W.add_((g_target / W.size(2) if ctx.mean else g_target).unsqueeze(2))
            if g_source is not None:
                g_W.add_((g_source / W.size(1) if ctx.mean else g_source).unsqueeze(1))
        if ctx.needs_input_grad[1] and g_mix is not None:
            g_E = g_mix.reshape(-1, g_mix.size(-1)).t() @ W.reshape(-1, W.size(-1))
        return g_W, g_E, None
