"""One run per directory: an OS-level lock on ``RUN_DIR/.lock`` for the duration of a run.

Two ``train`` processes writing into the same run directory would interleave
their checkpoints (``last.pt`` of one, ``best.pt`` of the other) and both
report success. :func:`lock_run_directory` takes an exclusive ``fcntl.flock``
on a lock file inside the directory; the operating system releases it when the
holder closes it or dies (even by ``SIGKILL``), so a crashed run never leaves a
stale lock. The file keeps the holder's PID for the error message.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

__all__ = ["LOCK_NAME", "RunDirectoryBusy", "lock_run_directory"]

LOCK_NAME = ".lock"

try:
    import fcntl
except ImportError:                                 # not POSIX (Windows): runs are not locked
    fcntl = None


class RunDirectoryBusy(RuntimeError):
    """Another process is running in this run directory."""


@contextlib.contextmanager
def lock_run_directory(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on ``run_dir`` (created if needed) inside the ``with`` block.

    Raises :class:`RunDirectoryBusy` naming the directory and the PID of the
    process holding it. Non-blocking: a second run fails at once instead of
    waiting for the first to finish.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"run directory {run_dir} is a file; choose a directory for --out")
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    locked = False
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                raise RunDirectoryBusy(f"run directory {run_dir} is in use by another run (process {holder}); "
                                       f"wait for it to finish or choose another --out") from None
        locked = True
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield run_dir
    finally:
        if locked and created and [p.name for p in run_dir.iterdir()] == [LOCK_NAME]:
            path.unlink()                           # a run that wrote nothing leaves no directory behind
            run_dir.rmdir()
        os.close(fd)                                # releases the lock
