"""Update rules that train B flat-parameter networks at meta-test time: a learned optimizer, or Adam.

Both own the parameters ``theta [B, P]`` and take one gradient step with :meth:`step`; the
meta-test loop (:func:`neuralgraph.l2o.evaluate.train_optimizees`) computes the gradients.
Adam is ``torch.optim.Adam`` itself: one parameter group per learning rate of the grid, so one
vectorised run covers every (learning rate, seed) pair.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .features import OptimizerState, advance, init_state
from .layout import ParamLayout
from .optimizer import LearnedOptimizer

__all__ = ["LearnedRule", "AdamRule"]


class LearnedRule:
    """A learned optimizer applied to B networks (no meta-gradient).

    Args:
        opt: the learned optimizer.
        layout: the optimizee's layout (``opt.layout(arch)``).
        theta: initial parameters ``[B, P]``.
    """

    def __init__(self, opt: LearnedOptimizer, layout: ParamLayout, theta: Tensor) -> None:
        self.opt, self.layout = opt.eval(), layout
        self.theta = theta.detach().clone()
        self.state: OptimizerState = init_state(theta.shape[0], theta.shape[1], theta.device, theta.dtype)

    @torch.no_grad()
    def step(self, grad: Tensor) -> Tensor:
        """Apply one update for gradients ``grad [B, P]``; returns the new parameters."""
        st = advance(self.state, grad)
        self.theta = self.theta - self.opt(self.layout, self.theta, grad, st.momenta, st.step)
        self.state = OptimizerState(st.momenta, st.step + 1)
        return self.theta


class AdamRule:
    """``torch.optim.Adam`` on ``len(lrs)`` groups of ``seeds`` networks each (rows ``g * seeds + s``).

    Args:
        theta: initial parameters ``[len(lrs) * seeds, P]``.
        lrs: one learning rate per group.
        seeds: networks per group.
    """

    def __init__(self, theta: Tensor, lrs: Sequence[float], seeds: int) -> None:
        if theta.shape[0] != len(lrs) * seeds:
            raise ValueError(f"l2o: AdamRule needs {len(lrs)} x {seeds} networks, got {theta.shape[0]}")
        self.leaves = [t.detach().clone().requires_grad_() for t in theta.split(seeds)]
        self.adam = torch.optim.Adam([{"params": [leaf], "lr": float(lr)} for leaf, lr in zip(self.leaves, lrs)])
        self.seeds = seeds

    @property
    def theta(self) -> Tensor:
        """Current parameters ``[B, P]``."""
        return torch.cat([leaf.detach() for leaf in self.leaves])

    def step(self, grad: Tensor) -> Tensor:
        """Apply one Adam step for gradients ``grad [B, P]``; returns the new parameters."""
        for leaf, g in zip(self.leaves, grad.split(self.seeds)):
            leaf.grad = g.clone()
        self.adam.step()
        return self.theta
