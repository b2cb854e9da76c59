"""Solutions to notebook 9's exercises, and wrong answers the checks must reject."""
import numpy as np


def rnn_step_backward(x, h_prev, h, dh, W_ih, W_hh):
    d = dh * (1 - h ** 2)
    return d @ W_ih, d @ W_hh, d.T @ x, d.T @ h_prev, d.sum(axis=0)


def rnn_step_backward_skips_tanh(x, h_prev, h, dh, W_ih, W_hh):
    return dh @ W_ih, dh @ W_hh, dh.T @ x, dh.T @ h_prev, dh.sum(axis=0)


def clip_grad_norm(grads, max_norm):
    total = np.sqrt(sum(float((g ** 2).sum()) for g in grads))
    factor = min(1.0, max_norm / (total + 1e-6))
    return [g * factor for g in grads]


def clip_grad_norm_each(grads, max_norm):
    return [g * min(1.0, max_norm / (np.linalg.norm(g) + 1e-6)) for g in grads]


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


def lstm_step(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh):
    a = x @ W_ih.T + b_ih + h_prev @ W_hh.T + b_hh
    i, f, g, o = np.split(a, 4, axis=1)
    c = _sigmoid(f) * c_prev + _sigmoid(i) * np.tanh(g)
    return _sigmoid(o) * np.tanh(c), c


def lstm_step_gates_swapped(x, h_prev, c_prev, W_ih, W_hh, b_ih, b_hh):
    a = x @ W_ih.T + b_ih + h_prev @ W_hh.T + b_hh
    f, i, g, o = np.split(a, 4, axis=1)                 # i and f taken in the wrong order
    c = _sigmoid(f) * c_prev + _sigmoid(i) * np.tanh(g)
    return _sigmoid(o) * np.tanh(c), c


SOLUTIONS = {
    "check_rnn_step_backward": (rnn_step_backward, [rnn_step_backward_skips_tanh]),
    "check_clip_grad_norm": (clip_grad_norm, [clip_grad_norm_each]),
    "check_lstm_step": (lstm_step, [lstm_step_gates_swapped]),
}
