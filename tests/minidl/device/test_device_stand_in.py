"""The stand-in device itself: CuPy's rules (as strict as CuPy, no stricter), the record of
transfers, and a fixture that points ``minidl.backend`` at it for one test only."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import fakecupy as cp
from fakecupy.fixture import cuda_device  # noqa: F401 - the fixture
from minidl import backend


def test_no_implicit_conversion_to_the_host():
    a = cp.asarray(np.arange(6.0).reshape(2, 3))
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(a)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.array([a[0, 0], a[0, 1]])


def test_numpy_calls_dispatch_and_return_device_arrays():
    a = cp.asarray(np.arange(6.0).reshape(2, 3))
    for result in (np.exp(a), np.sum(a, axis=0), np.concatenate([a, a]), np.where(a > 1, a, 0),
                   np.einsum("ij->j", a), np.linalg.norm(a), a.sum(), a[1, 2], a * np.float32(2),
                   3 - a, np.maximum(a, 0, out=cp.empty((2, 3)))):
        assert isinstance(result, cp.ndarray), type(result)
    assert a.max().shape == () and a[0, 1].shape == ()          # 0-d arrays, not scalars
    with pytest.raises(TypeError, match="no implementation found for 'numpy.nanpercentile'"):
        np.nanpercentile(a, 50)                                  # CuPy has no nanpercentile


def test_host_arrays_are_never_operands():
    a = cp.asarray(np.ones(3))
    for bad in (lambda: a + np.ones(3), lambda: np.ones(3) * a, lambda: a * np.array(2.0),
                lambda: cp.maximum(a, np.zeros(3)), lambda: cp.stack([a, np.ones(3)]),
                lambda: cp.matmul(np.ones((2, 3)), a)):
        with pytest.raises(TypeError):
            bad()
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for fill"):
        a[...] = np.zeros(3)
    with pytest.raises(TypeError, match="Wrong arguments"):
        cp.add(a, 1, where=a > 0)


def test_what_cupy_allows_is_allowed_and_recorded():
    a = cp.asarray(np.arange(4.0))
    with cp.counting() as t:
        assert float(a[1]) == 1.0 and int(a[2]) == 2 and bool(a[3]) and a[0].item() == 0.0
        assert a.get().tolist() == [0.0, 1.0, 2.0, 3.0] and cp.asnumpy(a).shape == (4,)
        a[[0, 1]] = np.array([5.0, 6.0])                          # advanced index: uploaded
        a[...] = np.array(1.0)                                    # a 0-d host value: fine
        cp.copyto(a, np.array([2.0]))                             # one host value: fine
        assert len(a[a > 1]) == 4                                 # a mask reads a count back
    assert [e[1] for e in t.to_host()] == ["float()", "int()", "bool()", "item", "get",
                                           "get", "boolean-mask index (count read back)"]
    assert [e[1] for e in t.to_device()] == ["assigned value", "index array"]
    assert all(e[2].startswith("tests/minidl/device/test_device_stand_in.py:") for e in t.events)
    with pytest.raises(TypeError):
        list(range(10))[a[0]]                 # no __index__: not a Python index


def test_cuda_device_fixture_points_backend_at_the_stand_in(cuda_device):
    assert cuda_device is cp and backend.require_cuda() is cp
    assert sys.modules["cupy"] is cp
    x = backend.to_device(np.ones(2), "cuda")
    assert isinstance(x, cp.ndarray) and backend.xp(x) is cp and backend.device_of(x) == "cuda"
    assert backend.device_special("erf")(x).shape == (2,)


def test_nothing_is_left_pointed_at_it_after_the_fixture():
    assert "cupy" not in sys.modules or sys.modules["cupy"] is not cp
    assert "cupyx.scipy.special" not in sys.modules or \
        sys.modules["cupyx.scipy.special"] is not cp.special
    assert backend._cupy is not cp
