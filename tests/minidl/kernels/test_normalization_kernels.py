"""The fused Numba batch- and layer-normalization kernels agree with their NumPy references
(serial and parallel drivers, float32 and float64, batch and given statistics)."""
from __future__ import annotations

import numpy as np
import pytest

from minidl import kernels
from minidl.kernels import _parallel

# The twins sum in float64 in one order, the references pairwise in the array's dtype:
# agreement to the dtype's rounding, relative to the largest value of the array.
RTOL = {np.float64: 1e-12, np.float32: 2e-5}



# these tests are about the fast routes: run them also under MINIDL_KERNELS=reference
pytestmark = pytest.mark.usefixtures("fast_kernels")

@pytest.fixture(params=["serial", "parallel"])
def driver(request, monkeypatch):
    monkeypatch.setattr(_parallel, "force", request.param)
    return request.param


def assert_agree(ours, ref, dtype, what):
    assert ours.dtype == ref.dtype == dtype, what
    atol = RTOL[dtype] * max(float(np.abs(ref).max()), 1.0) if ref.size else 0.0
    np.testing.assert_allclose(ours, ref, rtol=RTOL[dtype], atol=atol, err_msg=what)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(4, 3, 10), (2, 5, 1), (1, 2, 7), (16, 8, 49)])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("given_stats", [False, True])
def test_batch_norm_numba_agrees_with_reference(driver, dtype, shape, affine, given_stats):
    rng = np.random.default_rng(7)
    c = shape[1]
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    weight = rng.standard_normal(c).astype(dtype) if affine else None
    bias = rng.standard_normal(c).astype(dtype) if affine else None
    mean = rng.standard_normal(c).astype(dtype) if given_stats else None
    var = rng.uniform(0.5, 2, c).astype(dtype) if given_stats else None
    x_before = x.copy()
    ours = kernels.batch_norm_forward_numba(x, weight, bias, 1e-5, mean, var)
    ref = kernels.batch_norm_forward_reference(x, weight, bias, 1e-5, mean, var)
    for name, a, b in zip(("y", "x_hat", "invstd", "mean", "var"), ours, ref):
        assert_agree(a, b, dtype, name)
    dout = rng.standard_normal(shape).astype(dtype)
    dout_before = dout.copy()
    _, x_hat, invstd, _, _ = ref
    for need_dx in (True, False):
        got = kernels.batch_norm_backward_numba(dout, x_hat, invstd, weight, not given_stats,
                                                need_dx)
        want = kernels.batch_norm_backward_reference(dout, x_hat, invstd, weight,
                                                     not given_stats, need_dx)
        assert (got[0] is None) == (not need_dx)
        for name, a, b in zip(("dx", "dweight", "dbias"), got, want):
            if b is not None:
                assert_agree(a, b, dtype, name)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(dout, dout_before)


def test_dispatchers_use_the_twin_for_numpy_and_nan_stays_in_its_channel():
    x = np.ones((3, 2, 4))
    x[1, 0, 2] = np.nan
    y, x_hat, invstd, mean, var = kernels.batch_norm_forward(x, None, None, 1e-5)
    assert np.isnan(y[:, 0]).all() and np.isnan(mean[0])
    np.testing.assert_array_equal(y[:, 1], 0.0)               # a constant channel: x_hat = 0
    dx, dw, db = kernels.batch_norm_backward(np.ones_like(x), x_hat, invstd, None, True)
    assert np.isnan(dx[:, 0]).all() and np.isfinite(dx[:, 1]).all()


def test_numba_twin_checks_its_input():
    with pytest.raises(ValueError, match="batch_norm_forward: expected x with 3 dimensions"):
        kernels.batch_norm_forward_numba(np.zeros((2, 3)), None, None, 1e-5)
    with pytest.raises(ValueError, match="batch_norm_forward: expected x to be a float32 or "
                                         "float64 NumPy array"):
        kernels.batch_norm_forward_numba(np.zeros((2, 3, 1), np.int64), None, None, 1e-5)


def test_batch_norm_operations_are_in_the_registry_and_follow_the_switch(monkeypatch):
    from minidl import nn
    from minidl.kernels import _batchnorm_numba, registry

    ops = registry.operations()
    x = np.random.default_rng(1).standard_normal((4, 3, 5))
    assert ops["batch_norm_forward"].pick(x, None, None, 1e-5) is not None      # Numba
    assert ops["batch_norm_forward"].pick(x[:0], None, None, 1e-5) is None       # empty
    assert ops["batch_norm_forward"].pick(x.tolist(), None, None, 1e-5) is None  # not NumPy

    class FastRouteCalled(AssertionError):
        pass

    def refuse(*args, **kwargs):
        raise FastRouteCalled

    monkeypatch.setattr(_batchnorm_numba, "batch_norm_forward_numba", refuse)
    monkeypatch.setattr(_batchnorm_numba, "batch_norm_backward_numba", refuse)
    bn = nn.BatchNorm1d(3).double()
    with pytest.raises(FastRouteCalled):                 # the replacement is real
        bn(x)
    with registry.reference_kernels():
        y = bn(x)
        bn.backward(np.ones_like(y))


# -- layer normalization ------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(4, 10), (1, 7), (5, 1), (128, 49)])
@pytest.mark.parametrize("affine", ["both", "weight", "bias", "none"])
def test_layer_norm_numba_agrees_with_reference(driver, dtype, shape, affine):
    rng = np.random.default_rng(11)
    k = shape[1]
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    weight = rng.standard_normal(k).astype(dtype) if affine in ("both", "weight") else None
    bias = rng.standard_normal(k).astype(dtype) if affine in ("both", "bias") else None
    x_before = x.copy()
    ours = kernels.layer_norm_forward_numba(x, weight, bias, 1e-5)
    ref = kernels.layer_norm_forward_reference(x, weight, bias, 1e-5)
    for name, a, b in zip(("y", "x_hat", "invstd"), ours, ref):
        assert a.shape == b.shape, name
        assert_agree(a, b, dtype, name)
    dout = rng.standard_normal(shape).astype(dtype)
    dout_before = dout.copy()
    _, x_hat, invstd = ref
    for need_dx in (True, False):
        got = kernels.layer_norm_backward_numba(dout, x_hat, invstd, weight, need_dx)
        want = kernels.layer_norm_backward_reference(dout, x_hat, invstd, weight, need_dx)
        assert (got[0] is None) == (not need_dx)
        for name, a, b in zip(("dx", "dweight", "dbias"), got, want):
            if b is not None:
                assert_agree(a, b, dtype, name)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(dout, dout_before)


def test_layer_norm_nan_stays_in_its_row():
    x = np.ones((3, 4))
    x[1, 2] = np.nan
    y, x_hat, invstd = kernels.layer_norm_forward(x, None, None, 1e-5)
    assert np.isnan(y[1]).all() and not np.isnan(y[[0, 2]]).any()
    np.testing.assert_array_equal(y[[0, 2]], 0.0)              # a constant row: x_hat = 0
    dx, _, _ = kernels.layer_norm_backward(np.ones_like(x), x_hat, invstd, None)
    assert np.isnan(dx[1]).all() and np.isfinite(dx[[0, 2]]).all()


def test_layer_norm_numba_twin_checks_its_input():
    with pytest.raises(ValueError, match="layer_norm_forward: expected x with 2 dimensions"):
        kernels.layer_norm_forward_numba(np.zeros((2, 3, 1)), None, None, 1e-5)
    with pytest.raises(ValueError, match="layer_norm_backward: expected dout to be a float32"):
        kernels.layer_norm_backward_numba(np.zeros((2, 3), np.int64), np.zeros((2, 3)),
                                          np.ones((2, 1)), None)


def test_layer_norm_operations_are_in_the_registry_and_follow_the_switch(monkeypatch):
    from minidl import nn
    from minidl.kernels import _layernorm_numba, registry

    ops = registry.operations()
    x = np.random.default_rng(1).standard_normal((4, 3, 5))
    x2 = x.reshape(-1, 5)
    assert ops["layer_norm_forward"].pick(x2, None, None, 1e-5) is not None      # Numba
    assert ops["layer_norm_forward"].pick(x2[:0], None, None, 1e-5) is None       # empty
    assert ops["layer_norm_forward"].pick(x2.tolist(), None, None, 1e-5) is None  # not NumPy

    class FastRouteCalled(AssertionError):
        pass

    def refuse(*args, **kwargs):
        raise FastRouteCalled

    monkeypatch.setattr(_layernorm_numba, "layer_norm_forward_numba", refuse)
    monkeypatch.setattr(_layernorm_numba, "layer_norm_backward_numba", refuse)
    ln = nn.LayerNorm(5).double()
    with pytest.raises(FastRouteCalled):                 # the replacement is real
        ln(x)
    with registry.reference_kernels():
        y = ln(x)
        assert ln.backward(np.ones_like(y)).shape == x.shape
