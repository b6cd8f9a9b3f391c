"""Runs the fit kernels over a stack of INRs: device-sized batches on a GPU, parallel threads on CPU.

:func:`run_fit` takes initial parameters and targets of ``n`` INRs and fits them in place, batch by
batch, with the kernel :class:`~neuralgraph.inr.settings.FitSettings` asks for
(:mod:`neuralgraph.inr.kernels`), one progress bar, and a prompt stop of every thread when one batch
fails or the user interrupts.
"""
from __future__ import annotations

import math
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass

import torch
from torch import Tensor

from .device import device_batch_size
from .kernels import Coords, fit_batch_autograd, fit_batch_fast, fit_stack, raise_if_diverged
from .settings import FitSettings

__all__ = ["FitBuffers", "run_fit"]

#: INRs per batch of the CPU paths when ``FitSettings.batch_size`` is ``None``.
CPU_BATCH = 32


@dataclass
class FitBuffers:
    """The stacked INRs a fit updates in place, and what it records per INR.

    Shapes: ``weights[m] [n, out, in]``, ``biases[m] [n, out]``, ``history[k] [n]`` (loss after
    ``k`` steps), ``final_mse [n]``, ``steps_taken [n]`` int64.
    """

    weights: list[Tensor]
    biases: list[Tensor]
    history: dict[int, Tensor]
    final_mse: Tensor
    steps_taken: Tensor

    def rows(self, start: int, stop: int) -> "FitBuffers":
        """Views of INRs ``start..stop-1`` (fitting them fits these rows)."""
        return FitBuffers([w[start:stop] for w in self.weights], [b[start:stop] for b in self.biases],
                          {k: v[start:stop] for k, v in self.history.items()}, self.final_mse[start:stop],
                          self.steps_taken[start:stop])


class _Cancelled(Exception):
    """Raised inside worker threads once the fit is being abandoned."""


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="INR-step", unit_scale=True, desc="fitting SIRENs", leave=False)


def run_fit(buffers: FitBuffers, targets: Tensor, spec: Coords, s: FitSettings, progress: bool) -> None:
    """Fit the INRs of ``buffers`` to ``targets [n, P, C]`` (on CPU) at the points ``spec``, in place."""
    n = targets.shape[0]
    bar = _progress_bar(n * s.steps, progress)
    try:
        if s.method == "device":
            _run_on_device(buffers, targets, spec, s, bar)
        else:
            _run_in_threads(buffers, targets, spec, s, bar)
    finally:
        if bar is not None:
            bar.close()


def _run_on_device(buffers: FitBuffers, targets: Tensor, spec: Coords, s: FitSettings, bar) -> None:
    """The device path: batches as large as the device holds, one after another, copied back to CPU."""
    n, P, _ = targets.shape
    dev = s.device
    bs = s.run_batch_size or device_batch_size(dev, s.widths, P, spec.grid)
    tick = (lambda k: bar.update(k)) if bar is not None else (lambda k: None)
    for start in range(0, n, bs):
        stop = min(start + bs, n)
        on_cpu = buffers.rows(start, stop)
        here = FitBuffers([w.to(dev) for w in on_cpu.weights], [b.to(dev) for b in on_cpu.biases],
                          {k: torch.empty(stop - start, device=dev) for k in on_cpu.history},
                          torch.empty(stop - start, device=dev), torch.empty(stop - start, dtype=torch.long, device=dev))
        fit_stack(here.weights, here.biases, targets[start:stop].to(dev), spec.to(dev), s, here.history,
                  here.final_mse, tick, first=start, steps_taken=here.steps_taken)
        for dst, src in zip([*on_cpu.weights, *on_cpu.biases, *on_cpu.history.values(), on_cpu.final_mse,
                             on_cpu.steps_taken],
                            [*here.weights, *here.biases, *here.history.values(), here.final_mse, here.steps_taken]):
            dst.copy_(src.cpu())


def _fit_rows(buffers: FitBuffers, targets: Tensor, spec: Coords, s: FitSettings, tick, start: int) -> None:
    """One CPU batch, fitted in place by the kernel the settings ask for, then checked for divergence."""
    b = buffers
    if s.method == "autograd":
        fit_batch_autograd(b.weights, b.biases, targets, spec, s, b.history, b.final_mse, tick, first=start)
    elif spec.grid is not None and s.target_mse is None:
        fit_batch_fast(b.weights, b.biases, targets, *spec.grid, s, b.history, b.final_mse, tick, first=start)
    else:                          # early stopping or arbitrary coordinates: the device kernel, on CPU
        fit_stack(b.weights, b.biases, targets, spec, s, b.history, b.final_mse, tick, first=start,
                  steps_taken=b.steps_taken, check_every=1)
    raise_if_diverged(b.final_mse, b.weights + b.biases, step=s.steps, lr=s.lr, w0=s.w0, first=start)


def _run_in_threads(buffers: FitBuffers, targets: Tensor, spec: Coords, s: FitSettings, bar) -> None:
    """The CPU paths: batches of INRs fitted in place, in parallel threads (one intra-op thread each)."""
    n = targets.shape[0]
    workers = max(1, int(s.workers if s.workers is not None else torch.get_num_threads()))
    bs = min(s.batch_size or CPU_BATCH, max(1, math.ceil(n / workers)))
    starts = list(range(0, n, bs))
    lock = threading.Lock()
    stop = threading.Event()

    def tick(k: int) -> None:
        if stop.is_set():              # another batch failed or the user interrupted: stop promptly
            raise _Cancelled
        if bar is not None:
            with lock:
                bar.update(k)

    def job(start: int) -> None:
        end = min(start + bs, n)
        _fit_rows(buffers.rows(start, end), targets[start:end], spec, s, tick, start)

    if workers == 1 or len(starts) == 1:
        for start in starts:
            job(start)
        return
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    pool = ThreadPoolExecutor(min(workers, len(starts)))
    try:
        futures = [pool.submit(job, start) for start in starts]
        wait(futures, return_when=FIRST_EXCEPTION)        # the first failure, whichever batch it is in
        for f in futures:
            if f.done() and f.exception() is not None:
                raise f.exception()
    except BaseException:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(prev)
