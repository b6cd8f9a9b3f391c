"""Implicit neural representations: batched SIREN fitting and INR dataset files.

Modules: :mod:`~neuralgraph.inr.siren` (the SIREN: architecture, initialisation, rendering),
:mod:`~neuralgraph.inr.fit` (fitting thousands at once: the public API), :mod:`~neuralgraph.inr.settings`
(:class:`FitSettings`), :mod:`~neuralgraph.inr.runner` (batches, threads, devices),
:mod:`~neuralgraph.inr.kernels` (the fit kernels), :mod:`~neuralgraph.inr.psnr`,
:mod:`~neuralgraph.inr.device` (device names and memory), :mod:`~neuralgraph.inr.stats` (streamed
per-layer statistics, standardisation), :mod:`~neuralgraph.inr.files` (the split-file format),
:mod:`~neuralgraph.inr.writer` (resumable fitting into a file), :mod:`~neuralgraph.inr.dataset` (lazy
vectorised datasets), :mod:`~neuralgraph.inr.splits` (train/val/test splits of digits, MNIST,
Fashion-MNIST in one directory, and reading them back), :mod:`~neuralgraph.inr.sines` (the splits of
sine-wave INRs of DWSNets' self-supervised experiment).
"""
from ..seeding import derive_seed
from .dataset import INRDataset, INRLoader
from .device import device_batch_size, resolve_device
from .files import FORMAT_VERSION, check_labels, load_inr_file, save_inr_dataset
from .fit import FitResult, fit_images, fit_signals, fit_sirens, fit_sirens_to_signals
from .psnr import psnr
from .settings import FitSettings, check_fit_settings
from .sines import build_sine_splits
from .siren import (DEFAULT_LR, DEFAULT_OFFSET, DEFAULT_STEPS, DEFAULT_W0, DEFAULT_WIDTHS, image_grid, render,
                    siren_architecture, siren_forward, siren_init)
from .splits import DIGITS_W0, MANIFEST, SOURCE_NUM_CLASSES, SPLITS, build_inr_splits, load_splits
from .stats import RunningMoments, layer_stats, normalize_params
from .writer import fit_to_dataset

__all__ = [
    "DEFAULT_LR", "DEFAULT_OFFSET", "DEFAULT_STEPS", "DEFAULT_W0", "DEFAULT_WIDTHS",
    "FitResult", "FitSettings", "check_fit_settings", "derive_seed", "device_batch_size", "fit_sirens",
    "fit_sirens_to_signals", "fit_images", "fit_signals",
    "image_grid", "resolve_device", "psnr", "render",
    "siren_architecture", "siren_forward", "siren_init",
    "FORMAT_VERSION", "MANIFEST", "SOURCE_NUM_CLASSES", "INRDataset", "INRLoader", "RunningMoments",
    "build_inr_splits", "check_labels", "fit_to_dataset", "layer_stats", "load_inr_file", "normalize_params",
    "save_inr_dataset", "DIGITS_W0", "SPLITS", "load_splits", "build_sine_splits",
]
