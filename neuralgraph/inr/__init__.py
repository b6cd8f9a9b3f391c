"""Implicit neural representations: batched SIREN fitting and INR dataset files."""
from .siren import (
    DEFAULT_LR, DEFAULT_OFFSET, DEFAULT_STEPS, DEFAULT_W0, DEFAULT_WIDTHS,
    FitResult, derive_seed, fit_sirens, image_grid, psnr, render, siren_architecture,
    siren_forward, siren_init,
)

__all__ = [
    "DEFAULT_LR", "DEFAULT_OFFSET", "DEFAULT_STEPS", "DEFAULT_W0", "DEFAULT_WIDTHS",
    "FitResult", "derive_seed", "fit_sirens", "image_grid", "psnr", "render",
    "siren_architecture", "siren_forward", "siren_init",
]
