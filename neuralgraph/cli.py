"""Command line: ``neuralgraph fit-inrs | train | zoo | quickstart | models | import-inrs | export-inrs | predict |
embed | evaluate | draw`` (also ``python -m neuralgraph``).

Examples::

    neuralgraph quickstart --out ng_quickstart            # digits INRs -> trained classifier + pictures
    neuralgraph fit-inrs --source mnist --root ../shared/datasets/mnist --out mnist_inrs --n-train 5000
    neuralgraph train --data mnist_inrs --model nggnn --epochs 20 --out runs/nggnn
    neuralgraph train --task edit --data mnist_inrs --model nggnn --out runs/dilate   # INR editing
    neuralgraph zoo generate --family small_cnn --dataset mnist --root ../shared/datasets/mnist --out z.pt
    neuralgraph train --task regress --data z.pt --model ngt --out runs/accuracy      # accuracy from weights
    neuralgraph l2o meta-train --processor nggnn --data-root ../shared/datasets --out runs/l2o_nggnn
    neuralgraph l2o evaluate --optimizer runs/l2o_nggnn --data-root ../shared/datasets --out runs/l2o_eval
    neuralgraph train ... --resume                        # continue an interrupted run
    torchrun --nproc-per-node 2 -m neuralgraph train ...  # data-parallel (gloo on CPU, nccl on GPU)
    neuralgraph import-inrs --splits dataset/mnist_splits.json --out mnist_inrs     # DWSNets-layout INRs
    neuralgraph export-inrs --data mnist_inrs --out mnist_dwsnets                   # ... and back
    neuralgraph predict --run runs/nggnn --data mnist_inrs/test.pt --out preds.csv
    neuralgraph embed --run runs/nggnn --data mnist_inrs/test.pt --out emb.pt
    neuralgraph evaluate --run runs/nggnn --data mnist_inrs/test.pt
    neuralgraph extend --run runs/nggnn --epochs 40      # continue a finished run to 40 epochs
    neuralgraph draw --data mnist_inrs                    # parameter / PSNR histograms, 4x reconstructions
    neuralgraph draw --graph-of mnist_inrs --index 0 --out net.png --permute   # one INR's graph (+ permuted)
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .inference import SPLITS
from .train.cli_args import add_train_arguments
from .train.cli_args import device as _device
from .train.cli_args import finite as _finite
from .train.cli_args import positive as _positive

__all__ = ["main", "build_parser", "QUICKSTART"]

#: What ``neuralgraph quickstart`` trains (chosen so the whole command takes a few minutes on 2 CPU cores).
QUICKSTART: dict[str, Any] = {"model": "nggnn", "epochs": 20, "batch_size": 32, "lr": 2e-3,
                              "model_kwargs": {"hidden": 32, "num_layers": 3}}


def _seed(text: str) -> int:
    """``--seed``: an integer >= 0 (scikit-learn's split and numpy refuse negative seeds with their own words)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"seed must be an integer >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``argparse`` parser of the ``neuralgraph`` command with all its sub-commands
    (``fit-inrs``, ``train``, ``quickstart``, ...); :func:`main` parses with it.
    """
    from .inr import DEFAULT_LR, DEFAULT_STEPS
    from .train import MODELS

    p = argparse.ArgumentParser(prog="neuralgraph", description="Learning on neural networks as graphs: "
                                "fit INR datasets and train permutation-equivariant classifiers on them.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    f = sub.add_parser("fit-inrs", help="fit one SIREN per image and write train/val/test INR files",
                       description="Fit one SIREN per image (resumable; an interrupted run continues where it "
                                   "stopped) and write DIR/train.pt, val.pt, test.pt.")
    f.add_argument("--source", choices=["digits", "mnist", "fashion-mnist", "sines"], default="digits",
                   help="digits: sklearn's bundled 8x8 digits (offline); mnist/fashion-mnist: IDX files in --root; "
                        "sines: 1-D SIRENs of a*sin(b*x) for the self-supervised task (--task ssl)")
    f.add_argument("--root", type=Path, help="directory with the IDX files (for mnist / fashion-mnist)")
    f.add_argument("--out", type=Path, required=True, help="output directory for the split files")
    f.add_argument("--steps", type=_positive(int), default=DEFAULT_STEPS, help="Adam steps per INR")
    f.add_argument("--lr", type=_positive(float), default=DEFAULT_LR, help="INR fitting learning rate")
    f.add_argument("--w0", type=_positive(float),
                   help="SIREN frequency (default: 30 for 28x28 MNIST-style images, 10 for the 8x8 digits)")
    f.add_argument("--n-train", type=_positive(int), help="cap on training INRs")
    f.add_argument("--n-val", type=_positive(int), help="validation INRs (mnist: taken from the train split)")
    f.add_argument("--n-test", type=_positive(int), help="cap on test INRs")
    f.add_argument("--seed", type=_seed, default=0, help="seed of the split and the fits (an integer >= 0)")
    f.add_argument("--workers", type=_positive(int), help="fitting threads (default: all cores)")
    f.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="reuse finished chunks/splits of an earlier identical fit (default: on)")
    f.add_argument("--overwrite", action="store_true",
                   help="replace a dataset in --out fitted with other settings (a rerun with other settings is "
                        "refused otherwise); the old splits stay until the new ones are complete")
    f.add_argument("--device", type=_device, default="cpu",
                   help="cpu (threaded fast path), cuda, cuda:N or auto; the files are the same either way")
    f.add_argument("--target-psnr", type=_positive(float),
                   help="stop each INR at this PSNR (dB); with --steps 1000 --lr 5e-4 --target-psnr 40 the "
                        "DWSNets authors' protocol")
    f.add_argument("--init", choices=["siren", "dwsnets"], default="siren",
                   help="starting point of each INR: siren (Sitzmann et al.) or dwsnets (the DWSNets / "
                        "neural-graphs datasets' own, a low-frequency first layer; see neuralgraph.inr.siren_init)")
    f.add_argument("--chunk-size", type=_positive(int), default=1024,
                   help="INRs per resumable chunk (use >= 10000 on a GPU)")
    f.add_argument("--device-batch-size", type=_positive(int),
                   help="INRs fitted at once on the device (default: from free device memory)")
    f.add_argument("--quiet", action="store_true", help="no progress bars")

    from .tasks import TASKS

    t = sub.add_parser("train", help="train a processor on a dataset of networks (classify, edit, ...)",
                       description="Train a processor for a task on DIR/{train,val,test}.pt; model selection on the "
                                   "validation metrics, test metrics reported at the best validation epoch. Tasks: "
                                   + "; ".join(f"{n}: {c.description}" for n, c in TASKS.items()))
    add_train_arguments(t)

    q = sub.add_parser("quickstart", help="digits INRs -> trained classifier, test accuracy, pictures",
                       description="Fit INRs of sklearn's digits (reused when present), train the default "
                                   "model, print the test accuracy and save learning_curves.png and "
                                   "reconstructions.png. Re-running continues / reuses earlier work.")
    q.add_argument("--out", type=Path, default=Path("neuralgraph_quickstart"))
    q.add_argument("--model", choices=list(MODELS), default=QUICKSTART["model"])
    q.add_argument("--epochs", type=_positive(int), default=QUICKSTART["epochs"])
    q.add_argument("--device", type=_device, default="cpu", help="cpu, cuda, cuda:N or auto")
    q.add_argument("--threads", type=_positive(int))
    q.add_argument("--quiet", action="store_true", help="no progress bars")

    from .zoo.cli import add_zoo_parser

    add_zoo_parser(sub)
    from .l2o.cli import add_l2o_parser

    add_l2o_parser(sub)
    _add_use_parsers(sub)
    _add_draw_parser(sub)
    sub.add_parser("models", help="list the models `train --model` accepts")
    return p


def _fit_sines(args: argparse.Namespace) -> dict[str, Path]:
    from .inr.sines import build_sine_splits

    unused = [flag for flag, value in (("--root", args.root), ("--w0", args.w0), ("--workers", args.workers),
                                       ("--device-batch-size", args.device_batch_size)) if value is not None]
    unused += ["--init"] if args.init != "siren" else []
    if unused:
        raise ValueError(f"--source sines does not take {', '.join(unused)}")
    sizes = {k: v for k, v in (("n_train", args.n_train), ("n_val", args.n_val), ("n_test", args.n_test)) if v}
    return build_sine_splits(args.out, **sizes, steps=args.steps, seed=args.seed, lr=args.lr,
                             target_psnr=args.target_psnr, device=args.device, overwrite=args.overwrite,
                             progress=not args.quiet)


def _fit(args: argparse.Namespace) -> int:
    from .inr import INRDataset, build_inr_splits

    source = args.source.replace("-", "_")
    t0 = time.perf_counter()
    if source == "sines":
        for name, path in _fit_sines(args).items():
            print(f"{name:5s} {len(INRDataset(path)):6d} sine INRs -> {path}")
        print(f"done in {time.perf_counter() - t0:.1f}s")
        return 0
    paths = build_inr_splits(source, args.out, root=args.root, n_train=args.n_train, n_val=args.n_val,
                             n_test=args.n_test, steps=args.steps, lr=args.lr, w0=args.w0, seed=args.seed,
                             workers=args.workers, resume=args.resume, overwrite=args.overwrite,
                             progress=not args.quiet, device=args.device, target_psnr=args.target_psnr,
                             chunk_size=args.chunk_size, device_batch_size=args.device_batch_size, init=args.init)
    for name, path in paths.items():
        d = INRDataset(path)
        print(f"{name:5s} {len(d):6d} INRs  PSNR mean {d.psnr.mean():.1f} dB, min {d.psnr.min():.1f} dB  -> {path}")
    print(f"done in {time.perf_counter() - t0:.1f}s")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .train import train
    from .train.cli_args import config_from_args

    cfg = config_from_args(args)
    res = train(cfg, resume=args.resume, progress=not args.quiet, stop_after_epoch=args.stop_after_epoch,
                threads=args.threads)
    if res.finished:
        shown = (f"test accuracy: {res.test_acc:.2%}" if res.task == "classify" else
                 "test " + ", ".join(f"{k} {v:.4g}" for k, v in res.test_metrics.items()))
        print(f"{shown}  (run directory: {res.run_dir})")
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    from .inr import INRDataset, build_inr_splits
    from .train import RunMismatch, TrainConfig, train

    t0 = time.perf_counter()
    out = args.out
    data = out / "data"
    print(f"[1/2] fitting one SIREN per sklearn digit (1797 images, 8x8) -> {data}")
    paths = build_inr_splits("digits", data, progress=not args.quiet)
    psnr = INRDataset(paths["train"]).psnr
    print(f"      train INR fit quality: PSNR mean {psnr.mean():.1f} dB ({time.perf_counter() - t0:.0f}s so far)")
    print(f"[2/2] training {args.model} for {args.epochs} epochs -> {out / 'run'}")
    cfg = TrainConfig(data=str(data), out=str(out / "run"), model=args.model, epochs=args.epochs,
                      batch_size=QUICKSTART["batch_size"], lr=QUICKSTART["lr"],
                      model_kwargs=dict(QUICKSTART["model_kwargs"]) if args.model == QUICKSTART["model"] else {},
                      device=args.device)
    try:
        res = train(cfg, resume=True, progress=not args.quiet, threads=args.threads)
    except RunMismatch as e:
        raise ValueError(f"{e.run_dir} holds another run ({e.differences}); use another --out "
                         f"or remove {e.run_dir}") from None
    run = res.run_dir
    print(f"\ntest accuracy ({args.model}, best validation epoch {res.best_epoch}): {res.test_acc:.2%}")
    print(f"pictures: {run / 'learning_curves.png'}, {run / 'reconstructions.png'}, {run / 'confusion.png'}")
    print(f"metrics:  {run / 'metrics.csv'}; classifier: {run / 'best.pt'}")
    print(f"total time {time.perf_counter() - t0:.0f}s")
    return 0


def _models(args: argparse.Namespace) -> int:
    from .train.registry import MODELS, model_class

    for name, spec in MODELS.items():
        try:
            model_class(name)
            status = ""
        except ImportError as e:
            status = f"  [unavailable: {e}]"
        print(f"{name:8s} {spec.description}{status}")
    return 0


# ----------------------------------------------------------------------------
# import-inrs, predict, embed, evaluate (kept apart from the train flags)
# ----------------------------------------------------------------------------

def _add_use_parsers(sub) -> None:
    """``import-inrs`` and the commands that use a trained run: ``predict``, ``embed``, ``evaluate``."""
    i = sub.add_parser("import-inrs", help="convert a DWSNets / neural-graphs INR dataset (splits JSON of .pth)",
                       description="Read a splits JSON ({'train': {'path': [...], 'label': [...]}, 'val', 'test'}) "
                                   "of one state dict per INR and write OUT/train.pt, val.pt, test.pt.")
    i.add_argument("--splits", type=Path, required=True, help="the splits JSON (e.g. mnist_splits.json)")
    i.add_argument("--out", type=Path, required=True, help="output directory for the split files")
    i.add_argument("--root", type=Path, help="directory the JSON's relative paths start from (default: the JSON's)")
    i.add_argument("--statistics", type=Path,
                   help="their statistics.pth: checked to belong to the training split (refused otherwise); "
                        "normalisation uses this library's own statistics, recomputed")
    i.add_argument("--num-classes", type=_positive(int),
                   help="classes of the task (default 10; sine INRs, a JSON of path lists, have none)")
    i.add_argument("--w0", type=_positive(float), default=30.0, help="SIREN frequency (DWSNets: 30)")
    i.add_argument("--offset", type=_finite, default=0.5, help="output shift of the INRs (DWSNets: 0.5)")
    i.add_argument("--image-shape", type=_positive(int), nargs=2, metavar=("H", "W"),
                   help="image size, to render the INRs (e.g. 28 28)")
    i.add_argument("--coords", choices=["xy", "rc"], default="xy",
                   help="how the files' image INRs read their coordinates: xy = (x = col, y = row), DWSNets' and "
                        "neural-graphs' make_coordinates (default); rc = (row, col)")
    i.add_argument("--to-coords", choices=["xy", "rc"],
                   help="convert the INRs to this convention (exact: first-layer columns swapped); default: keep "
                        "their weights and record their convention, which rendering follows")
    i.add_argument("--val-from-train", type=int, default=0,
                   help="when the JSON has no 'val' split: take the last N training INRs")
    i.add_argument("--overwrite", action="store_true",
                   help="replace a dataset of another fit or import in --out (refused otherwise); the old splits "
                        "stay until the new ones are complete")
    i.add_argument("--quiet", action="store_true", help="no progress bars")
    e = sub.add_parser("export-inrs", help="write an INR dataset in the DWSNets / neural-graphs layout (splits JSON "
                                           "of .pth state dicts, statistics.pth)",
                       description="Write OUT/splits.json, OUT/statistics.pth and one state dict per INR (keys "
                                   "seq.N.weight / seq.N.bias) that DWSNets' and neural-graphs' INRDataset read; "
                                   "w0, output offset and coordinates are converted to their INR's where they "
                                   "differ (listed). Written into a hidden directory and renamed into place.")
    e.add_argument("--data", type=Path, required=True, help="a directory of split files (fit-inrs / import-inrs)")
    e.add_argument("--out", type=Path, required=True, help="the directory to write (refused if not empty)")
    e.add_argument("--layout", choices=["dwsnets"], default="dwsnets",
                   help="dwsnets: the layout of DWSNets' and neural-graphs' INR datasets")
    e.add_argument("--relative-paths", action="store_true",
                   help="paths in the JSON relative to --out (neural-graphs' convention) instead of absolute")
    e.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    x = sub.add_parser("extend", help="continue a finished training run to more epochs",
                       description="Raise a run's epoch count (its checkpoints are updated explicitly) and continue "
                                   "training from its last epoch with the run's own settings and data. The "
                                   "learning-rate schedule is stretched to the new total (a warm restart).")
    x.add_argument("--run", type=Path, required=True, help="run directory of `neuralgraph train`")
    x.add_argument("--epochs", type=_positive(int), required=True, help="new total number of epochs")
    x.add_argument("--device", type=_device, help="device for the continued training (default: the run's)")
    x.add_argument("--threads", type=_positive(int), help="torch intra-op threads")
    x.add_argument("--quiet", action="store_true", help="no progress bars")
    for name, text in (("predict", "predicted classes of INRs (classify run) or accuracies of zoo networks "
                                   "(regress run)"),
                       ("embed", "permutation-invariant embeddings of INRs or zoo networks under a trained run"),
                       ("evaluate", "the run's task metrics on an INR split or a zoo")):
        c = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + "; INRs are normalised "
                           "with the training statistics stored in the run; a regress run reads a zoo file at its "
                           "checkpoint, results in network-id order.")
        c.add_argument("--run", type=Path, required=True, help="run directory of `neuralgraph train` (or best.pt)")
        c.add_argument("--data", type=Path, required=True,
                       help="an INR split file or a directory of them; a zoo file for a regress run")
        c.add_argument("--split", choices=SPLITS,
                       help="the directory's split file (default test); for a zoo, the run's split by network "
                            "(default: every valid network)")
        if name == "predict":
            c.add_argument("--out", type=Path, help="write a CSV (index,label,pred,prob_0,... or index,target,pred)")
            c.add_argument("--confusion", type=Path, help="also save the confusion matrix against the file's labels "
                                                          "as a PNG")
        if name == "embed":
            c.add_argument("--out", type=Path, required=True, help="write {'embeddings', 'labels'} with torch.save")
            c.add_argument("--layer", choices=["auto", "penultimate", "output"], default="auto",
                           help="penultimate: head features before its last layer; output: the model output "
                                "(auto: output for contrastive runs)")
        c.add_argument("--batch-size", type=_positive(int), default=256)
        c.add_argument("--device", type=_device, default="cpu", help="cpu, cuda, cuda:N or auto")


def _extend(args: argparse.Namespace) -> int:
    from .train import TrainConfig, train
    from .train.checkpoint import extend_run

    if not (args.run / "last.pt").is_file():
        raise FileNotFoundError(f"{args.run} holds no last.pt; is it a `neuralgraph train` run directory?")
    config = extend_run(args.run, args.epochs)
    if args.device is not None:
        config["device"] = args.device
    res = train(TrainConfig(**config), resume=True, progress=not args.quiet, threads=args.threads)
    shown = (f"test accuracy: {res.test_acc:.2%}" if res.task == "classify" else
             "test " + ", ".join(f"{k} {v:.4g}" for k, v in (res.test_metrics or {}).items()))
    print(f"{shown}  ({res.epochs_done} epochs; run directory: {res.run_dir})")
    return 0


def _import_inrs(args: argparse.Namespace) -> int:
    from .importers import import_inr_splits
    from .inr import INRDataset

    paths = import_inr_splits(args.splits, args.out, root=args.root, statistics=args.statistics,
                              num_classes=args.num_classes, w0=args.w0, offset=args.offset,
                              image_shape=args.image_shape, coords=args.coords, to_coords=args.to_coords,
                              val_from_train=args.val_from_train, overwrite=args.overwrite, progress=not args.quiet)
    for name, path in paths.items():
        print(f"{name:5s} {len(INRDataset(path)):6d} INRs -> {path}")
    fit = INRDataset(paths["train"]).meta.get("fit", {})
    if "coords" in fit:
        print(f"coordinates: {'(x = col, y = row), as in the files' if fit['coords'] == 'xy' else '(row, col)'}"
              f"{' (converted)' if args.to_coords and args.to_coords != args.coords else ''}; rendering follows it")
    if args.statistics is not None:
        print(f"{args.statistics}: belongs to the training split (checked); normalisation uses this library's "
              f"statistics, recomputed from the training split")
    return 0


def _export_inrs(args: argparse.Namespace) -> int:
    from .exporters import export_inr_splits

    res = export_inr_splits(args.data, args.out, layout=args.layout, relative_paths=args.relative_paths,
                            overwrite=args.overwrite, progress=not args.quiet)
    print(", ".join(f"{s} {n} INRs" for s, n in res["counts"].items()) + f" -> {res['splits']}")
    print(f"statistics: {res['statistics']}")
    for note in res["conversions"]:
        print(f"converted: {note}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .inference import predict, predictions_csv
    from .io import atomic_write_text

    res = predict(args.run, args.data, split=args.split, batch_size=args.batch_size, device=args.device)
    if args.confusion is not None and "probs" not in res:
        raise ValueError("--confusion needs a classify run; this run predicts a number per network")
    n = len(res["pred"])
    if args.out is not None:
        atomic_write_text(predictions_csv(res), args.out)
        print(f"{n} predictions -> {args.out}")
    else:
        sys.stdout.write(predictions_csv(res))
    if "probs" in res:
        acc = float((res["pred"] == res["labels"]).double().mean()) if n else float("nan")
        summary = f"accuracy against the file's labels: {acc:.2%}"
    else:
        from .zoo import kendall_tau

        summary = f"Kendall's tau against the zoo's targets: {kendall_tau(res['pred'], res['target']):.4f}"
    print(summary, file=sys.stderr if args.out is None else sys.stdout)
    if args.confusion is not None:
        from .train.plots import plot_confusion_matrix

        plot_confusion_matrix(res["pred"], res["labels"], args.confusion, res["probs"].shape[1],
                              title=f"{Path(args.run).name} on {args.data}")
        print(f"confusion matrix -> {args.confusion}", file=sys.stderr if args.out is None else sys.stdout)
    return 0


def _embed(args: argparse.Namespace) -> int:
    from .inference import embed
    from .io import atomic_save

    emb, labels = embed(args.run, args.data, layer=args.layer, split=args.split, batch_size=args.batch_size,
                        device=args.device, return_labels=True)          # a zoo's metric, or INR labels
    atomic_save({"embeddings": emb, "labels": labels, "run": str(args.run), "data": str(args.data)}, args.out)
    print(f"{emb.shape[0]} embeddings of size {emb.shape[1] if emb.dim() == 2 else 0} -> {args.out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .inference import evaluate

    metrics = evaluate(args.run, args.data, split=args.split, batch_size=args.batch_size, device=args.device)
    print("  ".join(f"{k} {v:.4f}" if k != "acc" else f"acc {v:.2%}" for k, v in metrics.items()))
    return 0


# ----------------------------------------------------------------------------
# draw: pictures of an INR dataset or of one network's graph
# ----------------------------------------------------------------------------

def _add_draw_parser(sub) -> None:
    """``draw``: :func:`neuralgraph.visualize.dataset_report`, or one INR's graph (and its permutation)."""
    d = sub.add_parser("draw", help="pictures of an INR dataset (--data) or of one INR's neural graph (--graph-of)",
                       description="--data DIR: per-layer weight/bias histograms, fit-PSNR histogram and originals "
                                   "beside the INRs rendered at 4x resolution (layer_histograms.png, fit_psnr.png, "
                                   "reconstructions_4x.png in --out, default DIR). --graph-of DIR --index I --out "
                                   "net.png: the neural graph of INR I of DIR/train.pt; with --permute also "
                                   "net_permutation.png (before / after a random hidden-neuron permutation).")
    what = d.add_mutually_exclusive_group(required=True)
    what.add_argument("--data", type=Path, help="directory of INR splits (or one split file): dataset pictures")
    what.add_argument("--graph-of", type=Path, help="directory of INR splits (or one split file): draw one INR")
    d.add_argument("--out", type=Path, help="--data: output directory (default: the data directory); "
                                            "--graph-of: the PNG to write (required)")
    d.add_argument("--index", type=int, default=0, help="--graph-of: which INR of the split (default 0)")
    d.add_argument("--permute", action="store_true", help="--graph-of: also draw a random hidden permutation")
    d.add_argument("--seed", type=int, default=0, help="--permute: seed of the permutation")
    d.add_argument("--scale", choices=["layer", "global"], default="layer",
                   help="--graph-of: colour scale per layer (default; a SIREN's layers differ ~10x) or global")
    d.add_argument("--root", type=Path, help="--data: IDX directory of MNIST / Fashion-MNIST INRs, to show "
                                             "their original images")


def _draw(args: argparse.Namespace) -> int:
    import torch

    from .symmetry import permute_hidden
    from .visualize import dataset_report, draw, draw_permutation

    if args.data is not None:
        unused = [f for f, v in (("--index", args.index != 0), ("--permute", args.permute)) if v]
        if unused:
            raise ValueError(f"--data does not take {', '.join(unused)} (they go with --graph-of)")
        for path in dataset_report(args.data, args.out, root=args.root):
            print(path)
        return 0
    from .inr import INRDataset

    if args.out is None:
        raise ValueError("--graph-of needs --out FILE.png")
    path = args.graph_of / "train.pt" if args.graph_of.is_dir() else args.graph_of
    if not path.is_file():
        raise FileNotFoundError(f"no INR split {path} (make one with `neuralgraph fit-inrs`)")
    dataset = INRDataset(path)
    if not -len(dataset) <= args.index < len(dataset):
        raise ValueError(f"--index {args.index} is outside {path} ({len(dataset)} INRs)")
    graph = dataset[args.index]
    import matplotlib.pyplot as plt

    ax = draw(graph, path=args.out, scale=args.scale, title=f"INR {args.index} of {path} (label {int(graph.y)})")
    plt.close(ax.figure)
    print(args.out)
    if args.permute:
        permuted, perm = permute_hidden(graph, torch.Generator().manual_seed(args.seed))
        print(draw_permutation(graph, permuted, perm, args.out.with_name(f"{args.out.stem}_permutation.png")))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (errors print one line, no traceback)."""
    from .io import DirectoryBusy
    from .l2o.cli import run_l2o
    from .zoo.cli import run_zoo

    args = build_parser().parse_args(argv)
    commands = {"fit-inrs": _fit, "train": _train, "quickstart": _quickstart, "models": _models, "zoo": run_zoo,
                "import-inrs": _import_inrs, "export-inrs": _export_inrs, "extend": _extend, "predict": _predict,
                "embed": _embed, "evaluate": _evaluate,
                "draw": _draw, "l2o": run_l2o}
    try:
        return commands[args.command](args)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError, FloatingPointError, DirectoryBusy) as e:
        print(f"neuralgraph {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nneuralgraph {args.command}: interrupted; run the same command again"
              + (" with --resume" if args.command == "train" else "") + " to continue", file=sys.stderr)
        return 130


def entry() -> int:
    """The process entry of the ``neuralgraph`` command (and ``python -m neuralgraph``): :func:`main` in a process
    whose allocator keeps large tensors on the heap (:func:`neuralgraph.allocator.keep_freed_memory`). ``main``
    itself leaves the allocator alone, so calling it inside another program changes nothing there."""
    from .allocator import keep_freed_memory

    keep_freed_memory()
    return main()


if __name__ == "__main__":
    sys.exit(entry())
