"""Element-wise activations: ReLU, LeakyReLU, Tanh, Sigmoid, ELU, GELU.

Each takes an array of any shape (float32 or float64) and returns one of the
same shape and dtype.  ``backward(dout)`` returns ``dout * f'(x)`` evaluated at
the last forward input; activations have no parameters.

Where ``f`` is not differentiable (the kink at 0) the gradient is torch's
choice: ReLU and LeakyReLU use the left side (slope 0 resp. ``negative_slope``
at ``x = 0``), ELU uses the left side (``alpha`` at ``x = 0``).
"""
from __future__ import annotations

import math

from .. import _checks, backend, kernels
from .module import Module, backward_before_forward

__all__ = ["ReLU", "LeakyReLU", "Tanh", "Sigmoid", "ELU", "GELU"]


def _no_inplace(name: str, inplace) -> None:
    if inplace is not False:
        raise ValueError(
            f"{name}: expected inplace=False, got {inplace!r}; minidl layers never modify "
            f"their input (backward may need it)")


class _Activation(Module):
    """Shared plumbing: input/dout checks and the cache between forward and backward.

    A subclass writes ``_forward(x) -> (y, cache)`` and ``_backward(dout, cache) -> dx``.
    """

    def __init__(self):
        super().__init__()
        self._cache = None
        self._out_meta = None  # (shape, dtype) of the last output

    def forward(self, x):
        name = type(self).__name__
        _checks.float_array(name, x)
        y, self._cache = self._forward(x)
        self._out_meta = (tuple(x.shape), x.dtype)
        return y

    def backward(self, dout):
        name = type(self).__name__
        if self._out_meta is None:
            raise backward_before_forward(name)
        _checks.dout(name, dout, *self._out_meta)
        return self._backward(dout, self._cache)

    def _forward(self, x):
        raise NotImplementedError(f"{type(self).__name__} must implement _forward(x)")

    def _backward(self, dout, cache):
        raise NotImplementedError(f"{type(self).__name__} must implement _backward(dout, cache)")


class ReLU(_Activation):
    r"""Rectified linear unit.

    .. math::
        y = \max(x, 0), \qquad
        \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}\,[\,y > 0\,]

    The gradient at ``x = 0`` is 0.  Like torch, the mask is "not ``y <= 0``",
    so a NaN input passes its gradient through (and NaN propagates forward), and
    where ``y <= 0`` the gradient is exactly 0 even if ``dout`` is inf or NaN
    there (a select, as torch's ``threshold_backward``, not ``dout * mask``).
    The mask is kept as booleans (one byte per element).  Kernels:
    ``minidl.kernels.relu_forward`` / ``relu_backward`` (one Numba pass each).

    Shapes: any ``(*)`` -> same.  Matches ``torch.nn.ReLU``.
    """

    def __init__(self, inplace: bool = False):
        super().__init__()
        _no_inplace("ReLU", inplace)

    def _forward(self, x):
        return kernels.relu_forward(x)           # (y, passes); NaN stays NaN and passes

    def _backward(self, dout, passes):
        return kernels.relu_backward(dout, passes)


class LeakyReLU(_Activation):
    r"""Leaky ReLU with slope ``a = negative_slope`` for negative inputs.

    .. math::
        y = \begin{cases} x & x > 0 \\ a x & x \le 0 \end{cases}, \qquad
        \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}
            \begin{cases} 1 & x > 0 \\ a & x \le 0 \end{cases}

    Shapes: any ``(*)`` -> same.  Matches ``torch.nn.LeakyReLU``.
    """

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        self.negative_slope = _checks.real("LeakyReLU", "negative_slope", negative_slope)
        _no_inplace("LeakyReLU", inplace)

    def _forward(self, x):
        positive = x > 0
        return backend.xp(x).where(positive, x, x * self.negative_slope), positive

    def _backward(self, dout, positive):
        return backend.xp(dout).where(positive, dout, dout * self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Tanh(_Activation):
    r"""Hyperbolic tangent.

    .. math::
        y = \tanh x, \qquad
        \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}\,(1 - y^2)

    Shapes: any ``(*)`` -> same.  Matches ``torch.nn.Tanh``.
    """

    def _forward(self, x):
        y = backend.xp(x).tanh(x)
        return y, y

    def _backward(self, dout, y):
        return dout * (1 - y * y)


class Sigmoid(_Activation):
    r"""Logistic sigmoid.

    .. math::
        y = \sigma(x) = \frac{1}{1 + e^{-x}}, \qquad
        \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}\, y (1 - y)

    Computed as ``1/(1+e^{-|x|})`` for ``x >= 0`` and ``e^{-|x|}/(1+e^{-|x|})``
    for ``x < 0``, so ``exp`` never overflows.

    Shapes: any ``(*)`` -> same.  Matches ``torch.nn.Sigmoid``.
    """

    def _forward(self, x):
        xp = backend.xp(x)
        e = xp.exp(-xp.abs(x))
        y = xp.where(x >= 0, 1 / (1 + e), e / (1 + e))
        return y, y

    def _backward(self, dout, y):
        return dout * (1 - y) * y


class ELU(_Activation):
    r"""Exponential linear unit.

    .. math::
        y = \begin{cases} x & x > 0 \\ \alpha (e^{x} - 1) & x \le 0 \end{cases}, \qquad
        \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}
            \begin{cases} 1 & x > 0 \\ \alpha e^{x} & x \le 0 \end{cases}

    ``e^x - 1`` is computed with ``expm1`` (accurate near 0).  The gradient at
    ``x = 0`` is ``alpha``, as in torch.  A NaN input gives a NaN output, and its
    gradient is ``dL/dy`` passed through (NaN is not ``<= 0``), as in torch's scalar
    kernel; torch's vectorised kernel returns NaN there instead, so torch's own answer
    depends on the tensor's size and the CPU.

    Shapes: any ``(*)`` -> same.  Matches ``torch.nn.ELU``.
    """

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__()
        self.alpha = _checks.real("ELU", "alpha", alpha)
        _no_inplace("ELU", inplace)

    def _forward(self, x):
        xp = backend.xp(x)
        negative = x <= 0                        # NaN counts as "not negative", as in torch
        y = xp.where(negative, self.alpha * xp.expm1(xp.minimum(x, 0)), x)
        return y, (x, negative)

    def _backward(self, dout, cache):
        x, negative = cache
        xp = backend.xp(dout)
        return xp.where(negative, dout * (self.alpha * xp.exp(xp.minimum(x, 0))), dout)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


_SQRT_HALF = math.sqrt(0.5)                 # 1/sqrt(2)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)  # normal pdf constant
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_KAPPA = 0.044715


class GELU(_Activation):
    r"""Gaussian error linear unit, exact or with torch's tanh approximation.

    ``approximate='none'`` (exact), with :math:`\Phi` the standard normal CDF
    and :math:`\varphi` its density:

    .. math::
        y = x\,\Phi(x) = \tfrac12 x \big(1 + \operatorname{erf}(x/\sqrt2)\big), \qquad
        \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}
            \big(\Phi(x) + x\,\varphi(x)\big), \quad
        \varphi(x) = \frac{e^{-x^2/2}}{\sqrt{2\pi}}

    ``approximate='tanh'``, with :math:`u = \sqrt{2/\pi}\,(x + 0.044715\,x^3)`
    and :math:`t = \tanh u`:

    .. math::
        y = \tfrac12 x (1 + t), \qquad
        \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y}
            \Big(\tfrac12 (1 + t) + \tfrac12 x (1 - t^2)\,
                 \sqrt{2/\pi}\,(1 + 3 \cdot 0.044715\,x^2)\Big)

    Shapes: any ``(*)`` -> same.  Matches ``torch.nn.GELU``.

    NOTE: ``GELU()(+inf)`` is ``+inf``, as torch's float64 kernel gives; torch's
    vectorised float32 kernel returns NaN there.
    """

    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = _checks.choice("GELU", "approximate", approximate, ("none", "tanh"))

    def _forward(self, x):
        if self.approximate == "tanh":
            t = backend.xp(x).tanh(_SQRT_2_OVER_PI * (x + _KAPPA * (x * x * x)))
            return 0.5 * x * (1 + t), (x, t)
        cdf = 0.5 * (1 + kernels.erf(x * _SQRT_HALF))
        return x * cdf, (x, cdf)

    def _backward(self, dout, cache):
        x, s = cache
        if self.approximate == "tanh":
            t = s
            du_dx = _SQRT_2_OVER_PI * (1 + 3 * _KAPPA * (x * x))
            return dout * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du_dx)
        cdf = s
        pdf = _INV_SQRT_2PI * backend.xp(x).exp(-0.5 * (x * x))
        return dout * (cdf + x * pdf)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"
