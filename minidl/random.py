"""The one random number generator minidl draws from.

Weight initialisation and dropout masks draw from a single module-level
``numpy.random.Generator``.  ``manual_seed`` resets it, so a seeded run is
reproducible bit for bit on the CPU (same data, same thread count).
"""
from __future__ import annotations

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed minidl's generator (like ``torch.manual_seed``) and return it."""
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"manual_seed: expected a non-negative int, got {seed!r}")
    _generator = np.random.default_rng(int(seed))
    return _generator


def get_generator() -> np.random.Generator:
    """The generator used by ``minidl.nn.init`` and ``Dropout``."""
    return _generator
