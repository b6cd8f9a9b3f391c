"""Model names -> constructors, so the CLI and checkpoints can refer to models by name.

The equivariant models live in ``dws_equiv`` and are imported only when
asked for, so a missing or broken optional model gives a clear error naming
it instead of breaking ``neuralgraph train --model mlp``.

Every model maps a PyG ``Batch`` of neural graphs to ``[num_graphs, out_dim]``
logits. ``build_model(name, out_dim, arch, **hparams)`` passes ``arch`` (the
architecture of the networks in the dataset) only to constructors that take it,
and sizes the position tables of the equivariant models (``max_in``,
``max_out``, ``max_taps``) to that architecture unless they are given: a
SIREN dataset needs 2 input and 1 output slot, not the generic default of 64,
which would multiply the parameters of the readout for nothing.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from ..architecture import Architecture

__all__ = ["ModelSpec", "MODELS", "available_models", "build_model", "model_class"]

#: Constructor arguments derived from the dataset's architecture when not given explicitly.
ARCH_BOUNDS: dict[str, Callable[[Architecture], int]] = {
    "max_in": lambda a: a.widths[0],
    "max_out": lambda a: a.widths[-1],
    "max_taps": lambda a: a.max_taps,
}


@dataclass(frozen=True)
class ModelSpec:
    """How to build one named model: where its class lives and fixed extra arguments."""

    name: str
    module: str
    attr: str
    description: str
    fixed: dict[str, Any] = field(default_factory=dict)   # arguments that define this entry (e.g. augmentation)


MODELS: dict[str, ModelSpec] = {
    "dwsnet": ModelSpec("dwsnet", "dws_equiv", "DWSNet",
                        "DWSNet: deep weight-space network (Navon et al., 2023), permutation-equivariant layers"),
    "nggnn": ModelSpec("nggnn", "dws_equiv.ng", "NGGNN",
                       "NG-GNN: message passing on the neural graph (Kofinas et al., 2024)"),
    "ngt": ModelSpec("ngt", "dws_equiv.ng", "NGTransformer",
                     "NG-T: relational transformer on the neural graph (Kofinas et al., 2024)"),
    "mlp": ModelSpec("mlp", "neuralgraph.train.baselines", "FlatMLP",
                     "baseline: MLP on the flattened weight vector"),
    "mlp-aug": ModelSpec("mlp-aug", "neuralgraph.train.baselines", "FlatMLP",
                         "baseline: flat MLP trained with random hidden-neuron permutations",
                         fixed={"permute_augment": True}),
}


def available_models() -> list[str]:
    return list(MODELS)


def _load(name: str) -> Callable[..., nn.Module]:
    spec = MODELS[name]
    try:
        module = importlib.import_module(spec.module)
    except ImportError as e:
        raise ImportError(f"model {name!r} needs module {spec.module!r}, which cannot be imported: {e}") from e
    if not hasattr(module, spec.attr):
        raise ImportError(f"model {name!r}: {spec.module!r} has no {spec.attr!r} (not implemented in this checkout?)")
    return getattr(module, spec.attr)


def model_class(name: str) -> Callable[..., nn.Module]:
    """The class behind a model name (imported on demand; ``ImportError`` naming what is missing)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    try:
        return _load(name)
    except ImportError as e:
        usable = [n for n in MODELS if n != name and _importable(n)]
        raise ImportError(f"{e}; usable models here: {', '.join(usable) or 'none'}") from e.__cause__


def _importable(name: str) -> bool:
    try:
        _load(name)
    except ImportError:
        return False
    return True


def _accepted_arguments(cls: Callable[..., nn.Module]) -> tuple[set[str], bool]:
    """Named constructor arguments, following ``**kwargs`` up to the base classes' ``__init__``.

    Returns ``(names, open)``; ``open`` is True when a ``**kwargs`` is never resolved to
    named arguments, so any keyword may be valid.
    """
    names: set[str] = set()
    for klass in getattr(cls, "__mro__", (cls,)):
        init = klass.__dict__.get("__init__") if isinstance(klass, type) else klass
        if init is None:
            continue
        params = inspect.signature(init).parameters
        names |= {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return names, False
        if klass is nn.Module:
            break
    return names, True


def build_model(name: str, out_dim: int, arch: Architecture | None = None, **hparams: Any) -> nn.Module:
    """Instantiate model ``name`` with ``out_dim`` outputs and the given hyper-parameters.

    Unknown hyper-parameters raise a ``ValueError`` listing the accepted ones.
    """
    cls = model_class(name)
    spec = MODELS[name]
    accepted, open_kwargs = _accepted_arguments(cls)
    clash = sorted(set(hparams) & set(spec.fixed))
    if clash:
        raise ValueError(f"model {name!r} fixes {clash}; use another model name to change them")
    kwargs = {**hparams, **spec.fixed}
    bad = [k for k in kwargs if k not in accepted and not open_kwargs]
    if bad:
        listed = sorted(accepted - {"self", "out_dim", "arch"})
        raise ValueError(f"model {name!r} ({cls.__name__}) has no hyper-parameter(s) {bad}; accepted: {listed}")
    if arch is not None:
        for key, derive in ARCH_BOUNDS.items():
            if key in accepted and key not in kwargs:
                kwargs[key] = derive(arch)
    if "arch" in accepted:
        if arch is None:
            raise ValueError(f"model {name!r} needs the dataset's architecture (arch=)")
        kwargs["arch"] = arch
    return cls(out_dim=out_dim, **kwargs)
