"""Files of a meta-training run: one checksummed checkpoint, rewritten atomically after every outer step.

``<run>/last.pt`` is a plain dict (``torch.load(weights_only=True)`` reads it)::

    format ("neuralgraph.l2o.run"), version, config (MetaTrainConfig as dict), spec (OptimizerSpec
    as dict), arch (the optimizee's Architecture.to_dict()), meta_params (state_dict),
    meta_optimizer (Adam's state_dict), outer_step (completed outer steps), optimizees (theta,
    momenta, step, life, end of the networks being trained), data_rng (generator state),
    history (one row per outer step), elapsed_s, best (outer step and validation accuracy of the
    best meta-validation so far), checksums

``<run>/best.pt`` is the same record at the best meta-validation; :func:`load_learned_optimizer`
reads it (``last.pt`` when there is none, or when given explicitly).

Written through :func:`neuralgraph.io.atomic_save` with :func:`neuralgraph.io.checksums`, so an
interrupted write never leaves a truncated file and changed bytes are refused when read.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..io import atomic_save, checksums, read_torch_file, verify_checksums
from .optimizer import LearnedOptimizer, OptimizerSpec

__all__ = ["RUN_FORMAT", "RUN_VERSION", "CHECKPOINT_NAME", "BEST_NAME", "save_run", "load_run", "run_path",
           "load_learned_optimizer", "load_meta_params"]

RUN_FORMAT = "neuralgraph.l2o.run"
RUN_VERSION = 1
CHECKPOINT_NAME = "last.pt"
BEST_NAME = "best.pt"
_REQUIRED = ("config", "spec", "arch", "meta_params", "outer_step", "history")


def run_path(run: str | os.PathLike, best: bool = True) -> Path:
    """The checkpoint of a run: ``run`` itself if it is a file, else ``run/best.pt`` (with ``best``, when it
    exists) or ``run/last.pt``."""
    run = Path(run)
    if not run.is_dir():
        return run
    return run / BEST_NAME if best and (run / BEST_NAME).is_file() else run / CHECKPOINT_NAME


def save_run(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a run's state (format, version and checksums added) atomically to ``path``."""
    record = {"format": RUN_FORMAT, "version": RUN_VERSION,
              **{k: v for k, v in state.items() if k not in ("format", "version", "checksums")}}
    record["checksums"] = checksums(record)
    return atomic_save(record, path)


def load_run(run: str | os.PathLike, map_location: str | torch.device = "cpu", best: bool = True) -> dict[str, Any]:
    """Read and verify the checkpoint of a meta-training run (a run directory, its ``best.pt`` or ``last.pt``).

    A directory gives its ``best.pt`` (``best=False``: its ``last.pt``, the end of meta-training).

    ``ValueError`` naming the file for anything else: a training checkpoint of ``neuralgraph train``,
    a file of another version, a damaged file.
    """
    path = run_path(run, best)
    obj = read_torch_file(path, map_location, "learned-optimizer checkpoint", "learned-optimizer checkpoint")
    if not isinstance(obj, dict) or obj.get("format") != RUN_FORMAT:
        what = f"format {obj.get('format')!r}" if isinstance(obj, dict) and "format" in obj else (
            "a neuralgraph training checkpoint" if isinstance(obj, dict) and "epoch" in obj else
            f"a {type(obj).__name__}")
        raise ValueError(f"{path}: not a learned-optimizer run ({what}); give the --out directory of "
                         "`neuralgraph l2o meta-train`")
    if obj.get("version") != RUN_VERSION:
        raise ValueError(f"{path}: learned-optimizer run version {obj.get('version')}, this code reads {RUN_VERSION}")
    missing = [k for k in _REQUIRED if k not in obj]
    if missing:
        raise ValueError(f"{path}: learned-optimizer run lacks {missing}: the file is incomplete")
    verify_checksums(obj, path, hint="restore it from a copy or meta-train again")
    return obj


def load_meta_params(opt: LearnedOptimizer, state: dict[str, Any], where: str | os.PathLike) -> None:
    """Load a checkpoint's meta-parameters into ``opt``, refusing one of another optimizer.

    Args:
        opt: the optimizer to fill.
        state: a checkpoint dict (from :func:`load_run`).
        where: the file, for the message.
    """
    saved = OptimizerSpec.from_dict(state["spec"])
    if saved != opt.spec:
        diff = [f"{k}: checkpoint {v!r} vs this optimizer {getattr(opt.spec, k)!r}"
                for k, v in saved.to_dict().items() if getattr(opt.spec, k) != v]
        raise ValueError(f"{where}: holds a {saved.processor!r} learned optimizer of other settings ("
                         f"{'; '.join(diff)}); build it with load_learned_optimizer")
    opt.load_state_dict(state["meta_params"])


def load_learned_optimizer(run: str | os.PathLike, processor: str | None = None) -> LearnedOptimizer:
    """The learned optimizer of a meta-training run, in eval mode, ready for :class:`~neuralgraph.l2o.L2O`.

    Args:
        run: the run directory (or its ``last.pt``).
        processor: if given, the processor the caller expects; a run of another one is refused.
    """
    state = load_run(run)
    spec = OptimizerSpec.from_dict(state["spec"])
    if processor is not None and processor != spec.processor:
        raise ValueError(f"{run_path(run)}: holds a {spec.processor!r} learned optimizer, not {processor!r}")
    opt = LearnedOptimizer(spec)
    load_meta_params(opt, state, run_path(run))
    return opt.eval()
