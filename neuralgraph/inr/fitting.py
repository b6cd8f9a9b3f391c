"""The old name of :mod:`neuralgraph.inr.writer` (the INR dataset writer, :func:`fit_to_dataset`), kept for one release.

Its chunk and fingerprint helpers are :mod:`neuralgraph.chunks` now (the one resumable chunk store).
"""
from __future__ import annotations

from ..chunks import fingerprint as _fingerprint  # noqa: F401 - old private names, still imported elsewhere
from ..chunks import tensor_digest as _tensor_digest  # noqa: F401
from .writer import fit_to_dataset

__all__ = ["fit_to_dataset"]
