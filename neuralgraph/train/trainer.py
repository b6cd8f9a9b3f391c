"""Train a processor on a dataset of networks: the library's end-to-end job, for every task.

``train(TrainConfig(data=..., out=..., model=..., task=...))`` reads the
train / val / test splits of ``data`` (INR datasets from ``neuralgraph fit-inrs``
or :func:`neuralgraph.inr.build_inr_splits`), trains with AdamW, linear warmup
then cosine decay and gradient-norm clipping, selects the epoch whose
validation metrics the task ranks best (classification: accuracy, ties by the
lower loss) and reports the test metrics of that epoch's weights. What is
optimised and measured is the task's (:mod:`neuralgraph.tasks`: ``classify``,
``edit``, ...); the loop, checkpoints, resume and DDP are the same for all.
The run directory gets::

    metrics.csv            epoch, train_<m> and val_<m> for each metric m of the task (classify:
                           loss, acc), lr (of the epoch's last step), time (cumulative seconds)
    last.pt / best.pt      checkpoints (atomic), see neuralgraph.train.checkpoint
    results.json           best epoch, validation and test metrics, timings
    learning_curves.png    the task's metrics per epoch
    <task pictures>        classify: reconstructions.png (test INRs rendered, predicted / true
                           label); edit: edits.png (input / target / edited INR)
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
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..augment import Augment
from ..device import check_device_name, resolve_device
from ..inr import INRDataset
from ..inr.splits import load_splits
from ..tasks import TASKS, Classify, Task, make_task
from ..io import DirectoryBusy, atomic_write_text, lock_directory
from ..seeding import derive_seed
from . import distributed as D
from .accel import DataStepMeter, amp_autocast, check_amp, compile_forward, prefetch, to_float32
from .checkpoint import (capture_rng, config_mismatch, inference_state, load_checkpoint, restore_rng,
                         save_checkpoint)
from .options import check_options, dataclass_hints
from .plots import plot_learning_curves
from .registry import MODELS, build_model, check_hyperparameters

__all__ = ["TrainConfig", "TrainResult", "train", "evaluate_classifier", "evaluate_split", "load_trained", "load_splits",
           "DEFAULT_MODEL", "RESUME_MAY_CHANGE", "RunMismatch", "resolve_device", "metric_columns"]

#: The model ``neuralgraph train`` and ``quickstart`` use when none is named.
DEFAULT_MODEL = "nggnn"

#: Config fields that may differ between a checkpoint and the resumed run
#: (they do not change what is computed, or only where it runs).
RESUME_MAY_CHANGE = frozenset({"data", "out", "device", "eval_batch_size", "n_reconstructions", "amp", "compile"})



def metric_columns(task: Task) -> tuple[str, ...]:
    """Columns of metrics.csv for ``task``: epoch, train_<m>..., val_<m>..., lr, time, data_s, step_s.

    ``data_s`` / ``step_s``: seconds of the epoch spent waiting for batches (built and moved in a
    background thread meanwhile, :func:`~neuralgraph.train.accel.prefetch`) vs in training steps
    (forward, backward, optimiser), see :class:`~neuralgraph.train.accel.DataStepMeter`.
    """
    return ("epoch", *(f"train_{m}" for m in task.metrics), *(f"val_{m}" for m in task.metrics), "lr", "time",
            "data_s", "step_s")


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in every checkpoint)."""

    data: str
    out: str
    model: str = DEFAULT_MODEL
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    task: str = "classify"               # neuralgraph.tasks.TASKS
    task_kwargs: dict[str, Any] = field(default_factory=dict)   # the task's options
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    clip_grad_norm: float = 1.0          # <= 0 disables clipping
    label_smoothing: float = 0.0         # classify only
    seed: int = 0
    device: str = "cpu"                  # "cpu", "cuda", "cuda:1" or "auto"
    normalize: bool = True               # standardise each layer with train-split statistics
    augment: dict[str, Any] = field(default_factory=dict)   # neuralgraph.augment.Augment fields
    eval_batch_size: int = 256
    n_reconstructions: int = 32
    amp: bool = False                    # bf16 autocast of the forward (CUDA; see neuralgraph.train.accel)
    compile: bool = False                # torch.compile the forward (eager fallback with a warning)

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
        check_device_name(self.device)
        check_hyperparameters(self.model, self.model_kwargs)
        self.make_task()                 # task name and options
        check_options(self.augment, dataclass_hints(Augment), owner="augment", noun="option")
        Augment(**self.augment)          # ranges of the augmentation fields

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a plain dict (written to ``config.json`` and checkpoints)."""
        return asdict(self)

    def make_task(self) -> Task:
        """The :class:`~neuralgraph.tasks.Task` this run trains (``label_smoothing`` goes to ``classify``)."""
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose one of {', '.join(TASKS)}")
        kwargs = dict(self.task_kwargs)
        if self.label_smoothing:
            if self.task != "classify":
                raise ValueError(f"label_smoothing={self.label_smoothing} applies to task 'classify' only, "
                                 f"not {self.task!r}")
            kwargs["label_smoothing"] = self.label_smoothing
        return make_task(self.task, **kwargs)


@dataclass
class TrainResult:
    """Outcome of :func:`train` (identical on every rank)."""

    run_dir: Path
    model: str
    task: str
    num_params: int
    epochs_done: int
    best_epoch: int
    val_metrics: dict[str, float]        # of the best epoch
    test_metrics: dict[str, float] | None  # None when the run stopped before its last epoch
    train_time_s: float
    history: list[dict[str, float]]
    finished: bool
    classifier: nn.Module | None = field(default=None, repr=False)   # best-validation weights, eval mode

    @property
    def best_val_acc(self) -> float:
        """Validation accuracy of the selected epoch (``nan`` for tasks without ``acc``)."""
        return self.val_metrics.get("acc", float("nan"))

    @property
    def best_val_loss(self) -> float:
        """Validation loss of the selected epoch."""
        return self.val_metrics.get("loss", float("nan"))

    @property
    def test_acc(self) -> float | None:
        """Test accuracy of the selected model (``None`` if the run stopped early or the task has no ``acc``)."""
        return None if self.test_metrics is None else self.test_metrics.get("acc")

    @property
    def test_loss(self) -> float | None:
        """Test loss of the selected model (``None`` if the run stopped before its last epoch)."""
        return None if self.test_metrics is None else self.test_metrics.get("loss")


# ----------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------

def _data_name(ds: dict[str, INRDataset], config: TrainConfig) -> str:
    """``digits INRs`` / ``mnist INRs`` from the split's metadata, else the directory name."""
    source = ds["train"].meta.get("source")
    return f"{source} INRs ({Path(config.data).name})" if source else Path(config.data).name


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
def evaluate_split(model: nn.Module, dataset: Any, task: Task, *, batch_size: int = 256,
                   device: torch.device | str = "cpu", info: D.DistInfo = D.DistInfo(), amp: bool = False
                   ) -> dict[str, float]:
    """The task's metrics over a whole split (sharded over ranks, exact: per-network values are gathered);
    ``amp``: bf16 autocast of the forward."""
    _check_batch_size(batch_size)
    model = D.unwrap_model(model)
    was_training = model.training
    model.eval()
    idx = D.eval_shard(len(dataset), info)
    values = []
    chunks = [idx[s:s + batch_size] for s in range(0, len(idx), batch_size)]
    for b in prefetch(lambda i: task.eval_batch(dataset, i).to(device), chunks):
        with amp_autocast(device, amp):
            output = model(b)
        values.append(task.collect(to_float32(output) if amp else output, b))
    model.train(was_training)
    return task.summarize(_gather(values, info))


def _gather(values: list[dict[str, Tensor]], info: D.DistInfo) -> dict[str, Tensor]:
    """Per-network values of the batches of every rank, concatenated (on CPU)."""
    local = {k: torch.cat([v[k].detach().cpu() for v in values]) for k in values[0]} if values else {}
    if not info.enabled:
        return local
    parts = [p for p in D.all_gather_objects(local, info) if p]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


@torch.no_grad()
def evaluate_classifier(model: nn.Module, dataset: INRDataset, *, batch_size: int = 256,
                        device: torch.device | str = "cpu", info: D.DistInfo = D.DistInfo()) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of a classifier over the whole split (see :func:`evaluate_split`)."""
    metrics = evaluate_split(model, dataset, Classify(), batch_size=batch_size, device=device, info=info)
    return metrics["loss"], metrics["acc"]


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


def _write_metrics(history: list[dict[str, float]], path: Path, columns: tuple[str, ...]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for h in history:
        w.writerow({k: h.get(k, "") for k in columns})      # runs resumed from before a column existed
    atomic_write_text(buf.getvalue(), path)


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:           # tensorboard is optional: CSV is always written
        return None
    return SummaryWriter(str(run_dir / "tb"))


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
    device_name = str(resolve_device(config.device))
    was_initialised = torch.distributed.is_available() and torch.distributed.is_initialized()
    info, device = D.init_distributed(device_name)
    try:
        with _hold_run_directory(Path(config.out), info):
            return _train(config, info, device, resume, progress, verbose, stop_after_epoch)
    finally:
        if not was_initialised:
            D.shutdown_distributed(info)


@dataclass
class _Run:
    """What one training run holds between its steps."""

    config: TrainConfig
    task: Task
    splits: dict[str, Any]
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    augment: Augment | None
    data_fp: dict[str, Any]
    num_params: int
    columns: tuple[str, ...]
    forward: Any = None                          # the (possibly compiled) forward of the wrapped model
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, Any] | None = None           # {"epoch": e, "val_<m>": ...} of the best epoch so far
    best_state: dict[str, Tensor] | None = None
    elapsed: float = 0.0


def _setup(config: TrainConfig, info: D.DistInfo, device: torch.device) -> _Run:
    """Data, task, model, optimizer and schedule of a fresh run."""
    task = config.make_task()
    splits = task.load_splits(config.data, normalize=config.normalize)
    task.setup(splits)
    arch = splits["train"].arch
    torch.manual_seed(config.seed)                    # same initial weights on every rank
    model = build_model(config.model, task.out_dim(), arch=arch, head=task.head, **config.model_kwargs).to(device)
    # foreach: one multi-tensor update instead of a loop over the processors' hundreds of small parameter
    # tensors (DWSNet has 388): the same bits as the loop, twice as fast on CPU, where torch's default is the loop
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, foreach=True)
    per_rank = -(-len(splits["train"]) // info.world_size)
    steps_per_epoch = -(-per_rank // config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = min(total_steps, int(round(config.warmup_epochs * steps_per_epoch)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(warmup, total_steps))
    torch.manual_seed(derive_seed(config.seed, info.rank, 7))   # training randomness (dropout, in-model augmentation)
    return _Run(config=config, task=task, splits=splits, model=model, optimizer=optimizer, scheduler=scheduler,
                augment=Augment(**config.augment) if config.augment else None, data_fp=_data_fingerprint(splits),
                num_params=sum(p.numel() for p in model.parameters()), columns=metric_columns(task))


def _resume(run: _Run, run_dir: Path, info: D.DistInfo) -> int:
    """Load ``last.pt`` into ``run`` (refusing another run's files); returns the epochs already done."""
    last_path = run_dir / "last.pt"
    ck = load_checkpoint(last_path)
    saved = dict(ck["config"])
    saved.setdefault("task", "classify")              # runs made before tasks existed
    saved.setdefault("task_kwargs", {})
    diff = config_mismatch(saved, run.config.to_dict(), ignore=RESUME_MAY_CHANGE)
    if diff:
        raise RunMismatch(run_dir, "; ".join(diff))
    if ck.get("data") != run.data_fp:
        raise RunMismatch(run_dir, f"data: the data in {run.config.data} differ from the data the run was trained "
                                   f"on (split sizes, fit fingerprints or architecture)")
    if ck.get("world_size", 1) != info.world_size:
        raise ValueError(f"cannot resume {last_path}: it was trained with {ck.get('world_size', 1)} processes, "
                         f"this job has {info.world_size} (the data order would change)")
    run.model.load_state_dict(ck["model"])
    run.optimizer.load_state_dict(ck["optimizer"])
    run.scheduler.load_state_dict(ck["scheduler"])
    run.history, run.best, run.elapsed = list(ck["history"]), ck["best"], float(ck["elapsed"])
    restore_rng(ck["rng"][info.rank])
    if run.best is not None:
        run.best_state = _best_of_this_run(run_dir / "best.pt", ck)
    return int(ck["epoch"])


def _train_epoch(run: _Run, epoch: int, info: D.DistInfo, device: torch.device, ddp_model: nn.Module,
                 progress: bool) -> tuple[dict[str, float], float, dict[str, float]]:
    """One pass over the training split; returns its metrics, the learning rate of its last step and the
    data / step times."""
    config, task = run.config, run.task
    ddp_model.train()
    order = D.shard_indices(len(run.splits["train"]), info, seed=config.seed, epoch=epoch)
    gen = torch.Generator().manual_seed(derive_seed(config.seed, epoch, info.rank, 1))
    chunks = [order[s:s + config.batch_size] for s in range(0, len(order), config.batch_size)]
    batches = prefetch(lambda idx: task.train_batch(run.splits["train"], idx, run.augment, gen).to(device), chunks)
    steps = range(len(chunks))
    if progress and info.is_main:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False)
    values, last_lr = [], run.optimizer.param_groups[0]["lr"]
    meter = DataStepMeter(device)
    for _ in steps:
        with meter.data():                                   # waiting for the batch built meanwhile
            b = next(batches)
        with meter.step():
            with amp_autocast(device, config.amp):
                output = run.forward(b)
            output = to_float32(output) if config.amp else output
            loss, batch_values = task.loss_and_values(output, b)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"epoch {epoch + 1}: training loss is {loss.item()}; lower the learning "
                                         f"rate (now {config.lr}) or check the data")
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip_grad_norm > 0:
                nn.utils.clip_grad_norm_(run.model.parameters(), config.clip_grad_norm)
            run.optimizer.step()
            last_lr = run.optimizer.param_groups[0]["lr"]       # the rate this step used
            run.scheduler.step()
        values.append(batch_values)
    times = meter.summary()
    return task.summarize(_gather(values, info)), last_lr, {"data_s": times["data_s"], "step_s": times["step_s"]}


def _record(run: _Run, epoch: int, train_m: dict[str, float], val_m: dict[str, float], lr: float,
            times: dict[str, float]) -> bool:
    """Append the epoch to the history; returns whether it is the best so far (then its weights are kept)."""
    rec = {"epoch": epoch + 1, **{f"train_{k}": train_m[k] for k in run.task.metrics},
           **{f"val_{k}": val_m[k] for k in run.task.metrics}, "lr": lr, "time": run.elapsed, **times}
    run.history.append(rec)
    best_val = None if run.best is None else {k: run.best[f"val_{k}"] for k in run.task.metrics}
    improved = best_val is None or run.task.selection_key(val_m) > run.task.selection_key(best_val)
    if improved:
        run.best = {"epoch": epoch + 1, **{f"val_{k}": v for k, v in val_m.items()}}
        run.best_state = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
    return improved


def _checkpoint(run: _Run, epoch: int, improved: bool, run_dir: Path, info: D.DistInfo, rng: list) -> None:
    """Write last.pt (and best.pt when the epoch improved) and metrics.csv (rank 0)."""
    state = {"config": run.config.to_dict(), "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
             "scheduler": run.scheduler.state_dict(), "epoch": epoch + 1, "step": run.scheduler.last_epoch,
             "history": run.history, "best": run.best, "rng": rng, "data": run.data_fp,
             "arch": run.splits["train"].arch.to_dict(),
             "num_classes": run.task.out_dim() if run.task.name == "classify" else 0,
             "out_dim": run.task.out_dim(), "task": run.task.name, "task_options": run.task.options(), "world_size": info.world_size,
             "elapsed": run.elapsed}
    state.update(inference_state(run.splits, run.config.normalize))   # what inference needs: train statistics
    if improved:
        save_checkpoint(state, run_dir / "best.pt")
    save_checkpoint(state, run_dir / "last.pt")
    _write_metrics(run.history, run_dir / "metrics.csv", run.columns)


def _train(config: TrainConfig, info: D.DistInfo, device: torch.device, resume: bool, progress: bool,
           verbose: bool, stop_after_epoch: int | None) -> TrainResult:
    main = info.is_main
    say = (lambda *a: print(*a, flush=True)) if (verbose and main) else (lambda *a: None)
    run_dir = Path(config.out)
    run = _setup(config, info, device)
    task = run.task
    start_epoch = 0
    if (run_dir / "last.pt").exists():
        if not resume:
            raise FileExistsError(f"{run_dir} already holds a run (last.pt); pass --resume to continue it "
                                  f"or choose another output directory")
        start_epoch = _resume(run, run_dir, info)
        say(f"resuming {run_dir} after epoch {start_epoch}/{config.epochs}")

    ddp_model = D.wrap_model(run.model, info, device)
    if config.amp:
        check_amp(device)
    run.forward = compile_forward(ddp_model, config.compile)
    writer = _tensorboard(run_dir) if main else None
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(json.dumps(config.to_dict(), indent=2) + "\n", run_dir / "config.json")   # --config
        extra = f", {task.out_dim()} classes" if task.name == "classify" else ""
        say(f"task {task.name}, model {config.model} ({run.num_params:,} parameters) on {device}"
            + (f" x{info.world_size} processes" if info.enabled else "")
            + f"; {len(run.splits['train'])} train / {len(run.splits['val'])} val / {len(run.splits['test'])} test "
              f"networks{extra}")

    stop = config.epochs if stop_after_epoch is None else min(config.epochs, stop_after_epoch)
    for epoch in range(start_epoch, stop):
        t0 = time.perf_counter()
        train_m, lr, times = _train_epoch(run, epoch, info, device, ddp_model, progress)
        val_m = evaluate_split(run.model, run.splits["val"], task, batch_size=config.eval_batch_size, device=device,
                               info=info, amp=config.amp)
        run.elapsed += time.perf_counter() - t0
        improved = _record(run, epoch, train_m, val_m, lr, times)
        rng = D.all_gather_objects(capture_rng(), info)
        if main:
            _checkpoint(run, epoch, improved, run_dir, info, rng)
            if writer is not None:
                for k in run.columns[1:-1]:
                    writer.add_scalar(k, run.history[-1][k], epoch + 1)
                writer.flush()
            say(f"epoch {epoch + 1:3d}/{config.epochs}  train {task.describe(train_m)}  val {task.describe(val_m)}  "
                f"lr {lr:.2e}  {run.elapsed:6.1f}s (data {times['data_s']:.1f}s)" + ("  *" if improved else ""))
        D.barrier(info)                           # nobody races ahead of the checkpoint
    if writer is not None:
        writer.close()
    return _finish(run, run_dir, info, device, stop_after_epoch, say)


def _finish(run: _Run, run_dir: Path, info: D.DistInfo, device: torch.device, stop_after_epoch: int | None,
            say) -> TrainResult:
    """Learning curves; for a finished run, the test metrics of the best epoch, results.json and pictures."""
    config, task, main = run.config, run.task, info.is_main
    title = f"{config.model} on {_data_name(run.splits, config)}"
    def curves(test: dict[str, float] | None = None) -> None:
        plot_learning_curves(run.history, run_dir / "learning_curves.png", best_epoch=run.best["epoch"],
                             title=f"{task.name}: {title}", metrics=task.metrics,
                             loss_label="cross-entropy" if task.name == "classify" else "loss",
                             lr=[h["lr"] for h in run.history], test=test)

    if main and run.history:
        curves()
    finished = len(run.history) >= config.epochs
    test = None
    if finished:
        run.model.load_state_dict(run.best_state)
        test = evaluate_split(run.model, run.splits["test"], task, batch_size=config.eval_batch_size,
                              device=device, info=info, amp=config.amp)
        test.update(task.finish(run.model, run.splits, device, config.eval_batch_size))
        if main:
            val = {k[4:]: v for k, v in run.best.items() if k.startswith("val_")}
            results = {"task": task.name, "model": config.model, "num_params": run.num_params,
                       "best_epoch": run.best["epoch"], **{f"best_val_{k}": v for k, v in val.items()},
                       **{f"test_{k}": v for k, v in test.items()}, "epochs": len(run.history),
                       "train_time_s": run.elapsed, "world_size": info.world_size, "device": str(device),
                       "n": {s: len(d) for s, d in run.splits.items()}, "config": config.to_dict()}
            atomic_write_text(json.dumps(results, indent=2) + "\n", run_dir / "results.json")
            curves(test)                                  # again, with the test point at the best epoch
            task.draw(run.model, run.splits, run_dir, device, config.eval_batch_size, config.n_reconstructions,
                      title=f"{title} (test: {task.describe(test)})")
            say(f"best validation epoch {run.best['epoch']} ({task.describe(val)}); test {task.describe(test)}")
        D.barrier(info)
    elif main and stop_after_epoch is not None:
        say(f"stopped after epoch {len(run.history)}/{config.epochs}; continue with --resume")
    best = run.best or {"epoch": 0}
    return TrainResult(run_dir=run_dir, model=config.model, task=task.name, num_params=run.num_params,
                       epochs_done=len(run.history), best_epoch=best["epoch"],
                       val_metrics={k[4:]: v for k, v in best.items() if k.startswith("val_")},
                       test_metrics=test, train_time_s=run.elapsed, history=run.history, finished=finished,
                       classifier=run.model.eval() if finished else None)


def load_trained(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """A trained model from ``best.pt`` (or a run directory), in eval mode, and its checkpoint dict.

    The model has the head of the run's task (``ck["task"]``; runs made before tasks existed are
    classifiers).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    device = str(resolve_device(str(device)))
    ck = load_checkpoint(path)
    from ..architecture import Architecture

    cfg = ck["config"]
    task = TASKS[ck.get("task", "classify")]
    model = build_model(cfg["model"], ck.get("out_dim", ck["num_classes"]), arch=Architecture.from_dict(ck["arch"]),
                        head=task.head, **cfg["model_kwargs"])
    model.load_state_dict(ck["model"])
    return model.to(device).eval(), ck
