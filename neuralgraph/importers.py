"""Import INR datasets written by the DWSNets / neural-graphs repositories' own scripts.

Two layouts of a splits JSON, each path one INR's ``state_dict`` (keys ``seq.0.weight``,
``seq.0.bias``, ..., torch ``[out, in]`` weights; DWSNets' ``nn.inr.INR``: a SIREN with
``w0 = 30`` whose output is shifted by ``+0.5``):

* **classification** (their MNIST / Fashion-MNIST split scripts)::

      {"train": {"path": [...], "label": ["5", ...]}, "test": {...}, "val": {...}}

  Labels are numeric strings as their MNIST scripts write them (``"5"``, read with ``int()``
  by their loaders) or integers (Fashion-MNIST); anything else is refused naming the entry.
  DWSNets' script writes absolute paths, neural-graphs' paths relative to the dataset
  directory (the JSON's directory here, or ``root``).
* **sine waves** (DWSNets' ``experiments/ssl``): ``{"train": [path, ...], "val": [...],
  "test": [...]}``, no labels; every file also holds ``coef`` (the ``[a, b]`` of ``a sin(b x)``,
  a list) and the sample grid ``x`` / signal ``y`` (numpy arrays). The coefficients become
  the targets of the ``ssl`` task's probe (``meta["targets"]``), so ``neuralgraph train --task
  ssl`` runs on the authors' own sine data; ``x`` and ``y`` are not kept.

Their files are read with ``torch.load(weights_only=True)`` and only the numpy globals that
numpy arrays need (:data:`NUMPY_GLOBALS`, numpy 1 and 2 names) allowed: no other code can run
while reading. As their loaders do, the network is every tensor whose key holds ``weight`` or
``bias``, in file order.

**Coordinates.** DWSNets' and neural-graphs' image INRs read ``(x = col, y = row)``
(:mod:`neuralgraph.inr.coords`). The importer keeps their weights as they are and records
that convention in the architecture (``coords="xy"``), so ``ng.to_model``, the edit task and
the reconstructions render their images, not the transposes; ``to_coords="rc"`` converts them
to this library's convention instead (first-layer columns swapped, exact), e.g. to mix them
with INRs fitted here.

**Statistics.** This library normalises with its own per-layer statistics of the training
split, recomputed when writing. A ``statistics.pth`` of theirs (element-wise mean / std in
their ``[in, out, 1]`` layout, as their ``compute_statistics`` scripts write it) is not used
for that; it is checked to belong to these splits (its shapes, and its values against the
training split's, see :func:`check_statistics`), so a file of another dataset is refused.

:func:`import_inr_splits` writes this library's split files (``DIR/train.pt``, ``val.pt``,
``test.pt``, see :mod:`neuralgraph.inr.dataset`) with the ``manifest.json`` and the overwrite
rules of ``neuralgraph fit-inrs`` (one dataset per directory).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from .inr.coords import COORDINATES, convert_coordinates, with_coordinates
from .inr.files import FORMAT_VERSION, _check_finite, check_labels, save_inr_dataset
from .inr.siren import siren_architecture
from .inr.splits import (MANIFEST, SPLITS, _differences, _finish_install, _holds_fitted_data, _install,
                         _prepare_directory, _read_manifest)
from .interop import mlp_state_dict_params
from .io import lock_directory, read_torch_file, tensor_sha256

__all__ = ["import_inr_splits", "read_splits_json", "read_peer_file", "check_statistics", "NUMPY_GLOBALS",
           "STATISTICS_TOLERANCE"]

_SOURCE = "dwsnets-import"              # meta["source"] and manifest source of imported datasets
_INTEGER = re.compile(r"\s*[+-]?\d+\s*")


def _fingerprint(obj: dict) -> str:
    """Short digest of the imported INRs of one split (their tensors' sha256), for the manifest."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _numpy_globals() -> list:
    """What ``torch.load(weights_only=True)`` needs to rebuild numpy arrays, under numpy 1 and 2 names."""
    core = getattr(np, "_core", None) or np.core
    reconstruct = core.multiarray._reconstruct
    dtypes = [type(np.dtype(t)) for t in (np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
                                           np.uint8, np.bool_)]
    return [(reconstruct, "numpy.core.multiarray._reconstruct"), (reconstruct, "numpy._core.multiarray._reconstruct"),
            np.ndarray, np.dtype, *dtypes]


#: Globals allowed while reading a peer's file: ``numpy.ndarray``, ``numpy.dtype`` (and the classes of
#: its numeric and bool dtypes) and ``_reconstruct``: numpy arrays (the ``x`` / ``y`` of DWSNets' sine
#: INRs), nothing else.
NUMPY_GLOBALS = _numpy_globals()
#: Largest allowed difference between a statistics file and the training split's own element-wise
#: statistics, in units of the split's standard deviation (for means and for standard deviations).
#: Their scripts may compute it on a random subset (DWSNets: 10,000 of 55,000 INRs: ~0.01 std).
STATISTICS_TOLERANCE = 0.1


def _labels(split: str, labels: list, where: Path) -> list[int]:
    """Integer class labels from the JSON: ints, or numeric strings as their MNIST split scripts write them."""
    out = []
    for i, label in enumerate(labels):
        if isinstance(label, str) and _INTEGER.fullmatch(label):
            out.append(int(label))
        elif isinstance(label, (int, float)) and not isinstance(label, bool):
            out.append(label)
        else:
            raise ValueError(f"{where}: split {split!r} label {label!r} at index {i} is not an integer (a number, or "
                             f"a numeric string such as \"5\" as their split scripts write it)")
    return out


def read_splits_json(path: str | os.PathLike) -> dict[str, dict[str, list | None]]:
    """The splits of a DWSNets / neural-graphs JSON, checked: ``{split: {"path": [...], "label": [...]}}``.

    Reads both layouts of the module docstring; for the sine layout (lists of paths) every
    ``"label"`` is ``None``. Numeric-string labels become ints.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"splits file not found: {path}")
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not a JSON file ({e})") from None
    if not isinstance(obj, dict) or "train" not in obj:
        raise ValueError(f"{path}: expected {{'train': {{'path': [...], 'label': [...]}}, 'val': ..., 'test': ...}} "
                         f"(or {{'train': [paths], ...}} for sine INRs), got keys "
                         f"{list(obj) if isinstance(obj, dict) else type(obj).__name__}")
    kinds = {s: "labelled" if isinstance(e, dict) else "paths" if isinstance(e, list) else None for s, e in obj.items()}
    if len(set(kinds.values())) != 1:
        raise ValueError(f"{path}: each split must be {{'path': [...], 'label': [...]}} (classification) or a list of "
                         f"paths (sine INRs), all of one kind; got {kinds}")
    out = {}
    for split, entry in obj.items():
        if isinstance(entry, list):
            entry = {"path": entry, "label": None}
        elif not isinstance(entry.get("path"), list) or not isinstance(entry.get("label"), list):
            raise ValueError(f"{path}: split {split!r} must hold lists 'path' and 'label'")
        elif len(entry["path"]) != len(entry["label"]):
            raise ValueError(f"{path}: split {split!r} has {len(entry['path'])} paths but "
                             f"{len(entry['label'])} labels")
        if not entry["path"]:
            raise ValueError(f"{path}: split {split!r} is empty")
        bad = [p for p in entry["path"] if not isinstance(p, str)]
        if bad:
            raise ValueError(f"{path}: split {split!r} path {bad[0]!r} is not a string")
        labels = None if entry["label"] is None else _labels(split, entry["label"], path)
        out[split] = {"path": entry["path"], "label": labels}
    return out


def _resolve(p: str, root: Path, where: Path) -> Path:
    q = Path(p)
    candidates = [q] if q.is_absolute() else [root / q, Path.cwd() / q]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"{where}: INR file {p!r} not found (looked in {', '.join(str(c) for c in candidates)}); "
                            f"pass root= / --root, the directory the JSON's paths are relative to")


def read_peer_file(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """One INR file of theirs: ``(network, extras)``, read without running code from the file.

    ``network``: the tensors whose key holds ``weight`` or ``bias``, in file order (what their
    loaders take as the network); ``extras``: every other entry (e.g. ``coef``, ``x``, ``y`` of
    DWSNets' sine INRs, numpy arrays included). Only :data:`NUMPY_GLOBALS` are allowed to the
    unpickler; a file that needs anything else is refused naming it.

    Pass ``network`` to :func:`neuralgraph.interop.from_state_dict` to get one graph.
    """
    path = Path(path)
    obj = read_torch_file(path, "cpu", "INR file", "state dict", allow_globals=NUMPY_GLOBALS,
                          hint="; only tensors, plain Python values and numpy arrays are read (no code from a file "
                               "runs here)")
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")
    network = {k: v for k, v in obj.items() if isinstance(k, str) and ("weight" in k or "bias" in k)}
    extras = {k: v for k, v in obj.items() if k not in network}
    return network, extras


def _coefficients(extras: dict[str, Any], f: Path) -> list[float]:
    coef = extras.get("coef")
    if isinstance(coef, (np.ndarray, Tensor)):
        coef = coef.tolist()
    if not isinstance(coef, (list, tuple)) or not coef or not all(
            isinstance(c, (int, float)) and not isinstance(c, bool) for c in coef):
        raise ValueError(f"{f}: a sine INR file (splits JSON of paths, DWSNets' experiments/ssl) needs 'coef', a list "
                         f"of numbers; got {type(coef).__name__ if coef is not None else 'no coef'}")
    return [float(c) for c in coef]


def _table(splits_path: Path, val_from_train: int) -> dict[str, dict[str, list | None]]:
    """The train / val / test entries of the splits JSON (``val`` cut from train with ``val_from_train``)."""
    table = read_splits_json(splits_path)
    if "val" not in table:
        if val_from_train < 1:
            raise ValueError(f"{splits_path} has no 'val' split; pass val_from_train=N (--val-from-train N) to take "
                             f"the last N training INRs")
        tr = table["train"]
        if val_from_train >= len(tr["path"]):
            raise ValueError(f"val_from_train={val_from_train} leaves no training INRs (train has {len(tr['path'])})")
        cut = (lambda x, a, b: None if x is None else x[a:b])
        table["val"] = {"path": tr["path"][-val_from_train:], "label": cut(tr["label"], -val_from_train, None)}
        table["train"] = {"path": tr["path"][:-val_from_train], "label": cut(tr["label"], None, -val_from_train)}
    missing = [s for s in SPLITS if s not in table]
    if missing:
        raise ValueError(f"{splits_path} lacks the split(s) {missing}")
    return table


def _read_split(split: str, entry: dict, base: Path, splits_path: Path, widths: list[int] | None,
                num_classes: int, progress: bool
                ) -> tuple[list[Tensor], list[Tensor], Tensor, Tensor | None, list[int]]:
    """``(weights [n, out, in], biases [n, out], labels [n], coef [n, k] or None, widths)`` of one split."""
    from tqdm.auto import tqdm

    n = len(entry["path"])
    W: list[Tensor] = []
    b: list[Tensor] = []
    coef: list[list[float]] = []
    for i, p in enumerate(tqdm(entry["path"], desc=f"import {split}", unit="INR", disable=not progress)):
        f = _resolve(p, base, splits_path)
        network, extras = read_peer_file(f)
        weights, biases = mlp_state_dict_params(network, where=str(f))
        shape = [int(weights[0].shape[1])] + [int(w.shape[0]) for w in weights]
        for m, w in enumerate(weights):
            if int(w.shape[1]) != shape[m]:
                raise ValueError(f"{f}: layer {m} takes {int(w.shape[1])} inputs, expected {shape[m]}")
        widths = shape if widths is None else widths
        if shape != widths:
            raise ValueError(f"{f}: INR of widths {shape}, the others have {widths}; all INRs must share one "
                             f"architecture")
        if entry["label"] is None:
            coef.append(_coefficients(extras, f))
            if len(coef[-1]) != len(coef[0]):
                raise ValueError(f"{f}: coef has {len(coef[-1])} values, the others {len(coef[0])}")
        if not W:
            W = [torch.empty(n, *w.shape, dtype=torch.float32) for w in weights]
            b = [torch.empty(n, *x.shape, dtype=torch.float32) for x in biases]
        for m, (w, x) in enumerate(zip(weights, biases)):
            W[m][i] = w
            b[m][i] = x
    labels = torch.zeros(n, dtype=torch.long) if entry["label"] is None else torch.as_tensor(entry["label"])
    labels = check_labels(labels, n, num_classes, f"{splits_path}: split {split!r}")
    _check_finite(W, b, f"{splits_path}: split {split!r}")
    targets = torch.tensor(coef, dtype=torch.float32) if coef else None
    if targets is not None and not bool(torch.isfinite(targets).all()):
        raise ValueError(f"{splits_path}: split {split!r}: a coef is NaN or infinite")
    return W, b, labels, targets, widths


def check_statistics(path: str | os.PathLike, weights: Sequence[Tensor], biases: Sequence[Tensor],
                     tolerance: float = STATISTICS_TOLERANCE) -> None:
    """``ValueError`` unless the statistics file at ``path`` belongs to these (training) INRs.

    The file must hold ``{"weights": {"mean": [...], "std": [...]}, "biases": {...}}``, one
    tensor per layer in their layout (weights ``[in, out, 1]``, biases ``[out, 1]``), as
    DWSNets' and neural-graphs' ``compute_statistics`` write it; and its values must be the
    element-wise mean and (unbiased) standard deviation of the given INRs to within
    ``tolerance`` of their standard deviation (their scripts may use a random subset of the
    training split). A file of another dataset (or split) is refused naming the first
    tensor and entry that differ.

    Args:
        weights: per layer, the training INRs' weights ``[n, out, in]`` (torch layout).
        biases: per layer, ``[n, out]``.
    """
    path = Path(path)
    stats = read_torch_file(path, "cpu", "statistics file", "statistics file")
    theirs = {"weights": [w.transpose(1, 2).unsqueeze(-1) for w in weights],
              "biases": [x.unsqueeze(-1) for x in biases]}
    widths = [int(weights[0].shape[2])] + [int(w.shape[1]) for w in weights]
    n = int(weights[0].shape[0])
    for part, layers in theirs.items():
        for k in ("mean", "std"):
            seq = stats.get(part, {}).get(k) if isinstance(stats, dict) and isinstance(stats.get(part), dict) else None
            if not isinstance(seq, (list, tuple)) or len(seq) != len(layers):
                raise ValueError(f"{path}: expected {part}.{k} as a list of {len(layers)} tensors (DWSNets statistics "
                                 f"file)")
            for m, (t, x) in enumerate(zip(seq, layers)):
                if not isinstance(t, Tensor) or tuple(t.shape) != tuple(x.shape[1:]):
                    raise ValueError(f"{path}: {part}.{k}[{m}] has shape {list(getattr(t, 'shape', [])) or None}, "
                                     f"expected {list(x.shape[1:])} for INRs of widths {widths}")
                mean, std = x.double().mean(0), x.double().std(0) if n > 1 else None
                if k == "std" and std is None:
                    continue                      # one training INR: no spread to compare with
                scale = (std if std is not None else mean.abs()).clamp_min(1e-8)
                ours = mean if k == "mean" else std
                gap = ((t.double() - ours).abs() / scale)
                if not bool(torch.isfinite(gap).all()) or float(gap.max()) > tolerance:
                    i = int(torch.nan_to_num(gap, nan=float("inf")).reshape(-1).argmax())
                    raise ValueError(
                        f"{path} does not belong to these splits: {part}.{k}[{m}] entry {i} is "
                        f"{float(t.reshape(-1)[i]):.6g}, the training split's {k} is {float(ours.reshape(-1)[i]):.6g} "
                        f"({float(gap.reshape(-1)[i]):.3g} of its std apart, tolerance {tolerance}); pass the "
                        f"statistics file of this dataset, or none (this library recomputes its own statistics)")


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


def _check_coordinates(coords: str, to_coords: str | None) -> None:
    for name, value in (("coords", coords), ("to_coords", to_coords)):
        if value is not None and value not in COORDINATES:
            raise ValueError(f"{name}={value!r}: choose 'xy' ((x = col, y = row): DWSNets' / neural-graphs' "
                             f"make_coordinates) or 'rc' ((row, col): this library's)")


def _architecture(data: dict, widths, w0: float, offset: float, coords: str, to_coords: str | None):
    """The imported SIRENs' architecture with their coordinate convention; converts ``data`` in place to
    ``to_coords`` when asked."""
    arch = siren_architecture(widths, w0=w0, offset=offset)
    if widths[0] != 2:                                    # not an image INR: no coordinate convention
        if to_coords is not None:
            raise ValueError(f"to_coords={to_coords!r} converts image INRs (2 inputs); these INRs have {widths[0]} "
                             f"input(s) and no coordinate convention")
        return arch
    arch = with_coordinates(arch, coords)
    if to_coords is None:
        return arch
    for split, (W, b, *rest) in data.items():
        W, b, new = convert_coordinates(W, b, arch, to_coords)
        data[split] = [W, b, *rest]
    return new


def _manifest(settings: dict, data: dict) -> dict:
    """The manifest of an imported directory: the import's settings and a digest of every split's INRs."""
    inputs = {s: _fingerprint({"weights": [tensor_sha256(w) for w in W], "biases": [tensor_sha256(x) for x in b],
                               "labels": tensor_sha256(y), "targets": None if t is None else tensor_sha256(t)})
              for s, (W, b, y, t) in data.items()}
    return json.loads(json.dumps({"format_version": FORMAT_VERSION, "settings": settings, "inputs": inputs}))


def _split_meta(split: str, dataset_meta: dict, fit: dict, splits_path: Path, statistics, targets) -> dict:
    """``meta`` of an imported split: where it came from and, for sine INRs, their targets."""
    meta = {"source": _SOURCE, "split": split, "dataset": dataset_meta, "fit": fit,
            "imported": {"splits": str(splits_path),
                         "statistics": None if statistics is None else str(statistics),
                         "statistics_use": None if statistics is None else
                         "checked against the training split; normalisation recomputed"}}
    if targets is not None:
        names = ["a", "b"] if targets.shape[1] == 2 else [f"coef{i}" for i in range(targets.shape[1])]
        meta.update(targets=targets, target_names=names, targets_sha256=tensor_sha256(targets))
    return meta


def import_inr_splits(
    splits: str | os.PathLike, out_dir: str | os.PathLike, *, root: str | os.PathLike | None = None,
    statistics: str | os.PathLike | None = None, num_classes: int | None = None, w0: float = 30.0,
    offset: float = 0.5, image_shape: Sequence[int] | None = None, coords: str = "xy", to_coords: str | None = None,
    val_from_train: int = 0, overwrite: bool = False, progress: bool = True,
) -> dict[str, Path]:
    """Convert a DWSNets / neural-graphs INR dataset (splits JSON of ``.pth`` files) into split files.

    Args:
        splits: the splits JSON (either layout of the module docstring).
        out_dir: where ``train.pt``, ``val.pt`` and ``test.pt`` are written (atomically).
        root: directory relative paths in the JSON start from (default: the JSON's
            directory, then the current directory).
        statistics: their ``statistics.pth``: checked to belong to the training split
            (:func:`check_statistics`), then recorded; normalisation uses this library's own
            statistics, recomputed (optional).
        num_classes: classes of the task; default 10 (MNIST / Fashion-MNIST) for labelled
            splits, and 1 (no classes) for sine INRs, which allow no other value.
        w0, offset: the SIRENs' frequency and output shift (DWSNets: 30 and +0.5), stored in the architecture.
        image_shape: ``(H, W)`` of the images, recorded so that runs can render the INRs (optional).
        coords: how the files' 2-input INRs read their coordinates: ``"xy"`` (``(x = col, y =
            row)``, their ``make_coordinates``; the default) or ``"rc"`` (``(row, col)``).
        to_coords: ``None`` keeps the files' weights and records ``coords`` in the architecture;
            ``"rc"`` / ``"xy"`` converts the INRs to that convention (exact; see
            :func:`neuralgraph.inr.coords.convert_coordinates`).
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
    _check_coordinates(coords, to_coords)
    splits_path = Path(splits)
    table = _table(splits_path, val_from_train)
    sines = table["train"]["label"] is None
    if sines and num_classes not in (None, 1):
        raise ValueError(f"{splits_path}: sine INRs (a splits JSON of paths) have no classes; num_classes="
                         f"{num_classes} does not apply (leave it unset)")
    num_classes = (1 if sines else 10) if num_classes is None else num_classes
    base = Path(root) if root is not None else splits_path.parent
    out_dir = Path(out_dir)
    data, widths = {}, None
    for split in SPLITS:
        *data[split], widths = _read_split(split, table[split], base, splits_path, widths, num_classes, progress)
    if statistics is not None:
        check_statistics(statistics, data["train"][0], data["train"][1])
    arch = _architecture(data, widths, w0, offset, coords, to_coords)
    image = widths[0] == 2                                # image INRs: (row, col) or (x, y) coordinates
    fit = {"w0": float(w0), "offset": float(offset)}
    if image:
        fit["coords"] = coords if to_coords is None else to_coords
    if image_shape is not None:
        fit["image_shape"] = [int(s) for s in image_shape]
    settings = {"source": _SOURCE, "splits": str(splits_path.resolve()), "root": str(base.resolve()),
                "statistics": None if statistics is None else str(Path(statistics).resolve()),
                "num_classes": int(num_classes), "val_from_train": int(val_from_train), **fit,
                "coords_of_files": coords if image else None}
    manifest = _manifest(settings, data)
    dataset_meta = {"source": _SOURCE, "splits_file": splits_path.name, "w0": float(w0), "offset": float(offset)}
    with lock_directory(out_dir, "INR dataset directory", "wait for that import to finish or choose another --out"):
        _refuse_other_data(out_dir, manifest, overwrite)
        target = _prepare_directory(out_dir, manifest, overwrite)
        for split, (W, b, labels, targets) in data.items():
            meta = _split_meta(split, dataset_meta, fit, splits_path, statistics, targets)
            save_inr_dataset(target / f"{split}.pt", W, b, labels, arch, num_classes=num_classes, meta=meta)
        if target != out_dir:
            _install(target, out_dir)
    return {split: out_dir / f"{split}.pt" for split in SPLITS}
