"""The ``cnn`` space's added parameters (issue 14): batch normalization, one or two
convolutions per block, filters up to 128; old studies' parameters still replay."""
from __future__ import annotations

import json

import numpy as np
import optuna
import pytest

import minidl
from minidl import nn
from tuning import models, spaces
from tuning.cli import check_params
from tuning.errors import TuningError

optuna.logging.set_verbosity(optuna.logging.ERROR)

# the parameters of a trial stored before the added ones existed
OLD_PARAMS = {"n_conv": 2, "filters_l0": 16, "filters_l1": 64, "kernel_l0": 5, "kernel_l1": 7,
              "pool_type": "max", "pool_kernel": 2, "dense_size": 42, "dropout_rate": 0.07,
              "learn_rate": 0.032, "optimizer": "SGD", "batch_size": 64,
              "weight_decay": 5.4e-4, "lr_schedule": "cosine", "augment_strength": 0.01}


def kinds(model):
    return [type(m).__name__ for m in model]


def test_added_parameters_and_their_distributions():
    space = spaces.get_space("cnn")
    assert [n for n in space.param_names if n in spaces.ADDED_PARAMS["cnn"]] == [
        "filters_multiplier", "convs_per_block", "batch_norm", "hypergradient"]
    assert {n: space.defaults[n] for n in spaces.ADDED_PARAMS["cnn"]} == spaces.ADDED_PARAMS["cnn"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=5))
    study.optimize(lambda t: float(len(spaces.cnn(t)["filters"])), n_trials=30)
    d = study.trials[0].distributions
    assert d["filters_multiplier"] == optuna.distributions.CategoricalDistribution([1, 2])
    assert d["convs_per_block"] == optuna.distributions.IntDistribution(1, 2)
    assert d["batch_norm"] == optuna.distributions.CategoricalDistribution([False, True])
    # the old names keep their distributions
    assert d["filters_l0"] == optuna.distributions.CategoricalDistribution([8, 16, 32, 64])
    seen = {(t.params["filters_multiplier"], t.params["convs_per_block"], t.params["batch_norm"])
            for t in study.trials}
    assert len(seen) == 8                                   # every combination is reachable
    for t in study.trials:
        config = t.user_attrs.get("config") or spaces.config_from_params("cnn", t.params)
        assert max(config["filters"]) <= 128
        json.dumps(config)


def test_old_parameters_replay_the_old_model():
    config = spaces.config_from_params("cnn", OLD_PARAMS)
    assert config["filters"] == [16, 64]
    assert config["convs_per_block"] == 1 and config["batch_norm"] is False
    minidl.manual_seed(0)
    model = models.build_model(config)
    assert kinds(model)[:6] == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d"]
    assert all(m.bias is not None for m in model if isinstance(m, nn.Conv2d))
    # a config stored as a user attribute before the keys existed builds the same model
    old_config = {k: v for k, v in config.items() if k not in ("convs_per_block", "batch_norm")}
    minidl.manual_seed(0)
    again = models.build_model(old_config)
    assert kinds(again) == kinds(model)
    for (ka, a), (kb, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert ka == kb
        np.testing.assert_array_equal(a, b)


def test_a_fixed_trial_with_the_added_names_uses_them():
    params = dict(OLD_PARAMS, filters_multiplier=2, convs_per_block=2, batch_norm=True)
    trial = optuna.trial.FixedTrial(params)
    config = spaces.cnn(trial)
    assert config["filters"] == [32, 128]
    assert list(trial.params) == [n for n in spaces.get_space("cnn").param_names if n in params]


@pytest.mark.parametrize("pool_kernel", spaces.POOL_KERNELS)
@pytest.mark.parametrize("kernel", spaces.KERNEL_SIZES)
def test_batch_norm_and_two_convs_build_and_train_a_step(pool_kernel, kernel, rng):
    for n_conv in range(1, spaces.MAX_LAYERS + 1):
        params = {**spaces.get_space("cnn").defaults, "n_conv": n_conv, "pool_kernel": pool_kernel,
                  **{f"kernel_l{i}": kernel for i in range(3)},
                  **{f"filters_l{i}": 8 for i in range(3)},
                  "convs_per_block": 2, "batch_norm": True}
        trial = optuna.trial.FixedTrial(params)
        config = spaces.cnn(trial)
        plain = spaces.cnn(optuna.trial.FixedTrial(dict(params, convs_per_block=1,
                                                        batch_norm=False)))
        model = models.build_model(config)
        names = kinds(model)
        assert names.count("Conv2d") == 2 * n_conv == names.count("BatchNorm2d")
        # conv -> BN -> ReLU, and a convolution before batch normalization has no bias
        for i, name in enumerate(names):
            if name == "Conv2d":
                assert names[i + 1:i + 3] == ["BatchNorm2d", "ReLU"]
                assert model[i].bias is None
        # the pooling plan does not depend on the added parameters
        pools = [n for n in names if n.endswith("Pool2d")]
        assert len(pools) == sum(n.endswith("Pool2d") for n in kinds(models.build_model(plain)))
        x = rng.standard_normal((3, 1, 28, 28)).astype(np.float32)
        out = model(x)
        assert out.shape == (3, 10)
        model.backward(np.ones_like(out))
        assert all(p.grad is not None for p in model.parameters())
        keys = model.state_dict()
        assert "1.running_mean" in keys and keys["1.num_batches_tracked"] == 1
        assert model.eval()(x).shape == (3, 10)


def test_enqueue_checks_the_added_parameters():
    assert check_params("cnn", {"batch_norm": True, "convs_per_block": 2,
                                "filters_multiplier": 2}) == []
    with pytest.raises(TuningError, match="convs_per_block"):
        check_params("cnn", {"convs_per_block": 3})
    with pytest.raises(TuningError, match="filters_multiplier"):
        check_params("cnn", {"filters_multiplier": 4})


def test_builder_rejects_bad_added_values():
    config = spaces.config_from_params("cnn", OLD_PARAMS)
    with pytest.raises(ValueError, match="build_cnn: expected convs_per_block 1 or 2, got 3"):
        models.build_cnn(dict(config, convs_per_block=3))
    with pytest.raises(ValueError, match="build_cnn: expected batch_norm to be a bool"):
        models.build_cnn(dict(config, batch_norm="yes"))


def test_an_enqueued_old_configuration_gets_the_old_values_and_new_ones_are_searched():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(OLD_PARAMS)
    study.enqueue_trial(dict(OLD_PARAMS, batch_norm=True))
    configs = []
    study.optimize(lambda t: configs.append(spaces.cnn(t)) or 0.0, n_trials=12)
    assert configs[0]["filters"] == [16, 64] and configs[0]["batch_norm"] is False
    assert configs[0]["convs_per_block"] == 1
    assert configs[1]["batch_norm"] is True and configs[1]["filters"] == [16, 64]
    assert "batch_norm" not in study.trials[0].params                 # not asked: given
    sampled = {(c["convs_per_block"], c["batch_norm"]) for c in configs[2:]}
    assert len(sampled) > 1                                            # sampled afterwards


def test_objective_trains_a_batch_norm_cnn_and_its_model_saves_and_loads(fashion_mnist, tmp_path):
    from minidl.data import FASHION_MNIST_MEAN, FASHION_MNIST_STD, prepare
    from tuning.objective import Objective

    tx, ty = fashion_mnist.train_images, fashion_mnist.train_labels
    train = prepare(tx[:600], ty[:600], FASHION_MNIST_MEAN, FASHION_MNIST_STD)
    val = prepare(tx[600:900], ty[600:900], FASHION_MNIST_MEAN, FASHION_MNIST_STD)
    params = {"n_conv": 2, "filters_l0": 8, "filters_l1": 8, "kernel_l0": 3, "kernel_l1": 3,
              "filters_multiplier": 2, "convs_per_block": 2, "batch_norm": True,
              "pool_type": "max", "pool_kernel": 2, "dense_size": 32, "dropout_rate": 0.1,
              "learn_rate": 3e-3, "optimizer": "Adam", "batch_size": 32,
              "weight_decay": 1e-5, "lr_schedule": "none", "augment_strength": 0.0}
    trial = optuna.trial.FixedTrial(params, number=1)
    value = Objective(train, val, epochs=2, space="cnn", seed=1)(trial)
    assert trial.user_attrs["stop_reason"] == "completed"
    assert 0.0 <= value < 0.6                # chance is 0.9: two epochs on 600 images learn
    minidl.manual_seed(1)
    model = models.build_model(trial.user_attrs["config"])
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model) == 4
    model(val.x[:64])                        # training mode: the running statistics move
    minidl.manual_seed(2)
    fresh = models.build_model(trial.user_attrs["config"])
    minidl.load(fresh, minidl.save(model, tmp_path / "bn-cnn.npz"))
    assert int(fresh[1].num_batches_tracked) == 1
    x = val.x[:5]
    np.testing.assert_array_equal(fresh.eval()(x), model.eval()(x))
