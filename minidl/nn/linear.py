"""Fully connected layer and Flatten."""
from __future__ import annotations

import math

import numpy as np

from .. import _checks, kernels
from . import init
from .module import Module, backward_before_forward
from .parameter import Parameter

__all__ = ["Linear", "Flatten"]


class Linear(Module):
    r"""Affine map of the last axis: ``y = x W^T + b``.

    Parameters
    ----------
    in_features, out_features : int
        Sizes of the last axis of the input and of the output.
    bias : bool
        Whether to learn the additive bias ``b``.

    Shapes
    ------
    x : ``(*, in_features)`` -- any number of leading axes, e.g. ``(N, in_features)``
    y : ``(*, out_features)``
    weight : ``(out_features, in_features)``;  bias : ``(out_features,)``

    Forward
    -------
    .. math:: y_{...j} = \sum_i x_{...i} W_{ji} + b_j

    Backward (with the leading axes flattened into one batch axis ``n``)
    --------
    .. math::
        \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y} W, \qquad
        \frac{\partial L}{\partial W} = \Big(\frac{\partial L}{\partial y}\Big)^T x, \qquad
        \frac{\partial L}{\partial b_j} = \sum_n \frac{\partial L}{\partial y_{nj}}

    Initialisation: ``weight ~ kaiming_uniform_(a=sqrt(5))`` = U(-k, k) and
    ``bias ~ U(-k, k)`` with ``k = 1/sqrt(in_features)``.

    The products run through ``minidl.kernels.matmul`` (a Numba GEMM for float32
    where it applies, else NumPy's BLAS).  With ``needs_input_grad = False`` (see
    ``Module``) backward skips the product ``dL/dy W`` and returns None.

    Matches ``torch.nn.Linear`` (names, shapes, state_dict keys, default init).
    The input's dtype must equal the parameters' dtype (float32 unless the
    module was converted with ``.double()``), as in torch.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features = _checks.non_negative_int("Linear", "in_features", in_features)
        self.out_features = _checks.non_negative_int("Linear", "out_features", out_features)
        _checks.boolean("Linear", "bias", bias)
        self.weight = Parameter(np.empty((self.out_features, self.in_features), np.float32))
        if bias:
            self.bias = Parameter(np.empty(self.out_features, np.float32))
        else:
            self.register_parameter("bias", None)
        self._x = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """torch's default: kaiming_uniform_(a=sqrt(5)) for weight, U(+-1/sqrt(fan_in)) for bias."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_features
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        r"""``y = x W^T + b`` over the last axis (``(*, in_features)`` -> ``(*, out_features)``)."""
        _checks.float_array("Linear", x)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"Linear: expected input of shape (*, {self.in_features}) "
                f"(in_features={self.in_features}), got {tuple(x.shape)}")
        _checks.same_dtype("Linear", x, self.weight)
        rows = math.prod(x.shape[:-1])       # not reshape(-1, ...): in_features may be 0
        y = kernels.matmul(x.reshape(rows, self.in_features), self.weight.data.T)
        if self.bias is not None:
            y += self.bias.data              # y is the product's fresh array: no copy
        self._x = x
        return y.reshape(x.shape[:-1] + (self.out_features,))

    def backward(self, dout):
        r"""With ``G = dL/dy`` and ``X = x``, both as matrices of rows: accumulate
        ``dL/dW = G^T X`` and ``dL/db = sum of G's rows``; return ``dL/dx = G W`` (None when
        ``needs_input_grad`` is False)."""
        if self._x is None:
            raise backward_before_forward("Linear")
        x = self._x
        _checks.dout("Linear", dout, x.shape[:-1] + (self.out_features,), x.dtype)
        rows = math.prod(x.shape[:-1])
        x2 = x.reshape(rows, self.in_features)
        d2 = dout.reshape(rows, self.out_features)
        self.weight.accumulate_grad(kernels.matmul(d2.T, x2), owned=True)
        if self.bias is not None:
            self.bias.accumulate_grad(d2.sum(axis=0), owned=True)
        if not self.needs_input_grad:
            return None
        return kernels.matmul(d2, self.weight.data).reshape(x.shape)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Flatten(Module):
    r"""Merge the axes ``start_dim .. end_dim`` (inclusive) into one.

    Shapes: ``(N, C, H, W)`` -> ``(N, C*H*W)`` with the defaults.

    Forward: ``y = x.reshape(shape with axes start_dim..end_dim multiplied)``.
    Backward: ``dL/dx = (dL/dy).reshape(x.shape)`` -- a reshape moves no value.

    Matches ``torch.nn.Flatten`` (negative dims count from the end).  Like
    torch, the output may be a view of the input; neither is modified.
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = _checks.integer("Flatten", "start_dim", start_dim)
        self.end_dim = _checks.integer("Flatten", "end_dim", end_dim)
        self._in_shape = None

    def _dims(self, ndim: int) -> tuple[int, int]:
        start = self.start_dim + ndim if self.start_dim < 0 else self.start_dim
        end = self.end_dim + ndim if self.end_dim < 0 else self.end_dim
        if not (0 <= start < ndim and 0 <= end < ndim):
            raise ValueError(
                f"Flatten: start_dim={self.start_dim}, end_dim={self.end_dim} need an input "
                f"with more dimensions, got {ndim} dimension(s)")
        if start > end:
            raise ValueError(
                f"Flatten: expected start_dim <= end_dim, got start_dim={self.start_dim}, "
                f"end_dim={self.end_dim} for an input with {ndim} dimensions")
        return start, end

    def forward(self, x):
        _checks.float_array("Flatten", x)
        start, end = self._dims(x.ndim)
        shape = tuple(x.shape)
        merged = int(np.prod(shape[start:end + 1]))
        self._in_shape = (shape, x.dtype)
        return x.reshape(shape[:start] + (merged,) + shape[end + 1:])

    def backward(self, dout):
        if self._in_shape is None:
            raise backward_before_forward("Flatten")
        shape, dtype = self._in_shape
        start, end = self._dims(len(shape))
        out_shape = shape[:start] + (int(np.prod(shape[start:end + 1])),) + shape[end + 1:]
        _checks.dout("Flatten", dout, out_shape, dtype)
        return dout.reshape(shape)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
