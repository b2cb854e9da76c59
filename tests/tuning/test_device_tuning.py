"""A tuning trial of every space, ``tuning run --device cuda``, ``tuning retrain --device cuda``
and ``load_model``, on the stand-in device: the CPU path's numbers.

The spaces build float32 models; the device runs every kernel's array-module reference, so
the CPU side runs its references too (``reference_kernels``): the same math, compared at
the float64 tolerance of the other device tests.
"""
from __future__ import annotations

import numpy as np
import optuna
import pytest

import fakecupy
import minidl
from fakecupy.checks import RTOL, assert_model_on_device
from fakecupy.fixture import cuda_device  # noqa: F401 - the fixture
from minidl.data import ArrayDataset
from minidl.kernels import reference_kernels
from tuning.objective import Objective
from tuning.spaces import SPACES

# one configuration per space beyond its defaults, reaching what the defaults leave out
VARIANTS = {
    "lab-mlp": {"optimizer": "SGD"},
    "mlp": {"n_layers": 3, "activation": "LeakyReLU", "optimizer": "Adam", "hypergradient": True,
            "lr_schedule": "cosine"},
    "cnn": {"n_conv": 2, "filters_l0": 8, "filters_l1": 16, "kernel_l1": 5, "batch_norm": True,
            "convs_per_block": 2, "pool_type": "avg", "dense_size": 32, "optimizer": "SGD",
            "hypergradient": True, "augment_strength": 0.5, "lr_schedule": "step"},
    "rnn": {"cell": "GRU", "n_layers": 2, "hidden_l0": 16, "hidden_l1": 16,
            "bidirectional": True, "seq_len": 14},
}


def _data(n, seed):
    rng = np.random.default_rng(seed)
    return ArrayDataset(rng.standard_normal((n, 1, 28, 28)).astype(np.float32),
                        rng.integers(0, 10, n))


def _trial_params(space, variant):
    params = dict(SPACES[space].defaults)
    if variant:
        params.update({k: v for k, v in VARIANTS[space].items() if k in params})
    params["batch_size"] = 32
    return params


def _run_trial(space, params, device, train, val):
    trial = optuna.trial.FixedTrial(params)
    value = Objective(train, val, epochs=2, space=space, seed=5, device=device)(trial)
    return value, trial.user_attrs["curve"], trial.user_attrs["n_params"]


@pytest.mark.parametrize("variant", [False, True], ids=["defaults", "variant"])
@pytest.mark.parametrize("space", list(SPACES))
def test_trial_of_every_space_on_device_equals_cpu(cuda_device, space, variant):
    train, val = _data(64, 0), _data(32, 1)
    params = _trial_params(space, variant)
    with reference_kernels():
        value_c, curve_c, n_c = _run_trial(space, params, "cpu", train, val)
    with fakecupy.counting() as transfers:
        value_d, curve_d, n_d = _run_trial(space, params, "cuda", train, val)
    assert n_d == n_c and value_d == pytest.approx(value_c, rel=RTOL, abs=1e-12)
    assert len(curve_d) == len(curve_c) == 2
    for rec_d, rec_c in zip(curve_d, curve_c):
        for key in ("train_loss", "val_loss", "val_error", "lr", "lr_end"):
            assert rec_d[key] == pytest.approx(rec_c[key], rel=RTOL, abs=1e-12), key
    # 2 epochs of 2 steps, 1 validation batch each: one loss per step and per validation
    # batch, the correct answers once per epoch, and the hypergradient optimizers' rate
    expected = {("float()", "minidl/kernels/loss.py"): 4 + 2, ("int()", "minidl/train.py"): 2}
    config = SPACES[space].function(optuna.trial.FixedTrial(params))
    if config["optimizer"] in ("Adam-HD", "SGD-HD"):
        expected[("float()", "minidl/optim/hypergradient.py")] = \
            4 if config["optimizer"] == "SGD-HD" else 3
    copies = {}
    for _, what, where in transfers.to_host():
        key = (what, where.rsplit(":", 1)[0])
        copies[key] = copies.get(key, 0) + 1
    assert copies == expected


def _cli(cli, *argv):
    status, out, err = cli(*argv)
    assert status == 0, out + err
    return out


@pytest.mark.usefixtures("fashion_mnist")
@pytest.mark.parametrize("space", list(SPACES))
def test_tuning_run_device_cuda(cuda_device, cli, space):
    tiny = ["--epochs", "1", "--train-size", "64", "--val-size", "32", "--seed", "2",
            "--n-trials", "1", "--pruner", "none", "--quiet"]
    with reference_kernels():
        _cli(cli, "run", "--space", space, "--study-name", "cpu", *tiny)
    with fakecupy.counting() as transfers:
        _cli(cli, "run", "--space", space, "--study-name", "gpu", "--device", "cuda", *tiny)
    assert transfers.to_host()
    studies = {}
    for name in ("cpu", "gpu"):
        storage = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(f"studies/{name}.log"))
        studies[name] = optuna.load_study(study_name=name, storage=storage).trials[0]
    cpu, gpu = studies["cpu"], studies["gpu"]
    assert gpu.state == cpu.state == optuna.trial.TrialState.COMPLETE
    assert gpu.params == cpu.params
    assert gpu.value == pytest.approx(cpu.value, rel=RTOL, abs=1e-12)
    for rec_d, rec_c in zip(gpu.user_attrs["curve"], cpu.user_attrs["curve"]):
        assert rec_d["train_loss"] == pytest.approx(rec_c["train_loss"], rel=RTOL)


@pytest.mark.usefixtures("fashion_mnist")
def test_retrain_device_cuda_and_load_model(cuda_device, tmp_path):
    from tuning import load_model
    from tuning.retrain import retrain_params

    params = {"n_conv": 1, "filters_l0": 8, "dense_size": 32, "batch_norm": True}
    results = {}
    for device in ("cpu", "cuda"):
        with reference_kernels(), fakecupy.counting() as transfers:
            results[device] = retrain_params("cnn", params, tmp_path / device, epochs=1,
                                             train_size=64, device=device)
        assert bool(transfers.events) == (device == "cuda")
    for key in ("test_accuracy", "test_loss", "final_train_loss"):
        assert results["cuda"][key] == pytest.approx(results["cpu"][key], rel=RTOL,
                                                     abs=1e-12), key
    assert results["cuda"]["confusion_matrix"] == results["cpu"]["confusion_matrix"]

    model_c, model_d = load_model(tmp_path / "cpu"), load_model(tmp_path / "cuda")
    for (key, a), (_, b) in zip(model_d.state_dict().items(), model_c.state_dict().items()):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=1e-12, err_msg=key)
    model_d.to("cuda")
    assert_model_on_device(model_d)
    x = _data(8, 3).x
    with reference_kernels():
        expected = model_c(x)
        got = model_d(cuda_device.asarray(x))
    np.testing.assert_allclose(minidl.backend.to_numpy(got), expected, rtol=RTOL, atol=1e-12)
