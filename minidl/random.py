"""The one random number generator minidl draws from.

Weight initialisation and dropout masks draw from a single module-level
``numpy.random.Generator``.  ``manual_seed`` resets it, so a seeded run is
reproducible bit for bit on the CPU (same data, same thread count).
"""
from __future__ import annotations

import numpy as np

from . import _checks

_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed minidl's generator (like ``torch.manual_seed``) and return it."""
    global _generator
    _generator = np.random.default_rng(_checks.non_negative_int("manual_seed", "seed", seed))
    return _generator


def get_generator() -> np.random.Generator:
    """The generator used by ``minidl.nn.init`` and ``Dropout``."""
    return _generator
