"""Safe file writing: atomic writes (a crash or Ctrl-C never leaves a half-written dataset or
checkpoint) and directory locks (two processes never write into one run or dataset directory)."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, IO, Iterator

import torch

__all__ = ["atomic_write", "atomic_save", "atomic_write_text", "save_figure", "LOCK_NAME", "DirectoryBusy",
           "lock_directory"]

try:
    import fcntl
except ImportError:                                 # not POSIX (Windows): directories are not locked
    fcntl = None

#: The lock file :func:`lock_directory` keeps inside the directory it locks (it holds the owner's PID).
LOCK_NAME = ".lock"


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


class DirectoryBusy(RuntimeError):
    """Another process holds the lock of this directory (see :func:`lock_directory`)."""


@contextlib.contextmanager
def lock_directory(directory: str | os.PathLike, what: str = "directory",
                   hint: str = "wait for it to finish or choose another --out") -> Iterator[Path]:
    """Hold an exclusive lock on ``directory`` (created if needed) inside the ``with`` block.

    Two ``train`` runs in one run directory would interleave their checkpoints,
    two ``fit-inrs`` in one dataset directory their splits, and both would
    report success. The lock is an ``fcntl.flock`` on ``directory/.lock``: the
    operating system releases it when the holder closes it or dies (even by
    ``SIGKILL``), so a crash never leaves a stale lock. Non-blocking: a second
    process fails at once with :class:`DirectoryBusy`, naming the directory and
    the holder's PID. A directory this call created and nobody wrote into is
    removed again on exit.

    Args:
        directory: the directory to lock.
        what: how the message names it (``"run directory"``, ``"INR dataset directory"``).
        hint: what the message tells the user to do.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"{what} {directory} is a file; choose a directory (--out)")
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    locked = False
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                raise DirectoryBusy(f"{what} {directory} is in use by process {holder}; {hint}") from None
        locked = True
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield directory
    finally:
        if locked and created and [p.name for p in directory.iterdir()] == [LOCK_NAME]:
            path.unlink()
            directory.rmdir()
        os.close(fd)                                # releases the lock
