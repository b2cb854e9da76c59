"""Hypergradient descent (SGDHD, AdamHD): trajectories equal the paper's update rules.

The problem is a softmax regression (weights W and bias b, two parameter tensors) on a
fixed data set, minibatch ``step`` cycling through it; its gradient is written out in
NumPy below.  The paper's rules are transcribed, as plainly as possible, on one flat
parameter vector theta = (W.ravel(), b); the optimizers get W and b as two Parameters.
Every step the parameters and the learning rate must agree to 1e-12 in float64.

Four minibatches cycling over 32 samples make successive gradients disagree, so the
rates here mostly fall, some below zero (the reference does not clip the rate; neither
does the paper): the comparisons cover both signs of the hypergradient.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from minidl import optim
from minidl.nn import Parameter

N_IN, N_OUT, N_SAMPLES, BATCH = 4, 3, 32, 8
STEPS = 100
RTOL = ATOL = 1e-12


def make_problem(seed=0):
    """Initial (W, b) and a fixed data set (inputs, integer targets)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.5, (N_OUT, N_IN))
    b = rng.normal(0, 0.1, (N_OUT,))
    x = rng.normal(0, 1, (N_SAMPLES, N_IN))
    y = rng.integers(0, N_OUT, N_SAMPLES)
    return [w, b], x, y


def softmax_regression_grads(w, b, x, y, step):
    """Gradients (dW, db) of the mean cross-entropy of softmax(x W^T + b) on batch ``step``."""
    lo = (step * BATCH) % N_SAMPLES
    xb, yb = x[lo:lo + BATCH], y[lo:lo + BATCH]
    logits = xb @ w.T + b
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(yb)), yb] -= 1.0
    dlogits = p / len(yb)
    return [dlogits.T @ xb, dlogits.sum(axis=0)]


def flatten(arrays):
    return np.concatenate([a.ravel() for a in arrays])


def unflatten(theta):
    return [theta[:N_OUT * N_IN].reshape(N_OUT, N_IN), theta[N_OUT * N_IN:]]


def flat_grad(theta, x, y, step):
    return flatten(softmax_regression_grads(*unflatten(theta), x, y, step))


# -- the paper's rules, on one flat vector ------------------------------------------------

def sgd_hd_paper(theta, lr, x, y, hypergrad_lr, momentum=0.0, dampening=0.0,
                 weight_decay=0.0, nesterov=False, steps=STEPS):
    """SGD-HD (and with momentum / SGDN-HD): h = g_t . u_{t-1}, lr += beta h, then SGD's
    step with the new rate.  Returns the (theta, lr) after each step."""
    theta = theta.copy()
    u_prev = np.zeros_like(theta)
    buf = None
    trajectory = []
    for t in range(steps):
        g = flat_grad(theta, x, y, t) + weight_decay * theta
        lr = lr + hypergrad_lr * np.dot(g, u_prev)
        if momentum != 0:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            u = g + momentum * buf if nesterov else buf
        else:
            u = g
        theta = theta - lr * u
        u_prev = u
        trajectory.append((theta.copy(), lr))
    return trajectory


def adam_hd_paper(theta, lr, x, y, hypergrad_lr, betas=(0.9, 0.999), eps=1e-8,
                  weight_decay=0.0, steps=STEPS, grad_fn=None):
    """Adam-HD: u_t = sqrt(1-b2^t)/(1-b1^t) m_t/(sqrt(v_t)+eps), theta -= lr u_t, and from
    the second step on lr += beta g_t . u_{t-1} before the moments are updated."""
    grad_fn = grad_fn or (lambda th, t: flat_grad(th, x, y, t))
    beta1, beta2 = betas
    theta = theta.copy()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    u_prev = np.zeros_like(theta)
    trajectory = []
    for t in range(1, steps + 1):
        g = grad_fn(theta, t - 1) + weight_decay * theta
        if t > 1:
            lr = lr + hypergrad_lr * np.dot(g, u_prev)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        u = math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t) * m / (np.sqrt(v) + eps)
        theta = theta - lr * u
        u_prev = u
        trajectory.append((theta.copy(), lr))
    return trajectory


def adam_hd_per_tensor(arrays, lr, x, y, hypergrad_lr, betas=(0.9, 0.999), eps=1e-8,
                       weight_decay=0.0, steps=STEPS):
    """The reference's AdamHD order with several tensors: the loop over the tensors
    updates lr with each tensor's own dot product, just before that tensor moves."""
    beta1, beta2 = betas
    arrays = [a.copy() for a in arrays]
    ms = [np.zeros_like(a) for a in arrays]
    vs = [np.zeros_like(a) for a in arrays]
    u_prevs = [np.zeros_like(a) for a in arrays]
    trajectory = []
    for t in range(1, steps + 1):
        grads = softmax_regression_grads(*arrays, x, y, t - 1)
        for i, grad in enumerate(grads):
            g = grad + weight_decay * arrays[i]
            if t > 1:
                lr = lr + hypergrad_lr * np.dot(g.ravel(), u_prevs[i].ravel())
            ms[i] = beta1 * ms[i] + (1 - beta1) * g
            vs[i] = beta2 * vs[i] + (1 - beta2) * g * g
            u = math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t) * ms[i] / (np.sqrt(vs[i]) + eps)
            arrays[i] = arrays[i] - lr * u
            u_prevs[i] = u
        trajectory.append((flatten(arrays), lr))
    return trajectory


# -- running a minidl optimizer on the same problem ---------------------------------------

def run_optimizer(opt, params, x, y, steps=STEPS, first_step=0):
    """Step ``opt`` with the problem's gradients at its parameters; (theta, lr) per step."""
    trajectory = []
    for step in range(first_step, first_step + steps):
        if len(params) == 1:
            params[0].grad = flat_grad(params[0].data, x, y, step)
        else:
            for p, g in zip(params, softmax_regression_grads(*(p.data for p in params),
                                                             x, y, step)):
                p.grad = g
        opt.step()
        trajectory.append((flatten([p.data for p in params]),
                           opt.param_groups[0]["lr"]))
    return trajectory


def assert_same_trajectory(got, expected, what):
    assert len(got) == len(expected)
    for step, ((theta, lr), (theta_ref, lr_ref)) in enumerate(zip(got, expected)):
        np.testing.assert_allclose(theta, theta_ref, rtol=RTOL, atol=ATOL,
                                   err_msg=f"{what}: parameters at step {step}")
        np.testing.assert_allclose(lr, lr_ref, rtol=RTOL, atol=ATOL,
                                   err_msg=f"{what}: lr at step {step}")


def assert_lr_adapted(trajectory, lr0, what):
    """Guard against a vacuous comparison: the rate must really have moved."""
    lrs = np.array([lr for _, lr in trajectory])
    assert np.max(np.abs(lrs - lr0)) > 0.05 * lr0, f"{what}: lr barely moved ({lrs[-1]})"


SGD_HD_GRID = [kw for kw in (dict(momentum=m, dampening=d, nesterov=n, weight_decay=w)
                             for m, d, n, w in itertools.product((0, 0.9), (0, 0.3),
                                                                 (False, True), (0, 1e-2)))
               if not kw["nesterov"] or (kw["momentum"] > 0 and kw["dampening"] == 0)]
ADAM_HD_GRID = [dict(betas=b, eps=e, weight_decay=w)
                for b, e, w in itertools.product(((0.9, 0.999), (0.5, 0.9)), (1e-8, 1e-3),
                                                 (0, 0.05))]


@pytest.mark.parametrize("kwargs", SGD_HD_GRID, ids=str)
def test_sgd_hd_matches_the_paper(kwargs):
    init, x, y = make_problem()
    lr0, beta = 0.05, 0.02
    expected = sgd_hd_paper(flatten(init), lr0, x, y, beta, **kwargs)
    params = [Parameter(a.copy()) for a in init]
    got = run_optimizer(optim.SGDHD(params, lr=lr0, hypergrad_lr=beta, **kwargs),
                        params, x, y)
    assert_same_trajectory(got, expected, f"SGDHD({kwargs})")
    assert_lr_adapted(got, lr0, f"SGDHD({kwargs})")


@pytest.mark.parametrize("kwargs", ADAM_HD_GRID, ids=str)
def test_adam_hd_one_tensor_matches_the_paper(kwargs):
    """With one parameter tensor the reference's rule is the paper's single dot product."""
    init, x, y = make_problem()
    lr0, beta = 0.01, 1e-3
    expected = adam_hd_paper(flatten(init), lr0, x, y, beta, **kwargs)
    params = [Parameter(flatten(init))]
    got = run_optimizer(optim.AdamHD(params, lr=lr0, hypergrad_lr=beta, **kwargs),
                        params, x, y)
    assert_same_trajectory(got, expected, f"AdamHD({kwargs})")
    assert_lr_adapted(got, lr0, f"AdamHD({kwargs})")


@pytest.mark.parametrize("kwargs", ADAM_HD_GRID, ids=str)
def test_adam_hd_several_tensors_update_lr_inside_the_loop(kwargs):
    init, x, y = make_problem()
    lr0, beta = 0.01, 1e-3
    expected = adam_hd_per_tensor(init, lr0, x, y, beta, **kwargs)
    params = [Parameter(a.copy()) for a in init]
    got = run_optimizer(optim.AdamHD(params, lr=lr0, hypergrad_lr=beta, **kwargs),
                        params, x, y)
    assert_same_trajectory(got, expected, f"AdamHD({kwargs}), two tensors")
    assert_lr_adapted(got, lr0, f"AdamHD({kwargs}), two tensors")


def test_sgd_hd_starting_from_zero_lr_learns_a_rate():
    """The reference's README: lr=0 works, the hypergradient raises it."""
    init, x, y = make_problem()
    expected = sgd_hd_paper(flatten(init), 0.0, x, y, 0.05)
    params = [Parameter(a.copy()) for a in init]
    got = run_optimizer(optim.SGDHD(params, lr=0.0, hypergrad_lr=0.05), params, x, y)
    assert_same_trajectory(got, expected, "SGDHD from lr=0")
    assert got[-1][1] > 0.01


# -- hypergrad_lr=0 gives the plain optimizer ---------------------------------------------

@pytest.mark.parametrize("kwargs", SGD_HD_GRID, ids=str)
def test_sgd_hd_without_hypergradient_is_sgd(kwargs):
    """Same element-wise expressions in the same order (no reduction): equal to the bit."""
    init, x, y = make_problem()
    a = [Parameter(w.copy()) for w in init]
    b = [Parameter(w.copy()) for w in init]
    got = run_optimizer(optim.SGDHD(a, lr=0.05, hypergrad_lr=0.0, **kwargs), a, x, y)
    expected = run_optimizer(optim.SGD(b, lr=0.05, **kwargs), b, x, y)
    for (theta, lr), (theta_ref, _) in zip(got, expected):
        np.testing.assert_array_equal(theta, theta_ref)
        assert lr == 0.05


@pytest.mark.parametrize("betas,weight_decay", [((0.9, 0.999), 0), ((0.5, 0.9), 0.05)])
def test_adam_hd_without_hypergradient_is_adam_when_eps_is_zero(betas, weight_decay):
    """With eps=0 where eps goes makes no difference (see AdamHD's NOTE)."""
    init, x, y = make_problem()
    a = [Parameter(w.copy()) for w in init]
    b = [Parameter(w.copy()) for w in init]
    kwargs = dict(lr=0.01, betas=betas, eps=0.0, weight_decay=weight_decay)
    got = run_optimizer(optim.AdamHD(a, hypergrad_lr=0.0, **kwargs), a, x, y)
    expected = run_optimizer(optim.Adam(b, **kwargs), b, x, y)
    assert_same_trajectory(got, expected, "AdamHD(hypergrad_lr=0) vs Adam")


def test_adam_hd_eps_sits_before_the_bias_correction():
    """At step 1, AdamHD with eps equals Adam with eps / sqrt(1 - beta2) (torch's placement)."""
    init, x, y = make_problem()
    beta2, eps = 0.9, 1e-2
    a = [Parameter(w.copy()) for w in init]
    b = [Parameter(w.copy()) for w in init]
    got = run_optimizer(optim.AdamHD(a, lr=0.01, betas=(0.9, beta2), eps=eps), a, x, y, steps=1)
    same = run_optimizer(optim.Adam(b, lr=0.01, betas=(0.9, beta2),
                                    eps=eps / math.sqrt(1 - beta2)), b, x, y, steps=1)
    np.testing.assert_allclose(got[0][0], same[0][0], rtol=1e-13, atol=1e-15)
    c = [Parameter(w.copy()) for w in init]
    torch_placement = run_optimizer(optim.Adam(c, lr=0.01, betas=(0.9, beta2), eps=eps),
                                    c, x, y, steps=1)
    assert np.max(np.abs(got[0][0] - torch_placement[0][0])) > 1e-6


# -- behaviour ----------------------------------------------------------------------------

def quadratic_run(lr0, steps=30):
    """Full-batch SGD-HD on f = 1/2 theta^T diag(1, 2) theta; the lr after each step."""
    theta = Parameter(np.array([1.0, -1.0]))
    opt = optim.SGDHD([theta], lr=lr0, hypergrad_lr=0.02)
    lrs = []
    for _ in range(steps):
        theta.grad = np.array([1.0, 2.0]) * theta.data
        opt.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def test_lr_grows_when_steps_agree_and_shrinks_when_they_overshoot():
    assert quadratic_run(0.01, steps=5)[-1] > 0.01      # small steps keep pointing the same way
    lrs = quadratic_run(0.95, steps=3)                  # 0.95 * 2 > 1: the second axis flips sign
    assert lrs[-1] < 0.95


def test_lr_is_the_group_lr_that_schedulers_see():
    init, x, y = make_problem()
    params = [Parameter(a.copy()) for a in init]
    opt = optim.SGDHD(params, lr=0.05, hypergrad_lr=0.02)
    run_optimizer(opt, params, x, y, steps=10)
    adapted = opt.param_groups[0]["lr"]
    assert isinstance(adapted, float) and adapted != 0.05
    scheduler = optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    assert scheduler.get_last_lr() == [adapted]
    scheduler.step()
    assert opt.param_groups[0]["lr"] == adapted * 0.5


@pytest.mark.parametrize("name,kwargs", [
    ("SGDHD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01, hypergrad_lr=0.02)),
    ("AdamHD", dict(lr=0.01, weight_decay=0.05, hypergrad_lr=1e-3)),
])
def test_grad_is_not_modified_and_data_is_updated_in_place(name, kwargs):
    init, x, y = make_problem()
    params = [Parameter(a.copy()) for a in init]
    opt = getattr(optim, name)(params, **kwargs)
    for step in range(3):
        grads = softmax_regression_grads(*(p.data for p in params), x, y, step)
        for p, g in zip(params, grads):
            p.grad = g.copy()
        data = [p.data for p in params]
        opt.step()
        for p, g, d in zip(params, grads, data):
            assert p.data is d
            np.testing.assert_array_equal(p.grad, g)


def test_sgd_hd_counts_a_missing_grad_as_zero_and_adam_hd_skips_it():
    used, unused = Parameter(np.ones(3)), Parameter(np.ones(2))
    opt = optim.SGDHD([used, unused], lr=0.1, weight_decay=0.1, hypergrad_lr=0.01)
    used.grad = np.full(3, 0.5)
    opt.step()
    np.testing.assert_allclose(unused.data, 1.0 - 0.1 * 0.1)   # weight decay only, as the reference
    assert opt.state[unused]["grad_prev"].shape == (2,)

    used, unused = Parameter(np.ones(3)), Parameter(np.ones(2))
    opt = optim.AdamHD([used, unused], lr=0.1, weight_decay=0.1)
    used.grad = np.full(3, 0.5)
    opt.step()
    np.testing.assert_array_equal(unused.data, 1.0)
    assert unused not in opt.state or not opt.state[unused]
    assert np.all(used.data < 1.0)


@pytest.mark.parametrize("name,kwargs", [
    ("SGDHD", dict(lr=0.05, momentum=0.9, hypergrad_lr=0.02)),
    ("AdamHD", dict(lr=0.01, hypergrad_lr=1e-3)),
])
def test_float32_parameters_keep_their_dtype(name, kwargs):
    init, x, y = make_problem()
    params = [Parameter(a.astype(np.float32)) for a in init]
    opt = getattr(optim, name)(params, **kwargs)
    for step in range(5):
        grads = softmax_regression_grads(*(p.data.astype(np.float64) for p in params), x, y, step)
        for p, g in zip(params, grads):
            p.grad = g.astype(np.float32)
        opt.step()
    assert all(p.data.dtype == np.float32 for p in params)
    for state in opt.state.values():
        for value in state.values():
            if isinstance(value, np.ndarray):
                assert value.dtype == np.float32
    assert isinstance(opt.param_groups[0]["lr"], float)
    assert opt.param_groups[0]["lr"] != kwargs["lr"]


def test_step_returns_closure_loss():
    p = Parameter(np.ones(2))
    opt = optim.SGDHD([p], lr=0.1)

    def closure():
        p.grad = 2 * p.data
        return float(np.sum(p.data ** 2))

    assert opt.step(closure) == 2.0
    np.testing.assert_allclose(p.data, 0.8)


# -- checkpoints --------------------------------------------------------------------------

CHECKPOINTED = [
    ("SGDHD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01, hypergrad_lr=0.02),
     False),
    ("AdamHD", dict(lr=0.01, weight_decay=0.05, hypergrad_lr=1e-3), True),
]


def build_groups(params, grouped):
    if not grouped:
        return list(params)
    return [{"params": params[:1]}, {"params": params[1:], "lr": 0.02, "hypergrad_lr": 1e-4}]


@pytest.mark.parametrize("name,kwargs,grouped", CHECKPOINTED)
def test_state_dict_round_trip_resumes_training(name, kwargs, grouped):
    """50 steps, save, restore into a fresh optimizer, 50 more == 100 uninterrupted."""
    init, x, y = make_problem()
    cls = getattr(optim, name)

    straight = [Parameter(a.copy()) for a in init]
    opt = cls(build_groups(straight, grouped), **kwargs)
    expected = run_optimizer(opt, straight, x, y, steps=100)

    first = [Parameter(a.copy()) for a in init]
    opt = cls(build_groups(first, grouped), **kwargs)
    run_optimizer(opt, first, x, y, steps=50)
    saved = opt.state_dict()
    lr_at_50 = opt.param_groups[0]["lr"]
    assert saved["param_groups"][0]["lr"] == lr_at_50 != kwargs["lr"]
    assert saved["param_groups"][0]["hypergrad_lr"] == kwargs["hypergrad_lr"]
    expected_keys = ({"grad_prev", "momentum_buffer"} if name == "SGDHD"
                     else {"step", "exp_avg", "exp_avg_sq"})
    for i, a in enumerate(init):
        assert set(saved["state"][i]) == expected_keys
        for key, value in saved["state"][i].items():
            if key != "step":
                assert value.shape == a.shape, (key, value.shape)

    resumed = [Parameter(p.data.copy()) for p in first]
    fresh = cls(build_groups(resumed, grouped), lr=0.5)   # lr etc. come from the state
    fresh.load_state_dict(saved)
    assert fresh.param_groups[0]["lr"] == lr_at_50
    got = run_optimizer(fresh, resumed, x, y, steps=50, first_step=50)
    for (theta, lr), (theta_ref, lr_ref) in zip(got, expected[50:]):
        np.testing.assert_array_equal(theta, theta_ref)
        assert lr == lr_ref


def test_a_negative_adapted_lr_still_loads_but_cannot_be_given():
    """The hypergradient may push lr below 0 (the reference does not clip it)."""
    p = Parameter(np.ones(2))
    opt = optim.SGDHD([p], lr=0.1)
    saved = opt.state_dict()
    saved["param_groups"][0]["lr"] = -0.01
    fresh = optim.SGDHD([Parameter(np.ones(2))], lr=0.1)
    fresh.load_state_dict(saved)
    assert fresh.param_groups[0]["lr"] == -0.01
    with pytest.raises(ValueError, match=r"^SGDHD: expected lr to be a number >= 0"):
        optim.SGDHD([Parameter(np.ones(2))], lr=-0.01)
    saved["param_groups"][0]["lr"] = float("nan")
    with pytest.raises(ValueError, match=r"^SGDHD: expected lr to be a finite number"):
        fresh.load_state_dict(saved)


# -- validation ---------------------------------------------------------------------------

BAD_HYPERPARAMETERS = [            # a wrong value is a ValueError, a wrong type a TypeError
    ("SGDHD", dict(lr=-0.1), "lr", ValueError),
    ("SGDHD", dict(lr=float("nan")), "lr", ValueError),
    ("SGDHD", dict(hypergrad_lr=-1e-3), "hypergrad_lr", ValueError),
    ("SGDHD", dict(hypergrad_lr=float("nan")), "hypergrad_lr", ValueError),
    ("SGDHD", dict(hypergrad_lr=float("inf")), "hypergrad_lr", ValueError),
    ("SGDHD", dict(hypergrad_lr="1e-3"), "hypergrad_lr", TypeError),
    ("SGDHD", dict(momentum=-0.5), "momentum", ValueError),
    ("SGDHD", dict(weight_decay=-1e-4), "weight_decay", ValueError),
    ("SGDHD", dict(nesterov=1), "nesterov", TypeError),
    ("AdamHD", dict(lr=-1e-3), "lr", ValueError),
    ("AdamHD", dict(hypergrad_lr=-1e-8), "hypergrad_lr", ValueError),
    ("AdamHD", dict(eps=-1e-8), "eps", ValueError),
    ("AdamHD", dict(betas=(1.0, 0.999)), r"betas\[0\]", ValueError),
    ("AdamHD", dict(betas=(0.9,)), "betas", ValueError),
    ("AdamHD", dict(weight_decay=-0.1), "weight_decay", ValueError),
]


@pytest.mark.parametrize("name,kwargs,what,error", BAD_HYPERPARAMETERS, ids=str)
def test_invalid_hyperparameters_raise(name, kwargs, what, error):
    with pytest.raises(error, match=f"^{name}: expected {what} to be"):
        getattr(optim, name)([Parameter(np.zeros(2))], **kwargs)


def test_sgd_hd_nesterov_needs_momentum():
    with pytest.raises(ValueError, match="^SGDHD: Nesterov momentum requires momentum > 0"):
        optim.SGDHD([Parameter(np.zeros(2))], nesterov=True)


def test_sgd_hd_takes_one_parameter_group():
    a, b = Parameter(np.zeros(2)), Parameter(np.zeros(3))
    with pytest.raises(ValueError, match="^SGDHD: supports a single parameter group"):
        optim.SGDHD([{"params": [a]}, {"params": [b], "lr": 0.1}])
    opt = optim.SGDHD([a], lr=0.1)
    with pytest.raises(ValueError, match="^SGDHD: supports a single parameter group"):
        opt.add_param_group({"params": [b]})
    assert len(opt.param_groups) == 1
    optim.SGDHD([{"params": [a, b], "lr": 0.1}])    # one group given as a dict is fine


def test_adam_hd_groups_are_checked():
    a, b = Parameter(np.zeros(2)), Parameter(np.zeros(3))
    with pytest.raises(ValueError, match="^AdamHD: expected lr to be a number >= 0"):
        optim.AdamHD([{"params": [a]}, {"params": [b], "lr": -1.0}])
    with pytest.raises(ValueError, match="^AdamHD: expected hypergrad_lr to be"):
        optim.AdamHD([{"params": [a]}, {"params": [b], "hypergrad_lr": -1.0}])
    with pytest.raises(ValueError, match=r"^AdamHD: unknown hyperparameters \['amsgrad'\]"):
        optim.AdamHD([{"params": [a], "amsgrad": True}])


@pytest.mark.parametrize("name", ["SGDHD", "AdamHD"])
def test_gradient_of_wrong_shape_changes_nothing(name):
    p, q = Parameter(np.zeros((2, 3))), Parameter(np.ones(2))
    opt = getattr(optim, name)([p, q], lr=0.1, hypergrad_lr=0.1)
    q.grad = np.ones(2)
    p.grad = np.ones(3)     # would broadcast silently
    with pytest.raises(ValueError, match=rf"^{name}.step: gradient of shape \(3,\) does not"):
        opt.step()
    np.testing.assert_array_equal(p.data, 0.0)
    np.testing.assert_array_equal(q.data, 1.0)
    assert opt.param_groups[0]["lr"] == 0.1 and not any(opt.state.values())
