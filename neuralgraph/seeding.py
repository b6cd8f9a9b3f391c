"""Seeds derived from a base seed and integer keys (one place for the whole library)."""
from __future__ import annotations

import numpy as np

__all__ = ["derive_seed"]


def derive_seed(seed: int, *keys: int) -> int:
    """A well-mixed 63-bit seed from ``seed`` and integer keys (e.g. a chunk index, a rank).

    ``numpy.random.SeedSequence`` mixing: streams of different keys are not correlated, and
    chunk ``k`` of a long fit gets the same seed whether or not the run was interrupted.
    """
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(seed) >> 32 & 0xFFFFFFFF,
                                    *(int(k) for k in keys)]).generate_state(2, np.uint32)
    return int(state[0]) << 31 ^ int(state[1])
