"""Import INR datasets in the layout of the DWSNets / neural-graphs repositories.

Their MNIST-INR layout is a splits JSON::

    {"train": {"path": [".../0.pth", ...], "label": [5, ...]}, "val": {...}, "test": {...}}

where every path is one INR's ``state_dict`` (a SIREN ``2 -> 32 -> 32 -> 1``,
keys such as ``seq.0.weight``, ``seq.0.bias``, ..., torch ``[out, in]`` weights),
plus an optional statistics file (``{"weights": {"mean": [...], "std": [...]},
"biases": {...}}``, element-wise, in their ``[in, out, 1]`` layout) computed on
the training split.

:func:`import_inr_splits` turns that into this library's split files
(``DIR/train.pt``, ``val.pt``, ``test.pt``, see :mod:`neuralgraph.inr.dataset`)
that ``neuralgraph train --data DIR`` reads. The library normalises with its own
per-layer statistics of the training split (computed while writing); a given
statistics file is checked against the INRs' architecture and its path recorded
in ``meta["imported"]``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from .interop import mlp_state_dict_params
from .inr.files import save_inr_dataset
from .inr.siren import siren_architecture

__all__ = ["import_inr_splits", "read_splits_json"]

_SPLITS = ("train", "val", "test")


def read_splits_json(path: str | os.PathLike) -> dict[str, dict[str, list]]:
    """The splits of a DWSNets-style JSON: ``{split: {"path": [...], "label": [...]}}`` (checked)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"splits file not found: {path}")
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a JSON file ({e})") from None
    if not isinstance(obj, dict) or "train" not in obj:
        raise ValueError(f"{path}: expected {{'train': {{'path': [...], 'label': [...]}}, 'val': ..., 'test': ...}}, "
                         f"got keys {list(obj) if isinstance(obj, dict) else type(obj).__name__}")
    out = {}
    for split, entry in obj.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), list) \
                or not isinstance(entry.get("label"), list):
            raise ValueError(f"{path}: split {split!r} must hold lists 'path' and 'label'")
        if len(entry["path"]) != len(entry["label"]):
            raise ValueError(f"{path}: split {split!r} has {len(entry['path'])} paths but "
                             f"{len(entry['label'])} labels")
        if not entry["path"]:
            raise ValueError(f"{path}: split {split!r} is empty")
        out[split] = entry
    return out


def _resolve(p: str, root: Path, where: Path) -> Path:
    q = Path(p)
    if q.is_absolute():
        candidates = [q]
    else:
        candidates = [root / q, Path.cwd() / q]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"{where}: INR file {p!r} not found (looked in {', '.join(str(c) for c in candidates)}); "
                            f"pass root= / --root, the directory the JSON's paths are relative to")


def _load_state_dict(path: Path) -> dict:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets one clear message
        raise ValueError(f"{path}: not a readable state dict ({type(e).__name__}: {e})") from None
    return obj


def _check_statistics(path: Path, widths: Sequence[int]) -> None:
    """The statistics file has per-layer mean/std of the INRs' shapes (DWSNets layout)."""
    try:
        stats = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{path}: not a readable statistics file ({type(e).__name__}: {e})") from None
    M = len(widths) - 1
    for part, shape in (("weights", lambda m: (widths[m], widths[m + 1], 1)), ("biases", lambda m: (widths[m + 1], 1))):
        for k in ("mean", "std"):
            seq = stats.get(part, {}).get(k) if isinstance(stats, dict) and isinstance(stats.get(part), dict) else None
            if not isinstance(seq, (list, tuple)) or len(seq) != M:
                raise ValueError(f"{path}: expected {part}.{k} as a list of {M} tensors (DWSNets statistics file)")
            for m, t in enumerate(seq):
                if not isinstance(t, Tensor) or tuple(t.shape) != shape(m):
                    raise ValueError(f"{path}: {part}.{k}[{m}] has shape {getattr(t, 'shape', None)}, expected "
                                     f"{shape(m)} for INRs of widths {list(widths)}")


def import_inr_splits(
    splits: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    statistics: str | os.PathLike | None = None,
    num_classes: int = 10,
    w0: float = 30.0,
    offset: float = 0.5,
    image_shape: Sequence[int] | None = None,
    val_from_train: int = 0,
    progress: bool = True,
) -> dict[str, Path]:
    """Convert a DWSNets / neural-graphs INR dataset (splits JSON of ``.pth`` state dicts) into split files.

    Args:
        splits: the splits JSON (``{"train": {"path": [...], "label": [...]}, "val": ..., "test": ...}``).
        out_dir: where ``train.pt``, ``val.pt`` and ``test.pt`` are written (atomically).
        root: directory relative paths in the JSON start from (default: the JSON's
            directory, then the current directory).
        statistics: their ``statistics.pth``, checked against the INRs' shapes (optional).
        num_classes: classes of the task (10 for MNIST / Fashion-MNIST); labels are checked against it.
        w0, offset: the SIRENs' frequency and output shift (DWSNets: 30 and +0.5), stored in the architecture.
        image_shape: ``(H, W)`` of the images, recorded so that runs can render the INRs (optional).
        val_from_train: when the JSON has no ``val`` split, take this many of the last training INRs.
        progress: a progress bar over the INR files.

    Every INR must be an MLP of the same widths; anything else raises ``ValueError``
    naming the file. Returns ``{split: path}``.
    """
    from tqdm.auto import tqdm

    splits_path = Path(splits)
    table = read_splits_json(splits_path)
    if "val" not in table:
        if val_from_train < 1:
            raise ValueError(f"{splits_path} has no 'val' split; pass val_from_train=N (--val-from-train N) to take "
                             f"the last N training INRs")
        tr = table["train"]
        if val_from_train >= len(tr["path"]):
            raise ValueError(f"val_from_train={val_from_train} leaves no training INRs (train has {len(tr['path'])})")
        table["val"] = {"path": tr["path"][-val_from_train:], "label": tr["label"][-val_from_train:]}
        table["train"] = {"path": tr["path"][:-val_from_train], "label": tr["label"][:-val_from_train]}
    missing = [s for s in _SPLITS if s not in table]
    if missing:
        raise ValueError(f"{splits_path} lacks the split(s) {missing}")
    base = Path(root) if root is not None else splits_path.parent
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    widths = None
    dataset_meta = {"source": "dwsnets-import", "splits_file": splits_path.name, "w0": float(w0),
                    "offset": float(offset)}
    paths = {}
    for split in _SPLITS:
        entry = table[split]
        n = len(entry["path"])
        W: list[Tensor] = []
        b: list[Tensor] = []
        files = entry["path"]
        it = tqdm(files, desc=f"import {split}", unit="INR", disable=not progress)
        for i, p in enumerate(it):
            f = _resolve(p, base, splits_path)
            weights, biases = mlp_state_dict_params(_load_state_dict(f), where=str(f))
            shape = [int(weights[0].shape[1])] + [int(w.shape[0]) for w in weights]
            if widths is None:
                widths = shape
                if statistics is not None:
                    _check_statistics(Path(statistics), widths)
            if shape != widths:
                raise ValueError(f"{f}: INR of widths {shape}, the others have {widths}; all INRs must share one "
                                 f"architecture")
            if not W:
                W = [torch.empty(n, *w.shape, dtype=torch.float32) for w in weights]
                b = [torch.empty(n, *x.shape, dtype=torch.float32) for x in biases]
            for m, (w, x) in enumerate(zip(weights, biases)):
                if int(w.shape[1]) != (widths[m]):
                    raise ValueError(f"{f}: layer {m} takes {int(w.shape[1])} inputs, expected {widths[m]}")
                W[m][i] = w
                b[m][i] = x
        try:
            labels = torch.as_tensor(entry["label"])
        except (TypeError, ValueError) as e:
            raise ValueError(f"{splits_path}: split {split!r} labels are not numbers ({e})") from None
        fit = {"w0": float(w0), "offset": float(offset)}
        if image_shape is not None:
            fit["image_shape"] = [int(s) for s in image_shape]
        meta = {"source": "dwsnets-import", "split": split, "dataset": dataset_meta, "fit": fit,
                "imported": {"splits": str(splits_path), "statistics": None if statistics is None else str(statistics)}}
        paths[split] = save_inr_dataset(out_dir / f"{split}.pt", W, b, labels,
                                        siren_architecture(widths, w0=w0, offset=offset),
                                        num_classes=num_classes, meta=meta)
    return paths
