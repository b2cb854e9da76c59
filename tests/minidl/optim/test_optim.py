"""Optimizers: parameter trajectories equal torch.optim's, state dicts resume training.

The network is a small Linear-Tanh-Linear classifier written with torch functions, plus
a scale vector that only receives a gradient on even steps (so both optimizers also
skip parameters whose grad is None).  At every step torch computes the gradient at
torch's parameters and the same arrays are handed to the minidl optimizer, so the two
optimizers see identical gradients and any difference comes from the update rule.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from minidl import optim
from minidl.nn import Parameter

N_IN, N_HIDDEN, N_OUT, N_SAMPLES, BATCH = 4, 6, 3, 32, 8
STEPS = 100


def make_problem(dtype=np.float64, seed=0):
    """Initial parameter arrays and a fixed data set (inputs, integer targets)."""
    rng = np.random.default_rng(seed)
    params = [
        rng.normal(0, 0.6, (N_HIDDEN, N_IN)),   # W1
        rng.normal(0, 0.1, (N_HIDDEN,)),        # b1
        rng.normal(0, 0.6, (N_OUT, N_HIDDEN)),  # W2
        rng.normal(0, 0.1, (N_OUT,)),           # b2
        rng.normal(1, 0.1, (N_OUT,)),           # scale, used on even steps only
    ]
    x = rng.normal(0, 1, (N_SAMPLES, N_IN))
    y = rng.integers(0, N_OUT, N_SAMPLES)
    return [p.astype(dtype) for p in params], x.astype(dtype), y


def torch_loss(torch, tparams, x, y, step):
    """Cross-entropy of the network on minibatch ``step`` (the scale joins on even steps)."""
    w1, b1, w2, b2, scale = tparams
    lo = (step * BATCH) % N_SAMPLES
    xb = torch.from_numpy(x[lo:lo + BATCH])
    yb = torch.from_numpy(y[lo:lo + BATCH])
    logits = torch.tanh(xb @ w1.T + b1) @ w2.T + b2
    if step % 2 == 0:
        logits = logits * scale
    return torch.nn.functional.cross_entropy(logits, yb)


def torch_grads(torch, arrays, x, y, step):
    """Gradients (NumPy, or None for an unused parameter) of the loss at ``arrays``."""
    tparams = [torch.tensor(a, requires_grad=True) for a in arrays]
    torch_loss(torch, tparams, x, y, step).backward()
    return [None if t.grad is None else t.grad.numpy().copy() for t in tparams]


def build_groups(params, grouped):
    """All parameters in one group, or two groups with their own lr / weight decay."""
    if not grouped:
        return list(params)
    return [{"params": params[:2]},
            {"params": params[2:], "lr": 0.02, "weight_decay": 0.03}]


# float64: 1e-10 relative per element (observed: equal to ~1 ulp).  float32: 1e-5 relative,
# with the absolute part scaled by the parameter's magnitude, since an entry crossing zero
# carries the rounding error of its O(1) terms and has no meaningful relative error.
TOLERANCES = {np.float64: (1e-10, 1e-12), np.float32: (1e-5, 1e-5)}


def compare_trajectories(torch, name, kwargs, dtype=np.float64, grouped=False,
                         torch_extra=None, steps=STEPS):
    """Step torch.optim.<name> and minidl.optim.<name> side by side and compare every step."""
    rtol, atol_scale = TOLERANCES[dtype]
    init, x, y = make_problem(dtype)
    tparams = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    mparams = [Parameter(a.copy()) for a in init]
    topt = getattr(torch.optim, name)(build_groups(tparams, grouped), **kwargs,
                                      **(torch_extra or {}))
    mopt = getattr(optim, name)(build_groups(mparams, grouped), **kwargs)
    worst = 0.0
    for step in range(steps):
        topt.zero_grad()
        torch_loss(torch, tparams, x, y, step).backward()
        for tp, mp in zip(tparams, mparams):
            mp.grad = None if tp.grad is None else tp.grad.numpy().copy()
        grads_before = [None if mp.grad is None else mp.grad.copy() for mp in mparams]
        data_before = [mp.data for mp in mparams]
        topt.step()
        mopt.step()
        for mp, g, d in zip(mparams, grads_before, data_before):
            assert mp.data is d, f"{name} replaced param.data instead of updating it in place"
            assert mp.data.dtype == dtype
            if g is not None:
                np.testing.assert_array_equal(mp.grad, g, err_msg=f"{name} modified param.grad")
        for tp, mp in zip(tparams, mparams):
            expected = tp.detach().numpy()
            atol = atol_scale if dtype == np.float64 else atol_scale * np.abs(expected).max()
            np.testing.assert_allclose(mp.data, expected, rtol=rtol, atol=atol,
                                       err_msg=f"{name}({kwargs}) step {step}")
            worst = max(worst, float(np.max(np.abs(mp.data - expected))))
    moved = max(float(np.max(np.abs(mp.data - a))) for mp, a in zip(mparams, init))
    assert moved > 1e-2, f"{name}({kwargs}) barely moved the parameters ({moved})"
    return topt, mopt, worst


def valid_sgd(kw):
    return not kw["nesterov"] or (kw["momentum"] > 0 and kw["dampening"] == 0)


SGD_GRID = [kw for kw in (dict(lr=0.05, momentum=m, dampening=d, nesterov=n, weight_decay=w)
                          for m, d, n, w in itertools.product((0, 0.9), (0, 0.3),
                                                              (False, True), (0, 1e-2)))
            if valid_sgd(kw)]
ADAM_GRID = [dict(lr=1e-2, betas=b, eps=e, weight_decay=w, amsgrad=a)
             for b, (e, w), a in itertools.product(((0.9, 0.999), (0.5, 0.9)),
                                                   ((1e-8, 0), (1e-3, 0.05)), (False, True))]
ADAMW_GRID = [dict(lr=1e-2, betas=b, weight_decay=w, amsgrad=a)
              for b, w, a in itertools.product(((0.9, 0.999), (0.5, 0.9)), (0, 0.05),
                                               (False, True))] + [dict(lr=1e-2, eps=1e-3)]
RMSPROP_GRID = [dict(lr=1e-2, alpha=al, momentum=m, centered=c, weight_decay=w)
                for al, m, c, w in itertools.product((0.99, 0.9), (0, 0.9), (False, True),
                                                     (0, 0.05))] + [dict(lr=1e-3, eps=1e-3)]


@pytest.mark.parametrize("kwargs", SGD_GRID, ids=str)
def test_sgd_trajectory_matches_torch(torch, kwargs):
    compare_trajectories(torch, "SGD", kwargs)


@pytest.mark.parametrize("kwargs", ADAM_GRID, ids=str)
def test_adam_trajectory_matches_torch(torch, kwargs):
    compare_trajectories(torch, "Adam", kwargs)


@pytest.mark.parametrize("kwargs", ADAMW_GRID, ids=str)
def test_adamw_trajectory_matches_torch(torch, kwargs):
    compare_trajectories(torch, "AdamW", kwargs)


@pytest.mark.parametrize("kwargs", RMSPROP_GRID, ids=str)
def test_rmsprop_trajectory_matches_torch(torch, kwargs):
    compare_trajectories(torch, "RMSprop", kwargs)


FULL_FEATURED = [
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    ("Adam", dict(lr=1e-2, weight_decay=0.05, amsgrad=True)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.05, amsgrad=True)),
    ("RMSprop", dict(lr=1e-2, momentum=0.9, centered=True, weight_decay=0.05)),
]


@pytest.mark.parametrize("name,kwargs", FULL_FEATURED)
def test_defaults_and_param_groups_match_torch(torch, name, kwargs):
    """Default hyperparameters, and two groups with their own lr / weight decay."""
    compare_trajectories(torch, name, {})
    compare_trajectories(torch, name, kwargs, grouped=True)


@pytest.mark.parametrize("name,kwargs", FULL_FEATURED)
def test_float32_trajectory_matches_torch(torch, name, kwargs):
    _, mopt, _ = compare_trajectories(torch, name, kwargs, dtype=np.float32)
    for state in mopt.state.values():
        for value in state.values():
            if isinstance(value, np.ndarray):
                assert value.dtype == np.float32


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_adam_matches_torch_foreach_implementation(torch, name):
    """torch's multi-tensor (GPU default) Adam agrees with the single-tensor one we follow."""
    compare_trajectories(torch, name, dict(lr=1e-2, weight_decay=0.05, amsgrad=True),
                         torch_extra=dict(foreach=True))


@pytest.mark.parametrize("name,kwargs", FULL_FEATURED)
def test_state_dict_layout_matches_torch(torch, name, kwargs):
    topt, mopt, _ = compare_trajectories(torch, name, kwargs, grouped=True, steps=5)
    tsd, msd = topt.state_dict(), mopt.state_dict()
    assert sorted(msd["state"]) == sorted(tsd["state"])
    for idx, tstate in tsd["state"].items():
        assert set(msd["state"][idx]) == set(tstate)
        for key, tvalue in tstate.items():
            if key == "step":
                assert msd["state"][idx][key] == int(tvalue.item())
            else:
                np.testing.assert_allclose(msd["state"][idx][key], tvalue.numpy(),
                                           rtol=1e-10, atol=1e-14)
    assert len(msd["param_groups"]) == len(tsd["param_groups"])
    for mg, tg in zip(msd["param_groups"], tsd["param_groups"]):
        assert set(mg) <= set(tg)
        for key in mg:
            assert mg[key] == tg[key], key


def run_minidl(params, opt, x, y, steps, first_step, torch):
    """``steps`` optimizer steps with gradients taken (by torch) at the current parameters."""
    for step in range(first_step, first_step + steps):
        for p, g in zip(params, torch_grads(torch, [p.data for p in params], x, y, step)):
            p.grad = g
        opt.step()


@pytest.mark.parametrize("name,kwargs", FULL_FEATURED)
def test_state_dict_round_trip_resumes_training(torch, name, kwargs):
    """50 steps, save, restore into a fresh optimizer, 50 more == 100 uninterrupted."""
    init, x, y = make_problem()
    cls = getattr(optim, name)

    straight = [Parameter(a.copy()) for a in init]
    opt = cls(build_groups(straight, grouped=True), **kwargs)
    run_minidl(straight, opt, x, y, 100, 0, torch)

    first = [Parameter(a.copy()) for a in init]
    opt = cls(build_groups(first, grouped=True), **kwargs)
    run_minidl(first, opt, x, y, 50, 0, torch)
    saved = opt.state_dict()
    at_50 = [p.data.copy() for p in first]
    snapshot = {i: {k: np.copy(v) for k, v in s.items()} for i, s in saved["state"].items()}
    run_minidl(first, opt, x, y, 5, 50, torch)   # training on must not alter `saved`
    for i, s in saved["state"].items():
        for k, v in s.items():
            np.testing.assert_array_equal(v, snapshot[i][k])

    resumed = [Parameter(a) for a in at_50]
    fresh = cls(build_groups(resumed, grouped=True), lr=0.5)  # lr etc. come from the state
    fresh.load_state_dict(saved)
    assert fresh.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert fresh.param_groups[1]["lr"] == 0.02
    run_minidl(resumed, fresh, x, y, 50, 50, torch)
    for p, q in zip(resumed, straight):
        np.testing.assert_array_equal(p.data, q.data)


# -- validation -------------------------------------------------------------------------

BAD_HYPERPARAMETERS = [
    ("SGD", dict(lr=-0.1)),
    ("SGD", dict(momentum=-0.5)),
    ("SGD", dict(weight_decay=-1e-4)),
    ("SGD", dict(nesterov=True)),                                  # needs momentum > 0
    ("SGD", dict(momentum=0.9, dampening=0.1, nesterov=True)),     # needs dampening == 0
    ("Adam", dict(lr=-1e-3)),
    ("Adam", dict(eps=-1e-8)),
    ("Adam", dict(betas=(1.0, 0.999))),
    ("Adam", dict(betas=(0.9, -0.1))),
    ("Adam", dict(weight_decay=-0.1)),
    ("AdamW", dict(lr=-1e-3)),
    ("AdamW", dict(betas=(0.9, 1.5))),
    ("AdamW", dict(weight_decay=-0.1)),
    ("RMSprop", dict(lr=-1e-2)),
    ("RMSprop", dict(alpha=-0.5)),
    ("RMSprop", dict(eps=-1e-8)),
    ("RMSprop", dict(momentum=-0.9)),
    ("RMSprop", dict(weight_decay=-0.1)),
]


@pytest.mark.parametrize("name,kwargs", BAD_HYPERPARAMETERS, ids=str)
def test_invalid_hyperparameters_raise_like_torch(torch, name, kwargs):
    with pytest.raises(ValueError):
        getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)], **kwargs)
    with pytest.raises(ValueError, match=f"^{name}: "):
        getattr(optim, name)([Parameter(np.zeros(2))], **kwargs)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop"])
def test_invalid_hyperparameter_in_a_group_raises(name):
    good, bad = Parameter(np.zeros(2)), Parameter(np.zeros(3))
    with pytest.raises(ValueError, match=f"^{name}: expected lr to be"):
        getattr(optim, name)([{"params": [good]}, {"params": [bad], "lr": -1.0}])
    with pytest.raises(ValueError, match=f"^{name}: expected lr to be"):
        getattr(optim, name)([good], lr=float("nan"))
    with pytest.raises(ValueError, match=f"^{name}: unknown hyperparameters \\['learning_rate'\\]"):
        getattr(optim, name)([{"params": [good], "learning_rate": 0.1}])


@pytest.mark.parametrize("params,error,match", [
    ([], ValueError, "empty parameter list"),
    ([np.zeros(3)], TypeError, "can only optimize minidl Parameters"),
    ({Parameter(np.zeros(3))}, TypeError, "ordered iterable"),
    (Parameter(np.zeros(3)), TypeError, "ordered iterable"),
])
def test_invalid_params_raise(params, error, match):
    with pytest.raises(error, match=f"^SGD: .*{match}"):
        optim.SGD(params, lr=0.1)


def test_parameter_in_two_groups_raises():
    p = Parameter(np.zeros(3))
    with pytest.raises(ValueError, match="^Adam: .*twice"):
        optim.Adam([p, p])
    with pytest.raises(ValueError, match="^Adam: .*more than one group"):
        optim.Adam([{"params": [p]}, {"params": [p], "lr": 0.1}])


def test_gradient_of_wrong_shape_raises():
    p = Parameter(np.zeros((2, 3)))
    opt = optim.SGD([p], lr=0.1)
    p.grad = np.ones(3)     # would broadcast silently
    with pytest.raises(ValueError, match=r"^SGD.step: gradient of shape \(3,\) does not match"):
        opt.step()
    np.testing.assert_array_equal(p.data, 0.0)


# -- behaviour --------------------------------------------------------------------------

def test_zero_grad():
    a, b, c = Parameter(np.zeros(2)), Parameter(np.zeros(3)), Parameter(np.zeros(1))
    opt = optim.SGD([a, b, c], lr=0.1)
    a.grad, b.grad = np.ones(2), np.ones(3)
    grad_b = b.grad
    opt.zero_grad(set_to_none=False)
    assert b.grad is grad_b and np.all(b.grad == 0) and np.all(a.grad == 0) and c.grad is None
    opt.zero_grad()
    assert a.grad is None and b.grad is None and c.grad is None


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop"])
def test_parameter_without_grad_is_skipped(name):
    used, unused = Parameter(np.ones(3)), Parameter(np.ones(2))
    opt = getattr(optim, name)([used, unused], lr=0.1, weight_decay=0.1)
    used.grad = np.full(3, 0.5)
    opt.step()
    np.testing.assert_array_equal(unused.data, 1.0)
    assert unused not in opt.state or not opt.state[unused]
    assert np.all(used.data < 1.0)


def test_step_returns_closure_loss():
    p = Parameter(np.ones(2))
    opt = optim.Adam([p])

    def closure():
        p.grad = 2 * p.data
        return float(np.sum(p.data ** 2))

    assert opt.step(closure) == 2.0
    assert np.all(p.data < 1.0)


def test_repr_lists_groups():
    opt = optim.SGD([Parameter(np.zeros(2))], lr=0.1, momentum=0.9)
    text = repr(opt)
    assert text.startswith("SGD (\nParameter Group 0\n") and "    momentum: 0.9" in text


def _trained_adam():
    params = [Parameter(np.ones((2, 2))), Parameter(np.ones(2))]
    opt = optim.Adam(params, lr=0.1, amsgrad=True)
    for p in params:
        p.grad = np.full(p.shape, 0.3)
    opt.step()
    return params, opt


def test_load_state_dict_rejects_mismatched_optimizers():
    _, opt = _trained_adam()
    saved = opt.state_dict()

    one_group = optim.Adam([Parameter(np.ones((2, 2))), Parameter(np.ones(2))], amsgrad=True)
    two_groups = optim.Adam([{"params": [Parameter(np.ones((2, 2)))]},
                             {"params": [Parameter(np.ones(2))]}], amsgrad=True)
    with pytest.raises(ValueError, match="^Adam.load_state_dict: the state dict has 1 "
                                         "parameter groups, the optimizer has 2"):
        two_groups.load_state_dict(saved)

    three = optim.Adam([Parameter(np.ones((2, 2))), Parameter(np.ones(2)),
                        Parameter(np.ones(1))])
    with pytest.raises(ValueError, match="group 0 has 2 parameters in the state dict, 3 in"):
        three.load_state_dict(saved)

    swapped = optim.Adam([Parameter(np.ones(2)), Parameter(np.ones((2, 2)))], lr=0.5)
    with pytest.raises(ValueError, match=r"state 'exp_avg' of parameter 0 has shape \(2, 2\)"):
        swapped.load_state_dict(saved)
    assert swapped.param_groups[0]["lr"] == 0.5 and not swapped.state   # untouched

    with pytest.raises(ValueError, match="expected a dict with keys 'state' and 'param_groups'"):
        one_group.load_state_dict({"state": {}})
    one_group.load_state_dict(saved)
    assert one_group.param_groups[0]["lr"] == 0.1


def test_loaded_state_follows_parameter_dtype_and_is_a_copy():
    _, opt = _trained_adam()
    saved = opt.state_dict()
    params32 = [Parameter(np.ones((2, 2), np.float32)), Parameter(np.ones(2, np.float32))]
    opt32 = optim.Adam(params32, amsgrad=True)
    opt32.load_state_dict(saved)
    state = opt32.state[params32[0]]
    assert state["exp_avg"].dtype == np.float32 and state["step"] == 1
    state["exp_avg"] += 1
    assert np.all(saved["state"][0]["exp_avg"] != state["exp_avg"])
