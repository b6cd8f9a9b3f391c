"""The INR dataset writer: fits one SIREN per image into a split file, resumably.

Chunks of images are fitted one after another and each finished chunk is saved at once, so an
interrupted fit resumes where it stopped and ends with the same bits as an uninterrupted one.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor

from ..architecture import Architecture
from ..chunks import ChunkStore, fingerprint, tensor_digest
from ..seeding import derive_seed
from .files import _check_count, _checksums, check_labels, load_inr_file, save_inr_dataset
from .fit import fit_images
from .settings import FitSettings
from .siren import DEFAULT_LR, DEFAULT_OFFSET, DEFAULT_STEPS, DEFAULT_W0, DEFAULT_WIDTHS, siren_architecture
from .stats import RunningMoments

__all__ = ["fit_to_dataset", "write_fitted_split"]


def _valid_chunk(arch: Architecture, count: int):
    """What a fitted chunk of ``count`` INRs of ``arch`` must hold besides the store's checks."""
    return lambda obj: (Architecture.from_dict(obj["arch"]) == arch
                        and all(w.shape[0] == count for w in obj["weights"])
                        and all(b.shape[0] == count for b in obj["biases"])
                        and obj["psnr"].shape == (count,)
                        and all(torch.isfinite(w).all() for w in obj["weights"] + obj["biases"]))


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
    _check_count(chunk_size=chunk_size, batch_size=batch_size)
    try:
        settings = FitSettings(widths=widths, w0=w0, steps=steps, lr=lr, offset=offset, init=init,
                               target_psnr=target_psnr, batch_size=batch_size, device_batch_size=device_batch_size,
                               method=method, workers=workers, device=device)
    except ValueError as err:
        raise ValueError(f"{out_path}: {err}") from None
    return write_fitted_split(images, labels, out_path, settings, num_classes=num_classes, source_index=source_index,
                              chunk_size=chunk_size, seed=seed, resume=resume, progress=progress,
                              keep_chunks=keep_chunks, on_chunk=on_chunk, meta=meta)


def require_steps(settings: FitSettings) -> None:
    """A dataset file holds fitted INRs: ``steps`` must be at least 1 (``ValueError`` otherwise)."""
    if settings.steps < 1:
        raise ValueError(f"invalid SIREN fit settings: steps={settings.steps!r} (an integer >= 1)")


def write_fitted_split(images: Tensor, labels: Tensor, out_path: Path, settings: FitSettings, *, num_classes: int,
                       source_index: Tensor | None, chunk_size: int, seed: int, resume: bool = True,
                       progress: bool = True, keep_chunks: bool = False,
                       on_chunk: Callable[[int, int], None] | None = None, meta: dict | None = None) -> Path:
    """:func:`fit_to_dataset` with the fit settings as one checked object (``settings.batch_size`` is the
    CPU batch size the file records; ``chunk_size`` an integer >= 1)."""
    if images.dim() < 1 or images.shape[0] == 0:
        raise ValueError(f"{out_path}: no images to fit (images have shape {tuple(images.shape)})")
    n = images.shape[0]
    labels = check_labels(labels, n, num_classes, out_path)
    require_steps(settings)
    source_index = torch.arange(n) if source_index is None else torch.as_tensor(source_index).long()
    if source_index.shape != (n,):
        raise ValueError(f"{out_path}: source_index must have shape ({n},), got {tuple(source_index.shape)}")
    arch = siren_architecture(settings.widths, settings.w0, settings.offset)
    config = settings.protocol(seed=int(seed), chunk_size=int(chunk_size), batch_size=int(settings.batch_size),
                               image_shape=list(images.shape[1:]))
    store = ChunkStore(out_path.with_name(out_path.name + ".chunks"), _checksums)
    bounds = [(k, k * chunk_size, min(n, (k + 1) * chunk_size)) for k in range(max(1, math.ceil(n / chunk_size)))]
    # fingerprint per chunk: settings + the chunk's images and labels
    fps = {k: fingerprint({**config, "images": tensor_digest(images[s:e]), "labels": tensor_digest(labels[s:e])})
           for k, s, e in bounds}
    whole = fingerprint({"chunks": [fps[k] for k, _, _ in bounds],
                         "source_index": tensor_digest(source_index), "num_classes": int(num_classes)})
    if resume and _holds(out_path, whole):             # the whole split is already there
        return out_path
    done = {k: c for k, s, e in bounds if resume
            and (c := store.load(k, s, e, fps[k], _valid_chunk(arch, e - s))) is not None}
    _fit_chunks(images, out_path, settings, bounds, fps, arch, done, store, seed, progress, on_chunk)
    rm = RunningMoments(arch.num_layers)
    for k, s, e in bounds:
        rm.update(done[k]["weights"], done[k]["biases"])
    weights = [torch.cat([done[k]["weights"][m] for k, _, _ in bounds]) for m in range(arch.num_layers)]
    biases = [torch.cat([done[k]["biases"][m] for k, _, _ in bounds]) for m in range(arch.num_layers)]
    psnr = torch.cat([done[k]["psnr"] for k, _, _ in bounds])
    save_inr_dataset(out_path, weights, biases, labels, arch, num_classes=num_classes, source_index=source_index,
                     psnr=psnr, stats=rm.result(), meta={**(meta or {}), "fit": config, "fingerprint": whole})
    if not keep_chunks:
        store.remove(len(bounds))
    return out_path


def _holds(out_path: Path, whole: str) -> bool:
    """Whether ``out_path`` is a readable split file of exactly this fit."""
    if not out_path.is_file():
        return False
    try:
        return load_inr_file(out_path).get("meta", {}).get("fingerprint") == whole
    except ValueError:
        return False


def _fit_chunks(images: Tensor, out_path: Path, settings: FitSettings, bounds, fps: dict, arch: Architecture,
                done: dict, store: ChunkStore, seed: int, progress: bool, on_chunk) -> None:
    """Fit every chunk not in ``done``, saving each as it finishes (and adding it to ``done``)."""
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=images.shape[0], initial=sum(e - s for k, s, e in bounds if k in done), unit="INR",
                   desc=f"fitting {out_path.name}")
    try:
        for k, s, e in bounds:
            if k in done:
                continue
            try:
                res = fit_images(images[s:e], settings, seed=derive_seed(seed, k), progress=progress)
            except (ValueError, FloatingPointError) as err:
                raise type(err)(f"{out_path}, chunk {k} (images {s}..{e - 1}): {err}") from None
            chunk = {"chunk": k, "start": s, "stop": e, "fingerprint": fps[k], "arch": arch.to_dict(),
                     "weights": res.weights, "biases": res.biases, "psnr": res.psnr}
            store.save(k, chunk)
            done[k] = chunk
            if bar is not None:
                bar.update(e - s)
            if on_chunk is not None:
                on_chunk(k, len(bounds))
    finally:
        if bar is not None:
            bar.close()
