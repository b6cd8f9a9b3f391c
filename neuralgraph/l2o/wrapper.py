"""A learned optimizer as a ``torch.optim.Optimizer`` for your own ``nn.Sequential``.

    import neuralgraph.l2o as l2o
    opt = l2o.L2O(model, "runs/l2o_nggnn")          # a meta-training run (or a LearnedOptimizer)
    for x, y in loader:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

The model must be a neural graph the optimizer can read (:func:`~neuralgraph.l2o.optimizee_architecture`):
an ``nn.Sequential`` of Linear / Conv layers and parameter-free modules, within the processor's
bounds (input channels, outputs, depth, kernel size; the FF optimizer has none). Its gradients
and parameters are gathered into one flat vector per step (one copy per weight / bias tensor),
the learned optimizer computes every update at once, and the new values are written back.
The state (momenta, step) lives per parameter in ``self.state``, so ``state_dict`` /
``load_state_dict`` work as for any torch optimizer.
"""
from __future__ import annotations

import os
from typing import Callable

import torch
from torch import Tensor, nn

from .features import DECAYS, OptimizerState, advance
from .layout import model_parameters, optimizee_architecture
from .optimizer import LearnedOptimizer

__all__ = ["L2O"]


class L2O(torch.optim.Optimizer):
    """Train ``model`` with a learned optimizer (see the module docstring).

    Args:
        model: the ``nn.Sequential`` to train (its Linear / Conv weights and biases).
        optimizer: a :class:`LearnedOptimizer`, or a meta-training run directory / checkpoint.
    """

    def __init__(self, model: nn.Module, optimizer: LearnedOptimizer | str | os.PathLike) -> None:
        if not isinstance(optimizer, LearnedOptimizer):
            from .checkpoint import load_learned_optimizer

            optimizer = load_learned_optimizer(optimizer)
        arch = optimizee_architecture(model)
        params = model_parameters(model, arch)
        super().__init__(params, defaults={})
        self.learned = optimizer.eval().requires_grad_(False)
        self.layout = optimizer.layout(arch)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """One update of every parameter from its gradient; returns ``closure()``'s loss if given.

        ``ValueError`` when some parameters have a gradient and others not (the learned optimizer
        updates all of them together); nothing happens when none has one.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = self.param_groups[0]["params"]
        have = [p.grad is not None for p in params]
        if not any(have):
            return loss
        if not all(have):
            missing = [i for i, h in enumerate(have) if not h]
            raise ValueError(f"l2o: parameters {missing} (in layer order, weight then bias) have no gradient while "
                             "others do; the learned optimizer updates all of them together")
        dev = params[0].device
        dtype = next(self.learned.parameters()).dtype
        self.learned.to(dev)
        theta = torch.cat([p.detach().reshape(1, -1) for p in params], 1).to(dtype)
        grad = torch.cat([p.grad.detach().reshape(1, -1) for p in params], 1).to(dtype)
        if not torch.isfinite(grad).all():
            raise FloatingPointError("l2o: a gradient holds NaN or inf; the learned optimizer cannot use it")
        D = len(DECAYS)
        first = self.state[params[0]]
        if "momenta" in first:
            momenta = torch.cat([self.state[p]["momenta"].reshape(1, -1, D) for p in params], 1).to(dtype)
            steps = first["step"].reshape(1).to(dev)
        else:
            momenta = theta.new_zeros(1, theta.shape[1], D)
            steps = torch.zeros(1, dtype=torch.long, device=dev)
        st = advance(OptimizerState(momenta, steps), grad)
        new = theta - self.learned(self.layout, theta, grad, st.momenta, st.step)
        sizes = [p.numel() for p in params]
        for p, value, m in zip(params, new.split(sizes, 1), st.momenta.split(sizes, 1)):
            p.copy_(value.view_as(p))
            self.state[p]["momenta"] = m.reshape(*p.shape, D).clone()
            self.state[p]["step"] = st.step.reshape(()) + 1
        return loss
