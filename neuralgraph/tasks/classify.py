"""``classify``: predict a class per network (INR classification, the default task)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Task

__all__ = ["Classify"]


class Classify(Task):
    """Cross-entropy on an invariant head; metrics: mean cross-entropy and accuracy.

    Model selection: the highest validation accuracy, ties broken by the lower
    validation loss. The number of classes is the dataset's (stored in its files);
    val/test labels that the training split never shows are refused.

    Args:
        label_smoothing: cross-entropy label smoothing of the training loss, in ``[0, 1)``.
    """

    name = "classify"
    description = "predict each network's class (cross-entropy; accuracy)"
    head = "invariant"
    metrics = ("loss", "acc")

    def __init__(self, label_smoothing: float = 0.0) -> None:
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"classify: label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)
        self.num_classes = 0

    def setup(self, splits: dict[str, Any]) -> None:
        """Set :attr:`num_classes` from the splits' datasets; refuses val/test labels absent from train."""
        seen = set(splits["train"].labels.unique().tolist())
        for s in ("val", "test"):
            unseen = sorted(set(splits[s].labels.unique().tolist()) - seen)
            if unseen:
                raise ValueError(f"{splits[s].path} holds label(s) {unseen[:10]} that train.pt lacks: the classifier "
                                 f"could never predict them; fit splits whose train.pt holds every class")
        self.num_classes = max(d.num_classes for d in splits.values())

    def out_dim(self) -> int:
        """One logit per class: :attr:`num_classes`."""
        return self.num_classes

    def loss(self, output: Tensor, batch: Any) -> Tensor:
        """Mean cross-entropy (with the task's label smoothing) of logits ``output`` ``[num_graphs, num_classes]``
        against ``batch.y``."""
        return F.cross_entropy(output.float(), batch.y, label_smoothing=self.label_smoothing)

    def collect(self, output: Tensor, batch: Any) -> dict[str, Tensor]:
        """Per network: ``loss`` (cross-entropy without smoothing) and ``correct`` (argmax equals the label)."""
        logits = output.detach().float()
        return {"loss": F.cross_entropy(logits, batch.y, reduction="none"), "correct": logits.argmax(1) == batch.y}

    def summarize(self, values: dict[str, Tensor]) -> dict[str, float]:
        return {"loss": float(values["loss"].double().mean()), "acc": float(values["correct"].double().mean())}

    def score(self, metrics: dict[str, float]) -> tuple[float, ...]:
        """Higher validation accuracy first, then lower loss."""
        return (metrics["acc"], -metrics["loss"])

    def describe(self, metrics: dict[str, float]) -> str:
        return f"loss {metrics['loss']:.4f} acc {metrics['acc']:.2%}"

    def options(self) -> dict[str, Any]:
        return {"label_smoothing": self.label_smoothing}

    @torch.no_grad()
    def predict(self, model: nn.Module, dataset: Any, indices: Tensor, device: torch.device, batch_size: int
                ) -> Tensor:
        """Predicted labels of ``dataset[indices]``."""
        was_training = model.training
        model.eval()
        out = [model(dataset.batch(indices[s:s + batch_size]).to(device)).argmax(1).cpu()
               for s in range(0, len(indices), batch_size)]
        model.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)

    def draw(self, model: nn.Module, splits: dict[str, Any], run_dir: Path, device: torch.device,
             batch_size: int, n: int, title: str) -> list[Path]:
        """``confusion.png`` of the whole test split, and ``reconstructions.png``: the first test INRs
        rendered, titled with predicted / true label."""
        from ..inr import render
        from ..inr.coords import row_col_params
        from ..train.plots import plot_confusion_matrix, plot_reconstructions

        dataset = splits["test"]
        every = torch.arange(len(dataset))
        paths = [plot_confusion_matrix(self.predict(model, dataset, every, device, batch_size), dataset.labels[every],
                                       run_dir / "confusion.png", self.num_classes,
                                       title=f"{title}: test confusion")] if len(dataset) else []
        fit = dataset.meta.get("fit", {}) if hasattr(dataset, "meta") else {}
        shape = fit.get("image_shape")
        n = min(n, len(dataset))
        if n == 0 or not shape or len(shape) < 2:
            return paths                       # not image INRs: no reconstructions
        idx = torch.arange(n)
        weights, biases = row_col_params(dataset.arch, *dataset.params(idx))   # render() reads (row, col)
        images = render(weights, biases, int(shape[0]), int(shape[1]), w0=float(fit.get("w0", 30.0)),
                        offset=float(fit.get("offset", 0.5)))
        pred = self.predict(model, dataset, idx, device, batch_size)
        return paths + [plot_reconstructions(images, pred, dataset.labels[idx], run_dir / "reconstructions.png",
                                             title=f"{title}: test INRs decoded, predicted / true label")]
