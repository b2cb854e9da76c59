"""Layers with hand-written forward and backward, named as in ``torch.nn``.

The protocol: ``Parameter`` (``parameter.py``), ``Module`` (``module.py``) and the
container ``Sequential`` (``container.py``).  The layers, one kind per module, each
holding its parameters and caches while the math sits in ``minidl.kernels`` or beside
the layer: ``linear.py`` (Linear, Flatten), ``conv.py``, ``pooling.py``,
``activation.py``, ``dropout.py``, ``normalization.py``, ``embedding.py``, ``rnn.py``
(recurrent layers and cells), ``sequence.py`` (images to sequences, sequence outputs to
a classifier) and ``loss.py``.  ``init`` (weight initialisation) and ``utils``
(gradient clipping) as in torch; ``minidl.nn.darts`` holds DARTS' mixed operation.
"""
from . import init, utils
from .activation import ELU, GELU, LeakyReLU, ReLU, Sigmoid, Tanh
from .container import Sequential
from .conv import Conv2d
from .dropout import Dropout
from .embedding import Embedding
from .linear import Flatten, Linear
from .loss import CrossEntropyLoss
from .module import Module
from .normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from .parameter import Parameter
from .pooling import AvgPool2d, MaxPool2d
from .rnn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from .sequence import ImageToSequence, LastHidden, SequenceOutput

__all__ = [
    # the protocol
    "Parameter", "Module", "Sequential",
    # layers
    "Linear", "Flatten", "Conv2d", "MaxPool2d", "AvgPool2d",
    "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "ELU", "GELU", "Dropout",
    "BatchNorm1d", "BatchNorm2d", "LayerNorm", "Embedding",
    "RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell",
    "ImageToSequence", "SequenceOutput", "LastHidden",
    # loss
    "CrossEntropyLoss",
    # functions
    "init", "utils",
]
