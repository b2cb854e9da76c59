"""Checks shared by the device tests: device arrays stay on the device, and the device path
computes what the CPU path computes."""
from __future__ import annotations

import numpy as np

from ._core import ndarray

# The device route must compute the CPU route's math: float64, tight.
RTOL = 1e-12
ATOL = 1e-12


def host(a):
    """A host copy of a device array (recorded as a transfer), NumPy arrays as they are."""
    return a.get() if isinstance(a, ndarray) else np.asarray(a)


def assert_close(device_value, cpu_value, what: str):
    """The device result equals the CPU result (float64, ``RTOL``/``ATOL``)."""
    if device_value is None or cpu_value is None:
        assert device_value is None and cpu_value is None, f"{what}: one side is None"
        return
    if isinstance(cpu_value, (tuple, list)):
        assert len(device_value) == len(cpu_value), what
        for i, (d, c) in enumerate(zip(device_value, cpu_value)):
            assert_close(d, c, f"{what}[{i}]")
        return
    if isinstance(cpu_value, dict):
        assert isinstance(device_value, dict) and device_value.keys() == cpu_value.keys(), what
        for key, c in cpu_value.items():
            assert_close(device_value[key], c, f"{what}[{key!r}]")
        return
    if isinstance(cpu_value, (str, bool)):
        assert device_value == cpu_value, what
        return
    if isinstance(cpu_value, (float, int)):
        assert isinstance(device_value, (float, int)), \
            f"{what}: expected a Python number, got {type(device_value).__name__}"
        np.testing.assert_allclose(device_value, cpu_value, rtol=RTOL, atol=ATOL, err_msg=what)
        return
    assert isinstance(device_value, ndarray), \
        f"{what}: expected a device array, got {type(device_value).__name__}"
    d = device_value.get()
    assert d.dtype == cpu_value.dtype and d.shape == cpu_value.shape, \
        f"{what}: {d.dtype}{d.shape} on the device, {cpu_value.dtype}{cpu_value.shape} on the CPU"
    np.testing.assert_allclose(d, cpu_value, rtol=RTOL, atol=ATOL, err_msg=what)


def assert_on_device(what: str, *arrays):
    """Every array given (None skipped) is a device array."""
    for i, a in enumerate(arrays):
        if a is not None:
            assert isinstance(a, ndarray), f"{what}[{i}]: a {type(a).__name__} left the device"


def assert_model_on_device(model, optimizer=None):
    """Parameters, gradients, buffers and optimizer state are device arrays."""
    for name, p in model.named_parameters():
        assert_on_device(f"parameter {name}", p.data, p.grad)
    for name, b in model.named_buffers():
        assert_on_device(f"buffer {name}", b)
    if optimizer is not None:
        for p, state in optimizer.state.items():
            for key, value in state.items():
                if hasattr(value, "dtype") and hasattr(value, "shape"):
                    assert_on_device(f"optimizer state {key!r}", value)
