"""``reset_parameters()`` of composite modules: every child resets its own parameters."""
from __future__ import annotations

from torch import nn

__all__ = ["reset_children", "ResetChildren"]


def reset_children(module: nn.Module) -> None:
    """Call ``reset_parameters()`` of every child of ``module``, recursing into children without one
    (containers such as ``nn.Sequential`` / ``nn.ModuleList``)."""
    for child in module.children():
        if hasattr(child, "reset_parameters"):
            child.reset_parameters()
        else:
            reset_children(child)


class ResetChildren:
    """Mixin for composite modules: ``reset_parameters()`` resets every child (:func:`reset_children`).

    List it before the ``nn.Module`` base (``class Head(ResetChildren, nn.Module)``) so it also
    overrides a base's own ``reset_parameters`` (PyG's ``MessagePassing`` resets only its aggregation).
    """

    def reset_parameters(self) -> None:
        """Re-initialise every parameter (each child resets its own)."""
        reset_children(self)
