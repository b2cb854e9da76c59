"""Linear, Flatten, activations, Dropout, CrossEntropyLoss, init and gradcheck, without torch.

Gradient checks run in float64 (minidl.gradcheck converts copies) over parametrized
shapes including batch 1 and odd sizes.  Bad input must raise ValueError naming the
layer, what it expected and what it got.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

import minidl
from minidl import nn
from minidl.gradcheck import GradcheckError, check_gradients


def away_from_zero(rng, shape, margin=0.05):
    """Standard normal values with |x| >= margin, so no finite difference straddles a kink at 0."""
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < margin, np.sign(x + 1e-12) * margin + x, x)


ACTIVATIONS = [
    pytest.param(lambda: nn.ReLU(), id="ReLU"),
    pytest.param(lambda: nn.LeakyReLU(), id="LeakyReLU"),
    pytest.param(lambda: nn.LeakyReLU(0.3), id="LeakyReLU-0.3"),
    pytest.param(lambda: nn.Tanh(), id="Tanh"),
    pytest.param(lambda: nn.Sigmoid(), id="Sigmoid"),
    pytest.param(lambda: nn.ELU(), id="ELU"),
    pytest.param(lambda: nn.ELU(alpha=0.7), id="ELU-0.7"),
    pytest.param(lambda: nn.GELU(), id="GELU"),
    pytest.param(lambda: nn.GELU(approximate="tanh"), id="GELU-tanh"),
]
ELEMENTWISE = ACTIVATIONS + [pytest.param(lambda: nn.Dropout(0.4), id="Dropout")]


# -- gradient checks -----------------------------------------------------------------
@pytest.mark.parametrize("batch_shape", [(1,), (5,), (2, 3), ()], ids=str)
@pytest.mark.parametrize("in_f,out_f,bias", [(1, 1, True), (7, 3, True), (4, 9, False)])
def test_linear_gradcheck(rng, batch_shape, in_f, out_f, bias):
    assert minidl.gradcheck(nn.Linear(in_f, out_f, bias=bias),
                            rng.standard_normal(batch_shape + (in_f,)))


@pytest.mark.parametrize("shape,start,end", [
    ((1, 3, 5, 5), 1, -1), ((2, 3, 4), 1, -1), ((2, 3, 4, 5), 0, 2), ((3, 2, 5), -2, -1),
    ((4, 3), 1, 1)])
def test_flatten_gradcheck_and_shape(rng, shape, start, end):
    x = rng.standard_normal(shape)
    flat = nn.Flatten(start, end)
    y = flat(x)
    s, e = start % len(shape), end % len(shape)
    assert y.shape == shape[:s] + (int(np.prod(shape[s:e + 1])),) + shape[e + 1:]
    assert minidl.gradcheck(flat, x)


@pytest.mark.parametrize("make", ELEMENTWISE)
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (3, 5), (2, 3, 4, 5)], ids=str)
def test_elementwise_gradcheck(rng, make, shape):
    layer = make()
    x = away_from_zero(rng, shape) * 2
    assert minidl.gradcheck(layer, x)
    layer.eval()
    assert minidl.gradcheck(layer, x)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("n,c", [(1, 1), (1, 10), (5, 3), (8, 10)])
def test_cross_entropy_gradcheck(rng, n, c, smoothing):
    logits = rng.standard_normal((n, c)) * 3
    targets = rng.integers(0, c, size=n)
    assert minidl.gradcheck(nn.CrossEntropyLoss(label_smoothing=smoothing), logits, targets)


@pytest.mark.parametrize("batch", [1, 4])
def test_small_mlp_gradcheck_in_training_mode_with_dropout(rng, batch):
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.Tanh(), nn.Dropout(0.3),
                          nn.Linear(7, 5), nn.GELU(), nn.Linear(5, 3))
    assert minidl.gradcheck(model, rng.standard_normal((batch, 3, 4)))


# -- gradcheck itself can fail, and says why -----------------------------------------------
class WrongTanh(nn.Tanh):
    """Backward forgets the square: dout * (1 - y)."""

    def _backward(self, dout, y):
        return dout * (1 - y)


class InPlaceTanh(nn.Tanh):
    """Correct values, but scribbles on the incoming gradient."""

    def _backward(self, dout, y):
        dout *= 1 - y * y
        return dout.copy()


class WrongBiasLinear(nn.Linear):
    def backward(self, dout):
        dx = super().backward(dout)
        self.bias.grad = 2 * self.bias.grad
        return dx


def test_gradcheck_catches_a_wrong_input_gradient(rng):
    x = rng.standard_normal((3, 4))
    with pytest.raises(GradcheckError) as info:
        minidl.gradcheck(WrongTanh(), x)
    msg = str(info.value)
    assert "FAILED" in msg and "worst: input[" in msg and "analytic" in msg and "numeric" in msg
    assert minidl.gradcheck(WrongTanh(), x, raise_exception=False) is False
    report = check_gradients(WrongTanh(), x)
    assert not report.ok and report.checks[0].n_bad > 0


def test_gradcheck_catches_a_wrong_parameter_gradient(rng):
    report = check_gradients(WrongBiasLinear(4, 3), rng.standard_normal((2, 4)))
    bad = {c.name: c.n_bad for c in report.checks}
    assert bad == {"input": 0, "param 'weight'": 0, "param 'bias'": 3}
    assert "worst: param 'bias'[" in str(report)


def test_gradcheck_reports_in_place_modification(rng):
    report = check_gradients(InPlaceTanh(), rng.standard_normal((2, 3)))
    assert not report.ok
    assert "backward modified its incoming gradient in place" in str(report)


def test_gradcheck_leaves_model_and_random_stream_untouched(rng):
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5))
    weight_before = model[0].weight.data.copy()
    minidl.manual_seed(3)
    expected_next = np.random.default_rng(3).random()
    assert minidl.gradcheck(model, rng.standard_normal((2, 3)).astype(np.float32))
    assert model[0].weight.dtype == np.float32 and model[0].weight.grad is None
    np.testing.assert_array_equal(model[0].weight.data, weight_before)
    assert minidl.random.get_generator().random() == expected_next


def test_gradcheck_accepts_a_function_pair(rng):
    x = rng.standard_normal((3, 2))
    assert minidl.gradcheck((lambda v: v ** 3, lambda d: d * 3 * x ** 2), x)
    with pytest.raises(GradcheckError):
        minidl.gradcheck((lambda v: v ** 3, lambda d: d * 2 * x ** 2), x)


def test_gradcheck_rejects_bad_arguments(rng):
    with pytest.raises(ValueError, match="first input to be a float array"):
        minidl.gradcheck(nn.ReLU(), np.arange(3))
    with pytest.raises(ValueError, match="at least one input"):
        minidl.gradcheck(nn.ReLU())
    with pytest.raises(ValueError, match="expected a Module"):
        minidl.gradcheck(abs, rng.standard_normal(3))


# -- behaviour ----------------------------------------------------------------------------
def test_linear_forward_formula_and_leading_axes(rng):
    lin = nn.Linear(4, 3).double()
    x = rng.standard_normal((2, 5, 4))
    y = lin(x)
    assert y.shape == (2, 5, 3)
    np.testing.assert_allclose(y, np.einsum("abi,ji->abj", x, lin.weight.data) + lin.bias.data,
                               rtol=1e-13)
    y1 = lin(x[0, 0])                                   # unbatched (in,) as in torch
    np.testing.assert_allclose(y1, y[0, 0], rtol=1e-13)


def test_relu_gradient_at_zero_is_zero():
    relu = nn.ReLU()
    x = np.array([-1.0, 0.0, 2.0, -0.0], np.float32)
    np.testing.assert_array_equal(relu(x), [0.0, 0.0, 2.0, 0.0])
    np.testing.assert_array_equal(relu.backward(np.ones(4, np.float32)), [0.0, 0.0, 1.0, 0.0])


@pytest.mark.parametrize("make", ELEMENTWISE)
def test_elementwise_keeps_shape_and_dtype(rng, make):
    layer = make()
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((2, 3, 4)).astype(dtype)
        y = layer(x)
        dx = layer.backward(np.ones_like(y))
        assert y.shape == x.shape and y.dtype == dtype and dx.dtype == dtype


LAYERS_FOR_INPLACE = ACTIVATIONS + [
    pytest.param(lambda: nn.Dropout(0.5), id="Dropout"),
    pytest.param(lambda: nn.Linear(5, 3).double(), id="Linear"),
    pytest.param(lambda: nn.Flatten(), id="Flatten"),
]


@pytest.mark.parametrize("make", LAYERS_FOR_INPLACE)
def test_no_layer_modifies_its_input_or_dout(rng, make):
    layer = make()
    x = rng.standard_normal((4, 5))
    x[0, 0] = 0.0
    x_copy = x.copy()
    y = layer(x)
    dout = rng.standard_normal(y.shape)
    dout_copy = dout.copy()
    layer.backward(dout)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(dout, dout_copy)


def test_sigmoid_and_tanh_do_not_overflow():
    x = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = nn.Sigmoid()(x)
        t = nn.Tanh()(x)
        e = nn.ELU()(x)
    np.testing.assert_allclose(y, [0.0, 1 / (1 + math.exp(50)), 0.5, 1 / (1 + math.exp(-50)), 1.0],
                               rtol=1e-15)
    np.testing.assert_array_equal(t[[0, 2, 4]], [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(e, [-1.0, math.expm1(-50), 0.0, 50.0, 1000.0], rtol=1e-15)


def test_gelu_exact_matches_the_normal_cdf_formula():
    x = np.linspace(-5, 5, 41)
    cdf = np.array([0.5 * (1 + math.erf(v * math.sqrt(0.5))) for v in x])
    np.testing.assert_allclose(nn.GELU()(x), x * cdf, rtol=1e-12, atol=0)
    assert nn.GELU()(np.zeros(1, np.float32)).dtype == np.float32


# -- Dropout ---------------------------------------------------------------------------------
def test_dropout_drops_with_probability_p_and_scales_the_rest():
    minidl.manual_seed(0)
    p = 0.3
    x = np.full((200, 500), 2.0, np.float32)
    drop = nn.Dropout(p)
    y = drop(x)
    kept = y != 0
    frac = kept.mean()
    sigma = math.sqrt(p * (1 - p) / x.size)
    assert abs(frac - (1 - p)) < 5 * sigma
    np.testing.assert_array_equal(y[kept], np.float32(2.0) / np.float32(1 - p))
    dx = drop.backward(np.ones_like(y))
    np.testing.assert_array_equal(dx != 0, kept)
    np.testing.assert_array_equal(dx[kept], np.float32(1.0) / np.float32(1 - p))


def test_dropout_is_reproducible_with_manual_seed_and_fresh_each_call():
    x = np.ones((50, 40))
    drop = nn.Dropout(0.5)
    minidl.manual_seed(7)
    a, b = drop(x), drop(x)
    minidl.manual_seed(7)
    np.testing.assert_array_equal(drop(x), a)
    assert not np.array_equal(a, b)


def test_dropout_identity_in_eval_and_for_p_zero():
    x = np.arange(6.0).reshape(2, 3)
    drop = nn.Dropout(0.5).eval()
    assert drop(x) is x
    d = np.ones((2, 3))
    assert drop.backward(d) is d
    zero = nn.Dropout(0.0)
    assert zero(x) is x and zero.backward(d) is d


def test_dropout_p_one_gives_zeros_and_zero_gradient():
    drop = nn.Dropout(1.0)
    x = np.ones((3, 4), np.float32)
    y = drop(x)
    assert y.dtype == np.float32 and not y.any()
    assert not drop.backward(np.ones_like(y)).any()


def test_dropout_backward_uses_the_mode_of_its_forward():
    drop = nn.Dropout(0.5)
    x = np.ones((10, 10))
    y = drop(x)
    drop.eval()
    np.testing.assert_array_equal(drop.backward(np.ones_like(x)), y)


# -- CrossEntropyLoss ----------------------------------------------------------------------
def test_cross_entropy_values():
    loss = nn.CrossEntropyLoss()
    assert isinstance(loss(np.zeros((4, 10)), np.arange(4)), float)
    assert loss(np.zeros((4, 10)), np.arange(4)) == pytest.approx(math.log(10), rel=1e-15)
    logits = np.array([[2.0, 0.0, -1.0]])
    lp = logits - np.log(np.exp(logits).sum())
    assert loss(logits, np.array([1])) == pytest.approx(-lp[0, 1], rel=1e-14)
    smooth = nn.CrossEntropyLoss(label_smoothing=0.2)
    expected = -(0.8 * lp[0, 1] + 0.2 * lp[0].mean())
    assert smooth(logits, np.array([1])) == pytest.approx(expected, rel=1e-14)


def test_cross_entropy_gradient_is_softmax_minus_target_over_n():
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    crit = nn.CrossEntropyLoss()
    crit(logits, np.array([2, 0]))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    p[[0, 1], [2, 0]] -= 1
    np.testing.assert_allclose(crit.backward(), p / 2, rtol=1e-14)
    np.testing.assert_allclose(crit.backward(3.0), 3 * p / 2, rtol=1e-14)


def test_cross_entropy_is_stable_for_huge_logits():
    crit = nn.CrossEntropyLoss()
    logits = np.array([[1e4, 0.0, -1e4], [5e3, 5e3, 0.0]], np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value = crit(logits, np.array([0, 2]))
        grad = crit.backward()
    assert value == pytest.approx((0.0 + 5e3 + math.log(2)) / 2, rel=1e-6)
    assert np.isfinite(grad).all() and grad.dtype == np.float32


@pytest.mark.parametrize("targets,match", [
    (np.array([0.0, 1.0, np.nan]), "non-finite"),
    (np.array([0.0, 1.0, np.inf]), "non-finite"),
    (np.array([0.0, 1.5, 2.0]), "non-integer"),
    (np.array([0.0, 1.0, 2.0]), r"whole numbers; convert it with .astype\(np.int64\)"),
    (np.array([0, 1, 3]), r"in \[0, 3\) for C=3 classes, got 3 at position 2"),
    (np.array([0, -1, 2]), r"got -1 at position 1"),
    (np.array([0, -100, 2]), r"got -100 at position 1"),
    (np.array([0, 1]), r"targets of shape \(3,\).*got \(2,\)"),
    (np.array([[0], [1], [2]]), r"targets of shape \(3,\).*got \(3, 1\)"),
    (np.array([True, False, True]), "integer class indices, got dtype bool"),
])
def test_cross_entropy_rejects_bad_targets(targets, match):
    with pytest.raises(ValueError, match="CrossEntropyLoss: .*" + match):
        nn.CrossEntropyLoss()(np.zeros((3, 3)), targets)


# (an empty batch, N = 0, is allowed: tests/minidl/nn/test_state_dict_checks_and_empty_batches.py)
@pytest.mark.parametrize("logits, error", [(np.zeros(3), ValueError), (np.zeros((2, 3, 4)), ValueError),
                                           (np.zeros((2, 0)), ValueError),
                                           (np.zeros((2, 3), np.int64), ValueError),
                                           ([[0.0, 1.0]], TypeError)])
def test_cross_entropy_rejects_bad_logits(logits, error):
    with pytest.raises(error, match="CrossEntropyLoss: expected logits"):
        nn.CrossEntropyLoss()(logits, np.zeros(2, np.int64))


def test_cross_entropy_argument_and_order_errors():
    for bad, error in ((-0.1, ValueError), (1.5, ValueError), ("0.1", TypeError),
                       (True, TypeError)):
        with pytest.raises(error, match=r"label_smoothing to be a number in \[0, 1\]"):
            nn.CrossEntropyLoss(label_smoothing=bad)
    with pytest.raises(RuntimeError, match=r"CrossEntropyLoss.backward\(\) called before forward"):
        nn.CrossEntropyLoss().backward()
    crit = nn.CrossEntropyLoss()
    crit(np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(TypeError, match="scalar dout"):
        crit.backward(np.ones(2))


# -- bad input for layers -------------------------------------------------------------------
def test_linear_bad_inputs():
    lin = nn.Linear(4, 3)
    with pytest.raises(ValueError, match=r"Linear: expected input of shape \(\*, 4\).*got \(2, 5\)"):
        lin(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match=r"Linear: expected input of shape \(\*, 4\).*got \(\)"):
        lin(np.zeros((), np.float32))
    with pytest.raises(ValueError, match=r"Linear: input dtype float64 does not match parameter "
                                         r"dtype float32; convert the module with .double\(\)"):
        lin(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"dtype float32 does not match parameter dtype float64; "
                                         r"convert the module with .float\(\)"):
        nn.Linear(4, 3).double()(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="Linear: expected input of dtype float32 or float64, got int64"):
        lin(np.zeros((2, 4), np.int64))
    with pytest.raises(TypeError, match="Linear: expected input to be a float32/float64 ndarray, got list"):
        lin([[0.0] * 4])
    for args, error in [((0.5, 3), TypeError), ((4, -1), ValueError), ((True, 2), TypeError)]:
        with pytest.raises(error, match="Linear: expected"):
            nn.Linear(*args)


def test_backward_before_forward_is_a_clear_error():
    for layer in (nn.Linear(2, 2), nn.Flatten(), nn.ReLU(), nn.GELU(), nn.Dropout()):
        with pytest.raises(RuntimeError, match=type(layer).__name__ + r".backward\(\) called before forward"):
            layer.backward(np.zeros((1, 2), np.float32))


@pytest.mark.parametrize("make", LAYERS_FOR_INPLACE)
def test_backward_rejects_dout_of_wrong_shape_or_dtype(rng, make):
    layer = make()
    y = layer(rng.standard_normal((4, 5)))
    name = type(layer).__name__
    with pytest.raises(ValueError, match=re.escape(f"{name}.backward: expected dout of shape {y.shape}")):
        layer.backward(np.zeros((y.shape[0] + 1,) + y.shape[1:]))
    with pytest.raises(ValueError, match=f"{name}.backward: expected dout of dtype float64"):
        layer.backward(np.zeros(y.shape, np.float32))


def test_flatten_bad_dims():
    with pytest.raises(ValueError, match="Flatten: start_dim=1, end_dim=-1 need an input with more "
                                         "dimensions, got 1 dimension"):
        nn.Flatten()(np.zeros(3))
    with pytest.raises(ValueError, match="Flatten: expected start_dim <= end_dim"):
        nn.Flatten(2, 1)(np.zeros((2, 3, 4)))
    with pytest.raises(TypeError, match="Flatten: expected start_dim to be an int"):
        nn.Flatten(1.0)


def test_activation_and_dropout_argument_errors():
    with pytest.raises(ValueError, match="ReLU: expected input of dtype float32 or float64, got int64"):
        nn.ReLU()(np.arange(3))
    with pytest.raises(ValueError, match="GELU: expected approximate 'none' or 'tanh', got 'fast'"):
        nn.GELU(approximate="fast")
    with pytest.raises(ValueError, match="ReLU: expected inplace=False"):
        nn.ReLU(inplace=True)
    with pytest.raises(TypeError, match="LeakyReLU: expected negative_slope to be a number"):
        nn.LeakyReLU("0.1")
    with pytest.raises(TypeError, match="ELU: expected alpha to be a number"):
        nn.ELU(None)
    for p, error in ((-0.1, ValueError), (1.01, ValueError), ("0.5", TypeError),
                     (True, TypeError)):
        with pytest.raises(error, match=r"Dropout: expected p to be a probability in \[0, 1\]"):
            nn.Dropout(p)
    with pytest.raises(ValueError, match="Dropout: expected inplace=False"):
        nn.Dropout(0.5, inplace=True)


# -- init ------------------------------------------------------------------------------------
def test_fans_and_gains():
    init = nn.init
    assert init.calculate_fan_in_and_fan_out(np.zeros((3, 5))) == (5, 3)
    assert init.calculate_fan_in_and_fan_out(nn.Parameter(np.zeros((8, 4, 3, 2)))) == (24, 48)
    with pytest.raises(ValueError, match="at least 2 dimensions, got shape \\(5,\\)"):
        init.calculate_fan_in_and_fan_out(np.zeros(5))
    assert init.calculate_gain("relu") == math.sqrt(2)
    assert init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))
    with pytest.raises(ValueError, match="unsupported nonlinearity 'swish'"):
        init.calculate_gain("swish")


@pytest.mark.parametrize("fn,kwargs,bound", [
    ("kaiming_uniform_", {}, math.sqrt(2) * math.sqrt(3 / 100)),   # a=0: gain sqrt(2)
    ("kaiming_uniform_", {"a": math.sqrt(5)}, 1 / math.sqrt(100)),
    ("kaiming_uniform_", {"mode": "fan_out", "nonlinearity": "relu"}, math.sqrt(2) * math.sqrt(3 / 300)),
    ("xavier_uniform_", {"gain": 2.0}, 2.0 * math.sqrt(6 / 400)),
])
def test_uniform_inits_fill_their_bounds(fn, kwargs, bound):
    minidl.manual_seed(1)
    w = np.empty((300, 100), np.float32)
    out = getattr(nn.init, fn)(w, **kwargs)
    assert out is w
    assert np.abs(w).max() <= bound * (1 + 1e-6)
    assert np.abs(w).max() > 0.99 * bound
    assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)


@pytest.mark.parametrize("fn,kwargs,std", [
    ("kaiming_normal_", {"nonlinearity": "relu"}, math.sqrt(2) / math.sqrt(100)),
    ("xavier_normal_", {}, math.sqrt(2 / 400)),
])
def test_normal_inits_have_their_std(fn, kwargs, std):
    minidl.manual_seed(2)
    p = nn.Parameter(np.empty((300, 100)))
    getattr(nn.init, fn)(p, **kwargs)
    assert p.data.std() == pytest.approx(std, rel=0.02)
    assert abs(p.data.mean()) < 4 * std / math.sqrt(p.size)


def test_init_is_reproducible_and_rejects_bad_arrays():
    minidl.manual_seed(5)
    a = nn.Linear(6, 4).state_dict()
    minidl.manual_seed(5)
    b = nn.Linear(6, 4).state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    np.testing.assert_array_equal(nn.init.zeros_(np.ones(3)), 0)
    with pytest.raises(ValueError, match="init.uniform_: expected a floating-point array"):
        nn.init.uniform_(np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="expected mode 'fan_in' or 'fan_out'"):
        nn.init.kaiming_uniform_(np.zeros((2, 2)), mode="fan")


def test_linear_default_init_bounds():
    minidl.manual_seed(3)
    lin = nn.Linear(50, 400)
    bound = 1 / math.sqrt(50)
    for p in (lin.weight.data, lin.bias.data):
        assert p.dtype == np.float32
        assert np.abs(p).max() <= bound and np.abs(p).max() > 0.98 * bound
    assert lin.weight.data.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)
