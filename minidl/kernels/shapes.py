"""Geometry shared by the kernels, their Numba twins and the layers: output sizes and
the checked window options of convolution and pooling.

The formulas follow PyTorch's ``conv2d`` and ``pooling_output_shape`` exactly, dilation
and ``ceil_mode`` included, so a layer and its kernel can never disagree on a shape.
Both a reference module (``im2col.py``) and its Numba twin (``_im2col_numba.py``) import
from here, so a twin never imports its dispatcher.
"""
from __future__ import annotations

from .. import _checks


def pair(value, name: str = "value", owner: str = "minidl") -> tuple[int, int]:
    """``value`` as an ``(h, w)`` tuple of ints: an int is used for both sides.

    Raises TypeError naming ``owner`` and ``name`` for anything that is not an int or a
    tuple/list of ints (bools are refused: ``True`` is not a kernel size), ValueError for
    a tuple/list of another length than 2.
    """
    what = "an int or a pair of ints"
    if _checks.is_int(value):
        return int(value), int(value)
    if not isinstance(value, (tuple, list)) or not all(_checks.is_int(v) for v in value):
        raise TypeError(f"{owner}: expected {name} to be {what}, got "
                        f"{type(value).__name__} {value!r}")
    if len(value) != 2:
        raise ValueError(f"{owner}: expected {name} to be {what}, got {value!r}")
    return int(value[0]), int(value[1])


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Length of a convolution's output along one axis.

    ``floor((size + 2*padding - dilation*(kernel-1) - 1) / stride) + 1``
    (may be <= 0 when the dilated kernel is larger than the padded input).
    """
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def pool_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int,
                     ceil_mode: bool) -> int:
    """Length of a pooling output along one axis, as ``torch.nn.MaxPool2d`` computes it.

    ``floor`` (or ``ceil`` with ``ceil_mode``) of
    ``(size + 2*padding - dilation*(kernel-1) - 1) / stride``, plus one.  With
    ``ceil_mode`` a last window that would *start* in the right padding (or past
    it) is dropped: if ``(out-1)*stride >= size + padding`` then ``out -= 1``.
    """
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def im2col_geometry(h, w, kernel_size, stride, padding, dilation):
    """``(kh, kw), (sh, sw), (ph, pw), (dh, dw), H_out, W_out`` of an im2col/col2im call.

    Raises ValueError when the dilated kernel does not fit the padded input.
    """
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (pair(kernel_size), pair(stride),
                                              pair(padding), pair(dilation))
    ho = conv_output_size(h, kh, sh, ph, dh)
    wo = conv_output_size(w, kw, sw, pw, dw)
    if ho < 1 or wo < 1:
        raise ValueError(
            f"im2col: kernel {(kh, kw)} with dilation {(dh, dw)} does not fit the input "
            f"{(h, w)} padded by {(ph, pw)} (output would be {ho}x{wo})")
    return (kh, kw), (sh, sw), (ph, pw), (dh, dw), ho, wo


def pool_options(kernel_size, stride=None, padding=0, dilation=1, owner="pooling"):
    """Normalised ``(kh, kw), (sh, sw), (ph, pw), (dh, dw)`` of a pooling window.

    ``stride=None`` means ``stride = kernel_size``.  Raises ValueError (naming
    ``owner``) for a non-positive kernel/stride/dilation, negative padding, or
    padding larger than half the kernel size (torch's rule: ``p <= k // 2``).
    """
    kh, kw = pair(kernel_size, "kernel_size", owner)
    sh, sw = (kh, kw) if stride is None else pair(stride, "stride", owner)
    ph, pw = pair(padding, "padding", owner)
    dh, dw = pair(dilation, "dilation", owner)
    if min(kh, kw, sh, sw, dh, dw) < 1:
        raise ValueError(f"{owner}: kernel_size, stride and dilation must be >= 1, got "
                         f"kernel_size={(kh, kw)}, stride={(sh, sw)}, dilation={(dh, dw)}")
    if min(ph, pw) < 0:
        raise ValueError(f"{owner}: padding must be >= 0, got {(ph, pw)}")
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"{owner}: padding must be at most half the kernel size, got "
                         f"padding={(ph, pw)} for kernel_size={(kh, kw)}")
    return (kh, kw), (sh, sw), (ph, pw), (dh, dw)


def pool_geometry(input_hw, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                  owner="pooling"):
    """``pool_options(...)`` plus the output size ``(ho, wo)`` for an input of size ``input_hw``.

    Raises ValueError (naming ``owner``) as ``pool_options`` does, and when the
    window is larger than the padded input (an empty output).
    """
    h, w = input_hw
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = pool_options(kernel_size, stride, padding,
                                                          dilation, owner)
    ho = pool_output_size(h, kh, sh, ph, dh, ceil_mode)
    wo = pool_output_size(w, kw, sw, pw, dw, ceil_mode)
    if ho < 1 or wo < 1:
        raise ValueError(
            f"{owner}: kernel {(kh, kw)} (dilation {(dh, dw)}) is larger than the input "
            f"{(h, w)} padded by {(ph, pw)}: the output would be {ho}x{wo}")
    return (kh, kw), (sh, sw), (ph, pw), (dh, dw), (ho, wo)


def avg_pool_geometry(x_shape, kernel_size, stride, padding, ceil_mode, divisor_override):
    """``pool_geometry`` of an average pooling (no dilation), ``divisor_override`` checked."""
    n, c, h, w = x_shape
    if divisor_override is not None:
        _checks.positive_int("avg_pool2d", "divisor_override", divisor_override)
    return pool_geometry((h, w), kernel_size, stride, padding, 1, ceil_mode, "avg_pool2d")


def direct_output_hw(input_hw, kernel_hw, padding, dilation) -> tuple[int, int]:
    """``(H_out, W_out)`` of a stride-1 convolution."""
    (h, w), (kh, kw), (ph, pw), (dh, dw) = input_hw, kernel_hw, padding, dilation
    return h + 2 * ph - dh * (kh - 1), w + 2 * pw - dw * (kw - 1)


def direct_conv_geometry(x, weight, bias, padding, dilation, owner):
    """Checked ``(ph, pw), (dh, dw), (H_out, W_out)`` of a stride-1 convolution forward."""
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


def direct_conv_grad_geometry(input_shape, dout_shape, weight_shape, padding, dilation, owner):
    """Checked ``(ph, pw), (dh, dw), (H_out, W_out)`` of a stride-1 convolution's gradients."""
    (ph, pw), (dh, dw) = pair(padding, "padding", owner), pair(dilation, "dilation", owner)
    n, c, h, w = (int(v) for v in input_shape)
    o, c_w, kh, kw = (int(v) for v in weight_shape)
    ho, wo = direct_output_hw((h, w), (kh, kw), (ph, pw), (dh, dw))
    if c_w != c or tuple(dout_shape) != (n, o, ho, wo):
        raise ValueError(f"{owner}: expected weight (O, {c}, kh, kw) and dout {(n, o, ho, wo)} "
                         f"for input {(n, c, h, w)}, got weight {tuple(weight_shape)} and "
                         f"dout {tuple(dout_shape)}")
    return (ph, pw), (dh, dw), (ho, wo)
