"""The Adam / AdamW update of one parameter, in place: one pass over five arrays.

For a parameter ``p`` with gradient ``g``, moments ``m`` and ``v`` (and, with
amsgrad, the running maximum ``v_max``), at step ``t`` (see ``minidl.optim.Adam``
for the algorithm)::

    p     *= 1 - lr*wd                 (decoupled weight decay, AdamW)
    g      = g + wd*p                  (coupled weight decay, Adam; a temporary)
    m     += (1 - beta1) * (g - m)     (torch's lerp, weight < 0.5)
    v      = v*beta2 + (1 - beta2)*g*g
    v_max  = max(v_max, v)             (amsgrad; NaN propagates)
    p     -= step_size * m / (sqrt(v_or_vmax) / bias_correction2_sqrt + eps)

with ``step_size = lr / (1 - beta1**t)`` and ``bias_correction2_sqrt =
sqrt(1 - beta2**t)`` computed once in Python, as torch does.  All the scalars are
converted to the parameter's dtype once per step (``adam_coefficients``); every
operation is done in that dtype, in the order written, so the Numba twin gives the
reference's bits.

Subnormal moments.  In long float32 runs ``m`` decays into subnormal numbers
(below 1.18e-38), which some CPUs process tens of times slower, slowing a whole
step (PyTorch by up to 30% on the development machine).  Setting the CPU's
flush-to-zero mode is per thread and would change every later float operation of
the process; instead, for float32 only, both twins set a moment whose magnitude
falls below the smallest normal float32 to zero, which is what a flush-to-zero
CPU would store.  float64 moments are never flushed (their subnormal range,
below 2.2e-308, is not reached in practice, and float64 runs match torch to 1e-10).

Twins: ``adam_update_reference`` (NumPy, also CuPy) and ``adam_update_numba``
(one fused, vectorised loop); ``adam_update`` dispatches (Numba for C-contiguous
NumPy arrays of one dtype).
"""
from __future__ import annotations

import numpy as np

from .. import backend
from . import registry
from .adam_coefficients import (COEFFICIENTS, FLUSH_BELOW, adam_coefficients,  # noqa: F401
                                coefficients_for, flush_threshold)

def adam_update_reference(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, coefficients=None,
                          **scalars):
    """Plain NumPy Adam/AdamW update of ``param``, ``exp_avg``, ``exp_avg_sq`` (and
    ``max_exp_avg_sq`` unless None) in place; ``grad`` is not modified.
    ``coefficients``: from ``adam_coefficients`` (the parameter's dtype), or else the
    keyword arguments of ``adam_coefficients`` (``lr=..., beta1=..., ...``)."""
    coefficients = coefficients_for(param, coefficients, scalars)
    xp = backend.xp(param)
    (decay, weight_decay, one_minus_beta1, beta2, one_minus_beta2, flush_below, step_size,
     bias_correction2_sqrt, eps) = (coefficients[i] for i in range(len(COEFFICIENTS)))
    g = grad
    if decay != 1:                               # AdamW
        param *= decay
    if weight_decay != 0:                        # Adam
        g = g + weight_decay * param
    m, v = exp_avg, exp_avg_sq
    m += one_minus_beta1 * (g - m)
    v *= beta2
    v += one_minus_beta2 * g * g
    if flush_below > 0:
        xp.copyto(m, 0, where=xp.abs(m) < flush_below)
        xp.copyto(v, 0, where=v < flush_below)
    if max_exp_avg_sq is not None:
        xp.maximum(max_exp_avg_sq, v, out=max_exp_avg_sq)
        v = max_exp_avg_sq
    param -= step_size * m / (xp.sqrt(v) / bias_correction2_sqrt + eps)


def _numba_applies(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, coefficients=None,
                   **scalars) -> bool:
    """C-contiguous NumPy arrays of one shape and float dtype."""
    dtype, shape = param.dtype, param.shape
    return (type(param) is np.ndarray and dtype in FLUSH_BELOW and param.flags.c_contiguous
            and all(type(a) is np.ndarray and a.dtype == dtype and a.shape == shape
                    and a.flags.c_contiguous
                    for a in (grad, exp_avg, exp_avg_sq, max_exp_avg_sq) if a is not None))


def _example():
    p = np.zeros(784 * 256, np.float32)
    return (p, p, p, p, None, adam_coefficients(
        np.float32, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
        decoupled=False, step_size=1e-3, bias_correction2_sqrt=1.0)), {}


adam_update = registry.register(
    "adam_update", adam_update_reference,
    registry.numba("._adam_numba", "adam_update_numba", _numba_applies), example=_example,
    doc="The Adam/AdamW update on the route the registry picks (same arguments as the "
        "reference): Numba for C-contiguous NumPy arrays of one shape and dtype.")
