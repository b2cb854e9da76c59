"""2-D convolution, computed as im2col + one matrix product for the whole batch."""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import backend, kernels, memory
from ..kernels.shapes import conv_output_size, pair
from . import init
from .module import (Module, Parameter, backward_before_forward, check_dout,
                     check_float_array, check_same_dtype, empty_batch_backward)

__all__ = ["Conv2d"]

# Layers with at most this many input channels (and stride 1) run their forward as a
# direct convolution (minidl.kernels.conv2d_direct_forward): im2col's GEMM has an inner
# dimension of only C_in*kh*kw there.  Measured ~4x faster for 1 input channel.
DIRECT_MAX_IN_CHANNELS = 1

# In eval mode the batch is convolved in chunks whose im2col matrix stays under
# this size, so inference over large batches does not hold a huge matrix at once.
EVAL_COLS_BYTES = 32 * 2**20


def _positive_int(owner: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{owner}: expected {name} to be a positive int, got {value!r}")
    return int(value)


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
    ``(N, C, H, W)`` (torch also takes an unbatched ``(C, H, W)``).  In training
    mode the im2col matrix is kept for backward (trading memory for one
    im2col), and backward writes ``W_mat^T G`` into its memory once ``dW`` is
    done (one large allocation less per step); in eval mode only the input is
    kept (backward rebuilds the matrix) and large batches are convolved in
    chunks of images whose matrix stays under ``EVAL_COLS_BYTES``, bounding
    inference memory.

    Faster routes, same results to float32 rounding.  In float32 with stride 1, on a
    CPU where minidl's vector GEMM (AVX-512 or AVX2) applies (``minidl.kernels.implicit_gemm_applies``),
    forward, dL/dW and dL/dx are an *implicit GEMM*
    (``minidl.kernels.conv2d_direct_forward`` / ``_weight_grad`` / ``_input_grad``):
    the products above read the zero-padded input in place instead of an im2col
    matrix, and col2im is fused into ``W_mat^T G``; only the input is kept for
    backward.  Otherwise a layer with one input channel and stride 1 computes its
    forward as a direct convolution loop (the product above has an inner dimension
    of only ``kh*kw`` there) and keeps ``cols`` for backward.
    With ``needs_input_grad = False`` (see ``Module``; ``fit``
    sets it for a network's first layer) backward skips ``W_mat^T G`` and
    ``col2im`` and returns None.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, bias: bool = True):
        super().__init__()
        self.in_channels = _positive_int("Conv2d", "in_channels", in_channels)
        self.out_channels = _positive_int("Conv2d", "out_channels", out_channels)
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
        if not isinstance(bias, bool):
            raise ValueError(f"Conv2d: expected bias to be a bool, got {bias!r}")
        kh, kw = self.kernel_size
        self.weight = Parameter(np.empty((self.out_channels, self.in_channels, kh, kw), np.float32))
        if bias:
            self.bias = Parameter(np.empty(self.out_channels, np.float32))
        else:
            self.register_parameter("bias", None)
        self._x = None       # last input (kept by reference, never modified)
        self._cols = None    # its im2col matrix, kept in training mode
        self._implicit = False   # whether the last forward took the implicit GEMM
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

    def _geometry(self):
        return self.kernel_size, self.stride, self.padding, self.dilation

    def forward(self, x):
        if not memory.done:
            memory.tune_malloc()
        check_float_array("Conv2d", x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv2d: expected input of shape (N, {self.in_channels}, H, W) "
                f"(in_channels={self.in_channels}), got {tuple(x.shape)}")
        check_same_dtype("Conv2d", x, self.weight)
        n, c_out, ho, wo = self.output_shape(x.shape)
        if ho < 1 or wo < 1:
            (kh, kw), (dh, dw) = self.kernel_size, self.dilation
            raise ValueError(
                f"Conv2d: kernel {self.kernel_size} with dilation {self.dilation} (extent "
                f"{(dh * (kh - 1) + 1, dw * (kw - 1) + 1)}) is larger than the input "
                f"{tuple(x.shape[2:])} padded by {self.padding}")
        self._x = x
        self._cols = None
        self._implicit = self._implicit_gemm(x)
        if n == 0:      # an empty batch (torch allows one): nothing to convolve
            return backend.xp(x).zeros((0, c_out, ho, wo), dtype=x.dtype)
        bias = None if self.bias is None else self.bias.data
        if self._implicit:      # no im2col matrix, forward or backward
            return kernels.conv2d_direct_forward(x, self.weight.data, bias, self.padding,
                                                 self.dilation)
        if self._direct(x):
            if self.training:   # backward's dL/dW = G cols^T needs the im2col matrix
                self._cols = kernels.im2col(x, *self._geometry())
            return kernels.conv2d_direct_forward(x, self.weight.data, bias, self.padding,
                                                 self.dilation)
        if self.training:
            y, self._cols = self._convolve(x)
            return y.reshape(n, c_out, ho, wo)
        per_image = x.itemsize * self.in_channels * self.kernel_size[0] * self.kernel_size[1] \
            * ho * wo
        step = max(1, EVAL_COLS_BYTES // per_image)
        if step >= n:
            return self._convolve(x)[0].reshape(n, c_out, ho, wo)
        y = backend.xp(x).empty((n, c_out, ho * wo), dtype=x.dtype)
        for start in range(0, n, step):
            y[start:start + step] = self._convolve(x[start:start + step])[0]
        return y.reshape(n, c_out, ho, wo)

    def _implicit_gemm(self, x) -> bool:
        """Whether forward and backward take the implicit-GEMM kernels (see the docstring)."""
        return self.stride == (1, 1) and kernels.implicit_gemm_applies(
            x, self.weight.data.shape, self.weight.data.dtype)

    def _direct(self, x) -> bool:
        """Whether forward takes the direct convolution (thin layers, see the docstring)."""
        return (self.in_channels <= DIRECT_MAX_IN_CHANNELS and self.stride == (1, 1)
                and isinstance(x, np.ndarray))

    def _convolve(self, x):
        """``(y (N, C_out, L), cols (K, N*L))`` for a checked input batch."""
        xp = backend.xp(x)
        n, c_out = x.shape[0], self.out_channels
        cols = kernels.im2col(x, *self._geometry())                       # (K, N*L)
        y_mat = kernels.matmul(self.weight.data.reshape(c_out, -1), cols)  # (C_out, N*L)
        y_mat = y_mat.reshape(c_out, n, -1).transpose(1, 0, 2)           # (N, C_out, L) view
        y = xp.empty(y_mat.shape, dtype=x.dtype)
        if self.bias is None:
            y[...] = y_mat
        else:
            xp.add(y_mat, self.bias.data[:, None], out=y)                 # regroup + bias, one pass
        return y, cols

    def backward(self, dout):
        if self._x is None:
            raise backward_before_forward("Conv2d")
        x = self._x
        out_shape = self.output_shape(x.shape)
        check_dout("Conv2d", dout, out_shape, x.dtype)
        if x.shape[0] == 0:
            return empty_batch_backward(self, x)
        if self._implicit:
            return self._implicit_backward(x, dout)
        xp = backend.xp(dout)
        cols = self._cols if self._cols is not None else kernels.im2col(x, *self._geometry())
        self._cols = None                                            # backward consumes it
        n, c_out, ho, wo = out_shape
        g = xp.empty((c_out, n * ho * wo), dtype=dout.dtype)
        xp.copyto(g.reshape(c_out, n, -1), dout.reshape(n, c_out, -1).transpose(1, 0, 2))
        if self.bias is not None:
            self.bias.accumulate_grad(g.sum(axis=1), owned=True)     # G is (C_out, N*L), like Y
        w_mat = self.weight.data.reshape(c_out, -1)                  # (C_out, K)
        self.weight.accumulate_grad(kernels.matmul(g, cols.T).reshape(self.weight.data.shape),
                                    owned=True)
        if not self.needs_input_grad:
            return None
        # cols (made by this layer, never handed out) is no longer needed: dL/dcols
        # takes its memory instead of a second matrix of the same size
        dcols = kernels.matmul(w_mat.T, g, out=cols)                 # (K, N*L)
        return kernels.col2im(dcols, x.shape, *self._geometry())

    def _implicit_backward(self, x, dout):
        dw, db, dx = kernels.conv2d_direct_backward(x, dout, self.weight.data, self.padding,
                                                    self.dilation, self.needs_input_grad)
        if self.bias is not None:
            self.bias.accumulate_grad(db, owned=True)
        self.weight.accumulate_grad(dw, owned=True)
        return dx

    def _convert_extra(self, fn) -> None:
        self._x = None
        self._cols = None

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
