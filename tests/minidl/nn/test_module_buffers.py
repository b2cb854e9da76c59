"""Module buffers (issue 14): registration, state_dict keys and order, dtype conversion,
load_state_dict checks, save/load and torch state_dict import."""
from __future__ import annotations

import copy

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.serialization import from_torch_state_dict, to_torch_state_dict


class Stats(nn.Module):
    """A layer with a parameter, two persistent buffers, one non-persistent, one None."""

    def __init__(self, n=3):
        super().__init__()
        self.weight = nn.Parameter(np.ones(n, np.float32))
        self.register_buffer("running_mean", np.zeros(n, np.float32))
        self.register_buffer("count", np.array(0, dtype=np.int64))
        self.register_buffer("scratch", np.zeros(n, np.float32), persistent=False)
        self.register_buffer("absent", None)

    def forward(self, x):
        return x

    def backward(self, dout):
        return dout


def model():
    return nn.Sequential(nn.Linear(2, 3), Stats(3), nn.Sequential(Stats(4)))


def test_buffers_are_listed_and_keyed_like_torch():
    m = model()
    assert [n for n, _ in m.named_buffers()] == [
        "1.running_mean", "1.count", "1.scratch", "2.0.running_mean", "2.0.count", "2.0.scratch"]
    assert len(list(m.buffers())) == 6
    # parameters of a module come before its persistent buffers, then its children
    assert list(m.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.running_mean", "1.count",
                                    "2.0.weight", "2.0.running_mean", "2.0.count"]
    assert [n for n, _ in m.named_parameters()] == ["0.weight", "0.bias", "1.weight", "2.0.weight"]
    sd = m.state_dict()
    assert sd["1.count"].dtype == np.int64 and sd["1.count"].shape == ()
    sd["1.running_mean"][...] = 5                        # a copy
    assert not np.any(m[1].running_mean == 5)


def test_state_dict_order_matches_torch(torch):
    class T(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(3))
            self.register_buffer("running_mean", torch.zeros(3))
            self.register_buffer("count", torch.tensor(0))
            self.register_buffer("scratch", torch.zeros(3), persistent=False)
            self.register_buffer("absent", None)

    t = torch.nn.Sequential(torch.nn.Linear(2, 3), T(), torch.nn.Sequential(T()))
    assert list(t.state_dict()) == list(model().state_dict())
    assert [n for n, _ in t.named_buffers()] == [n for n, _ in model().named_buffers()]


def test_assigning_to_a_buffer_replaces_it_and_delete_removes_it():
    s = Stats()
    new = np.full(3, 2.0, np.float32)
    s.running_mean = new
    assert s.running_mean is new and s._buffers["running_mean"] is new
    s.running_mean = None                                 # an absent buffer: not in state_dict
    assert "running_mean" not in s.state_dict()
    s.running_mean = [1.0, 2.0, 3.0]                      # lists become arrays
    assert isinstance(s.running_mean, np.ndarray)
    del s.count
    assert "count" not in s.state_dict() and not hasattr(s, "count")
    s.count = np.zeros(2)                                 # now a plain attribute again
    assert "count" not in s.state_dict()


def test_register_buffer_errors():
    s = Stats()
    with pytest.raises(ValueError, match="Stats.register_buffer: expected a non-empty name"):
        s.register_buffer("a.b", np.zeros(1))
    with pytest.raises(ValueError, match="attribute 'weight' already exists"):
        s.register_buffer("weight", np.zeros(1))
    with pytest.raises(ValueError, match="attribute 'train' already exists"):
        s.register_buffer("train", np.zeros(1))
    with pytest.raises(ValueError, match="buffer 'text' must be a real numeric array"):
        s.register_buffer("text", np.array(["a"]))
    with pytest.raises(TypeError, match="expected persistent to be a bool"):
        s.register_buffer("p", np.zeros(1), persistent=1)
    with pytest.raises(ValueError, match="got a Parameter"):
        s.register_buffer("p", nn.Parameter(np.zeros(1)))


def test_conversions_cast_float_buffers_and_keep_integer_ones():
    m = model()
    assert m.double() is m
    assert m[1].running_mean.dtype == np.float64 and m[1].scratch.dtype == np.float64
    assert m[1].count.dtype == np.int64 and m[2][0].count.dtype == np.int64
    assert m[1]._buffers["running_mean"] is m[1].running_mean
    m.float()
    assert m[1].running_mean.dtype == np.float32 and m[1].count.dtype == np.int64
    m.to("float64")
    assert m.state_dict()["2.0.running_mean"].dtype == np.float64
    m.to("cpu")
    assert isinstance(m[1].running_mean, np.ndarray)


def test_a_shared_buffer_stays_shared_through_conversion():
    a, b = Stats(), Stats()
    b.running_mean = a.running_mean
    m = nn.Sequential(a, b).double()
    assert a.running_mean is b.running_mean and a.running_mean.dtype == np.float64
    assert [n for n, _ in m.named_buffers()].count("1.running_mean") == 0   # listed once


def test_load_state_dict_loads_buffers_as_copies_in_their_dtypes():
    src, dst = model(), model()
    src[1].running_mean[...] = [1, 2, 3]
    src[1].count[...] = 7
    sd = src.state_dict()
    sd["1.count"] = np.float64(7.0)                       # cast back to int64
    sd["1.running_mean"] = sd["1.running_mean"].astype(np.float64)
    dst.load_state_dict(sd)
    assert dst[1].count.dtype == np.int64 and int(dst[1].count) == 7
    assert dst[1].running_mean.dtype == np.float32
    np.testing.assert_array_equal(dst[1].running_mean, [1, 2, 3])
    assert dst[1].running_mean is not sd["1.running_mean"]
    assert dst[1]._buffers["running_mean"] is dst[1].running_mean
    np.testing.assert_array_equal(dst[1].scratch, 0)     # non-persistent: untouched


def test_load_state_dict_checks_buffers_before_changing_anything():
    m = model()
    before = m.state_dict()
    state = {k: np.full_like(v, 3) for k, v in before.items()}
    state["2.0.running_mean"] = np.zeros(5)               # a later buffer of the wrong shape
    state["1.count"] = np.array("x")
    with pytest.raises(ValueError) as info:
        m.load_state_dict(state)
    msg = str(info.value)
    assert "'2.0.running_mean': expected shape (4,), got (5,)" in msg
    assert "'1.count': expected a real numeric dtype (float or int), got <U1" in msg
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(ValueError, match=r"missing keys \['1.count'\]"):
        m.load_state_dict({k: v for k, v in before.items() if k != "1.count"})
    m.load_state_dict({"1.count": np.array(4)}, strict=False)
    assert int(m[1].count) == 4


def test_save_load_round_trip_keeps_buffers(tmp_path):
    src, dst = model().double(), model().double()
    src[2][0].running_mean[...] = [0.5, 1.5, 2.5, 3.5]
    src[2][0].count[...] = 11
    minidl.save(src, tmp_path / "m.npz", note="x")
    with np.load(tmp_path / "m.npz") as f:
        assert f["2.0.count"].dtype == np.int64
    assert minidl.load(dst, tmp_path / "m.npz") == {"note": "x"}
    for (k, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert a.dtype == b.dtype, k
        np.testing.assert_array_equal(a, b)


def test_load_refuses_a_float_entry_for_an_integer_buffer(tmp_path):
    src = model()
    state = src.state_dict()
    state["1.count"] = np.array(3.0)
    np.savez(tmp_path / "bad.npz", **state)
    dst = model()
    before = dst.state_dict()
    with pytest.raises(ValueError, match="entry '1.count'.*dtype float64, expected an integer"):
        minidl.load(dst, tmp_path / "bad.npz")
    for k, v in dst.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_torch_state_dict_with_buffers_imports_and_exports(torch):
    class T(torch.nn.Module):
        def __init__(self, n):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(n))
            self.register_buffer("running_mean", torch.arange(float(n)))
            self.register_buffer("count", torch.tensor(5))

    t = torch.nn.Sequential(torch.nn.Linear(2, 3), T(3), torch.nn.Sequential(T(4)))
    t[2][0].running_mean.fill_(9.0)
    for state in (t.state_dict(), from_torch_state_dict(t.state_dict())):
        m = model()
        m.load_state_dict(state)
        np.testing.assert_array_equal(m[1].running_mean, [0, 1, 2])
        np.testing.assert_array_equal(m[2][0].running_mean, [9, 9, 9, 9])
        assert m[1].running_mean.dtype == np.float32
        assert int(m[2][0].count) == 5 and m[2][0].count.dtype == np.int64
    back = to_torch_state_dict(m)
    assert back["1.count"].shape == () and back["1.count"].dtype == torch.int64
    t.load_state_dict(back)                               # torch takes it as it is


def test_deepcopy_copies_buffers():
    a = Stats()
    b = copy.deepcopy(a)
    b.running_mean[...] = 4
    assert not np.any(a.running_mean == 4)
    assert b._buffers["running_mean"] is b.running_mean
