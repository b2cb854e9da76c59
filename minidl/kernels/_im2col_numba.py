"""Numba twins of ``im2col_reference`` / ``col2im_reference`` (see ``im2col.py``).

``cols`` is (C*kh*kw, N*L).  For one row ``k = (c, i, j)`` and one image, the
valid output range along each axis is computed once, so the innermost loop is
a branch-free strided copy (im2col) or accumulation (col2im) along an output row.

Parallel units, each owning what it writes (no two threads touch one element):

* im2col: rows ``k`` of ``cols``, each filled for every image in order (a long
  sequential write; the channel's planes it reads stay in cache).
* col2im: channels ``c`` of the result when there are at least two (they read
  their ``kh*kw`` rows sequentially), else images (one-channel inputs).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._parallel import check_float_array, pick
from .shapes import im2col_geometry

# Rows at least this wide take the "same width" copy (_im2col_row_same_width).  Measured
# on the development machine: 1.35x faster than per-row copies for 28-wide rows (the lab
# CNNs' first layer), 1.2x slower for 14-wide rows (their second layer).
SAME_WIDTH_MIN = 16


@njit(cache=True)
def _valid_range(n_out, stride, offset, size):
    """Output indices ``o`` in [lo, hi) with ``0 <= o*stride + offset < size``."""
    lo = 0 if offset >= 0 else (-offset + stride - 1) // stride
    last = size - 1 - offset
    hi = 0 if last < 0 else min(n_out, last // stride + 1)
    return lo, max(lo, hi)


@njit(cache=True)
def _im2col_row_same_width(x, c, ih0, iw0, oh_lo, oh_hi, ow_lo, ow_hi, wo, row):
    """``_im2col_row`` for stride 1 with ``W_out == W`` ("same" width, the usual padding).

    Then output pixel ``(oh, ow)`` reads input pixel ``(oh + ih0, ow + iw0)``: in the
    flattened planes, a constant shift ``ih0*W + iw0``.  So the valid rows are one
    long contiguous copy (vectorised), after which the few entries that the shift
    wrapped onto the neighbouring row (columns outside ``[ow_lo, ow_hi)``) and the
    rows outside ``[oh_lo, oh_hi)`` are set to zero.
    """
    n_img = x.shape[0]
    size = row.shape[0] // n_img
    shift = ih0 * wo + iw0
    first = oh_lo * wo + ow_lo                  # [first, last): source inside the plane
    last = (oh_hi - 1) * wo + ow_hi
    for n in range(n_img):
        seg = n * size
        plane = x[n, c].reshape(-1)
        out = row[seg:seg + size]
        for q in range(first):
            out[q] = 0
        if last > first:
            dst = out[first:last]
            src = plane[first + shift:last + shift]
            for t in range(last - first):
                dst[t] = src[t]
        for q in range(max(first, last), size):
            out[q] = 0
        for oh in range(oh_lo, oh_hi):
            for ow in range(ow_lo):
                out[oh * wo + ow] = 0
            for ow in range(ow_hi, wo):
                out[oh * wo + ow] = 0


@njit(cache=True)
def _im2col_row_contiguous(x, c, sh, ih0, iw0, oh_lo, oh_hi, ow_lo, ow_hi, ho, wo, row):
    """``_im2col_row`` for horizontal stride 1: each output row reads a contiguous run
    of an input row (copied through slices, which the compiler vectorises)."""
    n_img = x.shape[0]
    size = ho * wo
    for n in range(n_img):
        seg = n * size
        for q in range(seg, seg + oh_lo * wo):
            row[q] = 0
        for oh in range(oh_lo, oh_hi):
            base = seg + oh * wo
            for ow in range(ow_lo):
                row[base + ow] = 0
            dst = row[base + ow_lo:base + ow_hi]
            src = x[n, c, oh * sh + ih0, ow_lo + iw0:ow_hi + iw0]
            for t in range(ow_hi - ow_lo):
                dst[t] = src[t]
            for ow in range(ow_hi, wo):
                row[base + ow] = 0
        for q in range(seg + oh_hi * wo, seg + size):
            row[q] = 0


@njit(cache=True)
def _im2col_row(x, k, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, row):
    """Fill ``row`` (N*L,) = row ``k`` of cols, image after image."""
    n_img, _, h, w = x.shape
    c, i, j = k // (kh * kw), (k // kw) % kh, k % kw
    oh_lo, oh_hi = _valid_range(ho, sh, i * dh - ph, h)
    ow_lo, ow_hi = _valid_range(wo, sw, j * dw - pw, w)
    iw0 = j * dw - pw
    size = ho * wo
    if sh == 1 and sw == 1 and wo == w and wo >= SAME_WIDTH_MIN:
        _im2col_row_same_width(x, c, i * dh - ph, iw0, oh_lo, oh_hi, ow_lo, ow_hi, wo, row)
        return
    if sw == 1:
        _im2col_row_contiguous(x, c, sh, i * dh - ph, iw0, oh_lo, oh_hi, ow_lo, ow_hi, ho, wo,
                               row)
        return
    for n in range(n_img):
        seg = n * size
        for q in range(seg, seg + oh_lo * wo):
            row[q] = 0
        for oh in range(oh_lo, oh_hi):
            base = seg + oh * wo
            ih = oh * sh + i * dh - ph
            for ow in range(ow_lo):
                row[base + ow] = 0
            for ow in range(ow_lo, ow_hi):
                row[base + ow] = x[n, c, ih, ow * sw + iw0]
            for ow in range(ow_hi, wo):
                row[base + ow] = 0
        for q in range(seg + oh_hi * wo, seg + size):
            row[q] = 0


@njit(cache=True)
def _col2im_plane(cols, n, c, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, dx):
    """dx[n, c] = sum of the entries of rows (c, i, j) belonging to image ``n``."""
    h, w = dx.shape[2], dx.shape[3]
    size = ho * wo
    dx[n, c] = 0
    for i in range(kh):
        oh_lo, oh_hi = _valid_range(ho, sh, i * dh - ph, h)
        for j in range(kw):
            ow_lo, ow_hi = _valid_range(wo, sw, j * dw - pw, w)
            row = cols[(c * kh + i) * kw + j]
            iw0 = j * dw - pw
            for oh in range(oh_lo, oh_hi):
                ih = oh * sh + i * dh - ph
                base = n * size + oh * wo
                if sw == 1:     # contiguous runs, as in im2col
                    dst = dx[n, c, ih, ow_lo + iw0:ow_hi + iw0]
                    src = row[base + ow_lo:base + ow_hi]
                    for t in range(ow_hi - ow_lo):
                        dst[t] += src[t]
                else:
                    for ow in range(ow_lo, ow_hi):
                        dx[n, c, ih, ow * sw + iw0] += row[base + ow]


@njit(parallel=True, cache=True)
def _im2col_parallel(x, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, cols):
    for k in prange(cols.shape[0]):
        _im2col_row(x, k, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, cols[k])


@njit(cache=True)
def _im2col_serial(x, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, cols):
    for k in range(cols.shape[0]):
        _im2col_row(x, k, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, cols[k])


@njit(parallel=True, cache=True)
def _col2im_parallel_channels(cols, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, dx):
    for c in prange(dx.shape[1]):
        for n in range(dx.shape[0]):
            _col2im_plane(cols, n, c, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, dx)


@njit(parallel=True, cache=True)
def _col2im_parallel_images(cols, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, dx):
    for n in prange(dx.shape[0]):
        for c in range(dx.shape[1]):
            _col2im_plane(cols, n, c, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, dx)


@njit(cache=True)
def _col2im_serial(cols, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, dx):
    for c in range(dx.shape[1]):
        for n in range(dx.shape[0]):
            _col2im_plane(cols, n, c, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, dx)


def im2col_numba(x, kernel_size, stride=1, padding=0, dilation=1):
    """Numba im2col: (N, C, H, W) -> (C*kh*kw, N*H_out*W_out); equals ``im2col_reference``."""
    x = check_float_array(x, "im2col", "x", 4)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), ho, wo = im2col_geometry(
        h, w, kernel_size, stride, padding, dilation)
    cols = np.empty((c * kh * kw, n * ho * wo), dtype=x.dtype)
    run = pick(_im2col_parallel, _im2col_serial, cols.shape[0], cols.size)
    run(x, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, cols)
    return cols


def col2im_numba(cols, input_shape, kernel_size, stride=1, padding=0, dilation=1):
    """Numba col2im: (C*kh*kw, N*H_out*W_out) -> (N, C, H, W); equals ``col2im_reference``."""
    cols = check_float_array(cols, "col2im", "cols", 2)
    n, c, h, w = (int(v) for v in input_shape)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), ho, wo = im2col_geometry(
        h, w, kernel_size, stride, padding, dilation)
    if cols.shape != (c * kh * kw, n * ho * wo):
        raise ValueError(f"col2im: expected cols of shape {(c * kh * kw, n * ho * wo)} for "
                         f"input {(n, c, h, w)}, got {tuple(cols.shape)}")
    dx = np.empty((n, c, h, w), dtype=cols.dtype)
    if c >= 2:
        run = pick(_col2im_parallel_channels, _col2im_serial, c, cols.size)
    else:
        run = pick(_col2im_parallel_images, _col2im_serial, n, cols.size)
    run(cols, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo, dx)
    return dx
