"""2-D convolution forward and backward as two operations: the route choice for ``Conv2d``.

With ``K = C_in*kh*kw``, ``L = H_out*W_out``, ``cols = im2col(x)`` (K, N*L),
``W_mat = weight.reshape(C_out, K)`` and ``G = dL/dy`` regrouped as ``(C_out, N*L)``
(the notation of ``minidl.nn.Conv2d``)::

    forward:   Y = W_mat @ cols + b
    backward:  dL/db = G summed over its columns,  dL/dW_mat = G cols^T,
               dL/dx = col2im(W_mat^T G)

The reference route computes exactly that (``conv2d_forward_im2col`` /
``conv2d_backward_im2col``), with its own pieces -- ``im2col``, ``matmul``,
``col2im`` -- being registry operations too (Numba for NumPy arrays; all
references under ``MINIDL_KERNELS=reference``).  The fast routes, same results to
float32 rounding, never write the whole im2col matrix:

* ``implicit-gemm`` (float32, stride 1, where the vector GEMM applies:
  ``implicit_gemm_applies``): ``conv2d_direct_forward`` and ``conv2d_direct_backward``
  read the padded input in place of ``cols`` and fuse ``col2im`` into ``W_mat^T G``;
* ``direct`` (stride 1, at most ``DIRECT_MAX_IN_CHANNELS`` input channels, NumPy):
  the forward is the direct loop (``conv2d_direct_forward``: the product above has an
  inner dimension of only ``kh*kw``); backward takes the reference route.

``conv2d_forward`` returns ``(y, cache)``: the cache (a ``ConvCache``) holds what
backward needs -- the input and, when ``keep_cols`` (training), the im2col matrix --
and the route taken; the layer keeps it and hands it to ``conv2d_backward``, which
consumes the matrix (``W_mat^T G`` is written into its memory: one large
allocation less per step).  Without ``keep_cols`` (eval) only the input is kept,
backward rebuilds the matrix, and the reference forward convolves large batches in
chunks of images whose matrix stays under ``EVAL_COLS_BYTES`` (bounded inference memory).
"""
from __future__ import annotations

import numpy as np

from .. import backend
from . import registry
from .conv_direct import conv2d_direct_backward, conv2d_direct_forward, implicit_gemm_applies
from .im2col import col2im, im2col
from .products import matmul
from .shapes import conv_output_size

# Layers with at most this many input channels (and stride 1) run their forward as a
# direct convolution: im2col's GEMM has an inner dimension of only C_in*kh*kw there.
# Measured ~4x faster for 1 input channel.
DIRECT_MAX_IN_CHANNELS = 1

# Without keep_cols (eval) the batch is convolved in chunks whose im2col matrix stays
# under this size, so inference over large batches does not hold a huge matrix at once.
EVAL_COLS_BYTES = 32 * 2**20


class ConvCache:
    """What ``conv2d_backward`` needs from a forward pass (opaque to the layer)."""

    __slots__ = ("x", "stride", "padding", "dilation", "route", "cols")

    def __init__(self, x, stride, padding, dilation, route, cols=None):
        self.x, self.stride, self.padding, self.dilation = x, stride, padding, dilation
        self.route, self.cols = route, cols


def _output_hw(x, weight, stride, padding, dilation):
    return tuple(conv_output_size(size, k, s, p, d) for size, k, s, p, d in zip(
        x.shape[2:], weight.shape[2:], stride, padding, dilation))


# -- the reference route: im2col + one matrix product ---------------------------------------

def conv2d_forward_im2col(x, weight, bias, stride, padding, dilation, keep_cols=True):
    """``(y (N, C_out, H_out, W_out), cache)``: ``Y = W_mat @ im2col(x) + b`` for the batch."""
    n, c_out = x.shape[0], weight.shape[0]
    ho, wo = _output_hw(x, weight, stride, padding, dilation)
    xp = backend.xp(x)
    if keep_cols or n == 0:
        y, cols = _convolve(x, weight, bias, stride, padding, dilation)
        return (y.reshape(n, c_out, ho, wo),
                ConvCache(x, stride, padding, dilation, "im2col", cols if keep_cols else None))
    per_image = x.itemsize * x.shape[1] * weight.shape[2] * weight.shape[3] * ho * wo
    step = max(1, EVAL_COLS_BYTES // per_image)
    if step >= n:
        y = _convolve(x, weight, bias, stride, padding, dilation)[0]
    else:
        y = xp.empty((n, c_out, ho * wo), dtype=x.dtype)
        for start in range(0, n, step):
            y[start:start + step] = _convolve(x[start:start + step], weight, bias, stride,
                                              padding, dilation)[0]
    return y.reshape(n, c_out, ho, wo), ConvCache(x, stride, padding, dilation, "im2col")


def _convolve(x, weight, bias, stride, padding, dilation):
    """``(y (N, C_out, L), cols (K, N*L))`` for a checked input batch."""
    xp = backend.xp(x)
    n, c_out = x.shape[0], weight.shape[0]
    if n == 0:
        ho, wo = _output_hw(x, weight, stride, padding, dilation)
        return xp.zeros((0, c_out, ho * wo), dtype=x.dtype), None
    cols = im2col(x, weight.shape[2:], stride, padding, dilation)         # (K, N*L)
    y_mat = matmul(weight.reshape(c_out, -1), cols)                      # (C_out, N*L)
    y_mat = y_mat.reshape(c_out, n, -1).transpose(1, 0, 2)                  # (N, C_out, L) view
    y = xp.empty(y_mat.shape, dtype=x.dtype)
    if bias is None:
        y[...] = y_mat
    else:
        xp.add(y_mat, bias[:, None], out=y)                  # regroup + bias, one pass
    return y, cols


def conv2d_backward_im2col(dout, weight, cache, need_db=True, need_dx=True):
    """``(dL/dW, dL/db or None, dL/dx or None)`` from ``G``, ``cols`` and ``W_mat``."""
    x, (stride, padding, dilation) = cache.x, (cache.stride, cache.padding, cache.dilation)
    xp = backend.xp(dout)
    n, c_out = dout.shape[:2]
    if n == 0:      # sums over no samples
        return (xp.zeros_like(weight), xp.zeros(c_out, dout.dtype) if need_db else None,
                xp.zeros(x.shape, dtype=x.dtype) if need_dx else None)
    kernel_size = weight.shape[2:]
    cols = cache.cols if cache.cols is not None else im2col(x, kernel_size, stride, padding,
                                                            dilation)
    cache.cols = None                                          # backward consumes it
    g = xp.empty((c_out, dout[0, 0].size * n), dtype=dout.dtype)
    xp.copyto(g.reshape(c_out, n, -1), dout.reshape(n, c_out, -1).transpose(1, 0, 2))
    db = g.sum(axis=1) if need_db else None                    # G is (C_out, N*L), like Y
    dw = matmul(g, cols.T).reshape(weight.shape)
    if not need_dx:
        return dw, db, None
    # cols (made here or by the forward, never handed out) is no longer needed: dL/dcols
    # takes its memory instead of a second matrix of the same size
    dcols = matmul(weight.reshape(c_out, -1).T, g, out=cols)                 # (K, N*L)
    return dw, db, col2im(dcols, x.shape, kernel_size, stride, padding, dilation)


# -- the fast routes --------------------------------------------------------------------------

def _implicit_applies(x, weight, bias, stride, padding, dilation, keep_cols=True) -> bool:
    return (stride == (1, 1) and x.shape[0] > 0
            and implicit_gemm_applies(x, weight.shape, weight.dtype))


def conv2d_forward_implicit(x, weight, bias, stride, padding, dilation, keep_cols=True):
    """The implicit GEMM: no im2col matrix, forward or backward; only the input is kept."""
    y = conv2d_direct_forward(x, weight, bias, padding, dilation)
    return y, ConvCache(x, stride, padding, dilation, "implicit-gemm")


def _direct_applies(x, weight, bias, stride, padding, dilation, keep_cols=True) -> bool:
    return (x.shape[1] <= DIRECT_MAX_IN_CHANNELS and stride == (1, 1) and x.shape[0] > 0
            and isinstance(x, np.ndarray))


def conv2d_forward_direct(x, weight, bias, stride, padding, dilation, keep_cols=True):
    """The direct loop; in training the im2col matrix is still made, for dL/dW = G cols^T."""
    cols = im2col(x, weight.shape[2:], stride, padding, dilation) if keep_cols else None
    y = conv2d_direct_forward(x, weight, bias, padding, dilation)
    return y, ConvCache(x, stride, padding, dilation, "direct", cols)


def _implicit_backward_applies(dout, weight, cache, need_db=True, need_dx=True) -> bool:
    return cache.route == "implicit-gemm"


def conv2d_backward_implicit(dout, weight, cache, need_db=True, need_dx=True):
    """All three gradients by the implicit GEMM, in one pass over ``dout``."""
    dw, db, dx = conv2d_direct_backward(cache.x, dout, weight, cache.padding, cache.dilation,
                                        need_dx)
    return dw, db if need_db else None, dx


def _example(keep_cols=True):
    x = np.zeros((64, 32, 14, 14), np.float32)
    w = np.zeros((64, 32, 3, 3), np.float32)
    return (x, w, np.zeros(64, np.float32), (1, 1), (1, 1), (1, 1), keep_cols), {}


def _example_backward():
    (x, w, b, *geometry, _), _ = _example()
    route = conv2d_forward.pick(x, w, b, *geometry)
    cache = ConvCache(x, *geometry, "im2col" if route is None else route.name)
    return (np.zeros((64, 64, 14, 14), np.float32), w, cache), {}


conv2d_forward = registry.register(
    "conv2d_forward", conv2d_forward_im2col,
    registry.Route("implicit-gemm", ".conv", "conv2d_forward_implicit", _implicit_applies),
    registry.Route("direct", ".conv", "conv2d_forward_direct", _direct_applies),
    example=_example,
    doc="conv2d_forward(x, weight, bias, stride, padding, dilation, keep_cols=True) -> "
        "(y, cache): the convolution on the route the registry picks (see "
        "minidl/kernels/conv.py).")

conv2d_backward = registry.register(
    "conv2d_backward", conv2d_backward_im2col,
    registry.Route("implicit-gemm", ".conv", "conv2d_backward_implicit",
                   _implicit_backward_applies),
    example=_example_backward,
    doc="conv2d_backward(dout, weight, cache, need_db=True, need_dx=True) -> (dW, db, dx): "
        "the gradients of the forward that made ``cache``, on the route the registry picks.")
