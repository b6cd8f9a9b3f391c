"""A directory locked by another, real process (for the one-writer-per-directory tests)."""
from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Iterator

_HOLD_LOCK = """
import sys
from neuralgraph.io import lock_directory
with lock_directory(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.read()
"""


@contextlib.contextmanager
def locked_by_another_process(directory: Path) -> Iterator[int]:
    """Hold ``neuralgraph.io.lock_directory(directory)`` in a child process; yields its PID.

    The child is killed (not asked to exit) on leaving the block, as a crashed run would be.
    """
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(directory)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()
