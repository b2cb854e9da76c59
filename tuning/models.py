"""``build_model(config)``: the minidl network a space's ``config`` describes.

It reads the table of spaces: ``config["model"]`` names the space (every space's
``config`` sets it) and the space's ``build_model`` builds the network.  The builders
live with their spaces (``tuning.spaces.lab_mlp_space``, ``.mlp_space``, ``.cnn_space``,
and ``tuning.rnn_models`` for ``rnn``).

Weights are drawn from minidl's generator: call ``minidl.manual_seed`` first for a
reproducible model.
"""
from __future__ import annotations

from minidl import nn

from .images import IMAGE_SHAPE
from .spaces import SPACES
# The builders other modules take from here (tuning.darts, the tutorials).
from .spaces.cnn_space import POOL_LAYERS, build_cnn, cnn_head  # noqa: F401
from .spaces.lab_mlp_space import LabNNet, build_lab_nnet  # noqa: F401
from .spaces.mlp_space import build_mlp  # noqa: F401


def build_model(config: dict, input_shape=IMAGE_SHAPE) -> nn.Module:
    """The minidl network a space's ``config`` describes (``SPACES[config["model"]]``)."""
    kind = config.get("model")
    space = SPACES.get(kind) if isinstance(kind, str) else None
    if space is None:
        names = [repr(name) for name in SPACES]
        expected = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        raise ValueError(f"build_model: unknown model {kind!r}; expected {expected}")
    return space.build_model(config, input_shape)
