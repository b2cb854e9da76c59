"""ReLU forward and backward as single passes over memory.

    forward:   y  = max(x, 0)                     (NaN stays NaN)
    backward:  dx = 0 where y <= 0, else dout     (torch's ``threshold_backward``
                                                   on the output: a NaN output
                                                   passes its gradient)

Backward reads the forward *output* ``y``, which the next layer holds anyway, so
ReLU keeps no mask of its own.  Note the select: where ``y <= 0`` the gradient is
exactly 0 even when ``dout`` is inf or NaN there (``dout * mask`` would give NaN),
as in torch.

The NumPy twins need two or three passes (compare, select, allocate); the Numba
twins one, parallel over chunks of the flat array when it is large.
``relu_forward`` / ``relu_backward`` dispatch (Numba for NumPy arrays).
"""
from __future__ import annotations

import numpy as np

from .. import backend


def relu_forward_reference(x):
    """Plain NumPy ReLU: ``max(x, 0)``, NaN propagating."""
    return backend.xp(x).maximum(x, 0)


def relu_backward_reference(dout, y):
    """Plain NumPy ReLU backward: ``dout`` where the output ``y`` is not ``<= 0``, else 0."""
    return backend.xp(dout).where(y <= 0, 0, dout)


def _numba_ready(*arrays) -> bool:
    return all(type(a) is np.ndarray and a.dtype in (np.float32, np.float64) for a in arrays)


def relu_forward(x):
    """ReLU forward on the fastest path."""
    if _numba_ready(x):
        from ._activation_numba import relu_forward_numba
        return relu_forward_numba(x)
    return relu_forward_reference(x)


def relu_backward(dout, y):
    """ReLU backward on the fastest path."""
    if _numba_ready(dout, y) and dout.dtype == y.dtype and dout.shape == y.shape:
        from ._activation_numba import relu_backward_numba
        return relu_backward_numba(dout, y)
    return relu_backward_reference(dout, y)
