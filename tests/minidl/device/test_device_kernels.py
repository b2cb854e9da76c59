"""Every operation of the kernel registry has a route for device arrays (the array-module
reference): on the stand-in it runs, returns device arrays and computes what the reference
computes on the host; the route listing shows it."""
from __future__ import annotations

import copy

import numpy as np
import pytest

import fakecupy
from fakecupy.checks import assert_close
from fakecupy.fixture import cuda_device  # noqa: F401 - the fixture
from minidl import kernels
from minidl.kernels import registry
from minidl.kernels.conv import ConvCache

# Arguments their callers keep on the host even for device arrays: Adam's scalars (one
# small host array per step, read element by element as NumPy scalars).
HOST_ARGUMENTS = {"adam_update": {5}}


def _random_like(a, rng):
    """The example's array with random values (float64 for floats, for tight comparisons);
    integer arrays (indices, labels) keep their values, which are valid."""
    if a.dtype.kind == "f":
        return rng.standard_normal(a.shape)
    return a.copy()


def _float64(args, rng):
    out = []
    for a in args:
        if isinstance(a, np.ndarray):
            out.append(_random_like(a, rng))
        elif isinstance(a, dict):       # the recurrent loop's cache
            out.append(dict(zip(a, _float64(a.values(), rng))))
        elif isinstance(a, ConvCache):
            c = copy.copy(a)
            c.x = rng.standard_normal(a.x.shape)
            c.cols = None
            out.append(c)
        else:
            out.append(a)
    return out


def _to_device(args, name, cp):
    out = []
    for i, a in enumerate(args):
        if isinstance(a, np.ndarray) and i not in HOST_ARGUMENTS.get(name, ()):
            out.append(cp.asarray(a))
        elif isinstance(a, dict):
            out.append(dict(zip(a, _to_device(a.values(), None, cp))))
        elif isinstance(a, ConvCache):
            c = copy.copy(a)
            c.x = cp.asarray(a.x)
            out.append(c)
        else:
            out.append(a)
    return out


def _results(value):
    return list(value) if isinstance(value, tuple) else [value]


@pytest.mark.parametrize("name", list(registry.operations()))
def test_every_operation_runs_on_device_arrays(cuda_device, name):
    op = registry.operations()[name]
    assert op.example is not None, f"{name}: no example call to run"
    args, kwargs = op.example()
    rng = np.random.default_rng(0)
    host_args = _float64(args, rng)
    if name == "adam_update":        # coefficients in the parameters' dtype (float64 here)
        host_args[5] = host_args[5].astype(np.float64)
    device_args = _to_device(host_args, name, cuda_device)
    assert op.pick(*device_args, **kwargs) is None       # the array-module reference
    # in-place operations (Adam) change their arguments: each side gets its own copies
    expected = op.reference(*copy.deepcopy(host_args), **kwargs)
    with fakecupy.counting() as transfers:
        got = op(*device_args, **kwargs)
    for i, (d, c) in enumerate(zip(_results(got), _results(expected))):
        if isinstance(c, kernels.ConvCache) or c is None:
            continue
        assert_close(d, c, f"{name}: result {i}")
    if name == "adam_update":       # in place: the parameter and the moments
        for i in (0, 2, 3):
            ref = copy.deepcopy(host_args)
            op.reference(*ref, **kwargs)
            assert_close(device_args[i], ref[i], f"{name}: argument {i} after the update")
    # the loss is a Python float (its one copy to the host); nothing else leaves the device
    copies = [e for e in transfers.to_host()]
    assert copies == ([("to_host", "float()", copies[0][2])] if name == "cross_entropy" else [])
    assert transfers.to_device() == []


def test_listing_shows_the_device_route(cuda_device):
    rows = registry.listing()
    assert {r["operation"] for r in rows} == set(registry.operations())
    assert all(r["device"] == "reference" for r in rows)
    assert all("(cpu)" in r["fast"] for r in rows if r["fast"] != "-")
    text = registry.format_listing(rows)
    assert "device" in text.splitlines()[2] and "array-module reference" in text


def test_a_device_route_is_taken_for_device_arrays_only(cuda_device):
    """A route declared for device arrays is picked for them, and never for host arrays
    (nor a CPU route for device arrays)."""
    seen = []
    op = registry.Operation(
        "probe", lambda a: ("reference", a),
        [registry.Route("cpu-fast", ".activation", "relu_forward_reference",
                        lambda a: seen.append("cpu") or True),
         registry.Route("device-fast", ".activation", "relu_forward_reference",
                        lambda a: seen.append("cuda") or True, device="cuda")])
    assert op.pick(np.zeros(3)).name == "cpu-fast"
    assert op.pick(cuda_device.zeros(3)).name == "device-fast"
    assert seen == ["cpu", "cuda"]
    with pytest.raises(ValueError, match="expected device 'cpu' or 'cuda'"):
        registry.Route("x", ".activation", "relu_forward_reference", bool, device="tpu")


def test_numba_refuses_device_arrays(cuda_device):
    """The reason the Numba routes are host-only: Numba cannot type a device array."""
    import numba

    @numba.njit
    def total(a):
        return a.sum()

    assert total(np.ones(3)) == 3.0
    with pytest.raises(numba.core.errors.TypingError, match="non-precise type pyobject"):
        total(cuda_device.ones(3))
