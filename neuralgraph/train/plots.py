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
from ..deprecation import forward_moved

__all__ = ["plot_learning_curves", "plot_reconstructions", "plot_image_rows", "plot_scatter", "save_cropped_figure",
           "confusion_matrix", "plot_confusion_matrix", "plot_layer_histograms", "plot_psnr_histogram",
           "plot_reconstructions_with_originals"]

#: ``save_figure`` was this module's cropped save, a second meaning of :func:`neuralgraph.io.save_figure`.
__getattr__ = forward_moved(__name__, {"save_figure": "neuralgraph.train.plots:save_cropped_figure"})


def _image_rows(fig, rows: dict, ncols: int):
    """One row of grey images (values clamped to [0, 1]) per entry of ``rows``, labelled by its key.

    Shapes: ``rows[name]`` is ``[>= ncols, H, W]``. Returns the ``[len(rows), ncols]`` axes.
    """
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for r, (name, imgs) in enumerate(rows.items()):
        imgs = imgs.detach().float().clamp(0, 1).cpu()
        for k in range(ncols):
            ax = axes[r, k]
            ax.imshow(imgs[k].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(name, fontsize=8)
    return axes


def save_cropped_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a run's figure atomically (:func:`neuralgraph.io.save_figure`), cropped to its content."""
    return io.save_figure(fig, path, dpi=dpi, bbox_inches="tight")


def _figure(w: float, h: float):
    from matplotlib.figure import Figure   # no pyplot: no global state, no display backend

    return Figure(figsize=(w, h))


#: Axis labels of known metrics; others are labelled by their name.
METRIC_LABELS = {"loss": "loss", "acc": "accuracy", "tau": "Kendall's tau", "unedited": "MSE of the unedited INR"}


def plot_learning_curves(history: Sequence[Mapping[str, float]], path: str | os.PathLike,
                         best_epoch: int | None = None, title: str | None = None,
                         metrics: Sequence[str] = ("loss", "acc"), loss_label: str = "cross-entropy",
                         lr: Sequence[float] | None = None, test: Mapping[str, float] | None = None) -> Path:
    """One panel per metric (train and validation per epoch), best epoch marked.

    ``history`` rows hold ``train_<m>`` and ``val_<m>`` for each ``m`` in ``metrics``
    (rows of metrics.csv). Accuracy panels span ``[0, 1]``; a loss panel whose values
    span more than two decades uses a log scale.

    Args:
        lr: the learning rate of each epoch (``[h["lr"] for h in history]``), drawn on a
            second (log) axis of the first panel.
        test: test metrics at the best epoch (e.g. ``{"loss": 0.41, "acc": 0.87}``): a star at
            ``(best_epoch, test[m])`` on each panel whose metric it holds (``best_epoch``
            default: the last epoch).
    """
    if not history:
        raise ValueError("no epochs to plot")
    if lr is not None and len(lr) != len(history):
        raise ValueError(f"plot_learning_curves: lr has {len(lr)} values for {len(history)} epochs")
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
        if test is not None and test.get(key) is not None and test[key] == test[key]:
            at = best_epoch if best_epoch is not None else epochs[-1]
            ax.plot([at], [test[key]], "*", ms=12, color="tab:red", mec="black", mew=0.5,
                    label=f"test at epoch {at}: {test[key]:.4g}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(loss_label if key == "loss" else METRIC_LABELS.get(key, key))
        ax.grid(alpha=0.3)
        if key == "acc":
            ax.set_ylim(0, 1)
        values = [v for h in history for v in (h.get(f"train_{key}"), h.get(f"val_{key}")) if v is not None]
        if key == "loss" and values and min(values) > 0 and max(values) / min(values) > 100:
            ax.set_yscale("log")
    extra = []
    if lr is not None:
        twin = axes[0].twinx()
        extra = twin.plot(epochs, list(lr), color="tab:purple", lw=1, ls=":", label="learning rate (right axis)")
        if min(lr) > 0 and max(lr) / min(lr) > 100:
            twin.set_yscale("log")
        else:
            twin.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        twin.set_ylabel("learning rate", color="tab:purple")
        twin.tick_params(axis="y", colors="tab:purple", labelsize=7)
    for k, ax in enumerate(axes):
        handles, labels = ax.get_legend_handles_labels()
        if k == 0 and extra:
            handles, labels = handles + extra, labels + [e.get_label() for e in extra]
        ax.legend(handles, labels, loc="best", fontsize=7)
    fig.subplots_adjust(wspace=0.45 if lr is not None else 0.25)
    if title:
        fig.suptitle(title)
    return save_cropped_figure(fig, path)


def plot_image_rows(rows: Mapping[str, Tensor], path: str | os.PathLike, title: str | None = None) -> Path:
    """Rows of ``[n, H, W]`` grey images (same ``n`` per row), each row labelled; values clipped to ``[0, 1]``."""
    if not rows:
        raise ValueError("no rows to draw")
    n = {name: imgs.shape[0] for name, imgs in rows.items()}
    if len(set(n.values())) != 1 or min(n.values()) == 0:
        raise ValueError(f"every row needs the same number (> 0) of images, got {n}")
    ncols = next(iter(n.values()))
    fig = _figure(1.2 * ncols + 1.2, 1.3 * len(rows) + (0.4 if title else 0))
    _image_rows(fig, rows, ncols)
    if title:
        fig.suptitle(title)
    return save_cropped_figure(fig, path)


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
    return save_cropped_figure(fig, path)


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
    return save_cropped_figure(fig, path)


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
    return save_cropped_figure(fig, path)


def _weights_biases(data) -> tuple[list[Tensor], list[Tensor]]:
    """Stacked ``(weights, biases)`` of an INR dataset (anything with ``.weights`` / ``.biases``) or a pair."""
    if hasattr(data, "weights") and hasattr(data, "biases"):
        weights, biases = data.weights, data.biases
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        weights, biases = data
    else:
        raise ValueError(f"plot_layer_histograms: need an INRDataset or (weights, biases), got {type(data).__name__}")
    weights, biases = list(weights), list(biases)
    if not weights or len(weights) != len(biases):
        raise ValueError(f"plot_layer_histograms: need as many (> 0) weight as bias tensors, got {len(weights)} and "
                         f"{len(biases)}")
    n = {int(t.shape[0]) for t in (*weights, *biases)}
    if len(n) != 1 or 0 in n:
        raise ValueError(f"plot_layer_histograms: every tensor needs the same number (> 0) of networks in dim 0, "
                         f"got {sorted(n)}")
    return weights, biases


def plot_layer_histograms(data, path: str | os.PathLike, bins: int = 60, max_networks: int | None = 2000,
                          title: str | None = None) -> Path:
    """Per-layer histograms of a dataset's weights and biases: one row per layer, weights left, biases right.

    Each panel gives the layer's shape, mean and std: the scales differ by layer (a SIREN's
    hidden weights are ~10x smaller than its first layer's), so every panel has its own x range.

    Args:
        data: an :class:`~neuralgraph.inr.INRDataset` or a pair ``(weights, biases)`` of
            stacked per-layer tensors (``[n, d_out, d_in(, k)]`` and ``[n, d_out]``).
        max_networks: use the first (at most) this many networks (``None``: all).
    """
    import numpy as np

    weights, biases = _weights_biases(data)
    n = int(weights[0].shape[0]) if max_networks is None else min(int(weights[0].shape[0]), int(max_networks))
    M = len(weights)
    fig = _figure(9, 1.9 * M + (0.5 if title else 0.2))
    axes = fig.subplots(M, 2, squeeze=False)
    for m, (w, b) in enumerate(zip(weights, biases)):
        for ax, t, what, colour in ((axes[m, 0], w, "W", "tab:blue"), (axes[m, 1], b, "b", "tab:green")):
            values = t[:n].detach().float().reshape(-1).cpu().numpy()
            finite = values[np.isfinite(values)]
            ax.hist(finite, bins=bins, color=colour, alpha=0.8)
            shape = "x".join(map(str, t.shape[1:]))
            ax.set_title(f"layer {m + 1} {what} [{shape}]: mean {finite.mean():.3g}, std {finite.std():.3g}",
                         fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        axes[m, 0].set_ylabel("count", fontsize=8)
    axes[-1, 0].set_xlabel("weight value", fontsize=8)
    axes[-1, 1].set_xlabel("bias value", fontsize=8)
    fig.suptitle((f"{title}\n" if title else "") + f"per-layer parameter histograms ({n} networks)", fontsize=9)
    fig.tight_layout()
    return save_cropped_figure(fig, path)


def plot_psnr_histogram(psnr: Tensor, path: str | os.PathLike, bins: int = 40, target: float | None = None,
                        title: str | None = None) -> Path:
    """Histogram of the INRs' fit quality (PSNR in dB), mean and median marked (and a target PSNR if given)."""
    import numpy as np

    values = torch.as_tensor(psnr).detach().double().reshape(-1).cpu().numpy()
    if values.size == 0:
        raise ValueError("plot_psnr_histogram: no PSNR values")
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ValueError("plot_psnr_histogram: no finite PSNR values")
    fig = _figure(5.5, 3.6)
    ax = fig.subplots()
    ax.hist(finite, bins=bins, color="tab:blue", alpha=0.8)
    ax.axvline(finite.mean(), color="black", lw=1.2, label=f"mean {finite.mean():.1f} dB")
    ax.axvline(np.median(finite), color="gray", ls="--", lw=1.2, label=f"median {np.median(finite):.1f} dB")
    if target is not None:
        ax.axvline(target, color="tab:red", ls=":", lw=1.2, label=f"target {target:g} dB")
    ax.set_xlabel("fit PSNR (dB)")
    ax.set_ylabel("INRs")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    extra = f", {values.size - finite.size} not finite" if finite.size < values.size else ""
    ax.set_title((f"{title}\n" if title else "") + f"fit quality of {values.size} INRs (min {finite.min():.1f}, "
                 f"max {finite.max():.1f} dB{extra})", fontsize=9)
    return save_cropped_figure(fig, path)


def plot_reconstructions_with_originals(originals: Tensor | None, reconstructions, psnr: Tensor | None,
                                        path: str | os.PathLike, upsample: int = 4, w0: float | None = None,
                                        offset: float | None = None, image_shape: Sequence[int] | None = None,
                                        title: str | None = None) -> Path:
    """Originals beside their INRs, the INRs also rendered at ``upsample`` times the resolution.

    One column per INR; rows: the original image, the INR at the original resolution (what
    the PSNR measures) and the INR at ``upsample`` x resolution (a SIREN is a continuous
    function: this shows what it does between the pixels it was fitted to). Each column is
    titled with its PSNR.

    Args:
        originals: ``[n, H, W]`` images in ``[0, 1]``, or ``None`` (rows of the INRs only;
            ``image_shape`` then gives ``(H, W)``).
        reconstructions: the INRs as ``(weights, biases)`` stacked per layer (rendered with
            :func:`neuralgraph.inr.render` at ``H x W`` and ``upsample*H x upsample*W``, with
            ``w0`` / ``offset``, default the SIREN defaults), or already rendered ``[n, h, w]``
            images (drawn as the last row as they are).
        psnr: ``[n]`` PSNR in dB per INR (e.g. ``INRDataset.psnr``); ``None``: computed from
            the original-resolution render against ``originals``.
        upsample: the resolution factor of the last row (>= 1).

    Shapes:
        originals ``[n, H, W]``; psnr ``[n]``.
    """
    from ..inr import render
    from ..inr.psnr import psnr as _psnr
    from ..inr.siren import DEFAULT_OFFSET, DEFAULT_W0

    if isinstance(upsample, bool) or not isinstance(upsample, int) or upsample < 1:
        raise ValueError(f"upsample must be an int >= 1, got {upsample!r}")
    rows: dict[str, Tensor] = {}
    if originals is not None:
        originals = torch.as_tensor(originals).detach().float().cpu()
        if originals.dim() != 3 or originals.shape[0] == 0:
            raise ValueError(f"originals must be [n, H, W] grey images with n > 0, got {tuple(originals.shape)}")
        rows["original"] = originals
        H, W = originals.shape[1:]
    elif image_shape is not None:
        H, W = (int(s) for s in image_shape)
    else:
        H = W = None
    if isinstance(reconstructions, Tensor):
        n = reconstructions.shape[0]
        rows[f"INR {tuple(reconstructions.shape[1:3])}"] = reconstructions.detach().float().cpu()
        native = reconstructions if H is not None and tuple(reconstructions.shape[1:3]) == (H, W) else None
    else:
        weights, biases = reconstructions
        n = int(weights[0].shape[0])
        if H is None:
            raise ValueError("plot_reconstructions_with_originals: pass originals or image_shape to render INRs")
        w0 = DEFAULT_W0 if w0 is None else float(w0)
        offset = DEFAULT_OFFSET if offset is None else float(offset)
        with torch.no_grad():
            native = render(weights, biases, H, W, w0=w0, offset=offset).float().cpu()
            fine = render(weights, biases, upsample * H, upsample * W, w0=w0, offset=offset).float().cpu()
        if native.dim() != 3:
            raise ValueError(f"plot_reconstructions_with_originals: grey-image INRs only (one output), got renders "
                             f"of shape {tuple(native.shape)}")
        rows[f"INR {H}x{W}"] = native
        if upsample > 1:
            rows[f"INR {upsample * H}x{upsample * W} ({upsample}x)"] = fine
    if originals is not None and originals.shape[0] != n:
        raise ValueError(f"{originals.shape[0]} originals for {n} reconstructions")
    if psnr is None:
        if originals is None or native is None:
            raise ValueError("plot_reconstructions_with_originals: psnr=None needs originals and H x W renders")
        psnr = _psnr(native.clamp(0, 1).reshape(n, -1), originals.reshape(n, -1))
    psnr = torch.as_tensor(psnr).detach().double().reshape(-1).cpu()
    if psnr.shape[0] != n:
        raise ValueError(f"psnr has {psnr.shape[0]} values for {n} reconstructions")
    fig = _figure(1.3 * n + 1.4, 1.45 * len(rows) + (0.5 if title else 0.2))
    axes = _image_rows(fig, rows, n)
    for k in range(n):
        axes[0, k].set_title(f"{float(psnr[k]):.1f} dB", fontsize=8)
    fig.suptitle((f"{title}\n" if title else "") + "originals and their INRs (column title: fit PSNR)", fontsize=9)
    return save_cropped_figure(fig, path)
