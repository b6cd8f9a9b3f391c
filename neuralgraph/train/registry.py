"""Model names -> constructors, so the CLI and checkpoints can refer to models by name.

The equivariant models live in ``dws_equiv`` and are imported by name, only when
asked for, so a missing or broken optional model gives a clear error naming
it instead of breaking ``neuralgraph train --model mlp``. The import by name is a
plug-in registry, not a way around a circle: ``dws_equiv`` sits below the trainer
and never imports it (``tests/test_house.py`` reads these names as imports and checks
that the graph has no circle).

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
from typing import Any, Callable, Sequence

from torch import nn

from ..architecture import Architecture
from .options import check_options, parse_options, signature_hints

__all__ = ["ModelSpec", "MODELS", "available_models", "build_model", "model_class", "hyperparameters",
           "parse_hyperparameters", "check_hyperparameters"]

#: Constructor arguments derived from the dataset's architecture when not given explicitly.
ARCH_BOUNDS: dict[str, Callable[[Architecture], int]] = {
    "max_in": lambda a: a.widths[0],
    "max_out": lambda a: a.widths[-1],
    "max_taps": lambda a: a.edge_dim,         # processor argument named so in saved runs' model_kwargs
    "in_edge": lambda a: a.edge_dim,          # DWSNet: one edge channel per kernel tap
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
    """Names accepted by ``--model`` / ``TrainConfig.model`` (the keys of :data:`MODELS`)."""
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


def _accepted_arguments(cls: Callable[..., nn.Module]) -> tuple[dict[str, Any], bool]:
    """Named constructor arguments and their annotations, following ``**kwargs`` up to the base classes.

    Returns ``({name: annotation}, open)``; ``open`` is True when a ``**kwargs`` is never
    resolved to named arguments, so any keyword may be valid. A subclass's annotation
    wins over its base class's.
    """
    hints: dict[str, Any] = {}
    for klass in getattr(cls, "__mro__", (cls,)):
        init = klass.__dict__.get("__init__") if isinstance(klass, type) else klass
        if init is None:
            continue
        for name, hint in signature_hints(init).items():
            hints.setdefault(name, hint)
        params = inspect.signature(init).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return hints, False
        if klass is nn.Module:
            break
    return hints, True


#: Constructor arguments the trainer sets from the dataset, never given as hyper-parameters.
FROM_DATASET = ("out_dim", "arch")


def hyperparameters(name: str) -> tuple[dict[str, Any], bool]:
    """``({hyper-parameter: annotation}, open)`` of model ``name``: what ``--model-arg`` may set.

    Excludes the arguments derived from the dataset (``out_dim``, ``arch``) and those
    fixed by the model entry (``mlp-aug``'s ``permute_augment``).
    """
    hints, open_kwargs = _accepted_arguments(model_class(name))
    return {k: v for k, v in hints.items() if k not in FROM_DATASET + FROM_TASK and k not in MODELS[name].fixed}, \
        open_kwargs


#: Constructor arguments the trainer sets from the task (``--task``), never given as hyper-parameters.
FROM_TASK = ("head",)


def _refuse_reserved(name: str, keys: Any, values: dict[str, Any] | None = None) -> None:
    for key in keys:
        if key in FROM_TASK:
            raise ValueError(f"model {name!r}: {key} is set by the task (--task: classify and regress use the "
                             f"invariant head, edit the equivariant one) and cannot be given as a hyper-parameter")
        if key in FROM_DATASET:
            raise ValueError(f"model {name!r}: {key} is set from the dataset and cannot be given as a hyper-parameter")
        if key in MODELS[name].fixed:
            raise ValueError(f"model {name!r} fixes {key}={MODELS[name].fixed[key]!r}; use another model name "
                             f"to change it")


def parse_hyperparameters(name: str, pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Command-line ``(key, text)`` pairs read by the annotations of model ``name``'s constructor.

    ``ValueError`` (one line naming the key and what it accepts) for unknown keys, keys
    given twice and values that do not fit the annotation (``hidden=8.5`` for an ``int``,
    ``use_probes=flase`` for a ``bool``).
    """
    _refuse_reserved(name, [k for k, _ in pairs], {k: v.strip().strip("'\"") for k, v in pairs})
    hints, open_kwargs = hyperparameters(name)
    if open_kwargs:                                # any keyword may be valid: unknown keys read as literals
        hints = {**{k: Any for k, _ in pairs}, **hints}
    return parse_options(pairs, hints, owner=f"model {name!r}", noun="hyper-parameter")


def check_hyperparameters(name: str, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` checked against model ``name``'s constructor annotations (the Python-API twin of
    :func:`parse_hyperparameters`; strings are not converted, so ``"false"`` for a bool is refused)."""
    if not isinstance(values, dict):
        raise ValueError(f"model_kwargs: expected a dict of {{name: value}}, got {type(values).__name__}")
    _refuse_reserved(name, values, values)
    hints, open_kwargs = hyperparameters(name)
    if open_kwargs:
        hints = {**{k: Any for k in values}, **hints}
    return check_options(values, hints, owner=f"model {name!r}", noun="hyper-parameter")


def build_model(name: str, out_dim: int | None, arch: Architecture | None = None, *, head: str = "invariant",
                **hparams: Any) -> nn.Module:
    """Instantiate model ``name`` with ``out_dim`` outputs and the given hyper-parameters.

    ``head`` is the task's (``"invariant"``: ``[num_graphs, out_dim]``; ``"equivariant"``:
    an edited batch; ``out_dim`` is then ``None``).

    Unknown hyper-parameters, values of the wrong type and values the constructor
    refuses (``hidden=0``) raise a one-line ``ValueError`` naming the model and the key.
    Position tables given explicitly must hold the dataset's architecture (``max_in``
    at least its input width, ...).
    """
    cls = model_class(name)
    spec = MODELS[name]
    check_hyperparameters(name, hparams)
    accepted, _ = _accepted_arguments(cls)
    kwargs = {**hparams, **spec.fixed}
    if arch is not None:
        for key, derive in ARCH_BOUNDS.items():
            if key not in accepted:
                continue
            need = derive(arch)
            if key not in kwargs:
                kwargs[key] = need
            elif kwargs[key] < need:
                raise ValueError(f"model {name!r}: {key}={kwargs[key]} is smaller than the dataset needs ({need}, "
                                 f"from its architecture {arch.widths}); leave {key} out to size it automatically")
    if "arch" in accepted:
        if arch is None:
            raise ValueError(f"model {name!r} needs the dataset's architecture (arch=)")
        kwargs["arch"] = arch
    if "head" in accepted:
        kwargs["head"] = head
    elif head != "invariant":
        raise ValueError(f"model {name!r} ({cls.__name__}) has no {head} head")
    if out_dim is not None:
        kwargs["out_dim"] = out_dim
    try:
        return cls(**kwargs)
    except ValueError as e:
        if cls.__name__ in str(e):                 # the constructor already names itself
            raise
        raise ValueError(f"model {name!r} ({cls.__name__}): {e}") from e
