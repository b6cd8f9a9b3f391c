"""Implicit neural representations: batched SIREN fitting and INR dataset files."""
from .dataset import (
    FORMAT_VERSION, MANIFEST, SOURCE_NUM_CLASSES, INRDataset, INRLoader, RunningMoments, build_inr_splits,
    check_labels, fit_to_dataset, layer_stats, load_inr_file, normalize_params, save_inr_dataset,
)
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
    "save_inr_dataset",
]
