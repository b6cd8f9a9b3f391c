"""The old name of :mod:`neuralgraph.inr.writer` (the INR dataset writer, :func:`fit_to_dataset`), kept for one release."""
from __future__ import annotations

from .writer import _chunk_path, _fingerprint, _remove_chunks, _tensor_digest, fit_to_dataset  # noqa: F401

__all__ = ["fit_to_dataset"]
