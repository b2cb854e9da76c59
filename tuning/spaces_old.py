"""Search spaces: plain functions ``trial -> config``.

Each space asks the trial for its hyperparameters with ``trial.suggest_*`` and returns
a plain ``config`` dict (JSON-able) that ``tuning.models.build_model`` turns into a
minidl network and ``tuning.objective`` trains.  The spaces follow the lab:

- ``lab-mlp``: exactly the lab's space (one hidden layer).
- ``mlp``: task 1, one to three hidden layers, each with its own size.
- ``cnn``: task 2, one to three conv blocks with conv-specific choices: filters up to
  128, kernel size, one or two convolutions per block, batch normalization on or off.
- ``rnn``: issue 13, images read as sequences by one to three LSTM/GRU layers.

Rules every space keeps, so samplers and stored studies stay consistent:

- Parameter names are stable: a layer's parameter is named after its index
  (``hidden_l0``, ``filters_l1``, ``kernel_l2``), whatever the depth of the trial.
- A categorical parameter always has the same choice list, in the same order.
- A space grows by new parameter names only, each with the value that reproduces what
  trials made before it existed (``ADDED_PARAMS``, also its default): a trial whose
  parameters are given without the name -- replayed from an older study (a
  ``FixedTrial``, as ``config_from_params`` and ``retrain`` build one) or enqueued
  from an older configuration -- gets that value, so old studies still read, report
  and retrain as they ran.
- No configuration reaches a layer whose input has zero size: the CNN's spatial size is
  tracked block by block (``conv_pool_plan``) and a pooling that would collapse the map
  is skipped, recorded in the trial's user attribute ``pooling_skipped``.

``SPACES[name].defaults`` holds a value for *every* parameter the space can ask for;
the grid sampler fixes the parameters that are not on its grid to these values, and
``enqueue`` checks parameter names against them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import optuna

# The data every space is built for: Fashion-MNIST, (channels, height, width), 10 classes.
IMAGE_SHAPE = (1, 28, 28)
NUM_CLASSES = 10

OPTIMIZERS = ["Adam", "SGD", "RMSprop"]
# Optimizers with a hypergradient variant (``hypergradient`` True: SGD-HD, Adam-HD).
HYPERGRADIENT_OPTIMIZERS = {"Adam": "Adam-HD", "SGD": "SGD-HD"}
# ``hypergrad_lr`` (the learning rate of the learning rate) is searched on a log scale over
# both optimizers' useful values: the paper uses 1e-7 (MLP) and 1e-8 (VGG) for Adam-HD,
# whose hypergradient sums normalised steps, and 1e-3 for SGD-HD.
HYPERGRAD_LR_RANGE = (1e-9, 1e-2)
BATCH_SIZES = [32, 64, 128]
LR_SCHEDULES = ["none", "step", "cosine"]
ACTIVATIONS = ["ReLU", "Tanh", "LeakyReLU"]
FILTERS = [8, 16, 32, 64]
FILTERS_MULTIPLIERS = [1, 2]          # filters_l{i} x multiplier: up to 128 filters
CONVS_PER_BLOCK = (1, 2)
KERNEL_SIZES = [3, 5, 7]
POOL_TYPES = ["max", "avg"]
POOL_KERNELS = [2, 3]
MAX_LAYERS = 3
CELLS = ["LSTM", "GRU"]
SEQ_LENS = [7, 14, 28]
BIDIRECTIONAL = [False, True]

# SGD in the ``mlp`` and ``cnn`` spaces uses heavy-ball momentum (not searched); the
# ``lab-mlp`` space keeps the lab's plain SGD (torch's default, momentum 0).
SGD_MOMENTUM = 0.9


def _training_params(trial, optimizers) -> dict:
    """Learning rate, optimizer and batch size, named as in the lab."""
    return {
        "learn_rate": trial.suggest_float("learn_rate", 1e-4, 1e-1, log=True),
        "optimizer": trial.suggest_categorical("optimizer", optimizers),
        "batch_size": trial.suggest_categorical("batch_size", BATCH_SIZES),
    }


def _regularisation_params(trial) -> dict:
    return {
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
        "lr_schedule": trial.suggest_categorical("lr_schedule", LR_SCHEDULES),
    }


def lab_mlp(trial) -> dict:
    """The lab's space: one hidden layer of 64..256 units, dropout, Adam or plain SGD."""
    config = {
        "model": "lab-mlp",
        "hidden_size": trial.suggest_int("hidden_size", 64, 256),
        "dropout_rate": trial.suggest_float("dropout_rate", 0.1, 0.5),
    }
    config.update(_training_params(trial, ["Adam", "SGD"]))
    config.update(momentum=0.0, weight_decay=0.0, lr_schedule="none", augment_strength=0.0)
    return config


def _hypergradient_params(trial, space: str, given, config: dict) -> dict:
    """``hypergradient`` (asked when the optimizer has a -HD variant, see
    ``HYPERGRADIENT_OPTIMIZERS``) and, when it is on, ``hypergrad_lr`` (log scale).

    On, the effective optimizer is SGD-HD or Adam-HD (``minidl.optim.SGDHD`` /
    ``AdamHD``): ``config["optimizer"]`` names it (``"SGD-HD"``, ``"Adam-HD"``), the
    parameter ``optimizer`` keeps its choice list.  ``hypergradient`` was added after the
    first studies: a replayed or enqueued trial whose given parameters lack it gets False
    (``ADDED_PARAMS``), the optimizer it ran with.
    """
    if config["optimizer"] not in HYPERGRADIENT_OPTIMIZERS:
        return {}
    if not _suggest_added(given, space, trial.suggest_categorical, "hypergradient",
                          [False, True]):
        return {}
    return {"optimizer": HYPERGRADIENT_OPTIMIZERS[config["optimizer"]],
            "hypergrad_lr": trial.suggest_float("hypergrad_lr", *HYPERGRAD_LR_RANGE, log=True)}


def mlp(trial) -> dict:
    """Task 1: 1 to 3 hidden layers of 32..512 units each (log scale), one activation.

    Adam and SGD may run as Adam-HD / SGD-HD (``hypergradient``, ``hypergrad_lr``: see
    ``_hypergradient_params``)."""
    n_layers = trial.suggest_int("n_layers", 1, MAX_LAYERS)
    hidden = [trial.suggest_int(f"hidden_l{i}", 32, 512, log=True) for i in range(n_layers)]
    config = {
        "model": "mlp",
        "hidden_sizes": hidden,
        "activation": trial.suggest_categorical("activation", ACTIVATIONS),
        "dropout_rate": trial.suggest_float("dropout_rate", 0.0, 0.5),
    }
    config.update(_training_params(trial, OPTIMIZERS))
    config.update(_regularisation_params(trial))
    config.update(momentum=SGD_MOMENTUM, augment_strength=0.0)
    config.update(_hypergradient_params(trial, "mlp", _given_params(trial), config))
    return config


# Parameters added to a space after studies were stored with it, and the value that
# reproduces those studies' models (no batch normalization, one convolution per block,
# filters as drawn, no hypergradient).  Also the parameters' defaults.
ADDED_PARAMS = {"mlp": {"hypergradient": False},
                "cnn": {"filters_multiplier": 1, "convs_per_block": 1, "batch_norm": False,
                        "hypergradient": False}}
# The default of ``hypergrad_lr``, asked only when ``hypergradient`` is on (the paper's
# Adam-HD value for an MLP).
HYPERGRAD_LR_DEFAULT = 1e-7


def _given_params(trial):
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


def _suggest_added(given, space: str, suggest, name: str, *args):
    """``suggest(name, *args)``, unless the trial's parameters were given (``given``, see
    ``_given_params``) without ``name``: a configuration written before the parameter
    existed (a stored study's trial, an enqueued old configuration) gets the value that
    reproduces it (``ADDED_PARAMS``)."""
    if given is not None and name not in given:
        return ADDED_PARAMS[space][name]
    return suggest(name, *args)


def conv_pool_plan(image_size: int, kernel_sizes, pool_kernel: int):
    """Spatial size through conv blocks; which blocks can pool without collapsing the map.

    Each block is a ``Conv2d(kernel k, stride 1, padding k // 2)``, whose output size
    ``s + 2 * (k // 2) - k + 1`` is ``s`` for odd ``k`` (never smaller than ``s``),
    followed by a pooling of kernel and stride ``pool_kernel`` (output
    ``s // pool_kernel``).  A pooling whose output would be smaller than 1 is skipped.

    Returns
    -------
    (pool_after, final_size): ``pool_after[i]`` is True when block ``i`` pools;
    ``final_size`` is the height (= width) of the last block's output, always >= 1.
    """
    size = int(image_size)
    if size < 1:
        raise ValueError(f"conv_pool_plan: expected an image size >= 1, got {image_size}")
    pool_after = []
    for k in kernel_sizes:
        size = size + 2 * (k // 2) - k + 1
        pooled = size // pool_kernel
        pool_after.append(pooled >= 1)
        if pooled >= 1:
            size = pooled
    return pool_after, size


def cnn(trial, image_size: int = IMAGE_SHAPE[1]) -> dict:
    """Task 2: 1 to 3 conv blocks (filters and kernel size per block), pooling, dense head.

    Block ``i``: ``convs_per_block`` (1 or 2) times ``Conv2d(filters, kernel_l{i},
    padding kernel // 2) -> [BatchNorm2d] -> ReLU``, then ``{Max,Avg}Pool2d(pool_kernel)``;
    then ``Flatten -> Dropout -> Linear(dense_size) -> ReLU -> Dropout -> Linear(10)``.
    A block's filters are ``filters_l{i}`` (8..64) times ``filters_multiplier`` (1 or 2),
    so up to 128; ``batch_norm`` puts a BatchNorm2d after every convolution.  A
    convolution keeps the map's size (odd kernels, padding k // 2), so the pooling plan
    does not depend on ``convs_per_block``; a pooling that would shrink the map below 1x1
    is left out (``pooling_skipped`` user attribute lists the blocks).

    ``filters_multiplier``, ``convs_per_block`` and ``batch_norm`` were added after the
    first studies: a replayed or enqueued trial whose given parameters lack them gets 1,
    1 and False (``ADDED_PARAMS``).  Adam and SGD may run as Adam-HD / SGD-HD
    (``hypergradient``, ``hypergrad_lr``, asked last: see ``_hypergradient_params``).
    """
    n_conv = trial.suggest_int("n_conv", 1, MAX_LAYERS)
    filters = [trial.suggest_categorical(f"filters_l{i}", FILTERS) for i in range(n_conv)]
    kernels = [trial.suggest_categorical(f"kernel_l{i}", KERNEL_SIZES) for i in range(n_conv)]
    given = _given_params(trial)
    multiplier = _suggest_added(given, "cnn", trial.suggest_categorical, "filters_multiplier",
                                FILTERS_MULTIPLIERS)
    convs_per_block = _suggest_added(given, "cnn", trial.suggest_int, "convs_per_block",
                                     *CONVS_PER_BLOCK)
    batch_norm = _suggest_added(given, "cnn", trial.suggest_categorical, "batch_norm",
                                [False, True])
    pool_type = trial.suggest_categorical("pool_type", POOL_TYPES)
    pool_kernel = trial.suggest_categorical("pool_kernel", POOL_KERNELS)
    pool_after, _ = conv_pool_plan(image_size, kernels, pool_kernel)
    skipped = [i for i, pools in enumerate(pool_after) if not pools]
    if skipped:
        trial.set_user_attr("pooling_skipped", skipped)
    config = {
        "model": "cnn",
        "filters": [f * int(multiplier) for f in filters],
        "kernel_sizes": kernels,
        "convs_per_block": int(convs_per_block),
        "batch_norm": bool(batch_norm),
        "pool_type": pool_type,
        "pool_kernel": pool_kernel,
        "dense_size": trial.suggest_int("dense_size", 32, 256, log=True),
        "dropout_rate": trial.suggest_float("dropout_rate", 0.0, 0.5),
    }
    config.update(_training_params(trial, OPTIMIZERS))
    config.update(_regularisation_params(trial))
    config.update(momentum=SGD_MOMENTUM,
                  augment_strength=trial.suggest_float("augment_strength", 0.0, 1.0))
    config.update(_hypergradient_params(trial, "cnn", given, config))
    return config


def rnn(trial) -> dict:
    """Issue 13: an image read as T steps (T in {7, 14, 28}: 4, 2 or 1 rows per step) by
    1 to 3 recurrent layers (LSTM or GRU, 16..256 units each, log scale, optionally
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
    config.update(_training_params(trial, OPTIMIZERS))
    config.update(_regularisation_params(trial))
    config.update(momentum=SGD_MOMENTUM, augment_strength=0.0)
    return config


@dataclass(frozen=True)
class Space:
    """A named search space: its ``trial -> config`` function and a default per parameter."""

    name: str
    function: Callable
    defaults: dict
    description: str

    @property
    def param_names(self) -> list:
        """Every parameter the space can ask for, in the order it asks."""
        return list(self.defaults)


_TRAINING_DEFAULTS = {"learn_rate": 1e-3, "optimizer": "Adam", "batch_size": 64}
_REGULARISATION_DEFAULTS = {"weight_decay": 1e-5, "lr_schedule": "none"}
_HYPERGRADIENT_DEFAULTS = {"hypergradient": False, "hypergrad_lr": HYPERGRAD_LR_DEFAULT}
_CNN_BLOCK_ADDED = {k: v for k, v in ADDED_PARAMS["cnn"].items() if k != "hypergradient"}

SPACES = {
    "lab-mlp": Space(
        "lab-mlp", lab_mlp,
        {"hidden_size": 128, "dropout_rate": 0.2, **_TRAINING_DEFAULTS},
        "the lab's MLP: one hidden layer (64..256), dropout, Adam/SGD"),
    "mlp": Space(
        "mlp", mlp,
        {"n_layers": 2, "hidden_l0": 256, "hidden_l1": 128, "hidden_l2": 64,
         "activation": "ReLU", "dropout_rate": 0.2, **_TRAINING_DEFAULTS,
         **_REGULARISATION_DEFAULTS, **_HYPERGRADIENT_DEFAULTS},
        "task 1: 1-3 hidden layers with their own sizes, activation, schedule, "
        "Adam/SGD with or without hypergradient (Adam-HD, SGD-HD)"),
    "cnn": Space(
        "cnn", cnn,
        {"n_conv": 2, "filters_l0": 32, "filters_l1": 64, "filters_l2": 64,
         "kernel_l0": 3, "kernel_l1": 3, "kernel_l2": 3, **_CNN_BLOCK_ADDED,
         "pool_type": "max",
         "pool_kernel": 2, "dense_size": 128, "dropout_rate": 0.25, **_TRAINING_DEFAULTS,
         **_REGULARISATION_DEFAULTS, "augment_strength": 0.0, **_HYPERGRADIENT_DEFAULTS},
        "task 2: 1-3 conv blocks (filters up to 128, kernel 3/5/7, 1-2 convs, batch norm), "
        "max/avg pooling 2/3, dense head, optional Adam-HD/SGD-HD"),
    "rnn": Space(
        "rnn", rnn,
        {"cell": "LSTM", "n_layers": 1, "hidden_l0": 128, "hidden_l1": 64, "hidden_l2": 64,
         "bidirectional": False, "seq_len": 28, "dropout_rate": 0.1, "clip_norm": 1.0,
         **_TRAINING_DEFAULTS, **_REGULARISATION_DEFAULTS},
        "issue 13: LSTM/GRU over T=7/14/28 steps, 1-3 layers (16..256 each), bidirectional, "
        "dropout, gradient clipping"),
}

# The lab's grid: every other parameter is fixed to the space's default.
LAB_GRID = {"learn_rate": [0.01, 0.001, 0.0001], "batch_size": [32, 64, 128]}


def get_space(name: str) -> Space:
    """The space called ``name``; ValueError listing the known names otherwise."""
    try:
        return SPACES[name]
    except KeyError:
        raise ValueError(f"unknown search space {name!r}; expected one of "
                         f"{', '.join(sorted(SPACES))}") from None


def config_from_params(space_name: str, params: dict) -> dict:
    """The config a trial with these ``params`` produced (e.g. ``study.best_params``)."""
    return get_space(space_name).function(optuna.trial.FixedTrial(dict(params)))


# -- checking given values (enqueue, grid files) ------------------------------------------

class _CheckingTrial:
    """Stands in for a trial to run a space function on given values (``check_values``).

    Every ``suggest_*`` returns the given value (the space's default when none is
    given) and notes what is wrong with it: ``impossible`` (a value no trial can use:
    not a number, not finite, not an integer, not one of the choices) or ``outside``
    (a number outside the range the space searches).
    """

    def __init__(self, values: dict, defaults: dict):
        self._values = values
        self._defaults = defaults
        self.impossible, self.outside, self.asked = [], [], []
        self.number = 0
        self.params = {}

    def _given(self, name, placeholder):
        """The given value, else the default; for a name with neither (``filters_l5`` when
        ``n_conv`` is 6: asked only because an earlier number lies outside the space's
        range, which is reported for that number) ``placeholder``, a value in range, as
        the sampler would draw one for an enqueued trial."""
        self.asked.append(name)
        if name not in self._values and name not in self._defaults:
            self.params[name] = placeholder
            return placeholder
        value = self._values.get(name, self._defaults.get(name))
        self.params[name] = value
        return value

    def suggest_float(self, name, low, high, *, step=None, log=False):
        value = self._given(name, low)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.impossible.append(f"{name}: expected a number, got {value!r}")
        elif not math.isfinite(value):
            self.impossible.append(f"{name}: expected a finite number, got {value!r}")
        elif not low <= value <= high:
            self.outside.append(f"{name} {value!r} is outside the space's range "
                                f"{low:g}..{high:g}")
        return value

    def suggest_int(self, name, low, high, *, step=1, log=False):
        value = self._given(name, low)
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.impossible.append(f"{name}: expected an integer, got {value!r}")
        elif not low <= value <= high:
            self.outside.append(f"{name} {value!r} is outside the space's range {low}..{high}")
        return value

    def suggest_categorical(self, name, choices):
        value = self._given(name, choices[0])
        # type-aware: True == 1 and 64.0 == 64 in Python, but not as a choice
        if not any(type(value) is type(c) and value == c for c in choices):
            self.impossible.append(f"{name}: expected one of {list(choices)}, got {value!r}")
        return value

    def set_user_attr(self, key, value):
        pass


def params_asked(space_name: str, values: dict) -> dict:
    """The parameters a trial with these ``values`` asks for, in the order it asks: a
    one-block ``cnn`` asks no ``kernel_l1``, an RMSprop trial no ``hypergradient``.  The
    space's defaults stand in for values not given."""
    space = get_space(space_name)
    trial = _CheckingTrial(values, space.defaults)
    space.function(trial)
    return {name: trial.params[name] for name in trial.asked}


def check_values(space_name: str, values: dict, outside_range: bool = False) -> list:
    """Refuse parameter values a trial of ``space_name`` cannot use; return warnings.

    ``values`` maps parameter names to values (``enqueue --params``, one point of a grid
    file); the space's defaults stand in for the others.  Raises ``ValueError`` naming
    every problem: an unknown name, a value no trial can use (see ``_CheckingTrial``), a
    configuration the model or optimizer cannot be built from (``hidden_size`` -5,
    ``dropout_rate`` 1.5, ``learn_rate`` <= 0), or, unless ``outside_range``, a number
    outside the range the space searches.  With ``outside_range`` such numbers are
    returned as warnings: the sampler then sees a value outside its distribution.
    """
    space = get_space(space_name)
    unknown = sorted(set(values) - set(space.defaults))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for space "
                         f"{space_name!r}; its parameters are {', '.join(space.param_names)}")
    trial = _CheckingTrial(values, space.defaults)
    config = None
    try:
        config = space.function(trial)
    except (TypeError, ValueError) as exc:  # a value the space function cannot use at all
        trial.impossible.append(str(exc))
    if config is not None and not trial.impossible:
        trial.impossible += config_problems(config)
    # a value no trial can use is the reason to give, even when it is also out of range
    problems = trial.impossible or ([] if outside_range else trial.outside)
    if problems:
        hint = ("" if outside_range or trial.impossible else
                " (enqueue --outside-range accepts numbers outside the range)")
        raise ValueError("; ".join(problems) + hint)
    return trial.outside


def config_problems(config: dict) -> list:
    """What makes ``config`` impossible to train: ``[]`` when the model and optimizer can be built.

    Builds the model (``tuning.models.build_model``: layer sizes, dropout) and checks
    the training values the optimizer and the batches take.
    """
    from .models import build_model  # noqa: PLC0415 - models imports this module
    problems = []
    for name, low_ok in (("learn_rate", False), ("weight_decay", True),
                         ("augment_strength", True), ("momentum", True)):
        value = config.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value < 0 or (value == 0 and not low_ok):
            problems.append(f"{name}: expected a finite number {'>= 0' if low_ok else '> 0'}"
                            f", got {value!r}")
    for name in ("hidden_size", "dense_size"):
        value = config.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            problems.append(f"{name}: expected a layer size >= 1, got {value!r}")
    dropout = config.get("dropout_rate")
    if isinstance(dropout, (int, float)) and not isinstance(dropout, bool) \
            and math.isfinite(dropout) and not 0 <= dropout < 1:
        problems.append(f"dropout_rate: expected a probability in [0, 1), got {dropout!r}")
    if problems:
        return problems
    try:
        build_model(config)
    except (TypeError, ValueError) as exc:
        problems.append(f"the model cannot be built: {exc}")
    return problems
