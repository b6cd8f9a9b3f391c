"""Old names kept working for one release: a module ``__getattr__`` that forwards them with a warning."""
from __future__ import annotations

import importlib
import warnings
from typing import Any, Callable

__all__ = ["forward_moved"]


def forward_moved(module: str, moved: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for names that moved: ``moved[name]`` is ``"package.module"`` or
    ``"package.module:new_name"`` (a rename). Reading an old name returns the new object with a
    ``DeprecationWarning`` that says where it lives now; any other name is an ``AttributeError``.

    Args:
        module: the module's ``__name__``, for the messages.
        moved: old name -> where it is now.
    """
    def __getattr__(name: str) -> Any:
        if name not in moved:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        target, _, new = moved[name].partition(":")
        new = new or name
        warnings.warn(f"{module}.{name} is deprecated and will be removed in the next release; use {target}.{new}",
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(target), new)

    return __getattr__
