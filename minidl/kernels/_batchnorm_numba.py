"""Numba twins of the batch-normalization references in ``batchnorm.py``.

One unit of work is one channel: its ``N x M`` values (``M`` contiguous positions in
each of ``N`` images) are read in three passes forward (sum, sum of squared
deviations, normalise and write ``y`` and ``x_hat``) and two backward (the two sums,
then ``dx``), where the NumPy references make about eight passes each way and
allocate temporaries.  Sums are accumulated in float64 for both dtypes.  The
``prange`` twin runs over the channels (see ``_parallel.pick``).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._parallel import check_float_array, pick

# Only reassociation, so that LLVM may split each sum over SIMD lanes (a scalar
# accumulator otherwise serialises the loop); no other fast-math flag, so NaN and
# infinity behave as in the references.
_REASSOC = {"reassoc"}


@njit(cache=True, fastmath=_REASSOC)
def _forward_channel(x, c, weight, bias, eps, use_batch_stats, mean, var, y, x_hat, invstd,
                     batch_mean, batch_var):
    n_batch, _, m = x.shape
    count = n_batch * m
    if use_batch_stats:
        s = 0.0
        for i in range(n_batch):
            for j in range(m):
                s += x[i, c, j]
        mu = s / count
        s = 0.0
        for i in range(n_batch):
            for j in range(m):
                d = x[i, c, j] - mu
                s += d * d
        sigma2 = s / count
    else:
        mu = np.float64(mean[c])
        sigma2 = np.float64(var[c])
    r = 1.0 / np.sqrt(sigma2 + eps)
    w = np.float64(weight[c])
    b = np.float64(bias[c])
    for i in range(n_batch):
        for j in range(m):
            h = (x[i, c, j] - mu) * r
            x_hat[i, c, j] = h
            y[i, c, j] = h * w + b
    invstd[c] = r
    batch_mean[c] = mu
    batch_var[c] = sigma2


@njit(cache=True)
def _forward_serial(x, weight, bias, eps, use_batch_stats, mean, var, y, x_hat, invstd,
                    batch_mean, batch_var):
    for c in range(x.shape[1]):
        _forward_channel(x, c, weight, bias, eps, use_batch_stats, mean, var, y, x_hat, invstd,
                         batch_mean, batch_var)


@njit(parallel=True, cache=True)
def _forward_parallel(x, weight, bias, eps, use_batch_stats, mean, var, y, x_hat, invstd,
                      batch_mean, batch_var):
    for c in prange(x.shape[1]):
        _forward_channel(x, c, weight, bias, eps, use_batch_stats, mean, var, y, x_hat, invstd,
                         batch_mean, batch_var)


@njit(cache=True, fastmath=_REASSOC)
def _backward_channel(dout, x_hat, c, scale, batch_stats, need_dx, dx, dweight, dbias):
    n_batch, _, m = dout.shape
    sum_d = 0.0
    sum_dh = 0.0
    for i in range(n_batch):
        for j in range(m):
            g = dout[i, c, j]
            sum_d += g
            sum_dh += g * x_hat[i, c, j]
    dbias[c] = sum_d
    dweight[c] = sum_dh
    if not need_dx:
        return
    if batch_stats:
        count = n_batch * m
        k = scale / count
        for i in range(n_batch):
            for j in range(m):
                dx[i, c, j] = k * (count * dout[i, c, j] - sum_d - x_hat[i, c, j] * sum_dh)
    else:
        for i in range(n_batch):
            for j in range(m):
                dx[i, c, j] = scale * dout[i, c, j]


@njit(cache=True)
def _backward_serial(dout, x_hat, scale, batch_stats, need_dx, dx, dweight, dbias):
    for c in range(dout.shape[1]):
        _backward_channel(dout, x_hat, c, np.float64(scale[c]), batch_stats, need_dx, dx,
                          dweight, dbias)


@njit(parallel=True, cache=True)
def _backward_parallel(dout, x_hat, scale, batch_stats, need_dx, dx, dweight, dbias):
    for c in prange(dout.shape[1]):
        _backward_channel(dout, x_hat, c, np.float64(scale[c]), batch_stats, need_dx, dx,
                          dweight, dbias)


def _per_channel(a, c, dtype, fill):
    """``a`` as a contiguous ``(C,)`` array of ``dtype``; ``fill`` everywhere when None."""
    if a is None:
        return np.full(c, fill, dtype)
    return np.ascontiguousarray(a, dtype=dtype)


def batch_norm_forward_numba(x, weight, bias, eps, mean=None, var=None):
    """Numba ``batch_norm_forward`` (``x`` of shape ``(N, C, M)``); equals the reference."""
    x = check_float_array(x, "batch_norm_forward", "x", 3)
    c = x.shape[1]
    dtype = x.dtype
    use_batch_stats = mean is None
    y = np.empty_like(x)
    x_hat = np.empty_like(x)
    invstd = np.empty(c, dtype)
    batch_mean = np.empty(c, dtype)
    batch_var = np.empty(c, dtype)
    mean = _per_channel(mean, c, dtype, 0)
    var = _per_channel(var, c, dtype, 1)
    run = pick(_forward_parallel, _forward_serial, c, 3 * x.size)
    run(x, _per_channel(weight, c, dtype, 1), _per_channel(bias, c, dtype, 0), float(eps),
        use_batch_stats, mean, var, y, x_hat, invstd, batch_mean, batch_var)
    if not use_batch_stats:
        batch_mean, batch_var = mean, var
    return y, x_hat, invstd, batch_mean, batch_var


def batch_norm_backward_numba(dout, x_hat, invstd, weight, batch_stats, need_dx=True):
    """Numba ``batch_norm_backward``; equals the reference."""
    dout = check_float_array(dout, "batch_norm_backward", "dout", 3)
    x_hat = check_float_array(x_hat, "batch_norm_backward", "x_hat", 3)
    c = dout.shape[1]
    dtype = dout.dtype
    scale = invstd if weight is None else weight * invstd
    dx = np.empty_like(dout) if need_dx else np.empty((0, c, 0), dtype)
    dweight = np.empty(c, dtype)
    dbias = np.empty(c, dtype)
    run = pick(_backward_parallel, _backward_serial, c, 3 * dout.size)
    run(dout, x_hat, np.ascontiguousarray(scale, dtype=dtype), bool(batch_stats), bool(need_dx),
        dx, dweight, dbias)
    return (dx if need_dx else None), dweight, dbias
