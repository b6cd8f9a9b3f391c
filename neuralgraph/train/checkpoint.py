"""Training checkpoints: atomic writes, RNG capture, config checks on resume.

A checkpoint is a plain dict (loadable with ``weights_only=True``)::

    version, config (TrainConfig as dict), model (state_dict), optimizer,
    scheduler, epoch (completed epochs), step, history (list of per-epoch
    metric dicts), best (epoch / val_acc / val_loss), rng (one entry per rank),
    data (fingerprints of the split files), arch (Architecture.to_dict()),
    inference (training normalisation statistics, see :func:`inference_state`),
    num_classes, checksums

``last.pt`` is rewritten after every epoch and ``best.pt`` whenever the
validation accuracy improves; both through :func:`neuralgraph.io.atomic_save`,
so an interrupted run never leaves a truncated file. ``checksums``
(:func:`neuralgraph.io.checksums`: the sha256 of every tensor, e.g.
``model/head.0.weight``, and of the other entries) is verified by
:func:`load_checkpoint`, so a checkpoint whose bytes changed on disk is refused
by ``predict``, ``evaluate``, ``extend`` and ``--resume`` instead of giving other
weights. Checkpoints written before checksums existed load unverified.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from ..inr.stats import _STAT_KEYS  # the per-layer statistics an ``inference`` entry stores
from ..io import atomic_save, checksums, read_torch_file, verify_checksums

__all__ = ["CHECKPOINT_VERSION", "save_checkpoint", "load_checkpoint", "capture_rng", "restore_rng", "inference_state", "extend_run",
           "config_mismatch"]

CHECKPOINT_VERSION = 1
_REQUIRED = ("version", "config", "model", "epoch", "history", "best", "arch", "num_classes")


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` (plus the format version and its checksums) atomically to ``path``.

    A ``version`` or ``checksums`` entry of ``state`` (from a loaded checkpoint) is replaced.
    """
    ck = {"version": CHECKPOINT_VERSION, **{k: v for k, v in state.items() if k not in ("version", "checksums")}}
    ck["checksums"] = checksums(ck)
    return atomic_save(ck, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (clear errors for anything else).

    Its checksums are verified (``ValueError`` naming the file and the damaged tensor, e.g.
    ``best.pt: checksum mismatch in model/head.0.weight``); a checkpoint without them (written
    before they existed) loads unverified.
    """
    path = Path(path)
    obj = read_torch_file(path, map_location, "checkpoint", "checkpoint")
    missing = [k for k in _REQUIRED if not isinstance(obj, dict) or k not in obj]
    if missing:
        raise ValueError(f"{path}: not a neuralgraph training checkpoint (missing {missing})")
    if obj["version"] != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {obj['version']}, this code reads {CHECKPOINT_VERSION}")
    if "checksums" in obj:
        verify_checksums(obj, path, hint="restore it from a copy or train again")
    return obj


def capture_rng() -> dict[str, Any]:
    """The global RNG states (torch CPU/CUDA, numpy, random) as checkpoint-safe values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Set the global RNG states (torch CPU, numpy, random, and CUDA when the device count
    matches) from :func:`capture_rng`'s dict, so a resumed run draws what it would have.
    """
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state((npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["gauss"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def config_mismatch(saved: dict[str, Any], current: dict[str, Any], ignore: Iterable[str] = ()) -> list[str]:
    """Human-readable differences between two configs, skipping keys in ``ignore``."""
    ignore = set(ignore)
    out = []
    for k in sorted(set(saved) | set(current)):
        if k in ignore:
            continue
        a, b = saved.get(k, "<absent>"), current.get(k, "<absent>")
        if a != b:
            out.append(f"{k}: checkpoint {a!r} vs now {b!r}")
    return out




def inference_state(splits: dict[str, Any], normalize: bool) -> dict[str, Any]:
    """What inference needs beyond the weights, as checkpoint entries: ``{"inference": {...}}``.

    ``inference`` holds ``normalize`` (whether the run standardised its inputs) and
    ``stats``: the *training* split's per-layer weight/bias mean and std (``[M]``
    float32 each, ``None`` for data without them), so that new data are normalised
    as the training data were, not with their own statistics; and the data's
    ``source`` / ``fit`` metadata (image shape, SIREN frequency) for rendering.
    The trainer adds it to every checkpoint with
    ``state.update(inference_state(run.splits, run.config.normalize))``.
    """
    train = splits.get("train")
    stats = getattr(train, "stats", None)
    keep = None
    if isinstance(stats, dict) and all(k in stats for k in _STAT_KEYS):
        keep = {k: torch.as_tensor(stats[k]).detach().float().cpu().clone() for k in _STAT_KEYS}
    meta = getattr(train, "meta", None) or {}
    return {"inference": {"normalize": bool(normalize), "stats": keep,
                          "source": meta.get("source"), "fit": dict(meta.get("fit") or {})}}


def extend_run(run_dir: str | os.PathLike, epochs: int) -> dict[str, Any]:
    """Let a (finished) run continue to ``epochs`` in total: rewrite the epoch count of its checkpoints.

    ``train(config, resume=True)`` refuses a changed ``epochs`` (it would silently
    change the run); this is the explicit way. ``best.pt`` and ``last.pt`` get
    ``config["epochs"] = epochs`` (and ``config["out"] = run_dir``, so a copied run
    directory continues in place); the weights, optimiser, history and RNG states stay, so resuming continues
    exactly after the last epoch. The learning-rate schedule is rebuilt for the new
    total (linear warmup, then cosine over all ``epochs``): the rate rises again from
    where the shorter schedule ended (a warm restart).

    Returns the updated config dict (what to build ``TrainConfig(**config)`` from).
    """
    run_dir = Path(run_dir)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    last = load_checkpoint(last_path)
    old = int(last["config"]["epochs"])
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs <= old:
        raise ValueError(f"{last_path}: epochs must be an int above the run's {old}, got {epochs!r}")
    paths = [p for p in (best_path, last_path) if p.is_file()]
    for path in paths:                                  # best.pt first: last.pt decides what a resume sees
        ck = last if path == last_path else load_checkpoint(path)
        ck["config"] = {**ck["config"], "epochs": epochs}
        save_checkpoint(ck, path)
    return {**last["config"], "out": str(run_dir)}
