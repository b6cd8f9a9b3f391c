"""How a model zoo is generated, as one checked object (:class:`ZooSettings`)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ..data.images import check_count
from .specs import FAMILIES

__all__ = ["ZooSettings"]


def _default_checkpoints(epochs: int) -> list[int]:
    """``0, 1, ..., epochs``, up to 5 of them, always 0 and ``epochs``."""
    return sorted({0, epochs, *np.linspace(0, epochs, 5).round().astype(int).tolist()})


@dataclass(frozen=True)
class ZooSettings:
    """Everything that says what zoo :func:`~neuralgraph.zoo.generate_zoo` trains, checked once when made.

    Args:
        family: ``small_cnn``, ``wild_park`` or ``mlp`` (see :mod:`neuralgraph.zoo.specs`).
        dataset, root, image_size, n_train, n_test: the data
            (:func:`~neuralgraph.data.images.load_zoo_data`).
        num_networks: networks in the zoo.
        epochs: training epochs; ``checkpoints``: epochs recorded (default ``0, 1, ..., epochs``
            up to 5 of them, always including 0 and ``epochs``); stored sorted and unique.
        n_train_eval: training images (the first ones) the train metrics are measured on.
        batch_size: training batch size of every network.
        seed: seeds the sampled architectures, hyper-parameters and training.
        chunk_size: networks per resumable chunk.
        num_architectures, hidden_choices: the sampled architectures (:func:`~neuralgraph.zoo.sample_zoo`).
        device: ``"cpu"``, ``"cuda"``, ... (``"auto"``: CUDA when available); stored resolved.

    Raises:
        ValueError: naming the bad setting.
    """

    family: str = "small_cnn"
    dataset: str = "mnist"
    root: str | os.PathLike | None = None
    num_networks: int = 300
    epochs: int = 3
    checkpoints: Sequence[int] | None = None
    image_size: int = 14
    n_train: int | None = 10000
    n_test: int | None = 2000
    n_train_eval: int = 2000
    batch_size: int = 32
    seed: int = 0
    chunk_size: int = 128
    num_architectures: int = 8
    hidden_choices: Sequence[Sequence[int]] = ((32,), (32, 32))
    device: str | torch.device = "cpu"

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"zoo family must be one of {FAMILIES}, got {self.family!r}")
        for name in ("num_networks", "epochs", "batch_size", "chunk_size", "n_train_eval"):
            check_count(name, getattr(self, name))
        check_count("seed", self.seed, low=0)
        raw = _default_checkpoints(self.epochs) if self.checkpoints is None else self.checkpoints
        checkpoints = sorted(set(int(c) for c in raw))
        if not checkpoints or checkpoints[0] < 0 or checkpoints[-1] > self.epochs:
            raise ValueError(f"checkpoints must be epochs in [0, {self.epochs}], got {checkpoints}")
        object.__setattr__(self, "checkpoints", checkpoints)
        device = self.device
        object.__setattr__(self, "device", torch.device("cuda" if device == "auto" and torch.cuda.is_available()
                                                        else "cpu" if device == "auto" else device))

    def record(self, train_images: int, test_images: int, image_size: int) -> dict[str, Any]:
        """The settings a zoo file records (``meta``) and its fingerprint covers, with the data's actual sizes."""
        return {"family": self.family, "dataset": self.dataset, "num_networks": int(self.num_networks),
                "epochs": int(self.epochs), "checkpoints": self.checkpoints, "image_size": int(image_size),
                "n_train": int(train_images), "n_test": int(test_images), "n_train_eval": int(self.n_train_eval),
                "batch_size": int(self.batch_size), "seed": int(self.seed), "chunk_size": int(self.chunk_size),
                "num_architectures": int(self.num_architectures),
                "hidden_choices": [list(map(int, h)) for h in self.hidden_choices], "device_type": self.device.type}
