"""Numba twins of the layer-normalization references in ``layernorm.py``.

One unit of work is one row of ``K`` contiguous values: three passes forward (sum, sum
of squared deviations, normalise and write ``y`` and ``x_hat``) and two backward (the
two row sums, then ``dx``), where the NumPy references make about eight passes each way
and allocate temporaries.  Sums are accumulated in float64 for both dtypes.  The
parameter gradients are sums over the rows (columns of the array): they are NumPy's
reductions, as in the reference.  The ``prange`` twin runs over the rows (see
``_parallel.pick``).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._parallel import check_float_array, pick

# Only reassociation, so that LLVM may split each sum over SIMD lanes; no other fast-math
# flag, so NaN and infinity behave as in the references.
_REASSOC = {"reassoc"}


@njit(cache=True, fastmath=_REASSOC)
def _forward_row(x, r, weight, bias, eps, y, x_hat, invstd):
    k = x.shape[1]
    s = 0.0
    for j in range(k):
        s += x[r, j]
    mu = s / k
    s = 0.0
    for j in range(k):
        d = x[r, j] - mu
        s += d * d
    rs = 1.0 / np.sqrt(s / k + eps)
    for j in range(k):
        h = (x[r, j] - mu) * rs
        x_hat[r, j] = h
        if weight.size:
            h = h * weight[j]
        if bias.size:
            h = h + bias[j]
        y[r, j] = h
    invstd[r, 0] = rs


@njit(cache=True)
def _forward_serial(x, weight, bias, eps, y, x_hat, invstd):
    for r in range(x.shape[0]):
        _forward_row(x, r, weight, bias, eps, y, x_hat, invstd)


@njit(parallel=True, cache=True)
def _forward_parallel(x, weight, bias, eps, y, x_hat, invstd):
    for r in prange(x.shape[0]):
        _forward_row(x, r, weight, bias, eps, y, x_hat, invstd)


@njit(cache=True, fastmath=_REASSOC)
def _backward_row(dout, x_hat, r, invstd, weight, dx):
    k = dout.shape[1]
    sum_g = 0.0
    sum_gh = 0.0
    for j in range(k):
        g = dout[r, j] * weight[j] if weight.size else dout[r, j]
        sum_g += g
        sum_gh += g * x_hat[r, j]
    mean_g = sum_g / k
    mean_gh = sum_gh / k
    rs = np.float64(invstd[r, 0])
    for j in range(k):
        g = dout[r, j] * weight[j] if weight.size else dout[r, j]
        dx[r, j] = rs * (g - mean_g - x_hat[r, j] * mean_gh)


@njit(cache=True)
def _backward_serial(dout, x_hat, invstd, weight, dx):
    for r in range(dout.shape[0]):
        _backward_row(dout, x_hat, r, invstd, weight, dx)


@njit(parallel=True, cache=True)
def _backward_parallel(dout, x_hat, invstd, weight, dx):
    for r in prange(dout.shape[0]):
        _backward_row(dout, x_hat, r, invstd, weight, dx)


def _per_column(a, dtype):
    """``a`` as a contiguous ``(K,)`` array of ``dtype``; an empty array when None."""
    return np.empty(0, dtype) if a is None else np.ascontiguousarray(a, dtype=dtype)


def layer_norm_forward_numba(x, weight, bias, eps):
    """Numba ``layer_norm_forward`` (``x`` of shape ``(R, K)``); equals the reference to
    rounding."""
    x = check_float_array(x, "layer_norm_forward", "x", 2)
    dtype = x.dtype
    y = np.empty_like(x)
    x_hat = np.empty_like(x)
    invstd = np.empty((x.shape[0], 1), dtype)
    run = pick(_forward_parallel, _forward_serial, x.shape[0], 3 * x.size)
    run(x, _per_column(weight, dtype), _per_column(bias, dtype), float(eps), y, x_hat, invstd)
    return y, x_hat, invstd


def layer_norm_backward_numba(dout, x_hat, invstd, weight, need_dx=True):
    """Numba ``layer_norm_backward``; equals the reference to rounding."""
    dout = check_float_array(dout, "layer_norm_backward", "dout", 2)
    x_hat = check_float_array(x_hat, "layer_norm_backward", "x_hat", 2)
    dbias = dout.sum(axis=0)
    dweight = np.einsum("rk,rk->k", dout, x_hat)
    if not need_dx:
        return None, dweight, dbias
    dx = np.empty_like(dout)
    run = pick(_backward_parallel, _backward_serial, dout.shape[0], 3 * dout.size)
    run(dout, x_hat, np.ascontiguousarray(invstd, dtype=dout.dtype).reshape(-1, 1),
        _per_column(weight, dout.dtype), dx)
    return dx, dweight, dbias
