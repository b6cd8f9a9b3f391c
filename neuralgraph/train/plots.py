"""Pictures of a training run: learning curves, INR reconstructions with predicted labels, image rows.

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

__all__ = ["plot_learning_curves", "plot_reconstructions", "plot_image_rows", "plot_scatter", "save_figure",
           "confusion_matrix", "plot_confusion_matrix"]


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a run's figure atomically, cropped to its content."""
    return io.save_figure(fig, path, dpi=dpi, bbox_inches="tight")


def _figure(w: float, h: float):
    from matplotlib.figure import Figure   # no pyplot: no global state, no display backend

    return Figure(figsize=(w, h))


#: Axis labels of known metrics; others are labelled by their name.
METRIC_LABELS = {"loss": "loss", "acc": "accuracy", "tau": "Kendall's tau", "unedited": "MSE of the unedited INR"}


def plot_learning_curves(history: Sequence[Mapping[str, float]], path: str | os.PathLike,
                         best_epoch: int | None = None, title: str | None = None,
                         metrics: Sequence[str] = ("loss", "acc"), loss_label: str = "cross-entropy") -> Path:
    """One panel per metric (train and validation per epoch), best epoch marked.

    ``history`` rows hold ``train_<m>`` and ``val_<m>`` for each ``m`` in ``metrics``
    (rows of metrics.csv). Accuracy panels span ``[0, 1]``; a loss panel whose values
    span more than two decades uses a log scale.
    """
    if not history:
        raise ValueError("no epochs to plot")
    epochs = [h["epoch"] for h in history]
    metrics = [m for m in metrics if f"train_{m}" in history[0] or f"val_{m}" in history[0]]
    fig = _figure(5 * len(metrics), 3.8)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, key in zip(axes, metrics):
        for split, marker, label in (("train", "o-", "train"), ("val", "s-", "validation")):
            values = [h.get(f"{split}_{key}") for h in history]
            if all(v is not None and v == v for v in values):
                ax.plot(epochs, values, marker, ms=3, label=label)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="gray", ls="--", lw=1, label=f"best val (epoch {best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(loss_label if key == "loss" else METRIC_LABELS.get(key, key))
        ax.grid(alpha=0.3)
        if key == "acc":
            ax.set_ylim(0, 1)
        values = [v for h in history for v in (h.get(f"train_{key}"), h.get(f"val_{key}")) if v is not None]
        if key == "loss" and values and min(values) > 0 and max(values) / min(values) > 100:
            ax.set_yscale("log")
    axes[-1].legend(loc="best")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_image_rows(rows: Mapping[str, Tensor], path: str | os.PathLike, title: str | None = None) -> Path:
    """Rows of ``[n, H, W]`` grey images (same ``n`` per row), each row labelled; values clipped to ``[0, 1]``."""
    if not rows:
        raise ValueError("no rows to draw")
    n = {name: imgs.shape[0] for name, imgs in rows.items()}
    if len(set(n.values())) != 1 or min(n.values()) == 0:
        raise ValueError(f"every row needs the same number (> 0) of images, got {n}")
    ncols = next(iter(n.values()))
    fig = _figure(1.2 * ncols + 1.2, 1.3 * len(rows) + (0.4 if title else 0))
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for r, (name, imgs) in enumerate(rows.items()):
        imgs = imgs.detach().float().clamp(0, 1).cpu()
        for k in range(ncols):
            ax = axes[r, k]
            ax.imshow(imgs[k].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(name, fontsize=8)
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


def plot_scatter(x: Tensor, y: Tensor, path: str | os.PathLike, xlabel: str = "true", ylabel: str = "predicted",
                 title: str | None = None) -> Path:
    """Predicted vs true values, one point per item, with the diagonal."""
    x, y = x.detach().float().cpu().reshape(-1), y.detach().float().cpu().reshape(-1)
    if x.numel() == 0 or x.shape != y.shape:
        raise ValueError(f"need as many (> 0) predictions as targets, got {tuple(y.shape)} and {tuple(x.shape)}")
    fig = _figure(4.5, 4.5)
    ax = fig.subplots()
    ax.scatter(x.numpy(), y.numpy(), s=8, alpha=0.6)
    lo, hi = float(torch.minimum(x.min(), y.min())), float(torch.maximum(x.max(), y.max()))
    ax.plot([lo, hi], [lo, hi], color="gray", lw=1, ls="--")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def confusion_matrix(predicted: Tensor, true: Tensor, num_classes: int) -> Tensor:
    """``[C, C]`` counts, row = true class, column = predicted class (scikit-learn's convention)."""
    from sklearn.metrics import confusion_matrix as _cm

    predicted, true = torch.as_tensor(predicted).reshape(-1), torch.as_tensor(true).reshape(-1)
    if predicted.shape != true.shape or predicted.numel() == 0:
        raise ValueError(f"need as many (> 0) predictions as labels, got {tuple(predicted.shape)} and "
                         f"{tuple(true.shape)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    for what, t in (("predicted", predicted), ("true", true)):
        if int(t.min()) < 0 or int(t.max()) >= num_classes:
            raise ValueError(f"{what} labels must be in [0, {num_classes}), got {int(t.min())}..{int(t.max())}")
    return torch.from_numpy(_cm(true.numpy(), predicted.numpy(), labels=list(range(num_classes))))


def plot_confusion_matrix(predicted: Tensor, true: Tensor, path: str | os.PathLike, num_classes: int,
                          class_names: Sequence[str] | None = None, title: str | None = None) -> Path:
    """The confusion matrix of a classifier (row-normalised colours, counts written in the cells).

    Args:
        predicted, true: ``[n]`` class ids.
        num_classes: C, the size of the matrix (classes absent from the data still get a row).
        class_names: C tick labels (default: the class ids).
    """
    cm = confusion_matrix(predicted, true, num_classes)
    names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"class_names has {len(names)} names for {num_classes} classes")
    rates = cm.double() / cm.sum(1, keepdim=True).clamp(min=1)
    size = 1.6 + 0.45 * num_classes
    fig = _figure(size + 1.0, size)
    ax = fig.subplots()
    im = ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, label="fraction of the true class")
    for i in range(num_classes):
        for j in range(num_classes):
            if cm[i, j]:
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(num_classes), names)
    ax.set_yticks(range(num_classes), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = float(cm.diagonal().sum()) / max(1, int(cm.sum()))
    ax.set_title((f"{title}\n" if title else "") + f"accuracy {acc:.1%} ({int(cm.sum())} networks)", fontsize=9)
    return save_figure(fig, path)
