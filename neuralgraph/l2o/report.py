"""The results of a meta-test: a JSON summary, a markdown table and training-curve pictures.

``results.json``: the settings, Adam's tuned learning rate per task and one row per (task,
optimizer) (:func:`summarise`). ``results.md``: the table (test accuracy
mean +- std over seeds, every Adam learning rate, the tuned one marked). ``curves_<task>.png``:
training loss (a moving average over 20 steps) and test accuracy against the step, mean over
seeds with a +- std band, for tuned Adam and every learned optimizer. All written atomically.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from ..io import atomic_write_text, save_figure

__all__ = ["summarise", "write_report", "results_table", "plot_curves"]


def summarise(results: dict) -> list[dict]:
    """One row per (task, optimizer): mean and std over seeds of the final test / validation metrics."""
    rows = []
    for task, recs in results["tasks"].items():
        tuned = results["adam_tuned"].get(task)
        for label, r in recs.items():
            acc, loss = r["test_acc"].double(), r["test_loss"].double()
            row = {"task": task, "optimizer": label, "test_acc_mean": float(acc.mean()), "test_acc_std":
                   float(acc.std()) if acc.numel() > 1 else 0.0, "test_loss_mean": float(loss.mean()),
                   "test_loss_std": float(loss.std()) if loss.numel() > 1 else 0.0,
                   "val_acc_mean": float(r["val_acc"].double().mean()), "seeds": int(acc.numel()),
                   "final_train_loss": float(r["train_loss"][:, -50:].double().mean())}
            if label.startswith("adam lr="):
                row["adam_lr"] = float(label.split("=", 1)[1])
                row["tuned"] = tuned is not None and math.isclose(row["adam_lr"], tuned)
            rows.append(row)
    return rows


def results_table(results: dict) -> str:
    """The markdown table of a meta-test (one row per task and optimizer)."""
    s = results["settings"]
    lines = [f"Test accuracy after {s['steps']} steps, mean +- std over {s['seeds']} seeds (optimizee: "
             f"{s['cnn_layers']} conv {s['channels']} channels, {s['image_size']}x{s['image_size']} images, batch "
             f"{s['batch_size']}); Adam's learning rate tuned per task on the validation images.", "",
             "| task | optimizer | test acc (%) | test loss | val acc (%) | train loss (last 50 steps) |",
             "|---|---|---|---|---|---|"]
    for r in summarise(results):
        name = r["optimizer"] + (" **(tuned)**" if r.get("tuned") else "")
        lines.append(f"| {r['task']} | {name} | {100 * r['test_acc_mean']:.2f} +- {100 * r['test_acc_std']:.2f} | "
                     f"{r['test_loss_mean']:.4f} +- {r['test_loss_std']:.4f} | {100 * r['val_acc_mean']:.2f} | "
                     f"{r['final_train_loss']:.4f} |")
    return "\n".join(lines) + "\n"


def _band(ax, x, values: torch.Tensor, label: str) -> None:
    mean, std = values.mean(0), values.std(0) if values.shape[0] > 1 else torch.zeros(values.shape[1])
    line, = ax.plot(x, mean.numpy(), label=label, lw=1.2)
    ax.fill_between(x, (mean - std).numpy(), (mean + std).numpy(), color=line.get_color(), alpha=0.2, lw=0)


def plot_curves(results: dict, task: str, path: str | os.PathLike, smooth: int = 20) -> Path:
    """Training loss and test accuracy against the step on ``task`` (tuned Adam and the learned optimizers)."""
    from matplotlib.figure import Figure

    recs = results["tasks"][task]
    tuned = results["adam_tuned"].get(task)
    show = {(f"adam (lr {tuned:g})" if k.startswith("adam") else k): r for k, r in recs.items()
            if not k.startswith("adam") or (tuned is not None and k == f"adam lr={tuned:g}")}
    fig = Figure(figsize=(10, 3.6))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for label, r in show.items():
        loss = r["train_loss"].double()
        k = max(1, min(smooth, loss.shape[1]))
        kernel = torch.ones(1, 1, k, dtype=loss.dtype) / k
        avg = torch.nn.functional.conv1d(loss.unsqueeze(1), kernel).squeeze(1)
        _band(ax_loss, range(k, loss.shape[1] + 1), avg, label)
        _band(ax_acc, r["curve_steps"].numpy(), 100 * r["test_acc_curve"].double(), label)
    ax_loss.set(xlabel="step", ylabel=f"training loss ({smooth}-step mean)", title=task)
    ax_acc.set(xlabel="step", ylabel="test accuracy (%)", title=task)
    ax_acc.legend(fontsize=8)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    return save_figure(fig, path, dpi=120, bbox_inches="tight")


def write_report(results: dict, out: str | os.PathLike) -> list[Path]:
    """Write ``results.json``, ``results.md`` and ``curves_<task>.png`` into ``out``; returns the paths."""
    out = Path(out)
    summary = {"settings": results["settings"], "adam_tuned": results["adam_tuned"], "rows": summarise(results)}
    paths = [atomic_write_text(json.dumps(summary, indent=1) + "\n", out / "results.json"),
             atomic_write_text(results_table(results), out / "results.md")]
    for task in results["tasks"]:
        paths.append(plot_curves(results, task, out / f"curves_{task}.png"))
    return paths
