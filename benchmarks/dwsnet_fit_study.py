"""Does DWSNet fit a small training set, and what stops it? (issue "Paper scale on this machine")

DWSNet trained on SIREN-initialised digit INRs stayed near chance even on its training set.
This study trains DWSNet on 1,000 MNIST INRs of two fits (``dwsinit1000``: the DWSNets
datasets' own initialisation, the paper-scale protocol; ``fixed``: the SIREN initialisation,
200 steps) for enough steps to fit them, one setting changed per row: the learning rate,
input normalisation, the reduction, the depth; NG-GNN (no probes) on the same INRs for
reference. Training accuracy is what it asks about; validation accuracy on 500 held-out INRs
says whether fitting them generalises. Two more rows train the reproduction's DWSNet setting
(batch 512, the DWSNets trainer's lr 5e-3, no warm-up or clipping) and the same at lr 1e-3 on
all 5,000 / 1,000 / 2,000 INRs of the study's fit.

Reads the fit-protocol study's datasets (``benchmarks/fit_protocol_study.sh fit``: ``mnist_<fit>``
under ``--study``) and writes, under ``--work``, the 1,000 / 500 / 500 subsets and one run per
row (resumable: run it again after any stop; finished runs are skipped). Rows are appended to
``--rows`` (JSON lines), one per finished run::

    OMP_NUM_THREADS=1 python benchmarks/dwsnet_fit_study.py --study ~/ng_runs/study \\
        --work ~/ng_runs/dws_fit --rows docs/results/dwsnet_fit_study.jsonl
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from reproduce_inr_classification import _commit, _machine  # noqa: E402  (the rows name commit and machine alike)

#: The base setting: DWSNet 32 x 4, max reduction, batch 32, AdamW lr 1e-3 (weight decay 5e-4),
#: one warm-up epoch then cosine, clipping at norm 10, normalised inputs.
BASE = {"model": "dwsnet", "model_kwargs": {"hidden": 32, "num_layers": 4, "reduce": "max"}, "lr": 1e-3,
        "batch_size": 32, "weight_decay": 5e-4, "warmup_epochs": 1.0, "clip_grad_norm": 10.0, "normalize": True}
#: One row per run: name, fit, and what differs from BASE.
ROWS = [
    ("base", "dwsinit1000", {}),
    ("lr 5e-3 (the DWSNets trainer's)", "dwsinit1000", {"lr": 5e-3}),
    ("lr 1e-4", "dwsinit1000", {"lr": 1e-4}),
    ("no input normalisation", "dwsinit1000", {"normalize": False}),
    ("mean reduction", "dwsinit1000", {"model_kwargs": {"reduce": "mean"}}),
    ("2 layers", "dwsinit1000", {"model_kwargs": {"num_layers": 2}}),
    ("no weight decay", "dwsinit1000", {"weight_decay": 0.0}),
    ("SIREN-init INRs (fit fixed)", "fixed", {}),
    ("NG-GNN, no probes", "dwsinit1000", {"model": "nggnn",
                                          "model_kwargs": {"hidden": 32, "num_layers": 4, "use_probes": False}}),
]
#: The DWSNets trainer's setting (batch 512, lr 5e-3, no warm-up or clipping; the reproduction's until these rows
#: moved it to lr 1e-3) against lr 1e-3, on all 5,000 / 1,000 / 2,000 INRs of the study's fit (60 epochs: 600 steps).
WIDE = {"batch_size": 512, "warmup_epochs": 0.0, "clip_grad_norm": 0.0}
ROWS_ALL = [
    ("batch 512, lr 5e-3, no warm-up or clipping (the reproduction's setting)", "dwsinit1000", {**WIDE, "lr": 5e-3}),
    ("batch 512, lr 1e-3, no warm-up or clipping", "dwsinit1000", {**WIDE, "lr": 1e-3}),
]
#: INRs per split of the subsets the ROWS train on (the first ones of each split of the study's fit).
SIZES = {"train": 1000, "val": 500, "test": 500}
#: The sizes of the fit-protocol study's datasets, which ROWS_ALL train on.
STUDY_SIZES = {"train": 5000, "val": 1000, "test": 2000}


def make_subset(src: Path, dst: Path) -> Path:
    """The first SIZES[split] INRs of each split of ``src`` (statistics recomputed for the subset)."""
    from neuralgraph.inr.files import load_inr_file, save_inr_dataset

    dst.mkdir(parents=True, exist_ok=True)
    for split, n in SIZES.items():
        out = dst / f"{split}.pt"
        if out.is_file():
            continue
        obj = load_inr_file(src / f"{split}.pt", mmap=True)
        save_inr_dataset(out, [w[:n].clone() for w in obj["weights"]], [b[:n].clone() for b in obj["biases"]],
                         obj["labels"][:n].clone(), obj["arch"], num_classes=obj["meta"]["num_classes"],
                         source_index=obj["source_index"][:n].clone(), psnr=obj["psnr"][:n].clone(),
                         meta={k: v for k, v in obj["meta"].items() if k != "num_classes"})
    return dst


def config_of(name: str, change: dict, data: Path, out: Path, epochs: int, seed: int):
    """The TrainConfig of one row: BASE with ``change`` (``model_kwargs`` merged, not replaced)."""
    from neuralgraph.train import TrainConfig

    s = {**BASE, **{k: v for k, v in change.items() if k != "model_kwargs"}}
    kwargs = dict(BASE["model_kwargs"]) if s["model"] == BASE["model"] else {}
    kwargs.update(change.get("model_kwargs", {}))
    s["model_kwargs"] = kwargs
    return TrainConfig(data=str(data), out=str(out), epochs=epochs, seed=seed, n_reconstructions=0, **s)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--study", type=Path, required=True, help="directory of the fit-protocol study's datasets")
    p.add_argument("--work", type=Path, required=True, help="subsets and run directories")
    p.add_argument("--rows", type=Path, required=True, help="JSON-lines file the finished runs are appended to")
    p.add_argument("--epochs", type=int, default=40, help="epochs of the ROWS (1,000 INRs)")
    p.add_argument("--epochs-all", type=int, default=60, help="epochs of the ROWS_ALL (5,000 INRs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="*", default=None, help="row names to run (default: all)")
    args = p.parse_args(argv)

    import torch

    from neuralgraph.train import train

    torch.set_num_threads(1)
    done = {json.loads(line)["row"] for line in args.rows.read_text().splitlines() if line.strip()} \
        if args.rows.is_file() else set()
    jobs = [(*row, False) for row in ROWS] + [(*row, True) for row in ROWS_ALL]
    for name, fit, change, on_all in jobs:
        if (args.only and name not in args.only) or name in done:
            continue
        data = args.study / f"mnist_{fit}" if on_all else make_subset(args.study / f"mnist_{fit}",
                                                                       args.work / f"mnist_{fit}_1000")
        slug = "".join(c if c.isalnum() else "_" for c in name).strip("_")
        cfg = config_of(name, change, data, args.work / f"run_{slug}_s{args.seed}",
                        args.epochs_all if on_all else args.epochs, args.seed)
        t = time.monotonic()
        res = train(cfg, resume=True, progress=False, verbose=False)
        hist = res.history
        row = {"row": name, "fit": fit, "model": cfg.model, "model_kwargs": cfg.model_kwargs, "lr": cfg.lr,
               "normalize": cfg.normalize, "weight_decay": cfg.weight_decay, "batch_size": cfg.batch_size,
               "epochs": cfg.epochs, "seed": cfg.seed, "n": STUDY_SIZES if on_all else SIZES,
               "warmup_epochs": cfg.warmup_epochs, "clip_grad_norm": cfg.clip_grad_norm,
               "train_acc_last": hist[-1]["train_acc"], "train_acc_max": max(h["train_acc"] for h in hist),
               "train_acc_at": {e: hist[e - 1]["train_acc"] for e in (10, 20, 40, 60) if e <= len(hist)},
               "best_val_acc": max(h["val_acc"] for h in hist), "test_acc": res.test_metrics.get("acc"),
               "seconds": round(time.monotonic() - t), "commit": _commit(),
               "machine": _machine("cpu", 1)}
        args.rows.parent.mkdir(parents=True, exist_ok=True)
        with open(args.rows, "a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
        print(f"{name}: train {row['train_acc_last']:.3f} (max {row['train_acc_max']:.3f}), "
              f"best val {row['best_val_acc']:.3f}, {row['seconds']} s", flush=True)


if __name__ == "__main__":
    main()
