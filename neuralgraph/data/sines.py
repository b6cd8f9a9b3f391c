"""Moved to :mod:`neuralgraph.inr.sines`: it builds INR datasets (beside :mod:`neuralgraph.inr.splits`),
so ``neuralgraph.data`` (the raw data) does not import the INR code. Its names still resolve here for
one release, with a ``DeprecationWarning``."""
from __future__ import annotations

from ..deprecation import forward_moved

__getattr__ = forward_moved(__name__, {
    **{name: "neuralgraph.inr.sines" for name in ("SINE_WIDTHS", "SINE_POINTS", "sine_grid", "sine_signals",
                                                 "sample_coefficients", "fit_sines", "build_sine_splits",
                                                 "SPLIT_SEEDS")},
    "_digest": "neuralgraph.io:tensor_sha256",
})
