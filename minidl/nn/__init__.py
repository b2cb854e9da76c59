"""Layers with hand-written forward and backward, named as in ``torch.nn``."""
from .module import Module, Parameter, Sequential
from . import init
from .linear import Linear, Flatten
from .activation import ReLU, LeakyReLU, Tanh, Sigmoid, ELU, GELU
from .dropout import Dropout
from .conv import Conv2d
from .pooling import MaxPool2d, AvgPool2d
from .loss import CrossEntropyLoss
from .normalization import BatchNorm1d, BatchNorm2d, LayerNorm

__all__ = [
    "Module", "Parameter", "Sequential", "init",
    "Linear", "Flatten", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "ELU", "GELU",
    "Dropout", "Conv2d", "MaxPool2d", "AvgPool2d", "CrossEntropyLoss",
    "BatchNorm1d", "BatchNorm2d", "LayerNorm",
]

from .rnn import RNN, LSTM, GRU, RNNCell, LSTMCell, GRUCell

__all__ += ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"]
from . import utils

__all__ += ["utils"]
from .sequence import ImageToSequence, SequenceOutput, LastHidden

__all__ += ["ImageToSequence", "SequenceOutput", "LastHidden"]
from .embedding import Embedding

__all__ += ["Embedding"]
