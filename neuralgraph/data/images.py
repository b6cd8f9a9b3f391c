"""Image classification data the model zoos are trained on (and their corrupted targets are made from).

MNIST / Fashion-MNIST IDX files (:func:`~neuralgraph.data.load_mnist`), images in [0, 1],
downsampled by averaging ``28 // image_size`` x ``28 // image_size`` blocks (14x14 by default, for
CPU speed; 28 keeps the originals); ``n_train`` / ``n_test`` keep the first images of the official
splits. ``digits`` (sklearn's 8x8 digits, 1297 train / 500 test, stratified) needs no files.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .idx import load_digits, load_mnist

__all__ = ["DATASETS", "load_zoo_data", "check_count"]

#: The data sets a zoo can be trained on.
DATASETS = ("mnist", "fashion_mnist", "digits")


def check_count(name: str, value: Any, low: int = 1, optional: bool = False) -> None:
    """``ValueError`` naming ``name`` unless ``value`` is an integer >= ``low`` (or ``None`` when ``optional``)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def load_zoo_data(dataset: str, root: str | os.PathLike | None = None, image_size: int = 14,
                  n_train: int | None = None, n_test: int | None = None) -> dict[str, Tensor]:
    """Training and test images ``[n, 1, S, S]`` in [0, 1] and labels for a zoo.

    ``image_size`` must divide 28 (28, 14, 7) for MNIST-format data and be 8 for ``digits``.
    """
    if dataset not in DATASETS:
        raise ValueError(f"zoo dataset must be one of {DATASETS}, got {dataset!r}")
    check_count("n_train", n_train, optional=True)
    check_count("n_test", n_test, optional=True)
    if dataset == "digits":
        if image_size != 8:
            raise ValueError(f"digits are 8x8: image_size must be 8, got {image_size!r}")
        from sklearn.model_selection import train_test_split

        x, y = load_digits()
        tr, te = train_test_split(np.arange(len(y)), test_size=500, stratify=y.numpy(), random_state=0)
        tr, te = torch.from_numpy(np.sort(tr)), torch.from_numpy(np.sort(te))
        data = {"train_x": x[tr, None], "train_y": y[tr], "test_x": x[te, None], "test_y": y[te]}
        for split, cap in (("train", n_train), ("test", n_test)):
            if cap is not None:
                data[f"{split}_x"], data[f"{split}_y"] = data[f"{split}_x"][:cap], data[f"{split}_y"][:cap]
        return data
    if root is None:
        raise ValueError(f"dataset {dataset!r} needs root= (a directory with its IDX files)")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1 or 28 % image_size:
        raise ValueError(f"image_size must divide 28 (28, 14 or 7), got {image_size!r}")
    out = {}
    for split, cap in (("train", n_train), ("test", n_test)):
        x, y = load_mnist(root, split, limit=cap)
        if x.shape[1:] != (28, 28):
            raise ValueError(f"{root}: expected 28x28 images, got {tuple(x.shape[1:])}")
        x = x[:, None]
        if image_size != 28:
            x = F.avg_pool2d(x, 28 // image_size)
        out[f"{split}_x"], out[f"{split}_y"] = x.contiguous(), y
    return out
