"""INR dataset files: one file per split, resumable fitting, lazy vectorised loading.

A split file is ``torch.save`` of a dict::

    format_version  int (FORMAT_VERSION)
    arch            Architecture.to_dict() of every INR in the file
    weights         [W_m  [n, out, in]]   stacked per layer
    biases          [b_m  [n, out]]
    labels          [n] int64
    source_index    [n] int64   index of the source image in its source split
    psnr            [n] float32 fit quality
    stats           per-layer weight/bias mean and std (streamed, see RunningMoments)
    meta            dict: fit settings, source, fingerprint

Files are written atomically (temp file in the same directory + ``os.replace``)
and loaded with ``mmap=True``, so a large split costs no RAM until indexed.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Batch

from ..architecture import Architecture
from ..augment import Augment
from ..graph import stacked_to_batch
from ..io import atomic_save
from .siren import (DEFAULT_LR, DEFAULT_OFFSET, DEFAULT_STEPS, DEFAULT_W0, DEFAULT_WIDTHS,
                    derive_seed, fit_sirens, siren_architecture)

__all__ = [
    "FORMAT_VERSION", "RunningMoments", "layer_stats", "normalize_params", "save_inr_dataset", "load_inr_file",
    "fit_to_dataset", "INRDataset", "INRLoader", "build_inr_splits", "DIGITS_W0",
]

FORMAT_VERSION = 1
_SPLIT_KEYS = ("format_version", "arch", "weights", "biases", "labels", "source_index", "psnr", "stats")


# ----------------------------------------------------------------------------
# streaming statistics
# ----------------------------------------------------------------------------

class RunningMoments:
    """Per-layer mean/variance of weights and biases, merged chunk by chunk (Chan et al.).

    Each chunk contributes its own count, mean and centred sum of squares
    (computed in float64); merging is exact up to rounding, so the full stack
    never has to be in memory at once.
    """

    def __init__(self, num_layers: int) -> None:
        self.num_layers = num_layers
        z = lambda: torch.zeros(2 * num_layers, dtype=torch.float64)
        self.count, self.mean, self.m2 = z(), z(), z()

    def update(self, weights: Sequence[Tensor], biases: Sequence[Tensor]) -> "RunningMoments":
        if len(weights) != self.num_layers or len(biases) != self.num_layers:
            raise ValueError(f"expected {self.num_layers} layers, got {len(weights)} weights and {len(biases)} biases")
        for k, t in enumerate([*weights, *biases]):
            x = t.detach().reshape(-1).double()
            nb = x.numel()
            if nb == 0:
                continue
            mb = x.mean()
            m2b = (x - mb).square().sum()
            na = self.count[k]
            n = na + nb
            delta = mb - self.mean[k]
            self.mean[k] += delta * nb / n
            self.m2[k] += m2b + delta * delta * na * nb / n
            self.count[k] = n
        return self

    def result(self) -> dict[str, Tensor]:
        """``{weight_mean, weight_std, bias_mean, bias_std}``, each ``[M]`` float32 (unbiased std)."""
        var = self.m2 / (self.count - 1).clamp_min(1)
        std = var.sqrt().float()
        mean = self.mean.float()
        M = self.num_layers
        return {"weight_mean": mean[:M], "weight_std": std[:M], "bias_mean": mean[M:],
                "bias_std": std[M:], "count": self.count[:M].clone()}


def layer_stats(weights: Sequence[Tensor], biases: Sequence[Tensor], chunk: int = 4096) -> dict[str, Tensor]:
    """Per-layer statistics of stacked parameters, streamed over chunks of networks."""
    rm = RunningMoments(len(weights))
    n = weights[0].shape[0]
    for s in range(0, n, chunk):
        rm.update([w[s:s + chunk] for w in weights], [b[s:s + chunk] for b in biases])
    return rm.result()


def normalize_params(weights: Sequence[Tensor], biases: Sequence[Tensor], stats: dict[str, Tensor],
                     eps: float = 1e-8) -> tuple[list[Tensor], list[Tensor]]:
    """Standardise each layer's weights and biases with the dataset statistics."""
    wm, ws, bm, bs = (stats[k] for k in ("weight_mean", "weight_std", "bias_mean", "bias_std"))
    W = [(w - wm[m]) / (ws[m] + eps) for m, w in enumerate(weights)]
    b = [(x - bm[m]) / (bs[m] + eps) for m, x in enumerate(biases)]
    return W, b


#: SIREN frequency for the 8x8 digits: 30 (tuned for 28x28) scaled to the coarser grid.
DIGITS_W0 = 10.0


def _normalize_batch(batch: Batch, stats: dict[str, Tensor], eps: float = 1e-8) -> None:
    """Standardise a batch's biases/weights per layer in place; keep the raw values beside them.

    Elementwise the same arithmetic as :func:`normalize_params` (bit-identical results).
    """
    wm, ws, bm, bs = (stats[k].to(batch.x.dtype) for k in ("weight_mean", "weight_std", "bias_mean", "bias_std"))
    layer = (batch.node_layer - 1).clamp(min=0)
    hasb = (batch.node_layer > 0).unsqueeze(-1)
    x = torch.where(hasb, (batch.x - bm[layer].unsqueeze(-1)) / (bs[layer].unsqueeze(-1) + eps), batch.x)
    el = (batch.edge_layer - 1).view(-1, *([1] * (batch.edge_attr.dim() - 1)))
    edge_attr = (batch.edge_attr - wm[el]) / (ws[el] + eps)
    if "edge_mask" in batch and batch.edge_mask is not None:
        edge_attr = edge_attr * batch.edge_mask.to(edge_attr.dtype)    # padded taps stay zero
    batch.x_raw, batch.edge_attr_raw = batch.x, batch.edge_attr
    batch.x, batch.edge_attr = x, edge_attr
    for key, like in (("x_raw", "x"), ("edge_attr_raw", "edge_attr")):
        batch._slice_dict[key] = batch._slice_dict[like]
        batch._inc_dict[key] = batch._inc_dict[like]


# ----------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------

def save_inr_dataset(
    path: str | os.PathLike,
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    labels: Tensor,
    arch: Architecture,
    *,
    source_index: Tensor | None = None,
    psnr: Tensor | None = None,
    stats: dict[str, Tensor] | None = None,
    meta: dict | None = None,
) -> Path:
    """Write one split file atomically (statistics streamed here when not given)."""
    path = Path(path)
    n = int(labels.shape[0])
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
    weights = [w.detach().float().contiguous() for w in weights]
    biases = [b.detach().float().contiguous() for b in biases]
    obj = {
        "format_version": FORMAT_VERSION,
        "arch": arch.to_dict(),
        "weights": weights,
        "biases": biases,
        "labels": labels.long().contiguous(),
        "source_index": source_index.long().contiguous(),
        "psnr": psnr.float().contiguous(),
        "stats": stats if stats is not None else layer_stats(weights, biases),
        "meta": dict(meta or {}),
    }
    atomic_save(obj, path)
    return path


def load_inr_file(path: str | os.PathLike, mmap: bool = True) -> dict:
    """Load and validate a split file (``ValueError`` naming the file if it is not one)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"INR dataset file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", mmap=mmap, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear error
        raise ValueError(f"{path}: not a readable INR dataset file ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict) or any(k not in obj for k in _SPLIT_KEYS):
        missing = [k for k in _SPLIT_KEYS if not isinstance(obj, dict) or k not in obj]
        raise ValueError(f"{path}: not an INR dataset file (missing {missing})")
    if obj["format_version"] != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {obj['format_version']}, this code reads {FORMAT_VERSION}")
    arch = Architecture.from_dict(obj["arch"])
    n = obj["labels"].shape[0]
    for m, (w, b, spec) in enumerate(zip(obj["weights"], obj["biases"], arch.layers), start=1):
        if tuple(w.shape) != (n, *spec.weight_shape) or tuple(b.shape) != (n, spec.out_features):
            raise ValueError(f"{path}: layer {m} tensors {tuple(w.shape)}/{tuple(b.shape)} do not match "
                             f"the stored architecture and {n} labels")
    obj["arch"] = arch
    return obj


# ----------------------------------------------------------------------------
# resumable fitting
# ----------------------------------------------------------------------------

def _fingerprint(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def _tensor_digest(t: Tensor) -> str:
    return hashlib.sha256(t.detach().contiguous().cpu().numpy().tobytes()).hexdigest()[:16]


def _chunk_ok(path: Path, k: int, start: int, stop: int, fingerprint: str, arch: Architecture) -> dict | None:
    """A finished chunk file, or None if missing, corrupt or from another fit."""
    if not path.is_file():
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        ok = (obj.get("chunk") == k and obj.get("start") == start and obj.get("stop") == stop
              and obj.get("fingerprint") == fingerprint
              and Architecture.from_dict(obj["arch"]) == arch
              and all(w.shape[0] == stop - start for w in obj["weights"])
              and all(b.shape[0] == stop - start for b in obj["biases"])
              and obj["psnr"].shape == (stop - start,)
              and all(torch.isfinite(w).all() for w in obj["weights"]))
    except Exception:  # noqa: BLE001 - a half-written or foreign file is refit, never trusted
        return None
    return obj if ok else None


def fit_to_dataset(
    images: Tensor,
    labels: Tensor,
    out_path: str | os.PathLike,
    *,
    source_index: Tensor | None = None,
    chunk_size: int = 1024,
    resume: bool = True,
    widths: Sequence[int] = DEFAULT_WIDTHS,
    w0: float = DEFAULT_W0,
    steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR,
    offset: float = DEFAULT_OFFSET,
    batch_size: int = 32,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    keep_chunks: bool = False,
    on_chunk: Callable[[int, int], None] | None = None,
    meta: dict | None = None,
) -> Path:
    """Fit one SIREN per image and write the split file ``out_path``; resumable.

    Chunks of ``chunk_size`` images are fitted one after another; each finished
    chunk is saved atomically as ``<out_path>.chunks/chunk_XXXXX.pt``. With
    ``resume=True`` a restarted call reuses every valid chunk (right index
    range, architecture and fit settings/images fingerprint; a corrupt or
    foreign file is refit) and fits the rest. Chunk ``k`` is seeded from
    ``(seed, k)``, so an interrupted-and-resumed run produces the same bits as
    an uninterrupted one. ``on_chunk(k, num_chunks)`` runs after chunk ``k`` is
    on disk (e.g. for logging). Finally all chunks are merged, statistics are
    streamed, and the split file is written atomically. If ``out_path``
    already holds this exact fit (same fingerprint), nothing is redone.
    """
    out_path = Path(out_path)
    n = images.shape[0]
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    source_index = torch.arange(n) if source_index is None else source_index.long()
    if source_index.shape != (n,):
        raise ValueError(f"source_index must have shape ({n},), got {tuple(source_index.shape)}")
    arch = siren_architecture(widths, w0)
    config = {"widths": [int(w) for w in widths], "w0": float(w0), "steps": int(steps), "lr": float(lr),
              "offset": float(offset), "seed": int(seed), "chunk_size": int(chunk_size),
              "batch_size": int(batch_size), "image_shape": list(images.shape[1:])}
    chunk_dir = out_path.with_name(out_path.name + ".chunks")
    num_chunks = max(1, math.ceil(n / chunk_size))
    bounds = [(k, k * chunk_size, min(n, (k + 1) * chunk_size)) for k in range(num_chunks)]

    # fingerprint per chunk: settings + the chunk's images and labels
    def chunk_fp(start: int, stop: int) -> str:
        return _fingerprint({**config, "images": _tensor_digest(images[start:stop]),
                             "labels": _tensor_digest(labels[start:stop])})

    done: dict[int, dict] = {}
    fps = {k: chunk_fp(s, e) for k, s, e in bounds}
    fingerprint = _fingerprint({"chunks": [fps[k] for k, _, _ in bounds],
                                "source_index": _tensor_digest(source_index)})
    if resume and out_path.is_file():
        try:
            finished = load_inr_file(out_path).get("meta", {}).get("fingerprint") == fingerprint
        except ValueError:
            finished = False
        if finished:                                  # the whole split is already there
            return out_path
    if resume:
        for k, s, e in bounds:
            c = _chunk_ok(chunk_dir / f"chunk_{k:05d}.pt", k, s, e, fps[k], arch)
            if c is not None:
                done[k] = c
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=n, initial=sum(e - s for k, s, e in bounds if k in done), unit="INR",
                   desc=f"fitting {out_path.name}")
    try:
        for k, s, e in bounds:
            if k in done:
                continue
            res = fit_sirens(images[s:e], widths=widths, w0=w0, steps=steps, lr=lr, offset=offset,
                             batch_size=batch_size, seed=derive_seed(seed, k), workers=workers,
                             progress=progress)
            chunk = {"chunk": k, "start": s, "stop": e, "fingerprint": fps[k], "arch": arch.to_dict(),
                     "weights": res.weights, "biases": res.biases, "psnr": res.psnr}
            atomic_save(chunk, chunk_dir / f"chunk_{k:05d}.pt")
            done[k] = chunk
            if bar is not None:
                bar.update(e - s)
            if on_chunk is not None:
                on_chunk(k, num_chunks)
    finally:
        if bar is not None:
            bar.close()

    rm = RunningMoments(arch.num_layers)
    for k, s, e in bounds:
        rm.update(done[k]["weights"], done[k]["biases"])
    weights = [torch.cat([done[k]["weights"][m] for k, _, _ in bounds]) for m in range(arch.num_layers)]
    biases = [torch.cat([done[k]["biases"][m] for k, _, _ in bounds]) for m in range(arch.num_layers)]
    psnr = torch.cat([done[k]["psnr"] for k, _, _ in bounds])
    save_inr_dataset(out_path, weights, biases, labels, arch, source_index=source_index, psnr=psnr,
                     stats=rm.result(), meta={**(meta or {}), "fit": config, "fingerprint": fingerprint})
    if not keep_chunks:
        for k, _, _ in bounds:
            (chunk_dir / f"chunk_{k:05d}.pt").unlink(missing_ok=True)
        try:
            chunk_dir.rmdir()
        except OSError:
            pass
    return out_path


# ----------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------

def _as_index(indices: Tensor | Sequence[int] | slice, n: int) -> Tensor:
    if isinstance(indices, slice):
        return torch.arange(n)[indices]
    idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
    if idx.numel() and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"index out of range for a dataset of {n} INRs")
    return idx


class INRDataset(torch.utils.data.Dataset):
    """One split file, loaded lazily (memory-mapped); batches are built without per-item loops.

    ``dataset[i]`` is a single :class:`~neuralgraph.NeuralGraph` with ``y``
    (works with PyG's ``DataLoader``); the fast path is :meth:`batch` /
    :meth:`loader`, which index the stacked tensors once per batch and call
    :func:`neuralgraph.stacked_to_batch`. ``normalize`` and ``augment`` set
    defaults for both.
    """

    def __init__(self, path: str | os.PathLike, normalize: bool = False,
                 augment: Augment | None = None, mmap: bool = True) -> None:
        self.path = Path(path)
        obj = load_inr_file(self.path, mmap=mmap)
        self.arch: Architecture = obj["arch"]
        self.weights: list[Tensor] = obj["weights"]
        self.biases: list[Tensor] = obj["biases"]
        self.labels: Tensor = obj["labels"]
        self.source_index: Tensor = obj["source_index"]
        self.psnr: Tensor = obj["psnr"]
        self.stats: dict[str, Tensor] = obj["stats"]
        self.meta: dict = obj.get("meta", {})
        self.normalize = normalize
        self.augment = augment

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if len(self) else 0

    def params(self, indices: Tensor | Sequence[int] | slice) -> tuple[list[Tensor], list[Tensor]]:
        """Raw stacked parameters of the selected INRs (copies, safe to modify)."""
        idx = _as_index(indices, len(self))
        return [w[idx] for w in self.weights], [b[idx] for b in self.biases]

    def batch(self, indices: Tensor | Sequence[int] | slice, normalize: bool | None = None,
              augment: Augment | None = None, generator: torch.Generator | None = None) -> Batch:
        """A PyG ``Batch`` of the selected INRs' neural graphs.

        ``batch.y`` holds the labels and ``batch.inr_index`` the positions in
        this file (e.g. to look up ``source_index`` or ``psnr``).

        Augmentation acts on raw parameters, then normalisation (if enabled).
        A normalised batch keeps the raw parameters as ``x_raw`` / ``edge_attr_raw``
        (permuted and batched like ``x`` / ``edge_attr``): models that *run* the
        networks, such as probe features, need the real weights.
        """
        idx = _as_index(indices, len(self))
        weights, biases = self.params(idx)
        augment = self.augment if augment is None else augment
        if augment is not None and augment.active:
            weights, biases = augment(weights, biases, generator)
        out = stacked_to_batch(weights, biases, self.arch)
        if self.normalize if normalize is None else normalize:
            _normalize_batch(out, self.stats)
        # per-graph attributes: label and position in this file (kept by get_example)
        out.y = self.labels[idx]
        out.inr_index = torch.where(idx < 0, idx + len(self), idx)
        for key in ("y", "inr_index"):
            out._slice_dict[key] = torch.arange(len(idx) + 1)
            out._inc_dict[key] = torch.zeros(len(idx), dtype=torch.long)
        return out

    def __getitem__(self, i: int):
        return self.batch([int(i)]).get_example(0)

    def loader(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
               augment: Augment | None = None, normalize: bool | None = None,
               drop_last: bool = False) -> "INRLoader":
        """Iterate ``(Batch, labels)`` over the split; reshuffled on every pass when ``shuffle``."""
        return INRLoader(self, batch_size, shuffle, generator, augment, normalize, drop_last)


class INRLoader:
    """Re-iterable loader over an :class:`INRDataset` (one vectorised gather per batch)."""

    def __init__(self, dataset: INRDataset, batch_size: int, shuffle: bool = False,
                 generator: torch.Generator | None = None, augment: Augment | None = None,
                 normalize: bool | None = None, drop_last: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.generator, self.augment, self.normalize, self.drop_last = generator, augment, normalize, drop_last

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Batch, Tensor]]:
        n = len(self.dataset)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for s in range(0, len(self) * self.batch_size, self.batch_size):
            idx = order[s:s + self.batch_size]
            b = self.dataset.batch(idx, self.normalize, self.augment, self.generator)
            yield b, b.y


# ----------------------------------------------------------------------------
# train / val / test splits
# ----------------------------------------------------------------------------

def build_inr_splits(
    source: str = "digits",
    out_dir: str | os.PathLike = "inr_data",
    root: str | os.PathLike | None = None,
    *,
    n_train: int | None = None,
    n_val: int | None = None,
    n_test: int | None = None,
    steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR,
    widths: Sequence[int] = DEFAULT_WIDTHS,
    w0: float | None = None,
    seed: int = 0,
    chunk_size: int = 1024,
    batch_size: int = 32,
    workers: int | None = None,
    resume: bool = True,
    progress: bool = True,
) -> dict[str, Path]:
    """Make ``train.pt``, ``val.pt`` and ``test.pt`` INR splits in ``out_dir``.

    * ``digits`` (default, offline): sklearn's 1797 digits, stratified
      train/val/test split (``train_test_split``, ``random_state=seed``);
      default sizes 60% / 20% / 20%, or ``n_val``/``n_test`` images.
    * ``mnist`` / ``fashion_mnist``: IDX files in ``root``; val is a stratified
      subset of the official train split (default 5000 images, ``n_val``),
      test is the official test split.

    ``n_train``/``n_test`` cap the split sizes (first items after the split).
    Each split records ``source_index``: the image's index in its source split
    (the sklearn array, or MNIST train / t10k). Resumable per split.

    ``w0=None`` picks the SIREN frequency for the image size: 30 (the DWSNets
    protocol) for 28x28 MNIST / Fashion-MNIST, :data:`DIGITS_W0` for the 8x8
    digits. An 8x8 grid is 3.5x coarser, and with ``w0 = 30`` the fitted INRs
    interpolate noise between pixels (a logistic regression on the INR's values
    at pixel midpoints: 28% test accuracy, against 92% at ``w0 = 10``), which
    starves models that probe the INR as a function.
    """
    from sklearn.model_selection import train_test_split

    from ..data import load_digits, load_mnist

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    splits: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
    if source == "digits":
        images, labels = load_digits()
        n = len(labels)
        idx = torch.arange(n).numpy()
        test_size = n_test if n_test is not None else 0.2
        rest, test = train_test_split(idx, test_size=test_size, stratify=labels.numpy(), random_state=seed)
        val_size = n_val if n_val is not None else int(round(0.2 * n))
        train, val = train_test_split(rest, test_size=val_size, stratify=labels.numpy()[rest],
                                      random_state=seed)
        for name, ix in (("train", train), ("val", val), ("test", test)):
            ix = torch.as_tensor(ix)
            splits[name] = (images[ix], labels[ix], ix)
    elif source in ("mnist", "fashion_mnist"):
        if root is None:
            raise ValueError(f"source={source!r} needs root= a directory with the IDX files "
                             "(e.g. ../shared/datasets/mnist)")
        tr_images, tr_labels = load_mnist(root, "train")
        te_images, te_labels = load_mnist(root, "test", limit=n_test)
        idx = torch.arange(len(tr_labels)).numpy()
        train, val = train_test_split(idx, test_size=n_val if n_val is not None else 5000,
                                      stratify=tr_labels.numpy(), random_state=seed)
        for name, ix in (("train", train), ("val", val)):
            ix = torch.as_tensor(ix)
            splits[name] = (tr_images[ix], tr_labels[ix], ix)
        splits["test"] = (te_images, te_labels, torch.arange(len(te_labels)))
    else:
        raise ValueError(f"source must be 'digits', 'mnist' or 'fashion_mnist', got {source!r}")
    if w0 is None:
        w0 = DIGITS_W0 if source == "digits" else DEFAULT_W0
    caps = {"train": n_train, "val": None, "test": n_test}
    paths = {}
    for k, (name, (imgs, labs, src)) in enumerate(splits.items()):
        cap = caps[name]
        if cap is not None:
            imgs, labs, src = imgs[:cap], labs[:cap], src[:cap]
        paths[name] = fit_to_dataset(
            imgs, labs, out_dir / f"{name}.pt", source_index=src, chunk_size=chunk_size, resume=resume,
            widths=widths, w0=w0, steps=steps, lr=lr, batch_size=batch_size, seed=derive_seed(seed, 1000 + k),
            workers=workers, progress=progress,
            meta={"source": source, "split": name,
                  "source_split": "test" if (name == "test" and source != "digits") else
                  ("train" if source != "digits" else "all")})
    return paths
