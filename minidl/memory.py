"""Keeping freed memory in the process: glibc ``malloc`` settings for training loops.

A training step allocates the same large arrays every time (a convolution's im2col
matrix: 14 MB for the lab CNN at batch 64) and frees them at the end of the step.
With glibc's defaults, blocks that large are given back to the operating system
when freed (``mmap``/``munmap``, or trimming the heap top), so the next step gets
fresh pages, and the kernel zero-fills every page again on first touch: about
2,200 page faults per step of the lab CNN, 4-12% of its time on the development
machine.

``tune_malloc()`` raises glibc's ``M_MMAP_THRESHOLD`` to 32 MiB (its maximum; blocks
below it come from the heap) and ``M_TRIM_THRESHOLD`` to 1 GiB (free memory at the
heap top is kept up to that much), with ``mallopt``: freed arrays are then reused
from the heap, step after step (20 page faults per step).  The price: memory freed
by the process stays allocated to it (up to the largest working set it had), as
with PyTorch's own caching allocator.  Peak memory is unchanged.

It runs once per process, from ``minidl.performance.apply()`` (which ``minidl.train.fit``
and ``evaluate`` call; layers never call it).  Opt out with the environment variable ``MINIDL_MALLOC_TUNING=0``
(read then); a ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` already in
the environment is respected.  Nothing happens on other C libraries than glibc
(musl, macOS, Windows).
"""
from __future__ import annotations

import ctypes
import os
import sys

ENV_VAR = "MINIDL_MALLOC_TUNING"
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 2**30

# glibc's mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

done = False        # set once tune_malloc has run
applied = {}        # what tune_malloc set: {"M_MMAP_THRESHOLD": bytes, ...}


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - present only in glibc
        return libc
    except (OSError, AttributeError):
        return None


def tune_malloc() -> dict:
    """Apply the settings above once per process; return what was set (empty if nothing)."""
    global done
    if done:
        return applied
    done = True
    if os.environ.get(ENV_VAR, "1").strip() == "0":
        return applied
    libc = _glibc()
    if libc is None:
        return applied
    for name, param, value, env in (
            ("M_MMAP_THRESHOLD", _M_MMAP_THRESHOLD, MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_"),
            ("M_TRIM_THRESHOLD", _M_TRIM_THRESHOLD, TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_")):
        if env in os.environ:
            continue
        if libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) == 1:
            applied[name] = value
    return applied
