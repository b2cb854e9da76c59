"""Optimizers, schedulers, ``fit``/``evaluate`` and ``minidl.save``/``load`` on the stand-in
device: the CPU path's results (float64), device arrays throughout, and the copies to the
host a training step makes, counted."""
from __future__ import annotations

import collections
import copy

import numpy as np
import pytest

import fakecupy
import minidl
from fakecupy.checks import assert_close, assert_model_on_device, host
from fakecupy.fixture import cuda_device  # noqa: F401 - the fixture
from minidl import nn, optim
from minidl.data import ArrayDataset
from minidl.train import evaluate, fit

OPTIMIZERS = {
    "sgd": lambda p: optim.SGD(p, lr=0.1),
    "sgd-momentum-nesterov-decay": lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True,
                                                       weight_decay=1e-3),
    "sgd-dampening": lambda p: optim.SGD(p, lr=0.05, momentum=0.8, dampening=0.3),
    "adam": lambda p: optim.Adam(p, lr=1e-2),
    "adam-amsgrad-decay": lambda p: optim.Adam(p, lr=1e-2, weight_decay=1e-2, amsgrad=True),
    "adamw": lambda p: optim.AdamW(p, lr=1e-2),
    "rmsprop": lambda p: optim.RMSprop(p, lr=1e-2),
    "rmsprop-centered-momentum": lambda p: optim.RMSprop(p, lr=1e-2, momentum=0.5,
                                                         centered=True, weight_decay=1e-3),
    "sgd-hd": lambda p: optim.SGDHD(p, lr=0.05, momentum=0.5, hypergrad_lr=1e-3),
    "adam-hd": lambda p: optim.AdamHD(p, lr=1e-2, hypergrad_lr=1e-4, weight_decay=1e-3),
}

SCHEDULERS = {
    "step": lambda o: optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5),
    "multistep": lambda o: optim.lr_scheduler.MultiStepLR(o, milestones=[1, 3], gamma=0.3),
    "exponential": lambda o: optim.lr_scheduler.ExponentialLR(o, gamma=0.9),
    "cosine": lambda o: optim.lr_scheduler.CosineAnnealingLR(o, T_max=4, eta_min=1e-4),
    "plateau": lambda o: optim.lr_scheduler.ReduceLROnPlateau(o, factor=0.5, patience=0),
}


def _model():
    # no bias before the batch norm: its gradient would be rounding noise, which Adam
    # scales up to whole steps (and the CPU's Numba kernels round otherwise than NumPy)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.25), nn.Linear(12, 4))


def _data(n=40, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return ArrayDataset(rng.standard_normal((n, 1, 4, 4)).astype(dtype), rng.integers(0, 4, n))


def _train_steps(model, optimizer, scheduler, data, steps):
    """``steps`` hand-written training steps; the losses (Python floats)."""
    loss_fn, losses = nn.CrossEntropyLoss(), []
    ref = next(model.parameters()).data
    for step in range(steps):
        minidl.manual_seed(step)
        xb = minidl.backend.asarray_like(data.x[8 * step:8 * step + 8], ref)
        optimizer.zero_grad()
        losses.append(loss_fn(model(xb), data.y[8 * step:8 * step + 8]))
        model.backward(loss_fn.backward())
        optimizer.step()
        if scheduler is not None:
            if isinstance(scheduler, optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(losses[-1])
            else:
                scheduler.step()
    return losses


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_trajectory_equals_cpu(cuda_device, name):
    data = _data()
    minidl.manual_seed(0)
    cpu = _model().double()
    gpu = copy.deepcopy(cpu).to("cuda")
    opt_c, opt_d = OPTIMIZERS[name](list(cpu.parameters())), OPTIMIZERS[name](list(gpu.parameters()))
    losses_c = _train_steps(cpu, opt_c, None, data, 5)
    losses_d = _train_steps(gpu, opt_d, None, data, 5)
    assert_close(losses_d, losses_c, f"{name}: losses")
    assert_model_on_device(gpu, opt_d)
    for (key, p_d), (_, p_c) in zip(gpu.named_parameters(), cpu.named_parameters()):
        assert_close(p_d.data, p_c.data, f"{name}: {key} after 5 steps")
    assert opt_d.param_groups[0]["lr"] == pytest.approx(opt_c.param_groups[0]["lr"], rel=1e-12)
    assert isinstance(opt_d.param_groups[0]["lr"], float)

    # a checkpoint of the device optimizer: host copies; loaded back, on the device again
    state = opt_d.state_dict()
    for per_param in state["state"].values():
        for value in per_param.values():
            assert not isinstance(value, fakecupy.ndarray)
    fresh = OPTIMIZERS[name](list(gpu.parameters()))
    fresh.load_state_dict(state)
    assert_model_on_device(gpu, fresh)
    _train_steps(gpu, fresh, None, data, 2)
    _train_steps(cpu, opt_c, None, data, 2)
    for (key, p_d), (_, p_c) in zip(gpu.named_parameters(), cpu.named_parameters()):
        assert_close(p_d.data, p_c.data, f"{name}: {key} after reloading the state")


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_scheduler_on_device_equals_cpu(cuda_device, name):
    data = _data()
    minidl.manual_seed(0)
    cpu = _model().double()
    gpu = copy.deepcopy(cpu).to("cuda")
    runs = []
    for model in (cpu, gpu):
        opt = optim.Adam(list(model.parameters()), lr=1e-2)
        sched = SCHEDULERS[name](opt)
        runs.append((_train_steps(model, opt, sched, data, 5), opt.param_groups[0]["lr"]))
    (losses_c, lr_c), (losses_d, lr_d) = runs
    assert_close(losses_d, losses_c, f"{name}: losses")
    assert type(lr_d) is float and lr_d == pytest.approx(lr_c, rel=1e-12)
    assert_model_on_device(gpu)


def _host_copies(transfers):
    """``{(what, file): count}`` of the copies to the host (line numbers dropped)."""
    return dict(collections.Counter((what, where.rsplit(":", 1)[0])
                                    for what, where in ((e[1], e[2]) for e in transfers.to_host())))


@pytest.mark.parametrize("name", ["adam", "sgd-hd", "adam-hd"])
def test_fit_and_evaluate_equal_cpu_with_one_host_copy_per_step(cuda_device, name):
    train, val = _data(40, 0), _data(24, 1)
    minidl.manual_seed(0)
    cpu = _model().double()
    gpu = copy.deepcopy(cpu).to("cuda")
    histories = []
    for model in (cpu, gpu):
        opt = OPTIMIZERS[name](list(model.parameters()))
        sched = optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        with fakecupy.counting() as transfers:
            history = fit(model, nn.CrossEntropyLoss(), opt, train, val, epochs=2, batch_size=8,
                          scheduler=sched, eval_batch_size=10, progress=False, seed=3)
        histories.append((history, transfers, opt))
    (h_c, t_c, _), (h_d, t_d, opt_d) = histories
    assert t_c.events == []                                   # the CPU path moves nothing
    for rec_c, rec_d in zip(h_c.epochs, h_d.epochs):
        for key in ("train_loss", "val_loss", "val_accuracy", "lr"):
            assert type(rec_d[key]) is float
            assert_close(rec_d[key], rec_c[key], f"epoch {rec_c['epoch']} {key}")
    assert_model_on_device(gpu, opt_d)

    # 2 epochs x 5 steps; validation: 3 batches of <= 10 images per epoch
    steps, eval_batches = 2 * 5, 2 * 3
    expected = {("float()", "minidl/kernels/loss.py"): steps + eval_batches,   # each loss
                ("int()", "minidl/train.py"): 2}                 # correct answers per epoch
    if name == "sgd-hd":      # the adapted rate, one dot product a step
        expected[("float()", "minidl/optim/hypergradient.py")] = steps
    if name == "adam-hd":     # the adapted rate, read once a step from the second on
        expected[("float()", "minidl/optim/hypergradient.py")] = steps - 1
    assert _host_copies(t_d) == expected
    # uploads: each batch's images and labels, and the one dropout mask of a step
    uploads = collections.Counter(e[2].rsplit(":", 1)[0] for e in t_d.to_device())
    assert uploads == {"minidl/train.py": steps + 2 * eval_batches,
                       "minidl/nn/loss.py": steps + eval_batches,
                       "minidl/nn/dropout.py": steps}

    scores_c, scores_d = evaluate(cpu, val, batch_size=7), evaluate(gpu, val, batch_size=7)
    for key in ("loss", "accuracy", "error"):
        assert_close(scores_d[key], scores_c[key], f"evaluate {key}")


def test_device_batches_and_float32(cuda_device):
    """A dataset already on the device, float32: fit runs and stays on the device (the
    labels are checked where they are: one bool read more per step)."""
    data = _data(32, 0, np.float32)
    dev = ArrayDataset(cuda_device.asarray(data.x), cuda_device.asarray(data.y))
    minidl.manual_seed(0)
    model = _model().to("cuda")
    opt = optim.Adam(list(model.parameters()), lr=1e-2)
    with fakecupy.counting() as transfers:
        history = fit(model, nn.CrossEntropyLoss(), opt, dev, dev, epochs=1, batch_size=8,
                      progress=False)
    assert len(history) == 1 and np.isfinite(history.epochs[0]["train_loss"])
    assert_model_on_device(model, opt)
    assert all(p.dtype == np.float32 for p in model.parameters())
    copies = _host_copies(transfers)
    assert copies[("bool()", "minidl/nn/loss.py")] == 4 + 1     # 4 steps, 1 validation batch
    assert copies[("float()", "minidl/kernels/loss.py")] == 4 + 1


def test_save_and_load_device_weights(cuda_device, tmp_path):
    minidl.manual_seed(0)
    cpu = _model().double()
    gpu = copy.deepcopy(cpu).to("cuda")
    data = _data()
    for model in (cpu, gpu):      # move the batch-norm statistics away from their start
        _train_steps(model, optim.SGD(list(model.parameters()), lr=0.1), None, data, 2)
    n_entries = len(gpu.state_dict())
    with fakecupy.counting() as transfers:
        path = minidl.save(gpu, tmp_path / "weights", note="device")
    assert transfers.to_device() == []
    assert len(transfers.to_host()) == n_entries        # one copy per state_dict entry
    on_cpu = _model().double()
    assert minidl.load(on_cpu, path) == {"note": "device"}
    for (key, a), (_, b) in zip(on_cpu.state_dict().items(), cpu.state_dict().items()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=key)

    into_device = _model().double().to("cuda")
    minidl.load(into_device, path)
    assert_model_on_device(into_device)
    x = data.x[:5]
    for model in (into_device, gpu, cpu):
        model.eval()
    out = into_device(cuda_device.asarray(x))
    assert_close(out, cpu(x), "output of the reloaded device model")
    assert_close(gpu(cuda_device.asarray(x)), cpu(x), "output of the saved device model")
    assert host(out).shape == (5, 4)


def test_summary_of_a_device_model(cuda_device):
    minidl.manual_seed(0)
    cpu = _model()
    gpu = copy.deepcopy(cpu).to("cuda")
    with fakecupy.counting() as transfers:
        text = str(minidl.summary(gpu, (2, 1, 4, 4)))
    assert text == str(minidl.summary(cpu, (2, 1, 4, 4)))
    assert transfers.to_host() == [] and len(transfers.to_device()) == 1   # the probe input
