"""minidl._checks: a wrong type is a TypeError, a wrong value a ValueError, and the message
names the owner, the argument, what was expected and what arrived."""
from __future__ import annotations

import math

import numpy as np
import pytest

from minidl import _checks


@pytest.mark.parametrize("value, error", [("3", TypeError), (True, TypeError), (1.5, TypeError),
                                          (None, TypeError), (0, ValueError), (-2, ValueError)])
def test_positive_int_refuses(value, error):
    with pytest.raises(error, match=r"^Conv2d: expected in_channels to be a positive int, got "):
        _checks.positive_int("Conv2d", "in_channels", value)


def test_ints_come_back_as_python_ints():
    got = _checks.positive_int("X", "n", np.int64(3))
    assert got == 3 and type(got) is int
    assert _checks.non_negative_int("X", "n", 0) == 0
    assert _checks.integer("X", "dim", -5) == -5
    with pytest.raises(ValueError, match="expected last_epoch to be an int >= -1, got -2"):
        _checks.integer("X", "last_epoch", -2, -1)
    with pytest.raises(TypeError, match="got str '1'"):
        _checks.non_negative_int("X", "n", "1")


def test_boolean_takes_python_and_numpy_bools_only():
    assert _checks.boolean("X", "flag", np.bool_(True)) is True
    for bad in (1, 0, "yes", None):
        with pytest.raises(TypeError, match="^X: expected flag to be a bool"):
            _checks.boolean("X", "flag", bad)


def test_real_bounds_nan_and_finiteness():
    assert _checks.real("X", "a", np.float32(0.5), 0, 1) == 0.5
    assert _checks.non_negative("X", "eps", 0) == 0.0
    with pytest.raises(ValueError, match=r"expected p to be a probability in \[0, 1\), got 1"):
        _checks.probability("X", "p", 1, below_one=True)
    assert _checks.probability("X", "p", 1) == 1.0
    with pytest.raises(ValueError, match=r"a number >= 0, got nan"):
        _checks.non_negative("X", "eps", math.nan)
    with pytest.raises(ValueError, match="a finite number"):
        _checks.real("X", "lr", math.inf, finite=True)
    assert _checks.real("X", "lr", -3, finite=True) == -3.0
    for bad in ("0.1", True, None, [1.0]):
        with pytest.raises(TypeError, match="^X: expected a to be a number"):
            _checks.real("X", "a", bad)


def test_choice():
    assert _checks.choice("GELU", "approximate", "tanh", ("none", "tanh")) == "tanh"
    with pytest.raises(ValueError, match="^GELU: expected approximate 'none' or 'tanh', got 'fast'"):
        _checks.choice("GELU", "approximate", "fast", ("none", "tanh"))
    with pytest.raises(TypeError, match="got int 3"):
        _checks.choice("GELU", "approximate", 3, ("none", "tanh"))


def test_shape():
    assert _checks.shape("LayerNorm", "normalized_shape", 4) == (4,)
    assert _checks.shape("LayerNorm", "normalized_shape", [2, np.int64(3)]) == (2, 3)
    for bad, error in (("3", TypeError), ((2, 1.5), TypeError), ((), ValueError),
                       ((2, 0), ValueError), (None, TypeError)):
        with pytest.raises(error, match="expected normalized_shape to be"):
            _checks.shape("LayerNorm", "normalized_shape", bad)
    with pytest.raises(TypeError):
        _checks.shape("summary", "input_shape", 784, allow_int=False)
