"""Direct 2-D convolution forward (stride 1): for thin layers where im2col's GEMM is poor.

    y[n, o, p, q] = b[o] + sum_{c, i, j} W[o, c, i, j] * x_pad[n, c, p + i*dh, q + j*dw]

with ``x_pad`` the input zero-padded by ``(ph, pw)``; output size
``H_out = H + 2*ph - dh*(kh-1)`` (``W_out`` likewise).  Only stride 1.

Why: for a first layer with one input channel, im2col + GEMM multiplies a
``(C_out, kh*kw)`` matrix by a ``(kh*kw, N*L)`` one -- a product with a tiny inner
dimension (9 or 25) that runs at memory speed, after im2col has written
``kh*kw`` copies of the input and before a transposing copy to NCHW.  The direct
loop reads each padded image (a few KB, cache-resident) and writes the output
once, in NCHW, with the bias: about 4x faster for the lab CNNs' first layers
(64 x 1x28x28 -> 32 channels 3x3, and 128 -> 16 channels 5x5).

Twins: ``conv2d_direct_forward_reference`` (NumPy, vectorised over batch and
channels, one step per kernel tap; also CuPy) and ``conv2d_direct_forward_numba``
(per image and output channel, see ``_conv_direct_numba.py``);
``conv2d_direct_forward`` dispatches (Numba for NumPy arrays).  The two sum the
same products in a different association, so they agree to rounding, not bits.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from .shapes import pair


def direct_output_hw(input_hw, kernel_hw, padding, dilation) -> tuple[int, int]:
    """``(H_out, W_out)`` of a stride-1 convolution."""
    (h, w), (kh, kw), (ph, pw), (dh, dw) = input_hw, kernel_hw, padding, dilation
    return h + 2 * ph - dh * (kh - 1), w + 2 * pw - dw * (kw - 1)


def _check(x, weight, bias, padding, dilation, owner):
    (ph, pw), (dh, dw) = pair(padding, "padding", owner), pair(dilation, "dilation", owner)
    if x.ndim != 4 or weight.ndim != 4 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"{owner}: expected x (N, C, H, W) and weight (O, C, kh, kw) with the "
                         f"same C, got {tuple(x.shape)} and {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"{owner}: expected bias of shape ({weight.shape[0]},), got "
                         f"{tuple(bias.shape)}")
    if min(ph, pw) < 0 or min(dh, dw) < 1:
        raise ValueError(f"{owner}: expected padding >= 0 and dilation >= 1, got "
                         f"padding={(ph, pw)}, dilation={(dh, dw)}")
    ho, wo = direct_output_hw(x.shape[2:], weight.shape[2:], (ph, pw), (dh, dw))
    if ho < 1 or wo < 1:
        raise ValueError(f"{owner}: kernel {tuple(weight.shape[2:])} with dilation {(dh, dw)} "
                         f"does not fit the input {tuple(x.shape[2:])} padded by {(ph, pw)}")
    return (ph, pw), (dh, dw), (ho, wo)


def conv2d_direct_forward_reference(x, weight, bias, padding=0, dilation=1):
    """Plain NumPy stride-1 convolution: (N, C, H, W) -> (N, O, H_out, W_out).

    For each kernel tap ``(i, j)``: the shifted window of the padded input
    ``(N, C, H_out, W_out)`` times the tap's ``(O, C)`` weights, summed over ``C``.
    """
    xp = backend.xp(x)
    (ph, pw), (dh, dw), (ho, wo) = _check(x, weight, bias, padding, dilation,
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


def conv2d_direct_forward(x, weight, bias, padding=0, dilation=1):
    """Stride-1 convolution forward on the fastest path."""
    if isinstance(x, np.ndarray):
        from ._conv_direct_numba import conv2d_direct_forward_numba
        return conv2d_direct_forward_numba(x, weight, bias, padding, dilation)
    return conv2d_direct_forward_reference(x, weight, bias, padding, dilation)
