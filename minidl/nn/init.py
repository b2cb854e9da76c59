"""Weight initialisation, as in ``torch.nn.init``.

Each function fills an array (or a ``Parameter``'s ``data``) **in place** and
returns it, drawing from minidl's one generator
(``minidl.random.get_generator()``), so ``minidl.manual_seed`` makes it
reproducible.  Values are drawn in float64 and cast to the array's dtype.

Fans, for a weight of shape ``(out, in, *kernel)``::

    receptive = prod(kernel)          (1 for a Linear weight)
    fan_in    = in  * receptive
    fan_out   = out * receptive

The four schemes (``gain`` from :func:`calculate_gain`):

==================  =========================================================
kaiming_uniform_    U(-b, b),  b = gain * sqrt(3 / fan)
kaiming_normal_     N(0, s^2), s = gain / sqrt(fan)
xavier_uniform_     U(-b, b),  b = gain * sqrt(6 / (fan_in + fan_out))
xavier_normal_      N(0, s^2), s = gain * sqrt(2 / (fan_in + fan_out))
==================  =========================================================

Layers' default (``Linear``, ``Conv2d``) is torch's: ``kaiming_uniform_(w,
a=sqrt(5))``, which works out to ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, and
the bias ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

NOTE: the distributions equal torch's; the random streams do not (torch and
NumPy use different generators), so the same seed gives different numbers.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _checks, backend
from ..random import get_generator
from .parameter import Parameter

__all__ = ["calculate_gain", "calculate_fan_in_and_fan_out", "uniform_", "normal_",
           "constant_", "zeros_", "ones_", "kaiming_uniform_", "kaiming_normal_",
           "xavier_uniform_", "xavier_normal_"]

_LINEAR_LIKE = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                "conv_transpose2d", "conv_transpose3d", "sigmoid")


def _array(tensor, fn: str):
    """The array to fill: ``tensor`` itself or a Parameter's ``data``."""
    arr = tensor.data if isinstance(tensor, Parameter) else tensor
    if not (hasattr(arr, "dtype") and hasattr(arr, "shape")):
        raise ValueError(f"init.{fn}: expected an ndarray or Parameter, got {type(tensor).__name__}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"init.{fn}: expected a floating-point array, got dtype {arr.dtype}")
    return arr


def _fill(tensor, values: np.ndarray, fn: str):
    arr = _array(tensor, fn)
    arr[...] = backend.asarray_like(values, arr).astype(arr.dtype, copy=False)
    return tensor


def calculate_gain(nonlinearity: str, param=None) -> float:
    """Recommended gain for a nonlinearity (``torch.nn.init.calculate_gain``).

    linear/conv/sigmoid: 1;  tanh: 5/3;  relu: sqrt(2);
    leaky_relu: sqrt(2 / (1 + a^2)) with ``a = param`` (default 0.01);  selu: 3/4.
    """
    if nonlinearity in _LINEAR_LIKE:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else _checks.real(
            "calculate_gain", "param", param, what="a number (the negative slope)")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def calculate_fan_in_and_fan_out(tensor) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of shape ``(out, in, *kernel)``; needs ndim >= 2."""
    shape = _array(tensor, "calculate_fan_in_and_fan_out").shape
    if len(shape) < 2:
        raise ValueError(
            f"calculate_fan_in_and_fan_out: expected an array with at least 2 dimensions, "
            f"got shape {tuple(shape)}")
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return int(shape[1]) * receptive, int(shape[0]) * receptive


def _fan(tensor, mode: str, fn: str) -> int:
    mode = _checks.choice(f"init.{fn}", "mode", mode, ("fan_in", "fan_out"))
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor, a: float = 0.0, b: float = 1.0):
    """Fill with U(a, b)."""
    if not a <= b:
        raise ValueError(f"init.uniform_: expected a <= b, got a={a}, b={b}")
    shape = _array(tensor, "uniform_").shape
    return _fill(tensor, get_generator().uniform(a, b, size=shape), "uniform_")


def normal_(tensor, mean: float = 0.0, std: float = 1.0):
    """Fill with N(mean, std^2)."""
    if not std >= 0:
        raise ValueError(f"init.normal_: expected std >= 0, got {std}")
    shape = _array(tensor, "normal_").shape
    return _fill(tensor, get_generator().normal(mean, std, size=shape), "normal_")


def constant_(tensor, val: float):
    """Fill with ``val``."""
    _array(tensor, "constant_")[...] = val
    return tensor


def zeros_(tensor):
    """Fill with 0."""
    return constant_(tensor, 0.0)


def ones_(tensor):
    """Fill with 1."""
    return constant_(tensor, 1.0)


def kaiming_uniform_(tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"):
    """He uniform: U(-b, b) with b = gain * sqrt(3 / fan), gain = calculate_gain(nonlinearity, a)."""
    if _array(tensor, "kaiming_uniform_").size == 0:
        return tensor  # torch warns and leaves an empty tensor alone
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode, "kaiming_uniform_"))
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"):
    """He normal: N(0, s^2) with s = gain / sqrt(fan), gain = calculate_gain(nonlinearity, a)."""
    if _array(tensor, "kaiming_normal_").size == 0:
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode, "kaiming_normal_"))
    return normal_(tensor, 0.0, std)


def xavier_uniform_(tensor, gain: float = 1.0):
    """Glorot uniform: U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor, gain: float = 1.0):
    """Glorot normal: N(0, s^2) with s = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return normal_(tensor, 0.0, std)
