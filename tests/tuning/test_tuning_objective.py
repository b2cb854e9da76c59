"""The Objective on real Fashion-MNIST subsets: FixedTrial per space, pruning, divergence."""
from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from minidl.data import FASHION_MNIST_MEAN, FASHION_MNIST_STD, ArrayDataset, prepare
from tuning import objective as objective_module
from tuning import spaces
from tuning.models import build_model
from tuning.objective import Objective

optuna.logging.set_verbosity(optuna.logging.ERROR)

# Small configurations: the objective's behaviour is the same at any size.
SMALL = {
    "lab-mlp": {"hidden_size": 64, "dropout_rate": 0.1, "learn_rate": 3e-3,
                "optimizer": "Adam", "batch_size": 32},
    "mlp": {"n_layers": 2, "hidden_l0": 64, "hidden_l1": 32, "activation": "LeakyReLU",
            "dropout_rate": 0.1, "learn_rate": 3e-3, "optimizer": "RMSprop", "batch_size": 32,
            "weight_decay": 1e-5, "lr_schedule": "cosine"},
    "cnn": {"n_conv": 1, "filters_l0": 8, "kernel_l0": 3, "pool_type": "max",
            "pool_kernel": 2, "dense_size": 32, "dropout_rate": 0.1, "learn_rate": 0.05,
            "optimizer": "SGD", "batch_size": 32, "weight_decay": 1e-5, "lr_schedule": "step",
            "augment_strength": 0.5},
    "rnn": {"cell": "GRU", "n_layers": 1, "hidden_l0": 32, "bidirectional": True,
            "seq_len": 14, "dropout_rate": 0.0, "clip_norm": 5.0, "learn_rate": 1e-2,
            "optimizer": "Adam", "batch_size": 32, "weight_decay": 1e-5, "lr_schedule": "none"},
}


@pytest.fixture(scope="module")
def small_data(fashion_mnist):
    tx, ty = fashion_mnist.train_images, fashion_mnist.train_labels
    train = prepare(tx[:600], ty[:600], FASHION_MNIST_MEAN, FASHION_MNIST_STD)
    val = prepare(tx[600:900], ty[600:900], FASHION_MNIST_MEAN, FASHION_MNIST_STD)
    return train, val


@pytest.mark.parametrize("space", sorted(SMALL))
def test_objective_with_fixed_trial(space, small_data):
    train, val = small_data
    epochs = 2
    trial = optuna.trial.FixedTrial(SMALL[space], number=4)
    value = Objective(train, val, epochs=epochs, space=space, seed=1)(trial)
    attrs = trial.user_attrs
    assert attrs["stop_reason"] == "completed"
    assert [r["epoch"] for r in attrs["curve"]] == [1, 2]
    assert value == attrs["curve"][-1]["val_error"]
    assert 0.0 <= value < 0.6  # 10 classes: chance is 0.9; two epochs on 600 images learn
    assert attrs["n_params"] == build_model(attrs["config"]).num_parameters()
    assert attrs["seconds"] > 0
    if space == "mlp":  # cosine schedule: the second epoch runs at a lower rate
        assert attrs["curve"][1]["lr"] < attrs["curve"][0]["lr"]
    # Same trial number and seed: the same value, bit for bit.
    again = Objective(train, val, epochs=epochs, space=space, seed=1)(
        optuna.trial.FixedTrial(SMALL[space], number=4))
    assert again == value


def test_huge_learning_rate_ends_pruned_with_reason(small_data):
    train, val = small_data
    trial = optuna.trial.FixedTrial({**SMALL["lab-mlp"], "optimizer": "SGD",
                                     "learn_rate": 1e6})
    with pytest.raises(optuna.TrialPruned, match="diverged"), \
            pytest.warns(UserWarning, match="learn_rate.*out of the range"):
        Objective(train, val, epochs=2, space="lab-mlp")(trial)
    assert trial.user_attrs["stop_reason"].startswith("diverged: non-finite training loss")
    assert trial.user_attrs["curve"] == []


def test_non_finite_validation_loss_ends_pruned(small_data):
    train, val = small_data
    x = val.x.copy()
    x[0] = np.inf  # a finite training run whose validation pass blows up
    bad_val = ArrayDataset(x, val.y)
    trial = optuna.trial.FixedTrial(SMALL["lab-mlp"])
    with pytest.raises(optuna.TrialPruned, match="diverged: validation loss"):
        Objective(train, bad_val, epochs=2, space="lab-mlp")(trial)
    assert trial.user_attrs["stop_reason"] == "diverged: validation loss nan at epoch 1"


class _PruneAfterFirstReport(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return len(trial.intermediate_values) >= 1


def test_reports_every_epoch_and_obeys_the_pruner(small_data):
    train, val = small_data
    study = optuna.create_study(pruner=_PruneAfterFirstReport())
    study.enqueue_trial(SMALL["lab-mlp"])
    study.optimize(Objective(train, val, epochs=3, space="lab-mlp"), n_trials=1)
    t = study.trials[0]
    assert t.state == TrialState.PRUNED
    assert list(t.intermediate_values) == [1]
    assert t.user_attrs["stop_reason"].startswith("pruned at epoch 1")
    assert len(t.user_attrs["curve"]) == 1

    study = optuna.create_study(pruner=optuna.pruners.NopPruner())
    study.enqueue_trial(SMALL["lab-mlp"])
    study.optimize(Objective(train, val, epochs=3, space="lab-mlp"), n_trials=1)
    t = study.trials[0]
    assert t.state == TrialState.COMPLETE
    assert list(t.intermediate_values) == [1, 2, 3]
    assert t.intermediate_values[3] == t.value


def test_other_exceptions_are_recorded_and_the_study_goes_on(small_data, monkeypatch):
    train, val = small_data
    calls = []
    real_build = objective_module.build_model

    def flaky_build(config):
        calls.append(config)
        if len(calls) == 1:
            raise RuntimeError("out of memory (simulated)")
        return real_build(config)

    monkeypatch.setattr(objective_module, "build_model", flaky_build)
    study = optuna.create_study()
    study.enqueue_trial(SMALL["lab-mlp"])
    study.enqueue_trial(SMALL["lab-mlp"])
    study.optimize(Objective(train, val, epochs=1, space="lab-mlp"), n_trials=2,
                   catch=(Exception,))
    failed, ok = study.trials
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["stop_reason"] == "error: RuntimeError: out of memory (simulated)"
    assert "RuntimeError" in failed.user_attrs["traceback"]
    assert ok.state == TrialState.COMPLETE and math.isfinite(ok.value)
    assert study.best_trial.number == 1


def test_objective_rejects_bad_arguments(small_data):
    train, val = small_data
    with pytest.raises(ValueError, match="epochs"):
        Objective(train, val, epochs=0)
    with pytest.raises(ValueError, match="unknown search space 'transformer'"):
        Objective(train, val, epochs=1, space="transformer")


def test_every_space_is_covered():
    assert sorted(SMALL) == sorted(spaces.SPACES)


# -- hypergradient optimizers (issue 15) ----------------------------------------------------

HD_MLP = {**SMALL["mlp"], "optimizer": "SGD", "learn_rate": 0.01, "lr_schedule": "none",
          "hypergradient": True, "hypergrad_lr": 1e-3}


def test_make_optimizer_builds_the_hd_optimizers():
    from minidl import nn, optim
    params = list(nn.Linear(3, 2).parameters())
    sgd = objective_module.make_optimizer(
        {"optimizer": "SGD-HD", "learn_rate": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
         "hypergrad_lr": 1e-3}, params)
    assert isinstance(sgd, optim.SGDHD)
    assert sgd.param_groups[0]["momentum"] == 0.9 and sgd.param_groups[0]["hypergrad_lr"] == 1e-3
    adam = objective_module.make_optimizer(
        {"optimizer": "Adam-HD", "learn_rate": 1e-3, "hypergrad_lr": 1e-7}, params)
    assert isinstance(adam, optim.AdamHD) and adam.param_groups[0]["hypergrad_lr"] == 1e-7
    with pytest.raises(ValueError, match="Adam-HD needs config\\['hypergrad_lr'\\]"):
        objective_module.make_optimizer({"optimizer": "Adam-HD", "learn_rate": 1e-3}, params)
    with pytest.raises(ValueError, match="unknown optimizer 'Adagrad'.*SGD-HD"):
        objective_module.make_optimizer({"optimizer": "Adagrad", "learn_rate": 1e-3}, params)


def test_the_curve_holds_each_epochs_adapted_learning_rate(small_data):
    train, val = small_data
    trial = optuna.trial.FixedTrial(HD_MLP, number=0)
    Objective(train, val, epochs=3, space="mlp", seed=0)(trial)
    config, curve = trial.user_attrs["config"], trial.user_attrs["curve"]
    assert config["optimizer"] == "SGD-HD" and config["hypergrad_lr"] == 1e-3
    assert trial.user_attrs["stop_reason"] == "completed"
    assert curve[0]["lr"] == 0.01                          # the initial rate
    # no schedule: an epoch starts with the rate the previous one ended with ...
    assert [r["lr"] for r in curve[1:]] == [r["lr_end"] for r in curve[:-1]]
    # ... and the hypergradient moved it during every epoch
    assert all(r["lr_end"] != r["lr"] for r in curve)

    plain = optuna.trial.FixedTrial({**HD_MLP, "hypergradient": False}, number=0)
    Objective(train, val, epochs=2, space="mlp", seed=0)(plain)
    assert plain.user_attrs["config"]["optimizer"] == "SGD"
    assert all(r["lr"] == r["lr_end"] == 0.01 for r in plain.user_attrs["curve"])


def test_every_command_handles_a_hypergradient_configuration(cli, fashion_mnist):
    """enqueue -> run -> worker -> best -> trials -> retrain on an SGD-HD configuration."""
    import json
    data = ["--study-name", "hd", "--space", "mlp", "--epochs", "2", "--train-size", "300",
            "--val-size", "200", "--pruner", "none"]
    params = {k: v for k, v in HD_MLP.items() if k != "lr_schedule"}
    status, out, err = cli("enqueue", *data, "--params", json.dumps(params))
    assert status == 0, err
    status, out, err = cli("run", "--study-name", "hd", "--n-trials", "1", "--quiet")
    assert status == 0, err
    status, out, err = cli("enqueue", "--study-name", "hd", "--params",
                           json.dumps({**params, "optimizer": "Adam", "learn_rate": 1e-3,
                                       "hypergrad_lr": 1e-7}))
    assert status == 0, err
    status, out, err = cli("worker", "--study-name", "hd", "--max-trials", "2", "--quiet")
    assert status == 0, err
    status, out, err = cli("trials", "--study-name", "hd", "--json")
    assert status == 0, err
    trials = json.loads(out)
    trials = trials["trials"] if isinstance(trials, dict) else trials
    assert len(trials) == 2
    for t, name in zip(trials, ("SGD-HD", "Adam-HD")):
        assert t["state"] == "COMPLETE", t
        assert t["params"]["hypergradient"] is True
        assert t["user_attrs"]["config"]["optimizer"] == name
        assert len(t["user_attrs"]["curve"]) == 2
        assert all("lr_end" in r for r in t["user_attrs"]["curve"])
    status, out, err = cli("best", "--study-name", "hd", "--json")
    assert status == 0, err
    assert json.loads(out)["params"]["hypergradient"] is True
    status, out, err = cli("retrain", "--study-name", "hd", "--out", "model", "--train-size",
                           "400", "--epochs", "1", "--quiet")
    assert status == 0, err
    result = json.loads(open("model/result.json").read())
    assert result["config"]["optimizer"] in ("SGD-HD", "Adam-HD")
    assert 0 < result["test_accuracy"] <= 1
