"""2-D convolution: the layer holds the parameters; ``minidl.kernels.conv2d_forward`` /
``conv2d_backward`` compute (im2col + one matrix product, or a faster route)."""
from __future__ import annotations

import math

import numpy as np

from .. import _checks, kernels
from ..kernels.shapes import conv_output_size, pair
from . import init
from .module import Module, backward_before_forward
from .parameter import Parameter

__all__ = ["Conv2d"]

class Conv2d(Module):
    r"""2-D convolution (cross-correlation, as in every deep-learning library).

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int, int)
        ``(kh, kw)``.
    stride, padding, dilation : int or (int, int)
        Step between windows, zeros added on each side, spacing of kernel taps.
    bias : bool
        Learn an additive bias per output channel.

    Shapes
    ------
    x : ``(N, C_in, H, W)``  ->  y : ``(N, C_out, H_out, W_out)``, with
    ``H_out = floor((H + 2*ph - dh*(kh-1) - 1) / sh) + 1`` (``W_out`` likewise).
    weight : ``(C_out, C_in, kh, kw)``;  bias : ``(C_out,)``.

    Forward
    -------
    .. math::
        y_{n,o,p,q} = b_o + \sum_{c,i,j} W_{o,c,i,j}\,
                      x^{pad}_{n,c,\;p s_h + i d_h,\;q s_w + j d_w}

    computed as ``cols = im2col(x)`` of shape ``(K, N*L)`` with ``K = C_in*kh*kw``
    and ``L = H_out*W_out`` (every receptive field of every image as a column),
    then one matrix product ``Y = W_mat @ cols`` of shape ``(C_out, N*L)`` with
    ``W_mat = weight.reshape(C_out, K)``, regrouped as ``(N, C_out, H_out, W_out)``
    plus ``b``.

    Backward
    --------
    With ``G = dL/dy`` regrouped as ``(C_out, N*L)`` (the layout of ``Y``):

    .. math::
        \frac{\partial L}{\partial b_o} = \sum_{m} G_{o,m}, \qquad
        \frac{\partial L}{\partial W_{mat}} = G\, \mathrm{cols}^T, \qquad
        \frac{\partial L}{\partial x} = \mathrm{col2im}\big(W_{mat}^T G\big)

    ``col2im`` adds every column entry back onto the pixel it was copied from
    (receptive fields overlap, so a pixel collects several terms).

    Initialisation: ``weight ~ kaiming_uniform_(a=sqrt(5))`` = U(-k, k) and
    ``bias ~ U(-k, k)``, ``k = 1/sqrt(C_in*kh*kw)``.

    Matches ``torch.nn.Conv2d`` (argument names and defaults, parameter shapes,
    state_dict keys, output size, default init distribution).

    NOTE: only ``groups=1`` and zero padding given as numbers are supported
    (no ``padding='same'``, no ``padding_mode``), and the input must be a batch
    ``(N, C, H, W)`` (torch also takes an unbatched ``(C, H, W)``).

    Computation: ``minidl.kernels.conv2d_forward`` / ``conv2d_backward``
    (``minidl/kernels/conv.py``) compute exactly the products above, or -- same
    results to float32 rounding -- a faster route the kernel registry picks (an
    implicit GEMM that never writes ``cols``, a direct loop for one input channel).
    In training mode the im2col matrix is kept for backward (in the opaque cache the
    forward returns); in eval mode only the input is kept and large batches are
    convolved in chunks, bounding inference memory.  With ``needs_input_grad = False``
    (see ``Module``; ``fit`` sets it for a network's first layer) backward skips
    ``W_mat^T G`` and ``col2im`` and returns None.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, bias: bool = True):
        super().__init__()
        self.in_channels = _checks.positive_int("Conv2d", "in_channels", in_channels)
        self.out_channels = _checks.positive_int("Conv2d", "out_channels", out_channels)
        if isinstance(padding, str):
            raise ValueError(f"Conv2d: padding must be an int or a pair of ints, got "
                             f"{padding!r} (string padding modes are not supported)")
        self.kernel_size = pair(kernel_size, "kernel_size", "Conv2d")
        self.stride = pair(stride, "stride", "Conv2d")
        self.padding = pair(padding, "padding", "Conv2d")
        self.dilation = pair(dilation, "dilation", "Conv2d")
        if min(*self.kernel_size, *self.stride, *self.dilation) < 1 or min(self.padding) < 0:
            raise ValueError(
                f"Conv2d: expected kernel_size, stride, dilation >= 1 and padding >= 0, got "
                f"kernel_size={self.kernel_size}, stride={self.stride}, "
                f"dilation={self.dilation}, padding={self.padding}")
        _checks.boolean("Conv2d", "bias", bias)
        kh, kw = self.kernel_size
        self.weight = Parameter(np.empty((self.out_channels, self.in_channels, kh, kw), np.float32))
        if bias:
            self.bias = Parameter(np.empty(self.out_channels, np.float32))
        else:
            self.register_parameter("bias", None)
        self._cache = None   # what backward needs from the last forward (kernels.ConvCache)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's default: kaiming_uniform_(a=sqrt(5)) for weight, U(+-1/sqrt(fan_in)) for bias."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init.calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in)
            init.uniform_(self.bias, -bound, bound)

    def output_shape(self, input_shape) -> tuple[int, int, int, int]:
        """``(N, C_out, H_out, W_out)`` for an input of shape ``(N, C_in, H, W)``."""
        n, _, h, w = input_shape
        ho, wo = (conv_output_size(size, k, s, p, d) for size, k, s, p, d in zip(
            (h, w), self.kernel_size, self.stride, self.padding, self.dilation))
        return n, self.out_channels, ho, wo

    def forward(self, x):
        r"""``y = W * x + b`` (``(N, C_in, H, W)`` -> ``(N, C_out, H_out, W_out)``):

        .. math::
            y_{n,o,p,q} = b_o + \sum_{c,i,j} W_{o,c,i,j}\,
                          x^{pad}_{n,c,\;p s_h + i d_h,\;q s_w + j d_w}

        that is ``Y = W_mat @ im2col(x) + b`` for the whole batch.
        """
        self._check_input(x)
        bias = None if self.bias is None else self.bias.data
        y, self._cache = kernels.conv2d_forward(x, self.weight.data, bias, self.stride,
                                                self.padding, self.dilation,
                                                keep_cols=self.training)
        return y

    def backward(self, dout):
        r"""Accumulate dL/dW and dL/db; return dL/dx (None when ``needs_input_grad`` is False).

        With ``G = dL/dy`` as ``(C_out, N*L)`` and ``cols = im2col(x)``:

        .. math::
            \frac{\partial L}{\partial b} = \sum_{m} G_{:,m}, \qquad
            \frac{\partial L}{\partial W_{mat}} = G\, \mathrm{cols}^T, \qquad
            \frac{\partial L}{\partial x} = \mathrm{col2im}\big(W_{mat}^T G\big)
        """
        if self._cache is None:
            raise backward_before_forward("Conv2d")
        _checks.dout("Conv2d", dout, self.output_shape(self._cache.x.shape), self._cache.x.dtype)
        dw, db, dx = kernels.conv2d_backward(dout, self.weight.data, self._cache,
                                             need_db=self.bias is not None,
                                             need_dx=self.needs_input_grad)
        self.weight.accumulate_grad(dw, owned=True)
        if self.bias is not None:
            self.bias.accumulate_grad(db, owned=True)
        return dx

    def _check_input(self, x) -> None:
        _checks.float_array("Conv2d", x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv2d: expected input of shape (N, {self.in_channels}, H, W) "
                f"(in_channels={self.in_channels}), got {tuple(x.shape)}")
        _checks.same_dtype("Conv2d", x, self.weight)
        _, _, ho, wo = self.output_shape(x.shape)
        if ho < 1 or wo < 1:
            (kh, kw), (dh, dw) = self.kernel_size, self.dilation
            raise ValueError(
                f"Conv2d: kernel {self.kernel_size} with dilation {self.dilation} (extent "
                f"{(dh * (kh - 1) + 1, dw * (kw - 1) + 1)}) is larger than the input "
                f"{tuple(x.shape[2:])} padded by {self.padding}")

    def _convert_extra(self, fn) -> None:
        self._cache = None

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.bias is None:
            s += ", bias=False"
        return s
