"""nn.RNN / nn.LSTM / nn.GRU and their cells against torch.nn (issue 13).

The same weights go into a minidl layer and the torch layer; output, final state and
every gradient (input, initial state, every parameter) must agree:

* float64: ``|ours - torch| <= 1e-10 * (|torch| + max|torch|)`` element-wise,
* float32: the same with 1e-5,

the bound of ``tests/minidl/nn/test_core_layers_torch_parity.py``.  The sweep covers 1-3 layers, both
directions, batch_first on and off, with and without initial states and biases, tanh
and relu RNNs, LSTM and GRU, sequence lengths 1 to 50, with and without ``d_state``,
on both kernel routes (the Numba cell steps and the NumPy references).
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.kernels import rnn as rnn_kernels
from minidl.kernels.registry import reference_kernels

RTOL = {np.float64: 1e-10, np.float32: 1e-5}
MODES = ["RNN_TANH", "RNN_RELU", "LSTM", "GRU"]


def assert_close(ours, theirs, dtype, what=""):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    ours = np.asarray(ours)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs torch {theirs.shape}"
    assert ours.dtype == theirs.dtype, f"{what}: dtype {ours.dtype} vs torch {theirs.dtype}"
    rtol = RTOL[dtype]
    scale = float(np.abs(theirs).max()) if theirs.size else 0.0
    atol = max(rtol * scale, float(np.finfo(dtype).tiny))
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol, err_msg=what)


@pytest.fixture(params=["numba", "reference"])
def route(request, monkeypatch):
    """Run a test on the Numba cell steps (forward twins included) and again on the
    NumPy references (the registry's switch, as ``MINIDL_KERNELS=reference``)."""
    monkeypatch.setattr(rnn_kernels, "forward_twins", request.param == "numba")
    with reference_kernels(request.param == "reference"):
        yield request.param


def make_layer(lib_nn, mode, input_size, hidden_size, **kw):
    """``lib_nn.RNN/LSTM/GRU(...)`` for ``mode``: ``lib_nn`` is ``minidl.nn`` or ``torch.nn``."""
    if mode.startswith("RNN"):
        kw["nonlinearity"] = "relu" if mode == "RNN_RELU" else "tanh"
        return lib_nn.RNN(input_size, hidden_size, **kw)
    return getattr(lib_nn, mode)(input_size, hidden_size, **kw)


def make_pair(torch, mode, input_size, hidden_size, **kw):
    """A minidl layer and a torch layer of the same kind, both still float32."""
    return (make_layer(nn, mode, input_size, hidden_size, **kw),
            make_layer(torch.nn, mode, input_size, hidden_size, **kw))


def check_layer_parity(torch, rng, mode, dtype, T, N=2, input_size=3, hidden_size=4,
                       num_layers=1, bidirectional=False, batch_first=False, bias=True,
                       with_hx=True, with_d_output=True, with_d_state=True):
    """Load ours' weights into torch's layer, run forward and backward in both, compare all."""
    ours, theirs = make_pair(torch, mode, input_size, hidden_size, num_layers=num_layers,
                             bias=bias, batch_first=batch_first, bidirectional=bidirectional)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    ours.to(dtype)
    theirs.to(tdtype)
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    lstm = mode == "LSTM"
    D = 2 if bidirectional else 1
    x = rng.standard_normal((N, T, input_size) if batch_first else (T, N, input_size)).astype(dtype)
    state_shape = (num_layers * D, N, hidden_size)
    states = [rng.standard_normal(state_shape).astype(dtype) for _ in range(1 + lstm)]
    before = [a.copy() for a in [x, *states]]
    xt = torch.tensor(x, requires_grad=True)
    st = [torch.tensor(s, requires_grad=True) for s in states]
    if with_hx:
        out, state = ours(x, tuple(states) if lstm else states[0])
        out_t, state_t = theirs(xt, tuple(st) if lstm else st[0])
    else:
        out, state = ours(x)
        out_t, state_t = theirs(xt)
    state, state_t = (list(state), list(state_t)) if lstm else ([state], [state_t])
    assert_close(out, out_t, dtype, "output")
    for i, (s, s_t) in enumerate(zip(state, state_t)):
        assert_close(s, s_t, dtype, f"final state {i}")

    d_out = rng.standard_normal(out.shape).astype(dtype) if with_d_output else None
    d_state = [rng.standard_normal(state_shape).astype(dtype) for _ in state] \
        if with_d_state else None
    loss = 0
    if d_out is not None:
        loss = loss + (out_t * torch.tensor(d_out)).sum()
    if d_state is not None:
        loss = loss + sum((s_t * torch.tensor(d)).sum() for s_t, d in zip(state_t, d_state))
    loss.backward()
    if d_state is not None:
        d_state = tuple(d_state) if lstm else d_state[0]
    dx = ours.backward(d_out, d_state)
    assert_close(dx, xt.grad, dtype, "input gradient")
    if with_hx:
        hx_grad = list(ours.hx_grad) if lstm else [ours.hx_grad]
        for i, (g, s_t) in enumerate(zip(hx_grad, st)):
            assert_close(g, s_t.grad, dtype, f"initial state {i} gradient")
    else:
        assert ours.hx_grad is None
    theirs_params = dict(theirs.named_parameters())
    assert [n for n, _ in ours.named_parameters()] == list(theirs_params)
    for name, p in ours.named_parameters():
        assert_close(p.grad, theirs_params[name].grad, dtype, f"gradient of {name}")
    for a, b in zip([x, *states], before):                 # nothing modified in place
        np.testing.assert_array_equal(a, b)


def sweep(n_per_mode_layout):
    """Configurations: every mode x layers x direction x batch_first, the other choices
    (initial state, bias, d_state, d_output, T) drawn from a fixed seed."""
    configs = []
    for i, (mode, layers, bidir, bf) in enumerate(
            itertools.product(MODES, [1, 2, 3], [False, True], [False, True])):
        if i % 48 >= n_per_mode_layout * 48:
            continue
        pick = np.random.default_rng(i)
        T = [1, 2, 5, 13, 50][i % 5]
        hx, bias, d_state = (bool(pick.integers(2)) for _ in range(3))
        d_output = bool(pick.integers(4)) or not d_state         # at least one of the two
        configs.append(pytest.param(
            mode, T, layers, bidir, bf, hx, bias, d_output, d_state,
            id=f"{mode}-T{T}-L{layers}-{'bi' if bidir else 'uni'}-{'bf' if bf else 'tf'}"
               f"-{'hx' if hx else 'nohx'}-{'b' if bias else 'nob'}"
               f"-{'dout' if d_output else 'nodout'}-{'dst' if d_state else 'nodst'}"))
    return configs


PARAMS = "mode,T,layers,bidir,batch_first,with_hx,bias,with_d_output,with_d_state"


@pytest.mark.parametrize(PARAMS, sweep(1.0))
def test_layer_parity_float64(torch, rng, route, mode, T, layers, bidir, batch_first, with_hx,
                              bias, with_d_output, with_d_state):
    check_layer_parity(torch, rng, mode, np.float64, T, num_layers=layers,
                       bidirectional=bidir, batch_first=batch_first, bias=bias,
                       with_hx=with_hx, with_d_output=with_d_output, with_d_state=with_d_state)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("d_state_only", [False, True], ids=["dout+dstate", "dstate-only"])
def test_layer_parity_float64_wider(torch, rng, mode, d_state_only):
    """Larger sizes (more units than a SIMD vector, batch 5), both directions, 2 layers."""
    check_layer_parity(torch, rng, mode, np.float64, T=9, N=5, input_size=7, hidden_size=19,
                       num_layers=2, bidirectional=True, with_d_output=not d_state_only)


@pytest.mark.parametrize(PARAMS, sweep(1.0)[::3])
def test_layer_parity_float32(torch, rng, route, mode, T, layers, bidir, batch_first, with_hx,
                              bias, with_d_output, with_d_state):
    check_layer_parity(torch, rng, mode, np.float32, T, num_layers=layers,
                       bidirectional=bidir, batch_first=batch_first, bias=bias,
                       with_hx=with_hx, with_d_output=with_d_output, with_d_state=with_d_state)


# -- cells ----------------------------------------------------------------------------
def make_cell_pair(torch, mode, input_size, hidden_size, bias):
    if mode.startswith("RNN"):
        nl = "relu" if mode == "RNN_RELU" else "tanh"
        return (nn.RNNCell(input_size, hidden_size, bias, nl),
                torch.nn.RNNCell(input_size, hidden_size, bias, nl))
    cls = {"LSTM": (nn.LSTMCell, torch.nn.LSTMCell), "GRU": (nn.GRUCell, torch.nn.GRUCell)}[mode]
    return cls[0](input_size, hidden_size, bias), cls[1](input_size, hidden_size, bias)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("with_hx,bias,grads", [(True, True, "h"), (False, True, "h"),
                                               (True, False, "hc"), (True, True, "c")])
def test_cell_parity(torch, rng, route, dtype, mode, with_hx, bias, grads):
    ours, theirs = make_cell_pair(torch, mode, 5, 6, bias)
    ours.to(dtype)
    theirs.to(torch.float64 if dtype == np.float64 else torch.float32)
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    lstm = mode == "LSTM"
    x = rng.standard_normal((3, 5)).astype(dtype)
    states = [rng.standard_normal((3, 6)).astype(dtype) for _ in range(1 + lstm)]
    xt = torch.tensor(x, requires_grad=True)
    st = [torch.tensor(s, requires_grad=True) for s in states]
    hx, hx_t = (tuple(states), tuple(st)) if lstm else (states[0], st[0])
    out = ours(x, hx) if with_hx else ours(x)
    out_t = theirs(xt, hx_t) if with_hx else theirs(xt)
    out, out_t = (list(out), list(out_t)) if lstm else ([out], [out_t])
    for o, o_t in zip(out, out_t):
        assert_close(o, o_t, dtype, "cell output")
    douts = [rng.standard_normal(o.shape).astype(dtype) for o in out]
    if lstm:
        douts = [douts[0] if "h" in grads else None, douts[1] if "c" in grads else None]
    loss = sum((o_t * torch.tensor(d)).sum() for o_t, d in zip(out_t, douts) if d is not None)
    loss.backward()
    dx = ours.backward(*douts)
    assert_close(dx, xt.grad, dtype, "input gradient")
    if with_hx:
        hx_grad = list(ours.hx_grad) if lstm else [ours.hx_grad]
        for g, s_t in zip(hx_grad, st):
            assert_close(g, s_t.grad, dtype, "state gradient")
    else:
        assert ours.hx_grad is None
    theirs_params = dict(theirs.named_parameters())
    assert [n for n, _ in ours.named_parameters()] == list(theirs_params)
    for name, p in ours.named_parameters():
        assert_close(p.grad, theirs_params[name].grad, dtype, f"gradient of {name}")


# -- gradcheck --------------------------------------------------------------------------
class OutputAndState(nn.Module):
    """``[output, every final state]`` flattened into one vector, for gradcheck: the
    gradient reaching the states goes through ``backward``'s ``d_state``."""

    def __init__(self, layer, h0=None):
        super().__init__()
        self.layer = layer
        self.h0 = h0

    def forward(self, x):
        out, state = self.layer(x, self.h0)
        self._shapes = [out.shape] + [s.shape for s in (state if isinstance(state, tuple)
                                                        else (state,))]
        parts = [out] + list(state if isinstance(state, tuple) else (state,))
        return np.concatenate([p.reshape(-1) for p in parts])

    def backward(self, dout):
        sizes = np.cumsum([int(np.prod(s)) for s in self._shapes])[:-1]
        parts = [p.reshape(s) for p, s in zip(np.split(dout, sizes), self._shapes)]
        d_state = tuple(parts[1:]) if len(parts) == 3 else parts[1]
        return self.layer.backward(parts[0], d_state)


class InitialStateInput(nn.Module):
    """The initial hidden state as the differentiated input (a fixed ``x``)."""

    def __init__(self, layer, x, c0=None):
        super().__init__()
        self.layer, self.x, self.c0 = layer, x, c0

    def forward(self, h0):
        out, _ = self.layer(self.x, h0 if self.c0 is None else (h0, self.c0))
        return out

    def backward(self, dout):
        self.layer.backward(dout)
        return self.layer.hx_grad if self.c0 is None else self.layer.hx_grad[0]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layers,bidir,batch_first", [(1, False, False), (2, True, True)])
def test_gradcheck_layers(rng, mode, layers, bidir, batch_first):
    minidl.manual_seed(0)
    layer = make_layer(nn, mode, 3, 4, num_layers=layers, bidirectional=bidir,
                         batch_first=batch_first)
    x = rng.standard_normal((2, 4, 3))
    assert minidl.gradcheck(OutputAndState(layer), x)


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_initial_state(rng, mode):
    minidl.manual_seed(1)
    layer = make_layer(nn, mode, 3, 4, num_layers=2, bidirectional=True)
    layer.double()
    x = rng.standard_normal((5, 2, 3))
    h0 = rng.standard_normal((4, 2, 4))
    c0 = rng.standard_normal((4, 2, 4)) if mode == "LSTM" else None
    assert minidl.gradcheck(InitialStateInput(layer, x, c0), h0)


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_cells(rng, route, mode):
    minidl.manual_seed(2)
    cell = {"RNN_TANH": lambda: nn.RNNCell(3, 4),
            "RNN_RELU": lambda: nn.RNNCell(3, 4, True, "relu"),
            "LSTM": lambda: nn.LSTMCell(3, 4), "GRU": lambda: nn.GRUCell(3, 4)}[mode]()
    if mode == "LSTM":
        class Both(nn.Module):                      # (h', c') as one vector
            def __init__(self):
                super().__init__()
                self.cell = cell

            def forward(self, x):
                h, c = self.cell(x)
                return np.concatenate([h, c], axis=1)

            def backward(self, d):
                return self.cell.backward(d[:, :4], d[:, 4:])
        cell = Both()
    assert minidl.gradcheck(cell, rng.standard_normal((2, 3)))


# -- dropout between layers ---------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_dropout_eval_mode_parity(torch, rng, mode):
    """In eval mode dropout is off in both libraries: exact parity with dropout=0.5."""
    ours, theirs = make_pair(torch, mode, 3, 4, num_layers=3, dropout=0.5, bidirectional=True)
    ours.double().eval()
    theirs.double().eval()
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    x = rng.standard_normal((6, 2, 3))
    xt = torch.tensor(x, requires_grad=True)
    out, _ = ours(x)
    out_t, _ = theirs(xt)
    assert_close(out, out_t, np.float64, "eval output")
    d = rng.standard_normal(out.shape)
    out_t.backward(torch.tensor(d))
    assert_close(ours.backward(d), xt.grad, np.float64, "eval input gradient")
    theirs_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(p.grad, theirs_params[name].grad, np.float64, f"gradient of {name}")


def identity_stack(p, width=400):
    """A 2-layer relu RNN whose second layer returns its (dropped-out) input: layer 0
    sees x through an identity W_ih, layer 1 likewise, no recurrence, no bias."""
    layer = nn.RNN(width, width, num_layers=2, nonlinearity="relu", bias=False, dropout=p)
    layer.double()
    for k in (0, 1):
        getattr(layer, f"weight_ih_l{k}").data = np.eye(width)
        getattr(layer, f"weight_hh_l{k}").data = np.zeros((width, width))
    return layer


def test_dropout_train_mode_statistics(rng):
    """Training mode: each element of the second layer's input is zeroed with
    probability p and the rest scaled by 1/(1-p); a fresh mask every call."""
    p = 0.3
    minidl.manual_seed(0)
    layer = identity_stack(p)
    x = rng.uniform(0.5, 2.0, (5, 8, 400))                  # positive: relu passes it
    minidl.manual_seed(0)
    out, _ = layer(x)
    dropped = out == 0
    n = dropped.size
    rate = dropped.mean()
    assert abs(rate - p) < 4 * np.sqrt(p * (1 - p) / n), rate   # 4 sigma, n = 16000
    np.testing.assert_allclose(out[~dropped], x[~dropped] / (1 - p), rtol=1e-15)
    assert abs(out.mean() / x.mean() - 1) < 0.02             # E[y] = x
    # backward: the same mask, the same scale
    d = rng.standard_normal(out.shape)
    dx = layer.backward(d)
    np.testing.assert_array_equal(dx[dropped], 0)
    np.testing.assert_allclose(dx[~dropped], d[~dropped] / (1 - p), rtol=1e-15)
    out2, _ = layer(x)
    assert not np.array_equal(out2 == 0, dropped)            # a fresh mask
    minidl.manual_seed(0)
    np.testing.assert_array_equal(layer(x)[0], out)          # reproducible from the seed
    layer.eval()
    np.testing.assert_array_equal(layer(x)[0], x)             # eval: no dropout


def test_dropout_not_applied_to_first_input_or_last_output(rng):
    minidl.manual_seed(0)
    with pytest.warns(UserWarning, match="num_layers=1 does nothing"):   # as torch warns
        single = nn.LSTM(3, 4, num_layers=1, dropout=0.5).double()
    x = rng.standard_normal((4, 2, 3))
    np.testing.assert_array_equal(single(x)[0], single(x)[0])
    layer = identity_stack(0.5, width=50)
    x = rng.uniform(0.5, 2.0, (3, 2, 50))
    out, h_n = layer(x)
    np.testing.assert_array_equal(h_n[0], x[-1])             # layer 0's output: no dropout


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_with_dropout_in_training(rng, mode):
    """gradcheck rewinds minidl's generator before every forward: the same masks."""
    minidl.manual_seed(3)
    layer = make_layer(nn, mode, 3, 4, num_layers=3, dropout=0.4)
    assert layer.training
    assert minidl.gradcheck(OutputAndState(layer), rng.standard_normal((4, 2, 3)))


# -- weights, state_dict, init ------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_torch_state_dict_loads_and_gives_same_outputs(torch, rng, mode, dtype):
    torch.manual_seed(0)
    ours, theirs = make_pair(torch, mode, 5, 7, num_layers=2, bidirectional=True,
                             batch_first=True)
    theirs.to(torch.float64 if dtype == np.float64 else torch.float32)
    ours.to(dtype)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())                 # torch tensors, unchanged
    x = rng.standard_normal((3, 6, 5)).astype(dtype)
    out, state = ours(x)
    out_t, state_t = theirs(torch.tensor(x))
    assert_close(out, out_t, dtype, "output")
    for s, s_t in zip(state if mode == "LSTM" else [state],
                      state_t if mode == "LSTM" else [state_t]):
        assert_close(s, s_t, dtype, "state")


@pytest.mark.parametrize("mode", MODES)
def test_parameter_names_shapes_and_init(torch, mode):
    minidl.manual_seed(0)
    ours, theirs = make_pair(torch, mode, 6, 32, num_layers=3, bidirectional=True, bias=True)
    assert [(n, tuple(p.shape)) for n, p in ours.named_parameters()] == \
        [(n, tuple(p.shape)) for n, p in theirs.named_parameters()]
    bound = 1 / np.sqrt(32)
    values = np.concatenate([p.data.reshape(-1) for p in ours.parameters()])
    assert values.dtype == np.float32
    assert np.abs(values).max() <= bound
    assert np.abs(values).max() > 0.99 * bound                 # fills the interval
    assert abs(values.mean()) < 0.05 * bound
    assert abs(values.std() - bound / np.sqrt(3)) < 0.02 * bound   # uniform's std
    no_bias, no_bias_t = make_pair(torch, mode, 6, 8, bias=False)
    assert list(no_bias.state_dict()) == list(no_bias_t.state_dict()) == \
        ["weight_ih_l0", "weight_hh_l0"]
    cell, cell_t = make_cell_pair(torch, mode, 6, 8, True)
    assert [(n, tuple(p.shape)) for n, p in cell.named_parameters()] == \
        [(n, tuple(p.shape)) for n, p in cell_t.named_parameters()]


def test_repr_and_defaults(torch):
    lstm = nn.LSTM(10, 20)
    t = torch.nn.LSTM(10, 20)
    for attr in ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
                 "bidirectional"):
        assert getattr(lstm, attr) == getattr(t, attr), attr
    assert repr(nn.GRU(3, 4, num_layers=2, dropout=0.5)) == repr(torch.nn.GRU(3, 4, 2, dropout=0.5))
    assert repr(nn.RNN(3, 4, num_layers=3)) == repr(torch.nn.RNN(3, 4, num_layers=3))
    # torch's repr leaves the nonlinearity out; minidl shows a relu RNN for what it is
    assert repr(nn.RNN(3, 4, nonlinearity="relu")) == "RNN(3, 4, nonlinearity='relu')"
    assert repr(nn.LSTM(3, 4, batch_first=True, bidirectional=True, bias=False)) == \
        repr(torch.nn.LSTM(3, 4, batch_first=True, bidirectional=True, bias=False))


# -- protocol -------------------------------------------------------------------------------
def test_backward_accumulates_and_skips_input_gradient(rng):
    minidl.manual_seed(0)
    gru = nn.GRU(3, 4, num_layers=2).double()
    x = rng.standard_normal((5, 2, 3))
    out, _ = gru(x)
    d = rng.standard_normal(out.shape)
    dx = gru.backward(d)
    first = {n: p.grad.copy() for n, p in gru.named_parameters()}
    gru(x)
    gru.backward(d)
    for n, p in gru.named_parameters():
        np.testing.assert_allclose(p.grad, 2 * first[n], rtol=1e-14)
    gru.zero_grad()
    gru.needs_input_grad = False
    gru(x)
    assert gru.backward(d) is None
    for n, p in gru.named_parameters():
        np.testing.assert_allclose(p.grad, first[n], rtol=1e-14)
    assert dx.shape == x.shape


def test_backward_with_nothing_gives_zeros(rng):
    lstm = nn.LSTM(3, 4).double()
    x = rng.standard_normal((2, 2, 3))
    lstm(x, (np.ones((1, 2, 4)), np.ones((1, 2, 4))))
    np.testing.assert_array_equal(lstm.backward(None, (None, None)), 0)
    np.testing.assert_array_equal(lstm.hx_grad[0], 0)
    np.testing.assert_array_equal(lstm.backward(None), 0)


# -- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [nn.RNN, nn.LSTM, nn.GRU])
def test_bad_input_errors(rng, cls):
    layer = cls(3, 4, num_layers=2)
    name = cls.__name__
    with pytest.raises(ValueError, match=rf"{name}: expected a 3-D input \(T, N, input_size\)"
                                         r".*got shape \(5, 3\)"):
        layer(np.zeros((5, 3), np.float32))
    with pytest.raises(ValueError, match=r"input_size=3.*got shape \(5, 2, 4\)"):
        layer(np.zeros((5, 2, 4), np.float32))
    with pytest.raises(ValueError, match=r"T >= 1"):
        layer(np.zeros((0, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(N, T, input_size\)"):
        cls(3, 4, batch_first=True)(np.zeros((2, 5, 3, 1), np.float32))
    with pytest.raises(ValueError, match="dtype"):
        layer(np.zeros((5, 2, 3)))                           # float64 into float32 weights
    with pytest.raises(RuntimeError, match=rf"{name}.backward\(\) called before forward"):
        cls(3, 4).backward(np.zeros((5, 2, 4), np.float32))


def test_bad_initial_state_errors():
    x = np.zeros((5, 2, 3), np.float32)
    with pytest.raises(ValueError,
                       match=r"GRU: expected h_0 of shape \(2, 2, 4\), got \(1, 2, 4\)"):
        nn.GRU(3, 4, num_layers=2)(x, np.zeros((1, 2, 4), np.float32))
    with pytest.raises(ValueError,
                       match=r"RNN: expected h_0 of shape \(2, 2, 4\), got \(2, 3, 4\)"):
        nn.RNN(3, 4, bidirectional=True)(x, np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError,
                       match=r"LSTM: expected c_0 of shape \(1, 2, 4\), got \(1, 2, 5\)"):
        nn.LSTM(3, 4)(x, (np.zeros((1, 2, 4), np.float32), np.zeros((1, 2, 5), np.float32)))
    with pytest.raises(TypeError, match=r"LSTM: expected hx to be a pair \(h, c\)"):
        nn.LSTM(3, 4)(x, np.zeros((1, 2, 4), np.float32))
    with pytest.raises(TypeError, match=r"LSTM: expected c_0 to be a float32/float64 ndarray"):
        nn.LSTM(3, 4)(x, (np.zeros((1, 2, 4), np.float32), None))
    with pytest.raises(ValueError, match=r"GRU: expected h_0 of dtype float32"):
        nn.GRU(3, 4)(x, np.zeros((1, 2, 4)))
    with pytest.raises(ValueError, match=r"GRUCell: expected h of shape \(2, 4\), got \(2, 5\)"):
        nn.GRUCell(3, 4)(x[0], np.zeros((2, 5), np.float32))


def test_bad_backward_arguments():
    lstm = nn.LSTM(3, 4, batch_first=True)
    lstm(np.zeros((2, 5, 3), np.float32))
    with pytest.raises(ValueError, match=r"LSTM.backward: expected dout of shape \(2, 5, 4\)"):
        lstm.backward(np.zeros((5, 2, 4), np.float32))
    with pytest.raises(ValueError, match=r"LSTM.backward: expected dh_n of shape \(1, 2, 4\)"):
        lstm.backward(None, (np.zeros((1, 5, 4), np.float32), None))
    with pytest.raises(TypeError, match=r"d_state to be a pair"):
        lstm.backward(None, np.zeros((1, 2, 4), np.float32))
    with pytest.raises(RuntimeError, match=r"LSTMCell.backward\(\) called before forward"):
        nn.LSTMCell(3, 4).backward(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"LSTMCell: expected a 2-D input \(N, input_size=3\)"):
        nn.LSTMCell(3, 4)(np.zeros((1, 2, 3), np.float32))


@pytest.mark.parametrize("dropout, error", [(-0.1, ValueError), (1.0, ValueError),
                                            (1.5, ValueError), (True, TypeError),
                                            ("0.5", TypeError), (None, TypeError)])
def test_dropout_outside_unit_interval(dropout, error):
    with pytest.raises(error, match=r"expected dropout to be a probability in \[0, 1\)"):
        nn.LSTM(3, 4, num_layers=2, dropout=dropout)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"hidden_size": 0}, ValueError, "hidden_size"), ({"num_layers": 0}, ValueError, "num_layers"),
    ({"input_size": 2.5}, TypeError, "input_size"), ({"bias": 1}, TypeError, "bias"),
    ({"batch_first": "yes"}, TypeError, "batch_first"),
    ({"bidirectional": None}, TypeError, "bidirectional")])
def test_bad_constructor_arguments(kwargs, error, match):
    args = {"input_size": 3, "hidden_size": 4, **kwargs}
    with pytest.raises(error, match=match):
        nn.GRU(**args)


def test_bad_nonlinearity_and_proj_size():
    with pytest.raises(ValueError, match="nonlinearity 'tanh' or 'relu'"):
        nn.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="nonlinearity"):
        nn.RNNCell(3, 4, nonlinearity="gelu")
    with pytest.raises(ValueError, match="proj_size"):
        nn.LSTM(3, 4, proj_size=2)
