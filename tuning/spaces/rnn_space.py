"""The ``rnn`` space: images read as sequences by one to three LSTM/GRU layers.

The model is ``tuning.rnn_models.build_rnn`` (``RNNClassifier``: the layers, and the
gradient clipping its ``backward`` ends with).
"""
from __future__ import annotations

from math import prod

from ..images import IMAGE_SHAPE, NUM_CLASSES
from ..rnn_models import CELL_LAYERS, build_rnn
from .common import (MAX_LAYERS, OPTIMIZERS, REGULARISATION_DEFAULTS, REGULARISATION_HELP,
                     SGD_MOMENTUM, TRAINING_DEFAULTS, TRAINING_HELP, regularisation_params,
                     training_params)
from .sizes import linear, size, sizes
from .space import Space

CELLS = list(CELL_LAYERS)
SEQ_LENS = [7, 14, 28]
BIDIRECTIONAL = [False, True]


def rnn(trial) -> dict:
    """An image read as T steps (T in {7, 14, 28}: 4, 2 or 1 rows per step) by 1 to 3
    recurrent layers (LSTM or GRU, 16..256 units each, log scale, optionally
    bidirectional), classified from the last layer's final hidden state; dropout after
    each recurrent layer; the gradients' total norm clipped to ``clip_norm``.
    Model: ``tuning.rnn_models.build_rnn``."""
    cell = trial.suggest_categorical("cell", CELLS)
    n_layers = trial.suggest_int("n_layers", 1, MAX_LAYERS)
    hidden = [trial.suggest_int(f"hidden_l{i}", 16, 256, log=True) for i in range(n_layers)]
    config = {
        "model": "rnn",
        "cell": cell,
        "hidden_sizes": hidden,
        "bidirectional": trial.suggest_categorical("bidirectional", BIDIRECTIONAL),
        "seq_len": trial.suggest_categorical("seq_len", SEQ_LENS),
        "dropout_rate": trial.suggest_float("dropout_rate", 0.0, 0.5),
        "clip_norm": trial.suggest_float("clip_norm", 0.1, 10.0, log=True),
    }
    config.update(training_params(trial, OPTIMIZERS))
    config.update(regularisation_params(trial))
    config.update(momentum=SGD_MOMENTUM, augment_strength=0.0)
    return config


def count_rnn(config: dict) -> list:
    """The parameters of ``build_rnn(config)``, layer by layer (``tuning.spaces.sizes``)."""
    pixels = prod(IMAGE_SHAPE)
    steps = size(config["seq_len"], "seq_len")
    gates = {"LSTM": 4, "GRU": 3}.get(config.get("cell"))
    layers = []
    if gates is not None and pixels % steps == 0:
        directions = 2 if config.get("bidirectional") else 1
        width = pixels // steps
        for h in sizes(config, "hidden_sizes"):
            layers.append((f"{config['cell']}({width}, {h})",
                           directions * gates * h * (width + h + 2)))
            width = directions * h
        layers.append(linear(width, NUM_CLASSES))
    return layers


SPACE = Space(
    name="rnn", function=rnn, build_model=build_rnn, count_parameters=count_rnn,
    defaults={"cell": "LSTM", "n_layers": 1, "hidden_l0": 128, "hidden_l1": 64,
              "hidden_l2": 64, "bidirectional": False, "seq_len": 28, "dropout_rate": 0.1,
              "clip_norm": 1.0, **TRAINING_DEFAULTS, **REGULARISATION_DEFAULTS},
    description="LSTM/GRU over T=7/14/28 steps, 1-3 layers (16..256 each), bidirectional, "
                "dropout, gradient clipping",
    epochs=3, train_size=10_000,
    param_help={"cell": "the recurrent cell",
                "n_layers": "recurrent layers",
                **{f"hidden_l{i}": f"units of recurrent layer {i} (log scale)"
                   for i in range(MAX_LAYERS)},
                "bidirectional": "read the sequence both ways",
                "seq_len": "steps an image is read in (28 / seq_len rows per step)",
                "dropout_rate": "dropout after every recurrent layer",
                "clip_norm": "the gradients' total 2-norm is clipped to this (log scale)",
                **TRAINING_HELP, **REGULARISATION_HELP})
