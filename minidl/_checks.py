"""Argument checks shared by every part of minidl: TypeError for a wrong type, ValueError
for a wrong value, as Python and torch raise them.

Each check takes the ``owner`` (the layer, optimizer or function the argument was given
to), the argument's ``name`` and its value, and returns the value in its plain Python
form (an ``int``, a ``float``, a ``bool``).  The message names all three and what was
expected, the same words for either error::

    Conv2d: expected in_channels to be a positive int, got str '3'      (TypeError)
    Conv2d: expected in_channels to be a positive int, got 0            (ValueError)
    GELU: expected approximate 'none' or 'tanh', got 'fast'             (ValueError)

``bool`` is never an int or a number here (``True`` is not a layer size); NumPy integer
and float scalars are.
"""
from __future__ import annotations

import math
import numbers

import numpy as np


def _got(value) -> str:
    return f"{type(value).__name__} {value!r}"


def _fail(error, owner: str, name: str, what: str, got: str):
    raise error(f"{owner}: expected {name} to be {what}, got {got}")


def is_int(value) -> bool:
    """Whether ``value`` is an integer (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real(value) -> bool:
    """Whether ``value`` is a real number (Python or NumPy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def integer(owner: str, name: str, value, minimum: int | None = None, *,
            what: str | None = None) -> int:
    """``value`` as an int, at least ``minimum`` when given.  ``what`` replaces the
    description of the expected value in the message."""
    what = what or ("an int" if minimum is None else "a positive int" if minimum == 1
                    else "a non-negative int" if minimum == 0 else f"an int >= {minimum}")
    if not is_int(value):
        _fail(TypeError, owner, name, what, _got(value))
    if minimum is not None and value < minimum:
        _fail(ValueError, owner, name, what, repr(value))
    return int(value)


def positive_int(owner: str, name: str, value) -> int:
    """``value`` as an int >= 1 (a size, a count)."""
    return integer(owner, name, value, 1)


def non_negative_int(owner: str, name: str, value) -> int:
    """``value`` as an int >= 0."""
    return integer(owner, name, value, 0)


def boolean(owner: str, name: str, value) -> bool:
    """``value`` as a bool (``True``/``False``, or a NumPy bool)."""
    if not isinstance(value, (bool, np.bool_)):
        _fail(TypeError, owner, name, "a bool", _got(value))
    return bool(value)


def real(owner: str, name: str, value, low: float | None = None, high: float | None = None,
         *, high_open: bool = False, finite: bool = False, what: str | None = None) -> float:
    """``value`` as a float in ``[low, high]`` (``[low, high)`` with ``high_open``; either
    bound may be None), finite when ``finite``; NaN is refused wherever a bound is given.
    ``what`` replaces the description of the expected value in the message."""
    if what is None:
        kind = "a finite number" if finite else "a number"
        if low is not None and high is not None:
            what = f"{kind} in [{low}, {high}{')' if high_open else ']'}"
        elif low is not None:
            what = f"{kind} >= {low}"
        elif high is not None:
            what = f"{kind} {'<' if high_open else '<='} {high}"
        else:
            what = kind
    if not is_real(value):
        _fail(TypeError, owner, name, what, _got(value))
    ok = (low is None or value >= low) and (high is None or (value < high if high_open
                                                              else value <= high))
    if not ok or (finite and not math.isfinite(value)):
        _fail(ValueError, owner, name, what, repr(value))
    return float(value)


def non_negative(owner: str, name: str, value) -> float:
    """``value`` as a float >= 0 (an epsilon, a decay)."""
    return real(owner, name, value, 0)


def probability(owner: str, name: str, value, *, below_one: bool = False) -> float:
    """``value`` as a float in [0, 1] (or [0, 1) with ``below_one``)."""
    what = f"a probability in [0, 1{')' if below_one else ']'}"
    return real(owner, name, value, 0, 1, high_open=below_one, what=what)


def choice(owner: str, name: str, value, choices):
    """``value``, one of ``choices`` (TypeError when it is not even of their type); the
    message lists them: ``GELU: expected approximate 'none' or 'tanh', got 'fast'``."""
    names = [repr(c) for c in choices]
    what = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    if not isinstance(value, tuple({type(c) for c in choices})):
        raise TypeError(f"{owner}: expected {name} {what}, got {_got(value)}")
    if value not in choices:
        raise ValueError(f"{owner}: expected {name} {what}, got {value!r}")
    return value


def shape(owner: str, name: str, value, *, allow_int: bool = True,
          what: str | None = None) -> tuple[int, ...]:
    """``value`` as a non-empty tuple of positive ints (an int ``n`` means ``(n,)`` when
    ``allow_int``)."""
    what = what or ("a positive int or a non-empty tuple of positive ints" if allow_int
                    else "a non-empty tuple of positive ints")
    if is_int(value) and allow_int:
        dims = (value,)
    elif hasattr(value, "__len__") and not isinstance(value, (str, bytes, dict)):
        dims = tuple(value)
    else:
        _fail(TypeError, owner, name, what, _got(value))
    if not all(is_int(d) for d in dims):
        _fail(TypeError, owner, name, what, repr(value))
    if not dims or any(d < 1 for d in dims):
        _fail(ValueError, owner, name, what, repr(value))
    return tuple(int(d) for d in dims)


# -- a layer's input and dout -------------------------------------------------------------

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_array(owner: str, x, what: str = "input") -> None:
    """TypeError unless ``x`` is an array (NumPy or CuPy), ValueError unless its dtype is
    float32 or float64."""
    if not (hasattr(x, "dtype") and hasattr(x, "shape") and hasattr(x, "ndim")):
        raise TypeError(
            f"{owner}: expected {what} to be a float32/float64 ndarray, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(
            f"{owner}: expected {what} of dtype float32 or float64, got {x.dtype}")


def same_dtype(owner: str, x, param) -> None:
    """ValueError when the input's dtype is not the parameter's dtype (as torch refuses)."""
    if x.dtype != param.data.dtype:
        hint = ".double()" if x.dtype == np.float64 else ".float()"
        raise ValueError(
            f"{owner}: input dtype {x.dtype} does not match parameter dtype "
            f"{param.data.dtype}; convert the module with {hint} (or the input with "
            f".astype({param.data.dtype.name}))")


def dout(owner: str, dout, out_shape, out_dtype) -> None:
    """``float_array``'s errors, and ValueError unless ``dout`` has the shape and dtype the
    forward output had."""
    float_array(owner, dout, "dout")
    if tuple(dout.shape) != tuple(out_shape):
        raise ValueError(
            f"{owner}.backward: expected dout of shape {tuple(out_shape)} (the forward "
            f"output's shape), got {tuple(dout.shape)}")
    if dout.dtype != out_dtype:
        raise ValueError(
            f"{owner}.backward: expected dout of dtype {out_dtype} (the forward output's "
            f"dtype), got {dout.dtype}")
