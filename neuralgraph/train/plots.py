"""Pictures of a training run: learning curves and INR reconstructions with predicted labels.

Both use matplotlib's non-interactive ``Agg`` canvas (no display needed) and are
written atomically, like every other artefact of a run.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import Tensor

from .. import io

__all__ = ["plot_learning_curves", "plot_reconstructions", "save_figure"]


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a run's figure atomically, cropped to its content."""
    return io.save_figure(fig, path, dpi=dpi, bbox_inches="tight")


def _figure(w: float, h: float):
    from matplotlib.figure import Figure   # no pyplot: no global state, no display backend

    return Figure(figsize=(w, h))


def plot_learning_curves(history: Sequence[Mapping[str, float]], path: str | os.PathLike,
                         best_epoch: int | None = None, title: str | None = None) -> Path:
    """Loss and accuracy per epoch (train and validation), best epoch marked."""
    if not history:
        raise ValueError("no epochs to plot")
    epochs = [h["epoch"] for h in history]
    fig = _figure(10, 3.8)
    ax_loss, ax_acc = fig.subplots(1, 2)
    for ax, key, label in ((ax_loss, "loss", "cross-entropy"), (ax_acc, "acc", "accuracy")):
        ax.plot(epochs, [h[f"train_{key}"] for h in history], "o-", ms=3, label="train")
        ax.plot(epochs, [h[f"val_{key}"] for h in history], "s-", ms=3, label="validation")
        if best_epoch is not None:
            ax.axvline(best_epoch, color="gray", ls="--", lw=1, label=f"best val (epoch {best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    ax_acc.set_ylim(0, 1)
    ax_acc.legend(loc="lower right")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_reconstructions(images: Tensor, predicted: Tensor, true: Tensor, path: str | os.PathLike,
                         ncols: int = 8, class_names: Sequence[str] | None = None,
                         title: str | None = None) -> Path:
    """A grid of images decoded from INRs, titled ``pred / true`` (green right, red wrong).

    ``images`` is ``[n, H, W]`` (grey) or ``[n, H, W, 3]``; values are clipped to ``[0, 1]``.
    """
    n = images.shape[0]
    if n == 0 or predicted.shape != (n,) or true.shape != (n,):
        raise ValueError(f"need n>0 images with n predicted and n true labels, got {tuple(images.shape)}, "
                         f"{tuple(predicted.shape)}, {tuple(true.shape)}")
    name = (lambda c: class_names[c]) if class_names is not None else str
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig = _figure(1.3 * ncols, 1.5 * nrows + (0.4 if title else 0))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    imgs = images.detach().float().clamp(0, 1).cpu()
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= n:
            continue
        ax.imshow(imgs[k].numpy(), cmap="gray" if imgs.dim() == 3 else None, vmin=0, vmax=1,
                  interpolation="nearest")
        p, t = int(predicted[k]), int(true[k])
        ax.set_title(f"pred {name(p)} / true {name(t)}", fontsize=7, color="tab:green" if p == t else "tab:red")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
