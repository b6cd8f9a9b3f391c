"""Fit thousands of SIRENs (one per image, or one per signal) at once, on CPU or a GPU: the public API.

:func:`fit_sirens` (images) and :func:`fit_sirens_to_signals` (signals at shared coordinates) take
the settings as keyword arguments, check them once as a
:class:`~neuralgraph.inr.settings.FitSettings`, and pass that on; :func:`fit_images` and
:func:`fit_signals` take the settings object itself. The networks come from
:func:`~neuralgraph.inr.siren_init` with one generator seeded by ``seed``, and are fitted by
:mod:`neuralgraph.inr.runner` with the kernels of :mod:`neuralgraph.inr.kernels`:

* ``method="fast"`` (default on CPU): hand-written forward/backward with a separable first layer
  on the pixel grid, batches in parallel threads (one intra-op thread each), which survives a
  busy machine far better than intra-op parallelism on small ops.
* ``method="device"`` (default on a GPU, also runs on CPU): one stream of batched kernels over as
  many INRs as fit in free device memory, per-INR early stopping (``target_psnr``) by a mask.
* ``method="autograd"``: the naive batched baseline (autograd + ``torch.optim.Adam``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor

from ..architecture import Architecture
from .kernels import Coords
from .psnr import psnr_from_mse
from .runner import FitBuffers, run_fit
from .settings import FitSettings
from .siren import DEFAULT_LR, DEFAULT_OFFSET, DEFAULT_STEPS, DEFAULT_W0, DEFAULT_WIDTHS, render, siren_architecture, siren_init

__all__ = ["FitResult", "fit_sirens", "fit_sirens_to_signals", "fit_images", "fit_signals"]


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


def _check_on(what: str, t: Tensor, device: torch.device, who: str) -> None:
    if t.device.type not in ("cpu", device.type):
        raise ValueError(f"{who}: {what} are on {t.device}; pass {what} on CPU (or on the fit device {device}), "
                         f"e.g. {what}.cpu()")


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
    settings = FitSettings(widths=widths, w0=w0, steps=steps, lr=lr, offset=offset, init=init,
                           target_psnr=target_psnr, betas=betas, eps=eps, batch_size=batch_size,
                           device_batch_size=batch_size, method=method, workers=workers, device=device,
                           check_every=check_every)
    return fit_images(images, settings, seed=seed, progress=progress, record_steps=record_steps)


def fit_images(images: Tensor, settings: FitSettings, *, seed: int = 0, progress: bool = True,
               record_steps: Sequence[int] = ()) -> FitResult:
    """:func:`fit_sirens` with the settings as one checked object.

    Shapes: images ``[n, H, W]`` / ``[n, H, W, C]`` in ``[0, 1]`` -> ``FitResult``.
    """
    _check_on("images", images, settings.device, "fit_sirens")
    targets = _images_to_targets(images, settings.widths)
    return _fit(targets, Coords((images.shape[1], images.shape[2]), None), settings, seed, progress, record_steps)


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
    settings = FitSettings(widths=widths, w0=w0, steps=steps, lr=lr, offset=offset, init=init,
                           target_psnr=target_psnr, batch_size=batch_size, device_batch_size=batch_size,
                           method=method, workers=workers, device=device, check_every=check_every)
    return fit_signals(coords, targets, settings, seed=seed, progress=progress, record_steps=record_steps)


def fit_signals(coords: Tensor, targets: Tensor, settings: FitSettings, *, seed: int = 0, progress: bool = True,
                record_steps: Sequence[int] = ()) -> FitResult:
    """:func:`fit_sirens_to_signals` with the settings as one checked object.

    Shapes: coords ``[P, d]``, targets ``[n, P, C]`` or ``[n, P]`` -> ``FitResult``.
    """
    who, widths = "fit_sirens_to_signals", settings.widths
    if not isinstance(coords, Tensor) or coords.dim() != 2 or not coords.dtype.is_floating_point:
        raise ValueError(f"{who}: coords must be a float tensor [P, d], got "
                         f"{tuple(coords.shape) if isinstance(coords, Tensor) else type(coords).__name__}")
    if not isinstance(targets, Tensor) or not targets.dtype.is_floating_point or targets.dim() not in (2, 3):
        raise ValueError(f"{who}: targets must be a float tensor [n, P, C] or [n, P], got "
                         f"{tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__}")
    if targets.dim() == 2:
        targets = targets.unsqueeze(-1)
    n, P, C = targets.shape
    if coords.shape[0] != P or coords.shape[1] != widths[0] or C != widths[-1]:
        raise ValueError(f"{who}: coords {tuple(coords.shape)} and targets {tuple(targets.shape)} "
                         f"do not match widths {list(widths)} (need coords [P, {widths[0]}], targets [n, P, {widths[-1]}])")
    if n == 0 or P == 0:
        raise ValueError(f"{who}: no signals to fit: targets have shape {tuple(targets.shape)}")
    for name, t in (("coords", coords), ("targets", targets)):
        if t.device.type not in ("cpu", settings.device.type):
            raise ValueError(f"{who}: {name} are on {t.device}; pass them on CPU or {settings.device}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{who}: {name} contain NaN or inf")
    return _fit(targets.float(), Coords(None, coords.float()), settings, seed, progress, record_steps)


def _fit(targets: Tensor, spec: Coords, s: FitSettings, seed: int, progress: bool,
         record_steps: Sequence[int]) -> FitResult:
    """Shared driver of :func:`fit_images` / :func:`fit_signals` (``targets`` ``[n, P, C]``)."""
    bad = [k for k in record_steps if not 0 <= int(k) <= s.steps]
    if bad:
        raise ValueError(f"record_steps {bad} outside [0, steps={s.steps}]")
    n = targets.shape[0]
    gen = torch.Generator().manual_seed(int(seed))
    weights, biases = siren_init(n, s.widths, s.w0, gen, init=s.init)
    buffers = FitBuffers(weights, biases, {int(k): torch.empty(n) for k in record_steps}, torch.empty(n),
                         torch.full((n,), int(s.steps), dtype=torch.long))
    run_fit(buffers, targets, spec, s, progress)
    return FitResult(weights, biases, psnr_from_mse(buffers.final_mse), siren_architecture(s.widths, s.w0, s.offset),
                     s.steps, {k: psnr_from_mse(v) for k, v in buffers.history.items()}, buffers.steps_taken)
