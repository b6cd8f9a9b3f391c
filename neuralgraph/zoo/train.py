"""Training many small classifiers of one architecture at once, vectorised over networks.

The B networks of a group keep their parameters stacked (``W_m [B, out, in, *k]``).
Convolutions run as one grouped convolution (``groups=B``, activations laid out
``[n, B * C, H, W]``), linear layers as one batched matmul (``[B, n, F]``), and
the three optimisers (SGD, Adam, RMSProp, each network its own learning rate
and L2) as one elementwise update: no Python loop over networks in a step.

Each network sees its own data: a random subset of the training images (its
``train_fraction``, drawn from its own seed) in its own order every epoch, so
networks with less data take fewer steps per epoch. Networks are sorted by
their number of steps, and step ``t`` computes only the prefix of networks
that still train (a view, no copy): the cost is the sum of the networks'
steps, not B times the longest.

Measured on 2 CPU cores (``benchmarks/bench_zoo.py``): grouped convolutions beat
``torch.func.vmap(functional_call)`` over stacked parameters (see the README
numbers), so :func:`forward_grouped` is the training path; :func:`forward_vmap`
is kept as the independent reference the tests compare it with.

:func:`train_plain` trains the same networks one at a time with ``nn.Module``
and ``torch.optim`` (the baseline of the benchmark; with ``replay_dropout`` it
draws the same dropout masks and so reproduces :func:`train_group` to float
tolerance, which the tests check).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..architecture import Architecture, ModuleSpec
from ..seeding import derive_seed
from .specs import OPTIMIZERS, init_params

__all__ = ["ADAM_BETAS", "OPT_EPS", "RMSPROP_ALPHA", "TrainPlan", "check_trainable", "forward_grouped",
           "forward_vmap", "evaluate_group", "train_group", "train_plain", "training_architecture"]

ADAM_BETAS = (0.9, 0.999)
OPT_EPS = 1e-7
RMSPROP_ALPHA = 0.9
_SUPPORTED_POST = {"relu", "gelu", "silu", "tanh", "sigmoid", "leaky_relu", "sine", "identity", "flatten",
                   "global_avg_pool2d", "batchnorm2d", "batchnorm1d", "dropout"}


def check_trainable(arch: Architecture) -> None:
    """``ValueError`` unless the vectorised trainer supports every layer and module of ``arch``."""
    for m, layer in enumerate(arch.layers, start=1):
        if layer.kind not in ("linear", "conv2d"):
            raise ValueError(f"zoo training supports Linear and Conv2d layers, layer {m} is {layer.kind}")
        bad = [p.kind for p in layer.post if p.kind not in _SUPPORTED_POST]
        if bad:
            raise ValueError(f"zoo training does not support {bad[0]} (after layer {m}); supported: "
                             f"{sorted(_SUPPORTED_POST)}")
    bad = [p.kind for p in arch.pre if p.kind not in ("flatten", "identity")]
    if bad:
        raise ValueError(f"zoo training supports only Flatten before the first layer, got {bad[0]}")


def training_architecture(arch: Architecture, dropout: float) -> Architecture:
    """``arch`` with ``Dropout(dropout)`` after every hidden layer (after its residual block where it ends one)."""
    layers = tuple(l if m == arch.num_layers - 1 else
                   type(l)(**{**l.__dict__, "post": (*l.post, ModuleSpec("dropout", (float(dropout),)))})
                   for m, l in enumerate(arch.layers))
    return Architecture(layers, arch.pre, arch.residuals)


# ----------------------------------------------------------------------------
# functional forward over stacked parameters
# ----------------------------------------------------------------------------

#: How convolutions of B networks run: ``grouped`` (one ``conv2d`` with ``groups=B``) or ``unfold``
#: (im2col with ``F.unfold``, then one batched matrix product per layer). Measured (``bench_zoo.py``),
#: one training step of Small-CNN-Zoo networks on 32 images each: on 2 CPU cores (64 networks) grouped
#: 8.1 ms, unfold 43.9 ms; on an H100 (2,048 networks) grouped 179 ms, unfold 9.7 ms.
CONV_IMPL = {"cpu": "grouped", "cuda": "unfold"}


def conv_impl(device: torch.device | str, conv: str = "auto") -> str:
    """The convolution implementation for ``device`` (``conv="auto"``: :data:`CONV_IMPL`)."""
    if conv not in ("auto", "grouped", "unfold"):
        raise ValueError(f"conv must be 'auto', 'grouped' or 'unfold', got {conv!r}")
    return CONV_IMPL.get(torch.device(device).type, "grouped") if conv == "auto" else conv


def forward_grouped(arch: Architecture, params: dict, x: Tensor, *, training: bool = False,
                    keep: Tensor | None = None, noise: Callable[[tuple], Tensor] | None = None,
                    conv: str = "auto") -> Tensor:
    """Logits of B networks of one architecture, computed together.

    Args:
        arch: the (eval-mode) architecture of every network.
        params: ``weights`` / ``biases`` (lists per layer, ``[B, ...]``) and, for
            BatchNorm layers, ``norm_weight`` / ``norm_bias`` / ``running_mean`` /
            ``running_var`` (``[B, out]`` or ``None`` per layer). Running
            statistics are updated in place when ``training``.
        x: ``[B, n, *input]`` (each network its own inputs) or ``[n, *input]`` (shared).
        training: BatchNorm uses batch statistics, and with ``keep`` dropout
            follows every hidden layer.
        keep: ``[B]`` keep probabilities (1 - dropout) of the networks.
        noise: ``noise(shape)`` returns uniform noise ``[B_all, *shape]`` for a
            dropout site whose per-network activation has shape ``shape``; rows
            ``[:B]`` are used (default: ``torch.rand``).
        conv: ``"grouped"``, ``"unfold"`` or ``"auto"`` (see :data:`CONV_IMPL`); same values
            up to float rounding.

    Shapes: returns ``[B, n, num_classes]``.
    """
    W, b = params["weights"], params["biases"]
    B = W[0].shape[0]
    conv = conv_impl(x.device, conv)
    shared = x.dim() == len(_input_rank(arch)) + 1
    h, layout = x, "shared" if shared else "batched"          # conv layers switch to "grouped"
    for m in arch.pre:
        if m.kind == "flatten":
            h = h.flatten(1) if layout == "shared" else h.flatten(2)
    blocks = {s: (e, split) for s, e, split in arch.residuals}
    skip, block = None, None
    M = arch.num_layers
    for j, layer in enumerate(arch.layers):
        if j in blocks:
            skip, block = (h, layout), blocks[j]
        h, layout = _layer(layer, W[j], b[j], h, layout, B, conv)
        split = block[1] if block is not None and j == block[0] - 1 else None
        for idx, mod in enumerate(layer.post):
            if idx == split:
                h, skip, block = h + _same_layout(skip, layout, B), None, None
            h, layout = _post(mod, h, layout, B, layer.out_features, params, j, training)
        if split is not None and split == len(layer.post):
            h, skip, block = h + _same_layout(skip, layout, B), None, None
        if training and keep is not None and j < M - 1:
            h = _dropout(h, layout, B, layer.out_features, keep, noise)
    if layout != "batched":
        raise ValueError("the architecture does not end in a Linear layer (or Flatten after pooling)")
    return h


def _input_rank(arch: Architecture) -> tuple:
    first = arch.layers[0]
    if any(m.kind == "flatten" for m in arch.pre):
        return (None, None, None)        # [C, H, W] images flattened by the model (an MLP classifier)
    return (None,) if first.kind == "linear" else (None, None, None)


def _same_layout(saved: tuple, layout: str, B: int) -> Tensor:
    h, was = saved
    if was == layout:
        return h
    if was == "batched" and layout == "grouped":        # [B, n, C, H, W] -> [n, B*C, H, W]
        return h.transpose(0, 1).reshape(h.shape[1], -1, *h.shape[3:])
    raise ValueError("a residual block cannot start at the input of a shared-input forward")


def _layer(layer, w: Tensor, b: Tensor | None, h: Tensor, layout: str, B: int,
           conv: str = "grouped") -> tuple[Tensor, str]:
    if layer.kind == "linear":
        if layout == "shared":                           # [n, F] -> [B, n, out]
            out = (h @ w.reshape(-1, w.shape[-1]).t()).view(h.shape[0], B, -1).transpose(0, 1)
            return (out if b is None else out + b.unsqueeze(1)), "batched"
        if layout == "grouped":
            raise ValueError("Linear after a convolution needs global average pooling and Flatten")
        out = torch.bmm(h, w.transpose(1, 2))
        return (out if b is None else out + b.unsqueeze(1)), "batched"
    k = w.shape[2:]
    groups = B
    if layout == "shared":
        groups = 1
    elif layout == "batched":                            # [B, n, C, H, W] -> [n, B*C, H, W]
        h = h.transpose(0, 1).reshape(h.shape[1], -1, *h.shape[3:])
    if conv == "unfold" and layer.kind == "conv2d" and not isinstance(layer.padding, str):
        return _conv2d_unfold(layer, w, b, h, B, shared=groups == 1), "grouped"
    # channels-last: oneDNN's grouped convolution is several times faster on CPU in this layout (measured)
    cl = torch.channels_last
    out = F.conv2d(h.contiguous(memory_format=cl), w.reshape(-1, *k).contiguous(memory_format=cl),
                   None if b is None else b.reshape(-1), layer.stride, layer.padding, layer.dilation, groups)
    return out, "grouped"


def _conv2d_unfold(layer, w: Tensor, b: Tensor | None, h: Tensor, B: int, shared: bool) -> Tensor:
    """B networks' ``conv2d`` as im2col + one batched matrix product (grouped layout in and out).

    Shapes: ``h [n, C, H, W]`` (``shared``) or ``[n, B*C, H, W]``, ``w [B, O, C, kh, kw]`` ->
    ``[n, B*O, H', W']``.
    """
    n, _, H, Wd = h.shape
    O, k = w.shape[1], w.shape[3:]
    pad, dil, stride = _pair(layer.padding, 0), _pair(layer.dilation, 1), _pair(layer.stride, 1)
    cols = F.unfold(h, tuple(k), dilation=dil, padding=pad, stride=stride)
    out_hw = [(size + 2 * p - d * (kk - 1) - 1) // st + 1 for size, p, d, kk, st in zip((H, Wd), pad, dil, k, stride)]
    wf = w.reshape(B, O, -1)
    if shared:                                   # [n, C*k, L] x [B, O, C*k] -> [n, B, O, L]
        out = torch.einsum("nkl,bok->nbol", cols, wf)
    else:
        out = torch.einsum("nbkl,bok->nbol", cols.view(n, B, wf.shape[-1], -1), wf)
    if b is not None:
        out = out + b.view(1, B, O, 1)
    return out.reshape(n, B * O, *out_hw)


def _pair(v, default: int) -> tuple[int, int]:
    v = tuple(v) if isinstance(v, (tuple, list)) else (v,)
    return (v[0], v[0]) if len(v) == 1 else (int(v[0]), int(v[1])) if v else (default, default)


def _post(mod: ModuleSpec, h: Tensor, layout: str, B: int, width: int, params: dict, j: int,
          training: bool) -> tuple[Tensor, str]:
    kind = mod.kind
    if kind in ("identity", "dropout"):
        return h, layout                 # arch-level Dropout: identity (the zoo's dropout comes from ``keep``)
    if kind == "global_avg_pool2d":
        return h.mean((-2, -1), keepdim=True), layout
    if kind == "flatten":
        if layout == "grouped":          # [n, B*C, 1, 1] -> [B, n, C]
            return h.reshape(h.shape[0], B, width).transpose(0, 1), "batched"
        return h, layout
    if kind in ("batchnorm2d", "batchnorm1d"):
        _, eps, momentum, _, _ = mod.args
        args = [params[k][j] for k in ("running_mean", "running_var", "norm_weight", "norm_bias")]
        args = [a.reshape(-1) for a in args]
        if layout == "grouped":
            return F.batch_norm(h, *args, training=training, momentum=momentum, eps=eps), layout
        n = h.shape[1]
        flat = h.transpose(0, 1).reshape(n, B * width)
        out = F.batch_norm(flat, *args, training=training, momentum=momentum, eps=eps)
        return out.view(n, B, width).transpose(0, 1), layout
    return mod.functional()(h), layout


def _dropout(h: Tensor, layout: str, B: int, width: int, keep: Tensor, noise) -> Tensor:
    if layout == "grouped":
        n, _, *spatial = h.shape
        shape = (n, width, *spatial)
    else:
        shape = tuple(h.shape[1:])
    r = noise(shape) if noise is not None else torch.rand(B, *shape, device=h.device, dtype=h.dtype)
    r = r[:B]
    kb = keep.view(B, *([1] * len(shape))).to(h.dtype)
    mask = (r < kb).to(h.dtype) / kb
    if layout == "grouped":
        mask = mask.transpose(0, 1).reshape(h.shape)
    return h * mask


def forward_vmap(arch: Architecture, weights: Sequence[Tensor], biases: Sequence[Tensor | None], x: Tensor) -> Tensor:
    """Reference: ``torch.func.vmap`` of ``functional_call`` over stacked parameters (eval mode, no BatchNorm).

    Shapes: ``x [B, n, *input]`` -> ``[B, n, num_classes]``.
    """
    from torch.func import functional_call, vmap

    from ..graph import _layer_modules

    if arch.has_norm:
        raise ValueError("forward_vmap supports architectures without normalisation layers")
    model = arch.build().to(device=x.device, dtype=x.dtype).eval()
    names = {id(mod): name for name, mod in model.named_modules()}
    params = {}
    for (mod, _), w, b in zip(_layer_modules(model), weights, biases):
        params[names[id(mod)] + ".weight"] = w
        if b is not None:
            params[names[id(mod)] + ".bias"] = b
    return vmap(lambda p, xi: functional_call(model, p, (xi,)))(params, x)


# ----------------------------------------------------------------------------
# per-network schedules
# ----------------------------------------------------------------------------

class TrainPlan:
    """Which images each network of a group trains on, in which order, and its dropout noise.

    Network ``i`` trains on ``n_i = max(batch_size, round(train_fraction_i * N))``
    images (capped at N), drawn from its own seed, in ``n_i // batch_size``
    full batches per epoch. Rows are sorted by that number of steps
    (descending; ``order[r]`` is the network in row ``r``), so the networks
    still training at step ``t`` are the first ``active(t)`` rows.
    Every epoch's order and dropout noise come from generators seeded by
    ``(group_seed, epoch)``.
    """

    def __init__(self, hparams: Sequence[dict], num_train: int, batch_size: int, group_seed: int,
                 device: torch.device | str = "cpu") -> None:
        if num_train < batch_size:
            raise ValueError(f"zoo training needs at least batch_size={batch_size} training images, got {num_train}")
        self.B, self.N, self.batch_size, self.group_seed = len(hparams), num_train, batch_size, int(group_seed)
        self.device = torch.device(device)
        n = [min(num_train, max(batch_size, int(round(float(hp["train_fraction"]) * num_train)))) for hp in hparams]
        steps = torch.tensor([k // batch_size for k in n])
        self.order = torch.sort(-steps, stable=True).indices        # rows -> networks
        self.row_of = torch.empty_like(self.order)
        self.row_of[self.order] = torch.arange(self.B)
        self.steps = steps[self.order]                                # per row, descending
        self.max_steps = int(self.steps[0])
        max_n = max(n)
        subsets = torch.zeros(self.B, max_n, dtype=torch.long)
        valid = torch.zeros(self.B, max_n, dtype=torch.bool)
        for r, i in enumerate(self.order.tolist()):                   # setup only: one draw per network
            g = torch.Generator().manual_seed(int(hparams[i]["seed"]) + 1)
            subsets[r, : n[i]] = torch.randperm(num_train, generator=g)[: n[i]]
            valid[r, : n[i]] = True
        self.subsets, self.valid = subsets.to(self.device), valid.to(self.device)
        self._active = [int((self.steps > t).sum()) for t in range(self.max_steps)]

    def active(self, step: int) -> int:
        """How many rows (a prefix) train at ``step`` of an epoch."""
        return self._active[step]

    def epoch_order(self, epoch: int) -> Tensor:
        """``[B, max_steps * batch_size]`` training-image indices of every row for ``epoch``."""
        g = torch.Generator(device=self.device).manual_seed(derive_seed(self.group_seed, 1, epoch))
        keys = torch.rand(self.subsets.shape, generator=g, device=self.device)
        keys.masked_fill_(~self.valid, 2.0)
        idx = self.subsets.gather(1, keys.argsort(1))
        return idx[:, : self.max_steps * self.batch_size]

    def noise_generator(self, epoch: int) -> torch.Generator:
        """The generator of ``epoch``'s dropout noise, seeded from the group seed and the epoch, so
        a resumed run draws the same masks.
        """
        return torch.Generator(device=self.device).manual_seed(derive_seed(self.group_seed, 2, epoch))


# ----------------------------------------------------------------------------
# vectorised optimisers
# ----------------------------------------------------------------------------

class _Optim:
    """SGD / Adam / RMSProp per network (``torch.optim`` formulas), one elementwise update for all.

    Not the SIREN fitter's Adam (:mod:`neuralgraph.inr.kernels`, which says why): here each network has its
    own optimiser kind, learning rate, L2 and step count (bias corrections are per-network tensors), there
    one Adam with scalar corrections over a flat buffer; one shared update would change the float order, and
    so the bits, of every zoo and INR dataset already written.
    """

    def __init__(self, tensors: list[tuple[Tensor, bool]], hparams: Sequence[dict], order: Tensor, device) -> None:
        hp = [hparams[i] for i in order.tolist()]
        self.tensors = tensors
        self.lr = torch.tensor([float(h["lr"]) for h in hp], device=device)
        self.l2 = torch.tensor([float(h["l2"]) for h in hp], device=device)
        self.kind = torch.tensor([OPTIMIZERS.index(h["optimizer"]) for h in hp], device=device)
        self.t = torch.zeros(len(hp), device=device)
        self.state = [(torch.zeros_like(p), torch.zeros_like(p)) for p, _ in tensors]

    @torch.no_grad()
    def step(self, k: int) -> None:
        b1, b2 = ADAM_BETAS
        self.t[:k] += 1
        bc1 = 1 - b1 ** self.t[:k]
        bc2 = 1 - b2 ** self.t[:k]
        kind = self.kind[:k]
        for (p, decay), (m, v) in zip(self.tensors, self.state):
            if p.grad is None:
                continue
            shape = (k,) + (1,) * (p.dim() - 1)
            g = p.grad[:k]
            if decay:
                g = g + self.l2[:k].view(shape) * p[:k]
            m_, v_ = m[:k], v[:k]
            kv = kind.view(shape)
            # Adam: first and second moments; RMSProp keeps its square average in v (alpha 0.9)
            m_.lerp_(g, 1 - b1)
            beta = torch.where(kv == 1, torch.full_like(kv, b2, dtype=g.dtype), torch.full_like(kv, RMSPROP_ALPHA,
                                                                                                 dtype=g.dtype))
            v_.mul_(beta).addcmul_(g * (1 - beta), g)
            adam = m_ / (v_.sqrt() / bc2.sqrt().view(shape) + OPT_EPS) / bc1.view(shape)
            rms = g / (v_.sqrt() + OPT_EPS)
            upd = torch.where(kv == 1, adam, torch.where(kv == 2, rms, g))
            p[:k] -= self.lr[:k].view(shape) * upd
            p.grad = None


# ----------------------------------------------------------------------------
# training a group
# ----------------------------------------------------------------------------

def _eval_chunk(arch: Architecture, B: int, image_shape: Sequence[int], device: torch.device) -> int:
    """Images per evaluation forward, so that B networks' widest activation stays within a budget.

    The budget is 2**24 elements on CPU (measured there) and 1/32 of the free memory on CUDA
    (at least the CPU budget): the chunk's peak is a few times its widest activation, and a
    fixed small budget would leave a GPU evaluating thousands of networks a few images at a time.
    """
    budget = 2 ** 24
    if device.type == "cuda":
        budget = max(budget, torch.cuda.mem_get_info(device)[0] // (4 * 32))
    width = max(arch.widths[1:])
    pixels = math.prod(image_shape[1:]) if len(image_shape) > 1 else 1
    return max(1, int(budget // max(1, B * width * pixels)))


@torch.no_grad()
def evaluate_group(arch: Architecture, params: dict, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy and accuracy ``[B]`` of B networks (eval mode) on shared data ``x [n, ...]``, ``y [n]``."""
    B = params["weights"][0].shape[0]
    loss = torch.zeros(B, device=x.device, dtype=torch.float64)
    correct = torch.zeros(B, device=x.device, dtype=torch.float64)
    step = _eval_chunk(arch, B, x.shape[1:], x.device)
    for s in range(0, x.shape[0], step):
        logits = forward_grouped(arch, params, x[s:s + step])
        yy = y[s:s + step].expand(B, -1)
        loss += F.cross_entropy(logits.transpose(1, 2), yy, reduction="none").sum(1).double()
        correct += (logits.argmax(-1) == yy).sum(1).double()
    n = max(1, x.shape[0])
    return (loss / n).float(), (correct / n).float()


def _stacked_params(arch: Architecture, init: dict, order: Tensor, device) -> dict:
    """Leaf tensors of the group in plan (row) order."""
    p = {"weights": [w[order].to(device).requires_grad_() for w in init["weights"]],
         "biases": [None if not l.bias else b[order].to(device).requires_grad_()
                    for l, b in zip(arch.layers, init["biases"])]}
    for key, col, grad in (("norm_weight", 0, True), ("norm_bias", 1, True), ("running_mean", 2, False),
                           ("running_var", 3, False)):
        p[key] = [None if n is None else n[order][..., col].contiguous().to(device).requires_grad_(grad)
                  for n in init["norms"]]
    return p


def _snapshot(arch: Architecture, p: dict, row_of: Tensor) -> dict:
    """Parameters in network order, detached (CPU)."""
    w = [t.detach()[row_of].cpu() for t in p["weights"]]
    b = [None if t is None else t.detach()[row_of].cpu() for t in p["biases"]]
    norms = []
    for j in range(arch.num_layers):
        if p["norm_weight"][j] is None:
            norms.append(None)
        else:
            cols = [p[k][j].detach() for k in ("norm_weight", "norm_bias", "running_mean", "running_var")]
            norms.append(torch.stack(cols, -1)[row_of].cpu())
    return {"weights": w, "biases": b, "norms": norms}


def _sliced(p: dict, k: int) -> dict:
    return {key: [None if t is None else t[:k] for t in ts] for key, ts in p.items()}


def train_group(arch: Architecture, hparams: Sequence[dict], train_x: Tensor, train_y: Tensor,
                eval_sets: dict[str, tuple[Tensor, Tensor]], *, epochs: int, checkpoints: Sequence[int],
                batch_size: int = 32, group_seed: int = 0,
                on_epoch: Callable[[int], None] | None = None) -> dict:
    """Train B networks of one architecture together and record them at ``checkpoints`` (epochs).

    Args:
        hparams: one dict per network (see :func:`~neuralgraph.zoo.specs.sample_zoo`).
        train_x, train_y: training images ``[N, C, H, W]`` (or ``[N, F]``) and labels ``[N]``,
            on the device to train on.
        eval_sets: ``{name: (x, y)}`` evaluated (eval mode) at every checkpoint,
            e.g. ``{"train": ..., "test": ...}``.
        checkpoints: epochs (``0`` = initialisation) at which parameters and metrics are recorded.
        on_epoch: called with the epoch number after each epoch.

    Returns:
        ``{"weights": [[W_m [B, ...]] per checkpoint], "biases": ..., "norms": ...,
        "<name>_loss": [B, C], "<name>_acc": [B, C]}`` on CPU, networks in the given order.
    """
    check_trainable(arch)
    device = train_x.device
    plan = TrainPlan(hparams, train_x.shape[0], batch_size, group_seed, device)
    init = init_params(arch, hparams, train_x.dtype)
    p = _stacked_params(arch, init, plan.order, device)
    trainable = [(t, True) for t in p["weights"]] + [(t, False) for key in ("biases", "norm_weight", "norm_bias")
                                                     for t in p[key] if t is not None]
    opt = _Optim(trainable, hparams, plan.order, device)
    keep = torch.tensor([1.0 - float(hparams[i]["dropout"]) for i in plan.order.tolist()], device=device)
    ckpts = sorted(set(int(c) for c in checkpoints))
    record: dict = {"params": [], **{f"{n}_{m}": [] for n in eval_sets for m in ("loss", "acc")}}

    def checkpoint() -> None:
        record["params"].append(_snapshot(arch, p, plan.row_of))
        for name, (x, y) in eval_sets.items():
            loss, acc = evaluate_group(arch, _sliced(p, plan.B), x, y)
            record[f"{name}_loss"].append(loss[plan.row_of].cpu())
            record[f"{name}_acc"].append(acc[plan.row_of].cpu())

    if 0 in ckpts:
        checkpoint()
    for epoch in range(1, epochs + 1):
        order = plan.epoch_order(epoch)
        gen = plan.noise_generator(epoch)
        noise = lambda shape: torch.rand(plan.B, *shape, generator=gen, device=device, dtype=train_x.dtype)
        for t in range(plan.max_steps):
            k = plan.active(t)
            idx = order[:k, t * batch_size:(t + 1) * batch_size]
            logits = forward_grouped(arch, _sliced(p, k), train_x[idx], training=True, keep=keep[:k], noise=noise)
            loss = F.cross_entropy(logits.transpose(1, 2), train_y[idx], reduction="none").mean(1).sum()
            loss.backward()
            opt.step(k)
        if epoch in ckpts:
            checkpoint()
        if on_epoch is not None:
            on_epoch(epoch)
    return _collate(record.pop("params"), record, arch)


def _collate(snaps: list[dict], record: dict, arch: Architecture) -> dict:
    """Per-checkpoint snapshots -> ``weights[m] [B, C, ...]`` etc.; metric lists -> ``[B, C]``."""
    out: dict = {}
    for key in ("weights", "biases", "norms"):
        out[key] = [None if snaps[0][key][m] is None else torch.stack([s[key][m] for s in snaps], 1)
                    for m in range(arch.num_layers)]
    return out | {k: torch.stack(v, 1) for k, v in record.items()}


# ----------------------------------------------------------------------------
# baseline: one network at a time with nn.Module and torch.optim
# ----------------------------------------------------------------------------

class _ReplayDropout(nn.Module):
    """Dropout whose mask is row ``row`` of the group's noise (to reproduce :func:`train_group` exactly)."""

    def __init__(self, p: float, row: int, source: dict) -> None:
        super().__init__()
        self.p, self.row, self.source = p, row, source

    def forward(self, h: Tensor) -> Tensor:
        if not self.training:
            return h
        keep = 1.0 - self.p
        r = self.source["noise"](tuple(h.shape))[self.row]
        return h * ((r < keep).to(h.dtype) / keep)


def _optimizer(model: nn.Module, hp: dict) -> torch.optim.Optimizer:
    from ..graph import _layer_modules

    decay = [m.weight for m, _ in _layer_modules(model)]
    ids = {id(t) for t in decay}
    rest = [t for t in model.parameters() if id(t) not in ids]
    groups = [{"params": decay, "weight_decay": float(hp["l2"])}, {"params": rest, "weight_decay": 0.0}]
    lr = float(hp["lr"])
    if hp["optimizer"] == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=ADAM_BETAS, eps=OPT_EPS)
    if hp["optimizer"] == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=RMSPROP_ALPHA, eps=OPT_EPS)
    return torch.optim.SGD(groups, lr=lr)


def train_plain(arch: Architecture, hparams: Sequence[dict], train_x: Tensor, train_y: Tensor,
                eval_sets: dict[str, tuple[Tensor, Tensor]], *, epochs: int, checkpoints: Sequence[int],
                batch_size: int = 32, group_seed: int = 0, replay_dropout: bool = False) -> dict:
    """The baseline: the networks of :func:`train_group`, trained one after another.

    Each is an ``nn.Sequential`` (``training_architecture(arch, dropout).build()``)
    with its ``torch.optim`` optimiser, the same initialisation, data subset,
    batches and checkpoints. ``replay_dropout=True`` draws the dropout masks
    from the group's noise stream (the same masks as :func:`train_group`);
    otherwise ``nn.Dropout`` draws its own. Returns the same dict as :func:`train_group`.
    """
    from ..graph import _layer_modules

    device = train_x.device
    plan = TrainPlan(hparams, train_x.shape[0], batch_size, group_seed, device)
    ckpts = sorted(set(int(c) for c in checkpoints))
    orders = {e: plan.epoch_order(e) for e in range(1, epochs + 1)}
    per_net = []
    for i, hp in enumerate(hparams):
        row = int(plan.row_of[i])
        init = init_params(arch, [hp], train_x.dtype)
        model = training_architecture(arch, float(hp["dropout"])).build().to(device=device, dtype=train_x.dtype)
        source: dict = {}
        if replay_dropout:
            _replace_dropout(model, row, source)
        with torch.no_grad():
            for (mod, _), w, b in zip(_layer_modules(model), init["weights"], init["biases"]):
                mod.weight.copy_(w[0])
                if mod.bias is not None:
                    mod.bias.copy_(b[0])
        opt = _optimizer(model, hp)
        snaps, metrics = [], {f"{n}_{m}": [] for n in eval_sets for m in ("loss", "acc")}

        def checkpoint() -> None:
            model.eval()
            mods = _layer_modules(model)
            snaps.append({"weights": [m.weight.detach().clone().cpu() for m, _ in mods],
                          "biases": [None if m.bias is None else m.bias.detach().clone().cpu() for m, _ in mods],
                          "norms": [None if n is None else torch.stack([n.weight, n.bias, n.running_mean,
                                                                        n.running_var], -1).detach().clone().cpu()
                                    for _, n in mods]})
            with torch.no_grad():
                for name, (x, y) in eval_sets.items():
                    logits = model(x)
                    metrics[f"{name}_loss"].append(F.cross_entropy(logits, y).cpu())
                    metrics[f"{name}_acc"].append((logits.argmax(-1) == y).float().mean().cpu())
            model.train()

        model.train()
        if 0 in ckpts:
            checkpoint()
        for epoch in range(1, epochs + 1):
            gen = plan.noise_generator(epoch)
            source["noise"] = lambda shape: torch.rand(plan.B, *shape, generator=gen, device=device,
                                                       dtype=train_x.dtype)
            for t in range(int(plan.steps[row])):
                idx = orders[epoch][row, t * batch_size:(t + 1) * batch_size]
                loss = F.cross_entropy(model(train_x[idx]), train_y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if epoch in ckpts:
                checkpoint()
        per_net.append((snaps, metrics))
    snaps = [{key: [None if per_net[0][0][c][key][m] is None else torch.stack([s[c][key][m] for s, _ in per_net])
                    for m in range(arch.num_layers)] for key in ("weights", "biases", "norms")}
             for c in range(len(ckpts))]
    record = {k: [torch.stack([mt[k][c] for _, mt in per_net]) for c in range(len(ckpts))] for k in per_net[0][1]}
    return _collate(snaps, record, arch)


def _replace_dropout(model: nn.Sequential, row: int, source: dict) -> None:
    for name, mod in list(model._modules.items()):
        if isinstance(mod, nn.Dropout):
            model._modules[name] = _ReplayDropout(mod.p, row, source)
        elif isinstance(mod, nn.Sequential):
            _replace_dropout(mod, row, source)
