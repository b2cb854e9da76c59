"""``Space``: one search space as one object."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Space:
    """A named search space: everything a study needs to know about it.

    Parameters
    ----------
    name : str
        The name ``--space`` takes and ``config["model"]`` carries.
    function : callable
        ``trial -> config``: asks the trial for its parameters (``trial.suggest_*``) and
        returns a plain, JSON-able ``config`` dict with ``config["model"] == name``.
    defaults : dict
        A value for *every* parameter the space can ask for, in the order it asks: the
        grid sampler fixes the parameters off its grid to them, ``enqueue`` checks names
        against them.
    build_model : callable
        ``(config, input_shape) -> minidl.nn.Module``: the network a config describes.
    count_parameters : callable
        ``config -> [(layer, parameters), ...]``: the trainable parameters of the network
        ``build_model`` builds, counted from the config alone, nothing allocated
        (``tuning.spaces.sizes``); ``tuning.load_model`` bounds a folder's model with it
        before building anything.
    description : str
        One line for ``--space``'s help.
    epochs : int
        Training epochs per trial of a new study (``--epochs`` overrides it).
    train_size : int or None
        Training images per trial of a new study (None: the whole training part;
        ``--train-size`` overrides it).
    param_help : dict
        What each parameter means, one line per name in ``defaults``.
    added_params : dict
        Parameters added after studies were stored with the space, each with the value
        that reproduces those studies (also its default): a replayed or enqueued trial
        whose given parameters lack the name gets this value.
    """

    name: str
    function: Callable
    defaults: dict
    build_model: Callable
    count_parameters: Callable
    description: str
    epochs: int
    train_size: int | None
    param_help: dict
    added_params: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Space: expected a non-empty str name, got {self.name!r}")
        for attr in ("function", "build_model", "count_parameters"):
            if not callable(getattr(self, attr)):
                raise TypeError(f"Space {self.name!r}: expected {attr} to be callable, got "
                                f"{getattr(self, attr)!r}")
        for attr in ("defaults", "param_help", "added_params"):
            if not isinstance(getattr(self, attr), dict):
                raise TypeError(f"Space {self.name!r}: expected {attr} to be a dict, got "
                                f"{type(getattr(self, attr)).__name__}")
        for attr, allow_none in (("epochs", False), ("train_size", True)):
            value = getattr(self, attr)
            if value is None and allow_none:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Space {self.name!r}: expected {attr} to be an int"
                                f"{' or None' if allow_none else ''}, got {value!r}")
            if value < 1:
                raise ValueError(f"Space {self.name!r}: expected {attr} >= 1, got {value}")
        if set(self.param_help) != set(self.defaults):
            raise ValueError(f"Space {self.name!r}: expected param_help to explain exactly "
                             f"the parameters of defaults ({', '.join(self.defaults)}), got "
                             f"{', '.join(self.param_help)}")
        unknown = sorted(set(self.added_params) - set(self.defaults))
        if unknown:
            raise ValueError(f"Space {self.name!r}: added_params names parameters without a "
                             f"default: {', '.join(unknown)}")

    @property
    def param_names(self) -> list:
        """Every parameter the space can ask for, in the order it asks."""
        return list(self.defaults)
