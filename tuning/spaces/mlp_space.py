"""The ``mlp`` space (task 1): one to three hidden layers, each with its own size."""
from __future__ import annotations

from math import prod

from minidl import nn

from ..images import IMAGE_SHAPE, NUM_CLASSES
from .common import (HYPERGRADIENT_DEFAULTS, HYPERGRADIENT_HELP, MAX_LAYERS, OPTIMIZERS,
                     REGULARISATION_DEFAULTS, REGULARISATION_HELP, SGD_MOMENTUM,
                     TRAINING_DEFAULTS, TRAINING_HELP, given_params, hypergradient_params,
                     regularisation_params, training_params)
from .sizes import linear, sizes
from .space import Space

ACTIVATION_LAYERS = {"ReLU": nn.ReLU, "Tanh": nn.Tanh, "LeakyReLU": nn.LeakyReLU}
ACTIVATIONS = list(ACTIVATION_LAYERS)
# Parameters added after the first studies, with the value that reproduces them.
ADDED_PARAMS = {"hypergradient": False}


def mlp(trial) -> dict:
    """Task 1: 1 to 3 hidden layers of 32..512 units each (log scale), one activation.

    Adam and SGD may run as Adam-HD / SGD-HD (``hypergradient``, ``hypergrad_lr``: see
    ``tuning.spaces.common.hypergradient_params``)."""
    n_layers = trial.suggest_int("n_layers", 1, MAX_LAYERS)
    hidden = [trial.suggest_int(f"hidden_l{i}", 32, 512, log=True) for i in range(n_layers)]
    config = {
        "model": "mlp",
        "hidden_sizes": hidden,
        "activation": trial.suggest_categorical("activation", ACTIVATIONS),
        "dropout_rate": trial.suggest_float("dropout_rate", 0.0, 0.5),
    }
    config.update(training_params(trial, OPTIMIZERS))
    config.update(regularisation_params(trial))
    config.update(momentum=SGD_MOMENTUM, augment_strength=0.0)
    config.update(hypergradient_params(trial, ADDED_PARAMS, given_params(trial), config))
    return config


def _activation(name: str) -> nn.Module:
    try:
        return ACTIVATION_LAYERS[name]()
    except KeyError:
        raise ValueError(f"build_model: unknown activation {name!r}; expected one of "
                         f"{sorted(ACTIVATION_LAYERS)}") from None


def build_mlp(config: dict, input_shape=IMAGE_SHAPE) -> nn.Sequential:
    """Flatten, then per hidden size ``Linear -> activation -> Dropout``, then ``Linear(10)``."""
    hidden = list(config["hidden_sizes"])
    if not hidden or any(int(h) < 1 for h in hidden):
        raise ValueError(f"build_mlp: expected 1 or more hidden sizes >= 1, got {hidden}")
    layers = [nn.Flatten()]
    width = prod(input_shape)
    for h in hidden:
        layers += [nn.Linear(width, int(h)), _activation(config["activation"]),
                   nn.Dropout(float(config["dropout_rate"]))]
        width = int(h)
    layers.append(nn.Linear(width, NUM_CLASSES))
    return nn.Sequential(*layers)


def count_mlp(config: dict) -> list:
    """The parameters of ``build_mlp(config)``, layer by layer (``tuning.spaces.sizes``)."""
    widths = [prod(IMAGE_SHAPE), *sizes(config, "hidden_sizes"), NUM_CLASSES]
    return [linear(a, b) for a, b in zip(widths, widths[1:])]


SPACE = Space(
    name="mlp", function=mlp, build_model=build_mlp, count_parameters=count_mlp,
    defaults={"n_layers": 2, "hidden_l0": 256, "hidden_l1": 128, "hidden_l2": 64,
              "activation": "ReLU", "dropout_rate": 0.2, **TRAINING_DEFAULTS,
              **REGULARISATION_DEFAULTS, **HYPERGRADIENT_DEFAULTS},
    description="task 1: 1-3 hidden layers with their own sizes, activation, schedule, "
                "Adam/SGD with or without hypergradient (Adam-HD, SGD-HD)",
    epochs=10, train_size=None,
    param_help={"n_layers": "hidden layers",
                **{f"hidden_l{i}": f"units of hidden layer {i} (log scale)"
                   for i in range(MAX_LAYERS)},
                "activation": "the activation after every hidden layer",
                "dropout_rate": "dropout after every hidden layer",
                **TRAINING_HELP, **REGULARISATION_HELP, **HYPERGRADIENT_HELP},
    added_params=ADDED_PARAMS)
