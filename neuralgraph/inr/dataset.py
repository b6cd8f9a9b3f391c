"""INR datasets: lazy, vectorised batches of neural graphs from split files (:class:`INRDataset`)."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Batch

from ..architecture import Architecture
from ..augment import Augment
from ..batching import set_graph_attr
from ..datasets import NeuralGraphDataset
from ..datasets import as_index as _as_index  # zoo/files.py and older code import it from here
from ..graph import stacked_to_batch
from .files import _check_count, _check_stats, load_inr_file
from .stats import _normalize_batch

__all__ = ["INRDataset", "INRLoader"]


class INRDataset(NeuralGraphDataset):
    """One split file, loaded lazily (memory-mapped); batches are built without per-item loops.

    ``dataset[i]`` is a single :class:`~neuralgraph.NeuralGraph` with ``y``
    (works with PyG's ``DataLoader``); the fast path is :meth:`batch` /
    :meth:`loader`, which index the stacked tensors once per batch and call
    :func:`neuralgraph.stacked_to_batch`. ``normalize`` and ``augment`` set
    defaults for both.

    ``stats`` replaces the file's own per-layer statistics for normalisation (e.g. the
    training split's, stored in a checkpoint: inference must not normalise a test file
    with its own statistics). ``transform`` (a callable, e.g. a
    :mod:`neuralgraph.transforms` transform or a ``torch_geometric.transforms.Compose``)
    is applied to every graph / batch this dataset returns. ``dataset[i]`` with an
    int gives one graph; a slice, index list/tensor or boolean mask gives a
    sub-dataset (same statistics and transform).
    """

    def __init__(self, path: str | os.PathLike, normalize: bool = False,
                 augment: Augment | None = None, mmap: bool = True, verify: bool = True,
                 stats: dict[str, Tensor] | None = None, transform: Callable | None = None) -> None:
        self.path = Path(path)
        obj = load_inr_file(self.path, mmap=mmap, verify=verify)
        self.arch: Architecture = obj["arch"]
        self.weights: list[Tensor] = obj["weights"]
        self.biases: list[Tensor] = obj["biases"]
        self.labels: Tensor = obj["labels"]
        self.source_index: Tensor = obj["source_index"]
        self.psnr: Tensor = obj["psnr"]
        self.stats: dict[str, Tensor] = obj["stats"]
        self.meta: dict = obj.get("meta", {})
        self.normalize = normalize
        self.augment = augment
        if stats is not None:
            _check_stats(stats, self.arch.num_layers, f"{self.path} (stats=)")
            self.stats = stats
        if transform is not None and not callable(transform):
            raise ValueError(f"transform must be callable (e.g. neuralgraph.transforms.PermuteHidden()), got "
                             f"{type(transform).__name__}")
        self.transform = transform

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        """The number of classes stored in the file (not guessed from the labels present)."""
        return int(self.meta["num_classes"])

    def params(self, indices: Tensor | Sequence[int] | slice | int) -> tuple[list[Tensor], list[Tensor]]:
        """Raw stacked parameters of the selected INRs (copies, safe to modify).

        ``indices``: an int, a slice, integer indices (list, numpy array or
        tensor; negative ones count from the end) or a boolean mask of length
        ``len(self)``; anything else raises ``ValueError``.
        """
        idx = _as_index(indices, len(self))
        return [w[idx] for w in self.weights], [b[idx] for b in self.biases]

    def batch(self, indices: Tensor | Sequence[int] | slice | int, normalize: bool | None = None,
              augment: Augment | None = None, generator: torch.Generator | None = None) -> Batch:
        """A PyG ``Batch`` of the selected INRs' neural graphs (``indices`` as for :meth:`params`).

        ``batch.y`` holds the labels and ``batch.inr_index`` the positions in
        this file, in ``[0, len(self))`` (e.g. to look up ``source_index`` or ``psnr``).

        Augmentation acts on raw parameters, then normalisation (if enabled).
        A normalised batch keeps the raw parameters as ``x_raw`` / ``edge_attr_raw``
        (permuted and batched like ``x`` / ``edge_attr``): models that *run* the
        networks, such as probe features, need the real weights.
        """
        idx = _as_index(indices, len(self))
        weights, biases = self.params(idx)
        augment = self.augment if augment is None else augment
        if augment is not None and augment.active:
            weights, biases = augment(weights, biases, generator)
        out = stacked_to_batch(weights, biases, self.arch)
        if self.normalize if normalize is None else normalize:
            _normalize_batch(out, self.stats)
        # per-graph attributes: label and position in this file (kept by get_example)
        out.y = self.labels[idx]
        out.inr_index = idx
        set_graph_attr(out, "y", out.y)
        set_graph_attr(out, "inr_index", out.inr_index)
        transform = getattr(self, "transform", None)
        return transform(out) if transform is not None else out

    def __getitem__(self, i):
        is_int = isinstance(i, (int, np.integer)) or isinstance(i, Tensor) and i.dim() == 0 and not (
            i.dtype.is_floating_point or i.dtype == torch.bool)
        scalar = isinstance(i, (bool, np.bool_, float, np.floating)) or isinstance(i, Tensor) and i.dim() == 0
        if scalar and (not is_int or isinstance(i, (bool, np.bool_))):
            raise ValueError(f"dataset[i] takes one integer index (or a slice, indices or a boolean mask for a "
                             f"sub-dataset), got {i!r}")
        if not is_int:
            return self.subset(i)
        return self.batch(i).get_example(0)

    def subset(self, indices) -> "INRDataset":
        """The selected INRs as a dataset (``indices`` as for :meth:`params`; parameters gathered once)."""
        import copy

        idx = _as_index(indices, len(self))
        out = copy.copy(self)
        out.weights, out.biases = self.params(idx)
        out.labels, out.source_index, out.psnr = self.labels[idx], self.source_index[idx], self.psnr[idx]
        return out

    def loader(self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None,
               augment: Augment | None = None, normalize: bool | None = None,
               drop_last: bool = False) -> "INRLoader":
        """Iterate ``(Batch, labels)`` over the split; reshuffled on every pass when ``shuffle``."""
        return INRLoader(self, batch_size, shuffle, generator, augment, normalize, drop_last)


class INRLoader:
    """Re-iterable loader over an :class:`INRDataset` (one vectorised gather per batch)."""

    def __init__(self, dataset: INRDataset, batch_size: int, shuffle: bool = False,
                 generator: torch.Generator | None = None, augment: Augment | None = None,
                 normalize: bool | None = None, drop_last: bool = False) -> None:
        _check_count(batch_size=batch_size)
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.generator, self.augment, self.normalize, self.drop_last = generator, augment, normalize, drop_last

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Batch, Tensor]]:
        n = len(self.dataset)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for s in range(0, len(self) * self.batch_size, self.batch_size):
            idx = order[s:s + self.batch_size]
            b = self.dataset.batch(idx, self.normalize, self.augment, self.generator)
            yield b, b.y
