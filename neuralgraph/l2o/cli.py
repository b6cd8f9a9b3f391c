"""``neuralgraph l2o ...``: meta-train a learned optimizer, and meta-test it against Adam.

Wire into ``neuralgraph/cli.py`` with ``add_l2o_parser(subparsers)``; the handler is
:func:`run_l2o` (bad settings raise ``ValueError`` with a one-line message, which the main CLI
prints).

Examples::

    neuralgraph l2o meta-train --processor nggnn --data-root ../shared/datasets --out runs/l2o_nggnn
    neuralgraph l2o meta-train ... --max-outer-steps 100     # a part; the same command continues
    neuralgraph l2o evaluate --optimizer runs/l2o_ff --optimizer runs/l2o_nggnn \\
        --data-root ../shared/datasets --out runs/l2o_eval
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..train.cli_args import positive
from .evaluate import DEFAULT_ADAM_LRS
from .metatraining import MetaTrainConfig
from .processors import PROCESSORS
from .tasks import TASKS

__all__ = ["add_l2o_parser", "run_l2o"]

_DEFAULTS = MetaTrainConfig(out=".", data_root=".")


def add_l2o_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``l2o`` (with ``meta-train`` and ``evaluate``) to an ``argparse`` sub-parsers object."""
    l2o = subparsers.add_parser("l2o", help="learned optimizers on neural graphs: meta-train, evaluate against Adam")
    sub = l2o.add_subparsers(dest="l2o_command", required=True, metavar="COMMAND")
    m = sub.add_parser("meta-train", help="meta-train a learned optimizer on small CNNs (Fashion-MNIST), resumable",
                       description="Truncated backpropagation through unrolls of small CNNs on Fashion-MNIST; "
                                   "DIR/last.pt is rewritten after every outer step and the same command continues "
                                   "an interrupted run.")
    m.add_argument("--out", type=Path, required=True, help="run directory")
    m.add_argument("--data-root", type=Path, required=True, help="directory holding fashion_mnist/ (IDX files)")
    m.add_argument("--processor", choices=PROCESSORS, default=_DEFAULTS.processor,
                   help="none: the per-parameter FF optimizer (Metz et al.); nggnn / ngt / dwsnet read the "
                        "optimizee's neural graph")
    d = _DEFAULTS
    for flag, kind, dest, text in (
            ("--hidden", int, "hidden", "processor width"), ("--layers", int, "num_layers", "processor layers"),
            ("--context", int, "context", "context numbers per parameter from the equivariant head"),
            ("--ff-hidden", int, "ff_hidden", "width of the per-parameter MLP"),
            ("--step-mult", float, "step_mult", "scale of the update d * exp(0.001 m) * step_mult"),
            ("--image-size", int, "image_size", "optimizee images: 28, 14 or 7 pixels"),
            ("--channels", int, "channels", "optimizee CNN channels"), ("--cnn-layers", int, "cnn_layers",
                                                                         "optimizee convolutions"),
            ("--batch-size", int, "batch_size", "images per inner step"),
            ("--unroll", int, "unroll", "inner steps per outer step (truncation)"),
            ("--horizon", int, "horizon", "inner steps before an optimizee is re-initialised"),
            ("--optimizees", int, "optimizees", "optimizees trained side by side"),
            ("--outer-steps", int, "outer_steps", "meta-parameter updates in total"),
            ("--meta-lr", float, "meta_lr", "Adam's learning rate on the meta-parameters"),
            ("--clip-grad-norm", float, "clip_grad_norm", "meta-gradient norm clipping"),
            ("--n-val", int, "n_val", "Fashion-MNIST training images held out for validation"),
            ("--validate-steps", int, "validate_steps", "steps of a meta-validation"),
            ("--validate-seeds", int, "validate_seeds", "networks of a meta-validation")):
        m.add_argument(flag, type=positive(kind), default=getattr(d, dest), dest=dest,
                       help=f"{text} (default {getattr(d, dest)})")
    m.add_argument("--validate-every", type=int, default=d.validate_every,
                   help=f"outer steps between meta-validations; the best is kept in best.pt (0: only after the last; "
                        f"default {d.validate_every})")
    m.add_argument("--init", default=d.init, help=f"optimizee initialisation (default {d.init})")
    m.add_argument("--seed", type=int, default=d.seed)
    m.add_argument("--n-train", type=positive(int), help="cap on the training images read (tests)")
    m.add_argument("--threads", type=positive(int), help="torch threads")
    m.add_argument("--max-outer-steps", type=positive(int), help="stop after this many outer steps in this call")
    m.add_argument("--time-limit", type=positive(float), help="stop after this many minutes in this call")
    m.add_argument("--recompute", action="store_true",
                   help="recompute the optimizer's inner steps in the backward pass (less memory, ~1.4x the time)")
    m.add_argument("--no-resume", action="store_true", help="refuse a --out that already holds a run")
    m.add_argument("--quiet", action="store_true", help="no progress lines")

    e = sub.add_parser("evaluate", help="meta-test learned optimizers against Adam (learning-rate grid)",
                       description="Train fresh optimizees for --steps steps over --seeds seeds with each optimizer "
                                   "and with Adam at every learning rate of the grid; writes results.json, "
                                   "results.md and curves_<task>.png into --out (resumable: finished parts are "
                                   "cached).")
    e.add_argument("--optimizer", type=Path, action="append", default=[], metavar="RUN",
                   help="a meta-training run directory (repeat for several)")
    e.add_argument("--data-root", type=Path, required=True, help="directory holding fashion_mnist/ and mnist/")
    e.add_argument("--out", type=Path, required=True, help="results directory")
    e.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    e.add_argument("--steps", type=positive(int), default=1000)
    e.add_argument("--seeds", type=positive(int), default=5)
    e.add_argument("--adam-lrs", type=positive(float), nargs="*", default=list(DEFAULT_ADAM_LRS),
                   help="Adam's learning-rate grid (none: no Adam)")
    e.add_argument("--batch-size", type=positive(int), default=128)
    e.add_argument("--eval-every", type=positive(int), default=100, help="steps between test evaluations")
    e.add_argument("--eval-seed", type=int, default=0)
    e.add_argument("--image-size", type=positive(int), help="optimizee images when no --optimizer gives them")
    e.add_argument("--channels", type=positive(int), help="optimizee channels when no --optimizer gives them")
    e.add_argument("--n-val", type=positive(int), help="validation images held out of the training split when no "
                   "--optimizer gives them (default 10000)")
    e.add_argument("--n-train", type=positive(int), help="cap on the training images read (tests)")
    e.add_argument("--n-test", type=positive(int), help="cap on the test images read (tests)")
    e.add_argument("--threads", type=positive(int), help="torch threads")
    e.add_argument("--quiet", action="store_true", help="no progress lines")
    return l2o


def run_l2o(args: argparse.Namespace) -> int:
    """Run a parsed ``l2o`` command; prints a one-line JSON summary."""
    import torch

    from .evaluate import evaluate_optimizers
    from .report import summarise
    from .metatraining import meta_train

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    log = None if args.quiet else print
    if args.l2o_command == "meta-train":
        keys = ("processor", "hidden", "num_layers", "context", "ff_hidden", "step_mult", "image_size", "channels",
                "cnn_layers", "init", "batch_size", "unroll", "horizon", "optimizees", "outer_steps", "meta_lr",
                "clip_grad_norm", "seed", "n_val", "n_train", "recompute", "validate_every", "validate_steps",
                "validate_seeds", "threads")
        config = MetaTrainConfig(out=str(args.out), data_root=str(args.data_root),
                                 **{k: getattr(args, k) for k in keys})
        res = meta_train(config, resume=not args.no_resume, max_outer_steps=args.max_outer_steps,
                         time_limit=None if args.time_limit is None else 60 * args.time_limit, log=log)
        last = res["history"][-1] if res["history"] else {}
        print(json.dumps({"run": str(args.out), "processor": config.processor, "outer_step": res["outer_step"],
                          "outer_steps": res["outer_steps"], "finished": res["finished"],
                          "elapsed_s": round(res["elapsed_s"], 1), "last_meta_loss": last.get("meta_loss"),
                          "best": res["best"]}))
        return 0
    if args.l2o_command == "evaluate":
        shape = {"image_size": args.image_size, "channels": args.channels, "n_val": args.n_val}
        res = evaluate_optimizers(args.optimizer, args.data_root, tasks=args.tasks, steps=args.steps, seeds=args.seeds,
                                  adam_lrs=args.adam_lrs, batch_size=args.batch_size, eval_every=args.eval_every,
                                  out=args.out, eval_seed=args.eval_seed, n_train=args.n_train, n_test=args.n_test,
                                  optimizee=shape, log=log)
        rows = [r for r in summarise(res) if not r["optimizer"].startswith("adam") or r.get("tuned")]
        print(json.dumps({"out": str(args.out), "adam_tuned": res["adam_tuned"],
                          "test_acc": {f"{r['task']}/{r['optimizer']}": round(r["test_acc_mean"], 4) for r in rows}}))
        return 0
    raise ValueError(f"unknown l2o command {args.l2o_command!r}")
