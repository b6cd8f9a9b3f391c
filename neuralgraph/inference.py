"""Use a trained run: predictions, invariant embeddings and metrics of new INR files.

A run directory (from ``neuralgraph train``) holds ``best.pt``: the processor's
weights plus what inference needs, i.e. the data architecture, the task, and
(see :func:`neuralgraph.train.checkpoint.inference_state`) the *training* split's
normalisation statistics. New data are normalised with those statistics, as the
model saw its training data, never with their own (a test file's own statistics
would shift every input). Checkpoints written before the statistics were stored
fall back to ``train.pt`` of the run's data directory, and are refused with a
clear message when it is gone.

Python::

    import neuralgraph as ng
    out = ng.predict("runs/nggnn", "mnist_inrs/test.pt")     # {"pred", "probs", "labels", "index"}
    emb = ng.embed("runs/nggnn", "mnist_inrs/test.pt")       # [n, D] invariant embeddings
    metrics = ng.inference.evaluate("runs/nggnn", "mnist_inrs/test.pt")   # {"loss", "acc"}

Command line: ``neuralgraph predict | embed | evaluate --run RUN --data FILE_OR_DIR``.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .architecture import Architecture
from .inr.dataset import INRDataset
from .inr.files import load_inr_file

__all__ = ["load_run", "training_stats", "open_data", "predict", "embed", "evaluate", "predictions_csv"]


def load_run(run: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The trained model (eval mode) and checkpoint of a run directory or checkpoint file (``best.pt``)."""
    from .train.trainer import load_trained

    path = Path(run)
    if not path.exists():
        raise FileNotFoundError(f"run not found: {path} (a run directory of `neuralgraph train` or its best.pt)")
    if path.is_dir() and not (path / "best.pt").is_file():
        raise FileNotFoundError(f"{path} holds no best.pt; is it a finished `neuralgraph train` run directory?")
    return load_trained(path, device=device)


def training_stats(ck: dict[str, Any]) -> tuple[bool, dict[str, Tensor] | None]:
    """``(normalize, stats)`` of a checkpoint: whether the run normalised, and the training split's statistics."""
    info = ck.get("inference")
    normalize = bool(ck["config"].get("normalize", True)) if info is None else bool(info["normalize"])
    if not normalize:
        return False, None
    if info is not None and info.get("stats") is not None:
        return True, info["stats"]
    train = Path(ck["config"]["data"]) / "train.pt"
    if train.is_file():                          # checkpoints written before the statistics were stored
        return True, load_inr_file(train, verify=False)["stats"]
    raise ValueError(f"the checkpoint stores no training statistics and its training data ({train}) are gone; "
                     f"normalising with the new data's own statistics would be wrong: restore {train} or retrain")


def open_data(data: str | os.PathLike, ck: dict[str, Any], split: str = "test") -> INRDataset:
    """An INR split file (or ``DIR/<split>.pt``) normalised as the run's training data, checked against the run."""
    path = Path(data)
    if path.is_dir():
        path = path / f"{split}.pt"
    normalize, stats = training_stats(ck)
    found = load_inr_file(path, mmap=True)["arch"]
    arch = Architecture.from_dict(ck["arch"])
    if found != arch:
        raise ValueError(f"{path}: INRs of architecture {list(found.widths)} ({found.layers[0].post}), the run "
                         f"was trained on {list(arch.widths)} ({arch.layers[0].post})")
    return INRDataset(path, normalize=normalize, stats=stats)


def _task(ck: dict[str, Any]):
    from .tasks import make_task

    task = make_task(ck.get("task", "classify"), **ck.get("task_options", {}))
    if task.name == "classify":
        task.num_classes = int(ck["num_classes"])
    return task


def _batches(model: nn.Module, ds: INRDataset, batch_size: int, device, fn):
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: expected an int >= 1")
    out = []
    with torch.no_grad():
        for s in range(0, len(ds), batch_size):
            b = ds.batch(slice(s, s + batch_size)).to(device)
            out.append(fn(model, b))
    return out


def predict(run: str | os.PathLike, data: str | os.PathLike, *, batch_size: int = 256,
            device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """Predicted classes and probabilities of a classify run on an INR file (or ``DIR/test.pt``).

    Returns:
        ``{"pred": [n] int64, "probs": [n, C] float32, "labels": [n] (the file's labels), "index": [n]}``.
    """
    model, ck = load_run(run, device)
    if ck.get("task", "classify") != "classify":
        raise ValueError(f"predict needs a classify run; {run} was trained for task {ck.get('task')!r} "
                         f"(use embed or evaluate)")
    ds = open_data(data, ck)
    logits = _batches(model, ds, batch_size, device, lambda m, b: m(b).float().cpu())
    logits = torch.cat(logits) if logits else torch.zeros(0, int(ck["num_classes"]))
    probs = logits.softmax(1)
    return {"pred": probs.argmax(1), "probs": probs, "labels": ds.labels.clone(), "index": torch.arange(len(ds))}


def predictions_csv(result: dict[str, Tensor]) -> str:
    """``index,label,pred,prob_0,...`` lines of a :func:`predict` result."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    C = result["probs"].shape[1]
    w.writerow(["index", "label", "pred", *(f"prob_{c}" for c in range(C))])
    for i, y, p, pr in zip(result["index"].tolist(), result["labels"].tolist(), result["pred"].tolist(),
                           result["probs"].tolist()):
        w.writerow([i, y, p, *(f"{v:.6g}" for v in pr)])
    return buf.getvalue()


def _output_linear(model: nn.Module, batch) -> tuple[nn.Module, Tensor]:
    """The Linear layer whose output is the model's output (the head's last layer), found by one forward."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    seen: list[tuple[nn.Module, Tensor]] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: seen.append((mod, out))) for m in linears]
    try:
        out = model(batch)
    finally:
        for h in hooks:
            h.remove()
    for mod, o in reversed(seen):
        if o is out or (isinstance(out, Tensor) and o.shape == out.shape and torch.equal(o, out)):
            return mod, out
    raise ValueError(f"{type(model).__name__}: no Linear layer computes the output; use layer='output'")


def embed(run: str | os.PathLike, data: str | os.PathLike, *, layer: str = "auto", batch_size: int = 256,
          device: str | torch.device = "cpu") -> Tensor:
    """Permutation-invariant embeddings ``[n, D]`` of an INR file under a trained run.

    Args:
        layer: ``"penultimate"``: the invariant head's features before its last
            Linear layer (pooled processor features after the head's hidden layer);
            ``"output"``: the model's output (the task's embedding for ``contrastive``
            runs, logits for ``classify``); ``"auto"``: ``"output"`` for
            contrastive runs, else ``"penultimate"``.
    """
    if layer not in ("auto", "penultimate", "output"):
        raise ValueError(f"layer must be 'auto', 'penultimate' or 'output', got {layer!r}")
    model, ck = load_run(run, device)
    task = _task(ck)
    if task.head != "invariant":
        raise ValueError(f"embed needs a run with an invariant head; task {task.name!r} edits networks")
    if layer == "auto":
        layer = "output" if task.name == "contrastive" else "penultimate"
    ds = open_data(data, ck)
    if layer == "output":
        parts = _batches(model, ds, batch_size, device, lambda m, b: m(b).float().cpu())
    else:
        head = None
        seen: dict[str, Tensor] = {}

        def run_batch(m, b):
            nonlocal head
            if head is None:
                head, _ = _output_linear(m, b)
                hook = head.register_forward_hook(lambda mod, inp, out: seen.update(x=inp[0]))
                hooks.append(hook)
            m(b)
            return seen.pop("x").float().cpu()

        hooks: list = []
        try:
            parts = _batches(model, ds, batch_size, device, run_batch)
        finally:
            for h in hooks:
                h.remove()
    return torch.cat(parts) if parts else torch.zeros(0, 0)


def evaluate(run: str | os.PathLike, data: str | os.PathLike, *, batch_size: int = 256,
             device: str | torch.device = "cpu") -> dict[str, float]:
    """The run's task metrics (e.g. ``loss`` and ``acc``) on an INR file or ``DIR/test.pt``."""
    from .train.trainer import evaluate_split

    model, ck = load_run(run, device)
    task = _task(ck)
    ds = open_data(data, ck)
    if task.name == "classify" and len(ds) and int(ds.labels.max()) >= task.num_classes:
        raise ValueError(f"{ds.path}: label {int(ds.labels.max())} is outside the run's {task.num_classes} classes")
    return evaluate_split(model, ds, task, batch_size=batch_size, device=device)
