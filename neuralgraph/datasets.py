"""The dataset contract: what the trainer, the tasks and inference read from one split of networks.

:class:`NeuralGraphDataset` is the base class of every split the library trains on: an INR split
file (:class:`~neuralgraph.inr.INRDataset`), a split of a model zoo by network
(:class:`~neuralgraph.tasks.regress.ZooSplitView`) and the adaptation task's split
(:class:`~neuralgraph.tasks.adapt.AdaptSplitView`). :func:`as_index` reads the indices every
``batch`` takes.
"""
from __future__ import annotations

import abc
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Batch

from .architecture import Architecture

__all__ = ["NeuralGraphDataset", "as_index"]


def as_index(indices: Any, n: int) -> Tensor:
    """Positions ``[k]`` int64 in ``[0, n)`` selected by ``indices``.

    Accepted: an int, a slice, a 1-D sequence / numpy array / tensor of
    integers (negative ones count from the end), or a 1-D boolean mask of
    length ``n``. Anything else (floats, 2-D indices, a mask of another
    length) raises ``ValueError``; an integer out of range ``IndexError``.
    """
    if isinstance(indices, slice):
        return torch.arange(n)[indices]
    if isinstance(indices, (bool, np.bool_)):
        raise ValueError(f"a single bool is not an index; pass a boolean mask of length {n} or integer indices")
    if isinstance(indices, Tensor):
        idx = indices.cpu()
    else:
        try:
            arr = np.asarray(indices)
        except (TypeError, ValueError) as e:                      # ragged lists and the like
            raise ValueError(f"indices must be integers, a slice or a boolean mask, got {type(indices).__name__} "
                             f"({e})") from None
        if arr.size == 0:
            arr = arr.astype(np.int64)                            # [] is float64 for numpy
        if arr.dtype.kind not in "biu":
            raise ValueError(f"indices must be integers or a boolean mask, got {type(indices).__name__} of "
                             f"dtype {arr.dtype}")
        idx = torch.from_numpy(arr.astype(np.int64) if arr.dtype.kind in "iu" else arr)
    if idx.dtype == torch.bool:
        if idx.dim() != 1 or idx.shape[0] != n:
            raise ValueError(f"a boolean mask must have shape ({n},) for a dataset of {n} INRs, "
                             f"got {tuple(idx.shape)}")
        return idx.nonzero().reshape(-1)
    if idx.dtype.is_floating_point or idx.dtype.is_complex:
        raise ValueError(f"indices must be integers or a boolean mask, got dtype {idx.dtype}")
    if idx.dim() > 1:
        raise ValueError(f"indices must be 1-D (or a single int), got shape {tuple(idx.shape)}")
    idx = idx.reshape(-1).long()
    if idx.numel() and (idx.min() < -n or idx.max() >= n):
        bad = idx[(idx < -n) | (idx >= n)][0]
        raise IndexError(f"index {int(bad)} out of range for a dataset of {n} INRs")
    return torch.where(idx < 0, idx + n, idx)


class NeuralGraphDataset(torch.utils.data.Dataset, abc.ABC):
    """A split of networks that builds PyG batches of their neural graphs (the trainer's data).

    Attributes every implementation sets:
        arch: the :class:`~neuralgraph.architecture.Architecture` the models are sized by (for a
            split of several architectures, the one with the most kernel taps and the widest input
            and output).
        meta: what the file records (settings, fingerprint); ``{}`` when nothing.
        path: the file the split is read from.

    ``len(dataset)`` is the number of samples, :meth:`batch` builds a batch of any of them with
    ``y`` (the target) set, and ``dataset[i]`` is sample ``i`` as one graph.
    """

    arch: Architecture
    meta: dict

    @abc.abstractmethod
    def __len__(self) -> int:
        """The number of samples (networks, or networks at checkpoints)."""

    @abc.abstractmethod
    def batch(self, indices: Any, *, augment: Any = None, generator: torch.Generator | None = None) -> Batch:
        """A PyG ``Batch`` of the samples ``indices`` (as :func:`as_index` reads them) with targets ``y``.

        Args:
            indices: positions in this split.
            augment: an :class:`~neuralgraph.augment.Augment` applied to the parameters, or ``None``.
            generator: the random generator of the augmentation (a training batch).
        """

    def __getitem__(self, i: int):
        """Sample ``i`` as one neural graph."""
        return self.batch([int(i)]).get_example(0)
