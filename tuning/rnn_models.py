"""Sequence models for Fashion-MNIST: the builder of the ``rnn`` space's models.

An image is read as ``T`` steps (``seq_len``: 28 steps of one row, 14 of two rows or
7 of four rows), run through 1-3 recurrent layers (LSTM or GRU, each with its own
width, optionally bidirectional) and classified from the last layer's final hidden
state::

    ImageToSequence(T) -> [SequenceOutput(cell) -> Dropout] * (layers - 1)
                       -> LastHidden(cell) -> Dropout -> Linear(D * hidden, 10)

The space is ``tuning.spaces.rnn``, whose ``build_model`` is ``build_rnn(config) ->
RNNClassifier``.

Gradient clipping (``clip_norm``) is part of the model: ``RNNClassifier.backward``
ends with ``clip_grad_norm_`` on its parameters, so a training loop that runs
``zero_grad -> forward -> backward -> step`` (``minidl.train.fit``) clips right
before every step without knowing about it.
"""
from __future__ import annotations

from math import prod

from minidl import nn
from minidl.nn.utils import clip_grads_with_norm_, get_total_norm

from .images import IMAGE_SHAPE, NUM_CLASSES

# cell -> recurrent layer; the ``rnn`` space's choices for ``cell``
CELL_LAYERS = {"LSTM": nn.LSTM, "GRU": nn.GRU}


class RNNClassifier(nn.Module):
    """A ``Sequential`` of sequence layers in ``.layers``, with gradient clipping.

    ``forward(x (N, 1, 28, 28)) -> logits (N, 10)``.  ``backward(dout)`` runs the
    layers' backward, then scales all gradients so their total 2-norm is at most
    ``clip_norm`` (``nn.utils.clip_grad_norm_``'s two halves, ``get_total_norm`` and
    ``clip_grads_with_norm_``: the norm is not needed as a Python float, so on a GPU it
    stays there; None: no clipping).
    """

    def __init__(self, layers: nn.Sequential, clip_norm=None):
        super().__init__()
        self.layers = layers
        self.clip_norm = None if clip_norm is None else float(clip_norm)

    def forward(self, x):
        return self.layers(x)

    def backward(self, dout):
        dx = self.layers.backward(dout)
        if self.clip_norm is not None:
            params = list(self.parameters())
            grads = [p.grad for p in params if p.grad is not None]
            if grads:
                clip_grads_with_norm_(params, self.clip_norm, get_total_norm(grads))
        return dx

    def _needs_input_grad_changed(self, value: bool) -> None:
        self.layers.needs_input_grad = value

    def extra_repr(self) -> str:
        return f"clip_norm={self.clip_norm}"


def build_rnn(config: dict, input_shape=IMAGE_SHAPE) -> RNNClassifier:
    """The recurrent classifier ``config`` (from the ``rnn`` space) describes."""
    T = int(config["seq_len"])
    size = prod(input_shape)
    if size % T:
        raise ValueError(f"build_rnn: seq_len={T} does not divide the {size} features of an "
                         f"input of shape {tuple(input_shape)}")
    try:
        cell = CELL_LAYERS[config["cell"]]
    except KeyError:
        raise ValueError(f"build_rnn: unknown cell {config['cell']!r}; expected one of "
                         f"{list(CELL_LAYERS)}") from None
    hidden = [int(h) for h in config["hidden_sizes"]]
    if not hidden or any(h < 1 for h in hidden):
        raise ValueError(f"build_rnn: expected 1 or more hidden sizes >= 1, got {hidden}")
    bidirectional = bool(config["bidirectional"])
    dropout = float(config["dropout_rate"])
    layers = [nn.ImageToSequence(T)]
    width = size // T
    for i, h in enumerate(hidden):
        rnn = cell(width, h, batch_first=True, bidirectional=bidirectional)
        layers += [nn.LastHidden(rnn) if i == len(hidden) - 1 else nn.SequenceOutput(rnn),
                   nn.Dropout(dropout)]
        width = (2 if bidirectional else 1) * h
    layers.append(nn.Linear(width, NUM_CLASSES))
    clip = config.get("clip_norm")
    if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float))
                             or not 0 < clip < float("inf")):
        raise ValueError(f"build_rnn: expected clip_norm to be a finite number > 0 (or None), "
                         f"got {clip!r}")
    return RNNClassifier(nn.Sequential(*layers), None if clip is None else float(clip))
