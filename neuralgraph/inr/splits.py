"""Train / val / test INR splits of an image source (digits, MNIST, Fashion-MNIST) in one directory.

:func:`build_inr_splits` fits and writes the directory, :func:`load_splits` reads it back.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..io import MANIFEST, atomic_write_text, lock_directory
from .dataset import INRDataset
from .files import FORMAT_VERSION, _check_count
from ..chunks import fingerprint, tensor_digest
from ..seeding import derive_seed
from .settings import FitSettings
from .siren import DEFAULT_LR, DEFAULT_STEPS, DEFAULT_W0, DEFAULT_WIDTHS
from .writer import require_steps, write_fitted_split

__all__ = ["build_inr_splits", "load_splits", "SPLITS", "DIGITS_W0", "SOURCE_NUM_CLASSES", "MANIFEST"]


#: SIREN frequency for the 8x8 digits: 30 (tuned for 28x28) scaled to the coarser grid. An 8x8 grid is 3.5x
#: coarser, and with ``w0 = 30`` the fitted INRs interpolate noise between pixels (a logistic regression on the
#: INR's values at pixel midpoints: 28% test accuracy, against 92% at ``w0 = 10``), which starves models that
#: probe the INR as a function.
DIGITS_W0 = 10.0

#: Number of classes of each source (stored in every split: a split may lack some classes).
SOURCE_NUM_CLASSES = {"digits": 10, "mnist": 10, "fashion_mnist": 10}
_STAGING = ".overwrite"                  # where an overwrite is fitted before it replaces the old splits
#: The splits of a dataset directory, each a file ``<split>.pt``.
SPLITS = ("train", "val", "test")


def _stratified_split(idx: np.ndarray, size: int | float, labels: np.ndarray, seed: int, what: str, source: str):
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(idx, test_size=size, stratify=labels, random_state=seed)
    except ValueError as e:
        raise ValueError(f"{what}={size}: cannot take it from {len(idx)} {source} images ({e})") from None


def _source_splits(source: str, root, n_train, n_val, n_test, seed) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
    """``{split: (images, labels, source_index)}`` after the stratified split and the size caps."""
    from ..data import load_digits, load_mnist

    splits: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
    if source == "digits":
        images, labels = load_digits()
        n = len(labels)
        idx = torch.arange(n).numpy()
        rest, test = _stratified_split(idx, n_test if n_test is not None else 0.2, labels.numpy(), seed,
                                       "n_test", source)
        train, val = _stratified_split(rest, n_val if n_val is not None else int(round(0.2 * n)),
                                       labels.numpy()[rest], seed, "n_val", source)
        for name, ix in (("train", train), ("val", val), ("test", test)):
            ix = torch.as_tensor(ix)
            splits[name] = (images[ix], labels[ix], ix)
    else:
        tr_images, tr_labels = load_mnist(root, "train")
        te_images, te_labels = load_mnist(root, "test", limit=n_test)
        if n_test is not None and len(te_labels) < n_test:
            raise ValueError(f"n_test={n_test}, but the {source} test split in {root} has {len(te_labels)} images")
        idx = torch.arange(len(tr_labels)).numpy()
        train, val = _stratified_split(idx, n_val if n_val is not None else 5000, tr_labels.numpy(), seed,
                                       "n_val", source)
        for name, ix in (("train", train), ("val", val)):
            ix = torch.as_tensor(ix)
            splits[name] = (tr_images[ix], tr_labels[ix], ix)
        splits["test"] = (te_images, te_labels, torch.arange(len(te_labels)))
    if n_train is not None:
        imgs, labs, src = splits["train"]
        if len(labs) < n_train:
            raise ValueError(f"n_train={n_train}, but only {len(labs)} {source} images are left for train "
                             "after the val/test split")
        splits["train"] = (imgs[:n_train], labs[:n_train], src[:n_train])
    return splits


def _read_manifest(directory: Path) -> dict | None:
    """The manifest of ``directory``; None if absent, ``{}`` if unreadable (settings unknown)."""
    path = directory / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _holds_fitted_data(directory: Path) -> bool:
    """Whether ``directory`` holds split files or finished chunks of one."""
    return any((directory / f"{s}.pt").exists() or any((directory / f"{s}.pt.chunks").glob("chunk_*.pt"))
               for s in SPLITS)


def _differences(old: dict, new: dict) -> str:
    """``steps 3 there, 4 now; ...`` for the settings (and inputs) that differ."""
    parts = []
    old_settings, new_settings = old.get("settings", {}), new["settings"]
    for k in sorted(set(old_settings) | set(new_settings)):
        if old_settings.get(k) != new_settings.get(k):
            parts.append(f"{k} {old_settings.get(k)!r} there, {new_settings.get(k)!r} now")
    if not parts and old.get("inputs") != new.get("inputs"):
        parts.append("the same settings but other source images (another root?)")
    return "; ".join(parts) or "another format"


def _finish_install(out_dir: Path) -> None:
    """Move a committed overwrite (staging manifest == directory manifest) into place; drop old chunks."""
    staging = out_dir / _STAGING
    if not staging.is_dir():
        return
    manifest = _read_manifest(staging)
    if not manifest or manifest != _read_manifest(out_dir):
        return                                          # not committed yet: an overwrite still in progress
    for name in SPLITS:
        if (staging / f"{name}.pt").is_file():
            os.replace(staging / f"{name}.pt", out_dir / f"{name}.pt")
        shutil.rmtree(out_dir / f"{name}.pt.chunks", ignore_errors=True)     # chunks of the old settings
    shutil.rmtree(staging)


def _prepare_directory(out_dir: Path, manifest: dict, overwrite: bool) -> Path:
    """The directory to fit into: ``out_dir`` itself, or its staging directory for an overwrite.

    ``out_dir`` is only fitted into when it holds no fitted data or data of
    exactly this fit (its manifest, written first, says so). Otherwise the
    rerun is refused, or with ``overwrite`` fitted beside it and swapped in
    when complete (:func:`_install`), so the old splits stay usable until then.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    _finish_install(out_dir)
    existing = _read_manifest(out_dir)
    staging = out_dir / _STAGING
    if existing == manifest or not _holds_fitted_data(out_dir):
        if existing != manifest:
            atomic_write_text(json.dumps(manifest, indent=2, sort_keys=True), out_dir / MANIFEST)
        shutil.rmtree(staging, ignore_errors=True)      # a stale, abandoned overwrite
        return out_dir
    if not overwrite:
        what = (f"INRs fitted with other settings ({_differences(existing, manifest)})" if existing
                else f"INR files without a readable {MANIFEST} (an older neuralgraph or another tool: "
                     "their settings are unknown)")
        raise ValueError(f"{out_dir} holds {what}; refusing to mix them with this fit. Pass "
                         "overwrite=True (`neuralgraph fit-inrs --overwrite`) to replace them, or choose "
                         "another output directory (--out)")
    if _read_manifest(staging) != manifest:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        atomic_write_text(json.dumps(manifest, indent=2, sort_keys=True), staging / MANIFEST)
    return staging


def _install(staging: Path, out_dir: Path) -> None:
    """Commit a complete overwrite: the directory's manifest first, then the split files."""
    atomic_write_text((staging / MANIFEST).read_text(), out_dir / MANIFEST)
    _finish_install(out_dir)


def _check_source(source: str, root) -> None:
    """``ValueError`` unless ``source`` is known and ``root`` is given exactly when it is read."""
    if source not in SOURCE_NUM_CLASSES:
        raise ValueError(f"source must be one of {', '.join(map(repr, SOURCE_NUM_CLASSES))}, got {source!r}")
    if source == "digits" and root is not None:
        raise ValueError(f"root={str(root)!r} is only read for mnist / fashion_mnist; source='digits' is "
                         "sklearn's bundled digits (did you mean source='mnist', `--source mnist`?)")
    if source != "digits" and root is None:
        raise ValueError(f"source={source!r} needs root= a directory with the IDX files "
                         "(e.g. ../shared/datasets/mnist)")


def _check_run(fit: FitSettings, chunk_size: int, seed: int, **sizes: int | None) -> None:
    """What :func:`build_inr_splits` needs besides valid fit settings: steps >= 1, counts >= 1, a seed >= 0."""
    require_steps(fit)
    _check_count(chunk_size=chunk_size, batch_size=fit.batch_size, **{k: v for k, v in sizes.items() if v is not None})
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")


def _dataset_settings(source: str, sizes: tuple, fit: FitSettings, seed: int, chunk_size: int,
                      num_classes: int) -> dict:
    """The settings a split directory's manifest (and every split's ``meta["dataset"]``) records."""
    n_train, n_val, n_test = sizes
    settings = {"source": source, "n_train": n_train, "n_val": n_val, "n_test": n_test, "steps": int(fit.steps),
                "lr": float(fit.lr), "widths": list(fit.widths), "w0": float(fit.w0), "seed": int(seed),
                "chunk_size": int(chunk_size), "batch_size": int(fit.batch_size), "offset": fit.offset,
                "num_classes": num_classes}
    if fit.target_psnr is not None:                   # absent = fixed steps: older manifests stay valid
        settings["target_psnr"] = float(fit.target_psnr)
    if fit.init != "siren":                           # absent = the default init: older manifests stay valid
        settings["init"] = str(fit.init)
    return settings


def build_inr_splits(
    source: str = "digits", out_dir: str | os.PathLike = "inr_data", root: str | os.PathLike | None = None, *,
    n_train: int | None = None, n_val: int | None = None, n_test: int | None = None,
    steps: int = DEFAULT_STEPS, lr: float = DEFAULT_LR, widths: Sequence[int] = DEFAULT_WIDTHS,
    w0: float | None = None, seed: int = 0, chunk_size: int = 1024, batch_size: int = 32, workers: int | None = None,
    resume: bool = True, overwrite: bool = False, progress: bool = True,
    on_chunk: Callable[[int, int], None] | None = None, device: str | torch.device = "cpu",
    target_psnr: float | None = None, device_batch_size: int | None = None, method: str | None = None,
    init: str = "siren",
) -> dict[str, Path]:
    """Make ``train.pt``, ``val.pt`` and ``test.pt`` INR splits in ``out_dir``.

    * ``digits`` (default, offline): sklearn's 1797 digits, stratified
      train/val/test split (``train_test_split``, ``random_state=seed``);
      default sizes 60% / 20% / 20%, or ``n_val``/``n_test`` images.
    * ``mnist`` / ``fashion_mnist``: IDX files in ``root``; val is a stratified
      subset of the official train split (default 5000 images, ``n_val``),
      test is the official test split.

    ``n_train``/``n_test`` cap the split sizes (first items after the split);
    a cap larger than what the source has is an error, not a smaller split.
    Each split records ``source_index`` (the image's index in its source split:
    the sklearn array, or MNIST train / t10k) and ``num_classes`` (10).

    **One fit per directory.** ``out_dir/manifest.json`` records the settings
    (source, sizes, steps, lr, widths, w0, seed, chunk and batch size) and a
    digest of the input images, and is written before anything is fitted. A
    rerun with the same settings resumes (finished chunks and splits are
    reused; ``resume=False`` refits them). A rerun with other settings raises
    ``ValueError`` naming them, unless ``overwrite=True``: the new fit is then
    made in ``out_dir/.overwrite/`` (itself resumable) and replaces the old
    splits only once all three are complete, so an interrupted overwrite leaves
    the old dataset intact, never a mix. The directory is locked while the
    fit runs (:func:`neuralgraph.io.lock_directory`): a second fit into it
    fails at once. ``on_chunk(k, num_chunks)`` is called after every fitted
    chunk of every split (e.g. for logging).

    ``w0=None`` picks the SIREN frequency for the image size: 30 (the DWSNets
    protocol) for 28x28 MNIST / Fashion-MNIST, :data:`DIGITS_W0` for the 8x8 digits.

    ``device`` / ``device_batch_size`` / ``method`` pick where and in what batches the
    INRs are fitted; they are not recorded in the manifest (a split fitted on
    a GPU is the same protocol, and a CPU rerun resumes it). ``target_psnr``
    (the DWSNets authors' protocol: ``steps=1000, lr=5e-4, target_psnr=40``) and
    ``init`` (``"dwsnets"``: the starting point of the DWSNets datasets' INRs, see
    :func:`~neuralgraph.inr.siren_init`) are recorded, so datasets of different
    protocols never mix.
    """
    _check_source(source, root)
    fit = FitSettings(widths=widths, w0=(DIGITS_W0 if source == "digits" else DEFAULT_W0) if w0 is None else w0,
                      steps=steps, lr=lr, init=init, target_psnr=target_psnr, batch_size=batch_size,
                      device_batch_size=device_batch_size, method=method, workers=workers, device=device)
    _check_run(fit, chunk_size, seed, n_train=n_train, n_val=n_val, n_test=n_test)
    out_dir = Path(out_dir)
    splits = _source_splits(source, root, n_train, n_val, n_test, seed)
    num_classes = SOURCE_NUM_CLASSES[source]
    settings = _dataset_settings(source, (n_train, n_val, n_test), fit, seed, chunk_size, num_classes)
    inputs = {name: fingerprint({"images": tensor_digest(x), "labels": tensor_digest(y),
                                 "source_index": tensor_digest(i)}) for name, (x, y, i) in splits.items()}
    manifest = json.loads(json.dumps({"format_version": FORMAT_VERSION, "settings": settings, "inputs": inputs}))
    with lock_directory(out_dir, "INR dataset directory", "wait for that fit to finish or choose another --out"):
        target = _prepare_directory(out_dir, manifest, overwrite)
        for k, (name, (imgs, labs, src)) in enumerate(splits.items()):
            write_fitted_split(imgs, labs, target / f"{name}.pt", fit, num_classes=num_classes, source_index=src,
                               chunk_size=chunk_size, seed=derive_seed(seed, 1000 + k), resume=resume,
                               progress=progress, on_chunk=on_chunk, meta=_split_meta(source, name, settings))
        if target != out_dir:
            _install(target, out_dir)
    return {name: out_dir / f"{name}.pt" for name in splits}


def _split_meta(source: str, name: str, settings: dict) -> dict:
    """``meta`` of split ``name``: the source, the split, the dataset's settings and the source split it is from."""
    return {"source": source, "split": name, "dataset": settings,
            "source_split": "test" if (name == "test" and source != "digits") else
            ("train" if source != "digits" else "all")}


def load_splits(data_dir: str | os.PathLike, normalize: bool = True) -> dict[str, INRDataset]:
    """The three split files of ``data_dir``; val/test are normalised with *train* statistics.

    ``ValueError`` if the splits do not come from one fit: other architecture,
    ``num_classes`` or fit settings (see ``meta["fit"]`` / ``meta["dataset"]``).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data directory not found: {data_dir} (make one with "
                                f"`neuralgraph fit-inrs --source digits --out {data_dir}`)")
    missing = [s for s in SPLITS if not (data_dir / f"{s}.pt").is_file()]
    if missing:
        raise FileNotFoundError(f"{data_dir} lacks {', '.join(s + '.pt' for s in missing)}; expected train.pt, "
                                f"val.pt and test.pt from `neuralgraph fit-inrs --out {data_dir}`")
    ds = {s: INRDataset(data_dir / f"{s}.pt", normalize=normalize) for s in SPLITS}
    for s in ("val", "test"):
        if ds[s].arch != ds["train"].arch:
            raise ValueError(f"{ds[s].path}: architecture differs from train.pt's: "
                             f"{ds[s].arch.difference(ds['train'].arch, 'here', 'in train.pt')}; the splits must "
                             f"come from one dataset")
        ds[s].stats = ds["train"].stats
    for s in SPLITS:
        if len(ds[s]) == 0:
            raise ValueError(f"{ds[s].path} holds no INRs")
    # one fit: same number of classes (labels were checked against it on reading) and the same fit
    # settings, except the per-split seed that build_inr_splits derives from the dataset seed
    # (meta["dataset"], when present, holds the dataset seed and the rest of the settings)
    train = ds["train"]
    for s in ("val", "test"):
        split = ds[s]
        if split.num_classes != train.num_classes:
            raise ValueError(f"{split.path}: num_classes {split.num_classes} differs from train.pt's "
                             f"{train.num_classes}; the splits must come from one dataset")
        ours, theirs = ({**{k: v for k, v in (d.meta.get("fit") or {}).items() if k != "seed"},
                         **(d.meta.get("dataset") or {})} for d in (split, train))
        diff = [f"{k}={ours.get(k)!r} (train.pt: {theirs.get(k)!r})" for k in sorted(set(ours) | set(theirs))
                if ours.get(k) != theirs.get(k)]
        if diff:
            raise ValueError(f"{split.path} was fitted with other settings than train.pt: {', '.join(diff)}; "
                             f"refit the directory as one dataset (`neuralgraph fit-inrs --overwrite --out "
                             f"{data_dir}`)")
    return ds
