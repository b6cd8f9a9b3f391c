"""The learned optimizer: a processor on the optimizee's neural graph, then a per-parameter MLP.

One step for B networks of one architecture (Metz et al., 2022, with the neural-graph context
of Kofinas et al., 2024):

1. per-parameter features (:func:`~neuralgraph.l2o.features.normalised_features`: gradient,
   value, momenta, each normalised over its tensor);
2. with a processor: the features go onto the optimizee's neural graph (a bias's on its neuron,
   a kernel tap's on its edge), the processor embeds the graph, and an equivariant head reads a
   context vector of ``context`` numbers per parameter (a neuron's for its bias, an edge's
   ``K`` taps' from the edge and its two neurons, as :class:`dws_equiv.ng.EquivariantHead`);
3. the per-parameter MLP (FF) reads ``[features, step embedding, context]`` and outputs a
   direction ``d`` and a magnitude ``m``; the update is ``d * exp(m * exp_mult) * step_mult``
   (subtracted from the parameter).

Every stage is equivariant to permutations of the optimizee's hidden neurons, so the update
of a permuted network is the permuted update. The context head's last layers start at zero:
an untrained NG optimizer computes what its FF part alone would.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, fields

import torch
from torch import Tensor, nn

from ..architecture import Architecture
from .features import NUM_FEATURES, NUM_TIME_FEATURES, normalised_features, time_features
from .layout import ParamLayout
from .processors import PROCESSORS, build_processor, embed

__all__ = ["OptimizerSpec", "LearnedOptimizer"]


@dataclass(frozen=True)
class OptimizerSpec:
    """What fixes a learned optimizer's shape (stored in its checkpoints).

    Args:
        processor: ``none`` (per-parameter FF), ``nggnn``, ``ngt`` or ``dwsnet``.
        hidden, num_layers: the processor's width and depth.
        context: numbers per parameter the equivariant head passes to the FF.
        ff_hidden, ff_layers: the per-parameter MLP (learned_optimization: 32, 2).
        taps: kernel taps per edge the processor reads (9: up to 3x3 kernels).
        max_in, max_out, max_depth: the largest input width, output width and number of
            parametric layers of the optimizees the processor can read.
        attn_heads: NG-T's heads. avg_degree: NG-GNN's degree scaler.
        step_mult, exp_mult: the update's scales (learned_optimization: 1e-3, 1e-3).
    """

    processor: str = "nggnn"
    hidden: int = 32
    num_layers: int = 3
    context: int = 8
    ff_hidden: int = 32
    ff_layers: int = 2
    taps: int = 9
    max_in: int = 16
    max_out: int = 16
    max_depth: int = 8
    attn_heads: int = 4
    avg_degree: float = 16.0
    step_mult: float = 1e-3
    exp_mult: float = 1e-3

    def __post_init__(self) -> None:
        if self.processor not in PROCESSORS:
            raise ValueError(f"l2o: unknown processor {self.processor!r}; choose one of {', '.join(PROCESSORS)}")
        for name in ("hidden", "num_layers", "context", "ff_hidden", "ff_layers", "taps", "max_in", "max_out",
                     "max_depth", "attn_heads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"l2o: {name} must be an integer >= 1, got {v!r}")
        for name in ("avg_degree", "step_mult", "exp_mult"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"l2o: {name} must be a number > 0, got {v!r}")

    def to_dict(self) -> dict:
        """Plain values, for checkpoints."""
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "OptimizerSpec":
        """The spec of :meth:`to_dict` (unknown keys refused, naming them)."""
        known = {f.name for f in fields(OptimizerSpec)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"l2o: unknown optimizer settings {unknown}; known: {sorted(known)}")
        return OptimizerSpec(**d)


def _mlp(d_in: int, d_hidden: int, layers: int, d_out: int, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Linear(d_in if i == 0 else d_hidden, d_hidden), act()]
    mods.append(nn.Linear(d_hidden if layers else d_in, d_out))
    return nn.Sequential(*mods)


class LearnedOptimizer(nn.Module):
    """The meta-parameters of a learned optimizer and its update rule (see the module docstring).

    Args:
        spec: an :class:`OptimizerSpec` (or its fields as keywords).
    """

    def __init__(self, spec: OptimizerSpec | None = None, **kwargs) -> None:
        super().__init__()
        if spec is None:
            spec = OptimizerSpec(**kwargs)
        elif kwargs:
            raise ValueError("l2o: give an OptimizerSpec or keyword settings, not both")
        self.spec = spec
        F, C, H = NUM_FEATURES, spec.context, spec.hidden
        self.processor = build_processor(spec.processor, node_features=F, edge_features=spec.taps * F, hidden=H,
                                         num_layers=spec.num_layers, max_in=spec.max_in, max_out=spec.max_out,
                                         max_depth=spec.max_depth, attn_heads=spec.attn_heads,
                                         avg_degree=spec.avg_degree)
        self.uses_graph = self.processor is not None
        if self.uses_graph:
            self.node_head = _mlp(H, H, 1, C, nn.SiLU)
            self.edge_head = _mlp(3 * H, H, 1, spec.taps * C, nn.SiLU)
            for head in (self.node_head, self.edge_head):           # start as the FF optimizer
                nn.init.zeros_(head[-1].weight)
                nn.init.zeros_(head[-1].bias)
        ctx = C if self.uses_graph else 0
        self.ff = _mlp(F + NUM_TIME_FEATURES + ctx, spec.ff_hidden, spec.ff_layers, 2)

    def layout(self, arch: Architecture) -> ParamLayout:
        """The :class:`ParamLayout` of an optimizee, checked against what this optimizer can read.

        ``ValueError`` naming the bound for optimizees wider, deeper or with larger kernels than the
        processor was built for (the FF optimizer reads any architecture).
        """
        if not self.uses_graph:
            return ParamLayout.of(arch)
        s = self.spec
        checks = ((arch.widths[0], s.max_in, "inputs (channels)", "max_in"),
                  (arch.widths[-1], s.max_out, "outputs", "max_out"),
                  (arch.num_layers, s.max_depth, "parametric layers", "max_depth"))
        for have, bound, what, name in checks:
            if have > bound:
                raise ValueError(f"l2o: the optimizee has {have} {what} but this {s.processor} optimizer reads at "
                                 f"most {name}={bound}")
        if s.processor == "dwsnet" and arch.num_layers < 2:
            raise ValueError("l2o: a dwsnet optimizer needs optimizees with a hidden layer (two parametric layers)")
        return ParamLayout.of(arch, taps=s.taps)

    def context(self, layout: ParamLayout, feats: Tensor) -> Tensor:
        """Per-parameter context from the processor on the optimizee's graph.

        Shapes: ``feats [B, P, F]`` -> ``[B, P, context]``.
        """
        B = feats.shape[0]
        node, edge = layout.graph_features(feats)
        graph = copy.copy(layout.batch(B, feats.device))   # shallow: the structure is shared
        graph.x, graph.edge_attr = node, edge
        h, e = embed(self.processor, graph)
        src, dst = graph.edge_index
        node_ctx = self.node_head(h)
        edge_ctx = self.edge_head(torch.cat([e, h[src], h[dst]], -1))
        return layout.parameter_values(node_ctx, edge_ctx, B)

    def forward(self, layout: ParamLayout, theta: Tensor, grad: Tensor, momenta: Tensor, step: Tensor) -> Tensor:
        """The update ``u`` of B networks (the new parameters are ``theta - u``).

        Args:
            layout: the optimizee's layout (from :meth:`layout`).
            theta: parameters; the meta-gradient flows through them.
            grad: gradients of the optimizee's loss.
            momenta: the optimizer state's momenta, already updated with ``grad``.
            step: steps taken so far per network.

        Shapes: ``theta [B, P]``, ``grad [B, P]``, ``momenta [B, P, D]``, ``step [B]`` -> ``[B, P]``.
        """
        layout._check_flat(theta, "theta")
        feats = normalised_features(theta, grad, momenta, layout.tensor_id.to(theta.device), layout.num_tensors)
        B, P, _ = feats.shape
        parts = [feats, time_features(step, feats.dtype).unsqueeze(1).expand(B, P, -1)]
        if self.uses_graph:
            parts.append(self.context(layout, feats))
        out = self.ff(torch.cat(parts, -1))
        direction, magnitude = out.unbind(-1)
        return direction * torch.exp(magnitude * self.spec.exp_mult) * self.spec.step_mult
