"""A few full-batch Adam steps, shared by the tests that check a model's training loss falls."""
from __future__ import annotations

import torch
from torch import Tensor, nn


def adam_losses(net: nn.Module, batch, labels: Tensor, steps: int = 40, lr: float = 3e-3) -> list[float]:
    """Cross-entropy after each of ``steps`` Adam steps on one fixed batch."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(batch), labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
