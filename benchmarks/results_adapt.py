"""Zero-shot domain adaptation of zoo classifiers by editing their weights (``--task adapt``; CPU minutes).

    python benchmarks/results_adapt.py --out runs/adapt_results --root-mnist ../shared/datasets/mnist \
        --root-fashion ../shared/datasets/fashion_mnist --images docs/images

(defaults: zoos of 500 MLPs 7x7 -> 32 -> 10, 3 epochs on 5,000 source images; adapters 40 epochs.)

For each data set: generates (or reuses) a zoo of MLP classifiers
(``generate_zoo(family="mlp", image_size=..., hidden_choices=((hidden,),))``; ReLU and tanh),
keeps those with source test accuracy >= ``--min-acc``, splits them by network
(70 / 15 / 15) and compares on the same held-out classifiers and the same
target test images (the corrupted official test split, :mod:`neuralgraph.data.corrupt`):

* no adaptation (the input classifiers on target images);
* fine-tuning every test classifier on the same ``n_images`` target training images
  (Adam, vectorised over networks; an upper reference that trains per classifier);
* the flat MLP adapter (``--model mlp``, equivariant head: predicts a delta of the weight
  vector), without and with hidden-permutation augmentation;
* DWSNet, NG-GNN and NG-T adapters (equivariant heads, residual edits).

Prints a markdown table of target test accuracy (mean over held-out classifiers),
the gain over no adaptation, train time and the machine; writes results_adapt.json and,
with ``--images DIR``, copies the pictures of the ``--picture-model`` run there as
``adapt_examples.png`` / ``adapt_scatter.png``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import torch

from neuralgraph.graph import batch_to_stacked, graph_archs
from neuralgraph.tasks.adapt import Adapt, finetune_stacked, grouped_logits
from neuralgraph.train import TrainConfig, train
from neuralgraph.zoo import ZooDataset, generate_zoo

#: Per-model settings (small models for a 2-core CPU; probes sized to the zoo images).
SETTINGS = {
    "dwsnet": {"model": "dwsnet", "lr": 1e-3, "model_kwargs": {"hidden": 16, "num_layers": 3}, "augment": {}},
    "nggnn": {"model": "nggnn", "lr": 1e-3, "model_kwargs": {"hidden": 32, "num_layers": 3}, "augment": {}},
    "ngt": {"model": "ngt", "lr": 1e-3, "model_kwargs": {"hidden": 32, "num_layers": 3}, "augment": {}},
    "mlp": {"model": "mlp", "lr": 1e-3, "model_kwargs": {"hidden": (256, 256)}, "augment": {}},
    "mlp-perm": {"model": "mlp", "lr": 1e-3, "model_kwargs": {"hidden": (256, 256)}, "augment": {"permute": True}},
}
LABELS = {"none": "no adaptation", "finetune": "fine-tune each classifier (reference)", "mlp": "flat MLP",
          "mlp-perm": "flat MLP + permutation aug.", "dwsnet": "DWSNet", "nggnn": "NG-GNN", "ngt": "NG-T"}


def machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} cores visible, torch {torch.__version__}, {torch.get_num_threads()} threads"


def reference_rows(task: Adapt, splits: dict, steps: int, lr: float, batch_images: int) -> list[dict]:
    """No adaptation and fine-tuning of the test classifiers, both on the target test images."""
    view = splits["test"]
    b = view.batch(torch.arange(len(view)))
    archs = graph_archs(b)
    w, bias = batch_to_stacked(b)
    xt, yt = task.images["test"]
    with torch.no_grad():
        none = (grouped_logits(archs, w, bias, xt).argmax(-1) == yt).float().mean(1)
    t0 = time.perf_counter()
    x, y = task.images["train"]
    fw, fb = finetune_stacked(archs, w, bias, x, y, steps=steps, lr=lr, batch_images=batch_images)
    t_ft = time.perf_counter() - t0
    with torch.no_grad():
        ft = (grouped_logits(archs, fw, fb, xt).argmax(-1) == yt).float().mean(1)
    return [{"model": "none", "acc": float(none.mean()), "train_time_s": None, "per_net": none.tolist()},
            {"model": "finetune", "acc": float(ft.mean()), "train_time_s": t_ft, "per_net": ft.tolist(),
             "note": f"{steps} Adam steps, lr {lr}, {batch_images} images per step, all test classifiers at once"}]


def print_table(rows: list[dict]) -> None:
    """The markdown table of the rows (one per data set and method)."""
    print(f"\nmachine: {machine()}")
    print("\n| data | method | parameters | target test accuracy | gain over no adaptation | train time |")
    print("|---|---|---:|---:|---:|---:|")
    base = {r["dataset"]: r["acc"] for r in rows if r["model"] == "none"}
    for r in rows:
        t = "-" if r["train_time_s"] is None else f"{r['train_time_s'] / 60:.1f} min"
        if r["acc"] is None:
            print(f"| {r['dataset']} | {LABELS[r['model']]} | - | not run | - | - |")
            continue
        gain = "-" if r["model"] == "none" else f"{100 * (r['acc'] - base[r['dataset']]):+.1f}"
        params = f"{r['params']:,}" if r.get("params") else "-"
        print(f"| {r['dataset']} | {LABELS[r['model']]} | {params} | {r['acc']:.2%} | {gain} | {t} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--root-mnist", type=Path, required=True)
    p.add_argument("--root-fashion", type=Path)
    p.add_argument("--datasets", nargs="+", default=["mnist", "fashion_mnist"])
    p.add_argument("--num-networks", type=int, default=500)
    p.add_argument("--zoo-epochs", type=int, default=3)
    p.add_argument("--n-train", type=int, default=5000, help="source training images of the zoo")
    p.add_argument("--image-size", type=int, default=7, help="zoo image side (7 or 14; 28 // size pixels averaged)")
    p.add_argument("--hidden", type=int, default=32, help="hidden width of the zoo's one-hidden-layer MLPs")
    p.add_argument("--min-acc", type=float, default=0.5)
    p.add_argument("--n-images", type=int, default=2000, help="target training images (adapters and fine-tuning)")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=16, help="classifiers per adapter training step")
    p.add_argument("--images-per-step", type=int, default=256)
    p.add_argument("--models", nargs="+", default=list(SETTINGS))
    p.add_argument("--finetune-steps", type=int, default=200)
    p.add_argument("--finetune-lr", type=float, default=1e-3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--images", type=Path, help="copy the pictures of --picture-model's MNIST run here")
    p.add_argument("--picture-model", default="dwsnet")
    p.add_argument("--table-only", action="store_true", help="print the table of OUT/results_adapt.json and stop")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.table_only:
        print_table(json.loads((args.out / "results_adapt.json").read_text()))
        return
    roots = {"mnist": args.root_mnist, "fashion_mnist": args.root_fashion}
    rows: list[dict] = []
    out_json = args.out / "results_adapt.json"
    for dataset in args.datasets:
        root = roots.get(dataset)
        if root is None:
            print(f"skipping {dataset}: no root given", flush=True)
            continue
        t0 = time.perf_counter()
        path = generate_zoo(args.out / f"{dataset}_mlp.pt", family="mlp", dataset=dataset, root=root,
                            num_networks=args.num_networks, epochs=args.zoo_epochs, image_size=args.image_size,
                            n_train=args.n_train, n_test=2000, n_train_eval=500, hidden_choices=((args.hidden,),),
                            device=args.device, progress=False)
        zoo = ZooDataset(path)
        acc = zoo.targets()
        zoo_note = (f"{dataset}: {len(zoo)} MLPs {args.image_size}x{args.image_size}->{args.hidden}->10 (ReLU/tanh), "
                    f"source test accuracy mean {acc.mean():.1%}, {int((acc >= args.min_acc).sum())} with >= "
                    f"{args.min_acc:.0%}; zoo made in {time.perf_counter() - t0:.0f}s")
        print(zoo_note, flush=True)
        task_kwargs = {"root": str(root), "n_images": args.n_images, "images_per_step": args.images_per_step,
                       "min_acc": args.min_acc}
        task = Adapt(**task_kwargs)
        splits = task.load_splits(path, normalize=False)
        n = {k: len(v) for k, v in splits.items()}
        for r in reference_rows(task, splits, args.finetune_steps, args.finetune_lr, 128):
            rows.append({"dataset": dataset, **r, "n": n, "zoo": zoo_note})
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "per_net"}), flush=True)
        for name in args.models:
            s = SETTINGS[name]
            kw = dict(s["model_kwargs"])
            if name in ("nggnn", "ngt"):
                kw["probe_image_size"] = args.image_size
            cfg = TrainConfig(data=str(path), out=str(args.out / f"{dataset}_{name}"), task="adapt", model=s["model"],
                              model_kwargs=kw, task_kwargs=task_kwargs, epochs=args.epochs,
                              batch_size=args.batch_size, lr=s["lr"], normalize=False, device=args.device,
                              augment=s["augment"])
            try:
                res = train(cfg, resume=True, progress=False)
            except ImportError as e:                       # a processor that cannot be imported in this checkout
                print(f"{name}: not run ({e})", flush=True)
                rows.append({"dataset": dataset, "model": name, "acc": None, "train_time_s": None, "n": n,
                             "zoo": zoo_note, "note": f"not run: {e}"})
                continue
            rows.append({"dataset": dataset, "model": name, "acc": res.test_metrics["acc"],
                         "unadapted": res.test_metrics["unadapted"], "params": res.num_params,
                         "best_epoch": res.best_epoch, "train_time_s": res.train_time_s, "n": n, "zoo": zoo_note})
            print(json.dumps(rows[-1]), flush=True)
            args.out.mkdir(parents=True, exist_ok=True)
            out_json.write_text(json.dumps(rows, indent=2))          # partial results survive
            if args.images is not None and dataset == "mnist" and name == args.picture_model:
                args.images.mkdir(parents=True, exist_ok=True)
                for f in ("adapt_examples.png", "adapt_scatter.png"):
                    shutil.copyfile(Path(cfg.out) / f, args.images / f)
    out_json.write_text(json.dumps(rows, indent=2))
    print_table(rows)


if __name__ == "__main__":
    main()
