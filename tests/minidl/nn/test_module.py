"""The layer protocol: Parameter, Module registration/state/modes/conversion, Sequential."""
from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest

from minidl import nn


class NNet(nn.Module):
    """The lab's model, written with minidl (forward as in the lab, plus backward)."""

    def __init__(self, input_size, hidden_size, dropout_rate):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(input_size, hidden_size),
            nn.ReLU(),
            nn.Dropout(dropout_rate),
            nn.Linear(hidden_size, 10),
        )

    def forward(self, x):
        return self.layers(x)

    def backward(self, dout):
        return self.layers.backward(dout)


class Scale(nn.Module):
    """y = x * s with a learnable scalar-per-feature s; records the call order."""

    def __init__(self, n, log=None, tag=""):
        super().__init__()
        self.s = nn.Parameter(np.full(n, 2.0))
        self.log, self.tag = log, tag

    def forward(self, x):
        if self.log is not None:
            self.log.append(("f", self.tag))
        self._x = x
        return x * self.s.data

    def backward(self, dout):
        if self.log is not None:
            self.log.append(("b", self.tag))
        self.s.accumulate_grad((dout * self._x).sum(axis=0))
        return dout * self.s.data


# -- Parameter --------------------------------------------------------------------
def test_parameter_accumulate_grad_copies_then_adds():
    p = nn.Parameter(np.zeros(3, np.float32))
    g = np.array([1.0, 2.0, 3.0], np.float32)
    p.accumulate_grad(g)
    assert p.grad is not g and p.grad.dtype == np.float32
    g[0] = 100.0                          # the caller's array must not alias grad
    p.accumulate_grad(np.ones(3, np.float32))
    np.testing.assert_array_equal(p.grad, [2.0, 3.0, 4.0])


def test_parameter_accumulate_grad_rejects_wrong_shape():
    p = nn.Parameter(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"Parameter.*\(3, 2\).*\(2, 3\)"):
        p.accumulate_grad(np.zeros((3, 2)))


def test_parameter_from_list_becomes_array():
    p = nn.Parameter([[1.0, 2.0]])
    assert p.shape == (1, 2) and p.size == 2


# -- registration and traversal -----------------------------------------------------
def test_named_parameters_follow_torch_keys_for_the_lab_model():
    model = NNet(784, 32, 0.2)
    names = [n for n, _ in model.named_parameters()]
    assert names == ["layers.1.weight", "layers.1.bias", "layers.4.weight", "layers.4.bias"]
    shapes = {n: p.shape for n, p in model.named_parameters()}
    assert shapes["layers.1.weight"] == (32, 784) and shapes["layers.4.bias"] == (10,)
    assert model.num_parameters() == 784 * 32 + 32 + 32 * 10 + 10
    assert all(p.dtype == np.float32 for p in model.parameters())


def test_module_needs_super_init_before_assignment():
    class Broken(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.zeros(1))

    with pytest.raises(RuntimeError, match=r"Broken: call super\(\).__init__\(\)"):
        Broken()


def test_reassigning_and_deleting_attributes_updates_registration():
    m = nn.Module()
    m.a = nn.Parameter(np.zeros(1))
    m.b = nn.Parameter(np.zeros(2))
    m.a = 5                                   # no longer a parameter
    assert [n for n, _ in m.named_parameters()] == ["b"]
    del m.b
    assert list(m.named_parameters()) == []
    m.register_parameter("c", None)
    assert m.c is None and list(m.state_dict()) == []


def test_shared_parameters_and_modules_are_listed_once():
    lin = nn.Linear(3, 3)
    outer = nn.Module()
    outer.first = lin
    outer.second = lin
    assert len(list(outer.named_modules())) == 2
    assert len(list(outer.parameters())) == 2


def test_linear_without_bias_has_no_bias_key():
    assert list(nn.Linear(4, 2, bias=False).state_dict()) == ["weight"]


# -- modes and gradients --------------------------------------------------------------
def test_train_eval_propagate_to_all_children():
    model = NNet(12, 5, 0.5)
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    with pytest.raises(TypeError, match="expected mode to be a bool"):
        model.train("no")


def test_zero_grad_none_or_zeros():
    lin = nn.Linear(3, 2)
    x = np.ones((4, 3), np.float32)
    lin(x)
    lin.backward(np.ones((4, 2), np.float32))
    lin.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in lin.parameters())
    lin.zero_grad()
    assert all(p.grad is None for p in lin.parameters())


# -- dtype conversion ------------------------------------------------------------------
def test_double_float_and_to_convert_parameters_and_grads():
    lin = nn.Linear(3, 2)
    lin(np.ones((1, 3), np.float32))
    lin.backward(np.ones((1, 2), np.float32))
    assert lin.double() is lin
    assert all(p.dtype == np.float64 and p.grad.dtype == np.float64 for p in lin.parameters())
    lin.to("float32")
    assert all(p.dtype == np.float32 and p.grad.dtype == np.float32 for p in lin.parameters())
    lin.to(np.float64)
    assert lin.weight.dtype == np.float64
    lin.float()
    assert lin.weight.dtype == np.float32
    lin.to("cpu")
    assert isinstance(lin.weight.data, np.ndarray)


@pytest.mark.parametrize("bad", [None, "int32", np.int64, "float16", "tpu"])
def test_to_rejects_non_float_targets(bad):
    with pytest.raises(ValueError, match="Linear.to: expected"):
        nn.Linear(2, 2).to(bad)


# -- state_dict ----------------------------------------------------------------------
def test_state_dict_is_a_copy_and_round_trips():
    a, b = NNet(6, 4, 0.1), NNet(6, 4, 0.1)
    sd = a.state_dict()
    assert isinstance(sd, OrderedDict) and list(sd) == [n for n, _ in a.named_parameters()]
    sd["layers.1.weight"][...] = 7.0                 # editing the copy leaves the model alone
    assert not np.any(a.layers[1].weight.data == 7.0)
    b.load_state_dict(a.state_dict())
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(pa.data, pb.data)
        assert pa.data is not pb.data


def test_load_state_dict_casts_to_the_parameter_dtype():
    lin = nn.Linear(2, 2)
    lin.load_state_dict({"weight": np.eye(2), "bias": np.zeros(2)})
    assert lin.weight.dtype == np.float32
    np.testing.assert_array_equal(lin.weight.data, np.eye(2))


def test_load_state_dict_reports_every_problem_and_changes_nothing():
    lin = nn.Linear(3, 2)
    before = lin.state_dict()
    bad = {"weight": np.zeros((3, 2)), "extra": np.zeros(1)}
    with pytest.raises(ValueError) as info:
        lin.load_state_dict(bad)
    msg = str(info.value)
    assert "Linear.load_state_dict" in msg
    assert "missing keys ['bias']" in msg
    assert "unexpected keys ['extra']" in msg
    assert "'weight': expected shape (2, 3), got (3, 2)" in msg
    np.testing.assert_array_equal(lin.weight.data, before["weight"])


def test_load_state_dict_non_strict_ignores_missing_and_extra_keys_only():
    lin = nn.Linear(3, 2)
    lin.load_state_dict({"weight": np.ones((2, 3)), "extra": np.zeros(1)}, strict=False)
    np.testing.assert_array_equal(lin.weight.data, np.ones((2, 3)))
    with pytest.raises(ValueError, match="expected shape"):
        lin.load_state_dict({"weight": np.ones((3, 3))}, strict=False)


# -- Sequential --------------------------------------------------------------------------
def test_sequential_forward_in_order_backward_in_reverse():
    log = []
    seq = nn.Sequential(Scale(2, log, "a"), Scale(2, log, "b"))
    x = np.array([[1.0, -1.0]])
    np.testing.assert_array_equal(seq(x), x * 4)
    dx = seq.backward(np.ones((1, 2)))
    assert log == [("f", "a"), ("f", "b"), ("b", "b"), ("b", "a")]
    np.testing.assert_array_equal(dx, [[4.0, 4.0]])
    np.testing.assert_array_equal(seq[0].s.grad, [2.0, -2.0])   # dout * s_b * x


def test_sequential_indexing_slicing_and_ordereddict_names():
    seq = nn.Sequential(OrderedDict([("fc", nn.Linear(3, 4)), ("act", nn.ReLU()),
                                     ("out", nn.Linear(4, 1))]))
    assert [n for n, _ in seq.named_parameters()] == ["fc.weight", "fc.bias",
                                                       "out.weight", "out.bias"]
    assert len(seq) == 3 and isinstance(seq[-1], nn.Linear)
    tail = seq[1:]
    assert isinstance(tail, nn.Sequential)
    assert [n for n, _ in tail.named_parameters()] == ["out.weight", "out.bias"]
    assert [type(m) for m in seq] == [nn.Linear, nn.ReLU, nn.Linear]


def test_sequential_rejects_non_modules_and_reused_instances():
    with pytest.raises(ValueError, match="Sequential: layer '1' must be a minidl Module, got function"):
        nn.Sequential(nn.ReLU(), lambda x: x)
    act = nn.ReLU()
    with pytest.raises(ValueError, match="layer '2' is the same object as layer '0'"):
        nn.Sequential(act, nn.Linear(2, 2), act)
    seq = nn.Sequential(act)
    with pytest.raises(ValueError, match="same object"):
        seq.append(act)
    seq.append(nn.Tanh())
    assert len(seq) == 2


def test_repr_is_readable_and_nested():
    text = repr(NNet(784, 128, 0.25))
    assert text == (
        "NNet(\n"
        "  (layers): Sequential(\n"
        "    (0): Flatten(start_dim=1, end_dim=-1)\n"
        "    (1): Linear(in_features=784, out_features=128, bias=True)\n"
        "    (2): ReLU()\n"
        "    (3): Dropout(p=0.25, inplace=False)\n"
        "    (4): Linear(in_features=128, out_features=10, bias=True)\n"
        "  )\n"
        ")")


def test_repr_matches_torch(torch):
    tnn = torch.nn
    ours = nn.Sequential(nn.Flatten(), nn.Linear(8, 5), nn.LeakyReLU(0.2), nn.ELU(alpha=0.5),
                         nn.GELU(approximate="tanh"), nn.Sigmoid(), nn.Tanh(), nn.Dropout(0.1),
                         nn.Linear(5, 3, bias=False))
    theirs = tnn.Sequential(tnn.Flatten(), tnn.Linear(8, 5), tnn.LeakyReLU(0.2), tnn.ELU(alpha=0.5),
                            tnn.GELU(approximate="tanh"), tnn.Sigmoid(), tnn.Tanh(), tnn.Dropout(0.1),
                            tnn.Linear(5, 3, bias=False))
    assert repr(ours) == repr(theirs)
    assert repr(nn.CrossEntropyLoss()) == repr(tnn.CrossEntropyLoss())


def test_deepcopy_gives_an_independent_model():
    a = NNet(5, 3, 0.0)
    b = copy.deepcopy(a)
    b.layers[1].weight.data[...] = 0
    assert a.layers[1].weight.data.any()
    assert [n for n, _ in b.named_parameters()] == [n for n, _ in a.named_parameters()]


def test_model_backward_accumulates_across_calls():
    rng = np.random.default_rng(0)
    model = NNet(6, 4, 0.0)
    x = rng.standard_normal((3, 2, 3)).astype(np.float32)
    dout = rng.standard_normal((3, 10)).astype(np.float32)
    model(x)
    model.backward(dout)
    once = [p.grad.copy() for p in model.parameters()]
    model(x)
    model.backward(dout)
    for g1, p in zip(once, model.parameters()):
        np.testing.assert_allclose(p.grad, 2 * g1, rtol=1e-6)
