"""Search spaces: each one ``Space`` object in one table, ``SPACES``.

A ``Space`` (``tuning.spaces.space``) holds everything about a space: its sampling
function ``trial -> config`` (asks the trial with ``trial.suggest_*``, returns a plain,
JSON-able ``config`` dict), a default per parameter, its model builder ``(config,
input_shape) -> minidl.nn.Module``, the epochs and training size of a new study, a line
of help and what each parameter means.  The CLI (``--space``), the study defaults
(``tuning.study``), ``tuning.models.build_model`` and the checks of given values read
the table.  The built-in spaces, one module each:

- ``lab-mlp`` (``lab_mlp_space``): exactly the lab's space (one hidden layer).
- ``mlp`` (``mlp_space``): task 1, one to three hidden layers, each with its own size.
- ``cnn`` (``cnn_space``): task 2, one to three conv blocks with conv-specific choices:
  filters up to 128, kernel size, one or two convolutions per block, batch
  normalization on or off.
- ``rnn`` (``rnn_space``): images read as sequences by one to three LSTM/GRU layers.

A new space is a module that builds a ``Space`` and one ``register(space)`` call (see
CONTRIBUTING.md); ``unregister(name)`` takes it out again.

Rules every space keeps, so samplers and stored studies stay consistent:

- Parameter names are stable: a layer's parameter is named after its index
  (``hidden_l0``, ``filters_l1``, ``kernel_l2``), whatever the depth of the trial.
- A categorical parameter always has the same choice list, in the same order.
- A space grows by new parameter names only, each with the value that reproduces what
  trials made before it existed (the space's ``added_params``, also its default): a
  trial whose parameters are given without the name -- replayed from an older study (a
  ``FixedTrial``, as ``config_from_params`` and ``retrain`` build one) or enqueued from
  an older configuration -- gets that value, so old studies still read, report and
  retrain as they ran (``common.suggest_added``).
- No configuration reaches a layer whose input has zero size (the CNN's
  ``conv_pool_plan``).
"""
from __future__ import annotations

from ..images import IMAGE_SHAPE, NUM_CLASSES
from . import cnn_space, lab_mlp_space, mlp_space, rnn_space
from .checks import check_values, config_problems, params_asked
from .cnn_space import KERNEL_SIZES, POOL_KERNELS, POOL_TYPES, conv_pool_plan
from .common import (HYPERGRAD_LR_DEFAULT, HYPERGRAD_LR_RANGE, HYPERGRADIENT_OPTIMIZERS,
                     MAX_LAYERS, OPTIMIZERS)
from .registry import (SPACES, SpaceAttribute, config_from_params, get_space, register,
                       unregister)
from .space import Space

# The built-in spaces, in the order ``--space`` lists them.
register(lab_mlp_space.SPACE)
register(mlp_space.SPACE)
register(cnn_space.SPACE)
register(rnn_space.SPACE)

# The spaces' sampling functions under their names: ``tuning.spaces.cnn(trial)``.
lab_mlp = lab_mlp_space.lab_mlp
mlp = mlp_space.mlp
cnn = cnn_space.cnn
rnn = rnn_space.rnn

# name -> the parameters added to that space after studies were stored with it
ADDED_PARAMS = SpaceAttribute("added_params")

# The lab's grid: every other parameter is fixed to the space's default.
LAB_GRID = {"learn_rate": [0.01, 0.001, 0.0001], "batch_size": [32, 64, 128]}

__all__ = ["ADDED_PARAMS", "HYPERGRADIENT_OPTIMIZERS", "HYPERGRAD_LR_DEFAULT",
           "HYPERGRAD_LR_RANGE", "IMAGE_SHAPE", "KERNEL_SIZES", "LAB_GRID", "MAX_LAYERS",
           "NUM_CLASSES", "OPTIMIZERS", "POOL_KERNELS", "POOL_TYPES", "SPACES", "Space",
           "SpaceAttribute", "check_values", "cnn", "config_from_params", "config_problems",
           "conv_pool_plan", "get_space", "lab_mlp", "mlp", "params_asked", "register",
           "rnn", "unregister"]
