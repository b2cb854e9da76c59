r"""The recurrent time loop: one layer, one direction, forward and backward through time.

The layers in ``minidl.nn.rnn`` do the big matrix products for all time steps at
once (``x_t W_ih^T + b_ih`` before the loop, the weight gradients after it); what is
left is inherently sequential: each step needs the previous hidden state.  One step is

    hg = h_{t-1} W_hh^T + b_hh          (a matrix product, ``matmul``)
    h_t, (c_t) = cell(xg_t, hg, ...)    (element-wise: gate nonlinearities + state update)

The loop itself is a registry operation, ``recurrent_forward`` / ``recurrent_backward``:

* reference (``recurrent_forward_reference`` / ``recurrent_backward_reference``): the
  loop written once in plain Python, step by step, calling the cell kernels below;
* Numba route for LSTM and GRU on float32/float64 NumPy arrays
  (``_rnn_numba.recurrent_forward_numba`` / ``recurrent_backward_numba``): the whole
  loop in one kernel -- per step the hidden product (minidl's GEMM micro-kernel) and
  the fused cell -- with the batch split into one block of rows per thread (rows are
  independent through time, so the threads never wait for each other).  One training
  step of an LSTM/GRU classifier of 128 units (T=28, batch 64), interleaved against the
  step-by-step loop on the loaded 2-core development machine: 0.82 / 0.79 of its time
  on one thread, 0.36 / 0.81 on two (medians of 9 and 7 blocks of 10 steps).

The element-wise cell steps are kernels too, each in two twins:

* ``<cell>_forward_reference`` / ``<cell>_backward_reference`` -- plain NumPy, the
  math a learner reads (also runs on CuPy arrays);
* ``<cell>_forward_numba`` / ``<cell>_backward_numba`` (``_rnn_numba.py``) -- the same
  step fused into one pass over the ``(N, H)`` units, no temporaries;
* ``<cell>_forward`` / ``<cell>_backward`` -- the registry operation the loop calls
  (``minidl.kernels.registry``): the Numba twin for float32/float64 NumPy arrays where
  it pays (the backward steps; see ``forward_twins``), the reference otherwise or under
  ``MINIDL_KERNELS=reference``.

Cells (gate order as torch; ``sigma`` the logistic sigmoid; ``xg``/``hg`` the input
and hidden parts of the pre-activations, ``(N, G)``):

* RNN (``G = H``): ``h = act(xg + hg)``, ``act`` tanh or relu.
* LSTM (``G = 4H``, blocks i, f, g, o):
  ``i, f, o = sigma(.)``, ``g = tanh(.)`` of ``xg + hg``; ``c = f c_prev + i g``;
  ``h = o tanh(c)``.
* GRU (``G = 3H``, blocks r, z, n):
  ``r = sigma(xg_r + hg_r)``, ``z = sigma(xg_z + hg_z)``, ``n = tanh(xg_n + r hg_n)``,
  ``h = (1 - z) n + z h_prev``.

Their backward formulas stand beside each reference below and in ``nn.rnn``.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from . import registry
# registered operations: MINIDL_KERNELS=reference applies
from .products import matmul, matmul_long_k, matmul_pair

MODES = ("RNN_TANH", "RNN_RELU", "LSTM", "GRU")
GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}

# The forward twins call exp/tanh once or more per unit.  Numba compiles those to scalar
# libm calls (no SVML here), while NumPy runs them as SIMD loops: on the development
# machine (float32, 64 x 128 units, one thread) the references took 5 / 69 / 62 us for
# an RNN / LSTM / GRU step and the twins 97 / 532 / 201 us.  So the forward steps stay
# with NumPy unless this is True (the tests set it to prove the twins right).  The
# backward twins compute no transcendental function (the forward keeps tanh(c)) and
# pay: see ``_rnn_numba.py``.
forward_twins = False


def _sigmoid(xp, a, out=None):
    """``1 / (1 + e^{-a})``, torch's formula, in three passes.

    For ``a`` below about -88 (float32) or -709 (float64) ``e^{-a}`` overflows to inf
    and the result is ``1 / inf = 0``, the correctly rounded value: the overflow is
    harmless, so its warning is silenced.
    """
    with np.errstate(over="ignore"):
        e = xp.exp(-a, out=out)
    e += 1
    return xp.reciprocal(e, out=e)


# -- RNN cell -----------------------------------------------------------------------
def rnn_cell_forward_reference(xg, hg, relu: bool):
    """``h = tanh(xg + hg)`` (or ``relu``), shapes ``(N, H)``."""
    a = xg + hg
    return backend.xp(a).maximum(a, 0) if relu else backend.xp(a).tanh(a)


def rnn_cell_backward_reference(dh, h, relu: bool):
    """dL/da for ``h = act(a)``: ``dh (1 - h^2)`` (tanh) or ``dh [h > 0]`` (relu).

    The relu mask is torch's ``threshold_backward`` test, ``not (h <= 0)``: a NaN
    ``h`` passes its gradient.
    """
    if relu:
        return backend.xp(dh).where(h <= 0, 0, dh)
    return dh * (1 - h * h)


# -- LSTM cell ----------------------------------------------------------------------
def lstm_cell_forward_reference(xg, hg, c_prev):
    """One LSTM step from pre-activations: ``(h, c, gates, tanh_c)``.

    ``xg, hg``: ``(N, 4H)``; ``c_prev``: ``(N, H)``; ``gates``: the activated
    ``[i, f, g, o]`` ``(N, 4H)`` and ``tanh_c = tanh(c)``, kept for backward.
    """
    xp = backend.xp(xg)
    gates = xg + hg                                         # pre-activations, then in place:
    H = c_prev.shape[1]
    i_f, g, o = gates[:, :2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
    _sigmoid(xp, i_f, out=i_f)
    xp.tanh(g, out=g)
    _sigmoid(xp, o, out=o)
    i, f = i_f[:, :H], i_f[:, H:]
    c = f * c_prev + i * g
    tanh_c = xp.tanh(c)
    return o * tanh_c, c, gates, tanh_c


def lstm_cell_backward_reference(dh, dc, gates, c_prev, tanh_c):
    r"""One LSTM step back: ``(da, dc_prev)``, ``da = dL/d(xg + hg)`` ``(N, 4H)``.

    With ``k = tanh_c = tanh(c)`` and ``dc`` the gradient arriving from step t+1:

        dc_tot = dc + dh o (1 - k^2)       dc_prev = dc_tot f
        da_i = dc_tot g i (1 - i)          da_f = dc_tot c_prev f (1 - f)
        da_g = dc_tot i (1 - g^2)          da_o = dh k o (1 - o)
    """
    xp = backend.xp(dh)
    H = tanh_c.shape[1]
    i, f, g, o = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:3 * H], gates[:, 3 * H:]
    k = tanh_c
    dc_tot = dc + dh * o * (1 - k * k)
    da = xp.concatenate([dc_tot * g * i * (1 - i), dc_tot * c_prev * f * (1 - f),
                         dc_tot * i * (1 - g * g), dh * k * o * (1 - o)], axis=1)
    return da, dc_tot * f


# -- GRU cell -----------------------------------------------------------------------
def gru_cell_forward_reference(xg, hg, h_prev):
    """One GRU step: ``(h, gates)``; ``xg, hg``: ``(N, 3H)``; ``gates`` = ``[r, z, n]``."""
    xp = backend.xp(xg)
    H = h_prev.shape[1]
    gates = xp.empty_like(xg)                               # filled block by block, in place
    rz, n = gates[:, :2 * H], gates[:, 2 * H:]
    _sigmoid(xp, xp.add(xg[:, :2 * H], hg[:, :2 * H], out=rz), out=rz)
    r, z = rz[:, :H], rz[:, H:]
    xp.multiply(r, hg[:, 2 * H:], out=n)
    n += xg[:, 2 * H:]
    xp.tanh(n, out=n)
    h = (1 - z) * n + z * h_prev
    return h, gates


def gru_cell_backward_reference(dh, gates, hg_n, h_prev):
    r"""One GRU step back: ``(dxg, dhg, dh_prev_direct)``.

    ``hg_n = W_hn h_prev + b_hn`` (the hidden part of the n gate, before ``r``):

        da_n = dh (1 - z) (1 - n^2)           (n's pre-activation)
        da_z = dh (h_prev - n) z (1 - z)
        da_r = da_n hg_n r (1 - r)
        dxg = [da_r, da_z, da_n]              dhg = [da_r, da_z, da_n r]
        dh_prev_direct = dh z                 (plus dhg W_hh, added by the loop)
    """
    xp = backend.xp(dh)
    H = h_prev.shape[1]
    r, z, n = gates[:, :H], gates[:, H:2 * H], gates[:, 2 * H:]
    da_n = dh * (1 - z) * (1 - n * n)
    da_z = dh * (h_prev - n) * z * (1 - z)
    da_r = da_n * hg_n * r * (1 - r)
    dxg = xp.concatenate([da_r, da_z, da_n], axis=1)
    dhg = xp.concatenate([da_r, da_z, da_n * r], axis=1)
    return dxg, dhg, dh * z


# -- registry entries -----------------------------------------------------------------
def _numba_ready(*args) -> bool:
    """The Numba twins take NumPy arrays of one float dtype (flags such as ``relu`` pass)."""
    arrays = [a for a in args if hasattr(a, "dtype")]
    return all(type(a) is np.ndarray for a in arrays) and \
        arrays[0].dtype in (np.float32, np.float64) and \
        all(a.dtype == arrays[0].dtype for a in arrays)


def _forward_ready(*args) -> bool:
    return forward_twins and _numba_ready(*args)


def _example(*shapes_and_flags):
    """``() -> (args, kwargs)``: float32 arrays of the given shapes (an LSTM of 128
    units at batch 64) and any flags, for ``registry.listing()``."""
    def make():
        return tuple(np.zeros(a, np.float32) if isinstance(a, tuple) else a
                     for a in shapes_and_flags), {}
    return make


def _register(name, reference, applies, example, doc):
    return registry.register(name, reference,
                             registry.numba("._rnn_numba", f"{name}_numba", applies),
                             example=example, doc=doc)


_N, _H = 64, 128
rnn_cell_forward = _register(
    "rnn_cell_forward", rnn_cell_forward_reference, _forward_ready,
    _example((_N, _H), (_N, _H), False), "One RNN step ``h = act(xg + hg)``.")
rnn_cell_backward = _register(
    "rnn_cell_backward", rnn_cell_backward_reference, _numba_ready,
    _example((_N, _H), (_N, _H), False), "One RNN step back: dL/d(pre-activation).")
lstm_cell_forward = _register(
    "lstm_cell_forward", lstm_cell_forward_reference, _forward_ready,
    _example((_N, 4 * _H), (_N, 4 * _H), (_N, _H)),
    "One LSTM step: ``(h, c, gates, tanh_c)``.")
lstm_cell_backward = _register(
    "lstm_cell_backward", lstm_cell_backward_reference, _numba_ready,
    _example((_N, _H), (_N, _H), (_N, 4 * _H), (_N, _H), (_N, _H)),
    "One LSTM step back: ``(da, dc_prev)``.")
gru_cell_forward = _register(
    "gru_cell_forward", gru_cell_forward_reference, _forward_ready,
    _example((_N, 3 * _H), (_N, 3 * _H), (_N, _H)), "One GRU step: ``(h, gates)``.")
gru_cell_backward = _register(
    "gru_cell_backward", gru_cell_backward_reference, _numba_ready,
    _example((_N, _H), (_N, 3 * _H), (_N, _H), (_N, _H)),
    "One GRU step back: ``(dxg, dhg, dh_prev_direct)``.")


# -- the time loop ------------------------------------------------------------------
def _hidden_part(h, w_hh_t, b_hh):
    """``h W_hh^T + b_hh``: the hidden state's share of every gate, ``(N, G)``."""
    hg = matmul(h, w_hh_t)
    if b_hh is not None:
        hg += b_hh
    return hg


def recurrent_forward_reference(mode, xg, w_hh, b_hh, h0, c0=None, keep=True):
    """Run one layer in one direction over ``T`` steps (step 0 first), step by step.

    Parameters
    ----------
    mode : one of ``MODES``
    xg : ``(T, N, G)`` -- ``x_t W_ih^T + b_ih`` for every step (``G = gates * H``)
    w_hh : ``(G, H)``;  b_hh : ``(G,)`` or None
    h0, c0 : ``(N, H)`` -- initial states (``c0`` for LSTM only)

    Returns ``(hs, cache)``: ``hs`` ``(T, N, H)`` the hidden state of every step
    (so ``h_n = hs[-1]``), and what ``recurrent_backward`` needs, every step's
    ``gates`` ``(T, N, G)`` (LSTM, GRU), ``cs`` and ``tcs`` (``tanh(c_t)``) ``(T, N, H)``
    (LSTM: ``cache["cs"][-1]`` is ``c_n``) and ``hg_ns`` (GRU: ``h_{t-1} W_hn^T + b_hn``).

    ``keep=False`` says no backward will follow (``minidl.no_grad``): a route may then
    leave out what only backward reads (the Numba route does); this one keeps it all.
    """
    xp = backend.xp(xg)
    T, N, G = xg.shape
    H = w_hh.shape[1]
    hs = xp.empty((T, N, H), xg.dtype)
    gates = xp.empty((T, N, G), xg.dtype) if mode in ("LSTM", "GRU") else None
    cs = xp.empty((T, N, H), xg.dtype) if mode == "LSTM" else None
    tcs = xp.empty((T, N, H), xg.dtype) if mode == "LSTM" else None
    hg_ns = xp.empty((T, N, H), xg.dtype) if mode == "GRU" else None
    h, c = h0, c0
    w_hh_t = xp.ascontiguousarray(w_hh.T)            # (H, G), once for all steps
    for t in range(T):
        hg = _hidden_part(h, w_hh_t, b_hh)
        if mode == "LSTM":
            h, c, gates[t], tcs[t] = lstm_cell_forward(xg[t], hg, c)
            cs[t] = c
        elif mode == "GRU":
            h, gates[t] = gru_cell_forward(xg[t], hg, h)
            hg_ns[t] = hg[:, 2 * H:]
        else:
            h = rnn_cell_forward(xg[t], hg, mode == "RNN_RELU")
        hs[t] = h
    return hs, {"mode": mode, "hs": hs, "gates": gates, "cs": cs, "tcs": tcs, "hg_ns": hg_ns,
                "h0": h0, "c0": c0}


def recurrent_backward_reference(d_hs, dh_n, dc_n, w_hh, cache):
    """Backpropagation through time for ``recurrent_forward``, step by step.

    ``d_hs``: ``(T, N, H)`` dL/dh_t from above (the layer's output), or None;
    ``dh_n``, ``dc_n``: ``(N, H)`` dL/d(final state), or None.

    Returns ``(dxg, dhg, dh0, dc0)``: ``dxg`` ``(T, N, G)`` = dL/dxg (so the layer
    gets ``dW_ih = sum_t dxg_t^T x_t``, ``dx_t = dxg_t W_ih``), ``dhg`` the same for
    the hidden parts (``dW_hh = sum_t dhg_t^T h_{t-1}``, ``db_hh = sum dhg``; it *is*
    ``dxg`` except for a GRU), and the initial states' gradients (``dc0`` None
    unless LSTM).
    """
    if cache.get("gates", 0) is None and cache["mode"] in ("LSTM", "GRU"):
        raise ValueError("recurrent_backward: the cache is from a forward pass with "
                         "keep=False (minidl.no_grad), which keeps no gates; run the "
                         "forward pass again with gradients enabled")
    mode, hs, gates = cache["mode"], cache["hs"], cache["gates"]
    xp = backend.xp(hs)
    T, N, H = hs.shape
    G = w_hh.shape[0]
    dxg = xp.empty((T, N, G), hs.dtype)
    dhg = xp.empty((T, N, G), hs.dtype) if mode == "GRU" else dxg
    dh = xp.zeros((N, H), hs.dtype) if dh_n is None else dh_n
    dc = None
    if mode == "LSTM":
        dc = xp.zeros((N, H), hs.dtype) if dc_n is None else dc_n
    for t in range(T - 1, -1, -1):
        if d_hs is not None:
            dh = dh + d_hs[t]
        h_prev = cache["h0"] if t == 0 else hs[t - 1]
        if mode == "LSTM":
            c_prev = cache["c0"] if t == 0 else cache["cs"][t - 1]
            dxg[t], dc = lstm_cell_backward(dh, dc, gates[t], c_prev, cache["tcs"][t])
            dh = matmul(dxg[t], w_hh)
        elif mode == "GRU":
            dxg[t], dhg[t], dh_direct = gru_cell_backward(dh, gates[t], cache["hg_ns"][t], h_prev)
            dh = dh_direct + matmul(dhg[t], w_hh)
        else:
            dxg[t] = rnn_cell_backward(dh, hs[t], mode == "RNN_RELU")
            dh = matmul(dxg[t], w_hh)
    return dxg, dhg, dh, dc


def hidden_weight_grads(dhg, hs, h0, with_bias: bool, hs_full=None):
    """``(dW_hh, db_hh)`` for all steps at once: ``dW_hh = sum_t dhg_t^T h_{t-1}``.

    ``hs_full`` (``(T + 1, N, H)``: ``h0`` then ``hs``, as the Numba loop keeps them)
    spares the copy that puts ``h0`` before ``hs[:-1]``.  The product is taken as
    ``dG^T h_prev``, in the weight's own layout: no transposed copy of the result (LSTM
    128, batch 64, T = 28, one thread, Intel Xeon with AVX-512: 2.40 -> 2.09 ms with both
    changes, ``python -m benchmarks.rnn_parts``)."""
    xp = backend.xp(hs)
    T, N, H = hs.shape
    G = dhg.shape[2]
    if hs_full is None:
        hs_full = xp.concatenate([h0[None], hs], axis=0)
    h_prev = hs_full[:-1].reshape(T * N, H)
    d2 = dhg.reshape(T * N, G)
    dw = matmul_long_k(d2.T, h_prev)
    return dw, (d2.sum(axis=0) if with_bias else None)


def shared_weight_grads(dg, hs, h0, x2, with_bias: bool, hs_full=None):
    """``(dW_hh, dW_ih, db)`` where both weights see the same ``dG`` (an LSTM: ``dxg`` is
    ``dhg``): ``dG^T h_prev`` and ``dG^T x`` as one ``matmul_pair`` (on the Numba route one
    product ``dG^T [h_prev | x]``, ``dG`` read once: LSTM 128, T = 28, batch 64, Intel
    Xeon with AVX-512, medians of 7 blocks of 20, three rounds: 2.66-2.71 ms as two
    products against 2.36-2.38 as one on one thread, 1.70-1.74 against 1.53-1.55 on two);
    ``db = sum_t dG_t``, both biases' gradient.  ``x2``: the ``(T N, I)`` input rows in
    the loop's time order; ``hs_full`` as in ``hidden_weight_grads``."""
    xp = backend.xp(hs)
    T, N, H = hs.shape
    G = dg.shape[2]
    if hs_full is None:
        hs_full = xp.concatenate([h0[None], hs], axis=0)
    d2 = dg.reshape(T * N, G)
    dw_hh, dw_ih = matmul_pair(d2.T, hs_full[:-1].reshape(T * N, H), x2)
    return dw_hh, dw_ih, (d2.sum(axis=0) if with_bias else None)


# -- the time loop as registry operations ------------------------------------------------
def _sequence_ready(mode, xg, w_hh, b_hh, h0, c0=None, keep=True) -> bool:
    """The one-kernel loops (``_rnn_numba.recurrent_forward_numba``): LSTM and GRU on
    NumPy arrays of one float dtype."""
    return mode in ("LSTM", "GRU") and _numba_ready(xg, w_hh, b_hh, h0, c0)


def _sequence_back_ready(d_hs, dh_n, dc_n, w_hh, cache) -> bool:
    """LSTM and GRU caches with their gates (a ``keep=False`` cache goes to the
    reference, which says what is wrong)."""
    return cache["mode"] in ("LSTM", "GRU") and cache["gates"] is not None and _numba_ready(
        cache["hs"], d_hs, dh_n, dc_n, w_hh, cache["h0"], cache["c0"], cache["gates"])


_T = 28
recurrent_forward = _register(
    "recurrent_forward", recurrent_forward_reference, _sequence_ready,
    lambda: (("LSTM", np.zeros((_T, _N, 4 * _H), np.float32),
              np.zeros((4 * _H, _H), np.float32), np.zeros(4 * _H, np.float32),
              np.zeros((_N, _H), np.float32), np.zeros((_N, _H), np.float32)), {}),
    "One layer-direction over all steps: ``(hs, cache)``.")


def recurrent_layer_forward_reference(mode, x, w_ih, b_ih, w_hh, b_hh, h0, c0=None,
                                      keep=True):
    """One layer-direction from its input: ``xg = x W_ih^T + b_ih`` for all steps at
    once (``x`` ``(T, N, I)``; ``matmul``), then ``recurrent_forward_reference``; returns
    its ``(hs, cache)``."""
    xp = backend.xp(x)
    T, N, _ = x.shape
    # W_ih^T made contiguous (G x I, small): matmul's route for a transposed b is slow
    # when the inner dimension (input_size) is small -- 13x for 28, measured
    xg = matmul(x.reshape(T * N, -1), xp.ascontiguousarray(w_ih.T))
    if b_ih is not None:
        xg += b_ih
    return recurrent_forward_reference(mode, xg.reshape(T, N, -1), w_hh, b_hh, h0, c0,
                                       keep=keep)


def _layer_ready(mode, x, w_ih, b_ih, w_hh, b_hh, h0, c0=None, keep=True) -> bool:
    """LSTM and GRU on NumPy arrays of one float dtype (``_rnn_numba``)."""
    return mode in ("LSTM", "GRU") and _numba_ready(x, w_ih, b_ih, w_hh, b_hh, h0, c0)


recurrent_layer_forward = _register(
    "recurrent_layer_forward", recurrent_layer_forward_reference, _layer_ready,
    lambda: (("LSTM", np.zeros((_T, _N, 28), np.float32), np.zeros((4 * _H, 28), np.float32),
              np.zeros(4 * _H, np.float32), np.zeros((4 * _H, _H), np.float32),
              np.zeros(4 * _H, np.float32), np.zeros((_N, _H), np.float32),
              np.zeros((_N, _H), np.float32)), {}),
    "One layer-direction from its input ``x`` (projection and loop): ``(hs, cache)``.")


def _backward_example():
    z = np.zeros
    hs, state = z((_T, _N, _H), np.float32), z((_N, _H), np.float32)
    cache = {"mode": "LSTM", "hs": hs, "h0": state, "c0": state, "cs": hs, "tcs": hs,
             "gates": z((_T, _N, 4 * _H), np.float32), "hg_ns": None}
    return (hs, state, state, z((4 * _H, _H), np.float32), cache), {}


recurrent_backward = _register(
    "recurrent_backward", recurrent_backward_reference, _sequence_back_ready, _backward_example,
    "Backpropagation through time for ``recurrent_forward``: ``(dxg, dhg, dh0, dc0)``.")
