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
def _relu_all(x, y, passes, zero):
    for i in range(x.size):
        v = x[i]
        keep = not (v <= 0)                   # NaN: not <= 0, so it stays (and passes)
        y[i] = v if keep else zero
        passes[i] = keep


@njit(cache=True)
def _relu_backward_all(dout, passes, dx, zero):
    for i in range(dout.size):
        dx[i] = dout[i] if passes[i] else zero


def relu_forward_numba(x):
    """Numba ReLU forward (any shape, float32/float64): ``(y, passes)``; equals
    ``relu_forward_reference``."""
    x = check_contiguous_float(x, "relu_forward", "x")
    y = np.empty_like(x)
    passes = np.empty(x.shape, np.bool_)
    _relu_all(x.reshape(-1), y.reshape(-1), passes.reshape(-1), x.dtype.type(0))
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
    _relu_backward_all(dout.reshape(-1), passes.reshape(-1), dx.reshape(-1), dout.dtype.type(0))
    return dx
