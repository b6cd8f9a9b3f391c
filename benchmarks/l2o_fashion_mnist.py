"""Learning to optimize on Fashion-MNIST (issue 29): meta-train FF / NG-GNN / NG-T, meta-test against tuned Adam.

Resumable and detached-friendly: start it, re-invoke the same command after any stop, read the page::

    setsid nohup python benchmarks/l2o_fashion_mnist.py --work ~/ng_runs/l2o --data-root ../shared/datasets \
        --scale cpu --threads 1 > ~/ng_runs/l2o/log.txt 2>&1 &
    cat ~/ng_runs/l2o/results.md

In order, each step resumable:

1. Meta-trains one learned optimizer per ``--processors`` entry (``none`` = the per-parameter FF
   baseline, ``nggnn``, ``ngt``) with :func:`neuralgraph.l2o.meta_train` in ``<work>/run_<processor>``
   (``last.pt`` rewritten after every outer step; a stop loses at most the outer step in progress).
2. Meta-tests them with :func:`neuralgraph.l2o.evaluate_optimizers` on Fashion-MNIST (the
   meta-training task: fresh networks, the held-out validation images choose Adam's learning
   rate, the official test images are reported), MNIST and corrupted Fashion-MNIST (unseen
   tasks; CIFAR-10, the paper's unseen task, is not available here), ``--seeds`` seeds, against
   ``torch.optim.Adam`` at every learning rate of the grid (cached per task and optimizer in
   ``<work>/eval/cache``).
3. Appends one JSON line per (task, optimizer) to ``<work>/results.jsonl`` (once): test accuracy
   mean and std over seeds, Adam's tuned learning rate, the meta-training wall time and outer
   steps, the settings, the commit of the code and the machine; writes ``<work>/results.md``
   (tables, meta-training times) beside ``<work>/eval/curves_<task>.png``.

Scales (:data:`SCALES`): ``tiny`` runs end to end in minutes (a smoke test of the pipeline, not a
result); ``cpu`` is the real run, sized for a few hours on one thread of this 2-core CPU (see
docs/l2o.md for the timing and the estimate). ``--hours`` stops meta-training after that long in
this call (run again to continue).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_inr_classification import _commit, _machine  # noqa: E402  (one definition of both)

from neuralgraph.io import atomic_write_text, lock_directory  # noqa: E402
from neuralgraph.l2o import MetaTrainConfig, TASKS, evaluate_optimizers, load_run, meta_train  # noqa: E402
from neuralgraph.l2o.report import results_table, summarise  # noqa: E402

#: Meta-training (``train``) and meta-testing (``test``) settings of each scale.
SCALES = {
    "tiny": {"train": dict(image_size=7, channels=4, cnn_layers=2, hidden=8, num_layers=1, context=4, ff_hidden=16,
                           batch_size=32, unroll=5, horizon=20, optimizees=2, outer_steps=6, meta_lr=1e-3,
                           n_val=500, n_train=3000, validate_every=3, validate_steps=20, validate_seeds=1),
             "test": dict(steps=40, seeds=2, eval_every=20, adam_lrs=(1e-3, 1e-2), batch_size=32, n_train=3000,
                          n_test=500)},
    "cpu": {"train": dict(image_size=14, channels=16, cnn_layers=3, hidden=16, num_layers=2, context=8, ff_hidden=32,
                          batch_size=128, unroll=100, horizon=1000, optimizees=4, outer_steps=300, meta_lr=1e-3,
                          n_val=10000, validate_every=25, validate_steps=1000, validate_seeds=2),
            "test": dict(steps=1000, seeds=5, eval_every=100, adam_lrs=(3e-4, 1e-3, 3e-3, 1e-2, 3e-2))},
}
#: The neural-graphs paper's Fashion-MNIST test accuracies after 1,000 steps (Kofinas et al., 2024, table 5).
PAPER = {"adam": 80.97, "ff": 85.08, "nggnn": 85.91, "ngt": 86.52}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True, help="work directory (runs, evaluation, results)")
    p.add_argument("--data-root", type=Path, required=True, help="directory holding fashion_mnist/ and mnist/")
    p.add_argument("--scale", choices=list(SCALES), default="cpu")
    p.add_argument("--processors", nargs="+", default=["none", "nggnn", "ngt"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--hours", type=float, default=None, help="stop meta-training after this long in this call")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    scale = SCALES[args.scale]
    work = args.work
    with lock_directory(work, "l2o benchmark directory"):
        start = time.monotonic()
        runs = []
        for proc in args.processors:
            cfg = MetaTrainConfig(out=str(work / f"run_{proc}"), data_root=str(args.data_root), processor=proc,
                                  seed=args.seed, threads=args.threads, **scale["train"])
            left = None if args.hours is None else 3600 * args.hours - (time.monotonic() - start)
            if left is not None and left <= 0:
                print(f"[{proc}] out of time; run again to continue")
                return
            res = meta_train(cfg, time_limit=left, log_every=10 if args.scale == "cpu" else 1)
            if not res["finished"]:
                print(f"[{proc}] {res['outer_step']}/{res['outer_steps']} outer steps; run again to continue")
                write_page(work, args, None)
                return
            runs.append(Path(cfg.out))
        results = evaluate_optimizers(runs, args.data_root, tasks=TASKS, out=work / "eval", eval_seed=args.seed + 1,
                                      **scale["test"])
        _record(work, args, results, runs)
        write_page(work, args, results)
        print(f"done: {work / 'results.md'}")


def _meta_training(runs: list[Path]) -> dict[str, dict]:
    """Per run: processor, outer steps, meta-training seconds, last meta-losses."""
    out = {}
    for run in runs:
        st = load_run(run, best=False)
        hist = st["history"]
        tail = [r["meta_loss"] for r in hist[-50:]]
        out[run.name] = {"processor": st["spec"]["processor"], "outer_steps": st["outer_step"],
                         "meta_train_s": round(float(st["elapsed_s"]), 1),
                         "s_per_outer_step": round(float(st["elapsed_s"]) / max(1, st["outer_step"]), 3),
                         "meta_loss_last50": round(sum(tail) / max(1, len(tail)), 4), "best": st.get("best"),
                         "meta_params": sum(int(v.numel()) for v in st["meta_params"].values())}
    return out


def _record(work: Path, args, results: dict, runs: list[Path]) -> None:
    """Append one row per (task, optimizer) to results.jsonl, once per scale and settings."""
    path = work / "results.jsonl"
    done = set()
    if path.is_file():
        for line in path.read_text().splitlines():
            r = json.loads(line)
            done.add((r["scale"], r["task"], r["optimizer"], json.dumps(r["settings"], sort_keys=True)))
    meta = _meta_training(runs)
    by_proc = {("ff" if m["processor"] == "none" else m["processor"]): m for m in meta.values()}
    rows = []
    for r in summarise(results):
        key = (args.scale, r["task"], r["optimizer"], json.dumps(results["settings"], sort_keys=True))
        if key in done:
            continue
        r.update({"benchmark": "l2o_fashion_mnist", "scale": args.scale, "settings": results["settings"],
                  "adam_tuned_lr": results["adam_tuned"].get(r["task"]), "meta_training": by_proc.get(r["optimizer"]),
                  "commit": _commit(), "machine": _machine("cpu", args.threads),
                  "date": time.strftime("%Y-%m-%d %H:%M")})
        rows.append(json.dumps(r))
    if rows:
        old = path.read_text() if path.is_file() else ""
        atomic_write_text(old + "\n".join(rows) + "\n", path)


def write_page(work: Path, args, results: dict | None) -> Path:
    """``<work>/results.md``: meta-training progress and times, then the meta-test table when there is one."""
    lines = [f"# Learning to optimize on Fashion-MNIST ({args.scale} scale)", "",
             f"Commit {_commit()}, {_machine('cpu', args.threads)}. Settings: "
             f"`{json.dumps(SCALES[args.scale]['train'])}`.", "", "## Meta-training", "",
             "| run | processor | outer steps | wall time (s) | s / outer step | meta-params | meta-loss (last 50) | "
             "best.pt (outer step: validation accuracy) |", "|---|---|---|---|---|---|---|---|"]
    runs = [work / f"run_{p}" for p in args.processors if (work / f"run_{p}" / "last.pt").is_file()]
    for name, m in _meta_training(runs).items():
        best = m["best"] or {}
        lines.append(f"| {name} | {m['processor']} | {m['outer_steps']} | {m['meta_train_s']:.0f} | "
                     f"{m['s_per_outer_step']:.2f} | {m['meta_params']:,} | {m['meta_loss_last50']:.4f} | "
                     f"{best.get('outer_step', '')}: {100 * best.get('val_acc', float('nan')):.2f} % |")
    if results is not None:
        lines += ["", "## Meta-test", "", results_table(results), "",
                  f"Paper (Fashion-MNIST, 1,000 steps): {PAPER}. Curves: "
                  + ", ".join(f"[{t}](eval/curves_{t}.png)" for t in results["tasks"]), ""]
    return atomic_write_text("\n".join(lines) + "\n", work / "results.md")


if __name__ == "__main__":
    from neuralgraph.allocator import keep_freed_memory

    keep_freed_memory()  # a long run: large tensors stay on the heap (docs/processor-speed.md)
    main()
