"""Optimizee tasks: a small CNN, its data, fresh initialisations, and its loss and gradient for B networks at once.

The optimizee of the neural-graphs paper's learning-to-optimize experiment: a few convolutions
with ReLU, global average pooling and a linear classifier (here
:func:`~neuralgraph.zoo.small_cnn_architecture`: 3x3 kernels, stride 2), trained on batches of
128 images. B networks of one architecture train together, vectorised by the zoo's grouped
forward (:func:`~neuralgraph.zoo.forward_grouped`): one grouped convolution per layer for all.

Tasks (:data:`TASKS`): ``fashion_mnist`` (meta-training and validation task), and the unseen
ones ``mnist`` and ``fashion_mnist_corrupt`` (Fashion-MNIST after
:func:`neuralgraph.data.corrupt.corrupt`: rotation, blur, contrast loss, noise). CIFAR-10, the
paper's unseen task, is not available here. Each task's training images are split into
``train`` (the optimizee's data) and ``val`` (the last ``n_val`` images: choosing Adam's learning
rate); ``test`` is the official test split.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..architecture import Architecture
from ..zoo.specs import INITS, init_params, small_cnn_architecture
from ..zoo.train import check_trainable, evaluate_group, forward_grouped
from .layout import ParamLayout

__all__ = ["TASKS", "TASK_DIRS", "Task", "load_task", "optimizee_cnn", "init_theta", "sample_batch",
           "loss_and_grad", "evaluate_theta"]

#: Task name -> (IDX directory under the data root, corrupted?).
TASK_DIRS = {"fashion_mnist": ("fashion_mnist", False), "mnist": ("mnist", False),
             "fashion_mnist_corrupt": ("fashion_mnist", True)}
TASKS = tuple(TASK_DIRS)


@dataclass
class Task:
    """The images of one task, ``[n, 1, S, S]`` in [0, 1], and labels ``[n]``."""

    name: str
    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    test_x: Tensor
    test_y: Tensor

    @property
    def image_size(self) -> int:
        """``S``, the side of the (square) images."""
        return int(self.train_x.shape[-1])


def optimizee_cnn(channels: int = 16, num_layers: int = 3, in_channels: int = 1, num_classes: int = 10) -> Architecture:
    """The optimizee: ``num_layers`` x (Conv 3x3 stride 2, ReLU), global average pooling, Linear."""
    arch = small_cnn_architecture("relu", in_channels, channels, num_layers, num_classes)
    check_trainable(arch)
    return arch


def load_task(name: str, data_root: str | os.PathLike, image_size: int = 14, n_val: int = 10000,
              n_train: int | None = None, n_test: int | None = None) -> Task:
    """The images of task ``name`` from the IDX files under ``data_root/<dir>`` (see :data:`TASK_DIRS`).

    The last few tasks read are kept in memory (a meta-test reads each task once per optimizer
    group); their tensors must not be changed in place.

    Args:
        name: one of :data:`TASKS`.
        data_root: a directory holding ``fashion_mnist/`` and ``mnist/`` (the IDX files).
        image_size: 28, 14 or 7 (2x2 / 4x4 averaging of the 28x28 images).
        n_val: the last ``n_val`` training images are the validation split.
        n_train, n_test: caps on the images read (tests); ``n_train`` includes the validation images.
    """
    if name not in TASK_DIRS:
        raise ValueError(f"l2o: unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return _load_task(name, str(Path(data_root).resolve()), image_size, n_val, n_train, n_test)


@lru_cache(maxsize=4)
def _load_task(name: str, data_root: str, image_size: int, n_val: int, n_train: int | None,
               n_test: int | None) -> Task:
    sub, corrupted = TASK_DIRS[name]
    root = Path(data_root) / sub
    if not root.is_dir():
        raise FileNotFoundError(f"l2o: task {name!r} needs the IDX files in {root} (--data-root holds "
                                f"{', '.join(sorted({d for d, _ in TASK_DIRS.values()}))}/)")
    if corrupted:
        from ..data.corrupt import load_target_data

        d = load_target_data(sub, root, image_size, n_train, n_test)
        x, y, tx, ty = d["target_train_x"], d["train_y"], d["target_test_x"], d["test_y"]
    else:
        from ..data.images import load_zoo_data

        d = load_zoo_data(sub, root, image_size, n_train, n_test)
        x, y, tx, ty = d["train_x"], d["train_y"], d["test_x"], d["test_y"]
    if isinstance(n_val, bool) or not isinstance(n_val, int) or not 0 < n_val < x.shape[0]:
        raise ValueError(f"l2o: n_val must be an integer in [1, {x.shape[0] - 1}] (training images: {x.shape[0]}), "
                         f"got {n_val!r}")
    k = x.shape[0] - n_val
    return Task(name, x[:k].contiguous(), y[:k].contiguous(), x[k:].contiguous(), y[k:].contiguous(), tx, ty)


def init_theta(layout: ParamLayout, seeds: Sequence[int], init: str = "he_normal") -> Tensor:
    """Fresh flat parameters ``[len(seeds), P]``: network ``i`` from seed ``seeds[i]`` (biases zero).

    ``init`` is one of the zoo's initialisations (:data:`neuralgraph.zoo.specs.INITS`).
    """
    if init not in INITS:
        raise ValueError(f"l2o: unknown initialisation {init!r}; choose one of {', '.join(INITS)}")
    p = init_params(layout.arch, [{"seed": int(s), "init": init, "init_std": 0.05} for s in seeds])
    tensors = []
    for layer, w, b in zip(layout.arch.layers, p["weights"], p["biases"]):
        tensors += [w, b] if layer.bias else [w]
    return layout.flatten(tensors)


def sample_batch(task: Task, generator: torch.Generator, B: int, batch_size: int = 128) -> tuple[Tensor, Tensor]:
    """Random training images for B networks (each its own, with replacement across steps).

    Shapes: ``x [B, batch_size, 1, S, S]``, ``y [B, batch_size]``.
    """
    idx = torch.randint(task.train_x.shape[0], (B, batch_size), generator=generator)
    return task.train_x[idx], task.train_y[idx]


def loss_and_grad(layout: ParamLayout, theta: Tensor, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy of each network on its batch and its gradient, without keeping a graph.

    Shapes: ``theta [B, P]``, ``x [B, n, 1, S, S]``, ``y [B, n]`` -> ``loss [B]``, ``grad [B, P]``.
    """
    with torch.enable_grad():
        leaf = theta.detach().requires_grad_()
        weights, biases = layout.split(leaf)
        logits = forward_grouped(layout.arch, {"weights": weights, "biases": biases}, x)
        loss = F.cross_entropy(logits.transpose(1, 2), y, reduction="none").mean(1)
        (grad,) = torch.autograd.grad(loss.sum(), leaf)
    return loss.detach(), grad


@torch.no_grad()
def evaluate_theta(layout: ParamLayout, theta: Tensor, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy and accuracy ``[B]`` of B networks on shared images ``x [n, 1, S, S]``, ``y [n]``."""
    weights, biases = layout.split(theta)
    return evaluate_group(layout.arch, {"weights": weights, "biases": biases}, x, y)
