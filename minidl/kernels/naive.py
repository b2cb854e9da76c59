"""Naive loop oracles: every multiply-add of each kernel written out, to prove the kernels right.

These are the slowest and plainest versions of the operations in ``minidl.kernels``:
Python loops over every index, one scalar at a time, straight from the formulas in the
layers' docstrings.  A learner can check each line against the math; the tests compare
the references (``*_reference``) and the fast twins with them on small shapes
(``tests/minidl/kernels/test_kernels.py``, ``tests/minidl/kernels/test_registry_naive.py``),
and ``python -m benchmarks.kernels`` (the package ``benchmarks/kernels/``) times them as
its ``naive`` column.  They are never used for training (10^3-10^5 times slower).

Square kernels, one stride, padding and dilation per axis pair, for readability; they
follow the same conventions as ``minidl.kernels`` (tie rules, index layouts), except
that ``im2col_naive`` returns one ``(C*k*k, H_out*W_out)`` block per image, shape
``(N, C*k*k, L)`` (``torch.nn.functional.unfold``'s layout), where ``im2col`` puts the
whole batch side by side as ``(C*k*k, N*L)``.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["im2col_naive", "col2im_naive", "conv2d_forward_naive", "conv2d_backward_naive",
           "max_pool2d_forward_naive", "max_pool2d_backward_naive", "avg_pool2d_forward_naive",
           "avg_pool2d_backward_naive", "linear_forward_naive", "linear_backward_naive",
           "adam_update_naive"]


def im2col_naive(x, k, stride, pad, dil=1):
    """x (N, C, H, W) -> cols (N, C*k*k, Ho*Wo); zero where the window reads padding."""
    n, c, h, w = x.shape
    ho = (h + 2 * pad - dil * (k - 1) - 1) // stride + 1
    wo = (w + 2 * pad - dil * (k - 1) - 1) // stride + 1
    cols = np.zeros((n, c * k * k, ho * wo), dtype=x.dtype)
    for b in range(n):
        for ch in range(c):
            for i in range(k):
                for j in range(k):
                    row = (ch * k + i) * k + j
                    for oh in range(ho):
                        for ow in range(wo):
                            ih = oh * stride - pad + i * dil
                            iw = ow * stride - pad + j * dil
                            if 0 <= ih < h and 0 <= iw < w:
                                cols[b, row, oh * wo + ow] = x[b, ch, ih, iw]
    return cols


def col2im_naive(cols, input_shape, k, stride, pad, dil=1):
    """The adjoint of im2col_naive: every column entry is added back to its pixel."""
    n, c, h, w = input_shape
    ho = (h + 2 * pad - dil * (k - 1) - 1) // stride + 1
    wo = (w + 2 * pad - dil * (k - 1) - 1) // stride + 1
    dx = np.zeros(input_shape, dtype=cols.dtype)
    for b in range(n):
        for ch in range(c):
            for i in range(k):
                for j in range(k):
                    row = (ch * k + i) * k + j
                    for oh in range(ho):
                        for ow in range(wo):
                            ih = oh * stride - pad + i * dil
                            iw = ow * stride - pad + j * dil
                            if 0 <= ih < h and 0 <= iw < w:
                                dx[b, ch, ih, iw] += cols[b, row, oh * wo + ow]
    return dx


def conv2d_forward_naive(x, weight, bias, stride, pad):
    """out[n, o, oh, ow] = bias[o] + sum_{c,i,j} weight[o,c,i,j] * x_pad[n, c, oh*s+i, ow*s+j]."""
    n, c, h, w = x.shape
    o_ch, _, k, _ = weight.shape
    ho = (h + 2 * pad - k) // stride + 1
    wo = (w + 2 * pad - k) // stride + 1
    out = np.zeros((n, o_ch, ho, wo), dtype=x.dtype)
    for b in range(n):
        for o in range(o_ch):
            for oh in range(ho):
                for ow in range(wo):
                    acc = bias[o]
                    for ch in range(c):
                        for i in range(k):
                            for j in range(k):
                                ih, iw = oh * stride - pad + i, ow * stride - pad + j
                                if 0 <= ih < h and 0 <= iw < w:
                                    acc += weight[o, ch, i, j] * x[b, ch, ih, iw]
                    out[b, o, oh, ow] = acc
    return out


def conv2d_backward_naive(x, weight, dout, stride, pad):
    """dx, dweight, dbias of the convolution above, by the chain rule, entry by entry."""
    n, c, h, w = x.shape
    o_ch, _, k, _ = weight.shape
    _, _, ho, wo = dout.shape
    dx = np.zeros_like(x)
    dw = np.zeros_like(weight)
    db = np.zeros(o_ch, dtype=x.dtype)
    for b in range(n):
        for o in range(o_ch):
            for oh in range(ho):
                for ow in range(wo):
                    g = dout[b, o, oh, ow]
                    db[o] += g
                    for ch in range(c):
                        for i in range(k):
                            for j in range(k):
                                ih, iw = oh * stride - pad + i, ow * stride - pad + j
                                if 0 <= ih < h and 0 <= iw < w:
                                    dw[o, ch, i, j] += g * x[b, ch, ih, iw]
                                    dx[b, ch, ih, iw] += g * weight[o, ch, i, j]
    return dx, dw, db


def max_pool2d_forward_naive(x, k, stride):
    """Window max, scanning row-major: the first maximum wins ties, NaN wins over numbers."""
    n, c, h, w = x.shape
    ho, wo = (h - k) // stride + 1, (w - k) // stride + 1
    out = np.empty((n, c, ho, wo), dtype=x.dtype)
    idx = np.empty((n, c, ho, wo), dtype=np.int64)
    for b in range(n):
        for ch in range(c):
            for oh in range(ho):
                for ow in range(wo):
                    best, best_i = -math.inf, -1
                    for i in range(k):
                        for j in range(k):
                            ih, iw = oh * stride + i, ow * stride + j
                            v = x[b, ch, ih, iw]
                            if best_i < 0 or v > best or math.isnan(v):
                                best, best_i = v, ih * w + iw
                    out[b, ch, oh, ow] = best
                    idx[b, ch, oh, ow] = best_i
    return out, idx


def max_pool2d_backward_naive(dout, idx, input_shape):
    """Each output gradient goes to the input position that won its window."""
    n, c, h, w = input_shape
    dx = np.zeros(input_shape, dtype=dout.dtype)
    for b in range(n):
        for ch in range(c):
            for oh in range(dout.shape[2]):
                for ow in range(dout.shape[3]):
                    p = idx[b, ch, oh, ow]
                    dx[b, ch, p // w, p % w] += dout[b, ch, oh, ow]
    return dx


def avg_pool2d_forward_naive(x, k, stride):
    """Window mean (no padding)."""
    n, c, h, w = x.shape
    ho, wo = (h - k) // stride + 1, (w - k) // stride + 1
    out = np.empty((n, c, ho, wo), dtype=x.dtype)
    for b in range(n):
        for ch in range(c):
            for oh in range(ho):
                for ow in range(wo):
                    s = 0.0
                    for i in range(k):
                        for j in range(k):
                            s += x[b, ch, oh * stride + i, ow * stride + j]
                    out[b, ch, oh, ow] = s / (k * k)
    return out


def avg_pool2d_backward_naive(dout, input_shape, k, stride):
    """Each window hands dout / (k*k) to each of its positions."""
    dx = np.zeros(input_shape, dtype=dout.dtype)
    n, c, ho, wo = dout.shape
    for b in range(n):
        for ch in range(c):
            for oh in range(ho):
                for ow in range(wo):
                    g = dout[b, ch, oh, ow] / (k * k)
                    for i in range(k):
                        for j in range(k):
                            dx[b, ch, oh * stride + i, ow * stride + j] += g
    return dx


def linear_forward_naive(x, weight, bias):
    """y[n, o] = bias[o] + sum_i x[n, i] * weight[o, i]."""
    n, d = x.shape
    o_f = weight.shape[0]
    y = np.empty((n, o_f), dtype=x.dtype)
    for b in range(n):
        for o in range(o_f):
            acc = bias[o]
            for i in range(d):
                acc += x[b, i] * weight[o, i]
            y[b, o] = acc
    return y


def linear_backward_naive(x, weight, dout):
    """dx = dout W, dW = dout^T x, db = sum over the batch of dout."""
    n, d = x.shape
    o_f = weight.shape[0]
    dx = np.zeros_like(x)
    dw = np.zeros_like(weight)
    db = np.zeros(o_f, dtype=x.dtype)
    for b in range(n):
        for o in range(o_f):
            g = dout[b, o]
            db[o] += g
            for i in range(d):
                dx[b, i] += g * weight[o, i]
                dw[o, i] += g * x[b, i]
    return dx, dw, db


def adam_update_naive(params, grads, ms, vs, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8):
    """One Adam step, element by element (torch's formula and order of operations)."""
    step_size = lr / (1 - beta1 ** step)
    bc2_sqrt = math.sqrt(1 - beta2 ** step)
    for p, g, m, v in zip(params, grads, ms, vs):
        pf, gf, mf, vf = p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1)
        for i in range(pf.size):
            mf[i] += (1 - beta1) * (gf[i] - mf[i])
            vf[i] = beta2 * vf[i] + (1 - beta2) * gf[i] * gf[i]
            pf[i] -= step_size * mf[i] / (math.sqrt(vf[i]) / bc2_sqrt + eps)
