"""``minidl.no_grad``: recurrent layers skip their backward cache and give the same output.

The Numba loop without ``keep`` writes one step of gates (rewritten at every step) and two
cell states in turn; its hidden states, ``h_n`` and ``c_n`` must be the bits of the loop
that keeps everything, and a backward after it must refuse rather than read stale gates.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.kernels import rnn as rnn_kernels
from minidl.kernels.registry import reference_kernels

DTYPES = [pytest.param(np.float64, id="f64"), pytest.param(np.float32, id="f32")]


def test_no_grad_nests_and_is_per_thread():
    assert minidl.is_grad_enabled()
    seen = []
    with minidl.no_grad():
        assert not minidl.is_grad_enabled()
        with minidl.no_grad():
            assert not minidl.is_grad_enabled()
        assert not minidl.is_grad_enabled()
        other = threading.Thread(target=lambda: seen.append(minidl.is_grad_enabled()))
        other.start()
        other.join()
    assert minidl.is_grad_enabled() and seen == [True]
    with pytest.raises(KeyError):
        with minidl.no_grad():
            raise KeyError("inside")
    assert minidl.is_grad_enabled()


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T,N,H", [(1, 3, 5), (6, 19, 37), (5, 16, 32)])
def test_loop_without_keep_gives_the_same_bits(rng, mode, dtype, T, N, H):
    import minidl.kernels._rnn_numba as twins
    G = rnn_kernels.GATES[mode] * H
    xg = rng.standard_normal((T, N, G)).astype(dtype)
    w_hh = (rng.standard_normal((G, H)) * 0.4).astype(dtype)
    b_hh = (rng.standard_normal(G) * 0.4).astype(dtype)
    h0 = rng.standard_normal((N, H)).astype(dtype)
    c0 = rng.standard_normal((N, H)).astype(dtype) if mode == "LSTM" else None
    hs, cache = twins.recurrent_forward_numba(mode, xg, w_hh, b_hh, h0, c0)
    hs2, cache2 = twins.recurrent_forward_numba(mode, xg, w_hh, b_hh, h0, c0, keep=False)
    assert np.array_equal(hs, hs2)
    if mode == "LSTM":
        assert np.array_equal(cache["cs"][-1], cache2["cs"][-1])
    assert cache2["gates"] is None and cache2["tcs"] is None and cache2["hg_ns"] is None
    with pytest.raises(ValueError, match="keep=False"):
        rnn_kernels.recurrent_backward(None, np.ones((N, H), dtype), None, w_hh, cache2)


@pytest.mark.parametrize("layer", ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell"])
@pytest.mark.parametrize("route", ["numba", "reference"])
def test_layers_under_no_grad(rng, layer, route):
    minidl.manual_seed(0)
    cell = layer.endswith("Cell")
    module = getattr(nn, layer)(7, 12) if cell else getattr(nn, layer)(7, 12, num_layers=2,
                                                                        bidirectional=True)
    x = rng.standard_normal((5, 7) if cell else (4, 5, 7)).astype(np.float32)
    with reference_kernels(route == "reference"):
        want = module(x)
        with minidl.no_grad():
            got = module(x)
        flat_want = want if isinstance(want, tuple) else (want,)
        flat_got = got if isinstance(got, tuple) else (got,)
        for a, b in zip(flat_got, flat_want):
            if isinstance(a, tuple):
                for u, v in zip(a, b):
                    assert np.array_equal(u, v)
            else:
                assert np.array_equal(a, b)
        d = np.ones_like(flat_got[0])
        with pytest.raises(RuntimeError, match="no_grad"):
            module.backward(d)
        out = module(x)                       # outside no_grad: backward works again
        module.backward(np.ones_like(out if not isinstance(out, tuple) else out[0]))


def test_evaluate_runs_without_the_recurrent_cache(rng):
    """``minidl.train.evaluate`` runs its passes under ``no_grad``: the LSTM keeps no
    cache, and the model can train again afterwards."""
    from minidl.data import ArrayDataset
    from minidl.train import evaluate
    model = nn.Sequential(nn.ImageToSequence(28), nn.LastHidden(nn.LSTM(28, 16,
                                                                       batch_first=True)),
                          nn.Linear(16, 10))
    data = ArrayDataset(rng.standard_normal((20, 1, 28, 28)).astype(np.float32),
                        rng.integers(0, 10, 20))
    evaluate(model, data, batch_size=8)
    with pytest.raises(RuntimeError, match="no_grad"):
        model.backward(np.ones((4, 10), np.float32))
    out = model(data.x[:4])
    model.backward(np.ones_like(out))
