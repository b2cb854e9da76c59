"""Model builders: plain functions ``config -> minidl.nn.Module``.

``build_model(config)`` dispatches on ``config["model"]`` (``lab-mlp``, ``mlp``,
``cnn``, ``rnn``), the key every space in ``tuning.spaces`` sets.  ``build_lab_nnet`` is the
lab's ``NNet`` written with minidl; its layers sit in ``.layers`` as in the lab, so its
``state_dict`` keys (``layers.1.weight``, ...) are the lab's.

Weights are drawn from minidl's generator: call ``minidl.manual_seed`` first for a
reproducible model.
"""
from __future__ import annotations

from math import prod

from minidl import nn

from .rnn_models import build_rnn
from .spaces import IMAGE_SHAPE, NUM_CLASSES, conv_pool_plan


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


_ACTIVATIONS = {"ReLU": nn.ReLU, "Tanh": nn.Tanh, "LeakyReLU": nn.LeakyReLU}
# pool_type -> layer (also the candidates of tuning.darts's mixed pooling)
POOL_LAYERS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def _activation(name: str) -> nn.Module:
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"build_model: unknown activation {name!r}; expected one of "
                         f"{sorted(_ACTIVATIONS)}") from None


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


def build_cnn(config: dict, input_shape=IMAGE_SHAPE) -> nn.Sequential:
    """Conv blocks ``(Conv2d(padding k // 2) -> [BatchNorm2d] -> ReLU) x convs_per_block ->
    pool``, then a dense head.

    ``config["convs_per_block"]`` (default 1) and ``config["batch_norm"]`` (default False)
    are optional, so configs stored before they existed build the model they trained.  A
    convolution followed by batch normalization has no bias: the normalization subtracts
    any constant, so the bias would get a zero gradient (in exact arithmetic) and only
    drift with rounding noise.

    The spatial size comes from ``tuning.spaces.conv_pool_plan`` (the same function the
    space uses), so a pooling that would collapse the feature map is left out here too.
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


def build_model(config: dict, input_shape=IMAGE_SHAPE) -> nn.Module:
    """The minidl network a space's ``config`` describes."""
    kind = config.get("model")
    if kind == "lab-mlp":
        return build_lab_nnet(prod(input_shape), config["hidden_size"], config["dropout_rate"])
    if kind == "mlp":
        return build_mlp(config, input_shape)
    if kind == "cnn":
        return build_cnn(config, input_shape)
    if kind == "rnn":
        return build_rnn(config, input_shape)
    raise ValueError(f"build_model: unknown model {kind!r}; expected 'lab-mlp', 'mlp', 'cnn' "
                     f"or 'rnn'")
