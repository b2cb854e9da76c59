"""ReLU forward and backward as single passes over memory; the error function for GELU.

    forward:   y  = max(x, 0)  (NaN stays NaN),   passes = not (y <= 0)
    backward:  dx = dout where passes, else 0

``passes`` is torch's ``threshold_backward`` test on the output: a NaN output passes
its gradient.  It is kept as a boolean mask, one byte per element, rather than the
output itself: ReLU is usually followed by a pooling layer, which does not keep its
input, so holding ``y`` for backward would keep 4 bytes per element alive (12.8 MB
for the lab CNN's first activation at batch 128).  Note the select: where
``passes`` is False the gradient is exactly 0 even when ``dout`` is inf or NaN there
(``dout * mask`` would give NaN), as in torch.

The NumPy twins need several passes (compare, negate, select, allocate); the Numba
twins one each.  ``relu_forward`` / ``relu_backward`` dispatch (Numba for NumPy arrays).

``erf`` (exact GELU): NumPy has no error function.  The reference applies Python's
``math.erf`` (C's ``erf``) to each element -- slow, plainly correct -- or CuPy's
``cupyx.scipy.special.erf`` to device arrays; the Numba twin compiles the same C ``erf``
into a ufunc with float32 and float64 loops.
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from . import registry


def relu_forward_reference(x):
    """Plain NumPy ReLU: ``(max(x, 0), passes)``, NaN propagating; ``passes = ~(y <= 0)``."""
    y = backend.xp(x).maximum(x, 0)
    return y, ~(y <= 0)


def relu_backward_reference(dout, passes):
    """Plain NumPy ReLU backward: ``dout`` where ``passes``, else 0."""
    return backend.xp(dout).where(passes, dout, 0)


def erf_reference(x):
    """The error function, element-wise, in ``x``'s dtype: ``math.erf`` of each element
    (NumPy), ``cupyx.scipy.special.erf`` (CuPy)."""
    if backend.is_cupy(x):
        return backend.device_special("erf")(x)
    return np.vectorize(math.erf, otypes=[x.dtype])(x)


# -- the operations (see registry.py) --------------------------------------------------------

def _numba_ready(*arrays) -> bool:
    return all(type(a) is np.ndarray for a in arrays) and \
        arrays[0].dtype in (np.float32, np.float64)


def _forward_applies(x) -> bool:
    return _numba_ready(x)


def _backward_applies(dout, passes) -> bool:
    return (_numba_ready(dout, passes) and passes.dtype == np.bool_
            and dout.shape == passes.shape)


def _erf_applies(x) -> bool:
    return _numba_ready(x)


def _example_x():
    return (np.zeros((64, 32, 28, 28), np.float32),), {}


def _example_backward():
    return (np.zeros((64, 32, 28, 28), np.float32), np.zeros((64, 32, 28, 28), bool)), {}


relu_forward = registry.register(
    "relu_forward", relu_forward_reference,
    registry.numba("._activation_numba", "relu_forward_numba", _forward_applies),
    example=_example_x, doc="ReLU forward on the route the registry picks: ``(y, passes)``.")

relu_backward = registry.register(
    "relu_backward", relu_backward_reference,
    registry.numba("._activation_numba", "relu_backward_numba", _backward_applies),
    example=_example_backward, doc="ReLU backward on the route the registry picks.")

erf = registry.register(
    "erf", erf_reference,
    registry.numba("._activation_numba", "erf_numba", _erf_applies),
    example=_example_x, doc="The error function, element-wise, on the route the registry picks.")
