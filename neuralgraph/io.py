"""Safe files: atomic writes (a crash or Ctrl-C never leaves a half-written dataset or checkpoint),
checksums (a damaged file is refused, never used) and directory locks (two processes never write into
one run or dataset directory).

:func:`save` / :func:`load` (``ng.save`` / ``ng.load``) write and read graphs, batches or any
``torch.save``-able object of tensors with both: the file is written atomically and carries the sha256
of every tensor and of the rest of its content (:func:`checksums`), verified when it is read.
``torch.load`` checks nothing (not even the zip's CRC), so without them a file with overwritten bytes
loads without error and gives other weights.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, IO, Iterator, Sequence

import torch
from torch import Tensor

__all__ = ["atomic_write", "atomic_save", "atomic_write_text", "save_figure", "LOCK_NAME", "MANIFEST", "DirectoryBusy",
           "lock_directory", "compact_tensor", "tensor_sha256", "checksums", "mismatched_digests", "some_names",
           "verify_checksums", "entry_structures",
           "verify_entry_structures", "save", "load",
           "SAVED_FORMAT"]

#: The ``format`` entry of a file written by :func:`save`.
SAVED_FORMAT = "neuralgraph.save"

try:
    import fcntl
except ImportError:                                 # not POSIX (Windows): directories are not locked
    fcntl = None

#: The lock file :func:`lock_directory` keeps inside the directory it locks (it holds the owner's PID).
LOCK_NAME = ".lock"
#: The file of a dataset directory that records the settings and inputs of what it holds (INR splits, sine splits).
MANIFEST = "manifest.json"


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


def compact_tensor(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``t`` (detached, as ``dtype``) as a contiguous tensor that owns exactly its bytes, for the files
    of datasets and zoos: ``torch.save`` writes a view's whole storage."""
    t = t.detach().to(dtype).contiguous()
    if t.untyped_storage().nbytes() != t.numel() * t.element_size() or t.storage_offset():
        t = t.clone()
    return t


def tensor_sha256(t: Tensor) -> str:
    """sha256 of a tensor's bytes (any dtype), read in place: a memory-mapped tensor is streamed, not copied."""
    t = t.detach()
    if t.layout != torch.strided:
        t = t.to_dense()
    a = t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy()
    return hashlib.sha256(memoryview(a) if a.size else b"").hexdigest()


_LEAVES = (str, bytes, int, float, complex, bool, type(None), torch.dtype, torch.device, type)
_HIDDEN = {"_store", "_mapping"}            # PyG's storage layers: graph fields are named x, edge_attr, ...


def _walk(obj: Any, name: str, tensors: dict[str, Tensor], skeleton: list[str], above: tuple[int, ...] = ()) -> None:
    """Every tensor of ``obj`` into ``tensors`` by path (``model/fc.weight``); everything else into ``skeleton``.

    Follows what pickling saves: dict / list / tuple items, and the ``__getstate__`` of other objects
    (PyG graphs and batches, architectures), so a tensor anywhere in a graph or checkpoint is found.
    A reference back to an object being walked (``above``: a PyG storage's parent) is not followed.
    """
    if len(above) > 64:
        raise ValueError(f"{name}: nested too deeply to checksum")
    if isinstance(obj, Tensor):
        tensors[name] = obj
        skeleton.append(f"{name}: tensor {obj.dtype} {tuple(obj.shape)}")
        return
    if isinstance(obj, _LEAVES):
        skeleton.append(f"{name}: {obj!r}")
        return

    if id(obj) in above:
        skeleton.append(f"{name}: a reference back to {type(obj).__name__}")
        return

    def join(key: Any) -> str:
        return name if str(key) in _HIDDEN else f"{name}/{key}" if name else str(key)

    if isinstance(obj, dict):
        items = list(obj.items())
    elif isinstance(obj, (list, tuple)):
        items = list(enumerate(obj))
    elif isinstance(obj, (set, frozenset)):
        items = list(enumerate(sorted(obj, key=repr)))
    else:
        state = obj.__getstate__()
        skeleton.append(f"{name}: {type(obj).__module__}.{type(obj).__qualname__}")
        items = list(state.items()) if isinstance(state, dict) else [("state", state)]
    skeleton.append(f"{name}: {type(obj).__name__} of {len(items)}")
    for key, value in items:
        _walk(value, join(key), tensors, skeleton, (*above, id(obj)))


def checksums(obj: Any) -> dict[str, Any]:
    """The checksums of ``obj``: ``{"sha256": {tensor path: digest}, "structure": digest}``.

    Every tensor (found through dicts, lists, tuples and objects' state, e.g. the fields of
    PyG graphs and batches) gets the sha256 of its bytes under its path (``model/fc.weight``,
    ``object/edge_attr``); ``structure`` is the sha256 of everything else (keys, numbers, strings,
    tensor dtypes and shapes), so a changed setting or history entry is caught too. A ``checksums``
    entry of a dict ``obj`` itself is left out.
    """
    if isinstance(obj, dict):
        obj = {k: v for k, v in obj.items() if k != "checksums"}
    tensors: dict[str, Tensor] = {}
    structure = _structure_sha256(obj, "", tensors)
    return {"sha256": {k: tensor_sha256(t) for k, t in tensors.items()}, "structure": structure}


def _structure_sha256(obj: Any, name: str, tensors: dict[str, Tensor]) -> str:
    """sha256 of everything in ``obj`` but its tensors' bytes (see :func:`_walk`); its tensors go into ``tensors``."""
    skeleton: list[str] = []
    _walk(obj, name, tensors, skeleton)
    return hashlib.sha256("\n".join(skeleton).encode()).hexdigest()


def entry_structures(obj: dict) -> dict[str, str]:
    """One structure digest per entry of a file's dict (all but ``checksums``): the sha256 of everything
    in the entry but its tensors' bytes (keys, numbers, strings, tensor dtypes and shapes).

    Dataset and zoo files store it as ``checksums["structure"]`` beside their per-tensor sha256, so a
    changed byte in their architecture, settings or metadata is caught and named by entry
    (:func:`verify_entry_structures`), as one in a tensor is.
    """
    return {str(key): _structure_sha256(value, str(key), {}) for key, value in obj.items() if key != "checksums"}


def mismatched_digests(stored: Any, actual: dict[str, str], key: str = "sha256") -> list[str]:
    """The names whose stored digest differs from ``actual`` (or is on one side only), sorted.

    Args:
        stored: a file's ``checksums`` entry as read (``{"sha256": {name: digest}, "structure": ...}``);
            a damaged entry (not a dict, or ``stored[key]`` not one) counts as no digests, so every
            name is returned.
        actual: ``{name: digest}`` as computed from the loaded object.
        key: which digests to compare: ``"sha256"`` (tensors) or ``"structure"`` (per-entry structure).
    """
    digests = stored.get(key) if isinstance(stored, dict) else None
    digests = digests if isinstance(digests, dict) else {}
    return sorted(k for k in set(digests) | set(actual) if digests.get(k) != actual.get(k))


def some_names(names: Sequence[str], limit: int = 5) -> str:
    """``"a, b"`` for a message: the first ``limit`` names, then ``"and N more"``."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def verify_entry_structures(obj: dict, path: str | os.PathLike, hint: str) -> None:
    """``ValueError`` naming ``path`` and the entries whose structure digest (:func:`entry_structures`)
    differs from ``obj["checksums"]["structure"]``; files written without one are not checked."""
    stored = obj.get("checksums", {}).get("structure") if isinstance(obj.get("checksums"), dict) else None
    if stored is None:
        return
    bad = mismatched_digests(obj["checksums"], entry_structures(obj), key="structure")
    if bad:
        raise ValueError(f"{path}: checksum mismatch in {some_names(bad)} (its non-tensor content): the file is "
                         f"corrupted (its bytes changed after it was written); {hint}")


def verify_checksums(obj: dict, path: str | os.PathLike, hint: str = "copy it again") -> None:
    """``ValueError`` naming ``path`` and what changed, unless ``obj["checksums"]`` matches ``obj``.

    Args:
        obj: a dict written with ``checksums=checksums(obj)`` (a checkpoint, a :func:`save` file).
        path: the file it was read from, for the message.
        hint: what the message tells the user to do.
    """
    stored = obj.get("checksums")
    if not isinstance(stored, dict) or not isinstance(stored.get("sha256"), dict):
        raise ValueError(f"{path}: unreadable checksums entry ({type(stored).__name__}): the file is corrupted; {hint}")
    actual = checksums(obj)
    bad = mismatched_digests(stored, actual["sha256"])
    if stored.get("structure") != actual["structure"] and not bad:
        bad = ["the non-tensor entries (keys, settings, numbers)"]
    if bad:
        raise ValueError(f"{path}: checksum mismatch in {some_names(bad)}: the file is corrupted "
                         f"(its bytes changed after it was written); {hint}")


def save(obj: Any, path: str | os.PathLike) -> Path:
    """Write a graph, a batch (or any ``torch.save``-able object of tensors) atomically, with checksums.

    The file holds ``{"format": SAVED_FORMAT, "object": obj, "checksums": ...}`` (see
    :func:`checksums`); :func:`load` verifies it and returns ``obj``. It stays a plain
    ``torch.save`` file: ``torch.load(path)`` (``weights_only=True``, after ``import neuralgraph``)
    reads it, with the object under ``"object"``.

    Args:
        obj: a :class:`~neuralgraph.NeuralGraph`, a PyG batch of them, a list or dict of them or of tensors.
        path: the file to write (its directory is created; an existing file is replaced atomically).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; ng.save writes one file (e.g. {path / 'graphs.pt'})")
    record = {"format": SAVED_FORMAT, "version": 1, "object": obj}
    record["checksums"] = checksums(record)
    return atomic_save(record, path)


def read_torch_file(path: Path, map_location: Any, what: str, kind: str, *, allow_globals: Sequence = (),
                    hint: str = "", **load_kwargs: Any) -> Any:
    """``torch.load(path, weights_only=True)`` with one clear error per failure: the one checked loader of the
    library's files (saved graphs, checkpoints, INR splits, zoos, chunks) and of the peers' files it imports.

    Args:
        path: the file.
        map_location: as for ``torch.load``.
        what: how a missing file is named (``"checkpoint"`` -> ``checkpoint not found: PATH``).
        kind: how an unreadable file is named (``PATH: not a readable KIND (REASON)HINT``; ``REASON``
            is the line of torch's error that names what failed, e.g. the global it refused).
        allow_globals: further globals the unpickler may rebuild while reading this file
            (``torch.serialization.safe_globals``), e.g. numpy arrays in another library's files.
        hint: said after the reason.
        load_kwargs: further ``torch.load`` arguments (``mmap=True``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with torch.serialization.safe_globals(list(allow_globals)) if allow_globals else contextlib.nullcontext():
            return torch.load(path, map_location=map_location, weights_only=True, **load_kwargs)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same message
        raise ValueError(f"{path}: not a readable {kind} ({type(e).__name__}: {_load_error(e)}){hint}") from None


def _load_error(e: Exception) -> str:
    """The line of a ``torch.load`` error that names what failed (its message can be a page of advice)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "got <class" in line]
    return (named or lines or [type(e).__name__])[0][:300]


def load(path: str | os.PathLike, map_location: str | torch.device | None = None) -> Any:
    """Read a file of :func:`save` (checksums verified) or a plain ``torch.save`` file of graphs or tensors.

    Loading is ``torch.load(path, weights_only=True)``: only tensors, containers and the
    library's classes are unpickled. A file of :func:`save` whose bytes changed raises
    ``ValueError`` naming the file and the tensor (or the record's entries, where the change
    renamed them or unwrapped the record); a plain ``torch.save`` file (no checksums) is
    returned as it is, unverified.

    Args:
        path: the file.
        map_location: as for ``torch.load`` (e.g. ``"cpu"``).
    """
    path = Path(path)
    obj = read_torch_file(path, map_location, "file", "torch.save file")
    hint = "write it again (ng.save)"
    if isinstance(obj, dict) and obj.get("format") == SAVED_FORMAT:
        verify_checksums(obj, path, hint=hint)
        return obj["object"]
    if _damaged_record(obj):
        if isinstance(obj, dict) and "checksums" in obj:
            verify_checksums(obj, path, hint=hint)      # names what changed (the format entry's key or value)
        raise ValueError(f"{path}: a file of ng.save whose record is damaged (its top level is a "
                         f"{type(obj).__name__} of {len(obj)} with the record's entries misnamed or unwrapped): "
                         f"the file is corrupted (its bytes changed after it was written); {hint}")
    return obj


_RECORD_KEYS = ("format", "version", "object", "checksums")


def _damaged_record(obj: Any) -> bool:
    """Whether ``obj`` is a :func:`save` record that lost what marks it as one, rather than a plain file.

    One changed byte can rename a key (``"formau"``), change the format string or turn the record's
    dict into a tuple of its keys and values; :func:`load` must not hand that back as a plain file.
    A dict holding three of the record's four keys, or a tuple / list holding the key strings
    ``"format"`` and ``"checksums"`` as items, is taken for a damaged record.
    """
    if isinstance(obj, dict):
        return sum(k in obj for k in _RECORD_KEYS) >= 3
    if isinstance(obj, (tuple, list)):
        strings = {item for item in obj if isinstance(item, str)}
        return {"format", "checksums"} <= strings
    return False


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
