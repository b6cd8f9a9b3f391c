"""``reset_parameters()`` of composite modules: every child resets its own parameters."""
from __future__ import annotations

from torch import nn

__all__ = ["reset_children"]


def reset_children(module: nn.Module) -> None:
    """Call ``reset_parameters()`` of every child of ``module``, recursing into children without one
    (containers such as ``nn.Sequential`` / ``nn.ModuleList``)."""
    for child in module.children():
        if hasattr(child, "reset_parameters"):
            child.reset_parameters()
        else:
            reset_children(child)
