"""Training accelerators: bf16 autocast (``--amp``), ``torch.compile`` (``--compile``), batch prefetching
and a data/step timer.

Each piece leaves the model, its parameters and its checkpoints untouched; autocast and
compilation are opt-in, prefetching is what the trainer always does (it changes no result):

* :func:`amp_autocast` is a context for the *forward* only: matmuls run in bfloat16 where
  autocast allows it, parameters and optimiser state stay float32; compute the loss on
  :func:`to_float32` outputs (bf16 has ~3 significant digits, a loss summed in it loses
  the small terms).
* :func:`compile_forward` returns a forward callable: ``torch.compile(model,
  dynamic=True)`` (graph sizes vary per batch) when it works, the eager model otherwise.
  Compilation happens at the first call, so failures (no compiler toolchain, an op that
  cannot be traced such as ``vmap`` over architectures, a platform without Triton) are
  caught there: one ``RuntimeWarning`` saying why, then eager for the rest of the run.
  The state dict is the model's own (no ``_orig_mod.`` prefix in checkpoints).
* :class:`DataStepMeter` splits wall time into *data* (building the batch and moving it to
  the device; with :func:`prefetch`, the part of that the step waits for) and *step*
  (forward, loss, backward, optimiser), synchronising CUDA at the
  phase boundaries so that asynchronous kernels are charged to the step that launched them.
  ``data_fraction`` near 1 means the GPU waits for the CPU (a CPU bottleneck).
* :func:`prefetch` builds the next batch in a background thread while the current one
  trains, so batch building (CPU) and the step overlap; the batches and the order of their
  random draws are the same as without it.
"""
from __future__ import annotations

import contextlib
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, TypeVar

import torch
from torch import Tensor, nn

__all__ = ["amp_autocast", "to_float32", "compile_forward", "CompiledForward", "DataStepMeter", "check_amp",
           "prefetch"]

T = TypeVar("T")


def _device_type(device: torch.device | str) -> str:
    return torch.device(device).type


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX-512 BF16 or AMX, as oneDNN reports it)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def check_amp(device: torch.device | str) -> None:
    """``ValueError`` where bf16 autocast is unavailable (a CUDA card without bf16, or an unknown device).

    On a CPU without native bf16 matrix units (no AVX-512 BF16 / AMX) autocast still runs but
    emulates bf16 matmuls: a ``RuntimeWarning`` says so (measured on an AVX2 CPU, one thread,
    SIREN graphs at batch 64: NG-GNN 5.8x and NG-T 7x slower than float32).
    """
    kind = _device_type(device)
    if kind == "cpu" and not cpu_has_native_bf16():
        warnings.warn("--amp: this CPU has no native bf16 matrix units (no AVX-512 BF16 / AMX); bf16 autocast "
                      "is several times slower than float32 here (NG-GNN 5.8x, NG-T 7x on an AVX2 CPU): train "
                      "without --amp", RuntimeWarning, stacklevel=2)
    if kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"--amp: {torch.cuda.get_device_name(torch.device(device))} has no bfloat16 support; "
                         "train without --amp")
    if kind not in ("cuda", "cpu"):
        raise ValueError(f"--amp: bf16 autocast runs on 'cpu' or 'cuda', not {device!r}")


def amp_autocast(device: torch.device | str, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast for the forward pass on ``device`` (a no-op context when ``enabled`` is False).

    Example::

        with amp_autocast(device, config.amp):
            output = model(batch)
        loss = task.loss(to_float32(output), batch)
    """
    if not enabled:
        return contextlib.nullcontext()
    check_amp(device)
    return torch.autocast(_device_type(device), dtype=torch.bfloat16)


def to_float32(output: Any) -> Any:
    """Floating tensors of ``output`` (a tensor, or a tuple/list/dict of them, or a PyG batch) as float32."""
    if isinstance(output, Tensor):
        return output.float() if output.is_floating_point() else output
    if isinstance(output, (tuple, list)):
        return type(output)(to_float32(o) for o in output)
    if isinstance(output, dict):
        return {k: to_float32(v) for k, v in output.items()}
    if hasattr(output, "apply") and hasattr(output, "keys"):          # a PyG Data / Batch
        return output.apply(lambda t: t.float() if t.is_floating_point() else t)
    return output


class CompiledForward:
    """``model(*args)`` through ``torch.compile`` when that works, eagerly otherwise (see :func:`compile_forward`).

    Attributes:
        active: whether the compiled callable is in use (False after a fallback).
        reason: why it fell back (``None`` while compiled).
    """

    def __init__(self, model: nn.Module, enabled: bool = True, **compile_kwargs: Any) -> None:
        self.model = model
        self.active, self.reason = False, None
        if not enabled:
            self.reason = "disabled"
            return
        if not hasattr(torch, "compile"):
            self._fallback(f"torch {torch.__version__} has no torch.compile")
            return
        try:
            self._compiled = torch.compile(model, **{"dynamic": True, **compile_kwargs})
            self.active = True
        except Exception as err:  # noqa: BLE001 - any failure means: run eagerly, and say why
            self._fallback(f"{type(err).__name__}: {err}")

    def _fallback(self, reason: str) -> None:
        self.active, self.reason = False, reason
        first = reason.strip().splitlines()[0] if reason.strip() else reason
        warnings.warn(f"--compile: torch.compile is not usable here ({first[:300]}); training runs eagerly",
                      RuntimeWarning, stacklevel=3)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.active:
            try:
                return self._compiled(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - compilation errors surface at the first calls
                self._fallback(f"{type(err).__name__}: {err}")
        return self.model(*args, **kwargs)


def compile_forward(model: nn.Module, enabled: bool = True, **compile_kwargs: Any) -> CompiledForward:
    """The forward to call in the training step: compiled when ``enabled`` and supported, else eager.

    ``model`` itself is unchanged (optimise, checkpoint and ``state_dict()`` it as before).
    Extra keyword arguments go to ``torch.compile`` (default ``dynamic=True``).
    """
    return CompiledForward(model, enabled, **compile_kwargs)


@dataclass
class DataStepMeter:
    """Wall time of batch preparation (``data``) against the training step (``step``), per epoch.

    Usage::

        meter = DataStepMeter(device)
        for ...:
            with meter.data():
                batch = dataset.batch(idx, ...).to(device, non_blocking=True)
            with meter.step():
                ...  # forward, loss, backward, optimiser step
        row = meter.summary()          # {"data_s", "step_s", "data_fraction", "batches"}
        meter.reset()

    With ``sync=True`` (default on CUDA) each phase ends with ``torch.cuda.synchronize``,
    so the kernels a phase queued count in that phase (a few microseconds per batch).
    """

    device: torch.device | str = "cpu"
    sync: bool | None = None
    data_s: float = 0.0
    step_s: float = 0.0
    batches: int = 0
    _cuda: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self._cuda = _device_type(self.device) == "cuda"
        if self.sync is None:
            self.sync = self._cuda

    def _wait(self) -> None:
        if self.sync and self._cuda:
            torch.cuda.synchronize(torch.device(self.device))

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self._wait()
            setattr(self, name, getattr(self, name) + time.perf_counter() - t)

    def data(self) -> contextlib.AbstractContextManager:
        """Context manager timing batch preparation (adds to ``data_s``)."""
        return self._phase("data_s")

    def step(self) -> contextlib.AbstractContextManager:
        """Context manager timing one training step (adds to ``step_s``; counts a batch)."""
        self.batches += 1
        return self._phase("step_s")

    def summary(self) -> dict[str, float]:
        """``{data_s, step_s, batches, data_fraction}`` since the last :meth:`reset` (fraction ``nan`` if nothing was timed)."""
        total = self.data_s + self.step_s
        return {"data_s": self.data_s, "step_s": self.step_s, "batches": float(self.batches),
                "data_fraction": self.data_s / total if total > 0 else float("nan")}

    def reset(self) -> None:
        """Zero the times and the batch count (e.g. at the start of an epoch)."""
        self.data_s = self.step_s = 0.0
        self.batches = 0


def prefetch(make: Callable[[Any], T], items: Iterable[Any], enabled: bool = True) -> Iterator[T]:
    """``make(item)`` for each item in order, the next one built in a background thread meanwhile.

    One worker thread calls ``make`` on the items in order, so a ``make`` that draws from a
    generator draws exactly what a plain loop would; one result is built ahead. While
    the caller trains on batch ``i`` (much of a step's time is spent in kernels or waiting
    for the GPU, with the GIL released), the worker builds and moves batch ``i + 1``. An
    exception in ``make`` is raised by the ``next()`` that would have returned its result.
    ``enabled=False`` is the plain loop.

    Args:
        make: builds one result (e.g. a batch, moved to the device) from one item.
        items: e.g. the index tensors of an epoch's batches.
        enabled: use the background thread.
    """
    if not enabled:
        yield from map(make, items)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="neuralgraph-prefetch") as pool:
        pending = None
        for item in items:
            future = pool.submit(make, item)          # one worker: built in submission order
            if pending is not None:
                yield pending.result()
            pending = future
        if pending is not None:
            yield pending.result()
