r"""Recurrent layers: RNN, LSTM, GRU (stacked, bidirectional) and their one-step cells.

A recurrent layer runs one *cell* along the time axis, carrying a hidden state::

    h_0 -> cell(x_0, h_0) = h_1 -> cell(x_1, h_1) = h_2 -> ... -> h_T = h_n

Shapes (``batch_first=False``, torch's default; ``D = 2`` if bidirectional else 1,
``L = num_layers``)::

    x      (T, N, input_size)          (N, T, input_size) with batch_first
    output (T, N, D * hidden_size)     the last layer's h_t for every t
    h_0, h_n  (L * D, N, hidden_size)  row ``layer * D + direction``; not batch-first
    c_0, c_n  (L * D, N, hidden_size)  LSTM only

Every step's pre-activations split into an input part and a hidden part,
``x_t W_ih^T + b_ih`` and ``h_{t-1} W_hh^T + b_hh``.  The input parts of all steps are
one matrix product before the loop; the loop (``minidl.kernels.recurrent_forward``, a
registry operation: a step-by-step reference, and for LSTM/GRU one Numba kernel for the
whole loop) does the hidden product and the cell's element-wise update step by step.

**Backpropagation through time.**  Going backwards from ``t = T-1`` to 0, the
gradient reaching ``h_t`` is what the output sends (``dL/doutput_t``) plus what step
``t+1`` sends back through ``W_hh`` (for step T-1: ``dL/dh_n``).  The cell's backward
turns it into the pre-activations' gradient ``da_t`` and (LSTM) ``dc_{t-1}``; then

.. math::
    \frac{\partial L}{\partial h_{t-1}} \mathrel{+}= da^{hh}_t W_{hh}, \quad
    \frac{\partial L}{\partial W_{ih}} = \sum_t (da_t)^T x_t, \quad
    \frac{\partial L}{\partial W_{hh}} = \sum_t (da^{hh}_t)^T h_{t-1}, \quad
    \frac{\partial L}{\partial x_t} = da_t W_{ih}

with ``db_ih = sum_t da_t`` and ``db_hh = sum_t da^hh_t`` summed over the batch too
(``da^hh = da`` except for a GRU's n gate).  A reverse direction runs the same
loop on the time-reversed sequence.  A stacked layer's input gradient is the sum
over its directions, and flows into the layer below (through its dropout mask).

The cells' formulas, forward and backward, are in ``RNN``, ``LSTM`` and ``GRU``.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from .. import _checks, backend, kernels
from ..grad_mode import is_grad_enabled
from ..kernels import rnn as rnn_kernels
from . import init
from .dropout import _bernoulli_keep
from .module import Module, backward_before_forward
from .parameter import Parameter

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"]


def _mode(owner: str, nonlinearity: str) -> str:
    nonlinearity = _checks.choice(owner, "nonlinearity", nonlinearity, ("tanh", "relu"))
    return "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"


def _check_state(owner: str, what: str, value, shape, dtype) -> None:
    _checks.float_array(owner, value, what)
    if tuple(value.shape) != tuple(shape):
        raise ValueError(f"{owner}: expected {what} of shape {tuple(shape)}, got "
                         f"{tuple(value.shape)}")
    if value.dtype != dtype:
        raise ValueError(f"{owner}: expected {what} of dtype {dtype} (the input's), got "
                         f"{value.dtype}")


def _split_pair(owner: str, what: str, value, is_lstm: bool):
    """``(h, c)`` from an LSTM's pair or ``(h, None)``; None stays ``(None, None)``."""
    if value is None:
        return None, None
    if not is_lstm:
        return value, None
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        error = ValueError if isinstance(value, (tuple, list)) else TypeError
        raise error(f"{owner}: expected {what} to be a pair (h, c) of arrays, got "
                         f"{type(value).__name__}")
    return value[0], value[1]


# The cache of a forward pass inside ``minidl.no_grad()``: nothing to differentiate.
_NO_GRAD = "no_grad"


def _check_cache(name, cache):
    if cache is None:
        raise backward_before_forward(name)
    if cache is _NO_GRAD:
        raise RuntimeError(f"{name}.backward() after a forward pass inside minidl.no_grad(), "
                           f"which keeps nothing for backward: run forward again outside it")


# -- one direction of one layer (shared by the layers and the cells) --------------------
def _direction_forward(mode, x2, T, weights, h0, c0, reverse: bool):
    """Run the cell over ``x2`` = ``(T*N, I)`` (time-major rows); ``hs`` in time order.
    Inside ``minidl.no_grad()`` the loop keeps no backward cache (``keep=False``)."""
    w_ih, w_hh, b_ih, b_hh = weights
    xp = backend.xp(x2)
    x = x2.reshape(T, x2.shape[0] // T, -1)
    hs, cache = rnn_kernels.recurrent_layer_forward(
        mode, xp.ascontiguousarray(x[::-1]) if reverse else x, w_ih.data,
        None if b_ih is None else b_ih.data, w_hh.data, None if b_hh is None else b_hh.data,
        h0, c0, keep=is_grad_enabled())
    return (hs[::-1] if reverse else hs), cache


def _direction_backward(d_hs, dh_n, dc_n, x2, weights, cache, reverse: bool, need_dx: bool):
    """Accumulate this direction's weight gradients; return ``(dx2, dh0, dc0)``."""
    w_ih, w_hh, b_ih, b_hh = weights
    if reverse and d_hs is not None:
        d_hs = d_hs[::-1]
    dxg, dhg, dh0, dc0 = rnn_kernels.recurrent_backward(d_hs, dh_n, dc_n, w_hh.data, cache)
    xp = backend.xp(dxg)
    dxg2 = xp.ascontiguousarray(dxg[::-1] if reverse else dxg).reshape(x2.shape[0], -1)
    if dhg is dxg and not reverse:     # an LSTM: dG^T [h_prev | x], dG read once
        dw_hh, dw_ih, db_hh = rnn_kernels.shared_weight_grads(
            dxg, cache["hs"], cache["h0"], x2, b_hh is not None, cache.get("hs_full"))
    else:
        dw_hh, db_hh = rnn_kernels.hidden_weight_grads(dhg, cache["hs"], cache["h0"],
                                                       b_hh is not None, cache.get("hs_full"))
        # dG^T x, in the weight's layout; the contraction runs over every step and image
        dw_ih = kernels.matmul(dxg2.T, x2)
    w_hh.accumulate_grad(dw_hh, owned=True)
    if b_hh is not None:
        b_hh.accumulate_grad(db_hh, owned=True)
    w_ih.accumulate_grad(dw_ih, owned=True)
    if b_ih is not None:     # an LSTM's dhg is its dxg: the same sum as db_hh's
        b_ih.accumulate_grad(db_hh.copy() if dhg is dxg and db_hh is not None
                             else dxg2.sum(axis=0), owned=True)
    dx2 = kernels.matmul(dxg2, w_ih.data) if need_dx else None
    return dx2, dh0, dc0


class _RNNBase(Module):
    """Stacked, optionally bidirectional recurrent layer; subclasses fix the cell."""

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False):
        super().__init__()
        name = type(self).__name__
        self.mode = mode
        self.input_size = _checks.positive_int(name, "input_size", input_size)
        self.hidden_size = _checks.positive_int(name, "hidden_size", hidden_size)
        self.num_layers = _checks.positive_int(name, "num_layers", num_layers)
        self.bias = _checks.boolean(name, "bias", bias)
        self.batch_first = _checks.boolean(name, "batch_first", batch_first)
        self.bidirectional = _checks.boolean(name, "bidirectional", bidirectional)
        self.dropout = _checks.probability(name, "dropout", dropout, below_one=True)
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn(f"{name}: dropout is applied between stacked layers only, so "
                          f"dropout={self.dropout} with num_layers=1 does nothing", UserWarning,
                          stacklevel=3)
        D, H = self.num_directions, self.hidden_size
        G = rnn_kernels.GATES[mode] * H
        for layer in range(self.num_layers):
            for direction in range(D):
                sfx = self._suffix(layer, direction)
                in_size = self.input_size if layer == 0 else D * H
                setattr(self, f"weight_ih{sfx}", Parameter(np.empty((G, in_size), np.float32)))
                setattr(self, f"weight_hh{sfx}", Parameter(np.empty((G, H), np.float32)))
                if bias:
                    setattr(self, f"bias_ih{sfx}", Parameter(np.empty(G, np.float32)))
                    setattr(self, f"bias_hh{sfx}", Parameter(np.empty(G, np.float32)))
        self._cache = None
        self.hx_grad = None
        self.reset_parameters()

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @staticmethod
    def _suffix(layer: int, direction: int) -> str:
        return f"_l{layer}" + ("_reverse" if direction else "")

    def _weights(self, layer: int, direction: int):
        sfx = self._suffix(layer, direction)
        return tuple(self._parameters.get(f"{kind}{sfx}")
                     for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def reset_parameters(self) -> None:
        """torch's default: every weight and bias ~ U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
        bound = 1 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def flatten_parameters(self) -> None:
        """Does nothing: torch packs the weights into one cuDNN buffer here; minidl keeps
        them as they are.  Present so ported code runs unchanged."""

    def _check_input(self, x, hx):
        """``(x as (T, N, I), h0, c0)`` with states ``(L*D, N, H)`` (zeros when not given)."""
        name, lstm = type(self).__name__, self.mode == "LSTM"
        _checks.float_array(name, x)
        layout = "(N, T, input_size)" if self.batch_first else "(T, N, input_size)"
        steps = x.shape[1 if self.batch_first else 0] if x.ndim == 3 else 0
        if x.ndim != 3 or x.shape[2] != self.input_size or steps == 0:
            raise ValueError(f"{name}: expected a 3-D input {layout} with input_size="
                             f"{self.input_size} and T >= 1, got shape {tuple(x.shape)}")
        _checks.same_dtype(name, x, self.weight_ih_l0)
        x = x.swapaxes(0, 1) if self.batch_first else x
        shape = (self.num_layers * self.num_directions, x.shape[1], self.hidden_size)
        h0, c0 = _split_pair(name, "hx", hx, lstm)
        xp = backend.xp(x)
        if hx is not None:
            for what, s in (("h_0", h0), ("c_0", c0))[:1 + lstm]:
                _check_state(name, what, s, shape, x.dtype)
        else:
            h0 = xp.zeros(shape, x.dtype)
            c0 = xp.zeros(shape, x.dtype) if lstm else None
        return x, h0, c0

    def forward(self, x, hx=None):
        """``output, h_n`` (``output, (h_n, c_n)`` for LSTM); see the module docstring."""
        x, h0, c0 = self._check_input(x, hx)
        xp, (T, N, _) = backend.xp(x), x.shape
        D, layers = self.num_directions, []
        h_n, c_n = [], []
        y = x
        for layer in range(self.num_layers):
            noise = None
            if layer > 0 and self.training and self.dropout > 0:    # between layers only
                keep = _bernoulli_keep(y.shape, self.dropout)
                noise = backend.asarray_like(keep, y).astype(y.dtype) / (1 - self.dropout)
                y = y * noise
            x2 = xp.ascontiguousarray(y).reshape(T * N, -1)
            outs, caches = [], []
            for d in range(D):
                k = layer * D + d
                hs, cache = _direction_forward(self.mode, x2, T, self._weights(layer, d), h0[k],
                                               None if c0 is None else c0[k], reverse=d == 1)
                outs.append(hs)
                caches.append(cache)
                h_n.append(cache["hs"][-1])
                if c0 is not None:
                    c_n.append(cache["cs"][-1])
            layers.append((x2, noise, caches))
            y = outs[0] if D == 1 else xp.concatenate(outs, axis=2)
        self._cache = {"layers": layers, "T": T, "N": N, "dtype": x.dtype,
                       "out_shape": (N, T, y.shape[2]) if self.batch_first else y.shape,
                       "given_hx": hx is not None} if is_grad_enabled() else _NO_GRAD
        self.hx_grad = None
        output = y.swapaxes(0, 1) if self.batch_first else y
        if self.mode == "LSTM":
            return output, (xp.stack(h_n), xp.stack(c_n))
        return output, xp.stack(h_n)

    def backward(self, d_output, d_state=None):
        """dL/dx from ``d_output`` (the output's shape) and/or ``d_state`` (the state's:
        ``dh_n``, or ``(dh_n, dc_n)`` for LSTM); any part may be None.  Accumulates every
        parameter's ``grad``; keeps dL/d(initial state) in ``hx_grad`` when one was passed."""
        name = type(self).__name__
        _check_cache(name, self._cache)
        c = self._cache
        T, N, dtype, D, H = c["T"], c["N"], c["dtype"], self.num_directions, self.hidden_size
        if d_output is not None:
            _checks.dout(name, d_output, c["out_shape"], dtype)
        dh_n, dc_n = _split_pair(name, "d_state", d_state, self.mode == "LSTM")
        state_shape = (self.num_layers * D, N, H)
        for what, s in (("dh_n", dh_n), ("dc_n", dc_n)):
            if s is not None:
                _check_state(f"{name}.backward", what, s, state_shape, dtype)
        d_y = d_output.swapaxes(0, 1) if self.batch_first and d_output is not None else d_output
        dh0, dc0 = [None] * state_shape[0], [None] * state_shape[0]
        for layer in reversed(range(self.num_layers)):
            x2, noise, caches = c["layers"][layer]
            need_dx = layer > 0 or self.needs_input_grad
            dx2 = None
            for d in range(D):
                k = layer * D + d
                d_hs = None if d_y is None else d_y[:, :, d * H:(d + 1) * H]
                part, dh0[k], dc0[k] = _direction_backward(
                    d_hs, None if dh_n is None else dh_n[k], None if dc_n is None else dc_n[k],
                    x2, self._weights(layer, d), caches[d], d == 1, need_dx)
                dx2 = part if dx2 is None or part is None else dx2 + part
            d_y = None if dx2 is None else dx2.reshape(T, N, -1)
            if noise is not None:
                d_y = d_y * noise
        if c["given_hx"]:
            xp = backend.xp(dh0[0])
            self.hx_grad = (xp.stack(dh0), xp.stack(dc0)) if self.mode == "LSTM" \
                else xp.stack(dh0)
        if d_y is None:
            return None
        return d_y.swapaxes(0, 1) if self.batch_first else d_y

    def _convert_extra(self, fn) -> None:
        self._cache = None        # cached arrays are of the old dtype/device
        self.hx_grad = None

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class RNN(_RNNBase):
    r"""Elman RNN: ``h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``.

    ``act`` is tanh (default) or relu (``nonlinearity="relu"``).  Parameters per
    layer ``k`` and direction: ``weight_ih_l{k}`` ``(H, I_k)``, ``weight_hh_l{k}``
    ``(H, H)``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` ``(H,)`` (``_reverse`` suffix for the
    reverse direction), ``I_0 = input_size``, ``I_k = D * H`` above.

    Cell backward (``dh`` = all gradient reaching ``h_t``):

    .. math::
        da_t = dh \odot (1 - h_t^2) \;\;(\tanh), \qquad
        da_t = dh \odot [h_t > 0] \;\;(\mathrm{relu}), \qquad
        dh_{t-1} = da_t W_{hh}

    ``forward(x, h_0=None) -> (output, h_n)``; ``backward(d_output, dh_n=None) -> dx``
    (see the module docstring for shapes and BPTT).  Dropout with probability
    ``dropout`` is applied to each layer's output except the last, in training mode.

    Matches ``torch.nn.RNN`` (arguments, defaults, init, parameter names).
    NOTE: the input must be batched (3-D; torch also takes one unbatched 2-D
    sequence: pass ``x[:, None]``), and ``dropout`` must be below 1 (torch accepts 1,
    which zeroes every layer's input above the first).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False):
        super().__init__(_mode("RNN", nonlinearity), input_size, hidden_size, num_layers, bias,
                         batch_first, dropout, bidirectional)
        self.nonlinearity = nonlinearity


class LSTM(_RNNBase):
    r"""Long short-term memory, gates in torch's order ``i, f, g, o``.

    .. math::
        \begin{aligned}
        a_t &= x_t W_{ih}^T + b_{ih} + h_{t-1} W_{hh}^T + b_{hh}
              \quad (N, 4H) = [a^i, a^f, a^g, a^o] \\
        i &= \sigma(a^i), \; f = \sigma(a^f), \; g = \tanh(a^g), \; o = \sigma(a^o) \\
        c_t &= f \odot c_{t-1} + i \odot g, \qquad h_t = o \odot \tanh(c_t)
        \end{aligned}

    Cell backward, with ``dh`` and ``dc`` the gradients reaching ``h_t`` and ``c_t``:

    .. math::
        \begin{aligned}
        \hat{dc} &= dc + dh \odot o \odot (1 - \tanh^2 c_t), \qquad
        dc_{t-1} = \hat{dc} \odot f \\
        da^i &= \hat{dc} \odot g \odot i(1-i), \quad
        da^f = \hat{dc} \odot c_{t-1} \odot f(1-f) \\
        da^g &= \hat{dc} \odot i \odot (1-g^2), \quad
        da^o = dh \odot \tanh(c_t) \odot o(1-o), \qquad
        dh_{t-1} = da_t W_{hh}
        \end{aligned}

    ``forward(x, (h_0, c_0)=None) -> (output, (h_n, c_n))``;
    ``backward(d_output, (dh_n, dc_n)=None) -> dx``.  Weights ``(4H, I_k)`` and
    ``(4H, H)``, biases ``(4H,)``, named as in ``RNN``.

    Matches ``torch.nn.LSTM``.  NOTE: ``proj_size`` is not supported (only 0), and
    the NOTEs of ``RNN`` apply.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0):
        if proj_size != 0:
            raise ValueError(f"LSTM: proj_size is not supported; expected 0, got {proj_size!r}")
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional)


class GRU(_RNNBase):
    r"""Gated recurrent unit, gates in torch's order ``r, z, n``.

    .. math::
        \begin{aligned}
        r &= \sigma(x_t W_{ir}^T + b_{ir} + h_{t-1} W_{hr}^T + b_{hr}), \quad
        z = \sigma(x_t W_{iz}^T + b_{iz} + h_{t-1} W_{hz}^T + b_{hz}) \\
        n &= \tanh\big(x_t W_{in}^T + b_{in} + r \odot (h_{t-1} W_{hn}^T + b_{hn})\big), \qquad
        h_t = (1 - z) \odot n + z \odot h_{t-1}
        \end{aligned}

    (the reset gate multiplies ``W_hn h + b_hn``, as in torch).  Cell backward,
    with ``u = h_{t-1} W_hn^T + b_hn``:

    .. math::
        \begin{aligned}
        da^n &= dh \odot (1-z) \odot (1-n^2), \quad
        da^z = dh \odot (h_{t-1} - n) \odot z(1-z), \quad
        da^r = da^n \odot u \odot r(1-r) \\
        da^{ih} &= [da^r, da^z, da^n], \quad
        da^{hh} = [da^r, da^z, da^n \odot r], \qquad
        dh_{t-1} = dh \odot z + da^{hh} W_{hh}
        \end{aligned}

    ``forward(x, h_0=None) -> (output, h_n)``; ``backward(d_output, dh_n=None) -> dx``.
    Weights ``(3H, I_k)`` and ``(3H, H)``, biases ``(3H,)``.

    Matches ``torch.nn.GRU``; the NOTEs of ``RNN`` apply.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional)


# -- one step -------------------------------------------------------------------------
class _CellBase(Module):
    """One step of a cell on ``(N, input_size)``; the math is that of ``RNN``/``LSTM``/``GRU``."""

    def __init__(self, mode, input_size, hidden_size, bias=True):
        super().__init__()
        name = type(self).__name__
        self.mode = mode
        self.input_size = _checks.positive_int(name, "input_size", input_size)
        self.hidden_size = _checks.positive_int(name, "hidden_size", hidden_size)
        self.bias = _checks.boolean(name, "bias", bias)
        G = rnn_kernels.GATES[mode] * self.hidden_size
        self.weight_ih = Parameter(np.empty((G, self.input_size), np.float32))
        self.weight_hh = Parameter(np.empty((G, self.hidden_size), np.float32))
        if bias:
            self.bias_ih = Parameter(np.empty(G, np.float32))
            self.bias_hh = Parameter(np.empty(G, np.float32))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self._cache = None
        self.hx_grad = None
        self.reset_parameters()

    reset_parameters = _RNNBase.reset_parameters

    def _weights(self):
        return self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh

    def forward(self, x, hx=None):
        name, lstm = type(self).__name__, self.mode == "LSTM"
        _checks.float_array(name, x)
        if x.ndim != 2 or x.shape[1] != self.input_size:
            raise ValueError(f"{name}: expected a 2-D input (N, input_size={self.input_size}), "
                             f"got shape {tuple(x.shape)}")
        _checks.same_dtype(name, x, self.weight_ih)
        h0, c0 = _split_pair(name, "hx", hx, lstm)
        shape = (x.shape[0], self.hidden_size)
        if hx is not None:
            for what, s in (("h", h0), ("c", c0))[:1 + lstm]:
                _check_state(name, what, s, shape, x.dtype)
        xp = backend.xp(x)
        if hx is None:
            h0 = xp.zeros(shape, x.dtype)
            c0 = xp.zeros(shape, x.dtype) if lstm else None
        x2 = xp.ascontiguousarray(x)
        hs, cache = _direction_forward(self.mode, x2, 1, self._weights(), h0, c0, False)
        self._cache = (x2, cache, hx is not None) if is_grad_enabled() else _NO_GRAD
        self.hx_grad = None
        return (hs[0], cache["cs"][0]) if lstm else hs[0]

    def _backward(self, dh, dc):
        name = type(self).__name__
        _check_cache(name, self._cache)
        x2, cache, given_hx = self._cache
        shape = (x2.shape[0], self.hidden_size)
        for what, s in (("dh", dh), ("dc", dc)):
            if s is not None:
                _checks.dout(name, s, shape, x2.dtype)
        dx, dh0, dc0 = _direction_backward(None if dh is None else dh[None], None, dc, x2,
                                           self._weights(), cache, False, True)
        if given_hx:
            self.hx_grad = (dh0, dc0) if self.mode == "LSTM" else dh0
        return dx

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        return s


class RNNCell(_CellBase):
    """One Elman step: ``h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)`` (math: ``RNN``).

    ``forward(x (N, I), h (N, H)=None) -> h'``; ``backward(dh') -> dx`` with dL/dh in
    ``hx_grad`` when ``h`` was passed.  Matches ``torch.nn.RNNCell`` (NOTE: batched
    input only).
    """

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh"):
        super().__init__(_mode("RNNCell", nonlinearity), input_size, hidden_size, bias)
        self.nonlinearity = nonlinearity

    def backward(self, dh):
        return self._backward(dh, None)


class LSTMCell(_CellBase):
    """One LSTM step (math: ``LSTM``).

    ``forward(x (N, I), (h, c)=None) -> (h', c')``; ``backward(dh', dc'=None) -> dx``
    (either may be None) with ``(dL/dh, dL/dc)`` in ``hx_grad`` when ``(h, c)`` was passed.
    Matches ``torch.nn.LSTMCell`` (NOTE: batched input only).
    """

    def __init__(self, input_size, hidden_size, bias=True):
        super().__init__("LSTM", input_size, hidden_size, bias)

    def backward(self, dh, dc=None):
        return self._backward(dh, dc)


class GRUCell(_CellBase):
    """One GRU step (math: ``GRU``).

    ``forward(x (N, I), h (N, H)=None) -> h'``; ``backward(dh') -> dx`` with dL/dh in
    ``hx_grad`` when ``h`` was passed.  Matches ``torch.nn.GRUCell`` (NOTE: batched
    input only).
    """

    def __init__(self, input_size, hidden_size, bias=True):
        super().__init__("GRU", input_size, hidden_size, bias)

    def backward(self, dh):
        return self._backward(dh, None)
