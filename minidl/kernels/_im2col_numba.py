"""Numba twins of ``im2col_reference`` / ``col2im_reference`` (see ``im2col.py``).

Per image, for each (channel, kernel offset) the valid output range along each
axis is computed once, so the innermost loop is a branch-free strided copy
(``im2col``) or accumulation (``col2im``) along one output row.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._parallel import check_float_array, pick
from .im2col import _out_hw


@njit(cache=True)
def _valid_range(n_out, stride, offset, size):
    """Output indices ``o`` in [lo, hi) with ``0 <= o*stride + offset < size``."""
    lo = 0 if offset >= 0 else (-offset + stride - 1) // stride
    last = size - 1 - offset
    hi = 0 if last < 0 else min(n_out, last // stride + 1)
    return lo, max(lo, hi)


@njit(cache=True)
def _im2col_image(x, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, cols):
    """x (C, H, W) -> cols (C*kh*kw, ho*wo) for one image."""
    n_chan, h, w = x.shape
    for c in range(n_chan):
        for i in range(kh):
            oh_lo, oh_hi = _valid_range(ho, sh, i * dh - ph, h)
            for j in range(kw):
                ow_lo, ow_hi = _valid_range(wo, sw, j * dw - pw, w)
                row = (c * kh + i) * kw + j
                for oh in range(ho):
                    base = oh * wo
                    if oh < oh_lo or oh >= oh_hi:
                        for ow in range(wo):
                            cols[row, base + ow] = 0
                        continue
                    ih = oh * sh + i * dh - ph
                    for ow in range(ow_lo):
                        cols[row, base + ow] = 0
                    iw0 = j * dw - pw
                    for ow in range(ow_lo, ow_hi):
                        cols[row, base + ow] = x[c, ih, ow * sw + iw0]
                    for ow in range(ow_hi, wo):
                        cols[row, base + ow] = 0


@njit(cache=True)
def _col2im_image(cols, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, dx):
    """cols (C*kh*kw, ho*wo) -> dx (C, H, W) for one image, accumulating overlaps."""
    n_chan, h, w = dx.shape
    dx[...] = 0
    for c in range(n_chan):
        for i in range(kh):
            oh_lo, oh_hi = _valid_range(ho, sh, i * dh - ph, h)
            for j in range(kw):
                ow_lo, ow_hi = _valid_range(wo, sw, j * dw - pw, w)
                row = (c * kh + i) * kw + j
                iw0 = j * dw - pw
                for oh in range(oh_lo, oh_hi):
                    ih = oh * sh + i * dh - ph
                    base = oh * wo
                    for ow in range(ow_lo, ow_hi):
                        dx[c, ih, ow * sw + iw0] += cols[row, base + ow]


@njit(parallel=True, cache=True)
def _im2col_parallel(x, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, cols):
    for n in prange(x.shape[0]):
        _im2col_image(x[n], kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, cols[n])


@njit(cache=True)
def _im2col_serial(x, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, cols):
    for n in range(x.shape[0]):
        _im2col_image(x[n], kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, cols[n])


@njit(parallel=True, cache=True)
def _col2im_parallel(cols, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, dx):
    for n in prange(dx.shape[0]):
        _col2im_image(cols[n], kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, dx[n])


@njit(cache=True)
def _col2im_serial(cols, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, dx):
    for n in range(dx.shape[0]):
        _col2im_image(cols[n], kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, dx[n])


def im2col_numba(x, kernel_size, stride=1, padding=0, dilation=1):
    """Numba im2col: (N, C, H, W) -> (N, C*kh*kw, H_out*W_out); equals ``im2col_reference``."""
    x = check_float_array(x, "im2col", "x", 4)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), ho, wo = _out_hw(
        h, w, kernel_size, stride, padding, dilation)
    cols = np.empty((n, c * kh * kw, ho * wo), dtype=x.dtype)
    run = pick(_im2col_parallel, _im2col_serial, n, cols.size)
    run(x, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, cols)
    return cols


def col2im_numba(cols, input_shape, kernel_size, stride=1, padding=0, dilation=1):
    """Numba col2im: (N, C*kh*kw, H_out*W_out) -> (N, C, H, W); equals ``col2im_reference``."""
    cols = check_float_array(cols, "col2im", "cols", 3)
    n, c, h, w = (int(v) for v in input_shape)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), ho, wo = _out_hw(
        h, w, kernel_size, stride, padding, dilation)
    if cols.shape != (n, c * kh * kw, ho * wo):
        raise ValueError(f"col2im: expected cols of shape {(n, c * kh * kw, ho * wo)} for "
                         f"input {(n, c, h, w)}, got {tuple(cols.shape)}")
    dx = np.empty((n, c, h, w), dtype=cols.dtype)
    run = pick(_col2im_parallel, _col2im_serial, n, cols.size)
    run(cols, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, dx)
    return dx
