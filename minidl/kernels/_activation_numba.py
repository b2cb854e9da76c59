"""Numba twins of the ReLU references in ``activation.py``: one pass each.

``zero`` is passed in the arrays' dtype (a literal ``0`` would type the result as
float64 for float32 arrays).

Serial only: one thread streams a ReLU over 1.6M float32 (the lab CNN's first
activation at batch 64) in ~0.13 ms on the 2-core development machine; a
``prange`` launch took ~1 ms whenever the other core was busy, and was not faster
on a quiet machine.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ._parallel import check_contiguous_float


@njit(cache=True)
def _relu_range(x, y, zero, lo, hi):
    for i in range(lo, hi):
        v = x[i]
        y[i] = zero if v <= 0 else v          # NaN: not <= 0, so it stays NaN


@njit(cache=True)
def _relu_backward_range(dout, y, dx, zero, lo, hi):
    for i in range(lo, hi):
        dx[i] = zero if y[i] <= 0 else dout[i]


@njit(cache=True)
def _relu_all(x, y, zero):
    _relu_range(x, y, zero, 0, x.size)


@njit(cache=True)
def _relu_backward_all(dout, y, dx, zero):
    _relu_backward_range(dout, y, dx, zero, 0, dout.size)


def relu_forward_numba(x):
    """Numba ReLU forward (any shape, float32/float64); equals ``relu_forward_reference``."""
    x = check_contiguous_float(x, "relu_forward", "x")
    y = np.empty_like(x)
    _relu_all(x.reshape(-1), y.reshape(-1), x.dtype.type(0))
    return y


def relu_backward_numba(dout, y):
    """Numba ReLU backward from the forward output ``y``; equals ``relu_backward_reference``."""
    dout = check_contiguous_float(dout, "relu_backward", "dout")
    y = check_contiguous_float(y, "relu_backward", "y")
    if dout.shape != y.shape or dout.dtype != y.dtype:
        raise ValueError(f"relu_backward: expected dout and y of one shape and dtype, got "
                         f"{tuple(dout.shape)} {dout.dtype} and {tuple(y.shape)} {y.dtype}")
    dx = np.empty_like(dout)
    _relu_backward_all(dout.reshape(-1), y.reshape(-1), dx.reshape(-1), dout.dtype.type(0))
    return dx
