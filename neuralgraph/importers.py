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
that ``neuralgraph train --data DIR`` reads, with the ``manifest.json`` and the
overwrite rules of ``neuralgraph fit-inrs`` (one dataset per directory). The library normalises with its own
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
from .inr.files import FORMAT_VERSION, _check_finite, check_labels, save_inr_dataset
from .inr.fitting import _fingerprint, _tensor_digest
from .inr.siren import siren_architecture
from .inr.splits import (MANIFEST, _differences, _finish_install, _holds_fitted_data, _install, _prepare_directory,
                         _read_manifest)
from .io import lock_directory

__all__ = ["import_inr_splits", "read_splits_json"]

_SPLITS = ("train", "val", "test")
_SOURCE = "dwsnets-import"              # meta["source"] and manifest source of imported datasets


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


def _table(splits_path: Path, val_from_train: int) -> dict[str, dict[str, list]]:
    """The train / val / test entries of the splits JSON (``val`` cut from train with ``val_from_train``)."""
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
    return table


def _read_split(split: str, entry: dict[str, list], base: Path, splits_path: Path, widths: list[int] | None,
                num_classes: int, progress: bool) -> tuple[list[Tensor], list[Tensor], Tensor, list[int]]:
    """``(weights [n, out, in], biases [n, out], labels [n], widths)`` of one split's INR files (all checked)."""
    from tqdm.auto import tqdm

    n = len(entry["path"])
    W: list[Tensor] = []
    b: list[Tensor] = []
    for i, p in enumerate(tqdm(entry["path"], desc=f"import {split}", unit="INR", disable=not progress)):
        f = _resolve(p, base, splits_path)
        weights, biases = mlp_state_dict_params(_load_state_dict(f), where=str(f))
        shape = [int(weights[0].shape[1])] + [int(w.shape[0]) for w in weights]
        for m, w in enumerate(weights):
            if int(w.shape[1]) != shape[m]:
                raise ValueError(f"{f}: layer {m} takes {int(w.shape[1])} inputs, expected {shape[m]}")
        widths = shape if widths is None else widths
        if shape != widths:
            raise ValueError(f"{f}: INR of widths {shape}, the others have {widths}; all INRs must share one "
                             f"architecture")
        if not W:
            W = [torch.empty(n, *w.shape, dtype=torch.float32) for w in weights]
            b = [torch.empty(n, *x.shape, dtype=torch.float32) for x in biases]
        for m, (w, x) in enumerate(zip(weights, biases)):
            W[m][i] = w
            b[m][i] = x
    try:
        labels = torch.as_tensor(entry["label"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{splits_path}: split {split!r} labels are not numbers ({e})") from None
    labels = check_labels(labels, n, num_classes, f"{splits_path}: split {split!r}")
    _check_finite(W, b, f"{splits_path}: split {split!r}")
    return W, b, labels, widths


def _refuse_other_data(out_dir: Path, manifest: dict, overwrite: bool) -> None:
    """``ValueError`` if ``out_dir`` holds INRs of another fit or import and ``overwrite`` is off."""
    _finish_install(out_dir)                               # a committed overwrite left half-installed
    existing = _read_manifest(out_dir)
    if overwrite or existing == manifest or not _holds_fitted_data(out_dir):
        return
    settings = (existing or {}).get("settings", {})
    if not existing:
        what = f"INR files without a readable {MANIFEST} (their origin is unknown)"
    elif settings.get("source") == _SOURCE:
        what = f"another import ({_differences(existing, manifest)})"
    else:
        what = f"INRs fitted with other settings (source {settings.get('source')!r} there, {_SOURCE!r} now)"
    raise ValueError(f"{out_dir} holds {what}; refusing to mix them with this import. Pass overwrite=True "
                     f"(`neuralgraph import-inrs --overwrite`) to replace them, or choose another output directory "
                     f"(--out)")


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
    overwrite: bool = False,
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
        val_from_train: when the JSON has no 'val' split, take this many of the last training INRs.
        overwrite: replace a dataset of another fit or import in ``out_dir``.
        progress: a progress bar over the INR files.

    **One directory, one dataset**, as for :func:`~neuralgraph.inr.build_inr_splits`:
    ``out_dir/manifest.json`` records the import's settings and a digest of the imported
    INRs. A directory holding another dataset (a fit, another import, or split files
    without a manifest) is refused unless ``overwrite``; the new splits are then written
    into ``out_dir/.overwrite/`` and replace the old ones (manifest first) only once all
    three are written. Every INR file and label is read and checked before anything is
    written (the whole dataset is held in memory), so a bad file in the test split leaves
    ``out_dir`` as it was. The directory is locked while writing.

    Every INR must be an MLP of the same widths; anything else raises ``ValueError``
    naming the file. Returns ``{split: path}``.
    """
    splits_path = Path(splits)
    table = _table(splits_path, val_from_train)
    base = Path(root) if root is not None else splits_path.parent
    out_dir = Path(out_dir)
    data, widths = {}, None
    for split in _SPLITS:
        *data[split], widths = _read_split(split, table[split], base, splits_path, widths, num_classes, progress)
    if statistics is not None:
        _check_statistics(Path(statistics), widths)
    fit = {"w0": float(w0), "offset": float(offset)}
    if image_shape is not None:
        fit["image_shape"] = [int(s) for s in image_shape]
    settings = {"source": _SOURCE, "splits": str(splits_path.resolve()), "root": str(base.resolve()),
                "statistics": None if statistics is None else str(Path(statistics).resolve()),
                "num_classes": int(num_classes), "val_from_train": int(val_from_train), **fit}
    inputs = {s: _fingerprint({"weights": [_tensor_digest(w) for w in W], "biases": [_tensor_digest(x) for x in b],
                               "labels": _tensor_digest(y)}) for s, (W, b, y) in data.items()}
    manifest = json.loads(json.dumps({"format_version": FORMAT_VERSION, "settings": settings, "inputs": inputs}))
    dataset_meta = {"source": _SOURCE, "splits_file": splits_path.name, "w0": float(w0), "offset": float(offset)}
    arch = siren_architecture(widths, w0=w0, offset=offset)
    with lock_directory(out_dir, "INR dataset directory", "wait for that import to finish or choose another --out"):
        _refuse_other_data(out_dir, manifest, overwrite)
        target = _prepare_directory(out_dir, manifest, overwrite)
        for split, (W, b, labels) in data.items():
            meta = {"source": _SOURCE, "split": split, "dataset": dataset_meta, "fit": fit,
                    "imported": {"splits": str(splits_path),
                                 "statistics": None if statistics is None else str(statistics)}}
            save_inr_dataset(target / f"{split}.pt", W, b, labels, arch, num_classes=num_classes, meta=meta)
        if target != out_dir:
            _install(target, out_dir)
    return {split: out_dir / f"{split}.pt" for split in _SPLITS}
