"""INR dataset files: one file per split, resumable fitting, lazy vectorised loading.

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
    checksums       {"sha256": {tensor name: hex digest}} of every tensor above

Files are written atomically (temp file in the same directory + ``os.replace``)
and loaded with ``mmap=True``, so a large split costs no RAM until indexed.
Loading verifies the checksums once per file version and process (a corrupted
file raises ``ValueError`` naming it instead of yielding wrong weights).

Format history: version 1 files (no checksums, no stored ``num_classes``)
are refused with a message to refit them; there is no silent fallback, since
the number of classes cannot be recovered from the labels.

A directory made by :func:`build_inr_splits` also holds ``manifest.json``:
the settings and inputs of its fit, written before anything is fitted, so a
rerun with other settings is refused instead of mixing splits.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Batch

from ..architecture import Architecture
from ..augment import Augment
from ..graph import stacked_to_batch
from ..io import atomic_save, atomic_write_text, lock_directory
from .siren import (DEFAULT_LR, DEFAULT_OFFSET, DEFAULT_STEPS, DEFAULT_W0, DEFAULT_WIDTHS, _check_target_psnr,
                    check_fit_settings, derive_seed, fit_sirens, resolve_device, siren_architecture)

__all__ = [
    "FORMAT_VERSION", "RunningMoments", "layer_stats", "normalize_params", "save_inr_dataset", "load_inr_file",
    "check_labels",
    "fit_to_dataset", "INRDataset", "INRLoader", "build_inr_splits", "DIGITS_W0", "SOURCE_NUM_CLASSES",
    "MANIFEST",
]

#: Version 2: per-tensor sha256 checksums and ``meta["num_classes"]``.
FORMAT_VERSION = 2
_SPLIT_KEYS = ("format_version", "arch", "weights", "biases", "labels", "source_index", "psnr", "stats", "meta",
               "checksums")
_STAT_KEYS = ("weight_mean", "weight_std", "bias_mean", "bias_std")


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


def _scale(std: Tensor, eps: float) -> Tensor:
    """``std + eps``, or 1 for a layer without spread (``std <= eps``): such a layer is only centred.

    Dividing by ``~eps`` would blow any other split's deviation from the
    constant up by ``1 / eps`` (a bias layer that is zero over the train split
    and 0.01 on a validation INR would become 1e6).
    """
    return torch.where(std > eps, std + eps, torch.ones_like(std))


def normalize_params(weights: Sequence[Tensor], biases: Sequence[Tensor], stats: dict[str, Tensor],
                     eps: float = 1e-8) -> tuple[list[Tensor], list[Tensor]]:
    """Standardise each layer's weights and biases with the dataset statistics.

    A layer whose standard deviation is ``<= eps`` is centred only (see :func:`_scale`).
    """
    wm, bm = stats["weight_mean"], stats["bias_mean"]
    ws, bs = _scale(stats["weight_std"], eps), _scale(stats["bias_std"], eps)
    W = [(w - wm[m]) / ws[m] for m, w in enumerate(weights)]
    b = [(x - bm[m]) / bs[m] for m, x in enumerate(biases)]
    return W, b


#: SIREN frequency for the 8x8 digits: 30 (tuned for 28x28) scaled to the coarser grid.
DIGITS_W0 = 10.0


def _normalize_batch(batch: Batch, stats: dict[str, Tensor], eps: float = 1e-8) -> None:
    """Standardise a batch's biases/weights per layer in place; keep the raw values beside them.

    Elementwise the same arithmetic as :func:`normalize_params` (bit-identical results).
    """
    wm, ws, bm, bs = (stats[k].to(batch.x.dtype) for k in _STAT_KEYS)
    ws, bs = _scale(ws, eps), _scale(bs, eps)
    layer = (batch.node_layer - 1).clamp(min=0)
    hasb = (batch.node_layer > 0).unsqueeze(-1)
    x = torch.where(hasb, (batch.x - bm[layer].unsqueeze(-1)) / bs[layer].unsqueeze(-1), batch.x)
    el = (batch.edge_layer - 1).view(-1, *([1] * (batch.edge_attr.dim() - 1)))
    edge_attr = (batch.edge_attr - wm[el]) / ws[el]
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


def _compact(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``t`` as a contiguous tensor that owns exactly its bytes (``torch.save`` writes whole storages)."""
    t = t.detach().to(dtype).contiguous()
    if t.untyped_storage().nbytes() != t.numel() * t.element_size() or t.storage_offset():
        t = t.clone()
    return t


def _named_tensors(obj: dict) -> dict[str, Tensor]:
    """Every tensor of a split (or chunk) dict, by a stable name."""
    out = {f"weights.{m}": w for m, w in enumerate(obj["weights"])}
    out.update({f"biases.{m}": b for m, b in enumerate(obj["biases"])})
    for key in ("labels", "source_index", "psnr"):
        if key in obj:
            out[key] = obj[key]
    out.update({f"stats.{k}": v for k, v in obj.get("stats", {}).items() if isinstance(v, Tensor)})
    return out


def _sha256(t: Tensor) -> str:
    """sha256 of a tensor's bytes, read in place (a memory-mapped tensor is streamed from disk, no copy)."""
    a = t.detach().cpu().contiguous().numpy()
    return hashlib.sha256(memoryview(a).cast("B") if a.size else b"").hexdigest()


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
    stored = obj["checksums"].get("sha256", {}) if isinstance(obj["checksums"], dict) else {}
    actual = _checksums(obj)["sha256"]
    bad = sorted(name for name in set(stored) | set(actual) if stored.get(name) != actual.get(name))
    if bad:
        raise ValueError(f"{path}: checksum mismatch in {', '.join(bad)}: the file is corrupted "
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
    weights = [_compact(w, torch.float32) for w in weights]
    biases = [_compact(b, torch.float32) for b in biases]
    _check_finite(weights, biases, path)
    stats = stats if stats is not None else layer_stats(weights, biases)
    _check_stats(stats, arch.num_layers, path)
    obj = {
        "format_version": FORMAT_VERSION,
        "arch": arch.to_dict(),
        "weights": weights,
        "biases": biases,
        "labels": _compact(labels, torch.long),
        "source_index": _compact(source_index, torch.long),
        "psnr": _compact(psnr, torch.float32),
        "stats": {k: (_compact(v, v.dtype) if isinstance(v, Tensor) else v) for k, v in stats.items()},
        "meta": {**(meta or {}), "num_classes": int(num_classes)},
    }
    obj["checksums"] = _checksums(obj)
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
    if not path.is_file():
        raise FileNotFoundError(f"INR dataset file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", mmap=mmap, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear error
        raise ValueError(f"{path}: not a readable INR dataset file ({type(e).__name__}: {e})") from None
    if isinstance(obj, dict) and "format_version" in obj and obj["format_version"] != FORMAT_VERSION:
        version = obj["format_version"]
        hint = (" (written by an older neuralgraph, without checksums and num_classes); refit it, e.g. "
                "`neuralgraph fit-inrs --overwrite`" if isinstance(version, int) and version < FORMAT_VERSION
                else "; upgrade neuralgraph to read it")
        raise ValueError(f"{path}: format_version {version}, this code reads {FORMAT_VERSION}{hint}")
    if not isinstance(obj, dict) or any(k not in obj for k in _SPLIT_KEYS):
        missing = [k for k in _SPLIT_KEYS if not isinstance(obj, dict) or k not in obj]
        raise ValueError(f"{path}: not an INR dataset file (missing {missing})")
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


# ----------------------------------------------------------------------------
# resumable fitting
# ----------------------------------------------------------------------------

def _fingerprint(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def _tensor_digest(t: Tensor) -> str:
    return _sha256(t)[:16]


def _chunk_path(chunk_dir: Path, k: int) -> Path:
    """File of finished chunk ``k`` of a resumable job (INR fitting, zoo training)."""
    return chunk_dir / f"chunk_{k:05d}.pt"


def _remove_chunks(chunk_dir: Path, count: int, rmdir: bool = True) -> None:
    """Delete the chunk files ``0..count-1`` of a finished job (and the directory when empty and ``rmdir``)."""
    for k in range(count):
        _chunk_path(chunk_dir, k).unlink(missing_ok=True)
    if rmdir:
        try:
            chunk_dir.rmdir()
        except OSError:
            pass


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
              and obj.get("checksums") == _checksums(obj)
              and all(torch.isfinite(w).all() for w in obj["weights"] + obj["biases"]))
    except Exception:  # noqa: BLE001 - a half-written or foreign file is refit, never trusted
        return None
    return obj if ok else None


def fit_to_dataset(
    images: Tensor,
    labels: Tensor,
    out_path: str | os.PathLike,
    *,
    num_classes: int,
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
    device: str | torch.device = "cpu",
    target_psnr: float | None = None,
    device_batch_size: int | None = None,
    method: str | None = None,
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

    Everything is validated before any fitting: the labels (see
    :func:`check_labels`; ``num_classes`` is stored in the file), ``steps``
    (integer >= 1), ``lr`` and ``w0`` (finite, > 0), ``chunk_size`` and
    ``batch_size`` (integers >= 1), ``ValueError`` otherwise. A fit that
    diverges raises ``FloatingPointError`` naming ``out_path``, before
    anything of that chunk is written.

    ``device`` (``"cpu"``, ``"cuda"``, ``"auto"``) only says where chunks are
    fitted (see :func:`~neuralgraph.inr.fit_sirens`): the file is the same
    (tensors on CPU), a GPU-fitted dataset loads and trains like a CPU-fitted
    one, and a fit may resume on another device. It is therefore not part of
    the fingerprint, nor ``device_batch_size`` (INRs per batch on a GPU;
    default from free memory) and ``method`` (``"device"`` runs the GPU code
    path on CPU). ``target_psnr`` (per-INR early stopping,
    ``steps`` then being the maximum) changes the protocol and is.
    """
    out_path = Path(out_path)
    if images.dim() < 1 or images.shape[0] == 0:
        raise ValueError(f"{out_path}: no images to fit (images have shape {tuple(images.shape)})")
    n = images.shape[0]
    labels = check_labels(labels, n, num_classes, out_path)
    check_fit_settings(steps=steps, lr=lr, w0=w0, min_steps=1)
    _check_count(chunk_size=chunk_size, batch_size=batch_size,
                 **({} if device_batch_size is None else {"device_batch_size": device_batch_size}))
    try:
        dev = resolve_device(device)
        _check_target_psnr(target_psnr)
    except ValueError as err:
        raise ValueError(f"{out_path}: {err}") from None
    source_index = torch.arange(n) if source_index is None else torch.as_tensor(source_index).long()
    if source_index.shape != (n,):
        raise ValueError(f"{out_path}: source_index must have shape ({n},), got {tuple(source_index.shape)}")
    arch = siren_architecture(widths, w0, offset)
    config = {"widths": [int(w) for w in widths], "w0": float(w0), "steps": int(steps), "lr": float(lr),
              "offset": float(offset), "seed": int(seed), "chunk_size": int(chunk_size),
              "batch_size": int(batch_size), "image_shape": list(images.shape[1:])}
    if target_psnr is not None:                       # absent = fixed steps: older fingerprints stay valid
        config["target_psnr"] = float(target_psnr)
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
                                "source_index": _tensor_digest(source_index), "num_classes": int(num_classes)})
    if resume and out_path.is_file():
        try:
            finished = load_inr_file(out_path).get("meta", {}).get("fingerprint") == fingerprint
        except ValueError:
            finished = False
        if finished:                                  # the whole split is already there
            return out_path
    if resume:
        for k, s, e in bounds:
            c = _chunk_ok(_chunk_path(chunk_dir, k), k, s, e, fps[k], arch)
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
            try:
                res = fit_sirens(images[s:e], widths=widths, w0=w0, steps=steps, lr=lr, offset=offset,
                                 batch_size=batch_size if dev.type == "cpu" else device_batch_size,
                                 seed=derive_seed(seed, k), workers=workers, progress=progress, device=dev,
                                 target_psnr=target_psnr, method=method)
            except (ValueError, FloatingPointError) as err:
                raise type(err)(f"{out_path}, chunk {k} (images {s}..{e - 1}): {err}") from None
            chunk = {"chunk": k, "start": s, "stop": e, "fingerprint": fps[k], "arch": arch.to_dict(),
                     "weights": res.weights, "biases": res.biases, "psnr": res.psnr}
            chunk["checksums"] = _checksums(chunk)
            atomic_save(chunk, _chunk_path(chunk_dir, k))
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
    save_inr_dataset(out_path, weights, biases, labels, arch, num_classes=num_classes, source_index=source_index,
                     psnr=psnr, stats=rm.result(), meta={**(meta or {}), "fit": config, "fingerprint": fingerprint})
    if not keep_chunks:
        _remove_chunks(chunk_dir, len(bounds))
    return out_path


# ----------------------------------------------------------------------------
# loading
# ----------------------------------------------------------------------------

def _check_count(**values: Any) -> None:
    """``ValueError`` unless every value is an integer >= 1 (``batch_size``, ``chunk_size``, ...)."""
    bad = [f"{k}={v!r}" for k, v in values.items()
           if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1]
    if bad:
        raise ValueError(f"{', '.join(bad)}: must be an integer >= 1")


def _as_index(indices: Any, n: int) -> Tensor:
    """Positions ``[k]`` int64 in ``[0, n)`` selected by ``indices``.

    Accepted: an int, a slice, a 1-D sequence / numpy array / tensor of
    integers (negative ones count from the end), or a 1-D boolean mask of
    length ``n``. Anything else (floats, 2-D indices, a mask of another
    length) raises ``ValueError``; an integer out of range ``IndexError``.
    """
    if isinstance(indices, slice):
        return torch.arange(n)[indices]
    if isinstance(indices, (bool, np.bool_)):
        raise ValueError(f"a single bool is not an index; pass a boolean mask of length {n} or integer indices")
    if isinstance(indices, Tensor):
        idx = indices.cpu()
    else:
        try:
            arr = np.asarray(indices)
        except (TypeError, ValueError) as e:                      # ragged lists and the like
            raise ValueError(f"indices must be integers, a slice or a boolean mask, got {type(indices).__name__} "
                             f"({e})") from None
        if arr.size == 0:
            arr = arr.astype(np.int64)                            # [] is float64 for numpy
        if arr.dtype.kind not in "biu":
            raise ValueError(f"indices must be integers or a boolean mask, got {type(indices).__name__} of "
                             f"dtype {arr.dtype}")
        idx = torch.from_numpy(arr.astype(np.int64) if arr.dtype.kind in "iu" else arr)
    if idx.dtype == torch.bool:
        if idx.dim() != 1 or idx.shape[0] != n:
            raise ValueError(f"a boolean mask must have shape ({n},) for a dataset of {n} INRs, "
                             f"got {tuple(idx.shape)}")
        return idx.nonzero().reshape(-1)
    if idx.dtype.is_floating_point or idx.dtype.is_complex:
        raise ValueError(f"indices must be integers or a boolean mask, got dtype {idx.dtype}")
    if idx.dim() > 1:
        raise ValueError(f"indices must be 1-D (or a single int), got shape {tuple(idx.shape)}")
    idx = idx.reshape(-1).long()
    if idx.numel() and (idx.min() < -n or idx.max() >= n):
        bad = idx[(idx < -n) | (idx >= n)][0]
        raise IndexError(f"index {int(bad)} out of range for a dataset of {n} INRs")
    return torch.where(idx < 0, idx + n, idx)


class INRDataset(torch.utils.data.Dataset):
    """One split file, loaded lazily (memory-mapped); batches are built without per-item loops.

    ``dataset[i]`` is a single :class:`~neuralgraph.NeuralGraph` with ``y``
    (works with PyG's ``DataLoader``); the fast path is :meth:`batch` /
    :meth:`loader`, which index the stacked tensors once per batch and call
    :func:`neuralgraph.stacked_to_batch`. ``normalize`` and ``augment`` set
    defaults for both.

    ``stats`` replaces the file's own per-layer statistics for normalisation (e.g. the
    training split's, stored in a checkpoint: inference must not normalise a test file
    with its own statistics). ``transform`` (a callable, e.g. a
    :mod:`neuralgraph.transforms` transform or a ``torch_geometric.transforms.Compose``)
    is applied to every graph / batch this dataset returns. ``dataset[i]`` with an
    int gives one graph; a slice, index list/tensor or boolean mask gives a
    sub-dataset (same statistics and transform).
    """

    def __init__(self, path: str | os.PathLike, normalize: bool = False,
                 augment: Augment | None = None, mmap: bool = True, verify: bool = True,
                 stats: dict[str, Tensor] | None = None, transform: Callable | None = None) -> None:
        self.path = Path(path)
        obj = load_inr_file(self.path, mmap=mmap, verify=verify)
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
        if stats is not None:
            _check_stats(stats, self.arch.num_layers, f"{self.path} (stats=)")
            self.stats = stats
        if transform is not None and not callable(transform):
            raise ValueError(f"transform must be callable (e.g. neuralgraph.transforms.PermuteHidden()), got "
                             f"{type(transform).__name__}")
        self.transform = transform

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        """The number of classes stored in the file (not guessed from the labels present)."""
        return int(self.meta["num_classes"])

    def params(self, indices: Tensor | Sequence[int] | slice | int) -> tuple[list[Tensor], list[Tensor]]:
        """Raw stacked parameters of the selected INRs (copies, safe to modify).

        ``indices``: an int, a slice, integer indices (list, numpy array or
        tensor; negative ones count from the end) or a boolean mask of length
        ``len(self)``; anything else raises ``ValueError``.
        """
        idx = _as_index(indices, len(self))
        return [w[idx] for w in self.weights], [b[idx] for b in self.biases]

    def batch(self, indices: Tensor | Sequence[int] | slice | int, normalize: bool | None = None,
              augment: Augment | None = None, generator: torch.Generator | None = None) -> Batch:
        """A PyG ``Batch`` of the selected INRs' neural graphs (``indices`` as for :meth:`params`).

        ``batch.y`` holds the labels and ``batch.inr_index`` the positions in
        this file, in ``[0, len(self))`` (e.g. to look up ``source_index`` or ``psnr``).

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
        out.inr_index = idx
        for key in ("y", "inr_index"):
            out._slice_dict[key] = torch.arange(len(idx) + 1)
            out._inc_dict[key] = torch.zeros(len(idx), dtype=torch.long)
        transform = getattr(self, "transform", None)
        return transform(out) if transform is not None else out

    def __getitem__(self, i):
        is_int = isinstance(i, (int, np.integer)) or isinstance(i, Tensor) and i.dim() == 0 and not (
            i.dtype.is_floating_point or i.dtype == torch.bool)
        scalar = isinstance(i, (bool, np.bool_, float, np.floating)) or isinstance(i, Tensor) and i.dim() == 0
        if scalar and (not is_int or isinstance(i, (bool, np.bool_))):
            raise ValueError(f"dataset[i] takes one integer index (or a slice, indices or a boolean mask for a "
                             f"sub-dataset), got {i!r}")
        if not is_int:
            return self.subset(i)
        return self.batch(i).get_example(0)

    def subset(self, indices) -> "INRDataset":
        """The selected INRs as a dataset (``indices`` as for :meth:`params`; parameters gathered once)."""
        import copy

        idx = _as_index(indices, len(self))
        out = copy.copy(self)
        out.weights, out.biases = self.params(idx)
        out.labels, out.source_index, out.psnr = self.labels[idx], self.source_index[idx], self.psnr[idx]
        return out

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
        _check_count(batch_size=batch_size)
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

#: Number of classes of each source (stored in every split: a split may lack some classes).
SOURCE_NUM_CLASSES = {"digits": 10, "mnist": 10, "fashion_mnist": 10}
#: The file of a split directory that records the settings and inputs of its fit.
MANIFEST = "manifest.json"
_STAGING = ".overwrite"                  # where an overwrite is fitted before it replaces the old splits
_SPLITS = ("train", "val", "test")


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
               for s in _SPLITS)


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
    for name in _SPLITS:
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
    overwrite: bool = False,
    progress: bool = True,
    on_chunk: Callable[[int, int], None] | None = None,
    device: str | torch.device = "cpu",
    target_psnr: float | None = None,
    device_batch_size: int | None = None,
    method: str | None = None,
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
    protocol) for 28x28 MNIST / Fashion-MNIST, :data:`DIGITS_W0` for the 8x8
    digits. An 8x8 grid is 3.5x coarser, and with ``w0 = 30`` the fitted INRs
    interpolate noise between pixels (a logistic regression on the INR's values
    at pixel midpoints: 28% test accuracy, against 92% at ``w0 = 10``), which
    starves models that probe the INR as a function.

    ``device`` / ``device_batch_size`` / ``method`` pick where and in what batches the
    INRs are fitted; they are not recorded in the manifest (a split fitted on
    a GPU is the same protocol, and a CPU rerun resumes it). ``target_psnr``
    (the DWSNets authors' protocol: ``steps=1000, lr=5e-4, target_psnr=40``)
    is recorded, so datasets of the two protocols never mix.
    """
    if source not in SOURCE_NUM_CLASSES:
        raise ValueError(f"source must be one of {', '.join(map(repr, SOURCE_NUM_CLASSES))}, got {source!r}")
    if source == "digits" and root is not None:
        raise ValueError(f"root={str(root)!r} is only read for mnist / fashion_mnist; source='digits' is "
                         "sklearn's bundled digits (did you mean source='mnist', `--source mnist`?)")
    if source != "digits" and root is None:
        raise ValueError(f"source={source!r} needs root= a directory with the IDX files "
                         "(e.g. ../shared/datasets/mnist)")
    if w0 is None:
        w0 = DIGITS_W0 if source == "digits" else DEFAULT_W0
    check_fit_settings(steps=steps, lr=lr, w0=w0, min_steps=1)
    resolve_device(device)
    _check_target_psnr(target_psnr)
    _check_count(chunk_size=chunk_size, batch_size=batch_size,
                 **({} if device_batch_size is None else {"device_batch_size": device_batch_size}),
                 **{k: v for k, v in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)) if v is not None})
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    out_dir = Path(out_dir)
    splits = _source_splits(source, root, n_train, n_val, n_test, seed)
    num_classes = SOURCE_NUM_CLASSES[source]
    settings = {"source": source, "n_train": n_train, "n_val": n_val, "n_test": n_test, "steps": int(steps),
                "lr": float(lr), "widths": [int(w) for w in widths], "w0": float(w0), "seed": int(seed),
                "chunk_size": int(chunk_size), "batch_size": int(batch_size), "offset": DEFAULT_OFFSET,
                "num_classes": num_classes}
    if target_psnr is not None:                       # absent = fixed steps: older manifests stay valid
        settings["target_psnr"] = float(target_psnr)
    inputs = {name: _fingerprint({"images": _tensor_digest(x), "labels": _tensor_digest(y),
                                  "source_index": _tensor_digest(i)}) for name, (x, y, i) in splits.items()}
    manifest = json.loads(json.dumps({"format_version": FORMAT_VERSION, "settings": settings, "inputs": inputs}))
    with lock_directory(out_dir, "INR dataset directory", "wait for that fit to finish or choose another --out"):
        target = _prepare_directory(out_dir, manifest, overwrite)
        for k, (name, (imgs, labs, src)) in enumerate(splits.items()):
            fit_to_dataset(
                imgs, labs, target / f"{name}.pt", num_classes=num_classes, source_index=src,
                chunk_size=chunk_size, resume=resume, widths=widths, w0=w0, steps=steps, lr=lr,
                batch_size=batch_size, seed=derive_seed(seed, 1000 + k), workers=workers, progress=progress,
                on_chunk=on_chunk, device=device, target_psnr=target_psnr, device_batch_size=device_batch_size,
                method=method, meta={"source": source, "split": name, "dataset": settings,
                                         "source_split": "test" if (name == "test" and source != "digits") else
                                         ("train" if source != "digits" else "all")})
        if target != out_dir:
            _install(target, out_dir)
    return {name: out_dir / f"{name}.pt" for name in splits}
