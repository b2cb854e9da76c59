"""Stride-1 2-D convolution computed without an im2col matrix: forward and both gradients.

    y[n, o, p, q]  = b[o] + sum_{c, i, j} W[o, c, i, j] * x_pad[n, c, p + i*dh, q + j*dw]
    dW[o, c, i, j] = sum_{n, p, q} dy[n, o, p, q] * x_pad[n, c, p + i*dh, q + j*dw]
    dx_pad[n, c, p + i*dh, q + j*dw] += sum_o W[o, c, i, j] * dy[n, o, p, q]

with ``x_pad`` the input zero-padded by ``(ph, pw)`` (``dx`` is ``dx_pad`` with the
padding cut off); output size ``H_out = H + 2*ph - dh*(kh-1)`` (``W_out`` likewise).
Only stride 1.  These are the products of ``Conv2d``'s docstring (``W_mat @ cols``,
``G cols^T`` and ``col2im(W_mat^T G)``) with the im2col matrix never written.

Why: im2col writes ``C*kh*kw`` copies of the input (14 MB for the lab CNN's second
layer at batch 64), the products read them back, and col2im adds a same-sized matrix
back into the image: on the development machine these copies cost as much as the
products themselves.  For a first layer with one input channel the products are also
thin (inner dimension 9 or 25), so im2col + GEMM runs at memory speed.

Twins: ``*_reference`` (NumPy, vectorised over batch and channels, one step per kernel
tap; also CuPy) and ``*_numba`` (``_conv_direct_numba.py``): for float32 where the vector
micro-kernels apply (AVX-512 or AVX2: ``gemm.implicit_gemm_applies``), an *implicit
GEMM* -- the micro-kernels read shifted windows of the padded image in place of im2col
rows, and add their input gradient tiles straight into a padded image; otherwise
(forward only) a vectorised loop over taps.  The dispatchers (``conv2d_direct_forward`` / ``_weight_grad`` /
``_input_grad``) take the Numba twin where it applies, else the reference.  The twins
sum the same products in other orders, so they agree to rounding, not bits.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from . import registry
from .gemm import implicit_gemm_applies
from .shapes import (direct_conv_geometry, direct_conv_grad_geometry,  # noqa: F401
                     direct_output_hw)


def conv2d_direct_forward_reference(x, weight, bias, padding=0, dilation=1):
    """Plain NumPy stride-1 convolution: (N, C, H, W) -> (N, O, H_out, W_out).

    For each kernel tap ``(i, j)``: the shifted window of the padded input
    ``(N, C, H_out, W_out)`` times the tap's ``(O, C)`` weights, summed over ``C``.
    """
    xp = backend.xp(x)
    (ph, pw), (dh, dw), (ho, wo) = direct_conv_geometry(x, weight, bias, padding, dilation,
                                                        "conv2d_direct_forward")
    kh, kw = weight.shape[2:]
    x_pad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = xp.zeros((x.shape[0], weight.shape[0], ho, wo), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            window = x_pad[:, :, i * dh:i * dh + ho, j * dw:j * dw + wo]
            y += xp.einsum("oc,nchw->nohw", weight[:, :, i, j], window)
    if bias is not None:
        y += bias[None, :, None, None]
    return y


def conv2d_direct_weight_grad_reference(x, dout, weight_shape, padding=0, dilation=1):
    """Plain NumPy dL/dW of a stride-1 convolution: (O, C, kh, kw).

    ``dW[o, c, i, j] = sum_{n, p, q} dout[n, o, p, q] * x_pad[n, c, p + i*dh, q + j*dw]``:
    for each tap, the shifted window of the padded input against ``dout``.
    """
    xp = backend.xp(x)
    (ph, pw), (dh, dw), (ho, wo) = direct_conv_grad_geometry(x.shape, dout.shape, weight_shape,
                                                             padding, dilation,
                                                             "conv2d_direct_weight_grad")
    kh, kw = weight_shape[2:]
    x_pad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dw_ = xp.empty(tuple(weight_shape), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            window = x_pad[:, :, i * dh:i * dh + ho, j * dw:j * dw + wo]
            dw_[:, :, i, j] = xp.einsum("nohw,nchw->oc", dout, window)
    return dw_


def conv2d_direct_input_grad_reference(dout, weight, input_shape, padding=0, dilation=1):
    """Plain NumPy dL/dx of a stride-1 convolution: (N, C, H, W).

    Each tap hands ``W[:, :, i, j]^T dout`` back to the window it read (a transposed
    convolution): added into a padded buffer, whose padding is cut off at the end.
    """
    xp = backend.xp(dout)
    (ph, pw), (dh, dw), (ho, wo) = direct_conv_grad_geometry(input_shape, dout.shape,
                                                             weight.shape, padding, dilation,
                                                             "conv2d_direct_input_grad")
    n, c, h, w = input_shape
    kh, kw = weight.shape[2:]
    dx_pad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=dout.dtype)
    for i in range(kh):
        for j in range(kw):
            dx_pad[:, :, i * dh:i * dh + ho, j * dw:j * dw + wo] += xp.einsum(
                "oc,nohw->nchw", weight[:, :, i, j], dout)
    return dx_pad[:, :, ph:ph + h, pw:pw + w].copy()


# -- the operations (see registry.py) --------------------------------------------------------

def _forward_applies(x, weight, bias, padding=0, dilation=1) -> bool:
    """The Numba twin (implicit GEMM or loop, it chooses) for NumPy arrays."""
    return isinstance(x, np.ndarray)


def _weight_grad_applies(x, dout, weight_shape, padding=0, dilation=1) -> bool:
    return (implicit_gemm_applies(x, weight_shape) and type(dout) is np.ndarray
            and dout.dtype == np.float32)


def _input_grad_applies(dout, weight, input_shape, padding=0, dilation=1) -> bool:
    return implicit_gemm_applies(dout, weight.shape, weight.dtype) and type(weight) is np.ndarray


def _backward_applies(x, dout, weight, padding=0, dilation=1, need_dx=True) -> bool:
    return (implicit_gemm_applies(x, weight.shape, weight.dtype) and type(dout) is np.ndarray
            and dout.dtype == np.float32 and type(weight) is np.ndarray)


def conv2d_direct_backward_reference(x, dout, weight, padding=0, dilation=1, need_dx=True):
    """Plain NumPy ``(dL/dW, dL/db, dL/dx or None)`` of a stride-1 convolution: the two
    gradient references, and ``dL/db = dout`` summed over images and pixels."""
    dw = conv2d_direct_weight_grad_reference(x, dout, weight.shape, padding, dilation)
    dx = (conv2d_direct_input_grad_reference(dout, weight, x.shape, padding, dilation)
          if need_dx else None)
    return dw, dout.sum(axis=(0, 2, 3)), dx


def _example_forward():
    return (np.zeros((64, 1, 28, 28), np.float32), np.zeros((32, 1, 3, 3), np.float32),
            np.zeros(32, np.float32), 1), {}


def _example_weight_grad():
    return (np.zeros((64, 32, 14, 14), np.float32), np.zeros((64, 64, 14, 14), np.float32),
            (64, 32, 3, 3), 1), {}


def _example_input_grad():
    return (np.zeros((64, 64, 14, 14), np.float32), np.zeros((64, 32, 3, 3), np.float32),
            (64, 32, 14, 14), 1), {}


def _example_backward():
    return (np.zeros((64, 32, 14, 14), np.float32), np.zeros((64, 64, 14, 14), np.float32),
            np.zeros((64, 32, 3, 3), np.float32), 1), {}


conv2d_direct_forward = registry.register(
    "conv2d_direct_forward", conv2d_direct_forward_reference,
    registry.numba("._conv_direct_numba", "conv2d_direct_forward_numba", _forward_applies),
    example=_example_forward,
    doc="Stride-1 convolution forward on the route the registry picks.")

conv2d_direct_weight_grad = registry.register(
    "conv2d_direct_weight_grad", conv2d_direct_weight_grad_reference,
    registry.numba("._conv_direct_numba", "conv2d_direct_weight_grad_numba",
                   _weight_grad_applies),
    example=_example_weight_grad,
    doc="dL/dW of a stride-1 convolution on the route the registry picks (the implicit GEMM "
        "where it applies, else the reference).")

conv2d_direct_input_grad = registry.register(
    "conv2d_direct_input_grad", conv2d_direct_input_grad_reference,
    registry.numba("._conv_direct_numba", "conv2d_direct_input_grad_numba",
                   _input_grad_applies),
    example=_example_input_grad,
    doc="dL/dx of a stride-1 convolution on the route the registry picks (the implicit GEMM "
        "where it applies, else the reference).")

conv2d_direct_backward = registry.register(
    "conv2d_direct_backward", conv2d_direct_backward_reference,
    registry.numba("._conv_direct_numba", "conv2d_direct_backward_numba", _backward_applies),
    example=_example_backward,
    doc="``(dL/dW, dL/db, dL/dx or None)``: the gradients of weight, bias and input at once, "
        "on the route the registry picks (the Numba twin shares its copy of ``dout`` "
        "between them).")
