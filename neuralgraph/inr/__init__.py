"""Implicit neural representations: batched SIREN fitting and INR dataset files.

Modules: :mod:`~neuralgraph.inr.siren` (SIREN fitting and rendering), :mod:`~neuralgraph.inr.stats`
(streamed per-layer statistics, standardisation), :mod:`~neuralgraph.inr.files` (the split-file
format), :mod:`~neuralgraph.inr.fitting` (resumable fitting into a file),
:mod:`~neuralgraph.inr.dataset` (lazy vectorised datasets), :mod:`~neuralgraph.inr.splits`
(train/val/test splits of digits, MNIST, Fashion-MNIST in one directory).
"""
from .dataset import INRDataset, INRLoader
from .files import FORMAT_VERSION, check_labels, load_inr_file, save_inr_dataset
from .fitting import fit_to_dataset
from .splits import DIGITS_W0, MANIFEST, SOURCE_NUM_CLASSES, SPLITS, build_inr_splits, load_splits
from .stats import RunningMoments, layer_stats, normalize_params
from .siren import (
    DEFAULT_LR, DEFAULT_OFFSET, DEFAULT_STEPS, DEFAULT_W0, DEFAULT_WIDTHS,
    FitResult, check_fit_settings, derive_seed, device_batch_size, fit_sirens, fit_sirens_to_signals, image_grid,
    psnr, render, resolve_device, siren_architecture, siren_forward, siren_init,
)

__all__ = [
    "DEFAULT_LR", "DEFAULT_OFFSET", "DEFAULT_STEPS", "DEFAULT_W0", "DEFAULT_WIDTHS",
    "FitResult", "check_fit_settings", "derive_seed", "device_batch_size", "fit_sirens", "fit_sirens_to_signals",
    "image_grid", "resolve_device", "psnr", "render",
    "siren_architecture", "siren_forward", "siren_init",
    "FORMAT_VERSION", "MANIFEST", "SOURCE_NUM_CLASSES", "INRDataset", "INRLoader", "RunningMoments",
    "build_inr_splits", "check_labels", "fit_to_dataset", "layer_stats", "load_inr_file", "normalize_params",
    "save_inr_dataset", "DIGITS_W0", "SPLITS", "load_splits",
]
