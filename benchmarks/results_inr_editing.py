"""Reproduce the README's INR-editing (dilation) table (run by hand; CPU minutes).

    python benchmarks/results_inr_editing.py --out runs/editing --mnist-root ../shared/datasets/mnist \
        --n-train 2000 --n-val 500 --n-test 1000 --epochs 6

Fits an MNIST INR subset (reused when present), trains the equivariant editors
(NG-GNN, NG-T, DWSNet) and the flat-MLP baseline on ``--task edit`` with the
settings below, and prints a markdown table of the test MSE between the edited
INR rendered on the 28x28 grid and the dilated image, beside the no-edit baseline
(the input INR itself against the dilated image). Every run directory keeps its
metrics.csv, learning curves and edits.png.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from neuralgraph.inr import INRDataset, build_inr_splits
from neuralgraph.train import TrainConfig, train

#: Per-model settings: small models that fit a 2-core CPU budget.
SETTINGS = {
    "nggnn": {"lr": 2e-3, "model_kwargs": {"hidden": 32, "num_layers": 3}},
    "ngt": {"lr": 2e-3, "model_kwargs": {"hidden": 32, "num_layers": 3}},
    "dwsnet": {"lr": 1e-3, "model_kwargs": {"hidden": 32, "num_layers": 4}},
    "mlp": {"lr": 1e-3, "model_kwargs": {"hidden": (256, 256)}},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--mnist-root", type=Path, required=True)
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--n-val", type=int, default=500)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--models", nargs="+", default=list(SETTINGS))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = args.out / "mnist_inrs"
    t0 = time.perf_counter()
    build_inr_splits("mnist", data, root=args.mnist_root, n_train=args.n_train, n_val=args.n_val,
                     n_test=args.n_test, progress=False)
    train_split = INRDataset(data / "train.pt")
    note = (f"mnist: {len(train_split)}/{args.n_val}/{args.n_test} INRs, {train_split.meta['fit']['steps']} fit "
            f"steps, train PSNR mean {train_split.psnr.mean():.1f} dB; fitted in {time.perf_counter() - t0:.0f}s")
    print(note, flush=True)
    rows = []
    for model in args.models:
        cfg = TrainConfig(data=str(data), out=str(args.out / f"edit_{model}"), task="edit", model=model,
                          epochs=args.epochs, batch_size=32, **SETTINGS[model])
        res = train(cfg, resume=True, progress=False)
        rows.append({"model": model, "params": res.num_params, "epochs": args.epochs,
                     "test_mse": res.test_metrics["loss"], "unedited_mse": res.test_metrics["unedited"],
                     "best_epoch": res.best_epoch, "train_time_s": res.train_time_s})
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{note}\n\n| model | parameters | epochs | test MSE | train time |\n|---|---|---|---|---|")
    print(f"| no edit (input INR vs dilated image) | 0 | - | {rows[0]['unedited_mse']:.2e} | - |")
    for r in rows:
        print(f"| {r['model']} | {r['params']:,} | {r['epochs']} | {r['test_mse']:.2e} | "
              f"{r['train_time_s'] / 60:.1f} min |")
    (args.out / "results_editing.json").write_text(json.dumps({"rows": rows, "note": note}, indent=2))


if __name__ == "__main__":
    main()
