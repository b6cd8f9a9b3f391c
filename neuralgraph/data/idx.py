"""Readers for IDX files (the MNIST / Fashion-MNIST format) and the bundled digits.

IDX layout: a 4-byte magic ``0x00 0x00 <dtype code> <ndim>``, ``ndim`` big-endian
uint32 sizes, then the data in row-major big-endian order. Files may be gzip
compressed (detected by content, not by name). Nothing here downloads anything:
the user names the directory that holds the files.
"""
from __future__ import annotations

import gzip
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["load_idx", "load_mnist", "load_fashion_mnist", "load_digits", "MNIST_FILES"]

_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

#: split -> (images file, labels file), standard names; ``.gz`` or raw are both accepted.
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: corrupt gzip data ({e})") from None
    return raw


def load_idx(path: str | os.PathLike) -> Tensor:
    """Read one IDX file (gzip or raw) into a tensor of its stored shape.

    The magic number, the dimension header and the payload size are checked;
    any mismatch raises ``ValueError`` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: bad IDX magic {data[:4].hex()} (first two bytes must be zero)")
    code, ndim = data[2], data[3]
    if code not in _DTYPES:
        raise ValueError(f"{path}: unknown IDX data type code 0x{code:02x}")
    if ndim < 1:
        raise ValueError(f"{path}: IDX header declares {ndim} dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header (need {header} bytes, have {len(data)})")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize                  # exact (np.prod can overflow int64)
    if len(data) - header != expected:
        raise ValueError(f"{path}: IDX payload has {len(data) - header} bytes, header dims {dims} "
                         f"with {dtype.itemsize}-byte items need {expected}")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    arr = arr.astype(dtype.newbyteorder("="), copy=True)
    return torch.from_numpy(arr)


def _find(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"{root}: neither {stem}.gz nor {stem} found "
                            "(point root at a directory holding the MNIST-format IDX files)")


def load_mnist(root: str | os.PathLike, split: str = "train", limit: int | None = None,
               num_classes: int = 10) -> tuple[Tensor, Tensor]:
    """MNIST-format images ``[n, H, W]`` float32 in [0, 1] and labels ``[n]`` int64.

    ``root`` is a directory with the standard file names (gz or raw). ``limit``
    keeps the first ``limit`` examples. Images must be uint8 (scaled by 1/255)
    or floats already in [0, 1]; labels integers in ``[0, num_classes)`` (10 for
    MNIST and Fashion-MNIST; ``ValueError`` naming the file and the label otherwise).
    """
    if split not in MNIST_FILES:
        raise ValueError(f"split must be one of {sorted(MNIST_FILES)}, got {split!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset directory not found: {root}")
    img_path, lab_path = (_find(root, s) for s in MNIST_FILES[split])
    images, labels = load_idx(img_path), load_idx(lab_path)
    if images.dim() != 3:
        raise ValueError(f"{img_path}: expected 3-d images [n, H, W], got shape {tuple(images.shape)}")
    if labels.dim() != 1:
        raise ValueError(f"{lab_path}: expected 1-d labels, got shape {tuple(labels.shape)}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{img_path} has {images.shape[0]} images but {lab_path} has {labels.shape[0]} labels")
    if labels.dtype.is_floating_point:
        raise ValueError(f"{lab_path}: labels must be integers, the file stores {labels.dtype}")
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError(f"{lab_path}: negative label {int(labels.min())}")
    if labels.numel() and int(labels.max()) >= num_classes:
        i = int(labels.argmax())
        raise ValueError(f"{lab_path}: label {int(labels[i])} at index {i} is outside [0, {num_classes}) "
                         f"(MNIST-format files have {num_classes} classes)")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 0:
            raise ValueError(f"limit must be an integer >= 0, got {limit!r}")
        images, labels = images[:limit], labels[:limit]
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    elif images.dtype.is_floating_point:
        images = images.float()
        if images.numel() and not (float(images.min()) >= 0.0 and float(images.max()) <= 1.0):
            raise ValueError(f"{img_path}: floating-point images must be in [0, 1], got values in "
                             f"[{float(images.min()):g}, {float(images.max()):g}]")
    else:
        raise ValueError(f"{img_path}: images must be uint8 (0..255) or floats in [0, 1], the file stores "
                         f"{images.dtype}")
    return images, labels.long()


def load_fashion_mnist(root: str | os.PathLike, split: str = "train",
                       limit: int | None = None) -> tuple[Tensor, Tensor]:
    """Fashion-MNIST (same file names and format as MNIST); see :func:`load_mnist`."""
    return load_mnist(root, split, limit)


def load_digits() -> tuple[Tensor, Tensor]:
    """scikit-learn's bundled digits: 1797 real 8x8 images in [0, 1] and labels.

    Always available offline, so it is the default data for a fresh machine.
    """
    from sklearn.datasets import load_digits as _sk_digits

    d = _sk_digits()
    images = torch.from_numpy(d.images.astype(np.float32)) / 16.0
    return images, torch.from_numpy(d.target.astype(np.int64))
