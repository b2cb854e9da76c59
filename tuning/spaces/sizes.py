r"""Counting a network's trainable parameters from its config alone (nothing allocated).

Each space's ``count_parameters(config)`` returns ``[(layer, parameters), ...]`` for the
network its ``build_model`` builds, as ``Module.num_parameters`` counts them: a
``Linear(i, o)`` has :math:`io + o`, a ``Conv2d(i, o, k)`` :math:`o i k^2` (+ :math:`o`
with a bias), a ``BatchNorm2d(c)`` :math:`2c`, an LSTM (GRU) layer of width :math:`h` on
inputs of width :math:`w` :math:`d \cdot g h (w + h + 2)` with :math:`g` = 4 (3) gates
and :math:`d` = 2 when bidirectional.  ``tuning.load_model`` bounds a model folder's size
with it before building anything, so a counter reads sizes with ``size``/``sizes``:
KeyError for a missing key, ValueError for a size that is not an integer >= 1.  A config
``build_model`` would refuse for another reason counts what it can (``build_model`` then
says what is wrong).
"""
from __future__ import annotations


def size(value, what: str) -> int:
    """A layer size from a config: an integer >= 1 (ValueError naming ``what`` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{what} is {value!r}, expected an integer >= 1")
    try:
        number = int(value)
    except (ValueError, OverflowError):
        raise ValueError(f"{what} is {value!r}, expected an integer >= 1") from None
    if number < 1:
        raise ValueError(f"{what} is {value!r}, expected an integer >= 1")
    return number


def sizes(config: dict, key: str) -> list:
    """``config[key]``, a list of layer sizes (each checked by ``size``)."""
    values = config[key]
    if not isinstance(values, list):
        raise ValueError(f"{key} is {values!r}, expected a list of integers")
    return [size(v, f"{key}[{i}]") for i, v in enumerate(values)]


def linear(n_in: int, n_out: int) -> tuple[str, int]:
    """``("Linear(i, o)", io + o)``."""
    return f"Linear({n_in}, {n_out})", n_in * n_out + n_out
