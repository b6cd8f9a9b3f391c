"""``regress``: predict a scalar per network; here a CNN's test accuracy from its weights (model zoos).

The neural-graphs paper's generalisation-prediction task: the target is a zoo
network's test accuracy at a checkpoint, the metric Kendall's tau between
prediction and truth on held-out networks. Splits are by network
(:meth:`neuralgraph.zoo.ZooDataset.split`): all checkpoints of a network stay in
one split, so no network's weights reach two splits.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..architecture import Architecture
from ..augment import relative_noise_stacked
from ..datasets import NeuralGraphDataset
from ..symmetry import permute_hidden
from .base import Task

__all__ = ["Regress", "ZooSplitView", "pairwise_ranking_loss"]

#: Regression losses of :class:`Regress`.
LOSSES = ("mse", "rank")


def pairwise_ranking_loss(pred: Tensor, target: Tensor, scale: float = 10.0, chunk: int = 1024) -> Tensor:
    r"""RankNet's pairwise logistic loss: how often, and how badly, predictions order pairs wrongly.

    .. math::
        \frac{1}{|P|} \sum_{(i, j) \in P} \log\big(1 + e^{-s (\hat y_i - \hat y_j)}\big),
        \qquad P = \{(i, j) : y_i > y_j\}

    Pairs with equal targets add nothing. The loss depends on predictions only
    through their differences, so the predictions are scores in arbitrary units
    (their ranking is what Kendall's tau measures). Rows are taken ``chunk`` at a
    time, so a whole split of thousands of networks fits in memory.

    Args:
        pred: predictions ``[n]``.
        target: targets ``[n]``.
        scale: ``s``, the inverse temperature of the logistic.
        chunk: rows of the ``[n, n]`` pair matrix computed at once.

    Returns:
        The mean over ordered pairs, a scalar (``0`` with a gradient when no pair is ordered).
    """
    pred, target = pred.reshape(-1), target.reshape(-1)
    if pred.shape != target.shape:
        raise ValueError(f"pairwise_ranking_loss: pred has {pred.numel()} values but target {target.numel()}")
    total, count = pred.sum() * 0, 0
    for s in range(0, pred.numel(), chunk):
        ordered = target[s:s + chunk, None] > target[None, :]
        diff = pred[s:s + chunk, None] - pred[None, :]
        total = total + F.softplus(-scale * diff[ordered]).sum()
        count += int(ordered.sum())
    return total / max(count, 1)


def _perturb(weights: list, biases: list, noise: float, dropout: float,
             generator: torch.Generator) -> tuple[list, list]:
    """A zoo group's stacked parameters with the regress task's training perturbation."""
    return (relative_noise_stacked(weights, noise, dropout, generator),
            relative_noise_stacked(biases, noise, dropout, generator))


class ZooSplitView(NeuralGraphDataset):
    """One split of a zoo as the trainer reads datasets: ``len``, ``arch``, ``meta`` and ``batch``.

    ``arch`` is the zoo's architecture with the most kernel taps (what the model
    registry sizes position tables and edge channels by); batches of any
    architecture of the zoo are padded to the zoo's taps. Augmentation: hidden
    permutations through ``augment`` (absolute noise and dropout would change the
    network's accuracy, the target, and are refused); ``weight_noise`` /
    ``weight_dropout`` perturb training batches relative to each layer's scale
    (:func:`~neuralgraph.augment.relative_noise_stacked`, the neural-graphs protocol).
    """

    def __init__(self, zoo: Any, ids: Tensor, epoch: int | None, metric: str,
                 epochs: Sequence[int | None] | None = None, weight_noise: float = 0.0,
                 weight_dropout: float = 0.0) -> None:
        self.zoo, self.ids, self.epoch, self.metric = zoo, ids, epoch, metric
        self.weight_noise, self.weight_dropout = weight_noise, weight_dropout
        # samples: every network at every checkpoint of ``epochs`` (default: at ``epoch`` only)
        self.epochs = [epoch] if epochs is None else list(epochs)
        self.sample_net = ids.repeat(len(self.epochs))
        self.sample_ckpt = torch.arange(len(self.epochs)).repeat_interleave(ids.numel())
        self.path, self.meta = zoo.path, {**zoo.meta, "fingerprint": zoo.meta.get("fingerprint")}
        self.arch: Architecture = max(zoo.archs, key=lambda a: (a.edge_dim, a.widths[0], a.widths[-1]))

    def __len__(self) -> int:
        return int(self.sample_net.numel())

    @property
    def targets(self) -> Tensor:
        """The split's targets ``[len(self)]``: the zoo metric of each sample (network, checkpoint)."""
        return torch.cat([self.zoo.targets(e, self.metric)[self.ids] for e in self.epochs])

    def batch(self, indices: Any, augment: Any = None, generator: torch.Generator | None = None) -> Any:
        """A PyG batch of the split's networks ``indices`` with float targets ``y`` ``[len(indices)]``.

        The graphs come grouped by checkpoint, then by architecture
        (:meth:`ZooDataset.batch`), not in the order of ``indices``: match
        outputs to networks through ``batch.net_index`` (zoo ids) and ``batch.y``.

        Args:
            indices: positions in this split (not zoo ids).
            augment: an :class:`~neuralgraph.augment.Augment`; only hidden-neuron permutation is
                allowed (anything else changes the target and raises ``ValueError``).
            generator: random generator of the permutations; with one, a training batch, the
                view's ``weight_noise`` / ``weight_dropout`` apply too.
        """
        from ..batching import concat_batches

        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        ckpt = self.sample_ckpt[idx]
        perturb = generator is not None and (self.weight_noise or self.weight_dropout)
        transform = functools.partial(_perturb, noise=self.weight_noise, dropout=self.weight_dropout,
                                      generator=generator) if perturb else None
        parts = [self.zoo.batch(self.sample_net[idx[ckpt == c]], self.epochs[c], self.metric, transform)
                 for c in ckpt.unique().tolist()]
        b = concat_batches(parts)
        if augment is not None and getattr(augment, "active", False):
            if augment.noise_std or augment.dropout or augment.translate or augment.rotate or augment.scale:
                raise ValueError("regress: only permutation augmentation (--augment permute=true) keeps a network's "
                                 "accuracy; noise, dropout and input transforms change it")
            b, _ = permute_hidden(b, generator=generator)
        b.y = b.y.float()
        return b

    @torch.no_grad()
    def apply(self, fn: Any, batch_size: int = 256,
              device: torch.device | str = "cpu") -> tuple[Tensor, Tensor, Tensor]:
        """``fn(batch)`` for every sample of the split, with the network each output row belongs to.

        Batches come grouped by architecture (:meth:`batch`), so each output row
        is matched to its network through ``batch.net_index``, never by position.
        The next batch is built (and moved to ``device``) while ``fn`` runs
        (:func:`~neuralgraph.train.accel.prefetch`).

        Args:
            fn: maps a batch on ``device`` to one row per graph (e.g. a model's outputs).
            batch_size: samples per batch.
            device: where batches go.

        Shapes: ``(net_index [len(self)], torch.cat of fn's outputs [len(self), ...], target [len(self)])``.
        """
        from ..train.accel import prefetch

        ids, outs, targets = [], [], []
        chunks = [torch.arange(s, min(len(self), s + batch_size)) for s in range(0, len(self), batch_size)]
        for b in prefetch(lambda idx: self.batch(idx).to(device), chunks):
            outs.append(fn(b))
            ids.append(b.net_index.cpu())
            targets.append(b.y.cpu())
        if not outs:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0), torch.zeros(0)
        return torch.cat(ids), torch.cat(outs), torch.cat(targets)

    def predict(self, model: torch.nn.Module, batch_size: int = 256,
                device: torch.device | str | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``model``'s output for every sample of the split, with the network it belongs to (:meth:`apply`).

        The model's train/eval mode is left to the caller.

        Args:
            model: a processor with one output per graph.
            batch_size: samples per forward pass.
            device: where to run (default: the device of the model's parameters).

        Shapes: ``(net_index [len(self)], pred [len(self)], target [len(self)])``, on the CPU.
        """
        device = next(model.parameters()).device if device is None else device
        return self.apply(lambda b: model(b).float().reshape(-1).cpu(), batch_size, device)


class Regress(Task):
    """Regression of a zoo network's metric (default: test accuracy at the last checkpoint).

    Metrics: ``loss`` (the training loss over the whole split) and ``tau``
    (Kendall's tau-b, ``scipy.stats.kendalltau``); model selection by the
    validation tau (ties: lower loss).

    Args:
        epoch: the zoo checkpoint whose weights and target are used (``None``: the last).
        metric: the zoo metric to predict (``test_acc``, ``train_acc``, ``test_loss``, ...).
        val, test: fractions of the valid networks in the validation and test splits.
        split_seed: seed of the split by network.
        train_epochs: more training samples: each training network also at these checkpoints
            (its weights and its metric there), e.g. ``(1, 2)``; validation and test always use
            ``epoch``. The split stays by network, so no network reaches two splits.
        loss: ``"mse"`` or ``"rank"`` (:func:`pairwise_ranking_loss`).
        rank_scale: the ranking loss's logit scale.
        weight_noise, weight_dropout: training inputs only, relative to each network's
            layer scale (:func:`~neuralgraph.augment.relative_noise_stacked`; the neural-graphs
            protocol uses 0.1 and 0.01); targets are kept. Off by default.
    """

    name = "regress"
    description = "predict each network's test accuracy from its weights (model zoos; MSE, Kendall's tau)"
    head = "invariant"
    metrics = ("loss", "tau")

    def __init__(self, epoch: int | None = None, metric: str = "test_acc", val: float = 0.15, test: float = 0.15,
                 split_seed: int = 0, train_epochs: tuple[int, ...] | None = None, loss: str = "mse",
                 rank_scale: float = 10.0, weight_noise: float = 0.0, weight_dropout: float = 0.0) -> None:
        for name, f in (("val", val), ("test", test)):
            if not 0 < f < 1:
                raise ValueError(f"regress: {name} must be a fraction in (0, 1), got {f!r}")
        if loss not in LOSSES:
            raise ValueError(f"regress: unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
        if not rank_scale > 0:
            raise ValueError(f"regress: rank_scale must be > 0, got {rank_scale!r}")
        if not (weight_noise >= 0 and 0 <= weight_dropout < 1):
            raise ValueError(f"regress: need weight_noise >= 0 and 0 <= weight_dropout < 1, got {weight_noise!r} "
                             f"and {weight_dropout!r}")
        self.weight_noise, self.weight_dropout = float(weight_noise), float(weight_dropout)
        self.epoch, self.metric, self.val, self.test, self.split_seed = epoch, metric, val, test, split_seed
        self.loss_name, self.rank_scale = loss, float(rank_scale)
        self.train_epochs = None if train_epochs is None else tuple(int(e) for e in train_epochs)

    def load_splits(self, data: str | os.PathLike, normalize: bool) -> dict[str, Any]:
        """Split a zoo file (or a folder holding exactly one) by network into :class:`ZooSplitView` s.

        ``normalize`` must be ``False``: zoos of mixed architectures are not standardised.
        """
        from ..zoo import ZooDataset
        from ..zoo.files import resolve_zoo_file

        if normalize:
            raise ValueError("regress: zoo networks of mixed architectures are not standardised per layer; train "
                             "with --no-normalize (TrainConfig(normalize=False))")
        path = resolve_zoo_file(data, "regress", "`neuralgraph zoo generate`")
        zoo = ZooDataset(path)
        zoo.targets(self.epoch, self.metric)                     # checks epoch and metric
        extra = [e for e in (self.train_epochs or ()) if e != zoo.epochs[zoo.checkpoint(self.epoch)]]
        for e in extra:
            zoo.checkpoint(e)                                     # every extra checkpoint exists
        split = zoo.split(self.val, self.test, self.split_seed)
        return {"train": ZooSplitView(zoo, split.train, self.epoch, self.metric, [self.epoch, *extra],
                                      self.weight_noise, self.weight_dropout),
                "val": ZooSplitView(zoo, split.val, self.epoch, self.metric),
                "test": ZooSplitView(zoo, split.test, self.epoch, self.metric)}

    def setup(self, splits: dict[str, Any]) -> None:
        """Check that every split holds at least two networks (Kendall's tau needs pairs)."""
        for name, view in splits.items():
            if len(view) < 2:
                raise ValueError(f"regress: the {name} split holds {len(view)} networks; Kendall's tau needs >= 2")

    def out_dim(self) -> int:
        """One scalar per network."""
        return 1

    def _loss(self, pred: Tensor, target: Tensor) -> Tensor:
        if self.loss_name == "rank":
            return pairwise_ranking_loss(pred, target, self.rank_scale)
        return F.mse_loss(pred, target)

    def loss(self, output: Tensor, batch: Any) -> Tensor:
        """MSE or ranking loss of ``output`` ``[num_graphs, 1]`` against ``batch.y`` ``[num_graphs]``."""
        return self._loss(output.float().squeeze(-1), batch.y.float())

    def collect(self, output: Tensor, batch: Any) -> dict[str, Tensor]:
        """Per network: ``pred`` and ``target`` (the ranking metric needs the raw pairs, not sums)."""
        return {"pred": output.detach().float().squeeze(-1), "target": batch.y.detach().float()}

    def summarize(self, values: dict[str, Tensor]) -> dict[str, float]:
        """``loss``: the training loss over the whole split; ``tau``: Kendall's tau-b of predictions against targets."""
        from ..zoo import kendall_tau

        pred, target = values["pred"], values["target"]
        return {"loss": float(self._loss(pred.double(), target.double())), "tau": kendall_tau(pred, target)}

    def score(self, metrics: dict[str, float]) -> tuple[float, ...]:
        """Higher validation Kendall's tau first, then lower loss."""
        return (metrics["tau"], -metrics["loss"])

    def describe(self, metrics: dict[str, float]) -> str:
        return f"{self.loss_name} {metrics['loss']:.4e} tau {metrics['tau']:.3f}"

    def options(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "metric": self.metric, "val": self.val, "test": self.test,
                "split_seed": self.split_seed, "train_epochs": self.train_epochs, "loss": self.loss_name,
                "rank_scale": self.rank_scale}

    @torch.no_grad()
    def draw(self, model, splits, run_dir: Path, device, batch_size: int, n: int, title: str) -> list[Path]:
        """``predictions.png``: predicted vs true metric of the test networks."""
        from ..train.plots import plot_scatter

        was_training = model.training
        model.eval()
        _, preds, targets = splits["test"].predict(model, batch_size, device)
        model.train(was_training)
        ylabel = f"predicted {self.metric}" if self.loss_name == "mse" else "predicted score (ranking loss)"
        return [plot_scatter(targets, preds, run_dir / "predictions.png",
                             xlabel=f"true {self.metric}", ylabel=ylabel, title=title)]
