"""The table of search spaces: ``SPACES``, and the functions that add to it and read it."""
from __future__ import annotations

from collections.abc import Mapping

import optuna

from .space import Space

# name -> Space, in the order the spaces were registered (the built-in ones first)
SPACES: dict = {}


def register(space: Space) -> Space:
    """Add ``space`` to ``SPACES`` under ``space.name``; return it.

    From then on ``--space NAME`` offers it, a new study takes its ``epochs`` and
    ``train_size``, and ``tuning.models.build_model`` builds its configs.  Raises
    ``TypeError`` for anything but a ``Space`` and ``ValueError`` when the name is taken.
    """
    if not isinstance(space, Space):
        raise TypeError(f"register: expected a tuning.spaces.Space, got "
                        f"{type(space).__name__}")
    if space.name in SPACES:
        raise ValueError(f"register: a space named {space.name!r} is already registered")
    SPACES[space.name] = space
    return space


def unregister(name: str) -> Space:
    """Remove the space called ``name`` from ``SPACES``; return it (ValueError if unknown)."""
    space = get_space(name)
    del SPACES[name]
    return space


def get_space(name: str) -> Space:
    """The space called ``name``; ValueError listing the known names otherwise."""
    try:
        return SPACES[name]
    except KeyError:
        raise ValueError(f"unknown search space {name!r}; expected one of "
                         f"{', '.join(sorted(SPACES))}") from None


def config_from_params(space_name: str, params: dict) -> dict:
    """The config a trial with these ``params`` produced (e.g. ``study.best_params``)."""
    return get_space(space_name).function(optuna.trial.FixedTrial(dict(params)))


class SpaceAttribute(Mapping):
    """A read-only view ``{space name: getattr(space, attribute)}`` of ``SPACES``, always
    current (``SpaceAttribute("epochs")["cnn"]`` is ``SPACES["cnn"].epochs``)."""

    def __init__(self, attribute: str):
        self.attribute = attribute

    def __getitem__(self, name):
        return getattr(SPACES[name], self.attribute)

    def __iter__(self):
        return iter(SPACES)

    def __len__(self):
        return len(SPACES)

    def __repr__(self):
        return f"SpaceAttribute({self.attribute!r}: {dict(self)!r})"
