"""The ``cnn`` space (task 2): one to three conv blocks with conv-specific choices --
filters up to 128, kernel size, one or two convolutions per block, batch normalization
on or off -- pooling and a dense head.

No configuration reaches a layer whose input has zero size: the spatial size is tracked
block by block (``conv_pool_plan``, used by the space and the builder alike) and a
pooling that would collapse the map is skipped, recorded in the trial's user attribute
``pooling_skipped``.
"""
from __future__ import annotations

from minidl import nn

from ..images import IMAGE_SHAPE, NUM_CLASSES
from .common import (HYPERGRADIENT_DEFAULTS, HYPERGRADIENT_HELP, MAX_LAYERS, OPTIMIZERS,
                     REGULARISATION_DEFAULTS, REGULARISATION_HELP, SGD_MOMENTUM,
                     TRAINING_DEFAULTS, TRAINING_HELP, given_params, hypergradient_params,
                     regularisation_params, suggest_added, training_params)
from .sizes import linear, size, sizes
from .space import Space

FILTERS = [8, 16, 32, 64]
FILTERS_MULTIPLIERS = [1, 2]          # filters_l{i} x multiplier: up to 128 filters
CONVS_PER_BLOCK = (1, 2)
KERNEL_SIZES = [3, 5, 7]
# pool_type -> layer (also the candidates of tuning.darts's mixed pooling)
POOL_LAYERS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}
POOL_TYPES = list(POOL_LAYERS)
POOL_KERNELS = [2, 3]
# Parameters added after the first studies, with the value that reproduces their models
# (no batch normalization, one convolution per block, filters as drawn, no hypergradient).
ADDED_PARAMS = {"filters_multiplier": 1, "convs_per_block": 1, "batch_norm": False,
                "hypergradient": False}


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
    (``hypergradient``, ``hypergrad_lr``, asked last: see
    ``tuning.spaces.common.hypergradient_params``).
    """
    n_conv = trial.suggest_int("n_conv", 1, MAX_LAYERS)
    filters = [trial.suggest_categorical(f"filters_l{i}", FILTERS) for i in range(n_conv)]
    kernels = [trial.suggest_categorical(f"kernel_l{i}", KERNEL_SIZES) for i in range(n_conv)]
    given = given_params(trial)
    multiplier = suggest_added(given, ADDED_PARAMS, trial.suggest_categorical,
                               "filters_multiplier", FILTERS_MULTIPLIERS)
    convs_per_block = suggest_added(given, ADDED_PARAMS, trial.suggest_int, "convs_per_block",
                                    *CONVS_PER_BLOCK)
    batch_norm = suggest_added(given, ADDED_PARAMS, trial.suggest_categorical, "batch_norm",
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
    config.update(training_params(trial, OPTIMIZERS))
    config.update(regularisation_params(trial))
    config.update(momentum=SGD_MOMENTUM,
                  augment_strength=trial.suggest_float("augment_strength", 0.0, 1.0))
    config.update(hypergradient_params(trial, ADDED_PARAMS, given, config))
    return config


def build_cnn(config: dict, input_shape=IMAGE_SHAPE) -> nn.Sequential:
    """Conv blocks ``(Conv2d(padding k // 2) -> [BatchNorm2d] -> ReLU) x convs_per_block ->
    pool``, then a dense head.

    ``config["convs_per_block"]`` (default 1) and ``config["batch_norm"]`` (default False)
    are optional, so configs stored before they existed build the model they trained.  A
    convolution followed by batch normalization has no bias: the normalization subtracts
    any constant, so the bias would get a zero gradient (in exact arithmetic) and only
    drift with rounding noise.

    The spatial size comes from ``conv_pool_plan`` (the same function the space uses), so
    a pooling that would collapse the feature map is left out here too.
    """
    channels, height, width = input_shape
    if height != width:
        raise ValueError(f"build_cnn: expected square images, got {height}x{width}")
    filters = [int(f) for f in config["filters"]]
    kernels = [int(k) for k in config["kernel_sizes"]]
    if not filters or len(filters) != len(kernels):
        raise ValueError(f"build_cnn: expected as many filters as kernel sizes (>= 1), got "
                         f"filters={filters} kernel_sizes={kernels}")
    convs_per_block = config.get("convs_per_block", 1)
    if isinstance(convs_per_block, bool) or convs_per_block not in (1, 2):
        raise ValueError(f"build_cnn: expected convs_per_block 1 or 2, got {convs_per_block!r}")
    batch_norm = config.get("batch_norm", False)
    if not isinstance(batch_norm, bool):
        raise ValueError(f"build_cnn: expected batch_norm to be a bool, got {batch_norm!r}")
    pool_kernel = int(config["pool_kernel"])
    try:
        pool_cls = POOL_LAYERS[config["pool_type"]]
    except KeyError:
        raise ValueError(f"build_cnn: unknown pool_type {config['pool_type']!r}; expected "
                         f"one of {sorted(POOL_LAYERS)}") from None
    pool_after, size = conv_pool_plan(height, kernels, pool_kernel)
    layers = []
    in_ch = channels
    for out_ch, k, pools in zip(filters, kernels, pool_after):
        for _ in range(int(convs_per_block)):
            layers.append(nn.Conv2d(in_ch, out_ch, k, padding=k // 2, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(nn.ReLU())
            in_ch = out_ch
        if pools:
            layers.append(pool_cls(pool_kernel))
    return nn.Sequential(*layers, *cnn_head(config, in_ch * size * size))


def cnn_head(config: dict, in_features: int) -> list:
    """The ``cnn`` space's classifier on the last block's maps: ``Flatten -> Dropout ->
    Linear(dense_size) -> ReLU -> Dropout -> Linear(10)``."""
    dropout, dense = float(config["dropout_rate"]), int(config["dense_size"])
    return [nn.Flatten(), nn.Dropout(dropout), nn.Linear(in_features, dense),
            nn.ReLU(), nn.Dropout(dropout), nn.Linear(dense, NUM_CLASSES)]


_BLOCK_ADDED = {k: v for k, v in ADDED_PARAMS.items() if k != "hypergradient"}

def count_cnn(config: dict) -> list:
    """The parameters of ``build_cnn(config)``, layer by layer (``tuning.spaces.sizes``)."""
    channels, height, _ = IMAGE_SHAPE
    filters, kernels = sizes(config, "filters"), sizes(config, "kernel_sizes")
    repeat = size(config.get("convs_per_block", 1), "convs_per_block")
    batch_norm = config.get("batch_norm", False) is True
    layers = []
    in_ch = channels
    for out_ch, k in zip(filters, kernels):
        first = in_ch * out_ch * k * k + (0 if batch_norm else out_ch)
        rest = (repeat - 1) * (out_ch * out_ch * k * k + (0 if batch_norm else out_ch))
        layers.append((f"Conv2d({in_ch}, {out_ch}, {k}) x {repeat}", first + rest))
        if batch_norm:
            layers.append((f"BatchNorm2d({out_ch}) x {repeat}", 2 * out_ch * repeat))
        in_ch = out_ch
    if len(filters) == len(kernels) and filters:
        _, side = conv_pool_plan(height, kernels, size(config["pool_kernel"], "pool_kernel"))
        dense = size(config["dense_size"], "dense_size")
        layers += [linear(in_ch * side * side, dense), linear(dense, NUM_CLASSES)]
    return layers


SPACE = Space(
    name="cnn", function=cnn, build_model=build_cnn, count_parameters=count_cnn,
    defaults={"n_conv": 2, "filters_l0": 32, "filters_l1": 64, "filters_l2": 64,
              "kernel_l0": 3, "kernel_l1": 3, "kernel_l2": 3, **_BLOCK_ADDED,
              "pool_type": "max", "pool_kernel": 2, "dense_size": 128, "dropout_rate": 0.25,
              **TRAINING_DEFAULTS, **REGULARISATION_DEFAULTS, "augment_strength": 0.0,
              **HYPERGRADIENT_DEFAULTS},
    description="task 2: 1-3 conv blocks (filters up to 128, kernel 3/5/7, 1-2 convs, "
                "batch norm), max/avg pooling 2/3, dense head, optional Adam-HD/SGD-HD",
    epochs=3, train_size=10_000,
    param_help={"n_conv": "conv blocks",
                **{f"filters_l{i}": f"filters of block {i}, before filters_multiplier"
                   for i in range(MAX_LAYERS)},
                **{f"kernel_l{i}": f"kernel size of block {i}'s convolutions"
                   for i in range(MAX_LAYERS)},
                "filters_multiplier": "multiplies every block's filters (up to 128)",
                "convs_per_block": "convolutions per block",
                "batch_norm": "a BatchNorm2d after every convolution",
                "pool_type": "max or average pooling after each block",
                "pool_kernel": "pooling kernel and stride",
                "dense_size": "units of the dense layer of the head (log scale)",
                "dropout_rate": "dropout before and after the dense layer",
                **TRAINING_HELP, **REGULARISATION_HELP,
                "augment_strength": "strength of the random training-image augmentation",
                **HYPERGRADIENT_HELP},
    added_params=ADDED_PARAMS)
