"""Fit thousands of SIRENs (one per image, or one per signal) at once, on CPU or a GPU.

Protocol (DWSNets): a SIREN ``2 -> 32 -> 32 -> 1`` with ``sin(w0 * (W x + b))``
activations (``w0 = 30``), SIREN initialisation with zero biases, coordinates on
a grid in ``[-1, 1]^2`` and the network output plus ``0.5`` as the pixel value
(pixels in ``[0, 1]``). The stored weights are exactly those of
``siren_architecture(widths, w0, offset).build()`` (the offset is an
:class:`~neuralgraph.Offset` module at its end), so a fitted INR is a plain
``nn.Sequential`` that renders the image, and a neural graph.

Every INR has its own parameters and its own Adam state. One Adam over the
stacked parameters with the loss ``sum_i mean_pixels(err_i^2)`` *is* per-INR
Adam (Adam is elementwise and the INRs share no parameter), as long as nothing
mixes the stack (no gradient clipping or normalisation over it).

Two implementations:

* ``method="fast"`` (default): a hand-written forward/backward. The first
  layer is separable on a pixel grid, ``sin(a_i + b_j) = sin a_i cos b_j +
  cos a_i sin b_j``, so it costs no transcendental per pixel; the other
  layers use batched matmuls into pre-allocated buffers, sine and cosine are
  computed once per step (numpy's SIMD sin/cos, ~2.5x faster than torch's on
  CPU) and reused by the backward pass, the output weights are folded into a
  per-neuron scale to save a pass, and the Adam update is 7 ops on one flat
  buffer of all parameters. Batches of INRs are fitted in
  parallel threads (one intra-op thread each), which survives a busy machine
  far better than intra-op parallelism on small ops.
* ``method="device"`` (default on a GPU, also runs on CPU): the vectorised
  torch path of :func:`_fit_stack`. One stream of batched kernels over as many
  INRs as fit in free device memory (``torch.cuda.mem_get_info``), the same
  hand-written backward (separable first layer on image grids, a dense first
  layer for arbitrary coordinates), no autograd, a flat Adam, and no host
  synchronisation inside the loop except every ``check_every`` steps (the
  divergence check, the progress bar and the all-converged exit). Per-INR early
  stopping (``target_psnr``) freezes converged INRs with a mask, on every path.
* ``method="autograd"``: the naive batched baseline (autograd +
  ``torch.optim.Adam``), kept as a reference for tests and benchmarks.

Cost model of the device path (2-32-32-1, 784 pixels): about 5 MFLOP per
INR-step but ~2 MB of activation traffic per INR-step (the sin/cos/error
tensors ``[B, 784, 32]`` are written and read a few times each, the first layer
in separable form adds ~4 passes), so on a GPU it is **memory-bandwidth bound**:
an H100 (3.35 TB/s HBM3, ~60 TFLOP/s fp32) caps it near 1.5M INR-steps/s from
traffic against ~12M from FLOPs; ~40 kernel launches per step (~0.2 ms) matter
only for small batches (< ~2000 INRs), and the flat Adam is < 2% of the traffic.
These are estimates: the GPU rate has not been measured here (see
``benchmarks/bench_fit.py --device cuda``).
"""
from __future__ import annotations

import dataclasses
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ..architecture import Architecture, ModuleSpec, mlp_architecture
from ..seeding import derive_seed

__all__ = [
    "DEFAULT_WIDTHS", "DEFAULT_W0", "DEFAULT_STEPS", "DEFAULT_LR", "DEFAULT_OFFSET",
    "FitResult", "fit_sirens", "siren_architecture", "siren_init", "siren_forward",
    "image_grid", "render", "psnr", "psnr_from_mse", "derive_seed", "check_fit_settings", "fit_sirens_to_signals",
    "resolve_device", "device_batch_size",
]

DEFAULT_WIDTHS: tuple[int, ...] = (2, 32, 32, 1)
DEFAULT_W0: float = 30.0
DEFAULT_STEPS: int = 200
DEFAULT_LR: float = 1e-3
DEFAULT_OFFSET: float = 0.5


def siren_architecture(widths: Sequence[int] = DEFAULT_WIDTHS, w0: float = DEFAULT_W0,
                       offset: float = 0.0) -> Architecture:
    """The architecture a fitted INR is stored as (for ``stacked_to_batch`` and ``build``).

    A non-zero ``offset`` ends the network with :class:`~neuralgraph.Offset` (``x + offset``), so the
    module ``to_model`` rebuilds *is* the INR: image INRs (fitted with the DWSNets ``+0.5``) render
    pixel values in ``[0, 1]`` directly.
    """
    arch = mlp_architecture(list(widths), "sine", w0=w0)
    if not offset:
        return arch
    last = arch.layers[-1]
    shifted = dataclasses.replace(last, post=(*last.post, ModuleSpec("offset", (float(offset),))))
    return dataclasses.replace(arch, layers=(*arch.layers[:-1], shifted))


def image_grid(height: int, width: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Pixel coordinates ``[H*W, 2]`` in ``[-1, 1]^2``, row-major (``(row, col)`` order).

    Entry ``i * W + j`` is ``(linspace(-1,1,H)[i], linspace(-1,1,W)[j])``: the
    first input of the INR moves down the rows, the second along a row.
    """
    u = torch.linspace(-1.0, 1.0, height, dtype=dtype)
    v = torch.linspace(-1.0, 1.0, width, dtype=dtype)
    return torch.stack(torch.meshgrid(u, v, indexing="ij"), dim=-1).reshape(-1, 2)


#: Initialisations of :func:`siren_init`: this library's (Sitzmann et al.) and the DWSNets datasets' own.
SIREN_INITS = ("siren", "dwsnets")


def siren_init(
    n: int,
    widths: Sequence[int] = DEFAULT_WIDTHS,
    w0: float = DEFAULT_W0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    init: str = "siren",
) -> tuple[list[Tensor], list[Tensor]]:
    """Initial parameters of ``n`` SIRENs.

    * ``init="siren"`` (default; Sitzmann et al., 2020): first layer ``U(-1/in, 1/in)``, later
      layers ``U(-sqrt(6/in)/w0, sqrt(6/in)/w0)``, zero biases; keeps the pre-activations of
      ``sin(w0 .)`` well spread at every depth.
    * ``init="dwsnets"``: the initialisation of the INRs of the DWSNets / neural-graphs MNIST and
      Fashion-MNIST datasets (``nn/inr.py`` of the DWSNets repository, whose ``INR`` never marks
      its first layer as first): every sine layer ``U(-sqrt(6/in)/w0, sqrt(6/in)/w0)`` with zero
      bias, the first one included, so the first layer starts at a low frequency; the last
      (linear) layer as ``torch.nn.Linear`` does, weight and bias ``U(-1/sqrt(in), 1/sqrt(in))``.
      Fitted networks move far from this small start (the datasets' first-layer weights have
      std 0.063 against 0.29 for ``"siren"``), which is what lets weight-space models read them.

    Shapes: -> ``weights[m] [n, out, in]``, ``biases[m] [n, out]``.
    """
    _check_widths(widths)
    if init not in SIREN_INITS:
        raise ValueError(f"init must be one of {SIREN_INITS}, got {init!r}")
    weights, biases = [], []
    last = len(widths) - 2
    for m, (d_in, d_out) in enumerate(zip(widths[:-1], widths[1:])):
        if init == "dwsnets" and m == last:
            bound = 1.0 / math.sqrt(d_in)
        elif init == "siren" and m == 0:
            bound = 1.0 / d_in
        else:
            bound = math.sqrt(6.0 / d_in) / w0
        w = torch.rand(n, d_out, d_in, generator=generator, dtype=dtype).mul_(2 * bound).sub_(bound)
        weights.append(w)
        if init == "dwsnets" and m == last:
            biases.append(torch.rand(n, d_out, generator=generator, dtype=dtype).mul_(2 * bound).sub_(bound))
        else:
            biases.append(torch.zeros(n, d_out, dtype=dtype))
    return weights, biases


def siren_forward(weights: Sequence[Tensor], biases: Sequence[Tensor], coords: Tensor,
                  w0: float = DEFAULT_W0) -> Tensor:
    """Evaluate ``n`` stacked SIRENs at shared (``[P, d]``) or per-network (``[n, P, d]``) coordinates.

    Returns ``[n, P, out]`` (without the output offset). Matches
    ``siren_architecture(widths, w0).build()`` loaded with the same parameters
    (``siren_architecture(widths, w0, offset)`` adds the offset).
    """
    h = coords
    M = len(weights)
    for m, (w, b) in enumerate(zip(weights, biases)):
        h = torch.matmul(h, w.transpose(-1, -2)) + b.unsqueeze(-2)
        if m < M - 1:
            h = torch.sin(w0 * h)
    return h


def render(weights: Sequence[Tensor], biases: Sequence[Tensor], height: int, width: int,
           w0: float = DEFAULT_W0, offset: float = DEFAULT_OFFSET) -> Tensor:
    """Images the INRs encode: ``[n, H, W]`` (or ``[n, H, W, C]`` for ``C > 1`` outputs)."""
    coords = image_grid(height, width, dtype=weights[0].dtype)
    out = siren_forward(weights, biases, coords, w0) + offset
    n, C = out.shape[0], out.shape[-1]
    return out.reshape(n, height, width) if C == 1 else out.reshape(n, height, width, C)


def _adam_moments(grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, denom: Tensor, step: int, beta1: float,
                  beta2: float, eps: float) -> float:
    """One Adam step's moments, the same arithmetic as ``torch.optim.Adam``, elementwise (= per INR).

    Updates ``exp_avg`` / ``exp_avg_sq`` in place, writes ``sqrt(v_hat) + eps`` into ``denom`` and
    returns the first moment's bias correction ``1 - beta1**step``: the step is then
    ``param -= lr / bc1 * exp_avg / denom``. Used by both fitting paths (fast CPU and device).
    """
    bc1 = 1.0 - beta1 ** step
    exp_avg.lerp_(grad, 1.0 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
    torch.sqrt(exp_avg_sq, out=denom).div_(math.sqrt(1.0 - beta2 ** step)).add_(eps)
    return bc1


def psnr(pred: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio per item (first dim), in dB, for data in ``[0, data_range]``."""
    return psnr_from_mse((pred - target).pow(2).reshape(pred.shape[0], -1).mean(1), data_range)


def psnr_from_mse(mse: Tensor, data_range: float = 1.0) -> Tensor:
    """``10 log10(data_range^2 / mse)`` in dB."""
    return 10.0 * torch.log10(data_range ** 2 / mse)


@dataclass
class FitResult:
    """Fitted INRs: stacked ``weights[m]`` ``[n, out, in]``, ``biases[m]`` ``[n, out]``, PSNR ``[n]``."""

    weights: list[Tensor]
    biases: list[Tensor]
    psnr: Tensor
    arch: Architecture
    steps: int
    #: PSNR ``[n]`` after ``k`` optimisation steps, for each ``k`` in ``record_steps``.
    history: dict[int, Tensor] = field(default_factory=dict)
    #: ``[n]`` optimisation steps each INR took (``< steps`` where early stopping froze it).
    steps_taken: Tensor | None = None

    def render(self, height: int, width: int, offset: float = DEFAULT_OFFSET) -> Tensor:
        """The images the fitted INRs encode (``w0`` read from the architecture).

        Args:
            height, width: the image grid.
            offset: the constant added to the SIREN's output.

        Shapes: returns ``[n, H, W]`` (``[n, H, W, C]`` for ``C > 1`` outputs).
        """
        w0 = self.arch.layers[0].post[0].args[0] if self.arch.layers[0].post else DEFAULT_W0
        return render(self.weights, self.biases, height, width, w0, offset)


def _check_widths(widths: Sequence[int]) -> None:
    if len(widths) < 2 or any(int(w) < 1 for w in widths):
        raise ValueError(f"widths must have >= 2 positive entries, got {list(widths)}")


def check_fit_settings(*, steps: int, lr: float, w0: float, min_steps: int = 0) -> None:
    """``ValueError`` naming every bad setting: ``steps`` an integer >= ``min_steps``, ``lr``/``w0`` finite > 0.

    Settings that pass can still make a fit diverge (``w0 = 1e30``); the fit
    itself raises ``FloatingPointError`` then (see :func:`fit_sirens`).
    """
    bad = []
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < min_steps:
        bad.append(f"steps={steps!r} (an integer >= {min_steps})")
    for name, value in (("lr", lr), ("w0", w0)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not (
                math.isfinite(value) and value > 0):
            bad.append(f"{name}={value!r} (a finite number > 0)")
    if bad:
        raise ValueError("invalid SIREN fit settings: " + ", ".join(bad))


def _raise_if_diverged(mse: Tensor, params: Sequence[Tensor] = (), *, step: int, lr: float, w0: float,
                       first: int = 0) -> None:
    """``FloatingPointError`` if any INR's loss ``mse [n]`` or stacked parameters are not finite.

    ``first``: the index of the first of these ``n`` INRs among the images being fitted (for the message).
    """
    ok = torch.isfinite(mse)
    if params or not bool(ok.all()):
        for t in params:
            ok &= torch.isfinite(t.reshape(t.shape[0], -1)).all(1)
        bad = int((~ok).sum())
        if bad:
            raise FloatingPointError(
                f"SIREN fitting diverged after {step} steps: {bad} of the {ok.numel()} INRs of images "
                f"{first}..{first + ok.numel() - 1} have a non-finite loss or parameters (lr={lr}, w0={w0}); "
                "lower lr or w0")


def _images_to_targets(images: Tensor, widths: Sequence[int]) -> Tensor:
    """``[n, H, W]`` or ``[n, H, W, C]`` -> ``[n, H*W, C]`` float32, with checks."""
    if images.dim() == 3:
        images = images.unsqueeze(-1)
    if images.dim() != 4:
        raise ValueError(f"images must be [n, H, W] or [n, H, W, C], got shape {tuple(images.shape)}")
    if not images.dtype.is_floating_point:
        raise ValueError(f"images must be float in [0, 1], got dtype {images.dtype} "
                         "(divide uint8 images by 255)")
    n, H, W, C = images.shape
    if widths[0] != 2:
        raise ValueError(f"an image INR takes 2 input coordinates, widths[0] is {widths[0]}")
    if widths[-1] != C:
        raise ValueError(f"images have {C} channel(s) but widths[-1] is {widths[-1]}")
    if n == 0 or H == 0 or W == 0:
        raise ValueError(f"no images to fit: images have shape {tuple(images.shape)}")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or inf")
    lo, hi = float(images.min()), float(images.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"images must be in [0, 1], got values in [{lo:g}, {hi:g}] "
                         "(scale them, e.g. divide 8-bit images by 255)")
    return images.reshape(n, H * W, C).float()


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"`` -> ``cuda`` when available, else ``cpu``; anything else checked to be usable here.

    ``ValueError`` naming the device when it is not a device string, or CUDA is asked for but absent.
    """
    if device is None or (isinstance(device, str) and device == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r}: CUDA is not available on this machine (use 'cpu' or 'auto')")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device={str(device)!r}: only {torch.cuda.device_count()} CUDA device(s)")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
    return dev


def _bytes_per_inr(widths: Sequence[int], P: int, grid: tuple[int, int] | None) -> int:
    """Device memory one INR of the device path needs (float32 buffers of :func:`_fit_stack`)."""
    hid = widths[1:-1]
    C = widths[-1]
    n_params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    act = P * (2 * sum(hid) + sum(hid[1:]) + 2 * C)            # A, Cb, tmp, out/target
    first = 0 if grid is None else 6 * (grid[0] + grid[1]) * (hid[0] if hid else 0)
    return 4 * (act + first + 6 * n_params)                     # params, grads, 2 moments, denom, scaled copies


def device_batch_size(device: torch.device, widths: Sequence[int], P: int, grid: tuple[int, int] | None = None,
                      fraction: float = 0.5, cpu_batch: int = 256) -> int:
    """How many INRs the device path fits at once: ``fraction`` of free memory on CUDA.

    Uses ``torch.cuda.mem_get_info`` (free bytes now, so other processes on the
    card are respected); on CPU a cache-friendly ``cpu_batch``.
    """
    if device.type != "cuda":
        return cpu_batch
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, int(free * fraction) // _bytes_per_inr(widths, P, grid))


def _check_target_psnr(target_psnr) -> None:
    if target_psnr is not None and (isinstance(target_psnr, bool) or not isinstance(
            target_psnr, (int, float, np.number)) or not math.isfinite(target_psnr)):
        raise ValueError(f"target_psnr must be a finite number (dB) or None, got {target_psnr!r}")


def fit_sirens(
    images: Tensor,
    widths: Sequence[int] = DEFAULT_WIDTHS,
    w0: float = DEFAULT_W0,
    steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR,
    batch_size: int | None = None,
    seed: int = 0,
    offset: float = DEFAULT_OFFSET,
    method: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    record_steps: Sequence[int] = (),
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    device: str | torch.device = "cpu",
    target_psnr: float | None = None,
    check_every: int = 25,
    init: str = "siren",
) -> FitResult:
    """Fit one SIREN per image (``[n, H, W]`` or ``[n, H, W, C]`` in ``[0, 1]``).

    Two protocols: ``steps`` Adam steps for every INR (default, 200), or the
    DWSNets authors' one, ``steps`` as a maximum (1000) with per-INR early
    stopping once its PSNR reaches ``target_psnr`` (40 dB, with ``lr=5e-4``): a
    converged INR is frozen by a mask (its parameters are those whose PSNR
    reached the target) while the others go on, with no per-INR loop.

    A fit that diverges (non-finite loss or parameters, e.g. ``lr`` or ``w0``
    far too large) raises ``FloatingPointError`` instead of returning NaN
    networks (at once on the CPU paths, within ``check_every`` steps on the
    device path); ``lr``/``w0`` must be finite and > 0 and ``steps`` an integer
    >= 0 (``ValueError``).

    Deterministic given ``seed`` (initialisation of all ``n`` networks comes
    from one generator seeded with it, on CPU, whatever the device), independent
    of ``batch_size``, ``device`` and ``method`` up to float rounding of the
    batched kernels. ``record_steps`` asks for the PSNR after those step counts.
    The final PSNR is that of the returned parameters. Results are on CPU.

    Args:
        device: ``"cpu"`` (default), ``"cuda"``/``"cuda:N"`` or ``"auto"``
            (CUDA when available). ``images`` may be on CPU or that device.
        method: ``"fast"`` (CPU only: threads over batches, default there),
            ``"device"`` (the vectorised torch path, default on a GPU; also
            runs on CPU) or ``"autograd"`` (reference baseline).
        batch_size: INRs per batch; ``None``: 32 on the fast path, as many as
            fit in half the free device memory on the device path (see
            :func:`device_batch_size`).
        workers: threads of the fast path (default: torch's thread count).
        target_psnr: early-stopping PSNR in dB, or ``None`` (fixed ``steps``).
        check_every: device path: steps between host synchronisations.
        init: the starting point, ``"siren"`` or ``"dwsnets"`` (see :func:`siren_init`).

    Shapes:
        images ``[n, H, W]`` / ``[n, H, W, C]`` -> ``FitResult`` with
        ``weights[m]`` ``[n, out, in]``, ``biases[m]`` ``[n, out]``, ``psnr``
        ``[n]``, ``steps_taken`` ``[n]``.
    """
    widths = [int(w) for w in widths]
    _check_widths(widths)
    dev = resolve_device(device)
    if images.device.type not in ("cpu", dev.type):
        raise ValueError(f"fit_sirens: images are on {images.device}; pass images on CPU (or on the fit device "
                         f"{dev}), e.g. images.cpu()")
    targets = _images_to_targets(images, widths)
    H, W = images.shape[1], images.shape[2]
    return _fit(targets, (H, W), None, widths, w0, steps, lr, batch_size, seed, offset, method, workers,
                progress, record_steps, betas, eps, dev, target_psnr, check_every, "fit_sirens", init)


def fit_sirens_to_signals(
    coords: Tensor,
    targets: Tensor,
    widths: Sequence[int] = (1, 32, 32, 1),
    w0: float = DEFAULT_W0,
    steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR,
    batch_size: int | None = None,
    seed: int = 0,
    offset: float = 0.0,
    method: str | None = None,
    workers: int | None = None,
    progress: bool = True,
    record_steps: Sequence[int] = (),
    device: str | torch.device = "cpu",
    target_psnr: float | None = None,
    check_every: int = 25,
    init: str = "siren",
) -> FitResult:
    """Fit one SIREN per signal sampled at shared coordinates (e.g. 1-D functions, point clouds).

    The network of signal ``i`` maps ``coords[p]`` to ``targets[i, p] - offset``
    with the loss ``mean_{p,c} err^2``; everything else (initialisation,
    Adam, early stopping, devices, batching, divergence) as in
    :func:`fit_sirens`, whose ``"fast"`` method runs the device path's kernel
    in threads here. PSNR is ``10 log10(1 / mse)`` (a data range of 1;
    shift by ``20 log10(range)`` for other ranges).

    Example: 1-D SIRENs ``1 -> 32 -> 32 -> 1`` fitted to ``a sin(b x)`` on
    2000 points of ``[-pi, pi)``: ``coords = x[:, None]``, ``targets = (a[:,
    None] * torch.sin(b[:, None] * x))[..., None]``.

    Shapes:
        coords ``[P, d]`` (``d = widths[0]``), targets ``[n, P, C]``
        (``C = widths[-1]``; ``[n, P]`` is read as ``C = 1``) -> ``FitResult``.
    """
    widths = [int(w) for w in widths]
    _check_widths(widths)
    dev = resolve_device(device)
    if not isinstance(coords, Tensor) or coords.dim() != 2 or not coords.dtype.is_floating_point:
        raise ValueError(f"fit_sirens_to_signals: coords must be a float tensor [P, d], got "
                         f"{tuple(coords.shape) if isinstance(coords, Tensor) else type(coords).__name__}")
    if not isinstance(targets, Tensor) or not targets.dtype.is_floating_point or targets.dim() not in (2, 3):
        raise ValueError(f"fit_sirens_to_signals: targets must be a float tensor [n, P, C] or [n, P], got "
                         f"{tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__}")
    if targets.dim() == 2:
        targets = targets.unsqueeze(-1)
    n, P, C = targets.shape
    if coords.shape[0] != P or coords.shape[1] != widths[0] or C != widths[-1]:
        raise ValueError(f"fit_sirens_to_signals: coords {tuple(coords.shape)} and targets {tuple(targets.shape)} "
                         f"do not match widths {widths} (need coords [P, {widths[0]}], targets [n, P, {widths[-1]}])")
    if n == 0 or P == 0:
        raise ValueError(f"fit_sirens_to_signals: no signals to fit: targets have shape {tuple(targets.shape)}")
    for name, t in (("coords", coords), ("targets", targets)):
        if t.device.type not in ("cpu", dev.type):
            raise ValueError(f"fit_sirens_to_signals: {name} are on {t.device}; pass them on CPU or {dev}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"fit_sirens_to_signals: {name} contain NaN or inf")
    return _fit(targets.float(), None, coords.float(), widths, w0, steps, lr, batch_size, seed, offset, method,
                workers, progress, record_steps, (0.9, 0.999), 1e-8, dev, target_psnr, check_every,
                "fit_sirens_to_signals", init)


def _fit(targets: Tensor, grid: tuple[int, int] | None, coords: Tensor | None, widths: list[int], w0, steps, lr,
         batch_size, seed, offset, method, workers, progress, record_steps, betas, eps, dev: torch.device,
         target_psnr, check_every, who: str, init: str = "siren") -> FitResult:
    """Shared driver of :func:`fit_sirens` / :func:`fit_sirens_to_signals` (``targets`` ``[n, P, C]``)."""
    if method is None:
        method = "fast" if dev.type == "cpu" else "device"
    if method not in ("fast", "device", "autograd"):
        raise ValueError(f"method must be 'fast', 'device' or 'autograd', got {method!r}")
    if method == "fast" and dev.type != "cpu":
        raise ValueError(f"{who}: method='fast' runs on CPU only (threads); use method='device' (the default "
                         f"on {dev})")
    check_fit_settings(steps=steps, lr=lr, w0=w0)
    _check_target_psnr(target_psnr)
    if method == "autograd" and target_psnr is not None:
        raise ValueError(f"{who}: target_psnr needs method='fast' or 'device' (the autograd baseline runs "
                         "fixed steps)")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(check_every, bool) or not isinstance(check_every, (int, np.integer)) or check_every < 1:
        raise ValueError(f"check_every must be an integer >= 1, got {check_every!r}")
    bad = [k for k in record_steps if not 0 <= int(k) <= steps]
    if bad:
        raise ValueError(f"record_steps {bad} outside [0, steps={steps}]")
    n, P, C = targets.shape
    gen = torch.Generator().manual_seed(int(seed))
    weights, biases = siren_init(n, widths, w0, gen, init=init)
    arch = siren_architecture(widths, w0, offset)
    history = {int(k): torch.empty(n) for k in record_steps}
    final_mse = torch.empty(n)
    taken = torch.full((n,), int(steps), dtype=torch.long)
    target_mse = None if target_psnr is None else 10.0 ** (-float(target_psnr) / 10.0)
    spec = _Coords(grid, coords)
    bar = _progress_bar(n * steps, progress)
    try:
        if method == "device":
            bs = batch_size or device_batch_size(dev, widths, P, grid)
            for s in range(0, n, bs):
                e = min(s + bs, n)
                ws, bb = [w[s:e].to(dev) for w in weights], [b[s:e].to(dev) for b in biases]
                hist = {k: torch.empty(e - s, device=dev) for k in history}
                fm = torch.empty(e - s, device=dev)
                tk = torch.empty(e - s, dtype=torch.long, device=dev)
                tick = (lambda k: bar.update(k)) if bar is not None else (lambda k: None)
                _fit_stack(ws, bb, targets[s:e].to(dev), spec.to(dev), w0, steps, lr, offset, betas, eps, hist, fm,
                           tick, first=s, target_mse=target_mse, steps_taken=tk, check_every=check_every)
                for dst, src in zip([*weights, *biases, *history.values(), final_mse, taken],
                                    [*ws, *bb, *hist.values(), fm, tk]):
                    dst[s:e] = src.cpu()
        else:
            _fit_threads(weights, biases, targets, spec, w0, steps, lr, offset, betas, eps, history, final_mse,
                         taken, batch_size or 32, workers, method, target_mse, bar)
    finally:
        if bar is not None:
            bar.close()
    return FitResult(weights, biases, psnr_from_mse(final_mse), arch, steps,
                     {k: psnr_from_mse(v) for k, v in history.items()}, taken)


def _fit_threads(weights, biases, targets, spec, w0, steps, lr, offset, betas, eps, history, final_mse, taken,
                 batch_size, workers, method, target_mse, bar) -> None:
    """The CPU paths: batches of INRs fitted in place, in parallel threads (one intra-op thread each)."""
    n = targets.shape[0]
    workers = max(1, int(workers if workers is not None else torch.get_num_threads()))
    bs = min(batch_size, max(1, math.ceil(n / workers)))
    starts = list(range(0, n, bs))
    lock = threading.Lock()
    stop = threading.Event()

    def tick(k: int) -> None:
        if stop.is_set():              # another batch failed or the user interrupted: stop promptly
            raise _Cancelled
        if bar is not None:
            with lock:
                bar.update(k)

    def job(s: int) -> None:
        e = min(s + bs, n)
        ws = [w[s:e] for w in weights]   # views: fitted in place
        bb = [b[s:e] for b in biases]
        hist = {k: v[s:e] for k, v in history.items()}
        if method == "autograd":
            _fit_batch_autograd(ws, bb, targets[s:e], spec, w0, steps, lr, offset, betas, eps, hist,
                                final_mse[s:e], tick, first=s)
        elif spec.grid is not None and target_mse is None:
            _fit_batch_fast(ws, bb, targets[s:e], *spec.grid, w0, steps, lr, offset, betas, eps, hist,
                            final_mse[s:e], tick, first=s)
        else:                          # early stopping or arbitrary coordinates: the device kernel, on CPU
            _fit_stack(ws, bb, targets[s:e], spec, w0, steps, lr, offset, betas, eps, hist, final_mse[s:e], tick,
                       first=s, target_mse=target_mse, steps_taken=taken[s:e], check_every=1)
        _raise_if_diverged(final_mse[s:e], ws + bb, step=steps, lr=lr, w0=w0, first=s)

    if workers == 1 or len(starts) == 1:
        for s in starts:
            job(s)
        return
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    pool = ThreadPoolExecutor(min(workers, len(starts)))
    try:
        for f in [pool.submit(job, s) for s in starts]:
            f.result()
    except BaseException:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(prev)


class _Coords:
    """Where the INRs are evaluated: an image grid ``(H, W)`` (separable first layer) or dense ``[P, d]``."""

    def __init__(self, grid: tuple[int, int] | None, coords: Tensor | None, device=None) -> None:
        self.grid = grid
        self.dense = image_grid(*grid) if coords is None else coords
        if device is not None:
            self.dense = self.dense.to(device)

    def to(self, device) -> "_Coords":
        return _Coords(self.grid, self.dense, device)


class _Cancelled(Exception):
    """Raised inside worker threads once the fit is being abandoned."""


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="INR-step", unit_scale=True, desc="fitting SIRENs", leave=False)


# ----------------------------------------------------------------------------
# the naive baseline: autograd + torch.optim.Adam over the stack
# ----------------------------------------------------------------------------

def _fit_batch_autograd(weights, biases, Y, spec, w0, steps, lr, offset, betas, eps,
                        history, final_mse, tick, first=0) -> None:
    coords = spec.dense.to(Y.device)
    params = [p.detach().clone().requires_grad_(True) for p in [*weights, *biases]]
    M = len(weights)
    opt = torch.optim.Adam(params, lr=lr, betas=betas, eps=eps)

    def mse_of(ps):
        out = siren_forward(ps[:M], ps[M:], coords, w0)
        return (out + offset - Y).pow(2).mean(dim=(1, 2))

    for step in range(steps):
        mse = mse_of(params)
        _raise_if_diverged(mse.detach(), step=step, lr=lr, w0=w0, first=first)   # stop at once, not after all steps
        if step in history:
            history[step].copy_(mse.detach())
        opt.zero_grad(set_to_none=True)
        mse.sum().backward()
        opt.step()
        tick(Y.shape[0])
    with torch.no_grad():
        mse = mse_of(params)
        final_mse.copy_(mse)
        if steps in history:
            history[steps].copy_(mse)
        for dst, src in zip([*weights, *biases], params):
            dst.copy_(src)


# ----------------------------------------------------------------------------
# the fast path: hand-written forward/backward, pre-allocated buffers
# ----------------------------------------------------------------------------

def _sincos_(t: Tensor, sin_out: Tensor) -> None:
    """``sin_out <- sin(t)``, ``t <- cos(t)`` (numpy's SIMD sin/cos: ~2.5x torch's on CPU)."""
    if t.is_contiguous() and sin_out.is_contiguous() and t.device.type == "cpu" and t.dtype == torch.float32:
        tn = t.numpy()
        np.sin(tn, out=sin_out.numpy())
        np.cos(tn, out=tn)
    else:
        torch.sin(t, out=sin_out)
        torch.cos(t, out=t)


@torch.no_grad()
def _fit_batch_fast(weights, biases, Y, H, W, w0, steps, lr, offset, betas, eps,
                    history, final_mse, tick, first=0) -> None:
    """Fit one batch in place (see the module docstring for the tricks).

    Notation: hidden layer m computes ``T_m = w0 (A_{m-1} W_m^T + b_m)``,
    ``A_m = sin T_m``; the output is ``A_{M-1} W_M^T + b_M``. The backward
    pass keeps ``E_m`` with ``dL/dT_m = E_m * r_m`` for a per-neuron row scale
    ``r_m`` (``W_M`` for the last hidden layer of a 1-output INR, else 1), which
    saves one full pass over the activations.
    """
    B, P, C = Y.shape
    M = len(weights)
    hid = [w.shape[1] for w in weights[:-1]]          # hidden widths d_1..d_{M-1}
    dtype = Y.dtype
    # parameters, gradients and Adam state live in flat buffers (per-layer views are
    # contiguous), so the Adam update is 7 ops whatever the depth
    shapes = [w.shape for w in weights] + [b.shape for b in biases]
    sizes = [math.prod(sh) for sh in shapes]
    flat = torch.cat([t.reshape(-1) for t in [*weights, *biases]]).to(dtype)
    gflat = torch.empty_like(flat)
    params = [t.view(sh) for t, sh in zip(flat.split(sizes), shapes)]
    grads = [t.view(sh) for t, sh in zip(gflat.split(sizes), shapes)]
    Ws, bs = params[:M], params[M:]
    gW, gb = grads[:M], grads[M:]
    exp_avg, exp_avg_sq, denom = torch.zeros_like(flat), torch.zeros_like(flat), torch.empty_like(flat)
    beta1, beta2 = betas

    u = torch.linspace(-1.0, 1.0, H, dtype=dtype)
    v = torch.linspace(-1.0, 1.0, W, dtype=dtype)
    # [3, P]: rows u_p, v_p, 1 -> one matmul gives dW_1 (both columns) and db_1
    uv1 = torch.stack([u.repeat_interleave(W), v.repeat(H), torch.ones(P, dtype=dtype)])
    uv1_b = uv1.expand(B, 3, P)
    Yo = Y - offset                                   # network output target
    out = torch.empty(B, P, C, dtype=dtype)
    mse = torch.empty(B, dtype=dtype)
    scale = 2.0 / (P * C)

    if M == 1:                                        # a plain linear model (no hidden layer)
        X = uv1[:2].T.contiguous()

        def forward() -> None:
            torch.matmul(X, Ws[0].transpose(1, 2), out=out)
            out.add_(bs[0].unsqueeze(1)).sub_(Yo)
            torch.mean(out.square(), dim=(1, 2), out=mse)

        def backward() -> None:
            G = out.mul_(scale)
            torch.matmul(G.transpose(1, 2), X, out=gW[0])
            torch.sum(G, 1, out=gb[0])
    else:
        # A_m = sin(T_m); Cb_m = cos(T_m), turned into E_m in place by the backward pass
        A = [torch.empty(B, P, h, dtype=dtype) for h in hid]
        Cb = [torch.empty(B, P, h, dtype=dtype) for h in hid]
        tmp = [torch.empty(B, P, h, dtype=dtype) for h in hid[:-1]]
        h1 = hid[0]
        a1 = torch.empty(B, H, h1, dtype=dtype)
        b1v = torch.empty(B, W, h1, dtype=dtype)
        sa, ca = torch.empty_like(a1), torch.empty_like(a1)
        sb, cb = torch.empty_like(b1v), torch.empty_like(b1v)
        g1 = torch.empty(B, 3, h1, dtype=dtype)
        Wsc = [torch.empty_like(w) for w in Ws[:M - 1]]   # w0 * W_m
        bsc = [torch.empty_like(b) for b in bs[:M - 1]]   # w0 * b_m
        Wbk = [torch.empty_like(w) for w in Ws[:M - 1]]   # w0 * r_m[:, :, None] * W_m (backward)
        fold = C == 1                                     # fold W_M into the row scale of layer M-1
        r = [None] * (M - 1)
        A4, C4 = A[0].view(B, H, W, h1), Cb[0].view(B, H, W, h1)

        def forward() -> None:
            for m in range(M - 1):
                torch.mul(Ws[m], w0, out=Wsc[m])
                torch.mul(bs[m], w0, out=bsc[m])
            # layer 1 is separable on the grid: T_1[i, j] = alpha_i + beta_j
            torch.mul(Wsc[0][:, None, :, 0], u[None, :, None], out=a1)
            a1.add_(bsc[0][:, None, :])
            torch.mul(Wsc[0][:, None, :, 1], v[None, :, None], out=b1v)
            torch.sin(a1, out=sa)
            torch.cos(a1, out=ca)
            torch.sin(b1v, out=sb)
            torch.cos(b1v, out=cb)
            torch.mul(sa[:, :, None, :], cb[:, None, :, :], out=A4)
            A4.addcmul_(ca[:, :, None, :], sb[:, None, :, :])
            torch.mul(ca[:, :, None, :], cb[:, None, :, :], out=C4)
            C4.addcmul_(sa[:, :, None, :], sb[:, None, :, :], value=-1.0)
            for m in range(1, M - 1):
                torch.baddbmm(bsc[m][:, None, :], A[m - 1], Wsc[m].transpose(1, 2), out=Cb[m])
                _sincos_(Cb[m], A[m])
            torch.baddbmm(bs[M - 1][:, None, :], A[M - 2], Ws[M - 1].transpose(1, 2), out=out)
            out.sub_(Yo)                                  # out is now the error
            torch.mean(out.square(), dim=(1, 2), out=mse)

        def backward() -> None:
            G = out.mul_(scale)                           # dL/d(out)
            torch.bmm(G.transpose(1, 2), A[M - 2], out=gW[M - 1])
            torch.sum(G, 1, out=gb[M - 1])
            # E_{M-1} = cos(T_{M-1}) * (G @ W_M) / r_{M-1}
            if fold:
                Cb[M - 2].mul_(G)
                r[M - 2] = Ws[M - 1][:, 0, :]
            else:
                Cb[M - 2].mul_(torch.bmm(G, Ws[M - 1]))
            for m in range(M - 2, -1, -1):                # 0-based hidden layer m (weights Ws[m])
                E = Cb[m]
                if m > 0:
                    if r[m] is None:
                        torch.mul(Ws[m], w0, out=Wbk[m])
                    else:
                        torch.mul(Ws[m], (w0 * r[m]).unsqueeze(-1), out=Wbk[m])
                    torch.bmm(E.transpose(1, 2), A[m - 1], out=gW[m])
                    torch.sum(E, 1, out=gb[m])
                    torch.bmm(E, Wbk[m], out=tmp[m - 1])
                    Cb[m - 1].mul_(tmp[m - 1])
                else:
                    torch.bmm(uv1_b, E, out=g1)           # [B, 3, h1]
                    gW[0].copy_(g1[:, :2, :].transpose(1, 2))
                    gb[0].copy_(g1[:, 2, :])
                rs = w0 if r[m] is None else w0 * r[m]
                if r[m] is None:
                    gW[m].mul_(w0)
                    gb[m].mul_(w0)
                else:
                    gW[m].mul_(rs.unsqueeze(-1))
                    gb[m].mul_(rs)

    for step in range(1, steps + 1):
        forward()
        _raise_if_diverged(mse, step=step - 1, lr=lr, w0=w0, first=first)        # stop at once, not after all steps
        if step - 1 in history:
            history[step - 1].copy_(mse)
        backward()
        bc1 = _adam_moments(gflat, exp_avg, exp_avg_sq, denom, step, beta1, beta2, eps)
        flat.addcdiv_(exp_avg, denom, value=-lr / bc1)
        tick(B)
    forward()
    final_mse.copy_(mse)
    if steps in history:
        history[steps].copy_(mse)
    for dst, src in zip([*weights, *biases], params):
        dst.copy_(src)


# ----------------------------------------------------------------------------
# the device path: one stream of batched kernels, any device, masks, dense coordinates
# ----------------------------------------------------------------------------

@torch.no_grad()
def _fit_stack(weights, biases, Y, spec: _Coords, w0, steps, lr, offset, betas, eps, history, final_mse, tick,
               first: int = 0, target_mse: float | None = None, steps_taken: Tensor | None = None,
               check_every: int = 25) -> None:
    """Fit ``B`` stacked SIRENs in place on ``Y.device`` (the device path; see the module docstring).

    Same notation as :func:`_fit_batch_fast`, written independently of it: hidden
    layer ``m`` has ``T_m = w0 (A_{m-1} W_m^T + b_m)``, ``A_m = sin T_m``;
    the backward pass keeps ``D_m = cos(T_m) * dL/dA_m / r_m`` with a column
    scale ``r_m`` (``w0 W_out`` for the last hidden layer of a 1-output INR, so
    ``dL/dA`` is never materialised, else ``w0``). The first layer is separable
    on an image grid (``sin(a_i + b_j)`` from ``H + W`` sines instead of
    ``H * W``), dense on arbitrary coordinates. With ``target_mse`` an INR whose
    loss reaches it is frozen (mask on the Adam update; ``steps_taken`` records
    when). Host synchronisation only every ``check_every`` steps.

    Shapes:
        weights[m] ``[B, out, in]``, biases[m] ``[B, out]``, Y ``[B, P, C]``,
        history values / final_mse ``[B]``, steps_taken ``[B]`` int64.
    """
    B, P, C = Y.shape
    dev, dtype = Y.device, Y.dtype
    M = len(weights)
    # flat parameter / gradient / Adam buffers, per-layer contiguous views
    shapes = [w.shape for w in weights] + [b.shape for b in biases]
    sizes = [math.prod(sh) for sh in shapes]
    flat = torch.cat([t.reshape(-1) for t in [*weights, *biases]]).to(dev, dtype)
    gflat, m1, m2, upd = (torch.zeros_like(flat) for _ in range(4))
    views = lambda buf: [t.view(sh) for t, sh in zip(buf.split(sizes), shapes)]   # noqa: E731
    params, grads, upds = views(flat), views(gflat), views(upd)
    Ws, bs, gW, gb = params[:M], params[M:], grads[:M], grads[M:]
    beta1, beta2 = betas
    Yo = Y - offset
    out = torch.empty(B, P, C, device=dev, dtype=dtype)
    mse = torch.empty(B, device=dev, dtype=dtype)
    scale = 2.0 / (P * C)
    active = torch.ones(B, dtype=torch.bool, device=dev)
    if steps_taken is not None:
        steps_taken.fill_(steps)
    X = spec.dense.to(dev, dtype)                                   # [P, d]
    d = X.shape[1]
    Xa = torch.cat([X, torch.ones(P, 1, device=dev, dtype=dtype)], 1).T.contiguous()   # [d+1, P]
    hid = [w.shape[1] for w in Ws[:-1]]
    grid = spec.grid if M > 1 and spec.grid is not None else None
    if M > 1:
        A = [torch.empty(B, P, h, device=dev, dtype=dtype) for h in hid]
        Cb = [torch.empty(B, P, h, device=dev, dtype=dtype) for h in hid]
        dA = [torch.empty(B, P, h, device=dev, dtype=dtype) for h in hid[:-1]]
        g1 = torch.empty(B, d + 1, hid[0], device=dev, dtype=dtype)
        Wsc = [torch.empty_like(w) for w in Ws[:-1]]
        bsc = [torch.empty_like(b) for b in bs[:-1]]
        Wbk = [torch.empty_like(w) for w in Ws[1:-1]]
    fold = M > 1 and C == 1
    if grid is not None:
        Hh, Ww = grid
        u = torch.linspace(-1.0, 1.0, Hh, device=dev, dtype=dtype)
        v = torch.linspace(-1.0, 1.0, Ww, device=dev, dtype=dtype)

    def forward() -> None:
        if M == 1:
            torch.baddbmm(bs[0][:, None, :], X.expand(B, P, d), Ws[0].transpose(1, 2), out=out)
        else:
            for m in range(M - 1):
                torch.mul(Ws[m], w0, out=Wsc[m])
                torch.mul(bs[m], w0, out=bsc[m])
            if grid is not None:                                    # T_1[i, j] = alpha_i + beta_j
                al = torch.addcmul(bsc[0][:, None, :], Wsc[0][:, None, :, 0], u[None, :, None])   # [B, H, h]
                be = Wsc[0][:, None, :, 1] * v[None, :, None]                                       # [B, W, h]
                sa, ca, sb, cb = al.sin(), al.cos(), be.sin(), be.cos()
                A4, C4 = A[0].view(B, Hh, Ww, -1), Cb[0].view(B, Hh, Ww, -1)
                torch.mul(sa[:, :, None], cb[:, None], out=A4).addcmul_(ca[:, :, None], sb[:, None])
                torch.mul(ca[:, :, None], cb[:, None], out=C4).addcmul_(sa[:, :, None], sb[:, None], value=-1.0)
            else:
                torch.baddbmm(bsc[0][:, None, :], X.expand(B, P, d), Wsc[0].transpose(1, 2), out=Cb[0])
                _sincos_(Cb[0], A[0])
            for m in range(1, M - 1):
                torch.baddbmm(bsc[m][:, None, :], A[m - 1], Wsc[m].transpose(1, 2), out=Cb[m])
                _sincos_(Cb[m], A[m])
            torch.baddbmm(bs[-1][:, None, :], A[-1], Ws[-1].transpose(1, 2), out=out)
        out.sub_(Yo)                                                 # the error
        torch.mean(out.square(), dim=(1, 2), out=mse)

    def backward() -> None:
        G = out.mul_(scale)                                          # dL/d(out)
        prev = X.expand(B, P, d) if M == 1 else A[-1]
        torch.bmm(G.transpose(1, 2), prev, out=gW[-1])
        torch.sum(G, 1, out=gb[-1])
        if M == 1:
            return
        if fold:                                                     # D = cos(T) * G, r = w0 * W_out
            Cb[-1].mul_(G)
            r = Ws[-1][:, 0, :] * w0                                 # [B, h]
        else:
            Cb[-1].mul_(torch.bmm(G, Ws[-1]))
            r = None
        for m in range(M - 2, -1, -1):
            D = Cb[m]
            if m > 0:
                torch.bmm(D.transpose(1, 2), A[m - 1], out=gW[m])
                torch.sum(D, 1, out=gb[m])
                if r is None:
                    torch.mul(Ws[m], w0, out=Wbk[m - 1])
                else:
                    torch.mul(Ws[m], r.unsqueeze(-1), out=Wbk[m - 1])
                torch.bmm(D, Wbk[m - 1], out=dA[m - 1])
                Cb[m - 1].mul_(dA[m - 1])
            else:
                torch.bmm(Xa.expand(B, d + 1, P), D, out=g1)         # [B, d+1, h]: weight columns and bias
                gW[0].copy_(g1[:, :d, :].transpose(1, 2))
                gb[0].copy_(g1[:, d, :])
            if r is None:
                gW[m].mul_(w0)
                gb[m].mul_(w0)
            else:
                gW[m].mul_(r.unsqueeze(-1))
                gb[m].mul_(r)
            r = None

    def diverged(step: int) -> None:
        _raise_if_diverged(mse, step=step, lr=lr, w0=w0, first=first)

    done_at = ran = 0
    for step in range(1, steps + 1):
        forward()
        if step - 1 in history:
            history[step - 1].copy_(mse)
        if target_mse is not None:
            newly = active & (mse <= target_mse)
            if steps_taken is not None:
                steps_taken.masked_fill_(newly, step - 1)
            active &= ~newly
        backward()
        bc1 = _adam_moments(gflat, m1, m2, upd, step, beta1, beta2, eps)
        torch.div(m1, upd, out=upd)
        if target_mse is not None:                                   # frozen INRs do not move
            keep = active.to(dtype)
            for t in upds:
                t.mul_(keep.view(-1, *([1] * (t.dim() - 1))))
        flat.add_(upd, alpha=-lr / bc1)
        ran = step
        if step % check_every == 0 or step == steps:
            diverged(step - 1)                                       # the loss of step-1's parameters
            tick(B * (step - done_at))
            done_at = step
            if target_mse is not None and not bool(active.any()):    # everyone converged: stop early
                tick(B * (steps - step))
                break
    forward()
    diverged(steps)
    final_mse.copy_(mse)
    for k, h in history.items():
        if k >= ran:                            # the final parameters (also after an all-converged exit)
            h.copy_(mse)
    for dst, src in zip([*weights, *biases], params):
        dst.copy_(src)
