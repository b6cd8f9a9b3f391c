"""Resumable fitting of an INR dataset file: chunks saved as they finish, reused after an interruption."""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor

from ..architecture import Architecture
from ..io import atomic_save
from .files import _check_count, _checksums, _sha256, check_labels, load_inr_file, save_inr_dataset
from .stats import RunningMoments
from .siren import (DEFAULT_LR, DEFAULT_OFFSET, DEFAULT_STEPS, DEFAULT_W0, DEFAULT_WIDTHS, SIREN_INITS,
                    _check_target_psnr, check_fit_settings, derive_seed, fit_sirens, resolve_device,
                    siren_architecture)

__all__ = ["fit_to_dataset"]


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


def _check_init(init: str) -> None:
    if init not in SIREN_INITS:
        raise ValueError(f"init must be one of {SIREN_INITS}, got {init!r}")


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
    init: str = "siren",
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
        _check_init(init)
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
    if init != "siren":                               # absent = the default init: older fingerprints stay valid
        config["init"] = str(init)
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
                                 target_psnr=target_psnr, method=method, init=init)
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
