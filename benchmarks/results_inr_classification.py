"""Reproduce the README's INR-classification results table (run by hand; CPU minutes).

    python benchmarks/results_inr_classification.py --out runs/results                # digits only
    python benchmarks/results_inr_classification.py --out runs/results \
        --mnist-root ../shared/datasets/mnist --mnist-train 2000 --mnist-val 500 --mnist-test 1000

Fits the INR splits (reused when present), trains every registered model with the
settings below and prints a markdown table of test accuracy (at the best validation
epoch) and wall time. Every run directory keeps its metrics.csv and pictures.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from neuralgraph.inr import INRDataset, build_inr_splits
from neuralgraph.train import TrainConfig, train

#: Per-model settings: small equivariant models that fit a 2-core CPU budget.
SETTINGS = {
    "nggnn": {"lr": 2e-3, "model_kwargs": {"hidden": 32, "num_layers": 3}},
    "ngt": {"lr": 2e-3, "model_kwargs": {"hidden": 32, "num_layers": 3}},
    "dwsnet": {"lr": 1e-3, "model_kwargs": {"hidden": 32, "num_layers": 4}},
    "mlp": {"lr": 1e-3, "model_kwargs": {}},
    "mlp-aug": {"lr": 1e-3, "model_kwargs": {}},
}


def run_all(name: str, data: Path, out: Path, epochs: int, models: list[str]) -> list[dict]:
    rows = []
    for model in models:
        t0 = time.perf_counter()
        cfg = TrainConfig(data=str(data), out=str(out / f"{name}_{model}"), model=model, epochs=epochs,
                          batch_size=32, **SETTINGS[model])
        res = train(cfg, resume=True, progress=False)
        rows.append({"data": name, "model": model, "params": res.num_params, "epochs": epochs,
                     "best_val_acc": res.best_val_acc, "test_acc": res.test_acc,
                     "train_time_s": res.train_time_s, "wall_s": time.perf_counter() - t0})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def describe(data: Path) -> str:
    ds = {s: INRDataset(data / f"{s}.pt") for s in ("train", "val", "test")}
    psnr = ds["train"].psnr
    return (f"{len(ds['train'])}/{len(ds['val'])}/{len(ds['test'])} INRs, "
            f"{ds['train'].meta['fit']['steps']} fit steps, train PSNR mean {psnr.mean():.1f} dB (min {psnr.min():.1f})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--models", nargs="+", default=list(SETTINGS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mnist-root", type=Path)
    p.add_argument("--mnist-train", type=int, default=2000)
    p.add_argument("--mnist-val", type=int, default=500)
    p.add_argument("--mnist-test", type=int, default=1000)
    p.add_argument("--mnist-epochs", type=int, default=8)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows, notes = [], []
    t0 = time.perf_counter()
    build_inr_splits("digits", args.out / "digits_inrs", progress=False)
    notes.append(f"digits: {describe(args.out / 'digits_inrs')}, fitted in {time.perf_counter() - t0:.0f}s")
    rows += run_all("digits", args.out / "digits_inrs", args.out, args.epochs, args.models)
    if args.mnist_root is not None:
        t0 = time.perf_counter()
        build_inr_splits("mnist", args.out / "mnist_inrs", root=args.mnist_root, n_train=args.mnist_train,
                         n_val=args.mnist_val, n_test=args.mnist_test, progress=False)
        notes.append(f"mnist: {describe(args.out / 'mnist_inrs')}, fitted in {time.perf_counter() - t0:.0f}s")
        rows += run_all("mnist", args.out / "mnist_inrs", args.out, args.mnist_epochs, args.models)
    print("\n".join(notes))
    print("\n| data | model | parameters | epochs | best val acc | test acc | train time |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['data']} | {r['model']} | {r['params']:,} | {r['epochs']} | {r['best_val_acc']:.1%} | "
              f"{r['test_acc']:.1%} | {r['train_time_s']:.0f} s |")
    (args.out / "results.json").write_text(json.dumps({"rows": rows, "notes": notes}, indent=2))


if __name__ == "__main__":
    main()
