"""The fit kernels: batches of stacked SIRENs fitted in place, with Adam, no per-INR loop.

Every INR has its own parameters and its own Adam state. One Adam over the
stacked parameters with the loss ``sum_i mean_pixels(err_i^2)`` *is* per-INR
Adam (Adam is elementwise and the INRs share no parameter), as long as nothing
mixes the stack (no gradient clipping or normalisation over it).

Three kernels (:mod:`neuralgraph.inr.runner` picks one per batch):

* :func:`fit_batch_fast` (``method="fast"``, CPU, image grids, fixed steps): a hand-written
  forward/backward. The first layer is separable on a pixel grid, ``sin(a_i + b_j) = sin a_i cos b_j +
  cos a_i sin b_j``, so it costs no transcendental per pixel; the other
  layers use batched matmuls into pre-allocated buffers, sine and cosine are
  computed once per step (numpy's SIMD sin/cos, ~2.5x faster than torch's on
  CPU) and reused by the backward pass, the output weights are folded into a
  per-neuron scale to save a pass, and the Adam update is 7 ops on one flat
  buffer of all parameters.
* :func:`fit_stack` (``method="device"``, any device; on CPU also for early stopping and arbitrary
  coordinates): the vectorised torch path. One stream of batched kernels, the same
  hand-written backward (separable first layer on image grids, a dense first
  layer for arbitrary coordinates), no autograd, a flat Adam, and no host
  synchronisation inside the loop except every ``check_every`` steps (the
  divergence check, the progress bar and the all-converged exit). Per-INR early
  stopping (``target_psnr``) freezes converged INRs with a mask.
* :func:`fit_batch_autograd` (``method="autograd"``): the naive batched baseline (autograd +
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

**Why this Adam is not the zoo's** (``_Optim`` in :mod:`neuralgraph.zoo.train`): here every INR
takes the same step count and learning rate, so the bias corrections are scalars folded into
one update over a flat buffer of all parameters; the zoo mixes SGD, Adam and RMSProp per
network, with per-network step counts and learning rates (tensors and ``torch.where``). One
update for both would cost this path its scalar form, and would change the float order of
either, so the bits of every fitted dataset and zoo already on disk.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .settings import FitSettings
from .siren import image_grid, siren_forward

__all__ = ["Coords", "fit_batch_autograd", "fit_batch_fast", "fit_stack", "raise_if_diverged", "adam_moments"]


class Coords:
    """Where the INRs are evaluated: an image grid ``(H, W)`` (separable first layer) or dense ``[P, d]``."""

    def __init__(self, grid: tuple[int, int] | None, coords: Tensor | None, device=None) -> None:
        self.grid = grid
        self.dense = image_grid(*grid) if coords is None else coords
        if device is not None:
            self.dense = self.dense.to(device)

    def to(self, device) -> "Coords":
        """The same points on ``device``."""
        return Coords(self.grid, self.dense, device)


def adam_moments(grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, denom: Tensor, step: int, beta1: float,
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


def raise_if_diverged(mse: Tensor, params: Sequence[Tensor] = (), *, step: int, lr: float, w0: float,
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


# ----------------------------------------------------------------------------
# the naive baseline: autograd + torch.optim.Adam over the stack
# ----------------------------------------------------------------------------

def fit_batch_autograd(weights, biases, Y, spec: Coords, s: FitSettings, history, final_mse, tick,
                       first: int = 0) -> None:
    """Fit one batch in place with autograd and ``torch.optim.Adam`` (the reference the hand-written kernels
    are tested against); arguments as :func:`fit_stack`'s."""
    w0, steps, lr, offset, betas, eps = s.w0, s.steps, s.lr, s.offset, s.betas, s.eps
    coords = spec.dense.to(Y.device)
    params = [p.detach().clone().requires_grad_(True) for p in [*weights, *biases]]
    M = len(weights)
    opt = torch.optim.Adam(params, lr=lr, betas=betas, eps=eps)

    def mse_of(ps):
        out = siren_forward(ps[:M], ps[M:], coords, w0)
        return (out + offset - Y).pow(2).mean(dim=(1, 2))

    for step in range(steps):
        mse = mse_of(params)
        raise_if_diverged(mse.detach(), step=step, lr=lr, w0=w0, first=first)   # stop at once, not after all steps
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
# shared by the hand-written kernels: sin/cos in one pass, the flat parameter and Adam buffers
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


class _FlatAdam:
    """Parameters, gradients and Adam state of ``B`` stacked SIRENs in flat buffers.

    Per-layer views (``Ws``, ``bs``, ``gW``, ``gb``) are contiguous, so the Adam update is a few ops
    on whole buffers whatever the depth. ``denom`` holds ``sqrt(v_hat) + eps`` after :meth:`moments`.
    """

    def __init__(self, weights: Sequence[Tensor], biases: Sequence[Tensor], dtype: torch.dtype, device=None) -> None:
        M = len(weights)
        shapes = [w.shape for w in weights] + [b.shape for b in biases]
        sizes = [math.prod(sh) for sh in shapes]
        self.flat = torch.cat([t.reshape(-1) for t in [*weights, *biases]]).to(device=device, dtype=dtype)
        self.grad, self.exp_avg, self.exp_avg_sq, self.denom = (torch.zeros_like(self.flat) for _ in range(4))
        views = lambda buf: [t.view(sh) for t, sh in zip(buf.split(sizes), shapes)]   # noqa: E731
        self.params, grads, self.denoms = views(self.flat), views(self.grad), views(self.denom)
        self.Ws, self.bs, self.gW, self.gb = self.params[:M], self.params[M:], grads[:M], grads[M:]

    def moments(self, step: int, betas: tuple[float, float], eps: float) -> float:
        """This step's moments from ``grad`` (:func:`adam_moments`); returns the first moment's bias correction."""
        return adam_moments(self.grad, self.exp_avg, self.exp_avg_sq, self.denom, step, betas[0], betas[1], eps)

    def scale_layer_grads(self, m: int, scale: float | Tensor) -> None:
        """``gW[m] *= scale``, ``gb[m] *= scale``: the tail of both kernels' backward through hidden layer
        ``m`` (0-based), the chain rule's factor ``w0`` times the column scale the kernel kept out of
        ``dL/dT_m``: a float (``w0``) or one per neuron ``[B, h]``."""
        if isinstance(scale, Tensor):
            self.gW[m].mul_(scale.unsqueeze(-1))
            self.gb[m].mul_(scale)
        else:
            self.gW[m].mul_(scale)
            self.gb[m].mul_(scale)

    def write_back(self, weights: Sequence[Tensor], biases: Sequence[Tensor]) -> None:
        """Copy the fitted parameters into the caller's tensors."""
        for dst, src in zip([*weights, *biases], self.params):
            dst.copy_(src)


# ----------------------------------------------------------------------------
# the fast path: hand-written forward/backward, pre-allocated buffers
# ----------------------------------------------------------------------------

class _FastKernel:
    """Forward and backward of :func:`fit_batch_fast` on an ``H x W`` grid, into pre-allocated buffers.

    Notation: hidden layer m computes ``T_m = w0 (A_{m-1} W_m^T + b_m)``,
    ``A_m = sin T_m``; the output is ``A_{M-1} W_M^T + b_M``. The backward
    pass keeps ``E_m`` with ``dL/dT_m = E_m * r_m`` for a per-neuron row scale
    ``r_m`` (``W_M`` for the last hidden layer of a 1-output INR, else 1), which
    saves one full pass over the activations.
    """

    def __init__(self, p: _FlatAdam, Y: Tensor, H: int, W: int, w0: float, offset: float) -> None:
        B, P, C = Y.shape
        M = len(p.Ws)
        dtype = Y.dtype
        self.p, self.w0, self.B, self.M, self.H, self.W = p, w0, B, M, H, W
        self.u = torch.linspace(-1.0, 1.0, H, dtype=dtype)
        self.v = torch.linspace(-1.0, 1.0, W, dtype=dtype)
        # [3, P]: rows u_p, v_p, 1 -> one matmul gives dW_1 (both columns) and db_1
        uv1 = torch.stack([self.u.repeat_interleave(W), self.v.repeat(H), torch.ones(P, dtype=dtype)])
        self.uv1_b = uv1.expand(B, 3, P)
        self.Yo = Y - offset                              # network output target
        self.out = torch.empty(B, P, C, dtype=dtype)
        self.mse = torch.empty(B, dtype=dtype)
        self.scale = 2.0 / (P * C)
        if M == 1:                                        # a plain linear model (no hidden layer)
            self.X = uv1[:2].T.contiguous()
            return
        hid = [w.shape[1] for w in p.Ws[:-1]]             # hidden widths d_1..d_{M-1}
        # A_m = sin(T_m); Cb_m = cos(T_m), turned into E_m in place by the backward pass
        self.A = [torch.empty(B, P, h, dtype=dtype) for h in hid]
        self.Cb = [torch.empty(B, P, h, dtype=dtype) for h in hid]
        self.tmp = [torch.empty(B, P, h, dtype=dtype) for h in hid[:-1]]
        h1 = hid[0]
        self.a1 = torch.empty(B, H, h1, dtype=dtype)
        self.b1v = torch.empty(B, W, h1, dtype=dtype)
        self.sa, self.ca = torch.empty_like(self.a1), torch.empty_like(self.a1)
        self.sb, self.cb = torch.empty_like(self.b1v), torch.empty_like(self.b1v)
        self.g1 = torch.empty(B, 3, h1, dtype=dtype)
        self.Wsc = [torch.empty_like(w) for w in p.Ws[:M - 1]]   # w0 * W_m
        self.bsc = [torch.empty_like(b) for b in p.bs[:M - 1]]   # w0 * b_m
        self.Wbk = [torch.empty_like(w) for w in p.Ws[:M - 1]]   # w0 * r_m[:, :, None] * W_m (backward)
        self.fold = C == 1                                # fold W_M into the row scale of layer M-1
        self.r = [None] * (M - 1)
        self.A4, self.C4 = self.A[0].view(B, H, W, h1), self.Cb[0].view(B, H, W, h1)

    def forward(self) -> None:
        """``out`` <- the error of every INR at every pixel, ``mse`` <- its mean square."""
        p, out = self.p, self.out
        if self.M == 1:
            torch.matmul(self.X, p.Ws[0].transpose(1, 2), out=out)
            out.add_(p.bs[0].unsqueeze(1)).sub_(self.Yo)
        else:
            self._forward_sine()
        torch.mean(out.square(), dim=(1, 2), out=self.mse)

    def _forward_sine(self) -> None:
        p, M, w0, A, Cb, Wsc, bsc = self.p, self.M, self.w0, self.A, self.Cb, self.Wsc, self.bsc
        sa, ca, sb, cb = self.sa, self.ca, self.sb, self.cb
        for m in range(M - 1):
            torch.mul(p.Ws[m], w0, out=Wsc[m])
            torch.mul(p.bs[m], w0, out=bsc[m])
        # layer 1 is separable on the grid: T_1[i, j] = alpha_i + beta_j
        torch.mul(Wsc[0][:, None, :, 0], self.u[None, :, None], out=self.a1)
        self.a1.add_(bsc[0][:, None, :])
        torch.mul(Wsc[0][:, None, :, 1], self.v[None, :, None], out=self.b1v)
        torch.sin(self.a1, out=sa)
        torch.cos(self.a1, out=ca)
        torch.sin(self.b1v, out=sb)
        torch.cos(self.b1v, out=cb)
        torch.mul(sa[:, :, None, :], cb[:, None, :, :], out=self.A4)
        self.A4.addcmul_(ca[:, :, None, :], sb[:, None, :, :])
        torch.mul(ca[:, :, None, :], cb[:, None, :, :], out=self.C4)
        self.C4.addcmul_(sa[:, :, None, :], sb[:, None, :, :], value=-1.0)
        for m in range(1, M - 1):
            torch.baddbmm(bsc[m][:, None, :], A[m - 1], Wsc[m].transpose(1, 2), out=Cb[m])
            _sincos_(Cb[m], A[m])
        torch.baddbmm(p.bs[M - 1][:, None, :], A[M - 2], p.Ws[M - 1].transpose(1, 2), out=self.out)
        self.out.sub_(self.Yo)                            # out is now the error

    def backward(self) -> None:
        """The gradients of the loss ``sum_i mse_i`` into ``p.grad`` (``out`` is overwritten)."""
        p, M = self.p, self.M
        G = self.out.mul_(self.scale)                     # dL/d(out)
        if M == 1:
            torch.matmul(G.transpose(1, 2), self.X, out=p.gW[0])
            torch.sum(G, 1, out=p.gb[0])
            return
        A, Cb, r = self.A, self.Cb, self.r
        torch.bmm(G.transpose(1, 2), A[M - 2], out=p.gW[M - 1])
        torch.sum(G, 1, out=p.gb[M - 1])
        # E_{M-1} = cos(T_{M-1}) * (G @ W_M) / r_{M-1}
        if self.fold:
            Cb[M - 2].mul_(G)
            r[M - 2] = p.Ws[M - 1][:, 0, :]
        else:
            Cb[M - 2].mul_(torch.bmm(G, p.Ws[M - 1]))
        for m in range(M - 2, -1, -1):                    # 0-based hidden layer m (weights Ws[m])
            self._backward_hidden(m)

    def _backward_hidden(self, m: int) -> None:
        p, w0, r, E = self.p, self.w0, self.r, self.Cb[m]
        if m > 0:
            if r[m] is None:
                torch.mul(p.Ws[m], w0, out=self.Wbk[m])
            else:
                torch.mul(p.Ws[m], (w0 * r[m]).unsqueeze(-1), out=self.Wbk[m])
            torch.bmm(E.transpose(1, 2), self.A[m - 1], out=p.gW[m])
            torch.sum(E, 1, out=p.gb[m])
            torch.bmm(E, self.Wbk[m], out=self.tmp[m - 1])
            self.Cb[m - 1].mul_(self.tmp[m - 1])
        else:
            torch.bmm(self.uv1_b, E, out=self.g1)         # [B, 3, h1]
            p.gW[0].copy_(self.g1[:, :2, :].transpose(1, 2))
            p.gb[0].copy_(self.g1[:, 2, :])
        p.scale_layer_grads(m, w0 if r[m] is None else w0 * r[m])


@torch.no_grad()
def fit_batch_fast(weights, biases, Y, H: int, W: int, s: FitSettings, history, final_mse, tick,
                   first: int = 0) -> None:
    """Fit one batch in place on an ``H x W`` grid (see the module docstring for the tricks and
    :class:`_FastKernel` for the notation); arguments as :func:`fit_stack`'s."""
    p = _FlatAdam(weights, biases, Y.dtype)
    k = _FastKernel(p, Y, H, W, s.w0, s.offset)
    for step in range(1, s.steps + 1):
        k.forward()
        raise_if_diverged(k.mse, step=step - 1, lr=s.lr, w0=s.w0, first=first)   # stop at once, not after all steps
        if step - 1 in history:
            history[step - 1].copy_(k.mse)
        k.backward()
        bc1 = p.moments(step, s.betas, s.eps)
        p.flat.addcdiv_(p.exp_avg, p.denom, value=-s.lr / bc1)
        tick(k.B)
    k.forward()
    final_mse.copy_(k.mse)
    if s.steps in history:
        history[s.steps].copy_(k.mse)
    p.write_back(weights, biases)


# ----------------------------------------------------------------------------
# the device path: one stream of batched kernels, any device, masks, dense coordinates
# ----------------------------------------------------------------------------

class _StackKernel:
    """Forward and backward of :func:`fit_stack`: the same notation as :class:`_FastKernel`, written
    independently of it. The backward pass keeps ``D_m = cos(T_m) * dL/dA_m / r_m`` with a column
    scale ``r_m`` (``w0 W_out`` for the last hidden layer of a 1-output INR, so ``dL/dA`` is never
    materialised, else ``w0``). The first layer is separable on an image grid (``sin(a_i + b_j)``
    from ``H + W`` sines instead of ``H * W``), dense on arbitrary coordinates.
    """

    def __init__(self, p: _FlatAdam, Y: Tensor, spec: Coords, w0: float, offset: float) -> None:
        B, P, C = Y.shape
        dev, dtype = Y.device, Y.dtype
        M = len(p.Ws)
        self.p, self.w0, self.B, self.P, self.M = p, w0, B, P, M
        self.Yo = Y - offset
        self.out = torch.empty(B, P, C, device=dev, dtype=dtype)
        self.mse = torch.empty(B, device=dev, dtype=dtype)
        self.scale = 2.0 / (P * C)
        self.X = spec.dense.to(dev, dtype)                              # [P, d]
        self.d = d = self.X.shape[1]
        self.Xa = torch.cat([self.X, torch.ones(P, 1, device=dev, dtype=dtype)], 1).T.contiguous()   # [d+1, P]
        hid = [w.shape[1] for w in p.Ws[:-1]]
        self.grid = spec.grid if M > 1 and spec.grid is not None else None
        if M > 1:
            self.A = [torch.empty(B, P, h, device=dev, dtype=dtype) for h in hid]
            self.Cb = [torch.empty(B, P, h, device=dev, dtype=dtype) for h in hid]
            self.dA = [torch.empty(B, P, h, device=dev, dtype=dtype) for h in hid[:-1]]
            self.g1 = torch.empty(B, d + 1, hid[0], device=dev, dtype=dtype)
            self.Wsc = [torch.empty_like(w) for w in p.Ws[:-1]]
            self.bsc = [torch.empty_like(b) for b in p.bs[:-1]]
            self.Wbk = [torch.empty_like(w) for w in p.Ws[1:-1]]
        self.fold = M > 1 and C == 1
        if self.grid is not None:
            self.u = torch.linspace(-1.0, 1.0, self.grid[0], device=dev, dtype=dtype)
            self.v = torch.linspace(-1.0, 1.0, self.grid[1], device=dev, dtype=dtype)

    def forward(self) -> None:
        """``out`` <- the error of every INR at every point, ``mse`` <- its mean square."""
        p, M, B, P, d = self.p, self.M, self.B, self.P, self.d
        if M == 1:
            torch.baddbmm(p.bs[0][:, None, :], self.X.expand(B, P, d), p.Ws[0].transpose(1, 2), out=self.out)
        else:
            A, Cb, Wsc, bsc = self.A, self.Cb, self.Wsc, self.bsc
            for m in range(M - 1):
                torch.mul(p.Ws[m], self.w0, out=Wsc[m])
                torch.mul(p.bs[m], self.w0, out=bsc[m])
            if self.grid is not None:
                self._first_layer_on_grid()
            else:
                torch.baddbmm(bsc[0][:, None, :], self.X.expand(B, P, d), Wsc[0].transpose(1, 2), out=Cb[0])
                _sincos_(Cb[0], A[0])
            for m in range(1, M - 1):
                torch.baddbmm(bsc[m][:, None, :], A[m - 1], Wsc[m].transpose(1, 2), out=Cb[m])
                _sincos_(Cb[m], A[m])
            torch.baddbmm(p.bs[-1][:, None, :], A[-1], p.Ws[-1].transpose(1, 2), out=self.out)
        self.out.sub_(self.Yo)                                           # the error
        torch.mean(self.out.square(), dim=(1, 2), out=self.mse)

    def _first_layer_on_grid(self) -> None:
        """``T_1[i, j] = alpha_i + beta_j``: sin and cos of the first layer from ``H + W`` sines."""
        B, (Hh, Ww), Wsc, bsc = self.B, self.grid, self.Wsc, self.bsc
        al = torch.addcmul(bsc[0][:, None, :], Wsc[0][:, None, :, 0], self.u[None, :, None])   # [B, H, h]
        be = Wsc[0][:, None, :, 1] * self.v[None, :, None]                                       # [B, W, h]
        sa, ca, sb, cb = al.sin(), al.cos(), be.sin(), be.cos()
        A4, C4 = self.A[0].view(B, Hh, Ww, -1), self.Cb[0].view(B, Hh, Ww, -1)
        torch.mul(sa[:, :, None], cb[:, None], out=A4).addcmul_(ca[:, :, None], sb[:, None])
        torch.mul(ca[:, :, None], cb[:, None], out=C4).addcmul_(sa[:, :, None], sb[:, None], value=-1.0)

    def backward(self) -> None:
        """The gradients of the loss ``sum_i mse_i`` into ``p.grad`` (``out`` is overwritten)."""
        p, M, B, P, d = self.p, self.M, self.B, self.P, self.d
        G = self.out.mul_(self.scale)                                    # dL/d(out)
        prev = self.X.expand(B, P, d) if M == 1 else self.A[-1]
        torch.bmm(G.transpose(1, 2), prev, out=p.gW[-1])
        torch.sum(G, 1, out=p.gb[-1])
        if M == 1:
            return
        if self.fold:                                                    # D = cos(T) * G, r = w0 * W_out
            self.Cb[-1].mul_(G)
            r = p.Ws[-1][:, 0, :] * self.w0                              # [B, h]
        else:
            self.Cb[-1].mul_(torch.bmm(G, p.Ws[-1]))
            r = None
        for m in range(M - 2, -1, -1):
            self._backward_hidden(m, r)
            r = None

    def _backward_hidden(self, m: int, r: Tensor | None) -> None:
        p, w0, D = self.p, self.w0, self.Cb[m]
        if m > 0:
            torch.bmm(D.transpose(1, 2), self.A[m - 1], out=p.gW[m])
            torch.sum(D, 1, out=p.gb[m])
            if r is None:
                torch.mul(p.Ws[m], w0, out=self.Wbk[m - 1])
            else:
                torch.mul(p.Ws[m], r.unsqueeze(-1), out=self.Wbk[m - 1])
            torch.bmm(D, self.Wbk[m - 1], out=self.dA[m - 1])
            self.Cb[m - 1].mul_(self.dA[m - 1])
        else:
            d = self.d
            torch.bmm(self.Xa.expand(self.B, d + 1, self.P), D, out=self.g1)   # [B, d+1, h]: weight columns, bias
            p.gW[0].copy_(self.g1[:, :d, :].transpose(1, 2))
            p.gb[0].copy_(self.g1[:, d, :])
        p.scale_layer_grads(m, w0 if r is None else r)


@torch.no_grad()
def fit_stack(weights, biases, Y, spec: Coords, s: FitSettings, history, final_mse, tick, first: int = 0,
              steps_taken: Tensor | None = None, check_every: int | None = None) -> None:
    """Fit ``B`` stacked SIRENs in place on ``Y.device`` (the device path; see the module docstring and
    :class:`_StackKernel`).

    With ``s.target_psnr`` an INR whose loss reaches it is frozen (mask on the Adam update;
    ``steps_taken`` records when). Host synchronisation only every ``check_every`` steps (default
    ``s.check_every``).

    Shapes:
        weights[m] ``[B, out, in]``, biases[m] ``[B, out]``, Y ``[B, P, C]``,
        history values / final_mse ``[B]``, steps_taken ``[B]`` int64.
    """
    steps, lr, target_mse = s.steps, s.lr, s.target_mse
    check_every = s.check_every if check_every is None else check_every
    B = Y.shape[0]
    p = _FlatAdam(weights, biases, Y.dtype, Y.device)
    k = _StackKernel(p, Y, spec, s.w0, s.offset)
    active = torch.ones(B, dtype=torch.bool, device=Y.device)
    if steps_taken is not None:
        steps_taken.fill_(steps)
    diverged = lambda step: raise_if_diverged(k.mse, step=step, lr=lr, w0=s.w0, first=first)   # noqa: E731
    done_at = ran = 0
    for step in range(1, steps + 1):
        k.forward()
        if step - 1 in history:
            history[step - 1].copy_(k.mse)
        if target_mse is not None:
            newly = active & (k.mse <= target_mse)
            if steps_taken is not None:
                steps_taken.masked_fill_(newly, step - 1)
            active &= ~newly
        k.backward()
        bc1 = p.moments(step, s.betas, s.eps)
        torch.div(p.exp_avg, p.denom, out=p.denom)
        if target_mse is not None:                                   # frozen INRs do not move
            keep = active.to(Y.dtype)
            for t in p.denoms:
                t.mul_(keep.view(-1, *([1] * (t.dim() - 1))))
        p.flat.add_(p.denom, alpha=-lr / bc1)
        ran = step
        if step % check_every == 0 or step == steps:
            diverged(step - 1)                                       # the loss of step-1's parameters
            tick(B * (step - done_at))
            done_at = step
            if target_mse is not None and not bool(active.any()):    # everyone converged: stop early
                tick(B * (steps - step))
                break
    k.forward()
    diverged(steps)
    final_mse.copy_(k.mse)
    for key, h in history.items():
        if key >= ran:                          # the final parameters (also after an all-converged exit)
            h.copy_(k.mse)
    p.write_back(weights, biases)
