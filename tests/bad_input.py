"""The bad-input table's vocabulary: :class:`Case`, :class:`Ctx` and :func:`cli_case`.

A case is one line: an id, a call that must fail, the exception type and a
fragment of its message. The tables live by area in ``bad_input_*.py`` beside
this file (not collected by pytest themselves); ``test_bad_input.py`` runs them
all. Adding a case is adding one line to the right table (and one to the README's
count of cases, which ``test_bad_input.py`` checks)::

    Case("edge_dim not an int", lambda ctx: ng.to_graph(mlp(), edge_dim=2.5), ValueError, "edge_dim"),
    cli_case("hidden not an int", ["train", "--data", "{data}", "--out", "{tmp}/run",
                                   "--model-arg", "hidden=abc"], "hidden"),

``{data}`` in a CLI argument is a small, read-only digit-INR dataset directory
(fitted once per test process), ``{tmp}`` a fresh directory for this case.
A case whose setup needs a private copy of the data calls ``ctx.copy_data()``.
"""
from __future__ import annotations

import contextlib
import io
import shutil
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["Case", "Ctx", "CLIError", "cli_case", "run_cli", "overwrite_tensor_bytes"]


@dataclass(frozen=True)
class Case:
    """``call(ctx)`` must raise ``error`` whose message contains ``match``."""

    id: str
    call: Callable[["Ctx"], Any]
    error: type[BaseException] | tuple[type[BaseException], ...]
    match: str


@dataclass
class Ctx:
    """What a case may use: a fresh directory and the shared small dataset."""

    tmp: Path
    data_factory: Callable[[], Path] = field(repr=False)

    @property
    def data(self) -> Path:
        """Directory with train.pt / val.pt / test.pt of a few digit INRs: do not modify."""
        return self.data_factory()

    def copy_data(self) -> Path:
        """A private copy of :attr:`data` under :attr:`tmp`, free to modify."""
        dst = self.tmp / "data_copy"
        shutil.copytree(self.data, dst)
        return dst

    def fmt(self, arg: str) -> str:
        """``arg`` with ``{data}`` and ``{tmp}`` filled in."""
        if "{data}" in arg:
            arg = arg.replace("{data}", str(self.data))
        return arg.replace("{tmp}", str(self.tmp))


class CLIError(Exception):
    """A ``neuralgraph`` command that exited non-zero; the message is what it printed on stderr."""


def run_cli(argv: Sequence[str]) -> str:
    """Run ``neuralgraph.cli.main(argv)`` in-process; raise :class:`CLIError` on a non-zero exit.

    Besides the exit status it checks what a user sees: no traceback, and the
    error itself on one line (argparse may print its usage lines above it).
    """
    from neuralgraph.cli import main

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            rc = main(list(argv))
        except SystemExit as e:                       # argparse errors
            rc = e.code if isinstance(e.code, int) else 1
    text = err.getvalue()
    if rc == 0:
        return out.getvalue()
    assert "Traceback" not in text, f"traceback instead of a one-line error:\n{text}"
    assert rc == 2, f"exit status {rc}, expected 2:\n{text}"
    lines = [l for l in text.strip().splitlines() if l.strip()]
    errors = [l for l in lines if "error:" in l]
    assert len(errors) == 1, f"expected one error line, got:\n{text}"
    raise CLIError(errors[0])


def cli_case(id: str, argv: Sequence[str], match: str, setup: Callable[["Ctx"], Any] | None = None) -> Case:
    """A CLI case: ``neuralgraph *argv`` must exit with status 2 and one error line containing ``match``.

    ``setup(ctx)`` runs first (e.g. to prepare a directory under ``{tmp}``).
    """
    def call(ctx: Ctx) -> None:
        if setup is not None:
            setup(ctx)
        run_cli([ctx.fmt(a) for a in argv])
    return Case(id, call, CLIError, match)


def overwrite_tensor_bytes(path: Path, count: int = 8) -> Path:
    """Flip ``count`` bytes in the middle of the largest tensor stored in the ``torch.save`` file ``path``.

    The bytes of the tensor's storage record (``archive/data/N``, uncompressed) are complemented in place:
    the file stays a readable zip (``torch.load`` checks no CRC), only one weight's values change.
    """
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", f.read(4))
        at = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
        f.seek(at)
        old = f.read(count)
        f.seek(at)
        f.write(bytes(255 - b for b in old))
    return path
