"""Data INR datasets are made from: MNIST-format IDX files and sklearn digits (the sine waves and their
INRs: :mod:`neuralgraph.inr.sines`)."""
from ..deprecation import forward_moved
from .idx import MNIST_FILES, load_digits, load_fashion_mnist, load_idx, load_mnist

__all__ = ["MNIST_FILES", "load_digits", "load_fashion_mnist", "load_idx", "load_mnist"]

#: Moved with :mod:`neuralgraph.inr.sines` (kept for one release).
__getattr__ = forward_moved(__name__, {"build_sine_splits": "neuralgraph.inr.sines"})
