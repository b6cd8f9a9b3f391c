"""The ``train`` command's flags, generated from :class:`~neuralgraph.train.TrainConfig`.

One place for defaults and types: every ``TrainConfig`` field becomes a flag
(``batch_size`` -> ``--batch-size``; booleans -> ``--amp`` / ``--no-amp``; the dict
fields -> repeatable ``KEY=VALUE`` flags read by the annotated types of their target),
with the field's default. ``--config run.json`` loads a saved configuration (the
``config.json`` every run writes, or a ``results.json`` holding one); flags given on
the command line override it.
"""
from __future__ import annotations

import argparse
import json
import math
import typing
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

__all__ = ["add_train_arguments", "config_from_args", "load_config_file", "kv", "device", "positive", "finite",
           "at_least_zero"]


def kv(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` split into ``(key, text)``; the text is read later by the annotated type of the
    target (the model constructor's argument, the ``Augment`` field): see :mod:`neuralgraph.train.options`."""
    key, sep, value = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def device(text: str) -> str:
    """``--device``: cpu, cuda, cuda:N or auto, checked against this machine."""
    from ..device import resolve_device

    try:
        resolve_device(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def positive(kind):
    """A parser of finite numbers > 0 of type ``kind``."""
    def parse(text: str):
        v = kind(text)
        if not v > 0 or not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
        return v
    parse.__name__ = kind.__name__                 # argparse names the type in its messages
    return parse


def finite(text: str) -> float:
    """``argparse`` type: a finite float (``nan`` / ``inf`` refused)."""
    v = float(text)
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return v


def at_least_zero(text: str) -> float:
    """``argparse`` type: a finite float ``>= 0``."""
    v = finite(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return v


#: Help of each TrainConfig field (the default is appended from the dataclass).
HELP = {
    "data": "directory of {train,val,test}.pt (from `neuralgraph fit-inrs`) or a zoo file",
    "out": "run directory (checkpoints, metrics, pictures, config.json)",
    "model": "processor (`neuralgraph models` lists them)",
    "model_kwargs": "model hyper-parameter (repeatable), read by the type of the constructor argument, "
                    "e.g. --model-arg hidden=64 --model-arg use_probes=false --model-arg depths=2,3",
    "task": "what the run optimises",
    "task_kwargs": "task option (repeatable), e.g. --task-arg size=3 for edit",
    "epochs": "training epochs",
    "batch_size": "networks per batch, per process",
    "lr": "peak learning rate (AdamW)",
    "weight_decay": "AdamW weight decay",
    "warmup_epochs": "linear warmup, then cosine decay",
    "clip_grad_norm": "<= 0 disables clipping",
    "label_smoothing": "in [0, 1) (task classify)",
    "seed": "seed of initialisation, data order and augmentation",
    "device": "cpu, cuda, cuda:N or auto",
    "normalize": "standardise weights and biases per layer with the training split's statistics",
    "augment": "data augmentation (neuralgraph.augment.Augment field), e.g. --augment permute=true "
               "--augment noise_std=0.01",
    "eval_batch_size": "networks per evaluation batch",
    "n_reconstructions": "reconstructions drawn for INR tasks",
    "amp": "bf16 autocast of the forward (CUDA)",
    "compile": "torch.compile the forward (falls back to eager)",
}
#: Flag name of the dict fields (repeatable KEY=VALUE).
DICT_FLAGS = {"model_kwargs": "--model-arg", "task_kwargs": "--task-arg", "augment": "--augment"}
#: Argument-level checks beyond the annotation (TrainConfig checks the rest).
CHECKS = {"epochs": positive(int), "batch_size": positive(int), "eval_batch_size": positive(int),
          "lr": positive(float), "weight_decay": at_least_zero, "warmup_epochs": at_least_zero,
          "clip_grad_norm": finite, "label_smoothing": at_least_zero, "device": device}


def _config_fields():
    from .trainer import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        default = f.default if f.default is not MISSING else (f.default_factory() if f.default_factory is not MISSING
                                                              else None)
        yield f.name, hints[f.name], default


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per TrainConfig field, ``--config``, and the run-control flags."""
    from ..tasks import TASKS
    from .registry import MODELS

    parser.add_argument("--config", type=Path, help="a saved configuration (RUN/config.json, or a results.json); "
                                                   "flags given here override it")
    choices = {"model": list(MODELS), "task": list(TASKS)}
    for name, hint, default in _config_fields():
        help_ = HELP.get(name, "")
        if name in DICT_FLAGS:
            parser.add_argument(DICT_FLAGS[name], dest=name, type=kv, action="append", default=[],
                                metavar="KEY=VALUE", help=help_)
            continue
        flag = "--" + name.replace("_", "-")
        shown = "" if default is None else f" (default: {default})"
        if hint is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None,
                                help=help_ + shown)
        else:
            parser.add_argument(flag, dest=name, type=CHECKS.get(name, hint if hint in (int, float) else str),
                                choices=choices.get(name), default=None, metavar=name.upper() if name not in choices
                                else None, help=help_ + shown)
    parser.add_argument("--threads", type=positive(int), help="torch intra-op threads")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt (start fresh if absent)")
    parser.add_argument("--stop-after-epoch", type=positive(int),
                        help="stop after this many epochs in total (continue later with --resume)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A TrainConfig dict from ``path``: a ``config.json`` or a ``results.json`` (its ``config`` entry)."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"--config: {path} not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"--config: {path} is not JSON ({e})") from None
    if isinstance(obj, dict) and isinstance(obj.get("config"), dict):
        obj = obj["config"]
    known = {name for name, _, _ in _config_fields()}
    if not isinstance(obj, dict) or not obj.keys() <= known:
        extra = sorted(set(obj) - known) if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"--config: {path} is not a training configuration (unknown entries {extra})")
    return obj


def config_from_args(args: argparse.Namespace):
    """The :class:`TrainConfig` of parsed ``train`` arguments: ``--config`` first, then the given flags."""
    from ..augment import Augment
    from ..tasks import parse_task_options
    from .options import dataclass_hints, parse_options
    from .registry import parse_hyperparameters
    from .trainer import TrainConfig

    values: dict[str, Any] = dict(load_config_file(args.config)) if args.config is not None else {}
    for name, _, _ in _config_fields():
        given = getattr(args, name)
        if name not in DICT_FLAGS and given is not None:
            values[name] = str(given) if name in ("data", "out") else given
    for name in ("data", "out"):
        if name not in values:
            raise ValueError(f"train: --{name} is required (or a --config that sets it)")
    model = values.get("model", TrainConfig.model)
    task = values.get("task", TrainConfig.task)
    parsed = {"model_kwargs": lambda pairs: parse_hyperparameters(model, pairs),
              "task_kwargs": lambda pairs: parse_task_options(task, pairs),
              "augment": lambda pairs: parse_options(pairs, dataclass_hints(Augment), owner="--augment",
                                                     noun="option")}
    for name, parse in parsed.items():
        if getattr(args, name):
            values[name] = {**values.get(name, {}), **parse(getattr(args, name))}
    return TrainConfig(**values)
