"""Zoo training throughput: networks x epochs per second, vectorised vs one network at a time.

Run by hand (not a test)::

    python benchmarks/bench_zoo.py --networks 64 --n-train 1024 --threads 2
    python benchmarks/bench_zoo.py --device cuda --networks 1024 --n-train 4096

Same run, side by side, on the same networks (Small-CNN-Zoo hyper-parameters,
MNIST-like 14x14 inputs; real MNIST when --root is given, else random images
with random labels of the same shape: throughput does not depend on the pixel
values): ``train_group`` (grouped convolutions, per-network optimisers)
against ``train_plain`` (``nn.Module`` + ``torch.optim``, one network after
another; it is timed on ``--plain`` networks and scaled per network). Also the
forward + backward of one step: grouped convolutions, im2col (``unfold``) +
batched matmul, and ``torch.func.vmap(functional_call)`` over stacked parameters.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="small_cnn", choices=["small_cnn", "mlp", "wild_park"])
    ap.add_argument("--networks", type=int, default=64)
    ap.add_argument("--plain", type=int, default=8, help="networks trained by the one-at-a-time baseline")
    ap.add_argument("--n-train", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--root", default=None, help="MNIST IDX directory (default: random 14x14 images)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from neuralgraph.zoo import forward_grouped, forward_vmap, sample_zoo, train_group, train_plain
    from neuralgraph.zoo.train import conv_impl
    from neuralgraph.zoo.files import load_zoo_data
    from neuralgraph.zoo.specs import init_params

    dev = torch.device(args.device)
    if args.root:
        d = load_zoo_data("mnist", args.root, 14, n_train=args.n_train, n_test=1000)
        x, y, tx, ty = d["train_x"], d["train_y"], d["test_x"], d["test_y"]
    else:
        g = torch.Generator().manual_seed(0)
        x, y = torch.rand(args.n_train, 1, 14, 14, generator=g), torch.randint(0, 10, (args.n_train,), generator=g)
        tx, ty = x[:1000], y[:1000]
    x, y, tx, ty = x.to(dev), y.to(dev), tx.to(dev), ty.to(dev)
    archs, hps = sample_zoo(args.family, 4 * args.networks, seed=0, image_size=14)
    arch = archs[0]
    group = [h for h in hps if h["arch"] == 0][: args.networks]
    ev = {"test": (tx, ty)}
    kw = dict(epochs=args.epochs, checkpoints=[args.epochs], batch_size=32, group_seed=0)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    sync(); t = time.perf_counter()
    train_group(arch, group, x, y, ev, **kw)
    sync(); t_vec = time.perf_counter() - t
    plain = group[: args.plain]
    t = time.perf_counter()
    train_plain(arch, plain, x, y, ev, **kw)
    sync(); t_plain = time.perf_counter() - t
    frac = sum(h["train_fraction"] for h in group) / len(group)
    print(f"{args.family} {arch.widths} on {dev} ({args.threads} threads), {args.n_train} training images "
          f"(mean train fraction {frac:.2f}), {args.epochs} epoch(s)")
    vec = len(group) * args.epochs / t_vec
    base = len(plain) * args.epochs / t_plain
    print(f"vectorised ({len(group)} networks): {vec:8.2f} network-epochs/s  ({t_vec:.1f} s)")
    print(f"plain loop ({len(plain)} networks): {base:8.2f} network-epochs/s  ({t_plain:.1f} s)  -> speed-up {vec / base:.1f}x")

    # one forward + backward step: grouped convolutions vs vmap(functional_call)
    if arch.has_norm:
        return
    p = init_params(arch, group)
    W = [w.to(dev).requires_grad_() for w in p["weights"]]
    bias = [b.to(dev).requires_grad_() for b in p["biases"]]
    xb = x[torch.randint(0, x.shape[0], (len(group), 32))]
    yb = y[torch.randint(0, y.shape[0], (len(group), 32))]

    def step(fn):
        logits = fn()
        F.cross_entropy(logits.transpose(1, 2), yb, reduction="none").mean(1).sum().backward()
        for t_ in W + bias:
            t_.grad = None

    fns = {"grouped": lambda: forward_grouped(arch, {"weights": W, "biases": bias}, xb, conv="grouped"),
           "unfold": lambda: forward_grouped(arch, {"weights": W, "biases": bias}, xb, conv="unfold"),
           "vmap": lambda: forward_vmap(arch, W, bias, xb)}
    times = {k: [] for k in fns}
    for _ in range(2):
        for fn in fns.values():
            step(fn)
    for _ in range(5):                       # interleaved repeats, best of 5
        for k, fn in fns.items():
            sync(); t = time.perf_counter(); step(fn); sync()
            times[k].append(time.perf_counter() - t)
    g_, u_, v_ = min(times["grouped"]), min(times["unfold"]), min(times["vmap"])
    print(f"one step, {len(group)} networks x 32 images: grouped {g_ * 1e3:.1f} ms, unfold {u_ * 1e3:.1f} ms, "
          f"vmap {v_ * 1e3:.1f} ms (unfold / grouped {u_ / g_:.2f}x, vmap / grouped {v_ / g_:.2f}x; "
          f"training above used conv={conv_impl(dev)!r})")


if __name__ == "__main__":
    main()
