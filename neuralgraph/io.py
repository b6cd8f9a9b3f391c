"""Atomic file writes: a crash or Ctrl-C never leaves a half-written dataset or checkpoint."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable, IO

import torch

__all__ = ["atomic_write", "atomic_save", "atomic_write_text", "save_figure"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write through ``write(file)`` to a temporary file beside ``path``, fsync, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync, then ``os.replace``.

    Readers see either the old file or the complete new one. The file gets the
    usual permissions (0666 minus the umask), not the 0600 of a temporary file.
    """
    return atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` (UTF-8) atomically, like :func:`atomic_save` (metrics, results)."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def save_figure(fig, path: str | os.PathLike, dpi: int = 120, **savefig_kwargs: Any) -> Path:
    """``fig.savefig`` (format from the suffix, default PNG) through :func:`atomic_write`."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi, **savefig_kwargs))
