"""Self-supervised embeddings of sine-wave INRs (DWSNets' experiment) at a CPU-feasible size.

Fits ``a sin(b x)`` SIRENs once (:func:`neuralgraph.inr.sines.build_sine_splits`), then
trains each processor with the ``ssl`` task (two perturbed views per INR, InfoNCE,
16-dim embeddings) on the same splits and reports the linear probe's test MSE on
``(a, b)`` (averaged over both targets, the papers' number) beside the anchors of the
DWSNets / GMN tables. Rows: NG-GNN, NG-T, DWSNet, and the flat MLP without and with
hidden-permutation augmentation (``--augment permute=true``; the equivariant models
are invariant to it). ``mean`` is the MSE of predicting the train mean. ``untrained`` is the
same probe on the embeddings of the model at its initialisation (same seed): the control that
says how much the contrastive training adds to what the architecture (e.g. NG-GNN / NG-T's
probe features, which run the INR) gives for free.

Run by hand (minutes per model on a free CPU)::

    python benchmarks/results_ssl.py --work runs/ssl

A run directory that already holds ``results.json`` is reused (rerun to rebuild the table).
Writes ``<work>/results.md`` and ``<work>/results.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neuralgraph.inr.sines import build_sine_splits  # noqa: E402
from neuralgraph.io import atomic_write_text  # noqa: E402
from neuralgraph.tasks.ssl import Contrastive  # noqa: E402


#: label -> (model, model kwargs, augment)
MODELS = {
    "NG-GNN": ("nggnn", {"hidden": 16, "num_layers": 2}, {}),
    "NG-T": ("ngt", {"hidden": 16, "num_layers": 2}, {}),
    "DWSNet": ("dwsnet", {"hidden": 16, "num_layers": 2}, {}),
    "MLP": ("mlp", {}, {}),
    "MLP + perm. aug.": ("mlp", {}, {"permute": True}),
}
#: Test MSE of the linear probe in the papers (DWSNets Table 3; GMN, Lim et al. 2024).
ANCHORS = {"DWSNets (paper)": 1.39, "GMN (paper)": 1.13}


def _untrained_probe(data: Path, name: str, kw: dict, seed: int) -> float:
    """Test MSE of the linear probe on the embeddings of the model at initialisation (the trainer's seed)."""
    from neuralgraph.train import build_model, load_splits

    splits = load_splits(data)
    task = Contrastive()
    task.setup(splits)
    torch.manual_seed(seed)
    model = build_model(name, task.out_dim(), arch=splits["train"].arch, head=task.head, **kw)
    return task.probe(model, splits, "cpu", 256)["probe_mse"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "ssl")
    p.add_argument("--n-train", type=int, default=300)
    p.add_argument("--n-val", type=int, default=100)
    p.add_argument("--n-test", type=int, default=300)
    p.add_argument("--fit-steps", type=int, default=150)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32, help="INRs per step (each gives two views)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from neuralgraph.train import TrainConfig, train

    data = args.work / "data"
    t0 = time.perf_counter()
    build_sine_splits(data, args.n_train, args.n_val, args.n_test, steps=args.fit_steps, seed=args.seed)
    fit_s = time.perf_counter() - t0
    from neuralgraph.inr import INRDataset

    mse = torch.cat([INRDataset(data / f"{s}.pt").meta["fit_mse"] for s in ("train", "val", "test")])
    print(f"data: {args.n_train}/{args.n_val}/{args.n_test} INRs, {args.fit_steps} steps, fit MSE median "
          f"{mse.median():.2e} (max {mse.max():.2e}) in {fit_s:.0f}s (0 if reused)", flush=True)
    rows = []
    for label in args.models:
        name, kw, augment = MODELS[label]
        out = args.work / label.replace(" ", "").replace(".", "").replace("+", "_")
        res_path = out / "results.json"
        if not res_path.is_file():
            cfg = TrainConfig(data=str(data), out=str(out), model=name, model_kwargs=kw, task="ssl",
                              epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                              augment=augment)
            train(cfg, progress=False, resume=True)
        r = json.loads(res_path.read_text())
        untrained = _untrained_probe(data, name, kw, args.seed)
        rows.append({"model": label, "params": r["num_params"], "probe_test_mse": r["test_probe_mse"],
                     "mse_a": r["test_probe_mse_a"], "mse_b": r["test_probe_mse_b"],
                     "mean_mse": r["test_mean_mse"], "val_infonce": r["best_val_loss"],
                     "best_epoch": r["best_epoch"], "train_time_s": r["train_time_s"],
                     "untrained_probe_mse": untrained})
        print(rows[-1], flush=True)
    lines = ["| model | params | probe test MSE (a, b) | MSE a | MSE b | untrained (init) | train time |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['params']:,} | {r['probe_test_mse']:.2f} | {r['mse_a']:.2f} | "
                     f"{r['mse_b']:.2f} | {r['untrained_probe_mse']:.2f} | {r['train_time_s'] / 60:.1f} min |")
    if rows:
        lines.append(f"| predict the train mean | - | {rows[0]['mean_mse']:.2f} | | | | |")
    for k, v in ANCHORS.items():
        lines.append(f"| {k} | - | {v:.2f} | | | | |")
    setting = (f"{args.n_train}/{args.n_val}/{args.n_test} sine INRs ({args.fit_steps} fit steps), {args.epochs} "
               f"epochs, batch {args.batch_size} INRs, lr {args.lr}, seed {args.seed}, "
               f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads")
    text = "\n".join(lines) + f"\n\n{setting}\n"
    print(text)
    atomic_write_text(text, args.work / "results.md")
    atomic_write_text(json.dumps({"setting": vars(args) | {"work": str(args.work)}, "rows": rows,
                                  "anchors": ANCHORS, "fit_s": fit_s}, indent=2) + "\n", args.work / "results.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
