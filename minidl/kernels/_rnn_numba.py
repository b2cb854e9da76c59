"""Numba twins of the recurrent cell steps in ``rnn.py``: one fused pass each.

Each reference step makes several NumPy passes and temporaries over ``(N, G)``
(add the two parts, sigmoid, tanh, slice, multiply, concatenate); a twin reads each
input once and writes each output once, unit by unit.  That pays for the backward
steps, which are pure arithmetic (float32, 64 x 128 units, one thread, development
machine: RNN 2.7 vs 4.0 us, GRU 20 vs 45 us; float64 GRU 23 vs 70 us).  The forward
twins call ``math.exp``/``math.tanh`` per unit, scalar libm calls that lose to NumPy's
SIMD loops, so the dispatcher leaves the forward steps to NumPy (``rnn.forward_twins``).

Steps are small (an LSTM of 128 units at batch 64: 64 x 512 gates), so there is no
``prange`` twin: a parallel launch would cost more than the step.

``one`` is passed in the arrays' dtype, so float32 arithmetic stays float32 (a
literal ``1`` would promote it to float64).  No ``fastmath``: NaN must propagate.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._parallel import check_contiguous_float


@njit(cache=True, inline="always")
def _sigmoid(a, one):
    if a >= 0:
        return one / (one + math.exp(-a))
    e = math.exp(a)
    return e / (one + e)


@njit(cache=True)
def _rnn_forward(xg, hg, h, relu, one):
    N, H = h.shape
    for n in range(N):
        for j in range(H):
            a = xg[n, j] + hg[n, j]
            if relu:
                h[n, j] = a if not (a <= 0) else one - one   # NaN stays NaN
            else:
                h[n, j] = math.tanh(a)


@njit(cache=True)
def _rnn_backward(dh, h, da, relu, one):
    N, H = h.shape
    for n in range(N):
        for j in range(H):
            if relu:
                da[n, j] = one - one if h[n, j] <= 0 else dh[n, j]   # a NaN h passes
            else:
                da[n, j] = dh[n, j] * (one - h[n, j] * h[n, j])


@njit(cache=True)
def _lstm_forward(xg, hg, c_prev, h, c, gates, tanh_c, one):
    N, H = c.shape
    for n in range(N):
        for j in range(H):
            i = _sigmoid(xg[n, j] + hg[n, j], one)
            f = _sigmoid(xg[n, H + j] + hg[n, H + j], one)
            g = math.tanh(xg[n, 2 * H + j] + hg[n, 2 * H + j])
            o = _sigmoid(xg[n, 3 * H + j] + hg[n, 3 * H + j], one)
            cc = f * c_prev[n, j] + i * g
            c[n, j] = cc
            k = math.tanh(cc)
            tanh_c[n, j] = k
            h[n, j] = o * k
            gates[n, j] = i
            gates[n, H + j] = f
            gates[n, 2 * H + j] = g
            gates[n, 3 * H + j] = o


@njit(cache=True)
def _lstm_backward(dh, dc, gates, c_prev, tanh_c, da, dc_prev, one):
    N, H = tanh_c.shape
    for n in range(N):
        for j in range(H):
            i = gates[n, j]
            f = gates[n, H + j]
            g = gates[n, 2 * H + j]
            o = gates[n, 3 * H + j]
            k = tanh_c[n, j]
            d = dh[n, j]
            dct = dc[n, j] + d * o * (one - k * k)
            da[n, j] = dct * g * i * (one - i)
            da[n, H + j] = dct * c_prev[n, j] * f * (one - f)
            da[n, 2 * H + j] = dct * i * (one - g * g)
            da[n, 3 * H + j] = d * k * o * (one - o)
            dc_prev[n, j] = dct * f


@njit(cache=True)
def _gru_forward(xg, hg, h_prev, h, gates, one):
    N, H = h.shape
    for n in range(N):
        for j in range(H):
            r = _sigmoid(xg[n, j] + hg[n, j], one)
            z = _sigmoid(xg[n, H + j] + hg[n, H + j], one)
            nn_ = math.tanh(xg[n, 2 * H + j] + r * hg[n, 2 * H + j])
            h[n, j] = (one - z) * nn_ + z * h_prev[n, j]
            gates[n, j] = r
            gates[n, H + j] = z
            gates[n, 2 * H + j] = nn_


@njit(cache=True)
def _gru_backward(dh, gates, hg_n, h_prev, dxg, dhg, dh_direct, one):
    N, H = h_prev.shape
    for n in range(N):
        for j in range(H):
            r = gates[n, j]
            z = gates[n, H + j]
            nn_ = gates[n, 2 * H + j]
            d = dh[n, j]
            da_n = d * (one - z) * (one - nn_ * nn_)
            da_z = d * (h_prev[n, j] - nn_) * z * (one - z)
            da_r = da_n * hg_n[n, j] * r * (one - r)
            dxg[n, j] = da_r
            dxg[n, H + j] = da_z
            dxg[n, 2 * H + j] = da_n
            dhg[n, j] = da_r
            dhg[n, H + j] = da_z
            dhg[n, 2 * H + j] = da_n * r
            dh_direct[n, j] = d * z


def _c(a, name):
    return check_contiguous_float(a, "rnn cell", name)


def rnn_cell_forward_numba(xg, hg, relu: bool):
    """Numba twin of ``rnn_cell_forward_reference``."""
    xg, hg = _c(xg, "xg"), _c(hg, "hg")
    h = np.empty_like(xg)
    _rnn_forward(xg, hg, h, bool(relu), xg.dtype.type(1))
    return h


def rnn_cell_backward_numba(dh, h, relu: bool):
    """Numba twin of ``rnn_cell_backward_reference``."""
    dh, h = _c(dh, "dh"), _c(h, "h")
    da = np.empty_like(dh)
    _rnn_backward(dh, h, da, bool(relu), dh.dtype.type(1))
    return da


def lstm_cell_forward_numba(xg, hg, c_prev):
    """Numba twin of ``lstm_cell_forward_reference``: ``(h, c, gates, tanh_c)``."""
    xg, hg, c_prev = _c(xg, "xg"), _c(hg, "hg"), _c(c_prev, "c_prev")
    h, c, tanh_c = np.empty_like(c_prev), np.empty_like(c_prev), np.empty_like(c_prev)
    gates = np.empty_like(xg)
    _lstm_forward(xg, hg, c_prev, h, c, gates, tanh_c, xg.dtype.type(1))
    return h, c, gates, tanh_c


def lstm_cell_backward_numba(dh, dc, gates, c_prev, tanh_c):
    """Numba twin of ``lstm_cell_backward_reference``: ``(da, dc_prev)``."""
    dh, dc, gates = _c(dh, "dh"), _c(dc, "dc"), _c(gates, "gates")
    c_prev, tanh_c = _c(c_prev, "c_prev"), _c(tanh_c, "tanh_c")
    da, dc_prev = np.empty_like(gates), np.empty_like(tanh_c)
    _lstm_backward(dh, dc, gates, c_prev, tanh_c, da, dc_prev, dh.dtype.type(1))
    return da, dc_prev


def gru_cell_forward_numba(xg, hg, h_prev):
    """Numba twin of ``gru_cell_forward_reference``: ``(h, gates)``."""
    xg, hg, h_prev = _c(xg, "xg"), _c(hg, "hg"), _c(h_prev, "h_prev")
    h, gates = np.empty_like(h_prev), np.empty_like(xg)
    _gru_forward(xg, hg, h_prev, h, gates, xg.dtype.type(1))
    return h, gates


def gru_cell_backward_numba(dh, gates, hg_n, h_prev):
    """Numba twin of ``gru_cell_backward_reference``: ``(dxg, dhg, dh_prev_direct)``."""
    dh, gates = _c(dh, "dh"), _c(gates, "gates")
    hg_n, h_prev = _c(hg_n, "hg_n"), _c(h_prev, "h_prev")
    dxg, dhg, dh_direct = np.empty_like(gates), np.empty_like(gates), np.empty_like(dh)
    _gru_backward(dh, gates, hg_n, h_prev, dxg, dhg, dh_direct, dh.dtype.type(1))
    return dxg, dhg, dh_direct
