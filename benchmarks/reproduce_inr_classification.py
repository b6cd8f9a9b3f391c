"""Reproduce the INR classification table (MNIST, Fashion-MNIST) at full scale, resumably.

The one way to drive the full-scale runs. Start it detached, re-invoke the same command after
any stop (a killed session, a reboot), and read the table it writes::

    setsid nohup python benchmarks/reproduce_inr_classification.py --work ~/ng_runs/repro \
        --datasets mnist --models nggnn > ~/ng_runs/repro/nggnn.log 2>&1 &
    cat ~/ng_runs/repro/results.md          # table of finished runs and of runs in progress

The invocations behind the paper-scale table are ``benchmarks/paper_scale.sh`` (two queues, one
thread each).

Two invocations may share one ``--work`` directory (e.g. one per model, one thread each):
every run keeps its own state file, a dataset being fitted by one invocation is waited for by
the other, and ``results.jsonl`` is appended under a lock.

What it does, in order, each step resumable:

1. Fits one SIREN per image on the DWSNets split of each dataset: 55,000 train / 5,000 val
   (a stratified subset of the official train split) / the official 10,000 test images,
   with :func:`neuralgraph.inr.build_inr_splits` (chunked: a chunk on disk is never refit).
   ``--fit authors`` (default) is Adam lr 5e-4, up to 1000 steps, per-INR early stopping at
   40 dB PSNR; ``--fit fixed`` is 200 steps at lr 1e-3; both start from the SIREN init.
   ``--fit dwsinit200`` / ``dwsinit1000`` start from the DWSNets datasets' own init (200 / 1000
   steps at lr 1e-3; the latter reproduces those datasets' weight statistics, see
   :func:`neuralgraph.inr.siren_init`).
2. Trains each model by :func:`neuralgraph.train.train` with ``resume=True``, one epoch per
   call (``stop_after_epoch``): a stop loses at most the epoch in progress, and a resumed run
   is bit-identical to an uninterrupted one. ``--epochs-profile cpu`` (default) trains for
   :data:`CPU_EPOCHS` (what fits a 2-core CPU in days), ``paper`` for the papers' epochs; the
   warm-up + cosine schedule always spans the epochs actually run.
3. Appends one JSON line per finished run to ``<work>/results.jsonl`` (recorded once; a run with
   a row there is never trained again, so a new work directory seeded with the committed rows
   trains only what they lack, and fits only the sets those runs need): test /
   val accuracy at the best validation epoch, epochs, wall time (``train_s``: every call's
   training and evaluation, summed over sessions), ``epoch_s`` (its mean per epoch), the
   machine, ``commit`` (the code of the invocation that finished the run), ``commits`` (every
   commit whose code trained some of its epochs, in order; ``null`` for epochs trained by a
   version of this script that did not record it), ``history`` (the run's ``metrics.csv``, one
   dict per epoch, so its curve outlives the run directory), and the fit's time: ``fit_s``
   seconds over the ``fit_chunks_timed`` chunks that this script timed (:class:`FitClock`; a fit
   written by other code has fewer, or none). ``<work>/results.md`` (the table, finished runs and
   runs in progress, then the fitted sets: PSNR per split and fit time) and
   ``<work>/learning_curves_<dataset>.png`` are rewritten after every epoch; ``--report``
   rewrites them without training.

Variants (levers on top of the papers' settings, reported as extra rows, never replacing
the baseline rows): ``--variant NAME --model-arg KEY=VALUE ...`` trains the same model with
those model arguments in ``run_<model>_<NAME>``, e.g. ``--variant probes --model-arg
use_probes=true``; ``--augment KEY=VALUE`` (repeatable) changes fields of the augmentation in
the same way (``--variant noaug --augment translate=0 --augment rotate=0 --augment scale=0
--augment dropout=0`` trains without it). Both are read as ``neuralgraph train`` reads them.

The papers' settings (read from the authors' repositories; where this library's models
differ, the nearest setting is used and the difference stated):

* DWSNet (Navon et al., ICML 2023; AvivNavon/DWSNets ``experiments/mnist/trainer.py``
  defaults): hidden 32, 4 layers, max reduction, AdamW (amsgrad) lr 5e-3, weight decay
  5e-4, batch 512, 100 epochs, no gradient clipping, normalised inputs, the INR augmentation
  (below).
  Paper: MNIST 85.7%, Fashion-MNIST 67.1%. Here lr 1e-3: their network has BatchNorm, ours
  LayerNorm, and at batch 512 ours reaches 53.1 % validation accuracy at 1e-3 against 44.2 % at
  5e-3 (``benchmarks/dwsnet_fit_study.py``: 5,000 MNIST INRs of the ``dwsinit1000`` fit,
  60 epochs; at batch 32, 5e-3 stays at chance).
* NG-GNN (Kofinas et al., ICLR 2024; mkofinas/neural-graphs
  ``experiments/inr_classification``, ``scripts/mnist_cls_pna.sh`` and ``configs/``): PNA
  backbone hidden 32, 4 layers, positional embeddings, modulated (FiLM) messages,
  reverse edges, no probe features, AdamW (amsgrad) lr 1e-3, weight decay 5e-4, batch 128,
  200 epochs, 1000 warm-up steps (~2.3 epochs at 55k), gradient clipping at norm 10,
  dropout 0.2 (our NG models have no dropout), the INR augmentation (below), inputs not
  normalised there (normalised here, as for every model). Paper: MNIST 91.4%, Fashion-MNIST 68.0%.
* NG-T (same repository, ``scripts/mnist_cls_rt.sh``): relational transformer, node
  dimension 64, edge dimension 32 (``edge_hidden``), 4 layers, 8 heads, the same optimiser,
  schedule, batch and epochs, dropout 0.2 (none here). Their attention is 128 wide (ours: the
  node width, 64). Paper: MNIST 92.4%.
* Flat MLP baselines (``mlp``, ``mlp-aug`` with random hidden permutations): the DWSNets
  trainer's defaults for every model (lr 1e-3 here, batch 512, 100 epochs, the INR augmentation).
* The INR augmentation (:data:`PAPER_AUGMENT`) of the training set, on in both papers' INR
  classification runs (DWSNets ``experiments/data.py`` ``INRDataset._augment`` with its default
  scales, the DWSNets trainer's ``--augmentation`` default and neural-graphs'
  ``configs/data/mnist.yaml`` ``augmentation: True``): the image is translated by up to 0.25 per
  coordinate, rotated by up to 45 degrees and scaled by 0.8-1.2, folded into the first layer
  (:class:`neuralgraph.augment.Augment`), and 1 % of the weights are zeroed. Where theirs differs:
  their translation is exact only half of the time (the other half it is pushed through the
  first two weight matrices, without the sine, into the second layer's bias); their dropout
  also drops biases and rescales the survivors by 1/0.99; and their "noise" adds 0.1 x the
  tensor's standard deviation to every entry, a constant shift of the training INRs rather than
  random noise, which is left out here.

Optimiser note: the trainer here uses its own AdamW + warm-up/cosine schedule (see
``neuralgraph.train``); lr, weight decay, batch, warm-up and clipping are taken from the
papers as above, epochs from ``--epochs-profile``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: Settings per model, from the papers' repositories (see the module docstring).
PAPER: dict[str, dict] = {
    "dwsnet": {"model_kwargs": {"hidden": 32, "num_layers": 4, "reduce": "max"}, "lr": 1e-3, "batch_size": 512,
               "epochs": 100, "weight_decay": 5e-4, "clip_grad_norm": 0.0, "warmup_epochs": 0.0},
    "nggnn": {"model_kwargs": {"hidden": 32, "num_layers": 4, "use_probes": False}, "lr": 1e-3, "batch_size": 128,
              "epochs": 200, "weight_decay": 5e-4, "clip_grad_norm": 10.0, "warmup_steps": 1000},
    "ngt": {"model_kwargs": {"hidden": 64, "edge_hidden": 32, "num_layers": 4, "heads": 8, "use_probes": False},
            "lr": 1e-3, "batch_size": 128, "epochs": 200, "weight_decay": 5e-4, "clip_grad_norm": 10.0,
            "warmup_steps": 1000},
    "mlp": {"model_kwargs": {}, "lr": 1e-3, "batch_size": 512, "epochs": 100, "weight_decay": 5e-4,
            "clip_grad_norm": 0.0, "warmup_epochs": 0.0},
    "mlp-aug": {"model_kwargs": {}, "lr": 1e-3, "batch_size": 512, "epochs": 100, "weight_decay": 5e-4,
                "clip_grad_norm": 0.0, "warmup_epochs": 0.0},
}
#: The INR augmentation of both papers' training sets (:class:`neuralgraph.augment.Augment` fields; see the
#: module docstring for where theirs differs).
PAPER_AUGMENT = {"translate": 0.25, "rotate": 45.0, "scale": 0.2, "dropout": 0.01}
#: Epochs per model on a CPU (``--epochs-profile cpu``): what a 2-core machine trains in days.
CPU_EPOCHS = {"nggnn": 30, "ngt": 30, "dwsnet": 60, "mlp": 60, "mlp-aug": 60}
#: The papers' numbers, for the comparison column of the results (the flat MLPs': DWSNets' Table 1, as read
#: from a summary of its arXiv text, see docs/results/inr-classification.md).
PAPER_ACC = {("mnist", "dwsnet"): 0.857, ("mnist", "nggnn"): 0.914, ("mnist", "ngt"): 0.924,
             ("fashion_mnist", "dwsnet"): 0.671, ("fashion_mnist", "nggnn"): 0.680,
             ("mnist", "mlp"): 0.1755, ("mnist", "mlp-aug"): 0.2926,
             ("fashion_mnist", "mlp"): 0.1991, ("fashion_mnist", "mlp-aug"): 0.2276}
#: INR fit protocols (``--fit``); ``init`` is the starting point (:func:`neuralgraph.inr.siren_init`).
FITS = {"authors": {"steps": 1000, "lr": 5e-4, "target_psnr": 40.0}, "fixed": {"steps": 200, "lr": 1e-3},
        "dwsinit200": {"steps": 200, "lr": 1e-3, "init": "dwsnets"},
        "dwsinit1000": {"steps": 1000, "lr": 1e-3, "init": "dwsnets"}}
ROOTS = {"mnist": "mnist", "fashion_mnist": "fashion_mnist"}


class OutOfTime(Exception):
    """Raised between fitted chunks once the invocation's budget is spent."""


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_json(obj: dict, path: Path) -> None:
    from neuralgraph.io import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(obj, indent=2, sort_keys=True), path)


def _locked(directory: Path, what: str, poll: float = 5.0):
    """``lock_directory`` that waits for another invocation instead of failing."""
    from neuralgraph.io import DirectoryBusy, lock_directory

    while True:
        try:
            lock = lock_directory(directory, what)
            lock.__enter__()
            return lock
        except DirectoryBusy:
            time.sleep(poll)


def _append_result(row: dict, path: Path) -> bool:
    """Append ``row`` to the JSON-lines file unless a row with its ``id`` is there (atomic, locked)."""
    from neuralgraph.io import atomic_write_text

    lock = _locked(path.parent / ".results_lock", "results file")
    try:
        if row["id"] in _recorded_rows(path):
            return False
        text = path.read_text() if path.is_file() else ""
        atomic_write_text(text + json.dumps(row, sort_keys=True) + "\n", path)
        return True
    finally:
        lock.__exit__(None, None, None)


def _recorded_rows(path: Path) -> dict[str, dict]:
    """The finished runs' rows of a ``results.jsonl``, by ``id`` (empty if there is no file)."""
    rows = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[row["id"]] = row
    return rows


def _state_name(key: str) -> str:
    """The state file's name of a run ``<source>/<fit>/<run>`` (inverse: :func:`_key_from_state`)."""
    return f"{key.replace('/', '_')}.json"


def _run_lock(state_path: Path) -> Path:
    """The lock (a directory beside the state file) that one invocation at a time holds to train a run."""
    return state_path.with_name(f".{state_path.stem}")


def _commit() -> str | None:
    """The commit of the code this script imports (None outside a git checkout)."""
    import subprocess

    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _machine(device_name: str, threads: int) -> str:
    """One line naming the machine: CPU model and cores (or the GPU), and the threads used."""
    import os
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if device_name.startswith("cuda"):
        return f"{device_name}, host {cpu}"
    return f"{cpu}, {os.cpu_count()} cores, {threads} thread{'s' if threads != 1 else ''}"


def _train_config(model: str, data: Path, out: Path, n_train: int, args) -> "TrainConfig":  # noqa: F821
    """The run's configuration: the papers' settings, the epochs of the profile, the variant's model arguments
    and augmentation fields (``(key, text)`` pairs, read as ``neuralgraph train`` reads them)."""
    from neuralgraph.augment import Augment
    from neuralgraph.train import TrainConfig
    from neuralgraph.train.options import dataclass_hints, parse_options
    from neuralgraph.train.registry import parse_hyperparameters

    s = dict(PAPER[model])
    kwargs = dict(s.pop("model_kwargs"))
    if args.hidden is not None:
        kwargs["hidden"] = args.hidden
        if "heads" in kwargs and args.hidden % kwargs["heads"]:
            kwargs["heads"] = 1
        if "edge_hidden" in kwargs:                 # keeps the papers' ratio of edge to node width
            kwargs["edge_hidden"] = max(1, args.hidden // 2)
    if args.num_layers is not None:
        kwargs["num_layers"] = args.num_layers
    kwargs.update(parse_hyperparameters(model, getattr(args, "model_arg", None) or []))
    augment = {**PAPER_AUGMENT, **parse_options(getattr(args, "augment", None) or [], dataclass_hints(Augment),
                                                owner="--augment", noun="option")}
    batch = min(s.pop("batch_size"), args.batch_size or 10 ** 9)
    steps = s.pop("warmup_steps", None)
    warmup = s.pop("warmup_epochs", 0.0) if steps is None else steps / max(1, math.ceil(n_train / batch))
    paper_epochs = s.pop("epochs")
    profile = getattr(args, "epochs_profile", "paper")
    epochs = args.epochs or (CPU_EPOCHS[model] if profile == "cpu" else paper_epochs)
    return TrainConfig(data=str(data), out=str(out), model=model, model_kwargs=kwargs, epochs=epochs,
                       batch_size=batch, warmup_epochs=float(min(warmup, epochs)), device=args.device,
                       seed=args.seed, n_reconstructions=0, augment=augment, **s)


class FitClock:
    """The seconds spent fitting each chunk, summed in a fit's state file as chunks are written.

    A fit spans many invocations, and any of them may be killed: the state keeps ``chunk_s``
    (seconds of the chunks fitted so far, each timed from the start of its fitting call or the
    previous chunk) and ``chunks_timed``. A chunk interrupted mid-fit is not counted; its refit is.
    The file is read afresh at every chunk (one invocation fits a set at a time: the fit's
    directory lock), so invocations that took turns add up.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.restart()

    def restart(self) -> None:
        """Start timing the next chunk now (a fitting call begins)."""
        self.t = time.monotonic()

    def chunk_done(self) -> None:
        """A chunk was written: add its seconds to the state file."""
        now = time.monotonic()
        state = _read_json(self.path)
        state["chunk_s"] = state.get("chunk_s", 0.0) + (now - self.t)
        state["chunks_timed"] = state.get("chunks_timed", 0) + 1
        _write_json(state, self.path)
        self.t = now


def _fit(source: str, data: Path, fit: dict, dev, args, out_of_time, clock: FitClock) -> None:
    """Fit (or finish fitting) one dataset, timing its chunks; another invocation fitting it is waited for."""
    from neuralgraph.inr import build_inr_splits
    from neuralgraph.io import DirectoryBusy

    root = None if source == "digits" else Path(args.data_root) / ROOTS[source]
    sizes = dict(n_train=args.n_train, n_val=args.n_val, n_test=args.n_test)

    def on_chunk(k: int, num_chunks: int) -> None:
        clock.chunk_done()
        out_of_time(k, num_chunks)

    while True:
        try:
            clock.restart()
            build_inr_splits(source, data, root=root, chunk_size=args.chunk_size, device=dev,
                             progress=not args.quiet, on_chunk=on_chunk, **sizes, **fit)
            return
        except DirectoryBusy:
            out_of_time(0, 0)
            time.sleep(30)


def run(args) -> list[dict]:
    """One invocation: continue fitting and training until done or out of ``args.budget`` seconds."""
    import torch

    from neuralgraph.inr import resolve_device
    from neuralgraph.train import train

    torch.set_num_threads(args.threads)
    start = time.monotonic()
    left = lambda: (args.budget or math.inf) - (time.monotonic() - start)  # noqa: E731
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results_path = work / "results.jsonl"
    dev = resolve_device(args.device)
    device_name = str(dev)
    if dev.type == "cuda":
        device_name += f" ({torch.cuda.get_device_name(dev)})"
    recorded = []
    code = _commit()       # the code this invocation imported, not whatever HEAD is when a run finishes

    def out_of_time(k: int, num_chunks: int) -> None:
        if left() < 0:
            raise OutOfTime

    fit = {**FITS[args.fit], **({"steps": args.fit_steps} if args.fit_steps else {})}
    suffix = f"_{args.variant}" if args.variant else ""
    done = set(_recorded_rows(results_path))
    for source in args.datasets:
        models = [m for m in args.models if f"{source}/{args.fit}/{m}{suffix}" not in done]
        for model in (m for m in args.models if m not in models):
            print(f"[{source}/{args.fit}/{model}{suffix}] recorded in {results_path}: not trained again")
        if not models:
            continue
        data = work / f"{source}_{args.fit}"
        clock = FitClock(work / "state" / f"{source}_{args.fit}_fit.json")
        try:
            _fit(source, data, fit, dev, args, out_of_time, clock)
        except OutOfTime:
            print(f"[{source}] fitting: out of time; run again to continue")
            return recorded
        fit_state = _read_json(clock.path)
        if "splits" not in fit_state:                  # once per fitted set
            fit_state["splits"] = _fit_summary(data)
            _write_json(fit_state, clock.path)
        n_train = fit_state["splits"]["train"]["n"]
        for model in models:
            key = f"{source}/{args.fit}/{model}{suffix}"
            state_path = work / "state" / _state_name(key)
            config = _train_config(model, data, data / f"run_{model}{suffix}", n_train, args)
            lock = _locked(_run_lock(state_path), "run state")
            try:       # read under the lock: an invocation that held it may have trained on
                st = _read_json(state_path) or {"epochs_done": 0, "epoch_s": None, "train_s": 0.0}
                row = _train_run(key, st, state_path, config, left, args, train, code)
            finally:
                lock.__exit__(None, None, None)
            if row is None:
                if st.get("finished") is None:
                    return recorded
                continue
            row.update({"dataset": source, "model": model, "variant": args.variant, "fit": args.fit,
                        "fit_settings": fit, "fit_s": round(fit_state.get("chunk_s", 0.0), 1),
                        "fit_chunks_timed": fit_state.get("chunks_timed", 0), "n_train": n_train,
                        "device": device_name, "machine": _machine(device_name, args.threads),
                        "commit": code, "commits": st["commits"],
                        "paper_acc": PAPER_ACC.get((source, model))})
            if _append_result(row, results_path):
                recorded.append(row)
                print(f"[{key}] test acc {row['test_acc']:.4f} (paper {row['paper_acc']}), {row['epochs']} epochs, "
                      f"{row['train_s']:.0f} s on {row['machine']}")
            write_report(work)
    print(f"all done: results in {results_path}")
    return recorded


def _train_run(key: str, st: dict, state_path: Path, config, left, args, train, code: str | None) -> dict | None:
    """Train one run epoch by epoch; its result row once finished (None if out of time, or already recorded).

    ``st["commits"]`` collects, in order, every commit (``code``) that trained an epoch of the run
    (``None`` first when epochs were trained before this was recorded).
    """
    st.setdefault("commits", [None] if st["epochs_done"] else [])
    while st.get("finished") is None:
        need = 1.2 * st["epoch_s"] if st["epoch_s"] else 0.0
        if left() <= need:
            print(f"[{key}] {st['epochs_done']}/{config.epochs} epochs; out of time (an epoch takes "
                  f"~{st['epoch_s']:.0f} s); run again to continue")
            _write_json(st, state_path)
            return None
        t = time.monotonic()
        nxt = st["epochs_done"] + 1
        res = train(config, resume=True, progress=not args.quiet, verbose=False,
                    stop_after_epoch=nxt if nxt < config.epochs else None)
        dt = time.monotonic() - t
        st["train_s"] += dt
        done = res.epochs_done - st["epochs_done"]
        if done > 0:
            st["epoch_s"] = dt / done
            if st["commits"][-1:] != [code]:
                st["commits"].append(code)
        st["epochs_done"] = res.epochs_done
        if res.finished:
            st["finished"] = True
            _write_json(st, state_path)
            return {"id": key, "test_acc": res.test_acc, "val_acc": res.best_val_acc, "best_epoch": res.best_epoch,
                    "epochs": res.epochs_done, "train_s": round(st["train_s"], 1),
                    "epoch_s": round(st["train_s"] / res.epochs_done, 1), "config": config.to_dict(),
                    "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "history": _history(Path(config.out))}
        _write_json(st, state_path)
        write_report(Path(args.work))
    return None


def _fit_summary(data: Path) -> dict:
    """The size and PSNR distribution (dB) of each split of a fitted set."""
    import torch

    from neuralgraph.inr import INRDataset

    out = {}
    for split in ("train", "val", "test"):
        psnr = INRDataset(data / f"{split}.pt", verify=False).psnr.double()
        q = torch.quantile(psnr, torch.tensor([0.0, 0.05, 0.5, 1.0], dtype=torch.float64)).tolist()
        out[split] = {"n": psnr.numel(), "psnr_mean": round(psnr.mean().item(), 2), "psnr_min": round(q[0], 2),
                      "psnr_p5": round(q[1], 2), "psnr_median": round(q[2], 2), "psnr_max": round(q[3], 2)}
    return out


def _fit_lines(work: Path) -> list[str]:
    """The report's table of fitted sets: PSNR per split, and the fit time of the chunks this script timed."""
    lines = ["| dataset | fit | split | INRs | PSNR mean (dB) | 5th pct | median | min "
             "| fit time of the set (chunks timed) |", "|---|---|---|---|---|---|---|---|---|"]
    for path in sorted((work / "state").glob("*_fit.json")) if (work / "state").is_dir() else []:
        st = _read_json(path)
        source, fit, _ = _key_from_state(path.name).split("/")          # <source>/<fit>/fit
        timed = f"{st.get('chunk_s', 0.0) / 3600:.2f} h ({st.get('chunks_timed', 0)} chunks)"
        for split, d in ((k, st["splits"][k]) for k in ("train", "val", "test") if k in st.get("splits", {})):
            lines.append(f"| {source} | {fit} | {split} | {d['n']} | {d['psnr_mean']:.1f} | {d['psnr_p5']:.1f} | "
                         f"{d['psnr_median']:.1f} | {d['psnr_min']:.1f} | {timed if split == 'train' else ''} |")
    return lines if len(lines) > 2 else []


def _history(run_dir: Path) -> list[dict]:
    """The per-epoch rows of a run's ``metrics.csv`` (empty before its first epoch)."""
    import csv

    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def write_report(work: Path) -> Path:
    """Rewrite ``results.md`` and the learning-curve pictures from ``results.jsonl`` and the run directories."""
    from neuralgraph.io import atomic_write_text

    finished = _recorded_rows(work / "results.jsonl")
    lines = ["| dataset | model | variant | fit | test acc | paper | best epoch / epochs | train time | s / epoch | "
             "machine | commit |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    curves: dict[str, dict[str, tuple[str, list[dict]]]] = {}     # source -> "<run> (<fit>)" -> (model, epochs)
    states = {p.name: p for p in sorted((work / "state").glob("*.json")) if not p.name.endswith("_fit.json")} \
        if (work / "state").is_dir() else {}
    recorded = {_state_name(k): k for k in finished}
    # rows recorded without a state file (a work directory started afresh from committed rows) come first
    entries = [(k, None) for name, k in recorded.items() if name not in states] + \
        [(recorded.get(name), path) for name, path in states.items()]
    for key, state_path in entries:
        st = _read_json(state_path) if state_path else {}
        row = finished.get(key)
        source, fit, name = (key or _key_from_state(state_path.name)).split("/")
        model, _, variant = name.partition("_")
        hist = _history(work / f"{source}_{fit}" / f"run_{name}") or (row or {}).get("history", [])
        curves.setdefault(source, {})[f"{name} ({fit})"] = (model, hist)
        if row is not None:
            acc = row.get("paper_acc") or PAPER_ACC.get((source, model))      # rows older than the number
            paper = f"{100 * acc:.2f}".removesuffix("0") if acc else ""
            lines.append(f"| {source} | {model} | {variant or ''} | {fit} | {100 * row['test_acc']:.1f} | {paper} "
                         f"| {row['best_epoch']} / {row['epochs']} | {row['train_s'] / 3600:.1f} h | "
                         f"{_mean_epoch_s(row['train_s'], row['epochs'])} | "
                         f"{row.get('machine', row.get('device'))} | {row.get('commit') or ''} |")
        elif hist:
            best = max(hist, key=lambda h: h.get("val_acc", 0.0))
            lines.append(f"| {source} | {model} | {variant} | {fit} | (running: best val "
                         f"{100 * best.get('val_acc', 0):.1f} at epoch {int(best['epoch'])}) | | "
                         f"{int(best['epoch'])} / {st.get('epochs_done', len(hist))} done | "
                         f"{st.get('train_s', 0) / 3600:.1f} h | "
                         f"{_mean_epoch_s(st.get('train_s', 0), st.get('epochs_done', 0))} | | |")
    fits = _fit_lines(work)
    if fits:
        lines += ["", "Fitted INR sets:", "", *fits]
    atomic_write_text("\n".join(lines) + "\n", work / "results.md")
    for source, runs in curves.items():
        papers = {model: acc for (src, model), acc in PAPER_ACC.items() if src == source}
        _plot_curves(source, runs, papers, work / f"learning_curves_{source}.png")
    return work / "results.md"


def _mean_epoch_s(train_s: float, epochs: int) -> str:
    """Mean seconds per epoch of a run (``train_s`` over its ``epochs`` finished so far), as the table prints it."""
    return f"{train_s / epochs:.0f}" if epochs else ""


def _key_from_state(name: str) -> str:
    """``<source>/<fit>/<rest>`` of a state file ``<source>_<fit>_<rest>.json`` (``rest``: a run's name, or
    ``fit`` for the fit's own state)."""
    stem = name[:-len(".json")]
    for fit in FITS:
        marker = f"_{fit}_"
        if marker in stem:
            source, _, model = stem.partition(marker)
            return f"{source}/{fit}/{model}"
    raise ValueError(f"state file {name} names no fit protocol")


def _plot_curves(source: str, runs: dict[str, tuple[str, list[dict]]], papers: dict[str, float],
                 path: Path) -> None:
    """Validation (solid) and training (dashed) accuracy per epoch of every run on one dataset, and the papers'
    test accuracy of each model trained (``papers``: model -> accuracy; dotted, in the colour of the model's
    first run). ``runs`` maps each run's label to its model and its epochs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from neuralgraph.io import save_figure

    runs = {label: run for label, run in runs.items() if run[1]}
    if not runs:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = set()
    for i, (name, (model, hist)) in enumerate(sorted(runs.items())):
        epochs = [h["epoch"] for h in hist]
        colour = f"C{i % 10}"
        ax.plot(epochs, [100 * h.get("val_acc", float("nan")) for h in hist], color=colour, label=f"{name} val")
        ax.plot(epochs, [100 * h.get("train_acc", float("nan")) for h in hist], color=colour, ls="--", alpha=0.6)
        if model in papers and model not in drawn:
            drawn.add(model)
            ax.axhline(100 * papers[model], color=colour, ls=":", lw=1, label=f"{model}: paper's test accuracy")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    keys = "dashed: train; dotted: the papers' test accuracy" if drawn else "dashed: train"
    ax.set_title(f"{source} INR classification ({keys})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict]:
    from neuralgraph.train.cli_args import kv

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default="runs/reproduce_inr", help="datasets, runs, state/, results.jsonl, results.md")
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "datasets"))
    ap.add_argument("--datasets", nargs="+", default=["mnist", "fashion_mnist"],
                    choices=["mnist", "fashion_mnist", "digits"])
    ap.add_argument("--models", nargs="+", default=["nggnn", "dwsnet", "mlp", "mlp-aug", "ngt"], choices=list(PAPER))
    ap.add_argument("--fit", default="authors", choices=list(FITS), help="INR fit protocol (see the docstring)")
    ap.add_argument("--epochs-profile", default="cpu", choices=["cpu", "paper"],
                    help="cpu: CPU_EPOCHS (default); paper: the papers' epochs")
    ap.add_argument("--variant", default=None, help="name of a variant row (with --model-arg / --augment)")
    ap.add_argument("--model-arg", action="append", default=[], type=kv, metavar="KEY=VALUE",
                    help="model argument of the variant (repeatable)")
    ap.add_argument("--augment", action="append", default=[], type=kv, metavar="KEY=VALUE",
                    help="augmentation field of the variant (neuralgraph.augment.Augment; repeatable)")
    ap.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (fitting and training)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of this invocation (default 1)")
    ap.add_argument("--budget", type=float, default=None, help="seconds this invocation may run (default: no limit)")
    ap.add_argument("--chunk-size", type=int, default=5000, help="INRs per resumable fitting chunk")
    ap.add_argument("--n-train", type=int, default=None, help="cap (default: the 55k DWSNets train split)")
    ap.add_argument("--n-val", type=int, default=None, help="default 5000")
    ap.add_argument("--n-test", type=int, default=None, help="default: the 10k official test split")
    ap.add_argument("--fit-steps", type=int, default=None, help="override the protocol's (max) steps (smoke tests)")
    ap.add_argument("--epochs", type=int, default=None, help="override the profile's epochs (smoke tests)")
    ap.add_argument("--hidden", type=int, default=None, help="override the papers' hidden width (smoke tests)")
    ap.add_argument("--num-layers", type=int, default=None, help="override the papers' depth (smoke tests)")
    ap.add_argument("--batch-size", type=int, default=None, help="cap the papers' batch size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report", action="store_true", help="only rewrite results.md and the curves")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.budget is not None and args.budget <= 0:
        ap.error(f"--budget must be > 0, got {args.budget}")
    if (args.model_arg or args.augment) and not args.variant:
        ap.error("--model-arg and --augment need --variant NAME (variants are extra rows, never the baseline's)")
    if args.variant and ("_" in args.variant or "/" in args.variant):
        ap.error(f"--variant names may not contain '_' or '/', got {args.variant!r}")
    if args.report:
        print(write_report(Path(args.work)).read_text())
        return []
    return run(args)


if __name__ == "__main__":
    from neuralgraph.allocator import keep_freed_memory

    keep_freed_memory()  # a long run: large tensors stay on the heap (docs/processor-speed.md)
    main()
