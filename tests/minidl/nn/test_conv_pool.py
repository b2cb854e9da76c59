"""Conv2d, MaxPool2d, AvgPool2d: gradient checks, PyTorch parity, bad input.

Parity compares forward output, input gradient and parameter gradients with the
same weights: float64 to 1e-10 and float32 to 1e-5, relative to the largest
magnitude of the compared array.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import minidl
from minidl import nn

# (N, C_in, H, W, C_out, kernel_size, stride, padding, dilation, bias)
CONV_CASES = [
    (1, 1, 5, 5, 2, 3, 1, 0, 1, True),                     # batch 1, one input channel
    (2, 3, 7, 6, 4, (2, 3), 2, 1, 1, True),                 # non-square kernel, stride 2
    (3, 2, 9, 8, 3, (3, 2), (2, 1), (2, 1), (2, 1), False),  # dilation, no bias
    (2, 2, 6, 7, 3, 1, 1, 0, 1, True),                      # 1x1 kernel
    (1, 3, 8, 9, 2, 3, 3, (1, 2), 2, True),                 # stride 3, dilation 2, odd sizes
    (2, 1, 9, 9, 4, 3, 1, 1, 1, True),                      # the CNN's first layer, small
]

# (N, C, H, W, kernel_size, stride, padding, dilation, ceil_mode)
MAX_POOL_CASES = [
    (1, 1, 4, 4, 2, None, 0, 1, False),
    (2, 3, 7, 9, 3, 2, 1, 1, True),
    (2, 2, 8, 7, (3, 2), (2, 1), (1, 0), (2, 1), True),
    (1, 2, 5, 6, (2, 3), (1, 2), (1, 1), 1, False),
    (2, 1, 9, 8, 3, 3, 1, 2, True),
]

# (N, C, H, W, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)
AVG_POOL_CASES = [
    (1, 1, 4, 4, 2, None, 0, False, True, None),
    (2, 3, 7, 9, 3, 2, 1, True, True, None),
    (2, 3, 7, 9, 3, 2, 1, True, False, None),
    (2, 2, 8, 7, (3, 2), (2, 1), (1, 0), True, True, None),
    (1, 2, 5, 6, (2, 3), (1, 2), (1, 1), False, False, None),
    (2, 1, 5, 5, 2, 2, 1, True, True, 3),
]

GRADCHECK_TOL = dict(eps=1e-6, atol=1e-7, rtol=1e-6)


def assert_parity(actual, expected, dtype):
    """float64: 1e-10, float32: 1e-5, relative (per element, and to the array's scale)."""
    expected = np.asarray(expected)
    tol = 1e-10 if dtype == np.float64 else 1e-5
    assert actual.dtype == dtype and actual.shape == expected.shape
    finite = expected[np.isfinite(expected)]
    scale = float(np.abs(finite).max()) if finite.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale)


def _t(torch, a, requires_grad=False):
    return torch.tensor(a, requires_grad=requires_grad)


# -- Conv2d -----------------------------------------------------------------------------

def _conv_pair(torch, case, dtype):
    n, c_in, h, w, c_out, k, s, p, d, bias = case
    ours = nn.Conv2d(c_in, c_out, k, stride=s, padding=p, dilation=d, bias=bias).to(dtype)
    theirs = torch.nn.Conv2d(c_in, c_out, k, stride=s, padding=p, dilation=d, bias=bias)
    theirs = theirs.to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(ours.weight.data))
        if bias:
            theirs.bias.copy_(torch.from_numpy(ours.bias.data))
    return ours, theirs, (n, c_in, h, w)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_torch(case, dtype, torch, rng):
    ours, theirs, shape = _conv_pair(torch, case, dtype)
    x = rng.standard_normal(shape).astype(dtype)
    x_before = x.copy()
    y = ours(x)
    xt = _t(torch, x, requires_grad=True)
    yt = theirs(xt)
    assert_parity(y, yt.detach().numpy(), dtype)

    dout = rng.standard_normal(y.shape).astype(dtype)
    dout_before = dout.copy()
    dx = ours.backward(dout)
    yt.backward(_t(torch, dout))
    assert_parity(dx, xt.grad.numpy(), dtype)
    assert_parity(ours.weight.grad, theirs.weight.grad.numpy(), dtype)
    if ours.bias is not None:
        assert_parity(ours.bias.grad, theirs.bias.grad.numpy(), dtype)
    np.testing.assert_array_equal(x, x_before)          # nothing modified in place
    np.testing.assert_array_equal(dout, dout_before)


@pytest.mark.parametrize("case", CONV_CASES[:5])
def test_conv2d_gradcheck(case):
    n, c_in, h, w, c_out, k, s, p, d, bias = case
    conv = nn.Conv2d(c_in, c_out, k, stride=s, padding=p, dilation=d, bias=bias)
    x = np.random.default_rng(3).standard_normal((n, c_in, h, w))
    assert minidl.gradcheck(conv, x, **GRADCHECK_TOL)


def test_conv2d_gradients_accumulate_and_eval_mode_backward(rng):
    conv = nn.Conv2d(2, 3, 3, padding=1).double()
    x = rng.standard_normal((2, 2, 5, 5))
    dout = rng.standard_normal((2, 3, 5, 5))
    conv(x)
    dx_train = conv.backward(dout)
    w_grad = conv.weight.grad.copy()
    # backward reuses the im2col matrix's memory; a second backward must rebuild it
    np.testing.assert_array_equal(conv.backward(dout), dx_train)
    np.testing.assert_allclose(conv.weight.grad, 2 * w_grad, rtol=1e-14)
    conv.eval()                           # eval keeps no im2col matrix; backward rebuilds it
    conv(x)
    dx_eval = conv.backward(dout)
    np.testing.assert_array_equal(dx_eval, dx_train)
    np.testing.assert_allclose(conv.weight.grad, 3 * w_grad, rtol=1e-14)


def test_conv2d_eval_chunks_large_batches(monkeypatch, rng):
    from minidl.kernels import conv as conv_module
    layer = nn.Conv2d(3, 4, 3, padding=1).double()
    x = rng.standard_normal((7, 3, 6, 5))
    layer.eval()
    whole = layer(x)
    # one image's im2col matrix is 27 * 30 * 8 bytes: allow three images per chunk
    monkeypatch.setattr(conv_module, "EVAL_COLS_BYTES", 3 * 27 * 30 * 8)
    chunked = layer(x)
    # the chunks are products of other shapes, which a BLAS may block differently (OpenBLAS's
    # AVX-512 kernels do; its Haswell ones gave equal bits): equal to float64 rounding
    np.testing.assert_allclose(chunked, whole, rtol=1e-13, atol=1e-13 * np.abs(whole).max())
    assert layer._cache.cols is None


def test_conv2d_nan_propagates_like_torch(torch, rng):
    ours, theirs, shape = _conv_pair(torch, (2, 2, 6, 6, 3, 3, 1, 1, 1, True), np.float64)
    x = rng.standard_normal(shape)
    x[0, 1, 2, 3] = np.nan
    y = ours(x)
    xt = _t(torch, x, requires_grad=True)
    yt = theirs(xt)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(yt.detach().numpy()))
    assert np.isnan(y[0]).any() and not np.isnan(y[1]).any()
    dout = rng.standard_normal(y.shape)
    dx = ours.backward(dout)
    yt.backward(_t(torch, dout))
    np.testing.assert_array_equal(np.isnan(dx), np.isnan(xt.grad.numpy()))
    np.testing.assert_array_equal(np.isnan(ours.weight.grad), np.isnan(theirs.weight.grad.numpy()))


def test_conv2d_default_init_and_state(torch):
    conv = nn.Conv2d(16, 32, 3)
    bound = 1 / math.sqrt(16 * 9)
    assert conv.weight.data.shape == (32, 16, 3, 3) and conv.weight.data.dtype == np.float32
    assert conv.bias.data.shape == (32,) and conv.bias.data.dtype == np.float32
    w = conv.weight.data
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    # U(-b, b) has standard deviation b / sqrt(3); 4608 draws pin it to a few percent
    assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.05
    assert np.abs(conv.bias.data).max() <= bound
    assert list(conv.state_dict()) == ["weight", "bias"]
    assert list(nn.Conv2d(1, 2, 3, bias=False).state_dict()) == ["weight"]
    for args, kwargs in [((1, 32, 3), dict(padding=1)), ((3, 8, (2, 3)), dict(stride=2)),
                         ((2, 4, 3), dict(dilation=2, bias=False))]:
        assert repr(nn.Conv2d(*args, **kwargs)) == repr(torch.nn.Conv2d(*args, **kwargs))


def test_conv2d_bad_input():
    conv = nn.Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"Conv2d: expected input of shape \(N, 3, H, W\)"):
        conv(np.zeros((3, 5, 5), np.float32))                 # wrong rank
    with pytest.raises(ValueError, match=r"Conv2d.*\(1, 2, 5, 5\)"):
        conv(np.zeros((1, 2, 5, 5), np.float32))              # wrong channel count
    with pytest.raises(ValueError, match="Conv2d: kernel .* larger than the input"):
        conv(np.zeros((1, 3, 2, 5), np.float32))
    with pytest.raises(ValueError, match="Conv2d: kernel .* larger than the input"):
        nn.Conv2d(3, 4, 3, dilation=3)(np.zeros((1, 3, 6, 6), np.float32))
    nn.Conv2d(3, 4, 3, padding=1)(np.zeros((1, 3, 1, 1), np.float32))   # fits once padded
    with pytest.raises(ValueError, match="Conv2d: input dtype float64"):
        conv(np.zeros((1, 3, 5, 5)))
    with pytest.raises(ValueError, match="Conv2d"):
        conv(np.zeros((1, 3, 5, 5), np.int64))
    with pytest.raises(RuntimeError, match="Conv2d.backward"):
        nn.Conv2d(3, 4, 3).backward(np.zeros((1, 4, 3, 3), np.float32))
    conv(np.zeros((1, 3, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d.backward: expected dout of shape \(1, 4, 3, 3\)"):
        conv.backward(np.zeros((1, 4, 3, 4), np.float32))


@pytest.mark.parametrize("kwargs, error", [
    (dict(kernel_size=0), ValueError), (dict(kernel_size=(3,)), ValueError),
    (dict(kernel_size=3, stride=0), ValueError), (dict(kernel_size=3, padding=-1), ValueError),
    (dict(kernel_size=3, padding="same"), ValueError), (dict(kernel_size=3, dilation=0), ValueError),
    (dict(kernel_size=3, bias=1), TypeError), (dict(kernel_size=True), TypeError)])
def test_conv2d_bad_arguments(kwargs, error):
    with pytest.raises(error, match="Conv2d"):
        nn.Conv2d(2, 3, **kwargs)
    with pytest.raises(ValueError, match="Conv2d: expected in_channels"):
        nn.Conv2d(0, 3, 3)


# -- MaxPool2d ------------------------------------------------------------------------------

def _pool_parity(torch, ours, theirs, x, dtype, rng):
    x_before = x.copy()
    y = ours(x)
    xt = _t(torch, x, requires_grad=True)
    yt = theirs(xt)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(yt.detach().numpy()))
    assert_parity(y, yt.detach().numpy(), dtype)
    dout = rng.standard_normal(y.shape).astype(dtype)
    dout_before = dout.copy()
    dx = ours.backward(dout)
    yt.backward(_t(torch, dout))
    assert_parity(dx, xt.grad.numpy(), dtype)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(dout, dout_before)
    return y, dx


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", MAX_POOL_CASES)
def test_max_pool2d_matches_torch(case, dtype, torch, rng):
    n, c, h, w, k, s, p, d, ceil = case
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    _pool_parity(torch, nn.MaxPool2d(k, s, p, d, ceil_mode=ceil),
                 torch.nn.MaxPool2d(k, s, p, d, ceil_mode=ceil), x, dtype, rng)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_max_pool2d_ties_after_relu(dtype, torch, rng):
    # ReLU output: many exact zeros and whole all-zero windows; overlapping windows
    # (stride 1) send several gradients to the same first-zero position
    x = np.maximum(rng.standard_normal((2, 3, 8, 8)), 0).astype(dtype)
    x[:, :, :4, :4] = 0
    for k, s, p in [(2, 2, 0), (3, 1, 1), (3, 2, 1)]:
        _, dx = _pool_parity(torch, nn.MaxPool2d(k, s, p), torch.nn.MaxPool2d(k, s, p),
                             x, dtype, rng)
    assert (dx[:, :, :4, :4] != 0).sum() > 0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_max_pool2d_nan_like_torch(dtype, torch, rng):
    x = rng.standard_normal((2, 2, 7, 7)).astype(dtype)
    x[0, 0, 1, 1] = x[0, 0, 1, 2] = x[1, 1, 4, 4] = np.nan
    x[0, 1, 3, 3] = np.inf
    x[1, 0, :3, :3] = -np.inf
    for k, s, p, ceil in [(2, 2, 0, False), (3, 1, 1, False), (3, 2, 1, True)]:
        y, dx = _pool_parity(torch, nn.MaxPool2d(k, s, p, ceil_mode=ceil),
                             torch.nn.MaxPool2d(k, s, p, ceil_mode=ceil), x, dtype, rng)
        assert np.isnan(y).any()


def test_max_pool2d_return_indices_like_torch(torch, rng):
    x = rng.standard_normal((2, 2, 6, 5))
    y, idx = nn.MaxPool2d(3, 2, 1, return_indices=True, ceil_mode=True)(x)
    yt, idxt = torch.nn.MaxPool2d(3, 2, 1, return_indices=True, ceil_mode=True)(_t(torch, x))
    np.testing.assert_array_equal(y, yt.numpy())
    np.testing.assert_array_equal(idx, idxt.numpy())


@pytest.mark.parametrize("case", MAX_POOL_CASES)
def test_max_pool2d_gradcheck(case):
    n, c, h, w, k, s, p, d, ceil = case
    # distinct, well-separated values: no tie or near-tie for a finite difference to cross
    values = np.random.default_rng(5).permutation(n * c * h * w).astype(np.float64) * 0.01
    x = values.reshape(n, c, h, w)
    assert minidl.gradcheck(nn.MaxPool2d(k, s, p, d, ceil_mode=ceil), x, **GRADCHECK_TOL)


# -- AvgPool2d ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", AVG_POOL_CASES)
def test_avg_pool2d_matches_torch(case, dtype, torch, rng):
    n, c, h, w, k, s, p, ceil, include, override = case
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    args = (k, s, p, ceil, include, override)
    _pool_parity(torch, nn.AvgPool2d(*args), torch.nn.AvgPool2d(*args), x, dtype, rng)
    x[0, 0, 1, 1] = np.nan                                  # NaN spreads to its windows
    _pool_parity(torch, nn.AvgPool2d(*args), torch.nn.AvgPool2d(*args), x, dtype, rng)


@pytest.mark.parametrize("case", AVG_POOL_CASES)
def test_avg_pool2d_gradcheck(case):
    n, c, h, w, k, s, p, ceil, include, override = case
    x = np.random.default_rng(7).standard_normal((n, c, h, w))
    assert minidl.gradcheck(nn.AvgPool2d(k, s, p, ceil, include, override), x, **GRADCHECK_TOL)


# -- pooling: bad input ---------------------------------------------------------------------

@pytest.mark.parametrize("layer", [nn.MaxPool2d, nn.AvgPool2d])
def test_pool_bad_input(layer):
    name = layer.__name__
    with pytest.raises(ValueError, match=f"{name}: padding must be at most half the kernel"):
        layer(3, 1, 2)
    with pytest.raises(ValueError, match=f"{name}: padding must be at most half the kernel"):
        layer((4, 2), 1, (1, 2))
    with pytest.raises(ValueError, match=f"{name}: kernel_size, stride"):
        layer(2, 0)
    with pytest.raises(TypeError, match=name):
        layer(2, ceil_mode=1)
    pool = layer(3, 1, 1)
    with pytest.raises(ValueError, match=rf"{name}: expected input of shape \(N, C, H, W\)"):
        pool(np.zeros((2, 5, 5)))
    with pytest.raises(ValueError, match=f"{name}: kernel .* larger than the input"):
        layer(4)(np.zeros((1, 1, 3, 5)))
    with pytest.raises(ValueError, match=name):
        pool(np.zeros((1, 1, 5, 5), np.int32))
    with pytest.raises(RuntimeError, match=f"{name}.backward"):
        pool.backward(np.zeros((1, 1, 5, 5)))
    pool(np.zeros((1, 1, 5, 5)))
    with pytest.raises(ValueError, match=rf"{name}.backward: expected dout of shape \(1, 1, 5, 5\)"):
        pool.backward(np.zeros((1, 1, 4, 5)))
    with pytest.raises(ValueError, match=rf"{name}.backward: expected dout of dtype float64"):
        pool.backward(np.zeros((1, 1, 5, 5), np.float32))


def test_avg_pool_divisor_override_checked():
    with pytest.raises(ValueError, match="AvgPool2d: expected divisor_override"):
        nn.AvgPool2d(2, divisor_override=0)


def test_pool_outputs_keep_dtype_and_shape():
    x = np.ones((2, 3, 28, 28), np.float32)
    y = nn.MaxPool2d(2)(x)
    assert y.dtype == np.float32 and y.shape == (2, 3, 14, 14)
    y = nn.AvgPool2d(3, 2, 1, ceil_mode=True)(x)       # ceil((28 + 2 - 3) / 2) + 1
    assert y.dtype == np.float32 and y.shape == (2, 3, 15, 15)
    y = nn.MaxPool2d(2, 2, 1, ceil_mode=True)(x[:, :, :5, :5])   # 4th window would start
    assert y.shape == (2, 3, 3, 3)                                 # in the right padding
