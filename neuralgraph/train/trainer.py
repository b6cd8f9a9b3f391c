"""Train a classifier on an INR dataset: the library's end-to-end job.

``train(TrainConfig(data=..., out=..., model=...))`` reads ``train.pt`` /
``val.pt`` / ``test.pt`` from ``data`` (made by ``neuralgraph fit-inrs`` or
:func:`neuralgraph.inr.build_inr_splits`), trains with AdamW, linear warmup
then cosine decay and gradient-norm clipping, selects the epoch with the best
validation accuracy (ties: lower validation loss) and reports the test
accuracy of that epoch's weights. The run directory gets::

    metrics.csv            epoch, train_loss, train_acc, val_loss, val_acc, lr (of the epoch's last
                           step), time (cumulative seconds of training and validation)
    last.pt / best.pt      checkpoints (atomic), see neuralgraph.train.checkpoint
    results.json           best epoch, validation and test accuracy, timings
    learning_curves.png    loss / accuracy per epoch
    reconstructions.png    test INRs rendered as images, with predicted / true labels
    tb/                    TensorBoard events (only if tensorboard is installed)
    .lock                  held (fcntl.flock) by the run using the directory: a second run into the
                           same directory fails at once, naming the holder's PID (see neuralgraph.io.lock_directory)

Reproducibility: every source of randomness is either derived from
``(seed, epoch, rank)`` (shuffling, augmentation) or checkpointed (global RNG
states of every rank, optimizer and scheduler), so ``resume=True`` continues an
interrupted run bit for bit on the same device and thread count.

Under ``torchrun`` the same function runs data-parallel (see
:mod:`neuralgraph.train.distributed`); ``batch_size`` is per process.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..augment import Augment
from ..inr import INRDataset, render
from ..io import DirectoryBusy, atomic_write_text, lock_directory
from . import distributed as D
from .checkpoint import capture_rng, config_mismatch, load_checkpoint, restore_rng, save_checkpoint
from .options import check_options, dataclass_hints
from .plots import plot_learning_curves, plot_reconstructions
from .registry import MODELS, build_model, check_hyperparameters

__all__ = ["TrainConfig", "TrainResult", "train", "evaluate", "load_trained", "load_splits", "DEFAULT_MODEL",
           "RESUME_MAY_CHANGE", "RunMismatch", "resolve_device"]

#: The model ``neuralgraph train`` and ``quickstart`` use when none is named.
DEFAULT_MODEL = "nggnn"

#: Config fields that may differ between a checkpoint and the resumed run
#: (they do not change what is computed, or only where it runs).
RESUME_MAY_CHANGE = frozenset({"data", "out", "device", "eval_batch_size", "n_reconstructions"})

METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "time")
SPLITS = ("train", "val", "test")


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in every checkpoint)."""

    data: str
    out: str
    model: str = DEFAULT_MODEL
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    clip_grad_norm: float = 1.0          # <= 0 disables clipping
    label_smoothing: float = 0.0
    seed: int = 0
    device: str = "cpu"                  # "cpu", "cuda", "cuda:1" or "auto"
    normalize: bool = True               # standardise each layer with train-split statistics
    augment: dict[str, Any] = field(default_factory=dict)   # neuralgraph.augment.Augment fields
    eval_batch_size: int = 256
    n_reconstructions: int = 32

    def __post_init__(self) -> None:
        """Check every setting by its annotated type and range (one-line ``ValueError`` naming it)."""
        self.data, self.out = str(self.data), str(self.out)
        check_options(self.to_dict(), dataclass_hints(TrainConfig), owner="TrainConfig", noun="setting")
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}")
        ranges = {"epochs": (self.epochs >= 1, ">= 1"), "batch_size": (self.batch_size >= 1, ">= 1"),
                  "lr": (self.lr > 0, "> 0"), "weight_decay": (self.weight_decay >= 0, ">= 0"),
                  "warmup_epochs": (self.warmup_epochs >= 0, ">= 0"),
                  "label_smoothing": (0 <= self.label_smoothing < 1, "in [0, 1)"),
                  "eval_batch_size": (self.eval_batch_size >= 1, ">= 1"),
                  "n_reconstructions": (self.n_reconstructions >= 0, ">= 0"),
                  "seed": (-2 ** 63 <= self.seed < 2 ** 64, "in [-2**63, 2**64)")}
        bad = [f"{k}={getattr(self, k)!r} (must be {rule})" for k, (ok, rule) in ranges.items() if not ok]
        if bad:
            raise ValueError("invalid training settings: " + ", ".join(bad))
        _check_device_name(self.device)
        check_hyperparameters(self.model, self.model_kwargs)
        check_options(self.augment, dataclass_hints(Augment), owner="augment", noun="option")
        Augment(**self.augment)          # ranges of the augmentation fields

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainResult:
    """Outcome of :func:`train` (identical on every rank)."""

    run_dir: Path
    model: str
    num_params: int
    epochs_done: int
    best_epoch: int
    best_val_acc: float
    best_val_loss: float
    test_acc: float | None          # None when the run stopped before its last epoch
    test_loss: float | None
    train_time_s: float
    history: list[dict[str, float]]
    finished: bool
    classifier: nn.Module | None = field(default=None, repr=False)   # best-validation weights, eval mode


# ----------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------

def load_splits(data_dir: str | os.PathLike, normalize: bool = True) -> dict[str, INRDataset]:
    """The three split files of ``data_dir``; val/test are normalised with *train* statistics.

    ``ValueError`` if the splits do not come from one fit: other architecture,
    ``num_classes`` or fit settings (see ``meta["fit"]`` / ``meta["dataset"]``).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data directory not found: {data_dir} (make one with "
                                f"`neuralgraph fit-inrs --source digits --out {data_dir}`)")
    missing = [s for s in SPLITS if not (data_dir / f"{s}.pt").is_file()]
    if missing:
        raise FileNotFoundError(f"{data_dir} lacks {', '.join(s + '.pt' for s in missing)}; expected train.pt, "
                                f"val.pt and test.pt from `neuralgraph fit-inrs --out {data_dir}`")
    ds = {s: INRDataset(data_dir / f"{s}.pt", normalize=normalize) for s in SPLITS}
    for s in ("val", "test"):
        if ds[s].arch != ds["train"].arch:
            raise ValueError(f"{ds[s].path}: architecture {ds[s].arch.widths} differs from train.pt's "
                             f"{ds['train'].arch.widths}")
        ds[s].stats = ds["train"].stats
    for s in SPLITS:
        if len(ds[s]) == 0:
            raise ValueError(f"{ds[s].path} holds no INRs")
    # one fit: same number of classes (labels were checked against it on reading) and the same fit
    # settings, except the per-split seed that build_inr_splits derives from the dataset seed
    # (meta["dataset"], when present, holds the dataset seed and the rest of the settings)
    train = ds["train"]
    for s in ("val", "test"):
        split = ds[s]
        if split.num_classes != train.num_classes:
            raise ValueError(f"{split.path}: num_classes {split.num_classes} differs from train.pt's "
                             f"{train.num_classes}; the splits must come from one dataset")
        ours, theirs = ({**{k: v for k, v in (d.meta.get("fit") or {}).items() if k != "seed"},
                         **(d.meta.get("dataset") or {})} for d in (split, train))
        diff = [f"{k}={ours.get(k)!r} (train.pt: {theirs.get(k)!r})" for k in sorted(set(ours) | set(theirs))
                if ours.get(k) != theirs.get(k)]
        if diff:
            raise ValueError(f"{split.path} was fitted with other settings than train.pt: {', '.join(diff)}; "
                             f"refit the directory as one dataset (`neuralgraph fit-inrs --overwrite --out "
                             f"{data_dir}`)")
    return ds


def _data_name(ds: dict[str, INRDataset], config: TrainConfig) -> str:
    """``digits INRs`` / ``mnist INRs`` from the split's metadata, else the directory name."""
    source = ds["train"].meta.get("source")
    return f"{source} INRs ({Path(config.data).name})" if source else Path(config.data).name


def _num_classes(ds: dict[str, INRDataset]) -> int:
    """Classes of the classifier; refuses val/test labels the training split never shows."""
    seen = set(ds["train"].labels.unique().tolist())
    for s in ("val", "test"):
        unseen = sorted(set(ds[s].labels.unique().tolist()) - seen)
        if unseen:
            raise ValueError(f"{ds[s].path} holds label(s) {unseen[:10]} that train.pt lacks: the classifier could "
                             f"never predict them; fit splits whose train.pt holds every class")
    return max(d.num_classes for d in ds.values())


def _data_fingerprint(ds: dict[str, INRDataset]) -> dict[str, Any]:
    return {s: {"n": len(d), "fingerprint": d.meta.get("fingerprint"), "arch": d.arch.to_dict()}
            for s, d in ds.items()}


# ----------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------

def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: expected an int >= 1")


@torch.no_grad()
def evaluate(model: nn.Module, dataset: INRDataset, *, batch_size: int = 256, device: torch.device | str = "cpu",
             info: D.DistInfo = D.DistInfo()) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over the whole split (sharded over ranks, exact)."""
    _check_batch_size(batch_size)
    model = D.unwrap_model(model)
    was_training = model.training
    model.eval()
    idx = D.eval_shard(len(dataset), info)
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    for s in range(0, len(idx), batch_size):
        b = dataset.batch(idx[s:s + batch_size]).to(device)
        logits = model(b)
        sums[0] += F.cross_entropy(logits.float(), b.y, reduction="sum").double()
        sums[1] += (logits.argmax(1) == b.y).sum()
        sums[2] += b.y.numel()
    D.all_reduce_sum(sums, info)
    model.train(was_training)
    return float(sums[0] / sums[2]), float(sums[1] / sums[2])


@torch.no_grad()
def predict(model: nn.Module, dataset: INRDataset, indices: Tensor, *, batch_size: int = 256,
            device: torch.device | str = "cpu") -> Tensor:
    """Predicted labels for ``dataset[indices]``."""
    _check_batch_size(batch_size)
    model = D.unwrap_model(model)
    was_training = model.training
    model.eval()
    out = [model(dataset.batch(indices[s:s + batch_size]).to(device)).argmax(1).cpu()
           for s in range(0, len(indices), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


# ----------------------------------------------------------------------------
# schedule and files
# ----------------------------------------------------------------------------

def _lr_lambda(warmup: int, total: int):
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return f


def _write_metrics(history: list[dict[str, float]], path: Path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    w.writeheader()
    for h in history:
        w.writerow({k: h[k] for k in METRIC_COLUMNS})
    atomic_write_text(buf.getvalue(), path)


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:           # tensorboard is optional: CSV is always written
        return None
    return SummaryWriter(str(run_dir / "tb"))


_DEVICE = re.compile(r"cpu|auto|cuda(:\d+)?")


def _check_device_name(device: str) -> None:
    if not _DEVICE.fullmatch(device):
        raise ValueError(f"device {device!r} is not supported; use cpu, cuda, cuda:N or auto")


def resolve_device(device: str) -> str:
    """``device`` checked against this machine (``auto`` -> ``cuda`` if available, else ``cpu``).

    Accepts ``cpu``, ``cuda``, ``cuda:N`` (``N`` below the number of visible GPUs) and ``auto``;
    anything else (``mps``, ``meta``, a typo) is a one-line ``ValueError``.
    """
    _check_device_name(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available on this machine; use cpu")
        count = torch.cuda.device_count()
        if ":" in device and int(device.split(":")[1]) >= count:
            raise ValueError(f"device {device!r} requested but only {count} CUDA device(s) are visible "
                             f"(cuda:0..cuda:{count - 1})")
    return device


def _best_of_this_run(best_path: Path, last: dict[str, Any]) -> dict[str, Tensor]:
    """The weights of ``best.pt``, checked to be the best epoch of the run in ``last.pt``
    (a ``best.pt`` copied or left from another run would report another run's test accuracy)."""
    best = load_checkpoint(best_path)
    same_run = (not config_mismatch(best["config"], last["config"], ignore=RESUME_MAY_CHANGE)
                and best["epoch"] == last["best"]["epoch"] and best["data"] == last["data"]
                and best["history"] == last["history"][:best["epoch"]])
    if not same_run:
        raise ValueError(f"{best_path} is not the best epoch of the run in {best_path.parent / 'last.pt'} (another "
                         f"run's file?); remove the run directory and train again")
    return best["model"]


class RunMismatch(ValueError):
    """The run directory holds a run made with other settings or data (``differences``: what differs)."""

    def __init__(self, run_dir: Path, differences: str) -> None:
        self.run_dir, self.differences = run_dir, differences
        super().__init__(f"cannot resume {run_dir / 'last.pt'}: the run was made with other settings "
                         f"({differences}); resume it with the same settings, or train into another "
                         f"directory (--out) or remove {run_dir}")


@contextlib.contextmanager
def _hold_run_directory(run_dir: Path, info: D.DistInfo):
    """Rank 0 locks the run directory for the whole run; every rank learns whether it could,
    so all ranks stop together when another run holds it."""
    with contextlib.ExitStack() as stack:
        error = None
        if info.is_main:
            try:
                stack.enter_context(lock_directory(run_dir, "run directory"))
            except DirectoryBusy as e:
                error = str(e)
        error = D.broadcast_object(error, info)
        if error is not None:
            raise DirectoryBusy(error)
        yield


# ----------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------

def train(config: TrainConfig, *, resume: bool = False, progress: bool = True, verbose: bool = True,
          stop_after_epoch: int | None = None, threads: int | None = None) -> TrainResult:
    """Train ``config.model`` on ``config.data``; write the run directory ``config.out``.

    ``resume=True`` continues from ``out/last.pt`` if it exists (the config
    must match, except for :data:`RESUME_MAY_CHANGE`) and starts fresh
    otherwise; without it an existing ``last.pt`` is an error, never silently
    overwritten. ``stop_after_epoch`` ends the process after that many epochs
    in total (for time-sliced jobs; resume later). A finished run resumed
    again only re-evaluates and redraws.
    """
    for name, value in (("threads", threads), ("stop_after_epoch", stop_after_epoch)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{name}={value!r}: expected an int >= 1 (or None)")
    if stop_after_epoch is not None and stop_after_epoch > config.epochs:
        raise ValueError(f"stop_after_epoch={stop_after_epoch} is beyond epochs={config.epochs}: the run would "
                         f"finish without stopping; lower --stop-after-epoch or raise --epochs")
    if threads is not None:
        torch.set_num_threads(threads)
    device_name = resolve_device(config.device)
    was_initialised = torch.distributed.is_available() and torch.distributed.is_initialized()
    info, device = D.init_distributed(device_name)
    try:
        with _hold_run_directory(Path(config.out), info):
            return _train(config, info, device, resume, progress, verbose, stop_after_epoch)
    finally:
        if not was_initialised:
            D.shutdown_distributed(info)


def _train(config: TrainConfig, info: D.DistInfo, device: torch.device, resume: bool, progress: bool,
           verbose: bool, stop_after_epoch: int | None) -> TrainResult:
    main = info.is_main
    say = (lambda *a: print(*a, flush=True)) if (verbose and main) else (lambda *a: None)
    run_dir = Path(config.out)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"

    ds = load_splits(config.data, normalize=config.normalize)
    num_classes = _num_classes(ds)
    arch = ds["train"].arch
    data_fp = _data_fingerprint(ds)
    augment = Augment(**config.augment) if config.augment else None

    torch.manual_seed(config.seed)                    # same initial weights on every rank
    model = build_model(config.model, num_classes, arch=arch, **config.model_kwargs).to(device)
    num_params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n_train = len(ds["train"])
    per_rank = -(-n_train // info.world_size)
    steps_per_epoch = -(-per_rank // config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = min(total_steps, int(round(config.warmup_epochs * steps_per_epoch)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(warmup, total_steps))
    torch.manual_seed(D._mix(config.seed, info.rank, 7))   # training randomness (dropout, in-model augmentation)

    start_epoch, history, best, elapsed = 0, [], None, 0.0
    best_state = None
    if last_path.exists() and not resume:
        raise FileExistsError(f"{run_dir} already holds a run ({last_path.name}); pass --resume to continue it "
                              f"or choose another output directory")
    if last_path.exists():
        ck = load_checkpoint(last_path)
        diff = config_mismatch(ck["config"], config.to_dict(), ignore=RESUME_MAY_CHANGE)
        if diff:
            raise RunMismatch(run_dir, "; ".join(diff))
        if ck.get("data") != data_fp:
            raise RunMismatch(run_dir, f"data: the data in {config.data} differ from the data the run was trained "
                                       f"on (split sizes, fit fingerprints or architecture)")
        if ck.get("world_size", 1) != info.world_size:
            raise ValueError(f"cannot resume {last_path}: it was trained with {ck.get('world_size', 1)} processes, "
                             f"this job has {info.world_size} (the data order would change)")
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        start_epoch, history, best, elapsed = ck["epoch"], list(ck["history"]), ck["best"], float(ck["elapsed"])
        restore_rng(ck["rng"][info.rank])
        if best is not None:
            best_state = _best_of_this_run(best_path, ck)
        say(f"resuming {run_dir} after epoch {start_epoch}/{config.epochs}")

    ddp_model = D.wrap_model(model, info, device)
    writer = _tensorboard(run_dir) if main else None
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        say(f"model {config.model} ({num_params:,} parameters) on {device}"
            + (f" x{info.world_size} processes" if info.enabled else "")
            + f"; {n_train} train / {len(ds['val'])} val / {len(ds['test'])} test INRs, {num_classes} classes")

    stop = config.epochs if stop_after_epoch is None else min(config.epochs, stop_after_epoch)
    for epoch in range(start_epoch, stop):
        t0 = time.perf_counter()
        ddp_model.train()
        order = D.shard_indices(n_train, info, seed=config.seed, epoch=epoch)
        gen = torch.Generator().manual_seed(D._mix(config.seed, epoch, info.rank, 1))
        sums = torch.zeros(3, dtype=torch.float64, device=device)
        starts = range(0, len(order), config.batch_size)
        if progress and main:
            from tqdm.auto import tqdm
            starts = tqdm(starts, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False)
        for s in starts:
            b = ds["train"].batch(order[s:s + config.batch_size], augment=augment, generator=gen).to(device)
            logits = ddp_model(b)
            loss = F.cross_entropy(logits.float(), b.y, label_smoothing=config.label_smoothing)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"epoch {epoch + 1}: training loss is {loss.item()}; lower the learning "
                                         f"rate (now {config.lr}) or check the data")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip_grad_norm > 0:
                nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm)
            optimizer.step()
            last_lr = optimizer.param_groups[0]["lr"]       # the rate this step used
            scheduler.step()
            with torch.no_grad():
                sums += torch.stack([loss.detach().double() * b.y.numel(),
                                     (logits.argmax(1) == b.y).sum().double(),
                                     torch.tensor(float(b.y.numel()), dtype=torch.float64, device=device)])
        D.all_reduce_sum(sums, info)
        val_loss, val_acc = evaluate(model, ds["val"], batch_size=config.eval_batch_size, device=device, info=info)
        elapsed += time.perf_counter() - t0
        rec = {"epoch": epoch + 1, "train_loss": float(sums[0] / sums[2]), "train_acc": float(sums[1] / sums[2]),
               "val_loss": val_loss, "val_acc": val_acc, "lr": last_lr, "time": elapsed}
        history.append(rec)
        improved = best is None or (val_acc, -val_loss) > (best["val_acc"], -best["val_loss"])
        if improved:
            best = {"epoch": epoch + 1, "val_acc": val_acc, "val_loss": val_loss}
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        rng = D.all_gather_objects(capture_rng(), info)
        if main:
            state = {"config": config.to_dict(), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "step": scheduler.last_epoch,
                     "history": history, "best": best, "rng": rng, "data": data_fp, "arch": arch.to_dict(),
                     "num_classes": num_classes, "world_size": info.world_size, "elapsed": elapsed}
            if improved:
                save_checkpoint(state, best_path)
            save_checkpoint(state, last_path)
            _write_metrics(history, run_dir / "metrics.csv")
            if writer is not None:
                for k in METRIC_COLUMNS[1:-1]:
                    writer.add_scalar(k, rec[k], epoch + 1)
                writer.flush()
            say(f"epoch {epoch + 1:3d}/{config.epochs}  train loss {rec['train_loss']:.4f} acc "
                f"{rec['train_acc']:.2%}  val loss {val_loss:.4f} acc {val_acc:.2%}  lr {rec['lr']:.2e}  "
                f"{elapsed:6.1f}s" + ("  *" if improved else ""))
        D.barrier(info)                           # nobody races ahead of the checkpoint
    if writer is not None:
        writer.close()

    epochs_done = len(history)
    finished = epochs_done >= config.epochs
    if main and history:
        plot_learning_curves(history, run_dir / "learning_curves.png", best_epoch=best["epoch"],
                             title=f"{config.model} on {_data_name(ds, config)}")
    test_loss = test_acc = None
    if finished:
        model.load_state_dict(best_state)
        test_loss, test_acc = evaluate(model, ds["test"], batch_size=config.eval_batch_size, device=device,
                                       info=info)
        if main:
            results = {"model": config.model, "num_params": num_params, "best_epoch": best["epoch"],
                       "best_val_acc": best["val_acc"], "best_val_loss": best["val_loss"], "test_acc": test_acc,
                       "test_loss": test_loss, "epochs": epochs_done, "train_time_s": elapsed,
                       "world_size": info.world_size, "device": str(device),
                       "n": {s: len(d) for s, d in ds.items()}, "config": config.to_dict()}
            atomic_write_text(json.dumps(results, indent=2) + "\n", run_dir / "results.json")
            _draw_reconstructions(model, ds["test"], config, run_dir / "reconstructions.png", device, test_acc)
            say(f"best validation accuracy {best['val_acc']:.2%} at epoch {best['epoch']}; "
                f"test accuracy {test_acc:.2%} (loss {test_loss:.4f})")
        D.barrier(info)
    elif main and stop_after_epoch is not None:
        say(f"stopped after epoch {epochs_done}/{config.epochs}; continue with --resume")
    return TrainResult(run_dir=run_dir, model=config.model, num_params=num_params, epochs_done=epochs_done,
                       best_epoch=best["epoch"] if best else 0, best_val_acc=best["val_acc"] if best else float("nan"),
                       best_val_loss=best["val_loss"] if best else float("nan"), test_acc=test_acc,
                       test_loss=test_loss, train_time_s=elapsed, history=history, finished=finished,
                       classifier=model.eval() if finished else None)


def _draw_reconstructions(model: nn.Module, dataset: INRDataset, config: TrainConfig, path: Path,
                          device: torch.device, test_acc: float) -> Path | None:
    """Render the first test INRs as images and title them with the model's predictions."""
    fit = dataset.meta.get("fit", {})
    shape = fit.get("image_shape")
    n = min(config.n_reconstructions, len(dataset))
    if n == 0 or not shape or len(shape) < 2:
        return None                       # not image INRs: nothing to draw
    idx = torch.arange(n)
    weights, biases = dataset.params(idx)
    images = render(weights, biases, int(shape[0]), int(shape[1]), w0=float(fit.get("w0", 30.0)),
                    offset=float(fit.get("offset", 0.5)))
    pred = predict(model, dataset, idx, batch_size=config.eval_batch_size, device=device)
    return plot_reconstructions(images, pred, dataset.labels[idx], path,
                                title=f"{config.model}: test INRs decoded, predicted / true label "
                                      f"(test accuracy {test_acc:.1%})")


def load_trained(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """A trained classifier from ``best.pt`` (or a run directory), in eval mode, and its checkpoint dict."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    device = resolve_device(str(device))
    ck = load_checkpoint(path)
    from ..architecture import Architecture

    cfg = ck["config"]
    model = build_model(cfg["model"], ck["num_classes"], arch=Architecture.from_dict(ck["arch"]),
                        **cfg["model_kwargs"])
    model.load_state_dict(ck["model"])
    return model.to(device).eval(), ck
