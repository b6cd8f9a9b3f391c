"""Old names kept working for one release, each with a ``DeprecationWarning`` that names the new one:
a module ``__getattr__`` for moved or renamed attributes, a decorator for renamed keyword arguments."""
from __future__ import annotations

import functools
import importlib
import warnings
from typing import Any, Callable

__all__ = ["forward_moved", "renamed_keywords", "warn_renamed"]


def warn_renamed(old: str, new: str, stacklevel: int = 3) -> None:
    """Warn that ``old`` is deprecated in favour of ``new`` (both as the user writes them)."""
    warnings.warn(f"{old} is deprecated and will be removed in the next release; use {new}",
                  DeprecationWarning, stacklevel=stacklevel)


def renamed_keywords(**renamed: str) -> Callable[[Callable], Callable]:
    """A decorator that keeps renamed keyword arguments working: ``renamed[old] = new``.

    A call with ``old=...`` warns and passes the value as ``new=...``; a call that gives both
    raises ``TypeError``. Calls with the new names go straight through.
    """
    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            for old, new in renamed.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{fn.__name__}() got both {new}= and its deprecated name {old}=")
                    warn_renamed(f"{fn.__name__}({old}=...)", f"{new}=")
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper

    return decorate


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
        warn_renamed(f"{module}.{name}", f"{target}.{new}")
        return getattr(importlib.import_module(target), new)

    return __getattr__
