"""Exercise checks of notebook 9 (recurrent networks): one step of BPTT through a tanh
cell, gradient clipping by the total norm, and one LSTM step."""
from __future__ import annotations

import numpy as np

import minidl
from minidl import nn
from minidl.nn import Parameter
from minidl.nn.utils import clip_grad_norm_

from . import CheckFailed, Result, compare_arrays, run_check

__all__ = ["check_rnn_step_backward", "check_clip_grad_norm", "check_lstm_step"]


def check_rnn_step_backward(rnn_step_backward) -> Result:
    """``rnn_step_backward(x, h_prev, h, dh, W_ih, W_hh) -> (dx, dh_prev, dW_ih, dW_hh,
    db)`` for one tanh step, against ``nn.RNNCell``."""
    def body(fn):
        minidl.manual_seed(0)
        cell = nn.RNNCell(4, 3).double()
        rng = np.random.default_rng(0)
        x, h_prev = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
        h = cell(x, h_prev)
        dh = rng.standard_normal(h.shape)
        cell.zero_grad()
        dx = cell.backward(dh)
        got = fn(x, h_prev, h, dh, cell.weight_ih.data.copy(), cell.weight_hh.data.copy())
        if not isinstance(got, tuple) or len(got) != 5:
            raise CheckFailed(f"expected a tuple (dx, dh_prev, dW_ih, dW_hh, db), got "
                              f"{type(got).__name__}")
        if np.shape(got[4]) == (3,) and np.allclose(got[4], dh.sum(axis=0)):
            raise CheckFailed("db is the sum of dh: the gradient must first pass through "
                              "tanh, d = dh * (1 - h**2)")
        for name, g, e in zip(("dx", "dh_prev", "dW_ih", "dW_hh", "db"), got,
                              (dx, cell.hx_grad, cell.weight_ih.grad, cell.weight_hh.grad,
                               cell.bias_ih.grad)):
            compare_arrays(name, g, e)
        return "all five gradients equal nn.RNNCell's"
    return run_check("rnn_step_backward", body, rnn_step_backward)


def check_clip_grad_norm(clip_grad_norm) -> Result:
    """``clip_grad_norm(grads, max_norm) -> clipped grads``, against
    ``minidl.nn.utils.clip_grad_norm_``, with a total norm above and one below max_norm."""
    def body(fn):
        rng = np.random.default_rng(1)
        for scale in (10.0, 0.01):
            grads = [rng.standard_normal((3, 4)) * scale, rng.standard_normal(5) * scale * 3]
            params = [Parameter(np.zeros_like(g)) for g in grads]
            for p, g in zip(params, grads):
                p.grad = g.copy()
            clip_grad_norm_(params, max_norm=1.0)
            got = fn([g.copy() for g in grads], 1.0)
            if len(got) != len(grads):
                raise CheckFailed(f"expected {len(grads)} arrays, got {len(got)}")
            separately = [g * min(1.0, 1.0 / (np.linalg.norm(g) + 1e-6)) for g in grads]
            if scale > 1 and all(np.allclose(a, b) for a, b in zip(got, separately)):
                raise CheckFailed("each array was clipped by its own norm; clip_grad_norm_ "
                                  "scales all of them by one factor from their *total* norm "
                                  "(which keeps the direction)")
            for k, (g, p) in enumerate(zip(got, params)):
                compare_arrays(f"gradient {k} (total norm {'above' if scale > 1 else 'below'} "
                               f"max_norm)", g, p.grad, rtol=1e-6)
        return "equals clip_grad_norm_, above and below max_norm"
    return run_check("clip_grad_norm", body, clip_grad_norm)


def check_lstm_step(lstm_step) -> Result:
    """``lstm_step(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh) -> (h, c)``, against
    ``nn.LSTMCell`` (gate order i, f, g, o)."""
    def body(fn):
        minidl.manual_seed(2)
        cell = nn.LSTMCell(4, 3).double()
        rng = np.random.default_rng(2)
        x, h_prev, c_prev = (rng.standard_normal(s) for s in ((5, 4), (5, 3), (5, 3)))
        h, c = cell(x, (h_prev, c_prev))
        got = fn(x, h_prev, c_prev, cell.weight_ih.data.copy(), cell.weight_hh.data.copy(),
                 cell.bias_ih.data.copy(), cell.bias_hh.data.copy())
        if not isinstance(got, tuple) or len(got) != 2:
            raise CheckFailed(f"expected a tuple (h, c), got {type(got).__name__}")
        compare_arrays("c", got[1], c)
        compare_arrays("h", got[0], h)
        return "h and c equal nn.LSTMCell's"
    return run_check("lstm_step", body, lstm_step)
