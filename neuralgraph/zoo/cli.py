"""``neuralgraph zoo ...``: generate a model zoo, and score StatNN on it.

Wire into ``neuralgraph/cli.py`` with ``add_zoo_parser(subparsers)``; the
command's handler is :func:`run_zoo` (returns the exit status; bad settings
raise ``ValueError`` with a one-line message, which the main CLI prints).

Examples::

    neuralgraph zoo generate --family small_cnn --dataset mnist --root ../shared/datasets/mnist \\
        --num-networks 300 --epochs 3 --out runs/zoo/mnist_small_cnn.pt
    neuralgraph zoo statnn --zoo runs/zoo/mnist_small_cnn.pt
"""
from __future__ import annotations

import argparse
import json

from .statnn import STATNN_REGRESSORS

__all__ = ["add_zoo_parser", "run_zoo"]


def _checkpoints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--checkpoints must be comma-separated epochs, got {text!r}") from None


def _hidden(text: str) -> list[list[int]]:
    try:
        return [[int(w) for w in h.split("x")] for h in text.split(",") if h.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--hidden must look like 32,32x32 (one choice per comma), got {text!r}") \
            from None


def add_zoo_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``zoo`` (with ``generate`` and ``statnn``) to an ``argparse`` sub-parsers object."""
    zoo = subparsers.add_parser("zoo", help="generate model zoos (many small classifiers) and score StatNN")
    sub = zoo.add_subparsers(dest="zoo_command", required=True)
    g = sub.add_parser("generate", help="train a zoo of classifiers, vectorised and resumable")
    g.add_argument("--out", required=True, help="zoo file to write (chunks go to <out>.chunks/)")
    g.add_argument("--family", default="small_cnn", choices=["small_cnn", "wild_park", "mlp"])
    g.add_argument("--dataset", default="mnist", choices=["mnist", "fashion_mnist", "digits"])
    g.add_argument("--root", default=None, help="directory of the IDX files (mnist, fashion_mnist)")
    g.add_argument("--num-networks", type=int, default=300)
    g.add_argument("--epochs", type=int, default=3)
    g.add_argument("--checkpoints", type=_checkpoints, default=None, help="epochs to record, e.g. 0,1,3")
    g.add_argument("--image-size", type=int, default=None, help="14 (default; 28 // 2 averaging), 28 or 7; 8 for digits")
    g.add_argument("--n-train", type=int, default=10000, help="first training images used (default 10000)")
    g.add_argument("--n-test", type=int, default=2000)
    g.add_argument("--n-train-eval", type=int, default=2000)
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--chunk-size", type=int, default=128)
    g.add_argument("--num-architectures", type=int, default=8, help="wild_park: size of the architecture pool")
    g.add_argument("--hidden", type=_hidden, default=[[32], [32, 32]], help="mlp: hidden-width choices, e.g. 32,32x32")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="cpu")
    g.add_argument("--overwrite", action="store_true", help="replace a zoo of other settings at --out")
    g.add_argument("--no-progress", action="store_true")
    s = sub.add_parser("statnn", help="StatNN baseline on a zoo: Kendall's tau on held-out networks")
    s.add_argument("--zoo", required=True, help="a zoo file from `neuralgraph zoo generate`")
    s.add_argument("--epoch", type=int, default=None, help="checkpoint epoch (default: the last)")
    s.add_argument("--metric", default="test_acc", choices=["test_acc", "train_acc", "test_loss", "train_loss"])
    s.add_argument("--val", type=float, default=0.15, help="fraction of the networks held out for validation "
                   "(as --task-arg val=... of --task regress: the same split)")
    s.add_argument("--test", type=float, default=0.15, help="fraction of the networks StatNN is scored on")
    s.add_argument("--train-epochs", type=int, nargs="*", default=[],
                   help="also fit on the training networks at these checkpoints (as --task-arg train_epochs=...)")
    s.add_argument("--seed", type=int, default=0, help="seed of the split by network (as --task-arg split_seed=...)")
    s.add_argument("--regressor", default="gbt", choices=STATNN_REGRESSORS,
                   help="gradient-boosted trees (default) or the papers' two-hidden-layer MLP")
    return zoo


def run_zoo(args: argparse.Namespace) -> int:
    """Run a parsed ``zoo`` command; prints a one-line JSON summary. ``ValueError`` for bad settings."""
    import time

    from .files import ZooDataset, generate_zoo
    from .statnn import evaluate_statnn

    if args.zoo_command == "generate":
        start = time.time()
        image_size = args.image_size if args.image_size is not None else (8 if args.dataset == "digits" else 14)
        if args.device.startswith("cuda"):
            import torch
            if not torch.cuda.is_available():
                raise ValueError(f"--device {args.device}: CUDA is not available on this machine")
        path = generate_zoo(args.out, family=args.family, dataset=args.dataset, root=args.root,
                            num_networks=args.num_networks, epochs=args.epochs, checkpoints=args.checkpoints,
                            image_size=image_size, n_train=args.n_train, n_test=args.n_test,
                            n_train_eval=args.n_train_eval, batch_size=args.batch_size, seed=args.seed,
                            chunk_size=args.chunk_size, num_architectures=args.num_architectures,
                            hidden_choices=args.hidden, device=args.device, overwrite=args.overwrite,
                            progress=not args.no_progress)
        zoo = ZooDataset(path)
        acc = zoo.targets()[zoo.valid]
        print(json.dumps({"zoo": str(path), "networks": len(zoo), "valid": int(zoo.valid.sum()),
                          "architectures": len(zoo.archs), "seconds": round(time.time() - start, 1),
                          "test_acc_min": round(float(acc.min()), 4) if acc.numel() else None,
                          "test_acc_median": round(float(acc.median()), 4) if acc.numel() else None,
                          "test_acc_max": round(float(acc.max()), 4) if acc.numel() else None}))
        return 0
    if args.zoo_command == "statnn":
        zoo = ZooDataset(args.zoo)
        res = evaluate_statnn(zoo, zoo.split(args.val, args.test, args.seed), epoch=args.epoch, metric=args.metric,
                              seed=args.seed, train_epochs=args.train_epochs, regressor=args.regressor)
        print(json.dumps({"zoo": args.zoo, "metric": args.metric, "epoch": args.epoch if args.epoch is not None
                          else zoo.epochs[-1], "test_networks": len(res["ids"]), "regressor": args.regressor,
                          "kendall_tau": round(res["tau"], 4),
                          "r2": round(res["r2"], 4)}))
        return 0
    raise ValueError(f"unknown zoo command {args.zoo_command!r}")
