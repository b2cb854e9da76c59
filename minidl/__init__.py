"""minidl: a small deep-learning library on NumPy, with every backward written by hand.

    from minidl import nn, optim
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(),
                          nn.Dropout(0.3), nn.Linear(256, 10))

``import minidl`` never imports torch, cupy or optuna.
"""
from . import nn, optim, data, train, performance
from .random import manual_seed
from .gradcheck import gradcheck
from .serialization import save, load
from .threads import set_num_threads, get_num_threads
from .summary import summary
from .grad_mode import no_grad, is_grad_enabled

__version__ = "0.1.0"

__all__ = ["nn", "optim", "data", "train", "performance", "manual_seed", "gradcheck", "save", "load",
           "set_num_threads", "get_num_threads", "summary", "no_grad", "is_grad_enabled",
           "__version__"]
