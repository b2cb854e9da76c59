"""What several spaces share: the training parameters, their choice lists and defaults,
and the rule for parameters added to a space after studies were stored with it."""
from __future__ import annotations

import optuna

# The optimizers a space may choose (``config["optimizer"]``), listed once: ``mlp``,
# ``cnn`` and ``rnn`` choose among all three, ``lab-mlp`` among the lab's two.
OPTIMIZERS = ["Adam", "SGD", "RMSprop"]
# Optimizers with a hypergradient variant (``hypergradient`` True: SGD-HD, Adam-HD).
HYPERGRADIENT_OPTIMIZERS = {"Adam": "Adam-HD", "SGD": "SGD-HD"}
# ``hypergrad_lr`` (the learning rate of the learning rate) is searched on a log scale over
# both optimizers' useful values: the paper uses 1e-7 (MLP) and 1e-8 (VGG) for Adam-HD,
# whose hypergradient sums normalised steps, and 1e-3 for SGD-HD.
HYPERGRAD_LR_RANGE = (1e-9, 1e-2)
# The default of ``hypergrad_lr``, asked only when ``hypergradient`` is on (the paper's
# Adam-HD value for an MLP).
HYPERGRAD_LR_DEFAULT = 1e-7
BATCH_SIZES = [32, 64, 128]
LR_SCHEDULES = ["none", "step", "cosine"]
MAX_LAYERS = 3

# SGD in the ``mlp``, ``cnn`` and ``rnn`` spaces uses heavy-ball momentum (not searched);
# the ``lab-mlp`` space keeps the lab's plain SGD (torch's default, momentum 0).
SGD_MOMENTUM = 0.9

TRAINING_DEFAULTS = {"learn_rate": 1e-3, "optimizer": "Adam", "batch_size": 64}
TRAINING_HELP = {"learn_rate": "learning rate (log scale)",
                 "optimizer": "the optimizer",
                 "batch_size": "images per training step"}
REGULARISATION_DEFAULTS = {"weight_decay": 1e-5, "lr_schedule": "none"}
REGULARISATION_HELP = {"weight_decay": "L2 weight decay (log scale)",
                       "lr_schedule": "learning-rate schedule over the epochs"}
HYPERGRADIENT_DEFAULTS = {"hypergradient": False, "hypergrad_lr": HYPERGRAD_LR_DEFAULT}
HYPERGRADIENT_HELP = {"hypergradient": "run Adam/SGD as Adam-HD/SGD-HD, which adapt "
                                       "their learning rate",
                      "hypergrad_lr": "the learning rate of the learning rate (log scale)"}


def training_params(trial, optimizers) -> dict:
    """Learning rate, optimizer and batch size, named as in the lab."""
    return {
        "learn_rate": trial.suggest_float("learn_rate", 1e-4, 1e-1, log=True),
        "optimizer": trial.suggest_categorical("optimizer", optimizers),
        "batch_size": trial.suggest_categorical("batch_size", BATCH_SIZES),
    }


def regularisation_params(trial) -> dict:
    """Weight decay (log scale) and the learning-rate schedule."""
    return {
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        "lr_schedule": trial.suggest_categorical("lr_schedule", LR_SCHEDULES),
    }


def hypergradient_params(trial, added: dict, given, config: dict) -> dict:
    """``hypergradient`` (asked when the optimizer has a -HD variant, see
    ``HYPERGRADIENT_OPTIMIZERS``) and, when it is on, ``hypergrad_lr`` (log scale).

    On, the effective optimizer is SGD-HD or Adam-HD (``minidl.optim.SGDHD`` /
    ``AdamHD``): ``config["optimizer"]`` names it (``"SGD-HD"``, ``"Adam-HD"``), the
    parameter ``optimizer`` keeps its choice list.  ``hypergradient`` was added after the
    first studies: a replayed or enqueued trial whose given parameters lack it gets
    ``added["hypergradient"]`` (False), the optimizer it ran with.
    """
    if config["optimizer"] not in HYPERGRADIENT_OPTIMIZERS:
        return {}
    if not suggest_added(given, added, trial.suggest_categorical, "hypergradient",
                         [False, True]):
        return {}
    return {"optimizer": HYPERGRADIENT_OPTIMIZERS[config["optimizer"]],
            "hypergrad_lr": trial.suggest_float("hypergrad_lr", *HYPERGRAD_LR_RANGE, log=True)}


def given_params(trial):
    """The parameters given for ``trial`` in advance, or None: a ``FixedTrial``'s (a
    replay, as ``config_from_params`` builds one) or an enqueued trial's
    (``study.enqueue_trial``, which optuna records as the ``fixed_params`` system
    attribute of the running trial).

    NOTE: optuna's FixedTrial keeps its parameters in ``_params`` (no public accessor).
    """
    if isinstance(trial, optuna.trial.FixedTrial):
        return getattr(trial, "_params", None)
    study = getattr(trial, "study", None)
    if study is None:                       # _CheckingTrial: defaults stand in
        return None
    for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if frozen.number == trial.number:
            return frozen.system_attrs.get("fixed_params")
    return None


def suggest_added(given, added: dict, suggest, name: str, *args):
    """``suggest(name, *args)``, unless the trial's parameters were given (``given``, see
    ``given_params``) without ``name``: a configuration written before the parameter
    existed (a stored study's trial, an enqueued old configuration) gets the value that
    reproduces it, ``added[name]`` (the space's ``added_params``)."""
    if given is not None and name not in given:
        return added[name]
    return suggest(name, *args)
