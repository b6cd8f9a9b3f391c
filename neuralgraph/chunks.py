"""Resumable jobs in chunks: fingerprints of settings and inputs, and the store of finished chunks.

A long job (fitting an INR dataset, training a zoo) is cut into chunks; each finished chunk is
saved at once (atomically) with the fingerprint of the settings and inputs it came from, so an
interrupted job resumes where it stopped and ends with the same bits as an uninterrupted one. A
chunk file is reused only when its index range, fingerprint and checksums match (and whatever
the job checks besides); a half-written, corrupt or foreign file is redone, never trusted.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

from torch import Tensor

from .io import atomic_save, read_torch_file, tensor_sha256

__all__ = ["fingerprint", "tensor_digest", "ChunkStore"]


def fingerprint(config: dict) -> str:
    """16 hex digits naming ``config`` (JSON with sorted keys, sha256): equal settings, equal fingerprint."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def tensor_digest(t: Tensor) -> str:
    """16 hex digits of a tensor's sha256 (:func:`~neuralgraph.io.tensor_sha256`), for fingerprints."""
    return tensor_sha256(t)[:16]


class ChunkStore:
    """The finished chunks of one job: ``<directory>/chunk_XXXXX.pt``.

    Args:
        directory: where the chunk files live (``<output>.chunks``).
        checksums: the job's checksums of a chunk dict (stored under ``"checksums"``).
    """

    def __init__(self, directory: Path, checksums: Callable[[dict], Any]) -> None:
        self.directory = Path(directory)
        self.checksums = checksums

    def path(self, k: int) -> Path:
        """File of finished chunk ``k``."""
        return self.directory / f"chunk_{k:05d}.pt"

    def load(self, k: int, start: int, stop: int, fingerprint: str,
             valid: Callable[[dict], bool] = lambda chunk: True) -> dict | None:
        """Chunk ``k`` of items ``start..stop-1`` made with ``fingerprint``, or ``None`` if it is missing,
        unreadable, from another job, damaged (checksums) or refused by the job's ``valid``."""
        try:
            obj = read_torch_file(self.path(k), "cpu", "chunk", "chunk file")
            ok = (obj.get("chunk") == k and obj.get("start") == start and obj.get("stop") == stop
                  and obj.get("fingerprint") == fingerprint and obj.get("checksums") == self.checksums(obj)
                  and valid(obj))
        except Exception:  # noqa: BLE001 - a half-written or foreign file is redone, never trusted
            return None
        return obj if ok else None

    def save(self, k: int, chunk: dict) -> Path:
        """Add the checksums to ``chunk`` and write it atomically as chunk ``k``."""
        chunk["checksums"] = self.checksums(chunk)
        return atomic_save(chunk, self.path(k))

    def remove(self, count: int, rmdir: bool = True) -> None:
        """Delete chunks ``0..count-1`` of a finished job (and the directory when empty and ``rmdir``)."""
        for k in range(count):
            self.path(k).unlink(missing_ok=True)
        if rmdir:
            try:
                self.directory.rmdir()
            except OSError:
                pass
