"""Image datasets used to make INR datasets (MNIST-format IDX files, sklearn digits)."""
from .idx import MNIST_FILES, load_digits, load_fashion_mnist, load_idx, load_mnist

__all__ = ["MNIST_FILES", "load_digits", "load_fashion_mnist", "load_idx", "load_mnist"]
