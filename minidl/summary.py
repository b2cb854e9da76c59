"""``summary(model, input_shape)``: a table of a model's layers, as torchinfo prints.

    >>> from minidl import nn, summary
    >>> model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
    ...                       nn.Flatten(), nn.Linear(8 * 14 * 14, 10))
    >>> s = summary(model, (1, 1, 28, 28))
    >>> print(s)                          # the table
    >>> s.total_params, s.total_mult_adds

One forward pass of a batch of the given shape runs in eval mode (every module's mode is
restored afterwards; the global random state is not touched).  Each module's output
shape is recorded as it returns; its parameters are counted from its own parameters
(a container's row shows ``--``; its layers carry the counts).

Multiply-adds count the products with weights, per forward of the whole batch:

* ``Linear``: ``prod(x.shape[:-1]) * in_features * out_features``;
* ``Conv2d``: ``N * H_out * W_out * C_out * C_in * kh * kw``;
* ``RNN``/``LSTM``/``GRU``: per time step and sample, one product with every
  ``weight_ih*`` and ``weight_hh*`` (``G*in + G*H`` per layer and direction, ``G`` = gates x H);
  the ``*Cell`` layers the same for their single step;
* ``BatchNorm*``/``LayerNorm``: one per output element for the learned scale (0 without it);
* activations, pooling, dropout, reshapes: 0 (no weights).

Bias additions are not counted.  A module of another type that owns parameters gets
``?`` (its count is unknown) and the total then says it is a lower bound.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import _checks, backend
from .nn.module import Module

__all__ = ["summary", "Summary", "LayerRow"]


@dataclass
class LayerRow:
    """One module of the model: its dotted ``name`` ("" for the model itself), ``depth``,
    ``type``, ``output_shape`` (None when the forward pass never called it; a tuple, or
    a tuple of such for a module returning several arrays), its own ``params``
    (elements of the parameters it owns directly), ``mult_adds`` (None when unknown)
    and ``calls`` (how many times the forward pass called it)."""

    name: str
    depth: int
    type: str
    output_shape: object
    params: int
    mult_adds: int | None
    calls: int
    is_container: bool


@dataclass
class Summary:
    """What ``summary`` found; ``str(summary)`` is the table.

    ``total_params``: elements of all parameters (each shared one once);
    ``trainable_params``: those an optimizer over ``model.parameters()`` trains -- every
    minidl ``Parameter``, so equal to ``total_params``; ``buffer_elements``: elements of
    the state that is not trained (BatchNorm running statistics); ``total_mult_adds``:
    sum over the layers (a lower bound when ``mult_adds_complete`` is False);
    ``param_bytes``: memory of the parameters; ``output_shape``: the model's output.
    """

    model_type: str
    input_shape: tuple
    dtype: str
    rows: list = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    buffer_elements: int = 0
    param_bytes: int = 0
    total_mult_adds: int = 0
    mult_adds_complete: bool = True
    output_shape: object = None

    def __str__(self) -> str:
        return _format(self)

    def _repr_pretty_(self, printer, cycle):   # IPython/Jupyter display: the table
        printer.text(str(self))

    def to_dict(self) -> dict:
        """Plain data (lists, dicts, ints) for JSON."""
        return {
            "model": self.model_type, "input_shape": list(self.input_shape),
            "dtype": self.dtype, "output_shape": _plain(self.output_shape),
            "total_params": self.total_params, "trainable_params": self.trainable_params,
            "buffer_elements": self.buffer_elements, "param_bytes": self.param_bytes,
            "total_mult_adds": self.total_mult_adds,
            "mult_adds_complete": self.mult_adds_complete,
            "layers": [{"name": r.name, "type": r.type, "output_shape": _plain(r.output_shape),
                        "params": r.params, "mult_adds": r.mult_adds, "calls": r.calls}
                       for r in self.rows],
        }


def _plain(shape):
    if shape is None:
        return None
    if shape and isinstance(shape[0], tuple):
        return [_plain(s) for s in shape]
    return list(shape)


# -- multiply-adds of one call ------------------------------------------------------

def _own_size(module, prefix: str) -> int:
    return sum(int(p.size) for name, p in module._parameters.items() if name.startswith(prefix))


def _linear(module, inputs, output):
    x = inputs[0]
    return math.prod(x.shape[:-1]) * int(module.weight.size)


def _conv2d(module, inputs, output):
    n, _, h_out, w_out = output.shape
    return n * h_out * w_out * int(module.weight.size)


def _recurrent(module, inputs, output):
    x = inputs[0]
    steps, batch = (x.shape[1], x.shape[0]) if module.batch_first else x.shape[:2]
    return steps * batch * (_own_size(module, "weight_ih") + _own_size(module, "weight_hh"))


def _cell(module, inputs, output):
    return inputs[0].shape[0] * (_own_size(module, "weight_ih") + _own_size(module, "weight_hh"))


def _normalization(module, inputs, output):
    return int(output.size) if module._parameters.get("weight") is not None else 0


def _mult_adds_rules():
    from .nn import (Linear, Conv2d, RNN, LSTM, GRU, RNNCell, LSTMCell, GRUCell,  # noqa: PLC0415
                     BatchNorm1d, BatchNorm2d, LayerNorm)
    return [(Linear, _linear), (Conv2d, _conv2d), ((RNN, LSTM, GRU), _recurrent),
            ((RNNCell, LSTMCell, GRUCell), _cell),
            ((BatchNorm1d, BatchNorm2d, LayerNorm), _normalization)]


def _mult_adds(module, inputs, output, rules):
    for types, rule in rules:
        if isinstance(module, types):
            return rule(module, inputs, output)
    if module._parameters:
        return None        # a layer with weights whose cost we do not know
    return 0


def _shape_of(out):
    if hasattr(out, "shape"):
        return tuple(int(d) for d in out.shape)
    if isinstance(out, (tuple, list)):
        return tuple(_shape_of(o) for o in out)
    return None


# -- the forward pass ---------------------------------------------------------------

def _check_input_shape(input_shape) -> tuple:
    return _checks.shape("summary", "input_shape", input_shape, allow_int=False,
                         what="a tuple of positive ints including the batch dimension "
                              "(e.g. (1, 1, 28, 28) for one Fashion-MNIST image)")


def summary(model, input_shape, dtype=None) -> Summary:
    """Run ``model`` once on a batch of shape ``input_shape`` and tabulate its layers.

    Parameters
    ----------
    model : ``minidl.nn.Module``
    input_shape : tuple of positive ints, *including* the batch dimension, e.g.
        ``(1, 1, 28, 28)`` (one Fashion-MNIST image) or ``(64, 28, 28)``.
    dtype : dtype of the made-up input; by default the dtype of the model's first
        parameter (float32 for a model without parameters).

    Returns
    -------
    Summary: ``str()`` is the table; ``rows`` the layers; ``total_params``,
    ``trainable_params``, ``buffer_elements``, ``param_bytes``, ``total_mult_adds``.

    Raises
    ------
    ValueError
        ``model`` is not a Module, ``input_shape`` is not a tuple of positive ints, or the
        model cannot run on such an input (the message carries the layer's own error).
    """
    if not isinstance(model, Module):
        raise ValueError(f"summary: expected a minidl.nn.Module, got {type(model).__name__}")
    shape = _check_input_shape(input_shape)
    params = list(model.parameters())
    ref = params[0].data if params else None
    if dtype is None:
        dtype = ref.dtype if ref is not None else np.float32
    dtype = np.dtype(dtype)
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    if ref is not None:
        x = backend.asarray_like(x, ref)

    named = list(model.named_modules())
    calls = {id(m): [] for _, m in named}
    rules = _mult_adds_rules()

    def traced(module):
        forward = module.forward

        def forward_and_record(*args, **kwargs):
            out = forward(*args, **kwargs)
            calls[id(module)].append((_shape_of(out), _mult_adds(module, args, out, rules)))
            return out
        return forward_and_record

    saved_modes = [(m, m.training) for _, m in named]
    for _, m in named:
        object.__setattr__(m, "forward", traced(m))
    model.eval()
    try:
        output = model(x)
    except Exception as exc:
        raise ValueError(
            f"summary: {type(model).__name__} cannot run on an input of shape {shape} "
            f"({dtype}): {type(exc).__name__}: {exc}") from exc
    finally:
        for m, training in saved_modes:
            m.__dict__.pop("forward", None)
            m.training = training

    result = Summary(model_type=type(model).__name__, input_shape=shape, dtype=str(dtype),
                     output_shape=_shape_of(output))
    for name, m in named:
        records = calls[id(m)]
        macs = [r[1] for r in records]
        row = LayerRow(name=name, depth=name.count(".") + 1 if name else 0,
                       type=type(m).__name__,
                       output_shape=records[0][0] if records else None,
                       params=sum(int(p.size) for p in m._parameters.values()),
                       mult_adds=None if None in macs else sum(macs),
                       calls=len(records), is_container=bool(m._modules))
        result.rows.append(row)
        if row.mult_adds is None:
            result.mult_adds_complete = False
        else:
            result.total_mult_adds += row.mult_adds
    result.total_params = sum(int(p.size) for p in params)
    result.trainable_params = result.total_params
    result.param_bytes = sum(int(p.data.nbytes) for p in params)
    result.buffer_elements = sum(int(b.size) for b in model.buffers() if b is not None)
    return result


# -- the table ------------------------------------------------------------------------

def _shape_text(shape, top: bool = True) -> str:
    """``[N, C, H, W]``; several outputs ``[T, N, H], ([L, N, H], [L, N, H])``."""
    if shape is None:
        return "--"
    if shape and isinstance(shape[0], tuple):
        inner = ", ".join(_shape_text(s, top=False) for s in shape)
        return inner if top else f"({inner})"
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _count_text(n) -> str:
    if n is None:
        return "?"
    return f"{n:,}"


def _human(n: float, unit: str = "") -> str:
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {suffix}{unit}"
    return f"{n:.0f} {unit}".rstrip()


def _format(s: Summary) -> str:
    lines = []
    for r in s.rows:
        label = r.type if not r.name else "  " * (r.depth - 1) + f"{r.name} ({r.type})"
        own = r.params or r.mult_adds or not r.is_container
        lines.append((label, _shape_text(r.output_shape),
                      _count_text(r.params) if own else "--",
                      _count_text(r.mult_adds) if own else "--"))
    head = ("Layer (type)", "Output shape", "Param #", "Mult-adds")
    widths = [max(len(head[i]), *(len(row[i]) for row in lines)) for i in range(4)]
    rule = "=" * (sum(widths) + 3 * 3)

    def fmt(row):
        return (f"{row[0]:<{widths[0]}}   {row[1]:<{widths[1]}}   "
                f"{row[2]:>{widths[2]}}   {row[3]:>{widths[3]}}").rstrip()

    out = [rule, fmt(head), rule, *(fmt(row) for row in lines), rule]
    out.append(f"Total params: {s.total_params:,} ({_human(s.param_bytes, 'B')} as {s.dtype})")
    out.append(f"Trainable params: {s.trainable_params:,}")
    out.append(f"Non-trainable params: {s.total_params - s.trainable_params:,}"
               + (f" (buffers, e.g. running statistics: {s.buffer_elements:,} elements)"
                  if s.buffer_elements else ""))
    bound = "" if s.mult_adds_complete else "at least "
    out.append(f"Mult-adds per forward pass of {_shape_text(s.input_shape)}: {bound}"
               f"{s.total_mult_adds:,} ({bound}{_human(s.total_mult_adds)})")
    out.append(rule)
    return "\n".join(out)
