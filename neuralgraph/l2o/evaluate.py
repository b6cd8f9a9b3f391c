"""Meta-testing: fresh optimizees trained by learned optimizers and by Adam over a learning-rate grid.

For every task (:data:`~neuralgraph.l2o.tasks.TASKS`), ``seeds`` fresh networks (the same
initialisations and the same batches for every optimizer: paired comparisons) train for
``steps`` steps (1,000 in the paper) with each optimizer. Recorded per network: the training
loss of every step, the test loss and accuracy every ``eval_every`` steps, and at the end the
test and validation loss and accuracy. Adam runs once per learning rate of the grid (all of them
in one vectorised run); its *tuned* learning rate is the one of best mean validation accuracy at
the end, chosen per task.

Results are cached per (task, optimizer) in ``<out>/cache`` (checksummed, with the settings they
were made with), so an interrupted evaluation continues where it stopped; ``<out>/results.json``,
``results.md`` and ``curves_<task>.png`` are written by :mod:`neuralgraph.l2o.report`.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor

from ..chunks import fingerprint, tensor_digest
from ..io import load, save
from ..seeding import derive_seed
from .checkpoint import load_learned_optimizer, load_run, run_path
from .layout import ParamLayout
from .report import write_report
from .rules import AdamRule, LearnedRule
from .tasks import TASKS, Task, evaluate_theta, init_theta, load_task, loss_and_grad, optimizee_cnn

__all__ = ["DEFAULT_ADAM_LRS", "train_optimizees", "evaluate_optimizers"]

#: Adam's learning-rate grid.
DEFAULT_ADAM_LRS = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)


def train_optimizees(layout: ParamLayout, task: Task, rule, *, steps: int, seeds: int, data_seed: int,
                     batch_size: int = 128, eval_every: int = 100, test: bool = True) -> dict[str, Tensor]:
    """Train the networks a rule owns (``rule.theta [G * seeds, P]``) and record their curves.

    Row ``g * seeds + s`` sees the batches of seed ``s`` (drawn from ``data_seed``), whatever ``g``.

    Returns ``train_loss [B, steps]`` (the batch loss before each update), final ``val_loss``,
    ``val_acc [B]`` and, with ``test``, ``curve_steps [C]``, ``test_loss_curve`` /
    ``test_acc_curve [B, C]`` (every ``eval_every`` steps) and final ``test_loss``, ``test_acc``.
    """
    B = rule.theta.shape[0]
    if B % seeds:
        raise ValueError(f"l2o: {B} networks are not a multiple of {seeds} seeds")
    gen = torch.Generator().manual_seed(int(data_seed))
    curve = sorted(set(range(0, steps, eval_every)) | {steps}) if test else []
    train_loss = torch.empty(B, steps)
    test_curve = []
    for t in range(steps):
        if t in curve:
            test_curve.append(evaluate_theta(layout, rule.theta, task.test_x, task.test_y))
        idx = torch.randint(task.train_x.shape[0], (seeds, batch_size), generator=gen).repeat(B // seeds, 1)
        loss, grad = loss_and_grad(layout, rule.theta, task.train_x[idx], task.train_y[idx])
        train_loss[:, t] = loss
        rule.step(grad)
    val = evaluate_theta(layout, rule.theta, task.val_x, task.val_y)
    out = {"train_loss": train_loss, "val_loss": val[0], "val_acc": val[1]}
    if test:
        final = evaluate_theta(layout, rule.theta, task.test_x, task.test_y)
        test_curve.append(final)
        out.update({"curve_steps": torch.tensor(curve), "test_loss_curve": torch.stack([c[0] for c in test_curve], 1),
                    "test_acc_curve": torch.stack([c[1] for c in test_curve], 1), "test_loss": final[0],
                    "test_acc": final[1]})
    return out


def _split_rows(record: dict[str, Tensor], groups: int) -> list[dict[str, Tensor]]:
    """One record per group of a run that trained ``groups`` x seeds networks."""
    return [{k: (v if k == "curve_steps" else v.chunk(groups)[g]) for k, v in record.items()} for g in range(groups)]


def _cached(path: Path, settings: dict, make: Callable[[], object], log) -> object:
    """``make()``, or the result cached at ``path`` by an identical earlier call."""
    fp = fingerprint(settings)
    if path.is_file():
        obj = load(path)
        if isinstance(obj, dict) and obj.get("fingerprint") == fp:
            return obj["result"]
        if log is not None:
            log(f"[l2o evaluate] {path.name}: made with other settings; recomputing")
    result = make()
    save({"fingerprint": fp, "settings": settings, "result": result}, path)
    return result


def _label(runs: Sequence[str | os.PathLike]) -> list[str]:
    """Row labels of learned optimizers: the processor (``ff`` for none), the run name where two share one."""
    procs = [load_run(r)["spec"]["processor"] for r in runs]
    names = ["ff" if p == "none" else p for p in procs]
    return [f"{n} ({Path(r).name})" if names.count(n) > 1 else n for n, r in zip(names, runs)]


def evaluate_optimizers(runs: Sequence[str | os.PathLike], data_root: str | os.PathLike, *,
                        tasks: Sequence[str] = TASKS, steps: int = 1000, seeds: int = 5,
                        adam_lrs: Sequence[float] = DEFAULT_ADAM_LRS, batch_size: int = 128, eval_every: int = 100,
                        out: str | os.PathLike | None = None, eval_seed: int = 0, n_train: int | None = None,
                        n_test: int | None = None, optimizee: dict | None = None,
                        log: Callable[[str], None] | None = print) -> dict:
    """Meta-test learned optimizers (meta-training runs) against Adam on fresh optimizees.

    Args:
        runs: meta-training run directories (their optimizee settings must agree).
        data_root: directory holding ``fashion_mnist/`` and ``mnist/``.
        tasks: task names (:data:`~neuralgraph.l2o.tasks.TASKS`).
        steps, seeds, batch_size, eval_every: the meta-test protocol.
        adam_lrs: Adam's learning-rate grid (empty: no Adam).
        out: directory for the cache and the results (``None``: nothing written).
        eval_seed: seed of the initialisations and batches (different from meta-training's).
        n_train, n_test: caps on the images read (tests).
        optimizee: ``image_size``, ``channels``, ``cnn_layers``, ``init`` and ``n_val`` (validation
            images held out of the training split) when no run gives them; the runs' own otherwise.
        log: where progress lines go.

    Returns ``{"settings": ..., "tasks": {task: {row label: record}}, "adam_tuned": {task: lr}}``
    (records as :func:`train_optimizees`; Adam rows are labelled ``adam lr=<lr>``).
    """
    for name in ("steps", "seeds", "batch_size", "eval_every"):
        v = locals()[name]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"l2o: {name} must be an integer >= 1, got {v!r}")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise ValueError(f"l2o: unknown task(s) {unknown}; choose among {', '.join(TASKS)}")
    if not runs and not adam_lrs:
        raise ValueError("l2o: nothing to evaluate: give --optimizer RUN and/or Adam learning rates")
    if any(not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0) for lr in adam_lrs):
        raise ValueError(f"l2o: Adam learning rates must be finite numbers > 0, got {list(adam_lrs)}")
    shape = _optimizee_settings(runs, optimizee)
    opts = {label: load_learned_optimizer(r) for label, r in zip(_label(runs), runs)}
    settings = {"steps": steps, "seeds": seeds, "batch_size": batch_size, "eval_every": eval_every,
                "eval_seed": eval_seed, "n_train": n_train, "n_test": n_test, **shape}
    arch = optimizee_cnn(shape["channels"], shape["cnn_layers"])
    results: dict = {"settings": settings, "tasks": {}, "adam_tuned": {}}
    for task_name in tasks:
        task = load_task(task_name, data_root, shape["image_size"], shape["n_val"], n_train=n_train, n_test=n_test)
        rows: dict = {}
        init_seeds = [derive_seed(eval_seed, 3, s) % 2 ** 63 for s in range(seeds)]
        data_seed = derive_seed(eval_seed, 4) % 2 ** 63
        common = dict(steps=steps, seeds=seeds, data_seed=data_seed, batch_size=batch_size, eval_every=eval_every)
        if adam_lrs:
            layout = ParamLayout.of(arch)
            theta = init_theta(layout, init_seeds, shape["init"]).repeat(len(adam_lrs), 1)
            make = lambda: train_optimizees(layout, task, AdamRule(theta, adam_lrs, seeds), **common)
            record = _timed(f"{task_name}: adam x {len(adam_lrs)} learning rates", make, log,
                            None if out is None else Path(out) / "cache" / f"{task_name}__adam.pt",
                            {**settings, "task": task_name, "adam_lrs": [float(lr) for lr in adam_lrs]})
            for lr, part in zip(adam_lrs, _split_rows(record, len(adam_lrs))):
                rows[f"adam lr={lr:g}"] = part
            best = max(adam_lrs, key=lambda lr: float(rows[f"adam lr={lr:g}"]["val_acc"].mean()))
            results["adam_tuned"][task_name] = float(best)
        for label, opt in opts.items():
            layout = opt.layout(arch)
            theta = init_theta(layout, init_seeds, shape["init"])
            make = lambda: train_optimizees(layout, task, LearnedRule(opt, layout, theta), **common)
            key = fingerprint({"meta_params": {k: tensor_digest(v) for k, v in opt.state_dict().items()}})
            rows[label] = _timed(f"{task_name}: {label}", make, log,
                                 None if out is None else Path(out) / "cache" / f"{task_name}__{key}.pt",
                                 {**settings, "task": task_name, "optimizer": key})
        results["tasks"][task_name] = rows
    if out is not None:
        write_report(results, out)
    return results


def _timed(what: str, make: Callable[[], dict], log, path: Path | None, settings: dict) -> dict:
    start = time.perf_counter()
    record = make() if path is None else _cached(path, settings, make, log)
    if log is not None:
        acc = record["test_acc"]
        log(f"[l2o evaluate] {what}: test acc {float(acc.mean()):.4f} ({time.perf_counter() - start:.0f} s)")
    return record


def _optimizee_settings(runs: Sequence[str | os.PathLike], given: dict | None) -> dict:
    """The optimizee of the runs (they must agree), or the given / default one."""
    keys = ("image_size", "channels", "cnn_layers", "init", "n_val")
    defaults = {"image_size": 14, "channels": 16, "cnn_layers": 3, "init": "he_normal", "n_val": 10000}
    found = []
    for r in runs:
        cfg = load_run(r)["config"]
        found.append((run_path(r), {k: cfg[k] for k in keys}))
    for (p, s) in found[1:]:
        if s != found[0][1]:
            raise ValueError(f"l2o: {p} was meta-trained on optimizee {s}, {found[0][0]} on {found[0][1]}; "
                             "evaluate runs of one optimizee together")
    shape = found[0][1] if found else dict(defaults)
    for k, v in (given or {}).items():
        if k not in keys:
            raise ValueError(f"l2o: unknown optimizee setting {k!r}; known: {list(keys)}")
        if v is not None and found and v != shape[k]:
            raise ValueError(f"l2o: the runs were meta-trained with {k}={shape[k]!r}, asked for {v!r}")
        if v is not None:
            shape[k] = v
    return shape
