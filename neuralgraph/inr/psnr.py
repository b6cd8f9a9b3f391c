"""Peak signal-to-noise ratio, the fit quality of an INR."""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["psnr", "psnr_from_mse"]


def psnr(pred: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio per item (first dim), in dB, for data in ``[0, data_range]``."""
    return psnr_from_mse((pred - target).pow(2).reshape(pred.shape[0], -1).mean(1), data_range)


def psnr_from_mse(mse: Tensor, data_range: float = 1.0) -> Tensor:
    """``10 log10(data_range^2 / mse)`` in dB."""
    return 10.0 * torch.log10(data_range ** 2 / mse)
