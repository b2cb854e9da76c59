"""Numba twin of ``adam_update_reference`` (see ``adam.py``): one fused loop.

The reference makes about ten passes over the parameter's memory (each NumPy
operation reads and writes whole arrays, with temporaries); this loop reads
``p, g, m, v`` once and writes ``p, m, v`` once.  Each element's arithmetic is
the reference's, operation by operation, in the arrays' dtype (the scalars are
converted to it first) and without ``fastmath``, so both twins give the same bits.

Parallel units: chunks of ``CHUNK`` consecutive elements of the flat arrays.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._parallel import pick
from .adam import flush_threshold

CHUNK = 1 << 14


@njit(cache=True)
def _adam_range(p, g, m, v, vmax, lo, hi, amsgrad, decay, wd, one_minus_beta1, beta2,
                one_minus_beta2, tiny, step_size, bc2_sqrt, eps):
    zero = tiny - tiny                       # 0 in the arrays' dtype (a literal 0 is int64)
    for i in range(lo, hi):
        pi = p[i]
        gi = g[i]
        if decay != 1:                       # decoupled weight decay (AdamW)
            pi = pi * decay
        if wd != 0:                          # coupled weight decay (Adam)
            gi = gi + wd * pi
        mi = m[i]
        mi = mi + one_minus_beta1 * (gi - mi)
        vi = v[i] * beta2
        vi = vi + one_minus_beta2 * gi * gi
        if abs(mi) < tiny:                   # float32 only (tiny = 0 for float64)
            mi = zero
        if vi < tiny:
            vi = zero
        m[i] = mi
        v[i] = vi
        if amsgrad:
            vm = vmax[i]
            if vm < vi or vi != vi:          # np.maximum: NaN wins
                vm = vi
            vmax[i] = vm
            vi = vm
        p[i] = pi - step_size * mi / (np.sqrt(vi) / bc2_sqrt + eps)


@njit(parallel=True, cache=True)
def _adam_parallel(p, g, m, v, vmax, amsgrad, decay, wd, one_minus_beta1, beta2,
                   one_minus_beta2, tiny, step_size, bc2_sqrt, eps):
    n = p.size
    for c in prange((n + CHUNK - 1) // CHUNK):
        _adam_range(p, g, m, v, vmax, c * CHUNK, min(n, (c + 1) * CHUNK), amsgrad, decay, wd,
                    one_minus_beta1, beta2, one_minus_beta2, tiny, step_size, bc2_sqrt, eps)


@njit(cache=True)
def _adam_serial(p, g, m, v, vmax, amsgrad, decay, wd, one_minus_beta1, beta2,
                 one_minus_beta2, tiny, step_size, bc2_sqrt, eps):
    _adam_range(p, g, m, v, vmax, 0, p.size, amsgrad, decay, wd, one_minus_beta1, beta2,
                one_minus_beta2, tiny, step_size, bc2_sqrt, eps)


def adam_update_numba(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, *, lr, beta1, beta2,
                      eps, weight_decay, decoupled, step_size, bias_correction2_sqrt):
    """Numba Adam/AdamW update (C-contiguous NumPy arrays of one float dtype, in place);
    equals ``adam_update_reference``."""
    dt = param.dtype.type
    flat = [a.reshape(-1) for a in (param, grad, exp_avg, exp_avg_sq)]
    amsgrad = max_exp_avg_sq is not None
    vmax = max_exp_avg_sq.reshape(-1) if amsgrad else flat[3][:0]
    decay = dt(1 - lr * weight_decay) if (decoupled and weight_decay != 0) else dt(1)
    wd = dt(weight_decay) if not decoupled else dt(0)
    run = pick(_adam_parallel, _adam_serial, -(-param.size // CHUNK), 8 * param.size)
    run(*flat, vmax, amsgrad, decay, wd, dt(1 - beta1), dt(beta2), dt(1 - beta2),
        dt(flush_threshold(param.dtype)), dt(step_size), dt(bias_correction2_sqrt), dt(eps))
