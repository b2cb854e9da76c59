"""Optimizers and learning-rate schedules, named and behaving as in ``torch.optim``.

    from minidl import optim
    opt = optim.Adam(model.parameters(), lr=1e-3)
    sched = optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
"""
from .optimizer import Optimizer
from .sgd import SGD
from .adam import Adam, AdamW
from .rmsprop import RMSprop
from .hypergradient import SGDHD, AdamHD
from . import lr_scheduler

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "SGDHD", "AdamHD",
           "lr_scheduler"]
