"""Learning-rate schedules, stepped once per epoch (or per iteration) after ``optimizer.step()``.

Each scheduler writes the new rate into every ``optimizer.param_groups[i]["lr"]``
and remembers it for :meth:`~LRScheduler.get_last_lr`.  The epoch-indexed
schedules update the rate *recursively* from the current group rate, exactly as
``torch.optim.lr_scheduler`` does, so the sequence of rates is torch's to the
last bit (the recursive and the closed forms differ in rounding).

    scheduler = StepLR(optimizer, step_size=10, gamma=0.5)
    for epoch in range(epochs):
        train_one_epoch(...)          # calls optimizer.step()
        scheduler.step()

``ReduceLROnPlateau`` instead takes the monitored metric: ``scheduler.step(val_loss)``.
"""
from __future__ import annotations

import copy
import math
from collections import Counter

from .. import _checks
from .optimizer import Optimizer


def _check_optimizer(owner: str, optimizer) -> None:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{owner}: expected a minidl Optimizer, got {type(optimizer).__name__}")


class LRScheduler:
    """Base class of the epoch-indexed schedules.

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer whose group learning rates this scheduler sets.
    last_epoch : int, default -1
        Index of the last epoch seen.  ``-1`` starts a schedule: each group's
        current ``lr`` is recorded as ``"initial_lr"``.  Another value resumes one
        and needs ``"initial_lr"`` in every group (as a loaded optimizer state
        provides).

    Construction performs the first step (``last_epoch`` becomes 0, or
    ``last_epoch + 1`` on resume), as torch does.  Subclasses implement
    ``_compute_lr()``, the rates for the new ``last_epoch``.

    Matches ``torch.optim.lr_scheduler.LRScheduler`` (without the deprecated
    ``step(epoch)`` argument).  Invalid arguments raise ``TypeError`` (a wrong type) or
    ``ValueError`` (a wrong value) naming the scheduler.
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        _check_optimizer(type(self).__name__, optimizer)
        _checks.integer(type(self).__name__, "last_epoch", last_epoch, -1)
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise ValueError(
                        f"{type(self).__name__}: resuming at last_epoch={last_epoch} needs "
                        f"'initial_lr' in param_groups[{i}]; load the optimizer's state dict "
                        "first, or start with last_epoch=-1")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._is_initial = True
        self.step()
        self._is_initial = False

    def _compute_lr(self) -> list[float]:
        """The learning rate of each group at ``self.last_epoch`` (subclass hook)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _compute_lr()")

    def _current_lrs(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def step(self) -> None:
        """Advance one epoch and set every group's ``lr``."""
        self.last_epoch += 1
        lrs = self._compute_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self._last_lr = self._current_lrs()

    def get_last_lr(self) -> list[float]:
        """The learning rates set by the last :meth:`step`, one per parameter group."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """Every attribute except the optimizer (save the optimizer's state separately)."""
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore attributes saved by :meth:`state_dict`."""
        if not isinstance(state_dict, dict):
            raise TypeError(
                f"{type(self).__name__}.load_state_dict: expected a dict, got "
                f"{type(state_dict).__name__}")
        unknown = sorted(set(state_dict) - set(self.__dict__))
        if unknown:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: unexpected keys {unknown}; "
                f"was the state saved by another scheduler?")
        self.__dict__.update(copy.deepcopy(state_dict))


class StepLR(LRScheduler):
    r"""Multiply the learning rate by ``gamma`` every ``step_size`` epochs.

    .. math::

        \boxed{\eta_t = \begin{cases} \gamma\, \eta_{t-1} & t > 0,\ t \bmod s = 0 \\
                                      \eta_{t-1} & \text{otherwise} \end{cases}}
        \qquad (\eta_t = \eta_0\, \gamma^{\lfloor t/s \rfloor} \text{ when nothing else changes the rate})

    Parameters
    ----------
    optimizer : Optimizer
    step_size : int
        Period :math:`s` (>= 1) of the decay, in epochs.
    gamma : float, default 0.1
        Multiplicative factor :math:`\gamma`.
    last_epoch : int, default -1

    Matches ``torch.optim.lr_scheduler.StepLR``.
    """

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        _checks.positive_int("StepLR", "step_size", step_size)
        _checks.real("StepLR", "gamma", gamma)
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _compute_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]


class MultiStepLR(LRScheduler):
    r"""Multiply the learning rate by ``gamma`` at each milestone epoch.

    .. math::

        \boxed{\eta_t = \gamma^{c(t)}\, \eta_{t-1}}, \qquad
        c(t) = \text{number of times } t \text{ appears in the milestones}

    Parameters
    ----------
    optimizer : Optimizer
    milestones : iterable of int
        Epoch indices (a repeated milestone decays once per repetition).
    gamma : float, default 0.1
        Multiplicative factor :math:`\gamma`.
    last_epoch : int, default -1

    Matches ``torch.optim.lr_scheduler.MultiStepLR``.
    """

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        try:
            milestones = list(milestones)
        except TypeError:
            raise TypeError(f"MultiStepLR: expected milestones to be an iterable of ints, got "
                            f"{type(milestones).__name__} {milestones!r}") from None
        for m in milestones:
            _checks.integer("MultiStepLR", "milestones", m, what="ints")
        _checks.real("MultiStepLR", "gamma", gamma)
        self.milestones = Counter(milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _compute_lr(self):
        if self.last_epoch not in self.milestones:
            return self._current_lrs()
        factor = self.gamma ** self.milestones[self.last_epoch]
        return [lr * factor for lr in self._current_lrs()]


class ExponentialLR(LRScheduler):
    r"""Multiply the learning rate by ``gamma`` every epoch.

    .. math::

        \boxed{\eta_t = \gamma\, \eta_{t-1}} \qquad (t \ge 1)

    Parameters
    ----------
    optimizer : Optimizer
    gamma : float
        Multiplicative factor :math:`\gamma`.
    last_epoch : int, default -1

    Matches ``torch.optim.lr_scheduler.ExponentialLR``.
    """

    def __init__(self, optimizer, gamma, last_epoch=-1):
        _checks.real("ExponentialLR", "gamma", gamma)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def _compute_lr(self):
        # The construction step never decays, also when resuming at last_epoch >= 0.
        if self._is_initial:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]


class CosineAnnealingLR(LRScheduler):
    r"""Anneal the learning rate from its initial value to ``eta_min`` along a cosine.

    The target is the closed form (SGDR without restarts)

    .. math::

        \eta_t = \eta_{min} + \tfrac12 (\eta_0 - \eta_{min})
                 \left(1 + \cos\frac{\pi t}{T_{max}}\right),

    reached, as in torch, by the recursion

    .. math::

        \boxed{\eta_t = \eta_{min} + (\eta_{t-1} - \eta_{min})\,
               \frac{1 + \cos(\pi t / T_{max})}{1 + \cos(\pi (t-1) / T_{max})}}

    except at :math:`t` with :math:`(t - 1 - T_{max}) \bmod 2T_{max} = 0` (where
    the denominator vanishes), when
    :math:`\eta_t = \eta_{t-1} + \tfrac12(\eta_0 - \eta_{min})(1 - \cos(\pi/T_{max}))`.
    Past :math:`T_{max}` the rate climbs back up, periodically.  The
    construction step keeps the current rate, also on resume
    (``last_epoch >= 0``), so a resumed schedule continues from the group's ``lr``.

    Parameters
    ----------
    optimizer : Optimizer
    T_max : int
        Half period, in epochs (>= 1).
    eta_min : float, default 0
        Minimum learning rate.
    last_epoch : int, default -1

    Matches ``torch.optim.lr_scheduler.CosineAnnealingLR`` (its recursive form,
    which is what torch's ``get_last_lr`` reports).
    """

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        _checks.positive_int("CosineAnnealingLR", "T_max", T_max)
        _checks.non_negative("CosineAnnealingLR", "eta_min", eta_min)
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, last_epoch)

    def _compute_lr(self):
        t, T, eta_min = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return self._current_lrs()
        if (t - 1 - T) % (2 * T) == 0:
            return [lr + (base_lr - eta_min) * (1 - math.cos(math.pi / T)) / 2
                    for lr, base_lr in zip(self._current_lrs(), self.base_lrs)]
        ratio = (1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
        return [ratio * (lr - eta_min) + eta_min for lr in self._current_lrs()]


class ReduceLROnPlateau(LRScheduler):
    r"""Multiply the learning rate by ``factor`` when a metric stops improving.

    After each epoch call ``step(metric)``.  The metric *improves* when

    .. math::

        \boxed{\begin{aligned}
        &\text{min, rel: } m < b\,(1 - \theta) \qquad &&\text{min, abs: } m < b - \theta \\
        &\text{max, rel: } m > b\,(1 + \theta) \qquad &&\text{max, abs: } m > b + \theta
        \end{aligned}}

    with :math:`b` the best value so far (:math:`+\infty`/:math:`-\infty` at
    first) and :math:`\theta` the threshold.  Each epoch that does not improve
    counts as bad (bad epochs during cooldown are not counted); when more than
    ``patience`` epochs in a row are bad, each group's rate becomes
    :math:`\max(\eta\cdot\text{factor}, \text{min\_lr})` (unchanged if that
    lowers it by no more than ``eps``) and a cooldown of ``cooldown`` epochs
    starts.

    Parameters
    ----------
    optimizer : Optimizer
    mode : {'min', 'max'}, default 'min'
        Whether the metric should decrease (a loss) or increase (an accuracy).
    factor : float, default 0.1
        Multiplicative decay, in [0, 1).
    patience : int, default 10
        Bad epochs tolerated before the rate is reduced.
    threshold : float, default 1e-4
        Minimum significant change :math:`\theta`.
    threshold_mode : {'rel', 'abs'}, default 'rel'
    cooldown : int, default 0
        Epochs after a reduction during which bad epochs are not counted.
    min_lr : float or list of float, default 0
        Lower bound on the rate, for all groups or per group.
    eps : float, default 1e-8
        Reductions smaller than this are skipped.

    Matches ``torch.optim.lr_scheduler.ReduceLROnPlateau`` (without the
    deprecated ``epoch`` argument of ``step``).  Like torch's, it is an
    ``LRScheduler`` whose construction sets no rate and takes no step.
    """

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0, eps=1e-8):
        name = type(self).__name__
        _check_optimizer(name, optimizer)
        _checks.choice(name, "mode", mode, ("min", "max"))
        _checks.choice(name, "threshold_mode", threshold_mode, ("rel", "abs"))
        _checks.real(name, "factor", factor, 0, 1, high_open=True)
        _checks.non_negative_int(name, "patience", patience)
        _checks.non_negative_int(name, "cooldown", cooldown)
        _checks.non_negative(name, "threshold", threshold)
        _checks.non_negative(name, "eps", eps)
        n_groups = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != n_groups:
                raise ValueError(
                    f"{name}: expected {n_groups} min_lr values (one per parameter group), "
                    f"got {len(min_lr)}")
            min_lrs = list(min_lr)
        else:
            min_lrs = [min_lr] * n_groups
        for m in min_lrs:
            _checks.non_negative(name, "min_lr", m)

        self.optimizer = optimizer
        self.mode = mode
        self.factor = factor
        self.patience = patience
        self.threshold = threshold
        self.threshold_mode = threshold_mode
        self.cooldown = cooldown
        self.min_lrs = min_lrs
        self.eps = eps
        self.last_epoch = 0
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self._last_lr = [group["lr"] for group in optimizer.param_groups]

    def _is_better(self, metric: float) -> bool:
        best, threshold = self.best, self.threshold
        if self.mode == "min" and self.threshold_mode == "rel":
            return metric < best * (1.0 - threshold)
        if self.mode == "min":
            return metric < best - threshold
        if self.threshold_mode == "rel":
            return metric > best * (threshold + 1.0)
        return metric > best + threshold

    def step(self, metrics) -> None:
        """Record this epoch's metric and reduce the rates if it has plateaued."""
        try:
            current = float(metrics)
        except (TypeError, ValueError):
            raise ValueError(
                f"{type(self).__name__}.step: expected the metric as a number, got "
                f"{metrics!r}") from None
        self.last_epoch += 1
        if self._is_better(current):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _reduce_lr(self) -> None:
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            raise ValueError(
                f"{type(self).__name__}: the optimizer has {len(groups)} parameter groups "
                f"but min_lrs has {len(self.min_lrs)} values (was a group added later?)")
        for group, min_lr in zip(groups, self.min_lrs):
            old_lr = float(group["lr"])
            new_lr = max(old_lr * self.factor, min_lr)
            if old_lr - new_lr > self.eps:
                group["lr"] = new_lr

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0
