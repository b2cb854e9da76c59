"""The recurrent cell steps: each Numba twin against its NumPy reference (issue 13).

The twins compute the same formulas in another order of operations (and with libm's
exp/tanh instead of NumPy's), so they agree to the dtype's rounding, not bit for bit.
"""
from __future__ import annotations

import numpy as np
import pytest

from minidl import kernels
from minidl.kernels import rnn as rnn_kernels
from minidl.kernels.registry import reference_kernels


def test_cells_are_registry_operations():
    from minidl.kernels import registry
    with reference_kernels(False):                  # as without MINIDL_KERNELS=reference
        names = {row["operation"]: row for row in registry.listing()}
    for cell in ("rnn", "lstm", "gru"):
        assert names[f"{cell}_cell_forward"]["route"] == "reference"   # NumPy's SIMD exp/tanh
        assert names[f"{cell}_cell_backward"]["route"] == "numba"
    assert names["recurrent_forward"]["route"] == "numba"       # the one-kernel time loop

RTOL = {np.float64: 1e-12, np.float32: 1e-5}
DTYPES = [pytest.param(np.float64, id="f64"), pytest.param(np.float32, id="f32")]
SHAPES = [(1, 1), (3, 5), (16, 37)]


def close(a, b, dtype, what):
    assert a.shape == b.shape and a.dtype == b.dtype == dtype, what
    scale = float(np.nanmax(np.abs(b))) if b.size and not np.isnan(b).all() else 0.0
    np.testing.assert_allclose(a, b, rtol=RTOL[dtype], atol=RTOL[dtype] * scale,
                               equal_nan=True, err_msg=what)


def data(rng, shape, dtype, scale=3.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def loop_inputs(rng, mode, dtype, T, N, H):
    """A time loop's inputs: ``xg`` (T, N, G), ``w_hh`` (G, H), ``b_hh`` (G,), ``h0`` and,
    for the LSTM, ``c0`` (N, H); ``G`` is the mode's gates times ``H``."""
    G = rnn_kernels.GATES[mode] * H
    return (data(rng, (T, N, G), dtype, 1.0), data(rng, (G, H), dtype, 0.4),
            data(rng, (G,), dtype, 0.4), data(rng, (N, H), dtype, 1.0),
            data(rng, (N, H), dtype, 1.0) if mode == "LSTM" else None)


def unit_interval(rng, shape, dtype):
    return rng.uniform(0.01, 0.99, shape).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,H", SHAPES)
@pytest.mark.parametrize("relu", [False, True], ids=["tanh", "relu"])
def test_rnn_cell_twins(rng, dtype, N, H, relu):
    xg, hg, dh = (data(rng, (N, H), dtype) for _ in range(3))
    h = kernels.rnn_cell_forward_numba(xg, hg, relu)
    close(h, kernels.rnn_cell_forward_reference(xg, hg, relu), dtype, "forward")
    close(kernels.rnn_cell_backward_numba(dh, h, relu),
          kernels.rnn_cell_backward_reference(dh, h, relu), dtype, "backward")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,H", SHAPES)
def test_lstm_cell_twins(rng, dtype, N, H):
    xg, hg = data(rng, (N, 4 * H), dtype), data(rng, (N, 4 * H), dtype)
    c_prev = data(rng, (N, H), dtype)
    got = kernels.lstm_cell_forward_numba(xg, hg, c_prev)
    want = kernels.lstm_cell_forward_reference(xg, hg, c_prev)
    for a, b, what in zip(got, want, ("h", "c", "gates", "tanh_c")):
        close(a, b, dtype, what)
    dh, dc = data(rng, (N, H), dtype), data(rng, (N, H), dtype)
    gates, tanh_c = want[2], want[3]
    got = kernels.lstm_cell_backward_numba(dh, dc, gates, c_prev, tanh_c)
    want = kernels.lstm_cell_backward_reference(dh, dc, gates, c_prev, tanh_c)
    for a, b, what in zip(got, want, ("da", "dc_prev")):
        close(a, b, dtype, what)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N,H", SHAPES)
def test_gru_cell_twins(rng, dtype, N, H):
    xg, hg = data(rng, (N, 3 * H), dtype), data(rng, (N, 3 * H), dtype)
    h_prev = data(rng, (N, H), dtype)
    got = kernels.gru_cell_forward_numba(xg, hg, h_prev)
    want = kernels.gru_cell_forward_reference(xg, hg, h_prev)
    for a, b, what in zip(got, want, ("h", "gates")):
        close(a, b, dtype, what)
    dh = data(rng, (N, H), dtype)
    hg_n = np.ascontiguousarray(hg[:, 2 * H:])
    got = kernels.gru_cell_backward_numba(dh, want[1], hg_n, h_prev)
    want = kernels.gru_cell_backward_reference(dh, want[1], hg_n, h_prev)
    for a, b, what in zip(got, want, ("dxg", "dhg", "dh_direct")):
        close(a, b, dtype, what)


@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_and_special_values(dtype):
    """Pre-activations where exp would overflow, signed zeros, infinities and NaN."""
    v = np.array([0.0, -0.0, 1e-8, -1e-8, 30.0, -30.0, 800.0, -800.0, np.inf, -np.inf, np.nan,
                  0.5], dtype)
    H = v.size
    zeros = np.zeros((1, H), dtype)
    for relu in (False, True):
        a = kernels.rnn_cell_forward_numba(v[None], zeros, relu)
        b = kernels.rnn_cell_forward_reference(v[None], zeros, relu)
        np.testing.assert_allclose(a, b, rtol=RTOL[dtype], atol=0, equal_nan=True)
        assert np.isnan(a[0, 10])                                # NaN propagates
        ones = np.ones((1, H), dtype)
        np.testing.assert_allclose(kernels.rnn_cell_backward_numba(ones, a, relu),
                                   kernels.rnn_cell_backward_reference(ones, a, relu),
                                   rtol=RTOL[dtype], atol=0, equal_nan=True)
    lstm_x = np.tile(v, 4)[None]
    got = kernels.lstm_cell_forward_numba(lstm_x, np.zeros_like(lstm_x), zeros)
    want = kernels.lstm_cell_forward_reference(lstm_x, np.zeros_like(lstm_x), zeros)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=RTOL[dtype], atol=0, equal_nan=True)
    assert np.isnan(got[0][0, 10]) and np.isfinite(got[0][0, :8]).all()
    gru_x = np.tile(v, 3)[None]
    got = kernels.gru_cell_forward_numba(gru_x, np.zeros_like(gru_x), zeros)
    want = kernels.gru_cell_forward_reference(gru_x, np.zeros_like(gru_x), zeros)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=RTOL[dtype], atol=0, equal_nan=True)


def test_twins_take_non_contiguous_views(rng):
    big = rng.standard_normal((6, 40))
    xg, hg = big[::2, :20], big[1::2, 20:]                  # (3, 20) strided views
    c_prev = rng.standard_normal((3, 5))
    for a, b in zip(kernels.lstm_cell_forward_numba(xg, hg, c_prev),
                    kernels.lstm_cell_forward_reference(xg, hg, c_prev)):
        close(a, b, np.float64, "strided")


@pytest.fixture
def fast_kernels():
    """The registry's rule, even under ``MINIDL_KERNELS=reference``."""
    with reference_kernels(False):
        yield


def test_dispatcher_picks_twin_and_falls_back(rng, monkeypatch, fast_kernels):
    calls = []
    import minidl.kernels._rnn_numba as twins
    for name in ("gru_cell_forward_numba", "gru_cell_backward_numba"):
        real = getattr(twins, name)
        monkeypatch.setattr(twins, name, lambda *a, name=name, real=real:
                            calls.append(name) or real(*a))
    x32 = rng.standard_normal((2, 6)).astype(np.float32)
    h32 = rng.standard_normal((2, 2)).astype(np.float32)
    h, gates = kernels.gru_cell_forward(x32, x32, h32)
    assert calls == []                                   # forward: NumPy unless forward_twins
    kernels.gru_cell_backward(h, gates, h, h32)
    assert calls == ["gru_cell_backward_numba"]
    monkeypatch.setattr(rnn_kernels, "forward_twins", True)
    kernels.gru_cell_forward(x32, x32, h32)
    assert calls[-1] == "gru_cell_forward_numba"
    kernels.gru_cell_forward(x32, x32, h32.astype(np.float64))   # mixed dtypes: reference
    with reference_kernels():
        kernels.gru_cell_forward(x32, x32, h32)
        kernels.gru_cell_backward(h, gates, h, h32)
    assert len(calls) == 2


def test_twins_reject_bad_arrays():
    with pytest.raises(ValueError, match="float32 or float64"):
        kernels.rnn_cell_forward_numba(np.zeros((2, 3), np.int64), np.zeros((2, 3)), False)


@pytest.mark.parametrize("mode", rnn_kernels.MODES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_time_loop_on_both_routes(rng, monkeypatch, mode, dtype):
    """``recurrent_forward``/``recurrent_backward`` give the same on either route."""
    T, N, H = 7, 3, 5
    xg, w_hh, b_hh, h0, c0 = loop_inputs(rng, mode, dtype, T, N, H)
    d_hs = data(rng, (T, N, H), dtype, 1.0)
    dh_n = data(rng, (N, H), dtype, 1.0)
    dc_n = data(rng, (N, H), dtype, 1.0) if mode == "LSTM" else None
    results = []
    monkeypatch.setattr(rnn_kernels, "forward_twins", True)
    for reference in (False, True):
        with reference_kernels(reference):
            hs, cache = kernels.recurrent_forward(mode, xg, w_hh, b_hh, h0, c0)
            back = kernels.recurrent_backward(d_hs, dh_n, dc_n, w_hh, cache)
        results.append([hs, *(b for b in back if b is not None)])
    for a, b in zip(*results):
        close(a, b, dtype, mode)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T,N,H", [(1, 1, 1), (5, 19, 37), (3, 16, 32)])
@pytest.mark.parametrize("split", ["serial", "serial blocks", "parallel"])
@pytest.mark.parametrize("given", ["all", "no_d_hs", "no_state_grads"])
def test_whole_loop_kernels_match_the_step_loop(rng, monkeypatch, mode, dtype, T, N, H, split,
                                                given):
    """The one-kernel loops (``_rnn_numba.recurrent_forward_numba`` and backward) against
    the step-by-step reference, on one thread (one block of rows, or several in turn) and
    with the batch split over threads (row blocks), with and without the optional
    gradients, for batch sizes that are not
    a whole number of GEMM tiles; and each backward route takes the other's cache."""
    import minidl.kernels._rnn_numba as twins
    from minidl.kernels import _parallel
    monkeypatch.setattr(_parallel, "force", split.split()[0])
    monkeypatch.setattr(twins, "_row_blocks",
                        lambda N, T, G: (2, -(-N // 2), T * N * G) if split == "parallel"
                        else (3, -(-N // 3), T * N * G) if split == "serial blocks"
                        else (1, N, T * N * G))
    xg, w_hh, b_hh, h0, c0 = loop_inputs(rng, mode, dtype, T, N, H)
    d_hs = None if given == "no_d_hs" else data(rng, (T, N, H), dtype, 1.0)
    dh_n = None if given == "no_state_grads" else data(rng, (N, H), dtype, 1.0)
    dc_n = data(rng, (N, H), dtype, 1.0) if mode == "LSTM" and given == "all" else None
    hs, cache = twins.recurrent_forward_numba(mode, xg, w_hh, b_hh, h0, c0)
    with reference_kernels():
        hs_ref, cache_ref = rnn_kernels.recurrent_forward_reference(mode, xg, w_hh, b_hh, h0,
                                                                    c0)
        back_ref = rnn_kernels.recurrent_backward_reference(d_hs, dh_n, dc_n, w_hh, cache_ref)
        back_mixed = rnn_kernels.recurrent_backward_reference(d_hs, dh_n, dc_n, w_hh, cache)
    close(hs, hs_ref, dtype, "hs")
    for key in ("gates", "cs", "tcs", "hg_ns"):
        if cache_ref[key] is not None:
            close(cache[key], cache_ref[key], dtype, key)
    for back in (twins.recurrent_backward_numba(d_hs, dh_n, dc_n, w_hh, cache),
                 twins.recurrent_backward_numba(d_hs, dh_n, dc_n, w_hh, cache_ref), back_mixed):
        for a, b, what in zip(back, back_ref, ("dxg", "dhg", "dh0", "dc0")):
            if b is None:
                assert a is None, what
            else:
                close(a, b, dtype, what)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("split", ["serial", "serial blocks", "parallel blocks"])
@pytest.mark.parametrize("keep", [True, False])
def test_layer_loop_matches_the_reference_in_row_blocks(rng, monkeypatch, mode, dtype,
                                                        split, keep):
    """``recurrent_layer_forward_numba`` (the LSTM's projection inside the loop, the
    GRU's before it) against the reference layer loop, in one block of rows or in several
    taken in turn or over threads (``_row_blocks``), with and without the backward
    cache: batch and units off the tile grid."""
    import minidl.kernels._rnn_numba as twins
    from minidl.kernels import _parallel
    monkeypatch.setattr(_parallel, "force", split.split()[0])
    monkeypatch.setattr(twins, "_row_blocks", lambda N, T, G: (
        (1, N, T * N * G) if split == "serial" else (3, -(-N // 3), T * N * G)))
    T, N, I, H = 4, 19, 6, 37
    G = rnn_kernels.GATES[mode] * H
    x = data(rng, (T, N, I), dtype, 1.0)
    w_ih, w_hh = data(rng, (G, I), dtype, 0.4), data(rng, (G, H), dtype, 0.4)
    b_ih, b_hh = data(rng, (G,), dtype, 0.4), data(rng, (G,), dtype, 0.4)
    h0 = data(rng, (N, H), dtype, 1.0)
    c0 = data(rng, (N, H), dtype, 1.0) if mode == "LSTM" else None
    hs, cache = twins.recurrent_layer_forward_numba(mode, x, w_ih, b_ih, w_hh, b_hh, h0, c0,
                                                    keep=keep)
    with reference_kernels():
        hs_ref, cache_ref = rnn_kernels.recurrent_layer_forward_reference(
            mode, x, w_ih, b_ih, w_hh, b_hh, h0, c0)
    close(hs, hs_ref, dtype, "hs")
    close(cache["cs"][-1] if mode == "LSTM" else hs[-1],
          cache_ref["cs"][-1] if mode == "LSTM" else hs_ref[-1], dtype, "last state")
    if keep:
        for key in ("gates", "cs", "tcs", "hg_ns"):
            if cache_ref[key] is not None:
                close(cache[key], cache_ref[key], dtype, key)


def test_whole_loop_kernels_refuse_other_modes(rng):
    import minidl.kernels._rnn_numba as twins
    x = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match="'LSTM' or 'GRU'"):
        twins.recurrent_forward_numba("RNN_TANH", x, np.zeros((4, 4)), None, np.zeros((3, 4)))


def test_float32_exp_and_tanh_of_the_loops():
    """``_exp32``/``_tanh32`` (the vectorisable float32 exp and tanh of the whole-loop
    kernels) against float64 NumPy: within 3 float32 ulp where the result is a normal
    number, exact at 0, +-inf and NaN."""
    import numba
    import minidl.kernels._rnn_numba as twins

    @numba.njit(error_model="numpy")
    def apply(x, e, t):
        for i in range(x.size):
            e[i] = twins._exp32(x[i])
            t[i] = twins._tanh32(x[i])

    x = np.concatenate([np.linspace(-87, 88, 200_001), np.linspace(-1, 1, 20_001),
                        np.geomspace(1e-30, 80, 5_001), -np.geomspace(1e-30, 80, 5_001)]
                       ).astype(np.float32)
    e, t = np.empty_like(x), np.empty_like(x)
    apply(x, e, t)
    x64 = x.astype(np.float64)
    ulp = np.finfo(np.float32).eps
    assert np.max(np.abs(e / np.exp(x64) - 1)) < 3 * ulp
    t_want = np.tanh(x64)
    assert np.max(np.abs(t - t_want) / np.maximum(np.abs(t_want), np.finfo(np.float32).tiny)
                  ) < 3 * ulp
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 100.0, -120.0], np.float32)
    e, t = np.empty_like(special), np.empty_like(special)
    apply(special, e, t)
    np.testing.assert_array_equal(e, [1, 1, np.inf, 0, np.nan, np.inf, 0])
    np.testing.assert_array_equal(t, [0, -0.0, 1, -1, np.nan, 1, -1])


def test_vector_sigmoid_and_tanh_give_the_scalar_bits():
    """``_vmath_numba``'s whole-vector sigmoid and tanh (the float32 cells' route) give
    exactly the bits of the scalar ``_sig``/``_tanh32``, which handle the last units of a
    row: the two may be mixed in one row.  Includes 0, -0, +-inf, NaN, the ends of exp's
    range and values around tanh's switch at 0.625."""
    import numba
    import minidl.kernels._rnn_numba as twins
    from minidl.kernels._vmath_numba import LANES, _vsigmoid, _vtanh

    @numba.njit(error_model="numpy")
    def apply(x, vs, vt, ss, st):
        one = np.float32(1)
        for i in range(0, x.size, LANES):
            _vsigmoid(x, i, vs, i)
            _vtanh(x, i, vt, i)
        for i in range(x.size):
            ss[i] = twins._sig(x[i], one)
            st[i] = twins._tanh32(x[i])

    special = [0.0, -0.0, np.inf, -np.inf, np.nan, 88.0, 88.7, 88.8, -87.0, -103.9, -104.0,
               0.625, -0.625, np.nextafter(np.float32(0.625), np.float32(0)), 1e-30, -1e-30]
    x = np.concatenate([np.array(special, np.float32), np.linspace(-120, 120, 48_001),
                        np.linspace(-1, 1, 4_001)]).astype(np.float32)
    x = np.concatenate([x, np.zeros(-x.size % LANES, np.float32)])
    vs, vt, ss, st = (np.empty_like(x) for _ in range(4))
    apply(x, vs, vt, ss, st)
    assert np.array_equal(vs.view(np.int32), ss.view(np.int32))
    assert np.array_equal(vt.view(np.int32), st.view(np.int32))


@pytest.mark.parametrize("H", [1, 5, 16, 37, 71, 128])
def test_vector_lstm_cell_gives_the_unit_routes_bits(rng, H):
    """The float32 LSTM cell of the one-kernel loops (``_lstm_cell``: ``CELL_LANES`` units
    a call, then the masked tail of ``H % CELL_LANES``; multiply-adds fused or not as
    the scalar route's) gives exactly the bits of ``_lstm_unit``,
    unit by unit, and writes nothing past the row's units (guard values after each
    array stay).  Pre-activations include +-inf, NaN and values around tanh's switch."""
    import numba
    import minidl.kernels._rnn_numba as twins

    @numba.njit(error_model="numpy")
    def vector(p, q, gt, c_prev, c, tc, h):
        twins._lstm_cell(p, q, gt, c_prev, c, tc, h, np.float32(1))

    @numba.njit(error_model="numpy")
    def units(p, q, gt, c_prev, c, tc, h):
        for j in range(H):
            gt[j], gt[H + j], gt[2 * H + j], gt[3 * H + j], c[j], tc[j], h[j] = \
                twins._lstm_unit(p[j] + q[j], p[H + j] + q[H + j], p[2 * H + j] + q[2 * H + j],
                                 p[3 * H + j] + q[3 * H + j], c_prev[j], np.float32(1))

    G = 4 * H
    special = np.array([np.inf, -np.inf, np.nan, 0.625, -0.625, 0.0, 90.0, -110.0], np.float32)
    p = (rng.standard_normal(G) * 3).astype(np.float32)
    p[:min(G, special.size)] = special[:G]
    q = (rng.standard_normal(G)).astype(np.float32)
    c_prev = (rng.standard_normal(H) * 2).astype(np.float32)
    results = []
    for run in (vector, units):
        # each output followed by guard values that must stay untouched
        outs = [np.full(n + 20, 7.0, np.float32) for n in (G, H, H, H)]
        run(p, q, outs[0][:G], c_prev, outs[1][:H], outs[2][:H], outs[3][:H])
        for out, n in zip(outs, (G, H, H, H)):
            assert np.all(out[n:] == 7.0)
        results.append(outs)
    for a, b in zip(*results):
        assert np.array_equal(a.view(np.int32), b.view(np.int32))


def test_packed_rows_pad_the_last_tile_with_zeros(rng):
    """The loops' packed scratch pads a partial last block of rows with zeros, never with
    leftover memory: those rows are multiplied too (results dropped), and leftover
    denormals made an LSTM's forward loop twice as slow (``_rnn_numba._packed_rows``)."""
    import numba
    import minidl.kernels._rnn_numba as twins
    from minidl.kernels._gemm_numba import NN_ROWS, _pack_rows

    @numba.njit
    def dirty_then_packed(m, k):
        # a block of the same size filled with denormals and freed (Numba's allocator is
        # malloc, which hands the block out again), then the scratch
        junk = np.empty(-(-m // NN_ROWS) * NN_ROWS * k, np.float32)
        junk[:] = np.float32(1e-40)
        s = junk[0]
        junk = None
        return twins._packed_rows(m, k), s

    m, k = 2 * NN_ROWS + 1, 37
    packed, _ = dirty_then_packed(m, k)
    _pack_rows(rng.standard_normal((m, k)).astype(np.float32), packed, k, 0)
    index = np.arange(packed.size)
    rows = index // (k * NN_ROWS) * NN_ROWS + index % NN_ROWS
    assert np.all(packed[rows >= m] == 0) and np.all(packed[rows < m] != 0)
