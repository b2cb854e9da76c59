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


# == the whole time loop in one kernel (LSTM, GRU) =======================================
#
# ``recurrent_forward`` / ``recurrent_backward`` in ``rnn.py`` run one layer-direction
# step by step from Python: per step a registry call for the hidden product, one for
# the cell, and NumPy temporaries.  The kernels below run the whole loop in Numba:
#
#     for t:  hg = h_{t-1} W_hh^T + b_hh          (minidl's GEMM micro-kernel, float32)
#             cell(xg_t, hg, state)  unit by unit  (fused gates + state update)
#
# and backward ``for t = T-1..0: cell backward; dh_{t-1} = da^hh_t W_hh (+ dh z)``.  The
# batch rows are independent through time, so the batch is cut into blocks of rows
# (``_row_blocks``: one per thread, at most ``MAX_BLOCK_ROWS`` each), and each block runs
# the whole loop (``prange`` over the blocks): one launch per sequence, no
# synchronisation per step.  From the layers (``recurrent_layer_forward_numba``) the
# input projection ``x_t W_ih^T`` is a product of the block's rows inside the loop too;
# the weight gradients stay big products after it (``rnn.hidden_weight_grads``,
# ``rnn.shared_weight_grads``).
#
# exp and tanh: Numba calls libm's scalar functions, which lose to NumPy's SIMD loops
# (see ``rnn.forward_twins``).  For float32 the loops below use ``_exp``/``_tanh``,
# written with arithmetic LLVM vectorises (Cephes' expf/tanhf polynomials, about 1-2
# ulp; 0, inf and NaN exact); float64 keeps libm (``math.exp``/``math.tanh``).

from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic, overload

from ._gemm_numba import NN_ROWS, _nn_panels, _pack_b, _pack_rows
from ._vmath_numba import (CELL_LANES, FUSED, LANES as VLANES, _vlstm_cell, _vlstm_cell_tail,
                           _vsigmoid, _vtanh)
from ._parallel import pick
from ..threads import numba_threads


@intrinsic
def _f32_from_bits(typingctx, bits):
    """The float32 whose IEEE bits are the int32 ``bits`` (a register reinterpretation)."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return sig, codegen


@intrinsic
def _fma32(typingctx, x, y, z):
    """``x * y + z`` for float32, rounded once (LLVM's ``llvm.fma``) where minidl has a
    vector route (``minidl.cpu.isa()``: its CPUs all have FMA), else rounded twice:
    ``_vmath_numba``'s vectors make the same choice (``FUSED``), so both give one set of
    bits on a machine."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        if not FUSED:
            return builder.fadd(builder.fmul(args[0], args[1]), args[2])
        f32 = ir.FloatType()
        fn = builder.module.globals.get("llvm.fma.f32") or ir.Function(
            builder.module, ir.FunctionType(f32, [f32, f32, f32]), "llvm.fma.f32")
        return builder.call(fn, args)
    return sig, codegen


_F = np.float32
_LOG2E, _HALF, _ONE, _TWO = _F(1.4426950408889634), _F(0.5), _F(1.0), _F(2.0)
_LN2_HI, _LN2_LO = _F(0.693359375), _F(-2.12194440e-4)        # ln 2 = HI + LO (Cody-Waite)
_P0, _P1, _P2, _P3, _P4, _P5 = (_F(1.9875691500e-4), _F(1.3981999507e-3), _F(8.3334519073e-3),
                                _F(4.1665795894e-2), _F(1.6666665459e-1), _F(5.0000001201e-1))
_EXP_MAX, _EXP_MIN = _F(88.0), _F(-87.0)       # 2^n stays a normal float32 in between
_OVERFLOW, _UNDERFLOW = _F(88.72283935546875), _F(-103.97208)   # e^x is inf / 0 past these
_T0, _T1, _T2, _T3, _T4 = (_F(-5.70498872745e-3), _F(2.06390887954e-2), _F(-5.37397155531e-2),
                           _F(1.33314422036e-1), _F(-3.33332819422e-1))
_TANH_SMALL = _F(0.625)
_INF, _ZERO = _F(np.inf), _F(0.0)
_I127, _I23 = np.int32(127), np.int32(23)

# The helpers are inlined into the loops (``inline="always"``) and the kernels use
# ``error_model="numpy"`` (a division by zero gives inf, no Python exception check): both
# are needed for LLVM to vectorise the loops over units.


@njit(inline="always", error_model="numpy")
def _exp32(x):
    """e^x for float32 x (Cephes expf): ``x = n ln2 + r``, ``|r| <= ln2/2``,
    ``e^x = 2^n p(r)``, 2^n built from its IEEE bits.  Within [-87, 88] about 2 ulp
    (measured with FMA on 4,000,001 points: 8.4e-8 relative); beyond, e^x is taken at
    the nearer end (off by at most a factor e^0.72 there, which changes a sigmoid or tanh
    by under 1e-38), inf past 88.72, 0 below -103.97; NaN stays NaN.  The reduction's and
    the polynomial's multiply-adds by ``_fma32`` (one rounding where the CPU has FMA)."""
    y = min(max(x, _EXP_MIN), _EXP_MAX)
    n = np.floor(_fma32(y, _LOG2E, _HALF))
    r = _fma32(n, -_LN2_LO, _fma32(n, -_LN2_HI, y))
    p = _fma32(_fma32(_fma32(_fma32(_fma32(_P0, r, _P1), r, _P2), r, _P3), r, _P4), r, _P5)
    e = (_fma32(p * r, r, r) + _ONE) * _f32_from_bits(np.int32(n) + _I127 << _I23)
    e = _INF if x > _OVERFLOW else e
    e = _ZERO if x < _UNDERFLOW else e
    return e if x == x else x


@njit(inline="always", error_model="numpy")
def _tanh32(x):
    """tanh for float32 (Cephes tanhf): ``x + x^3 P(x^2)`` below 0.625 in magnitude,
    else ``sign(x) (1 - 2 / (e^{2|x|} + 1))``."""
    a = abs(x)
    z = x * x
    small = _fma32(_fma32(_fma32(_fma32(_fma32(_T0, z, _T1), z, _T2), z, _T3), z, _T4) * z,
                   x, x)
    big = _ONE - _TWO / (_exp32(_TWO * a) + _ONE)
    big = big if x >= 0 else -big
    return small if a < _TANH_SMALL else (big if x == x else x)


def _exp(x):
    return math.exp(x)


def _tanh(x):
    return math.tanh(x)


@overload(_exp, inline="always")
def _exp_overload(x):
    """float32: ``_exp32`` (vectorisable); float64: libm's ``exp``."""
    return (lambda x: _exp32(x)) if x == types.float32 else (lambda x: math.exp(x))


@overload(_tanh, inline="always")
def _tanh_overload(x):
    """float32: ``_tanh32`` (vectorisable); float64: libm's ``tanh``."""
    return (lambda x: _tanh32(x)) if x == types.float32 else (lambda x: math.tanh(x))


@njit(inline="always", error_model="numpy")
def _sig(a, one):
    """``1 / (1 + e^{-a})`` (``_exp``: vectorisable for float32)."""
    return one / (one + _exp(-a))


def _weight_panels(w):
    return np.empty(0, w.dtype)


@overload(_weight_panels)
def _weight_panels_overload(w):
    """What the loops' products read of the weight ``w`` (K, n), packed once per sequence
    (each thread its own copy): float32 its panels (``_gemm_numba._pack_b``), float64
    nothing (the loops read ``w`` itself)."""
    if w.dtype == types.float32:
        return lambda w: _pack_b(w)
    return lambda w: np.empty(0, w.dtype)


@njit(inline="always")
def _packed_rows(m, k):
    """Scratch for ``m`` rows of ``k`` columns packed as ``_gemm_numba._pack_a`` packs,
    zeroed: the rows that pad the last block to a whole tile are multiplied too (their
    results are dropped), and leftover memory there can hold denormals, which cost a
    microcode assist per operation.  LSTM 128 training step, batch 64 (10 blocks of 6
    rows and one of 4 on the AVX2 route; Intel Xeon compiling for Haswell, one thread, an
    ad-hoc run of ``benchmarks.training``'s worker, one block of 40 steps): 17.4 ms with
    ``np.empty`` here (the forward loop alone 8.4 ms, against 4.2 ms with denormals
    flushed to zero), 12.7-12.9 ms zeroed."""
    return np.zeros(-(-m // NN_ROWS) * NN_ROWS * k, np.float32)


def _hidden_product(h, w, panels, out):
    out[...] = h @ w


@overload(_hidden_product)
def _hidden_product_overload(h, w, panels, out):
    """``out = h @ w`` for ``h`` (m, K) rows, ``w`` (K, n) C-contiguous: float32 by
    minidl's GEMM micro-kernel on ``w``'s panels (``_weight_panels``; ``_gemm_numba``),
    float64 by plain loops."""
    if h.dtype == types.float32:
        def tiles(h, w, panels, out):
            m, k = h.shape
            packed = _packed_rows(m, k)
            _pack_rows(h, packed, k, 0)
            _nn_panels(packed, m, k, panels, out)
        return tiles

    def loops(h, w, panels, out):
        m, k = h.shape
        n = w.shape[1]
        for i in range(m):
            o = out[i]
            o[:] = 0
            for kk in range(k):
                hv = h[i, kk]
                wr = w[kk]
                for j in range(n):
                    o[j] += hv * wr[j]
    return loops


def _joint_product(h, x, w, panels, out):
    out[...] = np.concatenate((h, x), axis=1) @ w


@overload(_joint_product)
def _joint_product_overload(h, x, w, panels, out):
    """``out = [h | x] @ w`` for rows ``h`` (m, H), ``x`` (m, I) and ``w`` (H + I, n)
    C-contiguous: one product for a step's hidden and input parts (``_hidden_product``'s
    routes; float32 packs ``h`` and ``x`` side by side)."""
    if h.dtype == types.float32:
        def tiles(h, x, w, panels, out):
            m, kh = h.shape
            k = kh + x.shape[1]
            packed = _packed_rows(m, k)
            _pack_rows(h, packed, k, 0)
            _pack_rows(x, packed, k, kh)
            _nn_panels(packed, m, k, panels, out)
        return tiles

    def loops(h, x, w, panels, out):
        m, kh = h.shape
        n = w.shape[1]
        for i in range(m):
            o = out[i]
            o[:] = 0
            for kk in range(kh):
                hv = h[i, kk]
                wr = w[kk]
                for j in range(n):
                    o[j] += hv * wr[j]
            for kk in range(x.shape[1]):
                xv = x[i, kk]
                wr = w[kh + kk]
                for j in range(n):
                    o[j] += xv * wr[j]
    return loops


def _sigmoid_span(v, lo, hi, one):
    for j in range(lo, hi):
        v[j] = one / (one + math.exp(-v[j]))


def _tanh_span(src, dst, lo, hi):
    for j in range(lo, hi):
        dst[j] = math.tanh(src[j])


@overload(_sigmoid_span, inline="always")
def _sigmoid_span_overload(v, lo, hi, one):
    """``v[j] = 1 / (1 + e^{-v[j]})`` for ``lo <= j < hi``, in place: float32 in whole
    vectors (``_vmath_numba._vsigmoid``) and the last ``(hi - lo) % LANES`` by ``_sig``,
    the same bits either way; float64 by libm."""
    if v.dtype == types.float32:
        def vector(v, lo, hi, one):
            top = lo + (hi - lo) // VLANES * VLANES
            for j in range(lo, top, VLANES):
                _vsigmoid(v, j, v, j)
            for j in range(top, hi):
                v[j] = _sig(v[j], one)
        return vector
    return lambda v, lo, hi, one: _sigmoid_span_scalar(v, lo, hi, one)


@overload(_tanh_span, inline="always")
def _tanh_span_overload(src, dst, lo, hi):
    """``dst[j] = tanh(src[j])`` for ``lo <= j < hi`` (``src`` may be ``dst``), as
    ``_sigmoid_span``."""
    if src.dtype == types.float32:
        def vector(src, dst, lo, hi):
            top = lo + (hi - lo) // VLANES * VLANES
            for j in range(lo, top, VLANES):
                _vtanh(src, j, dst, j)
            for j in range(top, hi):
                dst[j] = _tanh32(src[j])
        return vector
    return lambda src, dst, lo, hi: _tanh_span_scalar(src, dst, lo, hi)


@njit(inline="always", error_model="numpy")
def _sigmoid_span_scalar(v, lo, hi, one):
    for j in range(lo, hi):
        v[j] = _sig(v[j], one)


@njit(inline="always", error_model="numpy")
def _tanh_span_scalar(src, dst, lo, hi):
    for j in range(lo, hi):
        dst[j] = _tanh(src[j])


def _lstm_cell(p, q, gt, c_prev, c, tc, h, one):
    H = c.shape[0]
    a = p + q
    gt[:] = one / (one + np.exp(-a))
    gt[2 * H:3 * H] = np.tanh(a[2 * H:3 * H])
    c[:] = gt[H:2 * H] * c_prev + gt[:H] * gt[2 * H:3 * H]
    tc[:] = np.tanh(c)
    h[:] = gt[3 * H:] * tc


@njit(cache=True, error_model="numpy")
def _sig_of(a, one):
    """``_sig`` as a function of its own: inlined (Numba's IR) once here, where a helper
    inlined several times into one function draws Numba's IR-scope warnings."""
    return _sig(a, one)


@njit(cache=True, error_model="numpy")
def _tanh_of(x):
    """``_tanh`` as a function of its own (as ``_sig_of``)."""
    return _tanh(x)


@njit(cache=True, error_model="numpy")
def _lstm_unit(a_i, a_f, a_g, a_o, c_prev, one):
    """One unit of ``_lstm_cell`` from its four pre-activations: ``(i, f, g, o, c, tanh
    c, h)`` (scalars only, so a call passes no arrays: no reference counts)."""
    i, f, g, o = _sig_of(a_i, one), _sig_of(a_f, one), _tanh_of(a_g), _sig_of(a_o, one)
    c = f * c_prev + i * g
    tc = _tanh_of(c)
    return i, f, g, o, c, tc, o * tc


@overload(_lstm_cell, inline="always")
def _lstm_cell_overload(p, q, gt, c_prev, c, tc, h, one):
    """One step of one batch row, its gates' pre-activations given in two parts
    (``a = p + q``, rows of ``G = 4H``; blocks i, f, g, o)::

        i, f, o = sigma(a_i), sigma(a_f), sigma(a_o);  g = tanh(a_g)    -> gt
        c = f c_prev + i g;  tc = tanh(c);  h = o tc

    in one pass over the units: float32 by vectors, ``CELL_LANES`` units a call
    (``_vmath_numba._vlstm_cell``, the last ``H % CELL_LANES`` by its masked twin), the
    bits ``_lstm_unit`` gives; float64 unit by unit (``_lstm_unit``, libm).  No call inside the float32 route: a call in
    the loop over rows, even one never taken, made the row about 90 ns slower (the
    vector constants no longer stayed in registers; Intel Xeon with AVX-512, an ad-hoc
    test of 64 rows x 28 steps)."""
    if c.dtype == types.float32:
        def vector(p, q, gt, c_prev, c, tc, h, one):
            H = c.shape[0]
            top = H // CELL_LANES * CELL_LANES
            for j in range(0, top, CELL_LANES):
                _vlstm_cell(p, q, gt, c_prev, c, tc, h, j, CELL_LANES)
            if top < H:
                _vlstm_cell_tail(p, q, gt, c_prev, c, tc, h, top, H - top)
        return vector

    def units(p, q, gt, c_prev, c, tc, h, one):
        H = c.shape[0]
        for j in range(H):
            gt[j], gt[H + j], gt[2 * H + j], gt[3 * H + j], c[j], tc[j], h[j] = _lstm_unit(
                p[j] + q[j], p[H + j] + q[H + j], p[2 * H + j] + q[2 * H + j],
                p[3 * H + j] + q[3 * H + j], c_prev[j], one)
    return units


@njit(inline="always", error_model="numpy")
def _lstm_cell_step(p, q, gates, cs, tcs, hs, t, n, lo, keep, one):
    """``_lstm_cell`` for step ``t`` of batch row ``n`` in the block of rows from ``lo``
    (``gates``, ``cs``, ``tcs``, ``hs`` and ``keep`` as in ``_lstm_seq_forward_rows``).
    Without ``keep`` every row of the block writes its gates and ``tanh c`` to the
    block's first row of ``gates``/``tcs``, which stays in L1 (LSTM 128, batch 1000, one
    thread: ``python -m benchmarks.rnn_parts``)."""
    c_prev = cs[t if keep else t % 2, n]
    c = cs[t + 1 if keep else (t + 1) % 2, n]
    gt = gates[t, n] if keep else gates[0, lo]
    tc = tcs[t, n] if keep else tcs[0, lo]
    _lstm_cell(p, q, gt, c_prev, c, tc, hs[t + 1, n], one)


@njit(cache=True, error_model="numpy")
def _lstm_seq_forward_rows(xg, w_t, b_hh, hs, cs, gates, tcs, hg_all, lo, hi, keep, one):
    """Rows ``[lo, hi)`` of the batch through all steps (see ``lstm_cell_forward``).
    ``hs``, ``cs``: ``(T + 1, N, H)``, the initial states in ``[0]``, step t's in ``[t + 1]``.
    Without ``keep`` (no backward to follow) ``gates`` and ``tcs`` have one step,
    rewritten at every step, and ``cs`` two, used in turn (step t's state in
    ``[(t + 1) % 2]``).

    Per row and step: ``u = h W_hh^T + b_hh`` (in the scratch row), then the cell
    (``_lstm_cell``) of the pre-activations ``x + u``."""
    T = xg.shape[0]
    G = w_t.shape[1]
    hg = hg_all[lo:hi]                                   # scratch: this step's h W_hh^T
    panels = _weight_panels(w_t)
    for t in range(T):
        _hidden_product(hs[t, lo:hi], w_t, panels, hg)
        for r in range(hi - lo):
            n = lo + r
            u = hg[r]
            for j in range(G):
                u[j] += b_hh[j]
            _lstm_cell_step(xg[t, n], u, gates, cs, tcs, hs, t, n, lo, keep, one)


@njit(parallel=True, cache=True, error_model="numpy")
def _lstm_seq_forward_parallel(xg, w_t, b_hh, hs, cs, gates, tcs, hg, rows, keep, one):
    N = hs.shape[1]
    for blk in prange(-(-N // rows)):
        _lstm_seq_forward_rows(xg, w_t, b_hh, hs, cs, gates, tcs, hg, blk * rows,
                               min(N, (blk + 1) * rows), keep, one)


@njit(cache=True, error_model="numpy")
def _lstm_seq_forward_serial(xg, w_t, b_hh, hs, cs, gates, tcs, hg, rows, keep, one):
    N = hs.shape[1]
    for blk in range(-(-N // rows)):
        _lstm_seq_forward_rows(xg, w_t, b_hh, hs, cs, gates, tcs, hg, blk * rows,
                               min(N, (blk + 1) * rows), keep, one)


@njit(cache=True, error_model="numpy")
def _lstm_layer_forward_rows(x, w_cat, b, hs, cs, gates, tcs, hg_all, lo, hi, keep, one):
    """``_lstm_seq_forward_rows`` with the input projection inside the loop: per step one
    product ``[h_{t-1} | x_t] @ w_cat`` (``w_cat`` = ``[W_hh^T; W_ih^T]``, ``(H + I, G)``)
    and ``b = b_ih + b_hh``, so the ``(T, N, G)`` projection is never written or read."""
    T = x.shape[0]
    hg = hg_all[lo:hi]                                   # scratch: this step's products
    panels = _weight_panels(w_cat)
    for t in range(T):
        _joint_product(hs[t, lo:hi], x[t, lo:hi], w_cat, panels, hg)
        for r in range(hi - lo):
            n = lo + r
            _lstm_cell_step(hg[r], b, gates, cs, tcs, hs, t, n, lo, keep, one)


@njit(parallel=True, cache=True, error_model="numpy")
def _lstm_layer_forward_parallel(x, w_cat, b, hs, cs, gates, tcs, hg, rows, keep, one):
    N = hs.shape[1]
    for blk in prange(-(-N // rows)):
        _lstm_layer_forward_rows(x, w_cat, b, hs, cs, gates, tcs, hg, blk * rows,
                                 min(N, (blk + 1) * rows), keep, one)


@njit(cache=True, error_model="numpy")
def _lstm_layer_forward_serial(x, w_cat, b, hs, cs, gates, tcs, hg, rows, keep, one):
    N = hs.shape[1]
    for blk in range(-(-N // rows)):
        _lstm_layer_forward_rows(x, w_cat, b, hs, cs, gates, tcs, hg, blk * rows,
                                 min(N, (blk + 1) * rows), keep, one)


@njit(cache=True, error_model="numpy")
def _lstm_seq_backward_rows(d_hs, has_d_hs, dh_n, dc_n, w_hh, cs, gates, tcs,
                            dxg, dh0, dc0, lo, hi, one):
    # dh0/dc0 (N, H) hold the running dL/dh, dL/dc of these rows until the loop ends
    """Rows ``[lo, hi)`` back through all steps (see ``lstm_cell_backward``; ``cs`` as
    in ``_lstm_seq_forward_rows``); the initial states' gradients go to ``dh0``/``dc0``."""
    T, _, H = tcs.shape
    m = hi - lo
    dh, dc = dh0[lo:hi], dc0[lo:hi]
    dh[:] = dh_n[lo:hi]
    dc[:] = dc_n[lo:hi]
    panels = _weight_panels(w_hh)
    for t in range(T - 1, -1, -1):
        for r in range(m):
            n = lo + r
            d, dcr, gt, k, da = dh[r], dc[r], gates[t, n], tcs[t, n], dxg[t, n]
            c_prev = cs[t, n]
            gi, gf, gc, go = gt[:H], gt[H:2 * H], gt[2 * H:3 * H], gt[3 * H:]
            dai, daf, dac, dao = da[:H], da[H:2 * H], da[2 * H:3 * H], da[3 * H:]
            dy = d_hs[t, n] if has_d_hs else d_hs[0, 0]       # (1, 1, H) zeros if none
            for j in range(H):
                dhj = d[j] + dy[j] if has_d_hs else d[j]
                i, f, g, o, kj = gi[j], gf[j], gc[j], go[j], k[j]
                dct = dcr[j] + dhj * o * (one - kj * kj)
                dai[j] = dct * g * i * (one - i)
                daf[j] = dct * c_prev[j] * f * (one - f)
                dac[j] = dct * i * (one - g * g)
                dao[j] = dhj * kj * o * (one - o)
                dcr[j] = dct * f
        _hidden_product(dxg[t, lo:hi], w_hh, panels, dh)  # dh_{t-1} = da_t W_hh


@njit(parallel=True, cache=True, error_model="numpy")
def _lstm_seq_backward_parallel(d_hs, has_d_hs, dh_n, dc_n, w_hh, cs, gates, tcs,
                                dxg, dh0, dc0, rows, one):
    N = tcs.shape[1]
    for blk in prange(-(-N // rows)):
        _lstm_seq_backward_rows(d_hs, has_d_hs, dh_n, dc_n, w_hh, cs, gates, tcs,
                                dxg, dh0, dc0, blk * rows, min(N, (blk + 1) * rows), one)


@njit(cache=True, error_model="numpy")
def _lstm_seq_backward_serial(d_hs, has_d_hs, dh_n, dc_n, w_hh, cs, gates, tcs,
                              dxg, dh0, dc0, rows, one):
    N = tcs.shape[1]
    for blk in range(-(-N // rows)):
        _lstm_seq_backward_rows(d_hs, has_d_hs, dh_n, dc_n, w_hh, cs, gates, tcs,
                                dxg, dh0, dc0, blk * rows, min(N, (blk + 1) * rows), one)


@njit(cache=True, error_model="numpy")
def _gru_seq_forward_rows(xg, proj, w_t, b_hh, hs, gates, hg_ns, hg_all, lo, hi, keep, one):
    """Rows ``[lo, hi)`` through all steps (see ``gru_cell_forward``); ``hs`` as in
    ``_lstm_seq_forward_rows``; ``hg_ns`` keeps ``h_{t-1} W_hn^T + b_hn`` for backward.
    The gates are computed in their row of ``gates`` as in ``_lstm_seq_forward_rows``;
    without ``keep``, ``gates`` and ``hg_ns`` have one step, rewritten at every step.

    ``proj = (project, x, W_ih^T, b_ih, scratch)``: with ``project``, step t's input part
    ``x_t W_ih^T + b_ih`` is a product of the block's rows inside the loop (into
    ``scratch[lo:hi]``), so the ``(T, N, G)`` projection is never written or read, and
    ``xg`` is not read; else ``xg[t]`` holds it."""
    project, x, w_ih_t, b_ih, xs_all = proj
    T = hs.shape[0] - 1
    G = w_t.shape[1]
    H = G // 3
    hg = hg_all[lo:hi]                                   # scratch: this step's h W_hh^T
    xs = xs_all[lo:hi]                                   # scratch: this step's x W_ih^T
    panels = _weight_panels(w_t)
    ih_panels = _weight_panels(w_ih_t)
    for t in range(T):
        _hidden_product(hs[t, lo:hi], w_t, panels, hg)
        if project:
            _hidden_product(x[t, lo:hi], w_ih_t, ih_panels, xs)
        for r in range(hi - lo):
            n = lo + r
            u, h = hg[r], hs[t + 1, n]
            if project:
                xv = xs[r]
                for j in range(G):
                    xv[j] += b_ih[j]
            else:
                xv = xg[t, n]
            gt, un = gates[t if keep else 0, n], hg_ns[t if keep else 0, n]
            h_prev = hs[t, n]
            for j in range(2 * H):
                gt[j] = xv[j] + (u[j] + b_hh[j])
            _sigmoid_span(gt, 0, 2 * H, one)            # r, z
            gr, gz, gn = gt[:H], gt[H:2 * H], gt[2 * H:]
            xn, uu, bn = xv[2 * H:], u[2 * H:], b_hh[2 * H:]
            for j in range(H):
                hn = uu[j] + bn[j]
                un[j] = hn
                gn[j] = xn[j] + gr[j] * hn
            _tanh_span(gt, gt, 2 * H, G)                 # n
            for j in range(H):
                h[j] = (one - gz[j]) * gn[j] + gz[j] * h_prev[j]


@njit(parallel=True, cache=True, error_model="numpy")
def _gru_seq_forward_parallel(xg, proj, w_t, b_hh, hs, gates, hg_ns, hg, rows, keep, one):
    N = hs.shape[1]
    for blk in prange(-(-N // rows)):
        _gru_seq_forward_rows(xg, proj, w_t, b_hh, hs, gates, hg_ns, hg, blk * rows,
                              min(N, (blk + 1) * rows), keep, one)


@njit(cache=True, error_model="numpy")
def _gru_seq_forward_serial(xg, proj, w_t, b_hh, hs, gates, hg_ns, hg, rows, keep, one):
    N = hs.shape[1]
    for blk in range(-(-N // rows)):
        _gru_seq_forward_rows(xg, proj, w_t, b_hh, hs, gates, hg_ns, hg, blk * rows,
                              min(N, (blk + 1) * rows), keep, one)


@njit(cache=True, error_model="numpy")
def _gru_seq_backward_rows(d_hs, has_d_hs, dh_n, w_hh, hs, gates, hg_ns, dxg, dhg, dh0,
                           carried_all, lo, hi, one):
    """Rows ``[lo, hi)`` back through all steps (see ``gru_cell_backward``; ``hs`` as in
    ``_lstm_seq_forward_rows``)."""
    T, _, H = hg_ns.shape
    m = hi - lo
    dh = dh0[lo:hi]                      # the running dL/dh of these rows
    dh[:] = dh_n[lo:hi]
    carried = carried_all[lo:hi]         # scratch: dh z, the direct path to h_{t-1}
    panels = _weight_panels(w_hh)
    for t in range(T - 1, -1, -1):
        for r in range(m):
            n = lo + r
            d, gt, un, dx, du, dcar = dh[r], gates[t, n], hg_ns[t, n], dxg[t, n], dhg[t, n], \
                carried[r]
            h_prev = hs[t, n]
            gr, gz, gn = gt[:H], gt[H:2 * H], gt[2 * H:]
            dxr, dxz, dxn = dx[:H], dx[H:2 * H], dx[2 * H:]
            dur, duz, dun = du[:H], du[H:2 * H], du[2 * H:]
            dy = d_hs[t, n] if has_d_hs else d_hs[0, 0]       # (1, 1, H) zeros if none
            for j in range(H):
                dhj = d[j] + dy[j] if has_d_hs else d[j]
                rr, z, nn_ = gr[j], gz[j], gn[j]
                da_n = dhj * (one - z) * (one - nn_ * nn_)
                da_z = dhj * (h_prev[j] - nn_) * z * (one - z)
                da_r = da_n * un[j] * rr * (one - rr)
                dxr[j] = da_r
                dxz[j] = da_z
                dxn[j] = da_n
                dur[j] = da_r
                duz[j] = da_z
                dun[j] = da_n * rr
                dcar[j] = dhj * z
        _hidden_product(dhg[t, lo:hi], w_hh, panels, dh)  # dh_{t-1} = dh z + da^hh_t W_hh
        dh += carried


@njit(parallel=True, cache=True, error_model="numpy")
def _gru_seq_backward_parallel(d_hs, has_d_hs, dh_n, w_hh, hs, gates, hg_ns, dxg, dhg,
                               dh0, carried, rows, one):
    N = hs.shape[1]
    for blk in prange(-(-N // rows)):
        _gru_seq_backward_rows(d_hs, has_d_hs, dh_n, w_hh, hs, gates, hg_ns, dxg, dhg,
                               dh0, carried, blk * rows, min(N, (blk + 1) * rows), one)


@njit(cache=True, error_model="numpy")
def _gru_seq_backward_serial(d_hs, has_d_hs, dh_n, w_hh, hs, gates, hg_ns, dxg, dhg,
                             dh0, carried, rows, one):
    N = hs.shape[1]
    for blk in range(-(-N // rows)):
        _gru_seq_backward_rows(d_hs, has_d_hs, dh_n, w_hh, hs, gates, hg_ns, dxg, dhg, dh0,
                               carried, blk * rows, min(N, (blk + 1) * rows), one)


# Rows per block at most (a whole number of GEMM tiles): a block runs all its steps before
# the next starts, so its states and scratch stay in L2.  LSTM 128 forward without cache,
# batch 1000, one thread, Intel Xeon with AVX-512, medians of 9, three interleaved rounds:
# 53.5-54.8 ms as one block, 49.8-50.9 / 49.4-50.7 / 49.1-49.4 / 49.0-49.6 ms in blocks of
# 32 / 64 / 128 / 256 rows.
MAX_BLOCK_ROWS = 128


def _row_blocks(N: int, T: int, G: int):
    """``(blocks, rows, work)`` for ``pick``: the batch split into one block of rows per
    thread, or more where a block would pass ``MAX_BLOCK_ROWS`` (a whole number of GEMM
    tiles where possible), and the elements touched.  The parallel drivers spread the
    blocks over the threads, the serial ones take them in turn."""
    threads = numba_threads()
    rows = min(-(-N // max(1, threads)), MAX_BLOCK_ROWS)
    rows = -(-rows // NN_ROWS) * NN_ROWS
    return -(-N // rows), rows, T * N * G


# Page placement.  Large NumPy arrays all start at the same offset in a 4 KiB page (they
# come from mmap), so row j of every array the loops stream through (xg, gates, states)
# falls into the same L1 cache sets: with a dozen streams per unit loop that thrashes the
# 8-way L1.  Measured (LSTM forward kernel, 28 x 64 x 128, float32, one core): 18-25 ms
# with every array at one page offset against 3.6 ms with their starts spread.  So the
# kernels' arrays are allocated at page offsets ``_SPREAD`` bytes apart (distinct modulo
# the 512-byte gate blocks of 128 units too) from the array they are read beside.
_PAGE, _SPREAD = 4096, 320


def _placed(shape, dtype, beside, k: int):
    """``np.empty(shape, dtype)`` starting ``k * _SPREAD`` bytes after ``beside``'s start,
    modulo a page (over-allocates at most a page)."""
    dtype = np.dtype(dtype)
    n = math.prod(shape)
    buf = np.empty(n + _PAGE // dtype.itemsize, dtype)
    want = (beside.ctypes.data + k * _SPREAD) % _PAGE
    skip = ((want - buf.ctypes.data) % _PAGE) // dtype.itemsize
    return buf[skip:skip + n].reshape(shape)


def _with_initial(state0, states):
    """``(T + 1, N, H)``: ``state0`` then every step's state (the kernels' layout)."""
    full = np.empty((states.shape[0] + 1, *states.shape[1:]), states.dtype)
    full[0] = state0
    full[1:] = states
    return full


def _zeros_if_none(a, shape, dtype):
    return np.zeros(shape, dtype) if a is None else _c(a, "state")


def recurrent_forward_numba(mode, xg, w_hh, b_hh, h0, c0=None, keep=True, _project=None):
    """Numba twin of ``rnn.recurrent_forward_reference`` for ``mode`` LSTM or GRU: the
    whole loop in one kernel (row blocks in parallel); returns the same ``(hs, cache)``
    (plus the states with the initial one in front, ``hs_full``/``cs_full``).

    ``keep=False`` (no backward will follow: ``minidl.no_grad``): the gates, ``tanh c``
    and cell states of all steps but the last are not kept; the cache holds ``hs`` and,
    for LSTM, the last cell state (``cache["cs"][-1]``), and ``gates`` is None.

    ``_project = (W_ih, b_ih)`` (GRU, from ``recurrent_layer_forward_numba``): ``xg`` is
    the input ``x`` (T, N, I), projected step by step inside the loop."""
    if mode not in ("LSTM", "GRU"):
        raise ValueError(f"recurrent_forward_numba: expected mode 'LSTM' or 'GRU', got {mode!r}")
    xg, w_hh, h0 = _c(xg, "xg"), _c(w_hh, "w_hh"), _c(h0, "h0")
    keep = bool(keep)
    T, N, _ = xg.shape
    G, H = w_hh.shape
    steps = T if keep else 1
    dtype = xg.dtype
    one = dtype.type(1)
    w_t = np.ascontiguousarray(w_hh.T)
    b = _zeros_if_none(b_hh, (G,), dtype)
    blocks, rows, work = _row_blocks(N, T, G)
    hs_full = _placed((T + 1, N, H), dtype, xg, 1)
    hs_full[0] = h0
    gates = _placed((steps, N, G), dtype, xg, 2)
    cs_full = cs = tcs = hg_ns = None
    if mode == "LSTM":
        c0 = _c(c0, "c0")
        cs_full = _placed((T + 1 if keep else 2, N, H), dtype, xg, 3)
        tcs = _placed((steps, N, H), dtype, xg, 4)
        cs_full[0] = c0
        run = pick(_lstm_seq_forward_parallel, _lstm_seq_forward_serial, blocks, work)
        run(xg, w_t, b, hs_full, cs_full, gates, tcs, _placed((N, G), dtype, xg, 5), rows,
            keep, one)
        cs = cs_full[1:] if keep else cs_full[T % 2][None]
    else:
        hg_ns = _placed((steps, N, H), dtype, xg, 3)
        if _project is None:
            proj = (False, xg, w_t[:1], b, np.empty((1, G), dtype))
        else:
            w_ih, b_ih = _project
            proj = (True, xg, np.ascontiguousarray(w_ih.T), _zeros_if_none(b_ih, (G,), dtype),
                    _placed((N, G), dtype, xg, 6))
        run = pick(_gru_seq_forward_parallel, _gru_seq_forward_serial, blocks, work)
        run(xg, proj, w_t, b, hs_full, gates, hg_ns, _placed((N, G), dtype, xg, 5), rows, keep,
            one)
    hs = hs_full[1:]
    if not keep:
        return hs, {"mode": mode, "hs": hs, "gates": None, "cs": cs, "tcs": None,
                    "hg_ns": None, "h0": h0, "c0": c0, "hs_full": hs_full, "cs_full": None}
    return hs, {"mode": mode, "hs": hs, "gates": gates, "cs": cs, "tcs": tcs, "hg_ns": hg_ns,
                "h0": h0, "c0": c0, "hs_full": hs_full, "cs_full": cs_full}


def recurrent_layer_forward_numba(mode, x, w_ih, b_ih, w_hh, b_hh, h0, c0=None, keep=True):
    """Numba twin of ``rnn.recurrent_layer_forward_reference`` (LSTM, GRU); returns the
    cache ``recurrent_forward_numba`` returns.  The input projection inside the time
    loop, so the ``(T, N, G)`` projection is never written or read.  LSTM: one joint
    product per step (``_lstm_layer_forward_rows``).  GRU: two products per step, the
    input's and the state's (``_gru_seq_forward_rows`` with ``proj``) -- the new gate's
    ``r * (h W_hn^T + b_hn)`` keeps the hidden part apart from the input part, so one
    joint product would not do.  GRU 128, batch 1000, no cache, Intel Xeon with AVX-512:
    the projection as one product took 11.8 / 9.2 ms (1 / 2 threads) of a 48.1 / 30.2 ms
    layer (``benchmarks/results/rnn/``)."""
    if mode == "GRU":
        return recurrent_forward_numba(mode, _c(x, "x"), w_hh, b_hh, h0, c0, keep,
                                       _project=(_c(w_ih, "w_ih"), b_ih))
    if mode != "LSTM":
        raise ValueError(f"recurrent_layer_forward_numba: expected mode 'LSTM' or 'GRU', "
                         f"got {mode!r}")
    x, w_ih, w_hh = _c(x, "x"), _c(w_ih, "w_ih"), _c(w_hh, "w_hh")
    h0, c0 = _c(h0, "h0"), _c(c0, "c0")
    keep = bool(keep)
    T, N, _ = x.shape
    G, H = w_hh.shape
    steps = T if keep else 1
    dtype = x.dtype
    w_cat = np.empty((H + w_ih.shape[1], G), dtype)             # [W_hh^T; W_ih^T], C order
    w_cat[:H] = w_hh.T
    w_cat[H:] = w_ih.T
    b = _zeros_if_none(b_ih, (G,), dtype) + _zeros_if_none(b_hh, (G,), dtype)
    blocks, rows, work = _row_blocks(N, T, G)
    hs_full = _placed((T + 1, N, H), dtype, x, 1)
    hs_full[0] = h0
    gates = _placed((steps, N, G), dtype, x, 2)
    cs_full = _placed((T + 1 if keep else 2, N, H), dtype, x, 3)
    tcs = _placed((steps, N, H), dtype, x, 4)
    cs_full[0] = c0
    run = pick(_lstm_layer_forward_parallel, _lstm_layer_forward_serial, blocks, work)
    run(x, w_cat, b, hs_full, cs_full, gates, tcs, _placed((N, G), dtype, x, 5), rows, keep,
        dtype.type(1))
    hs = hs_full[1:]
    if not keep:
        return hs, {"mode": mode, "hs": hs, "gates": None, "cs": cs_full[T % 2][None],
                    "tcs": None, "hg_ns": None, "h0": h0, "c0": c0, "hs_full": hs_full,
                    "cs_full": None}
    return hs, {"mode": mode, "hs": hs, "gates": gates, "cs": cs_full[1:], "tcs": tcs,
                "hg_ns": None, "h0": h0, "c0": c0, "hs_full": hs_full, "cs_full": cs_full}


def recurrent_backward_numba(d_hs, dh_n, dc_n, w_hh, cache):
    """Numba twin of ``rnn.recurrent_backward_reference`` (LSTM, GRU)."""
    mode, hs = cache["mode"], cache["hs"]
    if mode not in ("LSTM", "GRU"):
        raise ValueError(f"recurrent_backward_numba: expected an LSTM or GRU cache, got "
                         f"mode {mode!r}")
    T, N, H = hs.shape
    dtype = hs.dtype
    one = dtype.type(1)
    w_hh = _c(w_hh, "w_hh")
    G = w_hh.shape[0]
    has_d_hs = d_hs is not None
    d_hs = _c(d_hs, "d_hs") if has_d_hs else np.zeros((1, 1, H), dtype)
    dh_n = _zeros_if_none(dh_n, (N, H), dtype)
    blocks, rows, work = _row_blocks(N, T, G)
    gates = _c(cache["gates"], "gates")
    dxg = _placed((T, N, G), dtype, gates, 5)
    dh0 = _placed((N, H), dtype, gates, 7)
    if mode == "LSTM":
        cs_full = cache.get("cs_full")
        if cs_full is None:                       # a cache from the reference route
            cs_full = _with_initial(cache["c0"], cache["cs"])
        dc_n = _zeros_if_none(dc_n, (N, H), dtype)
        dc0 = _placed((N, H), dtype, gates, 8)
        run = pick(_lstm_seq_backward_parallel, _lstm_seq_backward_serial, blocks, work)
        run(d_hs, has_d_hs, dh_n, dc_n, w_hh, cs_full, gates, _c(cache["tcs"], "tcs"), dxg,
            dh0, dc0, rows, one)
        return dxg, dxg, dh0, dc0
    hs_full = cache.get("hs_full")
    if hs_full is None:
        hs_full = _with_initial(cache["h0"], hs)
    dhg = _placed((T, N, G), dtype, gates, 6)
    run = pick(_gru_seq_backward_parallel, _gru_seq_backward_serial, blocks, work)
    run(d_hs, has_d_hs, dh_n, w_hh, hs_full, gates, _c(cache["hg_ns"], "hg_ns"), dxg, dhg, dh0,
        _placed((N, H), dtype, gates, 8), rows, one)
    return dxg, dhg, dh0, None
