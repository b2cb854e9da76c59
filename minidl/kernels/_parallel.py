"""Choosing between the parallel and the serial twin of a Numba kernel.

Every Numba kernel in minidl is written once, for one unit of work that owns
the memory it writes (an image, a channel, a row of the im2col matrix), and
driven by two loops over the units: a ``prange`` loop (so writes never race)
and a plain loop.  Launching the parallel loop costs tens of microseconds (see
``minidl.threads``), so small calls, single-unit calls and single-thread
settings take the serial loop.

The element-wise kernels (ReLU, the Adam update) run their ``prange`` over the
elements themselves (see ``_activation_numba.py``, ``_adam_numba.py``).

Used by the Numba kernel modules, which are imported when a kernel first runs.
"""
from __future__ import annotations

import numpy as np

from .. import threads

# Below this many elements touched, one thread finishes before a parallel
# launch would pay (~25 us on OpenMP once its workers sleep, see ``minidl.threads``).
PARALLEL_MIN_WORK = 1 << 17

# None: decide by size and thread count.  "parallel" / "serial": always that
# twin -- tests use it to prove both agree with the reference on any machine.
force = None


def pick(parallel, serial, units: int, work: int):
    """The ``parallel`` twin when it is worth a launch, else ``serial``.

    ``units``: how many independent pieces the parallel loop runs over;
    ``work``: about how many elements the call touches.
    """
    if force is not None:
        if force == "parallel":
            threads.ensure_numba_pool()
            return parallel
        return serial
    if units > 1 and work >= PARALLEL_MIN_WORK and threads.numba_threads() > 1:
        return parallel
    return serial


def check_float_array(a, owner: str, name: str, ndim: int):
    """``a`` as a C-contiguous float32/float64 array of ``ndim`` dimensions, or ValueError."""
    if not isinstance(a, np.ndarray) or a.dtype not in (np.float32, np.float64):
        raise ValueError(f"{owner}: expected {name} to be a float32 or float64 NumPy array, "
                         f"got {type(a).__name__} of dtype {getattr(a, 'dtype', None)}")
    if a.ndim != ndim:
        raise ValueError(f"{owner}: expected {name} with {ndim} dimensions, "
                         f"got shape {tuple(a.shape)}")
    return np.ascontiguousarray(a)


def check_contiguous_float(a, owner: str, name: str):
    """``a`` as a C-contiguous float32/float64 NumPy array of any shape, or ValueError."""
    if not isinstance(a, np.ndarray) or a.dtype not in (np.float32, np.float64):
        raise ValueError(f"{owner}: expected {name} to be a float32 or float64 NumPy array, "
                         f"got {type(a).__name__} of dtype {getattr(a, 'dtype', None)}")
    return np.ascontiguousarray(a)
