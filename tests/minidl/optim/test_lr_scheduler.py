"""Learning-rate schedules: the same sequence of rates as torch.optim.lr_scheduler, bit for bit.

Every scheduler is driven side by side with torch's over an optimizer with two parameter
groups (different initial rates); after construction and after every step the rates
from ``get_last_lr()`` and in ``param_groups`` must be equal to torch's exactly, since
both evaluate the same recursion on Python floats.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from minidl import optim
from minidl.nn import Parameter
from minidl.optim import lr_scheduler

GROUP_LRS = (0.1, 0.03)


def make_optimizers(torch):
    tparams = [torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)]
    topt = torch.optim.SGD([{"params": [tparams[0]], "lr": GROUP_LRS[0]},
                            {"params": [tparams[1]], "lr": GROUP_LRS[1]}])
    mopt = optim.SGD([{"params": [Parameter(np.zeros(2))], "lr": GROUP_LRS[0]},
                      {"params": [Parameter(np.zeros(3))], "lr": GROUP_LRS[1]}])
    return topt, mopt


def lrs_of(opt):
    return [group["lr"] for group in opt.param_groups]


def step_both(tsched, msched, topt, mopt, steps, metrics=None):
    """Step both schedulers ``steps`` times; return the rate sequences (minidl, torch)."""
    mine, theirs = [], []
    for i in range(steps):
        topt.step()            # torch warns when the scheduler steps before the optimizer
        mopt.step()
        if metrics is None:
            tsched.step()
            msched.step()
        else:
            tsched.step(metrics[i])
            msched.step(metrics[i])
        theirs.append(tsched.get_last_lr())
        mine.append(msched.get_last_lr())
        assert lrs_of(mopt) == mine[-1]
        assert lrs_of(topt) == theirs[-1]
    return mine, theirs


SCHEDULES = [
    ("StepLR", dict(step_size=3, gamma=0.5)),
    ("StepLR", dict(step_size=1)),
    ("MultiStepLR", dict(milestones=[2, 5, 5, 9], gamma=0.3)),
    ("MultiStepLR", dict(milestones=[11, 4])),
    ("ExponentialLR", dict(gamma=0.9)),
    ("CosineAnnealingLR", dict(T_max=10)),
    ("CosineAnnealingLR", dict(T_max=7, eta_min=0.01)),
    ("CosineAnnealingLR", dict(T_max=1, eta_min=0.005)),
]


@pytest.mark.parametrize("name,kwargs", SCHEDULES, ids=str)
def test_schedule_matches_torch(torch, name, kwargs):
    topt, mopt = make_optimizers(torch)
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **kwargs)
    msched = getattr(lr_scheduler, name)(mopt, **kwargs)
    assert msched.get_last_lr() == tsched.get_last_lr() == list(GROUP_LRS)
    assert msched.last_epoch == tsched.last_epoch == 0
    mine, theirs = step_both(tsched, msched, topt, mopt, 40)
    assert mine == theirs
    assert msched.last_epoch == tsched.last_epoch == 40
    assert len({tuple(lrs) for lrs in mine}) > 1, "the schedule never changed the rate"


@pytest.mark.parametrize("name,kwargs", SCHEDULES, ids=str)
def test_resumed_schedule_matches_torch(torch, name, kwargs):
    """``last_epoch >= 0`` continues from the groups' ``initial_lr`` and current ``lr``."""
    topt, mopt = make_optimizers(torch)
    step_both(getattr(torch.optim.lr_scheduler, name)(topt, **kwargs),
              getattr(lr_scheduler, name)(mopt, **kwargs), topt, mopt, 6)
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, last_epoch=6, **kwargs)
    msched = getattr(lr_scheduler, name)(mopt, last_epoch=6, **kwargs)
    assert msched.get_last_lr() == tsched.get_last_lr()
    assert msched.last_epoch == tsched.last_epoch == 7
    mine, theirs = step_both(tsched, msched, topt, mopt, 20)
    assert mine == theirs


def test_cosine_recursion_follows_the_closed_form(torch):
    """The recursive rates (torch's get_last_lr) agree with the closed form up to rounding."""
    topt, mopt = make_optimizers(torch)
    T, eta_min = 12, 0.002
    msched = lr_scheduler.CosineAnnealingLR(mopt, T_max=T, eta_min=eta_min)
    for t in range(1, 3 * T):
        mopt.step()
        msched.step()
        for lr, base in zip(msched.get_last_lr(), GROUP_LRS):
            closed = eta_min + (base - eta_min) * (1 + math.cos(math.pi * t / T)) / 2
            assert lr == pytest.approx(closed, rel=1e-12, abs=1e-15)


# -- ReduceLROnPlateau ------------------------------------------------------------------

def plateau_metrics():
    """Falls, stalls with noise (some changes below the 1e-4 relative threshold), falls again."""
    rng = np.random.default_rng(7)
    falling = np.linspace(1.0, 0.5, 8)
    flat = 0.5 + rng.normal(0, 2e-5, 15)
    again = np.linspace(0.49, 0.3, 6)
    flat2 = np.full(12, 0.3) + rng.normal(0, 0.02, 12)
    return [float(v) for v in np.concatenate([falling, flat, again, flat2])]


PLATEAU_CONFIGS = [
    dict(),
    dict(patience=0),
    dict(patience=2, factor=0.5),
    dict(patience=1, cooldown=3, factor=0.5),
    dict(patience=1, threshold=1e-2, threshold_mode="abs"),
    dict(patience=1, threshold=0.05, factor=0.5),
    dict(mode="max", patience=2, factor=0.5),
    dict(mode="max", patience=1, threshold=1e-2, threshold_mode="abs"),
    dict(patience=0, factor=0.5, min_lr=0.01),
    dict(patience=0, factor=0.5, min_lr=[0.02, 0.001]),
    dict(patience=0, factor=0.9, eps=0.005),
]


@pytest.mark.parametrize("kwargs", PLATEAU_CONFIGS, ids=str)
def test_reduce_lr_on_plateau_matches_torch(torch, kwargs):
    metrics = plateau_metrics()
    if kwargs.get("mode") == "max":
        metrics = [-m for m in metrics]
    topt, mopt = make_optimizers(torch)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kwargs)
    msched = lr_scheduler.ReduceLROnPlateau(mopt, **kwargs)
    assert msched.get_last_lr() == tsched.get_last_lr() == list(GROUP_LRS)
    mine, theirs = step_both(tsched, msched, topt, mopt, len(metrics), metrics)
    assert mine == theirs
    assert msched.num_bad_epochs == tsched.num_bad_epochs
    assert msched.best == tsched.best
    if not kwargs:   # patience 10: the long plateau must trigger a reduction
        assert mine[-1] != list(GROUP_LRS)


def test_reduce_lr_on_plateau_accepts_numpy_and_torch_scalars(torch):
    _, mopt = make_optimizers(torch)
    sched = lr_scheduler.ReduceLROnPlateau(mopt, patience=0)
    sched.step(np.float32(1.0))
    sched.step(torch.tensor(2.0))
    sched.step(np.array(3.0))
    assert sched.get_last_lr() == [lr * 0.1 * 0.1 for lr in GROUP_LRS]
    with pytest.raises(ValueError, match="^ReduceLROnPlateau.step: expected the metric"):
        sched.step("low")


def test_nan_metric_counts_as_bad_epoch(torch):
    topt, mopt = make_optimizers(torch)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, patience=1)
    msched = lr_scheduler.ReduceLROnPlateau(mopt, patience=1)
    mine, theirs = step_both(tsched, msched, topt, mopt, 4, [1.0, math.nan, math.nan, 0.5])
    assert mine == theirs and mine[-1] != list(GROUP_LRS)


# -- state dicts --------------------------------------------------------------------------

def build(name, kwargs, opt):
    return getattr(lr_scheduler, name)(opt, **kwargs)


@pytest.mark.parametrize("name,kwargs", SCHEDULES + [
    ("ReduceLROnPlateau", dict(patience=1, cooldown=2, factor=0.5))], ids=str)
def test_state_dict_round_trip_resumes_schedule(torch, name, kwargs):
    """Save optimizer + scheduler after 9 steps, restore into fresh ones: same rates after."""
    metrics = plateau_metrics()
    _, opt = make_optimizers(torch)
    sched = build(name, kwargs, opt)
    uninterrupted = []
    for i in range(30):
        sched.step(metrics[i]) if name == "ReduceLROnPlateau" else sched.step()
        uninterrupted.append(sched.get_last_lr())

    _, opt = make_optimizers(torch)
    sched = build(name, kwargs, opt)
    for i in range(9):
        sched.step(metrics[i]) if name == "ReduceLROnPlateau" else sched.step()
    opt_state, sched_state = opt.state_dict(), sched.state_dict()
    assert "optimizer" not in sched_state

    _, fresh_opt = make_optimizers(torch)
    fresh = build(name, kwargs, fresh_opt)         # torch's order: scheduler, then loads
    fresh_opt.load_state_dict(opt_state)
    fresh.load_state_dict(sched_state)
    resumed = uninterrupted[:9]
    for i in range(9, 30):
        fresh.step(metrics[i]) if name == "ReduceLROnPlateau" else fresh.step()
        resumed.append(fresh.get_last_lr())
    assert resumed == uninterrupted


def test_load_state_dict_rejects_other_schedulers(torch):
    _, opt = make_optimizers(torch)
    step = lr_scheduler.StepLR(opt, step_size=2)
    plateau = lr_scheduler.ReduceLROnPlateau(opt)
    with pytest.raises(ValueError, match=r"^StepLR.load_state_dict: unexpected keys \["):
        step.load_state_dict(plateau.state_dict())
    with pytest.raises(TypeError, match="^StepLR.load_state_dict: expected a dict"):
        step.load_state_dict([("last_epoch", 3)])


def test_get_last_lr_is_a_copy(torch):
    _, opt = make_optimizers(torch)
    sched = lr_scheduler.ExponentialLR(opt, gamma=0.5)
    sched.get_last_lr()[0] = 123.0
    assert sched.get_last_lr() == list(GROUP_LRS)


def test_schedule_drives_the_optimizer_like_torch(torch):
    """SGD + StepLR on a quadratic: the parameters follow torch's (the rate is really used)."""
    target = np.array([1.0, -2.0, 0.5])
    tp = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    mp = Parameter(np.zeros(3))
    topt = torch.optim.SGD([tp], lr=0.2, momentum=0.5)
    mopt = optim.SGD([mp], lr=0.2, momentum=0.5)
    tsched = torch.optim.lr_scheduler.StepLR(topt, step_size=4, gamma=0.5)
    msched = lr_scheduler.StepLR(mopt, step_size=4, gamma=0.5)
    for _ in range(30):
        topt.zero_grad()
        ((tp - torch.from_numpy(target)) ** 2).sum().backward()
        mp.grad = tp.grad.numpy().copy()
        topt.step()
        mopt.step()
        tsched.step()
        msched.step()
        np.testing.assert_allclose(mp.data, tp.detach().numpy(), rtol=1e-10, atol=1e-12)


# -- validation -----------------------------------------------------------------------------

@pytest.mark.parametrize("name,kwargs,error,match", [   # a wrong type: TypeError
    ("StepLR", dict(step_size=0), ValueError, "step_size to be a positive int"),
    ("StepLR", dict(step_size=2.5), TypeError, "step_size to be a positive int"),
    ("StepLR", dict(step_size=2, gamma="0.1"), TypeError, "gamma to be a number"),
    ("MultiStepLR", dict(milestones=3), TypeError, "milestones to be an iterable"),
    ("MultiStepLR", dict(milestones=[1.5]), TypeError, "milestones to be ints"),
    ("ExponentialLR", dict(gamma=None), TypeError, "gamma to be a number"),
    ("CosineAnnealingLR", dict(T_max=0), ValueError, "T_max to be a positive int"),
    ("CosineAnnealingLR", dict(T_max=5, eta_min=-1.0), ValueError, "eta_min to be a number >= 0"),
    ("CosineAnnealingLR", dict(T_max=5, last_epoch=-2), ValueError, "last_epoch to be an int >= -1"),
    ("ReduceLROnPlateau", dict(mode="avg"), ValueError, "mode 'min' or 'max'"),
    ("ReduceLROnPlateau", dict(threshold_mode="pct"), ValueError, "threshold_mode 'rel' or 'abs'"),
    ("ReduceLROnPlateau", dict(factor=1.0), ValueError, r"factor to be a number in \[0, 1\)"),
    ("ReduceLROnPlateau", dict(patience=-1), ValueError, "patience to be a non-negative int"),
    ("ReduceLROnPlateau", dict(cooldown=1.5), TypeError, "cooldown to be a non-negative int"),
    ("ReduceLROnPlateau", dict(min_lr=[0.0]), ValueError, "2 min_lr values"),
    ("ReduceLROnPlateau", dict(min_lr=-0.1), ValueError, "min_lr to be a number >= 0"),
])
def test_invalid_arguments_raise(torch, name, kwargs, error, match):
    _, opt = make_optimizers(torch)
    with pytest.raises(error, match=f"^{name}: expected {match}"):
        getattr(lr_scheduler, name)(opt, **kwargs)


def test_resume_without_initial_lr_raises(torch):
    _, opt = make_optimizers(torch)
    with pytest.raises(ValueError, match=r"^StepLR: resuming at last_epoch=3 needs "
                                         r"'initial_lr' in param_groups\[0\]"):
        lr_scheduler.StepLR(opt, step_size=2, last_epoch=3)


def test_scheduler_needs_a_minidl_optimizer(torch):
    topt, _ = make_optimizers(torch)
    with pytest.raises(TypeError, match="^ExponentialLR: expected a minidl Optimizer, got SGD"):
        lr_scheduler.ExponentialLR(topt, gamma=0.9)
    with pytest.raises(TypeError, match="^ReduceLROnPlateau: expected a minidl Optimizer"):
        lr_scheduler.ReduceLROnPlateau(object())
