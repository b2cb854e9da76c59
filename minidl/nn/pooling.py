"""2-D max and average pooling."""
from __future__ import annotations

from .. import _checks, backend, kernels
from ..kernels.shapes import pool_geometry, pool_options
from .module import Module, backward_before_forward

__all__ = ["MaxPool2d", "AvgPool2d"]


class _Pool2d(Module):
    """Shared plumbing: argument checks, input checks, the forward/backward cache and
    backward's checks; each subclass writes its own ``forward`` and ``backward``."""

    def __init__(self, kernel_size, stride, padding, dilation, ceil_mode):
        super().__init__()
        owner = type(self).__name__
        self.kernel_size, self.stride, self.padding, self.dilation = pool_options(
            kernel_size, stride, padding, dilation, owner)
        self.ceil_mode = _checks.boolean(owner, "ceil_mode", ceil_mode)
        self._in_meta = None   # (input shape, dtype) of the last forward
        self._cache = None

    def _check_input(self, x) -> None:
        owner = type(self).__name__
        _checks.float_array(owner, x)
        if x.ndim != 4:
            raise ValueError(f"{owner}: expected input of shape (N, C, H, W), got {tuple(x.shape)}")
        pool_geometry(x.shape[2:], self.kernel_size, self.stride, self.padding, self.dilation,
                      self.ceil_mode, owner)

    def output_shape(self, input_shape) -> tuple[int, int, int, int]:
        """``(N, C, H_out, W_out)`` for an input of shape ``(N, C, H, W)``."""
        n, c, h, w = input_shape
        *_, (ho, wo) = pool_geometry((h, w), self.kernel_size, self.stride, self.padding,
                                     self.dilation, self.ceil_mode, type(self).__name__)
        return n, c, ho, wo

    def _checked_dout(self, dout) -> tuple:
        """The last input's shape, after checking ``dout`` against its output shape."""
        owner = type(self).__name__
        if self._in_meta is None:
            raise backward_before_forward(owner)
        shape, dtype = self._in_meta
        _checks.dout(owner, dout, self.output_shape(shape), dtype)
        return shape

    def _convert_extra(self, fn) -> None:
        self._in_meta = None
        self._cache = None


class MaxPool2d(_Pool2d):
    r"""2-D max pooling.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int, (int, int) or None
        Defaults to ``kernel_size``.
    padding : int or (int, int)
        Implicit -inf on each side; at most half the kernel size.
    dilation : int or (int, int)
        Spacing of the window taps.
    return_indices : bool
        Also return the argmax indices (flat ``ih*W + iw``, int64), like torch.
    ceil_mode : bool
        Round the output size up; a last window starting in the right padding
        is dropped.

    Shapes
    ------
    x : ``(N, C, H, W)`` -> y : ``(N, C, H_out, W_out)`` with
    ``H_out = floor((H + 2*ph - dh*(kh-1) - 1)/sh) + 1`` (``ceil`` with
    ``ceil_mode``; ``W_out`` likewise).

    Forward
    -------
    .. math:: y_{n,c,p,q} = \max_{i,j}\; x_{n,c,\;p s_h - p_h + i d_h,\; q s_w - p_w + j d_w}

    over the in-bounds taps; ``a_{n,c,p,q}`` is the tap that gives the maximum:
    the first in row-major order on ties, the last NaN if there are NaNs (and
    then ``y`` is NaN).

    Backward
    --------
    .. math:: \frac{\partial L}{\partial x_{n,c,h,w}} =
              \sum_{(p,q):\ a_{n,c,p,q} = (h,w)} \frac{\partial L}{\partial y_{n,c,p,q}}

    (overlapping windows that chose the same pixel add up).

    Matches ``torch.nn.MaxPool2d``, ties, NaN and the gradient's routing included.
    NOTE: the input must be a batch ``(N, C, H, W)`` (torch also takes ``(C, H, W)``).
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1,
                 return_indices: bool = False, ceil_mode: bool = False):
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)
        self.return_indices = _checks.boolean("MaxPool2d", "return_indices", return_indices)

    def forward(self, x):
        r"""``y[n,c,p,q]`` = the maximum of window ``(p, q)`` of ``x[n,c]``; the position
        ``a[n,c,p,q]`` it came from (flat ``h*W + w``) is kept for backward."""
        self._check_input(x)
        y, indices = kernels.max_pool2d_forward(x, self.kernel_size, self.stride, self.padding,
                                                self.dilation, self.ceil_mode)
        self._in_meta = (tuple(x.shape), x.dtype)
        self._cache = indices
        return (y, indices) if self.return_indices else y

    def backward(self, dout):
        r"""``dL/dx[n,c,h,w]`` = the sum of ``dL/dy[n,c,p,q]`` over the windows whose
        maximum came from ``(h, w)`` (``a[n,c,p,q] = (h, w)``); every other pixel gets 0."""
        shape = self._checked_dout(dout)
        if dout.size == 0:   # an empty batch: no window routes any gradient
            return backend.xp(dout).zeros(shape, dtype=dout.dtype)
        return kernels.max_pool2d_backward(dout, self._cache, shape)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(_Pool2d):
    r"""2-D average pooling.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int, (int, int) or None
        Defaults to ``kernel_size``.
    padding : int or (int, int)
        Implicit zeros on each side; at most half the kernel size.
    ceil_mode : bool
        Round the output size up; a last window starting in the right padding
        is dropped.
    count_include_pad : bool
        Whether padding positions count in the divisor.
    divisor_override : int or None
        If given, the divisor of every window.

    Shapes
    ------
    x : ``(N, C, H, W)`` -> y : ``(N, C, H_out, W_out)``,
    ``H_out = floor((H + 2*ph - kh)/sh) + 1`` (``ceil`` with ``ceil_mode``).

    Forward
    -------
    .. math:: y_{n,c,p,q} = \frac{1}{D_{p,q}} \sum_{(h,w) \in R_{p,q}} x_{n,c,h,w}

    where ``R`` is the window's in-bounds part and ``D`` its divisor: with
    ``hstart = p*sh - ph`` and ``hend = min(hstart + kh, H + ph)`` (likewise for
    ``w``), ``D = divisor_override`` if given, else ``(hend-hstart)*(wend-wstart)``
    when ``count_include_pad`` (padding counts; a ``ceil_mode`` overhang beyond
    the padding does not), else ``|R|``.

    Backward
    --------
    .. math:: \frac{\partial L}{\partial x_{n,c,h,w}} =
              \sum_{(p,q):\ (h,w) \in R_{p,q}} \frac{1}{D_{p,q}}
              \frac{\partial L}{\partial y_{n,c,p,q}}

    Matches ``torch.nn.AvgPool2d``, divisor rules included.
    NOTE: the input must be a batch ``(N, C, H, W)`` (torch also takes ``(C, H, W)``).
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override=None):
        super().__init__(kernel_size, stride, padding, 1, ceil_mode)
        self.count_include_pad = _checks.boolean("AvgPool2d", "count_include_pad",
                                                 count_include_pad)
        self.divisor_override = None if divisor_override is None else _checks.positive_int(
            "AvgPool2d", "divisor_override", divisor_override)

    def _options(self):
        return (self.kernel_size, self.stride, self.padding, self.ceil_mode,
                self.count_include_pad, self.divisor_override)

    def forward(self, x):
        r"""``y[n,c,p,q] = (1 / D[p,q]) * sum of x[n,c]`` over the in-bounds part
        ``R[p,q]`` of window ``(p, q)`` (``D``: the divisor, see the class docstring)."""
        self._check_input(x)
        y = kernels.avg_pool2d_forward(x, *self._options())
        self._in_meta = (tuple(x.shape), x.dtype)
        return y

    def backward(self, dout):
        r"""``dL/dx[n,c,h,w]`` = the sum of ``dL/dy[n,c,p,q] / D[p,q]`` over the windows
        ``(p, q)`` whose in-bounds part ``R[p,q]`` holds ``(h, w)``."""
        shape = self._checked_dout(dout)
        if dout.size == 0:   # an empty batch: no window routes any gradient
            return backend.xp(dout).zeros(shape, dtype=dout.dtype)
        return kernels.avg_pool2d_backward(dout, shape, *self._options())

    def extra_repr(self) -> str:
        s = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        if self.ceil_mode:
            s += ", ceil_mode=True"
        if not self.count_include_pad:
            s += ", count_include_pad=False"
        if self.divisor_override is not None:
            s += f", divisor_override={self.divisor_override}"
        return s
