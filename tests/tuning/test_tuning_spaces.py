"""Search spaces, model builders, study settings and samplers (no training here)."""
from __future__ import annotations

import json
import warnings

import numpy as np
import optuna
import pytest

from minidl import nn
from tuning import models, spaces
from tuning.cli import check_params
from tuning.errors import TuningError
from tuning.study import (StudySettings, make_pruner, make_sampler, resolve_grid,
                          sampler_seed)

optuna.logging.set_verbosity(optuna.logging.ERROR)


def _max_depth_params(space):
    """The defaults, deepest network, hypergradient on: every parameter is asked."""
    params = dict(space.defaults)
    for key in ("n_layers", "n_conv"):
        if key in params:
            params[key] = spaces.MAX_LAYERS
    if "hypergradient" in params:
        params["hypergradient"] = True
    return params


@pytest.mark.parametrize("name", sorted(spaces.SPACES))
def test_defaults_name_every_parameter_in_the_order_asked(name):
    space = spaces.get_space(name)
    trial = optuna.trial.FixedTrial(_max_depth_params(space))
    config = space.function(trial)
    assert list(trial.params) == space.param_names
    assert config["model"] == name
    json.dumps(config)  # stored as a user attribute: must be JSON


@pytest.mark.parametrize("name", sorted(spaces.SPACES))
def test_random_trials_keep_names_and_choice_sets_stable(name):
    """Optuna raises if a name's distribution changes; names stay within the defaults."""
    space = spaces.get_space(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    study.optimize(lambda t: float(len(space.function(t)["model"])), n_trials=40)
    seen = {}
    for t in study.trials:
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert set(t.params) <= set(space.defaults)
        for pname, dist in t.distributions.items():
            assert seen.setdefault(pname, dist) == dist
    if name != "lab-mlp":
        depth_key = "n_conv" if name == "cnn" else "n_layers"
        assert {t.params[depth_key] for t in study.trials} == {1, 2, 3}


def test_lab_space_is_exactly_the_lab():
    study = optuna.create_study()
    study.optimize(lambda t: float(spaces.lab_mlp(t)["hidden_size"]), n_trials=1)
    d = study.trials[0].distributions
    assert d["hidden_size"] == optuna.distributions.IntDistribution(64, 256)
    assert d["dropout_rate"] == optuna.distributions.FloatDistribution(0.1, 0.5)
    assert d["learn_rate"] == optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    assert d["optimizer"] == optuna.distributions.CategoricalDistribution(["Adam", "SGD"])
    assert d["batch_size"] == optuna.distributions.CategoricalDistribution([32, 64, 128])


def test_conv_pool_plan_tracks_size_and_skips_collapsing_pools():
    assert spaces.conv_pool_plan(28, [3, 5, 7], 3) == ([True, True, True], 1)
    assert spaces.conv_pool_plan(28, [3, 3], 2) == ([True, True], 7)
    assert spaces.conv_pool_plan(4, [3, 3, 3], 3) == ([True, False, False], 1)
    assert spaces.conv_pool_plan(2, [7, 7], 3) == ([False, False], 2)
    assert spaces.conv_pool_plan(3, [6], 2) == ([True], 2)  # even kernel: 3 -> 4 -> pool 2
    with pytest.raises(ValueError, match="image size"):
        spaces.conv_pool_plan(0, [3], 2)


def test_cnn_on_tiny_images_skips_pooling_and_records_it(rng):
    params = {**_max_depth_params(spaces.get_space("cnn")), "pool_kernel": 3,
              "filters_l0": 8, "filters_l1": 8, "filters_l2": 8}
    trial = optuna.trial.FixedTrial(params)
    config = spaces.cnn(trial, image_size=4)
    assert trial.user_attrs["pooling_skipped"] == [1, 2]
    model = models.build_cnn(config, input_shape=(1, 4, 4))
    pools = [m for m in model if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]
    assert len(pools) == 1
    out = model(rng.standard_normal((2, 1, 4, 4)).astype(np.float32))
    assert out.shape == (2, 10)


@pytest.mark.parametrize("pool_kernel", spaces.POOL_KERNELS)
@pytest.mark.parametrize("kernel", spaces.KERNEL_SIZES)
def test_every_cnn_depth_builds_and_runs_on_fashion_mnist_shape(pool_kernel, kernel, rng):
    for n_conv in range(1, spaces.MAX_LAYERS + 1):
        params = {**spaces.get_space("cnn").defaults, "n_conv": n_conv,
                  "pool_kernel": pool_kernel, "pool_type": "avg",
                  **{f"kernel_l{i}": kernel for i in range(3)},
                  **{f"filters_l{i}": 8 for i in range(3)}}
        trial = optuna.trial.FixedTrial(params)
        model = models.build_model(spaces.cnn(trial))
        assert "pooling_skipped" not in trial.user_attrs
        out = model(rng.standard_normal((2, 1, 28, 28)).astype(np.float32))
        assert out.shape == (2, 10)


def test_build_lab_nnet_mirrors_the_lab():
    model = models.build_lab_nnet(784, 100, 0.3)
    assert [type(m).__name__ for m in model.layers] == [
        "Flatten", "Linear", "ReLU", "Dropout", "Linear"]
    assert list(model.state_dict()) == ["layers.1.weight", "layers.1.bias",
                                        "layers.4.weight", "layers.4.bias"]
    assert model.num_parameters() == 784 * 100 + 100 + 100 * 10 + 10
    assert model.layers[3].p == pytest.approx(0.3)


def test_mlp_builder_uses_each_layer_size_and_activation(rng):
    config = {"model": "mlp", "hidden_sizes": [40, 30, 20], "activation": "Tanh",
              "dropout_rate": 0.1}
    model = models.build_model(config)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (784, 40), (40, 30), (30, 20), (20, 10)]
    assert sum(isinstance(m, nn.Tanh) for m in model) == 3
    assert model(rng.standard_normal((3, 1, 28, 28)).astype(np.float32)).shape == (3, 10)
    with pytest.raises(ValueError, match="unknown activation"):
        models.build_model({**config, "activation": "Swish"})
    with pytest.raises(ValueError, match="unknown model"):
        models.build_model({"model": "transformer"})


def test_grid_defaults_to_the_lab_grid_with_other_params_fixed():
    grid = resolve_grid("lab-mlp", None)
    assert grid["axes"] == {"learn_rate": [0.01, 0.001, 0.0001], "batch_size": [32, 64, 128]}
    assert grid["fixed"] == {"hidden_size": 128, "dropout_rate": 0.2, "optimizer": "Adam"}
    custom = resolve_grid("mlp", {"n_layers": [1, 2], "activation": "Tanh"})
    assert custom["axes"] == {"n_layers": [1, 2]}
    assert custom["fixed"]["activation"] == "Tanh"
    assert custom["fixed"]["learn_rate"] == spaces.get_space("mlp").defaults["learn_rate"]
    with pytest.raises(TuningError, match="unknown parameter.*hidden_size"):
        resolve_grid("cnn", {"hidden_size": [64]})
    with pytest.raises(TuningError, match="at least one parameter with a list"):
        resolve_grid("cnn", {"n_conv": 2})


def test_settings_round_trip_and_conflicting_options():
    s = StudySettings.from_options({"space": "cnn", "epochs": 2, "train_size": "all",
                                    "sampler": "grid", "pruner": "hyperband"})
    assert s.train_size is None and s.grid is not None
    again = StudySettings.from_dict(json.loads(json.dumps(s.to_dict())))
    assert again == s
    s.check_options({"space": "cnn", "epochs": 2, "seed": None}, "x")
    with pytest.raises(TuningError, match="--epochs 3 \\(the study has 2\\)"):
        s.check_options({"epochs": 3}, "x")
    with pytest.raises(TuningError, match="needs --space"):
        StudySettings.from_options({"epochs": 2})
    with pytest.raises(TuningError, match="--grid-file needs --sampler grid"):
        StudySettings.from_options({"space": "mlp", "grid_file": "g.json"})


@pytest.mark.parametrize("name,cls", [
    ("tpe", optuna.samplers.TPESampler), ("random", optuna.samplers.RandomSampler),
    ("grid", optuna.samplers.PartialFixedSampler), ("cmaes", optuna.samplers.CmaEsSampler),
    ("ga", optuna.samplers.NSGAIISampler), ("qmc", optuna.samplers.QMCSampler)])
def test_make_sampler(name, cls):
    s = StudySettings.from_options({"space": "lab-mlp", "sampler": name})
    assert isinstance(make_sampler(s, 0), cls)


def test_sampler_seed_is_salted_and_reproducible():
    assert sampler_seed(0, 5) == sampler_seed(0, 5)
    assert len({sampler_seed(0), sampler_seed(0, 5), sampler_seed(0, 6), sampler_seed(1, 5)}) == 4


def test_pruners():
    for pruner, cls in [("median", optuna.pruners.MedianPruner),
                        ("hyperband", optuna.pruners.HyperbandPruner),
                        ("none", optuna.pruners.NopPruner)]:
        s = StudySettings.from_options({"space": "mlp", "pruner": pruner})
        assert isinstance(make_pruner(s), cls)


def test_check_params_for_enqueue():
    with pytest.raises(TuningError, match="unknown parameter.*hidden_l0.*lab-mlp"):
        check_params("lab-mlp", {"hidden_l0": 3})
    with pytest.raises(TuningError, match="Adagrad"):
        check_params("lab-mlp", {"optimizer": "Adagrad"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_params("mlp", {"n_layers": 3, "hidden_l2": 100}) == []
    with pytest.raises(TuningError, match="learn_rate 1000.0 is outside the space's range"):
        check_params("lab-mlp", {"learn_rate": 1000.0})
    messages = check_params("lab-mlp", {"learn_rate": 1000.0}, outside_range=True)
    assert len(messages) == 1 and "learn_rate" in messages[0]
    with pytest.raises(TuningError, match="learn_rate: expected a finite number > 0"):
        check_params("lab-mlp", {"learn_rate": -1.0}, outside_range=True)



@pytest.mark.parametrize("space,params,name", [("cnn", {"n_conv": 9}, "filters_l3"),
                                               ("mlp", {"n_layers": 5}, "hidden_l3")])
def test_a_depth_outside_the_range_is_the_one_reason_given(space, params, name):
    """More blocks than the space has makes a trial ask for names with no default
    (filters_l3...); the depth is what to report, not every name it drags in."""
    with pytest.raises(TuningError) as info:
        check_params(space, params)
    text = str(info.value)
    assert f"{next(iter(params))} {next(iter(params.values()))} is outside" in text
    assert "expected one of" not in text and "None" not in text and name not in text
    # accepted with --outside-range: the enqueued trial samples the extra blocks' values
    messages = check_params(space, params, outside_range=True)
    assert len(messages) == 1 and name not in messages[0]

# -- hypergradient optimizers in the mlp and cnn spaces (issue 15) --------------------------

@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_hypergradient_is_a_new_name_and_makes_the_optimizer_hd(name):
    space = spaces.get_space(name)
    assert spaces.ADDED_PARAMS[name]["hypergradient"] is False
    assert space.defaults["hypergradient"] is False
    # the last two names asked: the order of the older parameters is unchanged
    assert space.param_names[-2:] == ["hypergradient", "hypergrad_lr"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=11))
    study.optimize(lambda t: float(len(space.function(t))), n_trials=60)
    seen = set()
    for t in study.trials:
        config = t.user_attrs.get("config") or spaces.config_from_params(name, t.params)
        base = t.params["optimizer"]
        assert t.distributions["optimizer"] == optuna.distributions.CategoricalDistribution(
            spaces.OPTIMIZERS)              # the choice list did not change
        if base == "RMSprop":               # no -HD variant: not asked
            assert "hypergradient" not in t.params and config["optimizer"] == "RMSprop"
            continue
        assert t.distributions["hypergradient"] == \
            optuna.distributions.CategoricalDistribution([False, True])
        if t.params["hypergradient"]:
            assert t.distributions["hypergrad_lr"] == optuna.distributions.FloatDistribution(
                *spaces.HYPERGRAD_LR_RANGE, log=True)
            assert config["optimizer"] == base + "-HD"
            assert config["hypergrad_lr"] == t.params["hypergrad_lr"]
        else:
            assert "hypergrad_lr" not in t.params and "hypergrad_lr" not in config
            assert config["optimizer"] == base
        seen.add(config["optimizer"])
    assert seen == {"Adam", "SGD", "Adam-HD", "SGD-HD"}


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_params_from_before_hypergradient_replay_the_plain_optimizer(name):
    old = {k: v for k, v in _max_depth_params(spaces.get_space(name)).items()
           if k not in ("hypergradient", "hypergrad_lr")}
    config = spaces.config_from_params(name, old)
    assert config["optimizer"] == "Adam" and "hypergrad_lr" not in config
    config = spaces.config_from_params(name, {**old, "optimizer": "SGD", "hypergradient": True,
                                              "hypergrad_lr": 1e-3})
    assert config["optimizer"] == "SGD-HD" and config["hypergrad_lr"] == 1e-3


def test_check_params_knows_the_hypergradient_names():
    assert check_params("cnn", {"optimizer": "SGD", "hypergradient": True,
                                "hypergrad_lr": 1e-3}) == []
    assert check_params("mlp", {"hypergradient": True}) == []      # hypergrad_lr sampled
    with pytest.raises(TuningError, match="hypergrad_lr 0.5 is outside the space's range"):
        check_params("mlp", {"hypergradient": True, "hypergrad_lr": 0.5})
    with pytest.raises(TuningError, match="hypergradient: expected one of \\[False, True\\]"):
        check_params("cnn", {"hypergradient": "yes"})
    with pytest.raises(TuningError, match="unknown parameter.*hypergradient"):
        check_params("lab-mlp", {"hypergradient": True})


def test_params_asked_lists_what_a_trial_of_those_values_uses():
    asked = spaces.params_asked("cnn", {"n_conv": 1, "optimizer": "RMSprop"})
    assert "kernel_l0" in asked and "kernel_l1" not in asked and "filters_l1" not in asked
    assert "hypergradient" not in asked and asked["optimizer"] == "RMSprop"
    assert list(asked) == [n for n in spaces.get_space("cnn").param_names if n in asked]
    asked = spaces.params_asked("mlp", {"hypergradient": True})
    assert asked["hypergrad_lr"] == spaces.HYPERGRAD_LR_DEFAULT
