"""Checking given parameter values (``enqueue --params``, grid files) against a space."""
from __future__ import annotations

import math

from ..images import IMAGE_SHAPE
from .registry import get_space


class _CheckingTrial:
    """Stands in for a trial to run a space function on given values (``check_values``).

    Every ``suggest_*`` returns the given value (the space's default when none is
    given) and notes what is wrong with it: ``impossible`` (a value no trial can use:
    not a number, not finite, not an integer, not one of the choices) or ``outside``
    (a number outside the range the space searches).
    """

    def __init__(self, values: dict, defaults: dict):
        self._values = values
        self._defaults = defaults
        self.impossible, self.outside, self.asked = [], [], []
        self.number = 0
        self.params = {}

    def _given(self, name, placeholder):
        """The given value, else the default; for a name with neither (``filters_l5`` when
        ``n_conv`` is 6: asked only because an earlier number lies outside the space's
        range, which is reported for that number) ``placeholder``, a value in range, as
        the sampler would draw one for an enqueued trial."""
        self.asked.append(name)
        if name not in self._values and name not in self._defaults:
            self.params[name] = placeholder
            return placeholder
        value = self._values.get(name, self._defaults.get(name))
        self.params[name] = value
        return value

    def suggest_float(self, name, low, high, *, step=None, log=False):
        value = self._given(name, low)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.impossible.append(f"{name}: expected a number, got {value!r}")
        elif not math.isfinite(value):
            self.impossible.append(f"{name}: expected a finite number, got {value!r}")
        elif not low <= value <= high:
            self.outside.append(f"{name} {value!r} is outside the space's range "
                                f"{low:g}..{high:g}")
        return value

    def suggest_int(self, name, low, high, *, step=1, log=False):
        value = self._given(name, low)
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.impossible.append(f"{name}: expected an integer, got {value!r}")
        elif not low <= value <= high:
            self.outside.append(f"{name} {value!r} is outside the space's range {low}..{high}")
        return value

    def suggest_categorical(self, name, choices):
        value = self._given(name, choices[0])
        # type-aware: True == 1 and 64.0 == 64 in Python, but not as a choice
        if not any(type(value) is type(c) and value == c for c in choices):
            self.impossible.append(f"{name}: expected one of {list(choices)}, got {value!r}")
        return value

    def set_user_attr(self, key, value):
        pass


def params_asked(space_name: str, values: dict) -> dict:
    """The parameters a trial with these ``values`` asks for, in the order it asks: a
    one-block ``cnn`` asks no ``kernel_l1``, an RMSprop trial no ``hypergradient``.  The
    space's defaults stand in for values not given."""
    space = get_space(space_name)
    trial = _CheckingTrial(values, space.defaults)
    space.function(trial)
    return {name: trial.params[name] for name in trial.asked}


def check_values(space_name: str, values: dict, outside_range: bool = False) -> list:
    """Refuse parameter values a trial of ``space_name`` cannot use; return warnings.

    ``values`` maps parameter names to values (``enqueue --params``, one point of a grid
    file); the space's defaults stand in for the others.  Raises ``ValueError`` naming
    every problem: an unknown name, a value no trial can use (see ``_CheckingTrial``), a
    configuration the model or optimizer cannot be built from (``hidden_size`` -5,
    ``dropout_rate`` 1.5, ``learn_rate`` <= 0), or, unless ``outside_range``, a number
    outside the range the space searches.  With ``outside_range`` such numbers are
    returned as warnings: the sampler then sees a value outside its distribution.
    """
    space = get_space(space_name)
    unknown = sorted(set(values) - set(space.defaults))
    if unknown:
        raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for space "
                         f"{space_name!r}; its parameters are {', '.join(space.param_names)}")
    trial = _CheckingTrial(values, space.defaults)
    config = None
    try:
        config = space.function(trial)
    except (TypeError, ValueError) as exc:  # a value the space function cannot use at all
        trial.impossible.append(str(exc))
    if config is not None and not trial.impossible:
        trial.impossible += config_problems(config)
    # a value no trial can use is the reason to give, even when it is also out of range
    problems = trial.impossible or ([] if outside_range else trial.outside)
    if problems:
        hint = ("" if outside_range or trial.impossible else
                " (enqueue --outside-range accepts numbers outside the range)")
        raise ValueError("; ".join(problems) + hint)
    return trial.outside


def config_problems(config: dict) -> list:
    """What makes ``config`` impossible to train: ``[]`` when the model and optimizer can be built.

    Builds the model (the space's ``build_model``: layer sizes, dropout) and checks the
    training values the optimizer and the batches take.
    """
    problems = []
    for name, low_ok in (("learn_rate", False), ("weight_decay", True),
                         ("augment_strength", True), ("momentum", True)):
        value = config.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) or value < 0 or (value == 0 and not low_ok):
            problems.append(f"{name}: expected a finite number {'>= 0' if low_ok else '> 0'}"
                            f", got {value!r}")
    for name in ("hidden_size", "dense_size"):
        value = config.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            problems.append(f"{name}: expected a layer size >= 1, got {value!r}")
    dropout = config.get("dropout_rate")
    if isinstance(dropout, (int, float)) and not isinstance(dropout, bool) \
            and math.isfinite(dropout) and not 0 <= dropout < 1:
        problems.append(f"dropout_rate: expected a probability in [0, 1), got {dropout!r}")
    if problems:
        return problems
    try:
        get_space(config.get("model")).build_model(config, IMAGE_SHAPE)
    except (TypeError, ValueError) as exc:
        problems.append(f"the model cannot be built: {exc}")
    return problems
