"""Numba twin of ``conv2d_direct_forward_reference`` (see ``conv_direct.py``).

One image at a time: the image is copied into a zero-padded buffer of row
length ``Wp = W + 2*pw``, so that for output row ``p`` and tap ``(i, j)`` the
inputs of the whole row -- and of all rows -- sit at one constant offset:

    acc[p*Wp + q] += W[o, c, i, j] * x_pad_flat[(c*Hp + p + i*dh)*Wp + q + j*dw]

for the flat index ``p*Wp + q`` running over ``H_out*Wp`` values (the
``Wp - W_out`` extra columns of each row are computed and thrown away).  That is
one long, branch-free loop per tap, which the compiler vectorises; taps are
taken three per pass (one load and store of ``acc`` for three products).  The
last step adds the bias while copying the valid columns into ``y``.

Parallel units: images (each owns its output planes and its buffers).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._parallel import check_float_array, pick
from .conv_direct import _check


@njit(cache=True, error_model="numpy")
def _conv_image(x, n, weight, bias, ph, pw, dh, dw, zero, x_pad, acc, y):
    """y[n] for image ``n``, using the scratch buffers ``x_pad`` (C, Hp, Wp, zero
    borders) and ``acc``; ``zero`` is 0 in the arrays' dtype."""
    c_in, h, w = x.shape[1], x.shape[2], x.shape[3]
    c_out, kh, kw = weight.shape[0], weight.shape[2], weight.shape[3]
    hp, wp = x_pad.shape[1], x_pad.shape[2]
    ho, wo = y.shape[2], y.shape[3]
    size = ho * wp
    for c in range(c_in):
        for r in range(h):
            for s in range(w):
                x_pad[c, r + ph, s + pw] = x[n, c, r, s]
    flat = x_pad.reshape(-1)
    for o in range(c_out):
        for q in range(size):
            acc[q] = zero
        for c in range(c_in):
            for i in range(kh):
                row = (c * hp + i * dh) * wp
                j = 0
                while j + 2 < kw:
                    w0, w1, w2 = weight[o, c, i, j], weight[o, c, i, j + 1], weight[o, c, i, j + 2]
                    x0 = flat[row + j * dw:row + j * dw + size]
                    x1 = flat[row + (j + 1) * dw:row + (j + 1) * dw + size]
                    x2 = flat[row + (j + 2) * dw:row + (j + 2) * dw + size]
                    for q in range(size):
                        acc[q] += w0 * x0[q] + w1 * x1[q] + w2 * x2[q]
                    j += 3
                while j < kw:
                    w0 = weight[o, c, i, j]
                    x0 = flat[row + j * dw:row + j * dw + size]
                    for q in range(size):
                        acc[q] += w0 * x0[q]
                    j += 1
        b = bias[o]
        for p in range(ho):
            for q in range(wo):
                y[n, o, p, q] = acc[p * wp + q] + b


@njit(parallel=True, cache=True, error_model="numpy")
def _conv_parallel(x, weight, bias, ph, pw, dh, dw, zero, hp, wp, y):
    for n in prange(x.shape[0]):
        x_pad = np.zeros((x.shape[1], hp, wp), x.dtype)
        acc = np.empty(y.shape[2] * wp, x.dtype)
        _conv_image(x, n, weight, bias, ph, pw, dh, dw, zero, x_pad, acc, y)


@njit(cache=True, error_model="numpy")
def _conv_serial(x, weight, bias, ph, pw, dh, dw, zero, hp, wp, y):
    x_pad = np.zeros((x.shape[1], hp, wp), x.dtype)   # borders stay zero, the
    acc = np.empty(y.shape[2] * wp, x.dtype)           # interior is rewritten per image
    for n in range(x.shape[0]):
        _conv_image(x, n, weight, bias, ph, pw, dh, dw, zero, x_pad, acc, y)


def conv2d_direct_forward_numba(x, weight, bias, padding=0, dilation=1):
    """Numba stride-1 convolution; equals ``conv2d_direct_forward_reference`` to rounding."""
    owner = "conv2d_direct_forward"
    x = check_float_array(x, owner, "x", 4)
    weight = check_float_array(weight, owner, "weight", 4)
    (ph, pw), (dh, dw), (ho, wo) = _check(x, weight, bias, padding, dilation, owner)
    if weight.dtype != x.dtype:
        raise ValueError(f"{owner}: expected weight of dtype {x.dtype}, got {weight.dtype}")
    if bias is None:
        bias = np.zeros(weight.shape[0], x.dtype)
    bias = check_float_array(bias, owner, "bias", 1).astype(x.dtype, copy=False)
    n, c_in, h, w = x.shape
    kh, kw = weight.shape[2:]
    wp = w + 2 * pw
    # rows: the padded image (H + 2*ph = H_out + (kh-1)*dh), plus one so that the
    # last row's taps, which run up to (kw-1)*dw < Wp past its end into thrown-away
    # columns, stay inside the buffer
    hp = h + 2 * ph + 1
    y = np.empty((n, weight.shape[0], ho, wo), dtype=x.dtype)
    run = pick(_conv_parallel, _conv_serial, n, y.size * c_in * kh * kw)
    run(x, weight, bias, ph, pw, dh, dw, x.dtype.type(0), hp, wp, y)
    return y
