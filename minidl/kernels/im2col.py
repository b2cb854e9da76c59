"""im2col / col2im: turning a convolution into one matrix product, and back.

``im2col`` copies every receptive field of ``x`` (N, C, H, W) into a column:

    cols[(c*kh + i)*kw + j, n*L + oh*W_out + ow]
        = x_padded[n, c, oh*sh + i*dh, ow*sw + j*dw]          (L = H_out*W_out)

so ``cols`` has shape (C*kh*kw, N*L): one column per output pixel of every image,
and the whole batch's convolution is one matrix product ``W.reshape(O, -1) @ cols``.
(``torch.nn.functional.unfold`` gives the same numbers as (N, C*kh*kw, L).)
Padding positions read as zero.

Why one (K, N*L) matrix rather than one (K, L) block per image: a single large
GEMM is a little faster than N small ones, and much more robust -- with several
BLAS threads, each small GEMM ends in a thread synchronisation, and on a busy
machine (other processes on the cores) 64 of them per call made a convolution
~30x slower, while one large GEMM degrades gracefully.

``col2im`` is its adjoint (``torch.nn.functional.fold``): every column entry is
*added* back to the pixel it was copied from.  Receptive fields overlap, so one
pixel receives several contributions; they are accumulated with ``+=`` over
disjoint strided slices (never ``=``, which would keep only the last one, and
never ``np.add.at``, which is slow).

Each kernel has a plain NumPy twin (``*_reference``, readable, vectorised over
the batch) and a Numba twin (``*_numba``, parallel so that each thread owns the
memory it writes: whole rows of ``cols`` in im2col, whole channels or images of
the result in col2im); ``im2col`` / ``col2im`` pick Numba for NumPy arrays and
the reference for other array types (CuPy).
"""
from __future__ import annotations

import numpy as np

from .. import backend
from . import registry
from .shapes import im2col_geometry


def im2col_reference(x, kernel_size, stride=1, padding=0, dilation=1):
    """Plain NumPy im2col: (N, C, H, W) -> cols (C*kh*kw, N*H_out*W_out).

    One strided slice of the zero-padded input per kernel offset ``(i, j)``:
    the slice holds, for every output position, the pixel that offset sees.
    """
    xp = backend.xp(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), ho, wo = im2col_geometry(
        h, w, kernel_size, stride, padding, dilation)
    x_pad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = xp.empty((c * kh * kw, n * ho * wo), dtype=x.dtype)
    cols6 = cols.reshape(c, kh, kw, n, ho, wo)
    for i in range(kh):
        for j in range(kw):
            top, left = i * dh, j * dw
            window = x_pad[:, :, top:top + sh * (ho - 1) + 1:sh, left:left + sw * (wo - 1) + 1:sw]
            cols6[:, i, j] = window.transpose(1, 0, 2, 3)         # (C, N, H_out, W_out)
    return cols


def col2im_reference(cols, input_shape, kernel_size, stride=1, padding=0, dilation=1):
    """Plain NumPy col2im: cols (C*kh*kw, N*H_out*W_out) -> (N, C, H, W), summing overlaps.

    For a fixed kernel offset ``(i, j)`` the output positions map to distinct
    pixels, so each offset is one ``+=`` into a strided slice of a padded buffer;
    the padding border is cut off at the end (those entries came from zeros).
    """
    xp = backend.xp(cols)
    n, c, h, w = input_shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), ho, wo = im2col_geometry(
        h, w, kernel_size, stride, padding, dilation)
    if cols.shape != (c * kh * kw, n * ho * wo):
        raise ValueError(f"col2im: expected cols of shape {(c * kh * kw, n * ho * wo)} for "
                         f"input {tuple(input_shape)}, got {tuple(cols.shape)}")
    cols6 = cols.reshape(c, kh, kw, n, ho, wo)
    x_pad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            top, left = i * dh, j * dw
            x_pad[:, :, top:top + sh * (ho - 1) + 1:sh,
                  left:left + sw * (wo - 1) + 1:sw] += cols6[:, i, j].transpose(1, 0, 2, 3)
    return x_pad[:, :, ph:ph + h, pw:pw + w].copy()


# -- the operations (see registry.py): Numba for NumPy arrays, else the reference ------------

def _numpy_array(a, *args, **kwargs) -> bool:
    return isinstance(a, np.ndarray)


def _example_x():
    return (np.zeros((64, 32, 14, 14), np.float32), 3, 1, 1), {}


def _example_cols():
    return (np.zeros((32 * 9, 64 * 14 * 14), np.float32), (64, 32, 14, 14), 3, 1, 1), {}


im2col = registry.register(
    "im2col", im2col_reference,
    registry.numba("._im2col_numba", "im2col_numba", _numpy_array), example=_example_x,
    doc="im2col(x, kernel_size, stride=1, padding=0, dilation=1) on the route the registry "
        "picks (Numba for NumPy arrays).  See module doc.")

col2im = registry.register(
    "col2im", col2im_reference,
    registry.numba("._im2col_numba", "col2im_numba", _numpy_array), example=_example_cols,
    doc="col2im(cols, input_shape, kernel_size, stride=1, padding=0, dilation=1) on the route "
        "the registry picks (Numba for NumPy arrays).  See module doc.")
