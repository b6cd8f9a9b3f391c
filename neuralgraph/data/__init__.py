"""Data INR datasets are made from: MNIST-format IDX files, sklearn digits, sine waves."""
from .idx import MNIST_FILES, load_digits, load_fashion_mnist, load_idx, load_mnist
from .sines import build_sine_splits

__all__ = ["MNIST_FILES", "load_digits", "load_fashion_mnist", "load_idx", "load_mnist", "build_sine_splits"]
