"""Benchmark: batched SIREN fitting throughput (INR-steps/s) and PSNR vs steps.

Run by hand from the repository root (not part of the tests)::

    python benchmarks/bench_fit.py                   # 2 threads, 256 MNIST images
    python benchmarks/bench_fit.py --threads 1 --n 1024 --json out.json

Compares the naive batched baseline (autograd + torch.optim.Adam over the whole
stack, torch intra-op threads) with the fast path of ``fit_sirens`` on 28x28
MNIST images from ``../shared/datasets/mnist``, and reports the PSNR reached
after 100/200/500 steps. Timings are best-of ``--repeats`` (the machine may be
shared; the median is printed too).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from neuralgraph.data import load_digits, load_mnist  # noqa: E402
from neuralgraph.inr import DEFAULT_LR, fit_sirens  # noqa: E402


def throughput(images, steps: int, repeats: int, **kw) -> tuple[float, float]:
    fit_sirens(images[: max(1, len(images) // 8)], steps=2, progress=False, **kw)  # warm-up
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        fit_sirens(images, steps=steps, progress=False, **kw)
        rates.append(len(images) * steps / (time.perf_counter() - t))
    return max(rates), statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "mnist"))
    ap.add_argument("--n", type=int, default=256, help="INRs fitted at once in the timing runs")
    ap.add_argument("--steps", type=int, default=30, help="steps per timing run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=DEFAULT_LR)
    ap.add_argument("--psnr-n", type=int, default=256, help="images for the PSNR-vs-steps run")
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    images, _ = load_mnist(args.data, "train", limit=max(args.n, args.psnr_n))
    x = images[: args.n]
    res: dict = {"threads": args.threads, "n": args.n, "steps": args.steps, "lr": args.lr,
                 "widths": [2, 32, 32, 1], "image": "MNIST 28x28"}
    print(f"# SIREN fitting, [2,32,32,1], w0=30, {args.n} MNIST 28x28 images, "
          f"{args.threads} thread(s), best/median of {args.repeats}")
    if not args.skip_naive:
        best, med = throughput(x, args.steps, args.repeats, method="autograd", batch_size=args.n,
                               workers=1, lr=args.lr)
        res["naive"] = {"best": best, "median": med}
        print(f"naive autograd baseline : {best:9.0f} INR-steps/s (median {med:.0f})")
    best, med = throughput(x, args.steps, args.repeats, method="fast", lr=args.lr)
    res["fast"] = {"best": best, "median": med}
    print(f"fast path               : {best:9.0f} INR-steps/s (median {med:.0f})")
    if "naive" in res:
        print(f"speed-up                : {best / res['naive']['best']:9.2f}x")

    marks = [100, 200, 500]
    for name, imgs in (("MNIST 28x28", images[: args.psnr_n]), ("digits 8x8", load_digits()[0][: args.psnr_n])):
        t = time.perf_counter()
        fit = fit_sirens(imgs, steps=max(marks), lr=args.lr, progress=False, record_steps=marks)
        dt = time.perf_counter() - t
        rows = {k: {"mean": float(v.mean()), "median": float(v.median()), "min": float(v.min())}
                for k, v in fit.history.items()}
        res[f"psnr {name}"] = rows
        print(f"PSNR (dB) on {len(imgs)} {name} images, lr={args.lr:g}  ({dt:.1f} s for {max(marks)} steps)")
        for k in marks:
            r = rows[k]
            print(f"  {k:4d} steps: mean {r['mean']:6.2f}  median {r['median']:6.2f}  min {r['min']:6.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
