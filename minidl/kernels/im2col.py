"""im2col / col2im: turning a convolution into one matrix product, and back.

``im2col`` copies every receptive field of ``x`` (N, C, H, W) into a column:

    cols[n, (c*kh + i)*kw + j, oh*W_out + ow]
        = x_padded[n, c, oh*sh + i*dh, ow*sw + j*dw]

so ``cols`` has shape (N, C*kh*kw, H_out*W_out) -- the layout of
``torch.nn.functional.unfold`` -- and a convolution is ``W.reshape(O, -1) @ cols[n]``.
Padding positions read as zero.

``col2im`` is its adjoint (``torch.nn.functional.fold``): every column entry is
*added* back to the pixel it was copied from.  Receptive fields overlap, so one
pixel receives several contributions; they are accumulated with ``+=`` over
disjoint strided slices (never ``=``, which would keep only the last one, and
never ``np.add.at``, which is slow).

Each kernel has a plain NumPy twin (``*_reference``, readable, vectorised over
the batch) and a Numba twin (``*_numba``, parallel over the batch so that each
thread owns whole images); ``im2col`` / ``col2im`` pick Numba for NumPy arrays and
the reference for other array types (CuPy).
"""
from __future__ import annotations

import numpy as np

from .. import backend
from .shapes import conv_output_size, pair


def _out_hw(h, w, kernel_size, stride, padding, dilation):
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (pair(kernel_size), pair(stride),
                                              pair(padding), pair(dilation))
    ho = conv_output_size(h, kh, sh, ph, dh)
    wo = conv_output_size(w, kw, sw, pw, dw)
    if ho < 1 or wo < 1:
        raise ValueError(
            f"im2col: kernel {(kh, kw)} with dilation {(dh, dw)} does not fit the input "
            f"{(h, w)} padded by {(ph, pw)} (output would be {ho}x{wo})")
    return (kh, kw), (sh, sw), (ph, pw), (dh, dw), ho, wo


def im2col_reference(x, kernel_size, stride=1, padding=0, dilation=1):
    """Plain NumPy im2col: (N, C, H, W) -> cols (N, C*kh*kw, H_out*W_out).

    One strided slice of the zero-padded input per kernel offset ``(i, j)``:
    the slice holds, for every output position, the pixel that offset sees.
    """
    xp = backend.xp(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), ho, wo = _out_hw(
        h, w, kernel_size, stride, padding, dilation)
    x_pad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = xp.empty((n, c, kh, kw, ho, wo), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            top, left = i * dh, j * dw
            cols[:, :, i, j] = x_pad[:, :, top:top + sh * (ho - 1) + 1:sh,
                                     left:left + sw * (wo - 1) + 1:sw]
    return cols.reshape(n, c * kh * kw, ho * wo)


def col2im_reference(cols, input_shape, kernel_size, stride=1, padding=0, dilation=1):
    """Plain NumPy col2im: cols (N, C*kh*kw, H_out*W_out) -> (N, C, H, W), summing overlaps.

    For a fixed kernel offset ``(i, j)`` the output positions map to distinct
    pixels, so each offset is one ``+=`` into a strided slice of a padded buffer;
    the padding border is cut off at the end (those entries came from zeros).
    """
    xp = backend.xp(cols)
    n, c, h, w = input_shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), ho, wo = _out_hw(
        h, w, kernel_size, stride, padding, dilation)
    if cols.shape != (n, c * kh * kw, ho * wo):
        raise ValueError(f"col2im: expected cols of shape {(n, c * kh * kw, ho * wo)} for "
                         f"input {tuple(input_shape)}, got {tuple(cols.shape)}")
    cols6 = cols.reshape(n, c, kh, kw, ho, wo)
    x_pad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            top, left = i * dh, j * dw
            x_pad[:, :, top:top + sh * (ho - 1) + 1:sh,
                  left:left + sw * (wo - 1) + 1:sw] += cols6[:, :, i, j]
    return x_pad[:, :, ph:ph + h, pw:pw + w].copy()


def im2col(x, kernel_size, stride=1, padding=0, dilation=1):
    """im2col on the fastest available path (Numba for NumPy arrays).  See module doc."""
    if isinstance(x, np.ndarray):
        from ._im2col_numba import im2col_numba
        return im2col_numba(x, kernel_size, stride, padding, dilation)
    return im2col_reference(x, kernel_size, stride, padding, dilation)


def col2im(cols, input_shape, kernel_size, stride=1, padding=0, dilation=1):
    """col2im on the fastest available path (Numba for NumPy arrays).  See module doc."""
    if isinstance(cols, np.ndarray):
        from ._im2col_numba import col2im_numba
        return col2im_numba(cols, input_shape, kernel_size, stride, padding, dilation)
    return col2im_reference(cols, input_shape, kernel_size, stride, padding, dilation)
