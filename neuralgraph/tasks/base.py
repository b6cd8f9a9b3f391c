"""The task interface: what a training run optimises and how it is measured.

The trainer (:func:`neuralgraph.train.train`) is one loop for every task; a
:class:`Task` plugs in what differs:

* the data (:meth:`Task.load_splits`: INR datasets, model zoos, ...), what the
  task reads from them (:meth:`Task.setup`: classes, targets, image shape, ...) and
  how a batch is drawn (:meth:`Task.train_batch` / :meth:`Task.eval_batch`, e.g. two
  augmented views per network for contrastive learning);
* the head the processor needs (:attr:`Task.head`) and its output size
  (:meth:`Task.out_dim`);
* the training loss of a batch (:meth:`Task.loss`);
* per-network values of a batch (:meth:`Task.collect`), concatenated over a whole
  split and turned into metrics (:meth:`Task.summarize`); the first metric of
  :attr:`Task.metrics` is ``loss``, and :meth:`Task.score` ranks epochs for model
  selection on the validation split;
* extra evaluation of the selected model (:meth:`Task.finish`) and pictures
  (:meth:`Task.draw`).

Per-network values (not running sums) make every metric exact, also the ones that
are not averages (Kendall's tau), and under data parallelism they are gathered
from all ranks before summarizing.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

__all__ = ["Task"]


class Task:
    """Base class of the trainer's tasks (see the module docstring).

    Args:
        **options: task options (``TrainConfig.task_kwargs``, ``--task-arg KEY=VALUE``),
            checked by the subclass's constructor signature.
    """

    #: Name used by ``--task`` and stored in checkpoints.
    name: ClassVar[str] = ""
    #: One-line description for ``neuralgraph train --help``.
    description: ClassVar[str] = ""
    #: The processor head the task needs: ``"invariant"`` (a vector per network) or
    #: ``"equivariant"`` (an edited network).
    head: ClassVar[str] = "invariant"
    #: Metric names of a split, ``loss`` first; metrics.csv has ``train_<m>`` and ``val_<m>`` for each.
    metrics: ClassVar[tuple[str, ...]] = ("loss",)

    def load_splits(self, data: str | os.PathLike, normalize: bool) -> dict[str, Any]:
        """``{"train", "val", "test"}`` datasets, each a :class:`~neuralgraph.datasets.NeuralGraphDataset`
        (``len()``, ``arch``, ``meta`` and ``batch(indices, augment=, generator=)`` giving a PyG batch)."""
        from ..inr.splits import load_splits

        return load_splits(data, normalize=normalize)

    def setup(self, splits: dict[str, Any]) -> None:
        """Read what the task needs from the data (checked here, before any training)."""

    def setup_inference(self, dataset: Any, inference: dict[str, Any]) -> None:
        """:meth:`setup` for evaluating a trained run on ``dataset`` (``neuralgraph evaluate``).

        Args:
            dataset: the data to evaluate, as :func:`neuralgraph.inference.open_data` opened it.
            inference: the checkpoint's ``inference`` entry (the *training* split's statistics and
                fit settings, see :func:`neuralgraph.train.checkpoint.inference_state`; ``{}`` for
                old checkpoints).

        Default: nothing to read (the checkpoint's options suffice, e.g. ``classify``).
        """

    def train_batch(self, dataset: Any, indices: Tensor, augment: Any, generator: torch.Generator) -> Any:
        """The training batch of ``dataset[indices]`` (default: ``dataset.batch`` with the run's augmentation)."""
        return dataset.batch(indices, augment=augment, generator=generator)

    def eval_batch(self, dataset: Any, indices: Tensor) -> Any:
        """The evaluation batch of ``dataset[indices]`` (default: ``dataset.batch``; must be deterministic)."""
        return dataset.batch(indices)

    def out_dim(self) -> int | None:
        """Output size of an invariant head (``None`` for equivariant heads)."""
        return None

    def loss(self, output: Any, batch: Any) -> Tensor:
        """Scalar training loss of one batch (mean over its networks).

        A task that overrides :meth:`loss_and_values` instead gets it from there."""
        if self._shares_loss_and_values():
            return self.loss_and_values(output, batch)[0]
        raise NotImplementedError

    def collect(self, output: Any, batch: Any) -> dict[str, Tensor]:
        """Per-network values ``{name: [num_graphs, ...]}`` (detached) that :meth:`summarize` reads.

        A task that overrides :meth:`loss_and_values` instead gets them from there."""
        if self._shares_loss_and_values():
            with torch.no_grad():
                return self.loss_and_values(output, batch)[1]
        raise NotImplementedError

    def loss_and_values(self, output: Any, batch: Any) -> tuple[Tensor, dict[str, Tensor]]:
        """:meth:`loss` and :meth:`collect` of one training batch; a task whose two share costly work
        (e.g. rendering) overrides this to do it once (and then need not define the two)."""
        return self.loss(output, batch), self.collect(output, batch)

    def _shares_loss_and_values(self) -> bool:
        return type(self).loss_and_values is not Task.loss_and_values

    def summarize(self, values: dict[str, Tensor]) -> dict[str, float]:
        """Metrics ``{m: value for m in metrics}`` of a whole split from its collected values."""
        raise NotImplementedError

    def score(self, metrics: dict[str, float]) -> tuple[float, ...]:
        """Model-selection key of validation metrics: larger is better (default: lower loss)."""
        return (-metrics["loss"],)

    def selection_key(self, metrics: dict[str, float]) -> tuple[float, ...]:
        """:meth:`score` with every NaN entry ranked worst (``-inf``); the trainer compares these.

        A NaN (e.g. Kendall's tau of a constant prediction) compares false with
        everything, so without this an epoch that scored NaN first would stay
        selected for the rest of the run.
        """
        return tuple(-math.inf if math.isnan(v) else v for v in self.score(metrics))

    def finish(self, model: nn.Module, splits: dict[str, Any], device: torch.device, batch_size: int
               ) -> dict[str, float]:
        """Extra test metrics of the selected model (e.g. a linear probe on embeddings)."""
        return {}

    def draw(self, model: nn.Module, splits: dict[str, Any], run_dir: Path, device: torch.device,
             batch_size: int, n: int, title: str) -> list[Path]:
        """Pictures of the selected model's test behaviour; returns the files written."""
        return []

    def describe(self, metrics: dict[str, float]) -> str:
        """One line for the log, e.g. ``loss 0.31 acc 91.2%``."""
        return "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())

    def options(self) -> dict[str, Any]:
        """The task's options (stored with the run)."""
        return {}
