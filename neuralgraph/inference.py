"""Use a trained run: predictions, invariant embeddings and metrics of new INR files or model zoos.

A run directory (from ``neuralgraph train``) holds ``best.pt``: the processor's
weights plus what inference needs, i.e. the data architecture, the task, and
(see :func:`neuralgraph.train.checkpoint.inference_state`) the *training* split's
normalisation statistics. New data are normalised with those statistics, as the
model saw its training data, never with their own (a test file's own statistics
would shift every input). Checkpoints written before the statistics were stored
fall back to ``train.pt`` of the run's data directory, and are refused with a
clear message when it is gone.

A run of ``--task regress`` (accuracy prediction) reads a zoo file of
``neuralgraph zoo generate`` instead: every valid network of it, or with
``split`` the run's own split by network (same fractions and seed as in
training). Its weights and target are those of the run's checkpoint (the
zoo's last unless the run chose one), and results are ordered by network id.

Python::

    import neuralgraph as ng
    out = ng.predict("runs/nggnn", "mnist_inrs/test.pt")     # {"pred", "probs", "labels", "index"}
    emb = ng.embed("runs/nggnn", "mnist_inrs/test.pt")       # [n, D] invariant embeddings
    metrics = ng.inference.evaluate("runs/nggnn", "mnist_inrs/test.pt")   # {"loss", "acc"}
    acc = ng.predict("runs/zoo_nggnn", "zoo/mnist_small_cnn.pt")        # {"pred", "target", "index"}

Command line: ``neuralgraph predict | embed | evaluate --run RUN --data FILE_OR_DIR [--split S]``.
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
from .inr.splits import SPLITS  # the splits ``split`` may name (INR split files, or a zoo run's split by network)

__all__ = ["load_run", "training_stats", "open_data", "open_zoo", "predict", "embed", "evaluate", "predictions_csv"]

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


def open_data(data: str | os.PathLike, ck: dict[str, Any], split: str | None = None) -> Any:
    """What the run reads, checked against the run.

    An INR split file (or ``DIR/<split>.pt``, ``test.pt`` when ``split`` is
    ``None``) normalised as the run's training data; for a run of ``--task
    regress`` the networks of a zoo file (:func:`open_zoo`, every valid network
    when ``split`` is ``None``).
    """
    _check_split(split)
    if _is_zoo_run(ck):
        return open_zoo(data, ck, split)
    path = Path(data)
    if path.is_dir():
        path = path / f"{split or 'test'}.pt"
    normalize, stats = training_stats(ck)
    found = load_inr_file(path, mmap=True)["arch"]
    arch = Architecture.from_dict(ck["arch"])
    if found != arch:
        raise ValueError(f"{path}: INRs of another architecture than the run was trained on "
                         f"({found.difference(arch, 'here', 'in the run')})")
    return INRDataset(path, normalize=normalize, stats=stats)


def open_zoo(data: str | os.PathLike, ck: dict[str, Any], split: str | None = None) -> Any:
    """The networks of a zoo file (or a folder holding one) as a ``regress`` run scores them.

    Args:
        data: a zoo file of ``neuralgraph zoo generate`` (any zoo, not only the run's own).
        ck: the run's checkpoint (:func:`load_run`).
        split: ``None``: every valid network; ``"train"`` / ``"val"`` / ``"test"``: the run's
            split by network (its fractions and seed), meaningful on the zoo it was trained on.

    Returns:
        A :class:`~neuralgraph.tasks.regress.ZooSplitView` at the run's checkpoint and metric,
        its networks in ascending id order.
    """
    from .tasks.regress import ZooSplitView
    from .zoo import ZooDataset
    from .zoo.files import resolve_zoo_file

    _check_split(split)
    task = _task(ck)
    zoo = ZooDataset(resolve_zoo_file(data, "the regress run"))
    zoo.targets(task.epoch, task.metric)                       # the zoo has the run's checkpoint and metric
    taps, run_taps = max(a.edge_dim for a in zoo.archs), Architecture.from_dict(ck["arch"]).edge_dim
    if taps > run_taps:
        raise ValueError(f"{zoo.path}: kernels of {taps} taps, but the run was trained on at most {run_taps}")
    ids = zoo.valid.nonzero().squeeze(1) if split is None else getattr(zoo.split(task.val, task.test,
                                                                                 task.split_seed), split)
    ids = ids.sort().values                                    # results in ascending network id
    if ids.numel() == 0:
        raise ValueError(f"{zoo.path}: no valid network{'' if split is None else ' in split ' + split}")
    return ZooSplitView(zoo, ids, task.epoch, task.metric)


def _check_split(split: str | None) -> None:
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)} (or None), got {split!r}")


def _is_zoo_run(ck: dict[str, Any]) -> bool:
    return ck.get("task") == "regress"


def _task(ck: dict[str, Any]):
    from .tasks import make_task

    task = make_task(ck.get("task", "classify"), **ck.get("task_options", {}))
    if task.name == "classify":
        task.num_classes = int(ck["num_classes"])
    return task


def _batches(model: nn.Module, ds: Any, batch_size: int, device, fn) -> list[Tensor]:
    """``fn(model, batch)`` over ``ds`` in order (a zoo view's outputs put back in ascending network id)."""
    from .tasks.regress import ZooSplitView
    from .train.accel import prefetch
    from .train.trainer import _check_batch_size

    _check_batch_size(batch_size)
    with torch.no_grad():
        if isinstance(ds, ZooSplitView):      # batches grouped by architecture; its ids are ascending
            ids, out, _ = ds.apply(lambda b: fn(model, b), batch_size, device)
            return [out[ids.argsort()]] if len(out) else []
        chunks = [torch.arange(s, min(len(ds), s + batch_size)) for s in range(0, len(ds), batch_size)]
        return [fn(model, b) for b in prefetch(lambda idx: ds.batch(idx).to(device), chunks)]   # next built meanwhile


def predict(run: str | os.PathLike, data: str | os.PathLike, *, split: str | None = None, batch_size: int = 256,
            device: str | torch.device = "cpu") -> dict[str, Tensor]:
    """Predictions of a run: classes of INRs (``classify``) or a metric of zoo networks (``regress``).

    Args:
        run: a run directory of ``neuralgraph train`` (or its ``best.pt``).
        data: an INR split file or directory (classify), or a zoo file (regress).
        split: which split of a directory (default ``"test"``) or of a zoo (default: every valid network).

    Returns:
        classify: ``{"pred": [n] int64, "probs": [n, C] float32, "labels": [n] (the file's labels),
        "index": [n]}``; regress: ``{"pred": [n] float32, "target": [n] (the zoo's metric), "index": [n]
        (zoo network ids, ascending)}``.
    """
    model, ck = load_run(run, device)
    if _is_zoo_run(ck):
        view = open_data(data, ck, split)
        pred = _batches(model, view, batch_size, device, lambda m, b: m(b).float().reshape(-1).cpu())
        return {"pred": torch.cat(pred), "target": view.targets.float(), "index": view.ids.clone()}
    if ck.get("task", "classify") != "classify":
        raise ValueError(f"predict needs a classify or regress run; {run} was trained for task {ck.get('task')!r} "
                         f"(use embed or evaluate)")
    ds = open_data(data, ck, split)
    logits = _batches(model, ds, batch_size, device, lambda m, b: m(b).float().cpu())
    logits = torch.cat(logits) if logits else torch.zeros(0, int(ck["num_classes"]))
    probs = logits.softmax(1)
    return {"pred": probs.argmax(1), "probs": probs, "labels": ds.labels.clone(), "index": torch.arange(len(ds))}


def predictions_csv(result: dict[str, Tensor]) -> str:
    """CSV lines of a :func:`predict` result: ``index,label,pred,prob_0,...`` (classify) or ``index,target,pred``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if "probs" not in result:
        w.writerow(["index", "target", "pred"])
        for i, t, p in zip(result["index"].tolist(), result["target"].tolist(), result["pred"].tolist()):
            w.writerow([i, f"{t:.6g}", f"{p:.6g}"])
        return buf.getvalue()
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


def embed(run: str | os.PathLike, data: str | os.PathLike, *, layer: str = "auto", split: str | None = None,
          batch_size: int = 256, device: str | torch.device = "cpu",
          return_labels: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Permutation-invariant embeddings ``[n, D]`` of an INR file (or a regress run's zoo networks) under a run.

    Args:
        split: as for :func:`predict`.
        layer: ``"penultimate"``: the invariant head's features before its last
            Linear layer (pooled processor features after the head's hidden layer);
            ``"output"``: the model's output (the task's embedding for ``contrastive``
            runs, logits for ``classify``); ``"auto"``: ``"output"`` for
            contrastive runs, else ``"penultimate"``.
        return_labels: also return each row's label ``[n]``: the file's labels for INRs,
            the zoo's metric for zoo networks (rows in ascending network id).
    """
    if layer not in ("auto", "penultimate", "output"):
        raise ValueError(f"layer must be 'auto', 'penultimate' or 'output', got {layer!r}")
    model, ck = load_run(run, device)
    task = _task(ck)
    if task.head != "invariant":
        raise ValueError(f"embed needs a run with an invariant head; task {task.name!r} edits networks")
    if layer == "auto":
        layer = "output" if task.name == "contrastive" else "penultimate"
    ds = open_data(data, ck, split)
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
    emb = torch.cat(parts) if parts else torch.zeros(0, 0)
    if not return_labels:
        return emb
    return emb, (ds.targets if _is_zoo_run(ck) else ds.labels.clone())


def evaluate(run: str | os.PathLike, data: str | os.PathLike, *, split: str | None = None, batch_size: int = 256,
             device: str | torch.device = "cpu") -> dict[str, float]:
    """The run's task metrics (``loss`` and ``acc``; ``loss`` and ``tau`` for regress) on data as for :func:`predict`."""
    from .train.trainer import evaluate_split

    model, ck = load_run(run, device)
    task = _task(ck)
    ds = open_data(data, ck, split)
    task.setup_inference(ds, ck.get("inference") or {})      # e.g. the ssl views' statistics, edit's image shape
    if task.name == "classify" and len(ds) and int(ds.labels.max()) >= task.num_classes:
        raise ValueError(f"{ds.path}: label {int(ds.labels.max())} is outside the run's {task.num_classes} classes")
    return evaluate_split(model, ds, task, batch_size=batch_size, device=device)
