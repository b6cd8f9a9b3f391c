"""The INR split-file format: writing, reading, checksums and label checks.

A split file is ``torch.save`` of a dict::

    format_version  int (FORMAT_VERSION)
    arch            Architecture.to_dict() of every INR in the file
    weights         [W_m  [n, out, in]]   stacked per layer
    biases          [b_m  [n, out]]
    labels          [n] int64, each in [0, meta["num_classes"])
    source_index    [n] int64   index of the source image in its source split
    psnr            [n] float32 fit quality
    stats           per-layer weight/bias mean and std (streamed, see RunningMoments)
    meta            dict: num_classes, fit settings, source, fingerprint
    checksums       {"sha256": {tensor name: hex digest}} of every tensor above,
                    "structure": {entry: hex digest} of each entry's non-tensor content
                    (neuralgraph.io.entry_structures: architecture, meta, stats, dtypes, shapes)

Files are written atomically (temp file in the same directory + ``os.replace``)
and loaded with ``mmap=True``, so a large split costs no RAM until indexed.
Loading verifies the checksums once per file version and process (a corrupted
file raises ``ValueError`` naming it and the tensor or entry, instead of yielding wrong
weights, another SIREN frequency or another activation). Files written before the
``structure`` digests existed are verified by their tensors only.

Format history: version 1 files (no checksums, no stored ``num_classes``)
are refused with a message to refit them; there is no silent fallback, since
the number of classes cannot be recovered from the labels.

A directory made by :func:`build_inr_splits` also holds ``manifest.json``:
the settings and inputs of its fit, written before anything is fitted, so a
rerun with other settings is refused instead of mixing splits.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from ..architecture import Architecture
from ..io import (atomic_save, compact_tensor, entry_structures, mismatched_digests, read_torch_file, some_names,
                  verify_entry_structures)
from ..io import tensor_sha256 as _sha256  # the one tensor digest (checkpoints and ng.save use it too)
from .stats import _STAT_KEYS, layer_stats

__all__ = ["FORMAT_VERSION", "save_inr_dataset", "load_inr_file", "check_labels"]


#: Version 2: per-tensor sha256 checksums and ``meta["num_classes"]``.
FORMAT_VERSION = 2
_SPLIT_KEYS = ("format_version", "arch", "weights", "biases", "labels", "source_index", "psnr", "stats", "meta",
               "checksums")


def check_labels(labels: Tensor, n: int, num_classes: int, where: str | os.PathLike) -> Tensor:
    """Validated class labels as ``[n]`` int64 in ``[0, num_classes)`` (``ValueError`` naming ``where``).

    Integer (or bool) labels, or floating-point labels with integral values, are
    accepted; anything else would be silently truncated or crash a loss later.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"{where}: num_classes must be an integer >= 1, got {num_classes!r}")
    labels = torch.as_tensor(labels)
    if labels.dtype == torch.bool:
        labels = labels.long()
    if tuple(labels.shape) != (n,):
        raise ValueError(f"{where}: labels must have shape ({n},), got {tuple(labels.shape)}")
    if labels.dtype.is_complex:
        raise ValueError(f"{where}: labels must be integers, got dtype {labels.dtype}")
    if labels.dtype.is_floating_point:
        bad = ~torch.isfinite(labels) | (labels != labels.round())
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise ValueError(f"{where}: labels must be integers, got {float(labels[i])} at index {i} "
                             f"(dtype {labels.dtype})")
    if n:
        for i, ok in ((int(labels.argmin()), float(labels.min()) >= 0),
                      (int(labels.argmax()), float(labels.max()) < num_classes)):
            if not ok:
                raise ValueError(f"{where}: label {labels[i].item():g} at index {i} is outside "
                                 f"[0, {num_classes}) for num_classes={num_classes}")
    return labels.long().contiguous()


def _named_tensors(obj: dict) -> dict[str, Tensor]:
    """Every tensor of a split (or chunk) dict, by a stable name."""
    out = {f"weights.{m}": w for m, w in enumerate(obj["weights"])}
    out.update({f"biases.{m}": b for m, b in enumerate(obj["biases"])})
    for key in ("labels", "source_index", "psnr"):
        if key in obj:
            out[key] = obj[key]
    out.update({f"stats.{k}": v for k, v in obj.get("stats", {}).items() if isinstance(v, Tensor)})
    return out


def _checksums(obj: dict) -> dict[str, dict[str, str]]:
    return {"sha256": {name: _sha256(t) for name, t in _named_tensors(obj).items()}}


#: Files whose checksums were verified in this process: (path, inode, size, mtime) -> True.
_VERIFIED: set[tuple] = set()


def _verify_checksums(obj: dict, path: Path) -> None:
    """``ValueError`` naming ``path`` and the tensors whose bytes do not match the stored checksums."""
    st = path.stat()
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key in _VERIFIED:
        return
    bad = mismatched_digests(obj["checksums"], _checksums(obj)["sha256"])
    if bad:
        raise ValueError(f"{path}: checksum mismatch in {some_names(bad)}: the file is corrupted "
                         "(refit it, or copy it again)")
    _VERIFIED.add(key)


def _check_finite(weights: Sequence[Tensor], biases: Sequence[Tensor], where: str | os.PathLike) -> None:
    n = weights[0].shape[0] if len(weights) else 0
    ok = torch.ones(n, dtype=torch.bool)
    for t in [*weights, *biases]:
        ok &= torch.isfinite(t.reshape(n, -1)).all(1)
    if not bool(ok.all()):
        raise ValueError(f"{where}: {int((~ok).sum())} of {n} INRs have non-finite (NaN/inf) parameters; "
                         "a diverged fit is not a dataset")


def _check_stats(stats: dict, num_layers: int, where: str | os.PathLike) -> None:
    for k in _STAT_KEYS:
        v = stats.get(k) if isinstance(stats, dict) else None
        if not isinstance(v, Tensor) or tuple(v.shape) != (num_layers,) or not bool(torch.isfinite(v).all()):
            raise ValueError(f"{where}: stats[{k!r}] must be {num_layers} finite values, got "
                             f"{v if not isinstance(v, Tensor) else tuple(v.shape)}")


def save_inr_dataset(
    path: str | os.PathLike,
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    labels: Tensor,
    arch: Architecture,
    *,
    num_classes: int,
    source_index: Tensor | None = None,
    psnr: Tensor | None = None,
    stats: dict[str, Tensor] | None = None,
    meta: dict | None = None,
) -> Path:
    """Write one split file atomically (statistics streamed here when not given).

    Args:
        num_classes: number of classes of the task (e.g. 10 for digits / MNIST),
            stored as ``meta["num_classes"]``; every label must be in
            ``[0, num_classes)``. It is not guessed from the labels: a split
            may lack the last classes, and a stray label would grow the model.

    Labels may be integers or integral floats (stored as int64); parameters
    must be finite. Any violation raises ``ValueError`` naming ``path``, and
    nothing is written.
    """
    path = Path(path)
    labels = torch.as_tensor(labels)
    n = int(labels.shape[0]) if labels.dim() else -1
    labels = check_labels(labels, n, num_classes, path)
    if len(weights) != arch.num_layers or len(biases) != arch.num_layers:
        raise ValueError(f"{path}: expected {arch.num_layers} weight/bias tensors for the architecture")
    for m, (w, b, spec) in enumerate(zip(weights, biases, arch.layers), start=1):
        if tuple(w.shape) != (n, *spec.weight_shape) or tuple(b.shape) != (n, spec.out_features):
            raise ValueError(f"{path}: layer {m} weight {tuple(w.shape)} / bias {tuple(b.shape)} do not "
                             f"match {n} networks of shape {spec.weight_shape}")
    source_index = torch.arange(n) if source_index is None else source_index
    psnr = torch.full((n,), float("nan")) if psnr is None else psnr
    if source_index.shape != (n,) or psnr.shape != (n,):
        raise ValueError(f"{path}: source_index and psnr must have shape ({n},)")
    weights = [compact_tensor(w, torch.float32) for w in weights]
    biases = [compact_tensor(b, torch.float32) for b in biases]
    _check_finite(weights, biases, path)
    stats = stats if stats is not None else layer_stats(weights, biases)
    _check_stats(stats, arch.num_layers, path)
    obj = {
        "format_version": FORMAT_VERSION,
        "arch": arch.to_dict(),
        "weights": weights,
        "biases": biases,
        "labels": compact_tensor(labels, torch.long),
        "source_index": compact_tensor(source_index, torch.long),
        "psnr": compact_tensor(psnr, torch.float32),
        "stats": {k: (compact_tensor(v, v.dtype) if isinstance(v, Tensor) else v) for k, v in stats.items()},
        "meta": {**(meta or {}), "num_classes": int(num_classes)},
    }
    obj["checksums"] = {**_checksums(obj), "structure": entry_structures(obj)}
    atomic_save(obj, path)
    return path


def load_inr_file(path: str | os.PathLike, mmap: bool = True, verify: bool = True) -> dict:
    """Load and validate a split file (``ValueError`` naming the file if it is not a valid one).

    Checks the format version, the tensor shapes against the stored
    architecture, ``meta["num_classes"]`` and the labels (int64 in
    ``[0, num_classes)``). With ``verify=True`` (default) the sha256 of every
    tensor is compared with the one stored at writing, which reads the whole
    file once: about 0.4 s for a 60000-INR MNIST-size split (286 MB, page-cached; a cold disk adds its read
    time), against ~20 ms for the lazy load itself.
    It is done once per file version (path, inode, size, mtime) and process;
    ``verify=False`` skips it (loading stays lazy, but a corrupted file goes
    unnoticed).
    """
    path = Path(path)
    obj = read_torch_file(path, "cpu", "INR dataset file", "INR dataset file", mmap=mmap)
    if isinstance(obj, dict) and "groups" in obj and "family" in obj:
        raise ValueError(f"{path}: a model-zoo file (neuralgraph zoo generate), not an INR split; zoo files are read "
                         f"by runs of --task regress / adapt (train --task regress --data {path.name})")
    if isinstance(obj, dict) and "format_version" in obj and obj["format_version"] != FORMAT_VERSION:
        version = obj["format_version"]
        hint = (" (written by an older neuralgraph, without checksums and num_classes); refit it, e.g. "
                "`neuralgraph fit-inrs --overwrite`" if isinstance(version, int) and version < FORMAT_VERSION
                else "; upgrade neuralgraph to read it")
        raise ValueError(f"{path}: format_version {version}, this code reads {FORMAT_VERSION}{hint}")
    if not isinstance(obj, dict) or any(k not in obj for k in _SPLIT_KEYS):
        missing = [k for k in _SPLIT_KEYS if not isinstance(obj, dict) or k not in obj]
        raise ValueError(f"{path}: not an INR dataset file (missing {missing})")
    if verify:
        verify_entry_structures(obj, path, hint="refit it, or copy it again")    # before reading what it describes
    try:
        arch = Architecture.from_dict(obj["arch"])
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{path}: unreadable architecture ({type(e).__name__}: {e})") from None
    n = obj["labels"].shape[0] if obj["labels"].dim() else -1
    if len(obj["weights"]) != arch.num_layers or len(obj["biases"]) != arch.num_layers:
        raise ValueError(f"{path}: {len(obj['weights'])} weight / {len(obj['biases'])} bias tensors for an "
                         f"architecture of {arch.num_layers} layers")
    for m, (w, b, spec) in enumerate(zip(obj["weights"], obj["biases"], arch.layers), start=1):
        if tuple(w.shape) != (n, *spec.weight_shape) or tuple(b.shape) != (n, spec.out_features):
            raise ValueError(f"{path}: layer {m} tensors {tuple(w.shape)}/{tuple(b.shape)} do not match "
                             f"the stored architecture and {n} labels")
    if verify:
        _verify_checksums(obj, path)
    if obj["labels"].dtype != torch.long:
        raise ValueError(f"{path}: labels have dtype {obj['labels'].dtype}, expected int64")
    check_labels(obj["labels"], n, obj["meta"].get("num_classes"), path)
    _check_stats(obj["stats"], arch.num_layers, path)
    obj["arch"] = arch
    return obj


def _check_count(**values: Any) -> None:
    """``ValueError`` unless every value is an integer >= 1 (``batch_size``, ``chunk_size``, ...)."""
    bad = [f"{k}={v!r}" for k, v in values.items()
           if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1]
    if bad:
        raise ValueError(f"{', '.join(bad)}: must be an integer >= 1")
