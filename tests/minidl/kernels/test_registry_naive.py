"""Every registry route against the naive loop oracles (``minidl.kernels.naive``), in float64.

The oracles write every multiply-add out; each operation is run on its fast routes and
under ``reference_kernels()`` and compared with them on small shapes with padding,
strides, ties and overlapping windows.
"""
from __future__ import annotations

import numpy as np
import pytest

from minidl import kernels, nn, optim
from minidl.kernels import naive

TOL = dict(rtol=1e-12, atol=1e-12)


@pytest.fixture(params=["fast", "reference"])
def route(request):
    with kernels.reference_kernels(request.param == "reference"):
        yield request.param


def _rng():
    return np.random.default_rng(12)


@pytest.mark.parametrize("k, stride, pad, dil", [(3, 1, 1, 1), (3, 2, 0, 1), (2, 1, 1, 2),
                                                 (5, 3, 2, 1)])
def test_im2col_and_col2im_equal_the_loops(route, k, stride, pad, dil):
    x = _rng().standard_normal((2, 3, 7, 8))
    cols = kernels.im2col(x, k, stride, pad, dil)                       # (K, N*L)
    expected = naive.im2col_naive(x, k, stride, pad, dil)               # (N, K, L)
    np.testing.assert_array_equal(cols.reshape(cols.shape[0], 2, -1).transpose(1, 0, 2),
                                  expected)
    dcols = _rng().standard_normal(cols.shape)
    dx = kernels.col2im(dcols, x.shape, k, stride, pad, dil)
    nkl = np.ascontiguousarray(dcols.reshape(cols.shape[0], 2, -1).transpose(1, 0, 2))
    np.testing.assert_allclose(dx, naive.col2im_naive(nkl, x.shape, k, stride, pad, dil), **TOL)


@pytest.mark.parametrize("c_in, stride, pad", [(1, 1, 1), (3, 1, 0), (3, 2, 1), (8, 1, 2)])
@pytest.mark.parametrize("training", [True, False])
def test_conv2d_forward_and_backward_equal_the_loops(route, c_in, stride, pad, training):
    rng = _rng()
    x = rng.standard_normal((2, c_in, 7, 6))
    weight = rng.standard_normal((8, c_in, 3, 3))
    bias = rng.standard_normal(8)
    y, cache = kernels.conv2d_forward(x, weight, bias, (stride, stride), (pad, pad), (1, 1),
                                      keep_cols=training)
    np.testing.assert_allclose(y, naive.conv2d_forward_naive(x, weight, bias, stride, pad),
                               **TOL)
    dout = rng.standard_normal(y.shape)
    dw, db, dx = kernels.conv2d_backward(dout, weight, cache)
    dx_n, dw_n, db_n = naive.conv2d_backward_naive(x, weight, dout, stride, pad)
    for got, want in ((dx, dx_n), (dw, dw_n), (db, db_n)):
        np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("k, stride", [(2, 2), (3, 1), (3, 2)])
def test_pooling_equals_the_loops(route, k, stride):
    rng = _rng()
    x = rng.integers(-3, 3, (2, 3, 7, 7)).astype(np.float64)     # many ties
    x[0, 1, 2, 2] = np.nan
    out, idx = kernels.max_pool2d_forward(x, k, stride)
    out_n, idx_n = naive.max_pool2d_forward_naive(x, k, stride)
    np.testing.assert_array_equal(out, out_n)
    np.testing.assert_array_equal(idx, idx_n)
    dout = rng.standard_normal(out.shape)
    np.testing.assert_allclose(kernels.max_pool2d_backward(dout, idx, x.shape),
                               naive.max_pool2d_backward_naive(dout, idx_n, x.shape), **TOL)
    x = rng.standard_normal(x.shape)
    np.testing.assert_allclose(kernels.avg_pool2d_forward(x, k, stride),
                               naive.avg_pool2d_forward_naive(x, k, stride), **TOL)
    np.testing.assert_allclose(kernels.avg_pool2d_backward(dout, x.shape, k, stride),
                               naive.avg_pool2d_backward_naive(dout, x.shape, k, stride), **TOL)


def test_linear_layer_equals_the_loops(route):
    rng = _rng()
    layer = nn.Linear(5, 4).double()
    x = rng.standard_normal((3, 5))
    w, b = layer.weight.data, layer.bias.data
    np.testing.assert_allclose(layer(x), naive.linear_forward_naive(x, w, b), **TOL)
    dout = rng.standard_normal((3, 4))
    dx = layer.backward(dout)
    dx_n, dw_n, db_n = naive.linear_backward_naive(x, w, dout)
    np.testing.assert_allclose(dx, dx_n, **TOL)
    np.testing.assert_allclose(layer.weight.grad, dw_n, **TOL)
    np.testing.assert_allclose(layer.bias.grad, db_n, **TOL)


def test_adam_step_equals_the_loops(route):
    rng = _rng()
    params = [nn.Parameter(rng.standard_normal((4, 3))), nn.Parameter(rng.standard_normal(5))]
    copies = [p.data.copy() for p in params]
    ms = [np.zeros_like(c) for c in copies]
    vs = [np.zeros_like(c) for c in copies]
    opt = optim.Adam(params, lr=1e-2)
    for step in range(1, 4):
        grads = [rng.standard_normal(c.shape) for c in copies]
        for p, g in zip(params, grads):
            p.grad = g.copy()
        opt.step()
        naive.adam_update_naive(copies, grads, ms, vs, step, lr=1e-2)
    for p, c in zip(params, copies):
        np.testing.assert_allclose(p.data, c, **TOL)
