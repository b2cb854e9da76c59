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
sqrt(1 - beta2**t)`` computed once in Python, as torch does.  Every operation is
done in the parameter's dtype, in the order written (float32 scalars for float32
parameters), so the Numba twin gives the reference's bits.

Subnormal moments.  In long float32 runs ``m`` decays into subnormal numbers
(below 1.18e-38), which some CPUs process tens of times slower, slowing a whole
step (PyTorch by up to 30% on the development machine).  Setting the CPU's
flush-to-zero mode is per thread and would change every later float operation of
the process; instead, for float32 only, both twins set a moment whose magnitude
falls below the smallest normal float32 to zero, which is what a flush-to-zero
CPU would store.  float64 moments are never flushed (their subnormal range,
below 2.2e-308, is not reached in practice, and float64 runs match torch to 1e-10).

Twins: ``adam_update_reference`` (NumPy, also CuPy) and ``adam_update_numba``
(one fused, vectorised loop);
``adam_update`` dispatches (Numba for C-contiguous NumPy arrays of one dtype).
"""
from __future__ import annotations

import numpy as np

from .. import backend

# Magnitudes below this are flushed to zero in float32 moments (the smallest
# normal float32); float64 moments are never flushed (threshold 0).
FLUSH_BELOW = {np.dtype(np.float32): float(np.finfo(np.float32).tiny),
               np.dtype(np.float64): 0.0}


def flush_threshold(dtype) -> float:
    """The magnitude below which a moment of ``dtype`` is flushed to zero (0: never)."""
    return FLUSH_BELOW.get(np.dtype(dtype), 0.0)


def adam_update_reference(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *, lr, beta1,
                          beta2, eps, weight_decay, decoupled, step_size,
                          bias_correction2_sqrt):
    """Plain NumPy Adam/AdamW update of ``param``, ``exp_avg``, ``exp_avg_sq`` (and
    ``max_exp_avg_sq`` unless None) in place; ``grad`` is not modified."""
    xp = backend.xp(param)
    g = grad
    if weight_decay != 0:
        if decoupled:
            param *= 1 - lr * weight_decay
        else:
            g = g + weight_decay * param
    m, v = exp_avg, exp_avg_sq
    m += (1 - beta1) * (g - m)
    v *= beta2
    v += (1 - beta2) * g * g
    tiny = flush_threshold(param.dtype)
    if tiny > 0:
        xp.copyto(m, 0, where=xp.abs(m) < tiny)
        xp.copyto(v, 0, where=v < tiny)
    if max_exp_avg_sq is not None:
        xp.maximum(max_exp_avg_sq, v, out=max_exp_avg_sq)
        v = max_exp_avg_sq
    param -= step_size * m / (xp.sqrt(v) / bias_correction2_sqrt + eps)


def _numba_ready(*arrays) -> bool:
    first = arrays[0]
    return all(isinstance(a, np.ndarray) and a.flags.c_contiguous and a.dtype == first.dtype
               and a.shape == first.shape for a in arrays) and first.dtype in FLUSH_BELOW


def adam_update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *, lr, beta1, beta2, eps,
                weight_decay, decoupled, step_size, bias_correction2_sqrt):
    """The Adam/AdamW update on the fastest path (same arguments as the reference)."""
    arrays = (param, grad, exp_avg, exp_avg_sq) + (
        () if max_exp_avg_sq is None else (max_exp_avg_sq,))
    kwargs = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
                  decoupled=decoupled, step_size=step_size,
                  bias_correction2_sqrt=bias_correction2_sqrt)
    if _numba_ready(*arrays):
        from ._adam_numba import adam_update_numba
        adam_update_numba(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, **kwargs)
    else:
        adam_update_reference(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, **kwargs)
