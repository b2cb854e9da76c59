"""The speed paths (issue 5) compute what their plain twins compute.

- Numba kernels against their NumPy twins: ReLU, the cross-entropy loss, the fused Adam
  update (bit for bit, float32 flush-to-zero of subnormal moments included), the direct
  convolution (loop and implicit GEMM: forward, weight and input gradients), the float32
  GEMM (all layouts and edge sizes), the im2col copy paths.
- The ``needs_input_grad`` protocol: skipping the input gradient leaves every parameter
  gradient unchanged and returns None; ``fit`` sets it and restores it.
- Layers route through the fast paths and agree with the slow ones.
- ``minidl.memory.tune_malloc``: applied once by ``minidl.performance.apply()`` (which
  ``fit`` and ``evaluate`` call; never by a layer), respects the opt-out and the user's
  own glibc variables.

Nothing here is timed.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minidl
from minidl import kernels, nn
from minidl.kernels import _parallel, gemm
from minidl.kernels import conv as conv_module

ROOT = Path(__file__).resolve().parents[3]
# rows of a and of b.T per tile of the a @ b.T micro-kernel on this machine's vector route
_, _, NT_ROWS, NT_COLS = gemm.tile_geometry()



# these tests are about the fast routes: run them also under MINIDL_KERNELS=reference
pytestmark = pytest.mark.usefixtures("fast_kernels")

@pytest.fixture(params=["serial", "parallel"])
def driver(request, monkeypatch):
    monkeypatch.setattr(_parallel, "force", request.param)
    return request.param


def _specials(a, rng):
    """A copy of ``a`` with NaN, +-inf, +-0 and exact zeros sprinkled in."""
    a = a.copy()
    flat = a.reshape(-1)
    picks = rng.choice(flat.size, size=min(flat.size, max(5, flat.size // 10)), replace=False)
    flat[picks[0::5]] = np.nan
    flat[picks[1::5]] = np.inf
    flat[picks[2::5]] = -np.inf
    flat[picks[3::5]] = 0.0
    flat[picks[4::5]] = -0.0
    return a


# -- ReLU ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (7, 5), (3, 4, 6, 5), (2, 70000)])
def test_relu_numba_equals_reference(shape, dtype, driver, rng):
    x = _specials(rng.standard_normal(shape).astype(dtype), rng)
    y, passes = kernels.relu_forward_numba(x)
    y_ref, passes_ref = kernels.relu_forward_reference(x)
    assert y.dtype == dtype and y.shape == x.shape and passes.dtype == np.bool_
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(passes, passes_ref)
    assert np.isnan(y).sum() == np.isnan(x).sum()            # NaN propagates ...
    assert passes[np.isnan(x)].all()                         # ... and passes its gradient
    dout = _specials(rng.standard_normal(shape).astype(dtype), rng)
    dx = kernels.relu_backward_numba(dout, passes)
    np.testing.assert_array_equal(dx, kernels.relu_backward_reference(dout, passes))
    # where the output is <= 0 the gradient is exactly 0, even for a NaN/inf dout
    assert np.all(dx[y <= 0] == 0)
    np.testing.assert_array_equal(dx[passes], dout[passes])


def test_relu_numba_takes_non_contiguous_input_and_rejects_bad_arrays(rng):
    x = rng.standard_normal((6, 8)).astype(np.float32)[:, ::2]
    np.testing.assert_array_equal(kernels.relu_forward_numba(x)[0], np.maximum(x, 0))
    with pytest.raises(ValueError, match="relu_forward"):
        kernels.relu_forward_numba(np.arange(4))
    with pytest.raises(ValueError, match="relu_backward"):
        kernels.relu_backward_numba(np.ones(3, np.float32), np.ones(4, np.bool_))
    with pytest.raises(ValueError, match="relu_backward"):
        kernels.relu_backward_numba(np.ones(3, np.float32), np.ones(3, np.float32))


def test_relu_layer_matches_torch_on_nan_and_inf(torch, rng):
    x = _specials(rng.standard_normal((4, 9)), rng)
    dout = _specials(rng.standard_normal((4, 9)), rng)
    layer = nn.ReLU()
    y = layer(x)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.relu(tx)
    ty.backward(torch.tensor(dout))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(layer.backward(dout), tx.grad.numpy())


# -- erf (GELU) ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_erf_numba_equals_reference_and_gelu_takes_the_registry_route(dtype, rng):
    x = _specials((rng.standard_normal((5, 300)) * 3).astype(dtype), rng)
    got, ref = kernels.erf_numba(x), kernels.erf_reference(x)
    assert got.dtype == ref.dtype == dtype and got.shape == ref.shape == x.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(x))
    np.testing.assert_allclose(got, ref, rtol=2e-7 if dtype == np.float32 else 1e-15,
                               atol=0)
    np.testing.assert_array_equal(got[np.isinf(x)], np.sign(x[np.isinf(x)]))
    assert kernels.erf.pick(x) is not None
    with np.errstate(invalid="ignore"):          # GELU(-inf) = -inf * 0
        fast = nn.GELU()(x)
        with kernels.reference_kernels():
            assert kernels.erf.pick(x) is None
            _close(nn.GELU()(x), fast, dtype)


# -- cross-entropy ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
def test_cross_entropy_numba_equals_reference(smoothing, dtype, rng):
    logits = (rng.standard_normal((37, 10)) * 5).astype(dtype)
    logits[3] += 1000                                  # stability: a large shift
    logits[5, 2] = np.nan                              # a NaN row
    logits[7, 4] = np.inf                              # an inf row
    logits[9, :] = -np.inf                             # an all -inf row
    targets = rng.integers(0, 10, 37)
    loss, probs = kernels.cross_entropy_numba(logits, targets, smoothing)
    with np.errstate(invalid="ignore"):                # inf - inf in the NumPy twin
        loss_ref, probs_ref = kernels.cross_entropy_reference(logits, targets, smoothing)
    assert isinstance(loss, float) and probs.dtype == dtype
    assert np.isnan(loss) and np.isnan(loss_ref)       # NaN rows make the mean NaN
    _close(probs, probs_ref, dtype)
    rows = [i for i in range(37) if i not in (5, 7, 9)]
    loss, _ = kernels.cross_entropy_numba(logits[rows], targets[rows], smoothing)
    loss_ref, _ = kernels.cross_entropy_reference(logits[rows], targets[rows], smoothing)
    assert loss == pytest.approx(loss_ref, rel=1e-6 if dtype == np.float32 else 1e-13)


def test_cross_entropy_numba_checks_shapes():
    with pytest.raises(ValueError, match="targets"):
        kernels.cross_entropy_numba(np.zeros((3, 4)), np.zeros(2, np.int64))


# -- Adam ------------------------------------------------------------------------------

def _adam_arrays(rng, dtype, n=1000):
    p, g, m = (rng.standard_normal(n).astype(dtype) for _ in range(3))
    v, vmax = (np.abs(rng.standard_normal(n)).astype(dtype) for _ in range(2))
    g[3] = np.nan
    v[5] = np.nan
    g[7] = np.inf
    return [p, g, m, v, vmax]


ADAM_CASES = [dict(weight_decay=wd, decoupled=dec, amsgrad=ams)
              for wd, dec in ((0.0, False), (0.05, False), (0.05, True)) for ams in (False, True)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ADAM_CASES, ids=str)
def test_adam_numba_equals_reference_bit_for_bit(case, dtype, driver, rng):
    arrays = _adam_arrays(rng, dtype)
    ref = [a.copy() for a in arrays]
    out = [a.copy() for a in arrays]
    amsgrad = case["amsgrad"]
    for t in range(1, 4):
        c = kernels.adam_coefficients(
            dtype, lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=case["weight_decay"],
            decoupled=case["decoupled"], step_size=1e-2 / (1 - 0.9 ** t),
            bias_correction2_sqrt=(1 - 0.999 ** t) ** 0.5)
        assert c.dtype == dtype
        with np.errstate(invalid="ignore"):          # inf - inf in the NumPy twin
            kernels.adam_update_reference(*ref[:4], ref[4] if amsgrad else None, c)
        kernels.adam_update_numba(*out[:4], out[4] if amsgrad else None, c)
    for name, a, b in zip(("param", "grad", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
                          out, ref):
        np.testing.assert_array_equal(a, b, err_msg=name)
    # the scalars may also be passed as keywords (they make the same coefficients)
    again = [a.copy() for a in arrays]
    for t in range(1, 4):
        kernels.adam_update(*again[:4], again[4] if amsgrad else None, lr=1e-2, beta1=0.9,
                            beta2=0.999, eps=1e-8, weight_decay=case["weight_decay"],
                            decoupled=case["decoupled"], step_size=1e-2 / (1 - 0.9 ** t),
                            bias_correction2_sqrt=(1 - 0.999 ** t) ** 0.5)
    np.testing.assert_array_equal(again[0], out[0])
    with pytest.raises(ValueError, match="not both"):
        kernels.adam_update(*again[:4], None, c, lr=1e-2)
    np.testing.assert_array_equal(out[1], arrays[1])          # the gradient is untouched


def _adam_coefficients(dtype, t=1):
    return kernels.adam_coefficients(
        dtype, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False,
        step_size=1e-3 / (1 - 0.9 ** t), bias_correction2_sqrt=(1 - 0.999 ** t) ** 0.5)


@pytest.mark.parametrize("update", ["adam_update_numba", "adam_update_reference"])
def test_adam_flushes_subnormal_float32_moments_only(update):
    fn = getattr(kernels, update)
    tiny32 = np.finfo(np.float32).tiny
    # gradients 0: m decays by beta1 per step; from just above the smallest normal
    # float32 it would become subnormal -- it becomes exactly 0 instead
    p = np.ones(4, np.float32)
    m = np.array([tiny32 * 1.05, -tiny32 * 1.05, 1e-3, 0.0], np.float32)
    v = np.array([tiny32 * 1.0005, 1e-6, 1e-6, 0.0], np.float32)
    fn(p, np.zeros(4, np.float32), m, v, None, _adam_coefficients(np.float32))
    np.testing.assert_array_equal(m[:2], 0)
    assert m[2] > tiny32
    assert v[0] == 0 and v[1] > 0
    assert not np.any((m != 0) & (np.abs(m) < tiny32))
    assert np.all(np.isfinite(p))
    # float64 keeps its subnormal values (parity with torch in float64)
    m64 = np.array([1e-308, 3e-310], np.float64)
    v64 = np.array([1e-308, 3e-310], np.float64)
    fn(np.ones(2), np.zeros(2), m64, v64, None, _adam_coefficients(np.float64))
    assert 0 < m64[1] < np.finfo(np.float64).tiny and 0 < v64[1] < np.finfo(np.float64).tiny


def test_adam_optimizer_never_stores_subnormal_float32_moments():
    p = nn.Parameter(np.full(8, 0.5, np.float32))
    opt = minidl.optim.Adam([p], lr=1e-3)
    p.grad = np.full(8, 1e-3, np.float32)
    opt.step()
    tiny32 = np.finfo(np.float32).tiny
    for _ in range(900):            # 0.9**900 * 1e-4 passes far below 1e-38
        p.grad = np.zeros(8, np.float32)
        opt.step()
        m = opt.state[p]["exp_avg"]
        assert not np.any((m != 0) & (np.abs(m) < tiny32))
    assert np.all(opt.state[p]["exp_avg"] == 0)


def test_adam_dispatch_falls_back_for_non_contiguous_parameters(rng):
    base = rng.standard_normal((6, 4)).astype(np.float32)
    p = nn.Parameter(base[:, ::2])                    # a strided view: NumPy twin
    p.grad = np.ones((6, 2), np.float32)
    expected = p.data.copy()
    minidl.optim.Adam([p], lr=0.1).step()
    assert np.shares_memory(p.data, base)
    np.testing.assert_allclose(p.data, expected - 0.1, rtol=1e-6)


# -- direct convolution: loop and implicit GEMM ------------------------------------------

DIRECT_GEOMETRIES = [  # (in_channels, kernel, padding, dilation)
    (1, (3, 3), (1, 1), (1, 1)),
    (1, (5, 5), (2, 2), (1, 1)),
    (2, (2, 4), (0, 3), (2, 1)),
    (3, (1, 1), (0, 0), (1, 1)),
    (1, (4, 1), (3, 0), (1, 2)),
    (5, (3, 3), (1, 1), (1, 1)),
]


def _without_vector_route(monkeypatch):
    """Run as on a CPU where the GEMM micro-kernels have no vector route: products on
    NumPy's BLAS, the direct convolution's Numba twin on its loop."""
    monkeypatch.setattr(gemm, "host_supported", lambda: False)


@pytest.fixture(params=["implicit", "loop"])
def conv_route(request, monkeypatch):
    """The Numba forward's route: the implicit GEMM (float32) or the loop (no vector route)."""
    if request.param == "loop":
        _without_vector_route(monkeypatch)
    return request.param


def _conv_case(rng, geometry, dtype, c_out=8, n=3, hw=(7, 9)):
    c, k, pad, dil = geometry
    x = rng.standard_normal((n, c) + hw).astype(dtype)
    w = rng.standard_normal((c_out, c) + k).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    return x, w, b, pad, dil


def _close(actual, expected, dtype):
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    finite = np.isfinite(expected)
    scale = float(np.abs(expected[finite]).max()) if finite.any() else 1.0
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", DIRECT_GEOMETRIES)
def test_direct_conv_numba_equals_reference(geometry, dtype, conv_route, driver, rng):
    x, w, b, pad, dil = _conv_case(rng, geometry, dtype)
    x[0, 0, 2, 3] = np.nan
    x[1, 0, 1, 1] = np.inf
    taps = w.shape[1] * w.shape[2] * w.shape[3]
    assert kernels.implicit_gemm_applies(x, w.shape, w.dtype) == (
        conv_route == "implicit" and dtype == np.float32 and taps >= NT_COLS
        and gemm.host_supported())
    ref = kernels.conv2d_direct_forward_reference(x, w, b, pad, dil)
    out = kernels.conv2d_direct_forward_numba(x, w, b, pad, dil)
    assert out.dtype == dtype and out.shape == ref.shape
    _close(out, ref, dtype)
    no_bias = kernels.conv2d_direct_forward_numba(x, w, None, pad, dil)
    _close(no_bias + b[None, :, None, None], out, dtype)


@pytest.mark.parametrize("geometry", [g for g in DIRECT_GEOMETRIES
                                      if g[0] * g[1][0] * g[1][1] >= NT_COLS])
def test_implicit_gemm_gradients_equal_reference(geometry, driver, rng):
    x, w, b, pad, dil = _conv_case(rng, geometry, np.float32, c_out=13, n=4, hw=(8, 11))
    dout = rng.standard_normal(kernels.conv2d_direct_forward_reference(x, w, b, pad, dil).shape)
    dout = dout.astype(np.float32)
    dw = kernels.conv2d_direct_weight_grad_numba(x, dout, w.shape, pad, dil)
    _close(dw, kernels.conv2d_direct_weight_grad_reference(x, dout, w.shape, pad, dil),
           np.float32)
    dx = kernels.conv2d_direct_input_grad_numba(dout, w, x.shape, pad, dil)
    assert dx.shape == x.shape and dx.dtype == np.float32
    _close(dx, kernels.conv2d_direct_input_grad_reference(dout, w, x.shape, pad, dil),
           np.float32)


def test_implicit_gemm_gradients_in_chunks_of_images(monkeypatch, rng):
    """The gradients run over a few images at a time: chunk edges change nothing, and an
    inf in a later chunk still sends the weight gradient to the reference."""
    from minidl.kernels import _conv_direct_numba
    monkeypatch.setattr(_conv_direct_numba, "CHUNK_IMAGES", 2)
    x, w, b, pad, dil = _conv_case(rng, (2, (3, 3), (1, 1), (1, 1)), np.float32, n=5,
                                   hw=(6, 7))
    dout = rng.standard_normal((5, 8, 6, 7)).astype(np.float32)
    _close(kernels.conv2d_direct_weight_grad_numba(x, dout, w.shape, pad, dil),
           kernels.conv2d_direct_weight_grad_reference(x, dout, w.shape, pad, dil), np.float32)
    _close(kernels.conv2d_direct_input_grad_numba(dout, w, x.shape, pad, dil),
           kernels.conv2d_direct_input_grad_reference(dout, w, x.shape, pad, dil), np.float32)
    x[4, 1, 0, 6] = -np.inf
    _close(kernels.conv2d_direct_weight_grad_numba(x, dout, w.shape, pad, dil),
           kernels.conv2d_direct_weight_grad_reference(x, dout, w.shape, pad, dil), np.float32)


def test_combined_backward_equals_the_two_gradients(monkeypatch, driver, rng):
    """conv2d_direct_backward shares one copy of dout between dW and dx: same results as the
    two separate kernels (bit for bit: the same micro-kernels run the same products in the
    same order, whatever the CPU), over chunks,
    with an inf input (dW from the reference) or an inf weight (dx from the reference)."""
    from minidl.kernels import _conv_direct_numba
    monkeypatch.setattr(_conv_direct_numba, "CHUNK_IMAGES", 2)
    x, w, b, pad, dil = _conv_case(rng, (3, (3, 3), (1, 1), (1, 1)), np.float32, n=5,
                                   hw=(7, 9))
    dout = rng.standard_normal((5, 8, 7, 9)).astype(np.float32)
    for case in ("finite", "inf input", "inf weight"):
        if case == "inf input":
            x[3, 2, 6, 0] = np.inf
        if case == "inf weight":
            w[2, 0, 1, 1] = -np.inf
        dw, db, dx = kernels.conv2d_direct_backward_numba(x, dout, w, pad, dil)
        assert db.dtype == np.float32
        np.testing.assert_allclose(db, dout.astype(np.float64).sum(axis=(0, 2, 3)), rtol=1e-6)
        np.testing.assert_array_equal(
            dw, kernels.conv2d_direct_weight_grad_numba(x, dout, w.shape, pad, dil), err_msg=case)
        np.testing.assert_array_equal(
            dx, kernels.conv2d_direct_input_grad_numba(dout, w, x.shape, pad, dil), err_msg=case)
        _close(dw, kernels.conv2d_direct_weight_grad_reference(x, dout, w.shape, pad, dil),
               np.float32)
        dw_only, _, none = kernels.conv2d_direct_backward(x, dout, w, pad, dil, need_dx=False)
        assert none is None
        if kernels.implicit_gemm_applies(x, w.shape, w.dtype):
            # the dispatcher takes this same kernel: same products in the same order
            np.testing.assert_array_equal(dw_only, dw)
        else:
            # no vector route here (or switched off): the dispatcher takes the NumPy
            # reference, whose sums run in another order -- equal to float32 rounding
            _close(dw_only, dw, np.float32)
    # the dispatcher's reference route (float64) gives the two references
    x64, d64, w64 = x.astype(np.float64), dout.astype(np.float64), w.astype(np.float64)
    dw, db, dx = kernels.conv2d_direct_backward(x64, d64, w64, pad, dil)
    np.testing.assert_array_equal(db, d64.sum(axis=(0, 2, 3)))
    np.testing.assert_array_equal(dw, kernels.conv2d_direct_weight_grad_reference(
        x64, d64, w.shape, pad, dil))
    np.testing.assert_array_equal(dx, kernels.conv2d_direct_input_grad_reference(
        d64, w64, x.shape, pad, dil))
    with pytest.raises(ValueError, match="conv2d_direct_backward.*float32"):
        kernels.conv2d_direct_backward_numba(x, dout, w64, pad, dil)


def test_implicit_gemm_keeps_the_references_nan_pattern(driver, rng):
    """Non-finite inputs (weight grad) or weights (input grad) take the reference: NaN and
    inf reach exactly the entries they reach there."""
    x, w, b, pad, dil = _conv_case(rng, (2, (3, 3), (1, 1), (1, 1)), np.float32, n=2,
                                   hw=(6, 6))
    dout = rng.standard_normal((2, 8, 6, 6)).astype(np.float32)
    x[0, 1, 2, 5] = np.inf                 # right edge: some taps never see it
    x[1, 0, 0, 0] = np.nan
    dw = kernels.conv2d_direct_weight_grad_numba(x, dout, w.shape, pad, dil)
    ref = kernels.conv2d_direct_weight_grad_reference(x, dout, w.shape, pad, dil)
    assert np.isnan(ref).any() and not np.isnan(ref).all()
    _close(dw, ref, np.float32)
    w[3, 1, 0, 2] = np.inf
    dout[0, 3, 0, 0] = 0.0
    dx = kernels.conv2d_direct_input_grad_numba(dout, w, x.shape, pad, dil)
    _close(dx, kernels.conv2d_direct_input_grad_reference(dout, w, x.shape, pad, dil),
           np.float32)


def test_direct_conv_reference_matches_torch(torch, rng):
    x = rng.standard_normal((2, 2, 8, 7))
    w = rng.standard_normal((3, 2, 3, 2))
    b = rng.standard_normal(3)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, torch.tensor(b), padding=(2, 1), dilation=(1, 2))
    dout = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(dout))
    for ours, theirs in (
            (kernels.conv2d_direct_forward_reference(x, w, b, (2, 1), (1, 2)), ty.detach()),
            (kernels.conv2d_direct_forward_numba(x, w, b, (2, 1), (1, 2)), ty.detach()),
            (kernels.conv2d_direct_weight_grad_reference(x, dout, w.shape, (2, 1), (1, 2)),
             tw.grad),
            (kernels.conv2d_direct_input_grad_reference(dout, w, x.shape, (2, 1), (1, 2)),
             tx.grad)):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-12, atol=1e-12)


def test_direct_conv_errors():
    x = np.zeros((1, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match="same C"):
        kernels.conv2d_direct_forward_numba(x, np.zeros((2, 2, 3, 3), np.float32), None)
    with pytest.raises(ValueError, match="does not fit"):
        kernels.conv2d_direct_forward_numba(x, np.zeros((2, 1, 5, 5), np.float32), None)
    with pytest.raises(ValueError, match="bias"):
        kernels.conv2d_direct_forward_numba(x, np.zeros((2, 1, 3, 3), np.float32),
                                            np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="float32 only"):
        kernels.conv2d_direct_weight_grad_numba(x.astype(np.float64), np.zeros((1, 8, 3, 3)),
                                                (8, 1, 1, 1))
    with pytest.raises(ValueError, match="output channels"):
        kernels.conv2d_direct_weight_grad_numba(x, np.zeros((1, 2, 3, 3), np.float32),
                                                (2, 1, 1, 1))
    with pytest.raises(ValueError, match="dout"):
        kernels.conv2d_direct_input_grad_numba(np.zeros((1, 8, 2, 2), np.float32),
                                               np.zeros((8, 1, 1, 1), np.float32), x.shape)


@pytest.mark.parametrize("training", [True, False])
def test_conv2d_routes_agree(training, monkeypatch, rng):
    """Implicit GEMM, direct loop + im2col backward, and im2col throughout: one result."""
    minidl.manual_seed(3)
    layer = nn.Conv2d(1, 6, 5, padding=2)
    layer.train(training)
    x = rng.standard_normal((4, 1, 28, 28)).astype(np.float32)
    dout = rng.standard_normal((4, 6, 28, 28)).astype(np.float32)
    results = []
    for route in ("implicit", "direct", "im2col"):
        if route == "direct":
            _without_vector_route(monkeypatch)
        if route == "im2col":
            monkeypatch.setattr(conv_module, "DIRECT_MAX_IN_CHANNELS", 0)
        layer.zero_grad()
        y = layer(x)
        expected = ("implicit-gemm" if route == "implicit" and gemm.host_supported() else
                    "im2col" if route == "im2col" else "direct")
        assert layer._cache.route == expected
        dx = layer.backward(dout)
        results.append((y, dx, [p.grad.copy() for p in layer.parameters()]))
    (y0, dx0, g0), *others = results
    for y, dx, grads in others:
        np.testing.assert_allclose(y, y0, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dx, dx0, rtol=1e-5, atol=1e-5)
        for g, h in zip(grads, g0):
            np.testing.assert_allclose(g, h, rtol=1e-5, atol=1e-4)


# -- GEMM ------------------------------------------------------------------------------

GEMM_SHAPES = [(1, 1, 1), (3, 5, 7), (6, 16, 4), (8, 32, 32), (9, 33, 65), (13, 100, 70),
               (64, 9, 700), (40, 300, 97)]


def _operands(rng, m, k, n, layout):
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    if layout == "a transposed":
        a = np.ascontiguousarray(a.T).T
    elif layout == "b transposed":
        b = np.ascontiguousarray(b.T).T
    return a, b


# a @ b.T needs NT_ROWS rows in a and NT_COLS in b.T (numba_applies refuses smaller ones)
GEMM_CASES = [(shape, layout) for shape in GEMM_SHAPES
              for layout in ("plain", "a transposed", "b transposed")
              if layout != "b transposed" or (shape[0] >= NT_ROWS
                                               and shape[2] >= NT_COLS)]


@pytest.mark.parametrize("shape,layout", GEMM_CASES, ids=str)
def test_matmul_numba_equals_numpy(shape, layout, driver, rng):
    m, k, n = shape
    a, b = _operands(rng, m, k, n, layout)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    out = kernels.matmul_numba(a, b)
    assert out.dtype == np.float32 and out.shape == (m, n) and out.flags.c_contiguous
    scale = np.sqrt(k) * 1e-6
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=scale)
    target = np.full((m, n), np.nan, np.float32)
    assert kernels.matmul_numba(a, b, out=target) is target
    np.testing.assert_array_equal(target, out)


@pytest.mark.parametrize("n", [31, 33, 784, 1100])
def test_parallel_nn_product_splits_columns_for_any_thread_count(n, rng):
    # the parallel driver cuts the columns into one block per thread (whole 32-column
    # tiles) or 512-column blocks, whichever are more; every split must cover them all
    from minidl.kernels import _gemm_numba
    a, b = _operands(rng, 20, 50, n, "plain")
    expected = a.astype(np.float64) @ b.astype(np.float64)
    for n_threads in (1, 2, 3, 5, 64):
        out = np.full((20, n), np.nan, np.float32)
        _gemm_numba._nn_parallel(a, b, out, n_threads)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4, err_msg=str(n_threads))


@pytest.mark.parametrize("m,n", [(6, 7), (13, 33), (20, 257), (64, 4)])
def test_parallel_nt_product_splits_rows_or_columns(m, n, rng):
    # a @ bt.T in parallel: by 6-row tiles, or by one block of whole 4-column tiles per
    # thread; blocks end off the tile grid and edge tiles are shifted back inside the
    # matrix, so every split must write each entry exactly once
    from minidl.kernels import _gemm_numba
    a = rng.standard_normal((m, 37)).astype(np.float32)
    bt = rng.standard_normal((n, 37)).astype(np.float32)
    expected = a.astype(np.float64) @ bt.T.astype(np.float64)
    for run in (_gemm_numba._nt_parallel, _gemm_numba._nt_parallel_columns):
        for n_threads in (1, 2, 3, 5, 64):
            out = np.full((m, n), np.nan, np.float32)
            run(a, bt, out, n_threads)
            np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4,
                                       err_msg=f"{run.__name__} {n_threads}")


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (8, 16, 32), (19, 37, 148), (64, 156, 512),
                                   (9, 47, 33), (12, 16, 64), (13, 5, 64), (20, 16, 96),
                                   (28, 9, 64), (30, 37, 148), (100, 156, 512)])
def test_packed_weight_product_gives_the_column_routes_bits(m, k, n, rng):
    # the recurrent loops' product: rows packed by whole vectors (_pack_rows, here from a
    # view whose rows are spaced wider than they are long, and in two parts side by side
    # as [h | x]) must equal _pack_a's packing, and the panel-major product on the packed
    # weight must give _nn_columns' bits (the same tiles, the same k order); rows and
    # columns off the tile grid end in edge tiles
    from minidl.kernels import _gemm_numba as g
    wide = rng.standard_normal((m, k + 7)).astype(np.float32)
    a = wide[:, 3:3 + k]
    b = rng.standard_normal((k, n)).astype(np.float32)
    expected = g._pack_a(np.ascontiguousarray(a))
    packed = np.full_like(expected, np.nan)
    g._pack_rows(a, packed, k, 0)
    split = k // 2
    joint = np.full_like(expected, np.nan)
    g._pack_rows(a[:, :split], joint, k, 0)
    g._pack_rows(a[:, split:], joint, k, split)
    index = np.arange(expected.size)           # layout [block][k][row in block]
    rows = index // (k * g.NN_ROWS) * g.NN_ROWS + index % g.NN_ROWS
    for got in (packed, joint):       # padding rows (past m) are left as they were
        np.testing.assert_array_equal(got[rows < m], expected[rows < m])
    out = np.full((m, n), np.nan, np.float32)
    g._nn_panels(packed, m, k, g._pack_b(b), out)
    reference = np.empty((m, n), np.float32)
    g._nn_columns(expected, m, k, b, reference, 0, n)
    np.testing.assert_array_equal(out, reference)
    np.testing.assert_allclose(out, a.astype(np.float64) @ b.astype(np.float64), rtol=1e-5,
                               atol=np.sqrt(k) * 1e-5)


@pytest.mark.parametrize("k,m,n", [(1025, 1, 1), (1100, 37, 45), (1792, 512, 28),
                                   (2000, 16, 64), (1300, 9, 33)])
def test_long_transposed_product_takes_the_blocked_driver(k, m, n, rng, driver):
    # a^T b with the contraction over more rows than gemm.NN_MAX_K (a weight gradient
    # over every step and image): the "tn" layout, K cut into TN_KC blocks whose partial
    # products add up in c; rows and columns off the tile grid, one or more threads
    from minidl.kernels import _gemm_numba, gemm
    a = rng.standard_normal((k, m)).astype(np.float32).T         # a transposed view
    b = rng.standard_normal((k, n)).astype(np.float32)
    assert gemm._layout(a, b) == "tn"
    expected = a.astype(np.float64) @ b.astype(np.float64)
    out = kernels.matmul_numba(a, b)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=np.sqrt(k) * 1e-5)
    for n_threads in (1, 2, 3, 64):
        got = np.full((m, n), np.nan, np.float32)
        _gemm_numba._tn_parallel(a.T, b, got, n_threads)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=np.sqrt(k) * 1e-5,
                                   err_msg=str(n_threads))


@pytest.mark.parametrize("k,m,n1,n2", [(1792, 512, 128, 28), (1100, 37, 37, 5),
                                        (1030, 9, 9, 40)])
def test_pair_product_splits_one_blocked_product(k, m, n1, n2, rng, driver):
    # matmul_pair: a^T [b1 | b2] as one tn product (a panel may hold columns of both
    # parts), split back into a @ b1 and a @ b2, against float64 and the two-product
    # reference; the operation takes the Numba route only where both products would
    from minidl.kernels import gemm
    a = rng.standard_normal((k, m)).astype(np.float32).T
    b1 = rng.standard_normal((k, n1)).astype(np.float32)
    b2 = rng.standard_normal((k, n2)).astype(np.float32)
    assert gemm.pair_applies(a, b1, b2)
    assert kernels.matmul_pair.pick(a, b1, b2) is not None
    got = kernels.matmul_pair_numba(a, b1, b2)
    for part, b in zip(got, (b1, b2)):
        assert part.flags.c_contiguous and part.shape == (m, b.shape[1])
        np.testing.assert_allclose(part, a.astype(np.float64) @ b.astype(np.float64),
                                   rtol=1e-5, atol=np.sqrt(k) * 1e-5)
    assert not gemm.pair_applies(np.ascontiguousarray(a), b1, b2)      # not transposed
    assert not gemm.pair_applies(a[:, :1000], b1[:1000], b2[:1000])    # short contraction


def test_matmul_numba_propagates_nan_and_inf(rng):
    a, b = _operands(rng, 16, 40, 70, "plain")
    a[3, 5] = np.nan
    b[7, 2] = np.inf
    expected = a @ b
    for bb in (b, np.ascontiguousarray(b.T).T):
        out = kernels.matmul_numba(a, bb)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
        np.testing.assert_array_equal(np.isinf(out), np.isinf(expected))


def test_matmul_dispatch_rules(rng, monkeypatch):
    a, b = _operands(rng, 64, 100, 80, "plain")
    monkeypatch.setattr(minidl.threads, "_num_threads", 2)
    assert gemm.numba_applies(a, b) == gemm.host_supported()
    # one thread: the AVX2 route leaves products to OpenBLAS (faster there on one core)
    monkeypatch.setattr(minidl.threads, "_num_threads", 1)
    assert gemm.numba_applies(a, b) == (gemm.isa() == "avx512")
    monkeypatch.setattr(minidl.threads, "_num_threads", 2)
    # contraction lengths where OpenBLAS was faster stay with it
    lanes = gemm.tile_geometry()[0]
    x = rng.standard_normal((64, 2 * gemm.NT_MIN_K)).astype(np.float32)
    w = rng.standard_normal((256, 2 * gemm.NT_MIN_K)).astype(np.float32)
    assert gemm.numba_applies(x, w.T) == gemm.host_supported()                  # a @ b.T
    assert not gemm.numba_applies(x[:, :28].copy(), w[:, :28].copy().T)        # K too short
    assert not gemm.numba_applies(x[:, :gemm.NT_MIN_K + lanes // 2].copy(),
                                  w[:, :gemm.NT_MIN_K + lanes // 2].copy().T)  # partial vector
    long_k = rng.standard_normal((gemm.NN_MAX_K + 1, 40)).astype(np.float32)
    assert not gemm.numba_applies(np.ones((16, gemm.NN_MAX_K + 1), np.float32), long_k)
    assert not gemm.numba_applies(a.astype(np.float64), b.astype(np.float64))
    assert not gemm.numba_applies(a[:2, :3], b[:3, :4])                      # too small
    assert not gemm.numba_applies(a, b[:, ::2])                              # strided b
    with kernels.reference_kernels():
        assert kernels.matmul.pick(a, b) is None
        np.testing.assert_array_equal(kernels.matmul(a, b), a @ b)           # NumPy itself
    np.testing.assert_allclose(kernels.matmul(a, b), a @ b, rtol=1e-5, atol=1e-4)
    a64 = a.astype(np.float64)
    np.testing.assert_array_equal(kernels.matmul(a64, b.astype(np.float64)),
                                  a64 @ b.astype(np.float64))


def test_matmul_numba_errors():
    with pytest.raises(ValueError, match="float32"):
        kernels.matmul_numba(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="out"):
        kernels.matmul_numba(np.ones((2, 3), np.float32), np.ones((3, 2), np.float32),
                             out=np.ones((3, 3), np.float32))
    with pytest.raises(ValueError, match="rows"):
        kernels.matmul_numba(np.ones((2, 3), np.float32), np.ones((2, 3), np.float32).T)


@pytest.mark.parametrize("fast", [True, False])
def test_layers_agree_with_and_without_the_numba_gemm(fast, rng):
    """A small CNN's forward, input and parameter gradients (float32) on the references and
    on the routes the registry picks."""
    minidl.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(8 * 7 * 7, 20), nn.ReLU(), nn.Linear(20, 10))
    x = rng.standard_normal((16, 2, 14, 14)).astype(np.float32)
    dout = rng.standard_normal((16, 10)).astype(np.float32)
    with kernels.reference_kernels():
        y_ref = model(x)
        dx_ref = model.backward(dout)
    grads_ref = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    with kernels.reference_kernels(not fast):
        y = model(x)
        dx = model.backward(dout)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-5)
    for g, p in zip(grads_ref, model.parameters()):
        np.testing.assert_allclose(p.grad, g, rtol=1e-4, atol=1e-4)


# -- im2col copy paths -------------------------------------------------------------------

@pytest.mark.parametrize("geometry", [
    ((3, 3), 1, (1, 1), 1),     # "same" width, rows >= 16 wide: one shifted copy per plane
    ((5, 5), 1, (2, 2), 1),
    ((3, 5), 1, (0, 2), (1, 1)),
    ((3, 3), 1, (2, 2), (2, 2)),
    ((3, 3), (2, 1), (1, 1), 1),  # vertical stride, contiguous rows
    ((2, 2), 1, (0, 0), 1),     # narrower output: per-row copies
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_im2col_copy_paths_equal_reference(geometry, dtype, driver, rng):
    x = _specials(rng.standard_normal((2, 2, 9, 18)).astype(dtype), rng)
    ref = kernels.im2col_reference(x, *geometry)
    np.testing.assert_array_equal(kernels.im2col_numba(x, *geometry), ref)
    cols = rng.standard_normal(ref.shape).astype(dtype)
    np.testing.assert_array_equal(kernels.col2im_numba(cols, x.shape, *geometry),
                                  kernels.col2im_reference(cols, x.shape, *geometry))


# -- needs_input_grad ---------------------------------------------------------------------

def _mlp():
    minidl.manual_seed(1)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, 3)).double()


def _cnn():
    minidl.manual_seed(2)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Flatten(), nn.Linear(18, 3)).double()


@pytest.mark.parametrize("build,shape", [(_mlp, (5, 3, 4)), (_cnn, (5, 1, 4, 6))],
                         ids=["mlp", "cnn"])
def test_skipping_the_input_gradient_keeps_parameter_gradients(build, shape, rng):
    x = rng.standard_normal(shape)
    dout = rng.standard_normal((5, 3))
    full, skip = build(), build()
    full(x)
    dx = full.backward(dout)
    assert dx.shape == x.shape
    skip.needs_input_grad = False
    first = skip[1] if isinstance(skip[0], nn.Flatten) else skip[0]
    assert first.needs_input_grad is False                 # handed to the first layer
    assert all(m.needs_input_grad for m in skip if m is not first and m is not skip)
    skip(x)
    assert skip.backward(dout) is None
    for (name, p), q in zip(full.named_parameters(), skip.parameters()):
        np.testing.assert_array_equal(p.grad, q.grad, err_msg=name)
    skip.needs_input_grad = True                            # and back
    assert first.needs_input_grad is True
    skip.zero_grad()
    skip(x)
    np.testing.assert_array_equal(skip.backward(dout), dx)


def test_layers_skip_the_input_gradient(rng):
    for layer, x, dout in (
            (nn.Linear(4, 3).double(), rng.standard_normal((2, 4)), rng.standard_normal((2, 3))),
            (nn.Conv2d(2, 3, 3).double(), rng.standard_normal((2, 2, 5, 5)),
             rng.standard_normal((2, 3, 3, 3)))):
        layer(x)
        dx = layer.backward(dout)
        grads = [p.grad.copy() for p in layer.parameters()]
        layer.zero_grad()
        layer.needs_input_grad = False
        layer(x)
        assert layer.backward(dout) is None
        for g, p in zip(grads, layer.parameters()):
            np.testing.assert_array_equal(p.grad, g)
        assert dx is not None
    with pytest.raises(TypeError, match="needs_input_grad"):
        nn.Linear(2, 2).needs_input_grad = 0


def test_sequential_stops_at_the_first_layer_with_parameters(rng):
    calls = []

    class Spy(nn.Module):
        def forward(self, x):
            return x

        def backward(self, dout):
            calls.append("spy")
            return dout

    model = nn.Sequential(Spy(), nn.Linear(3, 2).double())
    model.needs_input_grad = False
    model(rng.standard_normal((4, 3)))
    assert model.backward(rng.standard_normal((4, 2))) is None
    assert calls == []                                   # nothing before the Linear ran
    # appending to a Sequential that skips hands the setting to its first layer with
    # parameters
    empty = nn.Sequential()
    empty.needs_input_grad = False
    lin = nn.Linear(3, 2)
    empty.append(lin)
    assert lin.needs_input_grad is False


def test_fit_skips_the_input_gradient_and_restores_the_setting(monkeypatch, rng):
    from minidl.data import ArrayDataset
    from minidl.train import fit
    model = _mlp()
    seen = []
    original = nn.Linear.backward

    def recording_backward(self, dout):
        result = original(self, dout)
        seen.append((self is model[1], result is None))
        return result

    monkeypatch.setattr(nn.Linear, "backward", recording_backward)
    data = ArrayDataset(rng.standard_normal((20, 12)), rng.integers(0, 3, 20))
    fit(model, nn.CrossEntropyLoss(), minidl.optim.SGD(model.parameters(), lr=0.1), data,
        data, epochs=1, batch_size=10, progress=False)
    assert seen and all(skipped == is_first for is_first, skipped in seen)
    assert model.needs_input_grad is True and model[1].needs_input_grad is True


# -- Parameter.accumulate_grad(owned=True) ----------------------------------------------------

def test_accumulate_grad_owned_takes_the_array_then_adds():
    p = nn.Parameter(np.zeros(3, np.float32))
    g = np.ones(3, np.float32)
    p.accumulate_grad(g, owned=True)
    assert p.grad is g
    p.accumulate_grad(np.ones(3, np.float32), owned=True)
    np.testing.assert_array_equal(p.grad, [2, 2, 2])
    q = nn.Parameter(np.zeros(3, np.float32))
    q.accumulate_grad(np.ones(3, np.float64), owned=True)       # other dtype: converted copy
    assert q.grad.dtype == np.float32


# -- malloc tuning -------------------------------------------------------------------------

def _run(code, **env):
    ours = ("MINIDL_MALLOC_TUNING", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    full = {k: v for k, v in os.environ.items() if k not in ours}
    full.update(env)
    out = subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True,
                         timeout=120, cwd=str(ROOT))
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_malloc_tuning_is_made_by_performance_apply_not_by_layers_and_can_be_turned_off():
    code = ("import numpy as np, minidl\n"
            "from minidl import memory\n"
            "minidl.nn.Linear(3, 2)(np.ones((1, 3), np.float32))\n"
            "minidl.nn.Conv2d(1, 2, 3)(np.ones((1, 1, 5, 5), np.float32))\n"
            "assert not memory.done, 'a layer changed the process'\n"
            "settings = minidl.performance.apply()\n"
            "assert minidl.performance.apply() == settings       # once\n"
            "print(memory.done, sorted(memory.applied.items()))\n")
    on = _run(code)
    if "[]" in on:          # not glibc (musl): nothing to apply
        pytest.skip("not a glibc system")
    assert on == ("True [('M_MMAP_THRESHOLD', 33554432), ('M_TRIM_THRESHOLD', 1073741824)]")
    assert _run(code, MINIDL_MALLOC_TUNING="0") == "True []"
    assert _run(code, MALLOC_MMAP_THRESHOLD_="65536") == \
        "True [('M_TRIM_THRESHOLD', 1073741824)]"


def test_fit_and_evaluate_apply_the_process_settings():
    code = ("import numpy as np, minidl\n"
            "from minidl import memory, nn, optim\n"
            "from minidl.data import ArrayDataset\n"
            "x = np.ones((8, 3), np.float32); y = np.zeros(8, np.int64)\n"
            "model = nn.Linear(3, 2)\n"
            "minidl.train.evaluate(model, ArrayDataset(x, y))\n"
            "print(memory.done, end=' ')\n"
            "memory.done = False\n"
            "minidl.train.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1),\n"
            "                 ArrayDataset(x, y), ArrayDataset(x, y), epochs=1, batch_size=4,\n"
            "                 progress=False)\n"
            "print(memory.done)\n")
    assert _run(code) == "True True"
