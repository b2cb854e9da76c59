"""The recipe for a new search space (CONTRIBUTING.md), followed from outside the package:
a toy space, one ``Space`` and one ``register`` call, runs ``run``, ``best`` and
``retrain`` through ``tuning.cli.main`` with the study defaults it declares."""
from __future__ import annotations

import json
from math import prod

import optuna
import pytest

import minidl
import tuning
from minidl import nn
from tuning import loading, spaces
from tuning.images import NUM_CLASSES
from tuning.models import build_model

TOY = "toy-linear"


def toy_linear(trial) -> dict:
    """A linear classifier on flattened images: only the learning rate and batch size."""
    return {"model": TOY,
            "learn_rate": trial.suggest_float("learn_rate", 1e-3, 1e-1, log=True),
            "optimizer": "SGD",
            "batch_size": trial.suggest_categorical("batch_size", [32, 64]),
            "momentum": 0.0, "weight_decay": 0.0, "lr_schedule": "none",
            "augment_strength": 0.0}


def build_toy_linear(config: dict, input_shape) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(prod(input_shape), NUM_CLASSES))


def count_toy_linear(config: dict) -> list:
    n_in = prod(spaces.IMAGE_SHAPE)
    return [(f"Linear({n_in}, {NUM_CLASSES})", n_in * NUM_CLASSES + NUM_CLASSES)]


def toy_space() -> spaces.Space:
    return spaces.Space(
        name=TOY, function=toy_linear, build_model=build_toy_linear,
        count_parameters=count_toy_linear,
        defaults={"learn_rate": 0.01, "batch_size": 64},
        description="a linear classifier (test of the space recipe)",
        epochs=1, train_size=200,
        param_help={"learn_rate": "learning rate (log scale)",
                    "batch_size": "images per training step"})


@pytest.fixture
def toy():
    space = spaces.register(toy_space())
    yield space
    spaces.unregister(TOY)


def test_a_registered_space_runs_best_and_retrain_through_the_cli(toy, cli, tmp_path,
                                                                   fashion_mnist):
    assert spaces.SPACES[TOY] is toy and spaces.get_space(TOY) is toy
    status, out, err = cli("run", "--space", TOY, "--n-trials", 2, "--val-size", 200,
                           "--pruner", "none", "--seed", 1)
    assert status == 0, out + err
    study = optuna.load_study(study_name=TOY, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(f"studies/{TOY}.log")))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    settings = study.user_attrs["tuning_settings"]
    # the study's defaults are the ones the space declares
    assert (settings["space"], settings["epochs"], settings["train_size"]) == (TOY, 1, 200)
    assert all(set(t.params) == {"learn_rate", "batch_size"} for t in study.trials)

    status, out, err = cli("best", "--study-name", TOY, "--json")
    assert status == 0, out + err
    best = json.loads(out)
    assert best["params"] == study.best_params
    assert best["config"] == toy_linear(optuna.trial.FixedTrial(study.best_params))

    status, out, err = cli("retrain", "--study-name", TOY, "--out", "final",
                           "--train-size", 300)
    assert status == 0, out + err
    result = json.loads((tmp_path / "final" / "result.json").read_text())
    assert result["config"]["model"] == TOY and result["epochs"] == 1
    assert result["train_size"] == 300 and 0.0 < result["test_accuracy"] <= 1.0
    model = build_model(result["config"])   # the table builds the toy's network
    assert [type(m).__name__ for m in model] == ["Flatten", "Linear"]
    metadata = minidl.load(model, tmp_path / "final" / "model.npz")
    assert metadata["config"] == result["config"]
    # load_model bounds the folder's model with the space's own count, then builds it
    assert sum(n for _, n in loading.model_parameters(result["config"])) == \
        model.num_parameters() == 7850
    assert tuning.load_model(tmp_path / "final").num_parameters() == 7850


def test_unregister_takes_the_space_out_of_every_reader(toy):
    config = toy_linear(optuna.trial.FixedTrial({"learn_rate": 0.01, "batch_size": 32}))
    assert type(build_model(config)).__name__ == "Sequential"
    spaces.unregister(TOY)
    try:
        assert TOY not in spaces.SPACES
        with pytest.raises(ValueError, match="unknown search space 'toy-linear'"):
            spaces.get_space(TOY)
        with pytest.raises(ValueError, match="unknown model 'toy-linear'"):
            build_model(config)
    finally:
        spaces.register(toy)        # the fixture unregisters it


def test_register_refuses_a_taken_name_and_what_is_not_a_space(toy):
    with pytest.raises(ValueError, match="'toy-linear' is already registered"):
        spaces.register(toy_space())
    with pytest.raises(TypeError, match="expected a tuning.spaces.Space, got dict"):
        spaces.register({"name": "dict-space"})
    assert list(spaces.SPACES)[:4] == ["lab-mlp", "mlp", "cnn", "rnn"]


def test_a_space_explains_every_parameter_it_has_a_default_for():
    fields = dict(name="half", function=toy_linear, build_model=build_toy_linear,
                  count_parameters=count_toy_linear,
                  defaults={"learn_rate": 0.01, "batch_size": 64}, description="",
                  epochs=1, train_size=None)
    with pytest.raises(ValueError, match="explain exactly the parameters of defaults"):
        spaces.Space(**fields, param_help={"learn_rate": "learning rate"})
    with pytest.raises(TypeError, match="expected count_parameters to be callable, got None"):
        spaces.Space(**{**fields, "count_parameters": None},
                     param_help={"learn_rate": "", "batch_size": ""})
    with pytest.raises(TypeError, match="expected epochs to be an int, got 1.5"):
        spaces.Space(**{**fields, "epochs": 1.5},
                     param_help={"learn_rate": "", "batch_size": ""})
    with pytest.raises(ValueError, match="expected train_size >= 1, got 0"):
        spaces.Space(**{**fields, "train_size": 0},
                     param_help={"learn_rate": "", "batch_size": ""})
