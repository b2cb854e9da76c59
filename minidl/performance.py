"""Process-wide performance settings, in one explicit place: ``minidl.performance.apply()``.

Layers never change the process: a ``forward`` computes, nothing more.  What does
change it -- for the whole process, not one model -- is collected here:

* **malloc** (``minidl.memory.tune_malloc``): glibc keeps freed blocks of up to 32 MiB
  in the heap instead of returning them to the kernel, so a training step reuses last
  step's pages instead of faulting in fresh zeroed ones (4-12% of the lab CNN's step).
  Opt out with ``MINIDL_MALLOC_TUNING=0``; ``MALLOC_MMAP_THRESHOLD_`` /
  ``MALLOC_TRIM_THRESHOLD_`` in the environment are respected.
* **threads** (``minidl.threads``): one count for BLAS and the Numba kernels;
  ``apply(num_threads=n)`` is ``minidl.set_num_threads(n)``.  ``MINIDL_NUM_THREADS``
  sets it when minidl is imported.
* **OpenMP** (``minidl.threads``): Numba's OpenMP threading layer is preferred, and GNU
  OpenMP's spin is shortened (``GOMP_SPINCOUNT=10000``) while Numba's pool starts.
  These two happen where they must, not here: the layer preference when minidl is
  imported (it has to precede Numba's start), the spin when the first parallel kernel
  starts the pool.  ``apply`` reports them.

Who calls ``apply()``: ``minidl.train.fit`` and ``minidl.train.evaluate`` (so
``tuning``'s objectives and retraining get it through them) and the benchmark entry
points; a hand-written training loop should call it once before its first step.
It is idempotent: the malloc settings are made once per process.
"""
from __future__ import annotations

import os

from . import memory, threads

__all__ = ["apply", "settings"]


def apply(num_threads: int | None = None) -> dict:
    """Make the process-wide settings above (once); return ``settings()``.

    ``num_threads``: also ``minidl.set_num_threads(num_threads)`` (None leaves the count).
    """
    if num_threads is not None:
        threads.set_num_threads(num_threads)
    if not memory.done:
        memory.tune_malloc()
    return settings()


def settings() -> dict:
    """What is in effect: ``{"malloc": {...}, "num_threads": n, "numba_threading_layer":
    ..., "gomp_spincount": ...}`` (``malloc`` is empty until ``apply`` ran, or on
    systems without glibc, or with ``MINIDL_MALLOC_TUNING=0``)."""
    return {"malloc": dict(memory.applied),
            "malloc_tuned": memory.done,
            "num_threads": threads.get_num_threads(),
            "numba_threading_layer": (os.environ.get("NUMBA_THREADING_LAYER")
                                      or os.environ.get("NUMBA_THREADING_LAYER_PRIORITY")),
            "gomp_spincount": os.environ.get("GOMP_SPINCOUNT", threads._GOMP_SPINCOUNT)}
