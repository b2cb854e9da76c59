"""Numba twins of the ReLU and erf references in ``activation.py``: one pass each.

``zero`` is passed in the arrays' dtype (a literal ``0`` would type the result as
float64 for float32 arrays).

Each kernel has a ``prange`` twin over the elements for large arrays (the small
CNN's first activation at batch 128 is 1.6M float32: ~0.12 ms on one core of the
development machine, ~0.08 ms on two; an OpenMP launch costs 1-25 us) and a plain
loop otherwise (see ``_parallel.pick``).  The ``prange`` runs over the elements
themselves: a ``prange`` over blocks with an inner loop per block was compiled
without SIMD and ran 5x slower than one thread.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange, vectorize

from ._parallel import check_contiguous_float, pick

BLOCK = 1 << 16     # elements per thread at least before a parallel twin is used


@njit(cache=True)
def _relu_serial(x, y, passes, zero):
    for i in range(x.size):
        v = x[i]
        keep = not (v <= 0)                   # NaN: not <= 0, so it stays (and passes)
        y[i] = v if keep else zero
        passes[i] = keep


@njit(parallel=True, cache=True)
def _relu_parallel(x, y, passes, zero):
    for i in prange(x.size):
        v = x[i]
        keep = not (v <= 0)
        y[i] = v if keep else zero
        passes[i] = keep


@njit(cache=True)
def _relu_backward_serial(dout, passes, dx, zero):
    for i in range(dout.size):
        dx[i] = dout[i] if passes[i] else zero


@njit(parallel=True, cache=True)
def _relu_backward_parallel(dout, passes, dx, zero):
    for i in prange(dout.size):
        dx[i] = dout[i] if passes[i] else zero


def relu_forward_numba(x):
    """Numba ReLU forward (any shape, float32/float64): ``(y, passes)``; equals
    ``relu_forward_reference``."""
    x = check_contiguous_float(x, "relu_forward", "x")
    y = np.empty_like(x)
    passes = np.empty(x.shape, np.bool_)
    run = pick(_relu_parallel, _relu_serial, -(-x.size // BLOCK), 2 * x.size)
    run(x.reshape(-1), y.reshape(-1), passes.reshape(-1), x.dtype.type(0))
    return y, passes


def relu_backward_numba(dout, passes):
    """Numba ReLU backward from the forward's ``passes`` mask; equals
    ``relu_backward_reference``."""
    dout = check_contiguous_float(dout, "relu_backward", "dout")
    if not isinstance(passes, np.ndarray) or passes.dtype != np.bool_ \
            or passes.shape != dout.shape:
        raise ValueError(f"relu_backward: expected a boolean mask of shape {tuple(dout.shape)}, "
                         f"got {getattr(passes, 'dtype', type(passes).__name__)} "
                         f"{tuple(getattr(passes, 'shape', ()))}")
    passes = np.ascontiguousarray(passes)
    dx = np.empty_like(dout)
    run = pick(_relu_backward_parallel, _relu_backward_serial, -(-dout.size // BLOCK),
               2 * dout.size)
    run(dout.reshape(-1), passes.reshape(-1), dx.reshape(-1), dout.dtype.type(0))
    return dx


@vectorize(["float32(float32)", "float64(float64)"], cache=True)
def erf_numba(x):
    """The error function, element-wise (C's ``erf``, as ``math.erf``); equals
    ``erf_reference`` to rounding (float32: C's ``erff``)."""
    return math.erf(x)
