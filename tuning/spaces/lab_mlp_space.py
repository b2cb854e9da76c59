"""The ``lab-mlp`` space: exactly the lab's space (one hidden layer), and the lab's ``NNet``.

``build_lab_nnet`` is the lab's ``NNet`` written with minidl; its layers sit in
``.layers`` as in the lab, so its ``state_dict`` keys (``layers.1.weight``, ...) are the
lab's.
"""
from __future__ import annotations

from math import prod

from minidl import nn

from ..images import IMAGE_SHAPE, NUM_CLASSES
from .common import TRAINING_DEFAULTS, TRAINING_HELP, training_params
from .sizes import linear, size
from .space import Space


def lab_mlp(trial) -> dict:
    """The lab's space: one hidden layer of 64..256 units, dropout, Adam or plain SGD."""
    config = {
        "model": "lab-mlp",
        "hidden_size": trial.suggest_int("hidden_size", 64, 256),
        "dropout_rate": trial.suggest_float("dropout_rate", 0.1, 0.5),
    }
    config.update(training_params(trial, ["Adam", "SGD"]))
    config.update(momentum=0.0, weight_decay=0.0, lr_schedule="none", augment_strength=0.0)
    return config


class LabNNet(nn.Module):
    """The lab's ``NNet``: Flatten -> Linear(input, hidden) -> ReLU -> Dropout -> Linear(hidden, 10).

    Input ``(N, 1, 28, 28)`` (or ``(N, input_size)``), output logits ``(N, 10)``.
    """

    def __init__(self, input_size: int, hidden_size: int, dropout_rate: float,
                 num_classes: int = NUM_CLASSES):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(),
            nn.Linear(input_size, hidden_size),
            nn.ReLU(),
            nn.Dropout(dropout_rate),
            nn.Linear(hidden_size, num_classes),
        )

    def forward(self, x):
        return self.layers(x)

    def backward(self, dout):
        return self.layers.backward(dout)

    def _needs_input_grad_changed(self, value: bool) -> None:
        # backward returns the Sequential's input gradient: let it skip the first layer's
        self.layers.needs_input_grad = value


def build_lab_nnet(input_size: int, hidden_size: int, dropout_rate: float) -> LabNNet:
    """The lab's ``NNet(input_size, hidden_size, dropout_rate)`` as a minidl module."""
    return LabNNet(int(input_size), int(hidden_size), float(dropout_rate))


def build_lab_mlp(config: dict, input_shape=IMAGE_SHAPE) -> LabNNet:
    """The ``lab-mlp`` config's network: ``build_lab_nnet`` on flattened images."""
    return build_lab_nnet(prod(input_shape), config["hidden_size"], config["dropout_rate"])


def count_lab_mlp(config: dict) -> list:
    """The parameters of ``build_lab_mlp(config)``, layer by layer (``tuning.spaces.sizes``)."""
    hidden = size(config["hidden_size"], "hidden_size")
    return [linear(prod(IMAGE_SHAPE), hidden), linear(hidden, NUM_CLASSES)]


SPACE = Space(
    name="lab-mlp", function=lab_mlp, build_model=build_lab_mlp,
    count_parameters=count_lab_mlp,
    defaults={"hidden_size": 128, "dropout_rate": 0.2, **TRAINING_DEFAULTS},
    description="the lab's MLP: one hidden layer (64..256), dropout, Adam/SGD",
    epochs=10, train_size=None,
    param_help={"hidden_size": "units of the hidden layer",
                "dropout_rate": "dropout after the hidden layer", **TRAINING_HELP})
