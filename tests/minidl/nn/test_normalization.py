r"""BatchNorm1d, BatchNorm2d and LayerNorm against PyTorch (issue 14).

The same weights and buffers go into a minidl layer and the torch layer; several
training steps then an eval step compare the output, the input gradient, every
parameter gradient and the running statistics:

* float64: ``|ours - torch| <= 1e-10 * (|torch| + max|torch|)`` element-wise,
* float32: the same with 1e-5,

as in ``tests/minidl/nn/test_core_layers_torch_parity.py``: the ``max|torch|`` term makes the bound relative
to the array's scale, so an element that cancels to nearly 0 (a centred value, a sum
of gradients) is not held to a relative bound its rounding cannot meet.

The input gradient is a difference of terms of size :math:`|\gamma r\, \partial L/\partial y|`
(``r = 1/sqrt(var + eps)``) that can cancel as a whole: with two values per channel
:math:`\hat x = \pm 1` and the exact gradient is nearly 0, so both libraries return
rounding noise of those terms.  Its scale is therefore the larger of ``max|torch|`` and
the terms' size (``gradient_scale``), still times 1e-10 in float64.
"""
from __future__ import annotations

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.serialization import from_torch_state_dict, to_torch_state_dict

RTOL = {np.float64: 1e-10, np.float32: 1e-5}
GRADCHECK_TOL = dict(eps=1e-6, atol=1e-7, rtol=1e-6)


def assert_close(ours, theirs, dtype, what="", terms=0.0):
    """Compare at RTOL[dtype] relative to each element and to the larger of max|theirs|
    and ``terms`` (the size of the terms ``theirs`` was summed from)."""
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    ours = np.asarray(ours)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs torch {theirs.shape}"
    assert ours.dtype == theirs.dtype, f"{what}: dtype {ours.dtype} vs torch {theirs.dtype}"
    rtol = RTOL[dtype]
    scale = max(float(np.abs(theirs).max()) if theirs.size else 0.0, terms)
    atol = max(rtol * scale, float(np.finfo(dtype).tiny))
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol, err_msg=what)


def torch_twin(torch, layer):
    """The torch layer with ``layer``'s arguments, dtype, weights and buffers."""
    tnn = torch.nn
    if isinstance(layer, nn.LayerNorm):
        twin = tnn.LayerNorm(layer.normalized_shape, layer.eps, layer.elementwise_affine,
                             bias=layer.bias is not None)
    else:
        twin = getattr(tnn, type(layer).__name__)(
            layer.num_features, layer.eps, layer.momentum, layer.affine,
            layer.track_running_stats, bias=layer.bias is not None or not layer.affine)
    dtype = next(iter(layer.state_dict().values()), np.zeros(0, np.float64)).dtype
    twin = twin.double() if dtype == np.float64 else twin
    if layer.state_dict():
        twin.load_state_dict(to_torch_state_dict(layer))
    return twin


def randomise(layer, rng):
    """Weights away from torch's 1/0 start, and (BatchNorm) running statistics away from
    0/1, so that every term of every formula is exercised."""
    for p in layer.parameters():
        p.data[...] = rng.uniform(0.5, 1.5, p.shape) * rng.choice([-1, 1], p.shape)
    if getattr(layer, "running_mean", None) is not None:
        layer.running_mean[...] = rng.standard_normal(layer.running_mean.shape)
        layer.running_var[...] = rng.uniform(0.5, 2.0, layer.running_var.shape)


def gradient_scale(layer, x, dout):
    """max |gamma * r * dL/dy|: the size of the terms the input gradient is summed from."""
    x, dout = x.astype(np.float64), dout.astype(np.float64)
    if x.size == 0:
        return 0.0
    if isinstance(layer, nn.LayerNorm):
        axes = tuple(range(x.ndim - len(layer.normalized_shape), x.ndim))
        r = 1 / np.sqrt(x.var(axis=axes, keepdims=True) + layer.eps)
        gamma = 1.0 if layer.weight is None else layer.weight.data.astype(np.float64)
        return float(np.abs(dout * gamma * r).max())
    axes = (0,) + tuple(range(2, x.ndim))
    at_channel = (slice(None),) + (None,) * (x.ndim - 2)
    var = (x.var(axis=axes) if layer.training or not layer.track_running_stats
           else layer.running_var.astype(np.float64))
    gamma = 1.0 if layer.weight is None else layer.weight.data.astype(np.float64)
    r = gamma / np.sqrt(var + layer.eps)
    return float(np.abs(dout * np.abs(r)[at_channel]).max())


def compare_step(torch, layer, twin, x, dtype, rng, what):
    """One forward and backward in both; compare output, gradients, buffers."""
    x = x.astype(dtype)
    x_before = x.copy()
    xt = torch.tensor(x, requires_grad=True)
    y = layer(x)
    yt = twin(xt)
    assert_close(y, yt, dtype, f"{what}: output")
    dout = rng.standard_normal(y.shape).astype(dtype)
    dout_before = dout.copy()
    terms = gradient_scale(layer, x, dout)      # before backward: the statistics of this x
    yt.backward(torch.from_numpy(dout))
    dx = layer.backward(dout)
    assert_close(dx, xt.grad, dtype, f"{what}: input gradient", terms)
    theirs = dict(twin.named_parameters())
    assert set(theirs) == {n for n, _ in layer.named_parameters()}
    for name, p in layer.named_parameters():
        assert_close(p.grad, theirs[name].grad, dtype, f"{what}: gradient of {name}")
    theirs_buffers = dict(twin.named_buffers())
    assert set(theirs_buffers) == {n for n, _ in layer.named_buffers()}
    for name, b in layer.named_buffers():
        if b.dtype.kind == "f":
            assert_close(b, theirs_buffers[name], dtype, f"{what}: buffer {name}")
        else:
            assert b.dtype == np.int64 and int(b) == int(theirs_buffers[name]), what
    np.testing.assert_array_equal(x, x_before)                # nothing modified in place
    np.testing.assert_array_equal(dout, dout_before)
    layer.zero_grad()
    twin.zero_grad()


def run_parity(torch, layer, shape, dtype, rng, train_steps=3, eval_steps=1, shift=1.5):
    layer = layer.to(dtype)
    randomise(layer, rng)
    twin = torch_twin(torch, layer)
    for step in range(train_steps):
        x = rng.standard_normal(shape) * rng.uniform(0.5, 3.0) + shift * rng.standard_normal()
        compare_step(torch, layer, twin, x, dtype, rng, f"train step {step}")
    layer.eval()
    twin.eval()
    for step in range(eval_steps):
        x = rng.standard_normal(shape) * 2 + shift
        compare_step(torch, layer, twin, x, dtype, rng, f"eval step {step}")


DTYPES = [pytest.param(np.float64, id="f64"), pytest.param(np.float32, id="f32")]

BN_CASES = [
    # (class, shape, kwargs)
    ("BatchNorm2d", (4, 3, 5, 6), {}),
    ("BatchNorm2d", (2, 1, 3, 3), {}),
    ("BatchNorm2d", (8, 5, 1, 1), {}),
    ("BatchNorm2d", (1, 4, 2, 3), {}),                              # one image, 6 positions
    ("BatchNorm2d", (3, 4, 7, 5), {"momentum": None}),
    ("BatchNorm2d", (3, 4, 4, 4), {"momentum": 0.5, "eps": 1e-3}),
    ("BatchNorm2d", (3, 4, 4, 4), {"momentum": 0.0}),
    ("BatchNorm2d", (3, 4, 4, 4), {"momentum": 1.0}),
    ("BatchNorm2d", (4, 3, 5, 6), {"affine": False}),
    ("BatchNorm2d", (4, 3, 5, 6), {"bias": False}),
    ("BatchNorm2d", (4, 3, 5, 6), {"track_running_stats": False}),
    ("BatchNorm2d", (4, 3, 5, 6), {"affine": False, "track_running_stats": False}),
    ("BatchNorm2d", (4, 3, 5, 6), {"affine": False, "momentum": None}),
    ("BatchNorm1d", (6, 5), {}),
    ("BatchNorm1d", (2, 3), {}),
    ("BatchNorm1d", (16, 7), {"momentum": None}),
    ("BatchNorm1d", (6, 5), {"affine": False}),
    ("BatchNorm1d", (6, 5), {"track_running_stats": False}),
    ("BatchNorm1d", (4, 3, 9), {}),
    ("BatchNorm1d", (1, 3, 4), {}),                                  # one sample, 4 positions
    ("BatchNorm1d", (4, 3, 9), {"momentum": None, "eps": 1e-2}),
    ("BatchNorm1d", (4, 3, 9), {"affine": False, "track_running_stats": False}),
]


def bn_id(case):
    name, shape, kwargs = case
    return name[-2:] + "-" + "x".join(map(str, shape)) + "".join(
        f"-{k}={v}" for k, v in kwargs.items())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", BN_CASES, ids=[bn_id(c) for c in BN_CASES])
def test_batch_norm_matches_torch_through_training_then_eval(torch, rng, dtype, case):
    name, shape, kwargs = case
    run_parity(torch, getattr(nn, name)(shape[1], **kwargs), shape, dtype, rng)


LN_CASES = [
    # (normalized_shape, input shape, kwargs)
    (5, (4, 5), {}),
    ((5,), (2, 3, 5), {}),
    ((3, 4), (2, 3, 4), {}),
    ((3, 4), (3, 4), {}),                              # no leading dimension
    ((2, 3, 4), (5, 2, 3, 4), {}),
    ((2, 3, 4), (2, 2, 2, 3, 4), {"eps": 1e-3}),
    ((6,), (4, 6), {"elementwise_affine": False}),
    ((2, 3), (4, 2, 3), {"bias": False}),
    ((2, 3), (4, 2, 3), {"elementwise_affine": False, "bias": False}),
    (16, (0, 16), {}),                                 # an empty batch
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", LN_CASES, ids=[
    f"{c[0]}-{'x'.join(map(str, c[1]))}" + "".join(f"-{k}={v}" for k, v in c[2].items())
    for c in LN_CASES])
def test_layer_norm_matches_torch(torch, rng, dtype, case):
    normalized_shape, shape, kwargs = case
    run_parity(torch, nn.LayerNorm(normalized_shape, **kwargs), shape, dtype, rng,
               train_steps=2, eval_steps=1)


def test_layer_norm_over_one_value_is_exactly_the_bias(rng):
    # Not compared with torch: with one value x - mean is 0 exactly, but torch's mean
    # carries a rounding error that 1/sqrt(eps) = 316 magnifies (its weight gradient is
    # -1.5e-5 instead of 0 in float32, ~1e-15 in float64); the exact answer is asserted.
    ln = nn.LayerNorm(1).double()
    randomise(ln, rng)
    x = rng.standard_normal((3, 1)) * 2 + 1.5
    np.testing.assert_array_equal(ln(x), np.broadcast_to(ln.bias.data, (3, 1)))
    dout = rng.standard_normal((3, 1))
    np.testing.assert_array_equal(ln.backward(dout), 0)
    np.testing.assert_array_equal(ln.weight.grad, 0)
    np.testing.assert_array_equal(ln.bias.grad, dout.sum(axis=0))


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.BatchNorm1d(3), (0, 3)),
    (lambda: nn.BatchNorm1d(3, momentum=None), (0, 3, 4)),
    (lambda: nn.BatchNorm2d(2), (0, 2, 3, 3)),
    (lambda: nn.BatchNorm1d(3), (2, 3, 0)),                     # no positions
])
@pytest.mark.parametrize("training", [True, False])
def test_empty_batches_match_torch(torch, rng, make, shape, training):
    layer = make().double()
    randomise(layer, rng)
    twin = torch_twin(torch, layer)
    layer.train(training)
    twin.train(training)
    compare_step(torch, layer, twin, np.zeros(shape), np.float64, rng, "empty batch")


@pytest.mark.parametrize("make, shape, training", [
    (lambda: nn.BatchNorm1d(3), (5, 3), True),
    (lambda: nn.BatchNorm1d(2, affine=False), (4, 2, 3), True),
    (lambda: nn.BatchNorm1d(3), (5, 3), False),
    (lambda: nn.BatchNorm2d(2), (3, 2, 2, 3), True),
    (lambda: nn.BatchNorm2d(2, momentum=None), (3, 2, 2, 3), False),
    (lambda: nn.BatchNorm2d(2, track_running_stats=False), (2, 2, 2, 2), False),
    (lambda: nn.LayerNorm(4), (3, 4), True),
    (lambda: nn.LayerNorm((2, 3)), (2, 2, 3), True),
    (lambda: nn.LayerNorm((2, 3), elementwise_affine=False), (2, 2, 3), True),
])
def test_gradcheck(rng, make, shape, training):
    layer = make().train(training)
    randomise(layer, rng)
    assert minidl.gradcheck(layer, rng.standard_normal(shape) * 2 + 0.5, **GRADCHECK_TOL)


def test_needs_input_grad_false_skips_dx_and_keeps_parameter_gradients(rng):
    x = rng.standard_normal((4, 3, 2, 2))
    dout = rng.standard_normal(x.shape)
    full, lean = nn.BatchNorm2d(3).double(), nn.BatchNorm2d(3).double()
    full(x)
    full.backward(dout)
    lean.needs_input_grad = False
    lean(x)
    assert lean.backward(dout) is None
    for a, b in zip(full.parameters(), lean.parameters()):
        np.testing.assert_array_equal(a.grad, b.grad)
    ln = nn.LayerNorm(2).double()
    ln.needs_input_grad = False
    ln(x)
    assert ln.backward(dout) is None and ln.weight.grad.shape == (2,)


# -- state_dict, buffers, conversions ---------------------------------------------------------
def test_state_dict_keys_buffers_and_dtypes_match_torch(torch):
    tnn = torch.nn
    pairs = [
        (nn.BatchNorm2d(4), tnn.BatchNorm2d(4)),
        (nn.BatchNorm1d(4, affine=False), tnn.BatchNorm1d(4, affine=False)),
        (nn.BatchNorm1d(4, track_running_stats=False), tnn.BatchNorm1d(4, track_running_stats=False)),
        (nn.BatchNorm2d(4, bias=False), tnn.BatchNorm2d(4, bias=False)),
        (nn.LayerNorm((2, 3)), tnn.LayerNorm((2, 3))),
        (nn.LayerNorm(3, bias=False), tnn.LayerNorm(3, bias=False)),
        (nn.LayerNorm(3, elementwise_affine=False), tnn.LayerNorm(3, elementwise_affine=False)),
    ]
    for ours, theirs in pairs:
        sd, tsd = ours.state_dict(), theirs.state_dict()
        assert list(sd) == list(tsd), repr(ours)
        for k in sd:
            assert sd[k].shape == tuple(tsd[k].shape)
            assert str(sd[k].dtype) == str(tsd[k].dtype).replace("torch.", "")
            np.testing.assert_array_equal(sd[k], tsd[k].numpy())
        assert repr(ours) == repr(theirs)
        assert ours.num_parameters() == sum(p.numel() for p in theirs.parameters())
    bn = nn.BatchNorm2d(4).double()
    assert bn.running_var.dtype == np.float64 and bn.num_batches_tracked.dtype == np.int64
    assert bn.float().running_mean.dtype == np.float32


def test_reset_running_stats_and_parameters(rng):
    bn = nn.BatchNorm1d(3)
    randomise(bn, rng)
    bn(rng.standard_normal((4, 3)).astype(np.float32))
    bn.reset_parameters()
    for k, v in bn.state_dict().items():
        np.testing.assert_array_equal(v, nn.BatchNorm1d(3).state_dict()[k])


def torch_cnn_with_bn(torch):
    tnn = torch.nn
    return tnn.Sequential(tnn.Conv2d(2, 4, 3, padding=1), tnn.BatchNorm2d(4), tnn.ReLU(),
                          tnn.Flatten(), tnn.Linear(4 * 5 * 5, 6), tnn.BatchNorm1d(6),
                          tnn.ReLU(), tnn.Linear(6, 3), tnn.LayerNorm(3))


def cnn_with_bn():
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 5 * 5, 6), nn.BatchNorm1d(6),
                         nn.ReLU(), nn.Linear(6, 3), nn.LayerNorm(3))


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_torch_state_dict_with_buffers_loads_and_gives_the_same_eval_outputs(torch, rng, tmp_path,
                                                                               dtype):
    torch.manual_seed(0)
    t = torch_cnn_with_bn(torch)
    if dtype == np.float64:
        t = t.double()
    opt = torch.optim.SGD(t.parameters(), lr=0.1)
    for _ in range(5):                       # running statistics and weights away from the start
        opt.zero_grad()
        x = torch.from_numpy((rng.standard_normal((8, 2, 5, 5)) * 2 + 1).astype(dtype))
        t(x).square().mean().backward()
        opt.step()
    t.eval()
    assert int(t[1].num_batches_tracked) == 5
    x = (rng.standard_normal((7, 2, 5, 5)) * 2 + 1).astype(dtype)
    with torch.no_grad():
        expected = t(torch.from_numpy(x))
    via_dict = cnn_with_bn().to(dtype)
    via_dict.load_state_dict(t.state_dict())
    via_numpy = cnn_with_bn().to(dtype)
    via_numpy.load_state_dict(from_torch_state_dict(t.state_dict()))
    via_file = cnn_with_bn().to(dtype)
    minidl.load(via_file, minidl.save(via_numpy, tmp_path / "bn.npz"))
    for model in (via_dict, via_numpy, via_file):
        model.eval()
        assert_close(model(x), expected, dtype, "eval output")
        assert int(model[1].num_batches_tracked) == 5
        assert model[1].num_batches_tracked.dtype == np.int64
    # and back: torch loads minidl's state_dict as it is
    t2 = torch_cnn_with_bn(torch)
    t2 = t2.double() if dtype == np.float64 else t2
    t2.load_state_dict(to_torch_state_dict(via_file))
    with torch.no_grad():
        assert_close(t2.eval()(torch.from_numpy(x)), expected, dtype, "round trip")


def test_load_state_dict_checks_buffers_before_changing_anything():
    model = cnn_with_bn()
    before = model.state_dict()
    bad = {k: v + 1 for k, v in before.items()}
    bad["5.running_var"] = np.ones(7)
    with pytest.raises(ValueError, match=r"'5.running_var': expected shape \(6,\), got \(7,\)"):
        model.load_state_dict(bad)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    missing = {k: v for k, v in before.items() if k != "1.num_batches_tracked"}
    with pytest.raises(ValueError, match=r"missing keys \['1.num_batches_tracked'\]"):
        model.load_state_dict(missing)


# -- bad input -----------------------------------------------------------------------------
@pytest.mark.parametrize("make, shape, match", [
    (lambda: nn.BatchNorm2d(3), (2, 4, 5, 5), r"BatchNorm2d: expected 3 channels at axis 1 "
                                              r"\(num_features=3\), got input of shape \(2, 4, 5, 5\)"),
    (lambda: nn.BatchNorm1d(3), (2, 4), "BatchNorm1d: expected 3 channels"),
    (lambda: nn.BatchNorm1d(3), (2, 4, 6), "BatchNorm1d: expected 3 channels"),
    (lambda: nn.BatchNorm2d(3), (2, 3, 5), r"BatchNorm2d: expected 4D input \(got 3D input"),
    (lambda: nn.BatchNorm2d(3), (3,), r"BatchNorm2d: expected 4D input \(got 1D input"),
    (lambda: nn.BatchNorm1d(3), (2, 3, 4, 4), r"BatchNorm1d: expected 2D or 3D input \(got 4D"),
    (lambda: nn.BatchNorm1d(3), (3,), r"BatchNorm1d: expected 2D or 3D input \(got 1D"),
    (lambda: nn.BatchNorm1d(3), (1, 3), r"BatchNorm1d: Expected more than 1 value per channel "
                                        r"when training, got input size \(1, 3\)"),
    (lambda: nn.BatchNorm1d(3), (1, 3, 1), "Expected more than 1 value per channel when training"),
    (lambda: nn.BatchNorm2d(3), (1, 3, 1, 1), "Expected more than 1 value per channel when training"),
    (lambda: nn.BatchNorm2d(3, track_running_stats=False).eval(), (1, 3, 1, 1),
     "Expected more than 1 value per channel when training"),
    (lambda: nn.LayerNorm((2, 3)), (4, 3, 2), r"LayerNorm: expected input of shape \(\*, 2, 3\)"),
    (lambda: nn.LayerNorm((2, 3)), (3,), r"LayerNorm: expected input of shape \(\*, 2, 3\)"),
])
def test_bad_input_is_a_value_error_naming_the_layer(make, shape, match):
    layer = make().double()
    with pytest.raises(ValueError, match=match):
        layer(np.zeros(shape))


def test_bad_input_errors_match_torch_where_torch_raises(torch):
    tnn = torch.nn
    for layer, shape in [(tnn.BatchNorm1d(3), (1, 3)), (tnn.BatchNorm2d(3), (1, 3, 1, 1)),
                         (tnn.BatchNorm2d(3), (2, 3, 5)), (tnn.BatchNorm1d(3), (2, 3, 4, 4))]:
        with pytest.raises(ValueError):
            layer(torch.zeros(shape))


def test_one_value_per_channel_is_fine_in_eval_mode_with_running_stats(rng):
    bn = nn.BatchNorm2d(3).double().eval()
    y = bn(np.ones((1, 3, 1, 1)))
    np.testing.assert_allclose(y, 1 / np.sqrt(1 + 1e-5), rtol=1e-15)
    assert int(bn.num_batches_tracked) == 0


def test_other_bad_inputs():
    bn = nn.BatchNorm2d(3)
    with pytest.raises(ValueError, match="BatchNorm2d: input dtype float64 does not match the "
                                         "module's dtype float32; convert the module with .double"):
        bn(np.zeros((2, 3, 2, 2)))
    with pytest.raises(ValueError, match="BatchNorm2d: expected input of dtype float32 or float64"):
        bn(np.zeros((2, 3, 2, 2), np.int64))
    with pytest.raises(RuntimeError, match=r"BatchNorm2d.backward\(\) called before forward"):
        bn.backward(np.zeros((2, 3, 2, 2), np.float32))
    bn(np.zeros((2, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm2d.backward: expected dout of shape \(2, 3, 2, 2\)"):
        bn.backward(np.zeros((2, 3, 2, 1), np.float32))
    ln = nn.LayerNorm(3)
    with pytest.raises(ValueError, match="LayerNorm: input dtype float64 does not match"):
        ln(np.zeros((2, 3)))


@pytest.mark.parametrize("make, error, match", [     # a wrong type: TypeError; value: ValueError
    (lambda: nn.BatchNorm2d(0), ValueError,
     "BatchNorm2d: expected num_features to be a positive int, got 0"),
    (lambda: nn.BatchNorm1d(2.0), TypeError, "expected num_features to be a positive int"),
    (lambda: nn.BatchNorm1d(2, momentum=1.5), ValueError,
     r"expected momentum to be a number in \[0, 1\] or None"),
    (lambda: nn.BatchNorm1d(2, eps=-1), ValueError, "expected eps to be a non-negative number"),
    (lambda: nn.BatchNorm1d(2, affine=1), TypeError, "expected affine to be a bool"),
    (lambda: nn.BatchNorm2d(2, track_running_stats="yes"), TypeError,
     "expected track_running_stats to be a bool"),
    (lambda: nn.LayerNorm(0), ValueError,
     "LayerNorm: expected normalized_shape to be a positive int"),
    (lambda: nn.LayerNorm(()), ValueError, "LayerNorm: expected normalized_shape"),
    (lambda: nn.LayerNorm("3"), TypeError, "LayerNorm: expected normalized_shape"),
    (lambda: nn.LayerNorm(3, elementwise_affine=None), TypeError,
     "expected elementwise_affine to be a bool"),
])
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()
