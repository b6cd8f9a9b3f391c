"""``adapt``: zero-shot domain adaptation of classifiers by editing their weights (DWSNets' third experiment).

Input: a classifier of a model zoo (``neuralgraph zoo generate --family mlp``)
trained on the source domain (MNIST / Fashion-MNIST / digits images). Output, in
one forward pass of an equivariant processor (``head="equivariant"``): new
weights that classify the *target* domain, the same images after the fixed,
seeded corruption of :mod:`neuralgraph.data.corrupt` (rotation, blur, contrast
loss, noise). The loss is the cross-entropy of the edited classifiers on
target-domain training images, for the whole batch of classifiers at once
(:func:`neuralgraph.batch_to_stacked`, then one
:func:`neuralgraph.zoo.forward_grouped` per architecture of the batch, e.g. ReLU and
tanh MLPs; no loop per network) and differentiable through the edited weights.

Splits: by classifier (:meth:`neuralgraph.zoo.ZooDataset.split`; only valid
networks with source test accuracy >= ``min_acc``) and by image: the adapter
trains on the corrupted first ``n_images`` images of the official training split
(a random ``images_per_step`` of them per step, shared by the batch), selects
epochs on the next ``n_val_images`` and is measured on the corrupted first
``n_test_images`` images of the official test split, which no training step
sees. Metrics per split: ``loss`` (target cross-entropy of the adapted
classifiers), ``acc`` (their target accuracy) and ``unadapted`` (the target
accuracy of the input classifiers: the no-adaptation baseline).

Deviations from DWSNets (CIFAR10 -> corrupted CIFAR10 classifiers): MNIST-family
images averaged to 14x14 and one-hidden-layer MLPs (CPU budget), the corruption
of :mod:`neuralgraph.data.corrupt` instead of CIFAR10-C's, no standardisation of
the weights (zoos of mixed activations; train with ``--no-normalize``).

:func:`finetune_stacked` is the upper reference: each classifier fine-tuned on
the same target images with Adam, vectorised over networks.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..architecture import Architecture
from ..graph import batch_to_stacked, graph_archs, group_architectures
from .base import Task
from .regress import ZooSplitView

__all__ = ["Adapt", "AdaptSplitView", "grouped_logits", "finetune_stacked"]


def grouped_logits(archs: Sequence[Architecture], weights: Sequence[Tensor], biases: Sequence[Tensor | None],
                   x: Tensor) -> Tensor:
    """Logits of B classifiers of one set of parameter shapes (activations may differ) on shared images.

    One :func:`~neuralgraph.zoo.forward_grouped` per distinct architecture (e.g. ReLU / tanh),
    none per network; differentiable w.r.t. ``weights`` / ``biases``.

    Shapes: ``weights[m] [B, ...]``, ``biases[m] [B, out_m]``, ``x [n, C, H, W]`` -> ``[B, n, classes]``.
    """
    from ..zoo import forward_grouped

    B = weights[0].shape[0]
    if len(archs) != B:
        raise ValueError(f"grouped_logits: {len(archs)} architectures for {B} networks")
    parts, order = [], []
    for a, rows in group_architectures(archs, by="architecture"):
        if a.has_norm:
            raise ValueError("grouped_logits: classifiers with normalisation layers are not supported")
        r = torch.tensor(rows, device=weights[0].device)
        params = {"weights": [w.index_select(0, r) for w in weights],
                  "biases": [None if b is None else b.index_select(0, r) for b in biases]}
        parts.append(forward_grouped(a, params, x))
        order.append(r)
    out = torch.cat(parts, 0)
    if len(parts) == 1:
        return out
    inverse = torch.empty(B, dtype=torch.long, device=out.device)
    inverse[torch.cat(order)] = torch.arange(B, device=out.device)
    return out.index_select(0, inverse)


def finetune_stacked(archs: Sequence[Architecture], weights: Sequence[Tensor], biases: Sequence[Tensor | None],
                     x: Tensor, y: Tensor, *, steps: int = 200, lr: float = 1e-3, batch_images: int = 128,
                     seed: int = 0) -> tuple[list[Tensor], list[Tensor | None]]:
    """Fine-tune B classifiers on ``(x, y)`` together: Adam on the stacked parameters, vectorised over networks.

    The loss is the sum over networks of each one's mean cross-entropy on a shared random
    minibatch, so every network gets exactly its own gradient, and Adam is elementwise:
    the result equals fine-tuning each network alone with the same minibatches.

    Shapes: as :func:`grouped_logits`; returns detached ``(weights, biases)`` of the same shapes.
    """
    for name, v in (("steps", steps), ("batch_images", batch_images)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"finetune_stacked: {name} must be an integer >= 1, got {v!r}")
    if not lr > 0:
        raise ValueError(f"finetune_stacked: lr must be > 0, got {lr!r}")
    w = [t.detach().clone().requires_grad_() for t in weights]
    b = [None if t is None else t.detach().clone().requires_grad_() for t in biases]
    opt = torch.optim.Adam([t for t in (*w, *b) if t is not None], lr=lr)
    gen = torch.Generator().manual_seed(int(seed))
    for _ in range(steps):
        idx = torch.randint(x.shape[0], (min(batch_images, x.shape[0]),), generator=gen).to(x.device)
        logits = grouped_logits(archs, w, b, x[idx])
        loss = F.cross_entropy(logits.transpose(1, 2), y[idx].expand(logits.shape[0], -1),
                               reduction="none").mean(1).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return [t.detach() for t in w], [None if t is None else t.detach() for t in b]


class AdaptSplitView(ZooSplitView):
    """One split of the zoo (by network) with its name, so the task knows which images score it."""

    def __init__(self, zoo: Any, ids: Tensor, name: str) -> None:
        super().__init__(zoo, ids, None, "test_acc")
        self.name = name


class Adapt(Task):
    """Edit source-domain classifiers into target-domain ones (equivariant head; target cross-entropy).

    Args:
        root: directory of the zoo data set's IDX files (not needed for ``digits``).
        n_images: target training images (the adapter's whole training set of images).
        n_val_images: further target training-split images for model selection.
        n_test_images: target test images (official test split; never used in training).
        images_per_step: images drawn (with replacement) from the ``n_images`` per training step.
        min_acc: keep classifiers whose source test accuracy is at least this.
        val, test: fractions of the kept classifiers in the validation and test splits.
        split_seed: seed of the split by classifier. seed: seed of the corruption noise.
        rotate, blur, contrast, noise: the corruption (:func:`neuralgraph.data.corrupt.corrupt`).
        delta_scale: step size of the edit: the adapted classifier is ``input + delta_scale * (output - input)``
            for the processor's edited graph ``output`` (see :meth:`adapted`).
    """

    name = "adapt"
    description = "adapt zoo classifiers to a corrupted target domain by editing their weights (equivariant head)"
    head = "equivariant"
    metrics = ("loss", "acc", "unadapted")

    def __init__(self, root: str | None = None, n_images: int = 2000, n_val_images: int = 1000,
                 n_test_images: int = 2000, images_per_step: int = 256, min_acc: float = 0.5, val: float = 0.15,
                 test: float = 0.15, split_seed: int = 0, seed: int = 0, rotate: float = 20.0, blur: float = 1.0,
                 contrast: float = 0.9, noise: float = 0.2, delta_scale: float = 0.05) -> None:
        for name, v in (("n_images", n_images), ("n_val_images", n_val_images), ("n_test_images", n_test_images),
                        ("images_per_step", images_per_step)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"adapt: {name} must be an integer >= 1, got {v!r}")
        for name, f in (("val", val), ("test", test)):
            if not 0 < f < 1:
                raise ValueError(f"adapt: {name} must be a fraction in (0, 1), got {f!r}")
        if isinstance(delta_scale, bool) or not isinstance(delta_scale, (int, float)) or not delta_scale > 0:
            raise ValueError(f"adapt: delta_scale must be a number > 0, got {delta_scale!r}")
        if not 0 <= min_acc < 1:
            raise ValueError(f"adapt: min_acc must be in [0, 1), got {min_acc!r}")
        from ..data.corrupt import _check

        _check(torch.zeros(1, 1, 2, 2), rotate, blur, contrast, noise, seed)
        self.root, self.n_images, self.n_val_images, self.n_test_images = root, n_images, n_val_images, n_test_images
        self.images_per_step, self.min_acc, self.val, self.test = images_per_step, float(min_acc), val, test
        self.split_seed, self.seed, self.delta_scale = split_seed, seed, float(delta_scale)
        self.corruption = {"rotate": float(rotate), "blur": float(blur), "contrast": float(contrast),
                           "noise": float(noise)}
        self.images: dict[str, tuple[Tensor, Tensor]] = {}
        self.source_images: dict[str, Tensor] = {}

    # ------------------------------------------------------------------ data
    def load_splits(self, data: str | os.PathLike, normalize: bool) -> dict[str, Any]:
        from ..data.corrupt import load_target_data
        from ..zoo import ZooDataset
        from ..zoo.files import resolve_zoo_file

        if normalize:
            raise ValueError("adapt: the adapter edits raw weights (zoos of mixed activations are not standardised); "
                             "train with --no-normalize (TrainConfig(normalize=False))")
        path = resolve_zoo_file(data, "adapt", "`neuralgraph zoo generate --family mlp`")
        zoo = ZooDataset(path)
        if any(a.has_norm for a in zoo.archs):
            raise ValueError(f"adapt: {path} holds networks with normalisation layers; use an MLP or plain CNN zoo")
        meta = zoo.meta
        dataset, size = meta.get("dataset"), meta.get("image_size")
        if dataset is None or size is None:
            raise ValueError(f"adapt: {path} does not record its data set and image size (meta 'dataset', "
                             f"'image_size'); regenerate it with `neuralgraph zoo generate`")
        if dataset != "digits" and self.root is None:
            raise ValueError(f"adapt: the zoo {path} was trained on {dataset}; pass the directory of its IDX files "
                             f"with --task-arg root=DIR")
        d = load_target_data(dataset, self.root, int(size), n_train=self.n_images + self.n_val_images,
                             n_test=self.n_test_images, seed=self.seed, **self.corruption)
        n_tr = d["train_x"].shape[0]
        if n_tr < self.n_images + self.n_val_images or d["test_x"].shape[0] < self.n_test_images:
            raise ValueError(f"adapt: {dataset} has {n_tr} training and {d['test_x'].shape[0]} test images, fewer "
                             f"than n_images + n_val_images = {self.n_images + self.n_val_images} and "
                             f"n_test_images = {self.n_test_images}")
        a, v = self.n_images, self.n_images + self.n_val_images
        self.images = {"train": (d["target_train_x"][:a], d["train_y"][:a]),
                       "val": (d["target_train_x"][a:v], d["train_y"][a:v]),
                       "test": (d["target_test_x"], d["test_y"])}
        self.source_images = {"train": d["train_x"][:a], "val": d["train_x"][a:v], "test": d["test_x"]}
        zoo.valid = zoo.valid & (zoo.targets() >= self.min_acc)
        if int(zoo.valid.sum()) < 3:
            raise ValueError(f"adapt: {path} has {int(zoo.valid.sum())} valid classifiers with source test accuracy "
                             f">= min_acc={self.min_acc}; lower --task-arg min_acc or train a better zoo")
        split = zoo.split(self.val, self.test, self.split_seed)
        return {name: AdaptSplitView(zoo, ids, name)
                for name, ids in (("train", split.train), ("val", split.val), ("test", split.test))}

    def setup(self, splits: dict[str, Any]) -> None:
        for name, view in splits.items():
            if len(view) < 1:
                raise ValueError(f"adapt: the {name} split holds no classifiers; use a larger zoo")

    def train_batch(self, dataset: Any, indices: Tensor, augment: Any, generator: torch.Generator) -> Any:
        b = dataset.batch(indices, augment=augment, generator=generator)
        b.image_split = "train"
        b.image_idx = torch.randint(self.n_images, (self.images_per_step,), generator=generator)
        return b

    def eval_batch(self, dataset: Any, indices: Tensor) -> Any:
        b = dataset.batch(indices)
        b.image_split = dataset.name
        return b

    def _images(self, batch: Any) -> tuple[Tensor, Tensor]:
        x, y = self.images[batch.image_split]
        if "image_idx" in batch and batch.image_idx is not None and batch.image_split == "train":
            idx = batch.image_idx.cpu()
            x, y = x[idx], y[idx]
        dev = batch.x.device
        return x.to(dev, batch.x.dtype if batch.x.is_floating_point() else torch.float32), y.to(dev)

    # ------------------------------------------------------------------ loss and metrics
    @staticmethod
    def logits(graph: Any, x: Tensor) -> Tensor:
        """``[num_graphs, n, classes]`` logits of a batch of classifier graphs on images ``x [n, C, H, W]``."""
        weights, biases = batch_to_stacked(graph)
        return grouped_logits(graph_archs(graph, "adapt"), weights, biases, x.to(weights[0].dtype))

    def adapted(self, output: Any, batch: Any) -> Any:
        """The adapted classifiers of a batch: ``input + delta_scale * (output - input)`` (biases ``x`` and weights
        ``edge_attr``), a shallow copy of ``output`` that :func:`neuralgraph.to_models` rebuilds.

        The processors' residual heads start from ``input + delta`` with a random ``delta`` of the size of
        their features (~0.1-1), far larger than the zoo's weights (~0.01-0.1), which would wreck every
        classifier at initialisation; the step size keeps the first edits small. A linear combination of
        two equivariant maps, so the adapter stays equivariant.
        """
        if self.delta_scale == 1.0:
            return output
        out = copy.copy(output)
        s = self.delta_scale
        out.x = batch.x.to(output.x.dtype) + s * (output.x - batch.x.to(output.x.dtype))
        out.edge_attr = batch.edge_attr.to(output.edge_attr.dtype) + s * (
            output.edge_attr - batch.edge_attr.to(output.edge_attr.dtype))
        return out

    def loss_and_values(self, output: Any, batch: Any) -> tuple[Tensor, dict[str, Tensor]]:
        """Target cross-entropy of the adapted classifiers (mean over images and networks) and per-network values."""
        x, y = self._images(batch)
        logits = self.logits(self.adapted(output, batch), x).float()
        yy = y.expand(logits.shape[0], -1)
        per_net = F.cross_entropy(logits.transpose(1, 2), yy, reduction="none").mean(1)
        with torch.no_grad():
            before = self.logits(batch, x).float()
            values = {"loss": per_net.detach(), "acc": (logits.argmax(-1) == yy).float().mean(1),
                      "unadapted": (before.argmax(-1) == yy).float().mean(1)}
        return per_net.mean(), values

    def summarize(self, values: dict[str, Tensor]) -> dict[str, float]:
        return {k: float(values[k].double().mean()) for k in self.metrics}

    def score(self, metrics: dict[str, float]) -> tuple[float, ...]:
        return (metrics["acc"], -metrics["loss"])

    def describe(self, metrics: dict[str, float]) -> str:
        return (f"ce {metrics['loss']:.4f} target acc {metrics['acc']:.2%} "
                f"(unadapted {metrics['unadapted']:.2%})")

    def options(self) -> dict[str, Any]:
        return {"root": self.root, "n_images": self.n_images, "n_val_images": self.n_val_images,
                "n_test_images": self.n_test_images, "images_per_step": self.images_per_step,
                "min_acc": self.min_acc, "val": self.val, "test": self.test, "split_seed": self.split_seed,
                "seed": self.seed, "delta_scale": self.delta_scale, **self.corruption}

    # ------------------------------------------------------------------ pictures
    @torch.no_grad()
    def per_network(self, model: nn.Module, view: Any, device: torch.device, batch_size: int) -> dict[str, Tensor]:
        """Per classifier of ``view``: ``unadapted`` and ``acc`` (adapted) target accuracy on its split's images."""
        was_training = model.training
        model.eval()
        vals = []
        for s in range(0, len(view), batch_size):
            b = self.eval_batch(view, torch.arange(s, min(len(view), s + batch_size))).to(device)
            vals.append(self.collect(model(b), b))
        model.train(was_training)
        return {k: torch.cat([v[k].cpu() for v in vals]) for k in vals[0]}

    def draw(self, model: nn.Module, splits: dict[str, Any], run_dir: Path, device: torch.device,
             batch_size: int, n: int, title: str) -> list[Path]:
        """``adapt_examples.png`` (source vs target test images) and ``adapt_scatter.png`` (target test accuracy
        of every held-out classifier before vs after adaptation)."""
        from ..train.plots import plot_image_rows, plot_scatter

        k = min(10, self.images["test"][0].shape[0])
        files = [plot_image_rows({"source": self.source_images["test"][:k, 0],
                                  "target": self.images["test"][0][:k, 0]}, run_dir / "adapt_examples.png",
                                 title="source vs target (corrupted) test images")]
        vals = self.per_network(model, splits["test"], device, batch_size)
        files.append(plot_scatter(vals["unadapted"], vals["acc"], run_dir / "adapt_scatter.png",
                                  xlabel="target test accuracy, no adaptation",
                                  ylabel="target test accuracy, adapted", title=title))
        return files
