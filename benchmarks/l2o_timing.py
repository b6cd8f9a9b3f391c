"""Wall time of one inner (unroll) step and one outer step of meta-training, per processor.

    python benchmarks/l2o_timing.py --data-root ../shared/datasets --threads 1 \
        --processors none nggnn ngt dwsnet --unroll 20 --optimizees 4 --outer 3

For each processor a :class:`neuralgraph.l2o.metatraining.MetaTrainer` at the given scale runs one
warm-up outer step, then ``--outer`` timed outer steps (``unroll`` inner steps of ``optimizees``
CNNs plus the meta-update); the parts of one inner step are timed separately, best of
``--repeats``: the optimizees' loss and gradient (one grouped forward / backward), the learned
optimizer's update without gradients (meta-testing) and with its backward (meta-training, before
the activation-checkpointing recompute). Prints a markdown table and one JSON line per processor
(with the commit and the machine); ``--estimate-outer-steps`` adds the projected meta-training
time; ``peak_rss_mb`` is the process's peak memory so far (run one processor per call for its
own). The machine may be shared: the load average is printed with the table.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reproduce_inr_classification import _commit, _machine  # noqa: E402  (one definition of both)

from neuralgraph.l2o import PROCESSORS, MetaTrainConfig  # noqa: E402
from neuralgraph.l2o.features import advance  # noqa: E402
from neuralgraph.l2o.metatraining import MetaTrainer  # noqa: E402
from neuralgraph.l2o.tasks import load_task, loss_and_grad, sample_batch  # noqa: E402


def _best(f, repeats: int) -> float:
    f()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def time_processor(config: MetaTrainConfig, outer: int, repeats: int) -> dict:
    """Seconds per outer step (mean of ``outer``), and the best-of-``repeats`` parts of one inner step."""
    task = load_task("fashion_mnist", config.data_root, config.image_size, config.n_val, config.n_train)
    tr = MetaTrainer(config, task)
    tr.outer()                                                            # warm-up
    t = time.perf_counter()
    for _ in range(outer):
        tr.outer()
    per_outer = (time.perf_counter() - t) / outer
    x, y = sample_batch(task, tr.generator, config.optimizees, config.batch_size)
    loss, grad = loss_and_grad(tr.layout, tr.theta, x, y)
    st = advance(tr.opt_state, grad)
    theta = tr.theta.clone().requires_grad_()

    def update():
        with torch.no_grad():
            tr.opt(tr.layout, theta, grad, st.momenta, st.step)

    def update_backward():
        tr.opt(tr.layout, theta, grad, st.momenta, st.step).sum().backward()

    return {"processor": config.processor, "outer_s": per_outer, "inner_ms": 1e3 * per_outer / config.unroll,
            "cnn_ms": 1e3 * _best(lambda: loss_and_grad(tr.layout, tr.theta, x, y), repeats),
            "update_ms": 1e3 * _best(update, repeats), "update_backward_ms": 1e3 * _best(update_backward, repeats),
            "meta_params": sum(p.numel() for p in tr.opt.parameters()), "optimizee_params": tr.layout.numel,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, required=True)
    p.add_argument("--processors", nargs="+", choices=PROCESSORS, default=list(PROCESSORS))
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--image-size", type=int, default=14)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--unroll", type=int, default=20)
    p.add_argument("--optimizees", type=int, default=4)
    p.add_argument("--outer", type=int, default=3, help="timed outer steps per processor")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--recompute", action="store_true", help="activation checkpointing of the inner steps")
    p.add_argument("--estimate-outer-steps", type=int, default=1000)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for proc in args.processors:
        cfg = MetaTrainConfig(out="unused", data_root=str(args.data_root), processor=proc, hidden=args.hidden,
                              num_layers=args.layers, image_size=args.image_size, channels=args.channels,
                              unroll=args.unroll, horizon=args.unroll * 4, optimizees=args.optimizees,
                              recompute=args.recompute)
        row = time_processor(cfg, args.outer, args.repeats)
        row.update({"hidden": args.hidden, "layers": args.layers, "image_size": args.image_size,
                    "channels": args.channels, "unroll": args.unroll, "optimizees": args.optimizees,
                    "estimated_h": row["outer_s"] * args.estimate_outer_steps / 3600,
                    "load_avg": os.getloadavg()[0], "commit": _commit(), "machine": _machine("cpu", args.threads)})
        rows.append(row)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    print(f"\n{args.optimizees} CNNs ({args.channels} ch, {args.image_size}x{args.image_size}), unroll {args.unroll}, "
          f"processor hidden {args.hidden} x {args.layers} layers{', recompute' if args.recompute else ''}; load "
          f"average {os.getloadavg()[0]:.1f}\n")
    print(f"| processor | meta-params | outer step (s) | inner step (ms) | CNN loss+grad (ms) | update (ms) | "
          f"update+backward (ms) | {args.estimate_outer_steps} outer steps (h) | peak RSS (MB) |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['processor']} | {r['meta_params']:,} | {r['outer_s']:.2f} | {r['inner_ms']:.0f} | "
              f"{r['cnn_ms']:.1f} | {r['update_ms']:.1f} | {r['update_backward_ms']:.1f} | {r['estimated_h']:.2f} | "
              f"{r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
